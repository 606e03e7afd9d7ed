# -*- test-case-name: tests.filters.test_rspamd -*-
"""
Spam checking with Rspamd, over its HTTP protocol (C{POST /checkv2}).

The message is streamed from the spool as the request body; the envelope
and what we know of the client travel as request headers, the way
Rspamd's own proxy and milter send them: C{IP}, C{Helo}, C{From}, one
C{Rcpt} per recipient, C{Queue-Id}, C{User} for authenticated sessions,
C{TLS-Version}/C{TLS-Cipher}, C{MTA-Name}.  Rspamd answers with JSON whose
C{action} we act on:

 - C{reject}: refused (C{550 5.7.1}, Rspamd's C{smtp_message} if it gave
   one);
 - C{soft reject}: deferred (C{450 4.7.1});
 - C{add header} (and Rspamd 3's C{quarantine} and C{discard}): accepted
   into the recipient's Junk folder, with C{X-Spam: Yes};
 - C{rewrite subject}: accepted into the INBOX with the Subject Rspamd
   computed (C{*** SPAM *** ...});
 - C{greylist} and C{no action}: accepted.  Greylisting is
   L{mailsrv.filters.greylist}'s job: Rspamd's score-based C{greylist}
   action without its Redis-backed module would defer the same message
   forever, so it is only reported.

Every checked message gets C{X-Spam-Action}, C{X-Spam-Score} and
C{X-Spam-Symbols} headers; such headers arriving from the world are
removed first, so users' rules can trust them.  Only mail from the world
on MX endpoints is checked.  When Rspamd cannot be reached, fails or takes
longer than the timeout, the fail mode decides (C{tempfail} by default).
"""

from __future__ import annotations

import collections
import dataclasses
import email.header
import json
from typing import TYPE_CHECKING, Any, Optional

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.internet import protocol as _protocol
from twisted.python.failure import Failure
from twisted.web.client import FileBodyProducer, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent
from zope.interface import implementer

from mailsrv.envelope import Envelope, Session
from mailsrv.filters.base import Filter
from mailsrv.interfaces import ACCEPT, FilterAction, FilterResult, HeaderEdit, IMessageContent, IModifier
from mailsrv.policy.endpoint import Protocol

if TYPE_CHECKING:
    from mailsrv.config.schema import Config

# Bound on results waiting for their modifier (an aborted transaction
# leaves one behind).
_MAX_PENDING = 10_000

# A JSON answer larger than this is not Rspamd's.
MAX_RESPONSE = 1024 * 1024

# Actions that mark a message as spam.  Rspamd 3's "quarantine" and
# "discard" go to the Junk folder as well: mail is never silently dropped.
SPAM_ACTIONS = frozenset({"add header", "rewrite subject", "quarantine", "discard"})
JUNK_ACTIONS = frozenset({"add header", "quarantine", "discard"})

# Headers Rspamd decides; copies arriving from the world are removed.
SPAM_HEADERS = frozenset(
    {"x-spam", "x-spam-action", "x-spam-score", "x-spam-symbols", "x-spam-status", "x-spam-flag", "x-spam-level"}
)


class RspamdError(Exception):
    """
    Rspamd did not give a usable answer.
    """


@dataclasses.dataclass(frozen=True)
class RspamdResult:
    """
    The parts of a C{/checkv2} answer we use.

    @ivar action: C{no action}, C{greylist}, C{add header}, C{rewrite
        subject}, C{soft reject} or C{reject}.
    @ivar subject: the new Subject (already RFC 2047 encoded by Rspamd) for
        C{rewrite subject}.
    @ivar message: Rspamd's C{smtp_message} for the client, if any.
    """

    action: str
    score: float = 0.0
    requiredScore: float = 0.0
    symbols: tuple[tuple[str, float], ...] = ()
    subject: Optional[str] = None
    message: Optional[str] = None
    raw: Any = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def fromJSON(cls, data: Any) -> "RspamdResult":
        if not isinstance(data, dict) or not isinstance(data.get("action"), str):
            raise RspamdError(f"unexpected answer: {str(data)[:200]}")
        symbols = data.get("symbols") or {}
        pairs = []
        if isinstance(symbols, dict):
            for name, value in symbols.items():
                score = value.get("score", 0.0) if isinstance(value, dict) else 0.0
                pairs.append((str(name), float(score)))
        pairs.sort(key=lambda p: (-abs(p[1]), p[0]))
        messages = data.get("messages") or {}
        message = messages.get("smtp_message") if isinstance(messages, dict) else None
        subject = data.get("subject")
        return cls(
            action=data["action"],
            score=float(data.get("score", 0.0)),
            requiredScore=float(data.get("required_score", 0.0)),
            symbols=tuple(pairs),
            subject=subject if isinstance(subject, str) else None,
            message=message if isinstance(message, str) else None,
            raw=data,
        )

    def headers(self) -> tuple[str, ...]:
        """
        The C{X-Spam-*} fields for the message.
        """
        out = []
        if self.action in SPAM_ACTIONS:
            out.append("X-Spam: Yes")
        out.append(f"X-Spam-Action: {self.action}")
        out.append(f"X-Spam-Score: {self.score:.2f} / {self.requiredScore:.2f}")
        if self.symbols:
            out.append("X-Spam-Symbols: " + ",\n\t".join(f"{_clean(n)}({s:.2f})" for n, s in self.symbols))
        return tuple(out)


def _clean(text: str) -> str:
    """
    Text from Rspamd made safe for one header line (no CR/LF smuggling).
    """
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())


def encodedSubject(subject: str) -> str:
    """
    The Subject field for C{subject}: Rspamd's value is RFC 2047 encoded
    already; anything else non-ASCII is encoded here.
    """
    subject = _clean(subject)
    if subject.isascii():
        return f"Subject: {subject}"
    return "Subject: " + email.header.Header(subject, "utf-8", header_name="Subject").encode()


class _BodyReader(_protocol.Protocol):
    """
    Collects a response body of at most L{MAX_RESPONSE} octets.
    """

    def __init__(self, done: "defer.Deferred[bytes]") -> None:
        self.done = done
        self.parts: list[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        self.parts.append(data)
        if self.size > MAX_RESPONSE and not self.done.called:
            self.done.errback(RspamdError(f"answer longer than {MAX_RESPONSE} octets"))
            self.transport.stopProducing()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = _protocol.connectionDone) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(RspamdError(f"answer cut short: {reason.getErrorMessage()}"))


def _readBody(response: Any) -> "defer.Deferred[bytes]":
    def cancel(_: object) -> None:
        if reader.transport is not None:
            reader.transport.stopProducing()  # type: ignore[attr-defined]

    done: "defer.Deferred[bytes]" = defer.Deferred(cancel)
    reader = _BodyReader(done)
    response.deliverBody(reader)
    return done


class RspamdClient:
    """
    Asks one Rspamd worker (or proxy) about messages.

    @param agent: an HTTP agent (L{twisted.web.client.Agent}).
    @param url: the base URL, C{http://127.0.0.1:11333}.
    """

    log = Logger()

    def __init__(
        self,
        agent: IAgent,
        url: str,
        clock: IReactorTime,
        timeout: float = 30.0,
        mtaName: str = "",
    ) -> None:
        self.agent = agent
        self.url = url.rstrip("/")
        self.clock = clock
        self.timeout = timeout
        self.mtaName = mtaName

    def requestHeaders(self, session: Session, envelope: Envelope) -> Headers:
        """
        The envelope and client data, as Rspamd's protocol names them.
        """
        headers = Headers()

        def add(name: str, value: Optional[str]) -> None:
            if value:
                headers.addRawHeader(name.encode("ascii"), _clean(value).encode("utf-8"))

        add("IP", session.peerHost)
        add("Helo", session.heloName)
        add("From", str(envelope.mailFrom) if envelope.mailFrom is not None else "<>")
        for recipient in envelope.recipients:
            add("Rcpt", str(recipient))
        add("Queue-Id", envelope.messageId)
        add("User", session.authenticatedAs)
        if session.tls is not None:
            add("TLS-Version", session.tls.version)
            add("TLS-Cipher", session.tls.cipher)
        add("MTA-Name", self.mtaName)
        return headers

    def check(self, session: Session, envelope: Envelope, message: IMessageContent) -> "defer.Deferred[RspamdResult]":
        """
        Send the message to C{/checkv2}.

        @raise RspamdError: an HTTP error or an unusable answer.
        @raise defer.TimeoutError: no answer within the timeout.
        """
        d = defer.Deferred.fromCoroutine(self._check(session, envelope, message))
        d.addTimeout(self.timeout, self.clock)
        return d

    async def _check(self, session: Session, envelope: Envelope, message: IMessageContent) -> RspamdResult:
        source = message.open()
        try:
            response = await self.agent.request(
                b"POST",
                (self.url + "/checkv2").encode("ascii"),
                self.requestHeaders(session, envelope),
                FileBodyProducer(source),
            )
            body = await _readBody(response)
        finally:
            source.close()
        if response.code != 200:
            raise RspamdError(f"HTTP {response.code}: {body[:200]!r}")
        try:
            return RspamdResult.fromJSON(json.loads(body))
        except (ValueError, TypeError) as e:
            raise RspamdError(f"answer is not JSON: {e}") from None


def checksSession(session: Session) -> bool:
    """
    Whether Rspamd looks at a session's mail: mail from the world on MX
    endpoints.
    """
    return session.endpoint.protocol is Protocol.SMTP and session.authenticatedAs is None


class RspamdFilter(Filter):
    """
    Acts on Rspamd's verdict at the end of data.  The Subject rewrite is
    done by L{RspamdModifier} (filters do not modify).
    """

    name = "rspamd"
    log = Logger()

    def __init__(self, client: RspamdClient, maxSize: int = 50 * 1024 * 1024, failMode: str = "tempfail") -> None:
        self.client = client
        self.maxSize = maxSize
        self.failMode = failMode
        self.results: collections.OrderedDict[str, RspamdResult] = collections.OrderedDict()

    def checkMessage(
        self, session: Session, envelope: Envelope, message: IMessageContent
    ) -> "defer.Deferred[FilterResult]":
        if not checksSession(session):
            return defer.succeed(ACCEPT)
        return defer.Deferred.fromCoroutine(self._check(session, envelope, message))

    async def _check(self, session: Session, envelope: Envelope, message: IMessageContent) -> FilterResult:
        context: dict[str, Any] = {
            "sessionId": session.sessionId,
            "endpoint": session.endpoint.name,
            "msgId": envelope.messageId,
        }
        if message.size > self.maxSize:
            self.log.warn(
                "Message of {size} octets not checked for spam (max_size {limit})",
                size=message.size,
                limit=self.maxSize,
                **context,
            )
            return ACCEPT
        try:
            result = await self.client.check(session, envelope, message)
        except Exception as e:
            self.log.error("Spam check failed ({failMode}): {error}", failMode=self.failMode, error=repr(e), **context)
            if self.failMode == "accept":
                return ACCEPT
            return FilterResult(FilterAction.TEMPFAIL, "Spam check unavailable, try again later")
        self.log.info(
            "Rspamd: {action} (score {score:.2f} / {required:.2f}) {symbols}",
            action=result.action,
            score=result.score,
            required=result.requiredScore,
            symbols=",".join(n for n, _ in result.symbols[:20]),
            **context,
        )
        headers = result.headers()
        if result.action == "reject":
            return FilterResult(FilterAction.REJECT, _clean(result.message or "Spam message rejected"), reason="spam")
        if result.action == "soft reject":
            return FilterResult(FilterAction.TEMPFAIL, _clean(result.message or "Try again later"), reason="spam")
        self.results[envelope.messageId] = result
        while len(self.results) > _MAX_PENDING:
            self.results.popitem(last=False)
        if result.action in JUNK_ACTIONS:
            return FilterResult(FilterAction.QUARANTINE, addHeaders=headers)
        return FilterResult(FilterAction.ACCEPT, addHeaders=headers)


@implementer(IModifier)
class RspamdModifier:
    """
    Removes C{X-Spam-*} fields arriving from the world and applies
    Rspamd's C{rewrite subject}.
    """

    def __init__(self, filter: RspamdFilter) -> None:
        self.filter = filter

    def modify(self, session: Session, envelope: Envelope, message: IMessageContent) -> "defer.Deferred[HeaderEdit]":
        result = self.filter.results.pop(envelope.messageId, None)
        if not checksSession(session):
            return defer.succeed(HeaderEdit())
        rewrite = result is not None and result.action == "rewrite subject" and result.subject
        prepend: tuple[str, ...] = (encodedSubject(result.subject),) if rewrite else ()  # type: ignore[union-attr, arg-type]

        def remove(name: str, raw: bytes) -> bool:
            return name in SPAM_HEADERS or bool(rewrite and name == "subject")

        return defer.succeed(HeaderEdit(prepend=prepend, remove=remove))


def rspamdAgent(reactor: Any) -> IAgent:
    """
    An HTTP agent keeping connections to Rspamd open between messages.
    """
    from twisted.web.client import Agent, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 10
    return Agent(reactor, pool=pool)


def rspamdParts(config: "Config", reactor: Any) -> tuple[list[RspamdFilter], list[RspamdModifier]]:
    """
    The Rspamd filter and its modifier when C{[rspamd] enabled}.
    """
    settings = config.rspamd
    if not settings.enabled:
        return [], []
    client = RspamdClient(
        rspamdAgent(reactor), settings.url, reactor, timeout=settings.timeout, mtaName=config.server.hostname
    )
    f = RspamdFilter(client, maxSize=settings.maxSize, failMode=settings.failMode)
    return [f], [RspamdModifier(f)]
