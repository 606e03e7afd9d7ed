# -*- test-case-name: tests.sieve.test_parser -*-
"""
The encoded-character extension (RFC 5228 section 2.4.2.4): C{${hex:...}}
and C{${unicode:...}} sequences in strings, decoded when the script is
compiled.

A sequence that does not follow the syntax is left as it is, as the RFC
says; one that follows it but names something that is not a character (a
surrogate, a value above U+10FFFF, octets that are not UTF-8) is an error.
"""

from __future__ import annotations

import re

_SEQUENCE = re.compile(r"\$\{(hex|unicode):([^}]*)\}", re.IGNORECASE)
_HEX_PAIRS = re.compile(r"[ \t\r\n]*[0-9A-Fa-f]{1,2}(?:[ \t\r\n]+[0-9A-Fa-f]{1,2})*[ \t\r\n]*")
_UNICODE_VALUES = re.compile(r"[ \t\r\n]*[0-9A-Fa-f]+(?:[ \t\r\n]+[0-9A-Fa-f]+)*[ \t\r\n]*")


def decodeEncodedCharacters(text: str) -> str:
    """
    Replace the encoded-character sequences in a string.

    @raise ValueError: with a message for the script's author, when a
        sequence is well-formed but does not give characters.
    """
    if "${" not in text:
        return text
    out = bytearray()
    pos = 0
    for match in _SEQUENCE.finditer(text):
        kind, content = match.group(1).lower(), match.group(2)
        if kind == "hex":
            if not _HEX_PAIRS.fullmatch(content):
                continue
            out += text[pos : match.start()].encode("utf-8", "surrogatepass")
            out += bytes(int(pair, 16) for pair in content.split())
        else:
            if not _UNICODE_VALUES.fullmatch(content):
                continue
            chars = []
            for value in content.split():
                code = int(value, 16)
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    raise ValueError(f"${{unicode:{value}}} is not a Unicode character")
                chars.append(chr(code))
            out += text[pos : match.start()].encode("utf-8", "surrogatepass")
            out += "".join(chars).encode("utf-8")
        pos = match.end()
    if pos == 0:
        return text
    out += text[pos:].encode("utf-8", "surrogatepass")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("${hex:...} does not give valid UTF-8") from None
