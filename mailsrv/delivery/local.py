# -*- test-case-name: tests.test_delivery_local -*-
"""
Final delivery into local mailboxes through an L{IMailStore}.

The message is written once for all recipients (the store links it into
each INBOX), preceded by C{Return-Path:} (RFC 5321 section 4.4: added at
final delivery).
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import defer
from zope.interface import implementer

from mailsrv.envelope import Address, Envelope, Session
from mailsrv.interfaces import IDelivery, IDeliveryTarget, IMailStore, IMessageWriter


# Where quarantined mail goes (docker-mailserver's and Dovecot's name).
JUNK_FOLDER = "Junk"


@implementer(IDeliveryTarget)
class LocalDelivery:
    def __init__(self, store: IMailStore) -> None:
        self.store = store

    def startDelivery(self, session: Session, envelope: Envelope) -> IDelivery:
        return _LocalDelivery(self.store, envelope)


def returnPathHeader(envelope: Envelope) -> bytes:
    sender = str(envelope.mailFrom) if envelope.mailFrom is not None else ""
    return f"Return-Path: <{sender}>\r\n".encode("utf-8")


@implementer(IDelivery)
class _LocalDelivery:
    def __init__(self, store: IMailStore, envelope: Envelope) -> None:
        self._store = store
        self._envelope = envelope
        self._accounts: list[str] = []
        self._writer: Optional[IMessageWriter] = None

    def checkSender(self) -> "defer.Deferred[None]":
        return defer.succeed(None)

    def addRecipient(self, recipient: Address) -> "defer.Deferred[None]":
        account = str(recipient)
        if account not in self._accounts:
            self._accounts.append(account)
        return defer.succeed(None)

    def write(self, data: bytes) -> None:
        if self._writer is None:
            if self._envelope.quarantined:
                # A filter asked for the Junk folder (created if missing),
                # as Dovecot's sieve "fileinto Junk" does for spam.
                self._writer = self._store.startMessage(self._accounts, folder=JUNK_FOLDER)
            else:
                self._writer = self._store.startMessage(self._accounts)
            self._writer.write(returnPathHeader(self._envelope))
        if data:
            self._writer.write(data)

    def commit(self) -> "defer.Deferred[None]":
        if self._writer is None:
            self.write(b"")
        assert self._writer is not None
        return self._writer.commit()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
