# -*- test-case-name: tests.storage.test_maildir -*-
"""
Maildir message files: their names, the flags in them, and reading them
with CRLF line ends.

A file name is C{<base>[:2,<letters>]}.  The base never changes once the
message is delivered (it is the message's key, and Dovecot's uidlist names
the message by it); new bases follow Dovecot's convention::

    <secs>.M<usecs>P<pid>Q<counter>.<hostname>,S=<physical size>,W=<CRLF size>

The letters after C{:2,} are in ASCII order: C{D} draft, C{F} flagged, C{P}
passed (kept, not exposed: IMAP has no such flag), C{R} replied (answered),
C{S} seen, C{T} trashed (deleted), and C{a}-C{z} for keywords as numbered in
C{dovecot-keywords}.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import socket
import time
from typing import BinaryIO, Callable, Mapping, Optional

FLAG_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
LETTER_FLAGS = {letter: flag for flag, letter in FLAG_LETTERS.items()}

_TIMESTAMP = re.compile(r"^(\d+)(?:\.M(\d+))?")
_SIZE = re.compile(r",([SW])=(\d+)")


def splitFilename(filename: str) -> tuple[str, str]:
    """
    Split a Maildir file name into its base and its flag letters (empty
    when there is no C{:2,} part, or an unknown info version).
    """
    base, _, info = filename.partition(":")
    return base, info[2:] if info.startswith("2,") else ""


def sizesFromBase(base: str) -> tuple[Optional[int], Optional[int]]:
    """
    The C{(S=, W=)} sizes recorded in a base name, L{None} when absent.
    """
    sizes: dict[str, int] = dict((k, int(v)) for k, v in _SIZE.findall(base))
    return sizes.get("S"), sizes.get("W")


def deliveryTime(base: str) -> float:
    """
    The delivery time encoded at the start of a base name (0 if none), used
    to give UIDs to new messages in the order they arrived.
    """
    match = _TIMESTAMP.match(base)
    if match is None:
        return 0.0
    return int(match.group(1)) + int(match.group(2) or 0) / 1e6


def flagsFromLetters(letters: str, keywords: Mapping[int, str]) -> frozenset[str]:
    """
    IMAP flags for the letters of a file name; keyword letters missing from
    C{dovecot-keywords} are ignored (Dovecot does the same).
    """
    flags = set()
    for letter in letters:
        if letter in LETTER_FLAGS:
            flags.add(LETTER_FLAGS[letter])
        elif "a" <= letter <= "z":
            keyword = keywords.get(ord(letter) - ord("a"))
            if keyword is not None:
                flags.add(keyword)
    return frozenset(flags)


def lettersFor(
    flags: frozenset[str], keywordIndex: Mapping[str, int], keep: str = ""
) -> str:
    """
    The sorted letters for normalised IMAP C{flags}.  C{keep}: letters of
    the current name to preserve because IMAP cannot express them (C{P}
    and other upper-case letters mailsrv does not know).
    """
    letters = {FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS}
    letters |= {chr(ord("a") + keywordIndex[f]) for f in flags if f in keywordIndex}
    letters |= {c for c in keep if "A" <= c <= "Z" and c not in LETTER_FLAGS}
    return "".join(sorted(letters))


def escapeHostname(hostname: str) -> str:
    """
    Make a host name safe inside a Maildir file name (Maildir spec: C{/} is
    C{\\057}, C{:} is C{\\072}; C{,} is escaped too, as C{\\054}, so that it
    cannot be mistaken for a C{,S=} field).
    """
    return hostname.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")


class NameGenerator:
    """
    Unique base names for new messages in this process: time, PID and a
    counter (safe to call from several threads: C{next()} on an
    C{itertools.count} is atomic under the GIL).
    """

    def __init__(
        self, hostname: Optional[str] = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._hostname = escapeHostname(hostname or socket.gethostname() or "localhost")
        self._clock = clock
        self._counter = itertools.count(1)

    def newBase(self, physicalSize: int, crlfSize: int) -> str:
        """
        A fresh base name for a message of the given sizes.
        """
        now = self._clock()
        seconds = int(now)
        micros = int((now - seconds) * 1e6)
        return (
            f"{seconds}.M{micros}P{os.getpid()}Q{next(self._counter)}"
            f".{self._hostname},S={physicalSize},W={crlfSize}"
        )

    def tmpName(self) -> str:
        """
        A fresh name for a file in C{tmp/} (sizes are not known yet).
        """
        now = self._clock()
        return f"{int(now)}.P{os.getpid()}Q{next(self._counter)}.{self._hostname}"


class CRLFCounter:
    """
    Counts the CRLF size of a stream fed in chunks: its length plus one for
    every bare LF (an LF not preceded by CR, also across chunk borders).
    """

    def __init__(self) -> None:
        self.physical = 0
        self.crlf = 0
        self._lastCR = False

    def update(self, chunk: bytes) -> None:
        if not chunk:
            return
        bare = chunk.count(b"\n") - chunk.count(b"\r\n")
        if self._lastCR and chunk[:1] == b"\n":
            bare -= 1
        self.physical += len(chunk)
        self.crlf += len(chunk) + bare
        self._lastCR = chunk[-1:] == b"\r"


def crlfSizeOfFile(f: BinaryIO) -> int:
    """
    The CRLF size of an open file, read once in chunks.
    """
    counter = CRLFCounter()
    while chunk := f.read(65536):
        counter.update(chunk)
    return counter.crlf


class CRLFReader(io.RawIOBase):
    """
    A read-only view of a file with every bare LF turned into CRLF, for
    messages stored with LF line ends (as Dovecot does): streamed, never
    loading the message.  Seeking backwards restarts from the beginning;
    forwards reads and discards.

    Wrap it in C{io.BufferedReader} for C{readline} and small reads.
    """

    def __init__(self, raw: BinaryIO, size: int) -> None:
        self._raw = raw
        self._size = size
        self._reset()

    def _reset(self) -> None:
        self._raw.seek(0)
        self._pending = memoryview(b"")
        self._lastCR = False
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _convert(self, chunk: bytes) -> bytes:
        lead = b""
        endsWithCR = chunk[-1:] == b"\r"
        if self._lastCR and chunk[:1] == b"\n":
            lead, chunk = b"\n", chunk[1:]
        self._lastCR = endsWithCR
        return lead + chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def readinto(self, buffer: "bytearray | memoryview") -> int:  # type: ignore[override]
        while not self._pending:
            chunk = self._raw.read(65536)
            if not chunk:
                return 0
            self._pending = memoryview(self._convert(chunk))
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        self._position += count
        return count

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence == io.SEEK_END:
            offset += self._size
        if offset < 0:
            raise ValueError("negative seek position")
        if offset < self._position:
            self._reset()
        scratch = bytearray(65536)
        while self._position < offset:
            view = memoryview(scratch)[: min(len(scratch), offset - self._position)]
            if not self.readinto(view):
                break
        return self._position

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()
