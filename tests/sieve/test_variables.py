"""
L{mailsrv.sieve.variables}, L{mailsrv.sieve.encoded} and
L{mailsrv.sieve.flags}: templates, set modifiers, encoded characters and
flag lists on their own.
"""

from __future__ import annotations

import pytest

from mailsrv.sieve.encoded import decodeEncodedCharacters
from mailsrv.sieve.flags import addFlags, flagString, normaliseFlag, parseFlags, removeFlags
from mailsrv.sieve.variables import Reference, Template, applyModifiers, compileTemplate, isVariableName


def expand(text: str, variables: dict[str, str] | None = None, matches: list[str] | None = None) -> str:
    template = compileTemplate(text)
    if isinstance(template, str):
        return template
    return template.expand(variables or {}, matches or [])


def test_plainStringsStayStrings() -> None:
    """
    Strings without references are not templates.
    """
    assert compileTemplate("plain") == "plain"
    assert compileTemplate("${") == "${"
    assert compileTemplate("${}") == "${}"
    assert compileTemplate("$ {a}") == "$ {a}"


def test_templateParts() -> None:
    """
    References are split out, names in lower case, numbers as indices.
    """
    template = compileTemplate("a${Name}b${01}")
    assert template == Template(("a", Reference("name"), "b", Reference("", 1)), "a${Name}b${01}")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("${a}", "1"),
        ("${A}", "1"),
        ("x${a}${b}y", "x12y"),
        ("${unset}", ""),
        ("${a-b}", "${a-b}"),
        ("${ a}", "${ a}"),
        ("${${a}}", "${1}"),
        ("${0}|${1}|${2}", "whole|one|"),
        ("${9999999}", ""),
        ("$${a}", "$1"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    """
    Expansion replaces valid references only, is not recursive, and gives
    "" for unset variables and missing match variables.
    """
    assert expand(text, {"a": "1", "b": "2"}, ["whole", "one"]) == expected


def test_namespaceIsAnError() -> None:
    """
    References to a namespace cannot be expanded (no namespace extension).
    """
    with pytest.raises(ValueError, match="namespace"):
        compileTemplate("${env.user}")


@pytest.mark.parametrize("name, valid", [("a", True), ("_x1", True), ("Var_2", True), ("1", False), ("a.b", False), ("", False), ("a-b", False)])
def test_isVariableName(name: str, valid: bool) -> None:
    """
    Only identifiers can be set.
    """
    assert isVariableName(name) is valid


def test_modifiersApplyByPrecedence() -> None:
    """
    :upper before :lowerfirst before :quotewildcard before :length.
    """
    assert applyModifiers("ab*", ["length", "quotewildcard", "lowerfirst", "upper"]) == "4"
    assert applyModifiers("ab*", ["lowerfirst", "upper"]) == "aB*"
    assert applyModifiers("a.b", ["quoteregex"]) == "a\\.b"


@pytest.mark.parametrize(
    "text, decoded",
    [
        ("${hex:41}", "A"),
        ("${hex: 41 42\r\n 43 }", "ABC"),
        ("${HEX:c3 A9}", "é"),
        ("${hex:c3}${hex:a9}", "é"),
        ("${unicode:1F600}", "\U0001f600"),
        ("${Unicode:48 49}", "HI"),
        ("${unicode:000041}", "A"),
        ("${hex:4}", "\x04"),
        ("${hex:412}", "${hex:412}"),
        ("${hex:}", "${hex:}"),
        ("${hex:g1}", "${hex:g1}"),
        ("${other:41}", "${other:41}"),
        ("no sequences", "no sequences"),
    ],
)
def test_encodedCharacters(text: str, decoded: str) -> None:
    """
    Well-formed sequences are decoded; malformed ones stay as written.
    """
    assert decodeEncodedCharacters(text) == decoded


@pytest.mark.parametrize("text", ["${unicode:D800}", "${unicode:110000}", "${hex:ff}", "${hex:c3}x"])
def test_encodedCharacterErrors(text: str) -> None:
    """
    Surrogates, values beyond Unicode and invalid UTF-8 are errors.
    """
    with pytest.raises(ValueError):
        decodeEncodedCharacters(text)


@pytest.mark.parametrize(
    "flag, normal",
    [
        ("\\seen", "\\Seen"),
        ("\\ANSWERED", "\\Answered"),
        ("\\Flagged", "\\Flagged"),
        ("\\deleted", "\\Deleted"),
        ("\\draft", "\\Draft"),
        ("\\Recent", ""),
        ("\\Custom", ""),
        ("$Junk", "$Junk"),
        ("NonJunk", "NonJunk"),
        ("bad(flag", ""),
        ("bad*", ""),
        ('bad"', ""),
        ("bad]", ""),
        ("naïve", ""),
    ],
)
def test_normaliseFlag(flag: str, normal: str) -> None:
    """
    System flags get their usual case; invalid flags become "".
    """
    assert normaliseFlag(flag) == normal


def test_flagLists() -> None:
    """
    Flag lists split on spaces, keep the first spelling of each flag, and
    add and remove case-insensitively.
    """
    assert parseFlags(["\\seen  $A", "$a \\SEEN", ""]) == ["\\Seen", "$A"]
    assert addFlags(["$A"], ["$B $a"]) == ["$A", "$B"]
    assert removeFlags(["$A", "$B", "\\Seen"], ["$b \\seen"]) == ["$A"]
    assert flagString(["\\Seen", "$A"]) == "\\Seen $A"


def test_expansionIsBounded() -> None:
    """
    Many references to a long variable expand to at most MAX_EXPANSION
    characters.
    """
    from mailsrv.sieve.variables import MAX_EXPANSION

    assert len(expand("${v}" * 1000, {"v": "x" * 10_000})) == MAX_EXPANSION
