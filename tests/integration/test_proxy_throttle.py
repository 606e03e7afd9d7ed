"""
Auth throttling behind a PROXY endpoint counts the proxied client address:
failed logins from one proxied client ban that client, not the proxy, so
another client behind the same proxy still logs in.
"""

from __future__ import annotations

import base64
from typing import Iterator

import pytest

from mailsrv.policy.proxy import v2Header
from mailsrv.testing.server import RunningServer, freePort
from tests.integration.clients import Line

PASSWORD = "secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    port = freePort()
    extra = (
        "[auth_throttle]\nmax_failures = 3\nwindow = 600\nban_time = 3600\n\n"
        f'[endpoints.lb]\nprotocol = "submission"\ntls = "implicit"\nlisten = ["127.0.0.1:{port}"]\n'
        'proxy_protocol = true\ntrusted_proxies = ["127.0.0.1"]\n\n'
    )
    srv = RunningServer(tmp_path_factory.mktemp("proxythrottle"), extraConfig=extra, endpoints=())
    srv.ports["lb"] = port
    srv.addUser("alice@example.test", PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def authPlain(server: RunningServer, client: str, password: str) -> bytes:
    """
    The reply to AUTH PLAIN from C{client}, through the PROXY endpoint.
    """
    port = server.ports["lb"]
    line = Line(port)
    try:
        line.send(v2Header(client, 50000, "127.0.0.1", port))
        line.startTLS()
        assert line.smtpReply().startswith(b"220")
        line.send(b"EHLO client.test\r\n")
        line.smtpReply()
        token = base64.b64encode(f"\0alice@example.test\0{password}".encode()).decode()
        line.send(f"AUTH PLAIN {token}\r\n".encode())
        return line.smtpReply()
    finally:
        line.close()


def test_ban_follows_proxied_address(server: RunningServer) -> None:
    """
    Three failures from one proxied address ban it (even the right
    password fails), while a second proxied address behind the same proxy
    (same TCP source 127.0.0.1) still authenticates.
    """
    attacker = "203.0.113.66"
    other = "203.0.113.77"
    assert authPlain(server, attacker, PASSWORD).startswith(b"235")
    for _ in range(3):
        assert authPlain(server, attacker, "wrong").startswith(b"535")
    assert not authPlain(server, attacker, PASSWORD).startswith(b"235")
    assert authPlain(server, other, PASSWORD).startswith(b"235")
    log = server.log()
    assert f"from {attacker} on lb" in log
    assert "from 127.0.0.1 on lb" not in log
