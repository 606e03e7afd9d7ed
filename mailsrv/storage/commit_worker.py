# -*- test-case-name: tests.storage.test_committers -*-
"""
The commit process: makes deliveries durable for the server, with its own
interpreter on its own core.

Run as C{python -m mailsrv.storage.commit_worker}.  It reads job frames
(L{mailsrv.storage.commit.encodeJob}) from standard input, runs each in one
of its threads with L{commitDelivery}, and writes an outcome frame per job
to standard output, in the order the jobs finish.  At end of input it
finishes the jobs it has, then exits.

Why a process: a delivery's disk work is a dozen system calls, and a thread
of the server needs the GIL back after each one.  Under load that makes
the reactor thread wait for the GIL about as long as it works; here the
waits are between this process's own threads.

It ignores SIGINT, SIGTERM and SIGHUP: the server decides when it stops (by
closing its standard input), so that a signal sent to the whole process
group (Ctrl-C, systemd's stop) cannot cut a delivery short.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Optional

from mailsrv.storage.commit import (
    JOB_PREFIX_SIZE,
    DeliveryJob,
    MaildirTrees,
    commitDelivery,
    decodeJob,
    decodeJobPrefix,
    encodeOutcome,
)
from mailsrv.storage.fsync import GroupDirectorySync

#: Deliveries in progress at once: enough to keep the disk's queue full
#: while others wait for a directory fsync.
THREADS = 8


class CommitWorker:
    """
    Runs jobs read from C{jobs} and writes their outcomes to the file
    descriptor C{outcomes}.
    """

    def __init__(self, jobs: BinaryIO, outcomes: int, threads: int = THREADS) -> None:
        self._jobs = jobs
        self._outcomes = outcomes
        self._threads = threads
        self._writeLock = threading.Lock()
        self._trees = MaildirTrees()
        self._directorySync = GroupDirectorySync()

    def _readExactly(self, size: int) -> Optional[bytes]:
        data = self._jobs.read(size)
        if len(data) < size:
            return None
        return data

    def run(self) -> None:
        """
        Serve until end of input; return once every job read has finished.
        """
        with ThreadPoolExecutor(self._threads, thread_name_prefix="commit") as pool:
            while True:
                prefix = self._readExactly(JOB_PREFIX_SIZE)
                if prefix is None:
                    break
                headerSize, dataSize = decodeJobPrefix(prefix)
                header = self._readExactly(headerSize)
                data = None if dataSize < 0 else self._readExactly(dataSize)
                if header is None or (dataSize >= 0 and data is None):
                    break
                jobId, job = decodeJob(header, data)
                pool.submit(self._commit, jobId, job)

    def _commit(self, jobId: int, job: DeliveryJob) -> None:
        error: Optional[OSError] = None
        try:
            commitDelivery(job, self._trees(job.root), self._directorySync)
        except OSError as e:
            error = e
        except Exception as e:  # reported as a failed delivery, not lost
            error = OSError(0, f"{type(e).__name__}: {e}")
        frame = encodeOutcome(jobId, error)
        with self._writeLock:
            view = memoryview(frame)
            while view:
                view = view[os.write(self._outcomes, view) :]


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    CommitWorker(sys.stdin.buffer, sys.stdout.fileno()).run()


if __name__ == "__main__":
    main()
