# -*- test-case-name: tests.storage.test_committers -*-
"""
Where a delivery's disk work (L{mailsrv.storage.commit.commitDelivery})
runs: in a thread of the server (L{ThreadCommitter}) or in a commit process
beside it (L{ProcessCommitter}, what the server uses).
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from twisted.internet import defer, error, threads
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

import mailsrv
from mailsrv.interfaces import IDeliveryCommitter
from mailsrv.storage.commit import (
    DeliveryJob,
    MaildirTree,
    MaildirTrees,
    commitDelivery,
    decodeOutcomes,
    encodeJob,
    settleAbandoned,
)
from mailsrv.storage.fsync import GroupDirectorySync

Runner = Callable[..., "defer.Deferred[Any]"]


@implementer(IDeliveryCommitter)
class ThreadCommitter:
    """
    Runs each job with C{runInThread} (the reactor's thread pool, or a
    synchronous runner in tests).
    """

    def __init__(self, runInThread: Runner, tree: MaildirTree) -> None:
        self._run = runInThread
        self._tree = tree
        # Deliveries into one INBOX share directory fsyncs (group commit).
        self._directorySync = GroupDirectorySync()

    def commit(self, job: DeliveryJob) -> "defer.Deferred[None]":
        return self._run(commitDelivery, job, self._tree, self._directorySync)


class CommitProcessGone(OSError):
    """
    The commit process ended before it reported on a job: the job may or may
    not have been done, so its delivery must count as failed (temporarily).
    """


class _CommitProtocol(ProcessProtocol):
    log = Logger()

    def __init__(self, committer: "ProcessCommitter") -> None:
        self._committer = committer
        self._buffer = bytearray()
        self._stderr = bytearray()
        self.pending: dict[int, tuple[DeliveryJob, defer.Deferred[None]]] = {}
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        for jobId, failure in decodeOutcomes(self._buffer):
            entry = self.pending.pop(jobId, None)
            if entry is None:
                self.log.error("Commit process reported on unknown job {job}", job=jobId)
                continue
            d = entry[1]
            if failure is None:
                d.callback(None)
            else:
                d.errback(failure)

    def errReceived(self, data: bytes) -> None:
        # A traceback or interpreter error: log it a line at a time.
        self._stderr += data
        *lines, rest = self._stderr.split(b"\n")
        self._stderr = bytearray(rest)
        for line in lines:
            self.log.error(
                "Commit process (pid {pid}): {line}",
                pid=self.transport.pid if self.transport else None,
                line=line.decode("utf-8", "replace"),
            )

    def processEnded(self, reason: Failure) -> None:
        if self._stderr:
            self.errReceived(b"\n")
        # Forgotten first: a delivery started from the callbacks below must
        # go to a new process, not to this one.
        self._committer._ended(self)
        pending, self.pending = self.pending, {}
        if pending or not reason.check(error.ProcessDone) or not self._committer._stopping:
            self.log.error(
                "Commit process ended ({reason}) with {count} deliveries unconfirmed;"
                " each is finished if it got as far as its links, otherwise undone and"
                " refused with a temporary error",
                reason=reason.getErrorMessage(),
                count=len(pending),
            )
        for job, d in pending.values():
            self._committer._settle(job, reason).chainDeferred(d)
        self.ended.callback(None)


@implementer(IDeliveryCommitter)
class ProcessCommitter:
    """
    Sends each job to a commit process (L{mailsrv.storage.commit_worker})
    started by L{start}.  When the process dies, each job it had not
    confirmed is settled here: finished if the message was linked into
    every target, otherwise undone and failed with L{CommitProcessGone} (the
    sender gets a temporary error and tries again).  The next job starts a
    new process.

    @param reactor: an C{IReactorProcess}.
    @param executable: the Python interpreter to run (default: this one).
    """

    log = Logger()

    def __init__(self, reactor: Any, executable: Optional[str] = None) -> None:
        self._reactor = reactor
        self._executable = executable or sys.executable
        self._ids = itertools.count(1)
        self._protocol: Optional[_CommitProtocol] = None
        self._stopping = False
        # For settling the jobs of a process that died (in this process).
        self._trees = MaildirTrees()
        self._directorySync = GroupDirectorySync()

    def start(self) -> None:
        """
        Start the commit process now, so that a failure to start shows at
        server start rather than at the first delivery.
        """
        self._stopping = False
        self._spawn()

    def _spawn(self) -> _CommitProtocol:
        protocol = _CommitProtocol(self)
        # The package may not be installed (a checkout): the child finds it
        # where this process did.
        packageParent = str(Path(mailsrv.__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": packageParent + (os.pathsep + path if path else "")}
        self._reactor.spawnProcess(
            protocol,
            self._executable,
            [self._executable, "-m", "mailsrv.storage.commit_worker"],
            env=env,
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        self._protocol = protocol
        self.log.info("Commit process started (pid {pid})", pid=protocol.transport.pid)
        return protocol

    def _ended(self, protocol: _CommitProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    def commit(self, job: DeliveryJob) -> "defer.Deferred[None]":
        if self._stopping:
            return defer.fail(CommitProcessGone(0, "the server is stopping"))
        protocol = self._protocol
        if protocol is None:
            try:
                protocol = self._spawn()
            except Exception:
                return defer.fail()
        jobId = next(self._ids)
        d: defer.Deferred[None] = defer.Deferred()
        protocol.pending[jobId] = (job, d)
        protocol.transport.write(encodeJob(jobId, job))
        return d

    def _settle(self, job: DeliveryJob, reason: Failure) -> "defer.Deferred[None]":
        """
        Decide a job its process left unconfirmed (see L{settleAbandoned}):
        delivered, or failed with L{CommitProcessGone}.
        """
        def decided(delivered: bool) -> None:
            self.log.warn(
                "Unconfirmed delivery {tmpPath} {outcome} after its commit process ended",
                tmpPath=job.tmpPath,
                targets=list(job.targets),
                outcome="finished" if delivered else "undone",
            )
            if not delivered:
                raise CommitProcessGone(0, f"commit process ended: {reason.getErrorMessage()}")

        return threads.deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), settleAbandoned, job, self._trees(job.root), self._directorySync
        ).addCallback(decided)

    def stop(self) -> "defer.Deferred[None]":
        """
        Let the commit process finish its jobs and exit.

        @return: fires once it has.
        """
        self._stopping = True
        protocol = self._protocol
        if protocol is None:
            return defer.succeed(None)
        protocol.transport.closeStdin()
        return protocol.ended
