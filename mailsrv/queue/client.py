# -*- test-case-name: tests.queue.test_client -*-
"""
The ESMTP client that hands one message to one server, written for the
queue instead of reusing Twisted's C{ESMTPSender} (which dot-stuffs per
chunk, cannot pipeline and sends no SIZE/BODY/SMTPUTF8 parameters; see
the project's Twisted notes, section 4.2).

L{ReplyReader} is the wire protocol: it parses replies and hands them, in
order, to whoever awaits L{ReplyReader.nextReply}; L{sendMessage} is the
conversation, written as a coroutine: greeting, EHLO, STARTTLS, AUTH, then
MAIL/RCPT/DATA (pipelined when offered, RFC 2920), and the body streamed
from the spool file through L{DotStuffer}.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections import deque
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure

from mailsrv.queue.stuffing import DotStuffer
from mailsrv.tls import negotiatedTLS

MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 100

log = Logger()


@dataclasses.dataclass(frozen=True)
class SMTPReply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}"[:500]

    @property
    def status(self) -> str:
        """
        The enhanced status code of the reply, or one derived from the
        basic code (RFC 3463).
        """
        m = re.match(r"^([245])\.(\d{1,3})\.(\d{1,3})\b", self.lines[0] if self.lines else "")
        if m and m.group(1) == str(self.code)[0]:
            return m.group(0)
        return f"{str(self.code)[0]}.0.0"


class ProtocolError(Exception):
    """
    The server broke the protocol, went silent or went away.
    """


class ReplyReader(protocol.Protocol):
    """
    Parses replies; each L{nextReply} gets the next one (already received
    or still to come) or a L{ProtocolError} after C{timeout} seconds or when
    the connection is lost.
    """

    def __init__(self, clock: IReactorTime, timeout: float) -> None:
        self.clock = clock
        self.timeout = timeout
        self._buffer = b""
        self._lines: list[str] = []
        self._ready: deque[Any] = deque()  # SMTPReply or Failure
        self._waiting: deque[defer.Deferred[SMTPReply]] = deque()
        self._timer: Any = None
        self._lost: Optional[Failure] = None
        # The negotiated TLS (a TLSInfo) once the handshake completed.
        self.tls: Any = None

    # -- wire ------------------------------------------------------------

    def connectionMade(self) -> None:
        # Commands and the final dot are small writes that wait for the
        # server's reply; Nagle would hold each for a delayed ACK (~40 ms).
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            setNoDelay(True)

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._line(line.rstrip(b"\r"))
        if len(self._buffer) > MAX_REPLY_LINE:
            self._fail(ProtocolError("reply line too long"))

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        if len(text) < 3 or not text[:3].isdigit() or text[3:4] not in ("", " ", "-"):
            self._fail(ProtocolError(f"malformed reply {text[:80]!r}"))
            return
        self._lines.append(text[4:])
        if len(self._lines) > MAX_REPLY_LINES:
            self._fail(ProtocolError("reply too long"))
            return
        if text[3:4] != "-":
            reply = SMTPReply(int(text[:3]), tuple(self._lines))
            self._lines = []
            self._deliver(reply)

    def _deliver(self, item: Any) -> None:
        if self._waiting:
            self._cancelTimer()
            d = self._waiting.popleft()
            if self._waiting:
                self._startTimer()
            if isinstance(item, Failure):
                d.errback(item)
            else:
                d.callback(item)
        else:
            self._ready.append(item)

    def _fail(self, error: Exception) -> None:
        if self._lost is None:
            self._lost = Failure(error)
        if self.transport is not None:
            self.transport.abortConnection()
        self._flushWaiting()

    def _flushWaiting(self) -> None:
        self._cancelTimer()
        assert self._lost is not None
        while self._waiting:
            self._waiting.popleft().errback(self._lost)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self._lost is None:
            self._lost = Failure(ProtocolError(f"connection lost: {reason.getErrorMessage()}"))
        self._flushWaiting()

    # -- timers ------------------------------------------------------------

    def _startTimer(self) -> None:
        self._timer = self.clock.callLater(self.timeout, self._timedOut)

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timedOut(self) -> None:
        self._timer = None
        self._fail(ProtocolError("timeout waiting for a reply"))

    # -- API ---------------------------------------------------------------

    def nextReply(self) -> "defer.Deferred[SMTPReply]":
        if self._ready:
            item = self._ready.popleft()
            return defer.fail(item) if isinstance(item, Failure) else defer.succeed(item)
        if self._lost is not None:
            return defer.fail(self._lost)
        d: defer.Deferred[SMTPReply] = defer.Deferred()
        self._waiting.append(d)
        if self._timer is None:
            self._startTimer()
        return d

    def send(self, line: str) -> None:
        self.transport.write(line.encode("utf-8") + b"\r\n")

    async def command(self, line: str) -> SMTPReply:
        self.send(line)
        return await self.nextReply()


@dataclasses.dataclass(frozen=True)
class ClientOptions:
    """
    How to talk to one server.

    @ivar startTLS: a client TLS context factory to use with STARTTLS when
        the server offers it, or L{None}.
    @ivar requireTLS: fail (temporarily) unless TLS is up before MAIL,
        for relay hosts: the password must never travel in clear.
    @ivar implicitTLS: the connection is TLS from the start.
    @ivar username/password: AUTH PLAIN (or LOGIN) after TLS.
    @ivar verifiesTLS: whether the TLS creators check the server's
        certificate and name (the handshake fails otherwise), so that a
        TLS session established with them is a verified one.
    """

    heloName: str
    startTLS: Any = None
    requireTLS: bool = False
    implicitTLS: bool = False
    verifiesTLS: bool = False
    username: Optional[str] = None
    password: Optional[str] = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass
class RecipientResult:
    address: str
    reply: SMTPReply

    @property
    def delivered(self) -> bool:
        return 200 <= self.reply.code < 300


class HostFailure(Exception):
    """
    This server could not take the message (no connection, bad greeting,
    no TLS when required, broken session before the data was sent): try
    the next one.  The message is a diagnostic for the queue.
    """

    def __init__(self, diagnostic: str, permanent: bool = False) -> None:
        super().__init__(diagnostic)
        self.diagnostic = diagnostic
        self.permanent = permanent


_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+)*$")


def formatPath(address: str) -> str:
    """
    C{<address>} with the local part quoted when it is not a dot-atom.
    """
    if not address:
        return "<>"
    local, _, domain = address.rpartition("@")
    if not _DOT_ATOM.match(local):
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"<{local}@{domain}>"


def _extensions(reply: SMTPReply) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.partition(" ")
        out[keyword.upper()] = params
    return out


def _needsUTF8(sender: str, recipients: Sequence[str], mailParams: dict[str, Optional[str]]) -> bool:
    return "SMTPUTF8" in mailParams or not all(a.isascii() for a in (sender, *recipients))


async def sendMessage(
    reader: ReplyReader,
    options: ClientOptions,
    sender: str,
    recipients: Sequence[str],
    mailParams: dict[str, Optional[str]],
    messagePath: Path,
    size: int,
    peerName: str,
    context: dict[str, Any],
) -> list[RecipientResult]:
    """
    Run one transaction on a connected L{ReplyReader}.

    @return: a result for every recipient (accepted and delivered, or the
        reply that refused it).
    @raise HostFailure: when the next server should be tried.
    """
    try:
        return await _transaction(reader, options, sender, recipients, mailParams, messagePath, size, peerName, context)
    except ProtocolError as e:
        raise HostFailure(f"conversation with {peerName} failed: {e}")
    finally:
        if reader.transport is not None and reader._lost is None:
            try:
                reader.send("QUIT")
            except Exception:
                pass
            reader.transport.loseConnection()


async def _transaction(
    reader: ReplyReader,
    options: ClientOptions,
    sender: str,
    recipients: Sequence[str],
    mailParams: dict[str, Optional[str]],
    messagePath: Path,
    size: int,
    peerName: str,
    context: dict[str, Any],
) -> list[RecipientResult]:
    greeting = await reader.nextReply()
    if greeting.code != 220:
        raise HostFailure(f"{peerName} greeted with {greeting}")
    ehlo = await reader.command(f"EHLO {options.heloName}")
    if ehlo.code != 250:
        helo = await reader.command(f"HELO {options.heloName}")
        if helo.code != 250:
            raise HostFailure(f"{peerName} refused EHLO and HELO: {helo}")
        extensions: dict[str, str] = {}
    else:
        extensions = _extensions(ehlo)
    tlsUp = options.implicitTLS
    if not tlsUp and options.startTLS is not None and "STARTTLS" in extensions:
        reply = await reader.command("STARTTLS")
        if reply.code == 220:
            reader.transport.startTLS(options.startTLS)
            ehlo = await reader.command(f"EHLO {options.heloName}")
            if ehlo.code != 250:
                raise HostFailure(f"{peerName} refused EHLO after STARTTLS: {ehlo}")
            extensions = _extensions(ehlo)
            tlsUp = True
        else:
            log.info("STARTTLS refused by {peer}: {reply}", peer=peerName, reply=str(reply), **context)
    info = negotiatedTLS(reader.transport) if tlsUp else None
    reader.tls = info
    if info is not None:
        log.info(
            "TLS with {peer}: {tlsVersion} {cipher}",
            peer=peerName,
            tlsVersion=info.version,
            cipher=info.cipher,
            **context,
        )
    else:
        log.info("No TLS with {peer} (not offered or refused)", peer=peerName, **context)
    if options.requireTLS and not tlsUp:
        raise HostFailure(f"{peerName} did not offer STARTTLS, which is required for it")
    if options.username is not None:
        await _authenticate(reader, options, extensions, peerName)

    if _needsUTF8(sender, recipients, mailParams) and "SMTPUTF8" not in extensions:
        reply = SMTPReply(553, ("5.6.7 Recipient's server does not support SMTPUTF8",))
        return [RecipientResult(r, reply) for r in recipients]
    mail = f"MAIL FROM:{formatPath(sender)}"
    if "SIZE" in extensions:
        mail += f" SIZE={size}"
    if mailParams.get("BODY", "").upper() == "8BITMIME" and "8BITMIME" in extensions:  # type: ignore[union-attr]
        mail += " BODY=8BITMIME"
    if "SMTPUTF8" in extensions and _needsUTF8(sender, recipients, mailParams):
        mail += " SMTPUTF8"

    commands = [mail] + [f"RCPT TO:{formatPath(r)}" for r in recipients] + ["DATA"]
    replies: list[SMTPReply] = []
    if "PIPELINING" in extensions:
        for line in commands:
            reader.send(line)
        for _ in commands:
            replies.append(await reader.nextReply())
    else:
        for line in commands:
            replies.append(await reader.command(line))
            if len(replies) == 1 and replies[0].code != 250:
                break
    mailReply = replies[0]
    if mailReply.code != 250:
        return [RecipientResult(r, mailReply) for r in recipients]
    results = [RecipientResult(r, reply) for r, reply in zip(recipients, replies[1 : 1 + len(recipients)])]
    accepted = [res for res in results if res.reply.code in (250, 251)]
    dataReply = replies[1 + len(recipients)]
    if dataReply.code != 354:
        for res in accepted:
            res.reply = dataReply
        return results
    if not accepted:
        # A server that said 354 with no recipient: send an empty message
        # and forget it.
        reader.transport.write(b".\r\n")
        await reader.nextReply()
        return results
    await _sendBody(reader, messagePath)
    final = await reader.nextReply()
    for res in accepted:
        res.reply = final
    return results


async def _sendBody(reader: ReplyReader, messagePath: Path) -> None:
    stuffer = DotStuffer()
    with open(messagePath, "rb") as f:
        await FileSender().beginFileTransfer(f, reader.transport, stuffer.feed)
    reader.transport.write(stuffer.finish())


async def _authenticate(reader: ReplyReader, options: ClientOptions, extensions: dict[str, str], peerName: str) -> None:
    assert options.username is not None and options.password is not None
    mechanisms = extensions.get("AUTH", "").upper().split()
    user, password = options.username.encode("utf-8"), options.password.encode("utf-8")
    if "PLAIN" in mechanisms:
        token = base64.b64encode(b"\0" + user + b"\0" + password).decode("ascii")
        reply = await reader.command(f"AUTH PLAIN {token}")
    elif "LOGIN" in mechanisms:
        reply = await reader.command("AUTH LOGIN")
        if reply.code == 334:
            reply = await reader.command(base64.b64encode(user).decode("ascii"))
        if reply.code == 334:
            reply = await reader.command(base64.b64encode(password).decode("ascii"))
    else:
        raise HostFailure(f"{peerName} offers no AUTH PLAIN or LOGIN")
    if reply.code != 235:
        raise HostFailure(f"authentication at {peerName} failed: {reply}")


def connectedReader(clock: IReactorTime, timeout: float) -> Callable[[], ReplyReader]:
    return lambda: ReplyReader(clock, timeout)
