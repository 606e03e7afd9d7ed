# -*- test-case-name: tests.filters.test_dnsbl -*-
"""
Tests for L{mailsrv.filters.dnsbl}: DNS list lookups against a real
twisted.names server on loopback (the system resolver is never used), and
the TTL cache on a fake clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.names import client
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from mailsrv.config.schema import DNSListZone
from mailsrv.envelope import Session
from mailsrv.filters.dnsbl import DNSBLFilter, DNSListCache, DNSListChecker, queryName
from mailsrv.interfaces import FilterAction, IFilter
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode
from mailsrv.testing.dns import DNSFixture

MX = EndpointPolicy("smtp", Protocol.SMTP, ("127.0.0.1:25",), TLSMode.NONE, auth=False)
SUBMISSION = EndpointPolicy("submission", Protocol.SUBMISSION, ("127.0.0.1:587",), TLSMode.NONE, auth=True)

# Clients by the last octet of 192.0.2.X (documentation addresses):
#   2: in bl.test only            (weight 2)
#   3: in bl.test and weak.test   (2 + 1)
#   4: in weak.test only          (1)
#   5: in bl.test and wl.test     (2 - 5)
#   6: nowhere
#   7: bl.test answers 127.255.255.254 (a list error, not a listing)
#   8: in weak.test with an answer the zone does not count
ZONES: dict[str, Any] = {
    "bl.test": {
        "2.2.0.192.bl.test": {"A": ["127.0.0.2"], "TXT": ["listed"]},
        "3.2.0.192.bl.test": {"A": ["127.0.0.2"]},
        "5.2.0.192.bl.test": {"A": ["127.0.0.2"]},
        "7.2.0.192.bl.test": {"A": ["127.255.255.254"]},
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test": {"A": ["127.0.0.2"]},
    },
    "weak.test": {
        "3.2.0.192.weak.test": {"A": ["127.0.0.10"]},
        "4.2.0.192.weak.test": {"A": ["127.0.0.10"]},
        "8.2.0.192.weak.test": {"A": ["127.0.0.4"]},
    },
    "wl.test": {
        "5.2.0.192.wl.test": {"A": ["127.0.15.2"]},
    },
}

LISTS = (
    DNSListZone("bl.test", 2),
    DNSListZone("weak.test", 1, answers=("127.0.0.10",)),
    DNSListZone("wl.test", -5),
)


def session(peer: str, endpoint: EndpointPolicy = MX) -> Session:
    return Session(endpoint=endpoint, peerHost=peer)


class QueryNameTests(SynchronousTestCase):
    def test_ipv4(self) -> None:
        """
        IPv4 octets are reversed in front of the zone (RFC 5782 2.1).
        """
        self.assertEqual(queryName("192.0.2.99", "bl.test"), "99.2.0.192.bl.test")

    def test_ipv6(self) -> None:
        """
        IPv6 addresses are looked up nibble by nibble, reversed (RFC 5782
        2.4).
        """
        self.assertEqual(
            queryName("2001:db8::1", "bl.test"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test",
        )

    def test_mapped(self) -> None:
        """
        An IPv4-mapped IPv6 peer is looked up as the IPv4 address it is.
        """
        self.assertEqual(queryName("::ffff:192.0.2.1", "bl.test"), "1.2.0.192.bl.test")

    def test_notAnAddress(self) -> None:
        """
        A peer that is no IP address (a UNIX socket) is not looked up.
        """
        self.assertIsNone(queryName("unknown", "bl.test"))


class CacheTests(SynchronousTestCase):
    def test_expires(self) -> None:
        """
        An answer is reused until its TTL has passed, then forgotten.
        """
        clock = Clock()
        cache = DNSListCache(clock, maxTTL=3600)
        cache.put("x.bl.test", ("127.0.0.2",), 60)
        clock.advance(59)
        self.assertEqual(cache.get("x.bl.test"), ("127.0.0.2",))
        clock.advance(1)
        self.assertIsNone(cache.get("x.bl.test"))

    def test_maxTTL(self) -> None:
        """
        A long TTL is capped by C{max_cache_ttl}.
        """
        clock = Clock()
        cache = DNSListCache(clock, maxTTL=10)
        cache.put("x.bl.test", (), 86400)
        clock.advance(10)
        self.assertIsNone(cache.get("x.bl.test"))

    def test_bounded(self) -> None:
        """
        The oldest entries go first when the cache is full.
        """
        cache = DNSListCache(Clock(), maxTTL=60, maxEntries=2)
        for name in ("a", "b", "c"):
            cache.put(name, (), 60)
        self.assertIsNone(cache.get("a"))
        self.assertEqual(cache.get("c"), ())


class CountingResolver:
    """
    Wraps a resolver and counts the lookups that reach it.
    """

    def __init__(self, resolver: Any) -> None:
        self.resolver = resolver
        self.names: list[str] = []

    def lookupAddress(self, name: str, timeout: Any = None) -> Any:
        self.names.append(name)
        return self.resolver.lookupAddress(name, timeout=timeout)


class DNSBLFilterTests(TestCase):
    """
    The filter against the zones above, served by twisted.names on
    loopback.
    """

    def setUp(self) -> None:
        self.dns = DNSFixture(reactor, ZONES)
        port = self.dns.start()
        self.addCleanup(self.dns.stop)
        self.resolver = CountingResolver(client.Resolver(servers=[("127.0.0.1", port)], reactor=reactor))
        self.clock = Clock()
        self.checker = DNSListChecker(self.resolver, LISTS, threshold=2, clock=self.clock, timeout=5)
        self.filter = DNSBLFilter(self.checker)

    def test_interface(self) -> None:
        """
        The filter provides L{IFilter}.
        """
        self.assertTrue(verifyObject(IFilter, self.filter))

    def test_listed(self) -> defer.Deferred[None]:
        """
        A client in a list whose weight reaches the threshold is refused,
        and the reply names the list.
        """

        async def check() -> None:
            result = await self.filter.checkConnection(session("192.0.2.2"))
            self.assertEqual(result.action, FilterAction.REJECT)
            self.assertEqual(result.reply, "Service unavailable; client [192.0.2.2] listed in bl.test")

        return defer.Deferred.fromCoroutine(check())

    def test_notListed(self) -> defer.Deferred[None]:
        """
        A client no list names (NXDOMAIN everywhere) is accepted.
        """

        async def check() -> None:
            result = await self.filter.checkConnection(session("192.0.2.6"))
            self.assertEqual(result.action, FilterAction.ACCEPT)

        return defer.Deferred.fromCoroutine(check())

    def test_belowThreshold(self) -> defer.Deferred[None]:
        """
        One light list alone (weight 1 < 2) does not refuse the client.
        """

        async def check() -> None:
            result = await self.filter.checkConnection(session("192.0.2.4"))
            self.assertEqual(result.action, FilterAction.ACCEPT)
            verdict = await defer.Deferred.fromCoroutine(self.checker.check("192.0.2.4"))
            self.assertEqual(verdict.score, 1)

        return defer.Deferred.fromCoroutine(check())

    def test_weightsAddUp(self) -> defer.Deferred[None]:
        """
        Weights of several lists add up: 2 + 1 = 3, and the reply names
        both lists, heaviest first.
        """

        async def check() -> None:
            verdict = await defer.Deferred.fromCoroutine(self.checker.check("192.0.2.3"))
            self.assertEqual(verdict.score, 3)
            result = await self.filter.checkConnection(session("192.0.2.3"))
            self.assertEqual(result.action, FilterAction.REJECT)
            self.assertIn("listed in bl.test, weak.test", result.reply)

        return defer.Deferred.fromCoroutine(check())

    def test_lightListsReachThreshold(self) -> defer.Deferred[None]:
        """
        With a threshold of 3, neither list alone refuses a client but the
        two together do.
        """

        async def check() -> None:
            self.checker.threshold = 3
            self.assertEqual((await self.filter.checkConnection(session("192.0.2.2"))).action, FilterAction.ACCEPT)
            self.assertEqual((await self.filter.checkConnection(session("192.0.2.4"))).action, FilterAction.ACCEPT)
            self.assertEqual((await self.filter.checkConnection(session("192.0.2.3"))).action, FilterAction.REJECT)

        return defer.Deferred.fromCoroutine(check())

    def test_allowListLowersScore(self) -> defer.Deferred[None]:
        """
        A client in the block list and in the allow list (weight -5) ends
        at -3 and is accepted.
        """

        async def check() -> None:
            verdict = await defer.Deferred.fromCoroutine(self.checker.check("192.0.2.5"))
            self.assertEqual(verdict.score, -3)
            self.assertEqual(verdict.allowedBy, ["wl.test"])
            result = await self.filter.checkConnection(session("192.0.2.5"))
            self.assertEqual(result.action, FilterAction.ACCEPT)

        return defer.Deferred.fromCoroutine(check())

    def test_answersFilter(self) -> defer.Deferred[None]:
        """
        An answer outside 127.0.0.0/8 (a list's error code) and one the
        zone's C{answers} do not include both count as not listed.
        """

        async def check() -> None:
            verdict = await defer.Deferred.fromCoroutine(self.checker.check("192.0.2.7"))
            self.assertEqual(verdict.score, 0)
            self.assertEqual(verdict.listings[0].addresses, ("127.255.255.254",))
            verdict = await defer.Deferred.fromCoroutine(self.checker.check("192.0.2.8"))
            self.assertEqual(verdict.score, 0)

        return defer.Deferred.fromCoroutine(check())

    def test_ipv6(self) -> defer.Deferred[None]:
        """
        An IPv6 client is looked up by its nibbles.
        """

        async def check() -> None:
            result = await self.filter.checkConnection(session("2001:db8::1"))
            self.assertEqual(result.action, FilterAction.REJECT)

        return defer.Deferred.fromCoroutine(check())

    def test_cachedForTTL(self) -> defer.Deferred[None]:
        """
        Answers (positive and negative) are reused until their TTL (60 s
        in the fixture) has passed; then the lists are asked again.
        """

        async def check() -> None:
            await self.filter.checkConnection(session("192.0.2.2"))
            await self.filter.checkConnection(session("192.0.2.6"))
            self.assertEqual(len(self.resolver.names), 6)
            self.clock.advance(59)
            await self.filter.checkConnection(session("192.0.2.2"))
            await self.filter.checkConnection(session("192.0.2.6"))
            self.assertEqual(len(self.resolver.names), 6)
            self.clock.advance(1)
            result = await self.filter.checkConnection(session("192.0.2.2"))
            self.assertEqual(result.action, FilterAction.REJECT)
            self.assertEqual(len(self.resolver.names), 9)

        return defer.Deferred.fromCoroutine(check())

    def test_submissionNotChecked(self) -> defer.Deferred[None]:
        """
        Submission endpoints are not checked: no lookup is made.
        """

        async def check() -> None:
            result = await self.filter.checkConnection(session("192.0.2.2", SUBMISSION))
            self.assertEqual(result.action, FilterAction.ACCEPT)
            self.assertEqual(self.resolver.names, [])

        return defer.Deferred.fromCoroutine(check())

    def test_deadListIgnored(self) -> defer.Deferred[None]:
        """
        A list whose server does not answer counts as not listing the
        client (postscreen's rule), without failing the others.
        """

        async def check() -> None:
            dead = client.Resolver(servers=[("127.0.0.1", 9)], reactor=reactor)
            checker = DNSListChecker(dead, LISTS, threshold=1, clock=self.clock, timeout=0.5)
            result = await DNSBLFilter(checker).checkConnection(session("192.0.2.2"))
            self.assertEqual(result.action, FilterAction.ACCEPT)
            self.flushLoggedErrors()

        return defer.Deferred.fromCoroutine(check())
