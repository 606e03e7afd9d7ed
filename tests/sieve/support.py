"""
Helpers for the Sieve tests: a sample message and one-call evaluation.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional, Union

from mailsrv.sieve import Action, Discard, MessageContext, evaluate, parseScript

HEADER = (
    b"Return-Path: <bob@example.org>\r\n"
    b"Received: from mx.example.org by mx.example.test; Tue, 2 Jan 2024 09:20:31 +0000\r\n"
    b"From: Bob Example <bob@example.org>\r\n"
    b"To: Alice <alice@example.test>, carol@example.net\r\n"
    b"Cc: dave+lists@example.com, undisclosed-recipients:;\r\n"
    b"Subject: [python-dev] Release\r\n"
    b" schedule\r\n"
    b"Date: Tue, 02 Jan 2024 10:20:30 +0100\r\n"
    b"Message-ID: <m1@example.org>\r\n"
    b"List-Id: Python development <python-dev.python.org>\r\n"
    b"X-Spam: Yes\r\n"
    b"X-Spam-Score: 7\r\n"
    b"X-Empty:\r\n"
    b"\r\n"
)

BODY = b"Hello Alice,\r\n\r\nthe release is on Friday.\r\n"

NOW = datetime(2024, 7, 3, 14, 5, 9, tzinfo=timezone.utc)


def makeHeader(*lines: Union[str, bytes]) -> bytes:
    """
    A header section from field lines (CRLF added, empty line at the end).
    """
    out = b""
    for line in lines:
        out += (line.encode("utf-8") if isinstance(line, str) else line) + b"\r\n"
    return out + b"\r\n"


def makeContext(
    header: bytes = HEADER,
    *,
    envelopeFrom: str = "bob@example.org",
    envelopeTo: str = "alice@example.test",
    originalRecipient: Optional[str] = None,
    size: Optional[int] = None,
    body: Optional[bytes] = BODY,
    now: Optional[datetime] = NOW,
    **kwargs: Any,
) -> MessageContext:
    return MessageContext(
        envelopeFrom=envelopeFrom,
        envelopeTo=envelopeTo,
        originalRecipient=originalRecipient if originalRecipient is not None else envelopeTo,
        header=header,
        size=size if size is not None else len(header) + len(body or b""),
        body=body,
        now=now,
        **kwargs,
    )


def run(source: str, header: bytes = HEADER, **kwargs: Any) -> list[Action]:
    """
    Compile C{source} and run it on a message.
    """
    maxActions = kwargs.pop("maxActions", 32)
    maxRedirects = kwargs.pop("maxRedirects", 4)
    return evaluate(
        parseScript(source), makeContext(header, **kwargs), maxActions=maxActions, maxRedirects=maxRedirects
    )


def holds(test: str, require: str = "", header: bytes = HEADER, **kwargs: Any) -> bool:
    """
    Whether a test is true for a message (the script discards when it is).
    """
    prefix = f"require [{require}];\n" if require else ""
    actions = run(f'{prefix}if {test} {{ discard; }}', header, **kwargs)
    return any(isinstance(action, Discard) for action in actions)
