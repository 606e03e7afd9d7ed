# -*- test-case-name: tests.queue.test_stuffing -*-
"""
Streaming SMTP transparency (RFC 5321 section 4.5.2) for outgoing DATA.

Twisted's C{SMTPClient.transformChunk} stuffs each 16 KiB chunk on its own,
so a line starting with C{.} right after a chunk boundary (or at the very
start) is not stuffed, and a lone C{.} line there ends DATA early: the rest
of the message would be read by the server as commands.  L{DotStuffer}
keeps its state across chunks instead.

Input: the message bytes as stored, in any chunking.  Output: the same
message with every line ending as CRLF (a bare CR or bare LF becomes CRLF,
so the peer never sees one: they are what SMTP smuggling is made of) and
every line that starts with C{.} given one more.  L{DotStuffer.finish}
closes the last line and adds the terminating C{.CRLF}.
"""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r\n|\r|\n")


class DotStuffer:
    """
    @ivar _atLineStart: the next byte begins a line.
    @ivar _pendingCR: the previous chunk ended in CR, whose meaning (CRLF or
        bare CR) depends on the next byte.
    """

    def __init__(self) -> None:
        self._atLineStart = True
        self._pendingCR = False

    def feed(self, data: bytes) -> bytes:
        """
        Transform the next chunk; returns bytes ready for the wire (possibly
        empty).
        """
        if not data:
            return b""
        out = b""
        if self._pendingCR:
            self._pendingCR = False
            if data.startswith(b"\n"):
                data = data[1:]
            out = b"\r\n"
            self._atLineStart = True
        if data.endswith(b"\r"):
            self._pendingCR = True
            data = data[:-1]
        if not data:
            return out
        data = _LINE_END.sub(b"\r\n", data).replace(b"\r\n.", b"\r\n..")
        if self._atLineStart and data.startswith(b"."):
            data = b"." + data
        self._atLineStart = data.endswith(b"\r\n")
        return out + data

    def finish(self) -> bytes:
        """
        The end of the data: a final line ending if the message lacked one,
        then C{.CRLF}.
        """
        out = b""
        if self._pendingCR:
            self._pendingCR = False
            out = b"\r\n"
        elif not self._atLineStart:
            out = b"\r\n"
        self._atLineStart = True
        return out + b".\r\n"


def stuff(message: bytes) -> bytes:
    """
    The whole transformation at once (for small messages and tests).
    """
    s = DotStuffer()
    return s.feed(message) + s.finish()
