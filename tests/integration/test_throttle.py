# -*- test-case-name: tests.integration.test_throttle -*-
"""
Failed-login throttling over real sockets: SMTP AUTH, IMAP LOGIN and POP3
USER/PASS against a running C{twistd mailsrv}, with clients connecting from
different loopback source addresses (127.0.0.2, 127.0.0.3...) so that one
can be banned while another is not.
"""

from __future__ import annotations

import imaplib
import json
import poplib
import smtplib
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import clientContext

ALICE = "alice@example.test"
PASSWORD = "secret"
MAX_FAILURES = 3

THROTTLE_CONFIG = f"""
[auth_throttle]
max_failures = {MAX_FAILURES}
window = 600
ban_time = 3600
"""


def _loopbackSourcesWork() -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _loopbackSourcesWork(), reason="cannot bind 127.0.0.2: this host does not route all of 127.0.0.0/8 to lo"
)


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = RunningServer(tmp_path_factory.mktemp("throttle"), extraConfig=THROTTLE_CONFIG)
    srv.addUser(ALICE, PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def smtpLogin(server: RunningServer, source: str, password: str) -> bool:
    """
    AUTH PLAIN on the implicit-TLS submission port from C{source}.
    """
    with smtplib.SMTP_SSL(
        "127.0.0.1",
        server.ports["submissions"],
        context=clientContext(),
        timeout=20,
        source_address=(source, 0),
    ) as s:
        s.ehlo("client.test")
        try:
            s.login(ALICE, password)
        except smtplib.SMTPAuthenticationError:
            return False
        return True


class _IMAP(imaplib.IMAP4_SSL):
    source = "127.0.0.1"

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout or 20, source_address=(self.source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


def imapLogin(server: RunningServer, source: str, password: str) -> bool:
    """
    IMAP LOGIN on the implicit-TLS port from C{source}.
    """
    cls = type("IMAPFrom", (_IMAP,), {"source": source})
    imap = cls("127.0.0.1", server.ports["imaps"], ssl_context=clientContext(), timeout=20)
    try:
        imap.login(ALICE, password)
    except imaplib.IMAP4.error as e:
        assert "AUTHENTICATIONFAILED" in str(e)
        return False
    finally:
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    return True


class _POP3(poplib.POP3_SSL):
    source = "127.0.0.1"

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))
        return self.context.wrap_socket(sock, server_hostname=self.host)


def popLogin(server: RunningServer, source: str, password: str) -> bool:
    """
    POP3 USER/PASS on the implicit-TLS port from C{source}.
    """
    cls = type("POP3From", (_POP3,), {"source": source})
    pop = cls("127.0.0.1", server.ports["pop3s"], context=clientContext(), timeout=20)
    try:
        pop.user(ALICE)
        pop.pass_(password)
    except poplib.error_proto:
        return False
    finally:
        try:
            pop.quit()
        except (poplib.error_proto, OSError):
            pass
    return True


Login = Callable[[RunningServer, str, str], bool]

PROTOCOLS = [
    pytest.param(smtpLogin, "127.0.0.2", "127.0.0.3", id="smtp-auth"),
    pytest.param(imapLogin, "127.0.0.4", "127.0.0.5", id="imap-login"),
    pytest.param(popLogin, "127.0.0.6", "127.0.0.7", id="pop3-user-pass"),
]


@pytest.mark.parametrize("login,attacker,bystander", PROTOCOLS)
def test_banned_after_failures_even_with_right_password(
    throttled: RunningServer, login: Login, attacker: str, bystander: str
) -> None:
    """
    After max_failures wrong passwords from one address, the right password
    from that address is refused too, while another address logs in; the
    ban shows in C{mailsrv ban list}, and C{mailsrv ban del} lifts it.
    """
    assert login(throttled, attacker, PASSWORD), "the right password works before any failure"
    for _ in range(MAX_FAILURES):
        assert not login(throttled, attacker, "wrong")
    assert not login(throttled, attacker, PASSWORD), "banned: even the right password is refused"
    assert login(throttled, bystander, PASSWORD), "another address is unaffected"

    listed = throttled.mailsrv("ban", "list")
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith(f"{attacker} until ") for line in listed.stdout.splitlines()), listed.stdout
    assert bystander not in listed.stdout

    lifted = throttled.mailsrv("ban", "del", attacker)
    assert lifted.returncode == 0, lifted.stderr
    assert login(throttled, attacker, PASSWORD), "the ban is lifted at once"
    assert throttled.mailsrv("ban", "del", attacker).returncode == 1


def test_failures_add_up_across_protocols(throttled: RunningServer) -> None:
    """
    Failures on SMTP, IMAP and POP3 from one address count together: the
    ban they cause applies to every protocol.
    """
    source = "127.0.0.8"
    assert not smtpLogin(throttled, source, "wrong")
    assert not imapLogin(throttled, source, "wrong")
    assert not popLogin(throttled, source, "wrong")
    assert not imapLogin(throttled, source, PASSWORD)
    assert not smtpLogin(throttled, source, PASSWORD)
    bans = json.loads((throttled.dataDir / "state" / "bans.json").read_text())["bans"]
    assert source in bans


def test_ban_survives_restart_and_expires(tmp_path: Path) -> None:
    """
    A ban is persisted: after a restart the address is still refused; once
    the ban time is over it may log in again.
    """
    srv = RunningServer(
        tmp_path, extraConfig="[auth_throttle]\nmax_failures = 1\nban_time = 6\n", endpoints=("imaps",)
    )
    srv.addUser(ALICE, PASSWORD)
    srv.start()
    try:
        assert not imapLogin(srv, "127.0.0.9", "wrong")
        bannedAt = time.monotonic()
        srv.stop()
        srv.start()
        assert not imapLogin(srv, "127.0.0.9", PASSWORD)
        assert imapLogin(srv, "127.0.0.10", PASSWORD)
        time.sleep(max(0.0, bannedAt + 6.5 - time.monotonic()))
        assert imapLogin(srv, "127.0.0.9", PASSWORD)
    finally:
        srv.stop()
