"""
Sieve at final delivery (L{mailsrv.delivery.local} with scripts, and
L{mailsrv.delivery.sieve}), through the pipeline, in memory: placements,
discard, redirects (local, remote, loops, failures), vacation, quarantine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailsrv.delivery.local import LocalDelivery
from mailsrv.envelope import Address, Envelope, Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IDelivery, IDeliveryTarget, ISieveScripts
from mailsrv.pipeline.pipeline import Pipeline
from mailsrv.pipeline.routing import Router
from mailsrv.sieve import Script, parseScript
from mailsrv.storage.memory import MemoryMailStore
from tests.protocols.smtphelpers import policy
from tests.test_pipeline import makeDirectory

MX = policy("smtp")
ALICE = "alice@example.test"
BOB = "bob@example.test"


@implementer(ISieveScripts)
class Scripts:
    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}

    def set(self, account: str, source: str) -> None:
        self.scripts[account] = parseScript(source)

    def hasActiveScript(self, account: str) -> bool:
        return account in self.scripts

    def activeScript(self, account: str) -> "defer.Deferred[Optional[Script]]":
        return defer.succeed(self.scripts.get(account))


class Vacations:
    """
    The vacation memory, in memory.
    """

    def __init__(self) -> None:
        self.answered: dict[tuple[str, str], float] = {}

    def claim(self, account: str, key: str, until: float, now: float) -> bool:
        if self.answered.get((account, key), 0.0) > now:
            return False
        self.answered[(account, key)] = until
        return True


@implementer(IDeliveryTarget)
class Remote:
    """
    An outbound target that records what it is given, or refuses.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[Optional[str], list[str], bytes]] = []
        self.refusal: Optional[MailError] = None

    def startDelivery(self, session: Session, envelope: Envelope) -> IDelivery:
        return _RemoteDelivery(self, envelope)


@implementer(IDelivery)
class _RemoteDelivery:
    def __init__(self, remote: Remote, envelope: Envelope) -> None:
        self.remote = remote
        self.envelope = envelope
        self.recipients: list[str] = []
        self.chunks: list[bytes] = []

    def checkSender(self) -> "defer.Deferred[None]":
        return defer.succeed(None)

    def addRecipient(self, recipient: Address) -> "defer.Deferred[None]":
        if self.remote.refusal is not None:
            return defer.fail(self.remote.refusal)
        self.recipients.append(str(recipient))
        return defer.succeed(None)

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def commit(self) -> "defer.Deferred[None]":
        sender = str(self.envelope.mailFrom) if self.envelope.mailFrom is not None else None
        self.remote.sent.append((sender, self.recipients, b"".join(self.chunks)))
        return defer.succeed(None)

    def abort(self) -> None:
        pass


class SieveDeliveryTests(SynchronousTestCase):
    def setUp(self) -> None:
        d = Path(self.mktemp())
        d.mkdir(parents=True)
        self.store = MemoryMailStore()
        self.scripts = Scripts()
        self.vacations = Vacations()
        self.remote = Remote()
        self.now = 1_800_000_000.0
        self.local = LocalDelivery(
            self.store,
            self.scripts,
            vacations=self.vacations,
            runBlocking=defer.maybeDeferred,
            hostname="mx.example.test",
            clock=lambda: self.now,
        )
        self.pipeline = Pipeline(Router(makeDirectory(d)), self.local, "mx.example.test", remote=self.remote)
        self.local.attachOutbound(self.pipeline)

    def deliver(
        self,
        recipients: list[str],
        data: bytes,
        sender: Optional[str] = "someone@remote.test",
        quarantined: bool = False,
    ) -> "defer.Deferred[None]":
        session = Session(MX, "192.0.2.1", heloName="client.test", esmtp=True)
        envelope = Envelope(mailFrom=Address.fromString(sender) if sender else None)
        envelope.quarantined = quarantined
        delivery = self.pipeline.startDelivery(session, envelope)
        self.successResultOf(delivery.checkSender())
        for rcpt in recipients:
            address = Address.fromString(rcpt)
            self.successResultOf(delivery.addRecipient(address))
            envelope.recipients.append(address)
        delivery.write(data)
        return delivery.commit()

    def messages(self, account: str, folder: str = "INBOX") -> list[tuple[frozenset[str], bytes]]:
        try:
            view = self.store.openFolder(account, folder)
        except MailError:
            return []
        view.refresh()
        return [(m.flags, view.openMessage(m.uid).read()) for m in view.messages()]

    def test_interfaces(self) -> None:
        verifyObject(ISieveScripts, self.scripts)
        verifyObject(IDeliveryTarget, self.local)

    def test_fileinto_with_flags_per_account(self) -> None:
        """
        Each account's script decides for its own copy: alice's files it
        into a new folder with flags, bob (no script) gets it in his INBOX.
        """
        self.scripts.set(
            ALICE,
            'require ["fileinto", "mailbox", "imap4flags"];\n'
            'if header :contains "subject" "report" { fileinto :create :flags ["\\\\Seen", "$Work"] "Reports.Daily"; }\n',
        )
        self.successResultOf(self.deliver([ALICE, BOB], b"Subject: daily report\r\n\r\nnumbers\r\n"))
        self.assertEqual(self.messages(ALICE), [])
        [(flags, data)] = self.messages(ALICE, "Reports/Daily")
        self.assertEqual(flags, frozenset({"\\Seen", "$Work"}))
        self.assertTrue(data.endswith(b"Subject: daily report\r\n\r\nnumbers\r\n"))
        self.assertTrue(data.startswith(b"Return-Path: <someone@remote.test>\r\n"))
        [(flags, _)] = self.messages(BOB)
        self.assertEqual(flags, frozenset())

    def test_invalid_flag_left_out(self) -> None:
        self.scripts.set(ALICE, 'require "imap4flags";\naddflag ["\\\\Bogus", "\\\\Flagged", "bad(kw"];\n')
        self.successResultOf(self.deliver([ALICE], b"Subject: x\r\n\r\ny\r\n"))
        [(flags, _)] = self.messages(ALICE)
        self.assertEqual(flags, frozenset({"\\Flagged"}))

    def test_discard(self) -> None:
        """
        A discard for every account stores nothing and still succeeds.
        """
        self.scripts.set(ALICE, "discard;")
        self.successResultOf(self.deliver([ALICE], b"Subject: spam\r\n\r\nbuy\r\n"))
        self.assertEqual(self.messages(ALICE), [])

    def test_subaddress_detail(self) -> None:
        self.scripts.set(
            ALICE,
            'require ["fileinto", "mailbox", "envelope", "subaddress"];\n'
            'if envelope :detail "to" "shop" { fileinto :create "Shopping"; }\n',
        )
        self.successResultOf(self.deliver(["alice+shop@example.test"], b"Subject: order\r\n\r\n1\r\n"))
        self.assertEqual(len(self.messages(ALICE, "Shopping")), 1)
        self.successResultOf(self.deliver([ALICE], b"Subject: plain\r\n\r\n1\r\n"))
        self.assertEqual(len(self.messages(ALICE)), 1)

    def test_missing_folder_without_create_keeps(self) -> None:
        self.scripts.set(ALICE, 'require "fileinto";\nfileinto "Nowhere";\n')
        self.successResultOf(self.deliver([ALICE], b"Subject: x\r\n\r\ny\r\n"))
        self.assertEqual(len(self.messages(ALICE)), 1)
        self.assertNotIn("Nowhere", self.store.listFolders(ALICE))

    def test_runtime_failure_keeps(self) -> None:
        """
        A script that fails while running (here: too many actions) keeps
        the message in the INBOX, flags and all other actions dropped.
        """
        many = "".join(f'fileinto :copy :create "F{i}";\n' for i in range(100))
        self.scripts.set(ALICE, 'require ["fileinto", "copy", "mailbox"];\n' + many)
        self.successResultOf(self.deliver([ALICE], b"Subject: x\r\n\r\ny\r\n"))
        self.assertEqual(len(self.messages(ALICE)), 1)
        self.assertEqual(self.store.listFolders(ALICE), ["INBOX"])

    def test_quarantined_keep_goes_to_junk(self) -> None:
        """
        For quarantined mail, keep means Junk; a rule may still file it.
        """
        self.scripts.set(
            ALICE,
            'require ["fileinto", "mailbox"];\n'
            'if header :contains "subject" "invoice" { fileinto :create "Invoices"; }\n',
        )
        self.successResultOf(self.deliver([ALICE], b"Subject: hello\r\n\r\ny\r\n", quarantined=True))
        self.successResultOf(self.deliver([ALICE], b"Subject: invoice 7\r\n\r\ny\r\n", quarantined=True))
        self.assertEqual(len(self.messages(ALICE, "Junk")), 1)
        self.assertEqual(len(self.messages(ALICE, "Invoices")), 1)
        self.assertEqual(self.messages(ALICE), [])

    def test_redirect_local_copy(self) -> None:
        self.scripts.set(ALICE, 'require "copy";\nredirect :copy "bob@example.test";\n')
        self.successResultOf(self.deliver([ALICE], b"Subject: fwd\r\n\r\ny\r\n"))
        self.assertEqual(len(self.messages(ALICE)), 1)
        [(_, data)] = self.messages(BOB)
        self.assertIn(b"X-Sieve-Redirected-From: alice@example.test\r\n", data)
        self.assertTrue(data.endswith(b"Subject: fwd\r\n\r\ny\r\n"))
        self.assertNotIn(b"Return-Path: <someone@remote.test>\r\nReturn-Path", data)

    def test_redirect_remote_keeps_envelope_sender(self) -> None:
        self.scripts.set(ALICE, 'redirect "friend@elsewhere.example";\n')
        self.successResultOf(self.deliver([ALICE], b"Subject: fwd\r\n\r\ny\r\n", sender="orig@remote.test"))
        self.assertEqual(self.messages(ALICE), [])
        [(sender, recipients, data)] = self.remote.sent
        self.assertEqual((sender, recipients), ("orig@remote.test", ["friend@elsewhere.example"]))
        self.assertIn(b"X-Sieve-Redirected-From: alice@example.test\r\n", data)

    def test_redirect_keeps_message_parameters(self) -> None:
        """
        An 8-bit or SMTPUTF8 message stays declared as such on its way on.
        """
        self.scripts.set(ALICE, 'redirect "friend@elsewhere.example";\n')
        seen: list[Envelope] = []
        start = self.remote.startDelivery

        def recording(session: Session, envelope: Envelope) -> IDelivery:
            seen.append(envelope)
            return start(session, envelope)

        self.remote.startDelivery = recording  # type: ignore[method-assign]
        session = Session(MX, "192.0.2.1", heloName="client.test", esmtp=True)
        envelope = Envelope(mailFrom=Address.fromString("s@remote.test"), mailParams={"BODY": "8BITMIME", "SIZE": "30"})
        delivery = self.pipeline.startDelivery(session, envelope)
        self.successResultOf(delivery.checkSender())
        self.successResultOf(delivery.addRecipient(Address.fromString(ALICE)))
        delivery.write("Subject: caf\u00e9\r\n\r\nbody\r\n".encode())
        self.successResultOf(delivery.commit())
        [forwarded] = seen
        self.assertEqual(forwarded.mailParams, {"BODY": "8BITMIME"})

    def test_redirect_loop_stops(self) -> None:
        """
        alice redirects to bob and bob back to alice: the copy that comes
        back to alice carries her name and is kept, not sent round again.
        """
        self.scripts.set(ALICE, 'redirect "bob@example.test";\n')
        self.scripts.set(BOB, 'redirect "alice@example.test";\n')
        self.successResultOf(self.deliver([ALICE], b"Subject: loop\r\n\r\ny\r\n"))
        [(_, data)] = self.messages(ALICE)
        self.assertEqual(data.count(b"X-Sieve-Redirected-From:"), 2)
        self.assertEqual(self.messages(BOB), [])

    def test_redirect_temporary_failure_fails_delivery(self) -> None:
        """
        A temporary refusal of the redirected copy fails the whole delivery
        (the sender retries), and nothing is stored.
        """
        self.scripts.set(ALICE, 'require ["copy"];\nredirect :copy "friend@elsewhere.example";\n')
        self.remote.refusal = MailError(ErrorKind.TEMP, "queue full", temporary=True)
        error = self.failureResultOf(self.deliver([ALICE], b"Subject: x\r\n\r\ny\r\n"), MailError).value
        self.assertTrue(error.temporary)
        self.assertEqual(self.messages(ALICE), [])

    def test_redirect_permanent_failure_keeps(self) -> None:
        self.scripts.set(ALICE, 'redirect "friend@elsewhere.example";\n')
        self.remote.refusal = MailError(ErrorKind.POLICY, "relaying denied")
        self.successResultOf(self.deliver([ALICE], b"Subject: x\r\n\r\ny\r\n"))
        self.assertEqual(len(self.messages(ALICE)), 1)

    def test_vacation_once_per_period(self) -> None:
        self.scripts.set(ALICE, 'require "vacation";\nvacation :days 2 :subject "Away" "Back on Monday.";\n')
        message = b"From: Someone <someone@remote.test>\r\nTo: alice@example.test\r\nSubject: hi\r\nMessage-ID: <m1@remote.test>\r\n\r\nhello\r\n"
        self.successResultOf(self.deliver([ALICE], message))
        [(sender, recipients, data)] = self.remote.sent
        self.assertEqual((sender, recipients), (None, ["someone@remote.test"]))
        self.assertIn(b"Auto-Submitted: auto-replied", data)
        self.assertIn(b"Subject: Away", data)
        self.assertIn(b"In-Reply-To: <m1@remote.test>", data)
        self.assertEqual(len(self.messages(ALICE)), 1)
        self.now += 86400
        self.successResultOf(self.deliver([ALICE], message))
        self.assertEqual(len(self.remote.sent), 1)
        self.now += 86400 + 1
        self.successResultOf(self.deliver([ALICE], message))
        self.assertEqual(len(self.remote.sent), 2)

    def test_vacation_not_to_null_sender(self) -> None:
        self.scripts.set(ALICE, 'require "vacation";\nvacation "Away.";\n')
        message = b"From: MAILER-DAEMON@remote.test\r\nTo: alice@example.test\r\nSubject: bounce\r\n\r\nx\r\n"
        self.successResultOf(self.deliver([ALICE], message, sender=None))
        self.assertEqual(self.remote.sent, [])
        self.assertEqual(len(self.messages(ALICE)), 1)


def test_unscripted_delivery_unchanged(tmp_path: Any) -> None:
    """
    Without scripts the store sees one message written once, as before.
    """
    store = MemoryMailStore()
    local = LocalDelivery(store, Scripts())
    delivery = local.startDelivery(Session(MX, "192.0.2.1"), Envelope())
    delivery.addRecipient(Address.fromString(ALICE))
    delivery.write(b"Subject: x\r\n\r\ny\r\n")
    results: list[Any] = []
    delivery.commit().addBoth(results.append)
    assert results == [None]
    view = store.openFolder(ALICE)
    view.refresh()
    assert len(view.messages()) == 1
