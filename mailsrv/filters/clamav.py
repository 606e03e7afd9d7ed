# -*- test-case-name: tests.filters.test_clamav -*-
"""
Virus scanning with clamd, over its C{INSTREAM} command.

clamd is reached on a UNIX socket (C{LocalSocket}) or TCP
(C{TCPSocket}); the message is streamed from the spool file in chunks,
each prefixed with its length in four octets (network order), ended by a
zero-length chunk, and clamd answers with one NUL-terminated line:
C{stream: OK}, C{stream: <signature> FOUND} or C{<problem> ERROR}
(clamd(8), "INSTREAM").  The C{z} command prefix makes every line NUL
terminated.

clamd drops a stream longer than its C{StreamMaxLength}; this client knows
that limit from the configuration and does not send larger messages at
all (they are accepted unscanned, logged), rather than sending the first
part and having the connection cut.  Scanning only a prefix would hide an
attachment after it just the same.

Infected mail is refused (the signature named in the reply and the log).
When clamd cannot be reached, fails or takes longer than the timeout, the
fail mode decides: C{tempfail} (the default; the sender retries) or
C{accept}.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import TYPE_CHECKING, Any, BinaryIO, Optional

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure

from mailsrv.errors import ErrorKind
from mailsrv.envelope import Envelope, Session
from mailsrv.filters.base import Filter
from mailsrv.interfaces import ACCEPT, FilterAction, FilterResult, IMessageContent

if TYPE_CHECKING:
    from mailsrv.config.schema import Config

# A reply longer than this is not clamd.
MAX_REPLY = 4096


class ClamdError(Exception):
    """
    clamd could not scan the stream (its C{ERROR} reply, or a broken
    connection).
    """


@dataclasses.dataclass(frozen=True)
class ScanResult:
    """
    @ivar signature: the name of what clamd found, or L{None} when clean.
    """

    signature: Optional[str] = None

    @property
    def infected(self) -> bool:
        return self.signature is not None


def parseReply(reply: bytes) -> ScanResult:
    """
    Interpret clamd's answer to C{INSTREAM}.

    @raise ClamdError: for an C{ERROR} reply or anything unexpected.
    """
    text = reply.rstrip(b"\0\n").decode("utf-8", "replace")
    if text.endswith(" FOUND"):
        name = text[: -len(" FOUND")]
        _, sep, signature = name.partition(": ")
        return ScanResult((signature if sep else name).strip())
    if text.endswith(": OK") or text == "OK":
        return ScanResult()
    raise ClamdError(text or "empty reply")


class _ChunkSender(FileSender):
    """
    L{FileSender} with a configurable chunk size.
    """

    def __init__(self, chunkSize: int) -> None:
        self.CHUNK_SIZE = chunkSize


class _InstreamProtocol(Protocol):
    """
    One C{zINSTREAM} exchange: stream the file, then read the reply.
    """

    def __init__(self, source: BinaryIO, chunkSize: int) -> None:
        self.source = source
        self.chunkSize = chunkSize
        self.reply: "defer.Deferred[bytes]" = defer.Deferred(lambda _: self._abort())
        self._buffer = b""

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionMade(self) -> None:
        self.transport.write(b"zINSTREAM\0")  # type: ignore[union-attr]
        sender = _ChunkSender(self.chunkSize)
        d = sender.beginFileTransfer(self.source, self.transport, lambda chunk: struct.pack("!L", len(chunk)) + chunk)
        d.addCallbacks(self._sent, lambda f: None)

    def _sent(self, _: object) -> None:
        self.transport.write(struct.pack("!L", 0))  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\0")
        if end >= 0 or len(self._buffer) > MAX_REPLY:
            if not self.reply.called:
                self.reply.callback(self._buffer[: end if end >= 0 else MAX_REPLY])
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.reply.called:
            if self._buffer:
                # clamd may close right after a reply without the NUL.
                self.reply.callback(self._buffer)
            else:
                self.reply.errback(ClamdError(f"connection closed: {reason.getErrorMessage()}"))


class ClamdClient:
    """
    Scans streams with one clamd.

    @param endpoint: where clamd listens.
    @param streamMaxLength: clamd's C{StreamMaxLength}.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        streamMaxLength: int = 25 * 1024 * 1024,
        chunkSize: int = 64 * 1024,
        timeout: float = 60.0,
    ) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self.streamMaxLength = streamMaxLength
        self.chunkSize = chunkSize
        self.timeout = timeout

    def scan(self, source: BinaryIO) -> "defer.Deferred[ScanResult]":
        """
        Stream C{source} (from its current position) to clamd.

        @raise ClamdError: clamd could not scan it.
        @raise defer.TimeoutError: no answer within the timeout.
        """
        d = defer.Deferred.fromCoroutine(self._scan(source))
        d.addTimeout(self.timeout, self.clock)
        return d

    async def _scan(self, source: BinaryIO) -> ScanResult:
        protocol = await self.endpoint.connect(
            Factory.forProtocol(lambda: _InstreamProtocol(source, self.chunkSize))  # type: ignore[arg-type]
        )
        return parseReply(await protocol.reply)


class ClamAVFilter(Filter):
    """
    Refuses infected mail at the end of data, for every session (a
    compromised account sending malware is refused as well).
    """

    name = "clamav"
    log = Logger()

    def __init__(self, client: ClamdClient, failMode: str = "tempfail") -> None:
        self.client = client
        self.failMode = failMode

    def checkMessage(
        self, session: Session, envelope: Envelope, message: IMessageContent
    ) -> "defer.Deferred[FilterResult]":
        return defer.Deferred.fromCoroutine(self._check(session, envelope, message))

    async def _check(self, session: Session, envelope: Envelope, message: IMessageContent) -> FilterResult:
        context: dict[str, Any] = {"sessionId": session.sessionId, "endpoint": session.endpoint.name}
        context["msgId"] = envelope.messageId
        if message.size > self.client.streamMaxLength:
            self.log.warn(
                "Message of {size} octets not scanned for viruses: clamd takes at most {limit}",
                size=message.size,
                limit=self.client.streamMaxLength,
                **context,
            )
            return ACCEPT
        source = message.open()
        try:
            result = await self.client.scan(source)
        except Exception as e:
            if isinstance(e, ClamdError) and "size limit" in str(e).lower():
                self.log.warn(
                    "clamd refused a message of {size} octets as too long; stream_max_length is larger "
                    "than clamd's StreamMaxLength",
                    size=message.size,
                    **context,
                )
                return ACCEPT
            self.log.error(
                "Virus scan failed ({failMode}): {error}", failMode=self.failMode, error=repr(e), **context
            )
            if self.failMode == "accept":
                return ACCEPT
            return FilterResult(FilterAction.TEMPFAIL, "Virus scan unavailable, try again later")
        finally:
            source.close()
        if result.infected:
            self.log.warn(
                "Virus {signature} found in a message from {peer} ({mailFrom}), refused",
                signature=result.signature,
                peer=session.peerHost,
                mailFrom=str(envelope.mailFrom) if envelope.mailFrom else "<>",
                **context,
            )
            # 554 5.7.1, as clamav-milter and amavis answer for viruses.
            return FilterResult(
                FilterAction.REJECT,
                f"Message rejected: virus found ({result.signature})",
                kind=ErrorKind.POLICY,
                reason="virus",
            )
        self.log.debug("Virus scan: clean", **context)
        return ACCEPT


def clamdEndpoint(reactor: Any, address: str, timeout: float = 10.0) -> IStreamClientEndpoint:
    """
    The endpoint for C{address}: a UNIX socket path, or C{host:port}.
    """
    if address.startswith("/"):
        return UNIXClientEndpoint(reactor, address, timeout=timeout)
    from mailsrv.config.load import parseListen

    host, port = parseListen(address)
    return HostnameEndpoint(reactor, host.encode("idna"), port, timeout=timeout)


def clamavFilters(config: "Config", reactor: Any) -> list[ClamAVFilter]:
    """
    The ClamAV filter when C{[clamav] enabled}.
    """
    settings = config.clamav
    if not settings.enabled:
        return []
    client = ClamdClient(
        clamdEndpoint(reactor, settings.address, min(settings.timeout, 10.0)),
        reactor,
        streamMaxLength=settings.streamMaxLength,
        chunkSize=settings.chunkSize,
        timeout=settings.timeout,
    )
    return [ClamAVFilter(client, settings.failMode)]
