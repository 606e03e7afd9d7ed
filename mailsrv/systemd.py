# -*- test-case-name: tests.integration.test_systemd -*-
"""
systemd integration without libsystemd.

 - Readiness notification (C{Type=notify}, sd_notify(3)): C{NOTIFY_SOCKET}
   names a datagram socket to send C{READY=1}, C{RELOADING=1} and
   C{STOPPING=1} to.
 - Socket activation (sd_listen_fds(3)): an endpoint with
   C{listen = ["systemd:smtp"]} adopts the listening socket systemd passed
   under C{FileDescriptorName=smtp}, so the server never binds a port
   itself and needs neither root nor C{CAP_NET_BIND_SERVICE}.  The lookup
   is Twisted's C{systemd:} endpoint (which checks C{LISTEN_PID} and reads
   C{LISTEN_FDS}/C{LISTEN_FDNAMES}); the address family is read from the
   socket itself, so one name works for IPv4 and IPv6 sockets alike.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Iterable, Mapping, Optional

from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint


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


class SocketActivationError(Exception):
    """
    A C{systemd:NAME} listen spec names no usable inherited socket.  The
    message is one line for the operator.
    """


def adoptedEndpoint(reactor: Any, name: str) -> IStreamServerEndpoint:
    """
    The endpoint that adopts the listening socket systemd passed as
    C{name}.

    @raise SocketActivationError: when there is no such socket (the service
        was started without its socket units, or C{FileDescriptorName}
        differs) or it is not a listening stream socket.
    """
    try:
        # The domain is a placeholder: it is replaced below by the socket's.
        found: Any = serverFromString(reactor, f"systemd:domain=INET:name={name}")
    except KeyError:
        passed = os.environ.get("LISTEN_FDNAMES", "")
        raise SocketActivationError(
            f"no socket named {name!r} was passed by systemd "
            f"(passed: {passed.replace(':', ', ') or 'none'}); is the unit started through its "
            f"socket units, with FileDescriptorName={name}?"
        ) from None
    fileno = found.fileno
    # socket.socket(fileno=...) reads the family and type from the kernel;
    # detach() leaves the descriptor open for the reactor to adopt.
    probe = socket.socket(fileno=fileno)
    try:
        family, kind = probe.family, probe.type
        listening = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    finally:
        probe.detach()
    if kind != socket.SOCK_STREAM or not listening or family not in (socket.AF_INET, socket.AF_INET6):
        raise SocketActivationError(
            f"the socket named {name!r} is not a listening TCP socket (use ListenStream= and Accept=no)"
        )
    return AdoptedStreamServerEndpoint(reactor, fileno, family)


def unusedSocketNames(used: Iterable[str], environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """
    The names of sockets systemd passed (C{LISTEN_FDNAMES}) that no endpoint
    listens on: connections to them would wait in the backlog unanswered.
    """
    env = os.environ if environ is None else environ
    names = [n for n in env.get("LISTEN_FDNAMES", "").split(":") if n]
    return sorted(set(names) - set(used))
