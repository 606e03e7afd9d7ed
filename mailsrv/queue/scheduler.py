# -*- test-case-name: tests.queue.test_scheduler -*-
"""
When queued messages are tried, and what happens after each attempt.

Timers run on an injected clock.  A temporary failure (4xx, no server
reachable, DNS trouble) is retried after C{retryInitial} seconds, doubling
up to C{retryMax}; a permanent one (5xx, null MX, no such domain) fails the
recipient at once; a message older than C{lifetime} fails its remaining
recipients.  Failed recipients are reported to the sender in one DSN per
attempt (L{mailsrv.queue.bounce}), injected through the pipeline.  With
C{delayWarning} set, a message still not delivered that long after it was
queued makes the sender get one "delayed" DSN (once per message).

State survives restarts: the per-recipient state is written to the
envelope after each attempt, before the message moves to C{deferred/}.  A
crash between a successful hand-over and that write means the recipient
is tried again (delivered twice, never lost).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional, Protocol, Sequence

from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from mailsrv.config.schema import QueueConfig
from mailsrv.envelope import Address, Envelope
from mailsrv.errors import MailError
from mailsrv.interfaces import IDeliveryTarget
from mailsrv.pipeline.submission import internalSession
from mailsrv.queue.bounce import buildBounce, originalHeaders, MAX_RETURNED_HEADERS
from mailsrv.queue.relay import DELIVERED, PERMANENT, Outcome
from mailsrv.queue.spool import BOUNCED, FAILED, PENDING, QueueEntry, Spool
from pathlib import Path

# name[address]:port, as the deliverer names the server it talked to.
_RELAY = re.compile(r"^(.*)\[([^\]]*)\]:\d+$")

# Run a blocking callable off the reactor thread.
RunBlocking = Callable[..., "defer.Deferred[Any]"]


class Deliverer(Protocol):
    async def deliver(
        self, entry: QueueEntry, recipients: Sequence[str], messagePath: Path, context: dict[str, Any]
    ) -> list[Outcome]: ...


def backoff(config: QueueConfig, attempts: int) -> float:
    """
    Seconds to wait after the C{attempts}-th failed attempt.
    """
    return float(min(config.retryInitial * (2 ** max(0, attempts - 1)), config.retryMax))


def _readHeaders(path: Path) -> bytes:
    with open(path, "rb") as f:
        return originalHeaders(f.read(MAX_RETURNED_HEADERS))


def synchronous(f: Callable[..., Any], *args: Any) -> "defer.Deferred[Any]":
    """
    A L{RunBlocking} for tests: runs C{f} at once.
    """
    return defer.maybeDeferred(f, *args)


class Scheduler:
    """
    @ivar bounceTarget: where DSNs go (the pipeline); set after both exist.
    @param flushInterval: how often to look for C{mailsrv queue flush}'s
        trigger file.
    """

    log = Logger()

    def __init__(
        self,
        spool: Spool,
        deliverer: Deliverer,
        clock: IReactorTime,
        runBlocking: RunBlocking,
        config: QueueConfig,
        hostname: str,
        flushInterval: float = 1.0,
    ) -> None:
        self.spool = spool
        self.deliverer = deliverer
        self.clock = clock
        self.runBlocking = runBlocking
        self.config = config
        self.hostname = hostname
        self.flushInterval = flushInterval
        self.bounceTarget: Optional[IDeliveryTarget] = None
        self._timers: dict[str, IDelayedCall] = {}
        self._running: set[str] = set()
        self._active = defer.DeferredSemaphore(config.maxActive)
        self._poll: Optional[task.LoopingCall] = None
        self._stopped = False
        self.attempts: list["defer.Deferred[None]"] = []

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        recovered = await self.runBlocking(self.spool.recover)
        entries = await self.runBlocking(lambda: list(self.spool.entries()))
        now = self.clock.seconds()
        for state, queueId in entries:
            when = now
            if state == "deferred":
                try:
                    when = (await self.runBlocking(self.spool.load, state, queueId)).nextAttempt
                except Exception:
                    self.log.failure("Unreadable queue entry {msgId}; left alone", msgId=queueId)
                    continue
            self._schedule(queueId, when)
        self.log.info(
            "Queue started: {count} messages, {recovered} resumed from an interrupted attempt",
            count=len(entries),
            recovered=recovered,
        )
        self._poll = task.LoopingCall(self._checkFlush)
        self._poll.clock = self.clock
        self._poll.start(self.flushInterval, now=False)

    def stop(self) -> None:
        self._stopped = True
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        if self._poll is not None and self._poll.running:
            self._poll.stop()

    def enqueued(self, queueId: str) -> None:
        """
        A new message is durably in C{incoming/}: try it now.
        """
        self._schedule(queueId, self.clock.seconds())

    def flush(self) -> None:
        """
        Try every waiting message now (C{mailsrv queue flush}).
        """
        now = self.clock.seconds()
        for queueId in list(self._timers):
            self._schedule(queueId, now)

    def _checkFlush(self) -> None:
        try:
            requested = self.spool.takeFlushRequest()
        except OSError:
            return
        if requested:
            self.log.info("Queue flush requested; retrying {count} messages", count=len(self._timers))
            self.flush()

    def _schedule(self, queueId: str, when: float) -> None:
        if self._stopped or queueId in self._running:
            return
        old = self._timers.pop(queueId, None)
        if old is not None and old.active():
            old.cancel()
        delay = max(0.0, when - self.clock.seconds())
        self._timers[queueId] = self.clock.callLater(delay, self._fire, queueId)

    def _fire(self, queueId: str) -> None:
        self._timers.pop(queueId, None)
        d = defer.Deferred.fromCoroutine(self._attempt(queueId))
        d.addErrback(lambda f: self.log.failure("Queue attempt for {msgId} failed", f, msgId=queueId))
        self.attempts.append(d)
        d.addBoth(lambda _: self.attempts.remove(d))

    # -- one attempt ---------------------------------------------------------

    async def _attempt(self, queueId: str) -> None:
        if queueId in self._running:
            return
        self._running.add(queueId)
        nextAttempt: Optional[float] = None
        try:
            await self._active.acquire()
            try:
                nextAttempt = await self._attemptLocked(queueId)
            finally:
                self._active.release()
        finally:
            self._running.discard(queueId)
        if nextAttempt is not None:
            self._schedule(queueId, nextAttempt)

    async def _attemptLocked(self, queueId: str) -> Optional[float]:
        """
        One attempt; returns when to try again, or L{None} when done.
        """
        context = {"msgId": queueId}
        state = await self.runBlocking(self.spool.find, queueId)
        if state is None:
            self.log.info("Queue entry {msgId} is gone (deleted)", **context)
            return None
        try:
            if state != "active":
                await self.runBlocking(self.spool.move, queueId, state, "active")
            entry: QueueEntry = await self.runBlocking(self.spool.load, "active", queueId)
        except FileNotFoundError:
            self.log.info("Queue entry {msgId} is gone (deleted)", **context)
            return None
        path = self.spool.messagePath("active", queueId)
        pending = entry.pending()
        outcomes: list[Outcome] = []
        if pending:
            outcomes = await self.deliverer.deliver(entry, [r.address for r in pending], path, context)
            byAddress = {o.address: o for o in outcomes}
            for r in pending:
                outcome = byAddress.get(r.address)
                if outcome is None:
                    continue
                r.status, r.diagnostic, r.remoteMta = outcome.status, outcome.diagnostic, outcome.remoteMta
                if outcome.kind == DELIVERED:
                    r.state = DELIVERED
                elif outcome.kind == PERMANENT:
                    r.state = FAILED
        now = self.clock.seconds()
        if now - entry.createdAt >= self.config.lifetime:
            for r in entry.pending():
                r.state = FAILED
                r.diagnostic = f"delivery time expired; last problem: {r.diagnostic or 'unknown'}"
                r.status = r.status if r.status.startswith("4.") else "4.4.7"
        self._logAttempt(entry, outcomes, now, context)
        failed = [r for r in entry.recipients if r.state == FAILED]
        if failed:
            if not entry.sender:
                self.log.info("No bounce for a null sender; {count} recipients dropped", count=len(failed), **context)
                for r in failed:
                    r.state = BOUNCED
            elif await self._bounce(entry, failed, path, context):
                for r in failed:
                    r.state = BOUNCED
        entry.attempts += 1
        remaining = [r for r in entry.recipients if r.state in (PENDING, FAILED)]
        try:
            if not remaining:
                await self.runBlocking(self.spool.remove, "active", queueId)
                self.log.info(
                    "Queue entry {msgId} done: {delivered} delivered, {bounced} returned",
                    delivered=sum(r.state == DELIVERED for r in entry.recipients),
                    bounced=sum(r.state == BOUNCED for r in entry.recipients),
                    **context,
                )
                return None
            delay = backoff(self.config, entry.attempts)
            entry.nextAttempt = min(now + delay, max(now, entry.createdAt + self.config.lifetime))
            entry.lastError = next((r.diagnostic for r in remaining if r.diagnostic), "")
            if self._delayWarningDue(entry, now):
                delayed = [r for r in remaining if r.state == PENDING]
                retryUntil = entry.createdAt + self.config.lifetime
                if await self._bounce(entry, delayed, path, context, retryUntil=retryUntil):
                    entry.delayWarned = True
            await self.runBlocking(self.spool.save, "active", entry)
            await self.runBlocking(self.spool.move, queueId, "active", "deferred")
        except FileNotFoundError:
            self.log.info("Queue entry {msgId} was deleted during delivery", **context)
            return None
        self.log.info(
            "Queue entry {msgId} deferred for {delay}s: {error}",
            delay=round(entry.nextAttempt - now),
            error=entry.lastError,
            **context,
        )
        return entry.nextAttempt

    def _logAttempt(self, entry: QueueEntry, outcomes: list[Outcome], now: float, context: dict[str, Any]) -> None:
        """
        One line per recipient tried, after Postfix's C{to=<...>, relay=...,
        delay=..., dsn=..., status=sent (...)}: what an operator greps for
        when asked where a message went.  C{status} is C{sent}, C{deferred}
        (tried again later), C{bounced} (refused for good) or C{expired}
        (deferred past the queue lifetime); the last two are returned to
        the sender.
        """
        states = {r.address: r.state for r in entry.recipients}
        for outcome in outcomes:
            if outcome.kind == DELIVERED:
                status = "sent"
            elif outcome.kind == PERMANENT:
                status = "bounced"
            else:
                status = "expired" if states.get(outcome.address) == FAILED else "deferred"
            relay = _RELAY.match(outcome.relay)
            if outcome.tlsVersion:
                tls = f"{outcome.tlsVersion} {'verified' if outcome.tlsVerified else 'unverified'}"
            else:
                tls = "none"
            self.log.info(
                "{msgId}: to=<{rcpt}>, relay={relay}, tls={tls}, attempt={attempt}, delay={delay}, "
                "dsn={dsn}, status={status} ({reply})",
                rcpt=outcome.address,
                mailFrom=entry.sender,
                relay=outcome.relay,
                relayHost=relay.group(1) if relay else None,
                relayIP=relay.group(2) if relay else None,
                tls=tls,
                tlsVersion=outcome.tlsVersion or None,
                tlsVerified=outcome.tlsVerified,
                attempt=entry.attempts + 1,
                delay=round(max(0.0, now - entry.createdAt), 2),
                dsn=outcome.status,
                status=status,
                reply=outcome.diagnostic,
                **context,
            )

    def _delayWarningDue(self, entry: QueueEntry, now: float) -> bool:
        """
        Whether the sender should now be told that C{entry} is delayed:
        warnings are on, it is old enough, it was not told yet, and there
        is a sender to tell (never for <>: no DSN about a DSN).
        """
        return (
            self.config.delayWarning > 0
            and not entry.delayWarned
            and bool(entry.sender)
            and now - entry.createdAt >= self.config.delayWarning
            and any(r.state == PENDING for r in entry.recipients)
        )

    async def _bounce(
        self,
        entry: QueueEntry,
        failed: list[Any],
        path: Path,
        context: dict[str, Any],
        retryUntil: Optional[float] = None,
    ) -> bool:
        """
        Send the sender a DSN for C{failed}; whether that is settled (sent,
        or impossible for good).  A temporary failure returns L{False}: the
        DSN is tried again with the next attempt.

        @param retryUntil: send a delay warning for recipients retried
            until then, instead of a failure report.
        """
        if self.bounceTarget is None:
            self.log.warn("No bounce target; failure of {count} recipients not reported", count=len(failed), **context)
            return True
        try:
            headers = await self.runBlocking(_readHeaders, path)
            sender = Address.fromString(entry.sender)
        except (OSError, ValueError):
            self.log.failure("Cannot build a bounce", **context)
            return True
        data = buildBounce(entry, failed, self.hostname, headers, self.clock.seconds(), retryUntil=retryUntil)
        envelope = Envelope(mailFrom=None)
        delivery = self.bounceTarget.startDelivery(internalSession(), envelope)
        try:
            await delivery.checkSender()
            await delivery.addRecipient(sender)
            envelope.recipients.append(sender)
            delivery.write(data)
            await delivery.commit()
        except MailError as e:
            delivery.abort()
            if e.temporary:
                self.log.info("Bounce to {sender} deferred: {error}", sender=entry.sender, error=e.message, **context)
                return False
            self.log.info("Bounce to {sender} impossible: {error}", sender=entry.sender, error=e.message, **context)
            return True
        except Exception:
            delivery.abort()
            self.log.failure("Bounce to {sender} failed", sender=entry.sender, **context)
            return False
        self.log.info(
            "Returned {count} recipients to {sender} as {bounceId}"
            if retryUntil is None
            else "Told {sender} that {count} recipients are delayed, as {bounceId}",
            count=len(failed),
            sender=entry.sender,
            bounceId=envelope.messageId,
            **context,
        )
        return True
