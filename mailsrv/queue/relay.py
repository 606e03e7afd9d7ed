# -*- test-case-name: tests.queue.test_scheduler -*-
"""
One delivery attempt of a queued message to its remaining recipients:
grouped by destination (recipient domain, or the relay host for all of
them), one connection per group carrying all its recipients, a bounded
number of connections per destination at once, MX hosts tried in
preference order and each of their addresses in turn.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from twisted.internet import defer, protocol, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IResolver
from twisted.logger import Logger

from mailsrv.config.schema import DeliveryConfig, RelayConfig
from mailsrv.errors import MailError
from mailsrv.queue.client import ClientOptions, HostFailure, ReplyReader, sendMessage
from mailsrv.queue.mx import NullMX, hostAddresses, mxHosts
from mailsrv.queue.spool import QueueEntry

# Recipients per SMTP transaction (RFC 5321 section 4.5.3.1.8 minimum).
MAX_RECIPIENTS_PER_TRANSACTION = 100

DELIVERED, TEMPORARY, PERMANENT = "delivered", "temporary", "permanent"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """
    What became of one recipient in one attempt.

    @ivar status: RFC 3463 enhanced status code.
    @ivar diagnostic: the server's reply, or our own reason.
    @ivar remoteMta: the server that answered, if one did.
    @ivar relay: C{name[address]:port} of the server the conversation was
        with (Postfix's C{relay=}), or C{none} when none was reached.
    @ivar tlsVersion: the TLS version of that conversation, or C{""}.
    @ivar tlsVerified: whether its certificate and name were verified.
    """

    address: str
    kind: str
    status: str
    diagnostic: str
    remoteMta: str = ""
    relay: str = "none"
    tlsVersion: str = ""
    tlsVerified: bool = False


# Connect to (address, port), with an optional TLS client creator for
# implicit TLS; fires with the connected ReplyReader.
Connector = Callable[[str, int, Any], "defer.Deferred[ReplyReader]"]


class _ReaderFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, clock: Any, timeout: float) -> None:
        self.clock = clock
        self.timeout = timeout

    def buildProtocol(self, addr: Any) -> ReplyReader:
        return ReplyReader(self.clock, self.timeout)


def tcpConnector(reactor: Any, delivery: DeliveryConfig) -> Connector:
    """
    Connections to IP addresses only: names were resolved through the
    injected resolver, so the reactor's own resolver is never used.
    """

    def connect(address: str, port: int, tlsCreator: Any) -> "defer.Deferred[ReplyReader]":
        version = ipaddress.ip_address(address).version
        endpointType = TCP6ClientEndpoint if version == 6 else TCP4ClientEndpoint
        endpoint: Any = endpointType(reactor, address, port, timeout=delivery.connectTimeout)
        if tlsCreator is not None:
            endpoint = wrapClientTLS(tlsCreator, endpoint)
        return endpoint.connect(_ReaderFactory(reactor, delivery.commandTimeout))

    return connect


def relayTLSCreator(relay: RelayConfig) -> Any:
    """
    The client TLS settings for the relay host: verifying its certificate
    and name unless C{verify = false}.
    """
    assert relay.host is not None
    if not relay.verify:
        return ssl.CertificateOptions()
    trustRoot: Any = None
    if relay.caFile is not None:
        trustRoot = ssl.Certificate.loadPEM(relay.caFile.read_bytes())
    return ssl.optionsForClientTLS(relay.host, trustRoot=trustRoot)


class MXDeliverer:
    """
    @param connect: how to open connections (loopback fakes in tests).
    @param relay: deliver everything to this relay host instead of MX.
    """

    log = Logger()

    def __init__(
        self,
        resolver: IResolver,
        connect: Connector,
        heloName: str,
        delivery: DeliveryConfig,
        perDestination: int = 4,
        relay: Optional[RelayConfig] = None,
        dnsTimeout: float = 10.0,
    ) -> None:
        self.resolver = resolver
        self.connect = connect
        self.heloName = heloName
        self.delivery = delivery
        self.perDestination = perDestination
        self.relay = relay if relay is not None and relay.host else None
        self.dnsTimeout = dnsTimeout
        self._limits: dict[str, defer.DeferredSemaphore] = {}
        self._opportunistic = ssl.CertificateOptions()
        self._relayCreator = relayTLSCreator(self.relay) if self.relay is not None else None

    async def deliver(
        self, entry: QueueEntry, recipients: Sequence[str], messagePath: Path, context: dict[str, Any]
    ) -> list[Outcome]:
        groups: dict[str, list[str]] = {}
        for r in recipients:
            key = "(relay)" if self.relay is not None else r.rpartition("@")[2].lower()
            groups.setdefault(key, []).append(r)
        batches = []
        for destination, members in groups.items():
            for i in range(0, len(members), MAX_RECIPIENTS_PER_TRANSACTION):
                batches.append((destination, members[i : i + MAX_RECIPIENTS_PER_TRANSACTION]))
        results = await defer.gatherResults(
            [
                defer.Deferred.fromCoroutine(self._limited(destination, batch, entry, messagePath, context))
                for destination, batch in batches
            ],
            consumeErrors=True,
        )
        return [o for outcomes in results for o in outcomes]

    async def _limited(
        self, destination: str, batch: list[str], entry: QueueEntry, path: Path, context: dict[str, Any]
    ) -> list[Outcome]:
        limit = self._limits.setdefault(destination, defer.DeferredSemaphore(self.perDestination))
        await limit.acquire()
        try:
            return await self._deliverBatch(destination, batch, entry, path, context)
        except Exception as e:
            self.log.failure("Delivery to {destination} failed unexpectedly", destination=destination, **context)
            return [Outcome(r, TEMPORARY, "4.3.0", f"local error: {type(e).__name__}") for r in batch]
        finally:
            limit.release()

    async def _hosts(self, destination: str) -> list[tuple[str, int]]:
        if self.relay is not None:
            assert self.relay.host is not None
            return [(self.relay.host, self.relay.effectivePort)]
        return [(h.name, self.delivery.mxPort) for h in await mxHosts(self.resolver, destination, self.dnsTimeout)]

    def _options(self) -> tuple[ClientOptions, Any]:
        """
        The session options and the implicit-TLS creator (or L{None}).
        """
        if self.relay is None:
            return ClientOptions(heloName=self.heloName, startTLS=self._opportunistic), None
        implicit = self.relay.tls == "implicit"
        options = ClientOptions(
            heloName=self.heloName,
            startTLS=None if implicit else self._relayCreator,
            requireTLS=not implicit,
            implicitTLS=implicit,
            username=self.relay.username,
            password=self.relay.password,
            verifiesTLS=self.relay.verify,
        )
        return options, self._relayCreator if implicit else None

    async def _deliverBatch(
        self, destination: str, batch: list[str], entry: QueueEntry, path: Path, context: dict[str, Any]
    ) -> list[Outcome]:
        def everyone(kind: str, status: str, diagnostic: str, mta: str = "", relay: str = "none") -> list[Outcome]:
            return [Outcome(r, kind, status, diagnostic, mta, relay) for r in batch]

        try:
            hosts = await self._hosts(destination)
        except NullMX:
            return everyone(PERMANENT, "5.1.10", f"556 5.1.10 Domain {destination} does not accept mail (null MX)")
        except MailError as e:
            if e.temporary:
                return everyone(TEMPORARY, "4.4.3", e.message)
            return everyone(PERMANENT, "5.1.2", e.message)
        options, implicitCreator = self._options()
        lastError = f"no reachable mail server for {destination}"
        # The last server that answered at all, for the attempt's log line.
        lastPeer = "none"
        for name, port in hosts:
            try:
                addresses = await hostAddresses(self.resolver, name, self.dnsTimeout)
            except MailError as e:
                lastError = e.message
                continue
            if not addresses:
                lastError = f"no address for {name}"
                continue
            for address in addresses:
                peer = f"{name}[{address}]:{port}"
                try:
                    reader = await self.connect(address, port, implicitCreator)
                except Exception as e:
                    lastError = f"connect to {peer} failed: {e.__class__.__name__}"
                    self.log.info("Connect to {peer} failed: {error}", peer=peer, error=str(e)[:200], **context)
                    continue
                try:
                    results = await sendMessage(
                        reader, options, entry.sender, batch, entry.mailParams, path, entry.size, peer, context
                    )
                except HostFailure as e:
                    lastError = e.diagnostic
                    lastPeer = peer
                    self.log.info("{peer}: {error}; trying the next server", peer=peer, error=e.diagnostic, **context)
                    continue
                # One line per recipient and attempt is logged by the
                # scheduler, which knows the attempt number and the outcome.
                tlsVersion = reader.tls.version if reader.tls is not None else ""
                outcomes = []
                for res in results:
                    code = res.reply.code
                    kind = DELIVERED if 200 <= code < 300 else PERMANENT if 500 <= code < 600 else TEMPORARY
                    outcomes.append(
                        Outcome(
                            res.address,
                            kind,
                            res.reply.status,
                            str(res.reply),
                            name,
                            relay=peer,
                            tlsVersion=tlsVersion,
                            tlsVerified=bool(tlsVersion) and options.verifiesTLS,
                        )
                    )
                return outcomes
        return everyone(TEMPORARY, "4.4.1", lastError, relay=lastPeer)
