# -*- test-case-name: tests.protocols.test_pop3 -*-
"""
Tests for L{mailsrv.protocols.pop3}: the POP3 server, bytes in and bytes out
over a L{StringTransport} and a L{task.Clock}, against the in-memory store;
plus one POP3S session over a real loopback socket with Python's C{poplib}.
"""

from __future__ import annotations

import base64
import poplib
import ssl
from pathlib import Path
from typing import Any, Iterable, Optional

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer, reactor, task, threads
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLServerConnectionCreator,
    ISSLTransport,
    ITLSTransport,
)
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial import unittest
from zope.interface import alsoProvides, implementer
from zope.interface.verify import verifyClass, verifyObject

from mailsrv.auth.realm import MailRealm
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IMailFolder
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode
from mailsrv.protocols.pop3.encoder import DotStuffer, TopFilter
from mailsrv.protocols.pop3.maildrop import Maildrop, MaildropLocks
from mailsrv.protocols.pop3.server import (
    IPOP3Maildrop,
    POP3Factory,
    POP3Limits,
    POP3Server,
    State,
    maildropFactory,
)
from mailsrv.storage.maildir import MaildirStore
from mailsrv.storage.memory import MemoryMailStore
from mailsrv.tls import ServerTLS, generateSelfSigned
from tests.storage.helpers import synchronousRunner

ALICE = "alice@example.test"
BOB = "bob@example.test"
USERS = {ALICE: "secret", BOB: "hunter2"}
HOSTNAME = "mail.example.test"

POP3 = EndpointPolicy("pop3", Protocol.POP3, ("0.0.0.0:110",), TLSMode.STARTTLS_REQUIRED, auth=True)
POP3S = EndpointPolicy("pop3s", Protocol.POP3, ("0.0.0.0:995",), TLSMode.IMPLICIT, auth=True)
POP3_PLAIN = EndpointPolicy("pop3-plain", Protocol.POP3, ("127.0.0.1:110",), TLSMode.NONE, auth=True)
POP3_NO_AUTH = EndpointPolicy("pop3-off", Protocol.POP3, ("127.0.0.1:110",), TLSMode.NONE, auth=False)

MSG1 = b"From: a@example.test\r\nSubject: one\r\n\r\nHello\r\n.hidden dot\r\nBye\r\n"
MSG2 = b"Subject: two\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"

BEFORE_TLS_CAPA = (
    b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
    b"STLS\r\nIMPLEMENTATION mailsrv\r\n.\r\n"
)
AFTER_TLS_CAPA = (
    b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
    b"USER\r\nSASL PLAIN LOGIN\r\nIMPLEMENTATION mailsrv\r\n.\r\n"
)
TRANSACTION_CAPA = (
    b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
    b"IMPLEMENTATION mailsrv\r\n.\r\n"
)
PLAINTEXT_REFUSED = (
    b"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n"
)
AUTH_FAILED = b"-ERR [AUTH] Authentication failed.\r\n"


@implementer(IOpenSSLServerConnectionCreator)
class FakeTLSCreator:
    """
    Stands in for the shared C{ServerTLS}; only its identity matters here.
    """

    def serverConnectionForTLS(self, tlsProtocol: object) -> Any:
        raise NotImplementedError("in-memory tests never handshake")


class TLSCapableTransport(StringTransport):
    """
    A transport that supports STLS: it records the creator it was given and
    from then on provides L{ISSLTransport}, as Twisted's TCP transport does.
    """

    def __init__(self) -> None:
        super().__init__()
        alsoProvides(self, ITLSTransport)
        self.tlsStartedWith: Optional[object] = None

    def startTLS(self, creator: object) -> None:
        self.tlsStartedWith = creator
        alsoProvides(self, ISSLTransport)


def plainResponse(user: str, password: str, authzid: str = "") -> bytes:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode())


def deliver(store: MemoryMailStore, account: str, data: bytes) -> None:
    writer = store.startMessage([account])
    writer.write(data)
    writer.commit()


class HeldExpungeFolder:
    """
    Wraps a real folder; L{expunge} returns a Deferred the test fires, to
    show when QUIT is answered.
    """

    def __init__(self, folder: IMailFolder) -> None:
        self._folder = folder
        self.expungeCalls: list[tuple[list[int], defer.Deferred[None]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._folder, name)

    def expunge(self, uids: Iterable[int]) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        uids = list(uids)
        d.addCallback(lambda _: self._folder.expunge(uids))
        self.expungeCalls.append((uids, d))
        return d


class POP3TestMixin:
    """
    A server factory over a fresh memory store, portal and clock, and
    helpers to talk to it.
    """

    policy = POP3
    limits = POP3Limits()

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.store = MemoryMailStore(clock=lambda: 1_700_000_000.0)
        for account in USERS:
            self.store.openFolder(account)
        self.locks = MaildropLocks()
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        for name, password in USERS.items():
            checker.addUser(name.encode(), password.encode())
        self.realm = MailRealm()
        self.realm.registerAvatarFactory(IPOP3Maildrop, maildropFactory(self.store, self.locks))
        self.portal = Portal(self.realm, [checker])
        self.tls = FakeTLSCreator()
        self.events: list[dict[str, Any]] = []
        self.patch(POP3Server, "log", Logger(observer=self.events.append))  # type: ignore[attr-defined]

    def factory(self, policy: Optional[EndpointPolicy] = None, **kw: Any) -> POP3Factory:
        return POP3Factory(
            policy or self.policy,
            self.portal,
            kw.pop("tls", self.tls),
            HOSTNAME,
            clock=self.clock,
            limits=kw.pop("limits", self.limits),
            connections=kw.pop("connections", None),
            userAddresses=kw.pop("userAddresses", None),
        )

    def connect(
        self,
        policy: Optional[EndpointPolicy] = None,
        implicitTLS: bool = False,
        **kw: Any,
    ) -> tuple[POP3Server, TLSCapableTransport]:
        protocol = self.factory(policy, **kw).buildProtocol(None)
        transport = TLSCapableTransport()
        if implicitTLS:
            alsoProvides(transport, ISSLTransport)
        protocol.makeConnection(transport)
        assert transport.value() == b"+OK " + HOSTNAME.encode() + b" POP3 ready\r\n"
        transport.clear()
        return protocol, transport

    def send(self, protocol: POP3Server, transport: StringTransport, data: bytes) -> bytes:
        """
        Feed C{data}, run any message producer to completion, and return
        (and forget) what the server wrote.
        """
        protocol.dataReceived(data)
        pump(transport)
        out = transport.value()
        transport.clear()
        return out

    def loggedIn(
        self, account: str = ALICE, policy: Optional[EndpointPolicy] = None, **kw: Any
    ) -> tuple[POP3Server, TLSCapableTransport]:
        protocol, transport = self.connect(policy or POP3S, implicitTLS=True, **kw)
        out = self.send(
            protocol,
            transport,
            b"USER " + account.encode() + b"\r\nPASS " + USERS[account].encode() + b"\r\n",
        )
        assert out == b"+OK\r\n+OK Logged in.\r\n", out
        return protocol, transport

    def lose(self, protocol: POP3Server, transport: StringTransport) -> None:
        transport.connected = False
        protocol.connectionLost(None)  # type: ignore[arg-type]


def pump(transport: StringTransport) -> int:
    """
    Play the consumer for a registered pull producer until it is done;
    return how many chunks were asked for.
    """
    rounds = 0
    while transport.producer is not None and not transport.streaming:
        transport.producer.resumeProducing()
        rounds += 1
        assert rounds < 10_000
    return rounds


class GreetingAndCapabilityTests(POP3TestMixin, unittest.SynchronousTestCase):
    def test_greeting(self) -> None:
        """
        The greeting names the host; no APOP timestamp (APOP is not offered).
        """
        protocol = self.factory().buildProtocol(None)
        transport = TLSCapableTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), b"+OK mail.example.test POP3 ready\r\n")

    def test_capaBeforeTLS(self) -> None:
        """
        Before STLS on a TLS-required endpoint, CAPA offers STLS but neither
        USER nor SASL: credentials would cross in plaintext.
        """
        protocol, transport = self.connect()
        self.assertEqual(self.send(protocol, transport, b"CAPA\r\n"), BEFORE_TLS_CAPA)

    def test_capaAfterSTLS(self) -> None:
        """
        After STLS, CAPA offers USER and SASL PLAIN LOGIN and no more STLS.
        """
        protocol, transport = self.connect()
        self.assertEqual(
            self.send(protocol, transport, b"STLS\r\n"), b"+OK Begin TLS negotiation now.\r\n"
        )
        self.assertIs(transport.tlsStartedWith, self.tls)
        self.assertEqual(self.send(protocol, transport, b"CAPA\r\n"), AFTER_TLS_CAPA)

    def test_capaImplicitTLS(self) -> None:
        """
        On an implicit-TLS endpoint STLS is never offered (nested TLS would
        hang), and login is.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        self.assertEqual(self.send(protocol, transport, b"CAPA\r\n"), AFTER_TLS_CAPA)
        self.assertEqual(
            self.send(protocol, transport, b"STLS\r\n"), b"-ERR TLS is already active.\r\n"
        )
        self.assertIsNone(transport.tlsStartedWith)

    def test_implicitDetectedFromTransport(self) -> None:
        """
        A transport providing L{ISSLTransport} counts as TLS even if the
        policy says STARTTLS (the factory was wrapped for TLS anyway).
        """
        protocol, transport = self.connect(POP3, implicitTLS=True)
        self.assertEqual(self.send(protocol, transport, b"CAPA\r\n"), AFTER_TLS_CAPA)

    def test_capaNoTLSEndpoint(self) -> None:
        """
        On a C{tls = "none"} endpoint there is no STLS and plaintext login is
        allowed.
        """
        protocol, transport = self.connect(POP3_PLAIN)
        self.assertEqual(self.send(protocol, transport, b"CAPA\r\n"), AFTER_TLS_CAPA)
        self.assertEqual(
            self.send(protocol, transport, b"STLS\r\n"), b"-ERR TLS support isn't enabled.\r\n"
        )

    def test_noCreatorNoSTLS(self) -> None:
        """
        Without a TLS creator STLS is neither offered nor accepted, even if
        the policy asks for it.
        """
        protocol, transport = self.connect(tls=None)
        out = self.send(protocol, transport, b"CAPA\r\n")
        self.assertNotIn(b"STLS", out)
        self.assertEqual(
            self.send(protocol, transport, b"STLS\r\n"), b"-ERR TLS support isn't enabled.\r\n"
        )

    def test_capaInTransaction(self) -> None:
        """
        After login CAPA no longer lists login mechanisms.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(self.send(protocol, transport, b"CAPA\r\n"), TRANSACTION_CAPA)

    def test_protocolProvidesHandshakeListener(self) -> None:
        """
        The protocol is told when a TLS handshake completes.
        """
        self.assertTrue(verifyClass(IHandshakeListener, POP3Server))

    def test_handshakeWithoutTLSRecordsNothing(self) -> None:
        """
        The handshake hook on a transport that has no TLS connection leaves
        the session without TLS info rather than failing.
        """
        protocol, transport = self.connect()
        protocol.handshakeCompleted()
        assert protocol.session is not None
        self.assertIsNone(protocol.session.tls)


class TLSGateTests(POP3TestMixin, unittest.SynchronousTestCase):
    def test_userRefusedBeforeSTLS(self) -> None:
        """
        USER before STLS gets Dovecot's plaintext refusal.
        """
        protocol, transport = self.connect()
        self.assertEqual(self.send(protocol, transport, b"USER alice@example.test\r\n"), PLAINTEXT_REFUSED)

    def test_passRefusedBeforeSTLS(self) -> None:
        """
        PASS before STLS is refused the same way and never reaches the
        portal (no failure delay is scheduled).
        """
        protocol, transport = self.connect()
        self.assertEqual(self.send(protocol, transport, b"PASS secret\r\n"), PLAINTEXT_REFUSED)
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), POP3Limits().loginTimeout)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_authRefusedBeforeSTLS(self) -> None:
        """
        AUTH PLAIN with correct credentials before STLS is refused.
        """
        protocol, transport = self.connect()
        out = self.send(protocol, transport, b"AUTH PLAIN " + plainResponse(ALICE, "secret") + b"\r\n")
        self.assertEqual(out, PLAINTEXT_REFUSED)
        self.assertIs(protocol.state, State.AUTHORIZATION)

    def test_stlsOptionalEndpointStillGatesLogin(self) -> None:
        """
        An endpoint with optional STARTTLS also refuses plaintext logins
        (the policy's rule, like Dovecot's disable_plaintext_auth).
        """
        optional = EndpointPolicy("pop3o", Protocol.POP3, ("0.0.0.0:110",), TLSMode.STARTTLS, auth=True)
        protocol, transport = self.connect(optional)
        self.assertEqual(self.send(protocol, transport, b"USER alice@example.test\r\n"), PLAINTEXT_REFUSED)

    def test_noAuthEndpoint(self) -> None:
        """
        An endpoint without authentication refuses USER with a message that
        does not blame the lack of TLS.
        """
        protocol, transport = self.connect(POP3_NO_AUTH)
        self.assertEqual(
            self.send(protocol, transport, b"USER alice@example.test\r\n"),
            b"-ERR [AUTH] Authentication is not available on this port.\r\n",
        )

    def test_stlsDropsPipelinedPlaintext(self) -> None:
        """
        Lines pipelined after STLS in the same read are discarded, not run
        inside TLS (RFC 2595 section 4, CVE-2011-0411): USER gets no reply
        and is not remembered for a later PASS.
        """
        protocol, transport = self.connect()
        out = self.send(protocol, transport, b"STLS\r\nUSER alice@example.test\r\n")
        self.assertEqual(out, b"+OK Begin TLS negotiation now.\r\n")
        self.assertIs(transport.tlsStartedWith, self.tls)
        self.assertEqual(self.send(protocol, transport, b"PASS secret\r\n"), b"-ERR No username given.\r\n")

    def test_stlsDropsPartialLine(self) -> None:
        """
        A partial line after STLS is dropped too: it cannot be completed by
        bytes arriving over TLS.
        """
        protocol, transport = self.connect()
        self.send(protocol, transport, b"STLS\r\nUSER ali")
        self.assertEqual(self.send(protocol, transport, b"\r\n"), b"-ERR Unknown command.\r\n")

    def test_stlsTwice(self) -> None:
        """
        A second STLS is refused and does not restart TLS.
        """
        protocol, transport = self.connect()
        self.send(protocol, transport, b"STLS\r\n")
        transport.tlsStartedWith = None
        self.assertEqual(self.send(protocol, transport, b"STLS\r\n"), b"-ERR TLS is already active.\r\n")
        self.assertIsNone(transport.tlsStartedWith)

    def test_stlsAfterLoginUnknown(self) -> None:
        """
        STLS is an AUTHORIZATION-state command only.
        """
        protocol, transport = self.loggedIn(policy=POP3_PLAIN)
        self.assertEqual(self.send(protocol, transport, b"STLS\r\n"), b"-ERR Unknown command.\r\n")

    def test_loginAfterSTLS(self) -> None:
        """
        After STLS, USER/PASS works.
        """
        protocol, transport = self.connect()
        self.send(protocol, transport, b"STLS\r\n")
        out = self.send(protocol, transport, b"USER alice@example.test\r\nPASS secret\r\n")
        self.assertEqual(out, b"+OK\r\n+OK Logged in.\r\n")
        self.assertIs(protocol.state, State.TRANSACTION)


class AuthenticationTests(POP3TestMixin, unittest.SynchronousTestCase):
    def test_userPass(self) -> None:
        """
        USER/PASS logs in; the session records the account.
        """
        protocol, transport = self.loggedIn()
        self.assertIs(protocol.state, State.TRANSACTION)
        assert protocol.session is not None
        self.assertEqual(protocol.session.authenticatedAs, ALICE)

    def test_passWithSpaces(self) -> None:
        """
        PASS takes the rest of the line, spaces included (RFC 1939 allows
        servers to accept them).
        """
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(ALICE.encode(), b"two words ")
        self.portal = Portal(self.realm, [checker])
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        out = self.send(protocol, transport, b"USER alice@example.test\r\nPASS two words \r\n")
        self.assertEqual(out, b"+OK\r\n+OK Logged in.\r\n")

    def test_authPlainInitialResponse(self) -> None:
        """
        AUTH PLAIN with an initial response logs in in one step.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        out = self.send(protocol, transport, b"AUTH PLAIN " + plainResponse(ALICE, "secret") + b"\r\n")
        self.assertEqual(out, b"+OK Logged in.\r\n")

    def test_authPlainContinuation(self) -> None:
        """
        AUTH PLAIN without initial response gets an empty C{+ } challenge.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        self.assertEqual(self.send(protocol, transport, b"AUTH PLAIN\r\n"), b"+ \r\n")
        out = self.send(protocol, transport, plainResponse(ALICE, "secret") + b"\r\n")
        self.assertEqual(out, b"+OK Logged in.\r\n")

    def test_authLogin(self) -> None:
        """
        AUTH LOGIN asks for user name and password in base64 prompts.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        self.assertEqual(self.send(protocol, transport, b"AUTH LOGIN\r\n"), b"+ VXNlcm5hbWU6\r\n")
        self.assertEqual(
            self.send(protocol, transport, base64.b64encode(ALICE.encode()) + b"\r\n"),
            b"+ UGFzc3dvcmQ6\r\n",
        )
        self.assertEqual(
            self.send(protocol, transport, base64.b64encode(b"secret") + b"\r\n"), b"+OK Logged in.\r\n"
        )

    def test_authCancel(self) -> None:
        """
        C{*} cancels the exchange without counting as a failure; commands
        work again afterwards.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        self.send(protocol, transport, b"AUTH PLAIN\r\n")
        self.assertEqual(
            self.send(protocol, transport, b"*\r\n"), b"-ERR Authentication aborted by client.\r\n"
        )
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), POP3Limits().loginTimeout)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        out = self.send(protocol, transport, b"AUTH PLAIN " + plainResponse(ALICE, "secret") + b"\r\n")
        self.assertEqual(out, b"+OK Logged in.\r\n")

    def test_authList(self) -> None:
        """
        AUTH without arguments lists the mechanisms (the pre-RFC 5034 probe).
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        self.assertEqual(self.send(protocol, transport, b"AUTH\r\n"), b"+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n")

    def test_unsupportedMechanism(self) -> None:
        """
        An unknown mechanism is refused at once.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        self.assertEqual(
            self.send(protocol, transport, b"AUTH CRAM-MD5\r\n"),
            b"-ERR Unsupported authentication mechanism.\r\n",
        )

    def test_foreignAuthzidRefused(self) -> None:
        """
        PLAIN with an authorization identity other than the user is a failed
        login, answered after the delay.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        out = self.send(
            protocol, transport, b"AUTH PLAIN " + plainResponse(ALICE, "secret", authzid=BOB) + b"\r\n"
        )
        self.assertEqual(out, b"")
        self.clock.advance(1.0)
        self.assertEqual(transport.value(), AUTH_FAILED)
        self.assertIs(protocol.state, State.AUTHORIZATION)

    def failedLogin(self, commands: bytes) -> bytes:
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        out = self.send(protocol, transport, commands)
        self.clock.advance(0.999)
        out += transport.value()
        transport.clear()
        self.clock.advance(0.001)
        return out + b"|" + transport.value()

    def test_wrongPasswordAndUnknownUserIdentical(self) -> None:
        """
        A wrong password and an unknown user get the same bytes, at the same
        time: nothing before the 1 s delay, then C{[AUTH] Authentication
        failed.}.
        """
        wrongPassword = self.failedLogin(b"USER alice@example.test\r\nPASS nope\r\n")
        unknownUser = self.failedLogin(b"USER mallory@example.test\r\nPASS nope\r\n")
        self.assertEqual(wrongPassword, b"+OK\r\n|" + AUTH_FAILED)
        self.assertEqual(unknownUser, wrongPassword)

    def test_saslFailureIdentical(self) -> None:
        """
        The same holds for AUTH PLAIN.
        """
        wrongPassword = self.failedLogin(b"AUTH PLAIN " + plainResponse(ALICE, "nope") + b"\r\n")
        unknownUser = self.failedLogin(b"AUTH PLAIN " + plainResponse("x@example.test", "nope") + b"\r\n")
        self.assertEqual(wrongPassword, b"|" + AUTH_FAILED)
        self.assertEqual(unknownUser, wrongPassword)

    def test_pipelinedCommandsWaitForFailureDelay(self) -> None:
        """
        Commands pipelined after a failing PASS are answered only after the
        delayed failure reply, in order.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        out = self.send(protocol, transport, b"USER alice@example.test\r\nPASS nope\r\nCAPA\r\n")
        self.assertEqual(out, b"+OK\r\n")
        self.clock.advance(1.0)
        self.assertEqual(transport.value(), AUTH_FAILED + AFTER_TLS_CAPA)

    def test_threeFailuresDisconnect(self) -> None:
        """
        The third failed login closes the connection after its reply.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        for attempt in range(3):
            self.assertFalse(transport.disconnecting)
            self.send(protocol, transport, b"USER alice@example.test\r\nPASS nope\r\n")
            self.clock.advance(1.0)
            self.assertEqual(transport.value(), AUTH_FAILED)
            transport.clear()
        self.assertTrue(transport.disconnecting)

    def test_failureDelayConfigurable(self) -> None:
        """
        The delay comes from the limits.
        """
        protocol, transport = self.connect(
            POP3S, implicitTLS=True, limits=POP3Limits(failureDelay=5.0)
        )
        self.send(protocol, transport, b"USER alice@example.test\r\nPASS nope\r\n")
        self.clock.advance(4.9)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.1)
        self.assertEqual(transport.value(), AUTH_FAILED)

    def test_passWithoutUser(self) -> None:
        """
        PASS without USER is refused without a portal call.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        self.assertEqual(self.send(protocol, transport, b"PASS secret\r\n"), b"-ERR No username given.\r\n")

    def test_userForgottenAfterFailure(self) -> None:
        """
        After a failed PASS the user name must be given again.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        self.send(protocol, transport, b"USER alice@example.test\r\nPASS nope\r\n")
        self.clock.advance(1.0)
        transport.clear()
        self.assertEqual(self.send(protocol, transport, b"PASS secret\r\n"), b"-ERR No username given.\r\n")

    def test_apopNotOffered(self) -> None:
        """
        APOP is an unknown command.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        self.assertEqual(
            self.send(protocol, transport, b"APOP alice@example.test c4c9334bac560ecc979e58001b3e22fb\r\n"),
            b"-ERR Unknown command.\r\n",
        )

    def test_transactionCommandsNeedLogin(self) -> None:
        """
        STAT before login is an unknown command in AUTHORIZATION state.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        self.assertEqual(self.send(protocol, transport, b"STAT\r\n"), b"-ERR Unknown command.\r\n")

    def test_connectionLostDuringFailureDelay(self) -> None:
        """
        A client that leaves during the failure delay gets nothing written
        and leaves no timer behind.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        self.send(protocol, transport, b"USER alice@example.test\r\nPASS nope\r\n")
        self.lose(protocol, transport)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(transport.value(), b"")


class TransactionTests(POP3TestMixin, unittest.SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        deliver(self.store, ALICE, MSG1)
        deliver(self.store, ALICE, MSG2)
        folder = self.store.openFolder(ALICE)
        self.uids = [m.uid for m in folder.messages()]
        self.uidls = [folder.uidl(uid).encode() for uid in self.uids]

    def inbox(self) -> IMailFolder:
        return self.store.openFolder(ALICE)

    def test_stat(self) -> None:
        """
        STAT gives the count and the CRLF octet total.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b"STAT\r\n"),
            b"+OK 2 %d\r\n" % (len(MSG1) + len(MSG2)),
        )

    def test_list(self) -> None:
        """
        LIST without argument lists every message with its size.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b"LIST\r\n"),
            b"+OK 2 messages:\r\n1 %d\r\n2 %d\r\n.\r\n" % (len(MSG1), len(MSG2)),
        )

    def test_listOne(self) -> None:
        """
        LIST n answers on one line; a missing or invalid number is an error.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(self.send(protocol, transport, b"LIST 2\r\n"), b"+OK 2 %d\r\n" % len(MSG2))
        self.assertEqual(self.send(protocol, transport, b"LIST 3\r\n"), b"-ERR There's no message 3.\r\n")
        self.assertEqual(self.send(protocol, transport, b"LIST 0\r\n"), b"-ERR There's no message 0.\r\n")
        self.assertEqual(self.send(protocol, transport, b"LIST x\r\n"), b"-ERR Invalid message number.\r\n")
        self.assertEqual(self.send(protocol, transport, b"LIST -1\r\n"), b"-ERR Invalid message number.\r\n")

    def test_uidl(self) -> None:
        """
        UIDL gives the folder's POP3 ids.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b"UIDL\r\n"),
            b"+OK\r\n1 %s\r\n2 %s\r\n.\r\n" % tuple(self.uidls),
        )
        self.assertEqual(self.send(protocol, transport, b"UIDL 2\r\n"), b"+OK 2 %s\r\n" % self.uidls[1])

    def test_retr(self) -> None:
        """
        RETR sends the size line, the byte-stuffed message and the
        terminator.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b"RETR 1\r\n"),
            b"+OK %d octets\r\n" % len(MSG1)
            + b"From: a@example.test\r\nSubject: one\r\n\r\nHello\r\n..hidden dot\r\nBye\r\n.\r\n",
        )

    def test_top(self) -> None:
        """
        TOP n 0 sends the headers and the blank line; TOP n 2 two body lines
        more, stuffed.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b"TOP 1 0\r\n"),
            b"+OK\r\nFrom: a@example.test\r\nSubject: one\r\n\r\n.\r\n",
        )
        self.assertEqual(
            self.send(protocol, transport, b"TOP 1 2\r\n"),
            b"+OK\r\nFrom: a@example.test\r\nSubject: one\r\n\r\nHello\r\n..hidden dot\r\n.\r\n",
        )
        self.assertEqual(
            self.send(protocol, transport, b"TOP 2 99\r\n"), b"+OK\r\n" + MSG2 + b".\r\n"
        )
        self.assertEqual(
            self.send(protocol, transport, b"TOP 2 x\r\n"), b"-ERR Invalid number of lines.\r\n"
        )
        self.assertEqual(self.send(protocol, transport, b"TOP 2\r\n"), b"-ERR Invalid arguments.\r\n")

    def test_dotStuffingAtChunkBoundary(self) -> None:
        """
        A line starting with C{.} right where the producer splits its reads
        is still stuffed: the state carries across chunks.
        """
        message = b"Subject: x\r\n\r\nab\r\n.\r\nz\r\n"
        boundary = message.index(b"\r\n.\r\n") + 2
        deliver(self.store, ALICE, message)
        protocol, transport = self.loggedIn(limits=POP3Limits(chunkSize=boundary))
        protocol.dataReceived(b"RETR 3\r\n")
        rounds = pump(transport)
        self.assertGreater(rounds, 1)
        self.assertEqual(
            transport.value(),
            b"+OK %d octets\r\nSubject: x\r\n\r\nab\r\n..\r\nz\r\n.\r\n" % len(message),
        )

    def test_dotStuffingEveryChunkSize(self) -> None:
        """
        Whatever the chunk size, RETR and TOP give the same stuffed bytes.
        """
        message = b".a\r\n\r\n.\r\n..b\r\n.\r\n"
        deliver(self.store, ALICE, message)
        expected = b".." + b"a\r\n\r\n..\r\n...b\r\n..\r\n.\r\n"
        for size in range(1, len(message) + 2):
            protocol, transport = self.loggedIn(limits=POP3Limits(chunkSize=size))
            self.assertEqual(
                self.send(protocol, transport, b"RETR 3\r\n"), b"+OK %d octets\r\n" % len(message) + expected
            )
            self.assertEqual(
                self.send(protocol, transport, b"TOP 3 1\r\n"), b"+OK\r\n..a\r\n\r\n..\r\n.\r\n"
            )
            self.lose(protocol, transport)

    def test_messageWithoutFinalCRLF(self) -> None:
        """
        A message whose last line has no CRLF gets one before the
        terminator, so the dot stands on its own line.
        """
        message = b"Subject: x\r\n\r\nno newline"
        deliver(self.store, ALICE, message)
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b"RETR 3\r\n"),
            b"+OK %d octets\r\n" % len(message) + message + b"\r\n.\r\n",
        )

    def test_bareLFDotStuffed(self) -> None:
        """
        A stored bare LF followed by a dot is stuffed too, so that an
        LF-splitting client never sees an early terminator.
        """
        deliver(self.store, ALICE, b"Subject: x\r\n\r\na\n.\r\nb\r\n")
        protocol, transport = self.loggedIn()
        out = self.send(protocol, transport, b"RETR 3\r\n")
        self.assertEqual(out.split(b"\r\n", 1)[1], b"Subject: x\r\n\r\na\n..\r\nb\r\n.\r\n")

    def test_retrLargeMessageStreams(self) -> None:
        """
        A large message goes out in chunks of the configured size, not in
        one write.
        """
        body = b"".join(b"line %06d\r\n" % i for i in range(20_000))
        deliver(self.store, ALICE, b"Subject: big\r\n\r\n" + body)
        protocol, transport = self.loggedIn(limits=POP3Limits(chunkSize=16_384))
        writes: list[int] = []
        original = transport.write
        transport.write = lambda data: (writes.append(len(data)), original(data))[1]  # type: ignore[method-assign]
        protocol.dataReceived(b"RETR 3\r\n")
        pump(transport)
        status = b"+OK %d octets\r\n" % self.store.openFolder(ALICE).messages()[2].size
        self.assertTrue(transport.value().endswith(body + b".\r\n"))
        self.assertGreater(len(writes), 10)
        self.assertLessEqual(max(writes), 16_384 + len(status))

    def test_smallMessageOneWrite(self) -> None:
        """
        The status line, a message smaller than a chunk and the terminator
        go out in one write, so a RETR answer is not split into segments
        that Nagle's algorithm would hold back.
        """
        protocol, transport = self.loggedIn()
        writes: list[bytes] = []
        original = transport.write
        transport.write = lambda data: (writes.append(data), original(data))[1]  # type: ignore[method-assign]
        protocol.dataReceived(b"RETR 2\r\n")
        pump(transport)
        self.assertEqual(writes, [b"+OK %d octets\r\n" % len(MSG2) + MSG2 + b".\r\n"])

    def test_smallMessageAnsweredAtOnce(self) -> None:
        """
        A message that ends within the first chunk is answered while the
        command is handled: no producer swap, no reactor turn, and a
        pipelined command after it is answered in the same go.  A larger
        one is handed to a producer.
        """
        protocol, transport = self.loggedIn()
        registered: list[Any] = []
        original = transport.registerProducer
        transport.registerProducer = lambda p, s: (registered.append(p), original(p, s))[1]  # type: ignore[method-assign]
        protocol.dataReceived(b"RETR 2\r\nNOOP\r\n")
        self.assertEqual(transport.value(), b"+OK %d octets\r\n" % len(MSG2) + MSG2 + b".\r\n+OK\r\n")
        self.assertEqual(registered, [])
        self.assertIs(transport.producer, protocol)
        self.lose(protocol, transport)
        body = b"x" * 100 + b"\r\n"
        deliver(self.store, ALICE, b"Subject: big\r\n\r\n" + body * 20)
        protocol, transport = self.loggedIn(limits=POP3Limits(chunkSize=512))
        second = transport.registerProducer
        transport.registerProducer = lambda p, s: (registered.append(p), second(p, s))[1]  # type: ignore[method-assign]
        protocol.dataReceived(b"RETR 3\r\n")
        self.assertTrue(registered and registered[0] is not protocol)
        pump(transport)
        self.assertTrue(transport.value().endswith(body * 20 + b".\r\n"))

    def test_noDelaySet(self) -> None:
        """
        The server turns Nagle's algorithm off on a transport that can.
        """
        calls: list[bool] = []

        class NoDelayTransport(StringTransport):
            def setTcpNoDelay(self, enabled: bool) -> None:
                calls.append(enabled)

        protocol = self.factory().buildProtocol(None)
        protocol.makeConnection(NoDelayTransport())
        self.assertEqual(calls, [True])

    def test_pipelinedRetrInOrder(self) -> None:
        """
        Commands pipelined behind a RETR wait until the message is sent.
        """
        protocol, transport = self.loggedIn(limits=POP3Limits(chunkSize=8))
        protocol.dataReceived(b"RETR 2\r\nNOOP\r\n")
        self.assertEqual(transport.value(), b"")
        pump(transport)
        self.assertEqual(transport.value(), b"+OK %d octets\r\n" % len(MSG2) + MSG2 + b".\r\n+OK\r\n")

    def test_deleMarksOnly(self) -> None:
        """
        DELE hides the message from this session but leaves it in the store.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(self.send(protocol, transport, b"DELE 1\r\n"), b"+OK Marked to be deleted.\r\n")
        self.assertEqual(self.send(protocol, transport, b"DELE 1\r\n"), b"-ERR Message is deleted.\r\n")
        self.assertEqual(self.send(protocol, transport, b"RETR 1\r\n"), b"-ERR Message is deleted.\r\n")
        self.assertEqual(self.send(protocol, transport, b"STAT\r\n"), b"+OK 1 %d\r\n" % len(MSG2))
        self.assertEqual(
            self.send(protocol, transport, b"LIST\r\n"), b"+OK 1 messages:\r\n2 %d\r\n.\r\n" % len(MSG2)
        )
        self.assertEqual(len(self.inbox().messages()), 2)

    def test_deleQuitExpunges(self) -> None:
        """
        QUIT after DELE expunges the marked messages, then says goodbye and
        closes.
        """
        protocol, transport = self.loggedIn()
        self.send(protocol, transport, b"DELE 1\r\n")
        self.assertEqual(self.send(protocol, transport, b"QUIT\r\n"), b"+OK Logging out.\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual([m.uid for m in self.inbox().messages()], [self.uids[1]])
        self.assertFalse(self.locks.isLocked(ALICE))

    def test_quitAnsweredAfterExpunge(self) -> None:
        """
        QUIT is answered only when the expunge Deferred fires, and the lock
        is held until then.
        """
        folders: list[HeldExpungeFolder] = []

        def factory(account: str) -> Maildrop:
            folders.append(HeldExpungeFolder(self.store.openFolder(account)))
            return Maildrop(account, folders[-1], self.locks)

        self.realm.registerAvatarFactory(IPOP3Maildrop, factory)
        protocol, transport = self.loggedIn()
        self.send(protocol, transport, b"DELE 2\r\n")
        self.assertEqual(self.send(protocol, transport, b"QUIT\r\n"), b"")
        [(uids, d)] = folders[0].expungeCalls
        self.assertEqual(uids, [self.uids[1]])
        self.assertTrue(self.locks.isLocked(ALICE))
        self.assertFalse(transport.disconnecting)
        d.callback(None)
        self.assertEqual(transport.value(), b"+OK Logging out.\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertFalse(self.locks.isLocked(ALICE))
        self.assertEqual([m.uid for m in self.inbox().messages()], [self.uids[0]])

    def test_expungeFailure(self) -> None:
        """
        A failed expunge is reported with C{[SYS/TEMP]}, logged without a
        traceback, and the lock is released.
        """

        class FailingFolder(HeldExpungeFolder):
            def expunge(self, uids: Iterable[int]) -> defer.Deferred[None]:
                return defer.fail(MailError(ErrorKind.TEMP, "disk full", temporary=True))

        self.realm.registerAvatarFactory(
            IPOP3Maildrop,
            lambda account: Maildrop(account, FailingFolder(self.store.openFolder(account)), self.locks),
        )
        protocol, transport = self.loggedIn()
        self.send(protocol, transport, b"DELE 1\r\n")
        self.assertEqual(
            self.send(protocol, transport, b"QUIT\r\n"),
            b"-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n",
        )
        self.assertTrue(transport.disconnecting)
        self.assertFalse(self.locks.isLocked(ALICE))
        self.assertFalse([e for e in self.events if "log_failure" in e])

    def test_deleConnectionLostDeletesNothing(self) -> None:
        """
        A connection that drops after DELE without QUIT deletes nothing and
        releases the lock.
        """
        protocol, transport = self.loggedIn()
        self.send(protocol, transport, b"DELE 1\r\nDELE 2\r\n")
        self.lose(protocol, transport)
        self.assertEqual(len(self.inbox().messages()), 2)
        self.assertFalse(self.locks.isLocked(ALICE))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_rset(self) -> None:
        """
        RSET unmarks deleted messages; QUIT then deletes nothing.
        """
        protocol, transport = self.loggedIn()
        self.send(protocol, transport, b"DELE 1\r\n")
        self.assertEqual(self.send(protocol, transport, b"RSET\r\n"), b"+OK\r\n")
        self.assertEqual(
            self.send(protocol, transport, b"STAT\r\n"), b"+OK 2 %d\r\n" % (len(MSG1) + len(MSG2))
        )
        self.send(protocol, transport, b"QUIT\r\n")
        self.assertEqual(len(self.inbox().messages()), 2)

    def test_retrMarksSeenAtQuit(self) -> None:
        """
        A retrieved message becomes C{\\Seen} at QUIT, not before; TOP does
        not mark it; other flags are kept.
        """
        folder = self.inbox()
        folder.setFlags(self.uids[0], ["\\Flagged"])
        protocol, transport = self.loggedIn()
        self.send(protocol, transport, b"RETR 1\r\nTOP 2 0\r\n")
        self.assertEqual({m.uid: m.flags for m in self.inbox().messages()}[self.uids[0]], {"\\Flagged"})
        self.send(protocol, transport, b"QUIT\r\n")
        flags = {m.uid: m.flags for m in self.inbox().messages()}
        self.assertEqual(flags, {self.uids[0]: {"\\Flagged", "\\Seen"}, self.uids[1]: frozenset()})

    def test_retrWithoutQuitNotSeen(self) -> None:
        """
        Without QUIT a retrieved message stays unseen (nothing is changed).
        """
        protocol, transport = self.loggedIn()
        self.send(protocol, transport, b"RETR 1\r\n")
        self.lose(protocol, transport)
        self.assertEqual([m.flags for m in self.inbox().messages()], [frozenset(), frozenset()])

    def test_rsetForgetsSeen(self) -> None:
        """
        RSET also drops the pending C{\\Seen} marks, as Dovecot does.
        """
        protocol, transport = self.loggedIn()
        self.send(protocol, transport, b"RETR 1\r\nRSET\r\nQUIT\r\n")
        self.assertEqual([m.flags for m in self.inbox().messages()], [frozenset(), frozenset()])

    def test_snapshotAtLogin(self) -> None:
        """
        A message delivered during the session does not change the
        numbering; it is seen at the next login.
        """
        protocol, transport = self.loggedIn()
        deliver(self.store, ALICE, b"Subject: late\r\n\r\n")
        self.assertEqual(
            self.send(protocol, transport, b"STAT\r\n"), b"+OK 2 %d\r\n" % (len(MSG1) + len(MSG2))
        )
        self.send(protocol, transport, b"QUIT\r\n")
        protocol, transport = self.loggedIn()
        self.assertTrue(self.send(protocol, transport, b"STAT\r\n").startswith(b"+OK 3 "))

    def test_vanishedMessage(self) -> None:
        """
        RETR of a message expunged by another session meanwhile is a
        temporary error, and the session goes on.
        """
        protocol, transport = self.loggedIn()
        self.inbox().expunge([self.uids[0]])
        self.assertEqual(
            self.send(protocol, transport, b"RETR 1\r\n"),
            b"-ERR [SYS/TEMP] Message is no longer available.\r\n",
        )
        self.assertEqual(self.send(protocol, transport, b"NOOP\r\n"), b"+OK\r\n")

    def test_connectionLostDuringRetr(self) -> None:
        """
        Losing the connection in the middle of a RETR stops the producer
        and releases the lock.
        """
        protocol, transport = self.loggedIn(limits=POP3Limits(chunkSize=4))
        protocol.dataReceived(b"RETR 1\r\n")
        producer = transport.producer
        assert producer is not None
        producer.resumeProducing()
        self.lose(protocol, transport)
        self.assertIsNone(producer._file)  # type: ignore[attr-defined]
        self.assertFalse(self.locks.isLocked(ALICE))


class LockTests(POP3TestMixin, unittest.SynchronousTestCase):
    def test_secondSessionLocked(self) -> None:
        """
        A second login to the same maildrop is refused with C{[IN-USE]}
        while the first session is open, and works once it has quit.
        """
        first, firstTransport = self.loggedIn()
        second, transport = self.connect(POP3S, implicitTLS=True)
        out = self.send(protocol=second, transport=transport, data=b"USER alice@example.test\r\nPASS secret\r\n")
        self.assertEqual(out, b"+OK\r\n-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n")
        self.assertIs(second.state, State.AUTHORIZATION)
        self.send(first, firstTransport, b"QUIT\r\n")
        out = self.send(second, transport, b"USER alice@example.test\r\nPASS secret\r\n")
        self.assertEqual(out, b"+OK\r\n+OK Logged in.\r\n")

    def test_otherAccountNotLocked(self) -> None:
        """
        The lock is per account.
        """
        self.loggedIn(ALICE)
        protocol, transport = self.loggedIn(BOB)
        self.assertIs(protocol.state, State.TRANSACTION)

    def test_locksSharedAcrossEndpoints(self) -> None:
        """
        Sessions on different endpoints (110 after STLS and 995) share the
        lock table of the one realm.
        """
        self.loggedIn()
        protocol, transport = self.connect(POP3)
        self.send(protocol, transport, b"STLS\r\n")
        out = self.send(protocol, transport, b"USER alice@example.test\r\nPASS secret\r\n")
        self.assertEqual(out, b"+OK\r\n-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n")

    def test_maildropProvidesInterface(self) -> None:
        """
        The avatar from L{maildropFactory} provides L{IPOP3Maildrop}; lock
        and unlock are idempotent per maildrop.
        """
        maildrop = maildropFactory(self.store, self.locks)(ALICE)
        self.assertTrue(verifyObject(IPOP3Maildrop, maildrop))
        self.assertTrue(maildrop.lock())
        self.assertTrue(maildrop.lock())
        other = maildropFactory(self.store, self.locks)(ALICE)
        self.assertFalse(other.lock())
        other.unlock()
        self.assertTrue(self.locks.isLocked(ALICE))
        maildrop.unlock()
        maildrop.unlock()
        self.assertTrue(other.lock())


class LimitTests(POP3TestMixin, unittest.SynchronousTestCase):
    def test_lineTooLong(self) -> None:
        """
        More than 4096 octets without a line end: C{-ERR Line too long} and
        the connection is closed.
        """
        protocol, transport = self.connect()
        self.assertEqual(self.send(protocol, transport, b"X" * 4098), b"-ERR Line too long\r\n")
        self.assertTrue(transport.disconnecting)

    def test_longestLineAccepted(self) -> None:
        """
        A 4096-octet line (plus CRLF) is still parsed as a command.
        """
        protocol, transport = self.connect()
        self.assertEqual(
            self.send(protocol, transport, b"X" * 4096 + b"\r\n"), b"-ERR Unknown command.\r\n"
        )
        self.assertFalse(transport.disconnecting)

    def test_longLineInOneRead(self) -> None:
        """
        An over-long line that arrives complete with its CRLF is refused too.
        """
        protocol, transport = self.connect()
        self.assertEqual(
            self.send(protocol, transport, b"X" * 4097 + b"\r\nCAPA\r\n"), b"-ERR Line too long\r\n"
        )

    def test_unknownCommand(self) -> None:
        """
        Unknown commands get Dovecot's reply; after ten the server hangs up.
        """
        protocol, transport = self.connect()
        for i in range(9):
            self.assertEqual(self.send(protocol, transport, b"FOO\r\n"), b"-ERR Unknown command.\r\n")
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.send(protocol, transport, b"FOO\r\n"), b"-ERR Too many bad commands.\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.send(protocol, transport, b"CAPA\r\n"), b"")

    def test_lowerCaseAndLF(self) -> None:
        """
        Command names are case-insensitive, and a bare LF ends a line.
        """
        protocol, transport = self.connect()
        self.assertEqual(self.send(protocol, transport, b"capa\n"), BEFORE_TLS_CAPA)

    def test_loginTimeout(self) -> None:
        """
        Before login the client has three minutes to log in, however busy
        it keeps the connection: commands do not restart the timer.
        """
        protocol, transport = self.connect()
        for _ in range(5):
            self.clock.advance(35)
            self.assertIn(b"+OK", self.send(protocol, transport, b"CAPA\r\n"))
        self.clock.advance(4)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(transport.value(), b"-ERR Disconnected: login not completed in time.\r\n")
        self.assertTrue(transport.disconnecting)

    def test_idleTimeoutAfterLogin(self) -> None:
        """
        After login the idle limit is ten minutes, and a timeout deletes
        nothing.
        """
        deliver(self.store, ALICE, MSG1)
        protocol, transport = self.loggedIn()
        self.send(protocol, transport, b"DELE 1\r\n")
        self.clock.advance(599)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(transport.value(), b"-ERR Disconnected for inactivity.\r\n")
        self.assertTrue(transport.disconnecting)
        self.lose(protocol, transport)
        self.assertEqual(len(self.store.openFolder(ALICE).messages()), 1)

    def test_pipelinedInputPausesReading(self) -> None:
        """
        While a command is pending, buffered input over the limit pauses
        the transport; reading resumes when the command is done.
        """
        protocol, transport = self.connect(
            POP3S, implicitTLS=True, limits=POP3Limits(maxPipelined=100)
        )
        protocol.dataReceived(b"USER alice@example.test\r\nPASS nope\r\n" + b"CAPA\r\n" * 30)
        self.assertEqual(transport.producerState, "paused")
        self.clock.advance(1.0)
        self.assertEqual(transport.producerState, "producing")


class LoggingTests(POP3TestMixin, unittest.SynchronousTestCase):
    def test_connectionEvent(self) -> None:
        """
        One event per connection, with peer, endpoint and session id.
        """
        protocol, transport = self.connect()
        [event] = self.events
        assert protocol.session is not None
        self.assertEqual(event["peer"], "192.168.1.1:54321")
        self.assertEqual(event["endpoint"], "pop3")
        self.assertEqual(event["sessionId"], protocol.session.sessionId)

    def test_authOutcomes(self) -> None:
        """
        Logins are logged with account and outcome, never the password.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        self.send(protocol, transport, b"USER alice@example.test\r\nPASS wrongpass\r\n")
        self.clock.advance(1.0)
        self.send(protocol, transport, b"USER alice@example.test\r\nPASS secret\r\n")
        outcomes = [(e["account"], e["outcome"]) for e in self.events if "outcome" in e]
        self.assertEqual(outcomes, [(ALICE, "failure"), (ALICE, "success")])
        self.assertNotIn("wrongpass", repr(self.events))
        self.assertTrue(all(e["endpoint"] == "pop3s" for e in self.events))

    def test_clientErrorsNoTraceback(self) -> None:
        """
        Garbage from a client is answered, not logged as a failure.
        """
        protocol, transport = self.connect(POP3S, implicitTLS=True)
        self.send(
            protocol,
            transport,
            b"\xff\xfe\r\nAUTH PLAIN !!!\r\nUSER \xff\r\nPASS x\r\nLIST\r\n",
        )
        self.clock.advance(2.0)
        self.assertFalse([e for e in self.events if "log_failure" in e])
        self.assertIn(AUTH_FAILED, transport.value())


# A maildrop as Dovecot 2.3 leaves it: LF files named with S= and W=, a
# version 3 uidlist with UIDVALIDITY 1600000000 (0x5F5E1000) and next UID
# 12, UIDs with gaps.
DOVECOT_MSG_A = b"Subject: a\n\nfirst\n.dot\n"
DOVECOT_MSG_B = b"Subject: b\n\nsecond\n"


def crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


class DovecotMigrationTests(POP3TestMixin, unittest.SynchronousTestCase):
    """
    A maildrop moved over from Dovecot keeps its UIDLs, so POP3 clients
    that leave mail on the server do not download everything again.
    Dovecot's default C{pop3_uidl_format} is C{%08Xu%08Xv}: the UID, then
    UIDVALIDITY, each as eight hex digits, which Dovecot's var_expand
    prints in lower case (seen from Dovecot 2.3.19 on the reference stack).
    """

    def setUp(self) -> None:
        super().setUp()
        root = Path(self.mktemp())
        account = root / "example.test" / "alice"
        for sub in ("cur", "new", "tmp"):
            (account / sub).mkdir(parents=True)
        nameA = f"1600000100.M1P1.oldhost,S={len(DOVECOT_MSG_A)},W={len(crlf(DOVECOT_MSG_A))}"
        nameB = f"1600000200.M2P1.oldhost,S={len(DOVECOT_MSG_B)},W={len(crlf(DOVECOT_MSG_B))}"
        (account / "dovecot-uidlist").write_text(
            f"3 V1600000000 N12 G0123456789abcdef0123456789abcdef\n7 :{nameA}\n11 :{nameB}\n"
        )
        (account / "cur" / f"{nameA}:2,S").write_bytes(DOVECOT_MSG_A)
        (account / "new" / nameB).write_bytes(DOVECOT_MSG_B)
        self.store = MaildirStore(root, runInThread=synchronousRunner, hostname="mx.example")
        self.realm.registerAvatarFactory(IPOP3Maildrop, maildropFactory(self.store, self.locks))

    def test_uidlsKept(self) -> None:
        """
        UIDL gives Dovecot's values for the migrated messages, and LIST the
        CRLF sizes Dovecot recorded in W=.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b"UIDL\r\n"),
            b"+OK\r\n1 000000075f5e1000\r\n2 0000000b5f5e1000\r\n.\r\n",
        )
        self.assertEqual(
            self.send(protocol, transport, b"LIST\r\n"),
            b"+OK 2 messages:\r\n1 %d\r\n2 %d\r\n.\r\n" % (len(crlf(DOVECOT_MSG_A)), len(crlf(DOVECOT_MSG_B))),
        )
        self.assertEqual(
            self.send(protocol, transport, b"RETR 1\r\n"),
            b"+OK %d octets\r\n" % len(crlf(DOVECOT_MSG_A)) + b"Subject: a\r\n\r\nfirst\r\n..dot\r\n.\r\n",
        )

    def test_newMessageContinuesNumbering(self) -> None:
        """
        A message delivered after the move gets the next UID from the
        uidlist and a UIDL in the same format; the old ones stay.
        """
        writer = self.store.startMessage([ALICE])
        writer.write(b"Subject: c\r\n\r\nthird\r\n")
        self.successResultOf(writer.commit())
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b"UIDL\r\n"),
            b"+OK\r\n1 000000075f5e1000\r\n2 0000000b5f5e1000\r\n3 0000000c5f5e1000\r\n.\r\n",
        )

    def test_uidlsStableAcrossSessions(self) -> None:
        """
        Deleting one message in a session leaves the others' UIDLs unchanged
        in the next session (RETR marks it seen, a flag change renames the
        file; the UIDL must not follow the name).
        """
        protocol, transport = self.loggedIn()
        self.send(protocol, transport, b"RETR 2\r\nDELE 1\r\nQUIT\r\n")
        protocol, transport = self.loggedIn()
        self.assertEqual(self.send(protocol, transport, b"UIDL\r\n"), b"+OK\r\n1 0000000b5f5e1000\r\n.\r\n")


class EncoderTests(unittest.SynchronousTestCase):
    def test_stufferSplitEverywhere(self) -> None:
        """
        Splitting the input at every position gives the same output as
        stuffing it whole.
        """
        data = b".a\r\n.\r\nb\r\n..\r\n\r\n.c"
        whole = DotStuffer()
        expected = whole.stuff(data) + whole.finish()
        self.assertEqual(expected, b"..a\r\n..\r\nb\r\n...\r\n\r\n..c\r\n.\r\n")
        for i in range(len(data) + 1):
            for j in range(i, len(data) + 1):
                stuffer = DotStuffer()
                out = b"".join(stuffer.stuff(p) for p in (data[:i], data[i:j], data[j:]))
                self.assertEqual(out + stuffer.finish(), expected, (i, j))

    def test_emptyMessage(self) -> None:
        """
        An empty message is just the terminator.
        """
        self.assertEqual(DotStuffer().finish(), b".\r\n")

    def test_topWithoutBlankLine(self) -> None:
        """
        A message that is all headers gives all of it for any TOP count.
        """
        top = TopFilter(0)
        self.assertEqual(top.feed(b"A: b\r\nC: d\r\n"), b"A: b\r\nC: d\r\n")
        self.assertFalse(top.done)

    def test_topBlankLineSplitAcrossChunks(self) -> None:
        """
        The blank line ending the headers is recognised when its CR and LF
        arrive in different chunks.
        """
        top = TopFilter(1)
        out = top.feed(b"A: b\r\n\r") + top.feed(b"\nbody1\r\nbody2\r\n")
        self.assertEqual(out, b"A: b\r\n\r\nbody1\r\n")
        self.assertTrue(top.done)


class RealSocketTests(unittest.TestCase):
    """
    One POP3S session over loopback with Python's C{poplib}, to show the
    protocol works under a real TLSMemoryBIOFactory and reactor.
    """

    def test_pop3sWithPoplib(self) -> None:
        """
        Implicit TLS on an ephemeral port: CAPA, login, STAT, RETR with a
        dot-stuffed line, DELE, QUIT; the message is gone afterwards and the
        session recorded the negotiated TLS version.
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
        realm.registerAvatarFactory(IPOP3Maildrop, maildropFactory(store, MaildropLocks()))
        factory = POP3Factory(POP3S, Portal(realm, [checker]), creator, HOSTNAME, clock=reactor)

        closed: defer.Deferred[POP3Server] = defer.Deferred()
        build = factory.buildProtocol

        def buildProtocol(addr: Any) -> POP3Server:
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
            pop = poplib.POP3_SSL("127.0.0.1", portNumber, context=context, timeout=10)
            result: dict[str, Any] = {"welcome": pop.getwelcome(), "capa": pop.capa()}
            pop.user(ALICE)
            pop.pass_("secret")
            result["stat"] = pop.stat()
            result["retr"] = pop.retr(1)[1]
            pop.dele(1)
            result["quit"] = pop.quit()
            return result

        def check(result: dict[str, Any]) -> defer.Deferred[POP3Server]:
            self.assertEqual(result["welcome"], b"+OK mail.example.test POP3 ready")
            self.assertIn("SASL", result["capa"])
            self.assertNotIn("STLS", result["capa"])
            self.assertEqual(result["stat"], (1, len(MSG1)))
            self.assertEqual(b"\r\n".join(result["retr"]) + b"\r\n", MSG1)
            self.assertEqual(result["quit"], b"+OK Logging out.")
            self.assertEqual(store.openFolder(ALICE).messages(), ())
            return closed

        def checkSession(protocol: POP3Server) -> None:
            assert protocol.session is not None and protocol.session.tls is not None
            self.assertTrue(protocol.session.tls.version.startswith("TLSv1."))

        d = threads.deferToThread(client)
        d.addCallback(check)
        d.addCallback(checkSession)
        return d
