# -*- test-case-name: tests.storage.test_behaviour,tests.storage.test_maildir -*-
"""
COPY and MOVE between two Maildir folders of one store, without reading
the messages: each file is hard-linked into the target (one copy of the
bytes, the internal date is the shared mtime), as Dovecot does.

Move protocol, per message, so that two sessions moving the same message
at once never both keep it and a crash never loses it:

 1. link the source file into the target's C{cur/} under a new base name
    (new, so that a message moved back never meets its old UID again);
 2. fsync the target's C{cur/} (the copy is durable before the original
    goes);
 3. unlink the source file; if it is gone, look for it under another name
    (another session changed its flags) and retry; if it is gone for good,
    another session moved or expunged it first, so unlink our link;
 4. fsync the source directories, then give the new files UIDs in the
    target's uidlist and drop the old ones from the source's.

A crash between 2 and 3 leaves the message in both folders: duplicated,
never lost, which is what DESIGN.md allows.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

from mailsrv.storage.fsync import fsyncDirectory
from mailsrv.storage.maildir_files import flagsFromLetters, lettersFor, sizesFromBase, splitFilename
from mailsrv.storage.commit import unlinkQuietly
from mailsrv.storage.validation import keywordsOf

if TYPE_CHECKING:
    from mailsrv.storage.maildir import MaildirStore


def _locate(folderDir: Path, base: str, hint: Optional[tuple[str, str]]) -> Optional[tuple[str, str]]:
    """
    The C{(subdir, filename)} of the message with C{base}, trying C{hint}
    first and listing C{cur/} and C{new/} only when it moved.
    """
    if hint is not None and os.path.lexists(folderDir / hint[0] / hint[1]):
        return hint
    for subdir in ("cur", "new"):
        try:
            names = os.listdir(folderDir / subdir)
        except FileNotFoundError:
            continue
        for name in names:
            if splitFilename(name)[0] == base:
                return subdir, name
    return None


def _linkOrCopy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        tmp = target.parent.parent / "tmp" / target.name.split(":", 1)[0]
        shutil.copy2(source, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.rename(tmp, target)


def transferInThread(
    store: "MaildirStore",
    sourceDir: Path,
    targetDir: Path,
    messages: Iterable[tuple[int, str, Optional[tuple[str, str]]]],
    move: bool,
) -> list[tuple[int, int]]:
    """
    Copy or move C{messages} (C{(uid, base, (subdir, filename) hint)}, in
    ascending UID order) from C{sourceDir} to C{targetDir}.  Blocking.

    @return: C{(source uid, target uid)} for the messages transferred.
    """
    meta = store._meta
    if not targetDir.is_dir():
        from mailsrv.storage.maildir import _notFound

        raise _notFound()
    sourceKeywords = meta.readKeywords(sourceDir)
    linked: list[tuple[int, str, Path, tuple[str, str]]] = []
    try:
        for uid, base, hint in messages:
            where = _locate(sourceDir, base, hint)
            if where is None:
                continue
            flags = flagsFromLetters(splitFilename(where[1])[1], sourceKeywords)
            index = meta.keywordIndex(targetDir, keywordsOf(flags), durable=True)
            physical, crlf = sizesFromBase(base)
            if physical is None:
                physical = os.stat(sourceDir / where[0] / where[1]).st_size
            newBase = store._names.newBase(physical, crlf if crlf is not None else physical)
            target = targetDir / "cur" / f"{newBase}:2,{lettersFor(flags, index)}"
            try:
                _linkOrCopy(sourceDir / where[0] / where[1], target)
            except FileNotFoundError:
                continue  # expunged or renamed meanwhile: skip it
            linked.append((uid, newBase, target, where))
        if linked:
            store._makeDurable(targetDir, "cur")
            fsyncDirectory(targetDir / "cur")
    except BaseException:
        for _, _, target, _ in linked:
            unlinkQuietly(target)
        raise

    kept = []
    if move:
        touched = set()
        for uid, newBase, target, where in linked:
            base = splitFilename(where[1])[0]
            for _ in range(3):
                try:
                    os.unlink(sourceDir / where[0] / where[1])
                    touched.add(where[0])
                    kept.append((uid, newBase))
                    break
                except FileNotFoundError:
                    found = _locate(sourceDir, base, None)
                    if found is None:
                        # Someone else moved or expunged it first.
                        unlinkQuietly(target)
                        break
                    where = found
            else:
                unlinkQuietly(target)
        for subdir in sorted(touched):
            fsyncDirectory(sourceDir / subdir)
    else:
        kept = [(uid, newBase) for uid, newBase, _, _ in linked]

    result = meta.sync(targetDir, moveNew=False, durable=True)
    uids = {record.base: record.uid for record in result.uidList.records}
    if move and kept:
        meta.sync(sourceDir, moveNew=False, durable=True)
    return [(uid, uids[newBase]) for uid, newBase in kept if newBase in uids]
