"""
Raw-mode DATA: whatever the read boundaries, the receiver returns exactly
the message that was dot-stuffed, and finds the end once.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsrv.protocols.smtp.data import DataReceiver


def stuff(message: bytes) -> bytes:
    """
    What a correct client sends for C{message} (CRLF lines).
    """
    lines = message.split(b"\r\n")[:-1]
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


lineText = st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"x").replace(b"\n", b"y"))
messages = st.lists(st.one_of(lineText, st.sampled_from([b".", b"..", b".x", b""])), max_size=40).map(
    lambda lines: b"".join(line + b"\r\n" for line in lines)
)


@settings(max_examples=300, deadline=None)
@given(messages, st.lists(st.integers(min_value=1, max_value=70), max_size=50), st.binary(max_size=20))
def test_roundtrip_any_split(message: bytes, cuts: list[int], trailer: bytes) -> None:
    """
    Splitting the stuffed stream anywhere gives back the message and the
    bytes after the end of data, with no bare newline reported.
    """
    wire = stuff(message) + trailer
    out: list[bytes] = []
    receiver = DataReceiver(out.append)
    rest = b""
    pos = 0
    for cut in cuts + [len(wire)]:
        if receiver.done:
            break
        piece = wire[pos : pos + cut]
        pos += len(piece)
        rest = receiver.feed(piece)
    if not receiver.done:
        rest = receiver.feed(wire[pos:])
        pos = len(wire)
    assert receiver.done
    assert b"".join(out) == message
    assert rest + wire[pos:] == trailer
    assert not receiver.bareNewline
    assert receiver.size == len(message)


@settings(max_examples=200, deadline=None)
@given(messages, st.integers(min_value=0, max_value=2000), st.sampled_from([b"\n", b"\r"]))
def test_bare_newline_always_detected(message: bytes, where: int, bare: bytes) -> None:
    """
    A bare LF or CR inserted anywhere into a message line is reported.
    """
    wire = stuff(message)
    body = wire[: -3]
    # insert at a position that is not next to a CRLF pair
    candidates = [i for i in range(len(body) + 1)
                  if body[i - 1 : i] not in (b"\r",) and body[i : i + 1] not in (b"\n",)]
    if not candidates:
        return
    i = candidates[where % len(candidates)]
    tainted = body[:i] + bare + body[i:] + b".\r\n"
    receiver = DataReceiver(lambda data: None)
    for start in range(0, len(tainted), 7):
        if receiver.done:
            break
        receiver.feed(tainted[start : start + 7])
    assert receiver.bareNewline
