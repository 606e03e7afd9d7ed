"""
SMTP smuggling: only CRLF.CRLF ends DATA, and no bare-LF/bare-CR variant
can end one message and start a second transaction.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mailsrv.protocols.smtp.data import MAX_PENDING
from tests.protocols.smtphelpers import SMTPHarness

SMUGGLED = b"MAIL FROM:<spoof@bank.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nevil\r\n"

VARIANTS = {
    "LF.LF": b"\n.\n",
    "CRLF.LF": b"\r\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
    "CR.CR": b"\r.\r",
    "LF.CR": b"\n.\r",
    "CRLF.NULCRLF": b"\r\n.\x00\r\n",
}


class SmugglingTests(SynchronousTestCase):
    def transaction(self, h: SMTPHarness, body: bytes) -> list[int]:
        return h.codes(
            b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n" + body
        )

    def test_variants(self) -> None:
        """
        For every end-of-data variant, at most one transaction happens and
        no message is accepted with a bare CR or LF in it.
        """
        for name, eod in VARIANTS.items():
            h = SMTPHarness()
            codes = self.transaction(h, b"body1" + eod + SMUGGLED + b".\r\n")
            self.assertEqual(codes.count(354), 1, name)
            self.assertLessEqual(len(h.target.messages), 1, name)
            for msg in h.target.messages:
                self.assertEqual(msg.envelope.mailFrom.local, "a", name)
                self.assertEqual(msg.data.count(b"\n"), msg.data.count(b"\r\n"), name)

    def test_bareLFRefused(self) -> None:
        """
        A message with a bare LF is refused with 550 5.5.2 after the real
        end of data, and the session continues.
        """
        h = SMTPHarness()
        codes = self.transaction(h, b"a\nb\r\n.\r\nNOOP\r\n")
        self.assertEqual(codes, [250, 250, 250, 354, 550, 250])
        self.assertEqual(h.target.messages, [])

    def test_overlongLineStaysInData(self) -> None:
        """
        A body line far longer than any line limit does not return the
        session to command mode: the commands after it are message text.
        """
        h = SMTPHarness()
        body = b"x" * (MAX_PENDING * 3) + b"\r\n" + SMUGGLED + b".\r\n"
        codes = self.transaction(h, body)
        self.assertEqual(codes, [250, 250, 250, 354, 250])
        [msg] = h.target.messages
        self.assertIn(b"MAIL FROM:<spoof@bank.test>", msg.data)

    def test_endOfDataSplitAcrossReads(self) -> None:
        """
        CRLF.CRLF split over several reads still ends the data, once.
        """
        h = SMTPHarness()
        self.transaction(h, b"")
        for piece in [b"line\r", b"\n", b".", b"\r", b"\nNOOP\r\n"]:
            h.server.dataReceived(piece)
        self.assertEqual(len(h.target.messages), 1)
        self.assertEqual(h.target.messages[0].data, b"line\r\n")

    def test_dotUnstuffingAcrossReads(self) -> None:
        """
        A stuffed dot at the start of a read is unstuffed exactly once.
        """
        h = SMTPHarness()
        self.transaction(h, b"a\r\n")
        for piece in [b"..b\r\n", b"..", b".c\r\n.\r\n"]:
            h.server.dataReceived(piece)
        self.assertEqual(h.target.messages[0].data, b"a\r\n.b\r\n..c\r\n")
