# -*- test-case-name: tests.integration.test_systemd -*-
"""
systemd readiness notification (C{Type=notify}, sd_notify(3)) without
libsystemd: C{NOTIFY_SOCKET} names a datagram socket to send C{READY=1},
C{RELOADING=1} and C{STOPPING=1} to.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping, Optional

def notify(state: str, environ: Optional[Mapping[str, str]] = None) -> bool:
    """
    Tell the service manager C{state} (e.g. C{"READY=1"}).  Returns whether
    a message was sent: without C{NOTIFY_SOCKET} this does nothing.
    """
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state.encode("utf-8"))
    return True
