# -*- test-case-name: tests.storage.test_uidlist -*-
"""
Dovecot's per-folder Maildir metadata files, read and written compatibly so
a mailbox moved from Dovecot keeps its UIDVALIDITY, UIDs and keywords.

C{dovecot-uidlist} (version 3, the one Dovecot 2.x writes)::

    3 V1700000000 N4 G3085f01b7f11094c501100008c4a11c1
    1 :1700000000.M1P2.host,S=100,W=102
    2 W2040 :1700000001.M2P2.host,S=2000
    3 G... P0000abcd :1700000002.M3P2.host

The header holds the version, then fields keyed by one letter: C{V} the
UIDVALIDITY, C{N} the next UID, C{G} the folder GUID; others are kept as
they are.  Each record is a UID, optional extension fields (C{S} physical
size, C{W} CRLF size, C{P} POP3 UIDL override, C{G} message GUID, ...) and,
after C{" :"}, the file name (only its base, before C{:}, identifies the
message: flags change the rest).  Records are in ascending UID order.
Versions 1 and 2 (C{1 <uidvalidity> <nextuid>} then C{<uid> [flags]
<filename>}) are read too; mailsrv always writes version 3, with the
extension fields it read, and the base name only.

C{dovecot-keywords}: C{<index> <keyword>} lines; index 0 is the letter C{a}
in file names, 25 is C{z}.

Concurrent writers (sessions of this process on the reactor thread and in
the thread pool, other mailsrv processes) serialise on C{fcntl.flock} of
L{LOCK_NAME} in the folder directory; the files themselves are replaced
atomically (temporary file + rename), so readers need no lock.  The lock file
is deliberately not Dovecot's C{dovecot-uidlist.lock}: Dovecot uses that
name as a dotlock, and a leftover file would make it wait for a stale lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import string
from pathlib import Path
from typing import Iterator, Optional

UIDLIST_NAME = "dovecot-uidlist"
KEYWORDS_NAME = "dovecot-keywords"
LOCK_NAME = "mailsrv-uidlist.lock"

KEYWORD_LETTERS = string.ascii_lowercase


@dataclasses.dataclass
class UidRecord:
    """
    One line of the uidlist.

    @ivar base: the message file's base name (before C{:}).
    @ivar extensions: extension fields as read (C{"W2040"}), kept verbatim.
    """

    uid: int
    base: str
    extensions: list[str] = dataclasses.field(default_factory=list)

    def extension(self, key: str) -> Optional[str]:
        """
        The value of extension field C{key} (one letter), or L{None}.
        """
        for field in self.extensions:
            if field[:1] == key:
                return field[1:]
        return None


@dataclasses.dataclass
class UidList:
    """
    A parsed C{dovecot-uidlist}.

    @ivar headerFields: header fields other than C{V} and C{N}, verbatim.
    @ivar records: in ascending UID order.
    """

    uidValidity: int
    nextUid: int
    headerFields: list[str] = dataclasses.field(default_factory=list)
    records: list[UidRecord] = dataclasses.field(default_factory=list)


def baseName(filename: str) -> str:
    """
    The part of a Maildir file name that identifies the message.
    """
    return filename.split(":", 1)[0]


def parseUidList(text: str) -> UidList:
    """
    Parse the contents of a C{dovecot-uidlist}.

    @raise ValueError: if it is not a uidlist mailsrv understands (unknown
        version, missing UIDVALIDITY, UIDs not ascending).
    """
    lines = text.split("\n")
    header = lines[0].split()
    if not header:
        raise ValueError("empty uidlist")
    version = header[0]
    fields: list[str] = []
    if version == "3":
        uidValidity = nextUid = None
        for field in header[1:]:
            if field[:1] == "V":
                uidValidity = int(field[1:])
            elif field[:1] == "N":
                nextUid = int(field[1:])
            else:
                fields.append(field)
        if uidValidity is None or nextUid is None:
            raise ValueError("uidlist header lacks V or N")
    elif version in ("1", "2") and len(header) >= 3:
        uidValidity, nextUid = int(header[1]), int(header[2])
    else:
        raise ValueError(f"unsupported uidlist version {version!r}")
    if uidValidity <= 0:
        raise ValueError("uidlist has no valid UIDVALIDITY")

    records: list[UidRecord] = []
    for line in lines[1:]:
        if not line.strip():
            continue
        uidText, _, rest = line.partition(" ")
        uid = int(uidText)
        if rest.startswith(":"):
            extensions, filename = [], rest[1:]
        elif " :" in rest:
            extText, _, filename = rest.partition(" :")
            extensions = extText.split()
        else:
            # Versions 1 and 2: "<uid> [<flags>] <filename>"; old flags are
            # of no use, the file name carries the current ones.
            parts = rest.split()
            if not parts:
                raise ValueError("uidlist record without file name")
            extensions, filename = [], parts[-1]
        if version != "3":
            extensions = []
        if uid <= 0 or (records and uid <= records[-1].uid):
            raise ValueError("uidlist UIDs not ascending")
        records.append(UidRecord(uid, baseName(filename), extensions))
    if records and nextUid <= records[-1].uid:
        nextUid = records[-1].uid + 1
    return UidList(uidValidity, nextUid, fields, records)


def formatUidList(uidList: UidList) -> bytes:
    """
    Serialise C{uidList} as a version 3 C{dovecot-uidlist}.
    """
    header = ["3", f"V{uidList.uidValidity}", f"N{uidList.nextUid}"]
    lines = [" ".join(header + uidList.headerFields)]
    for record in uidList.records:
        lines.append(" ".join([str(record.uid), *record.extensions, ":" + record.base]))
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def parseKeywords(text: str) -> dict[int, str]:
    """
    Parse C{dovecot-keywords} into C{{index: keyword}}; lines that are not
    C{<index 0-25> <keyword>} are ignored, as Dovecot does.
    """
    keywords: dict[int, str] = {}
    for line in text.split("\n"):
        index, _, keyword = line.strip().partition(" ")
        if index.isdigit() and keyword and int(index) < len(KEYWORD_LETTERS):
            keywords[int(index)] = keyword
    return keywords


def formatKeywords(keywords: dict[int, str]) -> bytes:
    """
    Serialise C{{index: keyword}} as C{dovecot-keywords}.
    """
    return "".join(f"{i} {kw}\n" for i, kw in sorted(keywords.items())).encode("utf-8")


@contextlib.contextmanager
def lockedFolder(folderDir: Path) -> Iterator[None]:
    """
    Hold the folder's metadata lock: C{flock(LOCK_EX)} on L{LOCK_NAME}.

    The lock belongs to this open file description, so it also excludes
    other threads of this process (each call opens the file anew).  Not
    re-entrant: never nest it for one folder.
    """
    fd = os.open(folderDir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        # Closing the descriptor releases the lock.
        os.close(fd)
