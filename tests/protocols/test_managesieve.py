# -*- test-case-name: tests.protocols.test_managesieve -*-
"""
Tests for L{mailsrv.protocols.managesieve.server}: the ManageSieve server,
bytes in and bytes out over a L{StringTransport} and a L{task.Clock},
against the Maildir script store on a temporary directory (run
synchronously) and a stand-in Sieve checker.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Optional

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer, task
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLServerConnectionCreator,
    ISSLTransport,
    ITLSTransport,
)
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.trial import unittest
from zope.interface import alsoProvides, implementer
from zope.interface.verify import verifyClass

from mailsrv.auth.realm import MailRealm
from mailsrv.envelope import Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IAuthenticatedUser
from mailsrv.metrics import Metrics
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode
from mailsrv.policy.limits import ConnectionLimiter, UserAddressLimiter
from mailsrv.protocols.managesieve.responses import quoted
from mailsrv.sieve import SUPPORTED_EXTENSIONS
from mailsrv.protocols.managesieve.server import (
    ManageSieveFactory,
    ManageSieveLimits,
    ManageSieveServer,
    ScriptCheck,
    State,
)
from mailsrv.storage.sieve_store import MaildirSieveStore
from tests.storage.helpers import synchronousRunner

ALICE = "alice@example.test"
BOB = "bob@example.test"
USERS = {ALICE: "secret", BOB: "hunter2"}
HOSTNAME = "mail.example.test"
EXTENSIONS = ("fileinto", "reject", "vacation")

SIEVE = EndpointPolicy("managesieve", Protocol.MANAGESIEVE, ("0.0.0.0:4190",), TLSMode.STARTTLS_REQUIRED, auth=True)
SIEVE_TLS = EndpointPolicy("sieves", Protocol.MANAGESIEVE, ("0.0.0.0:5190",), TLSMode.IMPLICIT, auth=True)
SIEVE_PLAIN = EndpointPolicy("sieve-plain", Protocol.MANAGESIEVE, ("127.0.0.1:4190",), TLSMode.NONE, auth=True)
SIEVE_NO_AUTH = EndpointPolicy("sieve-off", Protocol.MANAGESIEVE, ("127.0.0.1:4190",), TLSMode.NONE, auth=False)

SCRIPT = b'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "X"; }\r\n'


def capabilities(sasl: str, startTLS: bool, owner: Optional[str] = None) -> bytes:
    lines = [
        b'"IMPLEMENTATION" "mailsrv"',
        b'"SASL" "' + sasl.encode() + b'"',
        b'"SIEVE" "fileinto reject vacation"',
    ]
    if startTLS:
        lines.append(b'"STARTTLS"')
    lines.append(b'"MAXREDIRECTS" "4"')
    if owner:
        lines.append(b'"OWNER" "' + owner.encode() + b'"')
    lines += [b'"UNAUTHENTICATE"', b'"VERSION" "1.0"']
    return b"".join(line + b"\r\n" for line in lines)


GREETING_BEFORE_TLS = capabilities("", True) + b'OK "mail.example.test ManageSieve ready."\r\n'
GREETING_TLS = capabilities("PLAIN LOGIN", False) + b'OK "mail.example.test ManageSieve ready."\r\n'
PLAINTEXT_REFUSED = (
    b'NO (ENCRYPT-NEEDED) "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."\r\n'
)
LOGGED_IN = b'OK "Logged in."\r\n'
AUTH_FAILED = b'NO "Authentication failed."\r\n'
TRYLATER = b'NO (TRYLATER) "Temporary server failure, try again later."\r\n'


def plain(user: str, password: str, authzid: str = "") -> bytes:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode())


def literal(data: bytes, synchronizing: bool = False) -> bytes:
    return b"{%d%s}\r\n%s" % (len(data), b"" if synchronizing else b"+", data)


def checkScript(content: bytes) -> ScriptCheck:
    """
    Stands in for the Sieve parser: C{boom} is an error, C{warn} a warning.
    """
    if b"boom" in content:
        return ScriptCheck(error="line 1: unknown command 'boom'")
    if b"warn" in content:
        return ScriptCheck(warnings=("line 1: this is odd",))
    return ScriptCheck()


@implementer(IOpenSSLServerConnectionCreator)
class FakeTLSCreator:
    def serverConnectionForTLS(self, tlsProtocol: object) -> Any:
        raise NotImplementedError("in-memory tests never handshake")


class TLSCapableTransport(StringTransport):
    """
    A transport that supports STARTTLS: records the creator, then provides
    L{ISSLTransport} as Twisted's TCP transport does.
    """

    def __init__(self) -> None:
        super().__init__()
        alsoProvides(self, ITLSTransport)
        self.tlsStartedWith: Optional[object] = None

    def startTLS(self, creator: object) -> None:
        self.tlsStartedWith = creator
        alsoProvides(self, ISSLTransport)


class RecordingPortal(Portal):
    """
    The portal, remembering the minds logins were made with.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.minds: list[Any] = []

    def login(self, credentials: Any, mind: Any, *interfaces: Any) -> "defer.Deferred[Any]":
        self.minds.append(mind)
        return super().login(credentials, mind, *interfaces)


class HeldStore:
    """
    Wraps a store; the named operation returns a Deferred the test fires
    (or fails), to show ordering and error handling.
    """

    def __init__(self, store: MaildirSieveStore, operation: str) -> None:
        self._store = store
        self._operation = operation
        self.held: list[defer.Deferred[Any]] = []

    def __getattr__(self, name: str) -> Any:
        if name != self._operation:
            return getattr(self._store, name)

        def held(*args: Any) -> "defer.Deferred[Any]":
            d: defer.Deferred[Any] = defer.Deferred()
            d.addCallback(lambda _: getattr(self._store, name)(*args))
            self.held.append(d)
            return d

        return held


class ManageSieveTestMixin:
    """
    A factory over a fresh script store, portal and clock, and helpers to
    talk to it.
    """

    policy = SIEVE
    limits = ManageSieveLimits()

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.root = Path(self.mktemp())  # type: ignore[attr-defined]
        self.store = MaildirSieveStore(
            self.root, maxScripts=3, maxScriptSize=200, runInThread=synchronousRunner, clock=lambda: 1_700_000_000.0
        )
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        for name, password in USERS.items():
            checker.addUser(name.encode(), password.encode())
        self.realm = MailRealm()
        self.portal = RecordingPortal(self.realm, [checker])
        self.tls = FakeTLSCreator()
        self.events: list[dict[str, Any]] = []
        self.patch(ManageSieveServer, "log", Logger(observer=self.events.append))  # type: ignore[attr-defined]

    def factory(self, policy: Optional[EndpointPolicy] = None, **kw: Any) -> ManageSieveFactory:
        return ManageSieveFactory(
            policy or self.policy,
            self.portal,
            kw.pop("scripts", self.store),
            kw.pop("tls", self.tls),
            HOSTNAME,
            clock=self.clock,
            limits=kw.pop("limits", self.limits),
            checkScript=kw.pop("checkScript", checkScript),
            extensions=kw.pop("extensions", EXTENSIONS),
            **kw,
        )

    def connect(
        self, policy: Optional[EndpointPolicy] = None, implicitTLS: bool = False, **kw: Any
    ) -> tuple[ManageSieveServer, TLSCapableTransport]:
        protocol = self.factory(policy, **kw).buildProtocol(None)
        transport = TLSCapableTransport()
        if implicitTLS:
            alsoProvides(transport, ISSLTransport)
        protocol.makeConnection(transport)
        assert transport.value().endswith(b'OK "mail.example.test ManageSieve ready."\r\n'), transport.value()
        transport.clear()
        return protocol, transport

    def send(self, protocol: ManageSieveServer, transport: StringTransport, data: bytes) -> bytes:
        protocol.dataReceived(data)
        out = transport.value()
        transport.clear()
        return out

    def loggedIn(
        self, account: str = ALICE, policy: Optional[EndpointPolicy] = None, **kw: Any
    ) -> tuple[ManageSieveServer, TLSCapableTransport]:
        protocol, transport = self.connect(policy or SIEVE_TLS, implicitTLS=True, **kw)
        out = self.send(protocol, transport, b'AUTHENTICATE "PLAIN" "' + plain(account, USERS[account]) + b'"\r\n')
        assert out == LOGGED_IN, out
        return protocol, transport

    def put(self, protocol: ManageSieveServer, transport: StringTransport, name: str, content: bytes = SCRIPT) -> bytes:
        return self.send(protocol, transport, b"PUTSCRIPT " + quoted(name) + b" " + literal(content) + b"\r\n")

    def home(self, account: str = ALICE) -> Path:
        local, domain = account.split("@")
        return self.root / domain / local / "home"

    def logged(self, fragment: str) -> list[dict[str, Any]]:
        return [e for e in self.events if fragment in e.get("log_format", "")]


# ------------------------------------------------------------ capabilities


class CapabilityTests(ManageSieveTestMixin, unittest.SynchronousTestCase):
    def test_greetingBeforeTLS(self) -> None:
        """
        The greeting is the capability list; before STARTTLS on a
        TLS-required endpoint SASL is empty (RFC 5804 section 1.7) and
        STARTTLS is offered.
        """
        protocol = self.factory().buildProtocol(None)
        transport = TLSCapableTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), GREETING_BEFORE_TLS)

    def test_capabilityCommand(self) -> None:
        """
        CAPABILITY repeats the list with its own completion text.
        """
        protocol, transport = self.connect()
        self.assertEqual(
            self.send(protocol, transport, b"CAPABILITY\r\n"),
            capabilities("", True) + b'OK "Capability completed."\r\n',
        )

    def test_implicitTLS(self) -> None:
        """
        On an implicit-TLS endpoint SASL lists the mechanisms and STARTTLS
        is neither offered nor accepted.
        """
        protocol = self.factory(SIEVE_TLS).buildProtocol(None)
        transport = TLSCapableTransport()
        alsoProvides(transport, ISSLTransport)
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), GREETING_TLS)
        transport.clear()
        self.assertEqual(self.send(protocol, transport, b"STARTTLS\r\n"), b'NO "TLS is already active."\r\n')
        self.assertIsNone(transport.tlsStartedWith)

    def test_noTLSEndpoint(self) -> None:
        """
        With C{tls = "none"} there is no STARTTLS and login is offered.
        """
        protocol, transport = self.connect(SIEVE_PLAIN)
        self.assertEqual(
            self.send(protocol, transport, b"CAPABILITY\r\n"),
            capabilities("PLAIN LOGIN", False) + b'OK "Capability completed."\r\n',
        )
        self.assertEqual(self.send(protocol, transport, b"STARTTLS\r\n"), b'NO "STARTTLS is not available."\r\n')

    def test_noCreatorNoStartTLS(self) -> None:
        """
        Without a TLS creator STARTTLS is neither offered nor accepted.
        """
        protocol, transport = self.connect(tls=None)
        self.assertNotIn(b'"STARTTLS"', self.send(protocol, transport, b"CAPABILITY\r\n"))
        self.assertEqual(self.send(protocol, transport, b"STARTTLS\r\n"), b'NO "STARTTLS is not available."\r\n')

    def test_ownerAfterLogin(self) -> None:
        """
        Once logged in, CAPABILITY names the account (OWNER).
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b"CAPABILITY\r\n"),
            capabilities("PLAIN LOGIN", False, owner=ALICE) + b'OK "Capability completed."\r\n',
        )

    def test_handshakeListener(self) -> None:
        """
        The protocol hears of completed TLS handshakes; without a TLS
        connection nothing is recorded.
        """
        self.assertTrue(verifyClass(IHandshakeListener, ManageSieveServer))
        protocol, transport = self.connect()
        protocol.handshakeCompleted()
        assert protocol.session is not None
        self.assertIsNone(protocol.session.tls)

    def test_noopWithTag(self) -> None:
        """
        NOOP echoes its argument in a TAG response code (sieve-connect
        resynchronises with it after STARTTLS).
        """
        protocol, transport = self.connect()
        self.assertEqual(
            self.send(protocol, transport, b'NOOP "STARTTLS-RESYNC-CAPA"\r\nNOOP\r\n'),
            b'OK (TAG "STARTTLS-RESYNC-CAPA") "Done."\r\nOK "Done."\r\n',
        )

    def test_logout(self) -> None:
        """
        LOGOUT is answered and the connection closed.
        """
        protocol, transport = self.connect()
        self.assertEqual(self.send(protocol, transport, b"LOGOUT\r\nNOOP\r\n"), b'OK "Logout completed."\r\n')
        self.assertTrue(transport.disconnecting)
        self.assertIs(protocol.state, State.LOGOUT)


# ---------------------------------------------------------------- STARTTLS


class StartTLSTests(ManageSieveTestMixin, unittest.SynchronousTestCase):
    def test_startTLS(self) -> None:
        """
        STARTTLS is answered in plaintext, TLS starts with the shared
        creator, and the capabilities are sent again (over TLS), now with
        the SASL mechanisms and without STARTTLS.
        """
        protocol, transport = self.connect()
        self.assertEqual(
            self.send(protocol, transport, b"STARTTLS\r\n"),
            b'OK "Begin TLS negotiation now."\r\n'
            + capabilities("PLAIN LOGIN", False)
            + b'OK "TLS negotiation successful."\r\n',
        )
        self.assertIs(transport.tlsStartedWith, self.tls)
        self.assertEqual(
            self.send(protocol, transport, b'AUTHENTICATE "PLAIN" "' + plain(ALICE, "secret") + b'"\r\n'),
            LOGGED_IN,
        )

    def test_pipelinedPlaintextDiscarded(self) -> None:
        """
        Commands pipelined behind STARTTLS in the same plaintext packet are
        dropped, not run over TLS (the STARTTLS injection rule).
        """
        protocol, transport = self.connect(
            EndpointPolicy("sieve", Protocol.MANAGESIEVE, ("0.0.0.0:4190",), TLSMode.STARTTLS, auth=True)
        )
        injected = b'AUTHENTICATE "PLAIN" "' + plain(ALICE, "secret") + b'"\r\nPUTSCRIPT "x" {3+}\r\nabc\r\n'
        out = self.send(protocol, transport, b"STARTTLS\r\n" + injected)
        self.assertTrue(out.endswith(b'OK "TLS negotiation successful."\r\n'), out)
        self.assertEqual(out.count(b"\r\nOK"), 1)
        self.assertIs(protocol.state, State.NONAUTH)
        self.assertEqual(self.portal.minds, [])
        [event] = self.logged("STARTTLS")
        self.assertEqual(event["dropped"], len(injected))
        self.assertEqual(self.send(protocol, transport, b"NOOP\r\n"), b'OK "Done."\r\n')

    def test_partialCommandBeforeStartTLSDiscarded(self) -> None:
        """
        A partial command behind STARTTLS is dropped too: the first line
        over TLS starts a new command.
        """
        protocol, transport = self.connect()
        self.send(protocol, transport, b'STARTTLS\r\nPUTSCRIPT "x" {10+}\r\nabc')
        self.assertEqual(self.send(protocol, transport, b"NOOP\r\n"), b'OK "Done."\r\n')

    def test_startTLSAfterLogin(self) -> None:
        """
        STARTTLS belongs to the non-authenticated state.
        """
        protocol, transport = self.loggedIn(policy=SIEVE_PLAIN)
        self.assertEqual(self.send(protocol, transport, b"STARTTLS\r\n"), b'NO "Already authenticated."\r\n')


# ----------------------------------------------------------- authentication


class AuthenticateTests(ManageSieveTestMixin, unittest.SynchronousTestCase):
    def test_refusedBeforeTLS(self) -> None:
        """
        On a TLS-required endpoint AUTHENTICATE before STARTTLS gets NO
        (ENCRYPT-NEEDED); the portal is not asked.
        """
        protocol, transport = self.connect()
        self.assertEqual(
            self.send(protocol, transport, b'AUTHENTICATE "PLAIN" "' + plain(ALICE, "secret") + b'"\r\n'),
            PLAINTEXT_REFUSED,
        )
        self.assertEqual(
            self.send(protocol, transport, b'AUTHENTICATE "LOGIN"\r\n'),
            PLAINTEXT_REFUSED,
        )
        self.assertEqual(self.portal.minds, [])
        self.assertIs(protocol.state, State.NONAUTH)

    def test_refusedWhenAuthOff(self) -> None:
        """
        An endpoint without authentication refuses it, with an empty SASL
        capability.
        """
        protocol, transport = self.connect(SIEVE_NO_AUTH)
        self.assertIn(b'"SASL" ""', self.send(protocol, transport, b"CAPABILITY\r\n"))
        self.assertEqual(
            self.send(protocol, transport, b'AUTHENTICATE "PLAIN" "' + plain(ALICE, "secret") + b'"\r\n'),
            b'NO "Authentication is not available on this port."\r\n',
        )

    def test_plainInitialResponse(self) -> None:
        """
        PLAIN with an initial response logs in through the portal, with the
        connection's session as the mind (so the failed-login throttle sees
        the client address).
        """
        protocol, transport = self.loggedIn()
        self.assertIs(protocol.state, State.AUTH)
        [mind] = self.portal.minds
        self.assertIsInstance(mind, Session)
        self.assertIs(mind, protocol.session)
        self.assertEqual(mind.authenticatedAs, ALICE)
        [event] = self.logged("login {outcome}")
        self.assertEqual((event["outcome"], event["account"], event["mechanism"]), ("success", ALICE, "PLAIN"))

    def test_plainChallenge(self) -> None:
        """
        PLAIN without an initial response gets an empty challenge; the
        response may be a quoted string or a literal.
        """
        protocol, transport = self.connect(SIEVE_TLS, implicitTLS=True)
        self.assertEqual(self.send(protocol, transport, b'AUTHENTICATE "PLAIN"\r\n'), b'""\r\n')
        self.assertEqual(self.send(protocol, transport, literal(plain(ALICE, "secret")) + b"\r\n"), LOGGED_IN)

    def test_plainLiteralInitialResponse(self) -> None:
        """
        The initial response as a non-synchronizing literal, as sieve-connect
        sends it.
        """
        protocol, transport = self.connect(SIEVE_TLS, implicitTLS=True)
        self.assertEqual(
            self.send(protocol, transport, b'AUTHENTICATE "PLAIN" ' + literal(plain(ALICE, "secret")) + b"\r\n"),
            LOGGED_IN,
        )

    def test_mechanismAsAtom(self) -> None:
        """
        Some clients send the mechanism as an atom; it is accepted.
        """
        protocol, transport = self.connect(SIEVE_TLS, implicitTLS=True)
        self.assertEqual(
            self.send(protocol, transport, b'AUTHENTICATE plain "' + plain(ALICE, "secret") + b'"\r\n'), LOGGED_IN
        )

    def test_loginMechanism(self) -> None:
        """
        LOGIN asks for the user name and the password in two challenges.
        """
        protocol, transport = self.connect(SIEVE_TLS, implicitTLS=True)
        self.assertEqual(self.send(protocol, transport, b'AUTHENTICATE "LOGIN"\r\n'), b'"VXNlcm5hbWU6"\r\n')
        self.assertEqual(
            self.send(protocol, transport, b'"' + base64.b64encode(ALICE.encode()) + b'"\r\n'), b'"UGFzc3dvcmQ6"\r\n'
        )
        self.assertEqual(self.send(protocol, transport, b'"' + base64.b64encode(b"secret") + b'"\r\n'), LOGGED_IN)

    def test_wrongPasswordAfterDelay(self) -> None:
        """
        A wrong password is answered only after the failure delay, and
        commands pipelined behind it wait.
        """
        protocol, transport = self.connect(SIEVE_TLS, implicitTLS=True)
        out = self.send(protocol, transport, b'AUTHENTICATE "PLAIN" "' + plain(ALICE, "wrong") + b'"\r\nNOOP\r\n')
        self.assertEqual(out, b"")
        self.clock.advance(1.0)
        self.assertEqual(transport.value(), AUTH_FAILED + b'OK "Done."\r\n')
        [event] = self.logged("login {outcome}")
        self.assertEqual(event["outcome"], "failure")

    def test_tooManyFailures(self) -> None:
        """
        The third failed login closes the connection with BYE.
        """
        protocol, transport = self.connect(SIEVE_TLS, implicitTLS=True)
        for _ in range(2):
            protocol.dataReceived(b'AUTHENTICATE "PLAIN" "' + plain(ALICE, "wrong") + b'"\r\n')
            self.clock.advance(1.0)
        self.assertEqual(transport.value(), AUTH_FAILED * 2)
        transport.clear()
        protocol.dataReceived(b'AUTHENTICATE "PLAIN" "' + plain(BOB, "wrong") + b'"\r\n')
        self.clock.advance(1.0)
        self.assertEqual(transport.value(), b'BYE "Too many failed logins."\r\n')
        self.assertTrue(transport.disconnecting)

    def test_abort(self) -> None:
        """
        C{"*"} as the response cancels the exchange; it is not a failed
        login.
        """
        protocol, transport = self.connect(SIEVE_TLS, implicitTLS=True)
        self.send(protocol, transport, b'AUTHENTICATE "LOGIN"\r\n')
        self.assertEqual(self.send(protocol, transport, b'"*"\r\n'), b'NO "Authentication aborted by client."\r\n')
        self.assertEqual(self.logged("login {outcome}"), [])

    def test_malformedResponse(self) -> None:
        """
        A response that is not base64, or not one string, is a failed login.
        """
        protocol, transport = self.connect(SIEVE_TLS, implicitTLS=True)
        self.send(protocol, transport, b'AUTHENTICATE "PLAIN" "not base64!"\r\n')
        self.clock.advance(1.0)
        self.assertEqual(transport.value(), AUTH_FAILED)
        transport.clear()
        self.send(protocol, transport, b'AUTHENTICATE "LOGIN"\r\n')
        protocol.dataReceived(b"NOOP\r\n")
        self.clock.advance(1.0)
        self.assertEqual(transport.value(), AUTH_FAILED)

    def test_foreignAuthorizationIdentity(self) -> None:
        """
        PLAIN with someone else's authorization identity is refused.
        """
        protocol, transport = self.connect(SIEVE_TLS, implicitTLS=True)
        self.send(protocol, transport, b'AUTHENTICATE "PLAIN" "' + plain(ALICE, "secret", authzid=BOB) + b'"\r\n')
        self.clock.advance(1.0)
        self.assertEqual(transport.value(), AUTH_FAILED)

    def test_unsupportedMechanism(self) -> None:
        """
        Mechanisms other than PLAIN and LOGIN are refused.
        """
        protocol, transport = self.connect(SIEVE_TLS, implicitTLS=True)
        self.assertEqual(
            self.send(protocol, transport, b'AUTHENTICATE "CRAM-MD5"\r\n'),
            b'NO "Unsupported authentication mechanism."\r\n',
        )

    def test_alreadyAuthenticated(self) -> None:
        """
        AUTHENTICATE in the authenticated state is refused.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b'AUTHENTICATE "PLAIN" "' + plain(BOB, "hunter2") + b'"\r\n'),
            b'NO "Already authenticated."\r\n',
        )

    def test_scriptCommandsNeedLogin(self) -> None:
        """
        Script commands before login are refused.
        """
        protocol, transport = self.connect(SIEVE_TLS, implicitTLS=True)
        for command in (b"LISTSCRIPTS", b'GETSCRIPT "a"', b'SETACTIVE "a"', b"UNAUTHENTICATE"):
            self.assertEqual(self.send(protocol, transport, command + b"\r\n"), b'NO "Authenticate first."\r\n')

    def test_unauthenticate(self) -> None:
        """
        UNAUTHENTICATE returns to the non-authenticated state: script
        commands are refused again, the login is released, and the client
        may log in again.
        """
        logouts: list[str] = []
        self.realm.registerAvatarFactory(
            IAuthenticatedUser,
            lambda account: type("User", (), {"account": account})(),
            lambda avatar: logouts.append(avatar.account),
        )
        userAddresses = UserAddressLimiter(1)
        protocol, transport = self.loggedIn(userAddresses=userAddresses)
        self.assertEqual(userAddresses.count(ALICE, "192.168.1.1"), 1)
        self.assertEqual(self.send(protocol, transport, b"UNAUTHENTICATE\r\n"), b'OK "Unauthenticate completed."\r\n')
        self.assertEqual(logouts, [ALICE])
        self.assertEqual(userAddresses.count(ALICE, "192.168.1.1"), 0)
        self.assertEqual(self.send(protocol, transport, b"LISTSCRIPTS\r\n"), b'NO "Authenticate first."\r\n')
        self.assertEqual(
            self.send(protocol, transport, b'AUTHENTICATE "PLAIN" "' + plain(BOB, "hunter2") + b'"\r\n'), LOGGED_IN
        )
        protocol.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(logouts, [ALICE, BOB])

    def test_userAddressLimit(self) -> None:
        """
        A login over max_connections_per_user_ip gets BYE (TRYLATER) and the
        connection is closed.
        """
        userAddresses = UserAddressLimiter(1)
        self.loggedIn(userAddresses=userAddresses)
        protocol, transport = self.connect(SIEVE_TLS, implicitTLS=True, userAddresses=userAddresses)
        self.assertEqual(
            self.send(protocol, transport, b'AUTHENTICATE "PLAIN" "' + plain(ALICE, "secret") + b'"\r\n'),
            b'BYE (TRYLATER) "Maximum number of connections from user+IP exceeded '
            b'(max_connections_per_user_ip=1)"\r\n',
        )
        self.assertTrue(transport.disconnecting)

    def test_connectionLimit(self) -> None:
        """
        Over the connection limit the client gets BYE (TRYLATER) instead of
        the greeting; a closed connection gives its place back.
        """
        connections = ConnectionLimiter(1, 1)
        first, _ = self.connect(connections=connections)
        protocol = self.factory(connections=connections).buildProtocol(None)
        transport = TLSCapableTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), b'BYE (TRYLATER) "Too many connections, try again later."\r\n')
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(None)  # type: ignore[arg-type]
        first.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(connections.active, 0)


# ------------------------------------------------------------------ scripts


class ScriptTests(ManageSieveTestMixin, unittest.SynchronousTestCase):
    def test_putListGet(self) -> None:
        """
        PUTSCRIPT stores the script; LISTSCRIPTS lists it; GETSCRIPT
        returns it as a literal followed by OK.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(self.put(protocol, transport, "main"), b'OK "Putscript completed."\r\n')
        self.assertEqual((self.home() / "sieve" / "main.sieve").read_bytes(), SCRIPT)
        self.assertEqual(
            self.send(protocol, transport, b"LISTSCRIPTS\r\n"), b'"main"\r\nOK "Listscripts completed."\r\n'
        )
        self.assertEqual(
            self.send(protocol, transport, b'GETSCRIPT "main"\r\n'),
            literal(SCRIPT, synchronizing=True) + b'\r\nOK "Getscript completed."\r\n',
        )
        [event] = self.logged("stored")
        self.assertEqual((event["script"], event["account"], event["size"]), ("main", ALICE, len(SCRIPT)))

    def test_putQuotedScript(self) -> None:
        """
        A script may also come as a quoted string.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b'PUTSCRIPT "q" "keep;"\r\n'), b'OK "Putscript completed."\r\n'
        )
        self.assertEqual((self.home() / "sieve" / "q.sieve").read_bytes(), b"keep;")

    def test_putSynchronizingLiteral(self) -> None:
        """
        A synchronizing literal gets a go-ahead before the client sends it.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b'PUTSCRIPT "s" {5}\r\n'), b'OK "Ready for literal data."\r\n'
        )
        self.assertEqual(self.send(protocol, transport, b"keep;\r\n"), b'OK "Putscript completed."\r\n')

    def test_putInvalidScript(self) -> None:
        """
        A script the parser rejects is not stored; NO carries the parser's
        message.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.put(protocol, transport, "bad", b"boom;\r\n"),
            b'NO "line 1: unknown command \'boom\'"\r\n',
        )
        self.assertFalse((self.home() / "sieve" / "bad.sieve").exists())

    def test_putWarnings(self) -> None:
        """
        A valid script with warnings is stored and answered OK (WARNINGS).
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.put(protocol, transport, "w", b"warn;\r\n"), b'OK (WARNINGS) "line 1: this is odd"\r\n'
        )
        self.assertTrue((self.home() / "sieve" / "w.sieve").exists())

    def test_putTooLargeNonSynchronizing(self) -> None:
        """
        A non-synchronizing script literal over max_script_size is read and
        thrown away and answered NO (QUOTA/MAXSIZE); the session goes on.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.put(protocol, transport, "big", b"x" * 201),
            b'NO (QUOTA/MAXSIZE) "Script is too large (max 200 octets)."\r\n',
        )
        self.assertEqual(self.send(protocol, transport, b"NOOP\r\n"), b'OK "Done."\r\n')
        self.assertFalse((self.home() / "sieve").exists())

    def test_putTooLargeSynchronizing(self) -> None:
        """
        A synchronizing script literal over the limit is refused at once,
        without a go-ahead.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b'PUTSCRIPT "big" {201}\r\n'),
            b'NO (QUOTA/MAXSIZE) "Script is too large (max 200 octets)."\r\n',
        )

    def test_nameLiteralLimit(self) -> None:
        """
        Only the script may be large: a name literal over the string limit
        is refused.
        """
        protocol, transport = self.loggedIn(limits=ManageSieveLimits(maxStringLiteral=10))
        self.assertEqual(
            self.send(protocol, transport, b"GETSCRIPT " + literal(b"n" * 11) + b"\r\n"),
            b'NO "String is too long."\r\n',
        )

    def test_literalTooLargeToDiscard(self) -> None:
        """
        A literal too large even to be skipped closes the connection.
        """
        protocol, transport = self.loggedIn(limits=ManageSieveLimits(maxDiscard=1000))
        self.assertEqual(
            self.send(protocol, transport, b'PUTSCRIPT "a" {1001+}\r\n'), b'BYE "Literal too large."\r\n'
        )
        self.assertTrue(transport.disconnecting)

    def test_maxScripts(self) -> None:
        """
        One script more than max_scripts is refused (QUOTA/MAXSCRIPTS);
        replacing an existing script is not a new one.
        """
        protocol, transport = self.loggedIn()
        for name in ("a", "b", "c"):
            self.assertEqual(self.put(protocol, transport, name), b'OK "Putscript completed."\r\n')
        self.assertEqual(
            self.put(protocol, transport, "d"), b'NO (QUOTA/MAXSCRIPTS) "Too many scripts (max 3)."\r\n'
        )
        self.assertEqual(self.put(protocol, transport, "a", b"keep;"), b'OK "Putscript completed."\r\n')

    def test_haveSpace(self) -> None:
        """
        HAVESPACE says whether a PUTSCRIPT of that size would fit.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b'HAVESPACE "a" 200\r\n'), b'OK "Putscript would succeed."\r\n'
        )
        self.assertEqual(
            self.send(protocol, transport, b'HAVESPACE "a" 201\r\n'),
            b'NO (QUOTA/MAXSIZE) "Script is too large (max 200 octets)."\r\n',
        )
        for name in ("a", "b", "c"):
            self.put(protocol, transport, name)
        self.assertEqual(
            self.send(protocol, transport, b'HAVESPACE "d" 10\r\n'),
            b'NO (QUOTA/MAXSCRIPTS) "Too many scripts (max 3)."\r\n',
        )
        self.assertEqual(self.send(protocol, transport, b'HAVESPACE "a" 10\r\n'), b'OK "Putscript would succeed."\r\n')
        self.assertEqual(
            self.send(protocol, transport, b'HAVESPACE "a" "10"\r\n'), b'NO "Invalid number argument."\r\n'
        )

    def test_checkScript(self) -> None:
        """
        CHECKSCRIPT parses without storing: OK, OK (WARNINGS), NO with the
        parser's message, or NO (QUOTA/MAXSIZE).
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b"CHECKSCRIPT " + literal(SCRIPT) + b"\r\n"), b'OK "Script is valid."\r\n'
        )
        self.assertEqual(
            self.send(protocol, transport, b'CHECKSCRIPT "warn"\r\n'), b'OK (WARNINGS) "line 1: this is odd"\r\n'
        )
        self.assertEqual(
            self.send(protocol, transport, b'CHECKSCRIPT "boom"\r\n'), b'NO "line 1: unknown command \'boom\'"\r\n'
        )
        self.assertEqual(
            self.send(protocol, transport, b"CHECKSCRIPT " + literal(b"x" * 201) + b"\r\n"),
            b'NO (QUOTA/MAXSIZE) "Script is too large (max 200 octets)."\r\n',
        )
        self.assertFalse((self.home() / "sieve").exists())

    def test_setActive(self) -> None:
        """
        SETACTIVE makes the script active (the .dovecot.sieve link), which
        LISTSCRIPTS marks; SETACTIVE "" deactivates.
        """
        protocol, transport = self.loggedIn()
        self.put(protocol, transport, "a")
        self.put(protocol, transport, "b")
        self.assertEqual(self.send(protocol, transport, b'SETACTIVE "b"\r\n'), b'OK "Script activated."\r\n')
        self.assertEqual(os.readlink(self.home() / ".dovecot.sieve"), "sieve/b.sieve")
        self.assertEqual(
            self.send(protocol, transport, b"LISTSCRIPTS\r\n"),
            b'"a"\r\n"b" ACTIVE\r\nOK "Listscripts completed."\r\n',
        )
        self.assertEqual(self.send(protocol, transport, b'SETACTIVE ""\r\n'), b'OK "Scripts deactivated."\r\n')
        self.assertFalse(os.path.lexists(self.home() / ".dovecot.sieve"))
        [activated] = self.logged("} activated")
        self.assertEqual((activated["script"], activated["account"]), ("b", ALICE))
        self.assertEqual(len(self.logged("deactivated")), 1)

    def test_setActiveMissing(self) -> None:
        """
        Activating a script that does not exist: NO (NONEXISTENT).
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b'SETACTIVE "nope"\r\n'), b'NO (NONEXISTENT) "Script does not exist."\r\n'
        )

    def test_setActiveInvalidScript(self) -> None:
        """
        A script that does not parse (put in place by other means) is not
        activated.
        """
        protocol, transport = self.loggedIn()
        self.put(protocol, transport, "a")
        (self.home() / "sieve" / "a.sieve").write_bytes(b"boom;")
        self.assertEqual(
            self.send(protocol, transport, b'SETACTIVE "a"\r\n'),
            b'NO "Script is invalid: line 1: unknown command \'boom\'"\r\n',
        )
        self.assertFalse(os.path.lexists(self.home() / ".dovecot.sieve"))

    def test_setActiveKeepsUnmanagedScript(self) -> None:
        """
        A regular .dovecot.sieve (docker-mailserver's copy of a config
        script) is kept under a new name on activation, and the reply says
        which.
        """
        protocol, transport = self.loggedIn()
        self.put(protocol, transport, "a")
        (self.home() / ".dovecot.sieve").write_bytes(b"discard;")
        self.assertEqual(
            self.send(protocol, transport, b"LISTSCRIPTS\r\n"), b'"a"\r\nOK "Listscripts completed."\r\n'
        )
        self.assertEqual(
            self.send(protocol, transport, b'SETACTIVE "a"\r\n'),
            b'OK "Script activated. The previous active script was kept as '
            b'\\"dovecot-sieve-20231114-221320\\"."\r\n',
        )
        self.assertEqual(
            (self.home() / "sieve" / "dovecot-sieve-20231114-221320.sieve").read_bytes(), b"discard;"
        )

    def test_deleteScript(self) -> None:
        """
        DELETESCRIPT removes an inactive script; the active one gets NO
        (ACTIVE) and a missing one NO (NONEXISTENT).
        """
        protocol, transport = self.loggedIn()
        self.put(protocol, transport, "a")
        self.put(protocol, transport, "b")
        self.send(protocol, transport, b'SETACTIVE "a"\r\n')
        self.assertEqual(
            self.send(protocol, transport, b'DELETESCRIPT "a"\r\n'),
            b'NO (ACTIVE) "Cannot delete the active script."\r\n',
        )
        self.assertEqual(self.send(protocol, transport, b'DELETESCRIPT "b"\r\n'), b'OK "Deletescript completed."\r\n')
        self.assertEqual(
            self.send(protocol, transport, b'DELETESCRIPT "b"\r\n'), b'NO (NONEXISTENT) "Script does not exist."\r\n'
        )
        [event] = self.logged("deleted")
        self.assertEqual((event["script"], event["account"]), ("b", ALICE))

    def test_renameScript(self) -> None:
        """
        RENAMESCRIPT renames (the active script stays active under its new
        name); a taken name is NO (ALREADYEXISTS), a missing script NO
        (NONEXISTENT).
        """
        protocol, transport = self.loggedIn()
        self.put(protocol, transport, "a")
        self.put(protocol, transport, "b")
        self.send(protocol, transport, b'SETACTIVE "a"\r\n')
        self.assertEqual(
            self.send(protocol, transport, b'RENAMESCRIPT "a" "b"\r\n'),
            b'NO (ALREADYEXISTS) "A script with that name already exists."\r\n',
        )
        self.assertEqual(
            self.send(protocol, transport, b'RENAMESCRIPT "x" "y"\r\n'),
            b'NO (NONEXISTENT) "Script does not exist."\r\n',
        )
        self.assertEqual(
            self.send(protocol, transport, b'RENAMESCRIPT "a" "c"\r\n'), b'OK "Renamescript completed."\r\n'
        )
        self.assertEqual(
            self.send(protocol, transport, b"LISTSCRIPTS\r\n"),
            b'"b"\r\n"c" ACTIVE\r\nOK "Listscripts completed."\r\n',
        )

    def test_getMissing(self) -> None:
        """
        GETSCRIPT of a missing script: NO (NONEXISTENT).
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b'GETSCRIPT "x"\r\n'), b'NO (NONEXISTENT) "Script does not exist."\r\n'
        )

    def test_invalidNames(self) -> None:
        """
        Names with "/" or control characters, ".", "..", and names that are
        not UTF-8 are refused before anything touches the disk.
        """
        protocol, transport = self.loggedIn()
        for name in (b"a/b", b"..", b".", b"tab\there", b"\xff\xfe", b""):
            self.assertEqual(
                self.send(protocol, transport, b"PUTSCRIPT " + literal(name) + b" " + literal(b"keep;") + b"\r\n"),
                b'NO "Invalid script name."\r\n',
                name,
            )
        self.assertFalse(self.home().exists())

    def test_utf8Names(self) -> None:
        """
        UTF-8 names work, also with quotes in them (listed escaped).
        """
        protocol, transport = self.loggedIn()
        name = 'Ferien "Sommer" ☀'
        self.assertEqual(self.put(protocol, transport, name), b'OK "Putscript completed."\r\n')
        self.assertEqual(
            self.send(protocol, transport, b"LISTSCRIPTS\r\n"),
            quoted(name) + b'\r\nOK "Listscripts completed."\r\n',
        )
        self.assertIn(b'\\"Sommer\\"', quoted(name))

    def test_accountsSeparate(self) -> None:
        """
        Each account sees only its own scripts.
        """
        protocol, transport = self.loggedIn(ALICE)
        self.put(protocol, transport, "a")
        protocol, transport = self.loggedIn(BOB)
        self.assertEqual(self.send(protocol, transport, b"LISTSCRIPTS\r\n"), b'OK "Listscripts completed."\r\n')


# ------------------------------------------------------- errors and ordering


class ErrorTests(ManageSieveTestMixin, unittest.SynchronousTestCase):
    def test_unknownCommand(self) -> None:
        """
        Unknown commands and wrong arguments get NO.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(self.send(protocol, transport, b"FROB\r\n"), b'NO "Unknown command."\r\n')
        self.assertEqual(self.send(protocol, transport, b'"NOOP"\r\n'), b'NO "Unknown command."\r\n')
        self.assertEqual(self.send(protocol, transport, b"GETSCRIPT\r\n"), b'NO "Wrong number of arguments."\r\n')
        self.assertEqual(self.send(protocol, transport, b"GETSCRIPT x\r\n"), b'NO "Invalid string argument."\r\n')
        self.assertEqual(
            self.send(protocol, transport, b'LISTSCRIPTS "x"\r\n'), b'NO "Wrong number of arguments."\r\n'
        )

    def test_syntaxError(self) -> None:
        """
        A malformed line gets NO naming the problem.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b'GETSCRIPT "x\r\n'), b'NO "Syntax error: Unterminated quoted string."\r\n'
        )

    def test_tooManyBadCommands(self) -> None:
        """
        The tenth invalid command closes the connection with BYE.
        """
        protocol, transport = self.connect()
        out = self.send(protocol, transport, b"FROB\r\n" * 10 + b"NOOP\r\n")
        self.assertEqual(out, b'NO "Unknown command."\r\n' * 9 + b'BYE "Too many invalid commands."\r\n')
        self.assertTrue(transport.disconnecting)

    def test_lineTooLong(self) -> None:
        """
        A line over the limit closes the connection with BYE.
        """
        protocol, transport = self.connect(limits=ManageSieveLimits(maxLineLength=100))
        self.assertEqual(self.send(protocol, transport, b"N" * 102), b'BYE "Line too long."\r\n')
        self.assertTrue(transport.disconnecting)

    def test_storeTemporaryFailure(self) -> None:
        """
        A temporary store failure is NO (TRYLATER); the session goes on.
        """
        held = HeldStore(self.store, "listScripts")
        protocol, transport = self.loggedIn(scripts=held)
        self.assertEqual(self.send(protocol, transport, b"LISTSCRIPTS\r\nNOOP\r\n"), b"")
        held.held[0].errback(MailError(ErrorKind.TEMP, "Temporary storage failure", temporary=True))
        self.assertEqual(transport.value(), TRYLATER + b'OK "Done."\r\n')

    def test_unexpectedError(self) -> None:
        """
        An unexpected exception is logged in full and answered NO
        (TRYLATER).
        """
        held = HeldStore(self.store, "getScript")
        protocol, transport = self.loggedIn(scripts=held)
        self.send(protocol, transport, b'GETSCRIPT "a"\r\n')
        held.held[0].errback(RuntimeError("bug"))
        self.assertEqual(transport.value(), TRYLATER)
        [event] = [e for e in self.events if e.get("log_failure") is not None]
        self.assertEqual(event["command"], "GETSCRIPT")
        self.assertTrue(event["log_failure"].check(RuntimeError))

    def test_commandsWaitForTheStore(self) -> None:
        """
        Commands pipelined behind one that waits for the store are answered
        after it, in order.
        """
        held = HeldStore(self.store, "putScript")
        protocol, transport = self.loggedIn(scripts=held)
        out = self.send(
            protocol,
            transport,
            b'PUTSCRIPT "a" ' + literal(SCRIPT) + b'\r\nSETACTIVE "a"\r\nLISTSCRIPTS\r\n',
        )
        self.assertEqual(out, b"")
        held.held[0].callback(None)
        self.assertEqual(
            transport.value(),
            b'OK "Putscript completed."\r\nOK "Script activated."\r\n"a" ACTIVE\r\nOK "Listscripts completed."\r\n',
        )

    def test_connectionLostWhileWaiting(self) -> None:
        """
        A store operation finishing after the client left writes nothing.
        """
        held = HeldStore(self.store, "putScript")
        protocol, transport = self.loggedIn(scripts=held)
        self.put(protocol, transport, "a")
        protocol.connectionLost(None)  # type: ignore[arg-type]
        held.held[0].callback(None)
        self.assertEqual(transport.value(), b"")
        self.assertTrue((self.home() / "sieve" / "a.sieve").exists())

    def test_readingPausesWhileBusy(self) -> None:
        """
        While a command waits, reading stops once more than maxPipelined
        octets are buffered, and resumes when it is answered.
        """
        held = HeldStore(self.store, "listScripts")
        protocol, transport = self.loggedIn(scripts=held, limits=ManageSieveLimits(maxPipelined=100))
        self.send(protocol, transport, b"LISTSCRIPTS\r\n" + b"NOOP\r\n" * 20)
        self.assertEqual(transport.producerState, "paused")
        held.held[0].callback(None)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(transport.value().count(b'OK "Done."'), 20)


# ------------------------------------------------------------------- timers


class TimeoutTests(ManageSieveTestMixin, unittest.SynchronousTestCase):
    def test_loginTimeout(self) -> None:
        """
        The login must be done within loginTimeout, however busy the client
        keeps the connection.
        """
        protocol, transport = self.connect()
        for _ in range(17):
            self.clock.advance(10)
            self.send(protocol, transport, b"NOOP\r\n")
        self.clock.advance(10)
        self.assertEqual(transport.value(), b'BYE "Disconnected: login not completed in time."\r\n')
        self.assertTrue(transport.disconnecting)

    def test_idleTimeout(self) -> None:
        """
        After login, idleTimeout of silence ends the session; commands
        restart the timer.
        """
        protocol, transport = self.loggedIn()
        self.clock.advance(599)
        self.send(protocol, transport, b"NOOP\r\n")
        self.clock.advance(599)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(transport.value(), b'BYE "Disconnected for inactivity."\r\n')
        self.assertTrue(transport.disconnecting)

    def test_commandTimeout(self) -> None:
        """
        A command line must be whole within commandTimeout of its first
        octet, even if the client keeps sending.
        """
        protocol, transport = self.loggedIn()
        self.send(protocol, transport, b"LISTSCR")
        for _ in range(29):
            self.clock.advance(10)
            self.send(protocol, transport, b"I")
        self.assertFalse(transport.disconnecting)
        self.clock.advance(10)
        self.assertEqual(transport.value(), b'BYE "Disconnected: command not completed in time."\r\n')

    def test_literalTimeout(self) -> None:
        """
        A literal that stalls ends the session after dataTimeout; a steady
        one does not.
        """
        protocol, transport = self.loggedIn(
            limits=ManageSieveLimits(dataTimeout=60, minDataRate=1, idleTimeout=10_000)
        )
        self.send(protocol, transport, b'PUTSCRIPT "a" {150+}\r\n')
        for _ in range(10):
            self.clock.advance(5)
            self.send(protocol, transport, b"x" * 10)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(61)
        self.assertEqual(transport.value(), b'BYE "Disconnected: literal data too slow."\r\n')

    def test_completedCommandStopsDeadline(self) -> None:
        """
        Once a command is complete no deadline runs: the idle timer alone
        applies.
        """
        protocol, transport = self.loggedIn()
        self.put(protocol, transport, "a")
        self.clock.advance(599)
        self.assertFalse(transport.disconnecting)


# ------------------------------------------------------- the Sieve parser


class SieveParserTests(ManageSieveTestMixin, unittest.SynchronousTestCase):
    """
    The factory's default checker and capability come from
    L{mailsrv.sieve}.
    """

    def factory(self, policy: Optional[EndpointPolicy] = None, **kw: Any) -> ManageSieveFactory:
        return ManageSieveFactory(
            policy or self.policy,
            self.portal,
            kw.pop("scripts", self.store),
            kw.pop("tls", self.tls),
            HOSTNAME,
            clock=self.clock,
            **kw,
        )

    def test_sieveCapability(self) -> None:
        """
        The SIEVE capability lists the parser's extensions, sorted.
        """
        protocol, transport = self.connect()
        out = self.send(protocol, transport, b"CAPABILITY\r\n")
        self.assertIn(b'"SIEVE" "' + " ".join(sorted(SUPPORTED_EXTENSIONS)).encode() + b'"\r\n', out)

    def test_putscriptValidates(self) -> None:
        """
        PUTSCRIPT stores what parseScript accepts and answers its error
        (with the line) for what it does not.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(self.put(protocol, transport, "good"), b'OK "Putscript completed."\r\n')
        self.assertEqual(
            self.put(protocol, transport, "bad", b'require "fileinto";\r\nfrob;\r\n'),
            b"NO \"line 2: unknown command 'frob'\"\r\n",
        )
        self.assertEqual(
            self.put(protocol, transport, "ext", b'require "nope";\r\n'),
            b'NO "line 1: unsupported extension \\"nope\\""\r\n',
        )
        self.assertEqual(
            self.send(protocol, transport, b'LISTSCRIPTS\r\n'), b'"good"\r\nOK "Listscripts completed."\r\n'
        )

    def test_checkscriptValidates(self) -> None:
        """
        CHECKSCRIPT answers parseScript's verdict, also for scripts that
        are not UTF-8.
        """
        protocol, transport = self.loggedIn()
        self.assertEqual(
            self.send(protocol, transport, b"CHECKSCRIPT " + literal(SCRIPT) + b"\r\n"), b'OK "Script is valid."\r\n'
        )
        self.assertEqual(
            self.send(protocol, transport, b"CHECKSCRIPT " + literal(b"keep;\r\n\xff\r\n") + b"\r\n"),
            b'NO "line 2: script is not valid UTF-8"\r\n',
        )

    def test_largeScriptCheckedInThread(self) -> None:
        """
        Scripts over inlineCheckSize are checked with runInThread.
        """
        ran: list[int] = []

        def runner(f: Any, *args: Any) -> "defer.Deferred[Any]":
            ran.append(len(args[0]))
            return defer.maybeDeferred(f, *args)

        self.store.maxScriptSize = 10_000
        protocol, transport = self.loggedIn(limits=ManageSieveLimits(inlineCheckSize=100), runInThread=runner)
        self.assertEqual(self.put(protocol, transport, "small", b"keep;\r\n"), b'OK "Putscript completed."\r\n')
        big = b"# comment\r\n" * 100 + b"keep;\r\n"
        self.assertEqual(self.put(protocol, transport, "big", big), b'OK "Putscript completed."\r\n')
        self.assertEqual(ran, [len(big)])


class MetricsTests(ManageSieveTestMixin, unittest.SynchronousTestCase):
    def test_connectionsAndLoginsCounted(self) -> None:
        """
        The log lines of connections and logins feed /metrics, under the
        protocol label "managesieve"; the close line is not a connection.
        """
        protocol, transport = self.connect(SIEVE_TLS, implicitTLS=True)
        self.send(protocol, transport, b'AUTHENTICATE "PLAIN" "' + plain(ALICE, "wrong") + b'"\r\n')
        self.clock.advance(1.0)
        self.send(protocol, transport, b'AUTHENTICATE "PLAIN" "' + plain(ALICE, "secret") + b'"\r\n')
        protocol.connectionLost(None)  # type: ignore[arg-type]
        metrics = Metrics()
        for event in self.events:
            metrics.observe(event)
        text = metrics.render().decode()
        self.assertIn('mailsrv_connections_total{endpoint="sieves",protocol="managesieve"} 1.0', text)
        self.assertIn('mailsrv_auth_attempts_total{outcome="failure",protocol="managesieve"} 1.0', text)
        self.assertIn('mailsrv_auth_attempts_total{outcome="success",protocol="managesieve"} 1.0', text)
