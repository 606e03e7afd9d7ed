# -*- test-case-name: tests.storage.test_fsync -*-
"""
Tests for L{mailsrv.storage.fsync}.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mailsrv.storage.fsync import fsyncDirectory, writeFileAtomically


def recordFsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_fsyncDirectory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    fsyncDirectory fsyncs the directory itself.
    """
    synced = recordFsyncs(monkeypatch)
    fsyncDirectory(tmp_path)
    assert synced == [str(tmp_path)]


def test_writeFileAtomicallyDurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The new contents replace the old ones with the given mode; the data is
    fsync'd before the rename and the directory after; no temporary file
    remains.
    """
    target = tmp_path / "list"
    target.write_bytes(b"old")
    synced = recordFsyncs(monkeypatch)
    writeFileAtomically(target, b"new contents", 0o640)
    assert target.read_bytes() == b"new contents"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert os.listdir(tmp_path) == ["list"]
    assert len(synced) == 2
    assert synced[0].startswith(str(tmp_path / "list.tmp."))
    assert synced[1] == str(tmp_path)


def test_writeFileAtomicallyNotDurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    With durable=False nothing is fsync'd (safe on the reactor thread).
    """
    synced = recordFsyncs(monkeypatch)
    writeFileAtomically(tmp_path / "f", b"x", durable=False)
    assert synced == []
    assert (tmp_path / "f").read_bytes() == b"x"


def test_writeFileAtomicallyFailureKeepsOld(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    If writing fails, the old file is intact and the temporary file is gone.
    """
    target = tmp_path / "list"
    target.write_bytes(b"old")

    def failingFsync(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", failingFsync)
    with pytest.raises(OSError):
        writeFileAtomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["list"]
