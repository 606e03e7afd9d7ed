# -*- test-case-name: tests.queue.test_mx -*-
"""
Where mail for a domain goes: MX records in preference order (RFC 5321
section 5.1), the implicit MX (the domain's own addresses) when there is
none, and the null MX of RFC 7505.

Lookups go through an injected L{IResolver} (twisted.names), never the
reactor's system resolver, so tests can serve their own zone on loopback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime, IResolver
from twisted.names import dns
from twisted.names.error import DNSNameError, DomainError

from mailsrv.errors import ErrorKind, MailError


class NullMX(Exception):
    """
    The domain publishes a null MX: it accepts no mail (RFC 7505).
    """


@dataclasses.dataclass(frozen=True)
class MXHost:
    preference: int
    name: str


def _text(name: object) -> str:
    raw = name.name if isinstance(name, dns.Name) else name  # type: ignore[attr-defined]
    if isinstance(raw, bytes):
        return raw.decode("ascii", "replace").rstrip(".").lower()
    return str(raw).rstrip(".").lower()


def permanent(message: str) -> MailError:
    return MailError(ErrorKind.PERM, message)


def temporary(message: str) -> MailError:
    return MailError(ErrorKind.TEMP, message, temporary=True)


async def mxHosts(resolver: IResolver, domain: str, timeout: float = 10.0) -> list[MXHost]:
    """
    The hosts to try for C{domain}, best first (equal preferences keep the
    order the server gave).

    @raise NullMX: for a null MX.
    @raise MailError: permanent for a domain that does not exist,
        temporary for DNS trouble.
    """
    try:
        answers, _, _ = await resolver.lookupMailExchange(domain, timeout=(timeout,))
    except DNSNameError:
        raise permanent(f"Host or domain name not found: {domain}")
    except DomainError:
        # NOERROR without MX data in some resolvers: fall through to the
        # implicit MX below.
        answers = []
    except Exception as e:
        raise temporary(f"DNS lookup of MX for {domain} failed: {type(e).__name__}")
    records = [a.payload for a in answers if a.type == dns.MX]
    if not records:
        return [MXHost(0, domain)]
    hosts = sorted(
        (MXHost(r.preference, _text(r.name)) for r in records), key=lambda h: h.preference
    )
    if any(h.name in ("", ".") for h in hosts):
        # RFC 7505 section 3: a null MX must be the only one; any null MX
        # means no mail.
        raise NullMX(domain)
    return hosts


async def hostAddresses(resolver: IResolver, host: str, timeout: float = 10.0) -> list[str]:
    """
    IPv4 then IPv6 addresses of C{host} (an address literal is returned as
    it is).  Empty when the name has none.

    @raise MailError: temporary for DNS trouble other than "no such name".
    """
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    out: list[str] = []
    problems = 0
    for lookup, rtype in ((resolver.lookupAddress, dns.A), (resolver.lookupIPV6Address, dns.AAAA)):
        try:
            answers, _, _ = await lookup(host, timeout=(timeout,))
        except DomainError:
            continue
        except Exception:
            problems += 1
            continue
        for a in answers:
            if a.type == rtype:
                out.append(a.payload.dottedQuad() if rtype == dns.A else _ipv6(a.payload))
    if not out and problems:
        raise temporary(f"DNS lookup of {host} failed")
    return out


def _ipv6(payload: "dns.Record_AAAA") -> str:
    return str(ipaddress.IPv6Address(payload.address))


LookupResult = tuple[list[dns.RRHeader], list[dns.RRHeader], list[dns.RRHeader]]


class CachingResolver:
    """
    The answers to the lookups the queue makes (MX, A, AAAA) kept for
    their TTL, so that a queue sending many messages to one destination
    asks once per TTL instead of three questions per message (each on a
    fresh UDP port).  Every other method is the wrapped resolver's.

    What is kept: answers with records, for the smallest TTL among them;
    "no such record" answers (NOERROR, no data) for the negative TTL of the
    zone's SOA when the server sent one (RFC 2308 section 5); both at most
    C{maxTTL}.  Errors (NXDOMAIN, SERVFAIL, timeouts) are not kept: the
    next attempt asks again.  Concurrent lookups of one name share one
    question.

    @ivar maxTTL: the longest an answer is kept, in seconds.
    @ivar maxEntries: past this many names, expired entries are dropped,
        then the oldest.
    """

    def __init__(self, resolver: IResolver, clock: IReactorTime, maxTTL: float = 300.0, maxEntries: int = 10_000) -> None:
        self._resolver = resolver
        self._clock = clock
        self.maxTTL = maxTTL
        self.maxEntries = maxEntries
        self._cache: dict[tuple[int, str], tuple[float, LookupResult]] = {}
        self._pending: dict[tuple[int, str], list[defer.Deferred[LookupResult]]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolver, name)

    def lookupMailExchange(self, name: str, timeout: Any = None) -> "defer.Deferred[LookupResult]":
        return self._lookup(dns.MX, self._resolver.lookupMailExchange, name, timeout)

    def lookupAddress(self, name: str, timeout: Any = None) -> "defer.Deferred[LookupResult]":
        return self._lookup(dns.A, self._resolver.lookupAddress, name, timeout)

    def lookupIPV6Address(self, name: str, timeout: Any = None) -> "defer.Deferred[LookupResult]":
        return self._lookup(dns.AAAA, self._resolver.lookupIPV6Address, name, timeout)

    def _lookup(
        self, rtype: int, lookup: Callable[..., "defer.Deferred[LookupResult]"], name: str, timeout: Any
    ) -> "defer.Deferred[LookupResult]":
        key = (rtype, name.lower().rstrip("."))
        now = self._clock.seconds()
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] > now:
                return defer.succeed(hit[1])
            del self._cache[key]
        waiter: defer.Deferred[LookupResult] = defer.Deferred()
        waiters = self._pending.get(key)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        self._pending[key] = [waiter]

        def answered(result: LookupResult) -> None:
            ttl = min(self._ttl(result), self.maxTTL)
            if ttl > 0:
                self._store(key, self._clock.seconds() + ttl, result)
            for w in self._pending.pop(key, []):
                w.callback(result)

        def failed(failure: Any) -> None:
            for w in self._pending.pop(key, []):
                w.errback(failure)

        lookup(name, timeout=timeout).addCallbacks(answered, failed)
        return waiter

    @staticmethod
    def _ttl(result: LookupResult) -> float:
        answers, authority, _ = result
        if answers:
            return float(min(rr.ttl for rr in answers))
        soas = [rr for rr in authority if rr.type == dns.SOA]
        if soas:
            return float(min(min(rr.ttl, rr.payload.minimum) for rr in soas))
        return 0.0

    def _store(self, key: tuple[int, str], expires: float, result: LookupResult) -> None:
        if len(self._cache) >= self.maxEntries:
            now = self._clock.seconds()
            for k in [k for k, (e, _) in self._cache.items() if e <= now]:
                del self._cache[k]
            while len(self._cache) >= self.maxEntries:
                del self._cache[next(iter(self._cache))]
        self._cache[key] = (expires, result)


def resolverFor(
    nameservers: "tuple[tuple[str, int], ...]", reactor: Any, timeout: Optional[float] = None
) -> IResolver:
    """
    A twisted.names resolver (the given servers, or the system's
    configuration when there are none) behind a L{CachingResolver}.
    """
    from twisted.names import client

    if nameservers:
        resolver = client.Resolver(servers=list(nameservers), reactor=reactor)
    else:
        # The system's resolv.conf, on the reactor we were given
        # (createResolver would use the global one, outside any test's or
        # caller's control).
        resolver = client.Resolver(resolv="/etc/resolv.conf", reactor=reactor)
    return CachingResolver(resolver, reactor)  # type: ignore[return-value]
