# -*- test-case-name: tests.filters.test_ratelimit -*-
"""
An outbound rate limit per authenticated user, against compromised
accounts: at most C{messages_per_hour} messages within any hour (a sliding
window), after which MAIL FROM gets C{452 4.7.1} until the oldest message
of the window is an hour old.

Messages are counted when their data has arrived (a transaction that is
given up does not count); the limit is checked at MAIL FROM, so a client
over it is told before it sends any data.  Hitting the limit is logged as
an error the first time in a window (an operator should look: the usual
cause is a stolen password) and every refusal as a warning.

The counts live in memory: a restart forgets them, which at worst lets an
account send one more hour's worth.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Iterable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mailsrv.envelope import Envelope, Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.filters.base import Filter
from mailsrv.interfaces import ACCEPT, FilterResult, IMessageContent
from mailsrv.pipeline.submission import isSubmission

if TYPE_CHECKING:
    from mailsrv.config.schema import Config

WINDOW = 3600.0

LIMITED = "Too many messages sent in the last hour, try again later"


class RateLimitFilter(Filter):
    """
    Counts each authenticated account's messages over the last hour.
    """

    name = "ratelimit"
    log = Logger()

    def __init__(
        self, clock: IReactorTime, messagesPerHour: int, exempt: Iterable[str] = (), window: float = WINDOW
    ) -> None:
        self.clock = clock
        self.limit = messagesPerHour
        self.exempt = {a.lower() for a in exempt}
        self.window = window
        self._sent: dict[str, collections.deque[float]] = {}
        self._warned: dict[str, float] = {}

    def _applies(self, session: Session) -> bool:
        # Mail the server generates (bounces, Sieve redirects and vacation
        # replies) is not a user's sending: it must not be refused for one.
        if not isSubmission(session):
            return False
        account = session.authenticatedAs
        return account is not None and self.limit > 0 and account.lower() not in self.exempt

    def _recent(self, account: str) -> collections.deque[float]:
        sent = self._sent.get(account)
        if sent is None:
            return collections.deque()
        horizon = self.clock.seconds() - self.window
        while sent and sent[0] <= horizon:
            sent.popleft()
        if not sent:
            del self._sent[account]
        return sent

    def checkSender(self, session: Session, envelope: Envelope) -> "defer.Deferred[FilterResult]":
        if not self._applies(session):
            return defer.succeed(ACCEPT)
        account = session.authenticatedAs.lower()  # type: ignore[union-attr]
        sent = self._recent(account)
        if len(sent) < self.limit:
            return defer.succeed(ACCEPT)
        context: dict[str, Any] = {
            "account": account,
            "count": len(sent),
            "limit": self.limit,
            "peer": session.peerHost,
            "sessionId": session.sessionId,
            "endpoint": session.endpoint.name,
            "msgId": envelope.messageId,
        }
        if self._warned.get(account, -1.0) < sent[0]:
            # First refusal of this window: the operator should look.
            self._warned[account] = sent[0]
            self.log.error(
                "RATE LIMIT: account {account} sent {count} messages within the hour (limit {limit}), "
                "now from {peer}; further mail refused until the window clears. Compromised account?",
                **context,
            )
        else:
            self.log.warn("RATE LIMIT: refused mail from {account} ({count}/{limit} in the last hour)", **context)
        return defer.fail(MailError(ErrorKind.RATE_LIMITED, LIMITED, temporary=True))

    def checkMessage(
        self, session: Session, envelope: Envelope, message: IMessageContent
    ) -> "defer.Deferred[FilterResult]":
        if self._applies(session):
            account = session.authenticatedAs.lower()  # type: ignore[union-attr]
            sent = self._recent(account)
            sent.append(self.clock.seconds())
            self._sent[account] = sent
            while len(sent) > self.limit:
                sent.popleft()
        return defer.succeed(ACCEPT)


def rateLimitFilters(config: "Config", reactor: Any) -> list[RateLimitFilter]:
    """
    The outbound rate limit when C{[rate_limit] messages_per_hour} is set.
    """
    settings = config.rateLimit
    if not settings.messagesPerHour:
        return []
    return [RateLimitFilter(reactor, settings.messagesPerHour, settings.exempt)]
