# -*- test-case-name: tests.sieve.test_matching -*-
"""
Comparators (RFC 4790, RFC 5228 section 2.7.3) and match types (RFC 5228
section 2.7.1, RFC 5231 relational, draft-ietf-sieve-regex): whether any of
a test's values matches any of its keys, and what the wildcards or groups
matched, for the match variables of RFC 5229.

Values and keys are C{str}.  C{i;octet} compares code points, which orders
strings as their UTF-8 octets would be; C{i;ascii-casemap} folds only
C{A}-C{Z}; C{i;ascii-numeric} compares the number the string starts with,
a string that does not start with a digit being larger than every number.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Optional, Sequence, Union

from mailsrv.sieve.regex import compileRegex

OCTET = "i;octet"
ASCII_CASEMAP = "i;ascii-casemap"
ASCII_NUMERIC = "i;ascii-numeric"

#: Comparator name -> the capability that must be required to use it
#: (None: always available, RFC 5228 section 2.7.3).
COMPARATORS: dict[str, Optional[str]] = {
    OCTET: None,
    ASCII_CASEMAP: None,
    ASCII_NUMERIC: "comparator-i;ascii-numeric",
}

#: The relational operators of RFC 5231.
RELATIONS = frozenset({"gt", "ge", "lt", "le", "eq", "ne"})

#: Match types that only make sense with an equality-and-substring
#: comparator (RFC 4790: i;ascii-numeric has equality and ordering only).
SUBSTRING_MATCH_TYPES = frozenset({"contains", "matches", "regex"})

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_LEADING_DIGITS = re.compile(r"[0-9]+")


@dataclasses.dataclass(frozen=True)
class MatchSpec:
    """
    How a test compares: the match type, the comparator and, for C{:count}
    and C{:value}, the relational operator.
    """

    matchType: str = "is"
    comparator: str = ASCII_CASEMAP
    relation: Optional[str] = None

    @property
    def caseInsensitive(self) -> bool:
        return self.comparator == ASCII_CASEMAP

    @property
    def capturing(self) -> bool:
        """
        Whether a successful match sets the match variables.
        """
        return self.matchType in ("matches", "regex")


def asciiLower(text: str) -> str:
    """
    C{text} with C{A}-C{Z} mapped to C{a}-C{z} and nothing else changed
    (the i;ascii-casemap comparator; the length never changes).
    """
    return text.translate(_ASCII_LOWER)


def numericValue(text: str) -> Union[int, float]:
    """
    The value of a string under i;ascii-numeric: its leading decimal
    digits, or infinity when it does not start with a digit.
    """
    match = _LEADING_DIGITS.match(text)
    if match is None:
        return math.inf
    return int(match.group()[:40])


def compareStrings(comparator: str, left: str, right: str) -> int:
    """
    Order two strings under a comparator: negative, zero or positive.
    """
    a: Union[str, int, float]
    b: Union[str, int, float]
    if comparator == ASCII_NUMERIC:
        a, b = numericValue(left), numericValue(right)
    elif comparator == ASCII_CASEMAP:
        a, b = asciiLower(left), asciiLower(right)
    else:
        a, b = left, right
    return (a > b) - (a < b)  # type: ignore[operator]


def relationHolds(relation: str, order: int) -> bool:
    """
    Whether C{order} (as from L{compareStrings}) satisfies a relational
    operator.
    """
    if relation == "gt":
        return order > 0
    if relation == "ge":
        return order >= 0
    if relation == "lt":
        return order < 0
    if relation == "le":
        return order <= 0
    if relation == "eq":
        return order == 0
    return order != 0


def checkSpec(spec: MatchSpec) -> Optional[str]:
    """
    Why a match type cannot be used with a comparator, or L{None} if it
    can.
    """
    if spec.comparator == ASCII_NUMERIC and spec.matchType in SUBSTRING_MATCH_TYPES:
        return f"comparator {spec.comparator} does not support :{spec.matchType}"
    return None


MatchResult = tuple[bool, Optional[list[str]]]


def matchValues(spec: MatchSpec, values: Sequence[str], keys: Sequence[str]) -> MatchResult:
    """
    Whether any value matches any key.

    @param values: what the test found (header values, address parts...).
    @param keys: the key list, variables already expanded.
    @return: C{(matched, captures)}; C{captures} is, for a successful
        C{:matches} or C{:regex}, the match variables C{${0}}, C{${1}}...
        of the first value and key that matched, and otherwise L{None}.
    @raise mailsrv.sieve.regex.RegexError: for a C{:regex} key that is not
        a valid or supported regular expression.
    """
    matchType = spec.matchType
    comparator = spec.comparator
    if matchType == "count":
        count = str(len(values))
        assert spec.relation is not None
        for key in keys:
            if relationHolds(spec.relation, compareStrings(comparator, count, key)):
                return True, None
        return False, None
    if not values:
        return False, None
    if matchType == "value":
        assert spec.relation is not None
        for value in values:
            for key in keys:
                if relationHolds(spec.relation, compareStrings(comparator, value, key)):
                    return True, None
        return False, None
    if matchType == "is":
        if comparator == ASCII_NUMERIC:
            for value in values:
                number = numericValue(value)
                if any(numericValue(key) == number for key in keys):
                    return True, None
            return False, None
        if comparator == ASCII_CASEMAP:
            keySet = {asciiLower(key) for key in keys}
            return any(asciiLower(value) in keySet for value in values), None
        keySet = set(keys)
        return any(value in keySet for value in values), None
    if matchType == "contains":
        if comparator == ASCII_CASEMAP:
            foldedKeys = [asciiLower(key) for key in keys]
            for value in values:
                folded = asciiLower(value)
                if any(key in folded for key in foldedKeys):
                    return True, None
            return False, None
        return any(key in value for value in values for key in keys), None
    fold = comparator == ASCII_CASEMAP
    if matchType == "matches":
        globs = [compileGlob(key, fold) for key in keys]
        for value in values:
            folded = asciiLower(value) if fold else value
            for glob in globs:
                captures = glob.match(value, folded)
                if captures is not None:
                    return True, captures
        return False, None
    if matchType == "regex":
        regexes = [compileRegex(key, fold) for key in keys]
        for value in values:
            for regex in regexes:
                captures = regex.search(value)
                if captures is not None:
                    return True, captures
        return False, None
    raise ValueError(f"unknown match type {matchType!r}")


class Glob:
    """
    A compiled C{:matches} key: C{*} matches any run of characters, C{?}
    one character, and a backslash makes the next character literal.

    The key is split at its stars into segments (literal characters and
    C{?}); the first segment must match at the start, the last at the end,
    and each middle one is placed as far left as it can go.  That finds a
    match whenever there is one, in linear time (no backtracking), and
    makes every star but the last match as little as possible, which is
    what RFC 5229 section 3.2 asks of the match variables.

    @ivar wildcards: the wildcards in order (C{"*"} or C{"?"}), each giving
        one match variable.
    """

    def __init__(self, key: str, fold: bool) -> None:
        # Each segment: (compiled regex, the fixed length it matches).
        segments: list[tuple["re.Pattern[str]", int]] = []
        wildcards: list[str] = []
        current: list[str] = []
        length = 0
        i = 0
        while i < len(key):
            char = key[i]
            if char == "\\" and i + 1 < len(key):
                i += 1
                literal = key[i]
                current.append(re.escape(asciiLower(literal) if fold else literal))
                length += 1
            elif char == "*":
                segments.append((re.compile("".join(current), re.DOTALL), length))
                wildcards.append("*")
                current, length = [], 0
            elif char == "?":
                current.append("(.)")
                wildcards.append("?")
                length += 1
            else:
                current.append(re.escape(asciiLower(char) if fold else char))
                length += 1
            i += 1
        segments.append((re.compile("".join(current), re.DOTALL), length))
        self.segments = segments
        self.wildcards = wildcards

    def match(self, value: str, folded: str) -> Optional[list[str]]:
        """
        Match a value.

        @param value: the value as found, for the match variables.
        @param folded: the value as compared (C{value} itself, or its
            L{asciiLower} for i;ascii-casemap; the same length).
        @return: the match variables (C{${0}} first) or L{None}.
        """
        segments = self.segments
        # Pieces in key order: the text of each "?" and each "*".
        pieces: list[str] = []
        if len(segments) == 1:
            pattern, _ = segments[0]
            match = pattern.fullmatch(folded)
            if match is None:
                return None
            return [value] + [value[match.start(g) : match.end(g)] for g in range(1, match.re.groups + 1)]
        first, _ = segments[0]
        match = first.match(folded)
        if match is None:
            return None
        self._addQuestions(value, match, pieces)
        pos = match.end()
        lastPattern, lastLength = segments[-1]
        lastStart = len(folded) - lastLength
        for pattern, _ in segments[1:-1]:
            if lastStart < pos:
                return None
            # The leftmost place leaves the most room for the segments
            # after it, so if any placement leads to a match this one does;
            # and it keeps the star before it as short as possible.
            match = pattern.search(folded, pos, lastStart)
            if match is None:
                return None
            pieces.append(value[pos : match.start()])
            self._addQuestions(value, match, pieces)
            pos = match.end()
        if lastStart < pos:
            return None
        match = lastPattern.fullmatch(folded, lastStart)
        if match is None:
            return None
        pieces.append(value[pos:lastStart])
        self._addQuestions(value, match, pieces)
        return [value] + pieces

    @staticmethod
    def _addQuestions(value: str, match: "re.Match[str]", pieces: list[str]) -> None:
        for group in range(1, match.re.groups + 1):
            pieces.append(value[match.start(group) : match.end(group)])


@functools.lru_cache(maxsize=512)
def compileGlob(key: str, fold: bool) -> Glob:
    """
    A cached L{Glob} for a key.
    """
    return Glob(key, fold)
