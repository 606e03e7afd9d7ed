"""
Connection limits overall and per client address.
"""

from __future__ import annotations

from typing import Any

import pytest

from twisted.trial.unittest import SynchronousTestCase

from mailsrv.policy.limits import ConnectionLimiter, UserAddressLimiter
from tests.protocols.smtphelpers import SMTPHarness


def test_limits_and_exceptions() -> None:
    """
    The per-address cap applies except to exempt networks; the total cap
    always applies; releasing frees the slot.
    """
    limiter = ConnectionLimiter(4, 2, ["10.0.0.0/8"])
    assert limiter.acquire("192.0.2.1") and limiter.acquire("192.0.2.1")
    assert not limiter.acquire("192.0.2.1")
    assert limiter.acquire("10.1.1.1") and limiter.acquire("10.1.1.1")
    assert not limiter.acquire("198.51.100.1")  # total reached
    limiter.release("192.0.2.1")
    assert limiter.acquire("192.0.2.1")
    assert limiter.active == 4


class SMTPConnectionLimitTests(SynchronousTestCase):
    def test_421_when_over_limit(self) -> None:
        """
        A connection over the per-address limit gets 421 4.7.0 and is
        closed; when one closes, a new one is served.
        """
        limiter = ConnectionLimiter(100, 1, [])
        first = SMTPHarness(limiter=limiter)
        second = SMTPHarness(limiter=limiter)
        self.assertTrue(first.transport.value().startswith(b"220 "))
        self.assertEqual(
            second.transport.value(), b"421 4.7.0 mx.example.test Error: too many connections from 192.168.1.1\r\n"
        )
        self.assertTrue(second.transport.disconnecting)
        second.server.connectionLost(None)
        self.assertEqual(limiter.active, 1)
        first.server.connectionLost(None)
        self.assertTrue(SMTPHarness(limiter=limiter).transport.value().startswith(b"220 "))


def test_userAddressLimiter() -> None:
    """
    Sessions are counted per (account, address), the account without
    regard to case, and there are no exempt networks; 0 means no limit.
    """
    limiter = UserAddressLimiter(2)
    assert limiter.acquire("alice@example.test", "127.0.0.1")
    assert limiter.acquire("Alice@Example.test", "127.0.0.1")
    assert not limiter.acquire("alice@example.test", "127.0.0.1")
    assert limiter.acquire("alice@example.test", "127.0.0.2")
    assert limiter.acquire("bob@example.test", "127.0.0.1")
    limiter.release("alice@example.test", "127.0.0.1")
    assert limiter.count("alice@example.test", "127.0.0.1") == 1
    assert limiter.acquire("alice@example.test", "127.0.0.1")
    unlimited = UserAddressLimiter(0)
    assert all(unlimited.acquire("a@example.test", "192.0.2.1") for _ in range(100))


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_proxiedAddressCounted(protocol: str) -> None:
    """
    Behind the PROXY protocol the IMAP and POP3 caps count the client's
    address from the header, not the load balancer's: a second connection
    relayed for the same client is refused, one for another client is not.
    """
    from twisted.cred.portal import Portal
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from mailsrv.config.schema import DEFAULT_ENDPOINTS
    from mailsrv.policy.proxy import ProxyProtocolFactory, parseNetworks, v1Header
    from mailsrv.protocols.imap.server import IMAPFactory
    from mailsrv.protocols.pop3.server import POP3Factory

    clock = MemoryReactorClock()
    limiter = ConnectionLimiter(100, 1, [])
    policy = {e.name: e for e in DEFAULT_ENDPOINTS}[protocol + "s"]
    if protocol == "imap":
        inner: Any = IMAPFactory(policy, Portal(None), None, "mail.example.test", clock=clock, connections=limiter)
    else:
        inner = POP3Factory(policy, Portal(None), None, "mail.example.test", clock=clock, connections=limiter)
    factory = ProxyProtocolFactory(inner, parseNetworks(["127.0.0.0/8"]), protocol, clock)

    def relay(client: str) -> bytes:
        wrapper = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        wrapper.makeConnection(transport)
        wrapper.dataReceived(v1Header(client, 51000, "127.0.0.1", 993))
        return transport.value()

    assert not relay("203.0.113.7").startswith((b"* BYE", b"-ERR"))
    assert relay("203.0.113.7").startswith((b"* BYE [UNAVAILABLE]", b"-ERR [SYS/TEMP]"))
    assert not relay("203.0.113.8").startswith((b"* BYE", b"-ERR"))
    assert limiter.active == 2


def test_sessionSlotsReleaseTogether() -> None:
    """
    A session's connection and login places are counted when admitted and
    given back together, once; a refused admission counts nothing.
    """
    from mailsrv.policy.limits import ConnectionLimiter, SessionSlots, UserAddressLimiter

    connections = ConnectionLimiter(10, 1, ())
    logins = UserAddressLimiter(1)
    first = SessionSlots(connections, logins)
    assert first.admitConnection("192.0.2.1")
    assert first.admitLogin("alice@example.test", "192.0.2.1")
    second = SessionSlots(connections, logins)
    assert not second.admitConnection("192.0.2.1")
    assert not second.admitLogin("ALICE@example.test", "192.0.2.1")
    assert second.maxPerUserAddress == 1
    second.release()
    assert (connections.active, logins.count("alice@example.test", "192.0.2.1")) == (1, 1)
    first.releaseLogin()
    assert logins.count("alice@example.test", "192.0.2.1") == 0
    first.release()
    first.release()
    assert connections.active == 0
    unlimited = SessionSlots()
    assert unlimited.admitConnection("192.0.2.1") and unlimited.admitLogin("a", "192.0.2.1")
    assert unlimited.maxPerUserAddress == 0
    unlimited.release()
