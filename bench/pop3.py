"""
POP3 on a 1,000-message maildrop over implicit TLS (C{pop3s}): login, STAT,
UIDL, and RETR of every message one after another (no pipelining, as
fetchmail and most clients do), then QUIT without deleting.

The maildrop is written straight into the Maildir's C{new/} before the
first session, as a migration or an external MDA would leave it; the first
session (which makes each server index the folder) is reported apart from
the warm ones.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any

from bench.common import HIGHER, INFO, LOWER, clearMaildir, clientContext, makeMessage, metric
from bench.target import Target

FULL = 1000
QUICK = 50
MESSAGE_SIZE = 4096
WARM_SESSIONS = 2


class POP3Client:
    """
    A raw POP3 client: a Python line reader (poplib) would cost more CPU
    than the servers it measures.
    """

    def __init__(self, host: str, port: int) -> None:
        sock = socket.create_connection((host, port), timeout=60)
        self.sock = clientContext().wrap_socket(sock)
        self.buf = b""
        self.status()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def status(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        if not line.startswith(b"+OK"):
            raise RuntimeError(f"POP3 error: {line!r}")
        return line

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.status()

    def multiline(self, line: bytes) -> bytes:
        """
        The dot-stuffed body of a multi-line reply (terminator removed).
        """
        self.command(line)
        start = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                end = 0
                break
            end = self.buf.find(b"\r\n.\r\n", start)
            if end >= 0:
                end += 2
                break
            start = max(0, len(self.buf) - 4)
            self._fill()
        body, self.buf = self.buf[:end], self.buf[end + 3 :]
        return body

    def close(self) -> None:
        try:
            self.command(b"QUIT")
        finally:
            self.sock.close()


def fill(target: Target, count: int) -> int:
    """
    Put C{count} 4 KB messages into the maildrop's C{new/}.

    @return: their total size in octets (CRLF).
    """
    maildir = target.maildir(target.otherUser)
    clearMaildir(maildir)
    new = maildir / "new"
    total = 0
    stamp = int(time.time())
    tag = uuid.uuid4().hex[:8]
    for i in range(count):
        data = makeMessage(MESSAGE_SIZE, f"pop-{tag}-{i}", "sender@remote.example.net", target.otherUser)
        path = new / f"{stamp}.M{i}P{os.getpid()}.bench{tag}"
        path.write_bytes(data)
        if target.owner is not None:
            os.chown(path, *target.owner)
        total += len(data)
    return total


def session(target: Target, expected: int) -> dict[str, float]:
    t0 = time.monotonic()
    cpu0 = time.process_time()
    client = POP3Client(target.host, target.ports["pop3s"])
    client.command(f"USER {target.otherUser}".encode())
    client.command(f"PASS {target.password}".encode())
    t1 = time.monotonic()
    stat = client.command(b"STAT")
    t2 = time.monotonic()
    count = int(stat.split()[1])
    if count != expected:
        raise RuntimeError(f"STAT says {count}, expected {expected}")
    uidl = client.multiline(b"UIDL")
    t3 = time.monotonic()
    if len(uidl.splitlines()) != expected:
        raise RuntimeError(f"UIDL listed {len(uidl.splitlines())} messages")
    octets = 0
    for i in range(1, count + 1):
        octets += len(client.multiline(b"RETR %d" % i))
    t4 = time.monotonic()
    client.close()
    return {
        "login": t1 - t0,
        "stat": t2 - t1,
        "uidl": t3 - t2,
        "retr": t4 - t3,
        "octets": octets,
        "cpu": time.process_time() - cpu0,
        "wall": time.monotonic() - t0,
    }


def run(target: Target, *, quick: bool = False) -> dict[str, dict[str, Any]]:
    count = QUICK if quick else FULL
    fill(target, count)
    first = session(target, count)
    warm = [session(target, count) for _ in range(WARM_SESSIONS)]
    best = min(warm, key=lambda r: r["wall"])
    return {
        "first session (indexing) STAT": metric(1000 * (first["login"] + first["stat"]), "ms", LOWER),
        "login (USER/PASS over TLS)": metric(1000 * best["login"], "ms", LOWER),
        "STAT": metric(1000 * best["stat"], "ms", LOWER),
        "UIDL": metric(1000 * best["uidl"], "ms", LOWER),
        f"RETR x{count}": metric(best["retr"], "s", LOWER),
        "RETR rate": metric(count / best["retr"], "msg/s", HIGHER),
        "loadgen CPU": metric(100 * best["cpu"] / best["wall"], "% of a core", INFO),
    }
