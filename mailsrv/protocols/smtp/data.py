# -*- test-case-name: tests.security.test_smtp_smuggling -*-
"""
The DATA phase in raw mode: find the end of data, undo dot-stuffing and
detect bare CR or LF, a block of lines at a time instead of one Python call
per line.

Only C{CRLF . CRLF} ends the data.  A bare LF or bare CR anywhere in the data
taints the message: it is consumed to the real end and then refused, so no
published SMTP smuggling variant (C{LF . LF}, C{CR . CR}, C{LF . CRLF}...)
can end one message and start another, and nothing with ambiguous line ends
is stored (Postfix C{smtpd_forbid_bare_newline}).
"""

from __future__ import annotations

from typing import Callable

_EOD = b"\r\n.\r\n"

# A line without LF longer than this is passed on in pieces, so memory stays
# bounded whatever the client sends.
MAX_PENDING = 64 * 1024


class DataReceiver:
    """
    Consumes DATA bytes and calls C{write} with the unstuffed message bytes
    (CRLF lines, exactly as they will be stored).

    @ivar done: set when the end of data has been seen.
    @ivar bareNewline: set when a bare CR or LF was seen.
    @ivar size: octets of message data (after unstuffing).
    """

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._pending = b""
        self._atLineStart = True
        self.done = False
        self.bareNewline = False
        self.size = 0

    def feed(self, data: bytes) -> bytes:
        """
        Consume C{data}; return the bytes that follow the end of data (the
        next pipelined commands), or C{b""} while the data goes on.
        """
        buf = self._pending + data if self._pending else data
        end = buf.rfind(b"\n")
        if end < 0:
            self._pending = buf
            if len(buf) > MAX_PENDING:
                self._flushPartialLine()
            return b""
        # Work on whole lines only: then a CRLF is never split between two
        # blocks, and the line-start state is exact.
        block, self._pending = buf[: end + 1], buf[end + 1 :]
        framed = b"\r\n" + block if self._atLineStart else block
        eod = framed.find(_EOD)
        if eod >= 0:
            # framed[:eod + 2] is the data up to and including the last CRLF.
            body = framed[: eod + 2]
            rest = framed[eod + len(_EOD) :] + self._pending
            self._pending = b""
            self._emit(body, self._atLineStart)
            self.done = True
            return rest
        self._emit(framed, self._atLineStart)
        self._atLineStart = True
        return b""

    def _emit(self, framed: bytes, framedAtStart: bool) -> None:
        """
        Unstuff and pass on C{framed}, which starts with the C{CRLF} we
        prepended when the block began at a line start.
        """
        if framed.count(b"\n") != framed.count(b"\r\n") or framed.count(b"\r") != framed.count(b"\r\n"):
            self.bareNewline = True
        out = framed.replace(b"\r\n.", b"\r\n")
        if framedAtStart:
            out = out[2:]
        if out:
            self.size += len(out)
            self._write(out)

    def _flushPartialLine(self) -> None:
        """
        Pass on most of an over-long line that has no LF yet, keeping the
        last byte (a CR that may pair with the next LF).
        """
        chunk, self._pending = self._pending[:-1], self._pending[-1:]
        if self._atLineStart:
            if chunk.startswith(b"."):
                chunk = chunk[1:]
            self._atLineStart = False
        if b"\n" in chunk or b"\r" in chunk:
            self.bareNewline = True
        self.size += len(chunk)
        self._write(chunk)


class ChunkReceiver:
    """
    Consumes BDAT chunks (RFC 3030): raw octets, no dot-stuffing, the end
    given by the client's LAST.  Bare CR and LF are tracked across chunk
    boundaries with the same policy as DATA, so CHUNKING is no way around
    it.

    Same attributes as L{DataReceiver}: C{done}, C{bareNewline}, C{size}.
    """

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._pendingCR = False
        self.done = False
        self.bareNewline = False
        self.size = 0

    def feed(self, data: bytes) -> None:
        if not data:
            return
        joinedLF = 0
        if self._pendingCR:
            if data.startswith(b"\n"):
                joinedLF = 1
            else:
                self.bareNewline = True
        crlf = data.count(b"\r\n")
        trailingCR = 1 if data.endswith(b"\r") else 0
        if data.count(b"\n") - crlf - joinedLF or data.count(b"\r") - crlf - trailingCR:
            self.bareNewline = True
        self._pendingCR = bool(trailingCR)
        self.size += len(data)
        self._write(data)

    def finish(self) -> None:
        if self._pendingCR:
            self.bareNewline = True
        self.done = True
