"""
Refusals the SMTP server makes on its own (sequence, syntax, TLS and AUTH
policy, limits, timeouts) are logged, one info line each with C{stage},
C{code} and C{reason}, and counted on /metrics like the pipeline's.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.logger import LogLevel, Logger
from twisted.trial.unittest import SynchronousTestCase

from mailsrv.config.schema import LimitsConfig
from mailsrv.metrics import Metrics
from mailsrv.policy.limits import ConnectionLimiter
from mailsrv.protocols.smtp.server import SMTPServer
from tests.protocols.smtphelpers import SMTPHarness, plain

PROTOCOL_REFUSAL = "SMTP {command} from {peer} on {endpoint} refused: {code} {text}"


class RefusalLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.patch(SMTPServer, "log", Logger(observer=self.events.append))

    def refusals(self) -> list[tuple[str, str, int, str]]:
        """
        (command, stage, code, reason) of every refusal logged so far, in
        order: the protocol's own and the pipeline's (MAIL/RCPT/Refused).
        """
        out = []
        for e in self.events:
            if "reason" in e and "code" in e:
                out.append((e.get("command", "-"), e["stage"] if "stage" in e else "-", e["code"], e["reason"]))
        return out

    def assertRefusals(self, expected: list[tuple[str, str, int, str]]) -> None:
        self.assertEqual(self.refusals(), expected)
        for e in self.events:
            if e.get("log_format") == PROTOCOL_REFUSAL:
                self.assertEqual(e["log_level"], LogLevel.info)
                for key in ("sessionId", "endpoint", "peer", "text", "status"):
                    self.assertIn(key, e)

    def rejections(self, **labels: str) -> float:
        """
        The value of C{mailsrv_smtp_rejections_total} with C{labels} after
        counting the events logged so far.
        """
        metrics = Metrics()
        for e in self.events:
            metrics.observe(e)
        for family in text_string_to_metric_families(metrics.render().decode()):
            for sample in family.samples:
                if sample.name == "mailsrv_smtp_rejections_total" and sample.labels == labels:
                    return sample.value
        return 0.0

    def test_starttlsRequired(self) -> None:
        """
        On submission, MAIL and AUTH before STARTTLS are refused as
        C{starttls-required} at their stages, and counted.
        """
        h = SMTPHarness("submission")
        self.assertEqual(
            h.codes(b"EHLO c\r\nMAIL FROM:<alice@example.test>\r\nAUTH PLAIN " + plain("a", "b") + b"\r\n"),
            [250, 530, 530],
        )
        self.assertRefusals([("MAIL", "mail", 530, "starttls-required"), ("AUTH", "auth", 530, "starttls-required")])
        self.assertEqual(
            self.rejections(endpoint="submission", stage="mail", code="530", reason="starttls-required"), 1
        )
        self.assertEqual(
            self.rejections(endpoint="submission", stage="auth", code="530", reason="starttls-required"), 1
        )

    def test_authRequired(self) -> None:
        """
        On submission over TLS, MAIL without AUTH is C{auth-required}.
        """
        h = SMTPHarness("submission")
        h.send(b"EHLO c\r\n")
        h.startTLS()
        self.assertEqual(h.codes(b"EHLO c\r\nMAIL FROM:<alice@example.test>\r\n"), [250, 530])
        self.assertRefusals([("MAIL", "mail", 530, "auth-required")])

    def test_heloRequired(self) -> None:
        """
        MAIL and AUTH before EHLO are C{helo-required}.
        """
        h = SMTPHarness("submissions", implicitTLS=True)
        self.assertEqual(h.codes(b"MAIL FROM:<a@b.test>\r\nAUTH PLAIN\r\n"), [503, 503])
        self.assertRefusals([("MAIL", "mail", 503, "helo-required"), ("AUTH", "auth", 503, "helo-required")])

    def test_badSequence(self) -> None:
        """
        RCPT before MAIL, DATA before MAIL, DATA before RCPT, a nested MAIL,
        BDAT before RCPT and a second STARTTLS are C{bad-sequence} at the
        stage of the command.
        """
        h = SMTPHarness()
        h.send(b"EHLO c\r\n")
        h.startTLS()
        self.assertEqual(
            h.codes(
                b"EHLO c\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nMAIL FROM:<a@b.test>\r\n"
                b"DATA\r\nMAIL FROM:<a@b.test>\r\nBDAT 3 LAST\r\nabcSTARTTLS\r\n"
            ),
            [250, 503, 503, 250, 503, 503, 503, 554],
        )
        self.assertRefusals(
            [
                ("RCPT", "rcpt", 503, "bad-sequence"),
                ("DATA", "data", 503, "bad-sequence"),
                ("DATA", "data", 503, "bad-sequence"),
                ("MAIL", "mail", 503, "bad-sequence"),
                ("BDAT", "data", 503, "bad-sequence"),
                ("STARTTLS", "starttls", 554, "bad-sequence"),
            ]
        )
        self.assertEqual(self.rejections(endpoint="smtp", stage="data", code="503", reason="bad-sequence"), 3)

    def test_syntax(self) -> None:
        """
        Malformed MAIL, RCPT and HELO arguments, unknown parameters and
        arguments to commands that take none are C{syntax}; a non-ASCII
        address without SMTPUTF8 is C{non-ascii}.
        """
        h = SMTPHarness()
        self.assertEqual(
            h.codes(
                b"EHLO\r\nEHLO c\r\nMAIL <a@b.test>\r\nMAIL FROM:<a@@b>\r\nMAIL FROM:<\xc3\xa9@b.test>\r\n"
                b"MAIL FROM:<a@b.test> FOO=1\r\nMAIL FROM:<a@b.test>\r\nRCPT <alice@example.test>\r\n"
                b"RCPT TO:<alice@example.test> NOTIFY=SOMETIMES\r\nRCPT TO:<x@@y>\r\n"
                b"RCPT TO:<alice@example.test>\r\nDATA now\r\nRSET please\r\n"
            ),
            [501, 250, 501, 501, 553, 555, 250, 501, 555, 501, 250, 501, 501],
        )
        self.assertRefusals(
            [
                ("EHLO", "helo", 501, "syntax"),
                ("MAIL", "mail", 501, "syntax"),
                ("MAIL", "mail", 501, "syntax"),
                ("MAIL", "mail", 553, "non-ascii"),
                # The parameter check's own line, which names the sender.
                ("-", "-", 555, "syntax"),
                ("RCPT", "rcpt", 501, "syntax"),
                ("RCPT", "rcpt", 555, "syntax"),
                ("RCPT", "rcpt", 501, "syntax"),
                ("DATA", "data", 501, "syntax"),
                ("RSET", "command", 501, "syntax"),
            ]
        )
        self.assertEqual(self.rejections(endpoint="smtp", stage="mail", code="555", reason="syntax"), 1)
        self.assertEqual(self.rejections(endpoint="smtp", stage="rcpt", code="555", reason="syntax"), 1)

    def test_tooManyRecipientsOncePerTransaction(self) -> None:
        """
        Recipients over the limit get 452 4.5.3 each (not counted as
        errors), but only the first of a transaction is logged, so a
        client sending thousands cannot flood the log; the next
        transaction is logged again.
        """
        h = SMTPHarness(limits=LimitsConfig(recipients=2, maxErrors=3))
        rcpts = b"".join(b"RCPT TO:<r%d@example.test>\r\n" % i for i in range(10))
        self.assertEqual(h.codes(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n" + rcpts), [250, 250, 250, 250] + [452] * 8)
        self.assertFalse(h.transport.disconnecting)
        h.send(b"RSET\r\nMAIL FROM:<a@b.test>\r\n" + rcpts)
        self.assertRefusals([("RCPT", "rcpt", 452, "too-many-recipients")] * 2)
        self.assertEqual(
            self.rejections(endpoint="smtp", stage="rcpt", code="452", reason="too-many-recipients"), 2
        )

    def test_sizeDeclaredAndInData(self) -> None:
        """
        A declared SIZE over the limit and a message growing over it in
        DATA and in a BDAT chunk are refused as C{size} (the DATA ones
        once, at the end of the message).
        """
        h = SMTPHarness(limits=LimitsConfig(messageSize=100))
        envelope = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\n"
        self.assertEqual(h.codes(b"EHLO c\r\nMAIL FROM:<a@b.test> SIZE=101\r\n"), [250, 552])
        self.assertEqual(h.codes(envelope + b"DATA\r\n" + b"x" * 70 + b"\r\n" + b"y" * 70 + b"\r\n.\r\n"), [250, 250, 354, 552])
        self.assertEqual(h.codes(envelope + b"BDAT 150\r\n" + b"z" * 150), [250, 250, 552])
        self.assertRefusals([("-", "-", 552, "size")] * 3)
        self.assertEqual(self.rejections(endpoint="smtp", stage="mail", code="552", reason="size"), 1)
        self.assertEqual(self.rejections(endpoint="smtp", stage="data", code="552", reason="size"), 2)

    def test_bareNewline(self) -> None:
        """
        A message with a bare LF is refused as C{bare-newline}.
        """
        h = SMTPHarness()
        h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        self.assertEqual(h.codes(b"a\nb\r\n.\r\n"), [550])
        self.assertRefusals([("-", "-", 550, "bare-newline")])
        self.assertEqual(self.rejections(endpoint="smtp", stage="data", code="550", reason="bare-newline"), 1)

    def test_lineTooLongAndUnknownCommand(self) -> None:
        """
        An over-long command line is C{line-too-long}; an unknown verb is
        C{unknown-command}, logged with the verb made printable.
        """
        h = SMTPHarness()
        self.assertEqual(h.codes(b"NOOP " + b"x" * 5000 + b"\r\nX\x1b[2J\r\n\r\n"), [500, 502, 502])
        self.assertRefusals(
            [
                ("line", "command", 500, "line-too-long"),
                ("X?[2J", "command", 502, "unknown-command"),
                ("(empty)", "command", 502, "unknown-command"),
            ]
        )

    def test_tooManyErrors(self) -> None:
        """
        A client repeating a bad command gets max_errors refusal lines,
        then one C{too-many-errors} line as it is disconnected, however
        many more it sent.
        """
        h = SMTPHarness(limits=LimitsConfig(maxErrors=5))
        self.assertEqual(h.codes(b"RCPT TO:<a@b.test>\r\n" * 20), [503] * 5 + [421])
        self.assertTrue(h.transport.disconnecting)
        self.assertRefusals([("RCPT", "rcpt", 503, "bad-sequence")] * 5 + [("session", "session", 421, "too-many-errors")])
        self.assertEqual(self.rejections(endpoint="smtp", stage="session", code="421", reason="too-many-errors"), 1)

    def test_authFailuresCountedAsLogins(self) -> None:
        """
        Failed logins are counted as failed auth attempts (not again as
        refusals); the one that ends the session is C{too-many-errors}.
        AUTH on the MX, an unknown mechanism and a cancelled exchange are
        refusals of their own.
        """
        h = SMTPHarness("submissions", implicitTLS=True)
        h.send(b"EHLO c\r\n")
        self.assertEqual(h.codes(b"AUTH CRAM-MD5\r\nAUTH PLAIN\r\n*\r\n"), [504, 334, 501])
        for _ in range(3):
            h.send(b"AUTH PLAIN " + plain("alice@example.test", "wrong") + b"\r\n")
            h.clock.advance(1.0)
        self.assertTrue(h.transport.disconnecting)
        self.assertRefusals(
            [
                ("AUTH", "auth", 504, "auth-mechanism"),
                ("AUTH", "auth", 501, "auth-cancelled"),
                ("session", "session", 421, "too-many-errors"),
            ]
        )
        outcomes = [e["outcome"] for e in self.events if str(e.get("log_format")).startswith("AUTH ")]
        self.assertEqual(outcomes, ["failure"] * 3)
        mx = SMTPHarness("smtp")
        self.assertEqual(mx.codes(b"EHLO c\r\nAUTH PLAIN\r\n"), [250, 503])
        self.assertEqual(self.refusals()[-1], ("AUTH", "auth", 503, "not-offered"))

    def timeoutEvent(self) -> dict[str, Any]:
        (event,) = [e for e in self.events if str(e.get("log_format")).startswith("SMTP timeout")]
        return event

    def test_commandTimeout(self) -> None:
        """
        A command timeout is C{timeout} at stage C{command}.
        """
        h = SMTPHarness(limits=LimitsConfig(commandTimeout=10))
        h.clock.advance(11)
        self.assertTrue(h.transport.disconnecting)
        event = self.timeoutEvent()
        self.assertEqual((event["stage"], event["code"], event["reason"]), ("command", 421, "timeout"))
        self.assertEqual(self.rejections(endpoint="smtp", stage="command", code="421", reason="timeout"), 1)

    def test_dataTimeout(self) -> None:
        """
        Message data stalling is C{timeout} at stage C{data}.
        """
        h = SMTPHarness(limits=LimitsConfig(commandTimeout=10, dataTimeout=30))
        h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        h.clock.advance(31)
        self.assertTrue(h.transport.disconnecting)
        event = self.timeoutEvent()
        self.assertEqual((event["stage"], event["code"], event["reason"]), ("data", 421, "timeout"))

    def test_connectionLimit(self) -> None:
        """
        A connection over the limit is counted as a connection and as a
        C{too-many-connections} refusal at stage C{connect}.
        """
        limiter = ConnectionLimiter(1, 1)
        SMTPHarness(limiter=limiter)
        h = SMTPHarness(limiter=limiter)
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(
            self.rejections(endpoint="smtp", stage="connect", code="421", reason="too-many-connections"), 1
        )
        metrics = Metrics()
        for e in self.events:
            metrics.observe(e)
        self.assertIn(b'mailsrv_connections_total{endpoint="smtp",protocol="smtp"} 2.0', metrics.render())

    def test_goodSessionLogsNoRefusal(self) -> None:
        """
        A normal delivery logs no refusal.
        """
        h = SMTPHarness()
        self.assertEqual(
            h.codes(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nHi\r\n.\r\nQUIT\r\n"),
            [250, 250, 250, 354, 250, 221],
        )
        self.assertEqual(self.refusals(), [])
