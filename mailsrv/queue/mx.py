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
from typing import Optional

from twisted.internet.interfaces import IResolver
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


def resolverFor(
    nameservers: "tuple[tuple[str, int], ...]", reactor: object, timeout: Optional[float] = None
) -> IResolver:
    """
    A twisted.names resolver: the given servers, or the system's
    configuration when there are none.  No cache: the queue's retries are
    minutes apart and the local resolver usually caches.
    """
    from twisted.names import client

    if nameservers:
        return client.Resolver(servers=list(nameservers), reactor=reactor)
    # The system's resolv.conf, on the reactor we were given (createResolver
    # would use the global one, outside any test's or caller's control).
    return client.Resolver(resolv="/etc/resolv.conf", reactor=reactor)
