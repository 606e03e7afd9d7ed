"""
L{mailsrv.sieve.matching}: comparators, match types, relational operators
and the :matches wildcards with their match variables.
"""

from __future__ import annotations

import math

import pytest

from mailsrv.sieve.matching import (
    ASCII_CASEMAP,
    ASCII_NUMERIC,
    OCTET,
    MatchSpec,
    asciiLower,
    checkSpec,
    compareStrings,
    compileGlob,
    matchValues,
    numericValue,
)


def matches(matchType: str, value: str, key: str, comparator: str = ASCII_CASEMAP, relation: str | None = None) -> bool:
    return matchValues(MatchSpec(matchType, comparator, relation), [value], [key])[0]


def test_asciiLowerOnlyFoldsASCII() -> None:
    """
    i;ascii-casemap folds A-Z only, never other letters.
    """
    assert asciiLower("ÄBC ünd ABC") == "Äbc ünd abc"


@pytest.mark.parametrize(
    "text, value",
    [("0", 0), ("42", 42), ("007", 7), ("12abc", 12), ("abc", math.inf), ("", math.inf), (" 1", math.inf)],
)
def test_numericValue(text: str, value: float) -> None:
    """
    i;ascii-numeric reads leading digits; no digits is positive infinity.
    """
    assert numericValue(text) == value


@pytest.mark.parametrize(
    "comparator, left, right, order",
    [
        (OCTET, "a", "B", 1),
        (ASCII_CASEMAP, "a", "B", -1),
        (ASCII_CASEMAP, "ABC", "abc", 0),
        (ASCII_NUMERIC, "10", "9", 1),
        (ASCII_NUMERIC, "x", "999999", 1),
        (ASCII_NUMERIC, "x", "y", 0),
        (OCTET, "10", "9", -1),
    ],
)
def test_compareStrings(comparator: str, left: str, right: str, order: int) -> None:
    """
    Ordering per comparator, as :value uses it.
    """
    assert compareStrings(comparator, left, right) == order


@pytest.mark.parametrize(
    "value, key, comparator, expected",
    [
        ("Hello", "hello", ASCII_CASEMAP, True),
        ("Hello", "hello", OCTET, False),
        ("Hello", "Hello", OCTET, True),
        ("Grüße", "GRÜSSE", ASCII_CASEMAP, False),
        ("", "", ASCII_CASEMAP, True),
        ("0042", "42", ASCII_NUMERIC, True),
        ("abc", "xyz", ASCII_NUMERIC, True),
        ("1", "2", ASCII_NUMERIC, False),
    ],
)
def test_is(value: str, key: str, comparator: str, expected: bool) -> None:
    """
    :is compares whole strings under the comparator.
    """
    assert matches("is", value, key, comparator) is expected


@pytest.mark.parametrize(
    "value, key, comparator, expected",
    [
        ("Hello World", "WORLD", ASCII_CASEMAP, True),
        ("Hello World", "WORLD", OCTET, False),
        ("Hello", "", OCTET, True),
        ("Hello", "xyz", ASCII_CASEMAP, False),
    ],
)
def test_contains(value: str, key: str, comparator: str, expected: bool) -> None:
    """
    :contains finds a substring; the empty key is in every value.
    """
    assert matches("contains", value, key, comparator) is expected


@pytest.mark.parametrize(
    "value, key, expected",
    [
        ("anything", "*", True),
        ("", "*", True),
        ("", "?", False),
        ("a", "?", True),
        ("abc", "a?c", True),
        ("abbc", "a?c", False),
        ("coyote@ACME.Example.COM", "*@*.example.com", True),
        ("x.com.org", "*.com", False),
        ("a.com.com", "*.com", True),
        ("star*", "star\\*", True),
        ("starX", "star\\*", False),
        ("what?", "what\\?", True),
        ("back\\slash", "back\\\\slash", True),
        ("abc", "a**c", True),
        ("[acme-users] [fwd] version 1.0 is out", "[*] *", True),
        ("no brackets", "[*] *", False),
        ("aXbXc", "*X*X*", True),
        ("aXb", "*X*X*", False),
        ("ab", "a*b*", True),
    ],
)
def test_matches(value: str, key: str, expected: bool) -> None:
    """
    :matches: * is any run, ? one character, backslash quotes.
    """
    assert matches("matches", value, key) is expected


@pytest.mark.parametrize(
    "value, key, captures",
    [
        ("[acme-users] [fwd] version 1.0 is out", "[*] *", ["acme-users", "[fwd] version 1.0 is out"]),
        ("coyote@ACME.Example.COM", "*@*.example.com", ["coyote", "ACME"]),
        ("a.b.c", "*.*", ["a", "b.c"]),
        ("abcde", "a?c*", ["b", "de"]),
        ("xyz", "*", ["xyz"]),
        ("abc", "a**c", ["", "b"]),
        ("Subject: hi", "*: ?i", ["Subject", "h"]),
        ("abc", "abc", []),
    ],
)
def test_matchesCaptures(value: str, key: str, captures: list[str]) -> None:
    """
    The match variables are the whole value then each wildcard's text;
    stars before the last match as little as they can (RFC 5229 3.2).
    """
    matched, found = matchValues(MatchSpec("matches"), [value], [key])
    assert matched
    assert found == [value] + captures


def test_matchesCapturesKeepOriginalCase() -> None:
    """
    With i;ascii-casemap the captured text is the value's, not folded.
    """
    assert compileGlob("*@*", True).match("Bob@EXAMPLE.org", "bob@example.org") == [
        "Bob@EXAMPLE.org",
        "Bob",
        "EXAMPLE.org",
    ]


def test_matchesIsLinear() -> None:
    """
    Many stars on a long value that does not match finish at once (no
    backtracking).
    """
    value = "a" * 100_000
    assert not matches("matches", value, "*a*a*a*a*a*a*a*b")


@pytest.mark.parametrize(
    "relation, value, key, comparator, expected",
    [
        ("gt", "10", "9", ASCII_NUMERIC, True),
        ("gt", "10", "9", OCTET, False),
        ("ge", "5", "5", ASCII_NUMERIC, True),
        ("lt", "b", "a", ASCII_CASEMAP, False),
        ("le", "A", "a", ASCII_CASEMAP, True),
        ("eq", "007", "7", ASCII_NUMERIC, True),
        ("ne", "7", "8", ASCII_NUMERIC, True),
        ("ne", "7", "7", ASCII_NUMERIC, False),
        ("lt", "none", "5", ASCII_NUMERIC, False),
    ],
)
def test_value(relation: str, value: str, key: str, comparator: str, expected: bool) -> None:
    """
    :value compares each value with each key by the relational operator.
    """
    assert matches("value", value, key, comparator, relation) is expected


def test_count() -> None:
    """
    :count compares the number of values with the key.
    """
    spec = MatchSpec("count", ASCII_NUMERIC, "eq")
    assert matchValues(spec, ["a", "b", "c"], ["3"]) == (True, None)
    assert matchValues(spec, ["a"], ["3", "1"]) == (True, None)
    assert matchValues(spec, [], ["0"]) == (True, None)
    assert matchValues(MatchSpec("count", ASCII_NUMERIC, "gt"), ["a", "b"], ["2"]) == (False, None)


def test_noValuesNeverMatch() -> None:
    """
    Without values only :count can be true.
    """
    for matchType in ("is", "contains", "matches", "regex"):
        assert matchValues(MatchSpec(matchType), [], ["", "*"]) == (False, None)
    assert matchValues(MatchSpec("value", ASCII_NUMERIC, "ge"), [], ["0"]) == (False, None)


def test_anyValueAnyKey() -> None:
    """
    A test matches when any value matches any key; the captures come from
    the first pair that matched.
    """
    matched, captures = matchValues(MatchSpec("matches"), ["one", "two@x"], ["*@*", "o*"])
    assert matched and captures == ["one", "ne"]


def test_checkSpec() -> None:
    """
    i;ascii-numeric has no substring operations.
    """
    assert checkSpec(MatchSpec("contains", ASCII_NUMERIC)) is not None
    assert checkSpec(MatchSpec("regex", ASCII_NUMERIC)) is not None
    assert checkSpec(MatchSpec("is", ASCII_NUMERIC)) is None
    assert checkSpec(MatchSpec("matches", OCTET)) is None
