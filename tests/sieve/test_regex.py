"""
L{mailsrv.sieve.regex}: POSIX ERE parsed and refused where it cannot be
translated faithfully, matched by re or by the linear-time matcher with the
same results, and bounded in time on hostile input.
"""

from __future__ import annotations

import re
import time

import pytest

from mailsrv.sieve.regex import (
    MAX_SUBJECT,
    Regex,
    RegexError,
    _Parser,
    _Program,
    _translate,
    compileRegex,
    quoteRegex,
)


def search(pattern: str, text: str, fold: bool = False) -> list[str] | None:
    return Regex(pattern, fold).search(text)


@pytest.mark.parametrize(
    "pattern, text, expected",
    [
        ("abc", "xxabcxx", ["abc"]),
        ("^abc", "xxabc", None),
        ("abc$", "abc\n", None),
        ("abc$", "xabc", ["abc"]),
        ("a.c", "a\nc", ["a\nc"]),
        ("[[:digit:]]+", "order 1234 shipped", ["1234"]),
        ("[[:alpha:]_]+", "__ab1", ["__ab"]),
        ("[^[:space:]]+", "  word  ", ["word"]),
        ("[]x]+", "a]x]b", ["]x]"]),
        ("[a-]+", "b-a-c", ["-a-"]),
        ("[\\d]", "d", ["d"]),
        ("[\\d]", "\\", ["\\"]),
        ("[[.-.]x]", "-", ["-"]),
        ("colou?r", "colour color", ["colour"]),
        ("a{2,3}", "aaaa", ["aaa"]),
        ("a{2}", "a", None),
        ("a{2,}", "aaaaa", ["aaaaa"]),
        ("x{", "x{", ["x{"]),
        ("a}", "a}", ["a}"]),
        ("\\.", "a.b", ["."]),
        ("\\@", "a@b", ["@"]),
        ("(spam|viagra)", "buy VIAGRA now", None),
        ("\\bfoo\\b", "a foo b", ["foo"]),
        ("\\bfoo\\b", "afoob", None),
        ("\\<ba", "aba ba", ["ba"]),
        ("ab\\>", "abc ab", ["ab"]),
        ("\\w+@\\w+", "mail: bob@example", ["bob@example"]),
        ("\\s\\S", "a b", [" b"]),
        ("", "anything", [""]),
        ("a|", "b", [""]),
    ],
)
def test_search(pattern: str, text: str, expected: list[str] | None) -> None:
    """
    ERE semantics: search anywhere, . includes line breaks, $ only at the
    very end, brackets with POSIX classes and literal backslashes.
    """
    result = search(pattern, text)
    assert (result[:1] if result else None) == expected


def test_groups() -> None:
    """
    Groups give the match variables; a group that took no part is "".
    """
    assert search("^\\[(.*)\\] (.*)$", "[list] hello world") == ["[list] hello world", "list", "hello world"]
    assert search("(a)|(b)", "b") == ["b", "", "b"]
    assert search("<([^@>]+)@([^>]+)>", "Bob <bob@example.org>") == ["<bob@example.org>", "bob", "example.org"]


def test_caseFolding() -> None:
    """
    i;ascii-casemap folds ASCII letters only, in literals and classes.
    """
    assert search("viagra", "buy VIAGRA", fold=True) == ["VIAGRA"]
    assert search("[A-C]+", "xabcx", fold=True) == ["abc"]
    assert search("[[:upper:]]", "a", fold=True) == ["a"]
    assert search("é", "É", fold=True) is None
    assert search("viagra", "buy VIAGRA") is None


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("(", "unmatched '\\('"),
        ("a)", "unmatched '\\)'"),
        ("[abc", "unmatched '\\['"),
        ("[[:nonsense:]]", "unknown character class"),
        ("[z-a]", "invalid range"),
        ("[[.ab.]]", "single characters"),
        ("*a", "nothing to repeat"),
        ("a|*b", "nothing to repeat"),
        ("{2}", "interval with nothing to repeat"),
        ("a**", "stacked quantifiers"),
        ("a*?", "stacked quantifiers"),
        ("a+*", "stacked quantifiers"),
        ("a*+", "stacked quantifiers"),
        ("a{2}{3}", "stacked quantifiers"),
        ("a{3,2}", "invalid interval"),
        ("a{256}", "invalid interval"),
        ("a{1", "invalid interval"),
        ("^*", "cannot follow an anchor"),
        ("(?i)abc", "Python extensions are not supported"),
        ("(?P<n>a)", "Python extensions are not supported"),
        ("(a)\\1", "back-references are not supported"),
        ("\\d+", "unsupported escape \\\\d"),
        ("\\n", "unsupported escape \\\\n"),
        ("abc\\", "trailing backslash"),
        ("a" * 1025, "longer than 1024"),
        ("(a{255}){255}", "too complex"),
    ],
)
def test_rejected(pattern: str, message: str) -> None:
    """
    Invalid ERE, and ERE that would mean something else to Python, is
    refused with a reason.
    """
    with pytest.raises(RegexError, match=message):
        Regex(pattern, False)


@pytest.mark.parametrize(
    "pattern, linear",
    [
        ("abc", False),
        ("^From: .*@example\\.com$", False),
        ("(spam|viagra|cialis)", False),
        ("[0-9]{1,4}-[0-9]{2}", False),
        ("[0-9]{1,4}-[0-9]{1,2}", True),
        (".*.*x", True),
        ("(a+)+b", True),
        ("(a|b)*c", True),
        ("^(.*) <(.*)>$", True),
    ],
)
def test_engineChoice(pattern: str, linear: bool) -> None:
    """
    Patterns re cannot run in bounded time go to the linear-time matcher.
    """
    assert Regex(pattern, False).usesLinearMatcher is linear


CROSS_PATTERNS = [
    "a",
    "^a",
    "a$",
    "(a|ab)(c|bcd)(d*)",
    "(.*)@(.*)",
    "^\\[(.*)\\] (.*)$",
    "[[:digit:]]+",
    "[^a-c]x",
    "a{2,3}",
    "(ab)+c",
    "\\bfoo\\b",
    "x?y*z+",
    "[]a]",
    "(a|b)*c",
    "\\<w",
    "w\\>",
    "a.c",
    "(x(y)?)+z",
    "[^a]+\\b",
    "[^a]*(|a)",
    "(|a)+|(|a)",
    "[^[:lower:]]+",
]
CROSS_TEXTS = ["", "a", "ab", "abcd", "xx abcd@example.com yy", "[list] hello", "foo 123 bar", "dx axx", "aaaa", "ababc", "a foo b", "xyzz", "]", "ababbc", "a w", "a\nc", "xyxxyz", "bA", "aaxbaA b"]


@pytest.mark.parametrize("pattern", CROSS_PATTERNS)
def test_linearMatcherAgreesWithRe(pattern: str) -> None:
    """
    The linear-time matcher finds the same match and groups as re.
    """
    for fold in (False, True):
        parser = _Parser(pattern)
        node = parser.parse()
        program = _Program(node, parser.groups, fold)
        flags = re.DOTALL | re.ASCII | (re.IGNORECASE if fold else 0)
        compiled = re.compile(_translate(node), flags)
        for text in CROSS_TEXTS:
            for subject in (text, text.upper()):
                expected = compiled.search(subject)
                slots = program.search(subject)
                if expected is None:
                    assert slots is None, (pattern, subject, fold)
                    continue
                assert slots is not None, (pattern, subject, fold)
                assert [slots[0], slots[1]] == list(expected.span()), (pattern, subject, fold)
                for group in range(1, parser.groups + 1):
                    if expected.group(group) is not None:
                        assert subject[slots[2 * group] : slots[2 * group + 1]] == expected.group(group)


@pytest.mark.parametrize(
    "pattern, text",
    [
        (".*.*.*x", "a" * MAX_SUBJECT),
        ("(a+)+b", "a" * MAX_SUBJECT),
        ("(a|aa)*c", "a" * MAX_SUBJECT),
        ("(.*)a(.*)b(.*)c(.*)d", "abc" * 2000),
        ("([a-z]+\\.)+com$", "a." * 3000),
        ("(x+x+)+y", "x" * MAX_SUBJECT),
    ],
)
def test_hostilePatternsAreFast(pattern: str, text: str) -> None:
    """
    Patterns that make backtracking engines take exponential or high
    polynomial time finish quickly on long values.
    """
    start = time.monotonic()
    assert Regex(pattern, False).search(text) is None
    assert time.monotonic() - start < 1.0


def test_valueIsTruncated() -> None:
    """
    Only the first MAX_SUBJECT characters of a value are searched.
    """
    assert search("x", "a" * MAX_SUBJECT + "x") is None
    assert search("x", "a" * (MAX_SUBJECT - 1) + "x") == ["x"]


def test_compileIsCached() -> None:
    """
    Compiling the same key twice gives the same object.
    """
    assert compileRegex("a+b", True) is compileRegex("a+b", True)
    assert compileRegex("a+b", True) is not compileRegex("a+b", False)


def test_quoteRegex() -> None:
    """
    :quoteregex escapes every ERE special character, and the result
    matches the text literally.
    """
    text = "a.b*c?[d](e)|f{1}^$\\"
    quoted = quoteRegex(text)
    assert quoted == "a\\.b\\*c\\?\\[d\\]\\(e\\)\\|f\\{1\\}\\^\\$\\\\"
    assert search(quoted, "xx" + text) == [text]
