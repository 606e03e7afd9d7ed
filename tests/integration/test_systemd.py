"""
systemd readiness notification (Type=notify) from a real server process.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from mailsrv import systemd
from mailsrv.testing.server import RunningServer


def receive(sock: socket.socket, wanted: bytes, timeout: float = 20) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while wanted not in got:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        got.append(sock.recv(4096))
    return got


def test_ready_reloading_stopping(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """
    The server says READY=1 once its ports are bound, RELOADING=1 then
    READY=1 around a SIGHUP reload, and STOPPING=1 when stopped.
    """
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    server = RunningServer(tmp_path / "srv", endpoints=("smtp",))
    try:
        server.start()
        assert b"READY=1" in receive(sock, b"READY=1")
        assert server.process is not None
        socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=5).close()
        os.kill(server.process.pid, signal.SIGHUP)
        messages = receive(sock, b"RELOADING=1")
        assert b"READY=1" in messages + receive(sock, b"READY=1")
        server.stop()
        assert b"STOPPING=1" in receive(sock, b"STOPPING=1")
    finally:
        server.stop()
        sock.close()


def test_notify_without_socket_does_nothing() -> None:
    """
    Outside systemd (no NOTIFY_SOCKET) nothing is sent and nothing fails.
    """
    assert systemd.notify("READY=1", environ={}) is False
