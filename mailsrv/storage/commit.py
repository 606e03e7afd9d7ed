# -*- test-case-name: tests.storage.test_committers,tests.storage.test_maildir -*-
"""
The disk work of delivering one message into Maildir INBOXes, as plain data
and one blocking function.

A L{DeliveryJob} says everything that work needs (paths and, for a small
message, its bytes), so the same L{commitDelivery} runs in a thread of the
server or in the commit process (L{mailsrv.storage.commit_worker}); the
frame functions here carry jobs and outcomes across the pipe between them.

The order of the steps is the durability argument: the file's bytes are
fsync'd before any C{new/} entry names it, and every C{new/} directory is
fsync'd before the delivery counts as done.  A crash at any point leaves
either no entry in C{new/}, or a complete file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import threading
from pathlib import Path
from typing import Optional, Union

from mailsrv.storage.fsync import GroupDirectorySync, fsyncDirectory

NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC

#: A job frame: header length, data length (-1: no data), then both.
_JOB_PREFIX = struct.Struct("!Ii")
#: An outcome frame: its length, then a JSON object.
_OUTCOME_PREFIX = struct.Struct("!I")


@dataclasses.dataclass(frozen=True)
class DeliveryJob:
    """
    One delivery's disk work.

    @ivar root: the Maildir root; directories missing under it are created.
    @ivar tmpPath: the message file in the first account's C{tmp/}.
    @ivar data: the whole message when it has not been written yet
        (C{tmpPath} is then created); L{None} when C{tmpPath} already holds
        it, written and closed.
    @ivar targets: the new names, one per destination folder:
        C{<folder>/new/<base>}, or C{<folder>/cur/<base>:2,<flags>} for a
        message delivered with flags.
    """

    root: str
    tmpPath: str
    data: Optional[bytes]
    targets: tuple[str, ...]


class MaildirTree:
    """
    Creates Maildir directories under a root and makes their entries
    durable, each directory once per process.  Blocking: threads only.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # Directories whose entry in their parent is known durable (fsync'd
        # by this process); checked from threads, set.add is atomic.
        self._durable: set[Path] = set()

    def ensure(self, folderDir: Path) -> None:
        """
        Create C{folderDir}, its C{cur/ new/ tmp/}, and missing parents up
        to the root (mode 0700).  Not durable: see L{makeDurable}.
        """
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        chain = [p for p in reversed(folderDir.parents) if self.root in p.parents]
        for path in [*chain, folderDir, folderDir / "cur", folderDir / "new", folderDir / "tmp"]:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass

    def makeDurable(self, folderDir: Path, subdir: str) -> None:
        """
        Make sure the directories leading to C{folderDir/subdir} survive a
        crash: fsync the parent of each one not yet known durable (so only
        the first delivery to an account pays for it).
        """
        target = folderDir / subdir
        chain = [p for p in reversed(target.parents) if self.root in p.parents]
        for path in [*chain, target]:
            if path not in self._durable:
                fsyncDirectory(path.parent)
                self._durable.add(path)


class MaildirTrees:
    """
    One L{MaildirTree} per Maildir root named in jobs, so that each
    directory is made durable once per process.  Safe from several threads.
    """

    def __init__(self) -> None:
        self._trees: dict[str, MaildirTree] = {}
        self._lock = threading.Lock()

    def __call__(self, root: str) -> MaildirTree:
        with self._lock:
            tree = self._trees.get(root)
            if tree is None:
                tree = self._trees[root] = MaildirTree(Path(root))
            return tree


def unlinkQuietly(path: Union[str, "os.PathLike[str]"]) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _writeAll(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _syncTargets(job: DeliveryJob, tree: MaildirTree, directorySync: GroupDirectorySync) -> None:
    """
    Make every target's entry durable (in C{new/}, or C{cur/} for a
    message delivered with flags; for a first delivery, also the
    directories leading to it).
    """
    for target in job.targets:
        subdir = Path(target).parent
        tree.makeDurable(subdir.parent, subdir.name)
        directorySync.sync(os.path.dirname(target))


def commitDelivery(job: DeliveryJob, tree: MaildirTree, directorySync: GroupDirectorySync) -> None:
    """
    Make C{job}'s message durable and visible: write it (if C{job.data}),
    fsync it, link it into every target, fsync each target's directory
    (shared with concurrent deliveries), then drop the C{tmp/} name.

    On failure nothing of the message is left: the links made and the
    C{tmp/} file are removed, and the error is raised.
    """
    tmpPath = job.tmpPath
    linked: list[str] = []
    try:
        if job.data is not None:
            try:
                fd = os.open(tmpPath, NEW_FILE, 0o600)
            except FileNotFoundError:
                # First delivery to this account (or its Maildir was
                # removed): only then pay for creating the directories.
                tree.ensure(Path(tmpPath).parent.parent)
                fd = os.open(tmpPath, NEW_FILE, 0o600)
        else:
            # Written and closed by the server already; fsync through any
            # descriptor flushes the file.
            fd = os.open(tmpPath, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if job.data is not None:
                _writeAll(fd, job.data)
            os.fsync(fd)
        finally:
            os.close(fd)
        for target in job.targets:
            try:
                os.link(tmpPath, target)
            except FileNotFoundError:
                tree.ensure(Path(target).parent.parent)
                os.link(tmpPath, target)
            linked.append(target)
        _syncTargets(job, tree, directorySync)
    except BaseException:
        for path in linked:
            unlinkQuietly(path)
        unlinkQuietly(tmpPath)
        raise
    # Delivered: failing to tidy tmp/ must not fail the delivery (cleanTmp()
    # removes leftovers).  The unlink needs no fsync: if a crash undoes it,
    # the name left in tmp/ is a second link to a delivered message, and
    # cleanTmp() removes it.
    unlinkQuietly(tmpPath)


def settleAbandoned(job: DeliveryJob, tree: MaildirTree, directorySync: GroupDirectorySync) -> bool:
    """
    Decide a job whose process ended before reporting on it, so that the
    sender's answer is exact: finish it if it had linked the message into
    every target (a link is made only after the file's fsync), otherwise
    undo what it did.  Call only once that process is gone.

    @return: whether the message is delivered.
    """
    present = [target for target in job.targets if os.path.lexists(target)]
    if present and len(present) == len(job.targets):
        _syncTargets(job, tree, directorySync)
        unlinkQuietly(job.tmpPath)
        return True
    for target in present:
        unlinkQuietly(target)
    unlinkQuietly(job.tmpPath)
    return False


# ------------------------------------------------------------------ frames


def encodeJob(jobId: int, job: DeliveryJob) -> bytes:
    """
    One job as a frame for the commit process.
    """
    header = json.dumps(
        {"id": jobId, "root": job.root, "tmp": job.tmpPath, "targets": list(job.targets)}
    ).encode("utf-8", "surrogateescape")
    data = job.data
    return _JOB_PREFIX.pack(len(header), -1 if data is None else len(data)) + header + (data or b"")


JOB_PREFIX_SIZE = _JOB_PREFIX.size
OUTCOME_PREFIX_SIZE = _OUTCOME_PREFIX.size


def decodeJobPrefix(prefix: bytes) -> tuple[int, int]:
    """
    @return: the header's length and the data's (-1: none) from a job
        frame's first L{JOB_PREFIX_SIZE} octets.
    """
    headerSize, dataSize = _JOB_PREFIX.unpack(prefix)
    return headerSize, dataSize


def decodeJob(header: bytes, data: Optional[bytes]) -> tuple[int, DeliveryJob]:
    fields = json.loads(header.decode("utf-8", "surrogateescape"))
    return fields["id"], DeliveryJob(
        root=fields["root"], tmpPath=fields["tmp"], data=data, targets=tuple(fields["targets"])
    )


def encodeOutcome(jobId: int, error: Optional[OSError] = None) -> bytes:
    """
    A job's outcome as a frame: success, or the C{OSError} it failed with
    (its errno, text and file name, for the server's log).
    """
    fields: dict[str, object] = {"id": jobId}
    if error is not None:
        fields["errno"] = error.errno
        fields["error"] = error.strerror or str(error)
        fields["filename"] = None if error.filename is None else os.fsdecode(error.filename)
    body = json.dumps(fields).encode("utf-8", "surrogateescape")
    return _OUTCOME_PREFIX.pack(len(body)) + body


def decodeOutcomes(buffer: bytearray) -> list[tuple[int, Optional[OSError]]]:
    """
    Take the complete outcome frames off the front of C{buffer}.

    @return: (job id, L{None} or the C{OSError} the job failed with), in
        order.
    """
    outcomes = []
    while len(buffer) >= OUTCOME_PREFIX_SIZE:
        (size,) = _OUTCOME_PREFIX.unpack_from(buffer)
        if len(buffer) < OUTCOME_PREFIX_SIZE + size:
            break
        fields = json.loads(bytes(buffer[OUTCOME_PREFIX_SIZE : OUTCOME_PREFIX_SIZE + size]))
        del buffer[: OUTCOME_PREFIX_SIZE + size]
        error: Optional[OSError] = None
        if "error" in fields:
            error = OSError(fields.get("errno") or 0, fields["error"], fields.get("filename"))
        outcomes.append((fields["id"], error))
    return outcomes
