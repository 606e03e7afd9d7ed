# -*- test-case-name: tests.protocols.test_imap_bodystructure -*-
"""
BODY and BODYSTRUCTURE (RFC 3501 section 7.4.2) from a L{MimePart} tree
(L{mailsrv.mime}): the message is never parsed into memory, and the tree
comes from the folder index when it has one.

What differs from Twisted's C{getBodyStructure}, which mailsrv used before:

 - parameters are parsed with quoted strings (a C{;} inside quotes does not
   split them), their values keep their case (Twisted lower-cased the
   values, file names included), they stay in message order, and RFC 2231
   continuations are joined (C{name*} stays encoded, as Dovecot sends it);
 - the disposition's parameters are unquoted (Twisted sent the quotes);
 - C{Content-Location} is reported (Twisted asked for C{Content-Language}
   twice); several languages are a list;
 - a C{message/rfc822} part's line count is that of the whole encapsulated
   message (RFC 3501), and its BODYSTRUCTURE is extended too;
 - parts of a C{multipart/digest} default to C{message/rfc822}
   (RFC 2046 section 5.1.5);
 - 8-bit parameter values go out as literals, not as invalid quoted
   strings.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from mailsrv.mime import MimePart, parseParameters
from mailsrv.protocols.imap.message import headerValueText


class _Literal:
    """
    A string Twisted's C{collapseNestedLists} sends as a literal (it calls
    C{read} on anything that has it).
    """

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        return self._data


IMAPString = Union[str, _Literal]


def _string(value: str) -> IMAPString:
    if value.isascii() and "\r" not in value and "\n" not in value:
        return value
    return _Literal(value.encode("utf-8", "surrogateescape"))


def _fieldText(part: MimePart, name: str) -> Optional[str]:
    raw = part.field(name)
    if raw is None or not raw:
        return None
    return headerValueText(raw)


def _parameters(params: list[tuple[str, str]]) -> Optional[list[IMAPString]]:
    flat: list[IMAPString] = []
    for name, value in params:
        flat.append(_string(name))
        flat.append(_string(value))
    return flat or None


def _disposition(part: MimePart) -> Optional[list[Any]]:
    raw = part.field("content-disposition")
    if not raw:
        return None
    value, params = parseParameters(raw.decode("utf-8", "surrogateescape"))
    if not value:
        return None
    return [_string(value.lower()), _parameters(params)]


def _language(part: MimePart) -> Union[None, str, list[str]]:
    text = _fieldText(part, "content-language")
    if text is None:
        return None
    tags = [t.strip() for t in text.split(",") if t.strip()]
    if len(tags) == 1:
        return tags[0]
    return tags or None


class _Headers:
    """
    The C{getHeaders} of an encapsulated message, from its kept fields,
    for the ENVELOPE builder.
    """

    def __init__(self, part: MimePart) -> None:
        self._part = part

    def getHeaders(self, negate: bool, *names: str) -> dict[str, str]:
        result: dict[str, str] = {}
        for name in names:
            key = name.lower()
            raw = self._part.field(key)
            if raw is not None and key not in result:
                result[key] = headerValueText(raw)
        return result


def bodyStructure(part: MimePart, extended: bool) -> list[Any]:
    """
    The BODYSTRUCTURE (C{extended}) or BODY of C{part}, as the nested lists
    Twisted's C{collapseNestedLists} serialises.
    """
    major, minor, params = part.contentType()
    if major.lower() == "multipart" and part.children:
        result: list[Any] = [bodyStructure(child, extended) for child in part.children]
        result.append(_string(minor))
        if extended:
            result.extend(
                [
                    _parameters(params),
                    _disposition(part),
                    _language(part),
                    _fieldText(part, "content-location"),
                ]
            )
        return result
    result = [
        _string(major),
        _string(minor),
        _parameters(params),
        _fieldText(part, "content-id"),
        _fieldText(part, "content-description"),
        _fieldText(part, "content-transfer-encoding") or "7BIT",
        part.bodySize,
    ]
    if part.isMessage() and part.children:
        from mailsrv.protocols.imap.fetch import envelope

        inner = part.children[0]
        result.extend([envelope(_Headers(inner)), bodyStructure(inner, extended), part.bodyLines])
    elif major.lower() == "text":
        result.append(part.bodyLines)
    if extended:
        result.extend(
            [
                _fieldText(part, "content-md5"),
                _disposition(part),
                _language(part),
                _fieldText(part, "content-location"),
            ]
        )
    return result
