# -*- test-case-name: tests.protocols.test_pop3, tests.protocols.test_managesieve -*-
"""
What the servers that answer one command at a time (POP3, ManageSieve)
share: the session record and its connection slot, TLS bookkeeping, the
transport's producer registration and input flow control, the login
deadline and idle timer, closing, and the pause after a failed login.

Flow control: while a command is being answered, or while the transport's
write buffer is full, commands a client pipelines wait in the input
buffer; once more than C{maxPipelined} octets wait, reading stops until
the server can take them again, so a client that never reads its answers
costs a bounded amount of memory.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, ISSLTransport
from twisted.internet.protocol import Protocol

from mailsrv.envelope import Session
from mailsrv.tls import negotiatedTLS


class CommandSession(Protocol):
    """
    Base of L{mailsrv.protocols.pop3.server.POP3Server} and
    L{mailsrv.protocols.managesieve.server.ManageSieveServer}.

    Subclasses set L{protocolName}, the attributes below in C{__init__},
    and implement L{_greet}, L{_refuseConnection}, L{_timedOut},
    L{_loggedIn}, L{_bufferedInput} and L{_processInput}; they set
    C{_busy} while a command runs and call L{_setIdle} with the idle
    timeout after a login.

    @cvar protocolName: the protocol's name at the start of log lines.
    @ivar _busy: a command is being answered.
    @ivar _outputFull: the transport asked this producer to pause.
    @ivar _readPaused: reading from the transport is paused.
    """

    protocolName = ""

    transport: Any
    session: Optional[Session]
    _policy: Any
    _slots: Any
    _clock: Any
    _limits: Any
    _inputDeadline: Any
    _tlsActive: bool
    _busy: bool
    _outputFull: bool
    _readPaused: bool
    _closing: bool
    _connected: bool
    _registered: bool
    _idleCall: Optional[IDelayedCall]
    _idleTimeout: float
    _waiting: Optional["Deferred[Any]"]

    def _info(self, fmt: str, **fields: Any) -> None:
        raise NotImplementedError

    def _greet(self) -> None:
        """
        Send the greeting of an admitted connection.
        """
        raise NotImplementedError

    def _refuseConnection(self) -> None:
        """
        Answer a connection over the connection limits (it is closed next).
        """
        raise NotImplementedError

    def _timedOut(self) -> None:
        """
        The login deadline or the idle timer ran out.
        """
        raise NotImplementedError

    def _loggedIn(self) -> bool:
        raise NotImplementedError

    def _bufferedInput(self) -> int:
        """
        Octets of input received and not handled yet.
        """
        raise NotImplementedError

    def _processInput(self) -> None:
        """
        Handle what can be handled of the buffered input.
        """
        raise NotImplementedError

    # ---------------------------------------------------------- connection

    def connectionMade(self) -> None:
        self._connected = True
        peer = self.transport.getPeer()
        self.session = Session(
            endpoint=self._policy,
            peerHost=str(getattr(peer, "host", peer)),
            peerPort=int(getattr(peer, "port", 0) or 0),
        )
        # On an implicit-TLS endpoint the factory is wrapped in a
        # TLSMemoryBIOFactory: TLS is on from the first byte and STARTTLS
        # must never be offered (nested TLS would hang the session).
        self._tlsActive = self._policy.implicitTLS or ISSLTransport.providedBy(self.transport)
        if not self._slots.admitConnection(self.session.peerHost):
            self._info(f"{self.protocolName} connection from {{peer}} on {{endpoint}} refused: connection limit")
            self._refuseConnection()
            self._close()
            return
        self._info(
            f"{self.protocolName} connection from {{peer}} on {{endpoint}}",
            peer=f"{self.session.peerHost}:{self.session.peerPort}",
        )
        self._noDelay()
        self.transport.registerProducer(self, True)
        self._registered = True
        self._greet()
        self._setIdle(self._limits.loginTimeout)

    def _noDelay(self) -> None:
        """
        Turn Nagle's algorithm off: replies are written whole, and a small
        reply held back until the client ACKs the previous one meets the
        client's delayed ACK (40 ms on Linux) on every pipelined command.
        A TLS wrapper passes the call on to the TCP transport; in-memory
        transports have no such method.
        """
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            try:
                setNoDelay(True)
            except OSError:
                pass

    def handshakeCompleted(self) -> None:
        """
        Record what TLS negotiated, for the log.
        """
        info = negotiatedTLS(self.transport)
        if self.session is not None and info is not None:
            self.session.tls = info
            self._info("TLS established: {tlsVersion} {cipher}", tlsVersion=info.version, cipher=info.cipher)

    def _stopTimers(self) -> None:
        """
        For C{connectionLost}: no timer or delayed answer outlives the
        connection, and its slot is given back.
        """
        self._connected = False
        self._closing = True
        self._cancelIdle()
        self._inputDeadline.stop()
        self._slots.release()
        if self._waiting is not None:
            self._waiting.cancel()

    def _close(self, abort: bool = False) -> None:
        self._closing = True
        self._cancelIdle()
        self._inputDeadline.stop()
        if self._registered:
            self._registered = False
            # TLSMemoryBIOProtocol.loseConnection waits for a registered
            # producer to go away before it shuts TLS down: without this a
            # session over TLS closed by a timeout stayed open until the
            # client left.
            self.transport.unregisterProducer()
        if abort:
            getattr(self.transport, "abortConnection", self.transport.loseConnection)()
        else:
            self.transport.loseConnection()

    # -------------------------------------------------------------- timers

    def _setIdle(self, seconds: float) -> None:
        self._cancelIdle()
        self._idleTimeout = seconds
        self._idleCall = self._clock.callLater(seconds, self._idleExpired)

    def _idleExpired(self) -> None:
        self._idleCall = None
        self._timedOut()

    def _resetIdle(self) -> None:
        if not self._loggedIn():
            return  # the login timeout is a deadline, not an idle timer
        if self._idleCall is not None and self._idleCall.active():
            self._idleCall.reset(self._idleTimeout)

    def _cancelIdle(self) -> None:
        if self._idleCall is not None and self._idleCall.active():
            self._idleCall.cancel()
        self._idleCall = None

    async def _pauseAfterFailedLogin(self) -> bool:
        """
        Wait the failure delay before answering a failed login (the same
        whether the user exists or not); whether the client is still
        there to hear the answer.
        """
        if not self._connected:
            return False
        self._waiting = task.deferLater(self._clock, self._limits.failureDelay, lambda: None)
        try:
            await self._waiting
        except CancelledError:
            return False
        finally:
            self._waiting = None
        return self._connected

    # -------------------------------------------------------- flow control

    def _flowControl(self) -> None:
        if self._closing:
            return
        waiting = self._busy or self._outputFull
        if waiting and self._bufferedInput() > self._limits.maxPipelined:
            if not self._readPaused:
                self._readPaused = True
                self.transport.pauseProducing()
        elif self._readPaused and not waiting:
            self._readPaused = False
            self.transport.resumeProducing()

    # The transport calls these while this session is its producer (POP3
    # unregisters while it streams a message): its write buffer is full,
    # or has room again.  (Reading is not stopped at once: under TLS a full
    # buffer also means the handshake is not over.)

    def pauseProducing(self) -> None:
        self._outputFull = True

    def resumeProducing(self) -> None:
        self._outputFull = False
        if self._connected:
            self._processInput()

    def stopProducing(self) -> None:
        pass
