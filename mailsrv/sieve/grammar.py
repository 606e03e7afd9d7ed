# -*- test-case-name: tests.sieve.test_parser -*-
"""
The grammar of Sieve (RFC 5228 section 8.2): tokens become a tree of
L{CommandNode}s and L{TestNode}s whose arguments are L{StringList}s,
L{TagArgument}s and L{NumberArgument}s.

This level knows nothing of what the commands mean; L{mailsrv.sieve.compiler}
checks names and arguments.  It does bound the nesting of blocks and tests,
so that a hostile script cannot exhaust the stack, and the length of string
lists.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

from mailsrv.sieve.errors import SieveSyntaxError
from mailsrv.sieve.lexer import (
    END,
    IDENTIFIER,
    NUMBER,
    PUNCTUATION,
    STRING,
    TAG,
    Token,
    tokenize,
)

#: Blocks nested deeper than this are refused.
MAX_BLOCK_DEPTH = 32

#: Tests nested deeper than this (not, anyof, allof) are refused.
MAX_TEST_DEPTH = 32

#: A string list longer than this is refused.
MAX_STRING_LIST = 4096


@dataclasses.dataclass(frozen=True)
class StringList:
    """
    A string or a bracketed list of strings.

    @ivar values: the decoded strings.
    @ivar bracketed: whether the script wrote C{[...]} (a single string
        where one string is expected must not be bracketed).
    """

    values: tuple[str, ...]
    line: int
    bracketed: bool


@dataclasses.dataclass(frozen=True)
class TagArgument:
    """
    A tagged argument such as C{:contains}; C{name} is lower case without
    the colon.
    """

    name: str
    line: int


@dataclasses.dataclass(frozen=True)
class NumberArgument:
    """
    A number, with its C{K}/C{M}/C{G} quantifier already applied.
    """

    value: int
    line: int


Argument = Union[StringList, TagArgument, NumberArgument]


@dataclasses.dataclass(frozen=True)
class TestNode:
    """
    A test as written: its name (lower case), arguments and the tests it
    takes.

    @ivar testList: whether the tests were written as a parenthesised list
        (C{anyof (...)}) rather than as one test (C{not exists "x"}).
    """

    name: str
    line: int
    arguments: tuple[Argument, ...]
    tests: tuple["TestNode", ...]
    testList: bool


@dataclasses.dataclass(frozen=True)
class CommandNode:
    """
    A command as written.

    @ivar block: the commands in its C{{...}} block, or L{None} when the
        command ended with C{;}.
    """

    name: str
    line: int
    arguments: tuple[Argument, ...]
    tests: tuple[TestNode, ...]
    testList: bool
    block: Optional[tuple["CommandNode", ...]]


def parseTree(source: str) -> tuple[CommandNode, ...]:
    """
    Parse a script into its commands.

    @raise SieveSyntaxError: if the script does not follow the grammar.
    """
    return _Parser(tokenize(source)).script()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0

    def _peek(self) -> Token:
        return self.tokens[self.index]

    def _next(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != END:
            self.index += 1
        return token

    def _isPunctuation(self, token: Token, char: str) -> bool:
        return token.kind == PUNCTUATION and token.value == char

    def _expectPunctuation(self, char: str, what: str) -> Token:
        token = self._next()
        if not self._isPunctuation(token, char):
            raise SieveSyntaxError(token.line, f"expected '{char}' {what}, found {_describe(token)}")
        return token

    def script(self) -> tuple[CommandNode, ...]:
        commands = self._commands(depth=0)
        token = self._peek()
        if token.kind != END:
            raise SieveSyntaxError(token.line, f"unexpected {_describe(token)}")
        return commands

    def _commands(self, depth: int) -> tuple[CommandNode, ...]:
        commands = []
        while self._peek().kind == IDENTIFIER:
            commands.append(self._command(depth))
        return tuple(commands)

    def _command(self, depth: int) -> CommandNode:
        nameToken = self._next()
        assert isinstance(nameToken.value, str)
        arguments, tests, testList = self._arguments(testDepth=0)
        token = self._next()
        if self._isPunctuation(token, ";"):
            block = None
        elif self._isPunctuation(token, "{"):
            if depth + 1 > MAX_BLOCK_DEPTH:
                raise SieveSyntaxError(token.line, f"blocks nested more than {MAX_BLOCK_DEPTH} deep")
            block = self._commands(depth + 1)
            closing = self._next()
            if not self._isPunctuation(closing, "}"):
                raise SieveSyntaxError(
                    closing.line, f"expected '}}' to close the block of line {token.line}, found {_describe(closing)}"
                )
        else:
            raise SieveSyntaxError(
                token.line, f"expected ';' or '{{' after command {nameToken.value!r}, found {_describe(token)}"
            )
        return CommandNode(nameToken.value, nameToken.line, arguments, tests, testList, block)

    def _arguments(self, testDepth: int) -> tuple[tuple[Argument, ...], tuple[TestNode, ...], bool]:
        arguments: list[Argument] = []
        while True:
            token = self._peek()
            if token.kind == STRING or self._isPunctuation(token, "["):
                arguments.append(self._stringList())
            elif token.kind == NUMBER:
                self._next()
                assert isinstance(token.value, int)
                arguments.append(NumberArgument(token.value, token.line))
            elif token.kind == TAG:
                self._next()
                assert isinstance(token.value, str)
                arguments.append(TagArgument(token.value, token.line))
            else:
                break
        token = self._peek()
        if token.kind == IDENTIFIER:
            return tuple(arguments), (self._test(testDepth + 1),), False
        if self._isPunctuation(token, "("):
            return tuple(arguments), self._testList(testDepth + 1), True
        return tuple(arguments), (), False

    def _stringList(self) -> StringList:
        token = self._next()
        if token.kind == STRING:
            assert isinstance(token.value, str)
            return StringList((token.value,), token.line, False)
        values = []
        while True:
            item = self._next()
            if item.kind != STRING:
                raise SieveSyntaxError(item.line, f"expected a string in the string list, found {_describe(item)}")
            assert isinstance(item.value, str)
            values.append(item.value)
            if len(values) > MAX_STRING_LIST:
                raise SieveSyntaxError(token.line, f"string list longer than {MAX_STRING_LIST}")
            separator = self._next()
            if self._isPunctuation(separator, "]"):
                return StringList(tuple(values), token.line, True)
            if not self._isPunctuation(separator, ","):
                raise SieveSyntaxError(
                    separator.line, f"expected ',' or ']' in the string list, found {_describe(separator)}"
                )

    def _test(self, depth: int) -> TestNode:
        token = self._next()
        if token.kind != IDENTIFIER:
            raise SieveSyntaxError(token.line, f"expected a test, found {_describe(token)}")
        if depth > MAX_TEST_DEPTH:
            raise SieveSyntaxError(token.line, f"tests nested more than {MAX_TEST_DEPTH} deep")
        assert isinstance(token.value, str)
        arguments, tests, testList = self._arguments(depth)
        return TestNode(token.value, token.line, arguments, tests, testList)

    def _testList(self, depth: int) -> tuple[TestNode, ...]:
        self._expectPunctuation("(", "to start the test list")
        tests = [self._test(depth)]
        while True:
            token = self._next()
            if self._isPunctuation(token, ")"):
                return tuple(tests)
            if not self._isPunctuation(token, ","):
                raise SieveSyntaxError(token.line, f"expected ',' or ')' in the test list, found {_describe(token)}")
            tests.append(self._test(depth))


def _describe(token: Token) -> str:
    if token.kind == END:
        return "the end of the script"
    if token.kind == STRING:
        return "a string"
    if token.kind == NUMBER:
        return f"number {token.value}"
    if token.kind == TAG:
        return f"tag :{token.value}"
    if token.kind == IDENTIFIER:
        return f"identifier {token.value!r}"
    return f"'{token.value}'"
