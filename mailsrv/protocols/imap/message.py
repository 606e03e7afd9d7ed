# -*- test-case-name: tests.protocols.test_imap -*-
"""
One stored message seen through Twisted's C{IMessageIMAP}.

Encodings: message bytes are CRLF lines as stored (L{IMailFolder.openMessage});
header values handed to Twisted are C{str} that is pure ASCII (Twisted encodes
them with C{ascii} when it builds ENVELOPE), so raw 8-bit header bytes are
turned into RFC 2047 encoded words here rather than crashing the FETCH.

Header fetches read the header block only: a 20 MB attachment is never read
to answer C{BODY.PEEK[HEADER.FIELDS (SUBJECT)]}.  BODYSTRUCTURE comes from
the MIME structure (L{mailsrv.mime}): from the folder index when it has it,
else read from the file line by line, never the whole message in memory.
MIME sub-parts (C{BODY[1.2]}) are read from the file by the offsets in that
structure, byte for byte as stored.
"""

from __future__ import annotations

import datetime
import email.header
import email.parser
import re
from email.policy import compat32
from typing import BinaryIO, Optional, Sequence, Union

from twisted.mail.interfaces import IMessageIMAP, IMessageIMAPFile, IMessageIMAPPart
from zope.interface import implementer

from mailsrv.interfaces import IMailFolder, MessageInfo, MessageSummary
from mailsrv.mime import ENVELOPE_FIELDS, MIME_FIELDS, MimePart, parseStructure

# A header block larger than this is cut there: what follows is treated as
# body.  Real headers are a few KiB; this bounds memory per header fetch.
MAX_HEADER_BLOCK = 256 * 1024

_FOLD = re.compile(r"\r?\n(?=[ \t])")

HeaderName = Union[str, bytes]


def _nameText(name: HeaderName) -> str:
    if isinstance(name, bytes):
        return name.decode("ascii", "replace").lower()
    return name.lower()


def readHeaderBlock(f: BinaryIO) -> bytes:
    """
    Read the header block from the current position of C{f}, including the
    empty line that ends it (RFC 3501 BODY[HEADER] includes it).  A message
    without body ends its header block at end of file.
    """
    lines = []
    size = 0
    while size < MAX_HEADER_BLOCK:
        line = f.readline(MAX_HEADER_BLOCK - size)
        if not line:
            break
        lines.append(line)
        size += len(line)
        if line in (b"\r\n", b"\n"):
            break
    return b"".join(lines)


def headerFields(block: bytes) -> list[tuple[str, bytes]]:
    """
    Split a raw header block into C{(lower-case name, raw field bytes)}, each
    field with its continuation lines and line endings, in order.  The final
    empty line is not a field.
    """
    fields: list[tuple[str, bytes]] = []
    for line in block.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line)
            continue
        name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
        fields.append((name, line))
    return fields


def selectHeaderFields(block: bytes, names: Sequence[HeaderName], negate: bool) -> bytes:
    """
    The raw fields of C{block} named in C{names} (or all others when
    C{negate}), followed by the empty line, as BODY[HEADER.FIELDS (...)]
    returns them: byte-exact, not re-encoded.
    """
    wanted = {_nameText(n) for n in names}
    out = [raw for name, raw in headerFields(block) if (name in wanted) != negate]
    return b"".join(out) + b"\r\n"


def headerValueText(raw: bytes) -> str:
    """
    An unfolded header value as ASCII text: 8-bit bytes (UTF-8 in practice,
    RFC 6532) become an RFC 2047 encoded word so that Twisted's ASCII-only
    response builder can send it.
    """
    text = _FOLD.sub("", raw.decode("utf-8", "replace")).strip()
    if text.isascii():
        return text
    return email.header.Header(text, "utf-8").encode()


def headersDict(
    block: bytes, negate: bool, names: Sequence[HeaderName]
) -> dict[str, str]:
    """
    What C{IMessageIMAPPart.getHeaders} returns: lower-case names to values
    (the first occurrence of a repeated field), parsed by the stdlib parser in
    compat32 mode from the header block alone.
    """
    parsed = email.parser.BytesHeaderParser(policy=compat32).parsebytes(block)
    wanted = {_nameText(n) for n in names}
    result: dict[str, str] = {}
    for name, value in parsed.raw_items():
        key = name.lower()
        if names and ((key in wanted) == negate):
            continue
        if key in result:
            continue
        raw = value.encode("ascii", "surrogateescape") if isinstance(value, str) else bytes(value)
        result[key] = headerValueText(raw)
    return result


def internalDateText(timestamp: float) -> str:
    """
    INTERNALDATE in the RFC 2822 form Twisted parses (C{+0000}, UTC).
    """
    when = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return when.strftime("%a, %d %b %Y %H:%M:%S +0000")


class FileSlice:
    """
    C{length} octets of a file from C{start}, as a file of their own (read,
    seek, tell, close): what FETCH streams or reads for a MIME part.
    """

    def __init__(self, f: BinaryIO, start: int, length: int) -> None:
        self._f = f
        self._start = start
        self._end = start + length
        self._pos = start
        f.seek(start)

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._pos
        if n is None or n < 0 or n > left:
            n = left
        data = self._f.read(n)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos - self._start

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: self._start, 1: self._pos, 2: self._end}[whence]
        self._pos = min(max(base + offset, self._start), self._end)
        self._f.seek(self._pos)
        return self.tell()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "FileSlice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@implementer(IMessageIMAPPart)
class MIMEPart:
    """
    A sub-part of a message (C{BODY[1.2]}), located by the message's MIME
    structure: its header and body are read from the message file by
    offset, byte-exact, never the whole message.

    A C{message/rfc822} part counts as multipart: its sub-parts are those
    of the encapsulated message (RFC 3501 section 6.4.5), or that message
    itself when it is not multipart.
    """

    def __init__(self, message: "IMAPMessage", part: MimePart) -> None:
        self._message = message
        self._part = part

    def rawHeader(self) -> bytes:
        part = self._part
        with FileSlice(self._message.open(), part.offset, part.headerSize) as f:
            return f.read()

    def getHeaders(self, negate: bool, *names: HeaderName) -> dict[str, str]:
        return headersDict(self.rawHeader(), negate, names)

    def getBodyFile(self) -> BinaryIO:
        part = self._part
        return FileSlice(self._message.open(), part.bodyOffset, part.bodySize)  # type: ignore[return-value]

    def getSize(self) -> int:
        return self._part.bodySize

    def isMultipart(self) -> bool:
        return bool(self._part.children)

    def encapsulated(self) -> Optional["MIMEPart"]:
        """
        The message inside a C{message/rfc822} part, whose header and text
        C{BODY[n.HEADER]} and C{BODY[n.TEXT]} name (RFC 3501 section
        6.4.5); L{None} for other parts.
        """
        if self._part.isMessage() and self._part.children:
            return MIMEPart(self._message, self._part.children[0])
        return None

    def getSubPart(self, part: int) -> "MIMEPart":
        children = self._part.children
        if not children:
            raise TypeError("not a multipart message")
        if self._part.isMessage():
            inner = children[0]
            if inner.isMultipart() and inner.children:
                return MIMEPart(self._message, inner.children[part])
            if part != 0:
                raise IndexError(part)
            return MIMEPart(self._message, inner)
        return MIMEPart(self._message, children[part])


@implementer(IMessageIMAP, IMessageIMAPFile)
class IMAPMessage:
    """
    A message of the selected folder as of the session's snapshot.

    @ivar info: the backend's L{MessageInfo} at the time of the fetch.
    @ivar recent: whether this session reports C{\\Recent} for it.
    """

    def __init__(self, folder: IMailFolder, info: MessageInfo, recent: bool = False) -> None:
        self.folder = folder
        self.info = info
        self.recent = recent
        self._header: Optional[bytes] = None
        self._structure: Optional[MimePart] = None
        # Set by FETCH and SEARCH from the folder index (IIndexedFolder):
        # header requests it covers are answered without opening the file.
        self.summary: Optional[MessageSummary] = None

    # IMessageIMAPFile

    def open(self) -> BinaryIO:
        return self.folder.openMessage(self.info.uid)

    # IMessageIMAP

    def getUID(self) -> int:
        return self.info.uid

    def getFlags(self) -> list[str]:
        flags = sorted(self.info.flags)
        if self.recent:
            flags.append("\\Recent")
        return flags

    def getInternalDate(self) -> str:
        return internalDateText(self.info.internalDate)

    # IMessageIMAPPart

    def rawHeader(self) -> bytes:
        """
        The header block exactly as stored, with its final empty line.
        """
        if self._header is None:
            with self.open() as f:
                self._header = readHeaderBlock(f)
        return self._header

    def _indexed(self, negate: bool, names: Sequence[HeaderName]) -> Optional[MessageSummary]:
        """
        The summary, if it holds every field of a C{HEADER.FIELDS}-style
        request.
        """
        summary = self.summary
        if summary is None or negate or not names:
            return None
        indexed = getattr(self.folder, "indexedFields", ())
        if all(_nameText(n) in indexed for n in names):
            return summary
        return None

    def headerFieldsBytes(self, names: Sequence[HeaderName], negate: bool) -> bytes:
        """
        What C{BODY[HEADER.FIELDS (names)]} returns (see
        L{selectHeaderFields}), from the index when it covers the request.
        """
        summary = self._indexed(negate, names)
        if summary is None:
            return selectHeaderFields(self.rawHeader(), names, negate)
        wanted = {_nameText(n) for n in names}
        return b"".join(raw for name, raw in summary.fields if name in wanted) + b"\r\n"

    def headerSize(self) -> int:
        """
        The size of the header block with its empty line.
        """
        if self.summary is not None:
            return self.summary.headerSize
        return len(self.rawHeader())

    def getHeaders(self, negate: bool, *names: HeaderName) -> dict[str, str]:
        summary = self._indexed(negate, names)
        if summary is None:
            return headersDict(self.rawHeader(), negate, names)
        result: dict[str, str] = {}
        for name, raw in summary.fields:
            if name not in result and any(_nameText(n) == name for n in names):
                result[name] = headerValueText(raw.split(b":", 1)[1] if b":" in raw else b"")
        return result

    def getBodyFile(self) -> BinaryIO:
        f = self.open()
        f.seek(self.headerSize())
        return f

    def getSize(self) -> int:
        return self.info.size

    def isMultipart(self) -> bool:
        contentType = self.getHeaders(False, "content-type").get("content-type", "")
        return contentType.strip().lower().startswith("multipart/")

    def mimeStructure(self) -> MimePart:
        """
        The message's MIME structure: from the index summary when it holds
        it (or, for a message that is not multipart, has all it takes),
        else read from the file line by line.
        """
        if self._structure is None:
            self._structure = self._indexedStructure()
        if self._structure is None:
            with self.open() as f:
                self._structure = parseStructure(f)
        return self._structure

    def _indexedStructure(self) -> Optional[MimePart]:
        summary = self.summary
        if summary is None:
            return None
        structure = getattr(summary, "structure", None)
        if structure is not None:
            return structure  # type: ignore[no-any-return]
        if summary.bodyLines is None:
            return None
        kept = MIME_FIELDS | ENVELOPE_FIELDS
        root = MimePart(
            0,
            summary.headerSize,
            max(self.info.size - summary.headerSize, 0),
            summary.bodyLines,
            tuple((n, v) for n, v in summary.fields if n in kept),
        )
        if root.isMultipart() or root.isMessage():
            return None  # the index did not parse its parts
        return root

    def getSubPart(self, part: int) -> MIMEPart:
        if not self.isMultipart():
            raise TypeError("not a multipart message")
        structure = self.mimeStructure()
        if not structure.children:
            raise IndexError(part)
        return MIMEPart(self, structure.children[part])
