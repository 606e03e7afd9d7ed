"""
systemd socket activation over real sockets: the test plays systemd.  It
binds the listening sockets itself, starts C{twistd mailsrv} with them as
descriptors 3, 4, ... and C{LISTEN_FDS}, C{LISTEN_FDNAMES} and
C{LISTEN_PID} set as sd_listen_fds(3) describes (by a small wrapper that
execs twistd, so the PID is the server's own), waits for C{READY=1} on a
C{NOTIFY_SOCKET}, then talks SMTP and IMAP over the inherited sockets.
"""

from __future__ import annotations

import imaplib
import os
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from mailsrv.config.load import parseConfig
from mailsrv.ops.doctor import Status, probeEndpoint
from mailsrv.testing.server import TWISTD, RunningServer
from tests.integration.clients import clientContext, maildirFiles, message, token
from tests.integration.conftest import PASSWORD

ALICE = "alice@example.test"

# What systemd does between fork and exec: the sockets moved to 3, 4, ...,
# LISTEN_PID set to the process's own PID (or to the one given), exec.
# argv: descriptors (comma-separated), LISTEN_PID or "self", the command.
EXEC_WITH_SOCKETS = """
import os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
for i, fd in enumerate(fds):
    os.dup2(fd, 3 + i)
for fd in fds:
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid()) if sys.argv[2] == "self" else sys.argv[2]
os.execv(sys.argv[3], sys.argv[3:])
"""


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class SocketActivatedServer(RunningServer):
    """
    A mailsrv whose endpoints listen on C{systemd:NAME} sockets bound here.

    @param sockets: endpoint name -> loopback address to bind for it
        (the socket is passed under the endpoint's name).
    @param missing: endpoint names configured as systemd sockets but not
        passed.
    """

    def __init__(
        self, root: Path, sockets: dict[str, str], missing: tuple[str, ...] = (), extra: tuple[str, ...] = ()
    ) -> None:
        super().__init__(root, endpoints=())
        self.sockets: dict[str, socket.socket] = {}
        self.ports = {}
        for name, host in [*sockets.items(), *((n, "127.0.0.1") for n in extra)]:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            s.listen(16)
            self.sockets[name] = s
            self.ports[name] = s.getsockname()[1]
        tables = "".join(f'[endpoints.{name}]\nlisten = ["systemd:{name}"]\n\n' for name in [*sockets, *missing])
        self.configFile.write_text(self.configFile.read_text() + tables)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notifyPath = str(root / "notify.sock")
        self.notify.bind(self.notifyPath)

    def launch(self, listenPid: str = "self") -> None:
        """
        Start twistd the way systemd does: the sockets as descriptors 3, 4,
        ... in LISTEN_FDNAMES order, LISTEN_PID set to the server's PID
        (the wrapper's, which execs twistd).
        """
        names = list(self.sockets)
        # High descriptors first, so moving them to 3, 4, ... never
        # overwrites one not yet moved.
        high = [os.dup2(self.sockets[name].fileno(), 200 + i) for i, name in enumerate(names)]
        env = {
            **self.environment(),
            "LISTEN_FDS": str(len(names)),
            "LISTEN_FDNAMES": ":".join(names),
            "NOTIFY_SOCKET": self.notifyPath,
        }
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", EXEC_WITH_SOCKETS, ",".join(map(str, high)), listenPid,
                 *TWISTD, "--nodaemon", "--pidfile=", "--logfile=-", "mailsrv", "--config", str(self.configFile)],
                stdout=self.openLog(),
                stderr=subprocess.STDOUT,
                cwd=str(self.root),
                env=env,
                pass_fds=high,
            )
        finally:
            for fd in high:
                os.close(fd)
        # Like systemd, keep the sockets open: they outlive the server.

    def waitReady(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"mailsrv exited with {self.process.returncode}:\n{self.log()}")
            self.notify.settimeout(0.2)
            try:
                if b"READY=1" in self.notify.recv(4096):
                    return
            except socket.timeout:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mailsrv did not say READY=1:\n{self.log()}")

    def close(self) -> None:
        self.stop()
        for s in self.sockets.values():
            s.close()
        self.notify.close()


@pytest.fixture
def activated(tmp_path: Path) -> Iterator[SocketActivatedServer]:
    sockets = {"smtp": "127.0.0.1", "imaps": "127.0.0.1"}
    if _ipv6():
        sockets["submission"] = "::1"
    srv = SocketActivatedServer(tmp_path, sockets, extra=("spare",))
    srv.addUser(ALICE, PASSWORD)
    try:
        srv.launch()
        srv.waitReady()
        yield srv
    finally:
        srv.close()


def test_smtp_and_imap_over_inherited_sockets(activated: SocketActivatedServer) -> None:
    """
    Mail sent over the inherited smtp socket is read over the inherited
    imaps socket; the server bound nothing itself, logged the real client
    address, and warned about the passed socket no endpoint uses.
    """
    subject = token("activated")
    with smtplib.SMTP("127.0.0.1", activated.ports["smtp"], timeout=20) as smtp:
        smtp.sendmail("sender@remote.test", [ALICE], message(subject))
    assert maildirFiles(activated, ALICE, subject)
    with imaplib.IMAP4_SSL("127.0.0.1", activated.ports["imaps"], ssl_context=clientContext(), timeout=20) as imap:
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX")
        typ, data = imap.search(None, "SUBJECT", subject)
        assert typ == "OK" and data[0].split()
    log = activated.log()
    assert "SMTP connection from 127.0.0.1 on smtp" in log
    assert "Endpoint smtp: smtp on systemd:smtp" in log
    assert "systemd passed the socket spare, which no endpoint listens on" in log
    assert activated.process is not None
    # Every listening socket of the server is one it inherited.
    listening = subprocess.run(
        ["ss", "-Hltnp"], capture_output=True, text=True, check=False
    ).stdout
    own = [line for line in listening.splitlines() if f"pid={activated.process.pid}," in line]
    assert own and all(any(f":{port} " in line for port in activated.ports.values()) for line in own), own


def test_doctor_probes_advertised_port(activated: SocketActivatedServer) -> None:
    """
    `mailsrv doctor` probes a systemd socket on loopback at the endpoint's
    advertised port (here its C{port} key), with the endpoint's TLS mode.
    """
    config = parseConfig(
        {"endpoints": {"imaps": {"listen": ["systemd:imaps"], "port": activated.ports["imaps"]}}}, "t"
    )
    check = probeEndpoint(config.endpoint("imaps"), "systemd:imaps", 10)
    assert check.status is Status.PASS, check
    assert f"127.0.0.1:{activated.ports['imaps']} imap, tls implicit" in check.detail


def test_implicit_tls_policy_on_inherited_socket(activated: SocketActivatedServer) -> None:
    """
    The imaps socket is TLS from the first byte: a plaintext client gets
    no greeting, a TLS client gets TLS 1.2 or newer and the IMAP greeting.
    """
    with socket.create_connection(("127.0.0.1", activated.ports["imaps"]), timeout=5) as plain:
        plain.sendall(b"a CAPABILITY\r\n")
        plain.settimeout(2)
        try:
            data = plain.recv(4096)
        except socket.timeout:
            data = b""
        assert not data.startswith(b"* OK")
    ctx = clientContext()
    with socket.create_connection(("127.0.0.1", activated.ports["imaps"]), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            tls.settimeout(10)
            assert tls.recv(4096).startswith(b"* OK")


@pytest.mark.skipif(not _ipv6(), reason="no IPv6 loopback")
def test_starttls_required_on_inherited_ipv6_socket(activated: SocketActivatedServer) -> None:
    """
    An IPv6 socket adopted under the same kind of name: the submission
    policy holds (no AUTH before STARTTLS, login after it).
    """
    with smtplib.SMTP("::1", activated.ports["submission"], timeout=20) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")
        assert smtp.has_extn("starttls")
        smtp.starttls(context=clientContext())
        smtp.ehlo()
        assert smtp.has_extn("auth")
        smtp.login(ALICE, PASSWORD)
    assert "SMTP connection from ::1 on submission" in activated.log()


def test_missing_socket_stops_the_start(tmp_path: Path) -> None:
    """
    An endpoint whose socket systemd did not pass stops the start with one
    line naming it and the sockets that were passed.
    """
    srv = SocketActivatedServer(tmp_path, {"smtp": "127.0.0.1"}, missing=("imaps",))
    try:
        srv.launch()
        assert srv.process is not None
        srv.process.wait(30)
        assert srv.process.returncode != 0
        assert "systemd:imaps: no socket named 'imaps' was passed by systemd (passed: smtp)" in srv.log()
        assert "Traceback" not in srv.log()
    finally:
        srv.close()


def test_not_passed_when_pid_differs(tmp_path: Path) -> None:
    """
    LISTEN_PID names another process (the variables were inherited, not
    meant for this one): no socket is adopted.
    """
    srv = SocketActivatedServer(tmp_path, {"smtp": "127.0.0.1"})
    try:
        srv.launch(listenPid="1")
        assert srv.process is not None
        srv.process.wait(30)
        assert srv.process.returncode != 0
        assert "no socket named 'smtp' was passed by systemd" in srv.log()
    finally:
        srv.close()
