# -*- test-case-name: tests.test_mime -*-
"""
The MIME structure of a message, found by reading it once line by line:
where each part's header and body are (offsets and sizes in the file),
how many lines each body has, and the few header fields of each part that
IMAP BODYSTRUCTURE reports.  No part is held in memory, so a 30 MB message
costs what its longest line costs (at most L{_CHUNK} octets at a time) plus
a few hundred octets per part.

The parsing follows RFC 2045/2046 the way Python's C{email} feed parser
does, which is what the tests compare against:

 - a part's header ends at its empty line (or at a boundary line of an
   enclosing multipart, or at the end of the file);
 - a multipart with a C{boundary} parameter is split at delimiter lines
   C{--boundary} (optional C{--} for the last, then optional spaces or
   tabs); the line break before a delimiter belongs to the delimiter, not
   to the part; a delimiter of any enclosing multipart also ends the inner
   ones (a missing final boundary); two delimiters in a row enclose no
   part;
 - C{message/rfc822} (and C{message/global}) parts hold one message;
 - parts of C{multipart/digest} default to C{message/rfc822}, all others
   to C{text/plain}.

Line counts follow what mailsrv has always reported: line breaks in the
body, plus one for a last line without one.

The result is a tree of L{MimePart}; L{MimePart.toData} and
L{MimePart.fromData} turn it into nested lists of JSON types and back (the
folder index stores it).  Parameters are parsed by L{parseParameters},
RFC 2231 continuations (C{name*0}, C{name*1*}) joined as Dovecot does.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, BinaryIO, Optional

#: The fields kept per part (lower case): what BODYSTRUCTURE reports.
MIME_FIELDS = frozenset(
    {
        "content-type",
        "content-transfer-encoding",
        "content-id",
        "content-description",
        "content-disposition",
        "content-language",
        "content-location",
        "content-md5",
    }
)

#: The fields of an ENVELOPE, in its order (RFC 3501 section 7.4.2; Date
#: first, Message-ID last).
ENVELOPE_FIELD_ORDER = (
    "date",
    "subject",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "in-reply-to",
    "message-id",
)

#: Also kept for the message inside a message/rfc822 part (its ENVELOPE).
ENVELOPE_FIELDS = frozenset(ENVELOPE_FIELD_ORDER)

#: Octets read at a time: a longer line is read in pieces.
_CHUNK = 64 * 1024

#: A header field longer than this is cut (its rest is ignored).
MAX_FIELD = 16 * 1024

#: Multiparts and messages nested deeper than this are treated as leaves
#: (Dovecot stops at 100 too); it bounds the recursion.
MAX_DEPTH = 100

#: More parts than this in one message are not split further.
MAX_PARTS = 10_000


@dataclasses.dataclass
class MimePart:
    """
    One part of a message (the message itself is the root).

    @ivar offset: where the part's header starts in the file.
    @ivar headerSize: octets of its header, with the empty line.
    @ivar bodySize: octets of its body (for a multipart: preamble, parts,
        epilogue).
    @ivar bodyLines: lines of its body.
    @ivar fields: the kept header fields, C{(lower-case name, raw bytes
        with continuation lines)} in order.
    @ivar children: the parts of a multipart, or the one message of a
        C{message/rfc822} part; empty for other parts.
    @ivar isDigestChild: whether the part is in a C{multipart/digest}
        (its default type is then C{message/rfc822}).
    """

    offset: int
    headerSize: int
    bodySize: int
    bodyLines: int
    fields: tuple[tuple[str, bytes], ...]
    children: list["MimePart"] = dataclasses.field(default_factory=list)
    isDigestChild: bool = False

    @property
    def bodyOffset(self) -> int:
        return self.offset + self.headerSize

    def field(self, name: str) -> Optional[bytes]:
        """
        The value of the first field C{name} (unfolded, without the name),
        or L{None}.
        """
        for fieldName, raw in self.fields:
            if fieldName == name:
                value = raw.split(b":", 1)[1] if b":" in raw else b""
                return _UNFOLD.sub(b"", value).strip()
        return None

    def contentType(self) -> tuple[str, str, list[tuple[str, str]]]:
        """
        C{(type, subtype, parameters)} as written (type and subtype keep
        their case; the default when absent or invalid), parameters as
        L{parseParameters} gives them.
        """
        raw = self.field("content-type")
        if raw is not None:
            value, params = parseParameters(raw.decode("utf-8", "surrogateescape"))
            major, slash, minor = value.partition("/")
            if slash and _TOKEN.fullmatch(major.strip()) and _TOKEN.fullmatch(minor.strip()):
                return major.strip(), minor.strip(), params
        if self.isDigestChild:
            return "message", "rfc822", []
        return "text", "plain", [("charset", "us-ascii")]

    def isMultipart(self) -> bool:
        major, _, params = self.contentType()
        return major.lower() == "multipart" and any(n == "boundary" for n, _ in params)

    def isMessage(self) -> bool:
        major, minor, _ = self.contentType()
        return (major.lower(), minor.lower()) in _MESSAGE_TYPES

    # ------------------------------------------------------- serialisation

    def toData(self) -> list[Any]:
        return [
            self.offset,
            self.headerSize,
            self.bodySize,
            self.bodyLines,
            [[n, v.decode("latin-1")] for n, v in self.fields],
            [c.toData() for c in self.children],
            1 if self.isDigestChild else 0,
        ]

    @classmethod
    def fromData(cls, data: Any) -> "MimePart":
        """
        @raise ValueError: if C{data} is not what L{toData} makes.
        """
        if not isinstance(data, list) or len(data) != 7:
            raise ValueError("bad MIME structure")
        offset, headerSize, bodySize, bodyLines, fields, children, digest = data
        if not all(isinstance(n, int) for n in (offset, headerSize, bodySize, bodyLines)):
            raise ValueError("bad MIME structure")
        if not isinstance(fields, list) or not isinstance(children, list):
            raise ValueError("bad MIME structure")
        return cls(
            offset,
            headerSize,
            bodySize,
            bodyLines,
            tuple((str(n), str(v).encode("latin-1")) for n, v in fields),
            [cls.fromData(c) for c in children],
            bool(digest),
        )


_UNFOLD = re.compile(rb"\r?\n(?=[ \t])")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_MESSAGE_TYPES = {("message", "rfc822"), ("message", "global")}
_CONTINUATION = re.compile(r"^(.*?)\*(\d+)(\*?)$")


def _splitParameters(text: str) -> list[str]:
    """
    Split at C{;} outside quoted strings; drop comments outside them.
    """
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    comment = 0
    for c in text:
        if escaped:
            current.append(c)
            escaped = False
        elif quoted:
            current.append(c)
            if c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
        elif comment:
            if c == "(":
                comment += 1
            elif c == ")":
                comment -= 1
        elif c == '"':
            quoted = True
            current.append(c)
        elif c == "(":
            comment = 1
        elif c == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parseParameters(text: str) -> tuple[str, list[tuple[str, str]]]:
    """
    Split a C{Content-Type} or C{Content-Disposition} value into its value
    and C{(lower-case name, value)} parameters in order, quotes removed,
    first occurrence kept.  RFC 2231 continuations are joined: C{name*0},
    C{name*1}... give C{name}; if the first segment is encoded
    (C{name*0*} or C{name*}), the parameter is C{name*} and its value stays
    encoded (C{charset'language'%XX...}), as Dovecot sends them.
    """
    pieces = _splitParameters(text)
    value = pieces[0].strip()
    plain: list[tuple[str, str]] = []
    segments: dict[str, list[tuple[int, bool, str]]] = {}
    order: list[str] = []
    for piece in pieces[1:]:
        name, eq, raw = piece.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            continue
        v = _unquote(raw)
        match = _CONTINUATION.match(name)
        if match is not None:
            base = match.group(1)
            if base not in segments:
                segments[base] = []
                order.append(base)
            segments[base].append((int(match.group(2)), bool(match.group(3)), v))
            continue
        plain.append((name, v))
        if name not in order:
            order.append(name)
    result: list[tuple[str, str]] = []
    seen: set[str] = set()
    byName = {}
    for n, v in plain:
        byName.setdefault(n, v)
    for name in order:
        if name in segments:
            parts = sorted(segments[name])
            encoded = parts[0][1]
            joined = "".join(v for _, _, v in parts)
            key = name + "*" if encoded else name
            if key not in seen and name not in byName:
                seen.add(key)
                result.append((key, joined))
            continue
        if name not in seen:
            seen.add(name)
            result.append((name, byName[name]))
    return value, result


class _Terminator:
    """
    A delimiter line that ended a part: which enclosing multipart's
    (C{depth}, its index in the boundary stack), whether it closes it,
    where the line starts, and what came before it: the line feeds read,
    the length of the previous line's break (which belongs to the
    delimiter) and whether that previous line was empty.
    """

    __slots__ = ("depth", "closing", "lineStart", "newlinesBefore", "prevBreak", "prevEmpty")

    def __init__(
        self, depth: int, closing: bool, lineStart: int, newlinesBefore: int, prevBreak: int, prevEmpty: bool
    ) -> None:
        self.depth = depth
        self.closing = closing
        self.lineStart = lineStart
        self.newlinesBefore = newlinesBefore
        self.prevBreak = prevBreak
        self.prevEmpty = prevEmpty


def _delimiter(piece: bytes, stack: list[bytes]) -> Optional[tuple[int, bool]]:
    """
    Whether the line C{piece} is a delimiter of one of the multiparts in
    C{stack} (innermost last): C{(index, closing)}.
    """
    if not stack or piece[:2] != b"--":
        return None
    text = piece[2:].rstrip(b"\r\n").rstrip(b" \t")
    for depth in range(len(stack) - 1, -1, -1):
        boundary = stack[depth]
        if text == boundary:
            return depth, False
        if text == boundary + b"--":
            return depth, True
    return None


class _Parser:
    """
    Reads the file as lines (pieces of at most L{_CHUNK} octets) and keeps
    the running counts the part sizes come from.

    @ivar pos: offset of the next octet to read.
    @ivar newlines: line feeds read so far.
    """

    def __init__(self, f: BinaryIO, offset: int) -> None:
        self._f = f
        self.pos = offset
        self.newlines = 0
        self.parts = 0
        self._atLineStart = True
        self._lastBreak = 0
        self._lastEmpty = False
        self._lastByteNewline = True

    def _read(self) -> tuple[bytes, bool, int]:
        """
        The next piece, whether it starts a line, and its offset.
        """
        start = self.pos
        atStart = self._atLineStart
        piece = self._f.readline(_CHUNK)
        if piece:
            self.pos += len(piece)
            if piece[-1:] == b"\n":
                self.newlines += 1
                self._atLineStart = True
                self._lastBreak = 2 if piece[-2:] == b"\r\n" else 1
                self._lastEmpty = atStart and len(piece) == self._lastBreak
                self._lastByteNewline = True
            else:
                self._atLineStart = False
                self._lastByteNewline = False
        return piece, atStart, start

    def _next(self, stack: list[bytes]) -> tuple[bytes, bool, Optional[_Terminator]]:
        """
        The next piece and whether it starts a line, or the delimiter of
        C{stack} it is (consumed).
        """
        newlines, prevBreak, prevEmpty = self.newlines, self._lastBreak, self._lastEmpty
        piece, atStart, start = self._read()
        if atStart and piece[:2] == b"--":
            found = _delimiter(piece, stack)
            if found is not None:
                return piece, atStart, _Terminator(found[0], found[1], start, newlines, prevBreak, prevEmpty)
        return piece, atStart, None

    def scan(self, stack: list[bytes]) -> Optional[_Terminator]:
        """
        Read up to the next delimiter line of C{stack} (consumed) or the end.
        """
        while True:
            piece, _, term = self._next(stack)
            if term is not None or not piece:
                return term

    def header(
        self, stack: list[bytes], keep: frozenset[str]
    ) -> tuple[tuple[tuple[str, bytes], ...], Optional[_Terminator]]:
        fields: list[tuple[str, bytes]] = []
        keeping = False
        while True:
            piece, atStart, term = self._next(stack)
            if term is not None or not piece:
                return tuple(fields), term
            if atStart and piece in (b"\r\n", b"\n"):
                return tuple(fields), None
            if not atStart or piece[:1] in (b" ", b"\t"):
                if keeping and len(fields[-1][1]) < MAX_FIELD:
                    fields[-1] = (fields[-1][0], fields[-1][1] + piece)
                continue
            name = piece.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
            keeping = name in keep
            if keeping:
                fields.append((name, piece))

    def part(
        self, stack: list[bytes], keep: frozenset[str], digestChild: bool, depth: int
    ) -> tuple[MimePart, Optional[_Terminator]]:
        """
        Parse one part starting at the current position; return it and the
        delimiter that ended it (L{None} at the end of the file).
        """
        self.parts += 1
        start = self.pos
        fields, term = self.header(stack, keep)
        if term is not None:
            # A delimiter inside the header: the part has no body.
            return MimePart(start, term.lineStart - start, 0, 0, fields, [], digestChild), term
        bodyStart = self.pos
        linesBefore = self.newlines
        part = MimePart(start, bodyStart - start, 0, 0, fields, [], digestChild)
        deep = depth >= MAX_DEPTH or self.parts >= MAX_PARTS
        if part.isMultipart() and not deep:
            _, minor, params = part.contentType()
            boundary = dict(params)["boundary"].encode("utf-8", "surrogateescape")
            inner = stack + [boundary]
            mine = len(stack)
            digest = minor.lower() == "digest"
            term = self.scan(inner)  # the preamble
            while term is not None and term.depth == mine and not term.closing:
                if self.parts >= MAX_PARTS:
                    term = self.scan(inner)
                    continue
                child, term = self.part(inner, MIME_FIELDS, digest, depth + 1)
                if term is not None and term.lineStart == child.offset and not term.closing:
                    # Two delimiters in a row enclose no part (as the
                    # email package reads RFC 2046).
                    continue
                part.children.append(child)
            if term is not None and term.depth == mine:
                term = self.scan(stack)  # the epilogue
        elif part.isMessage() and not deep:
            child, term = self.part(stack, MIME_FIELDS | ENVELOPE_FIELDS, False, depth + 1)
            part.children.append(child)
        else:
            term = self.scan(stack)
        part.bodySize, part.bodyLines = self._body(bodyStart, linesBefore, term, bool(stack))
        return part, term

    def _body(
        self, bodyStart: int, linesBefore: int, term: Optional[_Terminator], inMultipart: bool
    ) -> tuple[int, int]:
        """
        The size and line count of a body from C{bodyStart} up to C{term}
        (the line break before a delimiter belongs to the delimiter) or the
        end of the file (where, inside a multipart, the last line break is
        taken to belong to the missing final delimiter, as the C{email}
        package does).
        """
        if term is None:
            size = self.pos - bodyStart
            lines = self.newlines - linesBefore
            if size and not self._lastByteNewline:
                lines += 1
            elif size and inMultipart:
                size -= self._lastBreak
                if self._lastEmpty and size:
                    lines -= 1
            return size, lines
        size = term.lineStart - bodyStart - term.prevBreak
        if size <= 0:
            return 0, 0
        # Line feeds before the delimiter line, less the one it takes; a
        # last line that is not empty has lost its break and still counts.
        newlines = term.newlinesBefore - linesBefore - 1
        return size, newlines + (0 if term.prevEmpty else 1)


def parseStructure(f: BinaryIO, offset: int = 0) -> MimePart:
    """
    The MIME structure of the message in C{f} from its current position
    (C{offset} is that position, so the offsets are the file's).  Reads the
    file once, to its end.
    """
    parser = _Parser(f, offset)
    part, _ = parser.part([], MIME_FIELDS | ENVELOPE_FIELDS, False, 0)
    return part
