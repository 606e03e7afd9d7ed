"""
The optional delay warning (C{[queue] delay_warning}): one RFC 3464 report
with C{Action: delayed} once a message has waited that long, never for
the null sender, never twice, and none when it is off.
"""

from __future__ import annotations

import dataclasses
import email
from pathlib import Path

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from mailsrv.config.schema import QueueConfig
from mailsrv.queue.relay import TEMPORARY
from mailsrv.queue.scheduler import Scheduler, synchronous
from mailsrv.queue.spool import Spool
from mailsrv.testing.fakes import RecordingTarget
from tests.queue import test_scheduler
from tests.queue.test_scheduler import CONFIG, ScriptedDeliverer

HOURS = 3600.0


class DelayWarningTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.spool = Spool(Path(self.mktemp()))
        self.spool.ensureDirectories()
        self.bounces = RecordingTarget()

    def scheduler(self, deliverer: ScriptedDeliverer, delayWarning: float) -> Scheduler:
        config: QueueConfig = dataclasses.replace(CONFIG, delayWarning=delayWarning)
        s = Scheduler(self.spool, deliverer, self.clock, synchronous, config, "mail.example.test")
        s.bounceTarget = self.bounces
        self.successResultOf(defer.Deferred.fromCoroutine(s.start()))
        self.addCleanup(s.stop)
        return s

    enqueue = test_scheduler.SchedulerTests.enqueue

    def advanceHours(self, hours: float) -> None:
        for _ in range(int(hours * 60)):
            self.clock.advance(60)

    def test_warning_once_after_delay(self) -> None:
        """
        A recipient still deferred 4 hours after queueing makes the sender
        get one "delayed" report (4.x.x status, Will-Retry-Until), at the
        first attempt after 4 hours and not again; the message stays
        queued and is delivered later.
        """
        deliverer = ScriptedDeliverer([{"a@remote.test": TEMPORARY}] * 12 + [{}])
        s = self.scheduler(deliverer, 4 * HOURS)
        queueId = self.enqueue(s, "alice@example.test", ["a@remote.test"])
        self.advanceHours(3.9)
        self.assertEqual(self.bounces.messages, [])
        self.advanceHours(1.1)
        (warning,) = self.bounces.messages
        self.assertIsNone(warning.envelope.mailFrom)
        self.assertEqual([str(r) for r in warning.recipients], ["alice@example.test"])
        report = email.message_from_bytes(warning.data)
        self.assertEqual(report["Subject"], "Delayed Mail (still being retried)")
        self.assertEqual(report.get_content_type(), "multipart/report")
        self.assertIn("WARNING ONLY", report.get_payload()[0].get_payload())
        status = report.get_payload()[1].get_payload()
        self.assertEqual(status[1]["Action"], "delayed")
        self.assertEqual(status[1]["Status"], "4.3.0")
        self.assertIsNotNone(status[1]["Will-Retry-Until"])
        self.assertEqual(self.spool.find(queueId), "deferred")
        self.assertTrue(self.spool.load("deferred", queueId).delayWarned)
        self.advanceHours(12)
        self.assertIsNone(self.spool.find(queueId))
        self.assertEqual(len(self.bounces.messages), 1)

    def test_off_by_default_and_never_for_null_sender(self) -> None:
        """
        With delay_warning = 0 (the default) no warning is sent; nor for a
        message from <> whatever the setting.
        """
        self.assertEqual(QueueConfig().delayWarning, 0)
        s = self.scheduler(ScriptedDeliverer([{"a@remote.test": TEMPORARY}] * 20), 0)
        self.enqueue(s, "alice@example.test", ["a@remote.test"])
        self.advanceHours(6)
        s.stop()
        self.spool = Spool(Path(self.mktemp()))
        self.spool.ensureDirectories()
        s2 = self.scheduler(ScriptedDeliverer([{"b@remote.test": TEMPORARY}] * 40), 1 * HOURS)
        self.enqueue(s2, "", ["b@remote.test"])
        self.advanceHours(6)
        self.assertEqual(self.bounces.messages, [])


class DelayWarningConfigTests(SynchronousTestCase):
    def test_key(self) -> None:
        """
        [queue] delay_warning is read in seconds, may not be negative, and
        is documented in the example configuration.
        """
        from mailsrv.config.load import parseConfig
        from mailsrv.errors import ConfigError

        self.assertEqual(parseConfig({"queue": {"delay_warning": 14400}}, "t").queue.delayWarning, 14400.0)
        with self.assertRaises(ConfigError) as caught:
            parseConfig({"queue": {"delay_warning": -1}}, "t")
        self.assertEqual(caught.exception.key, "queue.delay_warning")
        example = (Path(__file__).parents[2] / "etc" / "mailsrv.toml").read_text()
        self.assertIn("delay_warning = 0", example.split("\n[queue]\n", 1)[1].split("\n[", 1)[0])
