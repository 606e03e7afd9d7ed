# -*- test-case-name: tests.protocols.test_imap -*-
"""
One stored message seen through Twisted's C{IMessageIMAP}.

Encodings: message bytes are CRLF lines as stored (L{IMailFolder.openMessage});
header values handed to Twisted are C{str} that is pure ASCII (Twisted encodes
them with C{ascii} when it builds ENVELOPE), so raw 8-bit header bytes are
turned into RFC 2047 encoded words here rather than crashing the FETCH.

Header fetches read the header block only: a 20 MB attachment is never read
to answer C{BODY.PEEK[HEADER.FIELDS (SUBJECT)]}.  MIME sub-parts (BODY[1],
BODYSTRUCTURE of multipart messages) do parse the whole message with the
stdlib parser; a later issue may replace that with a cached structure.
"""

from __future__ import annotations

import datetime
import email.header
import email.message
import email.parser
import io
import re
from email.policy import compat32
from typing import BinaryIO, Optional, Sequence, Union

from twisted.mail.interfaces import IMessageIMAP, IMessageIMAPFile, IMessageIMAPPart
from zope.interface import implementer

from mailsrv.interfaces import IMailFolder, MessageInfo, MessageSummary

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


@implementer(IMessageIMAPPart)
class MIMEPart:
    """
    A sub-part of a multipart message, built from the stdlib parser's tree.

    Byte-exactness is approximate for the part's header (re-serialised from
    the parsed fields, which keep their original folding); the body bytes
    are the original ones.
    """

    def __init__(self, part: email.message.Message) -> None:
        self._part = part

    def rawHeader(self) -> bytes:
        lines = [
            name.encode("ascii", "surrogateescape")
            + b": "
            + (value.encode("ascii", "surrogateescape") if isinstance(value, str) else bytes(value))
            + b"\r\n"
            for name, value in self._part.raw_items()
        ]
        return b"".join(lines) + b"\r\n"

    def _body(self) -> bytes:
        if self._part.is_multipart():
            policy = compat32.clone(linesep="\r\n")
            whole = self._part.as_bytes(policy=policy)
            return whole[len(self.rawHeader()) :] if whole.startswith(self.rawHeader()) else whole
        payload = self._part.get_payload()
        if isinstance(payload, str):
            return payload.encode("ascii", "surrogateescape")
        return b""

    def getHeaders(self, negate: bool, *names: HeaderName) -> dict[str, str]:
        return headersDict(self.rawHeader(), negate, names)

    def getBodyFile(self) -> BinaryIO:
        return io.BytesIO(self._body())

    def getSize(self) -> int:
        return len(self._body())

    def isMultipart(self) -> bool:
        return self._part.is_multipart()

    def getSubPart(self, part: int) -> "MIMEPart":
        if not self._part.is_multipart():
            raise TypeError("not a multipart message")
        payload = self._part.get_payload()
        return MIMEPart(payload[part])


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
        self._parsed: Optional[email.message.Message] = None
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

    def getSubPart(self, part: int) -> MIMEPart:
        if not self.isMultipart():
            raise TypeError("not a multipart message")
        if self._parsed is None:
            with self.open() as f:
                self._parsed = email.parser.BytesParser(policy=compat32).parse(f)
        payload = self._parsed.get_payload()
        if not isinstance(payload, list):
            raise IndexError(part)
        return MIMEPart(payload[part])
