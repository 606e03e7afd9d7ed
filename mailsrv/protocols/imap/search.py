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

Evaluation is synchronous over the selected mailbox; BODY and TEXT read the
messages in 64 KiB chunks.  A later issue adds an index
(C{ISearchableMailbox}) for large folders.
"""

from __future__ import annotations

import copy
import datetime
import email.header
import email.utils
from typing import TYPE_CHECKING, Any, BinaryIO, Optional

from twisted.mail.imap4 import IllegalIdentifierError, IllegalQueryError, IMAP4Server, parseIdList

if TYPE_CHECKING:
    from twisted.logger import Logger

_CHUNK = 64 * 1024


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _decodedHeader(value: str) -> str:
    """
    A header value with RFC 2047 encoded words decoded, so that SUBJECT
    finds words a client sees, whatever the sender's encoding.
    """
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (LookupError, ValueError, UnicodeError):
        return value


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

    def do_SEARCH(self, tag: bytes, charset: Optional[bytes], query: list[Any], uid: int = 0) -> None:
        if charset is not None and charset.upper() not in (b"US-ASCII", b"UTF-8"):
            self.sendNegativeResponse(tag, b"[BADCHARSET (US-ASCII UTF-8)] Unsupported charset")  # type: ignore[attr-defined]
            return
        messages = self.mbox.fetch(parseIdList(b"1:*"), False)
        lastSeq = messages[-1][0] if messages else 0
        lastUid = messages[-1][1].getUID() if messages else 0
        found = []
        try:
            for seq, msg in messages:
                if self._searchFilter(copy.deepcopy(query), seq, msg, lastSeq, lastUid):  # type: ignore[attr-defined]
                    found.append(b"%d" % (msg.getUID() if uid else seq,))
        except (IllegalQueryError, IllegalIdentifierError, ValueError, IndexError, TypeError) as e:
            # The client's mistake: no traceback in the log.
            self.log.debug("Bad SEARCH query {query!r}: {problem}", query=query, problem=str(e))
            self.sendBadResponse(tag, b"Invalid search query")  # type: ignore[attr-defined]
            return
        self.sendUntaggedResponse(b" ".join([b"SEARCH"] + found))  # type: ignore[attr-defined]
        self.sendPositiveResponse(tag, b"SEARCH completed")  # type: ignore[attr-defined]

    select_SEARCH = (do_SEARCH, IMAP4Server.opt_charset, IMAP4Server.arg_searchkeys)

    # ------------------------------------------------------------- text keys

    def _headerContains(self, msg: Any, name: Any, needle: Any) -> bool:
        field = _text(name).lower()
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
