# -*- test-case-name: tests.integration.test_outbound -*-
"""
The outbound side as one service: spool, resolver, deliverer, scheduler
and the queue delivery target, built from the validated configuration.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.internet.interfaces import IResolver
from twisted.logger import Logger

from mailsrv.config.schema import Config
from mailsrv.delivery.queued import QueuedDelivery
from mailsrv.interfaces import IDeliveryTarget
from mailsrv.queue.mx import resolverFor
from mailsrv.queue.relay import Connector, MXDeliverer, tcpConnector
from mailsrv.queue.scheduler import Scheduler
from mailsrv.queue.spool import Spool


class OutboundService(Service):
    """
    @ivar target: the L{IDeliveryTarget} for the pipeline's C{remote}.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: Any,
        resolver: Optional[IResolver] = None,
        connect: Optional[Connector] = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.spool = Spool(config.server.queueDir)
        self.spool.ensureDirectories()

        def runBlocking(f: Any, *args: Any) -> "defer.Deferred[Any]":
            return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

        self.deliverer = MXDeliverer(
            resolver if resolver is not None else resolverFor(config.dns.nameservers, reactor),
            connect if connect is not None else tcpConnector(reactor, config.delivery),
            config.server.hostname,
            config.delivery,
            perDestination=config.queue.perDestination,
            relay=config.relay,
            dnsTimeout=config.dns.timeout,
        )
        self.scheduler = Scheduler(
            self.spool, self.deliverer, reactor, runBlocking, config.queue, config.server.hostname
        )
        self.target = QueuedDelivery(self.spool, self.scheduler, runBlocking, reactor.seconds)
        if config.relay.host:
            self.log.info(
                "Outbound mail goes through relay {host}:{port} ({tls})",
                host=config.relay.host,
                port=config.relay.effectivePort,
                tls=config.relay.tls,
            )

    def attachBounceTarget(self, target: IDeliveryTarget) -> None:
        """
        Where DSNs are injected: the pipeline, which exists only after this
        service (it needs L{target}).
        """
        self.scheduler.bounceTarget = target

    def startService(self) -> None:
        super().startService()
        d = defer.Deferred.fromCoroutine(self.scheduler.start())
        d.addErrback(lambda f: self.log.failure("Queue failed to start", f))

    def stopService(self) -> "defer.Deferred[None]":
        super().stopService()
        self.scheduler.stop()
        return defer.succeed(None)
