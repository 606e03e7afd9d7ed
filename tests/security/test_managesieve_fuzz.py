"""
Fuzzing the ManageSieve server in memory, with the harness of
C{test_fuzz_protocols}: generated and mutated command streams (quoted
strings, {n} and {n+} literals of every size, SASL exchanges, STARTTLS,
over-long lines, junk), cut into segments and fed the way a reactor
would, before and after login.

For every example nothing is raised or logged as a failure, buffered input
stays under the limits (a line, a script literal and the pipelining
allowance), NOOP is answered in command state, the idle timers close the
connection, and a fresh connection on the same store gets a full session.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import task
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import alsoProvides

from mailsrv.auth.realm import MailRealm
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode
from mailsrv.protocols.managesieve.server import ManageSieveFactory, ManageSieveLimits, ManageSieveServer, State
from mailsrv.storage.sieve_store import MaildirSieveStore
from tests.protocols.smtphelpers import plain
from tests.protocols.test_imap import FakeTLSCreator, TLSCapableTransport
from tests.security.test_fuzz_protocols import ALICE, FUZZ, HOSTNAME, PASSWORD, Driver, FuzzMixin, stream
from tests.storage.helpers import synchronousRunner

SIEVE = EndpointPolicy("managesieve", Protocol.MANAGESIEVE, ("0.0.0.0:4190",), TLSMode.STARTTLS_REQUIRED, auth=True)
SIEVES = EndpointPolicy("sieves", Protocol.MANAGESIEVE, ("0.0.0.0:5190",), TLSMode.IMPLICIT, auth=True)

MAX_SCRIPT_SIZE = 4096
LIMITS = ManageSieveLimits(maxDiscard=200_000)

VERBS = [
    b"CAPABILITY", b"STARTTLS", b"AUTHENTICATE", b"LOGOUT", b"NOOP", b"UNAUTHENTICATE", b"HAVESPACE",
    b"PUTSCRIPT", b"LISTSCRIPTS", b"SETACTIVE", b"GETSCRIPT", b"DELETESCRIPT", b"RENAMESCRIPT",
    b"CHECKSCRIPT", b"AUTHENTICATE \"PLAIN\"", b"AUTHENTICATE \"LOGIN\"", b"PUTSCRIPT \"a\"",
]
ARGS = [
    b'"a"', b'"b"', b'""', b'"PLAIN"', b'"LOGIN"', b"PLAIN", b'"*"', b'"="', b'"' + plain(ALICE, PASSWORD) + b'"',
    b'"keep;"', b'"require \\"fileinto\\"; fileinto \\"x\\";"', b'"boom"', b"{5+}\r\nkeep;", b"{5}\r\nkeep;",
    b"{0+}\r\n", b"100", b"4097", b"99999999999", b'"x/y"', b'".."', b'"\xff"', b'"\\x"', b'"a\\"b"', b"(", b"}",
]
PREAMBLES = [
    b"",
    b'AUTHENTICATE "PLAIN" "' + plain(ALICE, PASSWORD) + b'"\r\n',
    b'AUTHENTICATE "PLAIN" "' + plain(ALICE, PASSWORD) + b'"\r\nPUTSCRIPT "a" {5+}\r\nkeep;\r\nSETACTIVE "a"\r\n',
    b'AUTHENTICATE "LOGIN"\r\n',
    b'AUTHENTICATE "PLAIN" "' + plain(ALICE, "wrong") + b'"\r\n',
    b'AUTHENTICATE "PLAIN" "' + plain(ALICE, PASSWORD) + b'"\r\nPUTSCRIPT "big" {4097+}\r\n',
]


class ManageSieveContext:
    """
    A script store on a temporary directory, a portal, a clock.
    """

    def __init__(self, root: Path) -> None:
        self.clock = task.Clock()
        self.store = MaildirSieveStore(
            root, maxScripts=5, maxScriptSize=MAX_SCRIPT_SIZE, runInThread=synchronousRunner
        )
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(ALICE.encode(), PASSWORD.encode())
        self.portal = Portal(MailRealm(), [checker])


class ManageSieveDriver(Driver):
    bufferLimit = LIMITS.maxPipelined + LIMITS.maxLineLength + MAX_SCRIPT_SIZE + 2

    def __init__(self, context: ManageSieveContext, implicitTLS: bool, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.clock = context.clock
        factory = ManageSieveFactory(
            SIEVES if implicitTLS else SIEVE,
            context.portal,
            context.store,
            FakeTLSCreator(),
            HOSTNAME,
            clock=self.clock,
            limits=LIMITS,
        )
        self.server = factory.buildProtocol(None)
        self.transport = TLSCapableTransport()
        if implicitTLS:
            alsoProvides(self.transport, ISSLTransport)
        self.server.makeConnection(self.transport)

    def buffered(self) -> int:
        return int(self.server._reader.buffered)

    def inCommandState(self) -> bool:
        s = self.server
        return (
            not s._busy
            and not s._reader.buffered
            and not s._reader.linePending
            and not s._reader.inLiteral
            and s._sasl is None
            and not s._closing
            and s.state is not State.LOGOUT
        )

    def noop(self, test: SynchronousTestCase) -> None:
        self.transport.clear()
        self.server.dataReceived(b'NOOP "fuzz"\r\n')
        self.advance(0)
        out = self.transport.value()
        self.transport.clear()
        test.assertEqual(out, b'OK (TAG "fuzz") "Done."\r\n')


class ManageSieveFuzzTests(FuzzMixin, SynchronousTestCase):
    @FUZZ
    @given(implicitTLS=st.booleans(), segments=stream(VERBS, ARGS, PREAMBLES, tagged=False))
    def test_commandStreams(self, implicitTLS: bool, segments: list[tuple[bytes, float]]) -> None:
        """
        Generated and mutated ManageSieve command streams, before and after
        login: no exception or logged failure, buffered input under the
        limits, NOOP answered in command state, the timers close the
        connection, and a fresh connection logs in, stores and lists.
        """
        events: list[dict[str, Any]] = []
        self.patch(ManageSieveServer, "log", Logger(namespace="fuzz.managesieve", observer=events.append))
        root = Path(tempfile.mkdtemp())
        try:
            context = ManageSieveContext(root)
            driver = ManageSieveDriver(context, implicitTLS, events)
            self.check(driver, segments, events)
            fresh = ManageSieveDriver(context, True, events)
            fresh.transport.clear()
            fresh.server.dataReceived(
                b'AUTHENTICATE "PLAIN" "' + plain(ALICE, PASSWORD) + b'"\r\n'
                b'PUTSCRIPT "fresh" {5+}\r\nkeep;\r\nLISTSCRIPTS\r\nLOGOUT\r\n'
            )
            fresh.advance(0)
            out = fresh.transport.value()
            self.assertTrue(out.startswith(b'OK "Logged in."\r\nOK "Putscript completed."\r\n'), out)
            self.assertIn(b'"fresh"', out)
            self.assertTrue(out.endswith(b'OK "Logout completed."\r\n'), out)
            fresh.lose()
        finally:
            shutil.rmtree(root)
