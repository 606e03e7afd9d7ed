# -*- test-case-name: tests.storage.test_maildir,tests.storage.test_behaviour -*-
"""
The Maildir++ store, on-disk compatible with docker-mailserver and Dovecot.

Layout (under the store's C{root}, normally C{data_dir/mail})::

    <domain>/<localpart>/               the account: INBOX is this Maildir
        cur/ new/ tmp/
        dovecot-uidlist                 UIDVALIDITY, next UID, UID per message
        dovecot-keywords                keyword <-> letter a-z
        mailsrv-uidlist.lock            flock() guarding the two files above
        .Sent/  .Archive.2024/ ...      folders (Maildir++), each a Maildir
            maildirfolder               marks a Maildir++ folder
            (and the same files as above)

Naming rule: account ids are split by L{splitAccount} (no C{/}, NUL,
control characters or leading C{.} in either half).  A folder name C{a/b}
becomes the directory C{.a.b}, each component in IMAP modified UTF-7 as
Dovecot stores it (C{Entw&APw-rfe}).  Names are checked by
L{normalizeFolderName} first, which refuses C{.} inside components (it is the
Maildir++ separator), empty components, control characters, wildcards and
over-long names; so a folder directory is always a single entry of the
account directory starting with exactly one C{.}, and nothing a client sends
can reach outside the account.

Message files and UIDs: see L{mailsrv.storage.maildir_files} and
L{mailsrv.storage.uidlist}.  A refresh moves files from C{new/} to C{cur/}
(as Dovecot does when a session sees them) and gives UIDs to files the
uidlist does not know, in order of delivery time.

Durability: deliveries (L{MaildirMessageWriter.commit}), L{MaildirFolder.append}
and L{MaildirFolder.expunge} fsync file contents and directory entries in a
thread before their Deferred fires.  Folder creation, renames and flag
changes are not fsync'd: no acknowledged message depends on them, and a
crash at worst undoes them.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import stat
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Optional, Sequence

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import (
    IDeliveryCommitter,
    IIndexedFolder,
    IMailFolder,
    IMailStore,
    MessageInfo,
    MessageSummary,
)
from mailsrv.storage.commit import NEW_FILE, DeliveryJob, MaildirTree, unlinkQuietly
from mailsrv.storage.committers import ThreadCommitter
from mailsrv.storage.fsync import fsyncDirectory
from mailsrv.storage.maildir_files import (
    CRLFCounter,
    CRLFReader,
    NameGenerator,
    crlfSizeOfFile,
    flagsFromLetters,
    lettersFor,
    splitFilename,
)
from mailsrv.storage.maildir_account import (
    readSpecialUse,
    readSubscriptions,
    setSpecialUse,
    setSubscribed,
)
from mailsrv.storage.index import CACHED_FIELDS, FolderIndex, HeaderCache, folderStamp, needsStructure
from mailsrv.storage.maildir_sync import FolderMetadata
from mailsrv.storage.maildir_transfer import transferInThread
from mailsrv.storage.maildir_writer import MaildirMessageWriter, temporaryError
from mailsrv.storage.uidlist import KEYWORDS_NAME, UIDLIST_NAME, UidRecord
from mailsrv.storage.validation import (
    INBOX,
    decodeModifiedUTF7,
    encodeModifiedUTF7,
    keywordsOf,
    normalizeFlags,
    normalizeFolderName,
    splitAccount,
)

__all__ = ["MaildirStore", "MaildirFolder", "MaildirMessageWriter"]

Listener = Callable[[], None]
Runner = Callable[..., "defer.Deferred[Any]"]


def _notFound(what: str = "Mailbox does not exist") -> MailError:
    return MailError(ErrorKind.NOT_FOUND, what)


def _defaultRunner(reactor: Any) -> Runner:
    """
    Run blocking calls in the reactor's thread pool.
    """
    from twisted.internet import threads

    if reactor is None:
        return threads.deferToThread

    def run(f: Callable[..., Any], *args: Any, **kwargs: Any) -> "defer.Deferred[Any]":
        return threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), f, *args, **kwargs
        )

    return run


@dataclasses.dataclass
class _Entry:
    """
    What a view knows about one message; C{subdir} and C{filename} follow
    the file when flags change (by this view or, once found, by others).
    """

    info: MessageInfo
    subdir: str
    filename: str
    popUidl: Optional[str]


#: What L{folderStamp} looks at for a Maildir folder.
_STAMPED = ("cur", "new", UIDLIST_NAME, KEYWORDS_NAME)

#: The CRLF size in a base name (see L{sizesFromBase}).
_CRLF_SIZE = re.compile(r",W=(\d+)")

#: Up to this many missing summaries are built on the reactor thread; more
#: go to a thread.
_INLINE_SUMMARIES = 32


def _openCRLF(path: Path, size: int) -> BinaryIO:
    """
    A message file as CRLF lines, C{size} octets long.
    """
    f = open(path, "rb")
    if os.fstat(f.fileno()).st_size == size:
        return f
    return io.BufferedReader(CRLFReader(f, size))  # type: ignore[return-value]


@implementer(IMailFolder, IIndexedFolder)
class MaildirFolder:
    """
    One session's view of a Maildir folder.  Create with
    L{MaildirStore.openFolder}.

    The snapshot changes only on L{refresh}, except that this view's own
    L{setFlags} and L{expunge} update it at once.  Appends (also this
    view's) appear at the next refresh.

    Views of one folder share the store's L{FolderIndex}: a refresh that
    finds the directories and metadata files as the last one left them
    reuses its snapshot (the entries are copied before this view changes
    them), so a SELECT of an unchanged large folder lists nothing.
    """

    log = Logger()
    indexedFields = CACHED_FIELDS

    def __init__(self, store: "MaildirStore", account: str, name: str, path: Path) -> None:
        self.account = account
        self.name = name
        self._store = store
        self._path = path
        self._entries: dict[int, _Entry] = {}
        self._sharedEntries = False
        self._infos: Optional[tuple[MessageInfo, ...]] = None
        self._uidValidity = 0
        self._uidNext = 1
        self._highestModSeq = 0
        self.refresh()

    def _ownEntries(self) -> dict[int, _Entry]:
        """
        The entries, copied first if they are shared with other views.
        """
        if self._sharedEntries:
            self._entries = {
                uid: _Entry(e.info, e.subdir, e.filename, e.popUidl) for uid, e in self._entries.items()
            }
            self._sharedEntries = False
        self._infos = None
        return self._entries

    def highestModSeq(self) -> int:
        return self._highestModSeq

    def vanishedSince(self, modSeq: int) -> Optional[Sequence[int]]:
        """
        From the MODSEQ log: the UIDs expunged after C{modSeq}, as of the
        last refresh (L{None} if the log does not reach back that far).
        """
        return self._store._index(self._path).modseq.expungedSince(modSeq)

    def uidValidity(self) -> int:
        return self._uidValidity

    def uidNext(self) -> int:
        return self._uidNext

    def refresh(self) -> None:
        """
        Rescan the folder: move C{new/} to C{cur/}, give UIDs to new files,
        read flags.  Runs on the caller's (reactor) thread: listing two
        directories and, for messages not seen before, one C{stat} each is
        accepted there for now; no fsync happens here (the uidlist rewrite is
        atomic but not durable, like Dovecot's).

        @raise MailError: C{NOT_FOUND} if the folder was deleted.
        """
        index = self._store._index(self._path)
        started = time.time()
        before, _ = folderStamp(self._path, _STAMPED)
        if index.stamp is not None and index.stamp == before and before[0] is not None:
            entries, infos, uidValidity, uidNext, highest = index.snapshot  # type: ignore[misc]
            self._entries, self._sharedEntries, self._infos = entries, True, infos
            self._uidValidity, self._uidNext, self._highestModSeq = uidValidity, uidNext, highest
            return
        try:
            try:
                result = self._store._meta.sync(self._path, moveNew=True, durable=False)
            except FileNotFoundError:
                if self.name != INBOX:
                    raise
                # INBOX always exists: re-create it if it went away.
                self._store._ensureMaildir(self._path)
                result = self._store._meta.sync(self._path, moveNew=True, durable=False)
        except FileNotFoundError:
            raise _notFound()
        except OSError:
            self.log.failure("Cannot refresh {folder}", folder=str(self._path))
            raise temporaryError()
        key = str(self._path)
        cache = self._store._infoCache.get(key, {})
        newCache: dict[str, tuple[int, float]] = {}
        letters = {
            record.base: splitFilename(result.files[record.base][1])[1]
            for record in result.uidList.records
        }
        try:
            modSeqs = index.modseq.update(
                result.uidList.uidValidity,
                letters,
                uids={record.base: record.uid for record in result.uidList.records},
            )
        except OSError:
            self.log.failure("Cannot update MODSEQs of {folder}", folder=key)
            raise temporaryError()
        flagSets: dict[str, frozenset[str]] = {}
        entries: dict[int, _Entry] = {}
        # Sizes learnt by reading a file, to be kept in the uidlist.
        measured: dict[str, int] = {}
        for record in result.uidList.records:
            subdir, filename = result.files[record.base]
            try:
                size, date = cache.get(record.base) or self._measure(
                    subdir, filename, record, measured
                )
            except FileNotFoundError:
                continue  # expunged by someone else since the scan
            newCache[record.base] = (size, date)
            flagLetters = letters[record.base]
            flags = flagSets.get(flagLetters)
            if flags is None:
                flags = flagSets[flagLetters] = flagsFromLetters(flagLetters, result.keywords)
            info = MessageInfo(
                uid=record.uid,
                key=record.base,
                size=size,
                flags=flags,
                internalDate=date,
                modSeq=modSeqs[record.base],
            )
            entries[record.uid] = _Entry(info, subdir, filename, record.extension("P"))
        if measured:
            try:
                self._store._meta.recordSizes(self._path, measured)
            except OSError:
                self.log.failure("Cannot record message sizes in {folder}", folder=key)
        self._store._infoCache[key] = newCache
        self._entries = entries
        self._sharedEntries = True
        self._infos = tuple(e.info for e in entries.values())
        self._uidValidity = result.uidList.uidValidity
        self._uidNext = result.uidList.nextUid
        self._highestModSeq = index.modseq.highest()
        after, trustAfter = folderStamp(self._path, _STAMPED)
        # Reusable only if nothing changed during the scan (this refresh's
        # own moves and uidlist rewrite included) and the last change is old
        # enough for a later one to change the mtimes.
        settled = after == before and trustAfter < started
        index.stamp = after if settled else None
        index.snapshot = (
            entries,
            self._infos,
            self._uidValidity,
            self._uidNext,
            self._highestModSeq,
        )

    def _measure(
        self, subdir: str, filename: str, record: UidRecord, measured: dict[str, int]
    ) -> tuple[int, float]:
        """
        The CRLF size and internal date (mtime, as Dovecot uses) of a file:
        the size from C{,W=} in the name, the uidlist's C{W} field, or by
        reading the file once (then added to C{measured}, for the uidlist).
        No message file is opened otherwise: one C{stat} per message.
        """
        # Plain strings, not Path objects: this runs once per message of
        # a folder opened the first time in a process (100,000 in a large
        # one), where building Paths cost as much as the stat itself.
        path = f"{self._path}/{subdir}/{filename}"
        mtime = os.stat(path).st_mtime
        match = _CRLF_SIZE.search(record.base)
        size = int(match.group(1)) if match is not None else None
        if size is None:
            field = record.extension("W")
            size = int(field) if field and field.isdigit() else None
        if size is None:
            with open(path, "rb") as f:
                size = crlfSizeOfFile(f)
            measured[record.base] = size
        return size, mtime

    def messages(self) -> Sequence[MessageInfo]:
        if self._infos is None:
            self._infos = tuple(entry.info for entry in self._entries.values())
        return self._infos

    def _entry(self, uid: int) -> _Entry:
        entry = self._entries.get(uid)
        if entry is None:
            raise _notFound("No such message")
        return entry

    def _find(self, entry: _Entry) -> Optional[_Entry]:
        """
        Look for the message's file again after it was renamed (flags
        changed by another session); update this view's entry (copying
        shared entries first) and return it.  L{None} if it is gone.
        """
        entry = self._ownEntries().get(entry.info.uid, entry)
        for subdir in ("cur", "new"):
            try:
                names = os.listdir(self._path / subdir)
            except FileNotFoundError:
                continue
            for name in names:
                if splitFilename(name)[0] == entry.info.key:
                    entry.subdir, entry.filename = subdir, name
                    return entry
        return None

    def uidl(self, uid: int) -> str:
        entry = self._entry(uid)
        if entry.popUidl:
            # Dovecot's uidlist may carry an explicit POP3 UIDL (migrations).
            return entry.popUidl
        # Dovecot's default pop3_uidl_format %08Xu%08Xv: its var_expand
        # prints %X in lower case (checked against Dovecot 2.3.19: UID 3109,
        # UIDVALIDITY 0x6B0CA325 give "00000c256b0ca325"), and clients
        # compare UIDLs case-sensitively, so upper case would make them
        # download a migrated maildrop again.
        return f"{uid:08x}{self._uidValidity:08x}"

    def openMessage(self, uid: int) -> BinaryIO:
        entry = self._entry(uid)
        for _ in range(2):
            try:
                f = open(self._path / entry.subdir / entry.filename, "rb")
            except FileNotFoundError:
                found = self._find(entry)
                if found is None:
                    break
                entry = found
                continue
            if os.fstat(f.fileno()).st_size == entry.info.size:
                return f  # already CRLF
            return io.BufferedReader(CRLFReader(f, entry.info.size))  # type: ignore[return-value]
        raise _notFound("No such message")

    def setFlags(self, uid: int, flags: Iterable[str]) -> MessageInfo:
        """
        Rename the message's file in C{cur/} to carry the new flags.  New
        keywords are added to C{dovecot-keywords} first.
        """
        normalized = normalizeFlags(flags)
        self._entry(uid)
        entry = self._ownEntries()[uid]
        index = self._store._meta.keywordIndex(self._path, keywordsOf(normalized), durable=False)
        letters = lettersFor(normalized, index, keep=splitFilename(entry.filename)[1])
        newName = f"{entry.info.key}:2,{letters}"
        for _ in range(2):
            try:
                os.rename(self._path / entry.subdir / entry.filename, self._path / "cur" / newName)
                break
            except FileNotFoundError:
                found = self._find(entry)
                if found is None:
                    raise _notFound("No such message")
                entry = found
            except OSError:
                self.log.failure("Cannot set flags in {folder}", folder=str(self._path))
                raise temporaryError()
        else:
            raise _notFound("No such message")
        entry.subdir, entry.filename = "cur", newName
        try:
            modSeq = self._store._index(self._path).modseq.update(
                self._uidValidity, {entry.info.key: letters}, complete=False, uids={entry.info.key: uid}
            )[entry.info.key]
        except OSError:
            self.log.failure("Cannot record the MODSEQ in {folder}", folder=str(self._path))
            modSeq = entry.info.modSeq
        self._highestModSeq = max(self._highestModSeq, modSeq)
        entry.info = dataclasses.replace(entry.info, flags=normalized, modSeq=modSeq)
        self._store._notify(self._path, exclude=self)
        return entry.info

    def expunge(self, uids: Iterable[int]) -> "defer.Deferred[None]":
        """
        Unlink the messages, fsync the directories and the uidlist (in a
        thread), then drop them from the snapshot.
        """
        gone = frozenset(uids)

        def work() -> int:
            return self._store._meta.sync(
                self._path, moveNew=False, expunge=gone, durable=True
            ).removed

        def done(removed: int) -> None:
            entries = self._ownEntries()
            for uid in gone:
                entries.pop(uid, None)
            if removed:
                self._store._notify(self._path, exclude=self)

        return self._store._runBlocking(work).addCallback(done)

    def append(
        self,
        data: bytes,
        flags: Iterable[str] = (),
        internalDate: Optional[float] = None,
    ) -> "defer.Deferred[int]":
        """
        Write the message to C{tmp/}, fsync it, rename it into C{cur/} with
        its flags, fsync C{cur/}, then give it a UID in the uidlist (fsync'd)
        before the Deferred fires.
        """
        try:
            normalized = normalizeFlags(flags)
        except MailError as e:
            return defer.fail(e)
        data = bytes(data)
        store = self._store
        path = self._path

        def work() -> int:
            if not path.is_dir():
                raise _notFound()
            index = store._meta.keywordIndex(path, keywordsOf(normalized), durable=True)
            counter = CRLFCounter()
            counter.update(data)
            base = store._names.newBase(counter.physical, counter.crlf)
            tmp = path / "tmp" / base
            fd = os.open(tmp, NEW_FILE, 0o600)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    if internalDate is not None:
                        os.utime(fd, (internalDate, internalDate))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp, path / "cur" / f"{base}:2,{lettersFor(normalized, index)}")
            except BaseException:
                unlinkQuietly(tmp)
                raise
            store._makeDurable(path, "cur")
            fsyncDirectory(path / "cur")
            result = store._meta.sync(path, moveNew=False, durable=True)
            for record in result.uidList.records:
                if record.base == base:
                    return record.uid
            raise _notFound("No such message")  # expunged meanwhile

        def done(uid: int) -> int:
            store._notify(path, exclude=self)
            return uid

        return store._runBlocking(work).addCallback(done)

    def transfer(
        self, uids: Iterable[int], target: IMailFolder, move: bool
    ) -> "defer.Deferred[Sequence[tuple[int, int]]]":
        """
        Hard-link messages into C{target} (see
        L{mailsrv.storage.maildir_transfer}) in a thread; for a move, the
        originals are unlinked and dropped from this view.
        """
        if not isinstance(target, MaildirFolder) or target._store is not self._store:
            return defer.fail(MailError(ErrorKind.PERM, "Cannot copy between stores"))
        wanted = sorted(set(uids))
        messages = [
            (uid, entry.info.key, (entry.subdir, entry.filename))
            for uid, entry in ((uid, self._entries.get(uid)) for uid in wanted)
            if entry is not None
        ]
        store, source, dest = self._store, self._path, target._path

        def done(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
            if move:
                entries = self._ownEntries()
                for uid, _ in pairs:
                    entries.pop(uid, None)
                if pairs:
                    store._notify(source, exclude=self)
            if pairs:
                store._notify(dest, exclude=target)
            return pairs

        return store._runBlocking(
            lambda: transferInThread(store, source, dest, messages, move)
        ).addCallback(done)

    def summaries(
        self, uids: Sequence[int], structure: bool = False
    ) -> "defer.Deferred[Mapping[int, MessageSummary]]":
        """
        From the store's header cache: loaded from C{mailsrv-cache} in a
        thread on first use, missing summaries built from the message files
        (in a thread when there are more than a few) and the file rewritten
        afterwards, also in a thread.  With C{structure}, summaries of large
        messages get their line count and MIME structure, read in a thread.
        """
        return defer.Deferred.fromCoroutine(self._summaries(list(uids), structure))

    async def _summaries(self, uids: list[int], structure: bool = False) -> Mapping[int, MessageSummary]:
        index = self._store._index(self._path)
        cache = index.cache
        if not cache.loaded:
            if index.loading is None:
                index.loading = self._store._runBlocking(cache.load)
            loading = index.loading
            waiter: defer.Deferred[Any] = defer.Deferred()

            def loaded(result: Any) -> Any:
                if not cache.loaded:
                    cache.merge(result if isinstance(result, dict) else {})
                    index.loading = None
                waiter.callback(None)
                return result

            loading.addBoth(loaded)  # type: ignore[attr-defined]
            await waiter
        result: dict[int, MessageSummary] = {}
        missing: list[tuple[int, str, Path, int]] = []
        for uid in uids:
            entry = self._entries.get(uid)
            if entry is None:
                continue
            summary = cache.get(entry.info.key, entry.info.size)
            if summary is None:
                missing.append(
                    (uid, entry.info.key, self._path / entry.subdir / entry.filename, entry.info.size)
                )
            else:
                result[uid] = summary
        if structure:
            await self._completeStructures(index, result)
        if not missing:
            return result

        def build() -> list[tuple[int, str, MessageSummary]]:
            built = []
            for uid, base, path, size in missing:
                try:
                    with _openCRLF(path, size) as f:
                        built.append((uid, base, HeaderCache.summarizeFile(f, size)))
                except FileNotFoundError:
                    continue  # renamed or expunged: the caller reads it itself
            return built

        if len(missing) <= _INLINE_SUMMARIES:
            built = build()
        else:
            built = await self._store._runBlocking(build)
        for uid, base, summary in built:
            cache.add(base, summary)
            result[uid] = summary
        if structure:
            await self._completeStructures(index, result, [uid for uid, _, _ in built])
        self._saveCache(index)
        return result

    async def _completeStructures(
        self, index: FolderIndex, result: dict[int, MessageSummary], uids: Optional[list[int]] = None
    ) -> None:
        """
        Give the summaries in C{result} (those of C{uids}, or all) that lack
        what BODYSTRUCTURE needs (large messages) their line count and MIME
        structure, read in a thread, and keep them in the cache.
        """
        todo = [
            (uid, self._entries[uid], result[uid])
            for uid in (result if uids is None else uids)
            if needsStructure(result[uid]) and uid in self._entries
        ]
        if not todo:
            return
        jobs = [
            (uid, entry.info.key, self._path / entry.subdir / entry.filename, summary)
            for uid, entry, summary in todo
        ]

        def complete() -> list[tuple[int, str, MessageSummary]]:
            done = []
            for uid, base, path, summary in jobs:
                try:
                    with _openCRLF(path, summary.size) as f:
                        done.append((uid, base, HeaderCache.completeStructure(f, summary)))
                except FileNotFoundError:
                    continue  # renamed or expunged: the caller reads it itself
            return done

        for uid, base, summary in await self._store._runBlocking(complete):
            index.cache.add(base, summary)
            result[uid] = summary
        self._saveCache(index)

    def _saveCache(self, index: FolderIndex) -> None:
        """
        Rewrite C{mailsrv-cache} in a thread, for the messages of this
        snapshot; one write at a time per folder.
        """
        if index.saving or not index.cache.dirty:
            return
        index.saving = True
        data = index.cache.snapshot(e.info.key for e in self._entries.values())

        def saved(_: object) -> None:
            index.saving = False

        self._store._runBlocking(lambda: index.cache.save(data)).addErrback(
            lambda f: self.log.failure("Cannot write {path}", f, path=str(index.cache.path))
        ).addBoth(saved)

    def addChangeListener(self, listener: Listener) -> None:
        self._store._listeners.setdefault(str(self._path), []).append((self, listener))

    def removeChangeListener(self, listener: Listener) -> None:
        try:
            self._store._listeners.get(str(self._path), []).remove((self, listener))
        except ValueError:
            pass


@implementer(IMailStore)
class MaildirStore:
    """
    All mailboxes, as Maildir++ directories under C{root}.

    @param root: the directory holding C{<domain>/<localpart>/}; created if
        missing.
    @param reactor: provides the thread pool for blocking work (fsync);
        L{None} means the global reactor's, through C{deferToThread}.
    @param runInThread: overrides how blocking work runs: called as
        C{runInThread(f, *args)}, returns a Deferred of C{f}'s result.  Tests
        pass a synchronous runner.
    @param hostname: the host name in new file names (default: this host).
    @param clock: POSIX time, for file names, UIDVALIDITY and L{cleanTmp}.
    @param committer: does the disk work of deliveries (default: a
        L{ThreadCommitter} on C{runInThread}).
    """

    log = Logger()

    def __init__(
        self,
        root: Path,
        reactor: Any = None,
        runInThread: Optional[Runner] = None,
        *,
        hostname: Optional[str] = None,
        clock: Callable[[], float] = time.time,
        committer: Optional[IDeliveryCommitter] = None,
    ) -> None:
        self.root = Path(root)
        self._runInThread = runInThread or _defaultRunner(reactor)
        self._clock = clock
        self._names = NameGenerator(hostname, clock)
        self._tree = MaildirTree(self.root)
        self._committer: IDeliveryCommitter = committer or ThreadCommitter(
            self._runInThread, self._tree
        )
        self._meta = FolderMetadata(clock)
        # In-process change notification: folder path -> (view, listener).
        self._listeners: dict[str, list[tuple[MaildirFolder, Listener]]] = {}
        # Per folder path: base -> (CRLF size, internal date); reactor thread.
        self._infoCache: dict[str, dict[str, tuple[int, float]]] = {}
        # Per folder path: header cache, MODSEQ log, last snapshot.
        self._indexes: dict[str, FolderIndex] = {}

    def _index(self, folderDir: Path) -> FolderIndex:
        key = str(folderDir)
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = FolderIndex(folderDir, self._clock)
        return index

    # ------------------------------------------------------------- paths

    def _account(self, account: str) -> tuple[str, Path]:
        local, domain = splitAccount(account)
        path = self.root / domain / local
        # splitAccount made escaping impossible; check anyway, it is cheap.
        if os.path.dirname(os.path.dirname(os.path.normpath(path))) != os.path.normpath(
            self.root
        ):
            raise MailError(ErrorKind.SYNTAX, "Invalid account")
        return f"{local}@{domain}", path

    @staticmethod
    def _folderDirName(name: str) -> str:
        return "." + ".".join(encodeModifiedUTF7(part) for part in name.split("/"))

    def _folder(self, account: str, name: str) -> tuple[str, Path, str, Path]:
        """
        @return: canonical account, account directory, canonical folder
            name, folder directory.
        """
        account, accountDir = self._account(account)
        name = normalizeFolderName(name)
        if name == INBOX:
            return account, accountDir, name, accountDir
        return account, accountDir, name, accountDir / self._folderDirName(name)

    def _folderNames(self, accountDir: Path) -> list[str]:
        """
        The names of the folders under C{accountDir} (INBOX excluded),
        sorted; directories whose names are not in canonical form are
        skipped (and logged): mailsrv could not address them safely.
        """
        names = []
        try:
            entries = list(os.scandir(accountDir))
        except FileNotFoundError:
            return []
        for entry in entries:
            if not entry.name.startswith(".") or entry.name.startswith(".."):
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            try:
                name = normalizeFolderName(
                    "/".join(decodeModifiedUTF7(p) for p in entry.name[1:].split("."))
                )
            except (ValueError, MailError):
                name = None
            if name is None or self._folderDirName(name) != entry.name:
                self.log.warn("Ignoring folder directory {path}", path=entry.path)
                continue
            names.append(name)
        return sorted(names)

    def _ensureMaildir(self, folderDir: Path) -> None:
        """
        Create C{folderDir}, its C{cur/ new/ tmp/}, and missing parents up
        to the root (mode 0700).  Not durable: see L{_makeDurable}.
        """
        self._tree.ensure(folderDir)

    def _makeDurable(self, folderDir: Path, subdir: str) -> None:
        """
        Make sure the directories leading to C{folderDir/subdir} survive a
        crash (see L{MaildirTree.makeDurable}).  Blocking: threads only.
        """
        self._tree.makeDurable(folderDir, subdir)

    # ------------------------------------------------------- threads, events

    def _runBlocking(self, f: Callable[[], Any]) -> "defer.Deferred[Any]":
        """
        Run C{f} with the injected runner; failures other than L{MailError}
        are logged and become a temporary L{MailError}.
        """
        try:
            d = self._runInThread(f)
        except Exception:
            d = defer.fail()
        return d.addErrback(self._toMailError)

    def _commit(self, job: DeliveryJob) -> "defer.Deferred[None]":
        """
        Run a delivery's disk work with the committer; failures are logged
        and become a temporary L{MailError}.
        """
        try:
            d = self._committer.commit(job)
        except Exception:
            d = defer.fail()
        return d.addErrback(self._toMailError)

    def _toMailError(self, failure: Failure) -> Failure:
        if failure.check(MailError):
            return failure
        if failure.check(FileNotFoundError):
            self.log.failure("Mailbox vanished", failure)
            return Failure(_notFound())
        self.log.failure("Mail storage operation failed", failure)
        return Failure(temporaryError())

    def _notify(self, folderDir: Path, exclude: Optional[MaildirFolder] = None) -> None:
        for view, listener in list(self._listeners.get(str(folderDir), ())):
            if view is exclude:
                continue
            try:
                listener()
            except Exception:
                # One broken session must not break a delivery or the others.
                self.log.failure("Mailbox change listener failed")

    # --------------------------------------------------------- IMailStore

    def openFolder(self, account: str, name: str = INBOX) -> MaildirFolder:
        account, _, name, folderDir = self._folder(account, name)
        if name == INBOX:
            self._ensureMaildir(folderDir)
        elif not folderDir.is_dir():
            raise _notFound()
        return MaildirFolder(self, account, name, folderDir)

    def listFolders(self, account: str) -> Sequence[str]:
        accountDir = self._account(account)[1]
        return [INBOX, *self._folderNames(accountDir)]

    def createFolder(self, account: str, name: str) -> None:
        _, accountDir, name, folderDir = self._folder(account, name)
        if name == INBOX:
            raise MailError(ErrorKind.PERM, "Mailbox already exists")
        self._ensureMaildir(accountDir)
        try:
            os.mkdir(folderDir, 0o700)
        except FileExistsError:
            raise MailError(ErrorKind.PERM, "Mailbox already exists")
        for subdir in ("cur", "new", "tmp"):
            os.mkdir(folderDir / subdir, 0o700)
        os.close(os.open(folderDir / "maildirfolder", NEW_FILE, 0o600))
        # Fix the UIDVALIDITY now, not at the first open.
        self._meta.sync(folderDir, moveNew=False, durable=False)

    def deleteFolder(self, account: str, name: str) -> None:
        """
        Delete one folder (its children stay, as in Dovecot).  The directory
        is first renamed out of sight, so a half-deleted folder is never
        listed.
        """
        _, accountDir, name, folderDir = self._folder(account, name)
        if name == INBOX:
            raise MailError(ErrorKind.PERM, "INBOX cannot be deleted")
        if not folderDir.is_dir():
            raise _notFound()
        trash = accountDir / f"..mailsrv-deleted.{uuid.uuid4().hex}"
        try:
            os.rename(folderDir, trash)
        except FileNotFoundError:
            raise _notFound()
        shutil.rmtree(trash, ignore_errors=True)
        self._infoCache.pop(str(folderDir), None)
        self._indexes.pop(str(folderDir), None)
        self._notify(folderDir)

    def renameFolder(self, account: str, old: str, new: str) -> None:
        """
        Rename a folder and its children, keeping UIDs and UIDVALIDITY (the
        uidlist moves with the directory).  Renaming INBOX moves its
        messages into a new folder and leaves INBOX empty (RFC 3501).  Views
        open on a renamed folder fail their next refresh with C{NOT_FOUND}.
        """
        account, accountDir, old, oldDir = self._folder(account, old)
        new = normalizeFolderName(new)
        newDir = accountDir / self._folderDirName(new) if new != INBOX else accountDir
        if old != INBOX and not oldDir.is_dir():
            raise _notFound()
        if new == INBOX or newDir.exists():
            raise MailError(ErrorKind.PERM, "Mailbox already exists")
        if new.startswith(old + "/"):
            raise MailError(ErrorKind.PERM, "Cannot rename a mailbox into itself")
        if old == INBOX:
            self._moveInbox(account, accountDir, new, newDir)
            return
        moves = [(oldDir, newDir)] + [
            (
                accountDir / self._folderDirName(child),
                accountDir / self._folderDirName(new + child[len(old) :]),
            )
            for child in self._folderNames(accountDir)
            if child.startswith(old + "/")
        ]
        if any(dest.exists() for _, dest in moves):
            raise MailError(ErrorKind.PERM, "Mailbox already exists")
        for source, dest in moves:
            os.rename(source, dest)
            self._infoCache.pop(str(source), None)
            self._indexes.pop(str(source), None)

    def _moveInbox(self, account: str, accountDir: Path, new: str, newDir: Path) -> None:
        self.createFolder(account, new)
        self._ensureMaildir(accountDir)
        keywords = accountDir / KEYWORDS_NAME
        if keywords.exists():
            # Keyword letters in the moved names refer to INBOX's table.
            shutil.copyfile(keywords, newDir / KEYWORDS_NAME)
        for subdir in ("new", "cur"):
            for name in os.listdir(accountDir / subdir):
                if not name.startswith("."):
                    dest = name if ":" in name else name + ":2,"
                    os.rename(accountDir / subdir / name, newDir / "cur" / dest)
        self._notify(accountDir)

    def startMessage(self, accounts: Sequence[str], folder: str = INBOX) -> MaildirMessageWriter:
        """
        @param folder: the folder of each account to deliver into, created
            where missing.
        @raise ValueError: if C{accounts} is empty.
        @raise MailError: C{SYNTAX} for an invalid account or folder name.
        """
        dirs: list[Path] = []
        for account in accounts:
            folderDir = self._deliveryFolder(account, folder)
            if folderDir not in dirs:
                dirs.append(folderDir)
        if not dirs:
            raise ValueError("startMessage() needs at least one account")
        return MaildirMessageWriter(self, dirs)

    def _deliveryFolder(self, account: str, folder: str) -> Path:
        """
        The directory of a folder to deliver into, creating the folder
        (as IMAP CREATE would) and subscribing it if it is missing: many
        clients (Thunderbird by default) show subscribed folders only, and
        mail filed where the user cannot see it looks lost.
        """
        _, _, name, folderDir = self._folder(account, folder)
        if name != INBOX and not folderDir.is_dir():
            try:
                self.createFolder(account, name)
            except MailError as e:
                if e.kind is not ErrorKind.PERM:  # PERM: created meanwhile
                    raise
            else:
                self.setSubscribed(account, name, True)
        return folderDir

    def subscriptions(self, account: str) -> Sequence[str]:
        """
        From Dovecot's C{subscriptions} file in the account directory.
        """
        return readSubscriptions(self._account(account)[1])

    def setSubscribed(self, account: str, name: str, subscribed: bool) -> None:
        setSubscribed(self._account(account)[1], name, subscribed)

    def specialUse(self, account: str) -> Mapping[str, str]:
        return readSpecialUse(self._account(account)[1])

    def setSpecialUse(self, account: str, name: str, use: Optional[str]) -> None:
        try:
            setSpecialUse(self._account(account)[1], name, use)
        except ValueError:
            raise MailError(ErrorKind.SYNTAX, "Unknown special use") from None

    # -------------------------------------------------------------- upkeep

    def _tmpDirectories(self) -> Iterator[Path]:
        for domain in _subdirectories(self.root):
            if domain.name.startswith("."):
                continue
            for account in _subdirectories(domain):
                if account.name.startswith("."):
                    continue
                yield account / "tmp"
                for folder in _subdirectories(account):
                    if folder.name.startswith(".") and not folder.name.startswith(".."):
                        yield folder / "tmp"

    def cleanTmp(self, maxAgeSeconds: float = 36 * 3600) -> int:
        """
        Remove files older than C{maxAgeSeconds} from every C{tmp/}: what
        deliveries interrupted by a crash left (the Maildir spec's 36 hours
        by default).  Blocking; meant for startup, before serving.

        @return: how many files were removed.
        """
        cutoff = self._clock() - maxAgeSeconds
        removed = 0
        for tmpDir in self._tmpDirectories():
            try:
                entries = list(os.scandir(tmpDir))
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    continue
        self.log.info(
            "Removed {count} stale files from Maildir tmp directories under {root}",
            count=removed,
            root=str(self.root),
        )
        return removed


def _subdirectories(path: Path) -> Iterator[Path]:
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield Path(entry.path)
