# -*- test-case-name: tests.protocols.test_imap_flow -*-
"""
Flow control of the IMAP server's output: while the transport's write
buffer is full the server answers no further command, queues what the
client pipelines (reading stops once C{MAX_QUEUED} octets wait), and steps
aside for the producers that stream FETCH bodies.

In memory over a transport that behaves like Twisted's TCP one (it pauses
its push producer once too much output is unread, resumes it when the
client reads, and drives pull producers only while its buffer has room);
then over real loopback sockets, plaintext and implicit TLS, with clients
that read slowly, not at all for a while, or wait for the server to close.
"""

from __future__ import annotations

import asyncio
import gc
import re
import socket
import ssl
import time
from pathlib import Path
from typing import Any, Callable, Optional

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer, reactor, threads
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.mail.imap4 import IAccount
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial import unittest
from zope.interface import alsoProvides

from mailsrv.auth.realm import MailRealm
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode
from mailsrv.protocols.imap import fetch
from mailsrv.protocols.imap.account import accountFactory
from mailsrv.protocols.imap.server import MAX_QUEUED, IMAPFactory, IMAPServer
from mailsrv.storage.memory import MemoryMailStore
from mailsrv.tls import ServerTLS, generateSelfSigned
from tests.protocols.test_imap import ALICE, HOSTNAME, IMAP, IMAPS, MSG1, IMAPTestMixin, TLSCapableTransport, deliver

CAPABILITY_REPLY = re.compile(rb"\* CAPABILITY [^\r]*\r\n(\w+) OK CAPABILITY completed\r\n")


def bigMessage(number: int, size: int) -> bytes:
    """
    A message of about C{size} octets whose body lines name it.
    """
    header = b"Subject: big %d\r\nMessage-ID: <%d@example.test>\r\n\r\n" % (number, number)
    line = b"message %06d " % (number,) + b"x" * 60 + b"\r\n"
    return header + line * (size // len(line))


class FlowTransport(TLSCapableTransport):
    """
    A transport that keeps output until the client reads it, like TCP: once
    more than C{limit} octets are unread each write pauses the push
    producer, and reading everything resumes it; a pull producer is asked
    for more only while the buffer has room.
    """

    limit = 16 * 1024
    producerPaused = False

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and self.streaming and len(self.io.getbuffer()) > self.limit:
            self.producerPaused = True
            self.producer.pauseProducing()

    def read(self) -> bytes:
        """
        The client reads everything written so far.
        """
        data = self.value()
        self.clear()
        if self.producer is not None and self.streaming and self.producerPaused:
            self.producerPaused = False
            self.producer.resumeProducing()
        return data


class FlowControlTests(IMAPTestMixin, unittest.SynchronousTestCase):
    """
    The server as its transport's push producer, in memory.
    """

    def connect(self, policy: EndpointPolicy = IMAP) -> tuple[IMAPServer, TLSCapableTransport]:
        factory = IMAPFactory(policy, self.portal, self.creator, HOSTNAME, clock=self.clock, maxMessageSize=10**8)
        server = factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
        server.log = Logger(namespace="test", observer=self.events.append)
        transport = FlowTransport()
        if policy.implicitTLS:
            alsoProvides(transport, ISSLTransport)
        server.makeConnection(transport)
        self.server, self.transport = server, transport
        return server, transport

    def pump(self) -> None:
        """
        Run the clock's due calls and drive a pull producer while the
        buffer has room, until nothing moves.
        """
        transport = self.transport
        assert isinstance(transport, FlowTransport)
        for _ in range(100_000):
            progressed = False
            producer = transport.producer
            if producer is not None and not transport.streaming and len(transport.io.getbuffer()) <= transport.limit:
                producer.resumeProducing()
                progressed = True
            if any(c.getTime() <= self.clock.seconds() for c in self.clock.getDelayedCalls()):
                self.clock.advance(0)
                progressed = True
            if not progressed:
                return
        raise AssertionError("server never settled")

    def readAll(self, until: Optional[bytes] = None, maxReads: int = 100_000) -> bytes:
        """
        Read like a slow client: everything written so far, then let the
        server go on, until nothing more comes (or C{until} ends the data).
        """
        transport = self.transport
        assert isinstance(transport, FlowTransport)
        out = bytearray()
        for _ in range(maxReads):
            self.pump()
            data = transport.read()
            self.pump()
            out += data
            if until is not None and out.endswith(until):
                return bytes(out)
            if not data and not transport.value():
                return bytes(out)
        raise AssertionError("output never ended")

    def loggedIn(self) -> None:
        self.connect(IMAPS)
        self.assertTrue(self.send(b"l LOGIN alice@example.test secret\r\n").startswith(b"l OK"))

    # ------------------------------------------------------------ basics

    def test_ownPushProducer(self) -> None:
        """
        A producer object of the server's own, not the server (whose
        LineReceiver C{pauseProducing} would stop reading), is registered
        as a streaming producer from the start.
        """
        server, transport = self.connect(IMAPS)
        self.assertIsNotNone(transport.producer)
        self.assertIsNot(transport.producer, server)
        self.assertTrue(transport.streaming)

    def test_nonReaderAnsweredOnlyAsItReads(self) -> None:
        """
        A client pipelining CAPABILITY without reading gets replies only up
        to the transport's limit; the rest of its lines wait, and reading
        stops once C{MAX_QUEUED} octets of them do (not before); as it
        reads, the rest is answered, in order, and reading starts again.
        """
        server, transport = self.connect(IMAPS)
        assert isinstance(transport, FlowTransport)
        transport.read()
        count = 4 * MAX_QUEUED // 19
        lines = b"".join(b"c%05d CAPABILITY\r\n" % (i,) for i in range(count))
        segment = 4096
        fed = 0
        while transport.producerState == "producing" and fed < len(lines):
            self.assertEqual(server.blocked is None, fed == 0)
            server.dataReceived(lines[fed : fed + segment])
            fed += segment
        self.assertEqual(transport.producerState, "paused")
        self.assertLess(len(transport.value()), transport.limit + 1024)
        queued = sum(len(line) + 2 for line in server.blocked or [])
        self.assertGreater(queued, MAX_QUEUED)
        self.assertLessEqual(queued, MAX_QUEUED + segment)
        out = bytearray()
        while True:
            # The client reads; the transport reads again when resumed.
            out += transport.read()
            if transport.producerState == "producing" and fed < len(lines):
                server.dataReceived(lines[fed : fed + segment])
                fed += segment
            elif not transport.value():
                break
        tags = CAPABILITY_REPLY.findall(out)
        self.assertEqual(tags, [b"c%05d" % (i,) for i in range(count)])
        self.assertEqual(CAPABILITY_REPLY.sub(b"", out), b"")
        self.assertEqual(transport.producerState, "producing")
        self.assertIsNone(server.blocked)
        self.assertEqual(self.send(b"n NOOP\r\n"), b"n OK NOOP completed\r\n")

    def test_tlsHandshakeNotStarved(self) -> None:
        """
        Under TLS the greeting stays buffered (the producer paused) until
        the handshake is done, and the handshake needs the server to read:
        so reading goes on while lines are queued below C{MAX_QUEUED}, and
        the end of the handshake (resume) answers them.
        """
        server, transport = self.connect(IMAPS)
        transport.producer.pauseProducing()
        transport.clear()
        server.dataReceived(b"a NOOP\r\nb CAPABILITY\r\n")
        self.assertEqual((transport.value(), transport.producerState), (b"", "producing"))
        transport.producer.resumeProducing()
        out = transport.value()
        self.assertTrue(out.startswith(b"a OK NOOP completed\r\n* CAPABILITY "), out)
        self.assertTrue(out.endswith(b"b OK CAPABILITY completed\r\n"), out)

    def test_commandEndingWhileOutputFull(self) -> None:
        """
        A command that completes (here a failed login's delay) while the
        client still has not read does not let the queued lines run; the
        drain does.
        """
        server, transport = self.connect(IMAPS)
        server.dataReceived(b"a LOGIN alice@example.test wrong\r\nb NOOP\r\n")
        transport.producer.pauseProducing()
        transport.clear()
        self.clock.advance(1.0)
        self.assertEqual(transport.value(), b"a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
        self.assertEqual(server.blocked, [b"b NOOP"])
        transport.clear()
        transport.producer.resumeProducing()
        self.assertEqual(transport.value(), b"b OK NOOP completed\r\n")

    # ------------------------------------------------------------ FETCH

    def test_fetchBodiesStepAside(self) -> None:
        """
        Bodies above C{SMALL_BODY} are streamed by a pull producer, which
        gets the transport to itself; the server's producer comes back
        after each, and commands pipelined behind the FETCH are answered
        after it, in order, while the client reads slowly.
        """
        sizes = [fetch.SMALL_BODY * 3, 1000, fetch.SMALL_BODY + 1, fetch.SMALL_BODY * 2]
        bodies = [bigMessage(i, size) for i, size in enumerate(sizes)]
        for body in bodies:
            deliver(self.store, ALICE, body)
        self.loggedIn()
        self.send(b"s SELECT INBOX\r\n")
        output = self.server._output
        self.transport.clear()
        self.server.dataReceived(b"f FETCH 1:* (BODY.PEEK[])\r\n" + b"n NOOP\r\n" * 100 + b"g FETCH 2 (FLAGS)\r\n")
        self.assertIsNot(self.transport.producer, output)
        out = self.readAll(until=b"g OK FETCH completed\r\n")
        self.assertIs(self.transport.producer, output)
        expected = b"".join(
            b"* %d FETCH (BODY[] {%d}\r\n%b)\r\n" % (i + 1, len(body), body) for i, body in enumerate(bodies)
        )
        self.assertEqual(
            out,
            expected + b"f OK FETCH completed\r\n" + b"n OK NOOP completed\r\n" * 100
            + b"* 2 FETCH (FLAGS (\\Recent))\r\ng OK FETCH completed\r\n",
        )

    def test_stalledBodyReaderDropped(self) -> None:
        """
        A client that stops reading while a body streams is dropped after
        C{command_timeout} without a request for more; one that reads,
        however slowly, gets the whole body.
        """
        body = bigMessage(0, fetch.SMALL_BODY * 8)
        deliver(self.store, ALICE, body)
        self.loggedIn()
        self.send(b"s SELECT INBOX\r\n")
        self.transport.clear()
        self.server.dataReceived(b"f FETCH 1 (BODY.PEEK[])\r\n")
        self.pump()
        self.assertIsInstance(self.transport.producer, fetch._BodyProducer)
        for _ in range(3):
            self.clock.advance(self.server.timeouts.command - 1)
            self.transport.read()
            self.pump()
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(self.server.timeouts.command)
        self.assertTrue(self.transport.disconnecting)

    def test_bodyReadSlowlyNotDropped(self) -> None:
        """
        A client reading a streamed body a little at a time, each read
        within C{command_timeout}, gets all of it and keeps its connection.
        """
        body = bigMessage(0, fetch.SMALL_BODY * 8)
        deliver(self.store, ALICE, body)
        self.loggedIn()
        self.send(b"s SELECT INBOX\r\n")
        self.transport.clear()
        self.server.dataReceived(b"f FETCH 1 (BODY.PEEK[])\r\n")
        out = bytearray()
        for _ in range(1000):
            self.clock.advance(self.server.timeouts.command - 1)
            self.pump()
            out += self.transport.read()
            if out.endswith(b"f OK FETCH completed\r\n"):
                break
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(bytes(out), b"* 1 FETCH (BODY[] {%d}\r\n%b)\r\nf OK FETCH completed\r\n" % (len(body), body))
        # The stall timer went with the producer.
        self.assertFalse([c for c in self.clock.getDelayedCalls() if c.func == self.server._outputStalled])

    def test_fetchWaitsForRoom(self) -> None:
        """
        Bodies sent from memory are written each C{FETCH_FLUSH} octets, and
        while the client does not read, the FETCH goes no further: the
        output stays near one flush; reading lets it finish.
        """
        self.patch(fetch, "FETCH_FLUSH", 64 * 1024)
        for i in range(40):
            deliver(self.store, ALICE, bigMessage(i, 20 * 1024))
        self.loggedIn()
        self.send(b"s SELECT INBOX\r\n")
        self.transport.clear()
        self.server.dataReceived(b"f FETCH 1:* (BODY.PEEK[])\r\nn NOOP\r\n")
        self.pump()
        self.assertLess(len(self.transport.value()), 2 * fetch.FETCH_FLUSH)
        self.clock.advance(10)
        self.pump()
        self.assertLess(len(self.transport.value()), 2 * fetch.FETCH_FLUSH)
        out = self.readAll(until=b"n OK NOOP completed\r\n")
        self.assertEqual(len(re.findall(rb"\* \d+ FETCH \(BODY\[\] \{", out)), 40)
        self.assertTrue(out.endswith(b"f OK FETCH completed\r\nn OK NOOP completed\r\n"), out[-100:])

    def test_fetchWithoutFileFallsBackToTwisted(self) -> None:
        """
        Twisted's own spew methods (RFC822.TEXT here) start their producers
        after calling the flush they are given: the server's producer
        steps aside for them too.
        """
        body = bigMessage(1, fetch.SMALL_BODY * 2)
        deliver(self.store, ALICE, body)
        self.loggedIn()
        self.send(b"s SELECT INBOX\r\n")
        self.transport.clear()
        self.server.dataReceived(b"f FETCH 1 (RFC822.TEXT)\r\nn NOOP\r\n")
        out = self.readAll(until=b"n OK NOOP completed\r\n")
        text = body.split(b"\r\n\r\n", 1)[1]
        self.assertTrue(out.startswith(b"* 1 FETCH (RFC822.TEXT {%d}\r\n%b" % (len(text), text)), out[:200])
        self.assertIs(self.transport.producer, self.server._output)

    # ----------------------------------------------- other commands, closing

    def test_idleWhileOutputFull(self) -> None:
        """
        IDLE pushes new mail even while the client is behind; its DONE
        waits with the other queued lines until the client reads.
        """
        self.loggedIn()
        self.send(b"s SELECT INBOX\r\n")
        self.assertEqual(self.send(b"i IDLE\r\n"), b"+ idling\r\n")
        self.transport.producer.pauseProducing()
        self.transport.clear()
        deliver(self.store, ALICE, MSG1)
        self.assertEqual(self.transport.value(), b"* 1 EXISTS\r\n* 1 RECENT\r\n")
        self.transport.clear()
        self.server.dataReceived(b"DONE\r\nn NOOP\r\n")
        self.assertEqual(self.transport.value(), b"")
        self.transport.producer.resumeProducing()
        self.assertEqual(self.transport.value(), b"i OK IDLE terminated\r\nn OK NOOP completed\r\n")

    def test_appendLiteralsWhileOutputFull(self) -> None:
        """
        An APPEND line queued while the client is behind gets its
        continuation request only when the output drains; a LITERAL+ one
        queued with its literal is replayed with the literal intact.
        """
        self.loggedIn()
        self.transport.producer.pauseProducing()
        self.transport.clear()
        message = b"Subject: one\r\n\r\nbody\r\n"
        self.server.dataReceived(b"a APPEND INBOX {%d}\r\n" % (len(message),))
        self.assertEqual(self.transport.value(), b"")
        self.transport.producer.resumeProducing()
        self.assertEqual(self.transport.value(), b"+ Ready for %d octets of data\r\n" % (len(message),))
        self.assertTrue(self.send(message + b"\r\n").startswith(b"a OK [APPENDUID "))
        self.transport.producer.pauseProducing()
        self.transport.clear()
        second = b"Subject: two\r\n\r\nb NOOP\r\n"
        self.server.dataReceived(b"b APPEND INBOX {%d+}\r\n%b\r\nc NOOP\r\n" % (len(second), second))
        self.assertEqual(self.transport.value(), b"")
        self.transport.producer.resumeProducing()
        self.pump()
        out = self.transport.value()
        self.assertTrue(out.startswith(b"b OK [APPENDUID "), out)
        self.assertTrue(out.endswith(b"c OK NOOP completed\r\n"), out)
        stored = [m for m in self.store.openFolder(ALICE).messages()]
        self.assertEqual(len(stored), 2)

    def test_longLiteralLinesQueuedWhole(self) -> None:
        """
        A LITERAL+ literal queued while the client is behind is kept as
        octets, not split into command lines: a line of it longer than a
        command line may be (here 20,000 octets, in three segments) is
        stored intact, and what follows it is answered.
        """
        self.loggedIn()
        self.transport.producer.pauseProducing()
        self.transport.clear()
        message = b"Subject: long\r\n\r\n" + b"x" * 20_000 + b"\r\nend\r\n"
        stream = b"a NOOP\r\nb APPEND INBOX {%d+}\r\n%b\r\nc NOOP\r\n" % (len(message), message)
        for start in range(0, len(stream), 9_000):
            self.server.dataReceived(stream[start : start + 9_000])
        self.assertEqual(self.transport.value(), b"")
        self.transport.producer.resumeProducing()
        self.pump()
        out = self.transport.value()
        self.assertNotIn(b"BAD", out)
        self.assertIn(b"b OK [APPENDUID ", out)
        self.assertTrue(out.endswith(b"c OK NOOP completed\r\n"), out)
        folder = self.store.openFolder(ALICE)
        [stored] = list(folder.messages())
        self.assertEqual(folder.openMessage(stored.uid).read(), message)

    def test_literalQueuedAcrossReplays(self) -> None:
        """
        A LITERAL+ literal still arriving when the queue is replayed, and
        queued again because the output filled up meanwhile (a FETCH
        larger than the write buffer), goes on being kept whole.
        """
        self.loggedIn()
        first = b"Subject: big\r\n\r\n" + b"z\r\n" * 20_000
        self.assertIn(b"a OK", self.send(b"a APPEND INBOX {%d+}\r\n%b\r\n" % (len(first), first)))
        self.assertIn(b"s OK [READ-WRITE]", self.send(b"s SELECT INBOX\r\n"))
        self.transport.producer.pauseProducing()
        self.transport.clear()
        message = b"Subject: split\r\n\r\n" + b"y" * 30_000 + b"\r\n"
        self.server.dataReceived(b"f FETCH 1 BODY[]\r\nb APPEND INBOX {%d+}\r\n" % (len(message),) + message[:5_000])
        self.transport.producer.resumeProducing()
        self.server.dataReceived(message[5_000:] + b"\r\nc NOOP\r\n")
        out = self.readAll(until=b"c OK NOOP completed\r\n")
        self.assertIn(b"f OK", out)
        self.assertNotIn(b"BAD", out)
        self.assertIn(b"b OK [APPENDUID ", out)
        folder = self.store.openFolder(ALICE)
        stored = list(folder.messages())
        self.assertEqual(len(stored), 2)
        self.assertEqual(folder.openMessage(stored[1].uid).read(), message)

    def test_nonReaderDroppedAfterCommandTimeout(self) -> None:
        """
        A client that reads none of its output for C{command_timeout} is
        dropped (closing normally would wait for the buffer to drain);
        one that reads in time is not.
        """
        self.loggedIn()
        self.transport.producer.pauseProducing()
        self.clock.advance(self.server.timeouts.command - 1)
        self.transport.producer.resumeProducing()  # the client read
        self.clock.advance(2)
        self.assertFalse(self.transport.disconnecting)
        self.transport.producer.pauseProducing()
        self.server.dataReceived(b"n NOOP\r\n")
        self.clock.advance(self.server.timeouts.command)
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.transport.producer)
        self.assertTrue(any("read no output" in str(e.get("log_format")) for e in self.events))

    def test_starttlsQueuedBehindFullOutput(self) -> None:
        """
        STARTTLS queued while the client is behind still discards what was
        pipelined after it.
        """
        server, transport = self.connect(IMAP)
        transport.producer.pauseProducing()
        transport.clear()
        server.dataReceived(b"t STARTTLS\r\nl LOGIN alice@example.test secret\r\n")
        self.assertEqual(transport.value(), b"")
        transport.producer.resumeProducing()
        self.assertEqual(transport.value(), b"t OK Begin TLS negotiation now\r\n")
        self.assertIs(transport.tlsStartedWith, self.creator)
        self.assertEqual(server.state, "unauth")
        self.assertIs(transport.producer, server._output)

    def test_logoutStepsAside(self) -> None:
        """
        LOGOUT (any BYE) unregisters the producer: a TLS transport closes
        only once its producer is gone, and a TCP one whose producer is
        paused would resume it instead of closing.
        """
        server, transport = self.connect(IMAPS)
        transport.producer.pauseProducing()
        server.dataReceived(b"o LOGOUT\r\nn NOOP\r\n")
        transport.producer.resumeProducing()
        self.assertTrue(transport.value().endswith(b"* BYE Logging out\r\no OK LOGOUT completed\r\n"))
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(transport.producer)

    def test_timeoutStepsAside(self) -> None:
        """
        The idle timeout closes a connection whose client stopped reading:
        the producer is unregistered with the BYE.
        """
        server, transport = self.connect(IMAPS)
        transport.producer.pauseProducing()
        server.dataReceived(b"a NOOP\r\n")
        self.clock.advance(server.timeOut + 1)
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(transport.producer)

    def test_closingWithoutBye(self) -> None:
        """
        A close the server decides without BYE (a FETCH that failed half
        way through its response) leaves no producer behind either.
        """
        deliver(self.store, ALICE, MSG1)
        self.loggedIn()
        self.send(b"s SELECT INBOX\r\n")

        def broken(*args: Any) -> None:
            raise RuntimeError("broken")

        self.server.spew_envelope = broken  # type: ignore[method-assign]
        self.send(b"f FETCH 1 (FLAGS ENVELOPE)\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.transport.producer)
        self.assertEqual(len([e for e in self.events if "log_failure" in e]), 1)

    def test_closingInLongLiteral(self) -> None:
        """
        An over-long LITERAL+ literal is refused with BAD and BYE, and the
        producer is gone.
        """
        server, transport = self.connect(IMAPS)
        server.dataReceived(b"a LOGIN {99999999+}\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(transport.producer)

    def test_connectionLostWhileWaiting(self) -> None:
        """
        A FETCH waiting for room when the connection is lost just stops;
        nothing is logged as an error.
        """
        self.patch(fetch, "FETCH_FLUSH", 16 * 1024)
        for i in range(10):
            deliver(self.store, ALICE, bigMessage(i, 20 * 1024))
        self.loggedIn()
        self.send(b"s SELECT INBOX\r\n")
        self.server.dataReceived(b"f FETCH 1:* (BODY.PEEK[])\r\n")
        self.pump()
        self.assertTrue(self.server._roomWaiters)
        self.server.connectionLost(None)  # type: ignore[arg-type]
        self.pump()
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual([e for e in self.events if "log_failure" in e], [])


# ----------------------------------------------------------- real sockets

PLAIN = EndpointPolicy("imap-plain", Protocol.IMAP, ("127.0.0.1:0",), TLSMode.NONE, auth=True)


class RealSocketFlowTests(unittest.TestCase):
    """
    The server on a real reactor and loopback sockets, plain TCP and
    implicit TLS, with blocking clients in a thread.
    """

    timeout = 120

    # Large bodies (streamed by a producer) and many small ones (sent from
    # memory, more than FETCH_FLUSH in all).
    LARGE = [bigMessage(i, 3 * 1024 * 1024 + i * 4099) for i in range(4)]
    SMALL = [bigMessage(100 + i, 60 * 1024) for i in range(40)]

    def setUp(self) -> None:
        tmp = Path(self.mktemp())
        tmp.mkdir(parents=True)
        self.certPath, keyPath = tmp / "cert.pem", tmp / "key.pem"
        generateSelfSigned("localhost", self.certPath, keyPath)
        self.creator = ServerTLS(self.certPath, keyPath)
        self.store = MemoryMailStore()
        for body in self.LARGE + self.SMALL:
            deliver(self.store, ALICE, body)
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(ALICE.encode(), b"secret")
        realm = MailRealm()
        realm.registerAvatarFactory(IAccount, accountFactory(self.store, defaultFolders={}))
        self.portal = Portal(realm, [checker])
        self.servers: list[IMAPServer] = []

    def listen(self, tls: bool, policy: Optional[EndpointPolicy] = None) -> int:
        if policy is None:
            policy = IMAPS if tls else PLAIN
        factory = IMAPFactory(policy, self.portal, self.creator, HOSTNAME, clock=reactor)
        build = factory.buildProtocol

        def buildProtocol(addr: Any) -> IMAPServer:
            protocol = build(addr)
            self.servers.append(protocol)
            return protocol

        factory.buildProtocol = buildProtocol  # type: ignore[method-assign]
        wrapped: ServerFactory = TLSMemoryBIOFactory(self.creator, False, factory) if tls else factory
        port = reactor.listenTCP(0, wrapped, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def connectClient(self, port: int, tls: bool, starttls: bool = False) -> socket.socket:
        """
        A connection that has read the greeting (and done STARTTLS).
        """
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        # Small fixed buffers, so that the server's output and the client's
        # input fill up soon.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        context = ssl.create_default_context(cafile=str(self.certPath))
        context.check_hostname = False
        if tls:
            sock = context.wrap_socket(sock)
        self.readUntil(sock, b"ready\r\n")
        if starttls:
            sock.sendall(b"t STARTTLS\r\n")
            self.assertEqual(self.readUntil(sock, b"\r\n"), b"t OK Begin TLS negotiation now\r\n")
            sock = context.wrap_socket(sock)
        return sock

    def inThread(self, client: Callable[[], Any]) -> defer.Deferred[Any]:
        return threads.deferToThread(client)

    @staticmethod
    def readUntil(sock: socket.socket, end: bytes, slow: bool = False) -> bytes:
        """
        Read until the data ends with C{end}; a slow reader takes 16 KiB
        at a time and dawdles between reads.
        """
        data = bytearray()
        while not data.endswith(end):
            chunk = sock.recv(16 * 1024)
            if not chunk:
                raise AssertionError(f"closed early after {len(data)} octets: {bytes(data[-200:])!r}")
            data += chunk
            if slow:
                time.sleep(0.0005)
        return bytes(data)

    def slowFetch(self, tls: bool, starttls: bool = False) -> defer.Deferred[None]:
        port = self.listen(tls, IMAP if starttls else None)
        expected = b"".join(
            b"* %d FETCH (BODY[] {%d}\r\n%b)\r\n" % (i + 1, len(body), body)
            for i, body in enumerate(self.LARGE + self.SMALL)
        )

        def client() -> bytes:
            sock = self.connectClient(port, tls, starttls)
            sock.sendall(
                b"l LOGIN alice@example.test secret\r\ns SELECT INBOX\r\n"
                b"f FETCH 1:* (BODY.PEEK[])\r\n" + b"n NOOP\r\n" * 200 + b"g FETCH 2:3 (BODY.PEEK[])\r\nz LOGOUT\r\n"
            )
            data = self.readUntil(sock, b"z OK LOGOUT completed\r\n", slow=True)
            # The server closes its side.
            sock.settimeout(10)
            rest = sock.recv(1024)
            sock.close()
            return data + rest

        def check(data: bytes) -> None:
            start = data.index(b"* 1 FETCH (BODY[]")
            end = data.index(b"f OK FETCH completed\r\n")
            self.assertEqual(data[start:end], expected)
            tail = data[end:]
            self.assertTrue(tail.startswith(b"f OK FETCH completed\r\n" + b"n OK NOOP completed\r\n" * 200), tail[:300])
            self.assertIn(b"* 2 FETCH (BODY[] {%d}\r\n" % (len(self.LARGE[1]),), tail)
            self.assertTrue(tail.endswith(b"g OK FETCH completed\r\n* BYE Logging out\r\nz OK LOGOUT completed\r\n"))

        return self.inThread(client).addCallback(check)

    def test_slowReaderFetchPlain(self) -> None:
        """
        Plain TCP: a client reading slowly gets 4 bodies of over 3 MB and
        40 of 60 KB whole, then the 200 commands it pipelined after the
        FETCH and a second FETCH, in order; LOGOUT closes the connection.
        """
        return self.slowFetch(tls=False)

    def test_slowReaderFetchTLS(self) -> None:
        """
        The same over implicit TLS, where body producers are wrapped by the
        TLS layer and the connection closes only once no producer is left.
        """
        return self.slowFetch(tls=True)

    def test_slowReaderFetchSTARTTLS(self) -> None:
        """
        The same after STARTTLS, where the TLS layer is put under the
        server's registered producer half way through the connection.
        """
        return self.slowFetch(tls=False, starttls=True)

    def nonReaderThenReader(self, tls: bool) -> defer.Deferred[None]:
        port = self.listen(tls)
        count = 40_000
        lines = b"".join(b"c%05d CAPABILITY\r\n" % (i,) for i in range(count))

        async def session() -> tuple[bytes, tuple[bool, int]]:
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            # Small fixed buffers, so that both directions fill up soon.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
            sock.setblocking(False)
            context = None
            if tls:
                context = ssl.create_default_context(cafile=str(self.certPath))
                context.check_hostname = False
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=context, server_hostname="localhost" if tls else None
            )
            await asyncio.wait_for(reader.readuntil(b"ready\r\n"), 30)
            # Write everything without reading, give the server a second,
            # and look at it (in the reactor thread).
            writer.write(lines)
            await asyncio.sleep(1.0)
            state = threads.blockingCallFromThread(reactor, serverState)

            async def send() -> None:
                writer.write(b"z LOGOUT\r\n")
                await writer.drain()

            async def receive() -> bytes:
                data = bytearray()
                while not data.endswith(b"z OK LOGOUT completed\r\n"):
                    chunk = await reader.read(64 * 1024)
                    if not chunk:
                        raise AssertionError(f"closed early: {bytes(data[-200:])!r}")
                    data += chunk
                return bytes(data)

            sending = asyncio.ensure_future(send())
            data = await asyncio.wait_for(receive(), 60)
            await sending
            # The server closes its side.
            rest = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return data + rest, state

        def serverState() -> tuple[bool, int]:
            [server] = self.servers
            return server._outputFull, sum(len(line) + 2 for line in server.blocked or [])

        def client() -> tuple[bytes, tuple[bool, int]]:
            return asyncio.run(session())

        def check(result: tuple[bytes, tuple[bool, int]]) -> None:
            data, (full, queued) = result
            # While the client did not read, the server answered no more and
            # held at most MAX_QUEUED octets of commands plus one read.
            self.assertTrue(full)
            self.assertLessEqual(queued, MAX_QUEUED + 64 * 1024)
            tags = CAPABILITY_REPLY.findall(data)
            self.assertEqual(tags, [b"c%05d" % (i,) for i in range(count)])
            self.assertTrue(data.endswith(b"* BYE Logging out\r\nz OK LOGOUT completed\r\n"), data[-200:])
            [server] = self.servers
            self.assertFalse(server._outputRegistered)

        return self.inThread(client).addCallback(check)

    def test_nonReaderThenReaderPlain(self) -> None:
        """
        Plain TCP: a client pipelines 40,000 CAPABILITY commands and reads
        nothing for a second: the server's output is full and it holds no
        more than C{MAX_QUEUED} octets of commands (plus one read); then
        the client reads: every reply arrives once and in order, and LOGOUT
        closes the connection.
        """
        return self.nonReaderThenReader(tls=False)

    def test_nonReaderThenReaderTLS(self) -> None:
        """
        The same over implicit TLS.
        """
        return self.nonReaderThenReader(tls=True)

    def test_idleOverTLS(self) -> None:
        """
        IDLE over implicit TLS: a delivery made while the client idles is
        pushed as EXISTS, DONE ends it.
        """
        port = self.listen(tls=True)
        total = len(self.LARGE) + len(self.SMALL)

        def client() -> bytes:
            sock = self.connectClient(port, True)
            sock.sendall(b"l LOGIN alice@example.test secret\r\ns SELECT INBOX\r\ni IDLE\r\n")
            self.readUntil(sock, b"+ idling\r\n")
            reactor.callFromThread(deliver, self.store, ALICE, MSG1)
            pushed = self.readUntil(sock, b"RECENT\r\n")
            sock.sendall(b"DONE\r\nz LOGOUT\r\n")
            pushed += self.readUntil(sock, b"z OK LOGOUT completed\r\n")
            sock.close()
            return pushed

        def check(data: bytes) -> None:
            self.assertTrue(data.startswith(b"* %d EXISTS\r\n" % (total + 1,)), data)
            self.assertIn(b"i OK IDLE terminated\r\n", data)

        return self.inThread(client).addCallback(check)
