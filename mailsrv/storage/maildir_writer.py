# -*- test-case-name: tests.storage.test_maildir -*-
"""
Delivering one message into the INBOX of several Maildir accounts.

Split out of L{mailsrv.storage.maildir} for size; the writer uses the
store's package-internal helpers (C{_ensureMaildir}, C{_names}, C{_commit},
C{_notify}).
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
from mailsrv.interfaces import IMessageWriter, Placement
from mailsrv.storage.commit import NEW_FILE, DeliveryJob, unlinkQuietly
from mailsrv.storage.maildir_files import CRLFCounter, lettersFor
from mailsrv.storage.validation import keywordsOf, normalizeFlags

if TYPE_CHECKING:
    from mailsrv.storage.maildir import MaildirStore

#: Octets of a message kept in memory before its file is created.  A
#: message this small (most mail) is written to disk whole by the committer:
#: creating a file is a metadata operation that can wait for the filesystem
#: journal, behind other deliveries' fsyncs, and must not stall the reactor.
IN_MEMORY_LIMIT = 64 * 1024


def temporaryError() -> MailError:
    return MailError(ErrorKind.TEMP, "Local error in mail storage", temporary=True)



@implementer(IMessageWriter)
class MaildirMessageWriter:
    """
    A delivery into the INBOX (or another folder) of one or more accounts.
    Create with L{MaildirStore.startMessage}; L{place} may change the
    destinations before the commit.

    Bytes go to one file in the first account's C{tmp/} (C{O_EXCL}, mode
    0600), created once more than L{IN_MEMORY_LIMIT} octets have come, or
    by the committer.  L{commit} hands the store's committer a
    L{DeliveryJob}: write what is still in memory, fsync the file and
    hard-link it into every destination's C{new/} (C{cur/} when it starts
    with flags, as Dovecot does); one copy of the bytes, one link per
    destination.
    """

    log = Logger()

    def __init__(self, store: "MaildirStore", accountDirs: Sequence[Path]) -> None:
        self._store = store
        self._tmpDir = accountDirs[0] / "tmp"
        #: (folder directory, initial flags) per copy.
        self._destinations: list[tuple[Path, frozenset[str]]] = [(d, frozenset()) for d in accountDirs]
        self._file: Optional[BinaryIO] = None
        self._tmpPath: Optional[Path] = None
        self._counter = CRLFCounter()
        self._pending: list[bytes] = []
        self._pendingSize = 0
        self._state = "writing"
        self._failed = False

    def _open(self) -> None:
        path = self._tmpDir / self._store._names.tmpName()
        try:
            fd = os.open(path, NEW_FILE, 0o600)
        except FileNotFoundError:
            # First delivery to this account (or its Maildir was removed):
            # only then pay for creating the directories.
            self._store._ensureMaildir(self._tmpDir.parent)
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

    def place(self, placements: Sequence[Placement]) -> None:
        if self._state != "writing":
            raise RuntimeError("place() after commit()")
        destinations: list[tuple[Path, frozenset[str]]] = []
        for placement in placements:
            flags = normalizeFlags(placement.flags)
            folderDir = self._store._deliveryFolder(placement.account, placement.folder)
            if (folderDir, flags) not in destinations:
                destinations.append((folderDir, flags))
        if not destinations:
            raise ValueError("place() needs at least one placement")
        self._destinations = destinations

    def commit(self) -> "defer.Deferred[None]":
        if self._state != "writing":
            return defer.fail(temporaryError())
        self._state = "committing"
        if self._failed:
            self._discard()
            self._state = "failed"
            return defer.fail(temporaryError())
        if any(keywordsOf(flags) for _, flags in self._destinations):
            # Rare (a Sieve script's keywords): the keyword tables are
            # files, read and written off the reactor thread.
            letters = self._store._runBlocking(self._flagLetters)
        else:
            letters = defer.succeed([lettersFor(flags, {}) for _, flags in self._destinations])

        def committed(result: None) -> None:
            self._state = "committed"
            for folderDir, _ in self._destinations:
                self._store._notify(folderDir)

        def failed(failure: Failure) -> Failure:
            self._state = "failed"
            return failure

        def noLetters(failure: Failure) -> Failure:
            self._discard()
            return failure

        return letters.addCallbacks(self._commitWith, noLetters).addCallbacks(committed, failed)

    def _flagLetters(self) -> list[str]:
        """
        The info letters of each destination, adding new keywords to its
        C{dovecot-keywords} (durably: the name refers to it).  Blocking.
        """
        result = []
        for folderDir, flags in self._destinations:
            keywords = keywordsOf(flags)
            index: dict[str, int] = {}
            if keywords:
                self._store._ensureMaildir(folderDir)
                meta = self._store._meta
                try:
                    index = meta.keywordIndex(folderDir, keywords, durable=True)
                except MailError:
                    index = {kw: i for i, kw in meta.readKeywords(folderDir).items()}
                    self.log.warn(
                        "No room for keywords {keywords} in {folder}: delivered without them",
                        keywords=sorted(keywords - set(index)),
                        folder=str(folderDir),
                    )
            result.append(lettersFor(flags, index))
        return result

    def _commitWith(self, letters: list[str]) -> "defer.Deferred[None]":
        try:
            job = self._job(letters)
        except OSError:
            self.log.failure("Cannot write message file {path}", path=str(self._tmpPath))
            self._discard()
            raise temporaryError() from None
        return self._store._commit(job)

    def _job(self, letters: list[str]) -> DeliveryJob:
        """
        The disk work left: the bytes still in memory (most messages), or
        the file they went to, closed here so the committer can fsync it.

        @param letters: the flag letters of each destination.
        """
        names = self._store._names
        data: Optional[bytes] = None
        if self._file is None:
            self._tmpPath = self._tmpDir / names.tmpName()
            data = b"".join(self._pending)
            self._pending = []
            self._pendingSize = 0
        else:
            self._file.close()
        assert self._tmpPath is not None
        targets = []
        for (folderDir, _), flagLetters in zip(self._destinations, letters):
            base = names.newBase(self._counter.physical, self._counter.crlf)
            if flagLetters:
                targets.append(str(folderDir / "cur" / f"{base}:2,{flagLetters}"))
            else:
                targets.append(str(folderDir / "new" / base))
        return DeliveryJob(root=str(self._store.root), tmpPath=str(self._tmpPath), data=data, targets=tuple(targets))

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
