# -*- test-case-name: tests.integration.test_imap_bigfolder -*-
"""
Opening a 100,000-message folder does not read message files (issue:
"Opening a 100,000-message folder must not scan file contents").

The server runs with an audit hook (a C{sitecustomize} on its
C{PYTHONPATH}) that records every file opened under the account's
C{cur/} and C{new/}: Python raises the C{open} audit event for
C{open()}, C{io.open()} and C{os.open()} alike, so nothing the store does
escapes it, and it works when the tests run as root (where making the files
unreadable would prove nothing).

Most files carry their CRLF size in the name (C{,W=}), as Dovecot and
mailsrv name them; a few do not (as procmail or getmail leave them), and
those must be read once to learn their size.  After a restart (a cold
process, nothing in memory) SELECT, C{FETCH 1:* (FLAGS UID)}, STATUS and
EXAMINE open no message file at all: the sizes learnt are kept in
C{dovecot-uidlist} (Dovecot's C{W} field), flags come from the names, and
internal dates from C{stat}.

The time SELECT takes on such a folder is measured by
C{python -m bench.imap_bigfolder}, not asserted here.
"""

from __future__ import annotations

import imaplib
import os
import re
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import clientContext

PASSWORD = "secret"
USER = "big@example.test"
MESSAGES = 100_000
#: Files without ,S=/,W= in their names: one in this many.
UNSIZED_EVERY = 5_000

_HOOK = '''
import os, sys

_watch = os.environ.get("MAILSRV_TEST_OPEN_WATCH")
_log = os.environ.get("MAILSRV_TEST_OPEN_LOG")
if _watch and _log:
    _parts = (os.sep + "cur" + os.sep, os.sep + "new" + os.sep)

    def _hook(event, args):
        if event != "open" or not args:
            return
        path = args[0]
        if isinstance(path, int):
            return
        try:
            path = os.fsdecode(os.fspath(path))
        except TypeError:
            return
        if path.startswith(_watch) and any(p in path for p in _parts):
            fd = os.open(_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (path + "\\n").encode("utf-8", "surrogateescape"))
            finally:
                os.close(fd)

    sys.addaudithook(_hook)
'''


class AuditedServer(RunningServer):
    """
    A mailsrv whose opens of message files are logged to C{openRecord}.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root, endpoints=("imaps",))
        self.hookDir = root / "hook"
        self.hookDir.mkdir()
        (self.hookDir / "sitecustomize.py").write_text(textwrap.dedent(_HOOK))
        self.openRecord = root / "opens.log"

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["PYTHONPATH"] = str(self.hookDir) + os.pathsep + env["PYTHONPATH"]
        env["MAILSRV_TEST_OPEN_WATCH"] = str(self.dataDir / "mail")
        env["MAILSRV_TEST_OPEN_LOG"] = str(self.openRecord)
        return env

    def opened(self) -> list[str]:
        """
        The message files opened since the last call.
        """
        try:
            lines = self.openRecord.read_text().splitlines()
        except FileNotFoundError:
            return []
        self.openRecord.unlink()
        return lines


def buildMaildir(maildir: Path, count: int) -> set[str]:
    """
    Write C{count} tiny messages into C{maildir/cur}; return the base names
    of those written without sizes in their names.
    """
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    unsized = set()
    cur = os.open(maildir / "cur", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(count):
            data = b"Subject: m%d\r\n\r\nx\r\n" % (i,)
            if i % UNSIZED_EVERY == 7:
                base = f"{1_700_000_000 + i}.M{i}P1.big"
                unsized.add(base)
            else:
                base = f"{1_700_000_000 + i}.M{i}P1.big,S={len(data)},W={len(data)}"
            flags = "S" if i % 3 else ""
            fd = os.open(f"{base}:2,{flags}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=cur)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
    finally:
        os.close(cur)
    return unsized


@pytest.fixture(scope="module")
def bigServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AuditedServer, set[str]]]:
    srv = AuditedServer(tmp_path_factory.mktemp("bigfolder"))
    srv.addUser(USER, PASSWORD)
    unsized = buildMaildir(srv.maildir(USER), MESSAGES)
    srv.start()
    try:
        yield srv, unsized
    finally:
        srv.stop()


def connect(server: RunningServer) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext(), timeout=120)
    imap.login(USER, PASSWORD)
    return imap


def selectFetchStatus(server: RunningServer) -> None:
    """
    SELECT INBOX, FETCH 1:* (FLAGS UID), STATUS, EXAMINE; check what the
    client sees.
    """
    imap = connect(server)
    typ, data = imap.select("INBOX")
    assert typ == "OK" and int(data[0]) == MESSAGES
    typ, lines = imap.fetch("1:*", "(FLAGS UID)")
    assert typ == "OK"
    assert len(lines) == MESSAGES
    parsed = [re.match(rb"(\d+) \((?:FLAGS \(([^)]*)\) UID (\d+)|UID (\d+) FLAGS \(([^)]*)\))\)", line) for line in lines]
    assert all(parsed)
    uids = [int(m.group(3) or m.group(4)) for m in parsed]  # type: ignore[union-attr]
    assert uids == list(range(1, MESSAGES + 1))
    seen = sum(1 for m in parsed if b"\\Seen" in (m.group(2) or m.group(5)))  # type: ignore[union-attr]
    assert seen == sum(1 for i in range(MESSAGES) if i % 3)
    typ, data = imap.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)")
    assert typ == "OK"
    assert b"MESSAGES %d" % MESSAGES in data[0]
    assert b"UIDNEXT %d" % (MESSAGES + 1) in data[0]
    assert b"UNSEEN %d" % (MESSAGES - seen) in data[0]
    typ, data = imap.select("INBOX", readonly=True)
    assert typ == "OK" and int(data[0]) == MESSAGES
    imap.logout()


def test_bigFolderOpensNoMessageFile(bigServer: tuple[AuditedServer, set[str]]) -> None:
    """
    First SELECT of a folder nobody has indexed: only the files whose names
    lack their size are read.  After a restart: no message file at all.
    The files lacking sizes in their names still report the right
    RFC822.SIZE.
    """
    server, unsized = bigServer
    selectFetchStatus(server)
    opened = {Path(p).name.split(":")[0] for p in server.opened()}
    assert opened == unsized

    server.stop()
    server.start()
    selectFetchStatus(server)
    assert server.opened() == []

    imap = connect(server)
    imap.select("INBOX", readonly=True)
    typ, lines = imap.fetch("8", "(RFC822.SIZE)")
    assert typ == "OK" and b"RFC822.SIZE %d" % len(b"Subject: m7\r\n\r\nx\r\n") in lines[0]
    imap.logout()
    assert server.opened() == []
