# -*- test-case-name: tests.test_pipeline -*-
"""
The one message pipeline.

Every message (from the MX port, from submission, and later from local
injection and bounces) enters through L{Pipeline}, which provides
L{IDeliveryTarget} itself: it routes each recipient (L{Router}), adds the
trace header, and hands the message to the local target and, for
authenticated senders, to the remote target.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.envelope import Address, Envelope, Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IDelivery, IDeliveryTarget
from mailsrv.pipeline.received import receivedHeader
from mailsrv.pipeline.routing import Router, RouteKind


@implementer(IDeliveryTarget)
class Pipeline:
    """
    @ivar remote: where mail for other domains goes, or L{None} while no
        outbound delivery is configured (then it is refused).
    """

    log = Logger()

    def __init__(
        self,
        router: Router,
        local: IDeliveryTarget,
        hostname: str,
        remote: Optional[IDeliveryTarget] = None,
    ) -> None:
        self.router = router
        self.local = local
        self.remote = remote
        self.hostname = hostname

    def startDelivery(self, session: Session, envelope: Envelope) -> IDelivery:
        return _PipelineDelivery(self, session, envelope)


@implementer(IDelivery)
class _PipelineDelivery:
    def __init__(self, pipeline: Pipeline, session: Session, envelope: Envelope) -> None:
        self._pipeline = pipeline
        self._session = session
        self._envelope = envelope
        self._local: Optional[IDelivery] = None
        self._remote: Optional[IDelivery] = None
        self._accounts: set[str] = set()
        self._started = False
        self._finished = False

    def _localDelivery(self) -> IDelivery:
        if self._local is None:
            self._local = self._pipeline.local.startDelivery(self._session, self._envelope)
        return self._local

    def _remoteDelivery(self) -> IDelivery:
        if self._pipeline.remote is None:
            raise MailError(ErrorKind.POLICY, "Relaying to other domains is not enabled on this server")
        if self._remote is None:
            self._remote = self._pipeline.remote.startDelivery(self._session, self._envelope)
        return self._remote

    def addRecipient(self, recipient: Address) -> "defer.Deferred[None]":
        try:
            route = self._pipeline.router.route(self._session, recipient)
            waits = []
            if route.kind is RouteKind.REMOTE or route.remote:
                remote = self._remoteDelivery()
                waits += [remote.addRecipient(r) for r in route.remote]
            for account in route.accounts:
                if account not in self._accounts:
                    self._accounts.add(account)
                    waits.append(self._localDelivery().addRecipient(Address.fromString(account)))
        except MailError as e:
            return defer.fail(e)
        return defer.gatherResults(waits, consumeErrors=True).addCallbacks(
            lambda _: None, lambda f: f.value.subFailure
        )

    def _targets(self) -> list[IDelivery]:
        return [d for d in (self._local, self._remote) if d is not None]

    def write(self, data: bytes) -> None:
        if not self._started:
            self._started = True
            trace = receivedHeader(self._session, self._envelope, self._pipeline.hostname)
            for target in self._targets():
                target.write(trace)
        for target in self._targets():
            target.write(data)

    def commit(self) -> "defer.Deferred[None]":
        self._finished = True
        if not self._started:
            self.write(b"")
        targets = self._targets()
        if not targets:
            return defer.fail(MailError(ErrorKind.PERM, "No recipients"))
        return defer.gatherResults([t.commit() for t in targets], consumeErrors=True).addCallbacks(
            lambda _: None, lambda f: f.value.subFailure
        )

    def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        for target in self._targets():
            target.abort()
