# -*- test-case-name: tests.test_policy_deadline -*-
"""
Input deadlines: how long a client may take to send one command line, and
how slowly it may send a message body (SMTP DATA/BDAT, IMAP literals).

An idle timer alone does not stop a slow-loris client: one that sends a
byte every few seconds restarts it for ever.  Two rules end such clients
and leave honest ones alone:

 - A command line must be complete within C{commandTimeout} seconds of its
   first octet (Postfix's C{smtpd_timeout} with
   C{smtpd_per_request_deadline = yes}).
 - Message data is held to a minimum average rate instead of a fixed
   deadline, because a 25 MiB message over a slow link may take far longer
   than any sensible timeout.  As Postfix's C{smtpd_min_data_rate} does,
   the deadline starts C{dataTimeout} seconds ahead, and every chunk of
   C{n} octets moves it C{n / minDataRate} seconds later, never more than
   C{dataTimeout} seconds ahead of now.  A stalled client is cut off after
   C{dataTimeout}; a client sending at least C{minDataRate} octets a second
   on average is never cut off, whatever the size; a trickle (one byte a
   minute) runs out of credit after about C{dataTimeout} seconds.

The timer is lazy: input only moves a number, and the one pending call
re-arms itself when it fires early, so busy connections cost no timer
operations per read.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime

LINE = "line"
DATA = "data"


@dataclasses.dataclass(frozen=True)
class SessionTimeouts:
    """
    The timers of an IMAP or POP3 session (C{[limits]} in the config).

    @ivar login: seconds from connect within which the client must have
        logged in, whatever it does meanwhile (Dovecot: 3 minutes).
    @ivar idle: seconds of silence allowed after login (RFC 3501 section
        5.4: at least 30 minutes for IMAP; RFC 1939 section 3: at least 10
        minutes for POP3).
    @ivar command: seconds a command line may take from its first octet.
    @ivar data: seconds without enough data credit during a literal.
    @ivar minDataRate: octets per second that keep a literal alive.
    """

    login: float = 180.0
    idle: float = 1800.0
    command: float = 300.0
    data: float = 600.0
    minDataRate: float = 500.0


class InputDeadline:
    """
    One connection's deadline for the command line or message data being
    received.

    @param expired: called with L{LINE} or L{DATA} when the deadline passes
        (once; the protocol then closes the connection).
    @param paused: whether the server itself has stopped reading (the
        client cannot make progress then); the deadline waits meanwhile.
    """

    def __init__(
        self,
        clock: IReactorTime,
        commandTimeout: float,
        dataTimeout: float,
        minDataRate: float,
        expired: Callable[[str], None],
        paused: Callable[[], bool] = lambda: False,
    ) -> None:
        self._clock = clock
        self.commandTimeout = commandTimeout
        self.dataTimeout = dataTimeout
        self.minDataRate = minDataRate
        self._expired = expired
        self._paused = paused
        self._due: Optional[float] = None
        self._kind = LINE
        self._call: Optional[IDelayedCall] = None

    @property
    def kind(self) -> Optional[str]:
        """
        L{LINE}, L{DATA}, or L{None} when no deadline runs.
        """
        return None if self._due is None else self._kind

    def linePending(self, pending: bool, newLine: bool) -> None:
        """
        After input in line mode.

        @param pending: an incomplete command line is buffered.
        @param newLine: the input completed a line, so a pending one is a
            new line whose clock starts now.
        """
        if not pending:
            self._due = None  # in line mode no message data is pending either
            return
        if self._due is None or newLine or self._kind != LINE:
            self._kind = LINE
            self._setDue(self._clock.seconds() + self.commandTimeout)

    def startData(self) -> None:
        """
        Message data begins (DATA, BDAT, a literal).
        """
        self._kind = DATA
        self._setDue(self._clock.seconds() + self.dataTimeout)

    def dataReceived(self, octets: int) -> None:
        """
        C{octets} of message data arrived: extend the deadline by the time
        they take at the minimum rate, up to C{dataTimeout} from now.
        """
        if self._due is None or self._kind != DATA:
            return
        now = self._clock.seconds()
        self._due = min(self._due + octets / self.minDataRate, now + self.dataTimeout)

    def stop(self) -> None:
        """
        No deadline until the next call (the pending timer, if any, is
        cancelled).
        """
        self._due = None
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _setDue(self, due: float) -> None:
        self._due = due
        if self._call is not None and self._call.active():
            if self._call.getTime() <= due:
                return  # it fires early and re-arms
            self._call.cancel()
        self._call = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._check)

    def _check(self) -> None:
        self._call = None
        if self._due is None:
            return
        now = self._clock.seconds()
        if self._paused():
            # The server stopped reading: the client cannot finish.  Give it
            # its whole time again once reading is likely to have resumed.
            full = self.commandTimeout if self._kind == LINE else self.dataTimeout
            self._setDue(max(self._due, now + full))
            return
        if now < self._due:
            self._call = self._clock.callLater(self._due - now, self._check)
            return
        kind, self._due = self._kind, None
        self._expired(kind)
