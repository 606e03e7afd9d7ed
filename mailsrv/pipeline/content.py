# -*- test-case-name: tests.test_pipeline -*-
"""
A received message kept in a spool file while filters and modifiers look
at it, with its header section editable in memory.

Only the header section is ever held in memory (bounded by
L{MAX_HEADER_BLOCK}); the body stays in the spool file and is streamed.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from zope.interface import implementer

from mailsrv.interfaces import HeaderEdit, IMessageContent

# A header section larger than this is treated as ending there: the rest is
# body as far as filters and modifiers are concerned.
MAX_HEADER_BLOCK = 1024 * 1024

# Keep small messages in memory; larger ones go to disk.
SPOOL_MEMORY = 256 * 1024

COPY_CHUNK = 64 * 1024


def splitFields(headerBlock: bytes) -> list[bytes]:
    """
    Split a header section (CRLF lines) into fields, each with its
    continuation lines and final CRLF.
    """
    fields: list[bytes] = []
    for line in headerBlock.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def fieldName(field: bytes) -> str:
    return field.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


def encodeField(field: str) -> bytes:
    """
    A header field given as text (possibly folded with LF or CRLF) as CRLF
    bytes.
    """
    return ("\r\n".join(field.replace("\r\n", "\n").split("\n")) + "\r\n").encode("utf-8")


def applyEdit(headerBlock: bytes, edit: HeaderEdit) -> bytes:
    fields = splitFields(headerBlock)
    if edit.remove is not None:
        remove = edit.remove
        fields = [f for f in fields if not remove(fieldName(f), f)]
    return (
        b"".join(encodeField(f) for f in edit.prepend)
        + b"".join(fields)
        + b"".join(encodeField(f) for f in edit.append)
    )


@implementer(IMessageContent)
class SpooledMessage:
    """
    The message as received, in a spool file, plus the current header
    section.

    @ivar headerBlock: the header section, CRLF lines, no separator line.
    @ivar bodyOffset: where the body starts in the spool file.
    """

    def __init__(self, spoolDir: Optional[Path] = None) -> None:
        self._spool: BinaryIO = tempfile.SpooledTemporaryFile(  # type: ignore[assignment]
            max_size=SPOOL_MEMORY, dir=str(spoolDir) if spoolDir else None
        )
        self._received = 0
        self.headerBlock = b""
        self.bodyOffset = 0
        self._hasSeparator = False

    def write(self, data: bytes) -> None:
        self._spool.write(data)
        self._received += len(data)

    def finish(self) -> None:
        """
        Find the end of the header section after the last write.
        """
        self._spool.seek(0)
        head = self._spool.read(MAX_HEADER_BLOCK + 4)
        if head.startswith(b"\r\n"):
            self.headerBlock, self.bodyOffset, self._hasSeparator = b"", 2, True
            return
        end = head.find(b"\r\n\r\n")
        if end >= 0:
            self.headerBlock = head[: end + 2]
            self.bodyOffset = end + 4
            self._hasSeparator = True
        elif len(head) <= MAX_HEADER_BLOCK:
            # Headers only, no body.
            self.headerBlock = head if head.endswith(b"\r\n") or not head else head + b"\r\n"
            self.bodyOffset = len(head)
        else:
            self.headerBlock = b""
            self.bodyOffset = 0

    @property
    def size(self) -> int:
        return len(self.headerBlock) + (2 if self._hasSeparator else 0) + (self._received - self.bodyOffset)

    def headers(self) -> email.message.Message:
        return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(self.headerBlock)

    def apply(self, edit: HeaderEdit) -> None:
        self.headerBlock = applyEdit(self.headerBlock, edit)

    def chunks(self) -> Iterator[bytes]:
        """
        The current message: header section, separator, body.
        """
        yield self.headerBlock
        if self._hasSeparator:
            yield b"\r\n"
        self._spool.seek(self.bodyOffset)
        while True:
            chunk = self._spool.read(COPY_CHUNK)
            if not chunk:
                return
            yield chunk

    def bodyPrefix(self, limit: int) -> bytes:
        """
        The first C{limit} octets of the body.
        """
        self._spool.seek(self.bodyOffset)
        return self._spool.read(limit)

    def open(self) -> BinaryIO:
        out = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
        for chunk in self.chunks():
            out.write(chunk)
        out.seek(0)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self._spool.close()
