"""
The queue's DNS cache (L{CachingResolver}) on a fake clock, and MX
selection through it against a real DNS server on loopback.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task
from twisted.names import dns
from twisted.names.error import DNSNameError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailsrv.queue.mx import CachingResolver, MXHost, hostAddresses, mxHosts, resolverFor
from mailsrv.testing.dns import DNSFixture


def mx(name: str, ttl: int, preference: int = 10) -> dns.RRHeader:
    return dns.RRHeader(name.encode(), dns.MX, ttl=ttl, payload=dns.Record_MX(preference, b"mx." + name.encode(), ttl=ttl))


def a(name: str, ttl: int, address: str = "192.0.2.1") -> dns.RRHeader:
    return dns.RRHeader(name.encode(), dns.A, ttl=ttl, payload=dns.Record_A(address, ttl=ttl))


def soa(zone: str, ttl: int, minimum: int) -> dns.RRHeader:
    return dns.RRHeader(zone.encode(), dns.SOA, ttl=ttl, payload=dns.Record_SOA(mname=b"ns", rname=b"h", minimum=minimum))


class ScriptedResolver:
    """
    Answers each lookup with a Deferred the test fires; counts questions.
    """

    def __init__(self) -> None:
        self.questions: list[tuple[str, str]] = []
        self.pending: list[defer.Deferred[Any]] = []

    def _ask(self, kind: str, name: str) -> "defer.Deferred[Any]":
        self.questions.append((kind, name))
        d: defer.Deferred[Any] = defer.Deferred()
        self.pending.append(d)
        return d

    def lookupMailExchange(self, name: str, timeout: Any = None) -> "defer.Deferred[Any]":
        return self._ask("MX", name)

    def lookupAddress(self, name: str, timeout: Any = None) -> "defer.Deferred[Any]":
        return self._ask("A", name)

    def lookupIPV6Address(self, name: str, timeout: Any = None) -> "defer.Deferred[Any]":
        return self._ask("AAAA", name)

    def lookupText(self, name: str, timeout: Any = None) -> "defer.Deferred[Any]":
        return self._ask("TXT", name)


class CachingResolverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.upstream = ScriptedResolver()
        self.resolver = CachingResolver(self.upstream, self.clock, maxTTL=300)  # type: ignore[arg-type]

    def answer(self, result: Any) -> None:
        self.upstream.pending.pop(0).callback(result)

    def test_answerKeptForItsTTL(self) -> None:
        """
        An MX answer is reused (names compared without case or final dot)
        until its TTL runs out; then the server is asked again.
        """
        first = self.resolver.lookupMailExchange("Remote.test")
        self.answer(([mx("remote.test", 60)], [], []))
        self.assertEqual(self.successResultOf(first)[0][0].ttl, 60)
        self.clock.advance(59)
        again = self.successResultOf(self.resolver.lookupMailExchange("remote.test."))
        self.assertEqual(again[0][0].payload.preference, 10)
        self.assertEqual(self.upstream.questions, [("MX", "Remote.test")])
        self.clock.advance(1)
        self.resolver.lookupMailExchange("remote.test")
        self.assertEqual(len(self.upstream.questions), 2)

    def test_typesCachedApart(self) -> None:
        """
        MX, A and AAAA of one name are separate questions.
        """
        self.resolver.lookupMailExchange("remote.test")
        self.answer(([mx("remote.test", 60)], [], []))
        self.resolver.lookupAddress("remote.test")
        self.answer(([a("remote.test", 60)], [], []))
        self.resolver.lookupIPV6Address("remote.test")
        self.assertEqual([k for k, _ in self.upstream.questions], ["MX", "A", "AAAA"])

    def test_ttlCappedAndSmallestWins(self) -> None:
        """
        The smallest TTL of the answer's records counts, and no answer is
        kept beyond C{maxTTL}.
        """
        self.resolver.lookupAddress("many.test")
        self.answer(([a("many.test", 3600), a("many.test", 100, "192.0.2.2")], [], []))
        self.clock.advance(100)
        self.resolver.lookupAddress("many.test")
        self.assertEqual(len(self.upstream.questions), 2)
        self.answer(([a("many.test", 86400)], [], []))
        self.clock.advance(299)
        self.resolver.lookupAddress("many.test")
        self.assertEqual(len(self.upstream.questions), 2)
        self.clock.advance(1)
        self.resolver.lookupAddress("many.test")
        self.assertEqual(len(self.upstream.questions), 3)

    def test_noDataKeptForTheSOANegativeTTL(self) -> None:
        """
        "No such record" is kept for min(SOA TTL, SOA minimum); without a
        SOA it is not kept.
        """
        self.resolver.lookupIPV6Address("v4only.test")
        self.answer(([], [soa("test", 3600, 30)], []))
        self.clock.advance(29)
        self.assertEqual(self.successResultOf(self.resolver.lookupIPV6Address("v4only.test"))[0], [])
        self.clock.advance(1)
        self.resolver.lookupIPV6Address("v4only.test")
        self.assertEqual(len(self.upstream.questions), 2)
        self.answer(([], [], []))
        self.resolver.lookupIPV6Address("v4only.test")
        self.assertEqual(len(self.upstream.questions), 3)

    def test_errorsNotKept(self) -> None:
        """
        A failed lookup fails for its caller and the next lookup asks again.
        """
        d = self.resolver.lookupMailExchange("gone.test")
        self.upstream.pending.pop(0).errback(DNSNameError("gone.test"))
        self.failureResultOf(d, DNSNameError)
        self.resolver.lookupMailExchange("gone.test")
        self.assertEqual(len(self.upstream.questions), 2)

    def test_concurrentLookupsShareOneQuestion(self) -> None:
        """
        Lookups of a name whose answer is awaited wait for that answer (or
        failure) instead of asking again.
        """
        first = self.resolver.lookupAddress("busy.test")
        second = self.resolver.lookupAddress("busy.test")
        self.assertNoResult(second)
        self.answer(([a("busy.test", 60)], [], []))
        self.assertIs(self.successResultOf(first), self.successResultOf(second))
        third = self.resolver.lookupMailExchange("down.test")
        fourth = self.resolver.lookupMailExchange("down.test")
        self.upstream.pending.pop(0).errback(defer.TimeoutError())
        self.failureResultOf(third, defer.TimeoutError)
        self.failureResultOf(fourth, defer.TimeoutError)
        self.assertEqual(len(self.upstream.questions), 2)

    def test_boundedSize(self) -> None:
        """
        Past C{maxEntries} names the oldest entry goes.
        """
        self.resolver.maxEntries = 2
        for name in ("one.test", "two.test", "three.test"):
            self.resolver.lookupAddress(name)
            self.answer(([a(name, 60)], [], []))
        self.resolver.lookupAddress("three.test")
        self.resolver.lookupAddress("two.test")
        self.assertEqual(len(self.upstream.questions), 3)
        self.resolver.lookupAddress("one.test")
        self.assertEqual(len(self.upstream.questions), 4)

    def test_otherLookupsPassThrough(self) -> None:
        """
        Methods the cache does not cover are the wrapped resolver's.
        """
        self.resolver.lookupText("txt.test")
        self.resolver.lookupText("txt.test")
        self.assertEqual(self.upstream.questions, [("TXT", "txt.test"), ("TXT", "txt.test")])


class ResolverForTests(TestCase):
    """
    L{resolverFor} against a real DNS server on loopback: MX and address
    lookups answered once, then from the cache.
    """

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.fixture = DNSFixture(
            reactor,
            {"remote.test": {"remote.test": {"MX": [[10, "mx.remote.test"]]}, "mx.remote.test": {"A": ["127.0.0.1"]}}},
        )
        port = self.fixture.start()
        self.addCleanup(self.fixture.stop)
        self.resolver = resolverFor((("127.0.0.1", port),), reactor)
        self.queries = 0
        original = self.fixture._listeners[1].protocol.controller.messageReceived  # type: ignore[attr-defined]

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.queries += 1
            return original(*args, **kwargs)

        self.fixture._listeners[1].protocol.controller.messageReceived = counting  # type: ignore[attr-defined]

    def test_lookupsCached(self) -> "defer.Deferred[None]":
        async def lookups() -> None:
            for _ in range(3):
                hosts = await mxHosts(self.resolver, "remote.test")
                self.assertEqual(hosts, [MXHost(10, "mx.remote.test")])
                addresses = await hostAddresses(self.resolver, "mx.remote.test")
                self.assertEqual(addresses, ["127.0.0.1"])
            # MX, A and AAAA (no data, kept for the zone's SOA minimum).
            self.assertEqual(self.queries, 3)

        return defer.Deferred.fromCoroutine(lookups())
