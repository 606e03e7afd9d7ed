"""
Plaintext pipelined behind STARTTLS must not be executed inside TLS
(CVE-2011-0411 class; RFC 3207 section 4.2).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.protocols.smtphelpers import SMTPHarness


class SMTPSTARTTLSInjectionTests(SynchronousTestCase):
    def test_pipelinedCommandDiscarded(self) -> None:
        """
        C{STARTTLS\\r\\nMAIL FROM:<x@y>\\r\\n} in one packet: only the 220
        is answered, and nothing more arrives after the handshake.
        """
        h = SMTPHarness("smtp")
        h.send(b"EHLO c\r\n")
        out = h.send(b"STARTTLS\r\nMAIL FROM:<x@y.test>\r\n")
        self.assertEqual(out, b"220 2.0.0 Ready to start TLS\r\n")
        self.assertIsNotNone(h.transport.tlsStartedWith)
        h.transport.clear()
        h.server.handshakeCompleted()
        self.assertEqual(h.transport.value(), b"")

    def test_stateResetAfterSTARTTLS(self) -> None:
        """
        HELO must be given again after STARTTLS, and a transaction begun
        before it is gone.
        """
        h = SMTPHarness("smtp")
        h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n")
        h.startTLS()
        self.assertEqual(h.codes(b"RCPT TO:<alice@example.test>\r\n"), [503])
        self.assertEqual(h.codes(b"MAIL FROM:<a@b.test>\r\n"), [503])
        self.assertEqual(h.codes(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n"), [250, 250])
