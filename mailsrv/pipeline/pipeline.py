# -*- test-case-name: tests.test_pipeline -*-
"""
The one message pipeline.

Every message (from the MX port, from submission, and later from local
injection and bounces) enters through L{Pipeline}, which provides
L{IDeliveryTarget} itself.  For each message it:

 1. asks the sender policy and the filters about the connection, the
    sender and each recipient (filters report, the pipeline decides: the
    first REJECT or TEMPFAIL wins);
 2. routes each recipient (L{Router}) to the local target or, for
    authenticated senders, the remote target;
 3. adds the C{Received:} trace header;
 4. when filters or modifiers are configured, spools the message, runs the
    end-of-data checks and the header modifiers, and only then writes it
    to the targets; otherwise it streams the data straight through;
 5. commits every target, and acknowledges only when all are durable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.envelope import Address, Envelope, Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import (
    FilterAction,
    FilterResult,
    IConnectionPolicy,
    IDelivery,
    IDeliveryTarget,
    IFilter,
    IModifier,
    ISenderPolicy,
)
from mailsrv.pipeline.content import SpooledMessage, encodeField
from mailsrv.pipeline.received import receivedHeader
from mailsrv.pipeline.routing import Router

log = Logger()


# Verdicts a filter can give a message that goes on, mildest first: the
# message's verdict for a filter is the strongest it gave at any stage.
_VERDICT_RANK = {"accept": 0, "add-header": 1, "quarantine": 2}

#: A message that already passed this many hosts (C{Received:} fields) is
#: in a loop (forwarding, or Sieve redirects between servers): refused with
#: 554 5.4.6 as Postfix's C{hopcount_limit} (the same default) does.
MAX_HOPS = 50


def hopCount(headerBlock: bytes) -> int:
    """
    The C{Received:} fields of a header section (CRLF lines): a field
    starts a line, a continuation line starts with white space.
    """
    lowered = headerBlock.lower()
    return lowered.count(b"\nreceived:") + lowered.startswith(b"received:")


async def runStage(
    filters: Sequence[IFilter],
    stage: Callable[[IFilter], Any],
    context: dict[str, Any],
    verdicts: Optional[dict[str, str]] = None,
    stageName: str = "",
) -> FilterResult:
    """
    Run one stage over every filter and combine the results.

    Refusals are logged here, one line each (C{Filter NAME rejected: ...},
    with C{verdict}, C{reason} and C{stage} fields).

    @param verdicts: filter name -> the strongest verdict it gave so far
        (C{accept}, C{add-header}, C{quarantine}), updated in place.
    @return: an ACCEPT or QUARANTINE result carrying every filter's headers.
    @raise MailError: for the first REJECT or TEMPFAIL, or a filter that
        fails (fail mode: temporary failure, so no mail is lost).
    """
    headers: list[str] = []
    quarantine = False
    for f in filters:
        try:
            result = await defer.maybeDeferred(stage, f)
        except MailError as e:
            # A filter that refuses by raising (the rate limit) is logged
            # like one that returns its refusal.
            _logRefusal(f.name, e.temporary, e.message, e.reason, stageName, context)
            raise
        except Exception:
            log.failure("Filter {filter} failed", filter=f.name, **context)
            raise MailError(ErrorKind.TEMP, "Temporary local problem, try again later", temporary=True)
        headers.extend(result.addHeaders)
        if result.action in (FilterAction.REJECT, FilterAction.TEMPFAIL):
            temporary = result.action is FilterAction.TEMPFAIL
            reason = result.reason or f.name
            reply = result.reply or ("Try again later" if temporary else "Message rejected")
            _logRefusal(f.name, temporary, result.reply, reason, stageName, context)
            raise MailError(result.kind or ErrorKind.REJECTED, reply, temporary=temporary, reason=reason)
        if result.action is FilterAction.QUARANTINE:
            log.info("Filter {filter} quarantined the message", filter=f.name, stage=stageName, **context)
            quarantine = True
        if verdicts is not None:
            verdict = (
                "quarantine"
                if result.action is FilterAction.QUARANTINE
                else "add-header" if result.addHeaders else "accept"
            )
            if _VERDICT_RANK[verdict] >= _VERDICT_RANK.get(verdicts.get(f.name, "accept"), 0):
                verdicts[f.name] = verdict
    return FilterResult(
        FilterAction.QUARANTINE if quarantine else FilterAction.ACCEPT, addHeaders=tuple(headers)
    )


def _logRefusal(
    name: str, temporary: bool, reply: Optional[str], reason: str, stageName: str, context: dict[str, Any]
) -> None:
    log.info(
        "Filter {filter} deferred: {reply}" if temporary else "Filter {filter} rejected: {reply}",
        filter=name,
        reply=reply,
        verdict="tempfail" if temporary else "reject",
        reason=reason,
        stage=stageName,
        **context,
    )


@implementer(IDeliveryTarget, IConnectionPolicy)
class Pipeline:
    """
    @ivar remote: where mail for other domains goes, or L{None} while no
        outbound delivery is configured (then it is refused).
    @ivar filters: checks run at each stage, in order.
    @ivar modifiers: header modifiers run after the end-of-data checks.
    @ivar senderPolicy: decides which reverse paths a session may use.
    @ivar spoolDir: where messages are spooled while filters look at them.
    @ivar hideSubmitterPeer: leave the client's name and address out of the
        C{Received:} header of mail from authenticated sessions.
    """

    def __init__(
        self,
        router: Router,
        local: IDeliveryTarget,
        hostname: str,
        remote: Optional[IDeliveryTarget] = None,
        filters: Sequence[IFilter] = (),
        modifiers: Sequence[IModifier] = (),
        senderPolicy: Optional[ISenderPolicy] = None,
        spoolDir: Optional[Path] = None,
        hideSubmitterPeer: bool = False,
    ) -> None:
        self.router = router
        self.local = local
        self.remote = remote
        self.hostname = hostname
        self.filters = list(filters)
        self.modifiers = list(modifiers)
        self.senderPolicy = senderPolicy
        self.spoolDir = spoolDir
        self.hideSubmitterPeer = hideSubmitterPeer

    def checkConnection(self, session: Session) -> "defer.Deferred[None]":
        async def check() -> None:
            await runStage(
                self.filters, lambda f: f.checkConnection(session), _context(session), stageName="connection"
            )

        return defer.Deferred.fromCoroutine(check())

    def startDelivery(self, session: Session, envelope: Envelope) -> IDelivery:
        return _PipelineDelivery(self, session, envelope)


def _context(session: Session, envelope: Optional[Envelope] = None) -> dict[str, Any]:
    context: dict[str, Any] = {"sessionId": session.sessionId, "endpoint": session.endpoint.name}
    if envelope is not None:
        context["msgId"] = envelope.messageId
    return context


@implementer(IDelivery)
class _PipelineDelivery:
    def __init__(self, pipeline: Pipeline, session: Session, envelope: Envelope) -> None:
        self._pipeline = pipeline
        self._session = session
        self._envelope = envelope
        self._local: Optional[IDelivery] = None
        self._remote: Optional[IDelivery] = None
        self._accounts: set[str] = set()
        self._localRecipients: list[Address] = []
        self._started = False
        self._finished = False
        self._quarantine = False
        self._headers: list[str] = []
        self._verdicts: dict[str, str] = {}
        self._spool: Optional[SpooledMessage] = None
        if pipeline.filters or pipeline.modifiers:
            self._spool = SpooledMessage(pipeline.spoolDir)

    # -- envelope -------------------------------------------------------

    def _absorb(self, result: FilterResult) -> None:
        self._headers.extend(result.addHeaders)
        self._quarantine = self._quarantine or result.action is FilterAction.QUARANTINE

    def checkSender(self) -> "defer.Deferred[None]":
        async def check() -> None:
            if self._pipeline.senderPolicy is not None:
                self._pipeline.senderPolicy.checkSender(self._session, self._envelope.mailFrom)
            self._absorb(
                await runStage(
                    self._pipeline.filters,
                    lambda f: f.checkSender(self._session, self._envelope),
                    _context(self._session, self._envelope),
                    self._verdicts,
                    "sender",
                )
            )

        return defer.Deferred.fromCoroutine(check())

    async def _localDelivery(self) -> IDelivery:
        if self._local is None:
            local = self._pipeline.local.startDelivery(self._session, self._envelope)
            await local.checkSender()
            self._local = local
        return self._local

    async def _remoteDelivery(self) -> IDelivery:
        if self._pipeline.remote is None:
            raise MailError(
                ErrorKind.POLICY, "Relaying to other domains is not enabled on this server", reason="relay-denied"
            )
        if self._remote is None:
            remote = self._pipeline.remote.startDelivery(self._session, self._envelope)
            await remote.checkSender()
            self._remote = remote
        return self._remote

    def addRecipient(self, recipient: Address) -> "defer.Deferred[None]":
        async def add() -> None:
            route = self._pipeline.router.route(self._session, recipient)
            self._absorb(
                await runStage(
                    self._pipeline.filters,
                    lambda f: f.checkRecipient(self._session, self._envelope, recipient),
                    _context(self._session, self._envelope),
                    self._verdicts,
                    "recipient",
                )
            )
            # Each target is asked in turn; an account counts as added only
            # once its target accepted it, so a refused recipient leaves no
            # trace (a later RCPT for the same mailbox is asked again).
            for address in route.remote:
                await (await self._remoteDelivery()).addRecipient(address)
            for account in route.accounts:
                if account not in self._accounts:
                    await (await self._localDelivery()).addRecipient(Address.fromString(account))
                    self._accounts.add(account)
                    self._envelope.reachedVia[account] = recipient
            if route.accounts:
                self._localRecipients.append(recipient)

        return defer.Deferred.fromCoroutine(add())

    # -- data -----------------------------------------------------------

    def _targets(self) -> list[IDelivery]:
        return [d for d in (self._local, self._remote) if d is not None]

    def _writeTargets(self, data: bytes) -> None:
        for target in self._targets():
            target.write(data)

    def _writeTrace(self) -> None:
        """
        The headers that go on top: C{Delivered-To} for the local copy, when
        there is one local mailbox reached through one address (it names the
        address as given, C{+tag} included; with several, one shared file
        cannot carry a different one for each), then C{Received}.
        """
        if self._local is not None and len(self._accounts) == 1 and len(self._localRecipients) == 1:
            self._local.write(encodeField(f"Delivered-To: {self._localRecipients[0]}"))
        hide = self._pipeline.hideSubmitterPeer and self._session.authenticatedAs is not None
        self._writeTargets(
            receivedHeader(self._session, self._envelope, self._pipeline.hostname, hidePeer=hide)
        )

    def write(self, data: bytes) -> None:
        if self._spool is not None:
            self._spool.write(data)
            return
        if not self._started:
            self._started = True
            self._writeTrace()
        self._writeTargets(data)

    def commit(self) -> "defer.Deferred[None]":
        self._finished = True
        return defer.Deferred.fromCoroutine(self._commit())

    async def _commit(self) -> None:
        targets = self._targets()
        if not targets:
            raise MailError(ErrorKind.PERM, "No valid recipients")
        try:
            if self._spool is not None:
                await self._filterAndWrite(self._spool)
            elif not self._started:
                self.write(b"")
        except BaseException:
            for target in targets:
                target.abort()
            raise
        finally:
            if self._spool is not None:
                self._spool.close()
        results = await defer.DeferredList([t.commit() for t in targets], consumeErrors=True)
        for ok, value in results:
            if not ok:
                value.raiseException()

    async def _filterAndWrite(self, message: SpooledMessage) -> None:
        message.finish()
        hops = hopCount(message.headerBlock)
        if hops >= MAX_HOPS:
            raise MailError(ErrorKind.LOOP, f"Too many hops ({hops} Received: fields): mail loop", reason="hop-limit")
        context = _context(self._session, self._envelope)
        self._absorb(
            await runStage(
                self._pipeline.filters,
                lambda f: f.checkMessage(self._session, self._envelope, message),
                context,
                self._verdicts,
                "message",
            )
        )
        # Every filter's say on the message, for the transaction's summary
        # line (and mailsrv_filter_verdicts_total).
        self._envelope.filterVerdicts = dict(self._verdicts)
        for modifier in self._pipeline.modifiers:
            message.apply(await defer.maybeDeferred(modifier.modify, self._session, self._envelope, message))
        self._envelope.quarantined = self._quarantine
        self._writeTrace()
        self._writeTargets(b"".join(encodeField(h) for h in self._headers))
        for chunk in message.chunks():
            self._writeTargets(chunk)

    def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._spool is not None:
            self._spool.close()
        for target in self._targets():
            target.abort()
