"""
Plaintext pipelined behind STARTTLS/STLS gets no reply after the handshake
(CVE-2011-0411 class), over real sockets, for SMTP, IMAP and POP3.
"""

from __future__ import annotations

from mailsrv.testing.server import RunningServer
from tests.integration.clients import Line


def test_smtp(server: RunningServer) -> None:
    """
    STARTTLS and MAIL FROM in one packet: after TLS no reply to MAIL arrives,
    and a new EHLO is needed.
    """
    c = Line(server.ports["smtp"])
    c.smtpReply()
    c.send(b"EHLO c\r\n")
    c.smtpReply()
    c.send(b"STARTTLS\r\nMAIL FROM:<x@y.test>\r\n")
    assert c.smtpReply().startswith(b"220 ")
    c.startTLS()
    assert c.silence(1.0) == b""
    c.send(b"RCPT TO:<alice@example.test>\r\n")
    assert c.smtpReply().startswith(b"503 ")
    c.close()


def test_imap(server: RunningServer) -> None:
    """
    a STARTTLS and b CAPABILITY in one packet: no b response over TLS.
    """
    c = Line(server.ports["imap"])
    c.readline()
    c.send(b"a STARTTLS\r\nb CAPABILITY\r\n")
    assert c.readline().startswith(b"a OK")
    c.startTLS()
    assert c.silence(1.0) == b""
    c.send(b"c NOOP\r\n")
    assert c.readline().startswith(b"c OK")
    c.close()


def test_pop3(server: RunningServer) -> None:
    """
    STLS and USER in one packet: no reply to USER over TLS.
    """
    c = Line(server.ports["pop3"])
    c.readline()
    c.send(b"STLS\r\nUSER alice@example.test\r\n")
    assert c.readline().startswith(b"+OK")
    c.startTLS()
    assert c.silence(1.0) == b""
    c.send(b"NOOP\r\n")
    assert c.readline().startswith(b"-ERR")  # NOOP is a TRANSACTION command: nobody logged in
    c.close()
