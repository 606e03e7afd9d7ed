# -*- test-case-name: tests.integration.test_imap_qresync -*-
"""
QRESYNC (RFC 7162) over real loopback sockets (implicit TLS) against a real
mailsrv on the Maildir store, with C{imaplib}: ENABLE QRESYNC, SELECT with
the QRESYNC parameter (VANISHED (EARLIER) and the changed flags), UID FETCH
with CHANGEDSINCE and VANISHED, VANISHED instead of EXPUNGE for changes made
by another session and for the session's own EXPUNGE, and the expunged UIDs
still known after a restart.
"""

from __future__ import annotations

import imaplib
import re
from typing import Iterator

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import clientContext, message

PASSWORD = "secret"
USER = "qr@example.test"


@pytest.fixture(scope="module")
def imapServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = RunningServer(tmp_path_factory.mktemp("qresync"), endpoints=("imaps",))
    srv.addUser(USER, PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def connect(server: RunningServer, qresync: bool = True) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext(), timeout=10)
    imap.login(USER, PASSWORD)
    if qresync:
        typ, _ = imap._simple_command("ENABLE", "QRESYNC")
        assert typ == "OK"
        assert imap.untagged_responses.pop("ENABLED") == [b"QRESYNC"]
    return imap


def command(imap: imaplib.IMAP4, *args: str) -> tuple[str, dict[str, list[bytes]]]:
    """
    Run a command; its result and the untagged responses it brought.
    """
    imap.untagged_responses.clear()
    typ, _ = imap._simple_command(*args)
    if typ == "OK" and args[0] in ("SELECT", "EXAMINE"):
        imap.state = "SELECTED"
    responses = {k: list(v) for k, v in imap.untagged_responses.items()}
    imap.untagged_responses.clear()
    return typ, responses


def fetchedUids(responses: dict[str, list[bytes]]) -> dict[int, bytes]:
    result = {}
    for line in responses.get("FETCH", []):
        match = re.search(rb"UID (\d+)", line)
        assert match, line
        result[int(match.group(1))] = line
    return result


def test_qresync(imapServer: RunningServer) -> None:
    writer = connect(imapServer, qresync=False)
    assert "QRESYNC" in writer.capabilities
    for i in range(6):
        writer.append("INBOX", None, None, message(f"qresync {i}", to=USER))
    writer.select("INBOX")
    watcher = connect(imapServer)
    typ, responses = command(watcher, "SELECT", "INBOX")
    assert typ == "OK"
    uidValidity = int(re.search(rb"UIDVALIDITY (\d+)", b" ".join(responses["OK"])).group(1))  # type: ignore[union-attr]
    known = int(re.search(rb"HIGHESTMODSEQ (\d+)", b" ".join(responses["OK"])).group(1))  # type: ignore[union-attr]

    # Another session flags UID 2 and expunges UIDs 3 and 4.
    writer.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
    writer.uid("STORE", "3:4", "+FLAGS", "(\\Deleted)")
    writer.expunge()

    # The QRESYNC session hears VANISHED, never EXPUNGE.
    typ, responses = command(watcher, "NOOP")
    assert responses.get("VANISHED") == [b"3:4"], responses
    assert "EXPUNGE" not in responses
    assert b"\\Flagged" in b" ".join(responses.get("FETCH", []))

    # A session resynchronising from the MODSEQ it knew.
    fresh = connect(imapServer)
    typ, responses = command(fresh, "SELECT", "INBOX", f"(QRESYNC ({uidValidity} {known}))")
    assert typ == "OK", responses
    assert responses["VANISHED"] == [b"(EARLIER) 3:4"]
    changed = fetchedUids(responses)
    assert list(changed) == [2] and b"\\Flagged" in changed[2] and b"MODSEQ" in changed[2]
    # Limited to the UIDs it knows; a stale UIDVALIDITY gets nothing.
    typ, responses = command(fresh, "EXAMINE", "INBOX", f"(QRESYNC ({uidValidity} {known} 1,4:6))")
    assert responses["VANISHED"] == [b"(EARLIER) 4"] and list(fetchedUids(responses)) == []
    assert b"[CLOSED]" in b" ".join(responses["OK"])
    typ, responses = command(fresh, "EXAMINE", "INBOX", f"(QRESYNC ({uidValidity + 1} {known}))")
    assert "VANISHED" not in responses and "FETCH" not in responses

    # UID FETCH with CHANGEDSINCE and VANISHED.
    typ, responses = command(fresh, "UID", "FETCH", "1:*", "(FLAGS)", f"(CHANGEDSINCE {known} VANISHED)")
    assert typ == "OK"
    assert responses["VANISHED"] == [b"(EARLIER) 3:4"]
    assert list(fetchedUids(responses)) == [2]
    typ, responses = command(fresh, "UID", "FETCH", "5:*", "(FLAGS)", f"(CHANGEDSINCE {known} VANISHED)")
    assert "VANISHED" not in responses and "FETCH" not in responses

    # The session's own EXPUNGE is announced as VANISHED too.
    command(fresh, "SELECT", "INBOX")
    command(fresh, "UID", "STORE", "5", "+FLAGS.SILENT", "(\\Deleted)")
    typ, responses = command(fresh, "EXPUNGE")
    assert responses.get("VANISHED") == [b"5"] and "EXPUNGE" not in responses
    for imap in (writer, watcher, fresh):
        imap.logout()

    # After a restart the expunged UIDs are still on record.
    imapServer.stop()
    imapServer.start()
    again = connect(imapServer)
    typ, responses = command(again, "SELECT", "INBOX", f"(QRESYNC ({uidValidity} {known}))")
    assert responses["VANISHED"] == [b"(EARLIER) 3:5"]
    again.logout()


def test_qresyncNeedsEnable(imapServer: RunningServer) -> None:
    """
    Without ENABLE QRESYNC the SELECT parameter and the VANISHED modifier
    are BAD, and expunges are announced with EXPUNGE.
    """
    imap = connect(imapServer, qresync=False)
    with pytest.raises(imaplib.IMAP4.error):
        imap._simple_command("SELECT", "INBOX", "(QRESYNC (1 1))")
    imap.select("INBOX")
    with pytest.raises(imaplib.IMAP4.error):
        imap._simple_command("UID", "FETCH", "1:*", "(FLAGS)", "(CHANGEDSINCE 1 VANISHED)")
    imap.append("INBOX", None, None, message("to expunge", to=USER))
    imap.select("INBOX")
    typ, data = imap.uid("SEARCH", "SUBJECT", "expunge")
    uid = data[0].split()[-1].decode()
    imap.uid("STORE", uid, "+FLAGS.SILENT", "(\\Deleted)")
    typ, responses = command(imap, "EXPUNGE")
    assert "EXPUNGE" in responses and "VANISHED" not in responses
    imap.logout()
