# -*- test-case-name: tests.queue.test_submission -*-
"""
What the server does for mail handed over by its own users (RFC 6409
message submission): who may use which addresses, and the header fields a
submission server completes.

Both rules apply to I{submitted} mail only: a session that authenticated
and is not the server's own injection session (bounces).  Mail arriving on
the MX port from the world is left alone.

Ownership: an account owns its own address (with any C{+extension}) and
every address whose delivery reaches it through the alias table (an alias
or a list alias that targets it, a catch-all of a domain for addresses
that are neither an account nor an alias).  This is docker-mailserver's
C{SPOOF_PROTECTION} rule: the same table that routes mail to the user
says what the user may send as.
"""

from __future__ import annotations

import email.utils
import time
import uuid
from typing import Callable

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.envelope import Envelope, Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import HeaderEdit, IDirectory, IMessageContent, IModifier
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode

log = Logger()

# The endpoint of sessions the server opens itself, to inject mail it
# generates (delivery status notifications) into the pipeline.  Identity,
# not the name, marks it: no configured endpoint can be mistaken for it.
INTERNAL_ENDPOINT = EndpointPolicy("(internal)", Protocol.SMTP, (), TLSMode.NONE, auth=False)


def internalSession() -> Session:
    """
    A session for mail the server itself generates.  It counts as
    authenticated (as the postmaster of no domain) so the router lets it
    reach remote senders, but the submission rules skip it.
    """
    return Session(endpoint=INTERNAL_ENDPOINT, peerHost="127.0.0.1", authenticatedAs="MAILER-DAEMON")


def isInternal(session: Session) -> bool:
    return session.endpoint is INTERNAL_ENDPOINT


def isSubmission(session: Session) -> bool:
    """
    Whether the submission rules apply: an authenticated user's session.
    """
    return session.authenticatedAs is not None and not isInternal(session)


def ownsAddress(directory: IDirectory, account: str, address: str) -> bool:
    """
    Whether C{account} may use C{address} as a sender (see the module
    docstring).  Compared case-insensitively.
    """
    account = account.strip().lower()
    wanted = address.strip().lower()
    if wanted == account:
        return True
    if "@" not in wanted:
        return False
    return account in (t.strip().lower() for t in directory.expandRecipient(wanted))


def notOwned(account: str) -> MailError:
    return MailError(ErrorKind.SENDER, f"Sender address rejected: not owned by user {account}")


def _fromAddresses(message: IMessageContent) -> list[str]:
    values = message.headers().get_all("From") or []
    return [addr for _, addr in email.utils.getaddresses([str(v) for v in values])]


def _addressSyntaxOk(address: str) -> bool:
    local, sep, domain = address.rpartition("@")
    return bool(sep and local and domain)


@implementer(IModifier)
class SubmissionModifier:
    """
    Completes and checks the header section of submitted mail:

     - with C{spoofProtection}, every From: mailbox must be owned by the
       authenticated account, else the message is refused (553 5.7.1) at
       the end of data;
     - a missing Message-ID or Date is added (RFC 6409 section 8), so
       replies thread and clients sort correctly even from minimal
       senders (scripts, printers).

    @param clock: seconds since the epoch, for the Date field.
    """

    def __init__(
        self,
        directory: IDirectory,
        hostname: str,
        spoofProtection: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.hostname = hostname
        self.spoofProtection = spoofProtection
        self.clock = clock

    def modify(
        self, session: Session, envelope: Envelope, message: IMessageContent
    ) -> "defer.Deferred[HeaderEdit]":
        if not isSubmission(session):
            return defer.succeed(HeaderEdit())
        account = session.authenticatedAs
        assert account is not None
        headers = message.headers()
        if self.spoofProtection:
            for address in _fromAddresses(message):
                if not _addressSyntaxOk(address) or not ownsAddress(self.directory, account, address):
                    log.info(
                        "From: {address} refused for {account}",
                        address=address[:200],
                        account=account,
                        msgId=envelope.messageId,
                        sessionId=session.sessionId,
                        endpoint=session.endpoint.name,
                    )
                    return defer.fail(notOwned(account))
        added: list[str] = []
        if headers.get("Message-ID") is None:
            added.append(f"Message-ID: <{uuid.uuid4().hex}@{self.hostname}>")
        if headers.get("Date") is None:
            added.append(f"Date: {email.utils.formatdate(self.clock(), localtime=True)}")
        return defer.succeed(HeaderEdit(append=tuple(added)))
