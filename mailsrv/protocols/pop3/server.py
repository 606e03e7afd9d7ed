# -*- test-case-name: tests.protocols.test_pop3 -*-
"""
The POP3 server: RFC 1939 with CAPA (RFC 2449), STLS (RFC 2595), SASL AUTH
(RFC 5034) and response codes (RFC 3206), over an L{IMailFolder}.

Why not C{twisted.mail.pop3.POP3}: it has no STLS, its AUTH cannot carry
PLAIN, USER/PASS are never gated on TLS, its CAPA lists joke capabilities
and every client error is logged with a traceback.  The fixes would replace
most of it, so this is a small protocol of its own:

 - Its own line splitter, so that at STLS the plaintext the client
   pipelined after the command is dropped (RFC 2595 section 4; the
   CVE-2011-0411 class of injection) instead of being run inside TLS.
 - Commands are handled strictly in order: while a command waits (login,
   failure delay, a message being streamed, the expunge at QUIT) later lines
   stay buffered, which is what makes PIPELINING safe to advertise.
 - Authentication is asked of the L{EndpointPolicy}; credentials go to the
   portal, which returns an L{IPOP3Maildrop}.
 - DELE only marks; the marked messages are expunged in the UPDATE state
   after QUIT, and QUIT is answered only once that is durable.  A connection
   that drops without QUIT changes nothing.
 - Timers: before login the whole login must be done within
   C{loginTimeout} however busy the client keeps the connection (Dovecot's
   login timeout); after it, C{idleTimeout} of silence ends the session;
   and in both states a command line must be complete within
   C{commandTimeout} of its first octet (L{InputDeadline}), so a client
   sending a byte every few seconds is closed.  An account may have at most
   C{maxConnectionsPerUserIP} sessions from one address.
 - Messages are streamed by L{MessageProducer}, byte-stuffed across chunk
   boundaries.  Between messages the server itself is the transport's push
   producer: while the write buffer is full (a client that pipelines
   commands and reads no replies) no further command is answered, and
   reading stops once C{maxPipelined} octets wait, as behind a command
   that is still running.

Wire data is C{bytes} throughout; the user name is passed to the portal as
the bytes the client sent.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable, Optional, Sequence, cast

from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLServerConnectionCreator,
    IPushProducer,
    IReactorTime,
    ITLSTransport,
)
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailsrv.auth.sasl import SASLError, SASLExchange, decodeResponse, encodeChallenge
from mailsrv.envelope import Session
from mailsrv.errors import MailError
from mailsrv.interfaces import MessageInfo
from mailsrv.policy.deadline import InputDeadline
from mailsrv.policy.endpoint import EndpointPolicy
from mailsrv.policy.limits import ConnectionLimiter, SessionSlots, UserAddressLimiter
from mailsrv.protocols.pop3.encoder import CHUNK_SIZE, MessageProducer
from mailsrv.protocols.pop3.maildrop import IPOP3Maildrop, maildropFactory
from mailsrv.protocols.session import CommandSession

__all__ = ["IPOP3Maildrop", "POP3Factory", "POP3Limits", "POP3Server", "maildropFactory"]

SEEN = "\\Seen"


@dataclasses.dataclass(frozen=True)
class POP3Limits:
    """
    Tunables of a POP3 endpoint.

    @ivar loginTimeout: seconds from connect within which the client must
        have logged in, whatever it sends meanwhile (Dovecot: 3 minutes).
    @ivar idleTimeout: seconds of silence allowed after login (RFC 1939
        section 3 asks for at least 10 minutes).
    @ivar commandTimeout: seconds a command line may take from its first
        octet to its end.
    @ivar failureDelay: seconds before a failed login is answered, the same
        for an unknown user and a wrong password, to slow down guessing.
    @ivar maxAuthFailures: failed logins after which the connection is closed.
    @ivar maxBadCommands: unknown or malformed commands after which the
        connection is closed.
    @ivar maxLineLength: longest command line in octets without CRLF.  RFC
        2449 allows 255; like Dovecot we are lenient, since some clients send
        long SASL initial responses.
    @ivar chunkSize: octets read from a message file per write.
    @ivar maxPipelined: buffered input above which reading pauses while a
        command is still being handled.
    """

    loginTimeout: float = 180.0
    idleTimeout: float = 600.0
    commandTimeout: float = 300.0
    failureDelay: float = 1.0
    maxAuthFailures: int = 3
    maxBadCommands: int = 10
    maxLineLength: int = 4096
    chunkSize: int = CHUNK_SIZE
    maxPipelined: int = 64 * 1024


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"


_COMMANDS: dict[State, frozenset[str]] = {
    State.AUTHORIZATION: frozenset({"CAPA", "USER", "PASS", "AUTH", "STLS", "QUIT"}),
    State.TRANSACTION: frozenset(
        {"CAPA", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "QUIT"}
    ),
    State.UPDATE: frozenset(),
}

# Reply texts follow Dovecot's where it has one, so that clients and users
# see what they already know.
ERR_UNKNOWN = b"-ERR Unknown command."
ERR_TOO_MANY_BAD = b"-ERR Too many bad commands."
ERR_LINE_TOO_LONG = b"-ERR Line too long"
ERR_PLAINTEXT = (
    b"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
)
ERR_NO_AUTH = b"-ERR [AUTH] Authentication is not available on this port."
ERR_AUTH_FAILED = b"-ERR [AUTH] Authentication failed."
ERR_AUTH_ABORTED = b"-ERR Authentication aborted by client."
ERR_IN_USE = b"-ERR [IN-USE] Mailbox is locked by another POP3 session."
ERR_TEMP = b"-ERR [SYS/TEMP] Temporary server failure, try again later."
ERR_IDLE = b"-ERR Disconnected for inactivity."
ERR_LOGIN_TIMEOUT = b"-ERR Disconnected: login not completed in time."
ERR_COMMAND_TIMEOUT = b"-ERR Disconnected: command not completed in time."
ERR_TOO_MANY_CONNECTIONS = b"-ERR [SYS/TEMP] Too many connections, try again later."
# Dovecot's text and response code (RFC 2449 IN-USE) for its
# mail_max_userip_connections.
ERR_USER_IP = b"-ERR [IN-USE] Maximum number of connections from user+IP exceeded (max_connections_per_user_ip=%d)"


@implementer(IHandshakeListener, IPushProducer)
class POP3Server(CommandSession):
    """
    One POP3 connection.

    @ivar session: the connection's L{Session} (peer, TLS, account).
    @ivar state: the RFC 1939 state.
    """

    protocolName = "POP3"

    log = Logger()

    def __init__(
        self,
        policy: EndpointPolicy,
        portal: Portal,
        tls: Optional[IOpenSSLServerConnectionCreator],
        hostname: str,
        clock: IReactorTime,
        limits: POP3Limits = POP3Limits(),
        connections: Optional[ConnectionLimiter] = None,
        userAddresses: Optional[UserAddressLimiter] = None,
    ) -> None:
        self._policy = policy
        self._portal = portal
        self._tls = tls
        self._hostname = hostname
        self._clock = clock
        self._limits = limits

        self.state = State.AUTHORIZATION
        self.session: Optional[Session] = None
        self._tlsActive = False
        self._buffer = b""
        self._busy = False
        self._processing = False
        self._readPaused = False
        self._outputFull = False
        self._closing = False
        self._connected = False
        self._registered = False  # this server is the transport's producer
        self._badCommands = 0
        self._authFailures = 0
        self._idleCall: Optional[IDelayedCall] = None
        self._idleTimeout = limits.loginTimeout
        self._waiting: Optional[Deferred[Any]] = None
        self._slots = SessionSlots(connections, userAddresses)
        self._inputDeadline = InputDeadline(
            clock,
            limits.commandTimeout,
            limits.commandTimeout,
            1.0,
            self._commandTimedOut,
            paused=lambda: self._readPaused,
        )

        # AUTHORIZATION
        self._user: Optional[bytes] = None
        self._sasl: Optional[SASLExchange] = None

        # TRANSACTION
        self._maildrop: Optional[IPOP3Maildrop] = None
        self._logout: Callable[[], None] = lambda: None
        self._messages: Sequence[MessageInfo] = ()
        self._deleted: set[int] = set()
        self._retrieved: set[int] = set()
        self._uidls: dict[int, bytes] = {}
        self._producer: Optional[MessageProducer] = None

    # ------------------------------------------------------------ connection

    def _greet(self) -> None:
        self._reply(b"+OK " + self._hostname.encode("ascii", "replace") + b" POP3 ready")

    def _refuseConnection(self) -> None:
        self._reply(ERR_TOO_MANY_CONNECTIONS)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopTimers()
        if self._producer is not None:
            self._producer.stopProducing()
        if self.state is not State.UPDATE:
            # No QUIT: RFC 1939 section 6 says nothing is deleted.
            self._endTransaction()
        self._info("POP3 connection from {peer} on {endpoint} closed")

    def _endTransaction(self) -> None:
        if self._maildrop is not None:
            self._maildrop.unlock()
            self._maildrop = None
            logout, self._logout = self._logout, lambda: None
            logout()

    # ---------------------------------------------------------------- timers

    def _loggedIn(self) -> bool:
        return self.state is not State.AUTHORIZATION

    def _timedOut(self) -> None:
        self._info("POP3 idle timeout in {state}", state=self.state.value)
        if self._producer is not None:
            # The client stopped reading in the middle of a message; a
            # graceful close would wait for it forever.
            self._close(abort=True)
            return
        self._reply(ERR_LOGIN_TIMEOUT if self.state is State.AUTHORIZATION else ERR_IDLE)
        self._close()

    def _commandTimedOut(self, kind: str) -> None:
        if self._closing or not self._buffer or self._buffer.endswith(b"\n"):
            return  # the line was completed or dropped meanwhile
        self._info("POP3 command not completed in time in {state}, closing", state=self.state.value)
        self._buffer = b""
        self._reply(ERR_COMMAND_TIMEOUT)
        self._close()

    # ---------------------------------------------------------------- input

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._buffer += data
        # A command line must be whole within commandTimeout of its first
        # octet (lines complete but waiting behind a running command do not
        # count: the delay is ours).
        self._inputDeadline.linePending(not self._buffer.endswith(b"\n"), b"\n" in data)
        self._processInput()

    def _processInput(self) -> None:
        """
        Run every complete line in the buffer, stopping while a command is
        still being handled.  Re-entrant calls (a command finishing
        synchronously) are folded into the running loop.
        """
        if self._processing:
            return
        self._processing = True
        try:
            while not self._busy and not self._outputFull and not self._closing:
                newline = self._buffer.find(b"\n")
                if newline < 0:
                    if len(self._buffer) > self._limits.maxLineLength + 1:
                        self._lineTooLong()
                    break
                line = self._buffer[:newline]
                self._buffer = self._buffer[newline + 1 :]
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) > self._limits.maxLineLength:
                    self._lineTooLong()
                    break
                self._resetIdle()
                self._lineReceived(line)
        finally:
            self._processing = False
        self._flowControl()

    def _bufferedInput(self) -> int:
        return len(self._buffer)

    def _setBusy(self) -> None:
        self._busy = True

    def _done(self) -> None:
        """
        The current command is answered: carry on with pipelined lines.
        """
        self._busy = False
        if self._connected:
            self._processInput()

    def _lineTooLong(self) -> None:
        self._info("POP3 line too long, closing")
        self._buffer = b""
        self._reply(ERR_LINE_TOO_LONG)
        self._close()

    def _lineReceived(self, line: bytes) -> None:
        if self._sasl is not None:
            self._saslResponse(line)
            return
        verb, _, argument = line.partition(b" ")
        try:
            name = verb.decode("ascii").upper()
        except UnicodeDecodeError:
            name = ""
        if name not in _COMMANDS[self.state]:
            self._badCommand(ERR_UNKNOWN)
            return
        handler: Callable[[bytes], None] = getattr(self, "do_" + name)
        handler(argument)

    def _badCommand(self, reply: bytes) -> None:
        self._badCommands += 1
        if self._badCommands >= self._limits.maxBadCommands:
            self._info("POP3 too many bad commands, closing")
            self._reply(ERR_TOO_MANY_BAD)
            self._close()
            return
        self._reply(reply)

    # --------------------------------------------------------------- output

    def _reply(self, line: bytes) -> None:
        self.transport.write(line + b"\r\n")  # type: ignore[union-attr]

    def _replyMulti(self, first: bytes, lines: Sequence[bytes]) -> None:
        """
        A multi-line response.  Every line here is generated by us and never
        starts with a dot, so no stuffing is needed.
        """
        self.transport.write(  # type: ignore[union-attr]
            b"".join([first, b"\r\n"] + [line + b"\r\n" for line in lines] + [b".\r\n"])
        )

    def _info(self, fmt: str, **fields: Any) -> None:
        self.log.info(fmt, **self._logFields(fields))

    def _debug(self, fmt: str, **fields: Any) -> None:
        self.log.debug(fmt, **self._logFields(fields))

    def _logFields(self, fields: dict[str, Any]) -> dict[str, Any]:
        fields.setdefault("endpoint", self._policy.name)
        fields.setdefault("peer", self.session.peerHost if self.session else None)
        fields.setdefault("sessionId", self.session.sessionId if self.session else None)
        return fields

    # ---------------------------------------------------------- both states

    def capabilities(self) -> list[bytes]:
        """
        What CAPA lists now.  Login mechanisms and STLS appear only when they
        would be accepted, as Dovecot does before and after STLS.
        """
        caps = [b"CAPA", b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self._offersSTLS():
                caps.append(b"STLS")
            if self._policy.mayAuthenticate(self._tlsActive):
                caps.append(b"USER")
                caps.append(b"SASL PLAIN LOGIN")
        caps.append(b"IMPLEMENTATION mailsrv")
        return caps

    def do_CAPA(self, argument: bytes) -> None:
        self._replyMulti(b"+OK", self.capabilities())

    def do_QUIT(self, argument: bytes) -> None:
        if self.state is State.AUTHORIZATION:
            self._reply(b"+OK Logging out.")
            self._close()
            return
        self.state = State.UPDATE
        self._cancelIdle()
        self._setBusy()
        self._runCoroutine(self._update())

    def _runCoroutine(self, coroutine: Any) -> None:
        d = Deferred.fromCoroutine(coroutine)
        d.addErrback(
            lambda f: self.log.failure(
                "POP3 internal error",
                f,
                endpoint=self._policy.name,
                sessionId=self.session.sessionId if self.session else None,
            )
        )

    # ------------------------------------------------------- AUTHORIZATION

    def _offersSTLS(self) -> bool:
        return (
            self._tls is not None
            and self._policy.offersStartTLS(self._tlsActive)
            and ITLSTransport.providedBy(self.transport)
        )

    def do_STLS(self, argument: bytes) -> None:
        if self._tlsActive:
            self._badCommand(b"-ERR TLS is already active.")
            return
        if not self._offersSTLS():
            self._badCommand(b"-ERR TLS support isn't enabled.")
            return
        self._reply(b"+OK Begin TLS negotiation now.")
        # Whatever the client sent after STLS in plaintext must not be run
        # as if it had come over TLS (RFC 2595 section 4).
        dropped = len(self._buffer)
        self._buffer = b""
        self._user = None
        self._tlsActive = True
        self.transport.startTLS(self._tls)  # type: ignore[union-attr]
        self._info("POP3 STLS, {dropped} pipelined octets dropped", dropped=dropped)

    def _mayAuthenticate(self) -> bool:
        """
        Answer and return C{False} when the endpoint does not take
        credentials now (before STLS on a TLS endpoint, or never).
        """
        if self._policy.mayAuthenticate(self._tlsActive):
            return True
        if self._policy.auth and not self._tlsActive:
            self._badCommand(ERR_PLAINTEXT)
        else:
            self._badCommand(ERR_NO_AUTH)
        return False

    def do_USER(self, argument: bytes) -> None:
        if not self._mayAuthenticate():
            return
        if not argument:
            self._badCommand(b"-ERR No username given.")
            return
        self._user = argument
        self._reply(b"+OK")

    def do_PASS(self, argument: bytes) -> None:
        if not self._mayAuthenticate():
            return
        if self._user is None:
            self._badCommand(b"-ERR No username given.")
            return
        user, self._user = self._user, None
        self._login(UsernamePassword(user, argument), "USER")

    def do_AUTH(self, argument: bytes) -> None:
        if not self._mayAuthenticate():
            return
        self._user = None
        if not argument:
            # The pre-RFC 5034 form some clients probe with.
            self._replyMulti(b"+OK", [b"PLAIN", b"LOGIN"])
            return
        mechanism, _, initial = argument.partition(b" ")
        try:
            exchange = SASLExchange(mechanism.decode("ascii"))
        except (SASLError, UnicodeDecodeError):
            self._badCommand(b"-ERR Unsupported authentication mechanism.")
            return
        try:
            result = exchange.start(decodeResponse(initial) if initial else None)
        except SASLError as e:
            self._saslFailed(e, exchange.mechanism)
            return
        self._saslStep(exchange, result)

    def _saslStep(self, exchange: SASLExchange, result: Any) -> None:
        if isinstance(result, bytes):
            self._sasl = exchange
            self._reply(b"+ " + encodeChallenge(result))
        else:
            self._sasl = None
            self._login(result, exchange.mechanism)

    def _saslResponse(self, line: bytes) -> None:
        exchange = self._sasl
        assert exchange is not None
        try:
            result = exchange.respond(decodeResponse(line))
        except SASLError as e:
            self._sasl = None
            self._saslFailed(e, exchange.mechanism)
            return
        self._saslStep(exchange, result)

    def _saslFailed(self, error: SASLError, mechanism: str) -> None:
        if error.cancelled:
            self._reply(ERR_AUTH_ABORTED)
            return
        # Malformed SASL data counts as a failed login: it is one more guess.
        self._info("POP3 malformed {mechanism} response: {problem}", mechanism=mechanism, problem=str(error))
        self._setBusy()
        self._runCoroutine(self._failLogin(None, mechanism))

    def _login(self, credentials: IUsernamePassword, mechanism: str) -> None:
        self._setBusy()
        try:
            credentials.username.decode("utf-8")
        except UnicodeDecodeError:
            # No account has such a name; do not hand checkers undecodable
            # input.
            self._runCoroutine(self._failLogin(None, mechanism))
            return
        self._runCoroutine(self._authenticate(credentials, mechanism))

    async def _authenticate(self, credentials: IUsernamePassword, mechanism: str) -> None:
        login = credentials.username.decode("utf-8", "replace")
        try:
            _, avatar, logout = await self._portal.login(credentials, self.session, IPOP3Maildrop)
        except (UnauthorizedLogin, UnhandledCredentials):
            await self._failLogin(login, mechanism)
            return
        except MailError as e:
            self._info(
                "POP3 login {outcome} for {account} from {peer} on {endpoint}: {problem}",
                outcome="error",
                account=login,
                problem=str(e),
            )
            self._replyAndContinue(ERR_TEMP)
            return
        except Exception:
            # A broken checker or realm is our bug, not the client's: log it
            # in full, answer with a temporary error and stay usable.
            self.log.failure(
                "POP3 login {outcome} for {account} from {peer} on {endpoint}",
                outcome="error",
                account=login,
                endpoint=self._policy.name,
                sessionId=self.session.sessionId if self.session else None,
            )
            self._replyAndContinue(ERR_TEMP)
            return
        if not self._connected:
            logout()
            return
        maildrop = cast(IPOP3Maildrop, avatar)
        if not self._countUserAddress(maildrop.account):
            logout()
            self._info(
                "POP3 login {outcome} for {account} from {peer} on {endpoint}: user+IP connection limit",
                outcome="limit",
                account=maildrop.account,
            )
            self._reply(ERR_USER_IP % (self._slots.maxPerUserAddress,))
            self._close()
            return
        if not maildrop.lock():
            self._slots.releaseLogin()
            logout()
            self._info("POP3 login {outcome} for {account} from {peer} on {endpoint}", outcome="locked", account=maildrop.account)
            self._replyAndContinue(ERR_IN_USE)
            return
        try:
            maildrop.folder.refresh()
            messages = list(maildrop.folder.messages())
        except MailError as e:
            maildrop.unlock()
            self._slots.releaseLogin()
            logout()
            self._info(
                "POP3 login {outcome} for {account} from {peer} on {endpoint}: {problem}",
                outcome="error",
                account=maildrop.account,
                problem=str(e),
            )
            self._replyAndContinue(ERR_TEMP)
            return
        self._maildrop = maildrop
        self._logout = logout
        self._messages = messages
        self.state = State.TRANSACTION
        assert self.session is not None
        self.session.authenticatedAs = maildrop.account
        self._info(
            "POP3 login {outcome} for {account} via {mechanism} from {peer} on {endpoint}, {count} messages",
            outcome="success",
            account=maildrop.account,
            mechanism=mechanism,
            count=len(messages),
        )
        self._setIdle(self._limits.idleTimeout)
        self._replyAndContinue(b"+OK Logged in.")

    def _countUserAddress(self, account: str) -> bool:
        """
        Count a session of C{account} from the client's address (Dovecot's
        C{mail_max_userip_connections}, which is checked before the
        maildrop is opened); L{False} when it has too many.
        """
        assert self.session is not None
        return self._slots.admitLogin(account, self.session.peerHost)

    async def _failLogin(self, login: Optional[str], mechanism: str) -> None:
        """
        Answer a failed login after the failure delay; the same reply and
        the same delay whether the user exists or not.
        """
        self._authFailures += 1
        self._info(
            "POP3 login {outcome} for {account} via {mechanism} from {peer} on {endpoint}",
            outcome="failure",
            account=login,
            mechanism=mechanism,
        )
        if not await self._pauseAfterFailedLogin():
            return
        self._reply(ERR_AUTH_FAILED)
        if self._authFailures >= self._limits.maxAuthFailures:
            self._info("POP3 too many failed logins, closing")
            self._close()
            return
        self._done()

    def _replyAndContinue(self, line: bytes) -> None:
        if not self._connected:
            return
        self._reply(line)
        self._done()

    # --------------------------------------------------------- TRANSACTION

    def _messageIndex(self, argument: bytes) -> Optional[int]:
        """
        The 0-based index for a message-number argument, or L{None} after
        answering why it is not usable.
        """
        if not argument.isdigit() or len(argument) > 10:
            self._badCommand(b"-ERR Invalid message number.")
            return None
        number = int(argument)
        if not 1 <= number <= len(self._messages):
            self._reply(b"-ERR There's no message %d." % (number,))
            return None
        if number - 1 in self._deleted:
            self._reply(b"-ERR Message is deleted.")
            return None
        return number - 1

    def _arguments(self, argument: bytes, minimum: int, maximum: int) -> Optional[list[bytes]]:
        arguments = argument.split()
        if not minimum <= len(arguments) <= maximum:
            self._badCommand(b"-ERR Invalid arguments.")
            return None
        return arguments

    def _live(self) -> list[int]:
        return [i for i in range(len(self._messages)) if i not in self._deleted]

    def do_STAT(self, argument: bytes) -> None:
        live = self._live()
        size = sum(self._messages[i].size for i in live)
        self._reply(b"+OK %d %d" % (len(live), size))

    def do_LIST(self, argument: bytes) -> None:
        arguments = self._arguments(argument, 0, 1)
        if arguments is None:
            return
        if arguments:
            index = self._messageIndex(arguments[0])
            if index is not None:
                self._reply(b"+OK %d %d" % (index + 1, self._messages[index].size))
            return
        live = self._live()
        self._replyMulti(
            b"+OK %d messages:" % (len(live),),
            [b"%d %d" % (i + 1, self._messages[i].size) for i in live],
        )

    def _uidl(self, index: int) -> bytes:
        uid = self._messages[index].uid
        if uid not in self._uidls:
            assert self._maildrop is not None
            self._uidls[uid] = self._maildrop.folder.uidl(uid).encode("ascii")
        return self._uidls[uid]

    def do_UIDL(self, argument: bytes) -> None:
        arguments = self._arguments(argument, 0, 1)
        if arguments is None:
            return
        if arguments:
            index = self._messageIndex(arguments[0])
            if index is not None:
                self._reply(b"+OK %d %s" % (index + 1, self._uidl(index)))
            return
        self._replyMulti(b"+OK", [b"%d %s" % (i + 1, self._uidl(i)) for i in self._live()])

    def do_DELE(self, argument: bytes) -> None:
        arguments = self._arguments(argument, 1, 1)
        if arguments is None:
            return
        index = self._messageIndex(arguments[0])
        if index is not None:
            self._deleted.add(index)
            self._reply(b"+OK Marked to be deleted.")

    def do_NOOP(self, argument: bytes) -> None:
        self._reply(b"+OK")

    def do_RSET(self, argument: bytes) -> None:
        """
        Undo this session's changes: deletion marks, and (as Dovecot does)
        the pending C{\\Seen} marks of retrieved messages.
        """
        self._deleted.clear()
        self._retrieved.clear()
        self._reply(b"+OK")

    def do_RETR(self, argument: bytes) -> None:
        arguments = self._arguments(argument, 1, 1)
        if arguments is None:
            return
        index = self._messageIndex(arguments[0])
        if index is not None:
            self._send(index, None, b"+OK %d octets" % (self._messages[index].size,))

    def do_TOP(self, argument: bytes) -> None:
        arguments = self._arguments(argument, 2, 2)
        if arguments is None:
            return
        if not arguments[1].isdigit() or len(arguments[1]) > 10:
            self._badCommand(b"-ERR Invalid number of lines.")
            return
        index = self._messageIndex(arguments[0])
        if index is not None:
            self._send(index, int(arguments[1]), b"+OK")

    def _send(self, index: int, topLines: Optional[int], first: bytes) -> None:
        assert self._maildrop is not None
        info = self._messages[index]
        try:
            messageFile = self._maildrop.folder.openMessage(info.uid)
        except MailError as e:
            self._info("POP3 message {uid} unavailable: {problem}", uid=info.uid, problem=str(e))
            self._reply(b"-ERR [SYS/TEMP] Message is no longer available.")
            return

        def finished(complete: bool) -> None:
            self._producer = None
            if complete:
                self._outputFull = False
                self.transport.registerProducer(self, True)  # type: ignore[union-attr]
                self._registered = True
                if topLines is None:
                    self._retrieved.add(index)
                self._done()

        producer = MessageProducer(
            messageFile,
            self.transport,  # type: ignore[arg-type]
            finished,
            topLines=topLines,
            chunkSize=self._limits.chunkSize,
            onProgress=self._resetIdle,
            prefix=first + b"\r\n",
        )
        if producer.writeAtOnce():
            if topLines is None:
                self._retrieved.add(index)
            return
        # A large message: streamed chunk by chunk, the transport to itself.
        self._setBusy()
        self.transport.unregisterProducer()  # type: ignore[union-attr]
        self._registered = False
        self._producer = producer
        producer.start()

    # --------------------------------------------------------------- UPDATE

    async def _update(self) -> None:
        """
        RFC 1939 UPDATE: mark retrieved messages C{\\Seen}, expunge the ones
        marked deleted, and only then say C{+OK}.  The lock is held until the
        expunge is over, so a new session cannot see half of it.
        """
        maildrop = self._maildrop
        assert maildrop is not None
        folder = maildrop.folder
        deleted = sorted(self._messages[i].uid for i in self._deleted)
        seen = [self._messages[i].uid for i in self._retrieved - self._deleted]
        ok = True
        try:
            if seen:
                self._markSeen(maildrop, seen)
            if deleted:
                await folder.expunge(deleted)
        except MailError as e:
            ok = False
            self._info(
                "POP3 update failed for {account}: {problem}", account=maildrop.account, problem=str(e)
            )
        except Exception:
            ok = False
            self.log.failure(
                "POP3 update failed for {account}",
                account=maildrop.account,
                endpoint=self._policy.name,
                sessionId=self.session.sessionId if self.session else None,
            )
        finally:
            self._endTransaction()
        self._info(
            "POP3 logout {account}: {deleted} deleted, {retrieved} retrieved",
            account=maildrop.account,
            deleted=len(deleted) if ok else 0,
            retrieved=len(seen),
        )
        if not self._connected:
            return
        if ok:
            self._reply(b"+OK Logging out.")
        else:
            self._reply(b"-ERR [SYS/TEMP] Some deleted messages were not removed.")
        self._close()

    def _markSeen(self, maildrop: IPOP3Maildrop, uids: list[int]) -> None:
        """
        Add C{\\Seen} to the current flags (re-read, since an IMAP session
        may have changed them since the snapshot was taken).
        """
        folder = maildrop.folder
        folder.refresh()
        current = {info.uid: info for info in folder.messages()}
        for uid in uids:
            info = current.get(uid)
            if info is not None and SEEN not in info.flags:
                folder.setFlags(uid, info.flags | {SEEN})


class POP3Factory(ServerFactory):
    """
    Builds L{POP3Server}s for one endpoint.

    @param policy: the endpoint's policy (TLS mode, whether login is offered).
    @param portal: the one portal; logins ask it for L{IPOP3Maildrop}.
    @param tls: the shared server TLS creator, used by STLS; L{None} means
        STLS is never offered.  Implicit TLS is done by the caller wrapping
        this factory in a C{TLSMemoryBIOFactory}.
    @param hostname: the name in the greeting.
    @param clock: timers (idle timeouts, failure delay); the global reactor
        when not given.
    @param connections: counts connections of all POP3 endpoints (total
        and per client address); L{None} for no cap.
    @param userAddresses: counts logged-in sessions per account and client
        address; L{None} for no cap.
    """

    # The service logs each endpoint once at start; Twisted's per-factory
    # start/stop lines would only repeat it.
    noisy = False

    protocol = POP3Server  # type: ignore[assignment]

    def __init__(
        self,
        policy: EndpointPolicy,
        portal: Portal,
        tls: Optional[IOpenSSLServerConnectionCreator],
        hostname: str,
        clock: Optional[IReactorTime] = None,
        limits: POP3Limits = POP3Limits(),
        connections: Optional[ConnectionLimiter] = None,
        userAddresses: Optional[UserAddressLimiter] = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        self.policy = policy
        self.portal = portal
        self.tls = tls
        self.hostname = hostname
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.limits = limits
        self.connections = connections
        self.userAddresses = userAddresses

    def buildProtocol(self, addr: Any) -> POP3Server:
        protocol = POP3Server(
            self.policy,
            self.portal,
            self.tls,
            self.hostname,
            self.clock,
            self.limits,
            connections=self.connections,
            userAddresses=self.userAddresses,
        )
        protocol.factory = self
        return protocol
