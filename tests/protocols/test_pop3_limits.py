"""
POP3 connection hygiene in memory: connection caps, the per account and
address session cap, the configurable idle timeout and the command line
deadline (slow-loris).
"""

from __future__ import annotations

from twisted.trial import unittest

from mailsrv.policy.limits import ConnectionLimiter, UserAddressLimiter
from mailsrv.protocols.pop3.server import POP3Limits
from tests.protocols.test_pop3 import ALICE, BOB, POP3S, POP3TestMixin, TLSCapableTransport

LIMITS = POP3Limits(loginTimeout=60.0, idleTimeout=120.0, commandTimeout=10.0)


class POP3LimitsTests(POP3TestMixin, unittest.SynchronousTestCase):
    limits = LIMITS

    def test_connectionCap(self) -> None:
        """
        Over the per-address cap the client gets C{-ERR [SYS/TEMP]} instead
        of the greeting and is disconnected; closing one frees the slot.
        """
        connections = ConnectionLimiter(100, 1, [])
        first = self.connect(connections=connections)
        protocol = self.factory(connections=connections).buildProtocol(None)
        transport = TLSCapableTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), b"-ERR [SYS/TEMP] Too many connections, try again later.\r\n")
        self.assertTrue(transport.disconnecting)
        self.lose(protocol, transport)
        self.assertEqual(connections.active, 1)
        self.lose(*first)
        self.assertEqual(connections.active, 0)
        self.connect(connections=connections)

    def test_userAddressCap(self) -> None:
        """
        Over C{max_connections_per_user_ip} the login gets Dovecot's C{-ERR
        [IN-USE]} message and the connection is closed; the check comes
        before the maildrop lock, and the count is released at the end of
        the session.
        """
        userAddresses = UserAddressLimiter(1)
        # The maildrop lock would refuse the second session too, with its
        # own message; the cap is checked first.
        first = self.loggedIn(userAddresses=userAddresses)
        protocol, transport = self.connect(POP3S, implicitTLS=True, userAddresses=userAddresses)
        out = self.send(protocol, transport, b"USER alice@example.test\r\nPASS secret\r\n")
        self.assertEqual(
            out,
            b"+OK\r\n-ERR [IN-USE] Maximum number of connections from user+IP exceeded "
            b"(max_connections_per_user_ip=1)\r\n",
        )
        self.assertTrue(transport.disconnecting)
        self.lose(protocol, transport)
        self.loggedIn(BOB, userAddresses=userAddresses)
        self.assertEqual(userAddresses.count(ALICE, "192.168.1.1"), 1)
        self.send(first[0], first[1], b"QUIT\r\n")
        self.lose(*first)
        self.assertEqual(userAddresses.count(ALICE, "192.168.1.1"), 0)
        self.loggedIn(userAddresses=userAddresses)

    def test_lockedMaildropReleasesCount(self) -> None:
        """
        A login refused because the maildrop is locked does not keep its
        place in the count.
        """
        userAddresses = UserAddressLimiter(5)
        self.loggedIn(userAddresses=userAddresses)
        protocol, transport = self.connect(POP3S, implicitTLS=True, userAddresses=userAddresses)
        out = self.send(protocol, transport, b"USER alice@example.test\r\nPASS secret\r\n")
        self.assertIn(b"-ERR [IN-USE] Mailbox is locked", out)
        self.assertEqual(userAddresses.count(ALICE, "192.168.1.1"), 1)

    def test_idleTimeoutConfigured(self) -> None:
        """
        After login the configured idle timeout applies.
        """
        protocol, transport = self.loggedIn()
        self.clock.advance(119)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(transport.value(), b"-ERR Disconnected for inactivity.\r\n")

    def test_slowLorisClosed(self) -> None:
        """
        A command line sent one octet every two seconds is cut off
        C{commandTimeout} after its first octet, before and after login.
        """
        for loggedIn in (False, True):
            protocol, transport = self.loggedIn() if loggedIn else self.connect()
            for octet in b"CAPA\r\n"[:5]:
                self.send(protocol, transport, bytes([octet]))
                self.clock.advance(2)
            self.assertTrue(transport.disconnecting)
            self.assertEqual(transport.value(), b"-ERR Disconnected: command not completed in time.\r\n")

    def test_steadyCommandsNotCut(self) -> None:
        """
        Lines completed within the deadline, even split over reads, are
        fine for as long as the idle timeout allows.
        """
        protocol, transport = self.loggedIn()
        for _ in range(30):
            self.assertEqual(self.send(protocol, transport, b"NO"), b"")
            self.clock.advance(9)
            self.assertEqual(self.send(protocol, transport, b"OP\r\n"), b"+OK\r\n")
            self.clock.advance(9)
        self.assertFalse(transport.disconnecting)

    def test_linesWaitingBehindCommandDoNotCount(self) -> None:
        """
        Complete lines queued behind a running command are not a pending
        line: only the client's own slowness counts.
        """
        protocol, transport = self.loggedIn()
        protocol.dataReceived(b"NOOP\r\n")
        protocol._setBusy()
        protocol.dataReceived(b"NOOP\r\nNOOP\r\n")
        self.clock.advance(30)
        self.assertFalse(transport.disconnecting)
