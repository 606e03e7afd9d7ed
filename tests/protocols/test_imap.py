# -*- test-case-name: tests.protocols.test_imap -*-
"""
Tests for L{mailsrv.protocols.imap}: the IMAP server, bytes in and bytes out
over a L{StringTransport} and a L{task.Clock}, against the in-memory store;
plus one IMAPS session over a real loopback socket with Python's C{imaplib}.
"""

from __future__ import annotations

import base64
import imaplib
import ssl
from pathlib import Path
from typing import Any, Optional

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer, reactor, task, threads
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, ISSLTransport, ITLSTransport
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.mail.imap4 import IAccount, parseIdList
from twisted.mail.interfaces import (
    ICloseableMailboxIMAP,
    IMailboxIMAP,
    IMessageIMAP,
    IMessageIMAPCopier,
    IMessageIMAPFile,
    INamespacePresenter,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial import unittest
from zope.interface import alsoProvides, implementer
from zope.interface.verify import verifyObject

from mailsrv.auth.realm import MailRealm
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode
from mailsrv.protocols.imap.account import IMAPAccount, accountFactory, imapToStore, storeToImap
from mailsrv.protocols.imap.server import IMAPFactory, IMAPServer
from mailsrv.storage.memory import MemoryMailStore
from mailsrv.tls import ServerTLS, generateSelfSigned

ALICE = "alice@example.test"
BOB = "bob@example.test"
HOSTNAME = "mail.example.test"
LIMIT = 1000

IMAP = EndpointPolicy("imap", Protocol.IMAP, ("0.0.0.0:143",), TLSMode.STARTTLS_REQUIRED, auth=True)
IMAPS = EndpointPolicy("imaps", Protocol.IMAP, ("0.0.0.0:993",), TLSMode.IMPLICIT, auth=True)

MSG1 = (
    b"From: Carol <carol@example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: first\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"\r\n"
    b"Hello Alice,\r\n"
    b"this is the body.\r\n"
)
MSG2 = b"Subject: second\r\nX-Note: caf\xc3\xa9\r\n\r\nline 1\r\nline 2\r\n"
MULTIPART = (
    b"Subject: parts\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n'
    b"\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"part one\r\n"
    b"--XX\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>two</p>\r\n"
    b"--XX--\r\n"
)

CAPS_BEFORE_TLS = b"IMAP4rev1 STARTTLS LOGINDISABLED LITERAL+ ID ENABLE NAMESPACE IDLE CHILDREN UIDPLUS MOVE UNSELECT SPECIAL-USE CREATE-SPECIAL-USE QUOTA QUOTA=RES-STORAGE CONDSTORE ESEARCH QRESYNC APPENDLIMIT=1000"
CAPS_AUTH_ALLOWED = b"IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL+ ID ENABLE NAMESPACE IDLE CHILDREN UIDPLUS MOVE UNSELECT SPECIAL-USE CREATE-SPECIAL-USE QUOTA QUOTA=RES-STORAGE CONDSTORE ESEARCH QRESYNC APPENDLIMIT=1000"
CAPS_LOGGED_IN = b"IMAP4rev1 LITERAL+ ID ENABLE NAMESPACE IDLE CHILDREN UIDPLUS MOVE UNSELECT SPECIAL-USE CREATE-SPECIAL-USE QUOTA QUOTA=RES-STORAGE CONDSTORE ESEARCH QRESYNC APPENDLIMIT=1000"
AUTH_FAILED = b"NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"


@implementer(IOpenSSLServerConnectionCreator)
class FakeTLSCreator:
    """
    Stands in for the shared C{ServerTLS}; only its identity matters here.
    """

    def serverConnectionForTLS(self, tlsProtocol: object) -> Any:
        raise NotImplementedError("in-memory tests never handshake")


class TLSCapableTransport(StringTransport):
    """
    A transport that supports STARTTLS: it records the creator it was given
    and from then on provides L{ISSLTransport}, as Twisted's TCP transport
    does.
    """

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
        alsoProvides(self, ITLSTransport)
        self.tlsStartedWith: Optional[object] = None

    def startTLS(self, creator: object) -> None:
        self.tlsStartedWith = creator
        alsoProvides(self, ISSLTransport)


def plain(user: str, password: str, authzid: str = "") -> bytes:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode())


def deliver(store: MemoryMailStore, account: str, data: bytes) -> None:
    writer = store.startMessage([account])
    writer.write(data)
    writer.commit()


class IMAPTestMixin:
    """
    Builds a server over a fake transport with a clock, a portal with the
    mailsrv realm, and a memory store holding alice's and bob's accounts.
    """

    # The special-use folders created at login are tested in
    # test_imap_extensions; here they would only clutter every LIST.
    defaultFolders: dict[str, str] = {}

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.store = MemoryMailStore(clock=lambda: 1700000000.0)
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(ALICE.encode(), b"secret")
        checker.addUser(BOB.encode(), b"hunter2")
        realm = MailRealm()
        realm.registerAvatarFactory(IAccount, accountFactory(self.store, defaultFolders=self.defaultFolders))
        self.portal = Portal(realm, [checker])
        self.creator = FakeTLSCreator()
        self.events: list[dict[str, Any]] = []

    def connect(self, policy: EndpointPolicy = IMAP) -> tuple[IMAPServer, TLSCapableTransport]:
        factory = IMAPFactory(policy, self.portal, self.creator, HOSTNAME, clock=self.clock, maxMessageSize=LIMIT)
        server = factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
        server.log = Logger(namespace="test", observer=self.events.append)
        transport = TLSCapableTransport()
        if policy.implicitTLS:
            alsoProvides(transport, ISSLTransport)
        server.makeConnection(transport)
        self.server, self.transport = server, transport
        return server, transport

    def pump(self) -> None:
        """
        Run what the server scheduled for "now" and drive its pull producers
        (FETCH bodies), as a real reactor and TCP transport would; the
        server's own push producer needs no help.
        """
        for _ in range(10000):
            progressed = False
            producer = self.transport.producer
            if producer is not None and not self.transport.streaming:
                producer.resumeProducing()
                progressed = True
            if any(c.getTime() <= self.clock.seconds() for c in self.clock.getDelayedCalls()):
                self.clock.advance(0)
                progressed = True
            if not progressed:
                return
        raise AssertionError("server never settled")

    def send(self, data: bytes) -> bytes:
        self.transport.clear()
        self.server.dataReceived(data)
        self.pump()
        return self.transport.value()

    def tls(self) -> None:
        """
        Issue STARTTLS on the plaintext endpoint.
        """
        self.assertEqual(self.send(b"t STARTTLS\r\n"), b"t OK Begin TLS negotiation now\r\n")  # type: ignore[attr-defined]

    def login(self, policy: EndpointPolicy = IMAP, user: str = ALICE, password: str = "secret") -> None:
        self.connect(policy)
        if not policy.implicitTLS:
            self.tls()
        response = self.send(b"l LOGIN %b %b\r\n" % (user.encode(), password.encode()))
        self.assertTrue(response.startswith(b"l OK"), response)  # type: ignore[attr-defined]

    def select(self, name: bytes = b"INBOX") -> bytes:
        return self.send(b"s SELECT " + name + b"\r\n")


class GreetingAndCapabilityTests(IMAPTestMixin, unittest.SynchronousTestCase):
    def test_greetingBeforeTLS(self) -> None:
        """
        On a starttls-required endpoint the greeting carries the capability
        list (as Dovecot does): STARTTLS and LOGINDISABLED, no AUTH=.
        """
        _, transport = self.connect(IMAP)
        self.assertEqual(
            transport.value(),
            b"* OK [CAPABILITY " + CAPS_BEFORE_TLS + b"] mail.example.test IMAP4rev1 ready\r\n",
        )

    def test_capabilityAfterSTARTTLS(self) -> None:
        """
        After STARTTLS the shared creator was handed to the transport, and
        CAPABILITY offers AUTH=PLAIN and SASL-IR but neither STARTTLS nor
        LOGINDISABLED.
        """
        _, transport = self.connect(IMAP)
        self.tls()
        self.assertIs(transport.tlsStartedWith, self.creator)
        self.assertEqual(
            self.send(b"c CAPABILITY\r\n"),
            b"* CAPABILITY " + CAPS_AUTH_ALLOWED + b"\r\nc OK CAPABILITY completed\r\n",
        )

    def test_implicitTLS(self) -> None:
        """
        An implicit-TLS endpoint offers AUTH=PLAIN from the greeting on,
        never STARTTLS, and refuses the command.
        """
        _, transport = self.connect(IMAPS)
        self.assertEqual(
            transport.value(),
            b"* OK [CAPABILITY " + CAPS_AUTH_ALLOWED + b"] mail.example.test IMAP4rev1 ready\r\n",
        )
        self.assertEqual(self.send(b"a STARTTLS\r\n"), b"a BAD TLS is already active\r\n")
        self.assertIsNone(transport.tlsStartedWith)

    def test_capabilityAfterLogin(self) -> None:
        """
        The LOGIN reply carries the post-login capabilities (no AUTH=).
        """
        self.connect(IMAPS)
        self.assertEqual(
            self.send(b"a LOGIN alice@example.test secret\r\n"),
            b"a OK [CAPABILITY " + CAPS_LOGGED_IN + b"] Logged in\r\n",
        )

    def test_noopAndLogout(self) -> None:
        """
        NOOP works in every state; LOGOUT says BYE and closes.
        """
        _, transport = self.connect(IMAP)
        self.assertEqual(self.send(b"n NOOP\r\n"), b"n OK NOOP completed\r\n")
        self.assertEqual(self.send(b"o LOGOUT\r\n"), b"* BYE Logging out\r\no OK LOGOUT completed\r\n")
        self.assertTrue(transport.disconnecting)


class PolicyTests(IMAPTestMixin, unittest.SynchronousTestCase):
    def test_loginRefusedBeforeTLS(self) -> None:
        """
        LOGIN in plaintext on a starttls-required endpoint is refused with
        PRIVACYREQUIRED, even with the right password.
        """
        self.connect(IMAP)
        self.assertEqual(
            self.send(b"a LOGIN alice@example.test secret\r\n"),
            b"a NO [PRIVACYREQUIRED] Use STARTTLS before authenticating\r\n",
        )
        self.assertEqual(self.server.state, "unauth")

    def test_authenticateRefusedBeforeTLS(self) -> None:
        """
        AUTHENTICATE is refused before TLS too (Twisted only gated LOGIN):
        for PLAIN with an initial response, PLAIN without, and a mechanism
        that is not offered at all.
        """
        self.connect(IMAP)
        refused = b"NO [PRIVACYREQUIRED] Use STARTTLS before authenticating\r\n"
        self.assertEqual(self.send(b"a AUTHENTICATE PLAIN " + plain(ALICE, "secret") + b"\r\n"), b"a " + refused)
        self.assertEqual(self.send(b"b AUTHENTICATE PLAIN\r\n"), b"b " + refused)
        self.assertEqual(self.send(b"c AUTHENTICATE CRAM-MD5\r\n"), b"c " + refused)
        self.assertEqual(self.server.state, "unauth")

    def test_starttlsInjection(self) -> None:
        """
        A command pipelined in the same packet as STARTTLS is discarded, not
        executed once TLS is up; the next real command is answered.
        """
        self.connect(IMAP)
        self.assertEqual(
            self.send(b"a STARTTLS\r\nb CAPABILITY\r\n"), b"a OK Begin TLS negotiation now\r\n"
        )
        self.clock.advance(10)
        self.pump()
        self.assertNotIn(b"b ", self.transport.value())
        self.assertEqual(self.send(b"c NOOP\r\n"), b"c OK NOOP completed\r\n")

    def test_starttlsInjectionPartialLineAndLiteral(self) -> None:
        """
        An incomplete line and a literal announced after STARTTLS in the
        same packet are discarded as well: the first line over TLS is
        parsed as a fresh command.
        """
        self.connect(IMAP)
        self.send(b"a STARTTLS\r\nb LOGIN {5}\r\nalice secret\r\nc CAPA")
        self.assertEqual(self.send(b"d NOOP\r\n"), b"d OK NOOP completed\r\n")
        self.assertEqual(self.server.state, "unauth")

    def test_starttlsTwice(self) -> None:
        """
        A second STARTTLS is refused.
        """
        self.connect(IMAP)
        self.tls()
        self.assertEqual(self.send(b"a STARTTLS\r\n"), b"a BAD TLS is already active\r\n")

    def test_longCommandLine(self) -> None:
        """
        A command line over the limit gets BAD, its rest is skipped, and the
        connection stays usable (Twisted used to drop it).
        """
        _, transport = self.connect(IMAP)
        response = self.send(b"x NOOP " + b"a" * 20000 + b"\r\ny NOOP\r\n")
        self.assertEqual(response, b"x BAD Command line too long\r\ny OK NOOP completed\r\n")
        self.assertFalse(transport.disconnecting)

    def test_longCommandLineAcrossPackets(self) -> None:
        """
        An over-long line arriving in several packets is skipped up to its
        end, and the following command is answered.
        """
        self.connect(IMAP)
        self.assertEqual(self.send(b"x " + b"a" * 9000), b"x BAD Command line too long\r\n")
        self.assertEqual(self.send(b"b" * 9000), b"")
        self.assertEqual(self.send(b"bbb\r\ny NOOP\r\n"), b"y OK NOOP completed\r\n")


class AuthenticationTests(IMAPTestMixin, unittest.SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.connect(IMAP)
        self.tls()

    def test_authenticatePlainContinuation(self) -> None:
        """
        AUTHENTICATE PLAIN without an initial response gets an empty
        challenge (C{+ }), then logs in with the client's response.
        """
        self.assertEqual(self.send(b"a AUTHENTICATE PLAIN\r\n"), b"+ \r\n")
        self.assertEqual(
            self.send(plain(ALICE, "secret") + b"\r\n"),
            b"a OK [CAPABILITY " + CAPS_LOGGED_IN + b"] Logged in\r\n",
        )
        self.assertEqual(self.server.state, "auth")

    def test_authenticatePlainInitialResponse(self) -> None:
        """
        SASL-IR: the PLAIN response on the AUTHENTICATE line logs in at once.
        """
        self.assertEqual(
            self.send(b"a AUTHENTICATE plain " + plain(ALICE, "secret") + b"\r\n"),
            b"a OK [CAPABILITY " + CAPS_LOGGED_IN + b"] Logged in\r\n",
        )

    def test_authenticateCancel(self) -> None:
        """
        C{*} cancels the exchange with BAD (RFC 3501 section 6.2.2).
        """
        self.send(b"a AUTHENTICATE PLAIN\r\n")
        self.assertEqual(self.send(b"*\r\n"), b"a BAD Authentication cancelled\r\n")
        self.assertEqual(self.send(b"b NOOP\r\n"), b"b OK NOOP completed\r\n")

    def test_unsupportedMechanism(self) -> None:
        """
        A mechanism that is not offered is refused without a challenge.
        """
        self.assertEqual(
            self.send(b"a AUTHENTICATE CRAM-MD5\r\n"),
            b"a NO [CANNOT] Unsupported authentication mechanism\r\n",
        )

    def failedLogin(self, command: bytes) -> bytes:
        """
        Send C{command}, check that nothing is answered before the delay,
        and return the answer after it.
        """
        self.assertEqual(self.send(command), b"")
        self.clock.advance(0.9)
        self.assertEqual(self.transport.value(), b"")
        self.clock.advance(0.1)
        return self.transport.value()

    def test_wrongPasswordAndUnknownUserIdentical(self) -> None:
        """
        A wrong password and an unknown user get the same answer, after the
        same delay.
        """
        wrong = self.failedLogin(b"a LOGIN alice@example.test nope\r\n")
        unknown = self.failedLogin(b"a LOGIN mallory@example.test nope\r\n")
        self.assertEqual(wrong, b"a " + AUTH_FAILED)
        self.assertEqual(unknown, wrong)

    def test_saslFailureSame(self) -> None:
        """
        A failed AUTHENTICATE PLAIN, and one naming a foreign authorization
        identity, answer like a failed LOGIN.
        """
        self.assertEqual(
            self.failedLogin(b"a AUTHENTICATE PLAIN " + plain(ALICE, "nope") + b"\r\n"), b"a " + AUTH_FAILED
        )
        self.assertEqual(
            self.failedLogin(b"b AUTHENTICATE PLAIN " + plain(ALICE, "secret", authzid=BOB) + b"\r\n"),
            b"b " + AUTH_FAILED,
        )
        self.assertEqual(self.server.state, "unauth")

    def test_pipelinedCommandsWaitForDelay(self) -> None:
        """
        Commands pipelined after a failed login wait for its answer, so the
        delay cannot be bypassed by pipelining guesses.
        """
        self.assertEqual(
            self.send(b"a LOGIN alice@example.test x\r\nb LOGIN alice@example.test secret\r\n"), b""
        )
        self.clock.advance(1)
        self.pump()
        self.assertEqual(
            self.transport.value(),
            b"a " + AUTH_FAILED + b"b OK [CAPABILITY " + CAPS_LOGGED_IN + b"] Logged in\r\n",
        )

    def test_threeFailuresDisconnect(self) -> None:
        """
        The third failure closes the connection after its answer.
        """
        for tag in (b"a", b"b"):
            self.failedLogin(tag + b" LOGIN alice@example.test x\r\n")
            self.assertFalse(self.transport.disconnecting)
        self.assertEqual(
            self.failedLogin(b"c LOGIN alice@example.test x\r\n"),
            b"c " + AUTH_FAILED + b"* BYE Too many authentication failures\r\n",
        )
        self.assertTrue(self.transport.disconnecting)

    def test_connectionLostDuringDelay(self) -> None:
        """
        A client leaving during the delay cancels the pending answer.
        """
        self.send(b"a LOGIN alice@example.test x\r\n")
        self.server.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_logEvents(self) -> None:
        """
        Each outcome is one event with account, outcome, peer, endpoint and
        session id; no event carries the password.
        """
        self.failedLogin(b"a LOGIN alice@example.test wrongpass\r\n")
        self.send(b"b LOGIN alice@example.test secret\r\n")
        outcomes = [e for e in self.events if "outcome" in e]
        self.assertEqual([e["outcome"] for e in outcomes], ["failure", "success"])
        for event in outcomes:
            self.assertEqual(event["account"], ALICE)
            self.assertEqual(event["peer"], "192.0.2.7")
            self.assertEqual(event["endpoint"], "imap")
            self.assertEqual(event["sessionId"], self.server.session.sessionId)  # type: ignore[union-attr]
        self.assertNotIn("wrongpass", repr(self.events))
        self.assertNotIn("secret", repr(self.events))


class MailboxTests(IMAPTestMixin, unittest.SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        deliver(self.store, ALICE, MSG1)
        deliver(self.store, ALICE, MSG2)
        self.login()

    def inbox(self) -> Any:
        return self.store.openFolder(ALICE)

    def test_selectInbox(self) -> None:
        """
        SELECT reports FLAGS, PERMANENTFLAGS, EXISTS, RECENT, UNSEEN,
        UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ, and opens read-write; INBOX is
        case-insensitive.
        """
        validity = self.inbox().uidValidity()
        self.assertEqual(
            self.select(b"inbox"),
            b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
            b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted\r\n"
            b"* 2 EXISTS\r\n"
            b"* 2 RECENT\r\n"
            b"* OK [UNSEEN 1] First unseen\r\n"
            b"* OK [UIDVALIDITY %d] UIDs valid\r\n"
            b"* OK [UIDNEXT 3] Predicted next UID\r\n"
            b"* OK [HIGHESTMODSEQ 2] Highest\r\n"
            b"s OK [READ-WRITE] SELECT completed\r\n" % (validity,),
        )

    def test_recentOnlyOnce(self) -> None:
        """
        Another session selecting the same INBOX later does not see the
        messages as recent again.
        """
        self.select()
        self.login()
        self.assertIn(b"* 0 RECENT\r\n", self.select())

    def test_selectMissing(self) -> None:
        """
        Selecting a mailbox that does not exist answers NONEXISTENT.
        """
        self.assertEqual(self.select(b"Nope"), b"s NO [NONEXISTENT] Mailbox doesn't exist\r\n")

    def test_examineReadOnly(self) -> None:
        """
        EXAMINE opens read-only: STORE is refused and a body fetch does not
        set \\Seen.
        """
        response = self.send(b"e EXAMINE INBOX\r\n")
        self.assertTrue(response.endswith(b"e OK [READ-ONLY] EXAMINE completed\r\n"), response)
        self.assertEqual(self.send(b"a STORE 1 +FLAGS (\\Flagged)\r\n"), b"a NO Mailbox is read-only\r\n")
        self.send(b"f FETCH 1 BODY[]\r\n")
        self.assertEqual(self.inbox().messages()[0].flags, frozenset())

    def test_fetchBodyExact(self) -> None:
        """
        BODY[] returns the stored bytes exactly, as a literal, and sets
        \\Seen (reported in the same response).
        """
        self.select()
        self.assertEqual(
            self.send(b"f FETCH 1 BODY[]\r\n"),
            b"* 1 FETCH (BODY[] {%d}\r\n%b FLAGS (\\Seen \\Recent))\r\nf OK FETCH completed\r\n"
            % (len(MSG1), MSG1),
        )
        self.assertEqual(self.inbox().messages()[0].flags, frozenset({"\\Seen"}))

    def test_fetchPeek(self) -> None:
        """
        BODY.PEEK[] returns the bytes without setting \\Seen.
        """
        self.select()
        self.assertEqual(
            self.send(b"f FETCH 2 BODY.PEEK[]\r\n"),
            b"* 2 FETCH (BODY[] {%d}\r\n%b)\r\nf OK FETCH completed\r\n" % (len(MSG2), MSG2),
        )
        self.assertEqual(self.inbox().messages()[1].flags, frozenset())

    def test_partialFetch(self) -> None:
        """
        BODY[]<origin.length> returns that slice and echoes only <origin>
        (Twisted sent the whole message); a slice past the end is cut.
        """
        self.select()
        self.assertEqual(
            self.send(b"f FETCH 1 BODY.PEEK[]<6.5>\r\n"),
            b"* 1 FETCH (BODY[]<6> {5}\r\n" + MSG1[6:11] + b")\r\nf OK FETCH completed\r\n",
        )
        tail = MSG1[len(MSG1) - 4 :]
        self.assertEqual(
            self.send(b"g FETCH 1 BODY.PEEK[]<%d.100>\r\n" % (len(MSG1) - 4,)),
            b"* 1 FETCH (BODY[]<%d> {4}\r\n%b)\r\ng OK FETCH completed\r\n" % (len(MSG1) - 4, tail),
        )

    def test_fetchHeaderFieldsAndText(self) -> None:
        """
        HEADER.FIELDS returns the raw selected fields plus the empty line,
        byte-exact also for 8-bit values; TEXT returns the body only.
        """
        self.select()
        self.assertEqual(
            self.send(b"f FETCH 2 (BODY.PEEK[HEADER.FIELDS (X-NOTE)])\r\n"),
            b'* 2 FETCH (BODY[HEADER.FIELDS (X-Note)] {17}\r\nX-Note: caf\xc3\xa9\r\n\r\n)\r\n'
            b"f OK FETCH completed\r\n",
        )
        self.assertEqual(
            self.send(b"g FETCH 2 (BODY.PEEK[TEXT])\r\n"),
            b"* 2 FETCH (BODY[TEXT] {16}\r\nline 1\r\nline 2\r\n)\r\ng OK FETCH completed\r\n",
        )

    def test_fetchAttributes(self) -> None:
        """
        FLAGS, UID, RFC822.SIZE and INTERNALDATE come from the folder.
        """
        self.select()
        self.assertEqual(
            self.send(b"f FETCH 1:2 (FLAGS UID RFC822.SIZE INTERNALDATE)\r\n"),
            b'* 1 FETCH (FLAGS (\\Recent) UID 1 RFC822.SIZE %d INTERNALDATE "14-Nov-2023 22:13:20 +0000")\r\n'
            b'* 2 FETCH (FLAGS (\\Recent) UID 2 RFC822.SIZE %d INTERNALDATE "14-Nov-2023 22:13:20 +0000")\r\n'
            b"f OK FETCH completed\r\n" % (len(MSG1), len(MSG2)),
        )

    def test_fetchEnvelopeAndBodystructure(self) -> None:
        """
        ENVELOPE and BODYSTRUCTURE are built from the parsed header; an
        8-bit header value does not break them.  A part without
        Content-Transfer-Encoding reports C{"7BIT"} (RFC 3501 allows no
        NIL there).
        """
        self.select()
        response = self.send(b"f FETCH 1:2 (ENVELOPE BODYSTRUCTURE)\r\n")
        self.assertIn(b'"first"', response)
        self.assertIn(b'(("Carol" NIL "carol" "example.test"))', response)
        self.assertIn(b'"<1@example.test>"', response)
        self.assertIn(b'BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 33 2 ', response)
        self.assertIn(b'ENVELOPE (NIL "second" NIL NIL NIL NIL NIL NIL NIL NIL)', response)
        self.assertTrue(response.endswith(b"f OK FETCH completed\r\n"), response)

    def test_fetchMimePart(self) -> None:
        """
        BODY[2] of a multipart message is that part's body; a part that does
        not exist is NIL, not a dropped connection.
        """
        deliver(self.store, ALICE, MULTIPART)
        self.select()
        self.assertEqual(
            self.send(b"f FETCH 3 (BODY.PEEK[2])\r\n"),
            b"* 3 FETCH (BODY[2] {10}\r\n<p>two</p>)\r\nf OK FETCH completed\r\n",
        )
        self.assertEqual(
            self.send(b"g FETCH 1 (BODY.PEEK[3])\r\n"), b"* 1 FETCH (BODY[3] NIL)\r\ng OK FETCH completed\r\n"
        )
        self.assertFalse(self.transport.disconnecting)

    def test_uidFetchAndSearch(self) -> None:
        """
        UID FETCH addresses messages by UID and adds UID to the response;
        UID SEARCH answers UIDs; SEARCH always answers a SEARCH line.
        """
        self.select()
        self.inbox().expunge([1])
        self.send(b"n NOOP\r\n")
        self.assertEqual(
            self.send(b"u UID FETCH 2:* (FLAGS)\r\n"),
            b"* 1 FETCH (FLAGS (\\Recent) UID 2)\r\nu OK FETCH completed\r\n",
        )
        self.assertEqual(
            self.send(b"v UID SEARCH SUBJECT second\r\n"), b"* SEARCH 2\r\nv OK SEARCH completed\r\n"
        )
        self.assertEqual(self.send(b"w SEARCH SUBJECT nothing\r\n"), b"* SEARCH\r\nw OK SEARCH completed\r\n")
        self.assertEqual(self.send(b"x SEARCH FOO\r\n"), b"x BAD Invalid search query\r\n")
        # An unquoted NIL (the parser's None) is no search key: BAD, not a
        # server error (found by the protocol fuzzer).
        self.assertEqual(self.send(b"y SEARCH NIL\r\n"), b"y BAD Invalid search query\r\n")
        self.assertEqual(self.send(b"z SEARCH OR NIL ALL\r\n"), b"z BAD Invalid search query\r\n")
        self.assertEqual(self.send(b"z2 SEARCH NOT (NIL)\r\n"), b"z2 BAD Invalid search query\r\n")

    def test_storeFlags(self) -> None:
        """
        STORE +FLAGS/-FLAGS/FLAGS change the folder's flags and report them;
        .SILENT reports nothing; FETCH FLAGS shows the result.
        """
        self.select()
        self.assertEqual(
            self.send(b"a STORE 1 +FLAGS (\\Flagged $Label1)\r\n"),
            b"* 1 FETCH (FLAGS ($Label1 \\Flagged \\Recent))\r\na OK STORE completed\r\n",
        )
        self.assertEqual(self.send(b"b STORE 1 -FLAGS.SILENT (\\flagged)\r\n"), b"b OK STORE completed\r\n")
        self.assertEqual(
            self.send(b"c UID STORE 2 FLAGS (\\Seen)\r\n"),
            b"* 2 FETCH (FLAGS (\\Seen \\Recent) UID 2)\r\nc OK STORE completed\r\n",
        )
        self.assertEqual(
            self.send(b"d FETCH 1:2 FLAGS\r\n"),
            b"* 1 FETCH (FLAGS ($Label1 \\Recent))\r\n* 2 FETCH (FLAGS (\\Seen \\Recent))\r\nd OK FETCH completed\r\n",
        )
        self.assertEqual(
            [m.flags for m in self.inbox().messages()], [frozenset({"$Label1"}), frozenset({"\\Seen"})]
        )

    def test_expungeAndClose(self) -> None:
        """
        EXPUNGE removes \\Deleted messages and announces them; CLOSE expunges
        silently and returns to the authenticated state.
        """
        deliver(self.store, ALICE, MULTIPART)
        self.select()
        self.send(b"a STORE 1:2 +FLAGS.SILENT (\\Deleted)\r\n")
        self.assertEqual(self.send(b"b EXPUNGE\r\n"), b"* 1 EXPUNGE\r\n* 1 EXPUNGE\r\nb OK EXPUNGE completed\r\n")
        self.assertEqual([m.uid for m in self.inbox().messages()], [3])
        self.send(b"c STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
        self.assertEqual(self.send(b"d CLOSE\r\n"), b"d OK CLOSE completed\r\n")
        self.assertEqual(self.server.state, "auth")
        self.assertEqual(self.inbox().messages(), ())

    def test_appendThenFetch(self) -> None:
        """
        APPEND stores the literal with its flags and date durably; the
        selected INBOX announces it and FETCH returns it.
        """
        self.select()
        new = b"Subject: appended\r\n\r\nhi\r\n"
        self.assertEqual(
            self.send(b'a APPEND INBOX (\\Seen) " 1-Jan-2024 10:00:00 +0100" {%d}\r\n' % (len(new),)),
            b"+ Ready for %d octets of data\r\n" % (len(new),),
        )
        self.assertEqual(
            self.send(new + b"\r\n"), b"* 3 EXISTS\r\n* 3 RECENT\r\na OK [APPENDUID 1700000000 3] APPEND completed\r\n"
        )
        info = self.inbox().messages()[2]
        self.assertEqual((info.flags, info.internalDate), (frozenset({"\\Seen"}), 1704099600.0))
        self.assertEqual(
            self.send(b"f FETCH 3 BODY.PEEK[]\r\n"),
            b"* 3 FETCH (BODY[] {%d}\r\n%b)\r\nf OK FETCH completed\r\n" % (len(new), new),
        )

    def test_appendTooBig(self) -> None:
        """
        An APPEND literal over the limit is refused with TOOBIG before the
        client sends it (no continuation), and the session goes on.
        """
        self.assertEqual(
            self.send(b"a APPEND INBOX {%d}\r\n" % (LIMIT + 1,)), b"a NO [TOOBIG] Message too large\r\n"
        )
        self.assertEqual(self.send(b"b NOOP\r\n"), b"b OK NOOP completed\r\n")
        self.assertEqual(len(self.inbox().messages()), 2)

    def test_appendAndCopyToMissingMailbox(self) -> None:
        """
        APPEND and COPY to a mailbox that does not exist answer TRYCREATE.
        """
        self.assertEqual(self.send(b"a APPEND Nope {2}\r\n"), b"+ Ready for 2 octets of data\r\n")
        self.assertEqual(self.send(b"hi\r\n"), b"a NO [TRYCREATE] Mailbox doesn't exist\r\n")
        self.select()
        self.assertEqual(self.send(b"b COPY 1 Nope\r\n"), b"b NO [TRYCREATE] Mailbox doesn't exist\r\n")

    def test_copy(self) -> None:
        """
        COPY stores the messages with their flags (not \\Recent) in the
        target folder; STATUS then counts them.
        """
        self.send(b"c CREATE Archive\r\n")
        self.select()
        self.send(b"a STORE 2 +FLAGS.SILENT (\\Flagged)\r\n")
        self.assertEqual(self.send(b"b COPY 1:2 Archive\r\n"), b"b OK [COPYUID 1700000001 1:2 1:2] COPY completed\r\n")
        archive = self.store.openFolder(ALICE, "Archive")
        self.assertEqual([m.flags for m in archive.messages()], [frozenset(), frozenset({"\\Flagged"})])
        self.assertEqual(archive.openMessage(1).read(), MSG1)
        self.assertEqual(
            self.send(b"s STATUS Archive (MESSAGES UIDNEXT UNSEEN)\r\n"),
            b"* STATUS Archive (MESSAGES 2 UIDNEXT 3 UNSEEN 2)\r\ns OK STATUS completed\r\n",
        )

    def test_statusErrors(self) -> None:
        """
        STATUS of a missing mailbox is NONEXISTENT; an unknown item is BAD.
        """
        self.assertEqual(
            self.send(b"s STATUS Nope (MESSAGES)\r\n"), b"s NO [NONEXISTENT] Mailbox doesn't exist\r\n"
        )
        self.assertEqual(self.send(b"t STATUS INBOX (SIZE)\r\n"), b"t BAD Unknown STATUS item\r\n")

    def test_listWithDelimiter(self) -> None:
        """
        LIST shows INBOX first and created folders with the C{.} delimiter;
        C{%} stops at the delimiter; C{LIST "" ""} gives the delimiter.
        """
        self.assertEqual(self.send(b"a CREATE Archive.2024\r\n"), b"a OK CREATE completed\r\n")
        self.send(b"b CREATE Sent\r\n")
        self.assertEqual(
            self.send(b'l LIST "" *\r\n'),
            b'* LIST (\\HasNoChildren) "." "INBOX"\r\n'
            b'* LIST (\\HasChildren) "." "Archive"\r\n'
            b'* LIST (\\HasNoChildren) "." "Archive.2024"\r\n'
            b'* LIST (\\HasNoChildren) "." "Sent"\r\n'
            b"l OK LIST completed\r\n",
        )
        self.assertEqual(
            self.send(b'm LIST "" %\r\n'),
            b'* LIST (\\HasNoChildren) "." "INBOX"\r\n'
            b'* LIST (\\HasChildren) "." "Archive"\r\n'
            b'* LIST (\\HasNoChildren) "." "Sent"\r\n'
            b"m OK LIST completed\r\n",
        )
        self.assertEqual(self.send(b'n LIST "" ""\r\n'), b'* LIST (\\Noselect) "." ""\r\nn OK LIST completed\r\n')
        self.assertEqual(
            self.send(b'o LSUB "" Arch*\r\n'),
            b"o OK LSUB completed\r\n",
        )
        self.send(b"p SUBSCRIBE Archive.2024\r\n")
        self.assertEqual(
            self.send(b'q LSUB "" Arch*\r\n'),
            b'* LSUB (\\HasNoChildren) "." "Archive.2024"\r\n'
            b"q OK LSUB completed\r\n",
        )
        self.assertEqual(list(self.store.listFolders(ALICE)), ["INBOX", "Archive", "Archive/2024", "Sent"])

    def test_createDeleteRename(self) -> None:
        """
        CREATE of an existing name is ALREADYEXISTS; RENAME moves children;
        DELETE of a missing name is NONEXISTENT; a name with the store's
        separator is refused.
        """
        self.send(b"a CREATE Work.Old\r\n")
        self.assertEqual(self.send(b"b CREATE Work\r\n"), b"b NO [ALREADYEXISTS] Mailbox already exists\r\n")
        self.assertEqual(self.send(b"c RENAME Work Job\r\n"), b"c OK RENAME completed\r\n")
        self.assertEqual(list(self.store.listFolders(ALICE)), ["INBOX", "Job", "Job/Old"])
        self.assertEqual(self.send(b"d DELETE Work\r\n"), b"d NO [NONEXISTENT] Mailbox doesn't exist\r\n")
        self.assertEqual(self.send(b"e DELETE Job.Old\r\n"), b"e OK DELETE completed\r\n")
        self.assertEqual(self.send(b"f CREATE a/b\r\n"), b"f NO [CANNOT] Invalid mailbox name\r\n")
        self.assertEqual(self.send(b"g DELETE INBOX\r\n"), b"g NO [CANNOT] INBOX cannot be deleted\r\n")

    def test_noopReportsNewMail(self) -> None:
        """
        A delivery is announced at the next NOOP with EXISTS and RECENT.
        """
        self.select()
        deliver(self.store, ALICE, MULTIPART)
        self.assertEqual(self.send(b"n NOOP\r\n"), b"* 3 EXISTS\r\n* 3 RECENT\r\nn OK NOOP completed\r\n")

    def test_idle(self) -> None:
        """
        IDLE pushes a delivery at once, ignores lines other than DONE (with
        an untagged BAD) and ends only on DONE.
        """
        self.select()
        self.assertEqual(self.send(b"i IDLE\r\n"), b"+ idling\r\n")
        self.transport.clear()
        deliver(self.store, ALICE, MULTIPART)
        self.assertEqual(self.transport.value(), b"* 3 EXISTS\r\n* 3 RECENT\r\n")
        self.assertEqual(self.send(b"this is not DONE\r\n"), b"* BAD Expected DONE\r\n")
        self.assertEqual(self.send(b"DONE\r\n"), b"i OK IDLE terminated\r\n")

    def test_idleReportsExpunge(self) -> None:
        """
        A message expunged by another session is announced during IDLE.
        """
        self.select()
        self.send(b"i IDLE\r\n")
        self.transport.clear()
        self.inbox().expunge([1])
        self.assertEqual(self.transport.value(), b"* 1 EXPUNGE\r\n")

    def test_searchTerms(self) -> None:
        """
        Text terms compare case-insensitively with header and body text,
        date terms use the internal date or the Date header, and flag,
        keyword and sequence terms combine (Twisted's text and date terms
        failed on Python 3 with bytes queries).
        """
        self.select()
        self.send(b"a STORE 2 +FLAGS.SILENT (\\Seen Work)\r\n")
        for query, expected in [
            (b"FROM CAROL", b"1"),
            (b'HEADER X-Note "CAF\xc3\xa9"', b"2"),
            (b"BODY ALICE", b"1"),
            (b"TEXT second", b"2"),
            (b"BODY second", b""),
            (b"SINCE 14-Nov-2023", b"1 2"),
            (b"BEFORE 14-Nov-2023", b""),
            (b"SENTBEFORE 1-Jan-2000", b""),
            (b"UNSEEN", b"1"),
            (b"KEYWORD Work", b"2"),
            (b"NOT KEYWORD Work 1:*", b"1"),
            (b"OR SUBJECT first SUBJECT second", b"1 2"),
        ]:
            response = self.send(b"s SEARCH " + query + b"\r\n")
            self.assertEqual(
                response, b" ".join([b"* SEARCH", expected]).strip() + b"\r\ns OK SEARCH completed\r\n", query
            )

    def test_clientErrorsAreNotServerErrors(self) -> None:
        """
        Malformed commands get BAD or NO and leave no traceback in the log
        (trial fails a test that logs an error).
        """
        self.select()
        for command, expected in [
            (b"a FETCH x FLAGS\r\n", b"a BAD"),
            (b"c STORE 1 +FLAGS (\\Bogus)\r\n", b"c NO [CANNOT]"),
            (b"d FROB\r\n", b"d BAD"),
            (b"e SEARCH SINCE yesterday\r\n", b"e BAD"),
            (b"f APPEND INBOX {x}\r\n", b"f BAD"),
            # Last: a failed SELECT leaves the selected state (RFC 3501;
            # RFC 7162's CLOSED says so).
            (b"g SELECT &@@-\r\n", b"* OK [CLOSED] Previous mailbox closed\r\ng NO [CANNOT]"),
        ]:
            self.assertTrue(self.send(command).startswith(expected), command)
        self.assertFalse(self.transport.disconnecting)

    def test_copyToSelectedAnnounced(self) -> None:
        """
        COPY into the selected mailbox announces the new messages.
        """
        self.select()
        self.assertEqual(
            self.send(b"c COPY 1 INBOX\r\n"), b"* 3 EXISTS\r\n* 3 RECENT\r\nc OK [COPYUID 1700000000 1 3] COPY completed\r\n"
        )
        self.assertEqual(self.inbox().openMessage(3).read(), MSG1)

    def test_namespace(self) -> None:
        """
        NAMESPACE gives one personal namespace with the C{.} delimiter.
        """
        self.assertEqual(
            self.send(b"n NAMESPACE\r\n"), b'* NAMESPACE (("" ".")) NIL NIL\r\nn OK NAMESPACE command completed\r\n'
        )


class AdapterTests(IMAPTestMixin, unittest.SynchronousTestCase):
    def test_interfaces(self) -> None:
        """
        The account, mailbox and message provide the Twisted interfaces
        they are used through.
        """
        deliver(self.store, ALICE, MSG1)
        account = accountFactory(self.store)(ALICE)
        self.assertIsInstance(account, IMAPAccount)
        verifyObject(IAccount, account)
        verifyObject(INamespacePresenter, account)
        mailbox = account.select("INBOX")
        for interface in (IMailboxIMAP, ICloseableMailboxIMAP, IMessageIMAPCopier):
            verifyObject(interface, mailbox)
        [(_, message)] = mailbox.fetch(parseIdList(b"1"), False)
        verifyObject(IMessageIMAP, message)
        verifyObject(IMessageIMAPFile, message)

    def test_nameMapping(self) -> None:
        """
        IMAP names use C{.} and map to the store's C{/}; INBOX is
        case-insensitive; store names with a C{.} inside a level are hidden.
        """
        self.assertEqual(imapToStore("inbox.Sub"), "INBOX/Sub")
        self.assertEqual(imapToStore("A.B."), "A/B")
        self.assertEqual(storeToImap("A/B"), "A.B")
        self.assertIsNone(storeToImap("a.b/c"))

    def test_headersWithoutReadingBody(self) -> None:
        """
        Header access reads the header block only: a message whose body is
        not readable still answers getHeaders.
        """
        deliver(self.store, ALICE, MSG1 + b"x" * 100000)
        mailbox = accountFactory(self.store)(ALICE).select("INBOX")
        [(_, message)] = mailbox.fetch(parseIdList(b"1"), False)
        reads: list[int] = []
        opened = message.open

        def countingOpen() -> Any:
            f = opened()
            read, readline = f.read, f.readline
            f.read = lambda *a: reads.append(1) or read(*a)  # type: ignore[method-assign]
            f.readline = lambda *a: (reads.append(len(line := readline(*a))) or line)  # type: ignore[method-assign]
            return f

        message.open = countingOpen  # type: ignore[method-assign]
        self.assertEqual(message.getHeaders(False, "subject"), {"subject": "first"})
        self.assertLess(sum(reads), 200)


class RealSocketTests(unittest.TestCase):
    """
    One IMAPS session over loopback with Python's C{imaplib}, to show the
    protocol works under a real TLSMemoryBIOFactory and reactor.
    """

    def test_imapsWithImaplib(self) -> None:
        """
        Implicit TLS on an ephemeral port: capabilities, LOGIN, SELECT,
        FETCH, APPEND, LOGOUT; the session recorded the TLS version.
        """
        tmp = Path(self.mktemp())
        tmp.mkdir(parents=True)
        certPath, keyPath = tmp / "cert.pem", tmp / "key.pem"
        generateSelfSigned("localhost", certPath, keyPath)
        creator = ServerTLS(certPath, keyPath)

        store = MemoryMailStore()
        deliver(store, ALICE, MSG1)
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(ALICE.encode(), b"secret")
        realm = MailRealm()
        realm.registerAvatarFactory(IAccount, accountFactory(store, defaultFolders={}))
        factory = IMAPFactory(IMAPS, Portal(realm, [checker]), creator, HOSTNAME, clock=reactor)

        closed: defer.Deferred[IMAPServer] = defer.Deferred()
        build = factory.buildProtocol

        def buildProtocol(addr: Any) -> IMAPServer:
            protocol = build(addr)
            lost = protocol.connectionLost

            def connectionLost(reason: Any) -> None:
                lost(reason)
                closed.callback(protocol)

            protocol.connectionLost = connectionLost  # type: ignore[method-assign]
            return protocol

        factory.buildProtocol = buildProtocol  # type: ignore[method-assign]
        port = reactor.listenTCP(0, TLSMemoryBIOFactory(creator, False, factory), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        portNumber = port.getHost().port

        def client() -> dict[str, Any]:
            context = ssl.create_default_context(cafile=str(certPath))
            context.check_hostname = False
            imap = imaplib.IMAP4_SSL("127.0.0.1", portNumber, ssl_context=context, timeout=10)
            result: dict[str, Any] = {"welcome": imap.welcome, "caps": imap.capabilities}
            result["login"] = imap.login(ALICE, "secret")
            result["select"] = imap.select("INBOX")[1][:]
            result["fetch"] = imap.fetch("1", "(BODY.PEEK[])")
            result["append"] = imap.append("INBOX", "(\\Seen)", None, b"Subject: x\r\n\r\ny\r\n")
            result["list"] = imap.list()
            result["logout"] = imap.logout()
            return result

        def check(result: dict[str, Any]) -> defer.Deferred[IMAPServer]:
            self.assertTrue(result["welcome"].endswith(b"] mail.example.test IMAP4rev1 ready"))
            self.assertIn("AUTH=PLAIN", result["caps"])
            self.assertNotIn("STARTTLS", result["caps"])
            self.assertEqual(result["login"][0], "OK")
            self.assertEqual(result["select"], [b"1"])
            self.assertEqual(result["fetch"][1][0][1], MSG1)
            self.assertEqual(result["append"][0], "OK")
            self.assertEqual(result["list"], ("OK", [b'(\\HasNoChildren) "." "INBOX"']))
            self.assertEqual(result["logout"][0], "BYE")
            self.assertEqual(len(store.openFolder(ALICE).messages()), 2)
            return closed

        def checkSession(protocol: IMAPServer) -> None:
            assert protocol.session is not None and protocol.session.tls is not None
            self.assertTrue(protocol.session.tls.version.startswith("TLSv1."))

        d = threads.deferToThread(client)
        d.addCallback(check)
        d.addCallback(checkSession)
        return d


class MessageSetTests(IMAPTestMixin, unittest.SynchronousTestCase):
    """
    Sequence and UID sets select by slicing the view: overlapping,
    unordered and out-of-range parts still give each message once, in
    sequence order.
    """

    def setUp(self) -> None:
        super().setUp()
        for _ in range(5):
            deliver(self.store, ALICE, MSG2)
        self.login()
        self.select()
        self.send(b"s STORE 2 +FLAGS (\\Deleted)\r\n")
        self.send(b"x EXPUNGE\r\n")  # UIDs now 1 3 4 5

    def fetched(self, command: bytes) -> list[bytes]:
        lines = self.send(command).split(b"\r\n")
        return [line for line in lines if line.startswith(b"* ")]

    def test_sequenceSets(self) -> None:
        """
        C{4,1:2,2:3,9} gives 1, 2, 3 and 4 once each; C{*} is the last
        message.
        """
        self.assertEqual(
            self.fetched(b"f FETCH 4,1:2,2:3,9 UID\r\n"),
            [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 3)", b"* 3 FETCH (UID 4)", b"* 4 FETCH (UID 5)"],
        )
        self.assertEqual(self.fetched(b"f FETCH * UID\r\n"), [b"* 4 FETCH (UID 5)"])

    def test_uidSets(self) -> None:
        """
        UID ranges find the UIDs present (2 is gone), and C{n:*} with n above
        the highest UID still means the highest (RFC 3501 section 6.4.8).
        """
        self.assertEqual(
            self.fetched(b"f UID FETCH 2:3,5,1 UID\r\n"),
            [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 3)", b"* 4 FETCH (UID 5)"],
        )
        self.assertEqual(self.fetched(b"f UID FETCH 9:* UID\r\n"), [b"* 4 FETCH (UID 5)"])
        self.assertEqual(self.fetched(b"f UID FETCH 6:8 UID\r\n"), [])
