"""
The input deadline: one command line within a fixed time of its first
octet, message data at a minimum average rate.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from mailsrv.policy.deadline import DATA, LINE, InputDeadline


class InputDeadlineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.expired: list[str] = []
        self.paused = False
        self.deadline = InputDeadline(
            self.clock, 10.0, 60.0, 100.0, self.expired.append, paused=lambda: self.paused
        )

    def test_lineDeadlineFromFirstOctet(self) -> None:
        """
        A pending line expires C{commandTimeout} after it started, however
        many more octets of it arrive meanwhile.
        """
        self.deadline.linePending(True, False)
        for _ in range(9):
            self.clock.advance(1)
            self.deadline.linePending(True, False)
        self.assertEqual(self.expired, [])
        self.clock.advance(1)
        self.assertEqual(self.expired, [LINE])
        self.assertIsNone(self.deadline.kind)

    def test_completedLineStopsIt(self) -> None:
        """
        No pending line, no deadline: an idle client is the idle timer's
        business.
        """
        self.deadline.linePending(True, False)
        self.clock.advance(9)
        self.deadline.linePending(False, True)
        self.clock.advance(100)
        self.assertEqual(self.expired, [])

    def test_newLineRestartsClock(self) -> None:
        """
        When input completes a line and leaves the start of another, the new
        line gets the whole time from now (the lazy timer re-arms).
        """
        self.deadline.linePending(True, False)
        self.clock.advance(8)
        self.deadline.linePending(True, True)
        self.clock.advance(9)
        self.assertEqual(self.expired, [])
        self.clock.advance(1)
        self.assertEqual(self.expired, [LINE])

    def test_dataAtMinimumRateNeverExpires(self) -> None:
        """
        Data arriving at the minimum rate keeps the deadline ahead for far
        longer than C{dataTimeout}.
        """
        self.deadline.startData()
        for _ in range(600):
            self.clock.advance(1)
            self.deadline.dataReceived(100)
        self.assertEqual(self.expired, [])
        self.assertEqual(self.deadline.kind, DATA)

    def test_trickleRunsOutOfCredit(self) -> None:
        """
        One octet every 30 seconds (well under the rate) earns almost
        nothing: the data expires about C{dataTimeout} after it began.
        """
        self.deadline.startData()
        for _ in range(2):
            self.clock.advance(30)
            self.deadline.dataReceived(1)
        self.assertEqual(self.expired, [])  # 60 s in, 0.02 s of credit left
        self.clock.advance(0.03)
        self.assertEqual(self.expired, [DATA])

    def test_creditCappedAtDataTimeout(self) -> None:
        """
        A burst cannot buy more than C{dataTimeout} of silence.
        """
        self.deadline.startData()
        self.deadline.dataReceived(10_000_000)
        self.clock.advance(59.9)
        self.assertEqual(self.expired, [])
        self.clock.advance(0.2)
        self.assertEqual(self.expired, [DATA])

    def test_pausedWaits(self) -> None:
        """
        While the server itself does not read, the deadline does not run
        out; it does once reading resumed and the client still stalls.
        """
        self.deadline.linePending(True, False)
        self.paused = True
        self.clock.advance(30)
        self.assertEqual(self.expired, [])
        self.paused = False
        self.clock.advance(10)
        self.assertEqual(self.expired, [LINE])

    def test_stop(self) -> None:
        """
        stop() cancels the pending call.
        """
        self.deadline.startData()
        self.deadline.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(100)
        self.assertEqual(self.expired, [])
