"""
Run a real mailsrv (C{twistd -n mailsrv}) in a subprocess on loopback
ports, for integration tests and benchmarks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from mailsrv.testing.process import Daemon

# The source tree this module was imported from: the subprocess must run the
# same code, whether mailsrv is installed or imported from a checkout.
SOURCE_ROOT = str(Path(__file__).resolve().parents[2])

TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]

ENDPOINTS = ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps")


def freePort(host: str = "127.0.0.1") -> int:
    """
    A TCP port that was free a moment ago.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def freePorts(count: int, host: str = "127.0.0.1") -> list[int]:
    """
    C{count} different TCP ports that were free a moment ago.  All are held
    at once while they are picked, so the kernel cannot hand out the same
    one twice.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _loopbackOnly(extraConfig: str) -> str:
    """
    Test servers never ask the system resolver: sender authentication (on
    by default) stays off unless the test configures it, with [dns]
    nameservers pointing at a loopback DNS server.
    """
    if "[sender_auth]" in extraConfig:
        return ""
    return "[sender_auth]\nenabled = false\n\n"


class RunningServer(Daemon):
    """
    A mailsrv process with its own data and config directories under
    C{root}, listening on free loopback ports.

    @ivar ports: endpoint name -> port.
    @ivar logger: a C{twistd --logger} observer factory (e.g.
        C{mailsrv.logs.jsonLogger}), or L{None} for twistd's text log.
    """

    logger: Optional[str] = None

    def __init__(
        self,
        root: Path,
        domain: str = "example.test",
        host: str = "127.0.0.1",
        extraConfig: str = "",
        endpoints: tuple[str, ...] = ENDPOINTS,
    ) -> None:
        self.root = root
        self.domain = domain
        self.host = host
        self.dataDir = root / "data"
        self.configDir = root / "conf"
        self.configFile = root / "mailsrv.toml"
        super().__init__(root / "mailsrv.log")
        self.ports = dict(zip(endpoints, freePorts(len(endpoints), host)))
        self.configDir.mkdir(parents=True, exist_ok=True)
        tables = "".join(
            f'[endpoints.{name}]\nlisten = ["{host}:{port}"]\n\n' for name, port in self.ports.items()
        )
        self.configFile.write_text(
            "[server]\n"
            f'hostname = "mail.{domain}"\n'
            f'domains = ["{domain}"]\n'
            f'data_dir = "{self.dataDir}"\n'
            f'config_dir = "{self.configDir}"\n\n'
            f"{extraConfig}\n{_loopbackOnly(extraConfig)}{tables}"
        )

    def mailsrv(self, *args: str, input: Optional[str] = None) -> subprocess.CompletedProcess[str]:
        """
        Run the C{mailsrv} admin command against this server's config.
        """
        return subprocess.run(
            [sys.executable, "-m", "mailsrv.cli", "--config", str(self.configFile), *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            env=self.environment(),
        )

    def environment(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": SOURCE_ROOT + (os.pathsep + path if path else ""),
        }

    def addUser(self, address: str, password: str) -> None:
        result = self.mailsrv("email", "add", address, password)
        if result.returncode != 0:
            raise RuntimeError(f"mailsrv email add failed: {result.stderr}")

    def childPids(self) -> list[int]:
        """
        The processes the server started and that are still running (its
        commit process), from C{/proc}.
        """
        if self.process is None:
            return []
        pids: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*"):
            try:
                pids.extend(int(pid) for pid in (task / "children").read_text().split())
            except OSError:
                continue
        return pids

    def maildir(self, address: str) -> Path:
        local, domain = address.split("@")
        return self.dataDir / "mail" / domain / local

    def start(self, timeout: float = 30.0) -> None:
        output = self.openLog()
        self.process = subprocess.Popen(
            [
                *TWISTD,
                "--nodaemon",
                "--pidfile=",
                "--logfile=-",
                *([f"--logger={self.logger}"] if self.logger else []),
                "mailsrv",
                "--config",
                str(self.configFile),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=str(self.root),
            env=self.environment(),
        )
        deadline = time.monotonic() + timeout
        pending = set(self.ports.values())
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(f"mailsrv exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mailsrv did not open ports {sorted(pending)}:\n{self.log()}")
            for port in list(pending):
                try:
                    socket.create_connection((self.host, port), timeout=0.5).close()
                    pending.discard(port)
                except OSError:
                    pass
            time.sleep(0.05)
