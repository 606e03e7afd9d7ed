# -*- test-case-name: tests.sieve.test_lexer -*-
"""
The lexical level of Sieve (RFC 5228 sections 2.2 to 2.4 and 8.1): a script
as text becomes a list of L{Token}s, each with the line it starts on.

Comments (C{#} to the end of the line and C{/* ... */}) and white space are
dropped.  Quoted strings lose their quotes and backslash escapes; multi-line
strings (C{text:} ... C{.}) lose their first and last lines and the dot
stuffing of lines that start with two dots.  Line breaks inside strings are
CRLF whatever the script used, as RFC 5228 defines the value of a multi-line
string; scripts themselves may use CRLF or bare LF.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Union

from mailsrv.sieve.errors import SieveSyntaxError

#: Token kinds.
IDENTIFIER = "identifier"
TAG = "tag"
NUMBER = "number"
STRING = "string"
PUNCTUATION = "punctuation"
END = "end"

#: A number has at most this many digits: Sieve numbers are sizes and
#: counts, and a huge digit string would only cost time to convert.
MAX_NUMBER_DIGITS = 20

_QUANTIFIERS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"([0-9]+)([KMGkmg]?)")
_PUNCTUATION = frozenset(";,()[]{}")
# After "text:": blanks, then a hash comment or the end of the line.
_TEXT_START = re.compile(r"[ \t]*(?:#[^\n]*)?\r?\n")


@dataclasses.dataclass(frozen=True)
class Token:
    """
    One lexical unit.

    @ivar kind: one of L{IDENTIFIER}, L{TAG}, L{NUMBER}, L{STRING},
        L{PUNCTUATION}, L{END}.
    @ivar value: the identifier or tag name in lower case (tags without
        their colon), the number's value with its quantifier applied, the
        string's decoded text, or the punctuation character.
    @ivar line: the 1-based line the token starts on.
    """

    kind: str
    value: Union[str, int]
    line: int


def tokenize(source: str) -> list[Token]:
    """
    Split a script into tokens, ending with one L{END} token.

    @param source: the script text.
    @raise SieveSyntaxError: for characters outside the grammar, unclosed
        strings and comments, and oversized numbers.
    """
    if "\x00" in source:
        line = source.count("\n", 0, source.index("\x00")) + 1
        raise SieveSyntaxError(line, "NUL character in script")
    return _Lexer(source).run()


class _Lexer:
    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0
        self.line = 1
        self.tokens: list[Token] = []

    def _advance(self, end: int) -> None:
        self.line += self.source.count("\n", self.pos, end)
        self.pos = end

    def run(self) -> list[Token]:
        source = self.source
        length = len(source)
        while True:
            self._skipBlanksAndComments()
            if self.pos >= length:
                self.tokens.append(Token(END, "", self.line))
                return self.tokens
            char = source[self.pos]
            if char == '"':
                self._quotedString()
            elif char in _PUNCTUATION:
                self.tokens.append(Token(PUNCTUATION, char, self.line))
                self.pos += 1
            elif char == ":":
                match = _IDENTIFIER.match(source, self.pos + 1)
                if match is None:
                    raise SieveSyntaxError(self.line, "a tag needs a name after ':'")
                self.tokens.append(Token(TAG, match.group().lower(), self.line))
                self.pos = match.end()
            elif char.isdigit() and char.isascii():
                self._number()
            else:
                match = _IDENTIFIER.match(source, self.pos)
                if match is None:
                    raise SieveSyntaxError(self.line, f"unexpected character {char!r}")
                name = match.group().lower()
                if name == "text" and source.startswith(":", match.end()):
                    self._multiLineString(match.end() + 1)
                else:
                    self.tokens.append(Token(IDENTIFIER, name, self.line))
                    self.pos = match.end()

    def _skipBlanksAndComments(self) -> None:
        source = self.source
        length = len(source)
        while self.pos < length:
            char = source[self.pos]
            if char in " \t\r\n":
                if char == "\n":
                    self.line += 1
                self.pos += 1
            elif char == "#":
                end = source.find("\n", self.pos)
                self.pos = length if end < 0 else end
            elif source.startswith("/*", self.pos):
                end = source.find("*/", self.pos + 2)
                if end < 0:
                    raise SieveSyntaxError(self.line, "unterminated /* comment")
                self._advance(end + 2)
            else:
                return

    def _number(self) -> None:
        match = _NUMBER.match(self.source, self.pos)
        assert match is not None
        digits, quantifier = match.groups()
        if len(digits) > MAX_NUMBER_DIGITS:
            raise SieveSyntaxError(self.line, "number too large")
        value = int(digits) * _QUANTIFIERS.get(quantifier.lower(), 1)
        self.tokens.append(Token(NUMBER, value, self.line))
        self.pos = match.end()

    def _quotedString(self) -> None:
        source = self.source
        startLine = self.line
        pieces = []
        pos = self.pos + 1
        quote = source.find('"', pos)
        while True:
            if quote < 0:
                raise SieveSyntaxError(startLine, "unterminated string")
            # Copy runs without backslashes in one go; the closing quote is
            # only searched for again once an escape has moved past it, so
            # that many escapes cost linear time.
            backslash = source.find("\\", pos, quote)
            if backslash < 0:
                pieces.append(source[pos:quote])
                self._advance(quote + 1)
                break
            pieces.append(source[pos:backslash])
            if backslash + 1 >= len(source):
                raise SieveSyntaxError(startLine, "unterminated string")
            # RFC 5228 2.4.2: \" and \\ are the only escapes; any other
            # backslash is dropped and the next character taken as is.
            pieces.append(source[backslash + 1])
            pos = backslash + 2
            if pos > quote:
                quote = source.find('"', pos)
        self.tokens.append(Token(STRING, _normaliseNewlines("".join(pieces)), startLine))

    def _multiLineString(self, afterColon: int) -> None:
        source = self.source
        startLine = self.line
        match = _TEXT_START.match(source, afterColon)
        if match is None:
            raise SieveSyntaxError(startLine, "text: must be followed by the end of the line")
        pos = match.end()
        lines = []
        while True:
            if pos >= len(source):
                raise SieveSyntaxError(startLine, "unterminated multi-line string")
            end = source.find("\n", pos)
            if end < 0:
                end = len(source)
                nextPos = end
            else:
                nextPos = end + 1
            line = source[pos:end]
            if line.endswith("\r"):
                line = line[:-1]
            if line == ".":
                pos = nextPos
                break
            if line.startswith(".."):
                # Dot stuffing: "..x" stands for ".x" (RFC 5228 2.4.2).  A
                # line with one leading dot and more text is not stuffed and
                # keeps its dot, as Pigeonhole's conformance tests expect.
                line = line[1:]
            lines.append(line + "\r\n")
            pos = nextPos
        self.tokens.append(Token(STRING, "".join(lines), startLine))
        self._advance(pos)


def _normaliseNewlines(text: str) -> str:
    if "\n" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\n", "\r\n")
