# -*- test-case-name: tests.filters.test_clamav -*-
"""
A real clamd (Debian C{clamav-daemon}) for tests, on a free loopback TCP
port and a UNIX socket, with a one-signature database of our own that
detects the EICAR test string.

The official EICAR detection lives in C{daily.cvd}, which only freshclam
downloads; tests run offline, so the database here is an C{.ndb} body
signature (hex of the EICAR string, any file type) written by the fixture.
clamd reports it as C{Mailsrv.Test.EICAR.UNOFFICIAL}.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

from mailsrv.testing.process import Daemon
from mailsrv.testing.server import freePort

# The EICAR anti-virus test file (eicar.org), assembled from two halves so
# that this source file itself does not look infected to a scanner.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR" + b"-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

SIGNATURE = "Mailsrv.Test.EICAR"
REPORTED = SIGNATURE + ".UNOFFICIAL"


def clamdBinary() -> Optional[str]:
    """
    The clamd program, also where C{/usr/sbin} is not on C{PATH}.
    """
    return shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin:/usr/local/sbin")


class ClamdProcess(Daemon):
    """
    clamd in the foreground, its files under C{workdir}.

    @ivar port: the loopback TCP port, once started.
    @ivar socketPath: the UNIX socket.
    """

    def __init__(self, workdir: Path, streamMaxLength: int = 1024 * 1024) -> None:
        self.workdir = workdir
        self.streamMaxLength = streamMaxLength
        self.port = 0
        self.socketPath = workdir / "clamd.sock"
        super().__init__(workdir / "clamd.log")

    def start(self, timeout: float = 60.0) -> None:
        binary = clamdBinary()
        if binary is None:
            raise FileNotFoundError("clamd not installed (Debian package clamav-daemon)")
        db = self.workdir / "db"
        db.mkdir(parents=True, exist_ok=True)
        (db / "mailsrv-test.ndb").write_text(f"{SIGNATURE}:0:*:{EICAR.hex()}\n")
        self.port = freePort()
        config = self.workdir / "clamd.conf"
        config.write_text(
            "Foreground yes\n"
            f"DatabaseDirectory {db}\n"
            f"LocalSocket {self.socketPath}\n"
            "TCPAddr 127.0.0.1\n"
            f"TCPSocket {self.port}\n"
            f"StreamMaxLength {self.streamMaxLength}\n"
            f"LogFile {self.logFile}\n"
            "LogTime yes\n"
            f"PidFile {self.workdir / 'clamd.pid'}\n"
            f"TemporaryDirectory {self.workdir}\n"
            "SelfCheck 0\n"
        )
        self.process = subprocess.Popen(
            [binary, "--config-file", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"clamd exited with {self.process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"zPING\0")
                    if s.recv(16).startswith(b"PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"clamd did not start:\n{self.log()}")
            time.sleep(0.1)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"
