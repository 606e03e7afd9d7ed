# -*- test-case-name: tests.storage.test_maildir -*-
"""
Delivering one message into the INBOX of several Maildir accounts.

Split out of L{mailsrv.storage.maildir} for size; the writer uses the
store's package-internal helpers (C{_ensureMaildir}, C{_makeDurable},
C{_runBlocking}, C{_notify}).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Optional, Sequence

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IMessageWriter
from mailsrv.storage.maildir_files import CRLFCounter

if TYPE_CHECKING:
    from mailsrv.storage.maildir import MaildirStore

NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC

#: Octets of a message kept in memory before its file is created.  A
#: message this small (most mail) is written to disk whole in the commit
#: thread: creating a file is a metadata operation that can wait for the
#: filesystem journal, behind other deliveries' fsyncs, and must not stall
#: the reactor.
IN_MEMORY_LIMIT = 64 * 1024


def temporaryError() -> MailError:
    return MailError(ErrorKind.TEMP, "Local error in mail storage", temporary=True)


def unlinkQuietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@implementer(IMessageWriter)
class MaildirMessageWriter:
    """
    A delivery into the INBOX of one or more accounts.  Create with
    L{MaildirStore.startMessage}.

    Bytes go to one file in the first account's C{tmp/} (C{O_EXCL}, mode
    0600), created once more than L{IN_MEMORY_LIMIT} octets have come, or
    by L{commit}.  L{commit} writes what is still in memory, fsyncs the
    file and hard-links it into every account's C{new/} in a thread: one
    copy of the bytes, one link per account.
    """

    log = Logger()

    def __init__(self, store: "MaildirStore", accountDirs: Sequence[Path]) -> None:
        self._store = store
        self._accountDirs = list(accountDirs)
        self._file: Optional[BinaryIO] = None
        self._tmpPath: Optional[Path] = None
        self._counter = CRLFCounter()
        self._pending: list[bytes] = []
        self._pendingSize = 0
        self._state = "writing"
        self._failed = False

    def _open(self) -> None:
        first = self._accountDirs[0]
        path = first / "tmp" / self._store._names.tmpName()
        try:
            fd = os.open(path, NEW_FILE, 0o600)
        except FileNotFoundError:
            # First delivery to this account (or its Maildir was removed):
            # only then pay for creating the directories.
            self._store._ensureMaildir(first)
            fd = os.open(path, NEW_FILE, 0o600)
        self._tmpPath = path
        self._file = os.fdopen(fd, "wb", buffering=65536)

    def write(self, data: bytes) -> None:
        if self._state == "aborted" or self._failed:
            return
        if self._state != "writing":
            raise RuntimeError("write() after commit()")
        try:
            if self._file is None:
                self._pending.append(data)
                self._pendingSize += len(data)
                if self._pendingSize > IN_MEMORY_LIMIT:
                    self._open()
                    self._writePending()
            else:
                self._file.write(data)
        except OSError:
            # Reported by commit(); write() has no way to fail.
            self.log.failure("Cannot write message to {path}", path=str(self._tmpPath))
            self._failed = True
            return
        self._counter.update(data)

    def _writePending(self) -> None:
        assert self._file is not None
        for chunk in self._pending:
            self._file.write(chunk)
        self._pending = []
        self._pendingSize = 0

    def commit(self) -> "defer.Deferred[None]":
        if self._state != "writing":
            return defer.fail(temporaryError())
        self._state = "committing"
        if self._failed:
            self._discard()
            self._state = "failed"
            return defer.fail(temporaryError())

        def committed(result: None) -> None:
            self._state = "committed"
            for accountDir in self._accountDirs:
                self._store._notify(accountDir)

        def failed(failure: Failure) -> Failure:
            self._state = "failed"
            return failure

        return self._store._runBlocking(self._commitInThread).addCallbacks(
            committed, failed
        )

    def _commitInThread(self) -> None:
        if self._file is None:
            try:
                self._open()
                self._writePending()
            except OSError:
                self.log.failure("Cannot write message file {path}", path=str(self._tmpPath))
                self._discard()
                raise temporaryError() from None
        assert self._file is not None and self._tmpPath is not None
        tmpPath, names = self._tmpPath, self._store._names
        linked: list[Path] = []
        try:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            finally:
                self._file.close()
            for accountDir in self._accountDirs:
                target = accountDir / "new" / names.newBase(
                    self._counter.physical, self._counter.crlf
                )
                try:
                    os.link(tmpPath, target)
                except FileNotFoundError:
                    self._store._ensureMaildir(accountDir)
                    os.link(tmpPath, target)
                linked.append(target)
            for accountDir in self._accountDirs:
                self._store._makeDurable(accountDir, "new")
                self._store._directorySync.sync(accountDir / "new")
        except BaseException:
            for path in linked:
                unlinkQuietly(path)
            unlinkQuietly(tmpPath)
            raise
        # Delivered: failing to tidy tmp/ must not fail the delivery
        # (cleanTmp() removes leftovers).  The unlink needs no fsync: if a
        # crash undoes it, the name left in tmp/ is a second link to a
        # delivered message, and cleanTmp() removes it.
        try:
            os.unlink(tmpPath)
        except OSError:
            self.log.failure("Cannot remove {path} after delivery", path=str(tmpPath))

    def abort(self) -> None:
        """
        Discard the message.  Ignored while a commit is running (its outcome
        stands) and after a successful one.
        """
        if self._state in ("writing", "failed"):
            self._state = "aborted" if self._state == "writing" else "failed"
            self._discard()

    def _discard(self) -> None:
        self._pending = []
        self._pendingSize = 0
        if self._file is not None and not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass
        if self._tmpPath is not None:
            unlinkQuietly(self._tmpPath)
