# -*- test-case-name: tests.filters.test_dnsbl -*-
"""
DNS block and allow lists (DNSBL / DNSWL) checked when a client connects,
scored the way Postfix postscreen does it.

Each configured zone has a weight: a zone that lists the client adds its
weight to the client's score, and allow lists have negative weights.  A
client whose score reaches the threshold is refused before the greeting
with C{554 5.7.1}, naming the lists.  Zones are queried in parallel
through a twisted.names resolver (asynchronous, so nothing blocks the
reactor thread) aimed at C{[dns] nameservers}; answers are reused for
their TTL (negative answers for the zone's SOA minimum, RFC 2308), capped
by C{max_cache_ttl}.  A zone that does not answer counts as not listing
the client, as in postscreen: one broken list must not stop all mail.

Only MX (C{smtp}) endpoints are checked: users of the submission
endpoints connect from any network, often from address ranges that
policy lists (Spamhaus PBL) name on purpose.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
from typing import TYPE_CHECKING, Any, Optional, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime, IResolver
from twisted.logger import Logger
from twisted.names import dns, error

from mailsrv.config.schema import DNSListZone
from mailsrv.envelope import Session
from mailsrv.filters.base import Filter
from mailsrv.interfaces import ACCEPT, FilterAction, FilterResult
from mailsrv.policy.endpoint import Protocol

if TYPE_CHECKING:
    from mailsrv.config.schema import Config

# Bound on remembered answers; the oldest go first.
MAX_CACHE_ENTRIES = 100_000

# Negative answers without an SOA are reused this long.
DEFAULT_NEGATIVE_TTL = 60.0

_LISTED = ipaddress.ip_network("127.0.0.0/8")
_LIST_ERRORS = ipaddress.ip_network("127.255.255.0/24")


def queryName(address: str, zone: str) -> Optional[str]:
    """
    The name to look up for C{address} in C{zone}: the address's octets
    (IPv4) or nibbles (IPv6, RFC 5782 section 2.4) in reverse order, then
    the zone.  IPv4-mapped IPv6 addresses are looked up as IPv4.

    @return: the name, or L{None} for something that is not an IP address
        (a UNIX socket peer).
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    reverse = ip.reverse_pointer.rsplit(".", 2)[0]  # drop in-addr.arpa / ip6.arpa
    return f"{reverse}.{zone}"


@dataclasses.dataclass(frozen=True)
class Listing:
    """
    What one zone said about one client.

    @ivar addresses: the A records returned (empty: not listed).
    """

    zone: DNSListZone
    addresses: tuple[str, ...]

    @property
    def listed(self) -> bool:
        """
        Whether any answer counts: one of the configured C{answers}, or,
        when none are configured, any address in 127.0.0.0/8 (RFC 5782
        section 2.1) but 127.255.255.0/24, where lists put their error
        codes (Spamhaus answers 127.255.255.254 to queries through public
        resolvers: that is no listing).
        """
        if self.zone.answers:
            networks = [ipaddress.ip_network(a, strict=False) for a in self.zone.answers]
            return any(ipaddress.ip_address(a) in n for a in self.addresses for n in networks)
        return any(
            ipaddress.ip_address(a) in _LISTED and ipaddress.ip_address(a) not in _LIST_ERRORS for a in self.addresses
        )


@dataclasses.dataclass(frozen=True)
class Verdict:
    """
    The combined outcome for one client.
    """

    score: int
    listings: tuple[Listing, ...]

    @property
    def blockedBy(self) -> list[str]:
        """
        The zones with a positive weight that list the client, heaviest first.
        """
        hits = [l.zone for l in self.listings if l.listed and l.zone.weight > 0]
        return [z.zone for z in sorted(hits, key=lambda z: -z.weight)]

    @property
    def allowedBy(self) -> list[str]:
        return [l.zone.zone for l in self.listings if l.listed and l.zone.weight < 0]


class DNSListCache:
    """
    Answers per (zone, client) until their TTL runs out, on an injected
    clock.
    """

    def __init__(self, clock: IReactorTime, maxTTL: float, maxEntries: int = MAX_CACHE_ENTRIES) -> None:
        self.clock = clock
        self.maxTTL = maxTTL
        self.maxEntries = maxEntries
        self._entries: collections.OrderedDict[str, tuple[float, tuple[str, ...]]] = collections.OrderedDict()

    def get(self, name: str) -> Optional[tuple[str, ...]]:
        entry = self._entries.get(name)
        if entry is None:
            return None
        expires, addresses = entry
        if self.clock.seconds() >= expires:
            del self._entries[name]
            return None
        return addresses

    def put(self, name: str, addresses: tuple[str, ...], ttl: float) -> None:
        ttl = min(ttl, self.maxTTL)
        if ttl <= 0:
            return
        self._entries.pop(name, None)
        self._entries[name] = (self.clock.seconds() + ttl, addresses)
        while len(self._entries) > self.maxEntries:
            self._entries.popitem(last=False)


class DNSListChecker:
    """
    Looks a client address up in every zone and scores it.

    @param resolver: a twisted.names resolver (C{lookupAddress}).
    @param timeout: seconds one lookup may take.
    """

    log = Logger()

    def __init__(
        self,
        resolver: IResolver,
        zones: Sequence[DNSListZone],
        threshold: int,
        clock: IReactorTime,
        timeout: float = 10.0,
        maxCacheTTL: float = 3600.0,
    ) -> None:
        self.resolver = resolver
        self.zones = tuple(zones)
        self.threshold = threshold
        self.clock = clock
        self.timeout = timeout
        self.cache = DNSListCache(clock, maxCacheTTL)

    async def check(self, address: str) -> Verdict:
        """
        Query every zone (in parallel) for C{address}.
        """
        results = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(self._lookup(zone, address)) for zone in self.zones]
        )
        listings = tuple(results)
        score = sum(l.zone.weight for l in listings if l.listed)
        return Verdict(score, listings)

    async def _lookup(self, zone: DNSListZone, address: str) -> Listing:
        name = queryName(address, zone.zone)
        if name is None:
            return Listing(zone, ())
        cached = self.cache.get(name)
        if cached is not None:
            return Listing(zone, cached)
        try:
            answers, _, _ = await self.resolver.lookupAddress(name, timeout=(self.timeout,))
        except error.DNSNameError as e:
            self.cache.put(name, (), _negativeTTL(e))
            return Listing(zone, ())
        except Exception as e:
            # Postscreen's rule: a list that cannot answer lists nobody.
            self.log.warn(
                "DNS list {zone} did not answer for {peer}: {error}", zone=zone.zone, peer=address, error=repr(e)
            )
            return Listing(zone, ())
        records = [r for r in answers if r.type == dns.A and r.name.name.decode("ascii").lower() == name.lower()]
        # Through a CNAME the owner name differs; fall back to every A record.
        records = records or [r for r in answers if r.type == dns.A]
        addresses = tuple(sorted({r.payload.dottedQuad() for r in records}))
        ttl = min((r.ttl for r in records), default=DEFAULT_NEGATIVE_TTL)
        self.cache.put(name, addresses, ttl)
        return Listing(zone, addresses)


def _negativeTTL(failure: error.DNSNameError) -> float:
    """
    RFC 2308 section 5: a negative answer lives for the smaller of the
    SOA's TTL and its MINIMUM field.
    """
    message = failure.args[0] if failure.args else None
    for record in getattr(message, "authority", ()) or ():
        if record.type == dns.SOA:
            return float(min(record.ttl, record.payload.minimum))
    return DEFAULT_NEGATIVE_TTL


class DNSBLFilter(Filter):
    """
    Refuses clients of MX endpoints whose DNS list score reaches the
    threshold, at connect.
    """

    name = "dnsbl"
    log = Logger()

    def __init__(self, checker: DNSListChecker) -> None:
        self.checker = checker

    def checkConnection(self, session: Session) -> "defer.Deferred[FilterResult]":
        if session.endpoint.protocol is not Protocol.SMTP or not self.checker.zones:
            return defer.succeed(ACCEPT)
        return defer.Deferred.fromCoroutine(self._check(session))

    async def _check(self, session: Session) -> FilterResult:
        verdict = await self.checker.check(session.peerHost)
        blocked = verdict.blockedBy
        if not (blocked or verdict.allowedBy):
            return ACCEPT
        refused = verdict.score >= self.checker.threshold
        self.log.info(
            "DNS lists for {peer}: score {score} (threshold {threshold}), listed in {blocked}, allowed by {allowed}: "
            "{outcome}",
            peer=session.peerHost,
            score=verdict.score,
            threshold=self.checker.threshold,
            blocked=",".join(blocked) or "-",
            allowed=",".join(verdict.allowedBy) or "-",
            outcome="refused" if refused else "accepted",
            sessionId=session.sessionId,
            endpoint=session.endpoint.name,
        )
        if refused:
            return FilterResult(
                FilterAction.REJECT,
                f"Service unavailable; client [{session.peerHost}] listed in {', '.join(blocked)}",
            )
        return ACCEPT


def makeResolver(nameservers: Sequence[tuple[str, int]], reactor: Any) -> IResolver:
    """
    A twisted.names resolver for the lists: the C{[dns]} servers, or the
    system's configuration.  Without its own cache: L{DNSListCache} keeps
    answers by TTL.
    """
    from twisted.names import client

    if nameservers:
        return client.Resolver(servers=list(nameservers), reactor=reactor)
    return client.Resolver(resolv="/etc/resolv.conf", reactor=reactor)


def dnsblFilters(config: "Config", reactor: Any) -> list[DNSBLFilter]:
    """
    The DNS list filter as configured (C{[dnsbl]}, DNS from C{[dns]}), or
    none when no zones are configured.
    """
    settings = config.dnsbl
    if not settings.zones:
        return []
    checker = DNSListChecker(
        makeResolver(config.dns.nameservers, reactor),
        settings.zones,
        settings.threshold,
        reactor,
        timeout=config.dns.timeout,
        maxCacheTTL=settings.maxCacheTTL,
    )
    return [DNSBLFilter(checker)]
