# -*- test-case-name: tests.filters.test_quarantine -*-
"""
Quarantined mail (a filter answered QUARANTINE) is delivered into the
account's Junk folder, created when missing, with both store backends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from mailsrv.delivery.local import JUNK_FOLDER, LocalDelivery
from mailsrv.envelope import Address, Envelope, Session
from mailsrv.filters.base import Filter
from mailsrv.interfaces import IMailStore, FilterAction, FilterResult
from mailsrv.pipeline.pipeline import Pipeline
from mailsrv.pipeline.routing import Router
from mailsrv.storage.maildir import MaildirStore
from mailsrv.storage.memory import MemoryMailStore
from tests.protocols.smtphelpers import policy
from tests.test_pipeline import makeDirectory

MX = policy("smtp")
ALICE = "alice@example.test"


class Quarantine(Filter):
    name = "quarantine"

    def __init__(self, quarantine: bool) -> None:
        self.quarantine = quarantine

    def checkMessage(self, session: Any, envelope: Any, message: Any) -> "defer.Deferred[FilterResult]":
        action = FilterAction.QUARANTINE if self.quarantine else FilterAction.ACCEPT
        return defer.succeed(FilterResult(action, addHeaders=("X-Spam: yes",) if self.quarantine else ()))


class QuarantineMixin:
    def makeStore(self) -> IMailStore:
        raise NotImplementedError

    def setUp(self) -> None:
        d = Path(self.mktemp())  # type: ignore[attr-defined]
        d.mkdir(parents=True)
        self.directory = makeDirectory(d)
        self.store = self.makeStore()

    def deliver(self, quarantine: bool, body: bytes) -> None:
        pipeline = Pipeline(
            Router(self.directory), LocalDelivery(self.store), "mx.example.test", filters=[Quarantine(quarantine)]
        )
        session = Session(MX, "192.0.2.1", heloName="c", esmtp=True)
        envelope = Envelope(mailFrom=Address("s", "remote.test"))
        delivery = pipeline.startDelivery(session, envelope)
        self.successResultOf(delivery.checkSender())  # type: ignore[attr-defined]
        self.successResultOf(delivery.addRecipient(Address("alice", "example.test")))  # type: ignore[attr-defined]
        delivery.write(b"Subject: t\r\n\r\n" + body + b"\r\n")
        self.successResultOf(delivery.commit())  # type: ignore[attr-defined]

    def contents(self, folder: str) -> list[bytes]:
        f = self.store.openFolder(ALICE, folder)
        f.refresh()
        return [f.openMessage(m.uid).read() for m in f.messages()]

    def test_quarantinedGoesToJunk(self) -> None:
        """
        A quarantined message lands in Junk (created on the way), with the
        filter's header; the INBOX stays empty; the next normal message
        goes to the INBOX and a second quarantined one joins the first.
        """
        self.assertNotIn(JUNK_FOLDER, self.store.listFolders(ALICE))
        self.deliver(True, b"spam one")
        self.assertIn(JUNK_FOLDER, self.store.listFolders(ALICE))
        [junk] = self.contents(JUNK_FOLDER)
        self.assertIn(b"spam one", junk)
        self.assertIn(b"X-Spam: yes\r\n", junk)
        self.assertEqual(self.contents("INBOX"), [])
        self.deliver(False, b"ham")
        self.deliver(True, b"spam two")
        self.assertEqual([b"ham" in m for m in self.contents("INBOX")], [True])
        self.assertEqual(len(self.contents(JUNK_FOLDER)), 2)


class MemoryQuarantineTests(QuarantineMixin, SynchronousTestCase):
    def makeStore(self) -> IMailStore:
        return MemoryMailStore()


class MaildirQuarantineTests(QuarantineMixin, SynchronousTestCase):
    def makeStore(self) -> IMailStore:
        from tests.storage.helpers import synchronousRunner

        return MaildirStore(Path(self.mktemp()), runInThread=synchronousRunner, hostname="mx.example.test")
