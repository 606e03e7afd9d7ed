"""
Submission rules: spoof protection of the envelope sender and From:,
Message-ID and Date completion, and the private Received header.
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mailsrv.config.schema import DEFAULT_ENDPOINTS
from mailsrv.envelope import Address, Envelope, Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IModifier, ISenderPolicy
from mailsrv.pipeline.content import SpooledMessage
from mailsrv.pipeline.pipeline import Pipeline
from mailsrv.pipeline.received import receivedHeader
from mailsrv.pipeline.routing import Router
from mailsrv.pipeline.submission import SubmissionModifier, internalSession, ownsAddress
from mailsrv.policy.sender import OwnedSenderPolicy
from mailsrv.protocols.smtp.replies import replyForError
from mailsrv.testing.fakes import RecordingTarget
from tests.test_pipeline import makeDirectory

ENDPOINTS = {e.name: e for e in DEFAULT_ENDPOINTS}


def submitted(account: str = "alice@example.test") -> Session:
    return Session(ENDPOINTS["submission"], "198.51.100.7", heloName="laptop.home", authenticatedAs=account)


def spooled(data: bytes) -> SpooledMessage:
    message = SpooledMessage()
    message.write(data)
    message.finish()
    return message


class OwnershipTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp())
        root.mkdir()
        self.directory = makeDirectory(root)

    def test_owned_addresses(self) -> None:
        """
        An account owns its own address (any case, any +extension), the
        aliases that reach it and catch-all addresses of its domain.
        """
        for address in (
            "alice@example.test",
            "Alice@EXAMPLE.test",
            "alice+lists@example.test",
            "team@example.test",
            "anything@catchall.test",
        ):
            self.assertTrue(ownsAddress(self.directory, "alice@example.test", address), address)

    def test_foreign_addresses(self) -> None:
        """
        Another account, an alias that does not reach the account, a
        foreign domain and garbage are not owned.
        """
        for address in ("bob@example.test", "fwd@example.test", "alice@elsewhere.example", "alice", ""):
            self.assertFalse(ownsAddress(self.directory, "alice@example.test", address), address)


class SenderPolicyTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp())
        root.mkdir()
        self.policy = OwnedSenderPolicy(makeDirectory(root))

    def test_interface(self) -> None:
        """
        The policy provides ISenderPolicy.
        """
        self.assertTrue(verifyObject(ISenderPolicy, self.policy))

    def test_not_owned_refused_553(self) -> None:
        """
        An authenticated user using someone else's address gets 553 5.7.1
        naming the account.
        """
        with self.assertRaises(MailError) as caught:
            self.policy.checkSender(submitted(), Address("bob", "example.test"))
        self.assertEqual(caught.exception.kind, ErrorKind.SENDER)
        reply = replyForError(caught.exception, "<bob@example.test>")
        self.assertEqual(
            (reply.code, reply.status, reply.text),
            (553, "5.7.1", "<bob@example.test>: Sender address rejected: not owned by user alice@example.test"),
        )

    def test_owned_and_null_accepted(self) -> None:
        """
        Own addresses, aliases and the null sender pass.
        """
        self.policy.checkSender(submitted(), Address("team", "example.test"))
        self.policy.checkSender(submitted(), None)

    def test_unauthenticated_and_internal_ignored(self) -> None:
        """
        Mail from the world (no login) and the server's own bounces are
        not this policy's business.
        """
        self.policy.checkSender(Session(ENDPOINTS["smtp"], "192.0.2.1"), Address("bob", "example.test"))
        self.policy.checkSender(internalSession(), Address("bob", "example.test"))


class SubmissionModifierTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp())
        root.mkdir()
        self.directory = makeDirectory(root)
        self.modifier = SubmissionModifier(self.directory, "mail.example.test", clock=lambda: 0.0)

    def edit(self, data: bytes, session: Session):  # type: ignore[no-untyped-def]
        return self.successResultOf(self.modifier.modify(session, Envelope(), spooled(data)))

    def test_interface(self) -> None:
        """
        The modifier provides IModifier.
        """
        self.assertTrue(verifyObject(IModifier, self.modifier))

    def test_adds_missing_message_id_and_date(self) -> None:
        """
        A submitted message without Message-ID and Date gets both.
        """
        edit = self.edit(b"From: alice@example.test\r\nSubject: x\r\n\r\nbody\r\n", submitted())
        self.assertEqual(len(edit.append), 2)
        self.assertRegex(edit.append[0], r"^Message-ID: <[0-9a-f]{32}@mail\.example\.test>$")
        self.assertTrue(edit.append[1].startswith("Date: Thu, 01 Jan 1970"), edit.append[1])

    def test_keeps_existing_fields(self) -> None:
        """
        Existing Message-ID and Date are left alone.
        """
        edit = self.edit(
            b"From: Alice <alice@example.test>\r\nMessage-ID: <a@b>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n",
            submitted(),
        )
        self.assertEqual(edit.append, ())

    def test_spoofed_from_refused(self) -> None:
        """
        A From: address the account does not own (also as the second of
        two mailboxes) refuses the message with 553 5.7.1.
        """
        for header in (
            b"From: Bob <bob@example.test>",
            b"From: alice@example.test, bob@example.test",
            b"From: not an address",
        ):
            failure = self.failureResultOf(
                self.modifier.modify(submitted(), Envelope(), spooled(header + b"\r\n\r\nx\r\n")), MailError
            )
            self.assertEqual(replyForError(failure.value).code, 553, header)

    def test_alias_from_accepted(self) -> None:
        """
        From: an alias reaching the account is fine.
        """
        self.edit(b"From: Team <team@example.test>\r\nMessage-ID: <a@b>\r\nDate: x\r\n\r\n", submitted())

    def test_spoof_protection_off(self) -> None:
        """
        With spoof protection off any From: passes (headers still added).
        """
        modifier = SubmissionModifier(self.directory, "mail.example.test", spoofProtection=False)
        edit = self.successResultOf(
            modifier.modify(submitted(), Envelope(), spooled(b"From: bob@example.test\r\n\r\n"))
        )
        self.assertEqual(len(edit.append), 2)

    def test_mx_mail_untouched(self) -> None:
        """
        Mail from unauthenticated sessions is neither checked nor completed.
        """
        edit = self.edit(b"From: bob@example.test\r\n\r\n", Session(ENDPOINTS["smtp"], "192.0.2.1"))
        self.assertEqual(edit.append, ())


class PrivateReceivedTests(SynchronousTestCase):
    def test_hide_peer(self) -> None:
        """
        With hidePeer the header names neither the client's address nor
        its HELO name, and still carries the protocol and queue id.
        """
        session = submitted()
        session.esmtp = True
        header = receivedHeader(session, Envelope(messageId="Q1"), "mail.example.test", date=0, hidePeer=True)
        self.assertNotIn(b"198.51.100.7", header)
        self.assertNotIn(b"laptop.home", header)
        self.assertTrue(header.startswith(b"Received: from authenticated-user\r\n\tby mail.example.test"), header)
        self.assertIn(b"with ESMTPA id Q1", header)

    def test_pipeline_hides_submitter_only(self) -> None:
        """
        A pipeline with hideSubmitterPeer hides the address of an
        authenticated client but not of an MX client.
        """
        root = Path(self.mktemp())
        root.mkdir()
        local = RecordingTarget()
        pipeline = Pipeline(Router(makeDirectory(root)), local, "mail.example.test", hideSubmitterPeer=True)
        for session in (submitted(), Session(ENDPOINTS["smtp"], "198.51.100.7")):
            delivery = pipeline.startDelivery(session, Envelope())
            self.successResultOf(delivery.checkSender())
            self.successResultOf(delivery.addRecipient(Address("bob", "example.test")))
            delivery.write(b"Subject: x\r\n\r\nhi\r\n")
            self.successResultOf(delivery.commit())
        hidden, shown = (m.data for m in local.messages)
        self.assertNotIn(b"198.51.100.7", hidden)
        self.assertIn(b"[198.51.100.7]", shown)
