# -*- test-case-name: tests.integration.test_connection_limits -*-
"""
Connection hygiene over real loopback sockets with small configured limits:
IMAP and POP3 connection caps per client address, the cap on logged-in
sessions per account and address (imaplib, poplib), the IMAP login
deadline, configurable idle timeouts, and one slow-loris client per
protocol (a command one octet a second) closed after C{command_timeout}
with the protocol's timeout reply; SMTP DATA below C{min_data_rate} is cut
off too.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import ssl
import time
from typing import Iterator

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import clientContext

ALICE = "alice@example.test"
PASSWORD = "secret"
COMMAND_TIMEOUT = 3
LOGIN_TIMEOUT = 6
IDLE_TIMEOUT = 4

CONFIG = f"""
[limits]
command_timeout = {COMMAND_TIMEOUT}
data_timeout = 3
min_data_rate = 100
login_timeout = {LOGIN_TIMEOUT}
imap_idle_timeout = {IDLE_TIMEOUT}
pop3_idle_timeout = {IDLE_TIMEOUT}
imap_max_connections_per_ip = 3
pop3_max_connections_per_ip = 3
max_connections_per_user_ip = 1
connection_limit_exceptions = []
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = RunningServer(
        tmp_path_factory.mktemp("limits"),
        extraConfig=CONFIG,
        endpoints=("smtp", "submissions", "imap", "imaps", "pop3", "pop3s"),
    )
    srv.addUser(ALICE, PASSWORD)
    srv.addUser("bob@example.test", PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def tlsSocket(server: RunningServer, endpoint: str) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.ports[endpoint]), timeout=10)
    return clientContext().wrap_socket(raw)


def readAll(sock: socket.socket, timeout: float = 15.0) -> bytes:
    """
    Everything the server sends until it closes (or C{timeout}).
    """
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
    except (socket.timeout, ConnectionError, ssl.SSLError):
        return data


def waitForSlots(server: RunningServer, endpoint: str, greeting: bytes) -> None:
    """
    Connections closed by an earlier test are released once the server
    noticed; wait until a new one is greeted.
    """
    for _ in range(50):
        with tlsSocket(server, endpoint) as s:
            s.settimeout(5)
            if s.recv(100).startswith(greeting):
                return
        time.sleep(0.1)
    raise AssertionError(f"{endpoint}: no free slot")


@pytest.mark.parametrize(
    "endpoint, greeting, refusal",
    [
        ("imaps", b"* OK", b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n"),
        ("pop3s", b"+OK", b"-ERR [SYS/TEMP] Too many connections, try again later.\r\n"),
    ],
)
def test_perAddressCap(server: RunningServer, endpoint: str, greeting: bytes, refusal: bytes) -> None:
    """
    With C{*_max_connections_per_ip = 3} the fourth connection from
    127.0.0.1 is refused instead of greeted and closed; once one of the
    three closes, a new one is served.
    """
    waitForSlots(server, endpoint, greeting)
    held = [tlsSocket(server, endpoint) for _ in range(3)]
    try:
        for s in held:
            assert s.recv(100).startswith(greeting)
        with tlsSocket(server, endpoint) as extra:
            assert readAll(extra) == refusal
        held.pop().close()
        waitForSlots(server, endpoint, greeting)
    finally:
        for s in held:
            s.close()


def test_imapUserAddressCap(server: RunningServer) -> None:
    """
    With C{max_connections_per_user_ip = 1} a second imaplib login of
    alice from the same address gets C{NO [LIMIT]} (Dovecot's text) and
    is disconnected; bob logs in meanwhile; after alice's LOGOUT she
    can log in again.
    """
    waitForSlots(server, "imaps", b"* OK")
    first = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext())
    first.login(ALICE, PASSWORD)
    second = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext())
    with pytest.raises(imaplib.IMAP4.error) as refused:
        second.login(ALICE, PASSWORD)
    assert "[LIMIT] Maximum number of connections from user+IP exceeded" in str(refused.value)
    other = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext())
    other.login("bob@example.test", PASSWORD)
    other.logout()
    first.logout()
    deadline = time.monotonic() + 5
    while True:
        again = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext())
        try:
            again.login(ALICE, PASSWORD)
            break
        except imaplib.IMAP4.error:
            assert time.monotonic() < deadline  # the LOGOUT's close not yet seen
            time.sleep(0.1)
    again.logout()


def test_pop3UserAddressCap(server: RunningServer) -> None:
    """
    A second poplib login of alice from the same address gets C{-ERR
    [IN-USE]} with the user+IP message (before the maildrop lock would
    refuse it).
    """
    waitForSlots(server, "pop3s", b"+OK")
    first = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=clientContext())
    first.user(ALICE)
    first.pass_(PASSWORD)
    second = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=clientContext())
    second.user(ALICE)
    with pytest.raises(poplib.error_proto) as refused:
        second.pass_(PASSWORD)
    assert b"[IN-USE] Maximum number of connections from user+IP exceeded" in refused.value.args[0]
    first.quit()


@pytest.mark.parametrize(
    "endpoint, line, reply",
    [
        ("smtp", b"EHLO slowloris.test\r\n", b"421 4.4.2 mail.example.test Error: timeout exceeded\r\n"),
        ("imap", b"a NOOP\r\n", b"* BYE Disconnected: command not completed in time\r\n"),
        ("pop3", b"CAPA\r\n", b"-ERR Disconnected: command not completed in time.\r\n"),
    ],
)
def test_slowLoris(server: RunningServer, endpoint: str, line: bytes, reply: bytes) -> None:
    """
    A client sending a command one octet a second is closed with the
    protocol's timeout reply C{command_timeout} seconds after its first
    octet, before finishing the line.
    """
    with socket.create_connection(("127.0.0.1", server.ports[endpoint]), timeout=10) as s:
        s.recv(4096)  # greeting
        started = time.monotonic()
        s.settimeout(1.0)
        received = b""
        try:
            for i in range(len(line) - 1):
                s.sendall(line[i : i + 1])
                try:
                    chunk = s.recv(4096)
                except socket.timeout:
                    continue
                received += chunk
                if not chunk:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        received += readAll(s, 5)
        elapsed = time.monotonic() - started
    assert received == reply
    assert COMMAND_TIMEOUT - 0.5 <= elapsed < COMMAND_TIMEOUT + 3, elapsed


def test_imapLoginDeadline(server: RunningServer) -> None:
    """
    A client that keeps sending NOOP but never logs in is closed after
    C{login_timeout}.
    """
    with tlsSocket(server, "imaps") as s:
        s.recv(4096)
        started = time.monotonic()
        answers = b""
        s.settimeout(0.5)
        while time.monotonic() - started < LOGIN_TIMEOUT + 3:
            try:
                s.sendall(b"a NOOP\r\n")
                chunk = s.recv(4096)
            except socket.timeout:
                continue
            except (OSError, ssl.SSLError):
                break
            if not chunk:
                break
            answers += chunk
            time.sleep(1)
        elapsed = time.monotonic() - started
    assert answers.count(b"a OK NOOP completed") >= LOGIN_TIMEOUT - 2
    assert answers.endswith(b"* BYE Disconnected: login not completed in time\r\n")
    assert LOGIN_TIMEOUT - 0.5 <= elapsed < LOGIN_TIMEOUT + 2, elapsed


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_idleTimeoutAfterLogin(server: RunningServer, protocol: str) -> None:
    """
    C{imap_idle_timeout} / C{pop3_idle_timeout} close a silent logged-in
    session.
    """
    waitForSlots(server, protocol + "s", b"* OK" if protocol == "imap" else b"+OK")
    if protocol == "imap":
        client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext())
        client.login("bob@example.test", PASSWORD)
        sock = client.socket()
    else:
        client = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=clientContext())
        client.user("bob@example.test")
        client.pass_(PASSWORD)
        sock = client.sock
    started = time.monotonic()
    rest = readAll(sock, IDLE_TIMEOUT + 5)
    elapsed = time.monotonic() - started
    expected = b"* BYE Autologout; connection idle too long\r\n" if protocol == "imap" else b"-ERR Disconnected for inactivity.\r\n"
    assert rest == expected
    assert IDLE_TIMEOUT - 0.5 <= elapsed < IDLE_TIMEOUT + 2, elapsed


def test_smtpDataBelowMinimumRate(server: RunningServer) -> None:
    """
    A message body trickled at one octet a second (under C{min_data_rate =
    100}) gets 421 after about C{data_timeout}; a normal delivery still
    works.
    """
    with socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=10) as s:
        s.recv(4096)
        s.sendall(b"EHLO c\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        replies = b""
        while b"354 " not in replies:
            replies += s.recv(4096)
        started = time.monotonic()
        s.settimeout(1.0)
        closing = b""
        for _ in range(10):
            try:
                s.sendall(b"x")
                closing += s.recv(4096)
                break
            except socket.timeout:
                continue
            except OSError:
                break
        elapsed = time.monotonic() - started
    assert closing.startswith(b"421 4.4.2 "), closing
    assert 2.5 <= elapsed < 6, elapsed
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("s@remote.test", [ALICE], b"Subject: ok\r\n\r\nfine\r\n")


def test_timeoutClosesImplicitTLS(server: RunningServer) -> None:
    """
    A silent client on an implicit-TLS SMTP port gets 421 after
    C{command_timeout} and the connection is closed then, not when the
    client leaves (TLS shutdown used to wait for the protocol, registered as
    the transport's producer).
    """
    with tlsSocket(server, "submissions") as s:
        s.settimeout(5)
        assert s.recv(4096).startswith(b"220 ")
        started = time.monotonic()
        rest = readAll(s, COMMAND_TIMEOUT + 5)
        elapsed = time.monotonic() - started
    assert rest == b"421 4.4.2 mail.example.test Error: timeout exceeded\r\n"
    assert elapsed < COMMAND_TIMEOUT + 2, elapsed
