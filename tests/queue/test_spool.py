"""
The outbound spool's durability steps: what is fsync'd, in which order,
and that concurrent commits share the fsyncs of the state directories.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mailsrv.queue import spool as spoolModule
from mailsrv.queue.spool import ENVELOPE_FILE, MESSAGE_FILE, TMP, QueueEntry, RecipientState, Spool
from mailsrv.storage.fsync import GroupDirectorySync


class Recorder:
    """
    Records every fsync as (kind, path, what the directory holds then),
    calling the real one; shared-directory fsyncs may be slowed down.
    """

    def __init__(self, sharedDelay: float = 0.0) -> None:
        self.events: list[tuple[str, str, frozenset[str]]] = []
        self.lock = threading.Lock()
        self.sharedDelay = sharedDelay
        self.sharedStarts: list[tuple[str, float]] = []

    def _record(self, kind: str, path: str) -> None:
        listing = frozenset(os.listdir(path)) if os.path.isdir(path) else frozenset()
        with self.lock:
            self.events.append((kind, path, listing))

    def fileFsync(self, fd: int) -> None:
        self._record("file", os.readlink(f"/proc/self/fd/{fd}"))
        realFsync(fd)

    def directoryFsync(self, path: Any) -> None:
        self._record("dir", os.fspath(path))
        realDirectoryFsync(path)

    def sharedFsync(self, path: Any) -> None:
        with self.lock:
            self.sharedStarts.append((os.fspath(path), time.monotonic()))
        time.sleep(self.sharedDelay)
        self._record("shared", os.fspath(path))
        realDirectoryFsync(path)

    def count(self, kind: str, path: Path) -> int:
        return sum(1 for k, p, _ in self.events if k == kind and p == str(path))


realFsync = os.fsync


def realDirectoryFsync(path: Any) -> None:
    # Not fsyncDirectory: it calls os.fsync, which the tests replace.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        realFsync(fd)
    finally:
        os.close(fd)


def makeSpool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sharedDelay: float = 0.0) -> tuple[Spool, Recorder]:
    recorder = Recorder(sharedDelay)
    monkeypatch.setattr(spoolModule.os, "fsync", recorder.fileFsync)
    monkeypatch.setattr(spoolModule, "fsyncDirectory", recorder.directoryFsync)
    spool = Spool(tmp_path / "queue", GroupDirectorySync(recorder.sharedFsync))
    spool.ensureDirectories()
    return spool, recorder


def entry(queueId: str) -> QueueEntry:
    return QueueEntry(queueId=queueId, sender="alice@example.test", recipients=[RecipientState("bob@remote.test")], createdAt=1.0)


def test_commitMakesEverythingDurableBeforeReturning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A commit fsyncs the message, then the envelope, then the message's
    directory holding both, renames it into incoming/ and fsyncs incoming/
    (which then lists it) and tmp/; the files are whole in incoming/.
    """
    spool, recorder = makeSpool(tmp_path, monkeypatch)
    writer = spool.newWriter(entry("Q1abcdef"))
    writer.write(b"Subject: x\r\n\r\nbody\r\n")
    writer.commit()
    root = spool.root
    messageDir = root / TMP / "Q1abcdef"
    assert [(k, p) for k, p, _ in recorder.events] == [
        ("file", str(messageDir / MESSAGE_FILE)),
        ("file", str(messageDir / ENVELOPE_FILE)),
        ("dir", str(messageDir)),
        ("shared", str(root / "incoming")),
        ("shared", str(root / TMP)),
    ]
    assert recorder.events[2][2] == {MESSAGE_FILE, ENVELOPE_FILE}
    assert "Q1abcdef" in recorder.events[3][2]
    assert "Q1abcdef" not in recorder.events[4][2]
    assert (root / "incoming" / "Q1abcdef" / MESSAGE_FILE).read_bytes() == b"Subject: x\r\n\r\nbody\r\n"
    loaded = spool.load("incoming", "Q1abcdef")
    assert loaded.size == 20 and loaded.recipients[0].address == "bob@remote.test"
    assert os.listdir(root / TMP) == []


def test_concurrentCommitsShareDirectoryFsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Eight commits at once, with a slow disk: each still fsyncs its own
    files and directory, but incoming/ and tmp/ are fsync'd fewer times
    than there are commits, and every message is in incoming/ once all
    returned.
    """
    spool, recorder = makeSpool(tmp_path, monkeypatch, sharedDelay=0.05)
    ids = [f"Q{i}abcdef" for i in range(8)]
    writers = [spool.newWriter(entry(i)) for i in ids]
    for w in writers:
        w.write(b"Subject: x\r\n\r\nbody\r\n")
    start = threading.Barrier(len(writers))

    def commit(w: Any) -> None:
        start.wait()
        w.commit()

    threads = [threading.Thread(target=commit, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    incoming = spool.root / "incoming"
    assert sorted(os.listdir(incoming)) == sorted(ids)
    for i in ids:
        assert recorder.count("dir", spool.root / TMP / i) == 1
    assert 1 <= recorder.count("shared", incoming) < len(ids)
    assert 1 <= recorder.count("shared", spool.root / TMP) < len(ids)


def test_moveAndRemoveSyncBothDirectories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A move fsyncs the new state directory (listing the message) and the
    old one; a removal fsyncs the state it left.
    """
    spool, recorder = makeSpool(tmp_path, monkeypatch)
    writer = spool.newWriter(entry("Q2abcdef"))
    writer.commit()
    recorder.events.clear()
    spool.move("Q2abcdef", "incoming", "active")
    assert [(k, p) for k, p, _ in recorder.events] == [
        ("shared", str(spool.root / "active")),
        ("shared", str(spool.root / "incoming")),
    ]
    assert "Q2abcdef" in recorder.events[0][2] and "Q2abcdef" not in recorder.events[1][2]
    recorder.events.clear()
    spool.remove("active", "Q2abcdef")
    assert [(k, p) for k, p, _ in recorder.events] == [("shared", str(spool.root / "active"))]
    assert spool.find("Q2abcdef") is None
