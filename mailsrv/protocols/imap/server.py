# -*- test-case-name: tests.protocols.test_imap -*-
"""
The IMAP4rev1 server: Twisted's C{IMAP4Server} parser, hardened by the
endpoint policy.

Twisted's server is reused for parsing and dispatch (C{<state>_<COMMAND>}
tuples of handler and argument parsers).  This subclass fixes what
TWISTED-NOTES section 2 found broken:

 - STARTTLS discards everything the client pipelined after the command
   (CVE-2011-0411 class injection), also lines queued while commands were
   blocked;
 - AUTHENTICATE, not only LOGIN, is refused before TLS where the policy says
   so (C{NO [PRIVACYREQUIRED]}); the capability list follows the policy;
 - failed logins answer one generic C{NO [AUTHENTICATIONFAILED]} after a
   delay, the connection is closed after a few, and one structured log
   event records each outcome (never a password);
 - APPEND literals are capped (C{NO [TOOBIG]} before the literal is sent),
   an over-long command line gets C{BAD} instead of a dropped connection;
 - IDLE ends only on C{DONE} and pushes EXISTS/EXPUNGE while idling;
 - every command, not only NOOP, reports what other sessions and
   deliveries changed in the selected mailbox before its tagged reply
   (RFC 3501 sections 5.5 and 7), without EXPUNGE after FETCH, STORE and
   SEARCH (section 7.4.1);
 - SELECT reports UIDNEXT, PERMANENTFLAGS and UNSEEN; mailbox errors map to
   RFC 5530 response codes;
 - the clock (timeouts, auth delay, FETCH scheduling) is injected;
 - connection caps, the per account and address session cap and the
   timers (login deadline, idle, command line and literal deadlines) live
   in L{mailsrv.protocols.imap.limits};
 - LITERAL+ (RFC 7888): C{{n+}} literals get no continuation request; one
   over its limit (the message size for APPEND, 4096 octets elsewhere) is
   never read into memory: the client gets C{BAD [TOOBIG]} and the
   connection is closed, since its bytes cannot be told from commands;
 - output is flow-controlled: an L{_OutputProducer} is the transport's push
   producer, and while the write buffer is full no further command is
   answered (a client that pipelines commands and never reads the replies
   cannot make the server buffer without bound).

Extensions (UIDPLUS, MOVE, QUOTA, ...) live in
L{mailsrv.protocols.imap.extensions}.

The selected-state message commands live in L{mailsrv.protocols.imap.fetch}
and L{mailsrv.protocols.imap.search}.
To add a command, define C{do_NAME} plus C{auth_NAME}/C{select_NAME}
tuples in a mixin and extend L{IMAPServer.capabilities}.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from typing import Any, Optional

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLServerConnectionCreator,
    IPushProducer,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.mail.imap4 import (
    IAccount,
    IllegalClientResponse,
    IMAP4Server,
    MailboxException,
    _prepareMailboxName,
    parseIdList,
    parseNestedParens,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from mailsrv.auth.sasl import PlainChallenge, SASLError, decodeResponse
from mailsrv.envelope import Session
from mailsrv.errors import MailError
from mailsrv.interfaces import ISpamReports
from mailsrv.policy.deadline import SessionTimeouts
from mailsrv.policy.endpoint import EndpointPolicy
from mailsrv.policy.limits import ConnectionLimiter, UserAddressLimiter
from mailsrv.protocols.imap.account import MailboxError, _storeError
from mailsrv.protocols.imap.extensions import ExtensionsMixin
from mailsrv.protocols.imap.fetch import FetchMixin
from mailsrv.protocols.imap.limits import LimitsMixin
from mailsrv.protocols.imap.mailbox import SYSTEM_FLAGS, parseAppendDate, rangesText, uidRanges
from mailsrv.protocols.imap.search import SearchMixin
from mailsrv.tls import negotiatedTLS

DEFAULT_MAX_MESSAGE_SIZE = 25 * 1024 * 1024

#: Commands whose tagged reply must not be preceded by EXPUNGE (RFC 3501
#: section 7.4.1), also as UID commands: the client may already have sent
#: sequence numbers that an EXPUNGE would shift.
_NO_EXPUNGE_COMMANDS = frozenset((b"FETCH", b"STORE", b"SEARCH"))

#: After these the session is over or the report makes no sense.
_NO_REPORT_COMMANDS = frozenset((b"LOGOUT",))

_STATUS_ITEMS = (b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN", b"HIGHESTMODSEQ")


class _Answered(Exception):
    """
    An argument parser already decided the command's fate: stop Twisted's
    dispatch and send C{NO <response>}.
    """

    def __init__(self, response: bytes) -> None:
        super().__init__(response)
        self.response = response


@dataclasses.dataclass
class QresyncParams:
    """
    The RFC 7162 C{QRESYNC} SELECT parameter (the sequence match data is
    accepted and not needed: the expunge log answers exactly, or the
    fallback reports every missing UID).
    """

    uidValidity: int
    modSeq: int
    knownUids: Optional[bytes] = None


@dataclasses.dataclass
class SelectParams:
    condstore: bool = False
    qresync: Optional[QresyncParams] = None


def _qresyncParams(items: list[Any]) -> QresyncParams:
    if len(items) < 2 or not all(isinstance(i, bytes) and i.isdigit() for i in items[:2]):
        raise IllegalClientResponse("Malformed QRESYNC parameter")
    uidValidity, modSeq = int(items[0]), int(items[1])
    if uidValidity == 0 or modSeq == 0:
        raise IllegalClientResponse("Malformed QRESYNC parameter")
    known = None
    if len(items) > 2:
        if not isinstance(items[2], bytes):
            raise IllegalClientResponse("Malformed QRESYNC parameter")
        known = items[2]
        try:
            parseIdList(known, 1)
        except Exception:
            raise IllegalClientResponse("Malformed QRESYNC known UIDs") from None
    if len(items) > 4 or (len(items) == 4 and not isinstance(items[3], list)):
        raise IllegalClientResponse("Malformed QRESYNC parameter")
    return QresyncParams(uidValidity, modSeq, known)


_NON_SYNC_LITERAL = re.compile(rb"\{(\d{1,20})\+\}$")


class _LiteralOctets(bytes):
    """
    Octets of a LITERAL+ literal queued behind a running command, replayed
    as they are rather than as a line.
    """


def _literalStillToCome(queued: list[bytes]) -> int:
    """
    Octets of a LITERAL+ literal announced in C{queued} that have not
    arrived yet.
    """
    outstanding = 0
    for item in queued:
        if isinstance(item, _LiteralOctets):
            outstanding -= len(item)
        else:
            match = _NON_SYNC_LITERAL.search(item)
            outstanding = int(match.group(1)) if match else 0
    return max(outstanding, 0)


# Octets of command lines queued behind a running command (a login being
# checked or delayed, an APPEND) above which reading stops until it is done.
MAX_QUEUED = 64 * 1024


def _looksLikeTag(token: bytes) -> bool:
    return 0 < len(token) <= 64 and token.isascii() and token.isalnum()


@implementer(IPushProducer)
class _OutputProducer:
    """
    The transport's push producer on behalf of an L{IMAPServer}: told when
    the write buffer is full and when it has room again.

    Not the server itself: C{IMAP4Server} is a C{LineReceiver}, whose
    C{pauseProducing} stops reading (it is the transport's consumer side);
    stopping reading as soon as output waits would deadlock a TLS handshake,
    whose own bytes fill the buffer before it completes.
    """

    def __init__(self, server: "IMAPServer") -> None:
        self._server = server

    def pauseProducing(self) -> None:
        self._server._outputPaused()

    def resumeProducing(self) -> None:
        self._server._outputResumed()

    def stopProducing(self) -> None:
        self._server._outputStopped()


@implementer(IHandshakeListener)
class IMAPServer(ExtensionsMixin, FetchMixin, SearchMixin, LimitsMixin, IMAP4Server):
    """
    One IMAP connection on one endpoint.

    @ivar policy: the endpoint's policy.
    @ivar session: peer, TLS state and authenticated account, for logs.
    @ivar challengers: SASL mechanism name to C{IChallengeResponse} factory,
        offered once the policy allows authentication.
    """

    log = Logger()

    # RFC 7162 section 4 asks servers to accept command lines of at least
    # 8192 octets; longer ones get BAD (see lineLengthExceeded).
    MAX_LENGTH = 8192

    def __init__(
        self,
        policy: EndpointPolicy,
        portal: Optional[Portal],
        tls: Optional[IOpenSSLServerConnectionCreator],
        hostname: str,
        clock: IReactorTime,
        maxMessageSize: int = DEFAULT_MAX_MESSAGE_SIZE,
        maxAuthFailures: int = 3,
        authFailureDelay: float = 1.0,
        timeouts: SessionTimeouts = SessionTimeouts(),
        connections: Optional[ConnectionLimiter] = None,
        userAddresses: Optional[UserAddressLimiter] = None,
    ) -> None:
        super().__init__(
            chal={b"PLAIN": PlainChallenge},
            contextFactory=tls if policy.offersStartTLS(False) else None,
            scheduler=self._schedule,
        )
        self.policy = policy
        self.portal = portal
        self.hostname = hostname
        self.IDENT = hostname.encode("ascii", "replace") + b" IMAP4rev1 ready"
        self._clock = clock
        self.callLater = clock.callLater  # TimeoutMixin
        self._initLimits(clock, timeouts, connections, userAddresses)
        self.maxMessageSize = maxMessageSize
        self.maxAuthFailures = maxAuthFailures
        self.authFailureDelay = authFailureDelay
        self.session: Optional[Session] = None
        self._authFailures = 0
        self._failureCall: Optional[IDelayedCall] = None
        self._replayQueue: list[bytes] = []
        self._queuedOctets = 0
        # Octets still to come of a LITERAL+ literal announced by a queued
        # line: they are queued as they are, not split into lines.
        self._queuedLiteral = 0
        self._readPaused = False
        # Flow control of output (see _OutputProducer): whether it is
        # registered with the transport, whether the transport said its
        # write buffer is full, whether the session's output is over (BYE
        # sent, closing or closed: never registered again), whether a
        # command is running (between _block and _unblock), and what waits
        # for room in the write buffer.
        self._output = _OutputProducer(self)
        self._outputRegistered = False
        self._outputFull = False
        self._outputOver = False
        self._stallCall: Optional[IDelayedCall] = None
        self._commandRunning = False
        self._roomWaiters: list[Deferred[None]] = []
        self._refeed = b""
        self._discardingLine = False
        self._idleTag: Optional[bytes] = None
        self._nonSyncLiteral = False
        # The command being run (the inner one for UID commands), which
        # decides what the report before its tagged reply may contain.
        self._command = b""
        # RFC 7162: set by ENABLE CONDSTORE or the first command using it;
        # from then on every FETCH response carries MODSEQ.
        self._condstore = False
        # RFC 7162: set by ENABLE QRESYNC; expunges are then announced
        # with VANISHED instead of EXPUNGE.
        self._qresync = False

    # ---------------------------------------------------------- CONDSTORE

    def _condstoreAvailable(self) -> bool:
        """
        Whether the selected mailbox keeps MODSEQs.
        """
        highest = getattr(self.mbox, "highestModSeq", None)
        return highest is not None and highest() is not None

    def _enableCondstore(self) -> None:
        self._condstore = True

    def _condstoreEnabled(self) -> bool:
        return self._condstore and self._condstoreAvailable()

    def _enableQresync(self) -> None:
        self._qresync = True
        self._condstore = True

    def _sendExpunged(self, expunged: Any) -> None:
        """
        Announce expunged messages: C{* n EXPUNGE} per sequence number, or
        once QRESYNC is enabled one C{* VANISHED <uids>} (RFC 7162 section
        3.2.10).
        """
        if not expunged:
            return
        uids = getattr(expunged, "uids", None)
        if self._qresync and uids:
            self.sendUntaggedResponse(b"VANISHED " + rangesText(uidRanges(uids)))
            return
        for seq in expunged:
            self.sendUntaggedResponse(b"%d EXPUNGE" % (seq,))

    # ------------------------------------------------------------ connection

    def _logFields(self) -> dict[str, Any]:
        session = self.session
        return {
            "sessionId": session.sessionId if session else None,
            "endpoint": self.policy.name,
            "peer": session.peerHost if session else None,
        }

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.session = Session(
            endpoint=self.policy,
            peerHost=getattr(peer, "host", str(peer)),
            peerPort=getattr(peer, "port", 0),
        )
        self.log.info("IMAP connection from {peer} on {endpoint}", **self._logFields())
        self._registerOutput()
        super().connectionMade()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        # The transport forgets its producer; what waits for room waits on
        # (its coroutine is collected with the connection).
        self._outputOver = True
        self._outputRegistered = False
        self._roomWaiters = []
        self._cancelStallTimer()
        if self._failureCall is not None and self._failureCall.active():
            self._failureCall.cancel()
        self._failureCall = None
        if self.mbox is not None:
            self.mbox.removeListener(self)
            close = getattr(self.mbox, "close", None)
            if close is not None:
                close()
            self.mbox = None
        self.log.info("IMAP connection from {peer} on {endpoint} closed", **self._logFields())
        super().connectionLost(reason)

    def handshakeCompleted(self) -> None:
        """
        Record what TLS negotiated (implicit TLS or after STARTTLS).
        """
        info = negotiatedTLS(self.transport)
        if info is not None and self.session is not None:
            self.session.tls = info
            self.log.info(
                "TLS {version} {cipher}", version=info.version, cipher=info.cipher, **self._logFields()
            )

    def tlsActive(self) -> bool:
        """
        Whether the client's bytes are protected now: after STARTTLS, or on
        an implicit-TLS endpoint from the start.
        """
        return bool(self.startedTLS) or ISSLTransport(self.transport, None) is not None

    def _schedule(self, iterator: Any) -> "Deferred[Any]":
        """
        Twisted's C{iterateInReactor}, on the injected clock.
        """
        done: Deferred[Any] = Deferred()

        def step(last: Any) -> None:
            try:
                result = next(iterator)
            except StopIteration:
                done.callback(last)
            except BaseException:
                done.errback()
            else:
                if isinstance(result, Deferred):
                    result.addCallback(step)
                else:
                    self._clock.callLater(0, step, result)

        step(None)
        return done

    # ---------------------------------------------------- output flow control

    def _registerOutput(self) -> None:
        """
        Become (again) the transport's push producer.  The transport only
        says when its buffer crosses the limit, so a fresh registration
        starts as not full; the next write over the limit pauses it.
        """
        if self._outputRegistered or self._outputOver:
            return
        self._outputFull = False
        self._outputRegistered = True
        self.transport.registerProducer(self._output, True)

    def _outputStepAside(self, final: bool = False) -> None:
        """
        Unregister the output producer: for a FETCH body producer, which
        needs the transport to itself, or for good (C{final}) once the
        session ends.  A registered producer would hold a closing TLS
        connection open: Twisted's TLS layer shuts down only after its
        producer is unregistered.
        """
        if final:
            self._outputOver = True
        if self._outputRegistered:
            self._outputRegistered = False
            self.transport.unregisterProducer()

    def _outputTakeBack(self) -> None:
        """
        Register the output producer again after a FETCH body producer.
        """
        self._registerOutput()

    def _closing(self) -> bool:
        return bool(getattr(self.transport, "disconnecting", False))

    def _outputPaused(self) -> None:
        """
        The write buffer is full: answer nothing more until it drains.
        Lines are queued as behind a running command; reading stops once
        C{MAX_QUEUED} octets of them wait (not at once: under TLS a full
        buffer may also mean the handshake is not over, and it needs to
        read to finish).

        A client that reads nothing for C{command_timeout} is cut off:
        closing normally would wait for the buffer to drain, forever.
        """
        if self._stallCall is None:
            self._stallCall = self._clock.callLater(self.timeouts.command, self._outputStalled)
        if self._closing():
            self._outputStepAside(final=True)
            return
        self._outputFull = True
        if self.blocked is None:
            self.blocked = []
            self._queuedOctets = 0

    def _outputResumed(self) -> None:
        """
        The write buffer drained: let a FETCH waiting for room go on, and
        answer the queued lines unless a command is still running.
        """
        self._outputFull = False
        self._cancelStallTimer()
        if self._closing():
            # A connection closing with its producer registered and paused
            # is only closed once that producer is unregistered.
            self._outputStepAside(final=True)
            return
        waiters, self._roomWaiters = self._roomWaiters, []
        for waiter in waiters:
            waiter.callback(None)
        if not self._commandRunning and not self._outputFull and self.blocked is not None:
            self._unblock()

    def _cancelStallTimer(self) -> None:
        if self._stallCall is not None:
            if self._stallCall.active():
                self._stallCall.cancel()
            self._stallCall = None

    def _outputStalled(self) -> None:
        self._stallCall = None
        self.log.info(
            "IMAP client read no output for {seconds:.0f} s, dropping the connection",
            seconds=self.timeouts.command,
            **self._logFields(),
        )
        self._outputStepAside(final=True)
        self.transport.abortConnection()

    def _outputStopped(self) -> None:
        self._outputOver = True
        self._outputRegistered = False

    def _outputRoom(self) -> "Deferred[None]":
        """
        Fires once the write buffer is not full (at once if it is not).
        """
        if not self._outputFull or not self._outputRegistered:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._roomWaiters.append(waiter)
        return waiter

    def sendLine(self, line: bytes) -> None:
        super().sendLine(line)
        if line.startswith(b"* BYE"):
            # The server is closing the connection (RFC 3501 section
            # 7.1.5): nothing more to flow-control, and a registered
            # producer would keep a TLS connection from closing.
            self._outputStepAside(final=True)

    # --------------------------------------------------------- line handling

    def dataReceived(self, data: bytes) -> None:
        if self._busyReceiving:  # nested call from setLineMode(extra)
            super().dataReceived(data)
            return
        while data:
            if self._discardingLine:
                end = data.find(b"\n")
                if end < 0:
                    return
                data = data[end + 1 :]
                self._discardingLine = False
                continue
            super().dataReceived(data)
            data, self._refeed = self._refeed, b""

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        Answer C{BAD} and skip the rest of the over-long line, rather than
        Twisted's silent disconnect.
        """
        tag = line.split(b" ", 1)[0]
        self.sendBadResponse(tag if _looksLikeTag(tag) else None, b"Command line too long")
        end = line.find(b"\r\n")
        if end < 0:
            self._discardingLine = True
        else:
            self._refeed = line[end + 2 :]

    def lineReceived(self, line: bytes) -> None:
        # Twisted's version sends the exception text to the client and logs
        # with the legacy logger; this one keeps internals in the log.
        if self.blocked is not None:
            self._queue(line, len(line) + 2)
            literal = _NON_SYNC_LITERAL.search(line)
            if literal is not None and int(literal.group(1)) > 0:
                # The client sends the literal without waiting (RFC 7888):
                # keep its octets whole, since a line of it may be longer
                # than a command line may be.
                self._queuedLiteral = int(literal.group(1))
                self.setRawMode()
            return
        self.resetTimeout()
        if self.parseState in ("command", "pending") and line.endswith(b"+}"):
            line = self._nonSyncLine(line)
            if not line:
                return
        parse = getattr(self, "parse_" + self.parseState)
        try:
            parse(line)
        except Exception:
            self.log.failure("IMAP command failed", **self._logFields())
            self.sendUntaggedResponse(b"BAD [SERVERBUG] Internal server error")
        if self._outputRegistered and self._closing():
            self._outputStepAside(final=True)

    def _queue(self, item: bytes, octets: int) -> None:
        """
        Keep a line (or literal octets) received while commands wait, and
        stop reading once C{MAX_QUEUED} octets of them wait.
        """
        assert self.blocked is not None
        self.blocked.append(item)
        self._queuedOctets += octets
        if self._queuedOctets > MAX_QUEUED and not self._readPaused:
            self._readPaused = True
            self.transport.pauseProducing()

    def rawDataReceived(self, data: bytes) -> None:
        if not self._queuedLiteral:
            super().rawDataReceived(data)
            return
        octets, rest = data[: self._queuedLiteral], data[self._queuedLiteral :]
        self._queuedLiteral -= len(octets)
        if self.blocked is not None:
            self._queue(_LiteralOctets(octets), len(octets))
        if not self._queuedLiteral:
            self.setLineMode(rest)

    def _nonSyncLine(self, line: bytes) -> bytes:
        """
        Turn a LITERAL+ C{{n+}} into C{{n}} and suppress the continuation
        request Twisted will send for it; refuse an over-long one without
        reading it (empty return: the line was answered).
        """
        match = _NON_SYNC_LITERAL.search(line)
        if match is None:
            return line
        size = int(match.group(1))
        words = line.split(None, 3)
        isAppend = (
            self.parseState == "command" and len(words) > 1 and words[1].upper() == b"APPEND"
        ) or self._pendingLiteral is not None
        limit = self.maxMessageSize if isAppend else self._literalStringLimit
        if size > limit:
            tag = words[0] if self.parseState == "command" and _looksLikeTag(words[0]) else None
            self.log.warn(
                "Refusing a {size} octet non-synchronising literal", size=size, **self._logFields()
            )
            self.sendBadResponse(tag, b"[TOOBIG] Literal too large")
            self.sendLine(b"* BYE Literal too large")
            self.transport.loseConnection()
            self.blocked = []  # ignore whatever else arrives
            return b""
        self._nonSyncLiteral = True
        return line[: match.start()] + b"{%d}" % (size,)

    def sendContinuationRequest(self, msg: bytes = b"Ready for additional command text") -> None:
        if self._nonSyncLiteral:
            self._nonSyncLiteral = False
            return
        super().sendContinuationRequest(msg)

    def _block(self) -> None:
        """
        Queue further commands until L{_unblock}, so that replies stay in
        order while an asynchronous command runs.
        """
        self._commandRunning = True
        if self.blocked is None:
            self.blocked = []
            self._queuedOctets = 0

    def _unblock(self) -> None:
        self._commandRunning = False
        if self._outputFull and not self._outputOver:
            # The client has not read the replies so far: the queued lines
            # wait until the write buffer drains (_outputResumed).
            if self.blocked is None:
                self.blocked = []
                self._queuedOctets = 0
            return
        commands = self.blocked or []
        self.blocked = None
        self._queuedOctets = 0
        if self._queuedLiteral:
            # Back to lines for the replay; the literal's line, replayed,
            # opens it again and the rest of its octets are read as usual.
            self._queuedLiteral = 0
            self.setLineMode()
        # Kept on self so that STARTTLS can empty it (injection fix).
        self._replayQueue = commands
        # Like LineReceiver, disregard what follows a line that closed the
        # connection (LOGOUT, too many failed logins).
        while commands and self.blocked is None and not self._closing():
            if self.line_mode and not isinstance(commands[0], _LiteralOctets):
                self.lineReceived(commands.pop(0))
                continue
            # A replayed line opened a LITERAL+ literal (or one was refused
            # and its octets are to be read as lines, as if never queued):
            # what was queued goes back to the raw stream, ahead of anything
            # not yet parsed.
            raw = b"".join(
                item if isinstance(item, _LiteralOctets) else item + b"\r\n" for item in commands
            )
            del commands[:]
            self._buffer = raw + self._buffer
            if not self._busyReceiving:
                IMAP4Server.dataReceived(self, b"")
        if self.blocked is not None:
            self.blocked.extend(commands)
            self._queuedOctets = sum(
                len(item) if isinstance(item, _LiteralOctets) else len(item) + 2 for item in self.blocked
            )
            self._queuedLiteral = _literalStillToCome(self.blocked)
            if self._queuedLiteral:
                self.setRawMode()
            del commands[:]
        elif self._readPaused:
            self._readPaused = False
            self.transport.resumeProducing()

    def dispatchCommand(self, tag: bytes, cmd: bytes, rest: bytes, uid: Optional[int] = None) -> None:
        self._command = cmd.upper()
        super().dispatchCommand(tag, cmd, rest, uid)

    def _respond(self, state: bytes, tag: Optional[bytes], message: Optional[bytes]) -> None:
        """
        Before the tagged C{OK} or C{NO} of a command in the selected state,
        report what changed in the mailbox meanwhile (RFC 3501 section 5.5:
        the server may send untagged data at any time, and clients such as
        mbsync rely on hearing about new mail with any reply).  C{BAD} gets
        none: the command may not have been understood at all.
        """
        if (
            tag is not None
            and tag != b"*"
            and state in (b"OK", b"NO")
            and self.state == "select"
            and self._command not in _NO_REPORT_COMMANDS
        ):
            self._syncSelected(self._command not in _NO_EXPUNGE_COMMANDS)
        super()._respond(state, tag, message)

    def lookupCommand(self, cmd: bytes) -> Any:
        """
        Twisted decodes the command name as ASCII and raised on any other
        byte; such a name is simply an unknown command.
        """
        if not cmd.isascii():
            return None
        return super().lookupCommand(cmd)

    def _IMAP4Server__doCommand(
        self, tag: bytes, handler: Any, args: list[Any], parseargs: Any, line: Optional[bytes], uid: Any
    ) -> None:
        # Twisted hands the argument parsers None for a command sent without
        # arguments ("a LOGIN"); they failed with AttributeError, logged as
        # a server error with the exception text sent to the client.  With
        # an empty string they answer BAD.
        IMAP4Server._IMAP4Server__doCommand(  # type: ignore[attr-defined]
            self, tag, handler, args, parseargs, b"" if line is None else line, uid
        )

    def _IMAP4Server__ebDispatch(self, failure: Failure, tag: bytes) -> None:
        if failure.check(_Answered):
            self.sendNegativeResponse(tag, failure.value.response)
        elif failure.check(MailError, MailboxError):
            self._mailboxNo(tag, failure.value)
        else:
            IMAP4Server._IMAP4Server__ebDispatch(self, failure, tag)  # type: ignore[attr-defined]

    # ------------------------------------------------------------ capability

    def capabilities(self) -> dict[bytes, Any]:
        """
        What the client may use now, by the endpoint policy: before TLS on a
        STARTTLS endpoint C{STARTTLS LOGINDISABLED} and no C{AUTH=}; once
        authentication is allowed C{AUTH=PLAIN SASL-IR}; after login neither.
        """
        tls = self.tlsActive()
        caps: dict[bytes, Any] = {}
        if self.state == "unauth":
            if self.policy.offersStartTLS(tls) and self.ctx is not None and self.canStartTLS:
                caps[b"STARTTLS"] = None
            if self.policy.mayAuthenticate(tls):
                caps[b"AUTH"] = list(self.challengers)
                caps[b"SASL-IR"] = None
            else:
                caps[b"LOGINDISABLED"] = None
        caps[b"LITERAL+"] = None
        caps[b"ID"] = None
        caps[b"ENABLE"] = None
        caps[b"NAMESPACE"] = None
        caps[b"IDLE"] = None
        caps[b"CHILDREN"] = None
        caps[b"UIDPLUS"] = None
        caps[b"MOVE"] = None
        caps[b"UNSELECT"] = None
        caps[b"SPECIAL-USE"] = None
        caps[b"CREATE-SPECIAL-USE"] = None
        caps[b"QUOTA"] = None
        caps[b"QUOTA=RES-STORAGE"] = None
        caps[b"CONDSTORE"] = None
        caps[b"ESEARCH"] = None
        caps[b"QRESYNC"] = None
        caps[b"APPENDLIMIT=%d" % (self.maxMessageSize,)] = None
        return caps

    def _capabilityCode(self) -> bytes:
        return b"[CAPABILITY " + b" ".join(self.listCapabilities()) + b"]"

    # ---------------------------------------------------------------- STARTTLS

    def do_STARTTLS(self, tag: bytes) -> None:
        if self.tlsActive():
            self.sendBadResponse(tag, b"TLS is already active")
            return
        if not (self.policy.offersStartTLS(False) and self.ctx is not None and self.canStartTLS):
            self.sendBadResponse(tag, b"STARTTLS is not available")
            return
        # Nothing the client sent in plaintext after STARTTLS may be executed
        # once TLS is up: drop the read buffer (the loop in
        # LineReceiver.dataReceived stops when it is empty), lines queued
        # while blocked, and an over-long line being skipped.
        discarded = len(self.clearLineBuffer()) + len(self._refeed)
        discarded += sum(len(line) + 2 for line in self._replayQueue)
        del self._replayQueue[:]
        self._queuedLiteral = 0
        self._refeed = b""
        self._discardingLine = False
        self._pendingLiteral = None
        self.parseState = "command"
        self.setLineMode()
        if discarded:
            self.log.warn(
                "Discarded {discarded} bytes pipelined after STARTTLS",
                discarded=discarded,
                **self._logFields(),
            )
        self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
        self.transport.startTLS(self.ctx)
        self.startedTLS = True

    unauth_STARTTLS = (do_STARTTLS,)

    # --------------------------------------------------------- authentication

    def _refuseAuth(self, tag: bytes) -> bool:
        if self.policy.mayAuthenticate(self.tlsActive()):
            return False
        if self.policy.auth:
            self.sendNegativeResponse(tag, b"[PRIVACYREQUIRED] Use STARTTLS before authenticating")
        else:
            self.sendNegativeResponse(tag, b"[CANNOT] Authentication is not available here")
        return True

    def do_LOGIN(self, tag: bytes, user: bytes, passwd: bytes) -> None:
        if self._refuseAuth(tag):
            return
        self._login(tag, UsernamePassword(user, passwd), user, "LOGIN")

    unauth_LOGIN = (do_LOGIN, IMAP4Server.arg_astring, IMAP4Server.arg_finalastring)

    def opt_saslInitial(self, line: Optional[bytes]) -> tuple[Optional[bytes], bytes]:
        """
        The optional initial response of AUTHENTICATE (RFC 4959 SASL-IR).
        """
        line = (line or b"").strip()
        return (line or None), b""

    def do_AUTHENTICATE(self, tag: bytes, mechanism: bytes, initial: Optional[bytes] = None) -> None:
        if self._refuseAuth(tag):
            return
        factory = self.challengers.get(mechanism.upper())
        if factory is None:
            self.sendNegativeResponse(tag, b"[CANNOT] Unsupported authentication mechanism")
            return
        challenger = factory()
        if initial is not None:
            self._authStep(initial, tag, challenger, mechanism.upper())
        else:
            self._authChallenge(tag, challenger, mechanism.upper())

    unauth_AUTHENTICATE = (do_AUTHENTICATE, IMAP4Server.arg_atom, opt_saslInitial)

    def _authChallenge(self, tag: bytes, challenger: Any, mechanism: bytes) -> None:
        self.sendLine(b"+ " + base64.b64encode(challenger.getChallenge()))
        pending: Deferred[bytes] = Deferred()
        pending.addCallback(self._authStep, tag, challenger, mechanism)
        self._pendingLiteral = pending
        self.parseState = "pending"

    def _authStep(self, line: bytes, tag: bytes, challenger: Any, mechanism: bytes) -> None:
        try:
            response = decodeResponse(line)
        except SASLError as e:
            self.sendBadResponse(tag, b"Authentication cancelled" if e.cancelled else b"Invalid response")
            return
        try:
            challenger.setResponse(response)
        except IllegalClientResponse:
            # Malformed PLAIN or a foreign authorization identity: a failed
            # login like any other, same answer and delay.
            self._ebLogin(Failure(UnauthorizedLogin()), tag, b"", "AUTHENTICATE " + mechanism.decode())
            return
        if challenger.moreChallenges():
            self._authChallenge(tag, challenger, mechanism)
            return
        self._login(tag, challenger, challenger.username, "AUTHENTICATE " + mechanism.decode())

    def _login(self, tag: bytes, credentials: Any, user: bytes, method: str) -> None:
        self._block()
        if self.portal is None:
            d: Deferred[Any] = Deferred()
            d.errback(UnauthorizedLogin())
        else:
            d = maybeDeferred(self.portal.login, credentials, self.session, IAccount)
        d.addCallbacks(self._cbLogin, self._ebLogin, (tag, user, method), None, (tag, user, method), None)

    def _cbLogin(self, result: tuple[Any, Any, Any], tag: bytes, user: bytes, method: str) -> None:
        interface, avatar, logout = result
        account = getattr(avatar, "account", None) or user.decode("utf-8", "replace")
        if not self._admitSession(tag, account):
            logout()
            return
        self.account = avatar
        self._onLogout = logout
        self.state = "auth"
        self.setTimeout(self.POSTAUTH_TIMEOUT)
        if self.session is not None:
            self.session.authenticatedAs = account
        self.log.info(
            "IMAP login {outcome} for {account} ({method}) from {peer} on {endpoint}",
            account=account,
            outcome="success",
            method=method,
            **self._logFields(),
        )
        self.sendPositiveResponse(tag, self._capabilityCode() + b" Logged in")
        self._unblock()

    def _ebLogin(self, failure: Failure, tag: bytes, user: bytes, method: str) -> None:
        account = user.decode("utf-8", "replace")
        if failure.check(UnauthorizedLogin):
            outcome = "failure"
            response = b"[AUTHENTICATIONFAILED] Authentication failed."
            self._authFailures += 1
        else:
            outcome = "error"
            response = b"[UNAVAILABLE] Authentication temporarily unavailable"
            self.log.failure("Login for {account} failed", failure, account=account, **self._logFields())
        self.log.info(
            "IMAP login {outcome} for {account} ({method}) from {peer} on {endpoint}",
            account=account,
            outcome=outcome,
            method=method,
            **self._logFields(),
        )
        self._block()
        self._failureCall = self._clock.callLater(self.authFailureDelay, self._loginFailed, tag, response)

    def _loginFailed(self, tag: bytes, response: bytes) -> None:
        self._failureCall = None
        self.sendNegativeResponse(tag, response)
        if self._authFailures >= self.maxAuthFailures:
            self.log.warn("Closing after {failures} failed logins", failures=self._authFailures, **self._logFields())
            self.sendLine(b"* BYE Too many authentication failures")
            self.blocked = None
            self.transport.loseConnection()
            return
        self._unblock()

    # ---------------------------------------------------------- simple states

    def do_NOOP(self, tag: bytes) -> None:
        # The changes are reported before every tagged reply (_respond).
        self.sendPositiveResponse(tag, b"NOOP completed")

    unauth_NOOP = auth_NOOP = select_NOOP = logout_NOOP = (do_NOOP,)

    def do_CHECK(self, tag: bytes) -> None:
        self.sendPositiveResponse(tag, b"CHECK completed")

    select_CHECK = (do_CHECK,)

    def do_LOGOUT(self, tag: bytes) -> None:
        self.sendUntaggedResponse(b"BYE Logging out")
        self.sendPositiveResponse(tag, b"LOGOUT completed")
        self.transport.loseConnection()

    unauth_LOGOUT = auth_LOGOUT = select_LOGOUT = logout_LOGOUT = (do_LOGOUT,)

    def do_IDLE(self, tag: bytes) -> None:
        self.sendLine(b"+ idling")
        self._idleTag = tag
        self.parseState = "idle"
        self._syncSelected()

    auth_IDLE = select_IDLE = (do_IDLE,)

    def parse_idle(self, line: bytes) -> None:
        """
        RFC 2177: only C{DONE} ends IDLE (Twisted ended it on any line).
        """
        if line.strip().upper() != b"DONE":
            self.sendBadResponse(None, b"Expected DONE")
            return
        tag, self._idleTag = self._idleTag, None
        self.parseState = "command"
        self.sendPositiveResponse(tag, b"IDLE terminated")

    def mailboxChanged(self, mailbox: Any) -> None:
        """
        The selected folder changed in the backend: push while idling;
        otherwise the client hears about it before the next tagged reply.
        """
        if self.parseState == "idle" and mailbox is self.mbox:
            self._syncSelected()

    def _syncSelected(self, allowExpunge: bool = True) -> None:
        """
        Send the untagged responses for changes made by other sessions and
        deliveries to the selected mailbox: C{EXPUNGE} (only if
        C{allowExpunge}), C{FETCH (FLAGS ...)} and C{EXISTS}/C{RECENT}.
        """
        sync = getattr(self.mbox, "sync", None)
        if sync is None:
            return
        try:
            result = sync(allowExpunge)
        except MailError as e:
            # The folder was deleted or cannot be read now: the command's
            # own reply stands; the next one tries again.
            self.log.info("Cannot resynchronise the selected mailbox: {error}", error=str(e), **self._logFields())
            return
        self._sendExpunged(result.expunged)
        withModSeq = self._condstoreEnabled()
        for seq in sorted(result.flags):
            flags = b" ".join(f.encode("ascii") for f in result.flags[seq])
            modseq = b" MODSEQ (%d)" % (result.modSeqs.get(seq, 1),) if withModSeq else b""
            # RFC 7162 section 3.2.4: with QRESYNC every FETCH names its UID.
            uid = b"UID %d " % (self.mbox.getUID(seq),) if self._qresync else b""
            self.sendUntaggedResponse(b"%d FETCH (%bFLAGS (%b)%b)" % (seq, uid, flags, modseq))
        if result.exists is not None:
            self.sendUntaggedResponse(b"%d EXISTS" % (result.exists,))
            self.sendUntaggedResponse(b"%d RECENT" % (result.recent,))

    # --------------------------------------------------------------- mailboxes

    def _decodeName(self, name: Any) -> str:
        """
        A mailbox name from the wire (modified UTF-7, RFC 3501 section
        5.1.3) as C{str}; unlike Twisted's C{_parseMbox}, a client's bad
        encoding is not logged as a server error.
        """
        if isinstance(name, str):
            return name
        try:
            return name.decode("imap4-utf-7")
        except Exception:
            raise MailboxError("CANNOT", "Invalid mailbox name encoding") from None

    def _mailboxNo(self, tag: bytes, error: Exception) -> None:
        """
        Send C{NO} with the RFC 5530 response code for a mailbox or store
        error.
        """
        if isinstance(error, MailError):
            error = _storeError(error)
        if isinstance(error, MailboxError):
            self.sendNegativeResponse(tag, b"[%b] %b" % (error.code.encode(), error.text.encode("utf-8")))
        else:
            self.sendNegativeResponse(tag, str(error).encode("ascii", "replace") or b"Failed")

    def opt_selectParams(self, line: bytes) -> tuple["SelectParams", bytes]:
        """
        The RFC 4466 SELECT/EXAMINE parameters: C{CONDSTORE} and
        C{QRESYNC (uidvalidity modseq [known-uids [seq-match-data]])}
        (RFC 7162).
        """
        line = (line or b"").strip()
        if not line:
            return SelectParams(), b""
        try:
            parsed = parseNestedParens(line)
        except Exception:
            raise IllegalClientResponse("Malformed SELECT parameters") from None
        if len(parsed) != 1 or not isinstance(parsed[0], list):
            raise IllegalClientResponse("Malformed SELECT parameters")
        params = SelectParams()
        items = parsed[0]
        while items:
            word = items.pop(0)
            if not isinstance(word, bytes):
                raise IllegalClientResponse("Malformed SELECT parameters")
            if word.upper() == b"CONDSTORE":
                params.condstore = True
            elif word.upper() == b"QRESYNC" and items and isinstance(items[0], list):
                params.qresync = _qresyncParams(items.pop(0))
            else:
                raise IllegalClientResponse("Unknown SELECT parameter")
        return params, b""

    def _selectWork(self, tag: bytes, name: bytes, params: "SelectParams", rw: int, cmdName: bytes) -> None:
        if params.qresync is not None and not self._qresync:
            # RFC 7162 section 3.2.5: QRESYNC must be enabled first.
            self.sendBadResponse(tag, b"QRESYNC is not enabled")
            return
        if params.condstore:
            self._enableCondstore()
        if self.mbox is not None:
            # RFC 7162 section 3.2.11: the client learns where the old
            # mailbox's responses end.
            self.sendPositiveResponse(None, b"[CLOSED] Previous mailbox closed")
            self.mbox.removeListener(self)
            close = getattr(self.mbox, "close", None)
            if close is not None:
                close()
            self.mbox = None
            self.state = "auth"
        try:
            mbox = self.account.select(self._decodeName(name), rw)
        except (MailError, MailboxException) as e:
            self._mailboxNo(tag, e)
            return
        if mbox is None:
            self.sendNegativeResponse(tag, b"[NONEXISTENT] Mailbox doesn't exist")
            return
        mbox.addListener(self)
        claim = getattr(mbox, "claimRecent", None)
        if claim is not None:
            claim()
        flags = b" ".join(f.encode("ascii") for f in mbox.getFlags())
        permanent = b" ".join(f.encode("ascii") for f in SYSTEM_FLAGS) + b" \\*"
        self.sendUntaggedResponse(b"FLAGS (" + flags + b")")
        if mbox.isWriteable():
            self.sendPositiveResponse(None, b"[PERMANENTFLAGS (" + permanent + b")] Flags permitted")
        else:
            self.sendPositiveResponse(None, b"[PERMANENTFLAGS ()] Read-only mailbox")
        self.sendUntaggedResponse(b"%d EXISTS" % (mbox.getMessageCount(),))
        self.sendUntaggedResponse(b"%d RECENT" % (mbox.getRecentCount(),))
        unseen = getattr(mbox, "firstUnseen", lambda: None)()
        if unseen is not None:
            self.sendPositiveResponse(None, b"[UNSEEN %d] First unseen" % (unseen,))
        self.sendPositiveResponse(None, b"[UIDVALIDITY %d] UIDs valid" % (mbox.getUIDValidity(),))
        self.sendPositiveResponse(None, b"[UIDNEXT %d] Predicted next UID" % (mbox.getUIDNext(),))
        highest = getattr(mbox, "highestModSeq", lambda: None)()
        if highest is not None:
            self.sendPositiveResponse(None, b"[HIGHESTMODSEQ %d] Highest" % (highest,))
        else:
            self.sendPositiveResponse(None, b"[NOMODSEQ] No permanent modsequences")
        mode = b"READ-WRITE" if mbox.isWriteable() else b"READ-ONLY"
        self.mbox = mbox
        self.state = "select"
        if params.qresync is not None and highest is not None:
            self._qresyncSelect(mbox, params.qresync)
        self.sendPositiveResponse(tag, b"[" + mode + b"] " + cmdName + b" completed")

    def _qresyncSelect(self, mbox: Any, params: "QresyncParams") -> None:
        """
        RFC 7162 section 3.2.5: when the client's UIDVALIDITY is still
        valid, what it missed since its MODSEQ: C{VANISHED (EARLIER)} with
        the UIDs expunged, then a FETCH (UID, FLAGS, MODSEQ) per message
        changed, both limited to its known UIDs when it gave them.
        """
        if params.uidValidity != mbox.getUIDValidity():
            return
        known = None
        if params.knownUids is not None:
            known = parseIdList(params.knownUids, max(mbox.getUIDNext() - 1, 1))
        vanished = mbox.vanishedSince(params.modSeq, known)
        if vanished:
            self.sendUntaggedResponse(b"VANISHED (EARLIER) " + vanished)
        for seq, msg in mbox.changedSince(params.modSeq, known):
            flags = b" ".join(f.encode("ascii") for f in msg.getFlags())
            self.sendUntaggedResponse(
                b"%d FETCH (UID %d FLAGS (%b) MODSEQ (%d))" % (seq, msg.getUID(), flags, max(msg.info.modSeq, 1))
            )

    auth_SELECT = select_SELECT = (_selectWork, IMAP4Server.arg_astring, opt_selectParams, 1, b"SELECT")
    auth_EXAMINE = select_EXAMINE = (_selectWork, IMAP4Server.arg_astring, opt_selectParams, 0, b"EXAMINE")

    def _mailboxCommand(self, tag: bytes, done: bytes, operation: Any, *names: bytes) -> None:
        try:
            operation(*[self._decodeName(n) for n in names])
        except (MailError, MailboxException) as e:
            self._mailboxNo(tag, e)
        else:
            self.sendPositiveResponse(tag, done)

    def do_DELETE(self, tag: bytes, name: bytes) -> None:
        self._mailboxCommand(tag, b"DELETE completed", self.account.delete, name)

    def do_RENAME(self, tag: bytes, old: bytes, new: bytes) -> None:
        self._mailboxCommand(tag, b"RENAME completed", self.account.rename, old, new)

    def do_SUBSCRIBE(self, tag: bytes, name: bytes) -> None:
        self._mailboxCommand(tag, b"SUBSCRIBE completed", self.account.subscribe, name)

    def do_UNSUBSCRIBE(self, tag: bytes, name: bytes) -> None:
        self._mailboxCommand(tag, b"UNSUBSCRIBE completed", self.account.unsubscribe, name)

    auth_DELETE = select_DELETE = (do_DELETE, IMAP4Server.arg_finalastring)
    auth_RENAME = select_RENAME = (do_RENAME, IMAP4Server.arg_astring, IMAP4Server.arg_finalastring)
    auth_SUBSCRIBE = select_SUBSCRIBE = (do_SUBSCRIBE, IMAP4Server.arg_finalastring)
    auth_UNSUBSCRIBE = select_UNSUBSCRIBE = (do_UNSUBSCRIBE, IMAP4Server.arg_finalastring)

    def _listWork(self, tag: bytes, ref: bytes, mbox: bytes, sub: int, cmdName: bytes) -> None:
        lister = self.account.listSubscribed if sub else self.account.listMailboxes
        try:
            mailboxes = lister(self._decodeName(ref), self._decodeName(mbox))
        except (MailError, MailboxException) as e:
            self._mailboxNo(tag, e)
            return
        self._cbListWork(mailboxes, tag, 0, cmdName)

    auth_LIST = select_LIST = (_listWork, IMAP4Server.arg_astring, IMAP4Server.arg_astring, 0, b"LIST")
    auth_LSUB = select_LSUB = (_listWork, IMAP4Server.arg_astring, IMAP4Server.arg_astring, 1, b"LSUB")

    def do_STATUS(self, tag: bytes, mailbox: bytes, names: list[bytes]) -> None:
        items = [n.upper() for n in names]
        if not items or any(i not in _STATUS_ITEMS for i in items):
            self.sendBadResponse(tag, b"Unknown STATUS item")
            return
        try:
            name = self._decodeName(mailbox)
            mbox = self.account.select(name, 0)
        except (MailError, MailboxException) as e:
            self._mailboxNo(tag, e)
            return
        if mbox is None:
            self.sendNegativeResponse(tag, b"[NONEXISTENT] Mailbox doesn't exist")
            return
        if b"HIGHESTMODSEQ" in items:
            self._enableCondstore()
        status = mbox.requestStatus([i.decode("ascii") for i in items])
        pairs = b" ".join(b"%b %d" % (i, status[i.decode("ascii")]) for i in items)
        self.sendUntaggedResponse(b"STATUS " + _prepareMailboxName(name) + b" (" + pairs + b")")
        self.sendPositiveResponse(tag, b"STATUS completed")

    auth_STATUS = select_STATUS = (do_STATUS, IMAP4Server.arg_astring, IMAP4Server.arg_plist)

    # ------------------------------------------------------------------ APPEND

    def arg_literal(self, line: bytes) -> Any:
        """
        The message literal of APPEND, refused with C{NO [TOOBIG]} before the
        client sends it when it is over C{maxMessageSize} (Twisted accepted
        up to 2 GB, spooling to a temporary file).
        """
        if not line or line[:1] != b"{" or line[-1:] != b"}":
            raise IllegalClientResponse("Missing literal")
        try:
            size = int(line[1:-1])
        except ValueError:
            raise IllegalClientResponse("Bad literal size") from None
        if size > self.maxMessageSize:
            raise _Answered(b"[TOOBIG] Message too large")
        return self._fileLiteral(size)

    def do_APPEND(self, tag: bytes, mailbox: bytes, flags: Optional[list[bytes]], date: Optional[bytes], message: Any) -> None:
        try:
            parseAppendDate(date)
        except ValueError:
            self.sendBadResponse(tag, b"Invalid date-time")
            return
        try:
            target = self.account.select(self._decodeName(mailbox), 1)
        except (MailError, MailboxException) as e:
            self._mailboxNo(tag, e)
            return
        if target is None:
            self.sendNegativeResponse(tag, b"[TRYCREATE] Mailbox doesn't exist")
            return
        self._block()
        d = Deferred.fromCoroutine(self._checkedAppend(target, message, flags or [], date))
        d.addCallbacks(self._appended, self._appendFailed, (tag, target), None, (tag,), None)

    async def _checkedAppend(self, target: Any, message: Any, flags: list[bytes], date: Optional[bytes]) -> int:
        message.seek(0, 2)
        size = message.tell()
        message.seek(0)
        await self._checkQuota(size)
        return await maybeDeferred(target.addMessage, message, flags, date)

    auth_APPEND = select_APPEND = (
        do_APPEND,
        IMAP4Server.arg_astring,
        IMAP4Server.opt_plist,
        IMAP4Server.opt_datetime,
        arg_literal,
    )

    def _appended(self, uid: int, tag: bytes, target: Any) -> None:
        # Appending to the selected mailbox is reported (EXISTS) before the
        # tagged reply, like any other change.
        self.sendPositiveResponse(
            tag, b"[APPENDUID %d %d] APPEND completed" % (target.getUIDValidity(), uid)
        )
        self._unblock()

    def _appendFailed(self, failure: Failure, tag: bytes) -> None:
        if failure.check(MailError, MailboxException):
            self._mailboxNo(tag, failure.value)
        else:
            self.log.failure("APPEND failed", failure, **self._logFields())
            self.sendNegativeResponse(tag, b"[SERVERBUG] APPEND failed")
        self._unblock()


class IMAPFactory(ServerFactory):
    """
    Builds L{IMAPServer}s for one endpoint.

    @ivar tls: the shared TLS creator, used by STARTTLS where the policy
        offers it (implicit-TLS endpoints are wrapped by the service builder
        in a C{TLSMemoryBIOFactory} with the same creator).
    @ivar timeouts: the login, idle, command and literal timers.
    @ivar connections: counts connections of all IMAP endpoints (total and
        per client address); L{None} for no cap.
    @ivar userAddresses: counts logged-in sessions per account and client
        address; L{None} for no cap.
    """

    # The service logs each endpoint once at start; Twisted's per-factory
    # start/stop lines would only repeat it.
    noisy = False

    protocol = IMAPServer  # type: ignore[assignment]
    log = Logger()

    def __init__(
        self,
        policy: EndpointPolicy,
        portal: Portal,
        tls: Optional[IOpenSSLServerConnectionCreator],
        hostname: str,
        clock: Optional[IReactorTime] = None,
        maxMessageSize: int = DEFAULT_MAX_MESSAGE_SIZE,
        maxAuthFailures: int = 3,
        authFailureDelay: float = 1.0,
        timeouts: SessionTimeouts = SessionTimeouts(),
        connections: Optional[ConnectionLimiter] = None,
        userAddresses: Optional[UserAddressLimiter] = None,
        spamReports: Optional[ISpamReports] = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[no-redef]
        # Told about COPY and MOVE, for spam learning (into or out of Junk).
        self.spamReports = spamReports
        self.policy = policy
        self.portal = portal
        self.tls = tls
        self.hostname = hostname
        self.clock = clock
        self.maxMessageSize = maxMessageSize
        self.maxAuthFailures = maxAuthFailures
        self.authFailureDelay = authFailureDelay
        self.timeouts = timeouts
        # Shared by every IMAP endpoint (the service builds one of each).
        self.connections = connections
        self.userAddresses = userAddresses
        if policy.offersStartTLS(False) and tls is None:
            self.log.warn(
                "IMAP endpoint {endpoint} wants STARTTLS but has no TLS creator: "
                "nobody can log in there",
                endpoint=policy.name,
            )

    def buildProtocol(self, addr: Any) -> IMAPServer:
        p = IMAPServer(
            self.policy,
            self.portal,
            self.tls,
            self.hostname,
            self.clock,  # type: ignore[arg-type]
            maxMessageSize=self.maxMessageSize,
            maxAuthFailures=self.maxAuthFailures,
            authFailureDelay=self.authFailureDelay,
            timeouts=self.timeouts,
            connections=self.connections,
            userAddresses=self.userAddresses,
        )
        p.factory = self
        return p
