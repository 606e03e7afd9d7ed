# -*- test-case-name: tests.test_delivery_quota -*-
"""
Quota enforcement for local delivery, as a decorator around any delivery
target (the way Dovecot's quota plugin wraps the save path).

 - At RCPT: a mailbox already at or over its limit is refused with a
   temporary C{452 4.2.2} (the owner may make room; Postfix + Dovecot with
   C{quota_full_tempfail} behave this way).
 - At the end of data: a message that would take a mailbox over its limit
   is refused with C{552 5.2.2}.  SMTP has one reply for the whole
   message, so one recipient over quota refuses it for all; the sending
   server then bounces it with that reason.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import defer
from zope.interface import implementer

from mailsrv.envelope import Address, Envelope, Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IDelivery, IDeliveryTarget, IQuota


@implementer(IDeliveryTarget)
class QuotaEnforcingTarget:
    def __init__(self, target: IDeliveryTarget, quota: IQuota) -> None:
        self.target = target
        self.quota = quota

    def startDelivery(self, session: Session, envelope: Envelope) -> IDelivery:
        return _QuotaDelivery(self.quota, self.target.startDelivery(session, envelope))


@implementer(IDelivery)
class _QuotaDelivery:
    def __init__(self, quota: IQuota, delivery: IDelivery) -> None:
        self._quota = quota
        self._delivery = delivery
        # account -> (limit, usage at RCPT time)
        self._limited: dict[str, tuple[int, int]] = {}
        self._size = 0

    def checkSender(self) -> "defer.Deferred[None]":
        return self._delivery.checkSender()

    def addRecipient(self, recipient: Address) -> "defer.Deferred[None]":
        return defer.Deferred.fromCoroutine(self._addRecipient(recipient))

    async def _addRecipient(self, recipient: Address) -> None:
        account = str(recipient)
        limit: Optional[int] = self._quota.limit(account)
        if limit is not None:
            usage = await self._quota.usage(account)
            if usage >= limit:
                raise MailError(ErrorKind.NO_QUOTA, "Mailbox is full", temporary=True)
            self._limited[account] = (limit, usage)
        await self._delivery.addRecipient(recipient)

    def write(self, data: bytes) -> None:
        self._size += len(data)
        self._delivery.write(data)

    def commit(self) -> "defer.Deferred[None]":
        for limit, usage in self._limited.values():
            if usage + self._size > limit:
                self._delivery.abort()
                return defer.fail(MailError(ErrorKind.NO_QUOTA, "Message would exceed the mailbox quota"))
        return self._delivery.commit()

    def abort(self) -> None:
        self._delivery.abort()
