# -*- test-case-name: tests.protocols.test_managesieve_parser -*-
"""
The client side of the ManageSieve grammar (RFC 5804 section 4): commands
made of atoms and strings, where a string is quoted or a literal, and a
literal may continue the command over several lines::

    PUTSCRIPT "vacation" {42+}CRLF
    <42 octets>CRLF

Wire values are C{bytes}: an L{Atom} holds its ASCII octets, a string is
plain C{bytes} (a quoted string already unescaped).  Decoding names as
UTF-8 is the server's business.

L{CommandReader} is fed whatever the transport delivers and hands out one
event at a time, so the server can stop reading between commands (while
one is being answered, or at STARTTLS, where L{CommandReader.reset} drops
what the client pipelined).  Every size is bounded:

 - a line (the text between literals) may be C{maxLineLength} octets;
   longer is L{Fatal} (the client cannot be resynchronised);
 - a literal may be as large as the C{literalLimit} callback allows for
   its position (a script, or a short string); a synchronizing literal
   (C{{N}}) over it is refused before the client sends it, a
   non-synchronizing one (C{{N+}}) is read and thrown away, octet counts
   only, and the command is then L{Rejected}; one over C{maxDiscard} is
   L{Fatal};
 - a quoted string may be 1024 octets (RFC 5804), a command
   C{MAX_ARGUMENTS} arguments.

RFC 5804 has clients send only non-synchronizing literals; a
synchronizing one is accepted as well, the server's go-ahead being the
L{Continue} event.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Optional, Sequence, Union

#: RFC 5804 section 4: quoted strings are limited to 1024 octets.
MAX_QUOTED = 1024

#: No command takes more than three arguments; beyond this many tokens
#: the command is refused (so many small literals cannot add up).
MAX_ARGUMENTS = 8

# ATOM-CHAR: any CHAR except atom-specials (SP, parentheses, braces,
# DQUOTE, backslash, "%", "*", "]" as in IMAP) and controls.
_ATOM = re.compile(rb"[!#$&'+-\[^-z|~]+")
_LITERAL = re.compile(rb"\{([0-9]{1,10})(\+?)\}$")


@dataclasses.dataclass(frozen=True)
class Atom:
    """
    A bare word: the command name, or a number (HAVESPACE).
    """

    value: bytes

    def upper(self) -> str:
        return self.value.decode("ascii").upper()


Token = Union[Atom, bytes]


@dataclasses.dataclass(frozen=True)
class Command:
    """
    A complete command: its tokens in order (the name first).
    """

    tokens: tuple[Token, ...]


@dataclasses.dataclass(frozen=True)
class Problem:
    """
    Why a command could not be read.

    @ivar literalSize: for a literal over its limit, its announced size
        (and C{limit} the limit); L{None} for a syntax error.
    """

    message: str
    literalSize: Optional[int] = None
    limit: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Rejected:
    """
    A command was read (or its end reached) but cannot be run.

    @ivar tokens: what was read of it before the problem.
    """

    problem: Problem
    tokens: tuple[Token, ...]


@dataclasses.dataclass(frozen=True)
class Continue:
    """
    The client announced a synchronizing literal within its limit and
    waits for the go-ahead before sending it.
    """

    size: int


@dataclasses.dataclass(frozen=True)
class Fatal:
    """
    The input cannot be resynchronised: close the connection.
    """

    problem: Problem


Event = Union[Command, Rejected, Continue, Fatal]


class SyntaxProblem(Exception):
    pass


def tokenizeLine(line: bytes) -> tuple[list[Token], Optional[tuple[int, bool]]]:
    """
    Split one line (without CRLF, between literals) into tokens.

    @return: the tokens, and C{(size, synchronizing)} when the line ends
        with a literal header.
    @raise SyntaxProblem: for anything the grammar does not allow.
    """
    tokens: list[Token] = []
    position = 0
    length = len(line)
    while position < length:
        octet = line[position]
        if octet == 0x20:
            position += 1
        elif octet == 0x22:  # DQUOTE
            value, position = _quoted(line, position + 1)
            tokens.append(value)
        elif octet == 0x7B:  # {
            match = _LITERAL.match(line, position)
            if match is None:
                raise SyntaxProblem("Invalid literal")
            size = int(match.group(1))
            if size > 0xFFFFFFFF:
                raise SyntaxProblem("Invalid literal")
            return tokens, (size, not match.group(2))
        else:
            match = _ATOM.match(line, position)
            if match is None:
                raise SyntaxProblem("Invalid characters")
            end = match.end()
            if end < length and line[end] != 0x20:
                raise SyntaxProblem("Invalid characters")
            tokens.append(Atom(match.group()))
            position = end
    return tokens, None


def _quoted(line: bytes, position: int) -> tuple[bytes, int]:
    out = bytearray()
    length = len(line)
    while position < length:
        octet = line[position]
        if octet == 0x22:
            return bytes(out), position + 1
        if octet == 0x5C:  # backslash: only \" and \\ (QUOTED-SPECIALS)
            if position + 1 >= length or line[position + 1] not in (0x22, 0x5C):
                raise SyntaxProblem("Invalid escape in quoted string")
            position += 1
            octet = line[position]
        elif octet == 0 or octet == 0x0D:
            raise SyntaxProblem("Invalid character in quoted string")
        out.append(octet)
        if len(out) > MAX_QUOTED:
            raise SyntaxProblem("Quoted string too long")
        position += 1
    raise SyntaxProblem("Unterminated quoted string")


def trailingLiteral(line: bytes) -> Optional[tuple[int, bool]]:
    """
    The literal header at the end of a line that did not parse: the
    client sends the literal anyway, and it must be skipped.
    """
    match = re.search(rb"\{([0-9]{1,10})(\+?)\}$", line)
    if match is None or int(match.group(1)) > 0xFFFFFFFF:
        return None
    return int(match.group(1)), not match.group(2)


class CommandReader:
    """
    Turns client input into L{Event}s.

    @param literalLimit: called with the tokens read so far of the current
        command when a literal is announced; returns the largest size
        allowed for it.
    """

    def __init__(
        self,
        literalLimit: Callable[[Sequence[Token]], int],
        maxLineLength: int = 8192,
        maxDiscard: int = 64 * 1024 * 1024,
    ) -> None:
        self._literalLimit = literalLimit
        self.maxLineLength = maxLineLength
        self.maxDiscard = maxDiscard
        self._buffer = bytearray()
        self._tokens: list[Token] = []
        self._literal: Optional[int] = None  # octets of literal still expected
        self._discard: Optional[Problem] = None  # the current command is skipped

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def reset(self) -> int:
        """
        Forget all buffered input and the command in progress.

        @return: the number of octets dropped.
        """
        dropped = len(self._buffer)
        self._buffer.clear()
        self._tokens = []
        self._literal = None
        self._discard = None
        return dropped

    @property
    def inLiteral(self) -> bool:
        """
        Literal octets are expected next.
        """
        return self._literal is not None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def linePending(self) -> bool:
        """
        Part of a line (or of a command continuing after a literal) is
        buffered without its end.
        """
        return bool(self._tokens) or (bool(self._buffer) and not self._buffer.endswith(b"\n"))

    def next(self) -> Optional[Event]:
        """
        The next event, or L{None} until more input arrives.
        """
        buffer = self._buffer
        while True:
            if self._literal is not None:
                if self._discard is not None:
                    take = min(self._literal, len(buffer))
                    del buffer[:take]
                    self._literal -= take
                    if self._literal:
                        return None
                    self._literal = None
                    continue
                if len(buffer) < self._literal:
                    return None
                self._tokens.append(bytes(buffer[: self._literal]))
                del buffer[: self._literal]
                self._literal = None
                continue

            newline = buffer.find(b"\n", 0, self.maxLineLength + 2)
            if newline < 0:
                if len(buffer) > self.maxLineLength + 1:
                    return self._fatal(Problem("Line too long"))
                return None
            line = bytes(buffer[:newline])
            del buffer[: newline + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.maxLineLength:
                return self._fatal(Problem("Line too long"))

            try:
                tokens, literal = tokenizeLine(line)
            except SyntaxProblem as e:
                tokens, literal = [], trailingLiteral(line)
                if self._discard is None:
                    self._discard = Problem(str(e))
            if self._discard is None:
                self._tokens.extend(tokens)
                if len(self._tokens) > MAX_ARGUMENTS + 1:
                    self._discard = Problem("Too many arguments")

            if literal is None:
                event = self._endOfCommand()
                if event is None:
                    continue  # an empty line: ignored
                return event

            size, synchronizing = literal
            if self._discard is None:
                limit = self._literalLimit(self._tokens)
                if size > limit:
                    self._discard = Problem("Literal too large", size, limit)
            if self._discard is not None:
                if synchronizing:
                    # The client waits for a go-ahead that does not come:
                    # the command ends here.
                    return self._endOfCommand()  # never None: it is refused
                if size > self.maxDiscard:
                    return self._fatal(self._discard)
                self._literal = size
                continue
            self._literal = size
            if synchronizing:
                return Continue(size)

    def _fatal(self, problem: Problem) -> Fatal:
        """
        Give up on the input: everything buffered is dropped, so further
        calls wait for new input (the server closes the connection).
        """
        self.reset()
        return Fatal(problem)

    def _endOfCommand(self) -> Optional[Event]:
        """
        The event for the command just ended; L{None} for an empty line.
        """
        tokens, self._tokens = tuple(self._tokens), []
        problem, self._discard = self._discard, None
        if problem is not None:
            return Rejected(problem, tokens)
        if not tokens:
            return None
        return Command(tokens)
