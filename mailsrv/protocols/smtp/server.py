# -*- test-case-name: tests.protocols.test_smtp_server -*-
"""
The SMTP server for the MX (port 25) and submission (587, 465) endpoints.

One protocol class serves all three; the L{EndpointPolicy} decides what is
offered.  Compared with Twisted's C{ESMTP}, which this replaces (see the
project's notes on it), this class:

 - splits lines itself, so that STARTTLS can discard plaintext the client
   pipelined behind it (RFC 3207 section 4.2; CVE-2011-0411);
 - handles one command at a time: while a command waits on a Deferred
   (recipient lookup, authentication, the final commit) later pipelined
   commands wait in the buffer, so replies always come back in order;
 - reads DATA in raw mode (L{DataReceiver}) and streams it to the delivery
   as it arrives, answering 250 only after the delivery's commit fired,
   i.e. after the message is durably on disk;
 - enforces limits on line length, message size, recipients and errors;
 - times commands, not reads: a command line must arrive whole within
   C{command_timeout} of the previous reply (Postfix's C{smtpd_timeout} with
   C{smtpd_per_request_deadline}), so a client sending a byte every few
   seconds cannot hold the session; DATA and BDAT are held to
   C{min_data_rate} instead (L{InputDeadline}), so large messages still
   get through slow links;
 - answers no more commands while the transport's write buffer is full
   (it is registered as the transport's push producer), so that a client
   that pipelines commands and never reads the replies cannot make the
   server buffer replies without bound; its input then waits in the
   buffer, and reading stops at C{MAX_BUFFERED} as behind any pending
   command.  (Reading is not stopped at once: under TLS a full buffer also
   means "handshake not done yet", which needs reading to complete.)
"""

from __future__ import annotations

import base64
import functools
from typing import Any, Callable, Optional

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet import defer, protocol, task
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLServerConnectionCreator,
    IPushProducer,
    IReactorTime,
    ISSLTransport,
)
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from mailsrv.auth import sasl
from mailsrv.config.schema import LimitsConfig
from mailsrv.envelope import Envelope, Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IAuthenticatedUser, IConnectionPolicy, IDelivery, IDeliveryTarget
from mailsrv.policy.deadline import InputDeadline
from mailsrv.policy.endpoint import EndpointPolicy
from mailsrv.policy.limits import ConnectionLimiter, SessionSlots
from mailsrv.protocols.smtp import replies as R
from mailsrv.protocols.smtp.address import (
    AddressSyntaxError,
    NonASCIIAddress,
    parseParameters,
    parsePath,
)
from mailsrv.protocols.smtp.data import ChunkReceiver, DataReceiver
from mailsrv.protocols.smtp.params import checkMailParameters, checkRcptParameters
from mailsrv.tls import negotiatedTLS

# RFC 5321 section 4.5.3.1.4 says 512 octets; Postfix accepts 2048 and so do
# we, because AUTH PLAIN initial responses with long passwords need it.
MAX_COMMAND_LINE = 2048

# While a command is pending, stop reading once this much is buffered.
MAX_BUFFERED = 256 * 1024

COMMAND, DATA, BDAT, AUTH, CLOSED = "COMMAND", "DATA", "BDAT", "AUTH", "CLOSED"


# The reasons of the refusals this class makes itself, without asking the
# pipeline (whose refusals carry their MailError's reason).  They are log
# fields and /metrics labels: stable names, documented in
# docs/operations.md.
HELO_REQUIRED = "helo-required"
STARTTLS_REQUIRED = "starttls-required"
AUTH_REQUIRED = "auth-required"
BAD_SEQUENCE = "bad-sequence"
SYNTAX = "syntax"
NON_ASCII = "non-ascii"
NOT_OFFERED = "not-offered"
AUTH_MECHANISM = "auth-mechanism"
AUTH_CANCELLED = "auth-cancelled"
UNKNOWN_COMMAND = "unknown-command"
LINE_TOO_LONG = "line-too-long"
TOO_MANY_RECIPIENTS = "too-many-recipients"
TOO_MANY_ERRORS = "too-many-errors"
TOO_MANY_CONNECTIONS = "too-many-connections"
TIMEOUT = "timeout"


def _printable(verb: str) -> str:
    """
    A client's command verb made safe for a log line: short, printable.
    """
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in verb[:20]) or "(empty)"


def _reason(failure: Failure) -> str:
    """
    The reason of a refusal in logs and metrics: the L{MailError}'s, or
    C{local-error} for an unexpected failure.
    """
    return failure.value.reason if failure.check(MailError) else "local-error"


@implementer(IHandshakeListener, IPushProducer)
class SMTPServer(protocol.Protocol, TimeoutMixin):
    log = Logger()

    def __init__(
        self,
        policy: EndpointPolicy,
        portal: Portal,
        target: IDeliveryTarget,
        tls: Optional[IOpenSSLServerConnectionCreator],
        hostname: str,
        limits: LimitsConfig,
        clock: IReactorTime,
        authFailureDelay: float = 1.0,
        maxAuthFailures: int = 3,
        limiter: Optional[ConnectionLimiter] = None,
    ) -> None:
        self.policy = policy
        self.portal = portal
        self.target = target
        self.tlsCreator = tls
        self.hostname = hostname
        self.limits = limits
        self.clock = clock
        self.callLater = clock.callLater
        self.authFailureDelay = authFailureDelay
        self.maxAuthFailures = maxAuthFailures
        self._buffer = b""
        self._mode = COMMAND
        self._busy = False
        self._paused = False
        self._outputFull = False
        self._errors = 0
        self._authFailures = 0
        self._envelope: Optional[Envelope] = None
        self._delivery: Optional[IDelivery] = None
        self._data: Optional[DataReceiver | ChunkReceiver] = None
        self._chunkRemaining = 0
        self._chunkLast = False
        self._chunkRefusal: Optional[R.Reply] = None
        # The transaction whose excess recipient was logged.
        self._overLimitEnvelope: Optional[Envelope] = None
        self._dataFailure: Optional[MailError] = None
        self._sasl: Optional[sasl.SASLExchange] = None
        self._skipLine = False
        self._refused = False
        self._slots = SessionSlots(limiter)
        self._registered = False  # this server is the transport's producer
        self._dataDeadline = InputDeadline(
            clock,
            limits.commandTimeout,
            limits.dataTimeout,
            limits.minDataRate,
            self._dataTimedOut,
            paused=lambda: self._paused,
        )
        self.session: Session

    # -- connection ---------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.session = Session(
            endpoint=self.policy,
            peerHost=getattr(peer, "host", "unknown"),
            peerPort=getattr(peer, "port", 0),
        )
        self.transport.registerProducer(self, True)
        self._registered = True
        self.setTimeout(self.limits.commandTimeout)
        if not self._slots.admitConnection(self.session.peerHost):
            self.log.warn(
                "SMTP connection from {peer} on {endpoint} refused: connection limit",
                peer=self.session.peerHost,
                endpoint=self.policy.name,
                stage="connect",
                code=R.TOO_MANY_CONNECTIONS.code,
                reason=TOO_MANY_CONNECTIONS,
                sessionId=self.session.sessionId,
            )
            self._reply(*R.TOO_MANY_CONNECTIONS.format(self.hostname, self.session.peerHost))
            self._loseConnection()
            self._mode = CLOSED
            return
        self.log.info(
            "SMTP connection from {peer} on {endpoint}",
            peer=self.session.peerHost,
            endpoint=self.policy.name,
            sessionId=self.session.sessionId,
        )
        if IConnectionPolicy.providedBy(self.target):
            d = self.target.checkConnection(self.session)
            d.addCallbacks(self._greet, self._refuseConnection)
            self._wait(d)
        else:
            self._greet(None)

    def _greet(self, _: object) -> None:
        self._reply(220, "", f"{self.hostname} ESMTP mailsrv")

    def _refuseConnection(self, failure: Failure) -> None:
        """
        RFC 5321 section 3.1: a server that will not serve a client answers
        554 instead of 220 and then refuses every command but QUIT.
        """
        reply = self._replyForFailure(failure)
        if reply.code < 500:
            self._reply(421, "4.7.0", f"{self.hostname} {reply.text}")
            self._loseConnection()
            self._mode = CLOSED
            return
        self._refused = True
        self._reply(554, "5.7.1", reply.text)

    @property
    def tlsActive(self) -> bool:
        return self.session.tls is not None or ISSLTransport.providedBy(self.transport)

    def handshakeCompleted(self) -> None:
        info = negotiatedTLS(self.transport)
        if info is not None:
            self.session.tls = info
            self.log.info(
                "TLS established: {tlsVersion} {cipher}",
                tlsVersion=info.version,
                cipher=info.cipher,
                sessionId=self.session.sessionId,
                endpoint=self.policy.name,
            )

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.setTimeout(None)
        self._dataDeadline.stop()
        self._slots.release()
        self._mode = CLOSED
        self._abortTransaction()
        self.log.info(
            "SMTP connection from {peer} on {endpoint} closed",
            peer=self.session.peerHost,
            sessionId=self.session.sessionId,
            endpoint=self.policy.name,
        )

    def timeoutConnection(self) -> None:
        self.log.info(
            "SMTP timeout from {peer} on {endpoint} in {mode}",
            peer=self.session.peerHost,
            mode=self._mode,
            stage={DATA: "data", BDAT: "data", AUTH: "auth"}.get(self._mode, "command"),
            code=R.TIMEOUT.code,
            reason=TIMEOUT,
            sessionId=self.session.sessionId,
            endpoint=self.policy.name,
        )
        self._reply(*R.TIMEOUT.format(self.hostname))
        self._loseConnection()

    def _dataTimedOut(self, kind: str) -> None:
        # Message data slower than min_data_rate (or stalled for
        # data_timeout): the same 421 as Postfix gives.
        self.timeoutConnection()
        self._mode = CLOSED

    # -- output -------------------------------------------------------------

    def _reply(self, code: int, status: str, text: str) -> None:
        if self._mode == CLOSED:
            return
        lines = text.split("\n")
        prefix = f"{status} " if status else ""
        out = []
        for i, line in enumerate(lines):
            sep = "-" if i < len(lines) - 1 else " "
            out.append(f"{code}{sep}{prefix}{line}\r\n")
        self.transport.write("".join(out).encode("utf-8"))

    def _send(self, reply: R.Reply) -> None:
        self._reply(*reply)

    def _error(self, reply: R.Reply) -> None:
        """
        Send an error reply and count it; too many errors end the session,
        as Postfix's C{smtpd_hard_error_limit} does.
        """
        self._send(reply)
        self._errors += 1
        if self._errors >= self.limits.maxErrors and self._mode != CLOSED:
            self._closeTooManyErrors()

    def _closeTooManyErrors(self) -> None:
        reply = R.TOO_MANY_ERRORS.format(self.hostname)
        self._logRefusal(reply, "session", "session", TOO_MANY_ERRORS)
        self._send(reply)
        self._loseConnection()
        self._mode = CLOSED

    def _refuse(self, reply: R.Reply, command: str, stage: str, reason: str) -> None:
        """
        Refuse a command on the protocol's own authority (sequence, syntax,
        TLS or AUTH policy, limits): log it and answer with C{reply}, which
        counts as an error.
        """
        self._logRefusal(reply, command, stage, reason)
        self._error(reply)

    def _logRefusal(self, reply: R.Reply, command: str, stage: str, reason: str) -> None:
        """
        One info line per refusal the protocol makes itself (a refused
        client is not a server error); /metrics counts it in
        C{mailsrv_smtp_rejections_total} by C{stage} and C{reason}.  A
        client repeating a bad command gets at most C{max_errors} of these
        before it is disconnected.
        """
        self.log.info(
            "SMTP {command} from {peer} on {endpoint} refused: {code} {text}",
            command=command,
            stage=stage,
            code=reply.code,
            status=reply.status,
            text=reply.text,
            reason=reason,
            peer=self.session.peerHost,
            sessionId=self.session.sessionId,
            endpoint=self.policy.name,
        )

    # -- input --------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        # Reading does not restart the command timer (a line taken from the
        # buffer does, in _process); message data earns time at the
        # minimum rate.
        if self._mode == DATA or self._mode == BDAT:
            self._dataDeadline.dataReceived(len(data))
        self._buffer += data
        self._process()

    def _loseConnection(self) -> None:
        """
        Close after the pending replies.  The session stops being the
        transport's producer first: TLS (L{TLSMemoryBIOProtocol}) does not
        send its close alert or close the socket while a producer is
        registered, so after STARTTLS or on C{submissions} the connection
        would stay open after 221 until the client closed it.
        """
        if self._registered:
            self._registered = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    # -- flow control: the transport pauses us when its write buffer is full

    def pauseProducing(self) -> None:
        self._outputFull = True
        self._updateReading()

    def resumeProducing(self) -> None:
        self._outputFull = False
        if self._busy:
            self._updateReading()
        else:
            self._process()

    def stopProducing(self) -> None:
        pass

    def _updateReading(self) -> None:
        """
        Stop reading from the client while too much input waits behind a
        pending command or behind replies it does not read.
        """
        if self._mode == CLOSED:
            return
        pause = (self._busy or self._outputFull) and len(self._buffer) > MAX_BUFFERED
        if pause != self._paused:
            self._paused = pause
            if pause:
                self.transport.pauseProducing()
            else:
                self.transport.resumeProducing()

    def _process(self) -> None:
        while self._buffer and not self._busy and not self._outputFull and self._mode != CLOSED:
            if self._mode == DATA:
                self._processData()
                continue
            if self._mode == BDAT:
                self._processChunk()
                continue
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_COMMAND_LINE:
                    # Discard up to the next LF, then complain once.
                    self._buffer = b""
                    self._skipLine = True
                break
            line, self._buffer = self._buffer[:end], self._buffer[end + 1 :]
            # The next command's time starts now.
            self.resetTimeout()
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._skipLine or len(line) > MAX_COMMAND_LINE:
                self._skipLine = False
                self._refuse(R.LINE_TOO_LONG, "line", "command", LINE_TOO_LONG)
                continue
            if self._mode == AUTH:
                self._authResponse(line)
            else:
                self._command(line)
        self._updateReading()

    def _wait(self, d: defer.Deferred[Any]) -> None:
        """
        Hold further input until C{d} fires (its callbacks send the reply).
        """
        self._busy = True

        def resume(result: object) -> None:
            self._busy = False
            self._updateReading()
            if self._mode != CLOSED:
                self.resetTimeout()
                self._process()

        d.addBoth(resume)

    def _command(self, line: bytes) -> None:
        verb, _, arg = line.partition(b" ")
        name = verb.upper().decode("ascii", "replace")
        if self._refused and name != "QUIT":
            self._error(R.REFUSED)
            return
        handler = getattr(self, "do_" + name, None) if name.isalpha() else None
        if handler is None:
            self._refuse(R.NOT_RECOGNIZED, _printable(name), "command", UNKNOWN_COMMAND)
            return
        handler(arg.strip(b" "))

    # -- session commands ---------------------------------------------------

    def _hello(self, arg: bytes, esmtp: bool) -> None:
        verb = "EHLO" if esmtp else "HELO"
        if not arg:
            self._refuse(R.SYNTAX_HELO.format(verb), verb, "helo", SYNTAX)
            return
        name = arg.decode("utf-8", "replace")
        self._abortTransaction()
        self.session.heloName = "".join(c if c.isprintable() and not c.isspace() else "?" for c in name)[:255]
        self.session.esmtp = esmtp
        if not esmtp:
            self._reply(250, "", self.hostname)
            return
        lines = [self.hostname, "PIPELINING", f"SIZE {self.limits.messageSize}"]
        if self.policy.offersStartTLS(self.tlsActive) and self.tlsCreator is not None:
            lines.append("STARTTLS")
        if self.policy.mayAuthenticate(self.tlsActive) and self.session.authenticatedAs is None:
            lines.append("AUTH " + " ".join(sasl.MECHANISMS))
        lines += ["ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8", "CHUNKING", "DSN"]
        self._reply(250, "", "\n".join(lines))

    def do_EHLO(self, arg: bytes) -> None:
        self._hello(arg, esmtp=True)

    def do_HELO(self, arg: bytes) -> None:
        self._hello(arg, esmtp=False)

    def do_NOOP(self, arg: bytes) -> None:
        self._send(R.OK)

    def do_RSET(self, arg: bytes) -> None:
        if arg:
            self._refuse(R.NO_PARAMS, "RSET", "command", SYNTAX)
            return
        self._abortTransaction()
        self._send(R.OK)

    def do_VRFY(self, arg: bytes) -> None:
        # Answering whether an account exists would let anyone harvest them.
        self._send(R.VRFY)

    def do_HELP(self, arg: bytes) -> None:
        self._send(R.HELP)

    def do_QUIT(self, arg: bytes) -> None:
        self._send(R.BYE)
        self._abortTransaction()
        self._loseConnection()
        self._mode = CLOSED

    def do_STARTTLS(self, arg: bytes) -> None:
        if self.tlsActive:
            self._refuse(R.TLS_ACTIVE, "STARTTLS", "starttls", BAD_SEQUENCE)
            return
        if not self.policy.offersStartTLS(False) or self.tlsCreator is None:
            self._refuse(R.TLS_UNAVAILABLE, "STARTTLS", "starttls", NOT_OFFERED)
            return
        if arg:
            self._refuse(R.NO_PARAMS, "STARTTLS", "starttls", SYNTAX)
            return
        if self._buffer:
            # The client must wait for our 220 before sending more; anything
            # it sent already is plaintext an attacker may have injected.
            self.log.warn(
                "Discarded {count} octets pipelined after STARTTLS from {peer}",
                count=len(self._buffer),
                peer=self.session.peerHost,
                sessionId=self.session.sessionId,
                endpoint=self.policy.name,
            )
            self._buffer = b""
        self._send(R.READY_TLS)
        self._abortTransaction()
        # RFC 3207 section 4.2: forget everything learnt before TLS.
        self.session.heloName = None
        self.session.esmtp = False
        self.session.authenticatedAs = None
        self.transport.startTLS(self.tlsCreator)

    # -- authentication -----------------------------------------------------

    def do_AUTH(self, arg: bytes) -> None:
        if not self.policy.auth:
            self._refuse(R.AUTH_DISABLED, "AUTH", "auth", NOT_OFFERED)
            return
        if not self.policy.mayAuthenticate(self.tlsActive):
            self._refuse(R.NEED_STARTTLS, "AUTH", "auth", STARTTLS_REQUIRED)
            return
        if self.session.heloName is None or not self.session.esmtp:
            self._refuse(R.NEED_HELO, "AUTH", "auth", HELO_REQUIRED)
            return
        if self.session.authenticatedAs is not None:
            self._refuse(R.AUTH_ALREADY, "AUTH", "auth", BAD_SEQUENCE)
            return
        if self._envelope is not None:
            self._refuse(R.AUTH_IN_TRANSACTION, "AUTH", "auth", BAD_SEQUENCE)
            return
        mechanism, _, initial = arg.partition(b" ")
        try:
            self._sasl = sasl.SASLExchange(mechanism.decode("ascii", "replace"))
        except sasl.SASLError:
            self._refuse(R.AUTH_MECHANISM, "AUTH", "auth", AUTH_MECHANISM)
            return
        try:
            decoded = sasl.decodeResponse(initial) if initial else None
            self._saslStep(self._sasl.start(decoded))
        except sasl.SASLError as e:
            self._saslFailed(e)

    def _authResponse(self, line: bytes) -> None:
        assert self._sasl is not None
        try:
            self._saslStep(self._sasl.respond(sasl.decodeResponse(line)))
        except sasl.SASLError as e:
            self._saslFailed(e)

    def _saslFailed(self, error: sasl.SASLError) -> None:
        self._mode = COMMAND
        self._sasl = None
        if error.cancelled:
            self._refuse(R.AUTH_CANCELLED, "AUTH", "auth", AUTH_CANCELLED)
        else:
            self._refuse(R.AUTH_DECODE, "AUTH", "auth", SYNTAX)

    def _saslStep(self, result: Any) -> None:
        if isinstance(result, bytes):
            self._mode = AUTH
            self._reply(334, "", base64.b64encode(result).decode("ascii"))
            return
        self._mode = COMMAND
        self._sasl = None
        username = result.username.decode("utf-8", "replace")
        d = self.portal.login(result, self.session, IAuthenticatedUser)
        d.addCallbacks(self._authSucceeded, self._authFailed, errbackArgs=(username,))
        self._wait(d)

    def _authSucceeded(self, loginResult: tuple[Any, Any, Callable[[], None]]) -> None:
        _, avatar, _ = loginResult
        self.session.authenticatedAs = avatar.account
        self.log.info(
            "AUTH success for {account} from {peer} on {endpoint}",
            account=avatar.account,
            peer=self.session.peerHost,
            outcome="success",
            sessionId=self.session.sessionId,
            endpoint=self.policy.name,
        )
        self._send(R.AUTH_OK)

    def _authFailed(self, failure: Failure, username: str) -> defer.Deferred[None]:
        temporary = not failure.check(UnauthorizedLogin)
        self._authFailures += 1
        self.log.info(
            "AUTH {outcome} for {account} from {peer} on {endpoint}",
            account=username[:100],
            peer=self.session.peerHost,
            outcome="tempfail" if temporary else "failure",
            sessionId=self.session.sessionId,
            endpoint=self.policy.name,
        )
        if temporary:
            self.log.failure("Authentication backend error", failure)

        def answer() -> None:
            # Logged above and counted as a failed login, not again here.
            self._error(R.AUTH_TEMP if temporary else R.AUTH_FAILED)
            if self._authFailures >= self.maxAuthFailures and self._mode != CLOSED:
                self._closeTooManyErrors()

        # Slow down password guessing; the reply waits, and so does the
        # session.
        return defer.Deferred.fromCoroutine(self._delayed(answer))

    async def _delayed(self, action: Callable[[], None]) -> None:
        await task.deferLater(self.clock, self.authFailureDelay, lambda: None)
        action()

    # -- mail transaction ---------------------------------------------------

    def _transactionRefusal(self) -> Optional[tuple[R.Reply, str]]:
        """
        @return: the reply and reason refusing MAIL in this session, or
            L{None}.
        """
        if self.session.heloName is None:
            return R.NEED_HELO, HELO_REQUIRED
        if self.policy.requiresTLSBeforeTransaction(self.tlsActive):
            return R.NEED_STARTTLS, STARTTLS_REQUIRED
        if self.policy.requiresAuthForMail and self.session.authenticatedAs is None:
            return R.NEED_AUTH, AUTH_REQUIRED
        return None

    def do_MAIL(self, arg: bytes) -> None:
        refusal = self._transactionRefusal()
        if refusal is not None:
            self._refuse(refusal[0], "MAIL", "mail", refusal[1])
            return
        if self._envelope is not None:
            self._refuse(R.NESTED_MAIL, "MAIL", "mail", BAD_SEQUENCE)
            return
        if arg[:5].upper() != b"FROM:":
            self._refuse(R.SYNTAX_MAIL, "MAIL", "mail", SYNTAX)
            return
        rest = arg[5:]
        utf8 = b" SMTPUTF8" in rest.upper()
        try:
            sender, paramBytes = parsePath(rest, allowNull=True, utf8=utf8)
            params = parseParameters(paramBytes)
        except NonASCIIAddress:
            self._refuse(R.NON_ASCII, "MAIL", "mail", NON_ASCII)
            return
        except AddressSyntaxError:
            self._refuse(R.BAD_ADDRESS, "MAIL", "mail", SYNTAX)
            return
        problem = checkMailParameters(params, self.limits.messageSize)
        if problem is not None:
            self.log.info(
                "MAIL FROM {mailFrom} refused: {code} {text}",
                mailFrom=str(sender) if sender else "<>",
                code=problem.code,
                text=problem.text,
                reason="size" if problem is R.TOO_BIG else "syntax",
                sessionId=self.session.sessionId,
                endpoint=self.policy.name,
            )
            self._error(problem)
            return
        envelope = Envelope(mailFrom=sender, mailParams=params)
        delivery = self.target.startDelivery(self.session, envelope)
        self._envelope, self._delivery = envelope, delivery

        def accepted(_: object) -> None:
            self._send(R.SENDER_OK)

        def refused(failure: Failure) -> None:
            if self._delivery is delivery:
                self._abortTransaction()
            reply = self._replyForFailure(failure, f"<{sender or ''}>")
            self.log.info(
                "MAIL FROM {mailFrom} refused: {code} {text}",
                mailFrom=str(sender) if sender else "<>",
                code=reply.code,
                text=reply.text,
                reason=_reason(failure),
                sessionId=self.session.sessionId,
                endpoint=self.policy.name,
            )
            self._error(reply)

        d = delivery.checkSender()
        d.addCallbacks(accepted, refused)
        self._wait(d)

    def _replyForFailure(self, failure: Failure, subject: str = "") -> R.Reply:
        """
        The reply for a failed check: the mapped L{MailError}, or a
        temporary local error (logged) for anything unexpected.
        """
        if failure.check(MailError):
            return R.replyForError(failure.value, subject)
        self.log.failure(
            "Unexpected error in a mail transaction",
            failure,
            sessionId=self.session.sessionId,
            endpoint=self.policy.name,
        )
        return R.LOCAL_ERROR

    def do_RCPT(self, arg: bytes) -> None:
        if self._envelope is None or self._delivery is None:
            self._refuse(R.NEED_MAIL, "RCPT", "rcpt", BAD_SEQUENCE)
            return
        if arg[:3].upper() != b"TO:":
            self._refuse(R.SYNTAX_RCPT, "RCPT", "rcpt", SYNTAX)
            return
        utf8 = "SMTPUTF8" in self._envelope.mailParams
        try:
            recipient, paramBytes = parsePath(arg[3:], allowNull=False, utf8=utf8)
            params = parseParameters(paramBytes)
        except NonASCIIAddress:
            self._refuse(R.NON_ASCII, "RCPT", "rcpt", NON_ASCII)
            return
        except AddressSyntaxError:
            self._refuse(R.BAD_RECIPIENT_ADDRESS, "RCPT", "rcpt", SYNTAX)
            return
        assert recipient is not None
        problem = checkRcptParameters(params)
        if problem is not None:
            self._refuse(problem, "RCPT", "rcpt", SYNTAX)
            return
        if len(self._envelope.recipients) >= self.limits.recipients:
            # A 4xx the client is expected to act on (send the rest in
            # another transaction), so not an error; logged once per
            # transaction, as a client may send thousands more.
            if self._overLimitEnvelope is not self._envelope:
                self._overLimitEnvelope = self._envelope
                self._logRefusal(R.TOO_MANY_RECIPIENTS, "RCPT", "rcpt", TOO_MANY_RECIPIENTS)
            self._send(R.TOO_MANY_RECIPIENTS)
            return
        envelope = self._envelope
        d = self._delivery.addRecipient(recipient)

        def accepted(_: object) -> None:
            envelope.recipients.append(recipient)
            envelope.rcptParams.append(params)
            self._send(R.RECIPIENT_OK)

        def refused(failure: Failure) -> None:
            reply = self._replyForFailure(failure, f"<{recipient}>")
            self.log.info(
                "RCPT {rcpt} refused: {code} {text}",
                rcpt=str(recipient),
                code=reply.code,
                text=reply.text,
                reason=_reason(failure),
                sessionId=self.session.sessionId,
                endpoint=self.policy.name,
            )
            self._error(reply)

        d.addCallbacks(accepted, refused)
        self._wait(d)

    def do_DATA(self, arg: bytes) -> None:
        if self._envelope is None:
            self._refuse(R.NEED_MAIL, "DATA", "data", BAD_SEQUENCE)
            return
        if not self._envelope.recipients:
            self._refuse(R.NEED_RCPT, "DATA", "data", BAD_SEQUENCE)
            return
        if arg:
            self._refuse(R.NO_PARAMS, "DATA", "data", SYNTAX)
            return
        if self._data is not None:
            self._refuse(R.DATA_AFTER_BDAT, "DATA", "data", BAD_SEQUENCE)
            return
        self._data = DataReceiver(self._writeData)
        self._dataFailure = None
        self._mode = DATA
        self.setTimeout(None)
        self._dataDeadline.startData()
        self._send(R.START_DATA)

    def _writeData(self, data: bytes) -> None:
        assert self._data is not None and self._delivery is not None
        if self._dataFailure is not None:
            return
        if self._data.size > self.limits.messageSize:
            self._dataFailure = MailError(ErrorKind.TOO_BIG, "Message size exceeds fixed limit")
            self._delivery.abort()
            return
        try:
            self._delivery.write(data)
        except MailError as e:
            self._dataFailure = e
            self._delivery.abort()

    def do_BDAT(self, arg: bytes) -> None:
        """
        RFC 3030 CHUNKING.  The chunk's octets follow the command at once,
        so they are always consumed, also when the command is refused:
        otherwise message text would be read as commands.
        """
        parts = arg.split()
        if not parts or len(parts) > 2 or not parts[0].isdigit() or len(parts[0]) > 12 or (
            len(parts) == 2 and parts[1].upper() != b"LAST"
        ):
            # Without a size the stream cannot be resynchronised.
            self._logRefusal(R.SYNTAX_BDAT, "BDAT", "data", SYNTAX)
            self._send(R.SYNTAX_BDAT)
            self._loseConnection()
            self._mode = CLOSED
            return
        self._chunkRemaining = int(parts[0])
        self._chunkLast = len(parts) == 2
        self._chunkRefusal = None
        if self._envelope is None:
            self._chunkRefusal = R.NEED_MAIL
        elif not self._envelope.recipients:
            self._chunkRefusal = R.NEED_RCPT
        elif isinstance(self._data, DataReceiver):
            self._chunkRefusal = R.NEED_MAIL
        elif self._data is None:
            self._data = ChunkReceiver(self._writeData)
            self._dataFailure = None
        self._mode = BDAT
        self.setTimeout(None)
        self._dataDeadline.startData()
        if self._chunkRemaining == 0:
            self._chunkDone()

    def _processChunk(self) -> None:
        take = min(self._chunkRemaining, len(self._buffer))
        chunk, self._buffer = self._buffer[:take], self._buffer[take:]
        self._chunkRemaining -= take
        if self._chunkRefusal is None:
            assert isinstance(self._data, ChunkReceiver)
            self._data.feed(chunk)
        if self._chunkRemaining == 0:
            self._chunkDone()

    def _chunkDone(self) -> None:
        self._mode = COMMAND
        self._dataDeadline.stop()
        self.setTimeout(self.limits.commandTimeout)
        if self._chunkRefusal is not None:
            # MAIL or RCPT missing, or DATA already begun.
            self._refuse(self._chunkRefusal, "BDAT", "data", BAD_SEQUENCE)
            return
        assert isinstance(self._data, ChunkReceiver)
        if self._chunkLast:
            self._data.finish()
            self._finishData()
        elif self._dataFailure is not None:
            # Keep consuming chunks, but say at once that it will fail.
            assert self._envelope is not None
            reply = R.replyForError(self._dataFailure)
            self._logRefused(self._envelope, reply, self._dataFailure.reason)
            self._abortTransaction()
            self._error(reply)
        else:
            self._send(R.CHUNK_OK.format(self._data.size))

    def _processData(self) -> None:
        assert isinstance(self._data, DataReceiver)
        data, self._buffer = self._buffer, b""
        rest = self._data.feed(data)
        if not self._data.done:
            return
        self._buffer = rest
        self._mode = COMMAND
        self._dataDeadline.stop()
        self.setTimeout(self.limits.commandTimeout)
        self._finishData()

    def _finishData(self) -> None:
        assert self._data is not None and self._envelope is not None and self._delivery is not None
        receiver, envelope, delivery = self._data, self._envelope, self._delivery
        self._data = None
        self._envelope = None
        self._delivery = None
        if receiver.bareNewline:
            delivery.abort()
            self._logRefused(envelope, R.BARE_NEWLINE, "bare-newline")
            self._error(R.BARE_NEWLINE)
            return
        if self._dataFailure is not None:
            reply = R.replyForError(self._dataFailure)
            self._logRefused(envelope, reply, self._dataFailure.reason)
            self._error(reply)
            return
        d = delivery.commit()

        def committed(_: object) -> None:
            # One summary line per message, the line operators grep for.
            self.log.info(
                "Accepted {msgId} from {mailFrom} to {rcpts}, {size} octets, "
                "client {peer}, {tlsVersion}, auth {account}, filters {verdictText}",
                msgId=envelope.messageId,
                mailFrom=str(envelope.mailFrom) if envelope.mailFrom else "<>",
                rcpts=",".join(str(r) for r in envelope.recipients),
                rcptCount=len(envelope.recipients),
                size=receiver.size,
                peer=self.session.peerHost,
                tlsVersion=self.session.tls.version if self.session.tls else "no TLS",
                account=self.session.authenticatedAs or "-",
                verdicts=envelope.filterVerdicts,
                verdictText=" ".join(f"{n}={v}" for n, v in envelope.filterVerdicts.items()) or "-",
                sessionId=self.session.sessionId,
                endpoint=self.policy.name,
            )
            self._send(R.QUEUED.format(envelope.messageId))

        def failed(failure: Failure) -> None:
            reply = self._replyForFailure(failure)
            self._logRefused(envelope, reply, _reason(failure))
            self._error(reply)

        d.addCallbacks(committed, failed)
        self._wait(d)

    def _logRefused(self, envelope: Envelope, reply: R.Reply, reason: str) -> None:
        self.log.info(
            "Refused {msgId}: {code} {text}",
            msgId=envelope.messageId,
            code=reply.code,
            text=reply.text,
            reason=reason,
            sessionId=self.session.sessionId,
            endpoint=self.policy.name,
        )

    def _abortTransaction(self) -> None:
        if self._delivery is not None:
            self._delivery.abort()
        self._envelope = None
        self._delivery = None
        self._data = None
        if self._mode == AUTH:
            self._mode = COMMAND
        self._sasl = None


class SMTPFactory(protocol.ServerFactory):
    """
    Builds L{SMTPServer}s for one endpoint; takes the same arguments as
    L{SMTPServer} and hands them to every connection.
    """

    # The service logs each endpoint once at start; Twisted's per-factory
    # start/stop lines would only repeat it.
    noisy = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._newServer = functools.partial(SMTPServer, *args, **kwargs)

    def buildProtocol(self, addr: Any) -> SMTPServer:
        p = self._newServer()
        p.factory = self
        return p
