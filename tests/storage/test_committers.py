"""
Tests for L{mailsrv.storage.committers.ProcessCommitter} and the commit
process it runs (L{mailsrv.storage.commit_worker}): real child processes on
the real reactor, and the frames between them.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from mailsrv.storage.commit import (
    DeliveryJob,
    decodeJob,
    decodeJobPrefix,
    decodeOutcomes,
    encodeJob,
    encodeOutcome,
    JOB_PREFIX_SIZE,
    MaildirTree,
    settleAbandoned,
)
from mailsrv.storage.fsync import GroupDirectorySync
from mailsrv.storage.committers import CommitProcessGone, ProcessCommitter
from mailsrv.storage.maildir import MaildirStore

MESSAGE = b"Subject: hi\r\n\r\nbody\r\n"


def files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.is_dir() else []


def isRunning(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class FrameTests(unittest.SynchronousTestCase):
    def test_jobRoundTrip(self) -> None:
        """
        A job survives encoding, with or without data, and with a path that
        is not UTF-8.
        """
        odd = os.fsdecode(b"/var/mail/\xff/tmp/1")
        for data in (b"x" * 70_000, None):
            job = DeliveryJob(root="/var/mail", tmpPath=odd, data=data, targets=("/a/new/1", "/b/new/1"))
            frame = encodeJob(7, job)
            headerSize, dataSize = decodeJobPrefix(frame[:JOB_PREFIX_SIZE])
            header = frame[JOB_PREFIX_SIZE : JOB_PREFIX_SIZE + headerSize]
            body = frame[JOB_PREFIX_SIZE + headerSize :]
            self.assertEqual(dataSize, -1 if data is None else len(data))
            self.assertEqual(decodeJob(header, None if data is None else body), (7, job))

    def test_outcomesInPieces(self) -> None:
        """
        Outcomes are taken off the buffer only when whole; a failure comes
        back as the matching C{OSError} subclass with its file name.
        """
        stream = encodeOutcome(1) + encodeOutcome(
            2, FileNotFoundError(errno.ENOENT, "No such file or directory", "/m/new/x")
        )
        buffer = bytearray()
        seen = []
        for octet in stream:
            buffer.append(octet)
            seen.extend(decodeOutcomes(buffer))
        self.assertEqual(buffer, bytearray())
        self.assertEqual([jobId for jobId, _ in seen], [1, 2])
        self.assertIsNone(seen[0][1])
        failure = seen[1][1]
        self.assertIsInstance(failure, FileNotFoundError)
        assert failure is not None
        self.assertEqual((failure.errno, failure.filename), (errno.ENOENT, "/m/new/x"))


class SettleTests(unittest.SynchronousTestCase):
    """
    L{settleAbandoned}: the answer for a job whose process died unreported
    is exact.
    """

    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.tree = MaildirTree(self.root)
        for account in ("alice", "bob"):
            self.tree.ensure(self.root / "example.com" / account)
        self.tmp = self.root / "example.com/alice/tmp/1"
        self.tmp.write_bytes(MESSAGE)
        self.targets = tuple(str(self.root / f"example.com/{a}/new/1") for a in ("alice", "bob"))
        self.job = DeliveryJob(str(self.root), str(self.tmp), None, self.targets)

    def test_linkedEverywhereIsDelivered(self) -> None:
        for target in self.targets:
            os.link(self.tmp, target)
        synced: list[str] = []
        self.assertTrue(settleAbandoned(self.job, self.tree, GroupDirectorySync(synced.append)))
        self.assertEqual(sorted(synced), sorted(os.path.dirname(t) for t in self.targets))
        self.assertFalse(self.tmp.exists())
        self.assertTrue(all(Path(t).read_bytes() == MESSAGE for t in self.targets))

    def test_partlyLinkedIsUndone(self) -> None:
        os.link(self.tmp, self.targets[0])
        self.assertFalse(settleAbandoned(self.job, self.tree, GroupDirectorySync()))
        self.assertFalse(any(Path(t).exists() for t in self.targets))
        self.assertFalse(self.tmp.exists())


class ProcessCommitterTests(unittest.TestCase):
    """
    A L{MaildirStore} whose deliveries go through a real commit process.
    """

    timeout = 15

    def setUp(self) -> None:
        self.root = Path(self.mktemp()) / "mail"
        self.committer = ProcessCommitter(reactor)
        self.committer.start()
        self.addCleanup(self.committer.stop)
        self.store = MaildirStore(self.root, committer=self.committer, hostname="mx.example")

    def childPid(self) -> int:
        protocol = self.committer._protocol
        assert protocol is not None and protocol.transport is not None
        return int(protocol.transport.pid)

    def deliver(self, data: bytes, accounts: tuple[str, ...] = ("alice@example.com",)) -> defer.Deferred[None]:
        writer = self.store.startMessage(list(accounts))
        writer.write(data)
        return writer.commit()

    @defer.inlineCallbacks
    def test_deliversSmallAndLarge(self) -> defer.Generator[defer.Deferred[object], object, None]:
        """
        A small message (bytes sent to the process) and a large one (already
        in tmp/) both end up whole in every recipient's new/, with tmp/
        empty, written by another process.
        """
        self.assertNotEqual(self.childPid(), os.getpid())
        large = MESSAGE + b"x" * 200_000 + b"\r\n"
        yield self.deliver(MESSAGE, ("alice@example.com", "bob@example.com"))
        yield self.deliver(large)
        alice = self.root / "example.com/alice"
        contents = sorted((alice / "new" / name).read_bytes() for name in files(alice / "new"))
        self.assertEqual(contents, sorted([MESSAGE, large]))
        [bobs] = files(self.root / "example.com/bob/new")
        self.assertEqual((self.root / "example.com/bob/new" / bobs).read_bytes(), MESSAGE)
        self.assertEqual(files(alice / "tmp"), [])

    @defer.inlineCallbacks
    def test_failureLeavesNothing(self) -> defer.Generator[defer.Deferred[object], object, None]:
        """
        A delivery the process cannot make (bob's Maildir is a file) fails
        with a temporary error, and no file of it is left in either
        account.
        """
        from mailsrv.errors import MailError

        yield self.deliver(MESSAGE)  # creates alice's Maildir
        (self.root / "example.com").mkdir(exist_ok=True)
        (self.root / "example.com/bob").write_bytes(b"not a directory")
        d = self.deliver(MESSAGE, ("alice@example.com", "bob@example.com"))
        failure = yield self.assertFailure(d, MailError)
        self.assertTrue(failure.temporary)
        self.assertEqual(len(files(self.root / "example.com/alice/new")), 1)
        self.assertEqual(files(self.root / "example.com/alice/tmp"), [])
        self.assertEqual(len(self.flushLoggedErrors(NotADirectoryError)), 1)

    @defer.inlineCallbacks
    def test_deathFailsPendingAndIsReplaced(self) -> defer.Generator[defer.Deferred[object], object, None]:
        """
        Killing the process fails the delivery it had not confirmed (a
        temporary error, so the sender tries again) and the next delivery
        starts a new process.
        """
        from mailsrv.errors import MailError

        # A job stuck on opening a FIFO: the process never finishes it.
        fifo = self.root / "example.com/alice/tmp/stuck"
        fifo.parent.mkdir(parents=True)
        os.mkfifo(fifo)
        job = DeliveryJob(str(self.root), str(fifo), None, (str(self.root / "example.com/alice/new/stuck"),))
        stuck = self.store._commit(job)
        first = self.childPid()
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.assertFalse(stuck.called)
        os.kill(first, signal.SIGKILL)
        failure = yield self.assertFailure(stuck, MailError)
        self.assertTrue(failure.temporary)
        self.assertEqual(len(self.flushLoggedErrors(CommitProcessGone)), 1)
        yield self.deliver(MESSAGE)
        self.assertNotEqual(self.childPid(), first)
        self.assertEqual(len(files(self.root / "example.com/alice/new")), 1)

    @defer.inlineCallbacks
    def test_stopFinishesJobs(self) -> defer.Generator[defer.Deferred[object], object, None]:
        """
        stop() lets the process finish what it was given, then it exits.
        """
        pid = self.childPid()
        delivered = [self.deliver(MESSAGE) for _ in range(20)]
        yield self.committer.stop()
        results = yield defer.DeferredList(delivered)
        self.assertTrue(all(ok for ok, _ in results))
        self.assertEqual(len(files(self.root / "example.com/alice/new")), 20)
        self.assertFalse(isRunning(pid))
        d = self.deliver(MESSAGE)
        yield self.assertFailure(d, Exception)
        self.flushLoggedErrors(CommitProcessGone)

    @defer.inlineCallbacks
    def test_ignoresStopSignals(self) -> defer.Generator[defer.Deferred[object], object, None]:
        """
        SIGTERM and SIGINT (sent to the whole process group by systemd or
        Ctrl-C) do not end the process: the server decides when it stops.
        """
        pid = self.childPid()
        yield self.deliver(MESSAGE)
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.assertTrue(isRunning(pid))
        yield self.deliver(MESSAGE)
        self.assertEqual(self.childPid(), pid)
        self.assertEqual(len(files(self.root / "example.com/alice/new")), 2)


