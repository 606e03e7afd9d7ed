# -*- test-case-name: tests.protocols.test_imap -*-
"""
Selected-state commands that read or change messages: FETCH, STORE and
COPY, as a mixin for L{mailsrv.protocols.imap.server.IMAPServer}.

What this fixes in Twisted's C{IMAP4Server}:

 - partial FETCH C{BODY[...]<origin.length>} sends the requested slice and
   echoes C{<origin>} (Twisted issue #5613: it sent the whole body);
 - C{BODY[HEADER]}, C{BODY[HEADER.FIELDS (...)]} and C{RFC822.HEADER} send
   the stored header bytes (with the final empty line) instead of a
   re-formatted, ASCII-only copy;
 - a body fetch without PEEK sets C{\\Seen} (RFC 3501 section 6.4.5) and
   reports the new flags;
 - a missing MIME part answers C{NIL} instead of dropping the connection;
 - BODYSTRUCTURE gives a part without Content-Type the RFC 2045 default
   (Twisted answered C{NIL} types) and the body size, not the message size;
 - COPY to a missing mailbox answers C{NO [TRYCREATE]};
 - STORE on a read-only mailbox answers C{NO}, not C{BAD Server error}.
"""

from __future__ import annotations

import email.utils
import re
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Optional, Union

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.mail.imap4 import (
    IMAP4Server,
    IMessageFile,
    MailboxException,
    MessageSet,
    _FetchParser,
    _formatHeaders,
    _literal,
    collapseNestedLists,
    getBodyStructure,
)
from twisted.python.failure import Failure

from mailsrv.errors import MailError
from mailsrv.protocols.imap.message import selectHeaderFields

if TYPE_CHECKING:
    from twisted.logger import Logger

Writer = Callable[[bytes], None]

_PARTIAL = re.compile(rb"<[0-9.]+>$")


class _Window:
    """
    A read-only view of C{length} bytes of a file from its current position
    plus C{origin}, with the C{read}/C{tell}/C{seek} that Twisted's
    C{FileProducer} uses.
    """

    def __init__(self, f: BinaryIO, origin: int, length: int) -> None:
        base = f.tell()
        f.seek(0, 2)
        end = f.tell()
        self._f = f
        self._start = min(base + origin, end)
        self._end = min(self._start + length, end)
        self._pos = self._start
        f.seek(self._start)

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._pos
        if n < 0 or n > left:
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


def _rawHeader(msg: Any) -> bytes:
    rawHeader = getattr(msg, "rawHeader", None)
    if rawHeader is not None:
        return rawHeader()
    return _formatHeaders(msg.getHeaders(True)) + b"\r\n"


class _StructureView:
    """
    A message part as BODYSTRUCTURE should see it: with the RFC 2045
    default C{text/plain; charset=us-ascii} when it has no Content-Type, and
    with the size of its body (Twisted asks C{getSize}, which for a whole
    message is RFC822.SIZE).
    """

    def __init__(self, part: Any) -> None:
        self._part = part

    def getHeaders(self, negate: bool, *names: Any) -> dict[str, str]:
        headers = self._part.getHeaders(negate, *names)
        wanted = {(n.decode() if isinstance(n, bytes) else n).lower() for n in names}
        if "content-type" not in headers and (not names or ("content-type" in wanted) != negate):
            headers["content-type"] = "text/plain; charset=us-ascii"
        return headers

    def getSize(self) -> int:
        rawHeader = getattr(self._part, "rawHeader", None)
        if rawHeader is not None and hasattr(self._part, "getUID"):
            return max(self._part.getSize() - len(rawHeader()), 0)
        return self._part.getSize()

    def getSubPart(self, part: int) -> "_StructureView":
        return _StructureView(self._part.getSubPart(part))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._part, name)


def _addresses(value: Optional[str]) -> Optional[list[list[Optional[str]]]]:
    """
    An ENVELOPE address list: C{(name adl mailbox host)} per address, or
    L{None} (NIL) when the field is absent or empty.  Twisted's helper
    produced three-element lists (invalid syntax) for a missing From.
    """
    if not value:
        return None
    result: list[list[Optional[str]]] = []
    for name, address in email.utils.getaddresses([value]):
        if not name and not address:
            continue
        mailbox, at, host = address.rpartition("@")
        if not at:
            mailbox, host = address, ""
        result.append([name or None, None, mailbox or None, host or None])
    return result or None


def envelope(msg: Any) -> list[Any]:
    """
    The ENVELOPE structure (RFC 3501 section 7.4.2) of a message.
    """
    headers = msg.getHeaders(True)
    sender = _addresses(headers.get("from"))
    return [
        headers.get("date"),
        headers.get("subject"),
        sender,
        _addresses(headers.get("sender")) or sender,
        _addresses(headers.get("reply-to")) or sender,
        _addresses(headers.get("to")),
        _addresses(headers.get("cc")),
        _addresses(headers.get("bcc")),
        headers.get("in-reply-to"),
        headers.get("message-id"),
    ]


def _marksSeen(query: list[Any]) -> bool:
    for item in query:
        if item.type == "body" and not item.peek and not _isStructureOnly(item):
            return True
        if item.type in ("rfc822", "rfc822text"):
            return True
    return False


def _isStructureOnly(item: Any) -> bool:
    return not (item.header or item.text or item.mime or item.empty)


def _flagList(flags: list[str]) -> bytes:
    return b"(" + b" ".join(f.encode("ascii") for f in flags) + b")"


class FetchMixin:
    """
    FETCH, STORE and COPY for a selected mailbox.  Mixed into a
    subclass of C{IMAP4Server}; uses its C{mbox}, C{account} and response
    helpers, and the server's C{_block}/C{_unblock}, C{_mailboxNo},
    C{_decodeName} and C{_syncSelected}.
    """

    log: "Logger"
    mbox: Any
    account: Any
    transport: Any

    # ------------------------------------------------------------------ FETCH

    def do_FETCH(self, tag: bytes, messages: MessageSet, query: list[Any], uid: int = 0) -> None:
        if query and _marksSeen(query) and self.mbox.isWriteable():
            setSeen = getattr(self.mbox, "setSeen", None)
            if setSeen is not None:
                selected = self.mbox.fetch(messages, uid)
                setSeen([seq for seq, _ in selected])
                if not any(item.type == "flags" for item in query):
                    query = query + [_FetchParser.Flags()]
        IMAP4Server.do_FETCH(self, tag, messages, query, uid)  # type: ignore[arg-type]

    select_FETCH = (do_FETCH, IMAP4Server.arg_seqset, IMAP4Server.arg_fetchatt)

    def spew_flags(self, id: int, msg: Any, _w: Optional[Writer] = None, _f: Any = None) -> None:
        # Twisted's fallback writer is misspelt (transport.writen).
        write = _w if _w is not None else self.transport.write
        write(b"FLAGS " + _flagList(list(msg.getFlags())))

    def spew_envelope(self, id: int, msg: Any, _w: Optional[Writer] = None, _f: Any = None) -> None:
        write = _w if _w is not None else self.transport.write
        write(b"ENVELOPE " + collapseNestedLists([envelope(msg)]))

    def spew_bodystructure(self, id: int, msg: Any, _w: Optional[Writer] = None, _f: Any = None) -> None:
        write = _w if _w is not None else self.transport.write
        write(b"BODYSTRUCTURE " + collapseNestedLists([getBodyStructure(_StructureView(msg), True)]))

    def spew_rfc822header(self, id: int, msg: Any, _w: Optional[Writer] = None, _f: Any = None) -> None:
        write = _w if _w is not None else self.transport.write
        write(b"RFC822.HEADER " + _literal(_rawHeader(msg)))

    def spew_body(
        self, part: Any, id: int, msg: Any, _w: Optional[Writer] = None, _f: Any = None
    ) -> Optional[Deferred]:
        """
        One C{BODY[section]<partial>} item of a FETCH response.
        """
        write = _w if _w is not None else self.transport.write
        flush = _f if _f is not None else (lambda: None)
        if _isStructureOnly(part):
            write(b"BODY " + collapseNestedLists([getBodyStructure(_StructureView(msg))]))
            return None
        name = _PARTIAL.sub(b"", part.__bytes__())
        target = msg
        try:
            for p in part.part:
                if target.isMultipart():
                    target = target.getSubPart(p)
                elif p > 0:
                    raise IndexError(p)
        except (IndexError, TypeError):
            write(name + b" NIL")
            return None

        data: Union[bytes, BinaryIO]
        if part.header:
            header = _rawHeader(target)
            if part.header.fields:
                header = selectHeaderFields(header, part.header.fields, part.header.negate)
            data = header
        elif part.mime:
            data = _rawHeader(target)
        elif part.text or part.part:
            data = target.getBodyFile()
        else:
            messageFile = IMessageFile(msg, None)
            if messageFile is None:
                return IMAP4Server.spew_body(self, part, id, msg, _w, _f)  # type: ignore[arg-type]
            data = messageFile.open()

        if part.partialBegin is not None:
            name += b"<%d>" % (part.partialBegin,)
            if isinstance(data, bytes):
                data = data[part.partialBegin : part.partialBegin + part.partialLength]
            else:
                data = _Window(data, part.partialBegin, part.partialLength)  # type: ignore[assignment]
        if isinstance(data, bytes):
            write(name + b" " + _literal(data))
            return None
        from twisted.mail.imap4 import FileProducer

        write(name + b" ")
        flush()
        return FileProducer(data).beginProducing(self.transport)

    # ------------------------------------------------------------------ STORE

    def do_STORE(self, tag: bytes, messages: MessageSet, mode: bytes, flags: list[bytes], uid: int = 0) -> None:
        item = mode.upper()
        silent = item.endswith(b".SILENT")
        if silent:
            item = item[: -len(b".SILENT")]
        modes = {b"FLAGS": 0, b"+FLAGS": 1, b"-FLAGS": -1}
        if item not in modes:
            self.sendBadResponse(tag, b"Unknown STORE data item")  # type: ignore[attr-defined]
            return
        if not self.mbox.isWriteable():
            self.sendNegativeResponse(tag, b"Mailbox is read-only")  # type: ignore[attr-defined]
            return
        textFlags = [f.decode("ascii", "replace") for f in flags]
        try:
            result = self.mbox.store(messages, textFlags, modes[item], uid=uid)
        except (MailError, MailboxException) as e:
            self._mailboxNo(tag, e)  # type: ignore[attr-defined]
            return
        if not silent:
            for seq in sorted(result):
                extra = b" UID %d" % (self.mbox.getUID(seq),) if uid else b""
                self.sendUntaggedResponse(  # type: ignore[attr-defined]
                    b"%d FETCH (FLAGS %b%b)" % (seq, _flagList(result[seq]), extra)
                )
        self.sendPositiveResponse(tag, b"STORE completed")  # type: ignore[attr-defined]

    select_STORE = (do_STORE, IMAP4Server.arg_seqset, IMAP4Server.arg_atom, IMAP4Server.arg_flaglist)

    # ------------------------------------------------------------------- COPY

    def do_COPY(self, tag: bytes, messages: MessageSet, mailbox: bytes, uid: int = 0) -> None:
        try:
            name = self._decodeName(mailbox)  # type: ignore[attr-defined]
            target = self.account.select(name, 1)
        except (MailError, MailboxException) as e:
            self._mailboxNo(tag, e)  # type: ignore[attr-defined]
            return
        if target is None:
            self.sendNegativeResponse(tag, b"[TRYCREATE] Mailbox doesn't exist")  # type: ignore[attr-defined]
            return
        selected = self.mbox.fetch(messages, uid)
        self._block()  # type: ignore[attr-defined]
        d = Deferred.fromCoroutine(self._copyMessages(selected, target))
        d.addCallbacks(self._copied, self._copyFailed, (tag, target), None, (tag,), None)

    select_COPY = (do_COPY, IMAP4Server.arg_seqset, IMAP4Server.arg_finalastring)

    async def _copyMessages(self, selected: list[Any], target: Any) -> None:
        for _, msg in selected:
            copier = getattr(target, "copy", None)
            if copier is not None:
                await maybeDeferred(copier, msg)
            else:
                flags = [f for f in msg.getFlags() if f != "\\Recent"]
                await maybeDeferred(target.addMessage, IMessageFile(msg).open(), flags, None)

    def _copied(self, _: object, tag: bytes, target: Any) -> None:
        if self.mbox is not None and getattr(self.mbox, "isSelectedFolder", lambda _: False)(target):
            self._syncSelected()  # type: ignore[attr-defined]
        self.sendPositiveResponse(tag, b"COPY completed")  # type: ignore[attr-defined]
        self._unblock()  # type: ignore[attr-defined]

    def _copyFailed(self, failure: Failure, tag: bytes) -> None:
        if failure.check(MailError, MailboxException):
            self._mailboxNo(tag, failure.value)  # type: ignore[attr-defined]
        else:
            self.log.failure("COPY failed", failure)
            self.sendNegativeResponse(tag, b"[SERVERBUG] COPY failed")  # type: ignore[attr-defined]
        self._unblock()  # type: ignore[attr-defined]
