"""
Group commit of directory fsyncs.
"""

from __future__ import annotations

import threading
import time

from mailsrv.storage.fsync import GroupDirectorySync


class SlowFsync:
    """
    Records the (start, end) of every fsync; each takes C{duration}.
    """

    def __init__(self, duration: float, failFirst: bool = False) -> None:
        self.duration = duration
        self.calls: list[tuple[float, float]] = []
        self.failFirst = failFirst
        self.lock = threading.Lock()

    def __call__(self, path: object) -> None:
        start = time.monotonic()
        time.sleep(self.duration)
        with self.lock:
            first = not self.calls
            self.calls.append((start, time.monotonic()))
        if self.failFirst and first:
            raise OSError("disk on fire")


def test_concurrent_callers_share_fsyncs() -> None:
    """
    Twenty concurrent callers are served by far fewer fsyncs, and each
    returns only after an fsync that started after it asked.
    """
    fsync = SlowFsync(0.05)
    group = GroupDirectorySync(fsync)
    results: list[tuple[float, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def caller() -> None:
        barrier.wait()
        asked = time.monotonic()
        group.sync("/some/dir")
        with lock:
            results.append((asked, time.monotonic()))

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20
    assert len(fsync.calls) <= 4, fsync.calls
    for asked, returned in results:
        assert any(start >= asked and end <= returned for start, end in fsync.calls), (asked, returned)


def test_sequential_callers_each_get_an_fsync() -> None:
    """
    Without concurrency every call performs its own fsync.
    """
    fsync = SlowFsync(0)
    group = GroupDirectorySync(fsync)
    for _ in range(3):
        group.sync("/d")
    assert len(fsync.calls) == 3


def test_failure_is_not_shared_as_success() -> None:
    """
    A failed fsync raises in its caller and does not count as done for the
    callers waiting on it: they get a new fsync.
    """
    fsync = SlowFsync(0.05, failFirst=True)
    group = GroupDirectorySync(fsync)
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            group.sync("/d")
        except OSError as e:
            errors.append(e)

    first = threading.Thread(target=caller)
    first.start()
    time.sleep(0.01)
    second = threading.Thread(target=caller)
    second.start()
    first.join()
    second.join()
    assert len(errors) == 1
    assert len(fsync.calls) == 2


def test_directories_are_independent() -> None:
    """
    An fsync of one directory never stands in for another.
    """
    seen: list[object] = []
    group = GroupDirectorySync(seen.append)
    group.sync("/a")
    group.sync("/b")
    assert seen == ["/a", "/b"]
