# -*- test-case-name: tests.sieve.test_parser -*-
"""
The errors of the Sieve package.

A L{SieveSyntaxError} is found before any message is seen (when a script is
uploaded or loaded) and names the line at fault; a L{SieveRuntimeError}
happens while one message is filtered, and the caller then files the
message as if there were no script (RFC 5228 section 2.10.6).
"""

from __future__ import annotations


class SieveError(Exception):
    """
    Anything that stops a script from being compiled or run.
    """


class SieveSyntaxError(SieveError):
    """
    The script is not valid: a lexical or grammar error, or something the
    validation of commands, tests and arguments rejects.

    @ivar line: the 1-based line of the script where the fault is.
    @ivar message: what is wrong, without the line.
    """

    def __init__(self, line: int, message: str) -> None:
        super().__init__(line, message)
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class SieveRuntimeError(SieveError):
    """
    The script failed while filtering a message: too many actions or
    redirects, a regular expression or argument that only turned out to be
    bad once variables were expanded, a body test without a body, and so on.
    """
