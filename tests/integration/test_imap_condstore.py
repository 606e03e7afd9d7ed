# -*- test-case-name: tests.integration.test_imap_condstore -*-
"""
CONDSTORE (RFC 7162) and the folder index over real loopback sockets
(implicit TLS) against a real mailsrv on the Maildir store, with
C{imapclient} and C{imaplib}: MODSEQ per message, HIGHESTMODSEQ in SELECT
and STATUS, FETCH MODSEQ and CHANGEDSINCE, STORE UNCHANGEDSINCE with
C{[MODIFIED]}, SEARCH MODSEQ, ENABLE; MODSEQ changes made by another session
reach an idle one; header FETCH/SEARCH answered from the index match the
messages.
"""

from __future__ import annotations

import imaplib
import re
from typing import Iterator

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import clientContext, message

imapclient = pytest.importorskip("imapclient")

PASSWORD = "secret"
USERS = ("cs1@example.test", "cs2@example.test", "cs3@example.test")


@pytest.fixture(scope="module")
def imapServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = RunningServer(tmp_path_factory.mktemp("condstore"), endpoints=("smtp", "imaps"))
    for user in USERS:
        srv.addUser(user, PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def client(server: RunningServer, user: str) -> "imapclient.IMAPClient":
    c = imapclient.IMAPClient(
        "127.0.0.1", port=server.ports["imaps"], ssl=True, ssl_context=clientContext(), timeout=10
    )
    c.login(user, PASSWORD)
    return c


def stdlib(server: RunningServer, user: str) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext(), timeout=10)
    imap.login(user, PASSWORD)
    return imap


def taggedText(c: "imapclient.IMAPClient", uids: str, rest: str) -> bytes:
    """
    Run C{UID STORE uids rest} and return the text of the tagged OK.
    """
    imap = c._imap
    tag = imap._command("UID", "STORE", uids, rest)
    typ, data = imap._command_complete("UID", tag)
    assert typ == "OK", data
    return bytes(data[0])


def test_condstore(imapServer: RunningServer) -> None:
    """
    CONDSTORE is advertised; SELECT (CONDSTORE) reports HIGHESTMODSEQ;
    a flag change raises the message's MODSEQ and HIGHESTMODSEQ; FETCH
    CHANGEDSINCE returns only the changed message; STORE UNCHANGEDSINCE
    below the current MODSEQ fails with [MODIFIED] and changes nothing;
    SEARCH MODSEQ finds the changed message; STATUS HIGHESTMODSEQ agrees.
    """
    user = USERS[0]
    c = client(imapServer, user)
    assert b"CONDSTORE" in c.capabilities()
    for i in range(3):
        c.append("INBOX", message(f"condstore {i}", to=user))
    selected = c.select_folder("INBOX", readonly=False)
    highest = selected[b"HIGHESTMODSEQ"]
    modseqs = {uid: data[b"MODSEQ"][0] for uid, data in c.fetch([1, 2, 3], ["MODSEQ"]).items()}
    assert len(modseqs) == 3 and max(modseqs.values()) <= highest

    c.add_flags([2], [b"\\Flagged"])
    after = c.fetch([1, 2, 3], ["MODSEQ", "FLAGS"])
    assert after[2][b"MODSEQ"][0] > highest
    assert after[1][b"MODSEQ"][0] == modseqs[1]
    changed = c.fetch([1, 2, 3], ["FLAGS"], modifiers=[f"CHANGEDSINCE {highest}"])
    assert list(changed) == [2]
    assert b"MODSEQ" in changed[2]

    refused = taggedText(c, "2", f"(UNCHANGEDSINCE {highest}) +FLAGS (\\Seen)")
    assert refused.startswith(b"[MODIFIED 2]")
    assert b"\\Seen" not in c.get_flags([2])[2]
    ok = taggedText(c, "1", f"(UNCHANGEDSINCE {modseqs[1]}) +FLAGS (\\Answered)")
    assert b"MODIFIED" not in ok
    assert b"\\Answered" in c.get_flags([1])[1]

    assert c.search(["MODSEQ", str(highest + 1)]) == [1, 2]
    newest = c.fetch([1, 2, 3], ["MODSEQ"])
    top = max(v[b"MODSEQ"][0] for v in newest.values())
    c.unselect_folder()
    assert c.folder_status("INBOX", ["HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"] == top
    c.logout()


def test_modseqPushedToOtherSession(imapServer: RunningServer) -> None:
    """
    Once a session has enabled CONDSTORE, a flag change made by another
    session reaches it as an untagged FETCH carrying FLAGS and MODSEQ.
    """
    user = USERS[1]
    writer = client(imapServer, user)
    writer.append("INBOX", message("pushed", to=user))
    watcher = stdlib(imapServer, user)
    typ, _ = watcher.enable("CONDSTORE")
    assert typ == "OK" and watcher.untagged_responses.get("ENABLED") == [b"CONDSTORE"]
    watcher.select("INBOX")
    writer.select_folder("INBOX")
    writer.add_flags([1], [b"\\Seen"])
    typ, _ = watcher.noop()
    assert typ == "OK"
    pushed = [r for r in watcher.untagged_responses.get("FETCH", []) if b"MODSEQ" in r]
    assert pushed and re.search(rb"FLAGS \([^)]*\\Seen", pushed[-1])
    watcher.logout()
    writer.logout()


def test_indexedHeaders(imapServer: RunningServer) -> None:
    """
    Header data served from the folder index matches the message: ENVELOPE
    subject and sender, BODY.PEEK[HEADER.FIELDS] byte-exact, SEARCH
    SUBJECT/FROM/HEADER, and BODYSTRUCTURE's size and line count.
    """
    user = USERS[2]
    c = client(imapServer, user)
    raw = (
        b"From: Zed Q <zed@remote.test>\r\n"
        b"Subject: indexed\r\n topic\r\n"
        b"X-Custom: only-in-file\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n"
        b"one\r\ntwo\r\nthree\r\n"
    )
    c.append("INBOX", raw)
    c.append("INBOX", message("other", to=user))
    c.select_folder("INBOX")
    data = c.fetch([1], ["ENVELOPE", "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]", "BODYSTRUCTURE"])[1]
    env = data[b"ENVELOPE"]
    assert env.subject == b"indexed topic"
    assert env.from_[0].mailbox == b"zed" and env.from_[0].host == b"remote.test"
    assert data[b"BODY[HEADER.FIELDS (SUBJECT FROM)]"] == (
        b"From: Zed Q <zed@remote.test>\r\nSubject: indexed\r\n topic\r\n\r\n"
    )
    structure = data[b"BODYSTRUCTURE"]
    assert structure[6] == len(b"one\r\ntwo\r\nthree\r\n") and structure[7] == 3
    assert c.search(["SUBJECT", "indexed topic"]) == [1]
    assert c.search(["FROM", "zed@remote"]) == [1]
    assert c.search(["HEADER", "X-Custom", "only-in-file"]) == [1]
    assert c.search(["HEADER", "Subject", "other"]) == [2]
    c.logout()
