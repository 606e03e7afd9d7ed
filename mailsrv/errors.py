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
from typing import Optional


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
    LOOP = "loop"  # a mail loop: too many hops (Received: fields)


# The reason logged (and counted on /metrics) for a refusal of each kind,
# unless the code raising it names a more precise one.
_REASONS = {
    ErrorKind.NOT_FOUND: "unknown-user",
    ErrorKind.NO_QUOTA: "quota",
    ErrorKind.TOO_BIG: "size",
    ErrorKind.TOO_MANY: "too-many",
    ErrorKind.POLICY: "policy",
    ErrorKind.SYNTAX: "syntax",
    ErrorKind.TEMP: "local-error",
    ErrorKind.PERM: "refused",
    ErrorKind.SENDER: "sender-not-owned",
    ErrorKind.REJECTED: "filter",
    ErrorKind.RATE_LIMITED: "rate-limited",
    ErrorKind.LOOP: "hop-limit",
}


class MailError(Exception):
    """
    A failure a client should hear about.

    @ivar kind: what went wrong, protocol-neutral.
    @ivar message: client-visible text (no secrets, no internal paths).
    @ivar temporary: whether retrying later may succeed.
    @ivar reason: one stable word for logs and metrics (C{relay-denied},
        C{unknown-user}, a filter's name...); by default derived from the
        kind.
    """

    def __init__(
        self, kind: ErrorKind, message: str, *, temporary: bool = False, reason: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.temporary = temporary
        self.reason = reason or _REASONS.get(kind, kind.value)

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
