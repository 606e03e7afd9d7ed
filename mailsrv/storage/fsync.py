# -*- test-case-name: tests.storage.test_fsync -*-
"""
Durable-write helpers shared by the Maildir store and the outbound spool.

On POSIX a file's bytes and its directory entry are made durable separately:
C{os.fsync(file)} for the bytes, and an fsync of the I{directory} for the
entry created by C{open(O_CREAT)}, C{link} or C{rename}.  A message may only
be acknowledged once both happened (see DESIGN.md, "Durability").

Every function here blocks on the disk: call them from a thread, never from
the reactor thread, unless C{durable=False}.
"""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path
from typing import Callable, Union

StrPath = Union[str, "os.PathLike[str]"]

_counter = itertools.count(1)


def fsyncDirectory(path: StrPath) -> None:
    """
    Make the entries of directory C{path} (files created, linked, renamed or
    removed in it) durable.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _DirectoryState:
    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.requested = 0
        self.completed = 0
        self.running = False


class GroupDirectorySync:
    """
    Group commit for directory fsyncs: concurrent deliveries into the same
    directory share one fsync instead of queueing one each.

    A caller is covered by any fsync that I{started} after its call (its
    link or rename happened before, so that fsync makes it durable).  While
    one fsync runs, callers arriving meanwhile wait, and the next fsync
    covers all of them at once.  Call from threads only.
    """

    def __init__(self, fsync: Callable[[StrPath], None] = fsyncDirectory) -> None:
        self._fsync = fsync
        self._lock = threading.Lock()
        self._states: dict[str, _DirectoryState] = {}

    def _state(self, path: StrPath) -> _DirectoryState:
        key = os.fspath(path)
        with self._lock:
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = _DirectoryState()
            return state

    def sync(self, path: StrPath) -> None:
        """
        Return once an fsync of C{path} that started after this call has
        completed.
        """
        state = self._state(path)
        with state.condition:
            state.requested += 1
            ticket = state.requested
            while True:
                if state.completed >= ticket:
                    return
                if not state.running:
                    break
                state.condition.wait()
            state.running = True
            covers = state.requested
        succeeded = False
        try:
            self._fsync(path)
            succeeded = True
        finally:
            with state.condition:
                state.running = False
                if succeeded:
                    state.completed = max(state.completed, covers)
                state.condition.notify_all()


def createDurably(path: StrPath, data: bytes, mode: int = 0o600) -> None:
    """
    Create C{path} (it must not exist: C{O_EXCL}) with C{data} and fsync
    it; its directory entry is the caller's to fsync (often after a rename,
    or together with others).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def writeFileAtomically(
    path: StrPath, data: bytes, mode: int = 0o600, *, durable: bool = True
) -> None:
    """
    Replace the file at C{path} with C{data} so that readers see either the
    old or the new contents, never a mix: write a temporary file beside it
    (C{O_EXCL}, so two writers never share one), then rename it over C{path}.

    @param mode: permissions of the new file.
    @param durable: fsync the file before the rename and the directory after
        it, so the new contents survive a crash once this returns.  Without
        it the replacement is still atomic but may be lost (the old contents
        come back) after a crash; used for caches that can be rebuilt, from
        code that must not block.
    """
    target = Path(path)
    tmp = target.with_name(
        f"{target.name}.tmp.{os.getpid()}.{threading.get_ident()}.{next(_counter)}"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsyncDirectory(target.parent)
