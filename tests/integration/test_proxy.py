"""
PROXY protocol endpoints over real loopback sockets: the address in the
header is what the connection log, the Session (and so the Received:
header) and the login log see, through STARTTLS and implicit TLS; a
connection from outside trusted_proxies is refused.
"""

from __future__ import annotations

import itertools
import time
from typing import Iterator

import pytest

from mailsrv.policy.proxy import v1Header, v2Header
from mailsrv.testing.server import RunningServer, freePorts
from tests.integration.clients import Line, maildirFiles, message, token
from tests.integration.conftest import PASSWORD

# name -> (protocol, tls, trusted_proxies)
ENDPOINTS = {
    "mx": ("smtp", "starttls", "127.0.0.1/32"),
    "subs": ("submission", "implicit", "127.0.0.0/8"),
    "imapp": ("imap", "starttls-required", "127.0.0.1"),
    "imapsp": ("imap", "implicit", "127.0.0.1"),
    "strict": ("smtp", "starttls", "127.0.0.2/32"),
}


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    ports = dict(zip(ENDPOINTS, freePorts(len(ENDPOINTS))))
    tables = "".join(
        f'[endpoints.{name}]\nprotocol = "{proto}"\ntls = "{tls}"\nlisten = ["127.0.0.1:{ports[name]}"]\n'
        f'proxy_protocol = true\ntrusted_proxies = ["{trusted}"]\n\n'
        for name, (proto, tls, trusted) in ENDPOINTS.items()
    )
    srv = RunningServer(tmp_path_factory.mktemp("proxied"), extraConfig=tables, endpoints=())
    srv.ports.update(ports)
    srv.addUser("alice@example.test", PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


_clientAddresses = itertools.chain(
    (f"203.0.113.{n}" for n in range(1, 255)),
    (f"198.51.100.{n}" for n in range(1, 255)),
)


def clientAddress() -> str:
    """
    A documentation address no other test in this module uses, so that a
    test's log lines can be told apart from its neighbours' on the shared
    server.  (192.0.2.0/24 is kept for addresses that must never appear.)
    """
    return next(_clientAddresses)


def waitForLog(server: RunningServer, needle: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while needle not in server.log():
        assert time.monotonic() < deadline, f"{needle!r} not logged:\n{server.log()[-3000:]}"
        time.sleep(0.05)
    return server.log()


@pytest.mark.parametrize("header", [v1Header, v2Header])
def test_smtp_behind_proxy_sees_client_through_starttls(proxied: RunningServer, header: object) -> None:
    """
    v1 and v2: the connection is logged with the proxied address, STARTTLS
    works through the wrapper, and the delivered message's Received: header
    (built from Session.peerHost) names the proxied client.
    """
    client = clientAddress()
    port = proxied.ports["mx"]
    line = Line(port)
    line.send(header(client, 40001, "127.0.0.1", port))  # type: ignore[operator]
    assert line.smtpReply().startswith(b"220 ")
    line.send(b"EHLO proxied.test\r\n")
    assert b"STARTTLS" in line.smtpReply()
    line.send(b"STARTTLS\r\n")
    assert line.smtpReply().startswith(b"220")
    line.startTLS()
    line.send(b"EHLO proxied.test\r\n")
    assert line.smtpReply().startswith(b"250")
    subject = token("proxy")
    line.send(b"MAIL FROM:<someone@remote.test>\r\n")
    assert line.smtpReply().startswith(b"250")
    line.send(b"RCPT TO:<alice@example.test>\r\n")
    assert line.smtpReply().startswith(b"250")
    line.send(b"DATA\r\n")
    assert line.smtpReply().startswith(b"354")
    line.send(message(subject) + b".\r\n")
    assert line.smtpReply().startswith(b"250")
    line.send(b"QUIT\r\n")
    line.close()
    waitForLog(proxied, f"SMTP connection from {client} on mx")
    [path] = maildirFiles(proxied, "alice@example.test", subject)
    assert f"[{client}]".encode() in path.read_bytes().split(b"\r\n\r\n")[0]


def test_implicit_tls_behind_proxy(proxied: RunningServer) -> None:
    """
    With implicit TLS the header comes first in clear, then the handshake;
    the greeting and the connection log see the proxied client.
    """
    client = clientAddress()
    port = proxied.ports["subs"]
    line = Line(port)
    line.send(v2Header(client, 40002, "127.0.0.1", port))
    line.startTLS()
    assert line.smtpReply().startswith(b"220 ")
    line.send(b"EHLO x\r\n")
    assert b"AUTH" in line.smtpReply()
    line.close()
    log = waitForLog(proxied, f"SMTP connection from {client} on subs")
    assert "SMTP connection from 127.0.0.1 on subs" not in log


@pytest.mark.parametrize("endpoint,starttls", [("imapp", True), ("imapsp", False)])
def test_imap_login_logged_with_proxied_address(proxied: RunningServer, endpoint: str, starttls: bool) -> None:
    """
    IMAP (STARTTLS and implicit) behind the proxy: logins are logged with
    the client's address, which is what failed-login throttling keys on.
    """
    client = clientAddress()
    port = proxied.ports[endpoint]
    line = Line(port)
    line.send(v1Header(client, 40003, "127.0.0.1", port))
    if starttls:
        assert line.readline().startswith(b"* OK")
        line.send(b"a STARTTLS\r\n")
        assert line.readline().startswith(b"a OK")
    line.startTLS()
    if not starttls:
        assert line.readline().startswith(b"* OK")
    line.send(f'b LOGIN alice@example.test "{PASSWORD}"\r\n'.encode())
    reply = line.readline()
    while reply.startswith(b"*"):
        reply = line.readline()
    assert reply.startswith(b"b OK"), reply
    line.send(b"c LOGIN alice@example.test wrong\r\n")
    line.close()
    waitForLog(proxied, f"IMAP login success for alice@example.test (LOGIN) from {client} on {endpoint}")


def test_untrusted_source_refused(proxied: RunningServer) -> None:
    """
    A connection from 127.0.0.1 to an endpoint that trusts only 127.0.0.2
    is closed without a greeting even though it sends a valid header, and
    the refusal is logged with the real source.
    """
    port = proxied.ports["strict"]
    try:
        line = Line(port)
        try:
            line.send(v1Header("192.0.2.99", 40004, "127.0.0.1", port) + b"EHLO x\r\n")
            assert line.silence(3.0) == b""
        finally:
            line.close()
    except ConnectionError:
        pass  # reset (the server aborts at once, even during connect): refused as well
    log = waitForLog(proxied, "PROXY connection from 127.0.0.1 on strict refused: not a trusted proxy")
    assert "192.0.2.99" not in log


def test_no_header_refused(proxied: RunningServer) -> None:
    """
    A trusted source that starts talking SMTP without a header gets nothing
    back and is disconnected.
    """
    line = Line(proxied.ports["mx"])
    try:
        line.send(b"EHLO not-a-proxy\r\n")
        assert line.silence(3.0) == b""
    except ConnectionError:
        pass  # reset: refused as well
    finally:
        line.close()
    waitForLog(proxied, "on mx refused: no PROXY header")
