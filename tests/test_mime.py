"""
L{mailsrv.mime}: the MIME structure read line by line agrees with Python's
C{email} package on a corpus of varied messages (part tree, types,
parameters, the exact body bytes of every part, line counts), survives its
serialised form, and reads files in bounded pieces.
"""

from __future__ import annotations

import email
import email.message
import email.utils
import io
import urllib.parse
from email.policy import compat32
from typing import Any

import pytest

from mailsrv.mime import MAX_DEPTH, MimePart, parseParameters, parseStructure
from mailsrv.testing.mimecorpus import corpus

CORPUS = corpus()


def _lines(body: bytes) -> int:
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def _payloadBytes(part: email.message.Message) -> bytes:
    # The raw payload: get_payload() would decode 8-bit text by its charset.
    payload = part._payload  # type: ignore[attr-defined]
    assert isinstance(payload, str)
    return payload.encode("ascii", "surrogateescape")


def _emailParams(part: email.message.Message) -> dict[str, str]:
    """
    The stdlib's view of the Content-Type parameters, RFC 2231 decoded.
    """
    if part.get("content-type") is None:
        return {}
    result = {}
    for name, value in (part.get_params() or [])[1:]:
        text = email.utils.collapse_rfc2231_value(value)
        if "\ufffd" in text:
            continue  # raw 8-bit: the stdlib garbles it (see test_parameters)
        result[name.lower()] = text
    return result


def _ourParams(part: MimePart) -> dict[str, str]:
    result = {}
    for name, value in part.contentType()[2]:
        if name.endswith("*"):
            charset, _, rest = value.partition("'")
            _, _, encoded = rest.partition("'")
            result[name[:-1]] = urllib.parse.unquote(encoded, encoding=charset or "ascii")
        else:
            result[name] = value
    return result


def compare(ours: MimePart, theirs: email.message.Message, data: bytes, path: str) -> None:
    """
    Walk both trees together; C{data} is the whole message.
    """
    major, minor, _ = ours.contentType()
    assert f"{major}/{minor}".lower() == theirs.get_content_type(), path
    if theirs.get("content-type") is not None or ours.field("content-type") is not None:
        expected = _emailParams(theirs)
        assert {k: v for k, v in _ourParams(ours).items() if k in expected} == expected, path
    body = data[ours.bodyOffset : ours.bodyOffset + ours.bodySize]
    assert ours.bodyLines == _lines(body), path
    if theirs.is_multipart():
        children = theirs.get_payload()
        assert isinstance(children, list)
        assert len(ours.children) == len(children), path
        for i, (a, b) in enumerate(zip(ours.children, children)):
            compare(a, b, data, f"{path}.{i + 1}")
    else:
        assert not ours.children, path
        assert body == _payloadBytes(theirs), path


@pytest.mark.parametrize("name,data", CORPUS, ids=[name for name, _ in CORPUS])
def test_agreesWithEmailPackage(name: str, data: bytes) -> None:
    """
    Every part of every corpus message: same type, same parameters, same
    body bytes (offsets and sizes into the file), line counts of those
    bytes.
    """
    structure = parseStructure(io.BytesIO(data))
    theirs = email.message_from_bytes(data, policy=compat32)
    assert structure.offset == 0
    assert structure.headerSize + structure.bodySize == len(data)
    compare(structure, theirs, data, name)


@pytest.mark.parametrize("name,data", CORPUS, ids=[name for name, _ in CORPUS])
def test_serialisedRoundTrip(name: str, data: bytes) -> None:
    structure = parseStructure(io.BytesIO(data))
    import json

    again = MimePart.fromData(json.loads(json.dumps(structure.toData())))
    assert again == structure


def test_partHeaders() -> None:
    """
    Offsets point at each part's header; the kept fields are the Content-*
    ones (plus the envelope fields of an encapsulated message).
    """
    data = dict(CORPUS)["nested-multipart"]
    root = parseStructure(io.BytesIO(data))
    image = root.children[1]
    header = data[image.offset : image.offset + image.headerSize]
    assert header.startswith(b"Content-Type: image/png") and header.endswith(b"\r\n\r\n")
    assert image.field("content-id") == b"<pic@example.test>"
    assert image.field("content-disposition") == b'inline; filename="pic.png"'
    inner = parseStructure(io.BytesIO(dict(CORPUS)["message-rfc822-top"])).children[0]
    assert inner.field("subject") == b"Inside"
    assert [c.contentType()[:2] for c in inner.children] == [("text", "plain")]


def test_parameters() -> None:
    assert parseParameters('text/plain; charset="utf-8"; Format=flowed') == (
        "text/plain",
        [("charset", "utf-8"), ("format", "flowed")],
    )
    assert parseParameters('attachment; filename="a;b \\"c\\".txt"') == (
        "attachment",
        [("filename", 'a;b "c".txt')],
    )
    assert parseParameters("x/y; a*0=one; a*1=two") == ("x/y", [("a", "onetwo")])
    assert parseParameters("x/y; a*0*=utf-8''%C3; a*1*=%A9") == ("x/y", [("a*", "utf-8''%C3%A9")])
    assert parseParameters("x/y; a=1; a=2; junk; =x") == ("x/y", [("a", "1")])
    # Raw UTF-8 in a value (no RFC 2231) is kept as UTF-8.
    assert parseParameters('text/plain; name="caf\udcc3\udca9.txt"'.encode("utf-8", "surrogateescape").decode("utf-8")) == (
        "text/plain",
        [("name", "café.txt")],
    )
    # RFC 822 comments outside quotes are not part of names or values.
    assert parseParameters("text/plain; (note) format=flowed (why)") == ("text/plain", [("format", "flowed")])


def test_readsInBoundedPieces() -> None:
    """
    The parser never asks for more than 64 KiB at a time, whatever the
    line lengths.
    """
    data = dict(CORPUS)["long-line"]
    sizes: list[int] = []

    class Recording(io.BytesIO):
        def readline(self, size: Any = -1) -> bytes:  # type: ignore[override]
            sizes.append(size)
            return super().readline(size)

    parseStructure(Recording(data))
    assert sizes and all(0 < s <= 64 * 1024 for s in sizes)


def test_deepNestingBounded() -> None:
    """
    Nesting beyond L{MAX_DEPTH} is not followed (no recursion error).
    """
    depth = MAX_DEPTH + 50
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth)
    )
    data = head + b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    root = parseStructure(io.BytesIO(data))
    levels = 0
    part = root
    while part.children:
        part = part.children[0]
        levels += 1
    assert levels == MAX_DEPTH
