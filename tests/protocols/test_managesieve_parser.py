# -*- test-case-name: tests.protocols.test_managesieve_parser -*-
"""
Tests for L{mailsrv.protocols.managesieve.parser}: the client grammar of
RFC 5804 (atoms, quoted strings, literals), fed in arbitrary pieces, and
its size limits.
"""

from __future__ import annotations

from typing import Optional, Sequence

import pytest

from mailsrv.protocols.managesieve.parser import (
    MAX_ARGUMENTS,
    MAX_QUOTED,
    Atom,
    Command,
    CommandReader,
    Continue,
    Event,
    Fatal,
    Rejected,
    SyntaxProblem,
    Token,
    tokenizeLine,
)


def reader(limit: int = 100, maxLineLength: int = 200, maxDiscard: int = 1000) -> CommandReader:
    return CommandReader(lambda tokens: limit, maxLineLength=maxLineLength, maxDiscard=maxDiscard)


def events(r: CommandReader, data: bytes = b"") -> list[Event]:
    r.feed(data)
    out = []
    while True:
        event = r.next()
        if event is None:
            return out
        out.append(event)


def test_atomsAndQuotedStrings() -> None:
    """
    A line splits into atoms and unescaped quoted strings; spaces separate
    them and extra ones are tolerated.
    """
    tokens, literal = tokenizeLine(b'RENAMESCRIPT  "old \\"one\\"" "new\\\\x"')
    assert tokens == [Atom(b"RENAMESCRIPT"), b'old "one"', b"new\\x"]
    assert literal is None


def test_utf8InQuotedStrings() -> None:
    """
    Quoted strings carry UTF-8 unchanged (SAFE-UTF8-CHAR).
    """
    tokens, _ = tokenizeLine('GETSCRIPT "Ferien-Ümlaut"'.encode())
    assert tokens == [Atom(b"GETSCRIPT"), "Ferien-Ümlaut".encode()]


@pytest.mark.parametrize(
    "line",
    [
        b'GETSCRIPT "unterminated',
        b'GETSCRIPT "bad \\n escape"',
        b'GETSCRIPT "nul\x00"',
        b"GETSCRIPT {5+} trailing",
        b"GETSCRIPT {x+}",
        b"GET(SCRIPT",
        b'GETSCRIPT"glued"x',
        b"GETSCRIPT {99999999999+}",
    ],
)
def test_syntaxErrors(line: bytes) -> None:
    """
    Anything the grammar does not allow is a syntax problem.
    """
    with pytest.raises(SyntaxProblem):
        tokenizeLine(line)


def test_quotedLimit() -> None:
    """
    A quoted string may have 1024 octets (RFC 5804), not more.
    """
    tokens, _ = tokenizeLine(b'X "' + b"a" * MAX_QUOTED + b'"')
    assert tokens[1] == b"a" * MAX_QUOTED
    with pytest.raises(SyntaxProblem):
        tokenizeLine(b'X "' + b"a" * (MAX_QUOTED + 1) + b'"')


def test_literalHeaders() -> None:
    """
    A line ending in C{{N+}} or C{{N}} announces a literal.
    """
    assert tokenizeLine(b'PUTSCRIPT "a" {12+}') == ([Atom(b"PUTSCRIPT"), b"a"], (12, False))
    assert tokenizeLine(b"CHECKSCRIPT {0}") == ([Atom(b"CHECKSCRIPT")], (0, True))


def test_commandsInPieces() -> None:
    """
    Input split at every octet gives the same commands, in order, with
    non-synchronizing literals read in place and the command continuing
    after them.
    """
    data = b'NOOP\r\nPUTSCRIPT {4+}\r\nname {10+}\r\nkeep;\r\nxyz\r\nLOGOUT\r\n'
    r = reader()
    out: list[Event] = []
    for i in range(len(data)):
        out += events(r, data[i : i + 1])
    assert out == [
        Command((Atom(b"NOOP"),)),
        Command((Atom(b"PUTSCRIPT"), b"name", b"keep;\r\nxyz")),
        Command((Atom(b"LOGOUT"),)),
    ]
    assert not r.linePending and not r.inLiteral


def test_bareLF() -> None:
    """
    A bare LF ends a line too (lenient, like the other servers).
    """
    assert events(reader(), b"CAPABILITY\n") == [Command((Atom(b"CAPABILITY"),))]


def test_emptyLinesIgnored() -> None:
    """
    Empty lines are skipped without an event.
    """
    assert events(reader(), b"\r\n\r\nNOOP\r\n") == [Command((Atom(b"NOOP"),))]


def test_synchronizingLiteral() -> None:
    """
    A synchronizing literal within its limit asks for the go-ahead; the
    octets that follow are the string.
    """
    r = reader()
    assert events(r, b"CHECKSCRIPT {5}\r\n") == [Continue(5)]
    assert r.inLiteral
    assert events(r, b"keep;\r\n") == [Command((Atom(b"CHECKSCRIPT"), b"keep;"))]


def test_literalLimitAskedWithTokensSoFar() -> None:
    """
    The limit callback sees the tokens read so far of the command, so the
    server can allow a script where a script goes.
    """
    seen: list[Sequence[Token]] = []

    def limit(tokens: Sequence[Token]) -> int:
        seen.append(tuple(tokens))
        return 100

    r = CommandReader(limit)
    events(r, b"PUTSCRIPT {1+}\r\na {2+}\r\nxy\r\n")
    assert seen == [(Atom(b"PUTSCRIPT"),), (Atom(b"PUTSCRIPT"), b"a")]


def test_synchronizingLiteralTooBigNotSent() -> None:
    """
    A synchronizing literal over its limit is refused at once: the client
    sends nothing more for that command, and the next one is read.
    """
    r = reader(limit=10)
    out = events(r, b"CHECKSCRIPT {11}\r\nNOOP\r\n")
    assert isinstance(out[0], Rejected)
    assert out[0].problem.literalSize == 11 and out[0].problem.limit == 10
    assert out[0].tokens == (Atom(b"CHECKSCRIPT"),)
    assert out[1:] == [Command((Atom(b"NOOP"),))]


def test_nonSynchronizingLiteralTooBigDiscarded() -> None:
    """
    A non-synchronizing literal over its limit is read and thrown away
    (nothing kept), with the rest of its command; then the command is
    rejected and the next one is read normally.
    """
    r = reader(limit=10, maxDiscard=1000)
    out = events(r, b'PUTSCRIPT "a" {500+}\r\n' + b"x" * 200)
    assert out == []
    assert r.buffered == 0  # discarded as it arrives
    out = events(r, b"x" * 300 + b' "more"\r\nNOOP\r\n')
    assert [type(e) for e in out] == [Rejected, Command]
    assert out[0].problem.literalSize == 500  # type: ignore[union-attr]


def test_literalBeyondDiscardIsFatal() -> None:
    """
    A non-synchronizing literal too large even to discard ends the
    connection.
    """
    out = events(reader(limit=10, maxDiscard=1000), b"CHECKSCRIPT {1001+}\r\n")
    assert len(out) == 1 and isinstance(out[0], Fatal)


def test_lineTooLong() -> None:
    """
    A line longer than the limit is fatal, whether or not its end has
    arrived.
    """
    assert isinstance(events(reader(maxLineLength=20), b"X" * 22)[0], Fatal)
    assert isinstance(events(reader(maxLineLength=20), b"X" * 21 + b"\r\n")[0], Fatal)
    assert events(reader(maxLineLength=20), b"X" * 20 + b"\r\n") == [Command((Atom(b"X" * 20),))]


def test_syntaxErrorSkipsTrailingLiteral() -> None:
    """
    After a syntax error the rest of the command is skipped, including a
    non-synchronizing literal the line announced.
    """
    out = events(reader(), b'PUTSCRIPT "a\\x" {5+}\r\n{bad}\r\nNOOP\r\n')
    assert isinstance(out[0], Rejected)
    assert out[0].problem.literalSize is None
    assert out[1:] == [Command((Atom(b"NOOP"),))]


def test_tooManyArguments() -> None:
    """
    More than MAX_ARGUMENTS arguments are refused, so that many small
    literals cannot add up.
    """
    line = b"NOOP" + b" {1+}\r\nx" * (MAX_ARGUMENTS + 1) + b"\r\n"
    out = events(reader(), line)
    assert len(out) == 1 and isinstance(out[0], Rejected)


def test_reset() -> None:
    """
    L{CommandReader.reset} drops buffered input and the command in
    progress, and says how much was dropped.
    """
    r = reader()
    events(r, b"PUTSCRIPT {10+}\r\nabc")
    assert r.inLiteral
    assert r.reset() == 3
    assert not r.inLiteral and not r.linePending
    assert events(r, b"NOOP\r\n") == [Command((Atom(b"NOOP"),))]


def test_linePending() -> None:
    """
    A partial line (or a command continuing after a literal) is pending.
    """
    r = reader()
    events(r, b"NOO")
    assert r.linePending
    events(r, b"P\r\n")
    assert not r.linePending


def upper(token: Optional[Token]) -> str:
    assert isinstance(token, Atom)
    return token.upper()


def test_atomUpper() -> None:
    """
    Command names compare case-insensitively.
    """
    assert upper(tokenizeLine(b"putScript")[0][0]) == "PUTSCRIPT"
