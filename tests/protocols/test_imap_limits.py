"""
IMAP connection hygiene in memory: connection caps, the per account and
address session cap, the login deadline, the configurable idle timeout,
the command line deadline (slow-loris) and the literal data rate.
"""

from __future__ import annotations


from twisted.internet.address import IPv4Address
from twisted.logger import Logger
from twisted.trial import unittest
from zope.interface import alsoProvides
from twisted.internet.interfaces import ISSLTransport

from mailsrv.policy.deadline import SessionTimeouts
from mailsrv.policy.limits import ConnectionLimiter, UserAddressLimiter
from mailsrv.protocols.imap.server import IMAPFactory, IMAPServer
from tests.protocols.test_imap import ALICE, HOSTNAME, IMAPS, IMAPTestMixin, TLSCapableTransport

TIMEOUTS = SessionTimeouts(login=60.0, idle=120.0, command=10.0, data=30.0, minDataRate=100.0)


class IMAPLimitsTests(IMAPTestMixin, unittest.SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.connections = ConnectionLimiter(100, 2, ["10.0.0.0/8"])
        self.userAddresses = UserAddressLimiter(2)

    def open(self, peer: str = "192.0.2.7", timeouts: SessionTimeouts = TIMEOUTS) -> tuple[IMAPServer, TLSCapableTransport]:
        factory = IMAPFactory(
            IMAPS,
            self.portal,
            self.creator,
            HOSTNAME,
            clock=self.clock,
            maxMessageSize=1_000_000,
            timeouts=timeouts,
            connections=self.connections,
            userAddresses=self.userAddresses,
        )
        server = factory.buildProtocol(None)
        server.log = Logger(namespace="test", observer=self.events.append)
        transport = TLSCapableTransport()
        transport.peerAddr = IPv4Address("TCP", peer, 40000)
        alsoProvides(transport, ISSLTransport)
        server.makeConnection(transport)
        self.server, self.transport = server, transport
        return server, transport

    def loggedIn(self, peer: str = "192.0.2.7", user: str = ALICE) -> tuple[IMAPServer, TLSCapableTransport]:
        server, transport = self.open(peer)
        response = self.send(b"l LOGIN %b secret\r\n" % (user.encode(),))
        self.assertTrue(response.startswith(b"l OK"), response)
        return server, transport

    def close(self, server: IMAPServer, transport: TLSCapableTransport) -> None:
        server.connectionLost(None)  # type: ignore[arg-type]

    # -- connection caps

    def test_perAddressCap(self) -> None:
        """
        Over C{max_connections_per_ip} the client gets a BYE instead of the
        greeting and is disconnected; input is ignored; closing one frees
        the slot.  Exempt networks are not counted against it.
        """
        first = self.open()
        self.open()
        server, transport = self.open()
        self.assertEqual(transport.value(), b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n")
        self.assertTrue(transport.disconnecting)
        transport.clear()
        server.dataReceived(b"a LOGIN alice@example.test secret\r\n")
        self.assertEqual(transport.value(), b"")
        self.close(server, transport)
        self.assertEqual(self.connections.active, 2)
        self.close(*first)
        _, transport = self.open()
        self.assertTrue(transport.value().startswith(b"* OK"), transport.value())
        for _ in range(5):
            _, transport = self.open("10.1.2.3")
            self.assertTrue(transport.value().startswith(b"* OK"))

    def test_totalCap(self) -> None:
        """
        The total cap applies to exempt networks too.
        """
        self.connections = ConnectionLimiter(3, 100, ["127.0.0.0/8"])
        for _ in range(3):
            self.open("127.0.0.1")
        _, transport = self.open("127.0.0.1")
        self.assertTrue(transport.value().startswith(b"* BYE [UNAVAILABLE]"))

    # -- sessions per account and address

    def test_userAddressCap(self) -> None:
        """
        The third login of alice from one address gets Dovecot's message
        with RFC 5530's LIMIT code and is disconnected; from another
        address, or as another user, the login works; a logout frees the
        slot.
        """
        self.connections = ConnectionLimiter(100, 100, [])
        first = self.loggedIn()
        self.loggedIn()
        self.open()
        self.assertEqual(
            self.send(b"l LOGIN alice@example.test secret\r\n"),
            b"l NO [LIMIT] Maximum number of connections from user+IP exceeded "
            b"(max_connections_per_user_ip=2)\r\n",
        )
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.server.state, "unauth")
        self.close(self.server, self.transport)
        self.loggedIn(peer="192.0.2.8")
        self.open()
        self.assertTrue(self.send(b"l LOGIN bob@example.test hunter2\r\n").startswith(b"l OK"))
        self.assertEqual(self.userAddresses.count(ALICE, "192.0.2.7"), 2)
        self.close(*first)
        self.assertEqual(self.userAddresses.count(ALICE, "192.0.2.7"), 1)
        self.loggedIn()

    def test_userAddressCapAppliesToLoopback(self) -> None:
        """
        Unlike the per-IP connection cap, the session cap counts loopback
        (as Dovecot does).
        """
        self.connections = ConnectionLimiter(100, 1, ["127.0.0.0/8"])
        self.loggedIn("127.0.0.1")
        self.loggedIn("127.0.0.1")
        self.open("127.0.0.1")
        self.assertIn(b"[LIMIT]", self.send(b"l LOGIN alice@example.test secret\r\n"))

    def test_authenticateCounts(self) -> None:
        """
        AUTHENTICATE PLAIN logins are counted like LOGIN.
        """
        self.userAddresses = UserAddressLimiter(1)
        self.loggedIn()
        self.open()
        self.assertIn(
            b"a NO [LIMIT]", self.send(b"a AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n")
        )

    # -- timers

    def test_loginDeadline(self) -> None:
        """
        Before login the client has C{login_timeout} in all, however busy it
        keeps the connection.
        """
        self.open()
        for _ in range(5):
            self.clock.advance(11)
            self.assertIn(b"a OK", self.send(b"a NOOP\r\n"))
        self.clock.advance(60 - 55 - 0.5)
        self.assertFalse(self.transport.disconnecting)
        self.transport.clear()
        self.clock.advance(0.5)
        self.assertEqual(self.transport.value(), b"* BYE Disconnected: login not completed in time\r\n")
        self.assertTrue(self.transport.disconnecting)

    def test_idleTimeoutAfterLogin(self) -> None:
        """
        After login C{imap_idle_timeout} of silence ends the session, and
        every command restarts it.
        """
        self.loggedIn()
        self.clock.advance(100)
        self.send(b"a NOOP\r\n")
        self.clock.advance(119)
        self.assertFalse(self.transport.disconnecting)
        self.transport.clear()
        self.clock.advance(1)
        self.assertEqual(self.transport.value(), b"* BYE Autologout; connection idle too long\r\n")
        self.assertTrue(self.transport.disconnecting)

    def test_slowLorisClosed(self) -> None:
        """
        A command sent one octet every two seconds is cut off
        C{command_timeout} after its first octet, also after login, where
        the idle timer alone would never fire.
        """
        self.loggedIn()
        line = b"a NOOP\r\n"
        for octet in line[:5]:
            self.send(bytes([octet]))
            self.clock.advance(2)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.transport.value(), b"* BYE Disconnected: command not completed in time\r\n")

    def test_steadyCommandsNotCut(self) -> None:
        """
        Whole commands (each within the deadline) never trip it, and a line
        split over a few reads within the time is fine.
        """
        self.loggedIn()
        for _ in range(30):
            self.assertEqual(self.send(b"a NO"), b"")
            self.clock.advance(9)
            self.assertIn(b"a OK", self.send(b"OP\r\n"))
            self.clock.advance(9)
        self.assertFalse(self.transport.disconnecting)

    def test_overLongLineTrickleClosed(self) -> None:
        """
        The rest of an over-long line, skipped after BAD, is on the same
        deadline.
        """
        self.loggedIn()
        self.send(b"a " + b"x" * 9000)
        self.clock.advance(5)
        self.send(b"x")
        self.clock.advance(5)
        self.assertTrue(self.transport.disconnecting)

    def test_appendAtMinimumRate(self) -> None:
        """
        An APPEND literal arriving steadily above C{min_data_rate} completes
        although it takes ten times C{data_timeout}.
        """
        self.loggedIn()
        body = b"Subject: slow\r\n\r\n" + b"x" * (300 * 150 - 17)
        self.assertIn(b"+ ", self.send(b"a APPEND INBOX {%d}\r\n" % (len(body),)))
        for i in range(0, len(body), 150):
            self.clock.advance(1)
            self.server.dataReceived(body[i : i + 150])
        self.assertFalse(self.transport.disconnecting)
        self.assertIn(b"a OK [APPENDUID", self.send(b"\r\n"))

    def test_appendTrickleClosed(self) -> None:
        """
        A literal trickled far below the rate is cut off once its credit is
        spent (about C{data_timeout}).
        """
        self.loggedIn()
        self.send(b"a APPEND INBOX {1000}\r\n")
        for _ in range(3):
            self.clock.advance(10)
            self.send(b"x")
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnecting)
        self.assertIn(b"* BYE Disconnected: literal data too slow\r\n", self.transport.value())

    def test_idleWaitsForDoneWithoutDeadline(self) -> None:
        """
        An IDLE with no input is not a pending line: it lasts until the idle
        timeout.
        """
        self.loggedIn()
        self.send(b"i IDLE\r\n")
        self.clock.advance(119)
        self.assertFalse(self.transport.disconnecting)
