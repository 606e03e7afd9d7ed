# -*- test-case-name: tests.sieve.test_interpreter -*-
"""
IMAP flag lists for the imap4flags extension (RFC 5232 section 3).

A flag list is written as strings that may each hold several flags
separated by spaces.  Flags compare case-insensitively; a list keeps the
first spelling of each flag, with the IMAP system flags in their usual
case.  Strings that are not IMAP flags (C{\\Recent}, unknown system flags,
words with IMAP special characters) are dropped, as the delivery agent
could not store them.
"""

from __future__ import annotations

import re
from typing import Iterable

SYSTEM_FLAGS = {
    "\\seen": "\\Seen",
    "\\answered": "\\Answered",
    "\\flagged": "\\Flagged",
    "\\deleted": "\\Deleted",
    "\\draft": "\\Draft",
}

# An IMAP atom: no ( ) { space, controls, % * " \ ] (RFC 3501 ATOM-CHAR).
_KEYWORD = re.compile(r'[^(){ \x00-\x1f\x7f%*"\\\]]+')


def normaliseFlag(flag: str) -> str:
    """
    The flag with a system flag in its usual case, or C{""} when the string
    is not a flag that can be stored.
    """
    if flag.startswith("\\"):
        return SYSTEM_FLAGS.get(flag.lower(), "")
    if _KEYWORD.fullmatch(flag) and flag.isascii():
        return flag
    return ""


def parseFlags(strings: Iterable[str]) -> list[str]:
    """
    The flags in a list of space-separated flag strings, in order, without
    duplicates or invalid flags.
    """
    flags: list[str] = []
    seen: set[str] = set()
    for text in strings:
        for word in text.split():
            flag = normaliseFlag(word)
            if flag and flag.lower() not in seen:
                seen.add(flag.lower())
                flags.append(flag)
    return flags


def addFlags(current: Iterable[str], added: Iterable[str]) -> list[str]:
    return parseFlags([*current, *added])


def removeFlags(current: Iterable[str], removed: Iterable[str]) -> list[str]:
    gone = {flag.lower() for flag in parseFlags(removed)}
    return [flag for flag in parseFlags(current) if flag.lower() not in gone]


def flagString(flags: Iterable[str]) -> str:
    """
    Flags as the value of a variable: separated by single spaces.
    """
    return " ".join(flags)
