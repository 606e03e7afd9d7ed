# -*- test-case-name: tests.integration.test_imap_esearch -*-
"""
ESEARCH (RFC 4731) over a real loopback socket (implicit TLS) against a
real mailsrv on the Maildir store, with C{imaplib} (and C{imapclient} for
the capability).
"""

from __future__ import annotations

import imaplib
from typing import Iterator

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import clientContext, message

imapclient = pytest.importorskip("imapclient")

PASSWORD = "secret"
USER = "es@example.test"


@pytest.fixture(scope="module")
def imapServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = RunningServer(tmp_path_factory.mktemp("esearch"), endpoints=("imaps",))
    srv.addUser(USER, PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def esearch(imap: imaplib.IMAP4, *args: str) -> bytes:
    """
    Run a command and return its one untagged ESEARCH response.
    """
    typ, data = imap._simple_command(*args)
    assert typ == "OK", data
    _, responses = imap._untagged_response(typ, data, "ESEARCH")
    assert len(responses) == 1, responses
    return bytes(responses[0])


def test_esearch(imapServer: RunningServer) -> None:
    """
    ESEARCH is advertised; MIN/MAX/COUNT/ALL and the UID form answer with
    the command's tag, ALL compressed; after an expunge sequence numbers
    and UIDs differ as they should.
    """
    c = imapclient.IMAPClient(
        "127.0.0.1", port=imapServer.ports["imaps"], ssl=True, ssl_context=clientContext(), timeout=10
    )
    c.login(USER, PASSWORD)
    assert b"ESEARCH" in c.capabilities()
    for i in range(10):
        c.append("INBOX", message(f"esearch {'even' if i % 2 == 0 else 'odd'} {i}", to=USER))
    c.logout()

    imap = imaplib.IMAP4_SSL("127.0.0.1", imapServer.ports["imaps"], ssl_context=clientContext(), timeout=10)
    imap.login(USER, PASSWORD)
    imap.select("INBOX")
    imap.store("1:3", "+FLAGS.SILENT", "(\\Flagged)")
    imap.store("6", "+FLAGS.SILENT", "(\\Flagged)")
    tag = imap._new_tag().decode()
    imap.tagnum -= 1  # the next command uses this tag
    response = esearch(imap, "SEARCH", "RETURN", "(MIN MAX COUNT ALL)", "FLAGGED")
    assert response == b'(TAG "%s") MIN 1 MAX 6 ALL 1:3,6 COUNT 4' % tag.encode()
    assert esearch(imap, "UID", "SEARCH", "RETURN", "(COUNT)", "SUBJECT", "even").endswith(b"UID COUNT 5")

    imap.store("1", "+FLAGS.SILENT", "(\\Deleted)")
    imap.expunge()
    assert esearch(imap, "SEARCH", "RETURN", "()", "FLAGGED").endswith(b") ALL 1:2,5")
    assert esearch(imap, "UID", "SEARCH", "RETURN", "(ALL MIN)", "FLAGGED").endswith(b") UID MIN 2 ALL 2:3,6")
    assert esearch(imap, "SEARCH", "RETURN", "(MIN MAX ALL)", "DELETED").endswith(b")")
    typ, data = imap.search(None, "FLAGGED")
    assert typ == "OK" and data == [b"1 2 5"]
    imap.logout()
