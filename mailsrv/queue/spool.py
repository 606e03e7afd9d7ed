# -*- test-case-name: tests.queue.test_spool -*-
"""
The durable outbound spool in C{data_dir/queue/} (Postfix's
C{mail_queue_enter} / C{mail_queue_rename}, without pickle).

Each message is a directory C{<state>/<id>/} holding C{message} (the bytes
to send, CRLF lines, not dot-stuffed) and C{envelope.json} (a versioned
L{QueueEntry}: sender, per-recipient state, attempts, next attempt).  The
state is the parent directory, changed by renaming the message directory,
which moves both files at once:

 - C{tmp/}: being received; never acknowledged, removed at start;
 - C{incoming/}: acknowledged (fsync'd), not yet looked at;
 - C{active/}: being delivered now (at start, these go back to incoming);
 - C{deferred/}: waiting for the next attempt (C{nextAttempt}).

Queue ids are validated (L{validQueueId}) before they are joined to any
path.  Every method here blocks on the disk: the scheduler calls them in a
thread.

Durability (see DESIGN.md): before a message is acknowledged its two files
and their entries in C{tmp/<id>/} are fsync'd, the directory is renamed into
C{incoming/}, and C{incoming/} and C{tmp/} are fsync'd.  The fsyncs of the
shared state directories (C{incoming/}, C{tmp/}, C{active/}, ...) go through
one L{GroupDirectorySync} per spool: concurrent commits and moves, each in
its own thread, share one fsync of a directory instead of queueing one
each, and each still returns only after an fsync that started after its
rename.  The per-message fsyncs (both files, C{tmp/<id>/}) cannot be
shared.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional

from mailsrv.storage.fsync import GroupDirectorySync, createDurably, fsyncDirectory, writeFileAtomically

ENVELOPE_VERSION = 1
STATES = ("incoming", "active", "deferred")
TMP = "tmp"
MESSAGE_FILE = "message"
ENVELOPE_FILE = "envelope.json"
FLUSH_TRIGGER = "flush"

_QUEUE_ID = re.compile(r"^[A-Za-z0-9]{6,64}$")

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"  # permanently failed, sender not told yet
BOUNCED = "bounced"  # permanently failed, sender told (or nobody to tell)


class QueueIdError(ValueError):
    """
    A queue id that is not safe to use in a path.
    """


def validQueueId(queueId: str) -> bool:
    """
    Whether C{queueId} is 6 to 64 ASCII letters and digits: nothing that
    could name another directory (C{..}, C{/}, NUL).
    """
    return isinstance(queueId, str) and _QUEUE_ID.match(queueId) is not None and queueId.isascii()


def checkQueueId(queueId: str) -> str:
    if not validQueueId(queueId):
        raise QueueIdError(f"invalid queue id {queueId[:80]!r}")
    return queueId


@dataclasses.dataclass
class RecipientState:
    """
    @ivar status: RFC 3463 enhanced status of the last attempt (C{4.4.1}).
    @ivar diagnostic: the remote reply or our own reason, for the DSN
        C{Diagnostic-Code} and C{mailsrv queue list}.
    @ivar remoteMta: the host that gave C{diagnostic}, if any.
    """

    address: str
    state: str = PENDING
    status: str = ""
    diagnostic: str = ""
    remoteMta: str = ""

    def toJSON(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def fromJSON(cls, data: dict[str, Any]) -> "RecipientState":
        return cls(
            address=str(data["address"]),
            state=str(data.get("state", PENDING)),
            status=str(data.get("status", "")),
            diagnostic=str(data.get("diagnostic", "")),
            remoteMta=str(data.get("remoteMta", "")),
        )


@dataclasses.dataclass
class QueueEntry:
    """
    The envelope of a queued message.

    @ivar sender: the reverse path, C{""} for the null sender.
    @ivar mailParams: the ESMTP parameters that matter downstream
        (C{BODY}, C{SMTPUTF8}).
    @ivar createdAt: when it was queued (seconds since the epoch).
    @ivar nextAttempt: when to try again (for C{deferred/}).
    @ivar delayWarned: the sender was told the message is delayed
        (C{[queue] delay_warning}); told once only.
    """

    queueId: str
    sender: str
    recipients: list[RecipientState]
    createdAt: float
    mailParams: dict[str, Optional[str]] = dataclasses.field(default_factory=dict)
    attempts: int = 0
    nextAttempt: float = 0.0
    lastError: str = ""
    size: int = 0
    delayWarned: bool = False

    def pending(self) -> list[RecipientState]:
        return [r for r in self.recipients if r.state == PENDING]

    def toJSON(self) -> bytes:
        data = {
            "version": ENVELOPE_VERSION,
            "queueId": self.queueId,
            "sender": self.sender,
            "recipients": [r.toJSON() for r in self.recipients],
            "createdAt": self.createdAt,
            "mailParams": self.mailParams,
            "attempts": self.attempts,
            "nextAttempt": self.nextAttempt,
            "lastError": self.lastError,
            "size": self.size,
            "delayWarned": self.delayWarned,
        }
        return json.dumps(data, indent=1, ensure_ascii=False).encode("utf-8")

    @classmethod
    def fromJSON(cls, raw: bytes) -> "QueueEntry":
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or data.get("version") != ENVELOPE_VERSION:
            raise ValueError(f"unsupported envelope version {data.get('version') if isinstance(data, dict) else None!r}")
        return cls(
            queueId=checkQueueId(str(data["queueId"])),
            sender=str(data["sender"]),
            recipients=[RecipientState.fromJSON(r) for r in data["recipients"]],
            createdAt=float(data["createdAt"]),
            mailParams={str(k): (None if v is None else str(v)) for k, v in data.get("mailParams", {}).items()},
            attempts=int(data.get("attempts", 0)),
            nextAttempt=float(data.get("nextAttempt", 0.0)),
            lastError=str(data.get("lastError", "")),
            size=int(data.get("size", 0)),
            delayWarned=bool(data.get("delayWarned", False)),
        )


class SpoolWriter:
    """
    A message being written into C{tmp/<id>/}.  L{write} appends (the OS
    buffers it; nothing is synced); L{commit} makes it durable and moves it
    to C{incoming/} and must run in a thread.
    """

    def __init__(self, spool: "Spool", entry: QueueEntry) -> None:
        self.spool = spool
        self.entry = entry
        self.directory = spool.root / TMP / checkQueueId(entry.queueId)
        self._file: Optional[BinaryIO] = None
        self._size = 0

    def write(self, data: bytes) -> None:
        if self._file is None:
            self.directory.mkdir(mode=0o700)
            fd = os.open(
                self.directory / MESSAGE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
            )
            self._file = os.fdopen(fd, "wb")
        self._file.write(data)
        self._size += len(data)

    def commit(self) -> None:
        """
        Blocking: fsync the message, the envelope and their directory, then
        rename the directory into C{incoming/} and fsync both parents
        (shared with concurrent commits).
        """
        if self._file is None:
            self.write(b"")
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        self.entry.size = self._size
        # The directory is private until the rename below (nobody reads
        # tmp/, and start-up removes it), so the envelope needs no atomic
        # replacement: written in place, then one fsync of the directory
        # makes both files' entries durable.
        createDurably(self.directory / ENVELOPE_FILE, self.entry.toJSON())
        fsyncDirectory(self.directory)
        target = self.spool.root / "incoming" / self.entry.queueId
        os.rename(self.directory, target)
        self.spool.syncDirectory(self.spool.root / "incoming")
        self.spool.syncDirectory(self.spool.root / TMP)

    def abort(self) -> None:
        """
        Forget the message (cheap: no fsync, tmp/ is cleaned at start too).
        """
        if self._file is not None:
            self._file.close()
            self._file = None
        shutil.rmtree(self.directory, ignore_errors=True)


class Spool:
    """
    The queue directory.  Methods other than L{newWriter} block.

    @ivar directorySync: the group commit for fsyncs of the state
        directories (one per spool; threads share it).
    """

    def __init__(self, root: Path, directorySync: Optional[GroupDirectorySync] = None) -> None:
        self.root = Path(root)
        self.directorySync = directorySync if directorySync is not None else GroupDirectorySync()

    def syncDirectory(self, path: Path) -> None:
        """
        Return once an fsync of C{path} that started after this call has
        completed (L{GroupDirectorySync.sync}).
        """
        self.directorySync.sync(path)

    def ensureDirectories(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in (TMP,) + STATES:
            (self.root / name).mkdir(exist_ok=True, mode=0o700)

    def newWriter(self, entry: QueueEntry) -> SpoolWriter:
        return SpoolWriter(self, entry)

    def path(self, state: str, queueId: str) -> Path:
        if state not in STATES:
            raise ValueError(f"unknown queue state {state!r}")
        return self.root / state / checkQueueId(queueId)

    def messagePath(self, state: str, queueId: str) -> Path:
        return self.path(state, queueId) / MESSAGE_FILE

    def find(self, queueId: str) -> Optional[str]:
        """
        The state a message is in, or L{None} if it is not queued.
        """
        for state in STATES:
            if self.path(state, queueId).is_dir():
                return state
        return None

    def entries(self) -> Iterator[tuple[str, str]]:
        """
        C{(state, queueId)} of every queued message; names that are not
        valid ids are skipped.
        """
        for state in STATES:
            directory = self.root / state
            if not directory.is_dir():
                continue
            for name in sorted(os.listdir(directory)):
                if validQueueId(name):
                    yield state, name

    def load(self, state: str, queueId: str) -> QueueEntry:
        return QueueEntry.fromJSON((self.path(state, queueId) / ENVELOPE_FILE).read_bytes())

    def save(self, state: str, entry: QueueEntry) -> None:
        writeFileAtomically(self.path(state, entry.queueId) / ENVELOPE_FILE, entry.toJSON())

    def move(self, queueId: str, source: str, target: str) -> None:
        """
        Change state by renaming the directory; durable on return.

        @raise FileNotFoundError: if it is not in C{source} (deleted by
            C{mailsrv queue delete}, for example).
        """
        os.rename(self.path(source, queueId), self.path(target, queueId))
        self.syncDirectory(self.root / target)
        self.syncDirectory(self.root / source)

    def remove(self, state: str, queueId: str) -> None:
        """
        Delete a message: first renamed out of its state (so nobody picks
        it up half-deleted), then removed.
        """
        doomed = self.root / TMP / f"{checkQueueId(queueId)}-deleted-{time.monotonic_ns()}"
        os.rename(self.path(state, queueId), doomed)
        self.syncDirectory(self.root / state)
        shutil.rmtree(doomed, ignore_errors=True)

    def recover(self) -> int:
        """
        At start: drop what was never acknowledged (C{tmp/}) and put what
        was being delivered (C{active/}) back into C{incoming/}.  Returns
        how many active messages were recovered.
        """
        self.ensureDirectories()
        for name in os.listdir(self.root / TMP):
            shutil.rmtree(self.root / TMP / name, ignore_errors=True)
        recovered = 0
        for name in os.listdir(self.root / "active"):
            if validQueueId(name):
                os.rename(self.root / "active" / name, self.root / "incoming" / name)
                recovered += 1
        if recovered:
            fsyncDirectory(self.root / "incoming")
            fsyncDirectory(self.root / "active")
        return recovered

    # -- the flush trigger (mailsrv queue flush) --------------------------

    def requestFlush(self) -> None:
        (self.root / FLUSH_TRIGGER).touch()

    def takeFlushRequest(self) -> bool:
        """
        Whether a flush was requested since the last call (the trigger
        file is removed).  Cheap enough to poll every second.
        """
        try:
            os.unlink(self.root / FLUSH_TRIGGER)
        except FileNotFoundError:
            return False
        return True
