# -*- test-case-name: tests.sieve.test_parser -*-
"""
A compiled script: the tree L{mailsrv.sieve.compiler} builds and
L{mailsrv.sieve.interpreter} runs.

Strings are C{str}, or L{Template} where they hold variable references to
expand at run time; string lists are tuples of those.  Tagged arguments are
in C{tags} by name without the colon (C{True} for a tag without an
argument); the match type, comparator and relational operator of a test
are gathered in its L{MatchSpec}.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Union

from mailsrv.sieve.matching import MatchSpec
from mailsrv.sieve.variables import Template

StringArgument = Union[str, Template]
StringListArgument = tuple[StringArgument, ...]
Value = Union[StringArgument, StringListArgument, int, bool]


@dataclasses.dataclass(frozen=True)
class Test:
    """
    A test.

    @ivar args: the positional arguments, in order; those a script may
        leave out (a variable list, a variable name) are L{None} when it did.
    @ivar match: how keys are compared, for tests that have keys.
    @ivar addressPart: C{all}, C{localpart}, C{domain}, C{user} or
        C{detail}, for the address and envelope tests.
    """

    name: str
    line: int
    tags: Mapping[str, Value]
    args: tuple[Optional[Value], ...]
    tests: tuple["Test", ...] = ()
    match: Optional[MatchSpec] = None
    addressPart: str = "all"


@dataclasses.dataclass(frozen=True)
class Command:
    """
    A command other than if/elsif/else.
    """

    name: str
    line: int
    tags: Mapping[str, Value]
    args: tuple[Optional[Value], ...]


@dataclasses.dataclass(frozen=True)
class Conditional:
    """
    An C{if} with its C{elsif}s and C{else}: the first branch whose test is
    true (L{None} for else) runs.
    """

    line: int
    branches: tuple[tuple[Optional[Test], tuple["Node", ...]], ...]


Node = Union[Command, Conditional]


@dataclasses.dataclass(frozen=True)
class Script:
    """
    A compiled script, ready to run against any number of messages.

    @ivar commands: the top-level commands (without the requires).
    @ivar extensions: the capabilities the script required.
    """

    commands: tuple[Node, ...]
    extensions: frozenset[str]
