# -*- test-case-name: tests.test_pipeline -*-
"""
A base class for filters that care about only some stages.
"""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import implementer

from mailsrv.envelope import Address, Envelope, Session
from mailsrv.interfaces import ACCEPT, FilterResult, IFilter, IMessageContent


@implementer(IFilter)
class Filter:
    """
    Accepts at every stage; subclasses override the stages they check.
    """

    name = "filter"

    def checkConnection(self, session: Session) -> "defer.Deferred[FilterResult]":
        return defer.succeed(ACCEPT)

    def checkSender(self, session: Session, envelope: Envelope) -> "defer.Deferred[FilterResult]":
        return defer.succeed(ACCEPT)

    def checkRecipient(
        self, session: Session, envelope: Envelope, recipient: Address
    ) -> "defer.Deferred[FilterResult]":
        return defer.succeed(ACCEPT)

    def checkMessage(
        self, session: Session, envelope: Envelope, message: IMessageContent
    ) -> "defer.Deferred[FilterResult]":
        return defer.succeed(ACCEPT)
