# -*- test-case-name: tests.protocols.test_smtp_server -*-
"""
Fakes for testing code that uses mailsrv's interfaces.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer
from zope.interface import implementer

from mailsrv.auth.realm import MailRealm
from mailsrv.envelope import Address, Envelope, Session
from mailsrv.errors import MailError
from mailsrv.interfaces import IDelivery, IDeliveryTarget


@dataclasses.dataclass
class RecordedMessage:
    session: Session
    envelope: Envelope
    recipients: list[Address]
    data: bytes


@implementer(IDeliveryTarget)
class RecordingTarget:
    """
    Accepts recipients that C{acceptRecipient} approves and records every
    committed message in L{messages}.  Set L{commitResult} to a Deferred to
    control when commits complete.

    @ivar aborted: how many deliveries were aborted.
    """

    def __init__(self, acceptRecipient: Optional[Callable[[Address], Optional[MailError]]] = None) -> None:
        self.acceptRecipient = acceptRecipient or (lambda address: None)
        self.acceptSender: Callable[[Optional[Address]], Optional[MailError]] = lambda address: None
        self.messages: list[RecordedMessage] = []
        self.aborted = 0
        self.pendingCommits: list[defer.Deferred[None]] = []
        self.holdCommits = False
        self.recipientResults: Optional[list[defer.Deferred[None]]] = None

    def startDelivery(self, session: Session, envelope: Envelope) -> IDelivery:
        return _RecordingDelivery(self, session, envelope)


@implementer(IDelivery)
class _RecordingDelivery:
    def __init__(self, target: RecordingTarget, session: Session, envelope: Envelope) -> None:
        self.target = target
        self.session = session
        self.envelope = envelope
        self.recipients: list[Address] = []
        self.chunks: list[bytes] = []
        self.done = False

    def checkSender(self) -> defer.Deferred[None]:
        error = self.target.acceptSender(self.envelope.mailFrom)
        if error is not None:
            return defer.fail(error)
        return defer.succeed(None)

    def addRecipient(self, recipient: Address) -> defer.Deferred[None]:
        error = self.target.acceptRecipient(recipient)
        if error is not None:
            return defer.fail(error)
        self.recipients.append(recipient)
        if self.target.recipientResults is not None:
            d: defer.Deferred[None] = defer.Deferred()
            self.target.recipientResults.append(d)
            return d
        return defer.succeed(None)

    def write(self, data: bytes) -> None:
        assert not self.done
        self.chunks.append(data)

    def commit(self) -> defer.Deferred[None]:
        self.done = True
        message = RecordedMessage(self.session, self.envelope, list(self.recipients), b"".join(self.chunks))
        if self.target.holdCommits:
            d: defer.Deferred[None] = defer.Deferred()
            d.addCallback(lambda _: self.target.messages.append(message))
            self.target.pendingCommits.append(d)
            return d
        self.target.messages.append(message)
        return defer.succeed(None)

    def abort(self) -> None:
        if not self.done:
            self.done = True
            self.target.aborted += 1


def staticPortal(users: dict[str, str]) -> tuple[Portal, MailRealm]:
    """
    A portal over an in-memory user table (account id -> password), with a
    fresh L{MailRealm} the caller may register more avatar factories on.
    """
    checker = InMemoryUsernamePasswordDatabaseDontUse()
    for name, password in users.items():
        checker.addUser(name.encode("utf-8"), password.encode("utf-8"))
    realm = MailRealm()
    return Portal(realm, [checker]), realm
