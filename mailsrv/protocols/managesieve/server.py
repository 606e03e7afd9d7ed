# -*- test-case-name: tests.protocols.test_managesieve -*-
"""
The ManageSieve server (RFC 5804): users upload, check, list, activate and
delete their Sieve scripts (Roundcube's managesieve plugin, Thunderbird's
Sieve add-on, C{sieve-connect}), stored through an L{ISieveScriptStore}.

Shaped like the POP3 server:

 - Its own input splitter (L{mailsrv.protocols.managesieve.parser}), so
   that at STARTTLS whatever the client pipelined in plaintext is dropped
   (the STARTTLS injection rule) and every line and literal is bounded.
 - Commands run strictly in order: while one waits for the store, the
   portal or the failure delay, later input stays buffered (and reading
   pauses past C{maxPipelined} octets).
 - Authentication (SASL PLAIN and LOGIN, with or without an initial
   response) is asked of the L{EndpointPolicy} and goes through the one
   portal (and so through the failed-login throttle), which returns an
   L{IAuthenticatedUser}.  Before TLS on an endpoint with TLS the SASL
   capability is empty (like IMAP's LOGINDISABLED) and AUTHENTICATE gets
   C{NO (ENCRYPT-NEEDED)}.
 - Scripts are checked (C{ScriptChecker}) before PUTSCRIPT stores them and
   for CHECKSCRIPT; the error text is the checker's (C{line N: ...}).
 - Timers as in POP3 and IMAP: the login must be done within
   C{loginTimeout} of connecting, C{idleTimeout} of silence after it ends
   the session, a line must be whole within C{commandTimeout} of its first
   octet and a literal arrive at C{minDataRate} (L{InputDeadline}).

Responses use these codes: ENCRYPT-NEEDED, QUOTA/MAXSCRIPTS,
QUOTA/MAXSIZE, NONEXISTENT, ALREADYEXISTS, ACTIVE, WARNINGS, TAG and
TRYLATER.  Never sent: REFERRAL (one server), SASL (PLAIN and LOGIN have
no final server data), AUTH-TOO-WEAK and TRANSITION-NEEDED (no mechanism
is refused per user, no password scheme needs upgrading), NOTIFY (no
notification methods).

Wire data is C{bytes}; script names are UTF-8 on the wire and C{str} for
the store; the user name goes to the portal as the bytes the client sent.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable, Optional, Sequence

from twisted.cred.credentials import IUsernamePassword
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

from mailsrv.auth.sasl import MECHANISMS, SASLError, SASLExchange, decodeResponse, encodeChallenge
from mailsrv.envelope import Session
from mailsrv.interfaces import IAuthenticatedUser, ISieveScriptStore
from mailsrv.policy.deadline import DATA, InputDeadline
from mailsrv.policy.endpoint import EndpointPolicy
from mailsrv.policy.limits import ConnectionLimiter, SessionSlots, UserAddressLimiter
from mailsrv.protocols.managesieve.parser import (
    Atom,
    Command,
    CommandReader,
    Continue,
    Fatal,
    Rejected,
    Token,
)
from mailsrv.protocols.managesieve.responses import (
    ENCRYPT_NEEDED,
    MAXSIZE,
    TEXT_PLAINTEXT,
    TEXT_TEMP,
    TEXT_USER_IP,
    TRYLATER,
    quoted,
    response,
)
from mailsrv.protocols.managesieve.scripts import (
    SIEVE_EXTENSIONS,
    Runner,
    ScriptCheck,
    ScriptChecker,
    ScriptCommands,
    checkSieve,
)
from mailsrv.protocols.session import CommandSession

__all__ = ["ManageSieveFactory", "ManageSieveLimits", "ManageSieveServer", "ScriptCheck", "ScriptChecker"]



@dataclasses.dataclass(frozen=True)
class ManageSieveLimits:
    """
    Tunables of a ManageSieve endpoint.

    @ivar loginTimeout: seconds from connect within which the client must
        have logged in, whatever it sends meanwhile.
    @ivar idleTimeout: seconds of silence allowed after login.
    @ivar commandTimeout: seconds a line may take from its first octet.
    @ivar dataTimeout: seconds a literal may stall; with C{minDataRate}
        (octets a second) its deadline moves on as data arrives.
    @ivar failureDelay: seconds before a failed login is answered.
    @ivar maxAuthFailures: failed logins after which the connection closes.
    @ivar maxBadCommands: invalid commands after which the connection
        closes.
    @ivar maxLineLength: longest line between literals, in octets.
    @ivar maxStringLiteral: longest literal that is not a script (names,
        SASL responses); scripts may be the store's C{maxScriptSize}.
    @ivar maxDiscard: largest non-synchronizing literal over its limit that
        is read and thrown away (so the client gets C{NO (QUOTA/MAXSIZE)});
        beyond it the connection is closed.
    @ivar maxPipelined: buffered input above which reading pauses while a
        command is still being handled.
    @ivar maxRedirects: the MAXREDIRECTS capability: redirects one script
        may do per message (the default of L{mailsrv.sieve.evaluate}).
    @ivar inlineCheckSize: scripts up to this size are checked on the
        reactor thread; larger ones in a thread.
    """

    loginTimeout: float = 180.0
    idleTimeout: float = 600.0
    commandTimeout: float = 300.0
    dataTimeout: float = 600.0
    minDataRate: float = 500.0
    failureDelay: float = 1.0
    maxAuthFailures: int = 3
    maxBadCommands: int = 10
    maxLineLength: int = 8192
    maxStringLiteral: int = 8192
    maxDiscard: int = 64 * 1024 * 1024
    maxPipelined: int = 64 * 1024
    maxRedirects: int = 4
    inlineCheckSize: int = 16 * 1024


class State(enum.Enum):
    NONAUTH = "non-authenticated"
    AUTH = "authenticated"
    LOGOUT = "logout"


# Arguments per command: "string" (quoted or literal), "number", and
# "mechanism" (a string, or an atom as some clients send it); a trailing
# "?" makes the last one optional.
_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "CAPABILITY": (),
    "LOGOUT": (),
    "NOOP": ("string?",),
    "STARTTLS": (),
    "AUTHENTICATE": ("mechanism", "string?"),
    "UNAUTHENTICATE": (),
    "HAVESPACE": ("string", "number"),
    "PUTSCRIPT": ("string", "string"),
    "CHECKSCRIPT": ("string",),
    "LISTSCRIPTS": (),
    "SETACTIVE": ("string",),
    "GETSCRIPT": ("string",),
    "DELETESCRIPT": ("string",),
    "RENAMESCRIPT": ("string", "string"),
}

_COMMANDS: dict[State, frozenset[str]] = {
    State.NONAUTH: frozenset({"CAPABILITY", "LOGOUT", "NOOP", "STARTTLS", "AUTHENTICATE"}),
    State.AUTH: frozenset(_ARGUMENTS) - {"STARTTLS", "AUTHENTICATE"},
    State.LOGOUT: frozenset(),
}

# The script is the last argument of these (the literal that may be large).
_SCRIPT_POSITION = {"PUTSCRIPT": 2, "CHECKSCRIPT": 1}


@implementer(IHandshakeListener, IPushProducer)
class ManageSieveServer(ScriptCommands, CommandSession):
    """
    One ManageSieve connection.

    @ivar session: the connection's L{Session} (peer, TLS, account).
    @ivar state: non-authenticated, authenticated or logging out.
    """

    log = Logger()
    protocolName = "ManageSieve"

    def __init__(
        self,
        policy: EndpointPolicy,
        portal: Portal,
        scripts: ISieveScriptStore,
        checkScript: ScriptChecker,
        extensions: Sequence[str],
        tls: Optional[IOpenSSLServerConnectionCreator],
        hostname: str,
        clock: IReactorTime,
        limits: ManageSieveLimits = ManageSieveLimits(),
        connections: Optional[ConnectionLimiter] = None,
        userAddresses: Optional[UserAddressLimiter] = None,
        runInThread: Optional[Runner] = None,
    ) -> None:
        self._policy = policy
        self._portal = portal
        self._scripts = scripts
        self._checkScript = checkScript
        self._extensions = " ".join(extensions)
        self._tls = tls
        self._hostname = hostname
        self._clock = clock
        self._limits = limits
        self._runInThread = runInThread

        self.state = State.NONAUTH
        self.session: Optional[Session] = None
        self._tlsActive = False
        self._reader = CommandReader(self._literalLimit, limits.maxLineLength, limits.maxDiscard)
        self._busy = False
        self._processing = False
        self._readPaused = False
        self._outputFull = False
        self._closing = False
        self._connected = False
        self._registered = False
        self._badCommands = 0
        self._authFailures = 0
        self._idleCall: Optional[IDelayedCall] = None
        self._idleTimeout = limits.loginTimeout
        self._waiting: Optional[Deferred[Any]] = None
        self._slots = SessionSlots(connections, userAddresses)
        self._inputDeadline = InputDeadline(
            clock,
            limits.commandTimeout,
            limits.dataTimeout,
            limits.minDataRate,
            self._inputTimedOut,
            paused=lambda: self._readPaused,
        )
        self._sasl: Optional[SASLExchange] = None
        self._account: Optional[str] = None
        self._logout: Callable[[], None] = lambda: None

    # ------------------------------------------------------------ connection

    def _greet(self) -> None:
        self._sendCapabilities(f"{self._hostname} ManageSieve ready.")

    def _refuseConnection(self) -> None:
        self._reply(response(b"BYE", "Too many connections, try again later.", TRYLATER))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopTimers()
        self._info("ManageSieve connection from {peer} on {endpoint} closed")
        self._endLogin()

    def _endLogin(self) -> None:
        logout, self._logout = self._logout, lambda: None
        self._account = None
        logout()

    def _bye(self, text: str, code: Optional[bytes] = None) -> None:
        self._reply(response(b"BYE", text, code))
        self._close()

    # ---------------------------------------------------------------- timers

    def _loggedIn(self) -> bool:
        return self.state is State.AUTH

    def _timedOut(self) -> None:
        self._info("ManageSieve timeout in {state}", state=self.state.value)
        if self.state is State.NONAUTH:
            self._bye("Disconnected: login not completed in time.")
        else:
            self._bye("Disconnected for inactivity.")

    def _inputTimedOut(self, kind: str) -> None:
        if self._closing:
            return
        self._info("ManageSieve {kind} not completed in time, closing", kind=kind)
        self._reader.reset()
        if kind == DATA:
            self._bye("Disconnected: literal data too slow.")
        else:
            self._bye("Disconnected: command not completed in time.")

    # ---------------------------------------------------------------- input

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        inLiteral = self._reader.inLiteral
        self._reader.feed(data)
        if inLiteral:
            self._inputDeadline.dataReceived(len(data))
        self._processInput()
        self._updateDeadline(b"\n" in data)

    def _updateDeadline(self, newLine: bool) -> None:
        if self._closing:
            return
        if self._reader.inLiteral:
            if self._inputDeadline.kind != DATA:
                self._inputDeadline.startData()
        else:
            self._inputDeadline.linePending(self._reader.linePending, newLine)

    def _processInput(self) -> None:
        """
        Handle every complete command buffered, stopping while one is
        still being answered.  Re-entrant calls (a command finishing
        synchronously) fold into the running loop.
        """
        if self._processing:
            return
        self._processing = True
        try:
            while not self._busy and not self._outputFull and not self._closing:
                event = self._reader.next()
                if event is None:
                    break
                self._resetIdle()
                if isinstance(event, Command):
                    self._command(event.tokens)
                elif isinstance(event, Continue):
                    self._reply(response(b"OK", "Ready for literal data."))
                elif isinstance(event, Rejected):
                    self._rejected(event)
                elif isinstance(event, Fatal):
                    self._info("ManageSieve input refused: {problem}", problem=event.problem.message)
                    self._bye(event.problem.message + ".")
        finally:
            self._processing = False
        self._flowControl()

    def _bufferedInput(self) -> int:
        return self._reader.buffered

    def _done(self) -> None:
        """
        The current command is answered: carry on with pipelined input.
        """
        self._busy = False
        if self._connected and not self._closing:
            self._processInput()
            self._updateDeadline(False)

    def _literalLimit(self, tokens: Sequence[Token]) -> int:
        if self._sasl is None and tokens and isinstance(tokens[0], Atom):
            position = _SCRIPT_POSITION.get(tokens[0].upper())
            if position is not None and len(tokens) == position:
                return self._scripts.maxScriptSize
        return self._limits.maxStringLiteral

    def _rejected(self, event: Rejected) -> None:
        problem = event.problem
        if self._sasl is not None:
            exchange, self._sasl = self._sasl, None
            self._saslFailed(SASLError(problem.message), exchange.mechanism)
            return
        verb = event.tokens[0].upper() if event.tokens and isinstance(event.tokens[0], Atom) else None
        if problem.literalSize is not None:
            if verb in _SCRIPT_POSITION and problem.limit == self._scripts.maxScriptSize:
                self._badCommand(
                    f"Script is too large (max {self._scripts.maxScriptSize} octets).", MAXSIZE
                )
            else:
                self._badCommand("String is too long.")
            return
        self._badCommand(f"Syntax error: {problem.message}.")

    def _command(self, tokens: Sequence[Token]) -> None:
        if self._sasl is not None:
            self._saslResponse(tokens)
            return
        verb = tokens[0]
        name = verb.upper() if isinstance(verb, Atom) else ""
        if name not in _ARGUMENTS:
            self._badCommand("Unknown command.")
            return
        if name not in _COMMANDS[self.state]:
            if self.state is State.NONAUTH:
                self._badCommand("Authenticate first.")
            else:
                self._badCommand("Already authenticated.")
            return
        arguments = self._arguments(_ARGUMENTS[name], tokens[1:])
        if arguments is None:
            return
        handler: Callable[..., None] = getattr(self, "do_" + name)
        handler(*arguments)

    def _arguments(self, spec: tuple[str, ...], tokens: Sequence[Token]) -> Optional[list[Any]]:
        optional = bool(spec) and spec[-1].endswith("?")
        required = len(spec) - optional
        if not required <= len(tokens) <= len(spec):
            self._badCommand("Wrong number of arguments.")
            return None
        values: list[Any] = []
        for kind, token in zip(spec, tokens):
            kind = kind.rstrip("?")
            if kind == "string" and isinstance(token, bytes):
                values.append(token)
            elif kind == "mechanism":
                values.append(token.value if isinstance(token, Atom) else token)
            elif kind == "number" and isinstance(token, Atom) and token.value.isdigit() and len(token.value) <= 10:
                values.append(int(token.value))
            else:
                self._badCommand(f"Invalid {kind} argument.")
                return None
        return values

    def _badCommand(self, text: str, code: Optional[bytes] = None) -> None:
        self._badCommands += 1
        if self._badCommands >= self._limits.maxBadCommands:
            self._info("ManageSieve too many invalid commands, closing")
            self._bye("Too many invalid commands.")
            return
        self._reply(response(b"NO", text, code))

    # --------------------------------------------------------------- output

    def _reply(self, line: bytes) -> None:
        self.transport.write(line + b"\r\n")  # type: ignore[union-attr]

    def _ok(self, text: str, code: Optional[bytes] = None) -> None:
        self._reply(response(b"OK", text, code))

    def _no(self, text: str, code: Optional[bytes] = None) -> None:
        self._reply(response(b"NO", text, code))

    def _info(self, fmt: str, **fields: Any) -> None:
        fields.setdefault("endpoint", self._policy.name)
        fields.setdefault("peer", self.session.peerHost if self.session else None)
        fields.setdefault("sessionId", self.session.sessionId if self.session else None)
        fields.setdefault("account", self._account)
        self.log.info(fmt, **fields)

    def _failure(self, fmt: str, **fields: Any) -> None:
        self.log.failure(
            fmt,
            endpoint=self._policy.name,
            sessionId=self.session.sessionId if self.session else None,
            account=self._account,
            **fields,
        )

    def _run(self, coroutine: Any) -> None:
        """
        Run a command's coroutine; the command holds the input until it
        calls L{_done}.
        """
        self._busy = True
        d = Deferred.fromCoroutine(coroutine)
        d.addErrback(lambda f: self.log.failure("ManageSieve internal error", f, endpoint=self._policy.name))

    # ---------------------------------------------------------- capabilities

    def _offersStartTLS(self) -> bool:
        return (
            self._tls is not None
            and self._policy.offersStartTLS(self._tlsActive)
            and ITLSTransport.providedBy(self.transport)
        )

    def capabilities(self) -> list[bytes]:
        """
        The capability lines as they are now: SASL lists mechanisms only
        when they would be accepted (empty before STARTTLS on an endpoint
        that requires it, RFC 5804 section 1.7), STARTTLS only when
        offered, OWNER once logged in.
        """
        sasl = " ".join(MECHANISMS) if self._policy.mayAuthenticate(self._tlsActive) else ""
        caps = [
            b'"IMPLEMENTATION" "mailsrv"',
            b'"SASL" ' + quoted(sasl),
            b'"SIEVE" ' + quoted(self._extensions),
        ]
        if self._offersStartTLS():
            caps.append(b'"STARTTLS"')
        caps.append(b'"MAXREDIRECTS" ' + quoted(str(self._limits.maxRedirects)))
        if self.state is State.AUTH and self._account is not None:
            caps.append(b'"OWNER" ' + quoted(self._account))
        caps.append(b'"UNAUTHENTICATE"')
        caps.append(b'"VERSION" "1.0"')
        return caps

    def _sendCapabilities(self, text: str) -> None:
        self.transport.write(  # type: ignore[union-attr]
            b"".join(line + b"\r\n" for line in self.capabilities()) + response(b"OK", text) + b"\r\n"
        )

    def do_CAPABILITY(self) -> None:
        self._sendCapabilities("Capability completed.")

    def do_NOOP(self, tag: Optional[bytes] = None) -> None:
        self._ok("Done.", None if tag is None else b"TAG " + quoted(tag))

    def do_LOGOUT(self) -> None:
        self.state = State.LOGOUT
        self._ok("Logout completed.")
        self._close()

    def do_STARTTLS(self) -> None:
        if self._tlsActive:
            self._badCommand("TLS is already active.")
            return
        if not self._offersStartTLS():
            self._badCommand("STARTTLS is not available.")
            return
        self._ok("Begin TLS negotiation now.")
        # What the client sent after STARTTLS in plaintext must not be run
        # as if it had come over TLS.
        dropped = self._reader.reset()
        self._tlsActive = True
        self.transport.startTLS(self._tls)  # type: ignore[union-attr]
        self._info("ManageSieve STARTTLS, {dropped} pipelined octets dropped", dropped=dropped)
        # RFC 5804 section 2.2: the capabilities again, now over TLS.
        self._sendCapabilities("TLS negotiation successful.")

    # ------------------------------------------------------------ AUTHENTICATE

    def do_AUTHENTICATE(self, mechanism: bytes, initial: Optional[bytes] = None) -> None:
        if not self._policy.mayAuthenticate(self._tlsActive):
            if self._policy.auth and not self._tlsActive:
                self._badCommand(TEXT_PLAINTEXT, ENCRYPT_NEEDED)
            else:
                self._badCommand("Authentication is not available on this port.")
            return
        try:
            exchange = SASLExchange(mechanism.decode("ascii"))
        except (SASLError, UnicodeDecodeError):
            self._badCommand("Unsupported authentication mechanism.")
            return
        try:
            result = exchange.start(decodeResponse(initial) if initial is not None else None)
        except SASLError as e:
            self._saslFailed(e, exchange.mechanism)
            return
        self._saslStep(exchange, result)

    def _saslStep(self, exchange: SASLExchange, result: Any) -> None:
        if isinstance(result, bytes):
            self._sasl = exchange
            self._reply(quoted(encodeChallenge(result)))
        else:
            self._sasl = None
            self._login(result, exchange.mechanism)

    def _saslResponse(self, tokens: Sequence[Token]) -> None:
        exchange = self._sasl
        assert exchange is not None
        self._sasl = None
        try:
            if len(tokens) != 1 or not isinstance(tokens[0], bytes):
                raise SASLError("response is not one string")
            result = exchange.respond(decodeResponse(tokens[0]))
        except SASLError as e:
            self._saslFailed(e, exchange.mechanism)
            return
        self._saslStep(exchange, result)

    def _saslFailed(self, error: SASLError, mechanism: str) -> None:
        if error.cancelled:
            self._no("Authentication aborted by client.")
            return
        # Malformed SASL data counts as a failed login: one more guess.
        self._info("ManageSieve malformed {mechanism} response: {problem}", mechanism=mechanism, problem=str(error))
        self._run(self._failLogin(None, mechanism))

    def _login(self, credentials: IUsernamePassword, mechanism: str) -> None:
        try:
            credentials.username.decode("utf-8")
        except UnicodeDecodeError:
            self._run(self._failLogin(None, mechanism))
            return
        self._run(self._authenticate(credentials, mechanism))

    async def _authenticate(self, credentials: IUsernamePassword, mechanism: str) -> None:
        login = credentials.username.decode("utf-8", "replace")
        try:
            _, avatar, logout = await self._portal.login(credentials, self.session, IAuthenticatedUser)
        except (UnauthorizedLogin, UnhandledCredentials):
            await self._failLogin(login, mechanism)
            return
        except Exception:
            self._failure("ManageSieve login {outcome} for {login}", outcome="error", login=login)
            self._replyAndContinue(response(b"NO", TEXT_TEMP, TRYLATER))
            return
        if not self._connected:
            logout()
            return
        account = avatar.account
        assert self.session is not None
        if not self._slots.admitLogin(account, self.session.peerHost):
            logout()
            self._info(
                "ManageSieve login {outcome} for {login} from {peer} on {endpoint}: user+IP connection limit",
                outcome="limit",
                login=account,
            )
            self._bye(TEXT_USER_IP % (self._slots.maxPerUserAddress,), TRYLATER)
            return
        self.state = State.AUTH
        self._account = account
        self._logout = logout
        self.session.authenticatedAs = account
        self._info(
            "ManageSieve login {outcome} for {account} via {mechanism} from {peer} on {endpoint}",
            outcome="success",
            mechanism=mechanism,
        )
        self._setIdle(self._limits.idleTimeout)
        self._replyAndContinue(response(b"OK", "Logged in."))

    async def _failLogin(self, login: Optional[str], mechanism: str) -> None:
        """
        Answer a failed login after the failure delay, the same whether the
        user exists or not.
        """
        self._authFailures += 1
        self._info(
            "ManageSieve login {outcome} for {login} via {mechanism} from {peer} on {endpoint}",
            outcome="failure",
            login=login,
            mechanism=mechanism,
        )
        if not await self._pauseAfterFailedLogin():
            return
        if self._authFailures >= self._limits.maxAuthFailures:
            self._info("ManageSieve too many failed logins, closing")
            self._bye("Too many failed logins.")
            return
        self._replyAndContinue(response(b"NO", "Authentication failed."))

    def _replyAndContinue(self, line: bytes) -> None:
        if not self._connected:
            return
        self._reply(line)
        self._done()

    def do_UNAUTHENTICATE(self) -> None:
        """
        Back to the non-authenticated state (RFC 5804 section 2.14.1): the
        login timer runs again.
        """
        self._info("ManageSieve unauthenticate {account}")
        self._slots.releaseLogin()
        self._endLogin()
        assert self.session is not None
        self.session.authenticatedAs = None
        self.state = State.NONAUTH
        self._setIdle(self._limits.loginTimeout)
        self._ok("Unauthenticate completed.")

class ManageSieveFactory(ServerFactory):
    """
    Builds L{ManageSieveServer}s for one endpoint.

    @param policy: the endpoint's policy (TLS mode, whether login is offered).
    @param portal: the one portal; logins ask it for L{IAuthenticatedUser}.
    @param scripts: where the accounts' scripts are.
    @param tls: the shared server TLS creator, for STARTTLS; L{None} means
        STARTTLS is never offered.  Implicit TLS is done by the caller
        wrapping this factory in a C{TLSMemoryBIOFactory}.
    @param clock: timers; the global reactor when not given.
    @param connections: counts connections of all ManageSieve endpoints;
        L{None} for no cap.
    @param userAddresses: counts logged-in sessions per account and client
        address; L{None} for no cap.
    @param runInThread: runs the check of large scripts off the reactor
        thread; L{None} checks every script inline.
    @param checkScript: the verdict on a script (L{mailsrv.sieve}'s parser).
    @param extensions: the Sieve extensions of the SIEVE capability.
    """

    noisy = False

    protocol = ManageSieveServer  # type: ignore[assignment]

    def __init__(
        self,
        policy: EndpointPolicy,
        portal: Portal,
        scripts: ISieveScriptStore,
        tls: Optional[IOpenSSLServerConnectionCreator],
        hostname: str,
        clock: Optional[IReactorTime] = None,
        limits: ManageSieveLimits = ManageSieveLimits(),
        connections: Optional[ConnectionLimiter] = None,
        userAddresses: Optional[UserAddressLimiter] = None,
        runInThread: Optional[Runner] = None,
        checkScript: ScriptChecker = checkSieve,
        extensions: Sequence[str] = SIEVE_EXTENSIONS,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        self.policy = policy
        self.portal = portal
        self.scripts = scripts
        self.checkScript = checkScript
        self.extensions = tuple(extensions)
        self.tls = tls
        self.hostname = hostname
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.limits = limits
        self.connections = connections
        self.userAddresses = userAddresses
        self.runInThread = runInThread

    def buildProtocol(self, addr: Any) -> ManageSieveServer:
        protocol = ManageSieveServer(
            self.policy,
            self.portal,
            self.scripts,
            self.checkScript,
            self.extensions,
            self.tls,
            self.hostname,
            self.clock,
            self.limits,
            connections=self.connections,
            userAddresses=self.userAddresses,
            runInThread=self.runInThread,
        )
        protocol.factory = self
        return protocol
