"""
Dot-stuffing and CRLF normalisation of outgoing DATA, under any chunking.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsrv.protocols.smtp.data import DataReceiver
from mailsrv.queue.stuffing import DotStuffer, stuff


def reference(message: bytes) -> bytes:
    """
    The expected wire form, computed on the whole message at once.
    """
    text = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    if text and not text.endswith(b"\r\n"):
        text += b"\r\n"
    lines = text.split(b"\r\n")[:-1] if text else []
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


def chunked(message: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(message) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(message[last:p])
        last = p
    pieces.append(message[last:])
    return pieces


# Messages made of the bytes that matter, so lines starting with "." and
# CR/LF at chunk boundaries come up often.
messages = st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b"..", b"\r\n.\r\n", b"x" * 5]), max_size=60).map(
    b"".join
)


@settings(max_examples=500)
@given(messages, st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_chunking_matches_reference(message: bytes, cuts: list[int]) -> None:
    """
    However the message is split into chunks, the output equals the
    whole-message reference transformation.
    """
    stuffer = DotStuffer()
    out = b"".join(stuffer.feed(piece) for piece in chunked(message, cuts)) + stuffer.finish()
    assert out == reference(message)


@settings(max_examples=300)
@given(messages, st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_single_terminator_and_round_trip(message: bytes, cuts: list[int]) -> None:
    """
    The output contains no bare CR or LF, ends DATA exactly once at its
    very end, and a receiving server's DATA reader gives back the message
    with its line endings normalised.
    """
    stuffer = DotStuffer()
    out = b"".join(stuffer.feed(piece) for piece in chunked(message, cuts)) + stuffer.finish()
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", out) is None
    assert (b"\r\n" + out).find(b"\r\n.\r\n") == len(out) - 3
    received: list[bytes] = []
    reader = DataReceiver(received.append)
    rest = reader.feed(out)
    assert reader.done and rest == b"" and not reader.bareNewline
    normalised = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    if normalised and not normalised.endswith(b"\r\n"):
        normalised += b"\r\n"
    assert b"".join(received) == normalised


def test_leading_dot_and_boundary() -> None:
    """
    The cases Twisted's per-chunk stuffing gets wrong: a dot at the very
    start, a dot line right after a chunk boundary, and CRLF split across
    chunks (which must not become CR CR LF).
    """
    stuffer = DotStuffer()
    out = stuffer.feed(b".start\r") + stuffer.feed(b"\n.\r\n") + stuffer.feed(b"end") + stuffer.finish()
    assert out == b"..start\r\n..\r\nend\r\n.\r\n"
    assert stuff(b"") == b".\r\n"
