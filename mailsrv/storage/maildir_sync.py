# -*- test-case-name: tests.storage.test_maildir -*-
"""
A Maildir folder's metadata: giving UIDs to message files and keeping
C{dovecot-uidlist} and C{dovecot-keywords} in step with C{cur/} and C{new/}.

Every change happens under the folder lock (L{lockedFolder}), so sessions on
the reactor thread, deliveries in the thread pool and other processes never
give one UID twice.  Methods may be called from any thread; with
C{durable=True} they block on fsync and belong in a thread.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Mapping

from twisted.logger import Logger

from mailsrv.errors import ErrorKind, MailError
from mailsrv.storage.fsync import fsyncDirectory, writeFileAtomically
from mailsrv.storage.maildir_files import deliveryTime, splitFilename
from mailsrv.storage.uidlist import (
    KEYWORD_LETTERS,
    KEYWORDS_NAME,
    UIDLIST_NAME,
    UidList,
    UidRecord,
    formatKeywords,
    formatUidList,
    lockedFolder,
    parseKeywords,
    parseUidList,
)


@dataclasses.dataclass
class SyncResult:
    """
    The state of a folder directory after L{FolderMetadata.sync}.

    @ivar files: message base name -> C{(subdir, file name)}.
    @ivar removed: how many files an expunge unlinked.
    """

    uidList: UidList
    files: dict[str, tuple[str, str]]
    keywords: dict[int, str]
    removed: int = 0


class FolderMetadata:
    """
    Reads and updates the metadata files of Maildir folders.

    @param clock: POSIX time, for new UIDVALIDITY values.
    """

    log = Logger()

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._uidValidityLock = threading.Lock()
        self._lastUidValidity = 0

    def newUidValidity(self) -> int:
        # Dovecot uses the current time; keep it strictly increasing in this
        # process so a folder re-created within a second gets a new value.
        with self._uidValidityLock:
            self._lastUidValidity = max(int(self._clock()), self._lastUidValidity + 1)
            return self._lastUidValidity

    def readUidList(self, folderDir: Path) -> tuple[UidList, bool]:
        """
        @return: the folder's uidlist and whether it is new (must be
            written).  A corrupt one is set aside and replaced by a new one
            with a new UIDVALIDITY, so clients resynchronise.
        """
        path = folderDir / UIDLIST_NAME
        try:
            return parseUidList(path.read_bytes().decode("utf-8", "surrogateescape")), False
        except FileNotFoundError:
            pass
        except ValueError:
            self.log.error("Unreadable {path}; starting a new UIDVALIDITY", path=str(path))
            os.replace(path, folderDir / (UIDLIST_NAME + ".broken"))
        fresh = UidList(self.newUidValidity(), 1, [f"G{uuid.uuid4().hex}"])
        return fresh, True

    @staticmethod
    def readKeywords(folderDir: Path) -> dict[int, str]:
        try:
            return parseKeywords((folderDir / KEYWORDS_NAME).read_text("utf-8", "replace"))
        except FileNotFoundError:
            return {}

    def keywordIndex(self, folderDir: Path, wanted: set[str], durable: bool) -> dict[str, int]:
        """
        Keyword -> index in C{dovecot-keywords}, adding the C{wanted} ones
        that are missing.

        @raise MailError: C{TOO_MANY} if the 26 letters are used up.
        """
        current = self.readKeywords(folderDir)
        if not wanted - set(current.values()):
            return {kw: i for i, kw in current.items()}
        with lockedFolder(folderDir):
            current = self.readKeywords(folderDir)
            missing = sorted(wanted - set(current.values()))
            free = [i for i in range(len(KEYWORD_LETTERS)) if i not in current]
            if len(missing) > len(free):
                raise MailError(ErrorKind.TOO_MANY, "Too many keywords in this mailbox")
            current.update(zip(free, missing))
            writeFileAtomically(
                folderDir / KEYWORDS_NAME, formatKeywords(current), 0o600, durable=durable
            )
        return {kw: i for i, kw in current.items()}

    def recordSizes(self, folderDir: Path, sizes: Mapping[str, int]) -> None:
        """
        Keep the CRLF sizes of messages whose file names lack C{,W=} in the
        uidlist, as Dovecot's C{W} extension field, so that no later open
        of the folder (in this process or another, mailsrv or Dovecot) has
        to read those files again to learn them.  Not durable: a lost
        update only costs one more read.
        """
        if not sizes:
            return
        with lockedFolder(folderDir):
            uidList, new = self.readUidList(folderDir)
            if new:
                return  # replaced meanwhile: the next refresh measures again
            changed = False
            for record in uidList.records:
                size = sizes.get(record.base)
                if size is not None and record.extension("W") is None:
                    record.extensions.append(f"W{size}")
                    changed = True
            if changed:
                writeFileAtomically(
                    folderDir / UIDLIST_NAME, formatUidList(uidList), 0o600, durable=False
                )

    def scan(self, folderDir: Path, moveNew: bool) -> dict[str, tuple[str, str]]:
        files: dict[str, tuple[str, str]] = {}
        for subdir in ("cur", "new"):
            try:
                entries = list(os.scandir(folderDir / subdir))
            except FileNotFoundError:
                if subdir == "cur" and not folderDir.is_dir():
                    raise
                continue
            for entry in entries:
                name = entry.name
                # Symlinks and other non-files are never served: a link
                # planted in a Maildir must not expose files outside it.
                if name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                base = splitFilename(name)[0]
                if base in files:
                    continue
                if subdir == "new" and moveNew:
                    target = name if ":" in name else name + ":2,"
                    try:
                        os.rename(entry.path, folderDir / "cur" / target)
                    except FileNotFoundError:
                        if not (folderDir / "cur" / target).exists():
                            continue
                    files[base] = ("cur", target)
                else:
                    files[base] = (subdir, name)
        return files

    def sync(
        self,
        folderDir: Path,
        *,
        moveNew: bool,
        expunge: frozenset[int] = frozenset(),
        durable: bool,
    ) -> SyncResult:
        """
        Under the folder lock: read the uidlist, scan C{cur/} and C{new/},
        unlink the C{expunge} UIDs, drop records of vanished files, number
        unknown files from the next UID in delivery-time order, and rewrite
        the uidlist if anything changed.

        @param durable: fsync the unlinks and the uidlist (threads only).
        """
        with lockedFolder(folderDir):
            uidList, changed = self.readUidList(folderDir)
            files = self.scan(folderDir, moveNew)
            removed = 0
            touched = set()
            for record in uidList.records:
                if record.uid in expunge and record.base in files:
                    subdir, filename = files.pop(record.base)
                    try:
                        os.unlink(folderDir / subdir / filename)
                        removed += 1
                        touched.add(subdir)
                    except FileNotFoundError:
                        pass
            if durable:
                for subdir in sorted(touched):
                    fsyncDirectory(folderDir / subdir)
            records = [r for r in uidList.records if r.base in files]
            changed = changed or len(records) != len(uidList.records)
            known = {r.base for r in records}
            for base in sorted(set(files) - known, key=lambda b: (deliveryTime(b), b)):
                records.append(UidRecord(uidList.nextUid, base))
                uidList.nextUid += 1
                changed = True
            uidList.records = records
            if changed:
                writeFileAtomically(
                    folderDir / UIDLIST_NAME, formatUidList(uidList), 0o600, durable=durable
                )
            keywords = self.readKeywords(folderDir)
        return SyncResult(uidList, files, keywords, removed)
