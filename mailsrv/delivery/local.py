# -*- test-case-name: tests.test_delivery_local -*-
"""
Final delivery into local mailboxes through an L{IMailStore}.

The message is written once for all recipients (the store links it into
each INBOX), preceded by C{Return-Path:} (RFC 5321 section 4.4: added at
final delivery).

An account with an active Sieve script (L{ISieveScripts}) has it decide
where its copy goes: other folders, initial flags, redirection to other
addresses, a vacation reply, or nowhere (discard).  Redirected copies are
handed to the outbound target (the pipeline) before the 250, so the
sender's 250 covers them as it covers the mailbox copies; a vacation reply
is sent after it, on a best-effort basis, as Pigeonhole does.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.envelope import Address, Envelope, Session
from mailsrv.errors import MailError
from mailsrv.interfaces import (
    IDelivery,
    IDeliveryTarget,
    IMailStore,
    IMessageWriter,
    ISieveScripts,
    Placement,
)
from mailsrv.mailbox_names import INBOX, hierarchyToStore
from mailsrv.pipeline.content import SpooledMessage, encodeField
from mailsrv.pipeline.submission import internalSession
from mailsrv.delivery.sieve import REDIRECTED_FROM, SIEVE_DELIMITER, AccountOutcome, outcomeFor
from mailsrv.sieve import MessageContext, Script, SieveError, Vacation, evaluate
from mailsrv.sieve.vacation import buildVacationReply, vacationApplies, vacationKey

# Where quarantined mail goes (docker-mailserver's and Dovecot's name).
JUNK_FOLDER = "Junk"

#: How much of the body a script's C{body} test sees.
SIEVE_BODY_LIMIT = 256 * 1024

RunBlocking = Callable[..., "defer.Deferred[Any]"]


@implementer(IDeliveryTarget)
class LocalDelivery:
    """
    @ivar outbound: where redirected copies and vacation replies go (the
        pipeline, set with L{attachOutbound} once it exists); without it
        a script's redirect keeps the message instead.
    """

    log = Logger()

    def __init__(
        self,
        store: IMailStore,
        scripts: Optional[ISieveScripts] = None,
        *,
        vacations: Any = None,
        runBlocking: Optional[RunBlocking] = None,
        spoolDir: Optional[Path] = None,
        hostname: str = "localhost",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.scripts = scripts
        self.vacations = vacations
        self.runBlocking = runBlocking
        self.spoolDir = spoolDir
        self.hostname = hostname
        self.clock = clock
        self.outbound: Optional[IDeliveryTarget] = None

    def attachOutbound(self, target: IDeliveryTarget) -> None:
        self.outbound = target

    def startDelivery(self, session: Session, envelope: Envelope) -> IDelivery:
        return _LocalDelivery(self, envelope)


def returnPathHeader(envelope: Envelope) -> bytes:
    sender = str(envelope.mailFrom) if envelope.mailFrom is not None else ""
    return f"Return-Path: <{sender}>\r\n".encode("utf-8")


@implementer(IDelivery)
class _LocalDelivery:
    def __init__(self, target: LocalDelivery, envelope: Envelope) -> None:
        self._target = target
        self._store = target.store
        self._envelope = envelope
        self._accounts: list[str] = []
        self._writer: Optional[IMessageWriter] = None
        self._scripted: list[str] = []
        # The message as received (no Return-Path), for the scripts and
        # for redirected copies; only when some account has a script.
        self._copy: Optional[SpooledMessage] = None

    def checkSender(self) -> "defer.Deferred[None]":
        return defer.succeed(None)

    def addRecipient(self, recipient: Address) -> "defer.Deferred[None]":
        account = str(recipient)
        if account not in self._accounts:
            self._accounts.append(account)
        return defer.succeed(None)

    @property
    def _defaultFolder(self) -> str:
        # A filter asked for the Junk folder (created if missing), as
        # Dovecot's sieve "fileinto Junk" does for spam.
        return JUNK_FOLDER if self._envelope.quarantined else INBOX

    def write(self, data: bytes) -> None:
        if self._writer is None:
            self._writer = self._store.startMessage(self._accounts, folder=self._defaultFolder)
            self._writer.write(returnPathHeader(self._envelope))
            scripts = self._target.scripts
            if scripts is not None:
                self._scripted = [a for a in self._accounts if scripts.hasActiveScript(a)]
            if self._scripted:
                self._copy = SpooledMessage(self._target.spoolDir)
        if data:
            self._writer.write(data)
            if self._copy is not None:
                self._copy.write(data)

    def commit(self) -> "defer.Deferred[None]":
        if self._writer is None:
            self.write(b"")
        assert self._writer is not None
        if self._copy is None:
            return self._writer.commit()
        return defer.Deferred.fromCoroutine(self._commitScripted(self._writer, self._copy))

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
        if self._copy is not None:
            self._copy.close()

    # ---------------------------------------------------------------- Sieve

    def _logContext(self) -> dict[str, Any]:
        return {"msgId": self._envelope.messageId}

    def _folderExists(self, account: str, folder: str) -> bool:
        return folder == INBOX or folder in self._store.listFolders(account)

    def _mailboxExists(self, account: str, name: str) -> bool:
        try:
            return self._folderExists(account, hierarchyToStore(name, SIEVE_DELIMITER))
        except MailError:
            return False

    def _context(self, account: str, copy: SpooledMessage, body: bytes) -> MessageContext:
        reached = self._envelope.reachedVia.get(account)
        original = str(reached) if reached is not None else account
        # The address the mail came for, +detail kept when it names this
        # account (what Dovecot's LMTP sees from Postfix); an alias's
        # recipient is the account itself.
        local, _, domain = original.rpartition("@")
        accountLocal, _, accountDomain = account.rpartition("@")
        sameMailbox = domain.lower() == accountDomain.lower() and local.split("+", 1)[0].lower() == accountLocal.lower()
        sender = self._envelope.mailFrom
        return MessageContext(
            envelopeFrom=str(sender) if sender is not None else "",
            envelopeTo=original if sameMailbox else account,
            originalRecipient=original,
            header=copy.headerBlock + b"\r\n",
            size=copy.size,
            body=body,
            mailboxExists=lambda name: self._mailboxExists(account, name),
            now=datetime.fromtimestamp(self._target.clock(), timezone.utc),
        )

    async def _commitScripted(self, writer: IMessageWriter, copy: SpooledMessage) -> None:
        try:
            copy.finish()
            body = copy.bodyPrefix(SIEVE_BODY_LIMIT)
            outcomes: dict[str, AccountOutcome] = {}
            contexts: dict[str, MessageContext] = {}
            for account in self._accounts:
                script: Optional[Script] = None
                if account in self._scripted and self._target.scripts is not None:
                    script = await self._target.scripts.activeScript(account)
                if script is not None:
                    contexts[account] = self._context(account, copy, body)
                    outcomes[account] = self._run(account, script, contexts[account], copy.headerBlock)
                else:
                    outcomes[account] = AccountOutcome([Placement(account, self._defaultFolder)])
            for account, outcome in outcomes.items():
                for address in outcome.redirects:
                    if not await self._redirect(account, address, copy):
                        # Refused for good: the account keeps the message.
                        if not outcome.placements:
                            outcome.placements.append(Placement(account, self._defaultFolder))
            placements = [p for outcome in outcomes.values() for p in outcome.placements]
            if placements:
                await self._place(writer, placements)
            else:
                writer.abort()
        except BaseException:
            writer.abort()
            copy.close()
            raise
        copy.close()
        for account, outcome in outcomes.items():
            if outcome.vacation is not None:
                # After the 250's conditions are met, and not awaited: a
                # reply that cannot go is logged, never a delivery failure.
                defer.Deferred.fromCoroutine(self._vacation(account, outcome.vacation, contexts[account]))

    def _run(self, account: str, script: Script, context: MessageContext, headerBlock: bytes) -> AccountOutcome:
        logContext = self._logContext()
        try:
            actions = evaluate(script, context)
        except SieveError as e:
            self._target.log.warn(
                "Sieve script of {account} failed ({error}): message kept in {folder}",
                account=account,
                error=str(e),
                folder=self._defaultFolder,
                **logContext,
            )
            return AccountOutcome([Placement(account, self._defaultFolder)])
        outcome = outcomeFor(
            account,
            actions,
            defaultFolder=self._defaultFolder,
            folderExists=lambda folder: self._folderExists(account, folder),
            headerBlock=headerBlock,
            context=logContext,
        )
        if outcome != AccountOutcome([Placement(account, self._defaultFolder)]):
            # Only what differs from a plain delivery: one more line per
            # message would cost a busy server more than the script does.
            self._target.log.info(
                "Sieve for {account}: {summary}",
                account=account,
                summary=_summary(outcome),
                **logContext,
            )
        return outcome

    async def _place(self, writer: IMessageWriter, placements: list[Placement]) -> None:
        try:
            writer.place(placements)
        except MailError as e:
            # A name or flag the store refuses: keep rather than refuse mail.
            self._target.log.warn(
                "Sieve placement refused by the store ({error}): message kept in {folder}",
                error=e.message,
                folder=self._defaultFolder,
                **self._logContext(),
            )
            writer.place(sorted({Placement(p.account, self._defaultFolder) for p in placements}, key=str))
        await writer.commit()

    async def _redirect(self, account: str, address: str, copy: SpooledMessage) -> bool:
        """
        Hand a copy for C{address} to the outbound target, envelope sender
        unchanged (Pigeonhole's default).  Whether it went; fails with the
        L{MailError} of a temporary refusal, so that the sender retries.
        """
        logContext = self._logContext()
        outbound = self._target.outbound
        if outbound is None:
            self._target.log.warn(
                "Sieve redirect of mail for {account} to {address}: no outbound delivery here; kept",
                account=account,
                address=address,
                **logContext,
            )
            return False
        # BODY=8BITMIME and SMTPUTF8 describe the message, which goes on
        # unchanged: the next hop must be told too.
        envelope = Envelope(
            mailFrom=self._envelope.mailFrom,
            mailParams={k: v for k, v in self._envelope.mailParams.items() if k in ("BODY", "SMTPUTF8")},
        )
        delivery = outbound.startDelivery(internalSession(), envelope)
        try:
            recipient = Address.fromString(address)
            await delivery.checkSender()
            await delivery.addRecipient(recipient)
            envelope.recipients.append(recipient)
            delivery.write(encodeField(f"{REDIRECTED_FROM}: {account}"))
            for chunk in copy.chunks():
                delivery.write(chunk)
            await delivery.commit()
        except (MailError, ValueError) as e:
            delivery.abort()
            if isinstance(e, MailError) and e.temporary:
                self._target.log.info(
                    "Sieve redirect of mail for {account} to {address} deferred: {error}",
                    account=account,
                    address=address,
                    error=e.message,
                    **logContext,
                )
                raise
            self._target.log.warn(
                "Sieve redirect of mail for {account} to {address} refused ({error}): message kept",
                account=account,
                address=address,
                error=e.message if isinstance(e, MailError) else str(e),
                **logContext,
            )
            return False
        except BaseException:
            delivery.abort()
            raise
        self._target.log.info(
            "Sieve redirected mail for {account} to {address} as {redirectId}",
            account=account,
            address=address,
            redirectId=envelope.messageId,
            **logContext,
        )
        return True

    async def _vacation(self, account: str, action: Vacation, context: MessageContext) -> None:
        target = self._target
        logContext = self._logContext()
        sender = context.envelopeFrom
        try:
            userAddresses = [account, context.originalRecipient]
            applies, why = vacationApplies(action, context, userAddresses=userAddresses)
            if not applies:
                target.log.info(
                    "Vacation reply of {account} to {sender} not sent: {why}",
                    account=account,
                    sender=sender or "<>",
                    why=why,
                    **logContext,
                )
                return
            if target.outbound is None or target.vacations is None or target.runBlocking is None:
                target.log.warn("Vacation reply of {account} not sent: no outbound delivery here", account=account)
                return
            now = target.clock()
            claimed = await target.runBlocking(
                target.vacations.claim, account, vacationKey(action, sender), now + vacationPeriod(action), now
            )
            if not claimed:
                target.log.info(
                    "Vacation reply of {account} to {sender} not sent: already replied within the period",
                    account=account,
                    sender=sender,
                    **logContext,
                )
                return
            data = buildVacationReply(
                action,
                context,
                userAddress=context.envelopeTo,
                messageIdDomain=target.hostname,
                now=datetime.fromtimestamp(now, timezone.utc),
            )
            envelope = Envelope(mailFrom=None)
            delivery = target.outbound.startDelivery(internalSession(), envelope)
            try:
                recipient = Address.fromString(sender)
                await delivery.checkSender()
                await delivery.addRecipient(recipient)
                envelope.recipients.append(recipient)
                delivery.write(data)
                await delivery.commit()
            except BaseException:
                delivery.abort()
                raise
            target.log.info(
                "Vacation reply of {account} to {sender} sent as {replyId}",
                account=account,
                sender=sender,
                replyId=envelope.messageId,
                **logContext,
            )
        except Exception:
            target.log.failure("Vacation reply of {account} to {sender} failed", account=account, sender=sender, **logContext)


def vacationPeriod(action: Vacation) -> float:
    """
    Seconds during which the same sender gets no second reply.
    """
    return action.period().total_seconds()


def _summary(outcome: AccountOutcome) -> str:
    parts = []
    for placement in outcome.placements:
        flags = f" {' '.join(sorted(placement.flags))}" if placement.flags else ""
        parts.append(f"into {placement.folder}{flags}")
    parts.extend(f"redirect to {address}" for address in outcome.redirects)
    if outcome.vacation is not None:
        parts.append("vacation")
    return ", ".join(parts) or "discarded"

