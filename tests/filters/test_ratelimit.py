# -*- test-case-name: tests.filters.test_ratelimit -*-
"""
Tests for L{mailsrv.filters.ratelimit}, on an injected clock.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mailsrv.envelope import Address, Envelope, Session
from mailsrv.errors import MailError
from mailsrv.filters.ratelimit import LIMITED, RateLimitFilter
from mailsrv.interfaces import FilterAction, IFilter
from mailsrv.pipeline.content import SpooledMessage
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode
from mailsrv.protocols.smtp.replies import replyForError

SUBMISSION = EndpointPolicy("submission", Protocol.SUBMISSION, ("127.0.0.1:587",), TLSMode.NONE, auth=True)


class RateLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.filter = RateLimitFilter(self.clock, 3, exempt=["newsletter@example.test"])

    def send(self, account: str = "alice@example.test") -> None:
        """
        One whole accepted message from C{account}.
        """
        session = Session(endpoint=SUBMISSION, peerHost="192.0.2.1", authenticatedAs=account)
        envelope = Envelope(mailFrom=Address.fromString(account))
        self.assertEqual(self.successResultOf(self.filter.checkSender(session, envelope)).action, FilterAction.ACCEPT)
        message = SpooledMessage()
        message.finish()
        self.successResultOf(self.filter.checkMessage(session, envelope, message))

    def refused(self, account: str = "alice@example.test") -> MailError:
        session = Session(endpoint=SUBMISSION, peerHost="192.0.2.1", authenticatedAs=account)
        failure = self.failureResultOf(self.filter.checkSender(session, Envelope()), MailError)
        return failure.value  # type: ignore[return-value]

    def test_interface(self) -> None:
        """
        The filter provides L{IFilter}.
        """
        self.assertTrue(verifyObject(IFilter, self.filter))

    def test_overLimit(self) -> None:
        """
        After N messages within the hour, MAIL FROM gets 452 4.7.1, and the
        first refusal is logged as an error.
        """
        events: list[dict[str, object]] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for _ in range(3):
            self.clock.advance(60)
            self.send()
        error = self.refused()
        reply = replyForError(error)
        self.assertEqual((reply.code, reply.status, reply.text), (452, "4.7.1", LIMITED))
        self.refused()
        loud = [e for e in events if e.get("account") == "alice@example.test"]
        self.assertEqual([e["log_level"].name for e in loud], ["error", "warn"])  # type: ignore[union-attr]

    def test_slidingWindow(self) -> None:
        """
        The limit lifts as the oldest message of the window turns an hour
        old, one message at a time.
        """
        for _ in range(3):
            self.send()
            self.clock.advance(600)
        self.refused()
        self.clock.advance(3600 - 1800)
        self.send()
        self.refused()

    def test_perAccount(self) -> None:
        """
        Each account has its own count; exempt accounts and sessions
        without authentication have none.
        """
        for _ in range(3):
            self.send()
        self.refused()
        self.send("bob@example.test")
        for _ in range(5):
            self.send("newsletter@example.test")
        session = Session(endpoint=SUBMISSION, peerHost="192.0.2.1")
        for _ in range(5):
            self.successResultOf(self.filter.checkSender(session, Envelope()))
            self.successResultOf(self.filter.checkMessage(session, Envelope(), SpooledMessage()))

    def test_serverGeneratedMailNotLimited(self) -> None:
        """
        Mail the server generates itself (bounces, Sieve redirects and
        vacation replies, all in its internal session) is never counted or
        refused, however much of it there is.
        """
        from mailsrv.pipeline.submission import internalSession

        session = internalSession()
        for _ in range(10):
            result = self.successResultOf(self.filter.checkSender(session, Envelope()))
            self.assertEqual(result.action, FilterAction.ACCEPT)
            message = SpooledMessage()
            message.finish()
            self.successResultOf(self.filter.checkMessage(session, Envelope(), message))
        self.send()  # a user's count is untouched
