# -*- test-case-name: tests.protocols.test_imap -*-
"""
SEARCH for L{mailsrv.protocols.imap.server.IMAPServer}, as a mixin.

Twisted's query parser and its boolean/flag/sequence terms are reused.  The
terms that compare text or dates are replaced: on Python 3 Twisted compares
the client's C{bytes} with C{str} header values (C{TypeError}) and passes
C{bytes} to its date parser, so SUBJECT, FROM, HEADER, BODY, SINCE... all
failed.  Here every text comparison is case-insensitive on Unicode
(RFC 3501 section 6.4.4), and date terms ignore the time of day as the RFC
says.

Header keys (FROM, SUBJECT, HEADER...) are answered from the folder index
(L{mailsrv.interfaces.IIndexedFolder}) when the backend has one; BODY and
TEXT read the messages in 64 KiB chunks.  C{MODSEQ} (RFC 7162) compares
the message's MODSEQ.

ESEARCH (RFC 4731): C{SEARCH RETURN (MIN MAX COUNT ALL) ...} and its UID
form answer C{* ESEARCH (TAG "a1") [UID] ...}, ALL as a compact sequence
set; C{RETURN ()} means ALL.  SAVE (RFC 5182) is refused with BAD.
"""

from __future__ import annotations

import datetime
import email.header
import email.utils
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.mail.imap4 import (
    IllegalClientResponse,
    IllegalIdentifierError,
    IllegalQueryError,
    IMAP4Server,
    parseIdList,
)
from twisted.python.failure import Failure

from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IIndexedFolder
from mailsrv.protocols.imap.message import headerValueText

if TYPE_CHECKING:
    from twisted.logger import Logger

_CHUNK = 64 * 1024

#: Search keys that read header fields (answered from the folder index).
_HEADER_KEYS = {b"BCC", b"CC", b"FROM", b"TO", b"SUBJECT", b"HEADER", b"SENTBEFORE", b"SENTON", b"SENTSINCE"}

#: Messages per folder-index request during SEARCH.
_SUMMARY_BATCH = 1000


#: The RFC 4731 result options (SAVE, RFC 5182, is not offered).
_RETURN_OPTIONS = frozenset({b"MIN", b"MAX", b"ALL", b"COUNT"})


def sequenceSet(numbers: Sequence[int]) -> bytes:
    """
    Ascending numbers as a compact sequence set (C{1:3,7}).
    """
    parts = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(b"%d" % (numbers[i],) if i == j else b"%d:%d" % (numbers[i], numbers[j]))
        i = j + 1
    return b",".join(parts)


def esearchResponse(
    tag: bytes, found: Sequence[tuple[int, int]], options: frozenset[bytes], uid: bool, usesModSeq: bool
) -> bytes:
    """
    The RFC 4731 C{ESEARCH} response for C{found} (C{(number, MODSEQ)}
    pairs, ascending): MIN, MAX and ALL only when something matched, COUNT
    always when asked; with a MODSEQ search key, RFC 7162 section 3.2's
    C{MODSEQ}: the highest of the messages reported (only those MIN and MAX
    name when neither ALL nor COUNT was asked).
    """
    parts = [b'ESEARCH (TAG "' + tag.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'")']
    if uid:
        parts.append(b"UID")
    if found:
        if b"MIN" in options:
            parts.append(b"MIN %d" % (found[0][0],))
        if b"MAX" in options:
            parts.append(b"MAX %d" % (found[-1][0],))
        if b"ALL" in options:
            parts.append(b"ALL " + sequenceSet([n for n, _ in found]))
    if b"COUNT" in options:
        parts.append(b"COUNT %d" % (len(found),))
    if usesModSeq and found:
        if options & {b"ALL", b"COUNT"}:
            reported: Sequence[tuple[int, int]] = found
        else:
            reported = [p for p, wanted in ((found[0], b"MIN"), (found[-1], b"MAX")) if wanted in options]
        parts.append(b"MODSEQ %d" % (max(m for _, m in reported),))
    return b" ".join(parts)


def _flatten(query: list[Any]) -> Iterator[Any]:
    for item in query:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _decodedHeader(value: str) -> str:
    """
    A header value with RFC 2047 encoded words decoded, so that SUBJECT
    finds words a client sees, whatever the sender's encoding.
    """
    if "=?" not in value:
        return value  # no encoded word: the stdlib decoder costs 20x more
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (LookupError, ValueError, UnicodeError):
        return value


def _copyQuery(query: list[Any]) -> list[Any]:
    """
    A copy of a parsed query (nested lists of atoms) for Twisted's
    evaluator, which consumes it; C{copy.deepcopy} per message cost more
    than evaluating a header key.
    """
    return [_copyQuery(item) if isinstance(item, list) else item for item in query]


#: Search keys that name one header field.
_FIELD_KEYS = {b"BCC": "bcc", b"CC": "cc", b"FROM": "from", b"TO": "to", b"SUBJECT": "subject"}


def _singleHeaderTerm(query: list[Any]) -> Optional[tuple[str, str]]:
    """
    C{(field, text)} if the whole query is one header key (C{SUBJECT x},
    C{HEADER Subject x}), else L{None}.
    """
    if len(query) == 2 and isinstance(query[0], bytes) and isinstance(query[1], bytes):
        field = _FIELD_KEYS.get(query[0].upper())
        if field is not None:
            return field, _text(query[1])
    if (
        len(query) == 3
        and all(isinstance(item, bytes) for item in query)
        and query[0].upper() == b"HEADER"
    ):
        return _text(query[1]).lower(), _text(query[2])
    return None


#: Lower-case decoded text of a header field by its raw bytes, for SEARCH:
#: decoding costs more than the comparison.  Bounded: cleared when full.
_fieldTextMemo: dict[bytes, str] = {}
MAX_FIELD_MEMO = 200_000


def _fieldText(summary: Any, field: str) -> Optional[str]:
    """
    The first C{field} of an index entry as lower-case text with RFC 2047
    words decoded, or L{None} if the message has no such field.
    """
    for name, raw in summary.fields:
        if name == field:
            text = _fieldTextMemo.get(raw)
            if text is None:
                if len(_fieldTextMemo) >= MAX_FIELD_MEMO:
                    _fieldTextMemo.clear()
                value = headerValueText(raw.split(b":", 1)[1] if b":" in raw else b"")
                text = _fieldTextMemo[raw] = _decodedHeader(value).lower()
            return text
    return None


def _searchDate(value: Any) -> datetime.date:
    """
    A search key date (C{1-Feb-2024}).

    @raise ValueError: if it is not one.
    """
    return datetime.datetime.strptime(_text(value).strip('"'), "%d-%b-%Y").date()


def _headerDate(value: str) -> Optional[datetime.date]:
    try:
        return email.utils.parsedate_to_datetime(value).date()
    except (TypeError, ValueError, IndexError):
        return None


def _fileContains(f: BinaryIO, needle: bytes) -> bool:
    """
    Whether C{needle} (lower-case) occurs in the rest of C{f}, ignoring
    ASCII case, reading it in chunks.
    """
    if not needle:
        return True
    tail = b""
    try:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                return False
            window = tail + chunk.lower()
            if needle in window:
                return True
            tail = window[-(len(needle) - 1) :] if len(needle) > 1 else b""
    finally:
        f.close()


class SearchMixin:
    """
    SEARCH and UID SEARCH for the selected mailbox.
    """

    log: "Logger"
    mbox: Any

    def opt_searchReturn(self, line: bytes) -> tuple[Optional[frozenset[bytes]], bytes]:
        """
        The RFC 4731 C{RETURN (...)} options before the search keys: the
        set of options (C{RETURN ()} means ALL), or L{None} without them.
        """
        if line[:7].upper() != b"RETURN ":
            return None, line
        rest = line[7:].lstrip()
        end = rest.find(b")")
        if not rest.startswith(b"(") or end < 0:
            raise IllegalClientResponse("Malformed SEARCH RETURN options")
        options = frozenset(w.upper() for w in rest[1:end].split())
        unknown = options - _RETURN_OPTIONS
        if unknown:
            raise IllegalClientResponse("Unsupported SEARCH RETURN option")
        return (options or frozenset({b"ALL"})), rest[end + 1 :].lstrip()

    def do_SEARCH(
        self,
        tag: bytes,
        returnOptions: Optional[frozenset[bytes]],
        charset: Optional[bytes],
        query: list[Any],
        uid: int = 0,
    ) -> None:
        if charset is not None and charset.upper() not in (b"US-ASCII", b"UTF-8"):
            self.sendNegativeResponse(tag, b"[BADCHARSET (US-ASCII UTF-8)] Unsupported charset")  # type: ignore[attr-defined]
            return
        words = {w.upper() for w in _flatten(query) if isinstance(w, bytes)}
        usesModSeq = b"MODSEQ" in words
        if usesModSeq:
            if not self._condstoreAvailable():  # type: ignore[attr-defined]
                self.sendNegativeResponse(tag, b"[NOMODSEQ] No MODSEQ in this mailbox")  # type: ignore[attr-defined]
                return
            self._enableCondstore()  # type: ignore[attr-defined]
        folder = getattr(self.mbox, "folder", None)
        index = IIndexedFolder(folder, None) if folder is not None else None
        term = _singleHeaderTerm(query)
        infos = getattr(self.mbox, "infos", None)
        if (
            term is not None
            and index is not None
            and infos is not None
            and term[0] in getattr(folder, "indexedFields", ())
        ):
            self._block()  # type: ignore[attr-defined]
            d = Deferred.fromCoroutine(self._searchHeader(infos(), term[0], term[1], uid, index))
            d.addCallbacks(
                self._searched, self._searchFailed, (tag, returnOptions, uid, usesModSeq), None, (tag, query), None
            )
            return
        messages = self.mbox.fetch(parseIdList(b"1:*"), False)
        self._block()  # type: ignore[attr-defined]
        d = Deferred.fromCoroutine(
            self._search(messages, query, uid, index if words & _HEADER_KEYS else None)
        )
        d.addCallbacks(
            self._searched, self._searchFailed, (tag, returnOptions, uid, usesModSeq), None, (tag, query), None
        )

    async def _searchHeader(
        self, infos: list[Any], field: str, needle: str, uid: int, index: Any
    ) -> list[tuple[int, int]]:
        """
        A query of one header key on an indexed field (the usual client
        search, C{SUBJECT x} or C{HEADER Subject x}): straight over the
        index entries, without a message object or the generic evaluator
        per message.
        """
        needle = needle.lower()
        isGone = self.mbox.isGone if self.mbox.hasGhosts() else None
        found = []
        for start in range(0, len(infos), _SUMMARY_BATCH):
            batch = infos[start : start + _SUMMARY_BATCH]
            summaries = await index.summaries([info.uid for info in batch])
            for seq, info in enumerate(batch, start + 1):
                summary = summaries.get(info.uid)
                if summary is None or (isGone is not None and isGone(info.uid)):
                    continue  # expunged by another session
                text = _fieldText(summary, field)
                if text is not None and needle in text:
                    found.append((info.uid if uid else seq, info.modSeq))
        return found

    async def _search(
        self, messages: list[Any], query: list[Any], uid: int, index: Any
    ) -> list[tuple[int, int]]:
        """
        Evaluate the query over every message of the view; header keys are
        answered from the folder index when there is one (summaries fetched
        in batches first).  Messages expunged by another session and not yet
        announced match nothing (RFC 2180 section 4.1.3), but still count
        for C{*}.
        """
        lastSeq = messages[-1][0] if messages else 0
        lastUid = messages[-1][1].getUID() if messages else 0
        isGone = getattr(self.mbox, "isGone", None)
        if isGone is not None and self.mbox.hasGhosts():
            messages = [(seq, m) for seq, m in messages if not isGone(m.info.uid)]
        if index is not None:
            for start in range(0, len(messages), _SUMMARY_BATCH):
                batch = messages[start : start + _SUMMARY_BATCH]
                summaries = await index.summaries([m.info.uid for _, m in batch])
                for _, msg in batch:
                    msg.summary = summaries.get(msg.info.uid)
        found = []
        for seq, msg in messages:
            try:
                matched = self._searchFilter(_copyQuery(query), seq, msg, lastSeq, lastUid)  # type: ignore[attr-defined]
            except MailError as e:
                if e.kind is not ErrorKind.NOT_FOUND:
                    raise
                continue  # its file is gone: expunged by another session
            if matched:
                found.append((msg.getUID() if uid else seq, msg.info.modSeq))
        return found

    def _searched(
        self,
        found: list[tuple[int, int]],
        tag: bytes,
        returnOptions: Optional[frozenset[bytes]],
        uid: int,
        usesModSeq: bool,
    ) -> None:
        """
        Send the result of a search, C{(number, MODSEQ)} pairs in ascending
        order: as C{SEARCH}, or as RFC 4731 C{ESEARCH} when the client gave
        C{RETURN} options.
        """
        if returnOptions is None:
            response = b" ".join([b"SEARCH"] + [b"%d" % (n,) for n, _ in found])
            if usesModSeq and found:
                # RFC 7162 section 3.1.5: the highest MODSEQ of what was found.
                response += b" (MODSEQ %d)" % (max(m for _, m in found),)
        else:
            response = esearchResponse(tag, found, returnOptions, bool(uid), usesModSeq)
        self.sendUntaggedResponse(response)  # type: ignore[attr-defined]
        self.sendPositiveResponse(tag, b"SEARCH completed")  # type: ignore[attr-defined]
        self._unblock()  # type: ignore[attr-defined]

    def _singleSearchStep(self, query: list[Any], msgId: int, msg: Any, lastSequenceId: int, lastMessageId: int) -> bool:
        """
        Twisted's evaluator, for a key it can read: its parser turns an
        unquoted C{NIL} into L{None}, which is no search key.
        """
        if query and not isinstance(query[0], (bytes, list)):
            raise IllegalQueryError("Invalid search key")
        return super()._singleSearchStep(query, msgId, msg, lastSequenceId, lastMessageId)  # type: ignore[misc, no-any-return]

    def _searchFailed(self, failure: Failure, tag: bytes, query: list[Any]) -> None:
        if failure.check(IllegalQueryError, IllegalIdentifierError, ValueError, IndexError, TypeError):
            # The client's mistake: no traceback in the log.
            self.log.debug(
                "Bad SEARCH query {query!r}: {problem}", query=query, problem=str(failure.value)
            )
            self.sendBadResponse(tag, b"Invalid search query")  # type: ignore[attr-defined]
        elif failure.check(MailError):
            self._mailboxNo(tag, failure.value)  # type: ignore[attr-defined]
        else:
            self.log.failure("SEARCH failed", failure)
            self.sendNegativeResponse(tag, b"[SERVERBUG] SEARCH failed")  # type: ignore[attr-defined]
        self._unblock()  # type: ignore[attr-defined]

    def search_MODSEQ(self, query: list[Any], id: int, msg: Any) -> bool:
        """
        C{MODSEQ [<entry-name> <entry-type>] <mod-sequence>} (RFC 7162):
        per-flag MODSEQs are not kept, so an entry name means the message's.
        """
        value = _text(query.pop(0))
        if not value.isdigit():
            query.pop(0)  # the entry type: priv, shared or all
            value = _text(query.pop(0))
        if not value.isdigit():
            raise ValueError("MODSEQ needs a number")
        return bool(msg.info.modSeq >= int(value))

    select_SEARCH = (do_SEARCH, opt_searchReturn, IMAP4Server.opt_charset, IMAP4Server.arg_searchkeys)

    # ------------------------------------------------------------- text keys

    def _headerContains(self, msg: Any, name: Any, needle: Any) -> bool:
        field = _text(name).lower()
        summary = getattr(msg, "summary", None)
        if summary is not None and field in getattr(msg.folder, "indexedFields", ()):
            # Straight from the index entry: the first such field, as
            # getHeaders would give it, without building a dict per message.
            for fieldName, raw in summary.fields:
                if fieldName == field:
                    value = headerValueText(raw.split(b":", 1)[1] if b":" in raw else b"")
                    return _text(needle).lower() in _decodedHeader(value).lower()
            return False
        value = msg.getHeaders(False, field).get(field)
        if value is None:
            return False
        return _text(needle).lower() in _decodedHeader(_text(value)).lower()

    def search_BCC(self, query: list[Any], id: int, msg: Any) -> bool:
        return self._headerContains(msg, "bcc", query.pop(0))

    def search_CC(self, query: list[Any], id: int, msg: Any) -> bool:
        return self._headerContains(msg, "cc", query.pop(0))

    def search_FROM(self, query: list[Any], id: int, msg: Any) -> bool:
        return self._headerContains(msg, "from", query.pop(0))

    def search_TO(self, query: list[Any], id: int, msg: Any) -> bool:
        return self._headerContains(msg, "to", query.pop(0))

    def search_SUBJECT(self, query: list[Any], id: int, msg: Any) -> bool:
        return self._headerContains(msg, "subject", query.pop(0))

    def search_HEADER(self, query: list[Any], id: int, msg: Any) -> bool:
        name = query.pop(0)
        return self._headerContains(msg, name, query.pop(0))

    def search_BODY(self, query: list[Any], id: int, msg: Any) -> bool:
        return _fileContains(msg.getBodyFile(), _text(query.pop(0)).lower().encode("utf-8"))

    def search_TEXT(self, query: list[Any], id: int, msg: Any) -> bool:
        return _fileContains(msg.open(), _text(query.pop(0)).lower().encode("utf-8"))

    def search_KEYWORD(self, query: list[Any], id: int, msg: Any) -> bool:
        return _text(query.pop(0)) in msg.getFlags()

    def search_UNKEYWORD(self, query: list[Any], id: int, msg: Any) -> bool:
        return not self.search_KEYWORD(query, id, msg)

    # ------------------------------------------------------------- date keys

    def _internalDate(self, msg: Any) -> datetime.date:
        return email.utils.parsedate_to_datetime(msg.getInternalDate()).date()

    def _sentDate(self, msg: Any) -> Optional[datetime.date]:
        return _headerDate(msg.getHeaders(False, "date").get("date", ""))

    def search_BEFORE(self, query: list[Any], id: int, msg: Any) -> bool:
        return self._internalDate(msg) < _searchDate(query.pop(0))

    def search_ON(self, query: list[Any], id: int, msg: Any) -> bool:
        return self._internalDate(msg) == _searchDate(query.pop(0))

    def search_SINCE(self, query: list[Any], id: int, msg: Any) -> bool:
        return self._internalDate(msg) >= _searchDate(query.pop(0))

    def search_SENTBEFORE(self, query: list[Any], id: int, msg: Any) -> bool:
        sent, when = self._sentDate(msg), _searchDate(query.pop(0))
        return sent is not None and sent < when

    def search_SENTON(self, query: list[Any], id: int, msg: Any) -> bool:
        sent, when = self._sentDate(msg), _searchDate(query.pop(0))
        return sent is not None and sent == when

    def search_SENTSINCE(self, query: list[Any], id: int, msg: Any) -> bool:
        sent, when = self._sentDate(msg), _searchDate(query.pop(0))
        return sent is not None and sent >= when
