# -*- test-case-name: tests.integration.test_imap_encapsulated -*-
"""
Sections of a C{message/rfc822} part (RFC 3501 section 6.4.5) over a real
loopback socket with C{imaplib}: C{BODY[n.HEADER]}, C{BODY[n.TEXT]} and
C{BODY[n.HEADER.FIELDS (...)]} name the encapsulated message's header and
text, C{BODY[n.MIME]} the part's own MIME header, C{BODY[n]} the whole
encapsulated message; checked against the stdlib parser of the same bytes.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import re
from typing import Iterator

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import clientContext

PASSWORD = "secret"
USER = "encap@example.test"

INNER_HEADER = (
    b"From: inner@example.test\r\n"
    b"To: someone@example.test\r\n"
    b"Subject: the forwarded one\r\n"
    b"Message-ID: <inner@example.test>\r\n"
    b"\r\n"
)
INNER_TEXT = b"Inner body line one.\r\nInner body line two.\r\n"
PART_MIME = b"Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
MESSAGE = (
    b"From: outer@example.test\r\n"
    b"To: " + USER.encode() + b"\r\n"
    b"Subject: forwarding\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"See the attached message.\r\n"
    b"--b1\r\n" + PART_MIME + INNER_HEADER + INNER_TEXT + b"--b1--\r\n"
)


@pytest.fixture(scope="module")
def imapServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = RunningServer(tmp_path_factory.mktemp("encap"), endpoints=("imaps",))
    srv.addUser(USER, PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def fetchSection(imap: imaplib.IMAP4, section: str) -> bytes:
    typ, data = imap.uid("FETCH", "1", f"(BODY.PEEK[{section}])")
    assert typ == "OK", data
    assert isinstance(data[0], tuple), data
    assert re.search(rb"BODY\[" + re.escape(section.encode()) + rb"\] \{", data[0][0], re.IGNORECASE), data[0][0]
    return bytes(data[0][1])


def test_sectionsOfMessagePart(imapServer: RunningServer) -> None:
    imap = imaplib.IMAP4_SSL("127.0.0.1", imapServer.ports["imaps"], ssl_context=clientContext())
    try:
        imap.login(USER, PASSWORD)
        typ, data = imap.append("INBOX", None, None, MESSAGE)
        assert typ == "OK", data
        imap.select("INBOX")

        forwarded = email.message_from_bytes(MESSAGE, policy=email.policy.compat32).get_payload(1)
        inner = forwarded.get_payload(0)
        assert inner["Subject"] == "the forwarded one"
        assert inner.get_payload().encode() == INNER_TEXT[:-2]

        # The CRLF before a boundary belongs to the boundary (RFC 2046
        # section 5.1.1), so the part ends without it.
        text = INNER_TEXT[:-2]
        assert fetchSection(imap, "2.HEADER") == INNER_HEADER
        assert fetchSection(imap, "2.TEXT") == text
        assert fetchSection(imap, "2.MIME") == PART_MIME
        assert fetchSection(imap, "2") == INNER_HEADER + text
        assert fetchSection(imap, "2.HEADER.FIELDS (SUBJECT)") == b"Subject: the forwarded one\r\n\r\n"
        # The inner message is not multipart: its one part is its text.
        assert fetchSection(imap, "2.1") == text
        # A text part has no HEADER of its own to name here.
        assert fetchSection(imap, "1.MIME") == b"Content-Type: text/plain\r\n\r\n"
        assert fetchSection(imap, "HEADER.FIELDS (SUBJECT)") == b"Subject: forwarding\r\n\r\n"
    finally:
        imap.logout()
