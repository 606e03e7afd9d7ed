# -*- test-case-name: tests.sieve.test_interpreter -*-
"""
The body test's view of a message (RFC 5173 section 5).

C{:raw} is the body as received.  C{:text} is the text of every text part
(C{text/*}, including those of attached messages), with its transfer
encoding and charset decoded; other parts are left out.  C{:content}
selects leaf parts by type (C{""} every part, C{"text"} every C{text/*},
C{"text/html"} just that type): text parts are decoded as for C{:text},
others have their transfer encoding decoded and are read as UTF-8.
Multipart preambles and epilogues are never compared.
"""

from __future__ import annotations

import email.message
import email.parser
from email.policy import compat32
from typing import Sequence

#: Parts after this many are ignored.
MAX_PARTS = 256


def _partText(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "us-ascii"
    if charset in ("us-ascii", "ascii"):
        # Unlabelled 8-bit text is far more often UTF-8 than not.
        charset = "utf-8"
    try:
        return payload.decode(charset, "replace")
    except Exception:
        return payload.decode("utf-8", "replace")


def _typeMatches(contentType: str, wanted: Sequence[str]) -> bool:
    major = contentType.split("/", 1)[0]
    for item in wanted:
        item = item.strip().lower()
        if not item or item == contentType or ("/" not in item and item == major):
            return True
    return False


def bodyTexts(header: bytes, body: bytes, transform: str, contentTypes: Sequence[str] = ()) -> list[str]:
    """
    The texts a body test compares its keys against.

    @param transform: C{raw}, C{text} or C{content}.
    @param contentTypes: for C{content}, the wanted types.
    """
    if transform == "raw":
        return [body.decode("utf-8", "replace")]
    if not header.endswith((b"\n\n", b"\r\n\r\n")):
        # Without its empty line the body would be read as more header.
        header = header.rstrip(b"\r\n")
        header = header + b"\r\n\r\n" if header else b"\r\n"
    try:
        message = email.parser.BytesParser(policy=compat32).parsebytes(header + body)
        parts = list(message.walk())[:MAX_PARTS]
    except Exception:
        return [body.decode("utf-8", "replace")] if transform == "text" else []
    texts = []
    for part in parts:
        if part.is_multipart():
            continue
        contentType = part.get_content_type().lower()
        if transform == "text":
            if contentType.startswith("text/"):
                texts.append(_partText(part))
        elif _typeMatches(contentType, contentTypes):
            if contentType.startswith("text/"):
                texts.append(_partText(part))
            else:
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    texts.append(payload.decode("utf-8", "replace"))
    return texts
