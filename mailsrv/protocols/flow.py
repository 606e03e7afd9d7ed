# -*- test-case-name: tests.protocols.test_pop3_limits -*-
"""
Input flow control shared by the line protocols that answer one command at
a time (POP3, ManageSieve): while a command is being answered, or while the
transport's write buffer is full, commands a client pipelines wait in the
input buffer; once more than C{maxPipelined} octets wait, reading stops
until the server can take them again.  A client that never reads its
answers so costs a bounded amount of memory.
"""

from __future__ import annotations

from typing import Any


class PipelinedInputFlow:
    """
    Mixed into a protocol that is the transport's producer
    (C{registerProducer(self, True)}).  The protocol sets C{_busy} while a
    command runs, and provides L{_bufferedInput} and L{_processInput}.

    @ivar _busy: a command is being answered.
    @ivar _outputFull: the transport asked this producer to pause.
    @ivar _readPaused: reading from the transport is paused.
    """

    transport: Any
    _busy: bool
    _outputFull: bool
    _readPaused: bool
    _closing: bool
    _connected: bool

    def _bufferedInput(self) -> int:
        """
        Octets of input received and not handled yet.
        """
        raise NotImplementedError

    def _maxPipelined(self) -> int:
        raise NotImplementedError

    def _processInput(self) -> None:
        """
        Handle what can be handled of the buffered input.
        """
        raise NotImplementedError

    def _flowControl(self) -> None:
        if self._closing:
            return
        waiting = self._busy or self._outputFull
        if waiting and self._bufferedInput() > self._maxPipelined():
            if not self._readPaused:
                self._readPaused = True
                self.transport.pauseProducing()
        elif self._readPaused and not waiting:
            self._readPaused = False
            self.transport.resumeProducing()

    # The transport calls these while the protocol is its producer: its
    # write buffer is full, or has room again.  (Reading is not stopped at
    # once: under TLS a full buffer also means the handshake is not over.)

    def pauseProducing(self) -> None:
        self._outputFull = True

    def resumeProducing(self) -> None:
        self._outputFull = False
        if self._connected:
            self._processInput()

    def stopProducing(self) -> None:
        pass
