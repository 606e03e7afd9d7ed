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
 - STORE on a read-only mailbox answers C{NO}, not C{BAD Server error};
 - a message expunged by another session (a ghost, see
   L{mailsrv.protocols.imap.mailbox}) is left out of the FETCH and the
   tagged reply says C{[EXPUNGEISSUED]}, as Dovecot does, instead of the
   connection being dropped when its file is gone.
"""

from __future__ import annotations

import dataclasses
import email.utils
import itertools
import re
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Optional, Union

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import deferLater
from twisted.mail.imap4 import (
    FileProducer,
    IllegalClientResponse,
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

from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IIndexedFolder
from mailsrv.mime import ENVELOPE_FIELD_ORDER
from mailsrv.protocols.imap.message import FileSlice, selectHeaderFields

if TYPE_CHECKING:
    from twisted.logger import Logger

#: The tagged reply of a FETCH that skipped messages expunged elsewhere.
EXPUNGE_ISSUED = b"[EXPUNGEISSUED] Some messages were already expunged"

Writer = Callable[[bytes], None]

_PARTIAL = re.compile(rb"<[0-9.]+>$")


def _window(f: BinaryIO, origin: int, length: int) -> FileSlice:
    """
    C{length} octets of C{f} from C{origin} past its current position, cut
    at its end: what a partial FETCH (C{BODY[]<origin.length>}) sends.
    """
    base = f.tell()
    end = f.seek(0, 2)
    start = min(base + origin, end)
    return FileSlice(f, start, min(length, end - start))


class _BodyProducer(FileProducer):
    """
    Twisted's pull producer of a literal from a file, which also drops a
    client that stops reading: the transport asks for more as its buffer
    drains, so no request for C{stallTimeout} seconds means the client
    reads nothing (closing normally would wait for it forever).  The file
    is closed when the producer is done or stopped.
    """

    def __init__(
        self, f: Any, clock: Any, stallTimeout: float, onStall: Callable[[], None]
    ) -> None:
        super().__init__(f)
        self._clock = clock
        self._stallTimeout = stallTimeout
        self._onStall = onStall
        self._stallCall: Any = None

    def _arm(self) -> None:
        if self._stallCall is not None and self._stallCall.active():
            self._stallCall.reset(self._stallTimeout)
        else:
            self._stallCall = self._clock.callLater(self._stallTimeout, self._onStall)

    def _disarm(self) -> None:
        if self._stallCall is not None and self._stallCall.active():
            self._stallCall.cancel()
        self._stallCall = None

    def beginProducing(self, consumer: Any) -> "Deferred[Any]":
        self._arm()
        return super().beginProducing(consumer)  # type: ignore[no-any-return]

    def resumeProducing(self) -> None:
        f = self.f
        self._arm()
        super().resumeProducing()
        if self.f is None:  # the last chunk was written
            self._disarm()
            if f is not None:
                f.close()

    def stopProducing(self) -> None:
        self._disarm()
        if self.f is not None:
            self.f.close()
            self.f = None


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
        headerSize = getattr(self._part, "headerSize", None)
        if headerSize is not None:
            return max(self._part.getSize() - headerSize(), 0)
        return self._part.getSize()

    def getBodyFile(self) -> Any:
        """
        The body; Twisted only iterates over it to count lines, so the
        index's count is enough when it has one.
        """
        summary = getattr(self._part, "summary", None)
        if summary is not None and summary.bodyLines is not None:
            return itertools.repeat(b"", summary.bodyLines)
        return self._part.getBodyFile()

    def getSubPart(self, part: int) -> "_StructureView":
        return _StructureView(self._part.getSubPart(part))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._part, name)


def _structureBytes(msg: Any, extended: bool) -> bytes:
    """
    BODYSTRUCTURE (or BODY) of a message: from its MIME structure when it
    has one (see L{mailsrv.protocols.imap.bodystructure}), else Twisted's.
    """
    structure = getattr(msg, "mimeStructure", None)
    if structure is None:
        return collapseNestedLists([getBodyStructure(_StructureView(msg), extended)])
    from mailsrv.protocols.imap.bodystructure import bodyStructure

    return collapseNestedLists([bodyStructure(structure(), extended)])


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


#: ENVELOPE bytes by the indexed header fields they were made from: the
#: address parsing and quoting cost more than everything else in a large
#: FETCH, and the result depends on those fields only.  Bounded: cleared
#: when full.
_envelopeMemo: dict[tuple[tuple[str, bytes], ...], bytes] = {}
MAX_MEMO_ENTRIES = 200_000



def envelopeBytes(msg: Any) -> bytes:
    """
    The serialised ENVELOPE of a message, memoised by its indexed header
    fields when the index has a summary for it.
    """
    summary = getattr(msg, "summary", None)
    if summary is None:
        return collapseNestedLists([envelope(msg)])
    key = summary.fields
    cached = _envelopeMemo.get(key)
    if cached is None:
        if len(_envelopeMemo) >= MAX_MEMO_ENTRIES:
            _envelopeMemo.clear()
        cached = _envelopeMemo[key] = collapseNestedLists([envelope(msg)])
    return cached


def envelope(msg: Any) -> list[Any]:
    """
    The ENVELOPE structure (RFC 3501 section 7.4.2) of a message.
    """
    headers = msg.getHeaders(False, *ENVELOPE_FIELD_ORDER)
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


#: Messages per FETCH batch: one index look-up and one write each.
FETCH_BATCH = 250

#: Octets of a batch's output held before they are written and, if the
#: client is not reading, the rest of the FETCH waits (bodies up to
#: L{SMALL_BODY} are sent from memory, so 250 of them could make 32 MB).
FETCH_FLUSH = 1024 * 1024


class _ModSeqItem:
    """
    The C{MODSEQ} FETCH attribute (RFC 7162), beside Twisted's parsed ones.
    """

    type = "modseq"


@dataclasses.dataclass
class FetchRequest:
    """
    A parsed FETCH: Twisted's attribute objects (and L{_ModSeqItem}) and the
    C{CHANGEDSINCE} modifier.
    """

    query: list[Any]
    changedSince: Optional[int] = None
    #: RFC 7162 C{VANISHED} modifier (with C{CHANGEDSINCE}, UID FETCH only).
    vanished: bool = False


def _usesHeaders(item: Any) -> bool:
    """
    Whether a FETCH attribute reads header fields the index may hold.
    """
    if item.type in ("envelope", "bodystructure"):
        return True
    if item.type == "body" and item.part:
        return True  # the index locates MIME parts
    return item.type == "body" and (_isStructureOnly(item) or bool(item.header and item.header.fields and not item.header.negate and not item.part))


def _topLevelWords(line: bytes) -> list[bytes]:
    """
    The space-separated words of a FETCH attribute list (outer parentheses
    removed), brackets and parentheses kept inside their word.
    """
    if line.startswith(b"(") and line.endswith(b")"):
        line = line[1:-1]
    words: list[bytes] = []
    depth = 0
    current = bytearray()
    for byte in line:
        c = bytes((byte,))
        if c in (b"[", b"("):
            depth += 1
        elif c in (b"]", b")"):
            depth -= 1
        if c == b" " and depth == 0:
            if current:
                words.append(bytes(current))
            current = bytearray()
            continue
        current += c
    if current:
        words.append(bytes(current))
    return words


def _splitModifiers(line: bytes) -> tuple[bytes, Optional[bytes]]:
    """
    Split C{<attributes> [(<modifiers>)]} into the attributes and the
    modifier text (without parentheses), or L{None} without modifiers.
    """
    if line.endswith(b")"):
        depth = 0
        for i in range(len(line) - 1, -1, -1):
            c = line[i : i + 1]
            if c == b")":
                depth += 1
            elif c == b"(":
                depth -= 1
                if depth == 0:
                    head = line[:i].rstrip()
                    oneList = head.startswith(b"(") and head.endswith(b")")
                    if line[i - 1 : i] == b" " and head and (oneList or len(_topLevelWords(head)) == 1):
                        return head, line[i + 1 : -1].strip()
                    break
    return line, None


#: Bodies up to this size are sent from memory rather than by a producer.
SMALL_BODY = 128 * 1024


def _readSmall(f: Any) -> Optional[bytes]:
    """
    The rest of C{f} if at most L{SMALL_BODY} octets remain (C{f} is then
    closed), else L{None} with C{f} untouched.
    """
    here = f.tell()
    end = f.seek(0, 2)
    f.seek(here)
    if end - here > SMALL_BODY:
        return None
    try:
        return f.read()
    finally:
        f.close()


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

    def arg_fetchRequest(self, line: bytes) -> tuple["FetchRequest", bytes]:
        """
        The FETCH attributes and RFC 4466 modifiers: Twisted's parser for
        the attributes, with C{MODSEQ} (RFC 7162) taken out first, and
        C{(CHANGEDSINCE n)} after them.
        """
        attributes, modifiers = _splitModifiers(line.strip())
        words = _topLevelWords(attributes)
        modseq = any(w.upper() == b"MODSEQ" for w in words)
        if modseq:
            kept = b" ".join(w for w in words if w.upper() != b"MODSEQ")
            attributes = b"(" + kept + b")" if attributes.startswith(b"(") else kept
        query: list[Any] = []
        if attributes.strip() not in (b"", b"()"):
            parser = _FetchParser()
            try:
                parser.parseString(attributes)
            except IllegalClientResponse:
                raise
            except Exception:
                # Twisted's parser raises a bare Exception for what it
                # does not recognise: the client's error, not ours.
                raise IllegalClientResponse("Invalid FETCH attributes") from None
            query = list(parser.result)
        changedSince = None
        vanished = False
        if modifiers is not None:
            parts = [p.upper() for p in modifiers.split()]
            if parts and parts[-1] == b"VANISHED":
                vanished = True
                parts.pop()
            if len(parts) != 2 or parts[0] != b"CHANGEDSINCE" or not parts[1].isdigit():
                raise IllegalClientResponse("Unknown FETCH modifier")
            changedSince = int(parts[1])
        if changedSince is not None:
            modseq = True
        if modseq:
            query.append(_ModSeqItem())
        if not query:
            raise IllegalClientResponse("Empty FETCH attribute list")
        return FetchRequest(query, changedSince, vanished), b""

    def do_FETCH(self, tag: bytes, messages: MessageSet, request: "FetchRequest", uid: int = 0) -> None:
        query = request.query
        if request.vanished and not (uid and getattr(self, "_qresync", False)):
            # RFC 7162 section 3.2.6: UID FETCH only, once QRESYNC is enabled.
            self.sendBadResponse(tag, b"VANISHED needs UID FETCH and ENABLE QRESYNC")  # type: ignore[attr-defined]
            return
        if any(item.type == "modseq" for item in query):
            if not self._condstoreAvailable():  # type: ignore[attr-defined]
                self.sendBadResponse(tag, b"[NOMODSEQ] No MODSEQ in this mailbox")  # type: ignore[attr-defined]
                return
            self._enableCondstore()  # type: ignore[attr-defined]
        if _marksSeen(query) and self.mbox.isWriteable():
            setSeen = getattr(self.mbox, "setSeen", None)
            if setSeen is not None:
                setSeen([seq for seq, _ in self.mbox.fetch(messages, uid)])
                if not any(item.type == "flags" for item in query):
                    query = query + [_FetchParser.Flags()]
        try:
            selected = self.mbox.fetch(messages, uid)
        except (MailError, MailboxException) as e:
            self._mailboxNo(tag, e)  # type: ignore[attr-defined]
            return
        if request.vanished:
            vanished = self.mbox.vanishedSince(request.changedSince, messages)
            if vanished:
                self.sendUntaggedResponse(b"VANISHED (EARLIER) " + vanished)  # type: ignore[attr-defined]
        if request.changedSince is not None:
            selected = [(seq, m) for seq, m in selected if m.info.modSeq > request.changedSince]
        isGone = getattr(self.mbox, "isGone", None)
        skipped = 0
        if isGone is not None and self.mbox.hasGhosts():
            live = [(seq, m) for seq, m in selected if not isGone(m.info.uid)]
            skipped, selected = len(selected) - len(live), live
        self._block()  # type: ignore[attr-defined]
        oldTimeout = self.setTimeout(None)  # type: ignore[attr-defined]
        d = Deferred.fromCoroutine(self._fetchResponses(selected, query, uid))

        def done(missing: int) -> None:
            self.setTimeout(oldTimeout)  # type: ignore[attr-defined]
            if skipped or missing:
                self.sendPositiveResponse(tag, EXPUNGE_ISSUED)  # type: ignore[attr-defined]
            else:
                self.sendPositiveResponse(tag, b"FETCH completed")  # type: ignore[attr-defined]
            self._unblock()  # type: ignore[attr-defined]

        def failed(failure: Failure) -> None:
            # Part of the response may be out: the connection cannot be
            # trusted to be in step any more.
            self.log.failure("FETCH failed", failure)
            self._outputStepAside(final=True)  # type: ignore[attr-defined]
            self.transport.loseConnection()

        d.addCallbacks(done, failed)

    select_FETCH = (do_FETCH, IMAP4Server.arg_seqset, arg_fetchRequest)

    async def _fetchResponses(self, selected: list[tuple[int, Any]], query: list[Any], uid: int) -> int:
        """
        Write one untagged FETCH per message, in batches: header data for a
        batch comes from the folder index in one call, the output of a
        batch is written at once (or each L{FETCH_FLUSH} octets), and the
        reactor runs between batches; message bodies are streamed by
        producers, for which the server's own output producer steps aside.
        While the client does not read, the next write waits for room in
        the transport's buffer.

        @return: how many messages were left out because they were found
            expunged (their file gone) while being read.
        """
        folder = getattr(self.mbox, "folder", None)
        index = IIndexedFolder(folder, None) if folder is not None else None
        wantsHeaders = index is not None and any(_usesHeaders(item) for item in query)
        wantsStructure = any(
            item.type == "bodystructure" or (item.type == "body" and _isStructureOnly(item)) for item in query
        )
        uidItem = any(item.type == "uid" for item in query)
        qresync = getattr(self, "_qresync", False)
        chunks: list[bytes] = []
        flushes = 0
        missing = 0
        markGone = getattr(self.mbox, "markGone", lambda uid: None)

        def flush() -> None:
            nonlocal flushes, held
            held = 0
            if chunks:
                data = b"".join(chunks)
                del chunks[:]
                flushes += 1
                self.transport.write(data)

        def flushForProducer() -> None:
            # A spew_* method is about to register a body producer with
            # the transport (Twisted's call every _f before one).
            nonlocal steppedAside
            flush()
            steppedAside = True
            self._outputStepAside()  # type: ignore[attr-defined]

        held = 0
        steppedAside = False

        for start in range(0, len(selected), FETCH_BATCH):
            batch = selected[start : start + FETCH_BATCH]
            if wantsHeaders:
                uids = [m.info.uid for _, m in batch]
                if wantsStructure:
                    summaries = await index.summaries(uids, structure=True)  # type: ignore[union-attr]
                else:
                    summaries = await index.summaries(uids)  # type: ignore[union-attr]
                for _, msg in batch:
                    msg.summary = summaries.get(msg.info.uid)
            for seq, msg in batch:
                mark, flushesBefore = len(chunks), flushes
                chunks.append(b"* %d FETCH (" % (seq,))
                first = True
                try:
                    for item in query:
                        if not first:
                            chunks.append(b" ")
                        first = False
                        if item.type == "body":
                            pending = self.spew_body(item, seq, msg, chunks.append, flushForProducer)
                        else:
                            pending = getattr(self, "spew_" + item.type)(seq, msg, chunks.append, flushForProducer)
                        if isinstance(pending, Deferred):
                            await pending
                        if steppedAside:
                            steppedAside = False
                            self._outputTakeBack()  # type: ignore[attr-defined]
                except MailError as e:
                    steppedAside = False
                    self._outputTakeBack()  # type: ignore[attr-defined]
                    # Expunged by another session since the last sync: drop
                    # this message's partial response unless some of it was
                    # already written.
                    if e.kind is not ErrorKind.NOT_FOUND or flushes != flushesBefore:
                        raise
                    del chunks[mark:]
                    markGone(msg.info.uid)
                    missing += 1
                    continue
                if (uid or qresync) and not uidItem:
                    # RFC 7162 section 3.2.4: with QRESYNC, always the UID.
                    chunks.append(b" UID %d" % (msg.getUID(),))
                chunks.append(b")\r\n")
                held += sum(len(chunk) for chunk in chunks[mark:])
                if held > FETCH_FLUSH:
                    flush()
                    await self._outputRoom()  # type: ignore[attr-defined]
            flush()
            if start + FETCH_BATCH < len(selected):
                await self._outputRoom()  # type: ignore[attr-defined]
                await deferLater(self._clock, 0, lambda: None)  # type: ignore[attr-defined]
        return missing

    def spew_flags(self, id: int, msg: Any, _w: Optional[Writer] = None, _f: Any = None) -> None:
        # Twisted's fallback writer is misspelt (transport.writen).
        write = _w if _w is not None else self.transport.write
        write(b"FLAGS " + _flagList(list(msg.getFlags())))

    def spew_envelope(self, id: int, msg: Any, _w: Optional[Writer] = None, _f: Any = None) -> None:
        write = _w if _w is not None else self.transport.write
        write(b"ENVELOPE " + envelopeBytes(msg))

    def spew_modseq(self, id: int, msg: Any, _w: Optional[Writer] = None, _f: Any = None) -> None:
        write = _w if _w is not None else self.transport.write
        write(b"MODSEQ (%d)" % (msg.info.modSeq,))

    def spew_bodystructure(self, id: int, msg: Any, _w: Optional[Writer] = None, _f: Any = None) -> None:
        write = _w if _w is not None else self.transport.write
        write(b"BODYSTRUCTURE " + _structureBytes(msg, True))

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
            write(b"BODY " + _structureBytes(msg, False))
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
        if part.part and (part.header or part.text):
            # After a part number, HEADER and TEXT are those of the message
            # a message/rfc822 part encapsulates, not the part's own MIME
            # header and body (RFC 3501 section 6.4.5).
            encapsulated = getattr(target, "encapsulated", lambda: None)()
            if encapsulated is not None:
                target = encapsulated

        data: Union[bytes, BinaryIO]
        if part.header:
            if part.header.fields and hasattr(target, "headerFieldsBytes"):
                data = target.headerFieldsBytes(part.header.fields, part.header.negate)
            else:
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
                data = _window(data, part.partialBegin, part.partialLength)  # type: ignore[assignment]
        if not isinstance(data, bytes):
            # Small bodies (most mail) go out with the response they belong
            # to; only large ones are streamed by a producer, which costs a
            # round through the reactor per message.
            small = _readSmall(data)
            if small is not None:
                data = small
        if isinstance(data, bytes):
            write(name + b" " + _literal(data))
            return None
        write(name + b" ")
        flush()
        producer = _BodyProducer(
            data,
            self._clock,  # type: ignore[attr-defined]
            self.timeouts.command,  # type: ignore[attr-defined]
            self._outputStalled,  # type: ignore[attr-defined]
        )
        return producer.beginProducing(self.transport)

    # ------------------------------------------------------------------ STORE

    def arg_storeMode(self, line: bytes) -> tuple[tuple[bytes, Optional[int]], bytes]:
        """
        The STORE data item name, after the optional RFC 7162 modifier
        C{(UNCHANGEDSINCE n)}.
        """
        unchangedSince = None
        line = line.lstrip()
        if line.startswith(b"("):
            end = line.find(b")")
            parts = line[1:end].split() if end > 0 else []
            if len(parts) != 2 or parts[0].upper() != b"UNCHANGEDSINCE" or not parts[1].isdigit():
                raise IllegalClientResponse("Unknown STORE modifier")
            unchangedSince = int(parts[1])
            line = line[end + 1 :].lstrip()
        item, rest = IMAP4Server.arg_atom(self, line)  # type: ignore[arg-type]
        return (item, unchangedSince), rest

    def do_STORE(
        self, tag: bytes, messages: MessageSet, mode: tuple[bytes, Optional[int]], flags: list[bytes], uid: int = 0
    ) -> None:
        item, unchangedSince = mode
        item = item.upper()
        silent = item.endswith(b".SILENT")
        if silent:
            item = item[: -len(b".SILENT")]
        modes = {b"FLAGS": 0, b"+FLAGS": 1, b"-FLAGS": -1}
        if item not in modes:
            self.sendBadResponse(tag, b"Unknown STORE data item")  # type: ignore[attr-defined]
            return
        if unchangedSince is not None:
            if not self._condstoreAvailable():  # type: ignore[attr-defined]
                self.sendNegativeResponse(tag, b"[NOMODSEQ] No MODSEQ in this mailbox")  # type: ignore[attr-defined]
                return
            self._enableCondstore()  # type: ignore[attr-defined]
        if not self.mbox.isWriteable():
            self.sendNegativeResponse(tag, b"Mailbox is read-only")  # type: ignore[attr-defined]
            return
        textFlags = [f.decode("ascii", "replace") for f in flags]
        modified: list[int] = []
        try:
            if unchangedSince is None:
                result = self.mbox.store(messages, textFlags, modes[item], uid=uid)
            else:
                result = self.mbox.store(
                    messages, textFlags, modes[item], uid=uid, unchangedSince=unchangedSince, modified=modified
                )
        except (MailError, MailboxException) as e:
            self._mailboxNo(tag, e)  # type: ignore[attr-defined]
            return
        withModSeq = self._condstoreEnabled()  # type: ignore[attr-defined]
        for seq in sorted(result):
            parts = []
            if not silent:
                parts.append(b"FLAGS " + _flagList(result[seq]))
            if uid or getattr(self, "_qresync", False):
                parts.append(b"UID %d" % (self.mbox.getUID(seq),))
            if withModSeq:
                # RFC 7162 section 3.1.3: MODSEQ is reported even for .SILENT.
                parts.append(b"MODSEQ (%d)" % (max(self.mbox.info(seq).modSeq, 1),))
            if not silent or withModSeq:
                self.sendUntaggedResponse(b"%d FETCH (%b)" % (seq, b" ".join(parts)))  # type: ignore[attr-defined]
        if modified:
            numbers = [self.mbox.getUID(seq) for seq in modified] if uid else modified
            from mailsrv.protocols.imap.extensions import _seqText

            self.sendPositiveResponse(  # type: ignore[attr-defined]
                tag, b"[MODIFIED " + _seqText(sorted(numbers)) + b"] Conditional STORE failed"
            )
            return
        self.sendPositiveResponse(tag, b"STORE completed")  # type: ignore[attr-defined]

    select_STORE = (do_STORE, IMAP4Server.arg_seqset, arg_storeMode, IMAP4Server.arg_flaglist)

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
