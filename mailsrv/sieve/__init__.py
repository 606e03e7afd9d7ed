# -*- test-case-name: tests.sieve -*-
"""
Sieve mail filtering (RFC 5228 and extensions), as pure functions over
data: no I/O, no Twisted, synchronous.

L{parseScript} checks and compiles a script once; L{evaluate} runs it for
one message and recipient and returns the L{Action}s for the delivery
agent.  L{mailsrv.sieve.vacation} has the helpers that decide whether a
L{Vacation} reply goes out and build it.  The package re-exports its API
here (unlike other mailsrv packages) because that API is what delivery
and, later, ManageSieve are written against.
"""

from mailsrv.sieve.actions import Action, Discard, FileInto, Keep, Redirect, Vacation
from mailsrv.sieve.compiler import SUPPORTED_EXTENSIONS, parseScript
from mailsrv.sieve.context import MessageContext
from mailsrv.sieve.errors import SieveError, SieveRuntimeError, SieveSyntaxError
from mailsrv.sieve.interpreter import evaluate
from mailsrv.sieve.script import Script

__all__ = [
    "Action",
    "Discard",
    "FileInto",
    "Keep",
    "MessageContext",
    "Redirect",
    "SUPPORTED_EXTENSIONS",
    "Script",
    "SieveError",
    "SieveRuntimeError",
    "SieveSyntaxError",
    "Vacation",
    "evaluate",
    "parseScript",
]
