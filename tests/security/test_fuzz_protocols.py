"""
Fuzzing the SMTP, IMAP and POP3 servers in memory.

Hypothesis generates command streams from valid commands, random bytes,
over-long lines, literals (C{{n}}, C{{n+}}), base64 junk and every CR/LF
variant, pipelines them, cuts them into TCP-like segments at random points
and mutates them (flipped, inserted and deleted bytes).  Each stream is fed
to a fresh protocol instance over a L{StringTransport} and a L{task.Clock},
the way a reactor would: no more input while the server paused reading,
timers advanced between segments.

For every example:
 - nothing is raised out of C{dataReceived} or the timers, nothing is
   logged as a failure or error (trial's logged-error check and the
   protocol's own log events), including errors of Deferreds collected as
   garbage;
 - input buffered inside the protocol stays under its limit plus the last
   segment, and the output stays bounded;
 - a connection still in command state answers NOOP; any connection is
   closed by its idle timeout at the latest (no hang), and its cleanup runs;
 - a fresh connection on the same store and portal gets a full session.

CI runs a few dozen examples per protocol (C{MAILSRV_FUZZ_EXAMPLES}, default
40); see C{docs/testing.md} for the long run.
"""

from __future__ import annotations

import base64
import gc
import os
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.mail.imap4 import IAccount
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import alsoProvides

from mailsrv.auth.realm import MailRealm
from mailsrv.config.schema import LimitsConfig
from mailsrv.protocols.imap.account import accountFactory
from mailsrv.protocols.imap.server import IMAPFactory, IMAPServer
from mailsrv.protocols.pop3.maildrop import MaildropLocks
from mailsrv.protocols.pop3.server import IPOP3Maildrop, POP3Factory, POP3Limits, POP3Server, maildropFactory
from mailsrv.protocols.smtp import server as smtpserver
from mailsrv.storage.memory import MemoryMailStore
from tests.protocols.smtphelpers import SMTPHarness, plain
from tests.protocols.test_imap import IMAP, IMAPS, MSG1, MSG2, MULTIPART, FakeTLSCreator, TLSCapableTransport
from tests.protocols.test_pop3 import POP3, POP3S

EXAMPLES = int(os.environ.get("MAILSRV_FUZZ_EXAMPLES", "40"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

ALICE = "alice@example.test"
PASSWORD = "secret"
HOSTNAME = "mail.example.test"

# Output allowed per example: a runaway writer shows up far below this,
# while a stream of FETCH commands over three small messages stays under.
MAX_OUTPUT = 4 * 1024 * 1024

# How far the clock is pushed at the end: past every idle timeout (SMTP
# 300/600 s, POP3 60/600 s, IMAP 60 s before and 30 min after login).
PAST_TIMEOUTS = 2 * 3600.0


# ------------------------------------------------------------- strategies

ENDINGS = st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r", b"\r\r\n", b"\n\r", b"", b"\r\n\r\n"])

JUNK = st.binary(max_size=80)

BASE64_JUNK = st.one_of(
    st.binary(max_size=200).map(base64.b64encode),
    st.binary(max_size=60).map(lambda b: base64.b64encode(b)[:-1] + b"*="),
    st.sampled_from([b"*", b"=", b"====", b"AGFsaWNl", plain(ALICE, PASSWORD), plain(ALICE, "wrong")]),
)

SIZES = st.one_of(
    st.integers(0, 40),
    st.integers(0, 100_000),
    st.sampled_from([4095, 4096, 4097, 2**31, 2**63, 10**20, 10**30]),
)


@st.composite
def literal(draw: Any) -> bytes:
    """
    C{{n}} or C{{n+}} ending a line, followed by up to n (sometimes more)
    octets.
    """
    size = draw(SIZES)
    plus = draw(st.sampled_from([b"", b"+", b"-", b"++"]))
    prefix = draw(st.sampled_from([b"a APPEND INBOX ", b"a LOGIN ", b"a LOGIN alice ", b"a SELECT ", b"", b"a "]))
    body = draw(st.binary(max_size=min(size, 200))) if draw(st.booleans()) else b"x" * min(size, 5000)
    return prefix + b"{%d%s}" % (size, plus) + draw(ENDINGS) + body


@st.composite
def longLine(draw: Any) -> bytes:
    """
    A line around and far beyond every line limit (SMTP 2048, POP3 4096,
    IMAP 8192), sometimes without its end.
    """
    size = draw(st.sampled_from([2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192, 8193, 20000, 70000, 300_000]))
    prefix = draw(st.sampled_from([b"", b"a LOGIN ", b"MAIL FROM:<", b"USER ", b"a FETCH 1 "]))
    return prefix + draw(st.sampled_from([b"A", b" ", b"\x00", b"{"])) * size + draw(ENDINGS)


def commandLine(verbs: list[bytes], args: list[bytes], tagged: bool) -> Any:
    """
    One command line: an optional tag, a known verb (case mangled), some
    arguments (known and random) with odd spacing, a line ending.
    """

    @st.composite
    def build(draw: Any) -> bytes:
        verb = draw(st.sampled_from(verbs))
        if draw(st.integers(0, 4)) == 0:
            verb = bytes(c ^ 0x20 if 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A else c for c in verb)
        parts = [verb]
        for _ in range(draw(st.integers(0, 4))):
            parts.append(draw(st.one_of(st.sampled_from(args), JUNK, BASE64_JUNK)))
        sep = draw(st.sampled_from([b" ", b" ", b"  ", b"\t", b""]))
        line = sep.join(parts)
        if tagged:
            line = draw(st.sampled_from([b"a", b"1", b"*", b"+", b"", b"t" * 70, b"a.b"])) + b" " + line
        return line + draw(ENDINGS)

    return build()


@st.composite
def stream(draw: Any, verbs: list[bytes], args: list[bytes], preambles: list[bytes], tagged: bool) -> list[tuple[bytes, float]]:
    """
    A preamble (often a login), then pieces, mutated, cut into segments,
    each with the seconds that pass after it arrives.
    """
    piece = st.one_of(
        commandLine(verbs, args, tagged),
        commandLine(verbs, args, tagged),
        commandLine(verbs, args, tagged),
        JUNK,
        literal(),
        longLine(),
        BASE64_JUNK.map(lambda b: b + b"\r\n"),
        st.sampled_from([b".\r\n", b"\r\n.\r\n", b"\n.\n", b"\r.\r", b"DONE\r\n", b"*\r\n", b"\r\n", b"\x00"]),
    )
    data = bytearray(draw(st.sampled_from(preambles)) + b"".join(draw(st.lists(piece, max_size=25))))
    # Mutations: flip, insert and delete bytes at random places.
    for _ in range(draw(st.integers(0, 3)) if data else 0):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"{", b"}", b"\x00", b"\xff", b"."]))
        elif kind == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "duplicate" and data:
            data[at:at] = data[at : at + draw(st.integers(1, 200))]
    # Segments: one blob, or cut at random offsets (a byte at a time
    # sometimes, as slow clients do).
    raw = bytes(data)
    cuts = sorted(set(draw(st.lists(st.integers(0, max(len(raw), 1)), max_size=12))))
    if draw(st.integers(0, 9)) == 0 and len(raw) < 300:
        cuts = list(range(len(raw)))
    segments = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)]) if raw[a:b]]
    delays = st.sampled_from([0.0, 0.0, 0.0, 0.01, 0.5, 1.0, 1.5, 5.0])
    return [(segment, draw(delays)) for segment in segments]


# ------------------------------------------------------------- drivers


class Driver:
    """
    One connection of one protocol under test, played like a reactor:
    timers on C{clock}, pull producers resumed, no input while paused.
    """

    clock: task.Clock
    server: Any
    transport: StringTransport
    events: list[dict[str, Any]]

    # Octets the protocol may hold on top of the segment just fed.
    bufferLimit: int

    def pump(self) -> None:
        for _ in range(100_000):
            progressed = False
            producer = self.transport.producer
            if producer is not None and not self.transport.streaming:
                # A pull producer (a message being sent): the consumer asks
                # for more.  Push producers (the protocol itself) need no help.
                producer.resumeProducing()
                progressed = True
            if any(c.getTime() <= self.clock.seconds() for c in self.clock.getDelayedCalls()):
                self.clock.advance(0)
                progressed = True
            if not progressed:
                return
        raise AssertionError("the server never settled")

    def advance(self, seconds: float, step: float = 0.5) -> None:
        """
        Let C{seconds} pass in steps (auth failure delays, scheduled FETCH
        steps and timeouts fire in order).
        """
        self.pump()
        while seconds > 0:
            step = min(seconds, step)
            self.clock.advance(step)
            seconds -= step
            self.pump()

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def buffered(self) -> int:
        raise NotImplementedError()

    def inCommandState(self) -> bool:
        raise NotImplementedError()

    def noop(self, test: SynchronousTestCase) -> None:
        """
        Send a NOOP and check the reply (only in command state).
        """
        raise NotImplementedError()

    def feed(self, segments: list[tuple[bytes, float]], test: SynchronousTestCase) -> int:
        """
        Feed the segments; return the number of output octets.
        """
        output = 0
        for segment, delay in segments:
            if self.closed:
                break
            if self.transport.producerState == "paused":
                self.advance(2.0)
                if self.transport.producerState == "paused":
                    # A real transport reads nothing more; the client waits.
                    event("stopped reading")
                    break
            self.server.dataReceived(segment)
            test.assertLessEqual(
                self.buffered(), self.bufferLimit + len(segment), "input buffered beyond the limit"
            )
            self.advance(delay)
            output += len(self.transport.value())
            self.transport.clear()
            test.assertLessEqual(output, MAX_OUTPUT, "unbounded output")
        self.advance(3.0)
        return output

    def lose(self) -> None:
        self.transport.connected = False
        self.server.connectionLost(Failure(ConnectionDone()))
        self.pump()


def errorEvents(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if "log_failure" in e or getattr(e.get("log_level"), "name", "") in ("error", "critical")
    ]


class SMTPDriver(Driver):
    bufferLimit = smtpserver.MAX_BUFFERED + smtpserver.MAX_COMMAND_LINE

    def __init__(self, endpoint: str, implicitTLS: bool, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.harness = SMTPHarness(
            endpoint=endpoint,
            limits=LimitsConfig(messageSize=100_000, recipients=5, maxErrors=20),
            implicitTLS=implicitTLS,
        )
        self.clock = self.harness.clock
        self.server = self.harness.server
        self.transport = self.harness.transport

    def buffered(self) -> int:
        data = self.server._data
        pending = len(getattr(data, "_pending", b"") or b"") if data is not None else 0
        return len(self.server._buffer) + pending

    def inCommandState(self) -> bool:
        s = self.server
        return s._mode == smtpserver.COMMAND and not s._busy and not s._buffer and not s._skipLine

    def noop(self, test: SynchronousTestCase) -> None:
        self.transport.clear()
        self.server.dataReceived(b"NOOP\r\n")
        self.advance(0)
        out = self.transport.value()
        self.transport.clear()
        if self.server._refused:
            test.assertTrue(out.startswith(b"554 "), out)
        else:
            test.assertEqual(out, b"250 2.0.0 Ok\r\n")


class IMAPDriver(Driver):
    bufferLimit = IMAPServer.MAX_LENGTH + 64 * 1024

    def __init__(self, context: "IMAPContext", implicitTLS: bool, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.clock = context.clock
        policy = IMAPS if implicitTLS else IMAP
        factory = IMAPFactory(policy, context.portal, FakeTLSCreator(), HOSTNAME, clock=self.clock, maxMessageSize=100_000)
        self.server = factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
        self.server.log = Logger(namespace="fuzz.imap", observer=events.append)
        self.transport = TLSCapableTransport()
        if implicitTLS:
            alsoProvides(self.transport, ISSLTransport)
        self.server.makeConnection(self.transport)

    def buffered(self) -> int:
        s = self.server
        blocked = sum(len(line) + 2 for line in (s.blocked or []))
        return len(s._buffer) + blocked + len(s._refeed)

    def inCommandState(self) -> bool:
        s = self.server
        return (
            s.parseState == "command"
            and s.blocked is None
            and s.line_mode
            and not s._buffer
            and not s._discardingLine
            and s.state != "logout"
        )

    def noop(self, test: SynchronousTestCase) -> None:
        self.transport.clear()
        self.server.dataReceived(b"zz NOOP\r\n")
        self.advance(0)
        out = self.transport.value()
        self.transport.clear()
        test.assertTrue(out.endswith(b"zz OK NOOP completed\r\n"), out[-300:])


class POP3Driver(Driver):
    bufferLimit = POP3Limits().maxPipelined + POP3Limits().maxLineLength

    def __init__(self, context: "POP3Context", implicitTLS: bool, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.clock = context.clock
        factory = POP3Factory(POP3S if implicitTLS else POP3, context.portal, FakeTLSCreator(), HOSTNAME, clock=self.clock)
        self.server = factory.buildProtocol(None)
        self.transport = TLSCapableTransport()
        if implicitTLS:
            alsoProvides(self.transport, ISSLTransport)
        self.server.makeConnection(self.transport)

    def buffered(self) -> int:
        return len(self.server._buffer)

    def inCommandState(self) -> bool:
        s = self.server
        return not s._busy and not s._buffer and s._sasl is None and not s._closing and s.state.value != "update"

    def noop(self, test: SynchronousTestCase) -> None:
        transaction = self.server.state.value == "transaction"
        self.transport.clear()
        self.server.dataReceived(b"NOOP\r\n" if transaction else b"CAPA\r\n")
        self.advance(0)
        out = self.transport.value()
        self.transport.clear()
        if transaction:
            test.assertEqual(out, b"+OK\r\n")
        else:
            test.assertTrue(out.startswith(b"+OK\r\nCAPA\r\n") and out.endswith(b"\r\n.\r\n"), out)


class IMAPContext:
    """
    A memory store with three messages for alice, a portal, a clock.
    """

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.store = MemoryMailStore(clock=lambda: 1_700_000_000.0)
        for data in (MSG1, MSG2, MULTIPART):
            writer = self.store.startMessage([ALICE])
            writer.write(data)
            writer.commit()
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(ALICE.encode(), PASSWORD.encode())
        realm = MailRealm()
        realm.registerAvatarFactory(IAccount, accountFactory(self.store))
        self.portal = Portal(realm, [checker])


class POP3Context(IMAPContext):
    def __init__(self) -> None:
        super().__init__()
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(ALICE.encode(), PASSWORD.encode())
        realm = MailRealm()
        realm.registerAvatarFactory(IPOP3Maildrop, maildropFactory(self.store, MaildropLocks()))
        self.portal = Portal(realm, [checker])


# ------------------------------------------------------------- grammar

SMTP_VERBS = [
    b"EHLO", b"HELO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"BDAT", b"RSET", b"NOOP", b"VRFY", b"HELP",
    b"STARTTLS", b"AUTH PLAIN", b"AUTH LOGIN", b"AUTH", b"QUIT", b"EXPN", b"ETRN", b"XCLIENT",
]
SMTP_ARGS = [
    b"client.test", b"<alice@example.test>", b"<>", b"<a@b.test>", b"<@x.test:alice@example.test>",
    b'<"a b"@example.test>', b"<alice@[127.0.0.1]>", b"SIZE=10", b"SIZE=999999999999", b"BODY=8BITMIME",
    b"SMTPUTF8", b"NOTIFY=SUCCESS,FAILURE", b"ORCPT=rfc822;a@b", b"RET=HDRS", b"ENVID=x+2B", b"LAST", b"0",
    b"10", b"100000", b"4096", b"*", b"=", plain(ALICE, PASSWORD), b"<\xc3\xa9@example.test>",
]
SMTP_PREAMBLES = [
    b"",
    b"EHLO fuzz.test\r\n",
    b"EHLO fuzz.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\n",
    b"EHLO fuzz.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
    b"EHLO fuzz.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT 10\r\n",
    b"EHLO fuzz.test\r\nAUTH PLAIN " + plain(ALICE, PASSWORD) + b"\r\n",
    b"EHLO fuzz.test\r\nAUTH LOGIN\r\n",
]

IMAP_VERBS = [
    b"CAPABILITY", b"NOOP", b"LOGOUT", b"STARTTLS", b"AUTHENTICATE", b"LOGIN", b"SELECT", b"EXAMINE",
    b"CREATE", b"DELETE", b"RENAME", b"SUBSCRIBE", b"UNSUBSCRIBE", b"LIST", b"LSUB", b"STATUS", b"APPEND",
    b"CHECK", b"CLOSE", b"EXPUNGE", b"SEARCH", b"FETCH", b"STORE", b"COPY", b"MOVE", b"UID FETCH",
    b"UID SEARCH", b"UID STORE", b"UID COPY", b"UID MOVE", b"UID EXPUNGE", b"IDLE", b"ENABLE", b"ID",
    b"NAMESPACE", b"UNSELECT", b"GETQUOTA", b"GETQUOTAROOT", b"SETQUOTA", b"UID",
]
IMAP_ARGS = [
    b"INBOX", b"inbox", b'"INBOX"', b"Archive", b"&AOk-t&AOk-", b"&-", b"&Jjo", b"..", b"../x", b"a/b",
    b"INBOX.Sub", b'""', b"*", b"%", b"1", b"1:*", b"*:1", b"2,3", b"0", b"4294967296", b"1:4294967295",
    b"(FLAGS)", b"(FLAGS UID RFC822.SIZE ENVELOPE)", b"BODY[]", b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]",
    b"BODY[1.2.3.MIME]", b"BODY[]<0.10>", b"BODY[]<4294967295.1>", b"BODYSTRUCTURE", b"RFC822",
    b"(BODY[TEXT]<5.5>)", b"ALL", b"FAST", b"FULL", b"+FLAGS", b"-FLAGS.SILENT", b"(\\Seen \\Deleted)",
    b"(\\Bogus)", b"SUBJECT", b"first", b"TEXT", b"OR", b"NOT", b"HEADER", b"BEFORE", b"1-Jan-2024",
    b"SINCE", b"CHARSET", b"UTF-8", b"(MESSAGES UNSEEN UIDNEXT)", b"(CONDSTORE)", b"CONDSTORE",
    b"(CHANGEDSINCE 1)", b"MODSEQ", b"(UNCHANGEDSINCE 0)", b"PLAIN", b"alice@example.test", b"secret",
    b'("name" "x")', b"NIL", b'"17-Jul-1996 02:44:25 -0700"', b"(", b")", b"[", b"]", b'"', b"\\",
]
IMAP_PREAMBLES = [
    b"",
    b"a LOGIN alice@example.test secret\r\n",
    b"a LOGIN alice@example.test secret\r\nb SELECT INBOX\r\n",
    b"a LOGIN alice@example.test secret\r\nb EXAMINE INBOX\r\n",
    b"a AUTHENTICATE PLAIN\r\n",
    b"a LOGIN alice@example.test wrong\r\n",
    b"a LOGIN alice@example.test secret\r\nb SELECT INBOX\r\nc IDLE\r\n",
    b"a LOGIN alice@example.test secret\r\nb APPEND INBOX {20}\r\n",
]

POP3_VERBS = [
    b"USER", b"PASS", b"AUTH", b"AUTH PLAIN", b"AUTH LOGIN", b"APOP", b"STLS", b"CAPA", b"STAT", b"LIST",
    b"RETR", b"DELE", b"NOOP", b"RSET", b"TOP", b"UIDL", b"QUIT", b"XTND",
]
POP3_ARGS = [
    b"alice@example.test", b"secret", b"1", b"2", b"3", b"4", b"0", b"-1", b"99999999999", b"1 0",
    b"1 100000000000", b"2 1", b"PLAIN", b"LOGIN", b"*", b"=", plain(ALICE, PASSWORD),
]
POP3_PREAMBLES = [
    b"",
    b"USER alice@example.test\r\nPASS secret\r\n",
    b"USER alice@example.test\r\nPASS wrong\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH PLAIN " + plain(ALICE, PASSWORD) + b"\r\nDELE 1\r\n",
]


# ------------------------------------------------------------- tests


class FuzzMixin:
    """
    The checks shared by every protocol; C{makeDriver} and C{freshSession}
    come from the test case.
    """

    def check(self, driver: Driver, segments: list[tuple[bytes, float]], events: list[dict[str, Any]]) -> None:
        test: Any = self
        driver.feed(segments, test)
        if not driver.closed and driver.inCommandState():
            event("answered NOOP afterwards")
            driver.noop(test)
        if not driver.closed:
            driver.advance(PAST_TIMEOUTS, step=30.0)
            test.assertTrue(driver.closed, "still open after every idle timeout")
        driver.lose()
        gc.collect()
        test.assertEqual(test.flushLoggedErrors(), [])
        test.assertEqual(errorEvents(events), [])


class SMTPFuzzTests(FuzzMixin, SynchronousTestCase):
    @FUZZ
    @given(
        endpoint=st.sampled_from([("smtp", False), ("submission", False), ("submissions", True)]),
        segments=stream(SMTP_VERBS, SMTP_ARGS, SMTP_PREAMBLES, tagged=False),
    )
    def test_commandStreams(self, endpoint: tuple[str, bool], segments: list[tuple[bytes, float]]) -> None:
        """
        Generated and mutated SMTP command streams on the MX and submission
        endpoints: no exception or logged failure, input buffering under
        the limits, NOOP answered in command state, the idle timeout closes
        the connection, and a fresh connection delivers a message.
        """
        events: list[dict[str, Any]] = []
        self.patch(smtpserver.SMTPServer, "log", Logger(namespace="fuzz.smtp", observer=events.append))
        driver = SMTPDriver(endpoint[0], endpoint[1], events)
        self.check(driver, segments, events)
        fresh = SMTPHarness()
        self.assertEqual(
            fresh.codes(
                b"EHLO ok.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
                b"Subject: x\r\n\r\nhi\r\n.\r\nNOOP\r\nQUIT\r\n"
            ),
            [250, 250, 250, 354, 250, 250, 221],
        )


class IMAPFuzzTests(FuzzMixin, SynchronousTestCase):
    @FUZZ
    @given(
        implicitTLS=st.booleans(),
        segments=stream(IMAP_VERBS, IMAP_ARGS, IMAP_PREAMBLES, tagged=True),
    )
    def test_commandStreams(self, implicitTLS: bool, segments: list[tuple[bytes, float]]) -> None:
        """
        Generated and mutated IMAP command streams, before and after login:
        no exception or logged failure, buffered input (line buffer and
        lines queued behind a running command) under the limits, NOOP
        answered in command state, the idle timeout closes the connection,
        and a fresh connection logs in and fetches.
        """
        events: list[dict[str, Any]] = []
        context = IMAPContext()
        driver = IMAPDriver(context, implicitTLS, events)
        self.check(driver, segments, events)
        fresh = IMAPDriver(context, True, events)
        fresh.transport.clear()
        fresh.server.dataReceived(b"a LOGIN alice@example.test secret\r\nb SELECT INBOX\r\nc UID FETCH 1:* (FLAGS)\r\nd NOOP\r\n")
        fresh.advance(0)
        out = fresh.transport.value()
        self.assertIn(b"a OK [CAPABILITY", out)
        self.assertIn(b"b OK [READ-WRITE]", out)
        self.assertIn(b"c OK", out)
        self.assertTrue(out.endswith(b"d OK NOOP completed\r\n"), out)
        fresh.lose()
        self.assertEqual(errorEvents(events), [])


class POP3FuzzTests(FuzzMixin, SynchronousTestCase):
    @FUZZ
    @given(
        implicitTLS=st.booleans(),
        segments=stream(POP3_VERBS, POP3_ARGS, POP3_PREAMBLES, tagged=False),
    )
    def test_commandStreams(self, implicitTLS: bool, segments: list[tuple[bytes, float]]) -> None:
        """
        Generated and mutated POP3 command streams, before and after login:
        no exception or logged failure, buffered input under the limits,
        NOOP (CAPA before login) answered in command state, the idle
        timeout closes the connection, its maildrop lock is released, and a
        fresh connection logs in and lists the messages.
        """
        events: list[dict[str, Any]] = []
        self.patch(POP3Server, "log", Logger(namespace="fuzz.pop3", observer=events.append))
        context = POP3Context()
        driver = POP3Driver(context, implicitTLS, events)
        self.check(driver, segments, events)
        fresh = POP3Driver(context, True, events)
        fresh.transport.clear()
        fresh.server.dataReceived(b"USER alice@example.test\r\nPASS secret\r\nSTAT\r\nQUIT\r\n")
        fresh.advance(0)
        out = fresh.transport.value()
        self.assertTrue(out.startswith(b"+OK\r\n+OK Logged in.\r\n+OK "), out)
        self.assertTrue(out.endswith(b"+OK Logging out.\r\n"), out)


class NonReadingClientTests(SynchronousTestCase):
    """
    Found by the abuse test: a client that pipelines commands and never
    reads the replies made the server buffer replies without bound.
    """

    def test_smtpStopsWhileRepliesPileUp(self) -> None:
        """
        The SMTP server is its transport's push producer: once the
        transport's write buffer is full (C{pauseProducing}), it answers no
        more pipelined commands, and stops reading once C{MAX_BUFFERED}
        octets wait; when the buffer drains it answers the rest in order
        and reads again.
        """
        h = SMTPHarness()
        self.assertIs(h.transport.producer, h.server)
        self.assertTrue(h.transport.streaming)
        h.server.pauseProducing()
        self.assertEqual(h.send(b"NOOP\r\n" * 1000), b"")
        self.assertEqual(h.transport.producerState, "producing")
        count = smtpserver.MAX_BUFFERED // 6
        self.assertEqual(h.send(b"NOOP\r\n" * count), b"")
        self.assertEqual(h.transport.producerState, "paused")
        h.server.resumeProducing()
        self.assertEqual(h.transport.value(), b"250 2.0.0 Ok\r\n" * (1000 + count))
        self.assertEqual(h.transport.producerState, "producing")

    def test_smtpFullOutputOutlastsPendingCommand(self) -> None:
        """
        A command that completes while the write buffer is still full does
        not make the server read again; the drain does.
        """
        h = SMTPHarness()
        h.target.holdCommits = True
        h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n")
        h.send(b"NOOP\r\n" * (smtpserver.MAX_BUFFERED // 6))
        h.server.pauseProducing()
        h.target.pendingCommits[0].callback(None)
        self.assertEqual(h.transport.producerState, "paused")
        h.transport.clear()
        h.server.resumeProducing()
        self.assertEqual(h.transport.producerState, "producing")
        self.assertEqual(h.transport.value(), b"250 2.0.0 Ok\r\n" * (1 + smtpserver.MAX_BUFFERED // 6))

    def test_pop3StopsWhileRepliesPileUp(self) -> None:
        """
        The POP3 server is its transport's push producer between messages:
        with the write buffer full it answers no more pipelined commands
        and stops reading once C{maxPipelined} octets wait; the drain makes
        it answer the rest.  A RETR of a message smaller than a chunk is
        answered at once, the server staying the producer (a larger one
        hands the transport to a message producer: C{test_pop3}).
        """
        context = POP3Context()
        driver = POP3Driver(context, True, [])
        server, transport = driver.server, driver.transport
        self.assertIs(transport.producer, server)
        server.dataReceived(b"USER alice@example.test\r\nPASS secret\r\nRETR 1\r\n")
        self.assertIs(transport.producer, server)
        self.assertTrue(transport.value().endswith(b"\r\n.\r\n"))
        driver.advance(0)
        self.assertIs(transport.producer, server)
        self.assertTrue(transport.streaming)
        transport.clear()
        server.pauseProducing()
        server.dataReceived(b"CAPA\r\n" * 100)
        self.assertEqual((transport.value(), transport.producerState), (b"", "producing"))
        count = POP3Limits().maxPipelined // 6
        server.dataReceived(b"CAPA\r\n" * count)
        self.assertEqual((transport.value(), transport.producerState), (b"", "paused"))
        server.resumeProducing()
        self.assertEqual(transport.value().count(b"+OK\r\nCAPA\r\n"), 100 + count)
        self.assertEqual(transport.producerState, "producing")

    def test_imapStopsReadingBehindPendingCommand(self) -> None:
        """
        Lines an IMAP client pipelines behind a command that is still
        running (here the delay of a failed LOGIN) are queued only up to
        C{MAX_QUEUED} octets: then reading stops, and it starts again once
        the command is answered and the queue replayed.
        """
        from mailsrv.protocols.imap.server import MAX_QUEUED

        driver = IMAPDriver(IMAPContext(), True, [])
        server, transport = driver.server, driver.transport
        server.dataReceived(b"a LOGIN alice@example.test wrong\r\n")
        server.dataReceived(b"b NOOP\r\n" * 1000)
        self.assertEqual(transport.producerState, "producing")
        server.dataReceived(b"b NOOP\r\n" * (MAX_QUEUED // 8))
        self.assertEqual(transport.producerState, "paused")
        transport.clear()
        driver.advance(1.0)
        self.assertEqual(transport.producerState, "producing")
        out = transport.value()
        self.assertTrue(out.startswith(b"a NO [AUTHENTICATIONFAILED]"), out[:100])
        self.assertEqual(out.count(b"b OK NOOP completed\r\n"), 1000 + MAX_QUEUED // 8)


class IMAPFuzzFindingTests(SynchronousTestCase):
    """
    Regressions for what the IMAP fuzzer found.
    """

    def exchange(self, data: bytes) -> tuple[bytes, list[dict[str, Any]]]:
        events: list[dict[str, Any]] = []
        driver = IMAPDriver(IMAPContext(), True, events)
        driver.transport.clear()
        driver.server.dataReceived(data)
        driver.advance(0)
        return driver.transport.value(), events

    def test_nonASCIICommandName(self) -> None:
        """
        A command name with a non-ASCII octet is an unknown command (BAD),
        not an internal error logged as critical.
        """
        out, events = self.exchange(b"a capability\x80\r\nb NOOP\r\n")
        self.assertEqual(out, b"a BAD Unsupported command\r\nb OK NOOP completed\r\n")
        self.assertEqual(errorEvents(events), [])

    def test_idWithoutParameters(self) -> None:
        """
        C{ID} without its parameter list gets BAD, not a server error that
        shows the client an exception text.
        """
        out, events = self.exchange(b"a ID\r\nb NOOP\r\n")
        self.assertEqual(out, b"a BAD Illegal syntax: ID takes NIL or a list\r\nb OK NOOP completed\r\n")
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(errorEvents(events), [])

    def test_commandWithoutArguments(self) -> None:
        """
        A command sent without the arguments it needs (C{a LOGIN},
        C{a SELECT}) gets BAD; Twisted handed its argument parsers None,
        which failed as a server error logged with a traceback and shown to
        the client.
        """
        out, events = self.exchange(b"a LOGIN\r\nb LOGIN alice@example.test secret\r\nc SELECT\r\nd NOOP\r\n")
        lines = out.split(b"\r\n")
        self.assertTrue(lines[0].startswith(b"a BAD Illegal syntax: "), lines[0])
        self.assertTrue(lines[1].startswith(b"b OK "), lines[1])
        self.assertTrue(lines[2].startswith(b"c BAD Illegal syntax: "), lines[2])
        self.assertEqual(lines[3:], [b"d OK NOOP completed", b""])
        self.assertNotIn(b"Server error", out)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(errorEvents(events), [])

    def test_unknownFetchAttribute(self) -> None:
        """
        An unknown FETCH attribute gets BAD, not a server error.
        """
        out, events = self.exchange(
            b"a LOGIN alice@example.test secret\r\nb SELECT INBOX\r\nc FETCH 1 bogus\r\nd UID FETCH 1 (FLAGS x)\r\n"
        )
        self.assertIn(b"\r\nc BAD Illegal syntax: Invalid FETCH attributes\r\n", out)
        self.assertTrue(out.endswith(b"\r\nd BAD Illegal syntax: Invalid FETCH attributes\r\n"), out[-200:])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(errorEvents(events), [])
