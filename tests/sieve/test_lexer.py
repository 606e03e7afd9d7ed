"""
L{mailsrv.sieve.lexer}: tokens, strings with their escapes and dot
stuffing, comments, numbers, and the line numbers of errors.
"""

from __future__ import annotations

import pytest

from mailsrv.sieve.errors import SieveSyntaxError
from mailsrv.sieve.lexer import END, IDENTIFIER, NUMBER, PUNCTUATION, STRING, TAG, tokenize


def kinds(source: str) -> list[tuple[str, object]]:
    return [(token.kind, token.value) for token in tokenize(source)[:-1]]


def test_simpleCommand() -> None:
    """
    Identifiers (lower-cased), tags without their colon, strings,
    punctuation, and a final END token.
    """
    tokens = tokenize('FileInto :Copy "Junk";')
    assert [(t.kind, t.value) for t in tokens] == [
        (IDENTIFIER, "fileinto"),
        (TAG, "copy"),
        (STRING, "Junk"),
        (PUNCTUATION, ";"),
        (END, ""),
    ]


@pytest.mark.parametrize(
    "source, value",
    [("0", 0), ("100", 100), ("1K", 1024), ("2k", 2048), ("3M", 3 << 20), ("1G", 1 << 30)],
)
def test_numbersWithQuantifiers(source: str, value: int) -> None:
    """
    K, M and G multiply by powers of 1024, in either case.
    """
    assert kinds(source) == [(NUMBER, value)]


def test_numberTooLarge() -> None:
    """
    A number with an absurd count of digits is refused, not converted.
    """
    with pytest.raises(SieveSyntaxError, match="number too large"):
        tokenize("size :over " + "9" * 30 + ";")


@pytest.mark.parametrize(
    "source, value",
    [
        (r'"plain"', "plain"),
        (r'"a \"quoted\" word"', 'a "quoted" word'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\a\b\c"', "abc"),
        ('""', ""),
        ('"two\r\nlines"', "two\r\nlines"),
        ('"bare\nLF"', "bare\r\nLF"),
    ],
)
def test_quotedStrings(source: str, value: str) -> None:
    """
    Only \\" and \\\\ are escapes; any other backslash is dropped; line
    breaks inside strings become CRLF.
    """
    assert kinds(source) == [(STRING, value)]


def test_multiLineString() -> None:
    """
    text: strings keep their lines with CRLF, drop the final dot line and
    undo dot stuffing; a comment may follow "text:".
    """
    source = "text: # the reply\r\nLine one\r\n..dotted\r\n.\r\n;"
    assert kinds(source) == [(STRING, "Line one\r\n.dotted\r\n"), (PUNCTUATION, ";")]


def test_multiLineStringDots() -> None:
    """
    Only a doubled leading dot is unstuffed; a single leading dot followed
    by text stays (as in Pigeonhole's RFC 5228 conformance test).
    """
    source = "text:\nLine 1\n.Line 2\n..Line 3\n.Line 4\nLine 5\n.\n"
    assert kinds(source) == [(STRING, "Line 1\r\n.Line 2\r\n.Line 3\r\n.Line 4\r\nLine 5\r\n")]


def test_multiLineStringWithBareLF() -> None:
    """
    Scripts with LF line endings give the same value.
    """
    assert kinds("text:\nA\n\nB\n.\n;") == [(STRING, "A\r\n\r\nB\r\n"), (PUNCTUATION, ";")]


def test_emptyMultiLineString() -> None:
    """
    A text: block with only the final dot is the empty string.
    """
    assert kinds("text:\n.\n") == [(STRING, "")]


def test_comments() -> None:
    """
    Hash and bracket comments are skipped, and lines still count.
    """
    tokens = tokenize("# comment\n/* a\nlong\ncomment */ keep; # trailing\nstop;")
    assert [(t.value, t.line) for t in tokens[:-1]] == [("keep", 4), (";", 4), ("stop", 5), (";", 5)]


def test_tokenLines() -> None:
    """
    A token's line is where it starts, also after multi-line strings.
    """
    tokens = tokenize('keep;\n"a\nb"\ntext:\nx\n.\nstop;')
    assert [(t.kind, t.line) for t in tokens] == [
        (IDENTIFIER, 1),
        (PUNCTUATION, 1),
        (STRING, 2),
        (STRING, 4),
        (IDENTIFIER, 7),
        (PUNCTUATION, 7),
        (END, 7),
    ]


@pytest.mark.parametrize(
    "source, line, message",
    [
        ('keep;\n"never closed', 2, "unterminated string"),
        ("keep;\n\n/* never closed", 3, "unterminated /\\* comment"),
        ("keep;\ntext:\nabc\n", 2, "unterminated multi-line string"),
        ("text: junk\nabc\n.\n", 1, "text: must be followed"),
        ("keep;\n\n  @", 3, "unexpected character '@'"),
        ("keep :;", 1, "a tag needs a name"),
        ("keep;\n\x00", 2, "NUL character"),
    ],
)
def test_lexicalErrors(source: str, line: int, message: str) -> None:
    """
    Lexical errors name the line where the faulty token starts.
    """
    with pytest.raises(SieveSyntaxError, match=message) as raised:
        tokenize(source)
    assert raised.value.line == line
    assert str(raised.value).startswith(f"line {line}: ")
