# -*- test-case-name: tests.integration.test_systemd -*-
"""
systemd integration without libsystemd: readiness notification
(C{Type=notify}, sd_notify(3)) and socket activation (sd_listen_fds(3)).

Both are plain protocols: C{NOTIFY_SOCKET} names a datagram socket to send
C{READY=1} / C{RELOADING=1} / C{STOPPING=1} to, and activated sockets are
inherited as descriptors 3, 4, ... with C{LISTEN_PID}/C{LISTEN_FDS}.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping, Optional

# sd_listen_fds(3): the first passed descriptor.
SD_LISTEN_FDS_START = 3


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


def listenFDCount(environ: Optional[Mapping[str, str]] = None) -> int:
    """
    How many sockets systemd passed to this process (0 when not activated,
    or when they were meant for another process).
    """
    env = os.environ if environ is None else environ
    try:
        if int(env.get("LISTEN_PID", "")) != os.getpid():
            return 0
        return max(0, int(env.get("LISTEN_FDS", "0")))
    except ValueError:
        return 0
