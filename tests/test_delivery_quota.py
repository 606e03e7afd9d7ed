"""
Quota enforcement around local delivery, and its SMTP replies.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailsrv.delivery.local import LocalDelivery
from mailsrv.delivery.quota import QuotaEnforcingTarget
from mailsrv.envelope import Address, Envelope, Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IDelivery, IDeliveryTarget, IQuota
from mailsrv.protocols.smtp.replies import replyForError
from mailsrv.storage.memory import MemoryMailStore
from tests.protocols.smtphelpers import policy


@implementer(IQuota)
class FixedQuota:
    def __init__(self, limits: dict[str, int], usage: dict[str, int]) -> None:
        self.limits = limits
        self.used = usage

    def limit(self, account: str) -> Optional[int]:
        return self.limits.get(account)

    def usage(self, account: str) -> "defer.Deferred[int]":
        return defer.succeed(self.used.get(account, 0))


class QuotaTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryMailStore()
        self.quota = FixedQuota({"full@example.test": 100, "tight@example.test": 100}, {"full@example.test": 100, "tight@example.test": 90})
        self.target = QuotaEnforcingTarget(LocalDelivery(self.store), self.quota)

    def start(self) -> IDelivery:
        delivery = self.target.startDelivery(Session(policy("smtp"), "192.0.2.1"), Envelope())
        self.successResultOf(delivery.checkSender())
        return delivery

    def test_interfaces(self) -> None:
        """
        The decorator is a delivery target; its deliveries are deliveries.
        """
        verifyObject(IDeliveryTarget, self.target)
        verifyObject(IDelivery, self.start())

    def test_full_mailbox_refused_at_rcpt(self) -> None:
        """
        A full mailbox is refused at RCPT with 452 4.2.2 (temporary).
        """
        error = self.failureResultOf(self.start().addRecipient(Address("full", "example.test")), MailError).value
        self.assertEqual((error.kind, error.temporary), (ErrorKind.NO_QUOTA, True))
        reply = replyForError(error, "<full@example.test>")
        self.assertEqual((reply.code, reply.status), (452, "4.2.2"))

    def test_message_over_quota_refused_at_end(self) -> None:
        """
        A message that would exceed the quota is refused after DATA with
        552 5.2.2 and not stored; one that fits is stored.
        """
        delivery = self.start()
        self.successResultOf(delivery.addRecipient(Address("tight", "example.test")))
        delivery.write(b"x" * 11)
        error = self.failureResultOf(delivery.commit(), MailError).value
        reply = replyForError(error)
        self.assertEqual((reply.code, reply.status), (552, "5.2.2"))
        folder = self.store.openFolder("tight@example.test")
        folder.refresh()
        self.assertEqual(list(folder.messages()), [])
        delivery = self.start()
        self.successResultOf(delivery.addRecipient(Address("tight", "example.test")))
        delivery.write(b"x" * 10)
        self.successResultOf(delivery.commit())
        folder.refresh()
        self.assertEqual(len(folder.messages()), 1)

    def test_unlimited_accounts_pass(self) -> None:
        """
        Accounts without a limit are not measured at all.
        """
        class Exploding(FixedQuota):
            def usage(self, account: str) -> "defer.Deferred[int]":
                raise AssertionError("usage measured for an unlimited account")

        target = QuotaEnforcingTarget(LocalDelivery(self.store), Exploding({}, {}))
        delivery = target.startDelivery(Session(policy("smtp"), "192.0.2.1"), Envelope())
        self.successResultOf(delivery.addRecipient(Address("free", "example.test")))
        delivery.write(b"x" * 10_000)
        self.successResultOf(delivery.commit())
