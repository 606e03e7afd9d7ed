"""
The filter and modifier seam of the pipeline: filters report, the pipeline
decides; modifiers edit the header section; nothing is stored on refusal.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailsrv.delivery.local import LocalDelivery
from mailsrv.envelope import Address, Envelope, Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.filters.base import Filter
from mailsrv.interfaces import (
    ACCEPT,
    FilterAction,
    FilterResult,
    HeaderEdit,
    IConnectionPolicy,
    IFilter,
    IMessageContent,
    IModifier,
)
from mailsrv.pipeline.content import SpooledMessage, applyEdit
from mailsrv.pipeline.pipeline import Pipeline
from mailsrv.pipeline.routing import Router
from mailsrv.storage.memory import MemoryMailStore
from tests.protocols.smtphelpers import SMTPHarness, policy
from tests.test_pipeline import makeDirectory

MX = policy("smtp")


class Recorder(Filter):
    """
    A filter that answers each stage from a table and records what it saw.
    """

    name = "recorder"

    def __init__(self, **answers: FilterResult) -> None:
        self.answers = answers
        self.seen: list[str] = []
        self.body = b""

    def _answer(self, stage: str) -> "defer.Deferred[FilterResult]":
        self.seen.append(stage)
        return defer.succeed(self.answers.get(stage, ACCEPT))

    def checkConnection(self, session):  # type: ignore[no-untyped-def]
        return self._answer("connection")

    def checkSender(self, session, envelope):  # type: ignore[no-untyped-def]
        return self._answer("sender")

    def checkRecipient(self, session, envelope, recipient):  # type: ignore[no-untyped-def]
        return self._answer("recipient")

    def checkMessage(self, session, envelope, message):  # type: ignore[no-untyped-def]
        verifyObject(IMessageContent, message)
        with message.open() as f:
            self.body = f.read()
        self.subject = message.headers()["Subject"]
        return self._answer("message")


@implementer(IModifier)
class AddAndRemove:
    def modify(self, session, envelope, message):  # type: ignore[no-untyped-def]
        return defer.succeed(
            HeaderEdit(prepend=("X-Top: 1",), append=("Message-ID: <new@x>",), remove=lambda name, raw: name == "x-drop")
        )


class Broken(Filter):
    name = "broken"

    def checkMessage(self, session, envelope, message):  # type: ignore[no-untyped-def]
        raise RuntimeError("daemon went away")


class FilterSeamTests(SynchronousTestCase):
    def setUp(self) -> None:
        d = Path(self.mktemp())
        d.mkdir(parents=True)
        self.directory = makeDirectory(d)
        self.store = MemoryMailStore()

    def pipeline(self, *filters: IFilter, modifiers=()) -> Pipeline:  # type: ignore[no-untyped-def]
        return Pipeline(Router(self.directory), LocalDelivery(self.store), "mx.example.test",
                        filters=filters, modifiers=modifiers)

    def deliver(self, pipeline: Pipeline, data: bytes):  # type: ignore[no-untyped-def]
        session = Session(MX, "192.0.2.1", heloName="c", esmtp=True)
        envelope = Envelope(mailFrom=Address("s", "remote.test"), recipients=[Address("alice", "example.test")])
        delivery = pipeline.startDelivery(session, envelope)
        self.successResultOf(delivery.checkSender())
        self.successResultOf(delivery.addRecipient(Address("alice", "example.test")))
        delivery.write(data)
        return delivery.commit()

    def stored(self) -> list[bytes]:
        folder = self.store.openFolder("alice@example.test")
        folder.refresh()
        return [folder.openMessage(m.uid).read() for m in folder.messages()]

    def test_interfaces(self) -> None:
        """
        The base filter and the pipeline provide their interfaces.
        """
        verifyObject(IFilter, Filter())
        verifyObject(IConnectionPolicy, self.pipeline())

    def test_stages_in_order_and_headers_added(self) -> None:
        """
        Every stage is asked once, in order; headers from filters are added
        after Received, the message content is what the client sent.
        """
        f = Recorder(message=FilterResult(addHeaders=("Authentication-Results: mx.example.test; spf=pass",)))
        self.successResultOf(self.deliver(self.pipeline(f), b"Subject: hi\r\n\r\nbody\r\n"))
        self.assertEqual(f.seen, ["sender", "recipient", "message"])
        self.assertEqual(f.body, b"Subject: hi\r\n\r\nbody\r\n")
        self.assertEqual(f.subject, "hi")
        [msg] = self.stored()
        lines = msg.split(b"\r\n")
        self.assertTrue(lines[0].startswith(b"Return-Path:"))
        self.assertIn(b"Authentication-Results: mx.example.test; spf=pass\r\nSubject: hi\r\n\r\nbody\r\n", msg)

    def test_reject_at_each_stage(self) -> None:
        """
        REJECT is permanent, TEMPFAIL temporary; a refused message is not
        stored.
        """
        for stage in ("sender", "recipient"):
            f = Recorder(**{stage: FilterResult(FilterAction.REJECT, "no thanks")})
            p = self.pipeline(f)
            delivery = p.startDelivery(Session(MX, "192.0.2.1"), Envelope(mailFrom=Address("s", "r.test")))
            d = delivery.checkSender() if stage == "sender" else (
                self.successResultOf(delivery.checkSender()) or delivery.addRecipient(Address("alice", "example.test"))
            )
            error = self.failureResultOf(d, MailError).value
            self.assertEqual((error.kind, error.message, error.temporary), (ErrorKind.REJECTED, "no thanks", False))
        f = Recorder(message=FilterResult(FilterAction.TEMPFAIL, "greylisted"))
        error = self.failureResultOf(self.deliver(self.pipeline(f), b"x\r\n"), MailError).value
        self.assertTrue(error.temporary)
        self.assertEqual(self.stored(), [])

    def test_failing_filter_tempfails(self) -> None:
        """
        A filter that crashes makes the message fail temporarily (the sender
        retries); it is never accepted unchecked nor lost.
        """
        error = self.failureResultOf(self.deliver(self.pipeline(Broken()), b"x\r\n"), MailError).value
        self.assertTrue(error.temporary)
        self.assertEqual(self.stored(), [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_quarantine_marks_envelope(self) -> None:
        """
        QUARANTINE accepts the message and marks the envelope for Junk.
        """
        p = self.pipeline(Recorder(message=FilterResult(FilterAction.QUARANTINE)))
        session = Session(MX, "192.0.2.1")
        envelope = Envelope(mailFrom=None)
        delivery = p.startDelivery(session, envelope)
        self.successResultOf(delivery.checkSender())
        self.successResultOf(delivery.addRecipient(Address("alice", "example.test")))
        delivery.write(b"x\r\n")
        self.successResultOf(delivery.commit())
        self.assertTrue(envelope.quarantined)

    def test_modifier_edits_headers(self) -> None:
        """
        Modifiers prepend, append and remove header fields; the body is
        untouched.
        """
        self.successResultOf(self.deliver(self.pipeline(modifiers=[AddAndRemove()]),
                                      b"Subject: s\r\nX-Drop: a\r\n b\r\n\r\n.body\r\n"))
        [msg] = self.stored()
        self.assertTrue(msg.endswith(b"X-Top: 1\r\nSubject: s\r\nMessage-ID: <new@x>\r\n\r\n.body\r\n"), msg)

    def test_hop_limit(self) -> None:
        """
        A message that already has 50 C{Received:} fields is a loop:
        refused with 554 5.4.6 before any filter reads it, and not stored;
        49 pass.
        """
        from mailsrv.protocols.smtp.replies import replyForError

        f = Recorder()
        hops = b"".join(b"Received: from h%d by h%d\r\n" % (i, i + 1) for i in range(50))
        error = self.failureResultOf(
            self.deliver(self.pipeline(f, modifiers=[AddAndRemove()]), hops + b"Subject: loop\r\n\r\nx\r\n"), MailError
        ).value
        reply = replyForError(error)
        self.assertEqual((reply.code, reply.status, error.reason), (554, "5.4.6", "hop-limit"))
        self.assertEqual(f.seen, ["sender", "recipient"])
        self.assertEqual(self.stored(), [])
        self.successResultOf(
            self.deliver(self.pipeline(f, modifiers=[AddAndRemove()]), hops[hops.index(b"\r\n") + 2 :] + b"\r\nx\r\n")
        )
        self.assertEqual(len(self.stored()), 1)

    def test_connection_check(self) -> None:
        """
        A REJECT at connection time fails checkConnection with its reply.
        """
        p = self.pipeline(Recorder(connection=FilterResult(FilterAction.REJECT, "listed in bl.example")))
        error = self.failureResultOf(p.checkConnection(Session(MX, "192.0.2.1")), MailError).value
        self.assertEqual(error.message, "listed in bl.example")


class SMTPConnectionRefusalTests(SynchronousTestCase):
    def test_554_greeting_then_only_quit(self) -> None:
        """
        A refused client gets a 554 greeting, 503 for commands, and QUIT
        works.
        """
        class Refusing(Pipeline):
            def __init__(self) -> None:
                pass

            def checkConnection(self, session):  # type: ignore[no-untyped-def]
                return defer.fail(MailError(ErrorKind.POLICY, "Client host blocked using bl.example"))

        h = SMTPHarness(target=Refusing())  # type: ignore[arg-type]
        self.assertEqual(h.transport.value(), b"554 5.7.1 Client host blocked using bl.example\r\n")
        self.assertEqual(h.codes(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n"), [503, 503])
        self.assertEqual(h.codes(b"QUIT\r\n"), [221])

    def test_sender_refused(self) -> None:
        """
        A sender refused by the target gets the mapped reply and no
        transaction is open afterwards.
        """
        h = SMTPHarness()
        h.target.acceptSender = lambda a: MailError(ErrorKind.POLICY, "Sender address rejected: not owned by user")
        out = h.send(b"EHLO c\r\nMAIL FROM:<x@y.test>\r\nRCPT TO:<a@example.test>\r\n")
        self.assertIn(b"554 5.7.1 <x@y.test>: Sender address rejected: not owned by user\r\n", out)
        self.assertTrue(out.endswith(b"503 5.5.1 Error: need MAIL command\r\n"))


def test_apply_edit_folding() -> None:
    """
    Folded fields are removed whole; new fields get CRLF endings.
    """
    block = b"A: 1\r\nB: 2\r\n 3\r\nC: 4\r\n"
    edit = HeaderEdit(prepend=("Z: 0\n\tz",), remove=lambda name, raw: name == "b")
    assert applyEdit(block, edit) == b"Z: 0\r\n\tz\r\nA: 1\r\nC: 4\r\n"


def test_spooled_message_without_body() -> None:
    """
    A message that is only headers (no empty line) keeps its bytes.
    """
    m = SpooledMessage()
    m.write(b"Subject: x\r\n")
    m.finish()
    assert b"".join(m.chunks()) == b"Subject: x\r\n"
    assert m.size == len(b"Subject: x\r\n")
