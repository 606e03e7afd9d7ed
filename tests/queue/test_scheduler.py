"""
The scheduler on a fake clock: retries with exponential backoff, 5xx
fails at once with a DSN through the bounce target, no DSN for <>,
lifetime expiry, restart resumes, and the queue target's contract.
"""

from __future__ import annotations

import email
from pathlib import Path
from typing import Any, Sequence

from twisted.internet import defer, task
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mailsrv.config.schema import DEFAULT_ENDPOINTS, QueueConfig
from mailsrv.delivery.queued import QueuedDelivery
from mailsrv.envelope import Address, Envelope, Session
from mailsrv.interfaces import IDeliveryTarget
from mailsrv.queue.relay import DELIVERED, PERMANENT, TEMPORARY, Outcome
from mailsrv.queue.scheduler import Scheduler, backoff, synchronous
from mailsrv.queue.spool import QueueEntry, Spool, checkQueueId, QueueIdError
from mailsrv.testing.fakes import RecordingTarget

CONFIG = QueueConfig(retryInitial=300, retryMax=3600, lifetime=5 * 24 * 3600)
SUBMISSION = {e.name: e for e in DEFAULT_ENDPOINTS}["submission"]


class ScriptedDeliverer:
    """
    Answers each attempt from a list of {address: kind}.
    """

    def __init__(self, script: list[dict[str, str]]) -> None:
        self.script = script
        self.calls: list[list[str]] = []
        self.relay = "mx.remote.test[127.0.0.1]:25"
        self.tlsVersion = "TLSv1.3"

    async def deliver(self, entry: QueueEntry, recipients: Sequence[str], path: Path, context: Any) -> list[Outcome]:
        self.calls.append(list(recipients))
        answers = self.script.pop(0)
        out = []
        for r in recipients:
            kind = answers.get(r, DELIVERED)
            code = {DELIVERED: "250 2.0.0 ok", TEMPORARY: "451 4.3.0 later", PERMANENT: "550 5.1.1 unknown"}[kind]
            out.append(
                Outcome(r, kind, code.split()[1], code, "mx.remote.test", self.relay, self.tlsVersion, bool(self.tlsVersion))
            )
        return out


class SchedulerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.spool = Spool(Path(self.mktemp()))
        self.spool.ensureDirectories()
        self.bounces = RecordingTarget()

    def scheduler(self, deliverer: ScriptedDeliverer) -> Scheduler:
        s = Scheduler(self.spool, deliverer, self.clock, synchronous, CONFIG, "mail.example.test")
        s.bounceTarget = self.bounces
        self.successResultOf(__import__("twisted.internet.defer", fromlist=["Deferred"]).Deferred.fromCoroutine(s.start()))
        self.addCleanup(s.stop)
        return s

    def enqueue(self, scheduler: Scheduler, sender: str, recipients: list[str]) -> str:
        target = QueuedDelivery(self.spool, scheduler, synchronous, self.clock.seconds)
        session = Session(SUBMISSION, "127.0.0.1", authenticatedAs="alice@example.test")
        envelope = Envelope(mailFrom=Address.fromString(sender) if sender else None)
        delivery = target.startDelivery(session, envelope)
        self.successResultOf(delivery.checkSender())
        for r in recipients:
            self.successResultOf(delivery.addRecipient(Address.fromString(r)))
        delivery.write(b"Subject: test\r\n\r\nbody\r\n")
        self.successResultOf(delivery.commit())
        return envelope.messageId

    def test_target_interface(self) -> None:
        """
        The queue target provides IDeliveryTarget.
        """
        self.assertTrue(verifyObject(IDeliveryTarget, QueuedDelivery(self.spool, None, synchronous)))

    def test_backoff_doubles_to_maximum(self) -> None:
        """
        300, 600, 1200, 2400, then capped at 3600.
        """
        self.assertEqual([backoff(CONFIG, n) for n in range(1, 7)], [300, 600, 1200, 2400, 3600, 3600])

    def test_tempfail_then_success(self) -> None:
        """
        A 4xx defers the recipient for retry_initial seconds; the retry
        delivers only the recipient still pending, then the entry is gone.
        """
        deliverer = ScriptedDeliverer([{"b@remote.test": TEMPORARY}, {}])
        s = self.scheduler(deliverer)
        queueId = self.enqueue(s, "alice@example.test", ["a@remote.test", "b@remote.test"])
        self.clock.advance(0)
        self.assertEqual(deliverer.calls, [["a@remote.test", "b@remote.test"]])
        self.assertEqual(self.spool.find(queueId), "deferred")
        entry = self.spool.load("deferred", queueId)
        self.assertEqual(entry.nextAttempt, self.clock.seconds() + 300)
        self.clock.advance(299)
        self.assertEqual(len(deliverer.calls), 1)
        self.clock.advance(1)
        self.assertEqual(deliverer.calls[1], ["b@remote.test"])
        self.assertIsNone(self.spool.find(queueId))
        self.assertEqual(self.bounces.messages, [])

    def test_permanent_failure_bounces(self) -> None:
        """
        A 5xx fails the recipient at once and sends one multipart/report
        from <> to the sender through the bounce target.
        """
        s = self.scheduler(ScriptedDeliverer([{"a@remote.test": PERMANENT}]))
        queueId = self.enqueue(s, "alice@example.test", ["a@remote.test"])
        self.clock.advance(0)
        self.assertIsNone(self.spool.find(queueId))
        (bounce,) = self.bounces.messages
        self.assertIsNone(bounce.envelope.mailFrom)
        self.assertEqual([str(r) for r in bounce.recipients], ["alice@example.test"])
        report = email.message_from_bytes(bounce.data)
        self.assertEqual(report.get_content_type(), "multipart/report")
        status = report.get_payload()[1].get_payload()
        self.assertEqual(status[1]["Status"], "5.1.1")

    def test_no_bounce_for_null_sender(self) -> None:
        """
        A failed message from <> (itself a bounce) is dropped, never
        bounced: no loops.
        """
        s = self.scheduler(ScriptedDeliverer([{"a@remote.test": PERMANENT}]))
        queueId = self.enqueue(s, "", ["a@remote.test"])
        self.clock.advance(0)
        self.assertIsNone(self.spool.find(queueId))
        self.assertEqual(self.bounces.messages, [])

    def test_lifetime_expiry(self) -> None:
        """
        A recipient still failing temporarily when the lifetime is over is
        returned with a 4.x.x status saying it expired.
        """
        s = self.scheduler(ScriptedDeliverer([{"a@remote.test": TEMPORARY}] * 300))
        queueId = self.enqueue(s, "alice@example.test", ["a@remote.test"])
        for _ in range(200):
            self.clock.advance(3600)
            if self.spool.find(queueId) is None:
                break
        self.assertIsNone(self.spool.find(queueId))
        (bounce,) = self.bounces.messages
        self.assertIn(b"delivery time expired", bounce.data)

    def test_restart_resumes(self) -> None:
        """
        A deferred message is picked up by a new scheduler (a restart) at
        its next-attempt time and delivered once.
        """
        first = ScriptedDeliverer([{"a@remote.test": TEMPORARY}])
        s = self.scheduler(first)
        queueId = self.enqueue(s, "alice@example.test", ["a@remote.test"])
        self.clock.advance(0)
        s.stop()
        second = ScriptedDeliverer([{}])
        self.scheduler(second)
        self.clock.advance(300)
        self.assertEqual(second.calls, [["a@remote.test"]])
        self.assertIsNone(self.spool.find(queueId))

    def test_queue_ids_validated(self) -> None:
        """
        Ids that could name another path are refused before any path is
        built.
        """
        for bad in ("../etc", "a/b", "", "x" * 65, "abc\x00def", "ab.cdef"):
            with self.assertRaises(QueueIdError):
                checkQueueId(bad)
            with self.assertRaises(QueueIdError):
                self.spool.path("deferred", bad)


class AttemptLogTests(SynchronousTestCase):
    """
    One summary line per recipient and attempt, with structured fields.
    """

    scheduler = SchedulerTests.scheduler
    enqueue = SchedulerTests.enqueue

    def setUp(self) -> None:
        SchedulerTests.setUp(self)  # type: ignore[arg-type]
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def attempts(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("log_format", "").startswith("{msgId}: to=<{rcpt}>")]

    def test_sent_deferred_bounced_expired(self) -> None:
        """
        Each recipient's outcome is logged with the attempt number, the
        delay since queueing, the DSN code and the reply; a recipient still
        deferred at the end of the lifetime is logged as expired.
        """
        deliverer = ScriptedDeliverer([{"b@remote.test": TEMPORARY, "c@remote.test": PERMANENT}, {"b@remote.test": TEMPORARY}])
        deliverer.relay = "mx.remote.test[192.0.2.25]:25"
        s = Scheduler(self.spool, deliverer, self.clock, synchronous, QueueConfig(retryInitial=300, lifetime=200), "mail.example.test")
        s.bounceTarget = self.bounces
        self.successResultOf(defer.Deferred.fromCoroutine(s.start()))
        self.addCleanup(s.stop)
        queueId = self.enqueue(s, "alice@example.test", ["a@remote.test", "b@remote.test", "c@remote.test"])
        self.clock.advance(0)
        first = {e["rcpt"]: e for e in self.attempts()}
        self.assertEqual({r: e["status"] for r, e in first.items()}, {"a@remote.test": "sent", "b@remote.test": "deferred", "c@remote.test": "bounced"})
        a = first["a@remote.test"]
        self.assertEqual(
            (a["msgId"], a["attempt"], a["delay"], a["dsn"], a["reply"], a["relayHost"], a["relayIP"], a["tls"], a["mailFrom"]),
            (queueId, 1, 0.0, "2.0.0", "250 2.0.0 ok", "mx.remote.test", "192.0.2.25", "TLSv1.3 verified", "alice@example.test"),
        )
        self.assertEqual(
            formatEvent(first["c@remote.test"]),
            f"{queueId}: to=<c@remote.test>, relay=mx.remote.test[192.0.2.25]:25, tls=TLSv1.3 verified, "
            "attempt=1, delay=0.0, dsn=5.1.1, status=bounced (550 5.1.1 unknown)",
        )
        self.clock.advance(200)
        last = self.attempts()[-1]
        self.assertEqual((last["rcpt"], last["status"], last["attempt"], last["delay"]), ("b@remote.test", "expired", 2, 200.0))
        self.assertEqual(len(self.attempts()), 4)

    def test_no_server_reached(self) -> None:
        """
        When no server answered, relay is none and TLS is none.
        """
        deliverer = ScriptedDeliverer([{"a@remote.test": TEMPORARY}])
        deliverer.relay, deliverer.tlsVersion = "none", ""
        s = self.scheduler(deliverer)
        self.enqueue(s, "alice@example.test", ["a@remote.test"])
        self.clock.advance(0)
        (event,) = self.attempts()
        self.assertEqual((event["relay"], event["relayHost"], event["tls"], event["tlsVersion"], event["status"]), ("none", None, "none", None, "deferred"))
