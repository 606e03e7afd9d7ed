"""
Small helpers around the standard library clients for integration tests.
"""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

from mailsrv.testing.server import RunningServer


def clientContext(
    minimum: Optional[ssl.TLSVersion] = None, maximum: Optional[ssl.TLSVersion] = None, legacy: bool = False
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if legacy:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def waitFor(condition: Callable[[], object], timeout: float = 20.0) -> None:
    """
    Poll C{condition} until it holds; fail the test after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def token(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def message(subject: str, sender: str = "sender@remote.test", to: str = "alice@example.test", body: str = "Hello.\r\n") -> bytes:
    return (
        f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@test>\r\n\r\n{body}"
    ).encode("utf-8")


def maildirFiles(server: RunningServer, address: str, needle: str) -> list[Path]:
    """
    Message files in the account's INBOX (new/ and cur/) containing C{needle}.
    """
    root = server.maildir(address)
    found = []
    for sub in ("new", "cur"):
        d = root / sub
        if d.is_dir():
            for p in d.iterdir():
                if needle.encode() in p.read_bytes():
                    found.append(p)
    return found


class Line:
    """
    A raw line-oriented connection, for checks the stdlib clients hide.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", tls: bool = False) -> None:
        self.sock: socket.socket = socket.create_connection((host, port), timeout=10)
        if tls:
            self.sock = clientContext().wrap_socket(self.sock)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readline(self, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def smtpReply(self) -> bytes:
        out = b""
        while True:
            line = self.readline()
            out += line
            if line[3:4] != b"-":
                return out

    def silence(self, wait: float = 1.0) -> bytes:
        """
        Whatever arrives within C{wait} seconds (b"" if nothing).
        """
        if self.buf:
            data, self.buf = self.buf, b""
            return data
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return b""

    def startTLS(self) -> None:
        assert not self.buf, self.buf
        self.sock = clientContext().wrap_socket(self.sock)

    def close(self) -> None:
        self.sock.close()
