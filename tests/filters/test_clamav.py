# -*- test-case-name: tests.filters.test_clamav -*-
"""
Tests for L{mailsrv.filters.clamav} against a real clamd (Debian
clamav-daemon) on loopback with a test signature for the EICAR string.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from mailsrv.errors import ErrorKind
from mailsrv.envelope import Address, Envelope, Session
from mailsrv.filters.clamav import ClamAVFilter, ClamdClient, ClamdError, clamdEndpoint, parseReply
from mailsrv.interfaces import FilterAction, IFilter
from mailsrv.pipeline.content import SpooledMessage
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode
from mailsrv.testing.clamd import EICAR, REPORTED, ClamdProcess, clamdBinary

MX = EndpointPolicy("smtp", Protocol.SMTP, ("127.0.0.1:25",), TLSMode.NONE, auth=False)

CLEAN = b"From: a@remote.test\r\nSubject: hello\r\n\r\nNothing to see here.\r\n"
INFECTED = (
    b"From: a@remote.test\r\nSubject: attachment\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=eicar.com\r\n\r\n"
    + EICAR
    + b"\r\n--b--\r\n"
)


def spooled(data: bytes) -> SpooledMessage:
    message = SpooledMessage()
    message.write(data)
    message.finish()
    return message


class ParseReplyTests(SynchronousTestCase):
    def test_replies(self) -> None:
        """
        clamd's three kinds of answer: OK, FOUND with the signature, ERROR.
        """
        self.assertFalse(parseReply(b"stream: OK\0").infected)
        self.assertEqual(parseReply(b"stream: Eicar-Test-Signature FOUND\0").signature, "Eicar-Test-Signature")
        self.assertRaises(ClamdError, parseReply, b"INSTREAM size limit exceeded. ERROR\0")
        self.assertRaises(ClamdError, parseReply, b"")


class ClamdTests(TestCase):
    """
    Scans against the real daemon, started once for the class.
    """

    clamd: Any = None

    @classmethod
    def setUpClass(cls) -> None:
        if clamdBinary() is None:
            raise SkipTest("clamd is not installed (Debian package clamav-daemon)")
        workdir = Path(tempfile.mkdtemp(prefix="mailsrv-clamd-"))
        cls.clamd = ClamdProcess(workdir, streamMaxLength=64 * 1024)
        cls.clamd.start()

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.clamd is not None:
            cls.clamd.stop()
            shutil.rmtree(cls.clamd.workdir, ignore_errors=True)

    def client(self, **kw: Any) -> ClamdClient:
        kw.setdefault("streamMaxLength", 64 * 1024)
        endpoint = kw.pop("endpoint", None) or TCP4ClientEndpoint(reactor, "127.0.0.1", self.clamd.port)
        return ClamdClient(endpoint, reactor, **kw)

    def check(self, f: ClamAVFilter, data: bytes) -> "defer.Deferred[Any]":
        envelope = Envelope(mailFrom=Address.fromString("a@remote.test"))
        return f.checkMessage(Session(endpoint=MX, peerHost="192.0.2.1"), envelope, spooled(data))

    def test_interface(self) -> None:
        """
        The filter provides L{IFilter}.
        """
        self.assertTrue(verifyObject(IFilter, ClamAVFilter(self.client())))

    async def _clean(self) -> None:
        result = await self.check(ClamAVFilter(self.client()), CLEAN)
        self.assertEqual(result.action, FilterAction.ACCEPT)

    def test_clean(self) -> "defer.Deferred[None]":
        """
        A clean message passes.
        """
        return defer.Deferred.fromCoroutine(self._clean())

    async def _infected(self) -> None:
        result = await self.check(ClamAVFilter(self.client()), INFECTED)
        self.assertEqual(result.action, FilterAction.REJECT)
        self.assertEqual(result.reply, f"Message rejected: virus found ({REPORTED})")
        self.assertEqual(result.kind, ErrorKind.POLICY)

    def test_infected(self) -> "defer.Deferred[None]":
        """
        A message with the EICAR file attached is refused, naming the
        signature.
        """
        return defer.Deferred.fromCoroutine(self._infected())

    async def _unixSocket(self) -> None:
        client = self.client(endpoint=UNIXClientEndpoint(reactor, str(self.clamd.socketPath)))
        self.assertEqual((await client.scan(io.BytesIO(INFECTED))).signature, REPORTED)
        self.assertFalse((await client.scan(io.BytesIO(CLEAN))).infected)

    def test_unixSocket(self) -> "defer.Deferred[None]":
        """
        clamd's UNIX socket (C{LocalSocket}) works as well as TCP.
        """
        return defer.Deferred.fromCoroutine(self._unixSocket())

    async def _smallChunks(self) -> None:
        client = self.client(chunkSize=7)
        self.assertEqual((await client.scan(io.BytesIO(INFECTED))).signature, REPORTED)

    def test_smallChunks(self) -> "defer.Deferred[None]":
        """
        The signature is found across many small chunks: chunk boundaries
        are framing, not content.
        """
        return defer.Deferred.fromCoroutine(self._smallChunks())

    async def _overLimitNotSent(self) -> None:
        connects: list[Any] = []

        class Recording:
            def connect(self, factory: Any) -> Any:
                connects.append(factory)
                return defer.fail(AssertionError("must not connect"))

        f = ClamAVFilter(self.client(endpoint=Recording(), streamMaxLength=len(INFECTED) - 1))
        result = await self.check(f, INFECTED)
        self.assertEqual(result.action, FilterAction.ACCEPT)
        self.assertEqual(connects, [])

    def test_overLimitNotSent(self) -> "defer.Deferred[None]":
        """
        A message longer than the configured StreamMaxLength is not sent to
        clamd at all (accepted unscanned, logged).
        """
        return defer.Deferred.fromCoroutine(self._overLimitNotSent())

    async def _clamdLimitSmaller(self) -> None:
        # clamd's own limit is 64 KiB; the client believes 1 MiB.
        big = CLEAN + b"x" * (128 * 1024) + b"\r\n"
        client = self.client(streamMaxLength=1024 * 1024)
        with self.assertRaises(ClamdError):
            await client.scan(io.BytesIO(big))
        result = await self.check(ClamAVFilter(client), big)
        self.assertEqual(result.action, FilterAction.ACCEPT)

    def test_clamdLimitSmaller(self) -> "defer.Deferred[None]":
        """
        When clamd's StreamMaxLength is smaller than configured, clamd's
        "size limit exceeded" is logged and the message accepted, not
        deferred forever.
        """
        return defer.Deferred.fromCoroutine(self._clamdLimitSmaller())

    async def _unreachable(self) -> None:
        dead = TCP4ClientEndpoint(reactor, "127.0.0.1", 9, timeout=2)
        result = await self.check(ClamAVFilter(self.client(endpoint=dead)), CLEAN)
        self.assertEqual(result.action, FilterAction.TEMPFAIL)
        result = await self.check(ClamAVFilter(self.client(endpoint=dead), failMode="accept"), INFECTED)
        self.assertEqual(result.action, FilterAction.ACCEPT)

    def test_unreachable(self) -> "defer.Deferred[None]":
        """
        With clamd down, mail is deferred (fail mode C{tempfail}) or
        accepted unscanned (fail mode C{accept}).
        """
        return defer.Deferred.fromCoroutine(self._unreachable())

    async def _timeout(self) -> None:
        silent = reactor.listenTCP(0, protocol.Factory.forProtocol(protocol.Protocol), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", silent.getHost().port)
        result = await self.check(ClamAVFilter(self.client(endpoint=endpoint, timeout=0.5)), CLEAN)
        self.assertEqual(result.action, FilterAction.TEMPFAIL)

    def test_timeout(self) -> "defer.Deferred[None]":
        """
        A clamd that accepts the stream but never answers is given up on
        after the timeout, and the connection is closed.
        """
        return defer.Deferred.fromCoroutine(self._timeout())

    def test_endpointFromAddress(self) -> None:
        """
        A path means clamd's UNIX socket, C{host:port} its TCP socket.
        """
        self.assertIsInstance(clamdEndpoint(reactor, "/run/clamav/clamd.ctl"), UNIXClientEndpoint)
        self.assertEqual(type(clamdEndpoint(reactor, "127.0.0.1:3310")).__name__, "HostnameEndpoint")
