# -*- test-case-name: tests.storage.test_index -*-
"""
The per-folder metadata index of the Maildir store: a header cache and the
modification sequences of RFC 7162 (CONDSTORE), so that SELECT, FETCH
ENVELOPE and header SEARCH do not re-read every message on every request.

Both live in the folder directory beside C{dovecot-uidlist}, under names
Dovecot does not use (it ignores them, and deleting them loses nothing a
rebuild cannot restore, except that clients see new MODSEQ values):

C{mailsrv-cache} (L{HeaderCache}): per message, keyed by its Maildir base
name, the CRLF size, the header block's size, the body's line count, the
raw bytes of the header fields in L{CACHED_FIELDS} and, for multipart and
C{message/*} messages, the MIME structure (L{mailsrv.mime}: offsets, sizes
and line counts of the parts, and their Content-* fields), so BODYSTRUCTURE
needs no message file either.  The file is one JSON
header line (format, L{CACHE_VERSION}, record count, CRC-32 of the rest)
followed by one JSON array per message; strings hold bytes as Latin-1.  It
is a cache: written atomically (temporary file and rename, not fsync'd),
read once per process and folder, and thrown away and rebuilt whenever it is
of another version, fails its checksum or does not parse.  It is never
trusted for a message it does not describe: records are matched against the
current directory listing by base name and CRLF size (the size is in the
name, C{,W=}), records of vanished files are dropped on the next save, and
new files are parsed once (header block only, plus a line count and the
MIME structure for messages up to L{MAX_LINE_COUNT_SIZE}; larger ones get
them when a BODYSTRUCTURE asks, read line by line in a thread).  Opening a folder never reads it: it
is loaded the first time a summary is asked for.

C{mailsrv-modseq} (L{ModSeqLog}): an append-only log of C{<base> <modseq>
<flag letters> <uid>} lines after a C{MAILSRV-MODSEQ 2 <uidvalidity>
<highest> <horizon>} header line, and C{- <modseq> <uid set>} lines for the
messages found expunged, so that RFC 7162 QRESYNC can tell a client which
UIDs vanished since a MODSEQ it knows.  The expunged UIDs are kept up to
L{ModSeqLog.MAX_EXPUNGED_UIDS}; the horizon is the MODSEQ up to which
expunges are no longer (or were never: a log of version 1, which is read
and upgraded) all on record.
The folder's flags live in the file names, where Dovecot, other processes
and other mailsrv sessions change them, so the log records the letters each
MODSEQ was given for: a refresh that finds different letters in a name gives
the message the next MODSEQ, whoever renamed it.  Appends happen under the
folder's metadata lock, after reading what other processes appended, so two
processes never hand out one number twice.  The log is compacted (rewritten
atomically with one line per message) when it grows to several times the
folder.  A damaged or foreign log is discarded: every message then gets a
MODSEQ above the ones clients may hold (the new log starts above the old
highest one when that can still be read, else at the current time in
microseconds, which exceeds any count of earlier changes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Mapping, Optional

from twisted.logger import Logger

from mailsrv.interfaces import MessageSummary
from mailsrv.mime import ENVELOPE_FIELDS, MIME_FIELDS, MimePart, parseStructure
from mailsrv.storage.fsync import writeFileAtomically
from mailsrv.storage.uidlist import lockedFolder

CACHE_NAME = "mailsrv-cache"
CACHE_FORMAT = "mailsrv-cache"
CACHE_VERSION = 2
#: Version 1 had no MIME structures; its records are read as lacking one.
READABLE_VERSIONS = (1, 2)

MODSEQ_NAME = "mailsrv-modseq"
MODSEQ_MAGIC = "MAILSRV-MODSEQ"
MODSEQ_VERSION = 2

#: Header fields kept in the cache: what ENVELOPE and BODYSTRUCTURE need,
#: plus what common clients ask for with C{BODY.PEEK[HEADER.FIELDS (...)]}
#: and search on.  Lower case.
CACHED_FIELDS = ENVELOPE_FIELDS | MIME_FIELDS | frozenset(
    {
        "references",
        "mime-version",
        "priority",
        "x-priority",
        "importance",
        "newsgroups",
        "list-id",
        "list-post",
        "x-mailer",
        "user-agent",
    }
)

#: A header block larger than this is cut there (as the IMAP layer does).
MAX_HEADER_BLOCK = 256 * 1024

#: Messages up to this size are read whole when summarised, to count body
#: lines (BODYSTRUCTURE needs them for text parts); larger ones are not.
MAX_LINE_COUNT_SIZE = 4 * 1024 * 1024


def summarize(
    f: BinaryIO,
) -> tuple[int, Optional[int], tuple[tuple[str, bytes], ...], Optional[MimePart]]:
    """
    Parse the header block of a message (CRLF lines, positioned at 0) and,
    for messages up to L{MAX_LINE_COUNT_SIZE}, its body: the line count,
    and the MIME structure of a multipart or C{message/*} message.

    @return: the header block size (with its empty line), the number of
        body lines (L{None} if the message is too large to count), the
        raw cached fields C{(lower-case name, bytes with continuation lines
        and CRLF)} in message order, and the MIME structure (L{None} if the
        message is not multipart, or too large).
    """
    fields: list[tuple[str, bytes]] = []
    headerSize = 0
    keep = False
    while headerSize < MAX_HEADER_BLOCK:
        line = f.readline(MAX_HEADER_BLOCK - headerSize)
        if not line:
            break
        headerSize += len(line)
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if keep and fields:
                name, raw = fields[-1]
                fields[-1] = (name, raw + line)
            continue
        name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
        keep = name in CACHED_FIELDS
        if keep:
            fields.append((name, line))
    lines: Optional[int] = None
    structure: Optional[MimePart] = None
    f.seek(0, 2)
    total = f.tell()
    if total <= MAX_LINE_COUNT_SIZE:
        if _isComposite(fields):
            f.seek(0)
            structure = parseStructure(f)
            if structure.headerSize == headerSize:
                lines = structure.bodyLines
            else:
                structure = None  # a header block over MAX_HEADER_BLOCK
        if lines is None:
            f.seek(headerSize)
            body = f.read()
            lines = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
    return headerSize, lines, tuple(fields), structure


def _isComposite(fields: Iterable[tuple[str, bytes]]) -> bool:
    """
    Whether the message's Content-Type is multipart or message: then its
    parts need parsing for BODYSTRUCTURE.
    """
    root = MimePart(0, 0, 0, 0, tuple(fields))
    return root.isMultipart() or root.isMessage()


def needsStructure(summary: MessageSummary) -> bool:
    """
    Whether BODYSTRUCTURE needs more than C{summary} holds (see
    L{HeaderCache.completeStructure}).
    """
    if summary.bodyLines is None:
        return True
    return summary.structure is None and _isComposite(summary.fields)


def _latin(data: bytes) -> str:
    return data.decode("latin-1")


class HeaderCache:
    """
    The L{MessageSummary} of each message of one folder, in memory and in
    C{mailsrv-cache}.  Used from the reactor thread except for L{load} and
    L{save}, which touch the disk and run in a thread, and
    L{summarizeFile}, which reads one message and may run anywhere.

    @ivar loaded: whether the file was read (or found missing/damaged).
    @ivar dirty: whether the memory holds summaries the file lacks.
    """

    log = Logger()

    def __init__(self, folderDir: Path) -> None:
        self.path = folderDir / CACHE_NAME
        self._summaries: dict[str, MessageSummary] = {}
        self.loaded = False
        self.dirty = False

    def get(self, base: str, size: int) -> Optional[MessageSummary]:
        """
        The summary of the message with this base name and CRLF size, if
        the cache has one for exactly that message.
        """
        summary = self._summaries.get(base)
        if summary is None or summary.size != size:
            return None
        return summary

    def add(self, base: str, summary: MessageSummary) -> None:
        self._summaries[base] = summary
        self.dirty = True

    def __len__(self) -> int:
        return len(self._summaries)

    @staticmethod
    def summarizeFile(f: BinaryIO, size: int) -> MessageSummary:
        """
        Build a summary from a message file (CRLF view); C{size} is its CRLF
        size.
        """
        headerSize, lines, fields, structure = summarize(f)
        return MessageSummary(
            size=size, headerSize=headerSize, bodyLines=lines, fields=fields, structure=structure
        )

    @staticmethod
    def completeStructure(f: BinaryIO, summary: MessageSummary) -> MessageSummary:
        """
        C{summary} with the body line count and, for a multipart or
        C{message/*} message, the MIME structure, read from the file (CRLF
        view, positioned at 0) line by line, whatever its size: what a
        plain summary leaves out of large messages.
        """
        structure = parseStructure(f)
        if structure.headerSize != summary.headerSize:
            # The header block is over MAX_HEADER_BLOCK: count the body as
            # the IMAP layer cuts it.
            f.seek(summary.headerSize)
            lines = 0
            last = b"\n"
            while True:
                chunk = f.read(64 * 1024)
                if not chunk:
                    break
                lines += chunk.count(b"\n")
                last = chunk[-1:]
            return dataclasses.replace(summary, bodyLines=lines + (0 if last == b"\n" else 1))
        composite = structure.isMultipart() or structure.isMessage()
        return dataclasses.replace(
            summary, bodyLines=structure.bodyLines, structure=structure if composite else None
        )

    # ------------------------------------------------------------ the file

    def load(self) -> dict[str, MessageSummary]:
        """
        Read the file (blocking).  A missing, damaged or foreign file gives
        an empty cache (logged when it was there), to be rebuilt.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError:
            self.log.failure("Cannot read {path}", path=str(self.path))
            return {}
        try:
            return self._parse(data)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            self.log.warn(
                "Discarding metadata cache {path}: {problem}", path=str(self.path), problem=str(e)
            )
            return {}

    @staticmethod
    def _parse(data: bytes) -> dict[str, MessageSummary]:
        headerLine, _, rest = data.partition(b"\n")
        header = json.loads(headerLine)
        if header.get("format") != CACHE_FORMAT or header.get("version") not in READABLE_VERSIONS:
            raise ValueError("other format or version")
        if zlib.crc32(rest) != header["crc"]:
            raise ValueError("checksum mismatch")
        result: dict[str, MessageSummary] = {}
        lines = rest.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        if len(lines) != header["records"]:
            raise ValueError("record count mismatch")
        for line in lines:
            record = json.loads(line)
            # Version 1 records lack the structure.
            base, size, headerSize, bodyLines, fields = record[:5]
            structure = record[5] if len(record) > 5 else None
            if not isinstance(base, str) or not isinstance(size, int) or not isinstance(headerSize, int):
                raise ValueError("bad record")
            if bodyLines is not None and not isinstance(bodyLines, int):
                raise ValueError("bad record")
            result[base] = MessageSummary(
                size=size,
                headerSize=headerSize,
                bodyLines=bodyLines,
                fields=tuple((str(n), v.encode("latin-1")) for n, v in fields),
                structure=None if structure is None else MimePart.fromData(structure),
            )
        return result

    def merge(self, loaded: Mapping[str, MessageSummary]) -> None:
        """
        Take what L{load} read; summaries made meanwhile win.
        """
        for base, summary in loaded.items():
            self._summaries.setdefault(base, summary)
        self.loaded = True

    def snapshot(self, keep: Iterable[str]) -> bytes:
        """
        The file contents for the messages named in C{keep} (the current
        listing; others have vanished).  Reactor thread; cheap enough.
        """
        lines = []
        for base in keep:
            s = self._summaries.get(base)
            if s is None:
                continue
            lines.append(
                json.dumps(
                    [
                        base,
                        s.size,
                        s.headerSize,
                        s.bodyLines,
                        [[n, _latin(v)] for n, v in s.fields],
                        None if s.structure is None else s.structure.toData(),
                    ],
                    separators=(",", ":"),
                ).encode("ascii")
            )
        body = b"".join(line + b"\n" for line in lines)
        header = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "records": len(lines),
            "crc": zlib.crc32(body),
        }
        self.dirty = False
        return json.dumps(header).encode("ascii") + b"\n" + body

    def save(self, data: bytes) -> None:
        """
        Write the file atomically, not durably (blocking).
        """
        writeFileAtomically(self.path, data, 0o600, durable=False)


@dataclasses.dataclass
class _ModSeqState:
    uidValidity: int
    highest: int
    #: base -> (MODSEQ, flag letters, UID; 0 when a version 1 log did not
    #: say).
    entries: dict[str, tuple[int, str, int]]
    lines: int
    offset: int
    inode: int
    #: (MODSEQ, UIDs) of each expunge found, oldest first.
    expunged: list[tuple[int, list[int]]] = dataclasses.field(default_factory=list)
    #: Expunges up to this MODSEQ are not all in C{expunged}.
    horizon: int = 0
    #: UID -> base for the entries that have a UID.
    byUid: dict[int, str] = dataclasses.field(default_factory=dict)

    def setEntry(self, base: str, modseq: int, letters: str, uid: int) -> None:
        self.entries[base] = (modseq, letters, uid)
        if uid:
            self.byUid[uid] = base

    def dropEntry(self, base: str) -> None:
        entry = self.entries.pop(base, None)
        if entry is not None and entry[2]:
            self.byUid.pop(entry[2], None)


def _uidSet(uids: Iterable[int]) -> str:
    ordered = sorted(uids)
    parts = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def _parseUidSet(text: str) -> list[int]:
    uids: list[int] = []
    for part in text.split(","):
        if not part:
            continue
        low, _, high = part.partition(":")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ValueError("bad UID set")
        uids.extend(range(int(low), int(high or low) + 1))
    return uids


class ModSeqLog:
    """
    MODSEQ per message of one folder, and the UIDs expunged with the MODSEQ
    of their expunge (see the module docstring).

    @param clock: POSIX time, for the starting point of a rebuilt log.
    """

    log = Logger()

    #: Compact when the log has this many times more lines than messages,
    #: plus the slack (so small folders are not rewritten all the time).
    COMPACT_FACTOR = 4
    COMPACT_SLACK = 1000

    #: A compaction keeps the most recent expunges up to this many UIDs;
    #: older ones raise the horizon (RFC 7162 QRESYNC then reports every
    #: missing UID of the range a client asks about).
    MAX_EXPUNGED_UIDS = 100_000

    def __init__(self, folderDir: Path, clock: Callable[[], float] = time.time) -> None:
        self.folderDir = folderDir
        self.path = folderDir / MODSEQ_NAME
        self._clock = clock
        self._state: Optional[_ModSeqState] = None

    def highest(self) -> int:
        return self._state.highest if self._state is not None else 0

    def expungedSince(self, modSeq: int) -> Optional[list[int]]:
        """
        The UIDs expunged with a MODSEQ above C{modSeq}, as of the last
        L{update}; L{None} when the log does not reach back that far.
        """
        state = self._state
        if state is None or modSeq < state.horizon:
            return None
        uids: list[int] = []
        for expungedAt, expunged in reversed(state.expunged):
            if expungedAt <= modSeq:
                break
            uids.extend(expunged)
        return sorted(uids)

    def update(
        self,
        uidValidity: int,
        current: Mapping[str, str],
        complete: bool = True,
        uids: Optional[Mapping[str, int]] = None,
    ) -> dict[str, int]:
        """
        Bring the log up to date with the folder's current flag letters
        (C{base -> letters}), under the folder lock; return C{base ->
        MODSEQ} for those messages.

        @param complete: whether C{current} names every message of the
            folder (a refresh) or only some (this process renamed them).
        @param uids: C{base -> UID} for (at least) the messages in
            C{current}, recorded so that their expunge can name them.

        Messages the log knows but a complete C{current} lacks were
        expunged: that counts as one change (RFC 7162 section 3.1.1 wants
        HIGHESTMODSEQ to grow on expunge), recorded with their UIDs.
        """
        uids = uids or {}
        with lockedFolder(self.folderDir):
            state = self._state = self._read(uidValidity, bool(current))
            new: list[str] = []
            result: dict[str, int] = {}
            entries = state.entries
            for base, letters in current.items():
                known = entries.get(base)
                uid = uids.get(base, known[2] if known is not None else 0)
                if known is not None and known[1] == letters and (known[2] == uid or not uid):
                    result[base] = known[0]
                    continue
                if known is not None and known[1] == letters:
                    # Only the UID was unknown (a version 1 log): no change.
                    state.setEntry(base, known[0], letters, uid)
                    new.append(f"{base} {known[0]} {letters} {uid}")
                    result[base] = known[0]
                    continue
                state.highest += 1
                state.setEntry(base, state.highest, letters, uid)
                new.append(f"{base} {state.highest} {letters} {uid}")
                result[base] = state.highest
            if complete and len(entries) > len(current):
                vanished = [b for b in entries if b not in current]
                if vanished:
                    state.highest += 1
                    named = sorted(entries[b][2] for b in vanished if entries[b][2])
                    state.expunged.append((state.highest, named))
                    # A line naming no message keeps the number taken.
                    new.append(f"- {state.highest} {_uidSet(named)}")
                    if len(named) < len(vanished):
                        state.horizon = max(state.horizon, state.highest)
                        new.append(f"? {state.highest}")
                for base in vanished:
                    state.dropEntry(base)
            if new:
                self._append(state, new, len(current) if complete else len(entries))
        return result

    def _read(self, uidValidity: int, populated: bool) -> _ModSeqState:
        """
        The log as of now: read it whole the first time (or when it was
        replaced), else only what was appended since (blocking, under the
        lock).
        """
        state = self._state
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return self._fresh(uidValidity, state.highest if state else 0, populated)
        with f:
            inode = os.fstat(f.fileno()).st_ino
            if state is not None and state.inode == inode and state.uidValidity == uidValidity:
                f.seek(state.offset)
                tail = f.read()
                try:
                    self._apply(state, tail)
                    return state
                except ValueError:
                    pass  # re-read below
                f.seek(0)
            data = f.read()
        try:
            return self._parse(data, inode, uidValidity)
        except ValueError as e:
            self.log.warn(
                "Discarding MODSEQ log {path}: {problem}", path=str(self.path), problem=str(e)
            )
            return self._fresh(uidValidity, state.highest if state else 0, True)

    @staticmethod
    def _apply(state: _ModSeqState, data: bytes) -> None:
        """
        Apply log lines: C{<base> <modseq> <letters> [<uid>]} (no UID in
        version 1), C{- <modseq> <uid set>} for an expunge (version 1: an
        empty set), C{? <modseq>} when an expunge could not name every UID.
        """
        end = data.rfind(b"\n") + 1  # a partly written last line waits
        for line in data[:end].split(b"\n")[:-1]:
            parts = line.decode("utf-8", "surrogateescape").split(" ")
            if len(parts) not in (2, 3, 4) or not parts[1].isdigit():
                raise ValueError("bad MODSEQ line")
            base, modseq = parts[0], int(parts[1])
            if base == "-":
                gone = _parseUidSet(parts[2] if len(parts) > 2 else "")
                state.expunged.append((modseq, gone))
                # Their entry lines came earlier in the log.
                for uid in gone:
                    known = state.byUid.get(uid)
                    if known is not None:
                        state.dropEntry(known)
            elif base == "?":
                state.horizon = max(state.horizon, modseq)
            else:
                if len(parts) < 3:
                    raise ValueError("bad MODSEQ line")
                uid = parts[3] if len(parts) == 4 else "0"
                if not uid.isdigit():
                    raise ValueError("bad MODSEQ line")
                state.setEntry(base, modseq, parts[2], int(uid))
            state.highest = max(state.highest, modseq)
            state.lines += 1
        state.offset += end

    def _parse(self, data: bytes, inode: int, uidValidity: int) -> _ModSeqState:
        headerLine, sep, rest = data.partition(b"\n")
        header = headerLine.decode("ascii", "replace").split(" ")
        if not sep or len(header) not in (4, 5) or header[0] != MODSEQ_MAGIC:
            raise ValueError("not a MODSEQ log")
        if header[1] not in ("1", str(MODSEQ_VERSION)) or len(header) != (4 if header[1] == "1" else 5):
            raise ValueError("other version")
        if not all(h.isdigit() for h in header[2:]):
            raise ValueError("bad header")
        highest = int(header[3])
        if int(header[2]) != uidValidity:
            # The folder was re-created (new UIDVALIDITY): numbers restart
            # above the old ones all the same.
            return self._fresh(uidValidity, highest, True)
        state = _ModSeqState(uidValidity, highest, {}, 0, len(headerLine) + 1, inode)
        state.horizon = int(header[4]) if len(header) == 5 else 0
        self._apply(state, rest)
        if header[1] == "1":
            # Version 1 kept no expunged UIDs.
            state.expunged = []
            state.horizon = state.highest
        return state

    def _fresh(self, uidValidity: int, previous: int, populated: bool) -> _ModSeqState:
        """
        A new, empty log.  It starts at 0 only for a folder that never had
        one and holds no message yet; otherwise above every number a client
        may hold: the old highest, or the time in microseconds (a client may
        know MODSEQs from a server this folder was migrated from).  What was
        expunged before it is not known (the horizon).
        """
        start = max(previous, int(self._clock() * 1_000_000)) if (previous or populated) else 0
        state = _ModSeqState(uidValidity, start, {}, 0, 0, 0, [], start)
        self._rewrite(state)
        return state

    def _rewrite(self, state: _ModSeqState) -> None:
        """
        Write the log anew: one line per message, and the most recent
        expunges (up to L{MAX_EXPUNGED_UIDS} UIDs; dropping older ones
        raises the horizon).
        """
        kept: list[tuple[int, list[int]]] = []
        count = 0
        for modseq, uids in reversed(state.expunged):
            if count + len(uids) > self.MAX_EXPUNGED_UIDS:
                state.horizon = max(state.horizon, modseq)
                continue
            count += len(uids)
            kept.append((modseq, uids))
        kept.reverse()
        if kept and state.horizon:
            kept = [(m, u) for m, u in kept if m > state.horizon]
        state.expunged = kept
        header = (
            f"{MODSEQ_MAGIC} {MODSEQ_VERSION} {state.uidValidity} {state.highest} {state.horizon}\n".encode()
        )
        body = "".join(
            [f"- {m} {_uidSet(uids)}\n" for m, uids in kept]
            + [f"{b} {m} {letters} {uid}\n" for b, (m, letters, uid) in state.entries.items()]
        ).encode("utf-8", "surrogateescape")
        writeFileAtomically(self.path, header + body, 0o600, durable=False)
        state.inode = os.stat(self.path).st_ino
        state.offset = len(header) + len(body)
        state.lines = len(state.entries) + len(kept)
        self._state = state

    def _append(self, state: _ModSeqState, new: list[str], messages: int) -> None:
        if state.lines + len(new) > self.COMPACT_FACTOR * messages + self.COMPACT_SLACK or state.inode == 0:
            self._rewrite(state)
            return
        data = "".join(line + "\n" for line in new).encode("utf-8", "surrogateescape")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        state.offset += len(data)
        state.lines += len(new)
        self._state = state


class FolderIndex:
    """
    Everything the store keeps per folder directory across sessions: the
    header cache, the MODSEQ log and the last directory snapshot.

    @ivar stamp: what the folder's directories and metadata files looked
        like when C{snapshot} was taken (see L{folderStamp}), or L{None}
        when the snapshot must not be reused.
    @ivar snapshot: the backend's last refresh result, reusable while the
        stamp is unchanged.
    """

    def __init__(self, folderDir: Path, clock: Callable[[], float] = time.time) -> None:
        self.cache = HeaderCache(folderDir)
        self.modseq = ModSeqLog(folderDir, clock)
        self.stamp: Optional[tuple[object, ...]] = None
        self.snapshot: object = None
        self.loading: object = None
        self.saving = False


#: How long after a change a directory's mtime is not trusted: a second
#: change within the file system's timestamp granularity leaves the same
#: mtime behind (Dovecot has the same rule).  File systems with whole-second
#: timestamps need L{STAMP_SETTLE_SECONDS}; those that store nanoseconds
#: take them from the kernel's coarse clock, which ticks every few
#: milliseconds, so L{STAMP_SETTLE_FINE_SECONDS} is plenty there.
STAMP_SETTLE_SECONDS = 2.0
STAMP_SETTLE_FINE_SECONDS = 0.1


def folderStamp(folderDir: Path, names: Iterable[str]) -> tuple[tuple[object, ...], float]:
    """
    The identity of a folder's state: inode, size and mtime of each named
    entry (C{cur}, C{new}, the uidlist...), and until when it must not be
    trusted (the latest mtime plus the settle time for its granularity).
    Any rename, creation or removal of a message file changes the mtime of
    its directory; metadata files are replaced by rename (a new inode).
    """
    parts: list[object] = []
    trustAfter = 0.0
    for name in names:
        try:
            st = os.stat(folderDir / name)
        except FileNotFoundError:
            parts.append(None)
            continue
        parts.append((st.st_ino, st.st_size, st.st_mtime_ns))
        fine = st.st_mtime_ns % 1_000_000_000 != 0
        settle = STAMP_SETTLE_FINE_SECONDS if fine else STAMP_SETTLE_SECONDS
        trustAfter = max(trustAfter, st.st_mtime + settle)
    return tuple(parts), trustAfter
