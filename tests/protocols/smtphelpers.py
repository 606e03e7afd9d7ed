"""
Shared set-up for in-memory SMTP server tests.
"""

from __future__ import annotations

import base64
from typing import Optional

from twisted.internet import task
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from zope.interface import directlyProvides

from mailsrv.config.schema import DEFAULT_ENDPOINTS, LimitsConfig
from mailsrv.policy.endpoint import EndpointPolicy
from mailsrv.policy.limits import ConnectionLimiter
from mailsrv.protocols.smtp.server import SMTPServer
from mailsrv.testing.fakes import RecordingTarget, staticPortal

USERS = {"alice@example.test": "secret"}


def policy(name: str) -> EndpointPolicy:
    return {e.name: e for e in DEFAULT_ENDPOINTS}[name]


class TLSStringTransport(StringTransport):
    """
    A StringTransport that records STARTTLS and then claims to be secure.
    """

    tlsStartedWith: object = None

    def startTLS(self, contextFactory: object) -> None:
        self.tlsStartedWith = contextFactory
        directlyProvides(self, ISSLTransport)


def plain(user: str, password: str) -> bytes:
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())


class SMTPHarness:
    def __init__(
        self,
        endpoint: str = "smtp",
        limits: Optional[LimitsConfig] = None,
        target: Optional[RecordingTarget] = None,
        implicitTLS: bool = False,
        limiter: Optional[ConnectionLimiter] = None,
    ) -> None:
        self.clock = task.Clock()
        self.target = target or RecordingTarget()
        self.portal, self.realm = staticPortal(USERS)
        self.tlsCreator = object()
        self.server = SMTPServer(
            policy(endpoint),
            self.portal,
            self.target,
            self.tlsCreator,
            "mx.example.test",
            limits or LimitsConfig(),
            self.clock,
            limiter=limiter,
        )
        self.transport = TLSStringTransport()
        if implicitTLS:
            directlyProvides(self.transport, ISSLTransport)
        self.server.makeConnection(self.transport)

    def send(self, data: bytes) -> bytes:
        """
        Feed bytes and return what the server wrote in response.
        """
        self.transport.clear()
        self.server.dataReceived(data)
        return self.transport.value()

    def lines(self, data: bytes) -> list[bytes]:
        return self.send(data).split(b"\r\n")[:-1]

    def codes(self, data: bytes) -> list[int]:
        """
        The final reply code of each reply in what the server answered.
        """
        return [int(line[:3]) for line in self.lines(data) if line[3:4] == b" "]

    def startTLS(self) -> None:
        assert self.send(b"STARTTLS\r\n").startswith(b"220 ")
        self.server.handshakeCompleted()
