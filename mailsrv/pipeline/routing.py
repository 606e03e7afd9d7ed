# -*- test-case-name: tests.test_pipeline -*-
"""
Routing: the explicit step that decides, per recipient, whether mail is
delivered here, relayed, or refused.

Only the domain after the last C{@} of the parsed address is looked at; the
SMTP address parser has already made source routes, quoting and literals
unambiguous.  A non-local domain is relayed only for an authenticated
session: there is no other way to relay through mailsrv.
"""

from __future__ import annotations

import dataclasses
import enum

from mailsrv.envelope import Address, Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IDirectory


class RouteKind(enum.Enum):
    LOCAL = "local"
    REMOTE = "remote"


@dataclasses.dataclass(frozen=True)
class Route:
    """
    @ivar accounts: local accounts receiving the message (for C{LOCAL}).
    @ivar remote: addresses to send on (a C{REMOTE} recipient itself, or
        the external targets of a local alias).
    """

    kind: RouteKind
    accounts: tuple[str, ...] = ()
    remote: tuple[Address, ...] = ()


class Router:
    def __init__(self, directory: IDirectory) -> None:
        self.directory = directory

    def route(self, session: Session, recipient: Address) -> Route:
        """
        @raise MailError: C{POLICY} for relaying without authentication,
            C{NOT_FOUND} for an unknown local recipient.
        """
        if recipient.domain.startswith("[") or not self.directory.isLocalDomain(recipient.domain):
            if session.authenticatedAs is None:
                raise MailError(ErrorKind.POLICY, "Relay access denied", reason="relay-denied")
            return Route(RouteKind.REMOTE, remote=(recipient,))
        targets = self.directory.expandRecipient(f"{recipient.local.lower()}@{recipient.domain}")
        if not targets:
            raise MailError(
                ErrorKind.NOT_FOUND, "Recipient address rejected: User unknown in virtual mailbox table"
            )
        accounts: list[str] = []
        remote: list[Address] = []
        for target in targets:
            address = Address.fromString(target)
            if self.directory.isLocalDomain(address.domain):
                accounts.append(target)
            else:
                remote.append(address)
        return Route(RouteKind.LOCAL, accounts=tuple(accounts), remote=tuple(remote))
