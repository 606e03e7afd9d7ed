# -*- test-case-name: tests.filters.test_rspamd -*-
"""
Tests for L{mailsrv.filters.rspamd}: against an HTTP server on loopback
replaying answers recorded from a real Rspamd (C{data/rspamd_checkv2.json}),
and against a real Rspamd (Debian C{rspamd}) started offline on loopback.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

from twisted.internet import defer, reactor
from twisted.web import resource, server
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from mailsrv.envelope import Address, Envelope, Session, TLSInfo
from mailsrv.filters.rspamd import (
    RspamdClient,
    RspamdFilter,
    RspamdModifier,
    RspamdResult,
    encodedSubject,
)
from mailsrv.interfaces import FilterAction, FilterResult, IFilter, IModifier
from mailsrv.pipeline.content import SpooledMessage
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode
from mailsrv.testing.rspamd import RspamdProcess, rspamdBinary

MX = EndpointPolicy("smtp", Protocol.SMTP, ("127.0.0.1:25",), TLSMode.NONE, auth=False)
SUBMISSION = EndpointPolicy("submission", Protocol.SUBMISSION, ("127.0.0.1:587",), TLSMode.NONE, auth=True)

RECORDED = json.loads((Path(__file__).parent / "data" / "rspamd_checkv2.json").read_text())["responses"]


def message(word: str, extra: bytes = b"") -> SpooledMessage:
    m = SpooledMessage()
    m.write(
        b"From: a@remote.test\r\nTo: alice@example.test\r\n"
        + extra
        + f"Subject: {word} caf\u00e9\r\nMessage-ID: <x@remote.test>\r\n\r\nhi\r\n".encode()
    )
    m.finish()
    return m


def transaction() -> tuple[Session, Envelope]:
    session = Session(endpoint=MX, peerHost="192.0.2.1", heloName="client.remote.test")
    session.tls = TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384")
    envelope = Envelope(
        mailFrom=Address.fromString("a@remote.test"),
        recipients=[Address.fromString("alice@example.test"), Address.fromString("bob@example.test")],
    )
    return session, envelope


class Replay(resource.Resource):
    """
    Answers C{POST /checkv2} with the recorded answer for the Subject word
    of the request, and records each request.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[bytes, dict[bytes, list[bytes]], bytes]] = []
        self.status = 200
        self.hang = False

    def render_POST(self, request: Any) -> Any:
        body = request.content.read()
        self.requests.append((request.path, dict(request.requestHeaders.getAllRawHeaders()), body))
        if self.hang:
            return server.NOT_DONE_YET
        request.setResponseCode(self.status)
        for word, answer in RECORDED.items():
            if word.encode() in body:
                return json.dumps(answer).encode()
        return json.dumps(RECORDED["hello"]).encode()


class ResultTests(SynchronousTestCase):
    def test_headers(self) -> None:
        """
        A spam verdict gives X-Spam: Yes, the action, the score and the
        symbols, heaviest first.
        """
        result = RspamdResult.fromJSON(RECORDED["MAILSRV-TEST-SUBJECT"])
        self.assertEqual(
            result.headers(),
            (
                "X-Spam: Yes",
                "X-Spam-Action: rewrite subject",
                "X-Spam-Score: 9.00 / 15.00",
                "X-Spam-Symbols: MAILSRV_TEST_SUBJECT(9.00),\n\tMAILSRV_TEST_ENVELOPE(0.00)",
            ),
        )
        self.assertNotIn("X-Spam: Yes", RspamdResult.fromJSON(RECORDED["hello"]).headers())

    def test_garbage(self) -> None:
        """
        An answer without an action is an error, not "no action".
        """
        from mailsrv.filters.rspamd import RspamdError

        self.assertRaises(RspamdError, RspamdResult.fromJSON, {"score": 1})
        self.assertRaises(RspamdError, RspamdResult.fromJSON, [])

    def test_subjectInjection(self) -> None:
        """
        A Subject from Rspamd cannot add header lines; non-ASCII is RFC 2047
        encoded.
        """
        self.assertEqual(encodedSubject("spam\r\nBcc: x@y.test"), "Subject: spam Bcc: x@y.test")
        self.assertEqual(encodedSubject("caf\u00e9"), "Subject: =?utf-8?b?Y2Fmw6k=?=")


class ReplayTests(TestCase):
    """
    The client and filter against recorded answers.
    """

    def setUp(self) -> None:
        self.replay = Replay()
        site = server.Site(self.replay)
        site.noisy = False
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.client = RspamdClient(
            Agent(reactor, pool=pool), f"http://127.0.0.1:{self.port.getHost().port}", reactor, mtaName="mx.test"
        )
        self.filter = RspamdFilter(self.client)

    def check(self, word: str, session: Optional[Session] = None, **kw: Any) -> "defer.Deferred[FilterResult]":
        s, envelope = transaction()
        self.envelope = envelope
        self.message = message(word, **kw)
        return self.filter.checkMessage(session or s, envelope, self.message)

    def test_interfaces(self) -> None:
        """
        The filter provides L{IFilter}, the modifier L{IModifier}.
        """
        self.assertTrue(verifyObject(IFilter, self.filter))
        self.assertTrue(verifyObject(IModifier, RspamdModifier(self.filter)))

    async def _request(self) -> None:
        await self.check("hello")
        [(path, headers, body)] = self.replay.requests
        self.assertEqual(path, b"/checkv2")
        self.assertEqual(headers[b"Ip"], [b"192.0.2.1"])
        self.assertEqual(headers[b"Helo"], [b"client.remote.test"])
        self.assertEqual(headers[b"From"], [b"a@remote.test"])
        self.assertEqual(headers[b"Rcpt"], [b"alice@example.test", b"bob@example.test"])
        self.assertEqual(headers[b"Queue-Id"], [self.envelope.messageId.encode()])
        self.assertEqual(headers[b"Tls-Version"], [b"TLSv1.3"])
        self.assertEqual(headers[b"Mta-Name"], [b"mx.test"])
        self.assertNotIn(b"User", headers)
        with self.message.open() as f:
            self.assertEqual(body, f.read())

    def test_request(self) -> "defer.Deferred[None]":
        """
        The envelope and client data travel as Rspamd's request headers
        (one Rcpt per recipient), the message as the body.
        """
        return defer.Deferred.fromCoroutine(self._request())

    async def _actions(self) -> None:
        result = await self.check("MAILSRV-TEST-REJECT")
        self.assertEqual((result.action, result.reply), (FilterAction.REJECT, "Spam message rejected"))
        result = await self.check("MAILSRV-TEST-SOFT")
        self.assertEqual((result.action, result.reply), (FilterAction.TEMPFAIL, "Try again later (test)"))
        result = await self.check("MAILSRV-TEST-JUNK")
        self.assertEqual(result.action, FilterAction.QUARANTINE)
        self.assertIn("X-Spam: Yes", result.addHeaders)
        result = await self.check("MAILSRV-TEST-SUBJECT")
        self.assertEqual(result.action, FilterAction.ACCEPT)
        self.assertIn("X-Spam-Action: rewrite subject", result.addHeaders)
        result = await self.check("hello")
        self.assertEqual(result.action, FilterAction.ACCEPT)
        self.assertIn("X-Spam-Action: no action", result.addHeaders)

    def test_actions(self) -> "defer.Deferred[None]":
        """
        reject refuses, soft reject defers, add header quarantines into
        Junk, rewrite subject and no action accept; all with X-Spam headers.
        """
        return defer.Deferred.fromCoroutine(self._actions())

    async def _rewriteSubject(self) -> None:
        session, envelope = transaction()
        m = message("MAILSRV-TEST-SUBJECT", extra=b"X-Spam: No\r\nX-Spam-Score: -100\r\n")
        await self.filter.checkMessage(session, envelope, m)
        m.apply(await RspamdModifier(self.filter).modify(session, envelope, m))
        headers = m.headerBlock.decode()
        self.assertIn(
            "Subject: =?UTF-8?Q?=2A=2A=2A_SPAM_=2A=2A=2A_MAILSRV=2D?= =?UTF-8?Q?TEST=2DSUBJECT_caf=C3=A9?=\r\n",
            headers,
        )
        self.assertEqual(headers.count("Subject:"), 1)
        self.assertNotIn("X-Spam", headers)
        self.assertEqual(self.filter.results, {})

    def test_rewriteSubject(self) -> "defer.Deferred[None]":
        """
        The modifier puts Rspamd's Subject in place of the original and
        removes X-Spam headers that came with the message.
        """
        return defer.Deferred.fromCoroutine(self._rewriteSubject())

    async def _notChecked(self) -> None:
        submitted = Session(endpoint=SUBMISSION, peerHost="192.0.2.1", authenticatedAs="alice@example.test")
        result = await self.check("MAILSRV-TEST-REJECT", session=submitted)
        self.assertEqual(result.action, FilterAction.ACCEPT)
        self.filter.maxSize = 10
        result = await self.check("MAILSRV-TEST-REJECT")
        self.assertEqual(result.action, FilterAction.ACCEPT)
        self.assertEqual(self.replay.requests, [])

    def test_notChecked(self) -> "defer.Deferred[None]":
        """
        Submitted mail and messages over max_size are not sent to Rspamd.
        """
        return defer.Deferred.fromCoroutine(self._notChecked())

    async def _failures(self) -> None:
        self.replay.status = 500
        result = await self.check("hello")
        self.assertEqual(result.action, FilterAction.TEMPFAIL)
        self.filter.failMode = "accept"
        result = await self.check("MAILSRV-TEST-REJECT")
        self.assertEqual(result.action, FilterAction.ACCEPT)

    def test_failures(self) -> "defer.Deferred[None]":
        """
        An HTTP error defers the message (fail mode C{tempfail}) or lets it
        through unchecked (C{accept}).
        """
        return defer.Deferred.fromCoroutine(self._failures())

    async def _timeout(self) -> None:
        self.replay.hang = True
        self.client.timeout = 0.5
        result = await self.check("hello")
        self.assertEqual(result.action, FilterAction.TEMPFAIL)

    def test_timeout(self) -> "defer.Deferred[None]":
        """
        No answer within the timeout counts as a failure (tempfail).
        """
        return defer.Deferred.fromCoroutine(self._timeout())


class RealRspamdTests(TestCase):
    """
    Against a real Rspamd started offline on loopback.
    """

    rspamd: Any = None

    @classmethod
    def setUpClass(cls) -> None:
        if rspamdBinary() is None:
            raise SkipTest("rspamd is not installed (Debian package rspamd)")
        cls.rspamd = RspamdProcess(Path(tempfile.mkdtemp(prefix="mailsrv-rspamd-")))
        cls.rspamd.start()

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.rspamd is not None:
            cls.rspamd.stop()
            shutil.rmtree(cls.rspamd.workdir, ignore_errors=True)

    def setUp(self) -> None:
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.client = RspamdClient(Agent(reactor, pool=pool), self.rspamd.url, reactor, timeout=10)
        self.filter = RspamdFilter(self.client)

    async def _envelope(self) -> None:
        session, envelope = transaction()
        session.authenticatedAs = "carol@example.test"
        result = await self.client.check(session, envelope, message("hello"))
        self.assertEqual(result.action, "no action")
        self.assertEqual(
            result.raw["symbols"]["MAILSRV_TEST_ENVELOPE"]["options"],
            [
                "ip=192.0.2.1",
                "helo=client.remote.test",
                "from=a@remote.test",
                "rcpt=alice@example.test",
                "rcpt=bob@example.test",
                "user=carol@example.test",
                f"queue={envelope.messageId}",
            ],
        )

    def test_envelope(self) -> "defer.Deferred[None]":
        """
        Rspamd understands the envelope and client headers we send: its
        test rule echoes the client address, HELO, MAIL FROM, every
        recipient, the authenticated user and the queue id.
        """
        return defer.Deferred.fromCoroutine(self._envelope())

    async def _actions(self) -> None:
        session, envelope = transaction()
        expected = {
            "hello": FilterAction.ACCEPT,
            "MAILSRV-TEST-REJECT": FilterAction.REJECT,
            "MAILSRV-TEST-SOFT": FilterAction.TEMPFAIL,
            "MAILSRV-TEST-JUNK": FilterAction.QUARANTINE,
            "MAILSRV-TEST-SUBJECT": FilterAction.ACCEPT,
        }
        for word, action in expected.items():
            result = await self.filter.checkMessage(session, envelope, message(word))
            self.assertEqual(result.action, action, word)

    def test_actions(self) -> "defer.Deferred[None]":
        """
        Each of Rspamd's actions, produced by the real daemon, maps to the
        expected filter result.
        """
        return defer.Deferred.fromCoroutine(self._actions())
