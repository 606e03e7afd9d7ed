# -*- test-case-name: tests.sieve.test_variables -*-
"""
The variables extension (RFC 5229): C{${name}} and C{${0}}...C{${9}} in
strings, and the modifiers of the C{set} command.

Strings that contain references are compiled into L{Template}s, so that a
script's other strings cost nothing at run time.  Names are case-insensitive
and kept in lower case.  A reference to a variable that was never set gives
the empty string; text that only looks like a reference (C{${}}, C{${a-b}})
stays as it is.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Sequence, Union

from mailsrv.sieve.regex import quoteRegex

#: A variable's value is cut to this many characters (RFC 5229 section 5
#: allows truncation; it asks for at least 4000).
MAX_VARIABLE_LENGTH = 64 * 1024

#: An expanded string is cut to this many characters: a string of many
#: references to a long variable must not be able to take gigabytes.
MAX_EXPANSION = 256 * 1024

#: A script may use at most this many distinct variables.
MAX_VARIABLES = 256

#: The set modifiers and their precedence (RFC 5229 section 4.1; the regex
#: draft adds :quoteregex beside :quotewildcard).  Higher goes first; two
#: of the same precedence may not be combined.
MODIFIER_PRECEDENCE = {
    "lower": 40,
    "upper": 40,
    "lowerfirst": 30,
    "upperfirst": 30,
    "quotewildcard": 20,
    "quoteregex": 20,
    "length": 10,
}

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)((?:\.[A-Za-z0-9_]+)*)\}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclasses.dataclass(frozen=True)
class Reference:
    """
    A variable reference: C{name} is a lower-case identifier, or C{index}
    is the number of a match variable (and C{name} is empty).
    """

    name: str
    index: int = -1


@dataclasses.dataclass(frozen=True)
class Template:
    """
    A string with variable references, expanded at run time.

    @ivar parts: literal text and L{Reference}s, in order.
    @ivar source: the string as written (after encoded-character decoding).
    """

    parts: tuple[Union[str, Reference], ...]
    source: str

    def expand(self, variables: Mapping[str, str], matches: Sequence[str]) -> str:
        """
        The string with each reference replaced by its value.

        @param variables: the script's variables (lower-case names).
        @param matches: the match variables of the last successful
            C{:matches} or C{:regex}, C{${0}} first.
        """
        pieces = []
        length = 0
        for part in self.parts:
            if isinstance(part, str):
                piece = part
            elif part.index >= 0:
                piece = matches[part.index] if part.index < len(matches) else ""
            else:
                piece = variables.get(part.name, "")
            pieces.append(piece)
            length += len(piece)
            if length >= MAX_EXPANSION:
                return "".join(pieces)[:MAX_EXPANSION]
        return "".join(pieces)


def isVariableName(name: str) -> bool:
    """
    Whether C{name} may be set (an identifier: not a number, no namespace).
    """
    return _IDENTIFIER.fullmatch(name) is not None


def compileTemplate(text: str) -> Union[str, Template]:
    """
    C{text} itself when it has no variable references, else a L{Template}.

    @raise ValueError: for a reference with a namespace (C{${a.b}}): no
        namespace extension is supported, and RFC 5229 section 3 makes
        such a reference an error.
    """
    if "${" not in text:
        return text
    parts: list[Union[str, Reference]] = []
    pos = 0
    for match in _REFERENCE.finditer(text):
        name, namespace = match.groups()
        if namespace:
            raise ValueError(f"unknown variable namespace in {match.group()}")
        if match.start() > pos:
            parts.append(text[pos : match.start()])
        if name.isdigit():
            digits = name.lstrip("0") or "0"
            # Only ${0} to ${9} are ever set; a huge number is just unset.
            parts.append(Reference("", int(digits) if len(digits) <= 6 else 10**6))
        else:
            parts.append(Reference(name.lower()))
        pos = match.end()
    if not any(isinstance(part, Reference) for part in parts):
        return text
    if pos < len(text):
        parts.append(text[pos:])
    return Template(tuple(parts), text)


def applyModifiers(value: str, modifiers: Sequence[str]) -> str:
    """
    Apply C{set} modifiers in precedence order (RFC 5229 section 4.1).
    """
    for modifier in sorted(modifiers, key=lambda m: -MODIFIER_PRECEDENCE[m]):
        if modifier == "lower":
            value = value.lower()
        elif modifier == "upper":
            value = value.upper()
        elif modifier == "lowerfirst":
            value = value[:1].lower() + value[1:]
        elif modifier == "upperfirst":
            value = value[:1].upper() + value[1:]
        elif modifier == "quotewildcard":
            value = re.sub(r"([*?\\])", r"\\\1", value)
        elif modifier == "quoteregex":
            value = quoteRegex(value)
        elif modifier == "length":
            value = str(len(value))
    return value
