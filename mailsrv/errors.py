# -*- test-case-name: tests.test_errors -*-
"""
One error taxonomy for every protocol.

Library code raises L{MailError} with a L{ErrorKind}; each protocol maps the
kind to its own reply (SMTP code and enhanced status, IMAP response code, POP3
C{-ERR}).  The message given to L{MailError} is shown to the client, so it is
generic; details belong in the log.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    NOT_FOUND = "not-found"  # no such mailbox / user / message
    NO_QUOTA = "no-quota"  # over quota
    TOO_BIG = "too-big"  # message or literal over a size limit
    TOO_MANY = "too-many"  # recipients, connections or commands over a limit
    POLICY = "policy"  # refused by policy (relay, TLS, auth)
    SYNTAX = "syntax"  # the client sent something malformed
    TEMP = "temp"  # local trouble; try again later
    PERM = "perm"  # permanent failure not covered above
    SENDER = "sender"  # a sender address (MAIL FROM, From:) the user may not use
    REJECTED = "rejected"  # refused by a filter (DMARC, spam, virus...)
    RATE_LIMITED = "rate-limited"  # over a sending rate limit; later is fine


class MailError(Exception):
    """
    A failure a client should hear about.

    @ivar kind: what went wrong, protocol-neutral.
    @ivar message: client-visible text (no secrets, no internal paths).
    @ivar temporary: whether retrying later may succeed.
    """

    def __init__(self, kind: ErrorKind, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.temporary = temporary

    def __repr__(self) -> str:
        return (
            f"MailError({self.kind.name}, {self.message!r}, "
            f"temporary={self.temporary})"
        )


class ConfigError(Exception):
    """
    The configuration is invalid.  The string form names the file and the key
    so that it can be printed as the one line an operator needs.
    """

    def __init__(self, path: str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem
