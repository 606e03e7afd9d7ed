"""
The pipeline: routing, relay refusal, trace headers and local delivery.
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mailsrv.auth.directory import FileDirectory
from mailsrv.config.schema import DEFAULT_ENDPOINTS
from mailsrv.delivery.local import LocalDelivery
from mailsrv.envelope import Address, Envelope, Session, TLSInfo
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IDelivery, IDeliveryTarget
from mailsrv.pipeline.pipeline import Pipeline
from mailsrv.pipeline.received import receivedHeader
from mailsrv.pipeline.routing import Route, Router, RouteKind
from mailsrv.storage.memory import MemoryMailStore

MX = {e.name: e for e in DEFAULT_ENDPOINTS}["smtp"]


def makeDirectory(root: Path) -> FileDirectory:
    (root / "postfix-accounts.cf").write_text(
        "alice@example.test|{PLAIN}x\nbob@example.test|{PLAIN}x\n"
    )
    (root / "postfix-virtual.cf").write_text(
        "team@example.test alice@example.test,bob@example.test\n"
        "fwd@example.test someone@elsewhere.example\n"
        "@catchall.test alice@example.test\n"
    )
    return FileDirectory(root, ["example.test"])


class RoutingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.router = Router(makeDirectory(self._dir()))

    def _dir(self) -> Path:
        d = Path(self.mktemp())
        d.mkdir(parents=True)
        return d

    def test_local(self) -> None:
        """
        A local account routes to itself; domain case does not matter.
        """
        route = self.router.route(Session(MX, "192.0.2.1"), Address.fromString("Alice@EXAMPLE.test."))
        self.assertEqual(route, Route(RouteKind.LOCAL, accounts=("alice@example.test",)))

    def test_alias_and_catchall(self) -> None:
        """
        Aliases expand to accounts and external addresses; catch-all domains
        are local.
        """
        route = self.router.route(Session(MX, "192.0.2.1"), Address("team", "example.test"))
        self.assertEqual(sorted(route.accounts), ["alice@example.test", "bob@example.test"])
        route = self.router.route(Session(MX, "192.0.2.1"), Address("fwd", "example.test"))
        self.assertEqual(route.remote, (Address("someone", "elsewhere.example"),))
        route = self.router.route(Session(MX, "192.0.2.1"), Address("any", "catchall.test"))
        self.assertEqual(route.accounts, ("alice@example.test",))

    def test_unknown_user(self) -> None:
        """
        Unknown local recipients are NOT_FOUND (550 5.1.1).
        """
        with self.assertRaises(MailError) as cm:
            self.router.route(Session(MX, "192.0.2.1"), Address("nobody", "example.test"))
        self.assertEqual(cm.exception.kind, ErrorKind.NOT_FOUND)

    def test_relay_tricks(self) -> None:
        """
        Foreign domains and literals are relaying, refused without AUTH;
        tricks inside the local part stay local (and unknown).
        """
        session = Session(MX, "192.0.2.1")
        for address in [
            Address("victim", "elsewhere.example"),
            Address("alice", "[127.0.0.1]"),
        ]:
            with self.assertRaises(MailError) as cm:
                self.router.route(session, address)
            self.assertEqual(cm.exception.kind, ErrorKind.POLICY, address)
        for local in ["victim%elsewhere.example", "elsewhere.example!victim", "victim@elsewhere.example"]:
            with self.assertRaises(MailError) as cm:
                self.router.route(session, Address(local, "example.test"))
            self.assertEqual(cm.exception.kind, ErrorKind.NOT_FOUND, local)

    def test_authenticated_relay(self) -> None:
        """
        An authenticated session routes foreign recipients to REMOTE.
        """
        session = Session(MX, "192.0.2.1", authenticatedAs="alice@example.test")
        route = self.router.route(session, Address("x", "elsewhere.example"))
        self.assertEqual(route.kind, RouteKind.REMOTE)


class PipelineDeliveryTests(SynchronousTestCase):
    def setUp(self) -> None:
        d = Path(self.mktemp())
        d.mkdir(parents=True)
        self.store = MemoryMailStore()
        self.pipeline = Pipeline(Router(makeDirectory(d)), LocalDelivery(self.store), "mx.example.test")

    def test_interfaces(self) -> None:
        """
        Pipeline and local delivery are delivery targets.
        """
        verifyObject(IDeliveryTarget, self.pipeline)
        verifyObject(IDeliveryTarget, LocalDelivery(self.store))
        delivery = self.pipeline.startDelivery(Session(MX, "192.0.2.1"), Envelope())
        verifyObject(IDelivery, delivery)

    def test_delivers_once_per_account(self) -> None:
        """
        An alias and a direct recipient for the same account give one copy,
        with Return-Path and Received prepended.
        """
        session = Session(MX, "192.0.2.1", heloName="client.test", esmtp=True)
        envelope = Envelope(mailFrom=Address("s", "remote.test"))
        delivery = self.pipeline.startDelivery(session, envelope)
        for rcpt in (Address("team", "example.test"), Address("alice", "example.test")):
            self.successResultOf(delivery.addRecipient(rcpt))
            envelope.recipients.append(rcpt)
        delivery.write(b"Subject: x\r\n\r\nbody\r\n")
        self.successResultOf(delivery.commit())
        for account in ("alice@example.test", "bob@example.test"):
            folder = self.store.openFolder(account)
            folder.refresh()
            [info] = folder.messages()
            data = folder.openMessage(info.uid).read()
            self.assertTrue(data.startswith(b"Return-Path: <s@remote.test>\r\nReceived: from client.test"))
            self.assertTrue(data.endswith(b"Subject: x\r\n\r\nbody\r\n"))

    def test_delivered_to_keeps_tag(self) -> None:
        """
        A message for user+tag@domain lands in user's INBOX with
        Delivered-To naming the tagged address.
        """
        session = Session(MX, "192.0.2.1", heloName="client.test", esmtp=True)
        envelope = Envelope(mailFrom=None, recipients=[Address("Alice+News", "example.test")])
        delivery = self.pipeline.startDelivery(session, envelope)
        self.successResultOf(delivery.checkSender())
        self.successResultOf(delivery.addRecipient(Address("Alice+News", "example.test")))
        delivery.write(b"x\r\n")
        self.successResultOf(delivery.commit())
        folder = self.store.openFolder("alice@example.test")
        folder.refresh()
        [info] = folder.messages()
        data = folder.openMessage(info.uid).read()
        self.assertTrue(data.startswith(b"Return-Path: <>\r\nDelivered-To: Alice+News@example.test\r\nReceived: "), data)

    def test_relay_refused_and_remote_unavailable(self) -> None:
        """
        Relaying is refused without AUTH; with AUTH but no outbound target
        the recipient is refused too (nothing accepted that cannot go out).
        """
        delivery = self.pipeline.startDelivery(Session(MX, "192.0.2.1"), Envelope())
        self.assertEqual(self.failureResultOf(delivery.addRecipient(Address("v", "x.example")), MailError).value.kind, ErrorKind.POLICY)
        authed = self.pipeline.startDelivery(Session(MX, "192.0.2.1", authenticatedAs="alice@example.test"), Envelope())
        self.failureResultOf(authed.addRecipient(Address("v", "x.example")), MailError)

    def test_abort_stores_nothing(self) -> None:
        """
        An aborted delivery leaves the mailbox empty.
        """
        delivery = self.pipeline.startDelivery(Session(MX, "192.0.2.1"), Envelope())
        self.successResultOf(delivery.addRecipient(Address("alice", "example.test")))
        delivery.write(b"x\r\n")
        delivery.abort()
        folder = self.store.openFolder("alice@example.test")
        folder.refresh()
        self.assertEqual(list(folder.messages()), [])


def test_received_header_with_tls_and_auth() -> None:
    """
    The Received header names HELO, IP, TLS parameters, protocol keyword
    (RFC 3848) and id, and is folded with CRLF.
    """
    session = Session(MX, "192.0.2.7", heloName="c.test", esmtp=True, tls=TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
                      authenticatedAs="a@b.test")
    envelope = Envelope(recipients=[Address("a", "example.test")], messageId="ABC")
    header = receivedHeader(session, envelope, "mx.example.test", date=0)
    assert header.startswith(b"Received: from c.test (unknown [192.0.2.7])\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n")
    assert b"\tby mx.example.test (mailsrv) with ESMTPSA id ABC\r\n\tfor <a@example.test>; " in header
    assert header.endswith(b"\r\n") and header.count(b"\n") == header.count(b"\r\n") == 4
