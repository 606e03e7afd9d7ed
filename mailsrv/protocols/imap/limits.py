# -*- test-case-name: tests.protocols.test_imap_limits -*-
"""
Connection hygiene of the IMAP server: connection caps, the per account and
address session cap, and the timers (see L{mailsrv.policy.deadline}).

 - Connections are counted when the protocol is connected, so behind a
   PROXY protocol load balancer the client's own address counts (the
   wrapper connects the protocol only once the header is read).
 - Before login the timer is a deadline for the whole login
   (C{login_timeout}, Dovecot's 3 minutes): a client sending a NOOP now and
   then does not keep an unauthenticated connection for ever.  After login
   it is Twisted's idle timer, set to C{imap_idle_timeout}.
 - A command line must be complete within C{command_timeout} of its first
   octet; a literal is held to C{min_data_rate} (C{data_timeout} when it
   stalls), so a large APPEND over a slow link still gets through.
 - Logged-in sessions per (account, client address) are capped like
   Dovecot's C{mail_max_userip_connections}; the login over the cap gets
   C{NO [LIMIT]} with Dovecot's text, and the connection is closed.

L{LimitsMixin} sits just above C{IMAP4Server} in L{IMAPServer}'s bases, so
its C{dataReceived} sees each chunk as Twisted's line splitter does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.interfaces import IReactorTime

from mailsrv.policy.deadline import LINE, InputDeadline, SessionTimeouts
from mailsrv.policy.limits import ConnectionLimiter, SessionSlots, UserAddressLimiter

if TYPE_CHECKING:
    from twisted.logger import Logger

    from mailsrv.envelope import Session

BYE_TOO_MANY_CONNECTIONS = b"* BYE [UNAVAILABLE] Too many connections, try again later"
BYE_LOGIN_TIMEOUT = b"* BYE Disconnected: login not completed in time"
BYE_COMMAND_TIMEOUT = b"* BYE Disconnected: command not completed in time"
BYE_LITERAL_TIMEOUT = b"* BYE Disconnected: literal data too slow"
# Dovecot's text; RFC 5530's LIMIT code (Dovecot 2.3 says UNAVAILABLE).
NO_USER_IP = b"[LIMIT] Maximum number of connections from user+IP exceeded (max_connections_per_user_ip=%d)"


class LimitsMixin:
    """
    Connection caps and timers for L{mailsrv.protocols.imap.server.IMAPServer}.
    """

    # Provided by IMAPServer / IMAP4Server.
    session: "Optional[Session]"
    state: str
    line_mode: int
    _buffer: bytes
    _busyReceiving: bool
    _discardingLine: bool
    log: "Logger"
    timeOut: float
    POSTAUTH_TIMEOUT: float
    transport: Any
    _logFields: Callable[[], dict[str, Any]]
    sendLine: Callable[[bytes], None]
    sendNegativeResponse: Callable[[bytes, bytes], None]
    setTimeout: Callable[[Optional[float]], Any]

    def _initLimits(
        self,
        clock: IReactorTime,
        timeouts: SessionTimeouts,
        connections: Optional[ConnectionLimiter],
        userAddresses: Optional[UserAddressLimiter],
    ) -> None:
        self.timeouts = timeouts
        # Twisted's TimeoutMixin timers: the first from connectionMade, the
        # second from the login.
        self.timeOut = timeouts.login
        self.POSTAUTH_TIMEOUT = timeouts.idle
        self._slots = SessionSlots(connections, userAddresses)
        self._inputDeadline = InputDeadline(
            clock,
            timeouts.command,
            timeouts.data,
            timeouts.minDataRate,
            self._inputTimedOut,
            paused=lambda: bool(getattr(self, "_readPaused", False)),
        )

    # -------------------------------------------------------- connections

    def connectionMade(self) -> None:
        # Called by IMAPServer.connectionMade once its Session exists.
        if self.session is not None:
            if not self._slots.admitConnection(self.session.peerHost):
                self.log.warn("IMAP connection from {peer} on {endpoint} refused: connection limit", **self._logFields())
                # RFC 3501 section 7.1.5: BYE as the greeting refuses the
                # connection.  No greeting, no timer; input is ignored.
                self.tags = {}
                self.blocked = []
                self.sendLine(BYE_TOO_MANY_CONNECTIONS)
                self.transport.loseConnection()
                return
        super().connectionMade()  # type: ignore[misc]

    def connectionLost(self, reason: Any) -> None:
        self._inputDeadline.stop()
        self._slots.release()
        super().connectionLost(reason)  # type: ignore[misc]

    def _admitSession(self, tag: bytes, account: str) -> bool:
        """
        At a successful login: count the session of C{account} from the
        client's address, or answer C{NO [LIMIT]} and close when it already
        has C{max_connections_per_user_ip}.
        """
        if self.session is None or self._slots.admitLogin(account, self.session.peerHost):
            return True
        self.log.info(
            "IMAP login {outcome} for {account} from {peer} on {endpoint}: user+IP connection limit",
            outcome="limit",
            account=account,
            **self._logFields(),
        )
        self.sendNegativeResponse(tag, NO_USER_IP % (self._slots.maxPerUserAddress,))
        self.transport.loseConnection()
        return False

    # ------------------------------------------------------------- timers

    def resetTimeout(self) -> None:
        # Before login the timer is a deadline for the whole login.
        if self.state == "unauth":
            return
        super().resetTimeout()  # type: ignore[misc]

    def timeoutConnection(self) -> None:
        if self.state == "unauth":
            self.log.info("IMAP login not completed in time, closing", **self._logFields())
            self.sendLine(BYE_LOGIN_TIMEOUT)
            self.transport.loseConnection()
            self.state = "timeout"
            return
        self.log.info("IMAP idle timeout, closing", **self._logFields())
        super().timeoutConnection()  # type: ignore[misc]

    def dataReceived(self, data: bytes) -> None:
        if self._busyReceiving:
            # A nested call (a literal's end handing back line data): the
            # outer call accounts for it.
            super().dataReceived(data)  # type: ignore[misc]
            return
        wasLine = self.line_mode
        super().dataReceived(data)  # type: ignore[misc]
        if self.line_mode:
            pending = bool(self._buffer) or self._discardingLine
            self._inputDeadline.linePending(pending, not wasLine or b"\n" in data)
        elif wasLine:
            self._inputDeadline.startData()  # a literal begins
        else:
            self._inputDeadline.dataReceived(len(data))

    def _inputTimedOut(self, kind: str) -> None:
        if not self.transport or getattr(self.transport, "disconnecting", False):
            return
        if kind == LINE and not (self.line_mode and (self._buffer or self._discardingLine)):
            return  # completed or dropped (STARTTLS) meanwhile
        self.log.info(
            "IMAP {what} not completed in time, closing",
            what="command line" if kind == LINE else "literal",
            **self._logFields(),
        )
        self.setTimeout(None)
        self.sendLine(BYE_COMMAND_TIMEOUT if kind == LINE else BYE_LITERAL_TIMEOUT)
        self.transport.loseConnection()
