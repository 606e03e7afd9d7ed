"""
SMTP server behaviour, bytes in and bytes out, with a recording target.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mailsrv.config.schema import LimitsConfig
from mailsrv.envelope import Address
from mailsrv.errors import ErrorKind, MailError
from mailsrv.testing.fakes import RecordingTarget
from tests.protocols.smtphelpers import SMTPHarness, plain


class GreetingAndEHLOTests(SynchronousTestCase):
    def test_greeting(self) -> None:
        """
        The server greets with 220 and its host name.
        """
        h = SMTPHarness()
        self.assertEqual(h.transport.value(), b"220 mx.example.test ESMTP mailsrv\r\n")

    def test_ehloOnMX(self) -> None:
        """
        On the MX endpoint EHLO offers STARTTLS and the ESMTP extensions, but
        not AUTH.
        """
        h = SMTPHarness("smtp")
        lines = h.lines(b"EHLO client.test\r\n")
        self.assertEqual(lines[0], b"250-mx.example.test")
        keywords = [line[4:].split(b" ")[0] for line in lines[1:]]
        self.assertEqual(
            keywords,
            [b"PIPELINING", b"SIZE", b"STARTTLS", b"ENHANCEDSTATUSCODES", b"8BITMIME", b"SMTPUTF8",
             b"CHUNKING", b"DSN"],
        )
        self.assertTrue(lines[-1].startswith(b"250 "))

    def test_ehloOnSubmissionBeforeAndAfterTLS(self) -> None:
        """
        Submission (587) hides AUTH until STARTTLS and STARTTLS after it.
        """
        h = SMTPHarness("submission")
        before = h.send(b"EHLO client.test\r\n")
        self.assertIn(b"STARTTLS", before)
        self.assertNotIn(b"AUTH", before)
        h.startTLS()
        after = h.send(b"EHLO client.test\r\n")
        self.assertIn(b"AUTH PLAIN LOGIN", after)
        self.assertNotIn(b"STARTTLS", after)

    def test_implicitTLSNeverOffersSTARTTLS(self) -> None:
        """
        On 465 the connection is TLS already: AUTH yes, STARTTLS no.
        """
        h = SMTPHarness("submissions", implicitTLS=True)
        reply = h.send(b"EHLO client.test\r\n")
        self.assertIn(b"AUTH PLAIN LOGIN", reply)
        self.assertNotIn(b"STARTTLS", reply)
        self.assertEqual(h.codes(b"STARTTLS\r\n"), [554])

    def test_basicCommands(self) -> None:
        """
        NOOP, RSET, VRFY (without disclosing anything), HELP and QUIT answer.
        """
        h = SMTPHarness()
        self.assertEqual(h.send(b"NOOP\r\n"), b"250 2.0.0 Ok\r\n")
        self.assertEqual(h.codes(b"RSET\r\n"), [250])
        self.assertEqual(h.codes(b"VRFY alice\r\n"), [252])
        self.assertEqual(h.codes(b"HELP\r\n"), [214])
        self.assertEqual(h.send(b"QUIT\r\n"), b"221 2.0.0 Bye\r\n")
        self.assertTrue(h.transport.disconnecting)

    def test_unknownCommand(self) -> None:
        """
        Unknown verbs get 502 and the session goes on.
        """
        h = SMTPHarness()
        self.assertEqual(h.send(b"XYZZY\r\n"), b"502 5.5.2 Error: command not recognized\r\n")
        self.assertEqual(h.codes(b"NOOP\r\n"), [250])

    def test_tooManyErrors(self) -> None:
        """
        After max_errors error replies the server says 421 and hangs up.
        """
        h = SMTPHarness(limits=LimitsConfig(maxErrors=3))
        out = h.send(b"BAD\r\nBAD\r\nBAD\r\nNOOP\r\n")
        self.assertIn(b"421 4.7.0", out)
        self.assertNotIn(b"250", out)
        self.assertTrue(h.transport.disconnecting)

    def test_overlongCommandLine(self) -> None:
        """
        A command line over 2048 octets is refused, the session goes on.
        """
        h = SMTPHarness()
        self.assertEqual(h.codes(b"NOOP " + b"x" * 5000 + b"\r\nNOOP\r\n"), [500, 250])

    def test_timeout(self) -> None:
        """
        An idle client is told 421 and disconnected after command_timeout.
        """
        h = SMTPHarness(limits=LimitsConfig(commandTimeout=10))
        h.transport.clear()
        h.clock.advance(11)
        self.assertTrue(h.transport.value().startswith(b"421 4.4.2"))
        self.assertTrue(h.transport.disconnecting)


class TransactionTests(SynchronousTestCase):
    def deliver(self, h: SMTPHarness, body: bytes) -> list[int]:
        return h.codes(
            b"EHLO c\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n" + body
        )

    def test_delivery(self) -> None:
        """
        A pipelined transaction is answered in order and the message (dot
        unstuffed, CRLF) reaches the target only then acknowledged.
        """
        h = SMTPHarness()
        codes = self.deliver(h, b"Subject: hi\r\n\r\n..dot\r\nline\r\n.\r\nQUIT\r\n")
        self.assertEqual(codes, [250, 250, 250, 354, 250, 221])
        [msg] = h.target.messages
        self.assertEqual(msg.data, b"Subject: hi\r\n\r\n.dot\r\nline\r\n")
        self.assertEqual(msg.envelope.mailFrom, Address("s", "remote.test"))
        self.assertEqual(msg.recipients, [Address("alice", "example.test")])

    def test_250OnlyAfterCommit(self) -> None:
        """
        The reply to the final dot waits for the target's commit, and
        pipelined commands wait behind it.
        """
        target = RecordingTarget()
        target.holdCommits = True
        h = SMTPHarness(target=target)
        codes = self.deliver(h, b"x\r\n.\r\nNOOP\r\n")
        self.assertEqual(codes, [250, 250, 250, 354])
        h.transport.clear()
        target.pendingCommits[0].callback(None)
        self.assertEqual(h.transport.value(), b"250 2.0.0 Ok: queued as %s\r\n250 2.0.0 Ok\r\n" % (
            target.messages[0].envelope.messageId.encode(),
        ))

    def test_repliesInOrderWhileRecipientPending(self) -> None:
        """
        While a recipient check is pending, RSET (pipelined behind it) is not
        answered first, and the recipient is not added to a new transaction.
        """
        target = RecordingTarget()
        target.recipientResults = []
        h = SMTPHarness(target=target)
        out = h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.test>\r\nRSET\r\n")
        self.assertEqual(out.count(b"\r\n250 ") + out.startswith(b"250 "), 2)
        h.transport.clear()
        target.recipientResults[0].callback(None)
        self.assertEqual(h.transport.value(), b"250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n")
        self.assertEqual(h.codes(b"RCPT TO:<y@example.test>\r\n"), [503])

    def test_heloRequired(self) -> None:
        """
        MAIL before HELO/EHLO is refused.
        """
        h = SMTPHarness()
        self.assertEqual(h.send(b"MAIL FROM:<a@b.test>\r\n"), b"503 5.5.1 Error: send HELO/EHLO first\r\n")

    def test_sequenceErrors(self) -> None:
        """
        RCPT before MAIL, DATA before RCPT and nested MAIL are refused.
        """
        h = SMTPHarness()
        self.assertEqual(
            h.codes(b"EHLO c\r\nRCPT TO:<a@example.test>\r\nMAIL FROM:<>\r\nDATA\r\nMAIL FROM:<>\r\n"),
            [250, 503, 250, 503, 503],
        )

    def test_recipientRefusal(self) -> None:
        """
        A recipient the target refuses gets the mapped reply with the
        address, and other recipients still work.
        """
        target = RecordingTarget(
            lambda a: MailError(ErrorKind.POLICY, "Relay access denied") if a.domain != "example.test" else None
        )
        h = SMTPHarness(target=target)
        out = h.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<v@other.test>\r\nRCPT TO:<a@example.test>\r\n")
        self.assertIn(b"554 5.7.1 <v@other.test>: Relay access denied\r\n", out)
        self.assertTrue(out.endswith(b"250 2.1.5 Ok\r\n"))

    def test_sizeParameterOverLimit(self) -> None:
        """
        MAIL FROM with SIZE= over the limit is refused with 552 5.3.4.
        """
        h = SMTPHarness(limits=LimitsConfig(messageSize=1000))
        self.assertEqual(
            h.send(b"EHLO c\r\nMAIL FROM:<a@b.test> SIZE=1001\r\n").split(b"\r\n")[-2],
            b"552 5.3.4 Message size exceeds fixed limit",
        )

    def test_bodyOverLimit(self) -> None:
        """
        A body exceeding the limit is consumed to the end of data, then
        refused; nothing is stored and the session goes on.
        """
        h = SMTPHarness(limits=LimitsConfig(messageSize=1000))
        codes = self.deliver(h, (b"x" * 100 + b"\r\n") * 50 + b".\r\nNOOP\r\n")
        self.assertEqual(codes, [250, 250, 250, 354, 552, 250])
        self.assertEqual(h.target.messages, [])
        self.assertEqual(h.target.aborted, 1)

    def test_tooManyRecipients(self) -> None:
        """
        Recipients beyond the limit get 452 4.5.3.
        """
        h = SMTPHarness(limits=LimitsConfig(recipients=2))
        codes = h.codes(
            b"EHLO c\r\nMAIL FROM:<>\r\n" + b"".join(b"RCPT TO:<u%d@example.test>\r\n" % i for i in range(3))
        )
        self.assertEqual(codes, [250, 250, 250, 250, 452])

    def test_unknownParameter(self) -> None:
        """
        Unsupported ESMTP parameters get 555.
        """
        h = SMTPHarness()
        self.assertEqual(h.codes(b"EHLO c\r\nMAIL FROM:<a@b.test> FOO=BAR\r\n"), [250, 555])

    def test_utf8AddressNeedsSMTPUTF8(self) -> None:
        """
        A UTF-8 address is refused without SMTPUTF8 and accepted with it.
        """
        h = SMTPHarness()
        addr = "jörg@example.test".encode()
        self.assertEqual(h.codes(b"EHLO c\r\nMAIL FROM:<" + addr + b">\r\n"), [250, 553])
        self.assertEqual(h.codes(b"MAIL FROM:<" + addr + b"> SMTPUTF8\r\n"), [250])

    def test_badAddresses(self) -> None:
        """
        Malformed paths get 501.
        """
        h = SMTPHarness()
        h.send(b"EHLO c\r\n")
        for bad in [b"MAIL FROM:<a@b@c>", b"MAIL FROM:<@>", b"MAIL FROM:<a@>", b"MAIL FROM:<a b@c>"]:
            self.assertEqual(h.codes(bad + b"\r\n"), [501], bad)


class SubmissionPolicyTests(SynchronousTestCase):
    def test_mailRefusedBeforeSTARTTLS(self) -> None:
        """
        On 587, MAIL before STARTTLS gets 530 5.7.0 Must issue a STARTTLS
        command first.
        """
        h = SMTPHarness("submission")
        out = h.send(b"EHLO c\r\nMAIL FROM:<alice@example.test>\r\n")
        self.assertTrue(out.endswith(b"530 5.7.0 Must issue a STARTTLS command first\r\n"))

    def test_authRefusedBeforeSTARTTLS(self) -> None:
        """
        On 587, AUTH before STARTTLS is refused even with good credentials.
        """
        h = SMTPHarness("submission")
        out = h.send(b"EHLO c\r\nAUTH PLAIN " + plain("alice@example.test", "secret") + b"\r\n")
        self.assertTrue(out.endswith(b"530 5.7.0 Must issue a STARTTLS command first\r\n"))

    def test_mailNeedsAuthAfterTLS(self) -> None:
        """
        After STARTTLS, MAIL still needs AUTH.
        """
        h = SMTPHarness("submission")
        h.send(b"EHLO c\r\n")
        h.startTLS()
        out = h.send(b"EHLO c\r\nMAIL FROM:<alice@example.test>\r\n")
        self.assertTrue(out.endswith(b"530 5.7.0 Authentication required\r\n"))

    def test_authPlainThenMail(self) -> None:
        """
        AUTH PLAIN with an initial response succeeds after STARTTLS, and
        the session records the account.
        """
        h = SMTPHarness("submission")
        h.send(b"EHLO c\r\n")
        h.startTLS()
        out = h.send(b"EHLO c\r\nAUTH PLAIN " + plain("alice@example.test", "secret") + b"\r\n")
        self.assertTrue(out.endswith(b"235 2.7.0 Authentication successful\r\n"))
        self.assertEqual(h.server.session.authenticatedAs, "alice@example.test")
        self.assertEqual(h.codes(b"MAIL FROM:<alice@example.test>\r\n"), [250])

    def test_authLogin(self) -> None:
        """
        AUTH LOGIN asks for user name and password in base64.
        """
        h = SMTPHarness("submissions", implicitTLS=True)
        h.send(b"EHLO c\r\n")
        self.assertEqual(h.send(b"AUTH LOGIN\r\n"), b"334 VXNlcm5hbWU6\r\n")
        self.assertEqual(h.send(b"YWxpY2VAZXhhbXBsZS50ZXN0\r\n"), b"334 UGFzc3dvcmQ6\r\n")
        self.assertEqual(h.codes(b"c2VjcmV0\r\n"), [235])

    def test_authFailureIsDelayedAndLimited(self) -> None:
        """
        A wrong password is answered 535 only after the delay; the third
        failure ends the session.
        """
        h = SMTPHarness("submissions", implicitTLS=True)
        h.send(b"EHLO c\r\n")
        for attempt in range(3):
            self.assertEqual(h.send(b"AUTH PLAIN " + plain("alice@example.test", "wrong") + b"\r\n"), b"")
            h.transport.clear()
            h.clock.advance(1.0)
            self.assertTrue(h.transport.value().startswith(b"535 5.7.8"))
        self.assertTrue(h.transport.disconnecting)

    def test_authCancel(self) -> None:
        """
        A client may cancel with '*'.
        """
        h = SMTPHarness("submissions", implicitTLS=True)
        h.send(b"EHLO c\r\n")
        self.assertEqual(h.codes(b"AUTH PLAIN\r\n*\r\n"), [334, 501])
        self.assertEqual(h.send(b"AUTH PLAIN\r\n")[:3], b"334")

    def test_noAuthOnMX(self) -> None:
        """
        The MX endpoint does not do AUTH, even over TLS.
        """
        h = SMTPHarness("smtp")
        h.send(b"EHLO c\r\n")
        h.startTLS()
        self.assertNotIn(b"AUTH", h.send(b"EHLO c\r\n"))
        self.assertEqual(h.codes(b"AUTH PLAIN " + plain("alice@example.test", "secret") + b"\r\n"), [503])


class ChunkingTests(SynchronousTestCase):
    def start(self, h: SMTPHarness) -> None:
        h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\n")

    def test_chunks(self) -> None:
        """
        BDAT chunks are stored verbatim (no dot handling); each chunk is
        acknowledged, LAST commits.
        """
        h = SMTPHarness()
        self.start(h)
        self.assertEqual(h.send(b"BDAT 7\r\n.a\r\n.\r"), b"")
        self.assertEqual(h.send(b"\n"), b"250 2.0.0 Ok: 7 octets\r\n")
        out = h.send(b"BDAT 5 LAST\r\nb\r\n\r\n")
        self.assertTrue(out.startswith(b"250 2.0.0 Ok: queued as "))
        self.assertEqual(h.target.messages[0].data, b".a\r\n.\r\nb\r\n\r\n")

    def test_bdat_zero_last(self) -> None:
        """
        BDAT 0 LAST ends a message sent in earlier chunks; pipelined
        commands after a chunk are commands again.
        """
        h = SMTPHarness()
        self.start(h)
        codes = h.codes(b"BDAT 3\r\nx\r\nBDAT 0 LAST\r\nNOOP\r\n")
        self.assertEqual(codes, [250, 250, 250])
        self.assertEqual(h.target.messages[0].data, b"x\r\n")

    def test_refused_chunk_is_consumed(self) -> None:
        """
        A BDAT without a transaction is refused after its octets are read:
        they are never executed as commands.
        """
        h = SMTPHarness()
        h.send(b"EHLO c\r\n")
        codes = h.codes(b"BDAT 31 LAST\r\nMAIL FROM:<evil@x.test>\r\nDATA\r\nNOOP\r\n")
        self.assertEqual(codes, [503, 250])
        self.assertEqual(h.target.messages, [])

    def test_bare_newline_across_chunks(self) -> None:
        """
        A CR at the end of one chunk and a non-LF at the start of the next is
        a bare CR: the message is refused.
        """
        h = SMTPHarness()
        self.start(h)
        self.assertEqual(h.codes(b"BDAT 2\r\na\r"), [250])
        self.assertEqual(h.codes(b"BDAT 3 LAST\r\nb\r\n"), [550])
        self.assertEqual(h.target.messages, [])

    def test_size_limit(self) -> None:
        """
        Chunks beyond the size limit are refused (552) and nothing stored.
        """
        h = SMTPHarness(limits=LimitsConfig(messageSize=10))
        self.start(h)
        self.assertEqual(h.codes(b"BDAT 20 LAST\r\n" + b"y" * 20), [552])
        self.assertEqual(h.target.messages, [])

    def test_bad_syntax_closes(self) -> None:
        """
        BDAT without a usable size cannot be resynchronised: 501 and close.
        """
        h = SMTPHarness()
        self.start(h)
        self.assertEqual(h.codes(b"BDAT lots\r\n"), [501])
        self.assertTrue(h.transport.disconnecting)

    def test_data_after_bdat(self) -> None:
        """
        DATA cannot follow BDAT in one transaction.
        """
        h = SMTPHarness()
        self.start(h)
        self.assertEqual(h.codes(b"BDAT 1\r\nxDATA\r\n"), [250, 503])


class DSNParameterTests(SynchronousTestCase):
    def test_valid_parameters_stored(self) -> None:
        """
        RET/ENVID and NOTIFY/ORCPT are accepted and kept in the envelope.
        """
        h = SMTPHarness()
        codes = h.codes(
            b"EHLO c\r\nMAIL FROM:<a@b.test> RET=HDRS ENVID=QQ+2B1\r\n"
            b"RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@example.test\r\n"
            b"DATA\r\nx\r\n.\r\n"
        )
        self.assertEqual(codes, [250, 250, 250, 354, 250])
        envelope = h.target.messages[0].envelope
        self.assertEqual(envelope.mailParams, {"RET": "HDRS", "ENVID": "QQ+2B1"})
        self.assertEqual(envelope.rcptParams, [{"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;alice@example.test"}])

    def test_invalid_parameters(self) -> None:
        """
        Malformed DSN parameters get 555.
        """
        h = SMTPHarness()
        h.send(b"EHLO c\r\n")
        self.assertEqual(h.codes(b"MAIL FROM:<a@b.test> RET=ALL\r\n"), [555])
        self.assertEqual(h.codes(b"MAIL FROM:<a@b.test> ENVID=a=b\r\n"), [555])
        h.send(b"MAIL FROM:<a@b.test>\r\n")
        for bad in (b"NOTIFY=NEVER,SUCCESS", b"NOTIFY=SOMETIMES", b"ORCPT=x400;a", b"ORCPT=rfc822", b"FOO=1"):
            self.assertEqual(h.codes(b"RCPT TO:<alice@example.test> " + bad + b"\r\n"), [555], bad)
