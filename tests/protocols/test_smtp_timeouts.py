"""
SMTP timers in memory: a command line must arrive whole within
C{command_timeout} (reads do not restart the timer), DATA and BDAT are held
to C{min_data_rate}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mailsrv.config.schema import LimitsConfig
from tests.protocols.smtphelpers import SMTPHarness

LIMITS = LimitsConfig(commandTimeout=10, dataTimeout=30, minDataRate=100)
TIMEOUT_REPLY = b"421 4.4.2 mx.example.test Error: timeout exceeded\r\n"


class SMTPTimeoutTests(SynchronousTestCase):
    def test_slowLorisCommandClosed(self) -> None:
        """
        A command sent one octet every two seconds gets 421 4.4.2 at
        C{command_timeout}, although each read came well within it.
        """
        h = SMTPHarness(limits=LIMITS)
        h.transport.clear()
        for octet in b"EHLO slowloris.test\r\n"[:5]:
            h.server.dataReceived(bytes([octet]))
            h.clock.advance(2)
        self.assertEqual(h.transport.value(), TIMEOUT_REPLY)
        self.assertTrue(h.transport.disconnecting)

    def test_eachCommandGetsItsTime(self) -> None:
        """
        Every complete command restarts the timer: a client sending a
        command every nine seconds keeps its session.
        """
        h = SMTPHarness(limits=LIMITS)
        for _ in range(20):
            h.clock.advance(9)
            self.assertEqual(h.codes(b"NOOP\r\n"), [250])
        self.assertFalse(h.transport.disconnecting)

    def deliverySoFar(self, h: SMTPHarness) -> None:
        self.assertEqual(
            h.codes(b"EHLO c\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"),
            [250, 250, 250, 354],
        )

    def test_dataAtMinimumRateCompletes(self) -> None:
        """
        A body arriving steadily above C{min_data_rate} is accepted although
        it takes ten times C{data_timeout}.
        """
        h = SMTPHarness(limits=LIMITS)
        self.deliverySoFar(h)
        line = b"x" * 148 + b"\r\n"
        for _ in range(300):
            h.clock.advance(1)
            h.server.dataReceived(line)
        self.assertFalse(h.transport.disconnecting)
        self.assertEqual(h.codes(b".\r\n"), [250])

    def test_dataTrickleClosed(self) -> None:
        """
        A body trickled far below the rate gets 421 once its credit is spent
        (about C{data_timeout}); the transaction is not delivered.
        """
        h = SMTPHarness(limits=LIMITS)
        self.deliverySoFar(h)
        h.transport.clear()
        for _ in range(3):
            h.clock.advance(10)
            h.server.dataReceived(b"x")
        h.clock.advance(1)
        self.assertEqual(h.transport.value(), TIMEOUT_REPLY)
        self.assertTrue(h.transport.disconnecting)
        h.server.connectionLost(None)
        self.assertEqual(h.target.messages, [])

    def test_stalledDataClosed(self) -> None:
        """
        A client that stops in the middle of DATA is cut off after
        C{data_timeout}.
        """
        h = SMTPHarness(limits=LIMITS)
        self.deliverySoFar(h)
        h.server.dataReceived(b"Subject: x\r\n")
        h.transport.clear()
        h.clock.advance(29)
        self.assertFalse(h.transport.disconnecting)
        h.clock.advance(1)
        self.assertEqual(h.transport.value(), TIMEOUT_REPLY)

    def test_bdatChunksAtRate(self) -> None:
        """
        BDAT chunk data earns time the same way; after the last chunk the
        command timer is back.
        """
        h = SMTPHarness(limits=LIMITS)
        self.assertEqual(
            h.codes(b"EHLO c\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"), [250, 250, 250]
        )
        body = b"Subject: b\r\n\r\n" + b"y" * (150 * 100 - 14)
        h.server.dataReceived(b"BDAT %d LAST\r\n" % (len(body),))
        h.transport.clear()
        for i in range(0, len(body), 150):
            h.clock.advance(1)
            h.server.dataReceived(body[i : i + 150])
        self.assertTrue(h.transport.value().startswith(b"250 "), h.transport.value())
        h.transport.clear()
        h.clock.advance(10)
        self.assertEqual(h.transport.value(), TIMEOUT_REPLY)
