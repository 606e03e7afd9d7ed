# -*- test-case-name: tests.queue.test_queued -*-
"""
The delivery target that hands messages to the outbound queue.

The message is written into the spool's C{tmp/} as it arrives and moved
to C{incoming/} by L{commit}, after the fsyncs (in a thread); only then
does the protocol answer C{250 Ok: queued as ID}.  The queue id is the
envelope's message id, so the SMTP reply and the queue agree.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.envelope import Address, Envelope, Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IDelivery, IDeliveryTarget
from mailsrv.queue.scheduler import RunBlocking, Scheduler
from mailsrv.queue.spool import QueueEntry, RecipientState, Spool, SpoolWriter, validQueueId

# The MAIL parameters the queue needs downstream.
KEPT_PARAMETERS = ("BODY", "SMTPUTF8")


@implementer(IDeliveryTarget)
class QueuedDelivery:
    log = Logger()

    def __init__(
        self,
        spool: Spool,
        scheduler: Optional[Scheduler],
        runBlocking: RunBlocking,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spool = spool
        self.scheduler = scheduler
        self.runBlocking = runBlocking
        self.clock = clock

    def startDelivery(self, session: Session, envelope: Envelope) -> IDelivery:
        return _QueuedDelivery(self, session, envelope)


@implementer(IDelivery)
class _QueuedDelivery:
    def __init__(self, target: QueuedDelivery, session: Session, envelope: Envelope) -> None:
        self._target = target
        self._session = session
        self._envelope = envelope
        self._recipients: list[str] = []
        self._writer: Optional[SpoolWriter] = None
        self._done = False

    def checkSender(self) -> "defer.Deferred[None]":
        return defer.succeed(None)

    def addRecipient(self, recipient: Address) -> "defer.Deferred[None]":
        address = str(recipient)
        if address.lower() not in (r.lower() for r in self._recipients):
            self._recipients.append(address)
        return defer.succeed(None)

    def _queueId(self) -> str:
        candidate = self._envelope.messageId
        return candidate if validQueueId(candidate) else uuid.uuid4().hex

    def write(self, data: bytes) -> None:
        try:
            if self._writer is None:
                mailFrom = self._envelope.mailFrom
                entry = QueueEntry(
                    queueId=self._queueId(),
                    sender=str(mailFrom) if mailFrom is not None else "",
                    recipients=[RecipientState(r) for r in self._recipients],
                    createdAt=self._target.clock(),
                    mailParams={k: v for k, v in self._envelope.mailParams.items() if k in KEPT_PARAMETERS},
                )
                self._writer = self._target.spool.newWriter(entry)
            self._writer.write(data)
        except OSError:
            self._target.log.failure("Cannot write to the queue", msgId=self._envelope.messageId)
            raise MailError(ErrorKind.TEMP, "Error: queue file write error", temporary=True)

    def commit(self) -> "defer.Deferred[None]":
        return defer.Deferred.fromCoroutine(self._commit())

    async def _commit(self) -> None:
        if self._writer is None:
            self.write(b"")
        assert self._writer is not None
        writer = self._writer
        try:
            await self._target.runBlocking(writer.commit)
        except OSError:
            self._target.log.failure("Cannot commit to the queue", msgId=writer.entry.queueId)
            writer.abort()
            raise MailError(ErrorKind.TEMP, "Error: queue file write error", temporary=True)
        finally:
            self._done = True
        self._target.log.info(
            "Queued {msgId} from {mailFrom} for {rcptCount} remote recipients",
            msgId=writer.entry.queueId,
            mailFrom=writer.entry.sender or "<>",
            rcptCount=len(writer.entry.recipients),
        )
        if self._target.scheduler is not None:
            self._target.scheduler.enqueued(writer.entry.queueId)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        if self._writer is not None:
            self._writer.abort()
