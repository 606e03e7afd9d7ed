# -*- test-case-name: tests.protocols.test_imap_extensions -*-
"""
Tests for L{mailsrv.protocols.imap.extensions} and LITERAL+: bytes in and
bytes out over a L{StringTransport}, against the in-memory store.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet import defer
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailsrv.interfaces import IQuota
from mailsrv.protocols.imap.account import DEFAULT_FOLDERS

from .test_imap import ALICE, IMAPS, MSG1, MSG2, IMAPTestMixin, deliver


@implementer(IQuota)
class FakeQuota:
    """
    Fixed limits and a usage counter.
    """

    def __init__(self, limits: dict[str, int], used: int = 0) -> None:
        self.limits = limits
        self.used = used

    def limit(self, account: str) -> Optional[int]:
        return self.limits.get(account)

    def usage(self, account: str) -> "defer.Deferred[int]":
        return defer.succeed(self.used)


class ExtensionTestMixin(IMAPTestMixin):
    defaultFolders = DEFAULT_FOLDERS  # type: ignore[assignment]

    def setUp(self) -> None:
        super().setUp()
        deliver(self.store, ALICE, MSG1)
        deliver(self.store, ALICE, MSG2)
        self.login(IMAPS)


class UIDPlusAndMoveTests(ExtensionTestMixin, unittest.SynchronousTestCase):
    def test_appendUid(self) -> None:
        """
        APPEND answers C{[APPENDUID <uidvalidity> <uid>]}.
        """
        validity = self.store.openFolder(ALICE, "Archive").uidValidity()
        self.assertEqual(self.send(b"a APPEND Archive {6}\r\n"), b"+ Ready for 6 octets of data\r\n")
        self.assertEqual(self.send(b"x\r\ny\r\n\r\n"), b"a OK [APPENDUID %d 1] APPEND completed\r\n" % validity)

    def test_copyUid(self) -> None:
        """
        COPY and UID COPY answer C{[COPYUID <validity> <source> <target>]}
        with compact sets.
        """
        self.select()
        validity = self.store.openFolder(ALICE, "Trash").uidValidity()
        self.assertEqual(
            self.send(b"c COPY 1:* Trash\r\n"), b"c OK [COPYUID %d 1:2 1:2] COPY completed\r\n" % validity
        )
        self.assertEqual(
            self.send(b"d UID COPY 2 Trash\r\n"), b"d OK [COPYUID %d 2 3] COPY completed\r\n" % validity
        )

    def test_move(self) -> None:
        """
        MOVE sends C{* OK [COPYUID ...]}, then EXPUNGE for each message moved
        (numbers valid as sent), then the tagged OK; the messages are in the
        target with their flags.
        """
        self.select()
        self.send(b"f STORE 2 +FLAGS (\\Flagged)\r\n")
        validity = self.store.openFolder(ALICE, "Archive").uidValidity()
        self.assertEqual(
            self.send(b"m MOVE 1:2 Archive\r\n"),
            b"* OK [COPYUID %d 1:2 1:2] Moved\r\n* 1 EXPUNGE\r\n* 1 EXPUNGE\r\nm OK MOVE completed\r\n" % validity,
        )
        archive = self.store.openFolder(ALICE, "Archive")
        self.assertEqual([sorted(m.flags) for m in archive.messages()], [[], ["\\Flagged"]])
        self.assertEqual(self.store.openFolder(ALICE).messages(), ())

    def test_uidMoveAndMissing(self) -> None:
        """
        UID MOVE of an absent UID moves nothing and still answers OK; MOVE to
        a missing mailbox is C{[TRYCREATE]}; MOVE in EXAMINE is refused.
        """
        self.select()
        self.assertEqual(self.send(b"m UID MOVE 99 Archive\r\n"), b"m OK MOVE completed\r\n")
        self.assertEqual(self.send(b"n MOVE 1 Nowhere\r\n"), b"n NO [TRYCREATE] Mailbox doesn't exist\r\n")
        self.send(b"e EXAMINE INBOX\r\n")
        self.assertEqual(self.send(b"o MOVE 1 Archive\r\n"), b"o NO [READ-ONLY] Mailbox is read-only\r\n")

    def test_uidExpunge(self) -> None:
        """
        UID EXPUNGE removes only deleted messages in its UID set; plain
        EXPUNGE with an argument and UID EXPUNGE without are BAD.
        """
        self.select()
        self.send(b"s STORE 1:2 +FLAGS.SILENT (\\Deleted)\r\n")
        self.assertEqual(self.send(b"x UID EXPUNGE 2\r\n"), b"* 2 EXPUNGE\r\nx OK EXPUNGE completed\r\n")
        self.assertEqual([m.uid for m in self.store.openFolder(ALICE).messages()], [1])
        self.assertTrue(self.send(b"y UID EXPUNGE\r\n").startswith(b"y BAD"))
        self.assertTrue(self.send(b"z EXPUNGE 1\r\n").startswith(b"z BAD"))

    def test_unselect(self) -> None:
        """
        UNSELECT leaves the selected state without expunging.
        """
        self.select()
        self.send(b"s STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
        self.assertEqual(self.send(b"u UNSELECT\r\n"), b"u OK UNSELECT completed\r\n")
        self.assertEqual(self.server.state, "auth")
        self.assertEqual(len(self.store.openFolder(ALICE).messages()), 2)
        self.assertTrue(self.send(b"v FETCH 1 FLAGS\r\n").startswith(b"v BAD"))

    def test_closeExpungesSilently(self) -> None:
        """
        CLOSE expunges without untagged EXPUNGE responses.
        """
        self.select()
        self.send(b"s STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
        self.assertEqual(self.send(b"c CLOSE\r\n"), b"c OK CLOSE completed\r\n")
        self.assertEqual([m.uid for m in self.store.openFolder(ALICE).messages()], [2])


class SmallExtensionTests(ExtensionTestMixin, unittest.SynchronousTestCase):
    def test_enable(self) -> None:
        """
        ENABLE of something unknown answers an empty ENABLED (RFC 5161).
        """
        self.assertEqual(self.send(b"e ENABLE FOO BAR\r\n"), b"* ENABLED\r\ne OK ENABLE completed\r\n")

    def test_id(self) -> None:
        """
        ID with NIL or a list answers the server's name, and logs the
        client's.
        """
        expected = b'* ID ("name" "mailsrv" "vendor" "mailsrv")\r\n'
        self.assertEqual(self.send(b"i ID NIL\r\n"), expected + b"i OK ID completed\r\n")
        self.assertEqual(
            self.send(b'j ID ("name" "Thunderbird" "version" "115")\r\n'), expected + b"j OK ID completed\r\n"
        )
        self.assertIn("Thunderbird", [e.get("clientName") for e in self.events])
        self.assertTrue(self.send(b'k ID ("odd")\r\n').startswith(b"k BAD"))

    def test_literalPlus(self) -> None:
        """
        A C{{n+}} literal gets no continuation request, for APPEND and for
        string arguments.
        """
        response = self.send(b"a APPEND INBOX {6+}\r\nx\r\ny\r\n\r\n")
        self.assertTrue(response.startswith(b"a OK [APPENDUID"), response)
        self.assertNotIn(b"+ Ready", response)
        response = self.send(b"b CREATE {4+}\r\nWork\r\n")
        self.assertEqual(response, b"b OK CREATE completed\r\n")
        self.assertIn("Work", self.store.listFolders(ALICE))

    def test_literalPlusQueuedBehindFetch(self) -> None:
        """
        A LITERAL+ APPEND pipelined behind a FETCH that is still streaming
        (so its lines are queued) is parsed as one literal, not as
        commands.
        """
        self.select()
        self.transport.clear()
        self.server.dataReceived(b"f FETCH 1 BODY.PEEK[]\r\na APPEND INBOX {12+}\r\nx\r\ny\r\nNOOP\r\n\r\nb NOOP\r\n")
        self.pump()
        response = self.transport.value()
        self.assertIn(b"f OK FETCH completed\r\n", response)
        self.assertIn(b"a OK [APPENDUID", response)
        self.assertIn(b"b OK NOOP completed\r\n", response)
        self.assertNotIn(b"BAD", response)
        folder = self.store.openFolder(ALICE)
        with folder.openMessage(folder.messages()[-1].uid) as f:
            self.assertEqual(f.read(), b"x\r\ny\r\nNOOP\r\n")

    def test_literalPlusTooBig(self) -> None:
        """
        A non-synchronising literal over its limit is refused without being
        read, and the connection closes (its bytes would otherwise run as
        commands).
        """
        response = self.send(b"a APPEND INBOX {999999999+}\r\nSELECT INBOX\r\n")
        self.assertEqual(response, b"a BAD [TOOBIG] Literal too large\r\n* BYE Literal too large\r\n")
        self.assertTrue(self.transport.disconnecting)

    def test_literalPlusStringLimit(self) -> None:
        """
        Outside APPEND the limit is 4096 octets.
        """
        response = self.send(b"b CREATE {5000+}\r\n")
        self.assertTrue(response.startswith(b"b BAD [TOOBIG]"), response)


class SpecialUseTests(ExtensionTestMixin, unittest.SynchronousTestCase):
    def test_defaultFoldersCreatedAndSubscribed(self) -> None:
        """
        Login created Sent, Drafts, Trash, Junk and Archive, subscribed, and
        LIST shows their special-use attributes.
        """
        self.assertEqual(sorted(self.store.listFolders(ALICE)), sorted(["INBOX", *DEFAULT_FOLDERS]))
        self.assertEqual(sorted(self.store.subscriptions(ALICE)), sorted(DEFAULT_FOLDERS))
        response = self.send(b'l LIST "" "*"\r\n')
        self.assertIn(b'* LIST (\\HasNoChildren \\Sent) "." "Sent"\r\n', response)
        self.assertIn(b'* LIST (\\HasNoChildren \\Junk) "." "Junk"\r\n', response)
        self.assertIn(b'* LIST (\\HasNoChildren) "." "INBOX"\r\n', response)

    def test_createSpecialUse(self) -> None:
        """
        CREATE with C{(USE (\\Flagged))} records the attribute (any case);
        an unknown attribute is C{[USEATTR]}.
        """
        self.assertEqual(self.send(b"c CREATE Starred (USE (\\flagged))\r\n"), b"c OK CREATE completed\r\n")
        self.assertEqual(dict(self.store.specialUse(ALICE)), {"Starred": "\\Flagged"})
        self.assertIn(b'"." "Starred"', self.send(b'l LIST "" Starred\r\n'))
        self.assertIn(b"\\Flagged", self.send(b'l LIST "" Starred\r\n'))
        self.assertEqual(
            self.send(b"d CREATE Odd (USE (\\Bogus))\r\n"), b"d NO [USEATTR] Unsupported special-use attribute\r\n"
        )

    def test_subscriptionsAcrossSessions(self) -> None:
        """
        SUBSCRIBE is kept by the store: a new session's LSUB shows it, also
        for a name that does not exist (C{\\Noselect}).
        """
        self.send(b"a SUBSCRIBE Later\r\n")
        self.send(b"b UNSUBSCRIBE Junk\r\n")
        self.login(IMAPS)
        response = self.send(b'l LSUB "" *\r\n')
        self.assertIn(b'* LSUB (\\Noselect) "." "Later"\r\n', response)
        self.assertNotIn(b'"Junk"', response)
        self.assertIn(b'"Sent"', response)


class QuotaTests(ExtensionTestMixin, unittest.SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.quota = FakeQuota({ALICE: 10 * 1024}, used=5000)
        self.server.account.quota = self.quota

    def test_interface(self) -> None:
        """
        The fake honours the interface the server uses.
        """
        self.assertTrue(verifyObject(IQuota, self.quota))

    def test_getQuotaRoot(self) -> None:
        """
        GETQUOTAROOT names the root C{""}; GETQUOTA reports KiB used (rounded
        up) and the limit.
        """
        self.assertEqual(
            self.send(b"q GETQUOTAROOT INBOX\r\n"),
            b'* QUOTAROOT INBOX ""\r\n* QUOTA "" (STORAGE 5 10)\r\nq OK GETQUOTAROOT completed\r\n',
        )
        self.assertEqual(
            self.send(b'r GETQUOTA ""\r\n'), b'* QUOTA "" (STORAGE 5 10)\r\nr OK GETQUOTA completed\r\n'
        )
        self.assertEqual(self.send(b"s GETQUOTA other\r\n"), b"s NO [NONEXISTENT] No such quota root\r\n")
        self.assertTrue(self.send(b"t SETQUOTA \"\" (STORAGE 1)\r\n").startswith(b"t NO [NOPERM]"))

    def test_noLimit(self) -> None:
        """
        Without a limit there is no quota root.
        """
        self.quota.limits = {}
        self.assertEqual(self.send(b"q GETQUOTAROOT INBOX\r\n"), b'* QUOTAROOT INBOX\r\nq OK GETQUOTAROOT completed\r\n')

    def test_appendOverQuota(self) -> None:
        """
        An APPEND that would pass the limit is C{NO [OVERQUOTA]} and stores
        nothing; one that fits is stored.
        """
        self.quota.used = 10 * 1024 - 3
        self.send(b"a APPEND INBOX {6}\r\n")
        self.assertEqual(self.send(b"x\r\ny\r\n\r\n"), b"a NO [OVERQUOTA] Quota exceeded\r\n")
        self.assertEqual(len(self.store.openFolder(ALICE).messages()), 2)
        self.quota.used = 0
        self.send(b"b APPEND INBOX {6}\r\n")
        self.assertTrue(self.send(b"x\r\ny\r\n\r\n").startswith(b"b OK"))

    def test_copyOverQuota(self) -> None:
        """
        COPY counts the copied sizes against the quota; MOVE does not (it
        adds nothing).
        """
        self.quota.used = 10 * 1024 - 10
        self.select()
        self.assertEqual(self.send(b"c COPY 1:2 Trash\r\n"), b"c NO [OVERQUOTA] Quota exceeded\r\n")
        self.assertTrue(self.send(b"m MOVE 1:2 Trash\r\n").endswith(b"m OK MOVE completed\r\n"))


class ConcurrencyTests(ExtensionTestMixin, unittest.SynchronousTestCase):
    def second(self) -> Any:
        """
        A second session of alice, INBOX selected; the first stays current.
        """
        first = (self.server, self.transport)
        self.login(IMAPS)
        self.select()
        other = (self.server, self.transport)
        self.server, self.transport = first
        return other

    def test_flagChangeReportedToOtherSession(self) -> None:
        """
        A flag change by one session reaches the other as an untagged FETCH
        at its next NOOP.
        """
        self.select()
        otherServer, otherTransport = self.second()
        self.send(b"s STORE 2 +FLAGS (\\Seen)\r\n")
        self.server, self.transport = otherServer, otherTransport
        self.assertEqual(self.send(b"n NOOP\r\n"), b"* 2 FETCH (FLAGS (\\Seen))\r\nn OK NOOP completed\r\n")

    def test_moveSeenAsExpungeElsewhere(self) -> None:
        """
        A MOVE in one session is an EXPUNGE with a correct sequence number in
        the other, and later numbers shift.
        """
        deliver(self.store, ALICE, MSG1)
        self.select()
        otherServer, otherTransport = self.second()
        self.send(b"m MOVE 2 Archive\r\n")
        self.server, self.transport = otherServer, otherTransport
        self.assertEqual(self.send(b"n NOOP\r\n"), b"* 2 EXPUNGE\r\nn OK NOOP completed\r\n")
        self.assertEqual(self.send(b"f FETCH 2 UID\r\n"), b"* 2 FETCH (UID 3)\r\nf OK FETCH completed\r\n")

    def test_bothMoveSameMessage(self) -> None:
        """
        Two sessions move the same message: it ends up in one folder once;
        the late session's MOVE answers OK without COPYUID, after the
        EXPUNGE of the message the other session moved.
        """
        self.select()
        otherServer, otherTransport = self.second()
        self.send(b"m MOVE 1 Archive\r\n")
        self.server, self.transport = otherServer, otherTransport
        self.assertEqual(self.send(b"m MOVE 1 Trash\r\n"), b"* 1 EXPUNGE\r\nm OK MOVE completed\r\n")
        total = len(self.store.openFolder(ALICE, "Archive").messages()) + len(
            self.store.openFolder(ALICE, "Trash").messages()
        )
        self.assertEqual(total, 1)
        self.assertEqual(self.send(b"n NOOP\r\n"), b"n OK NOOP completed\r\n")


class UntaggedUpdateTests(ConcurrencyTests):
    """
    Changes by other sessions and deliveries are reported before the tagged
    reply of any command (RFC 3501 sections 5.5 and 7), never with EXPUNGE
    after FETCH, STORE or SEARCH (section 7.4.1).
    """

    def other(self, command: bytes) -> bytes:
        """
        Run C{command} in a second session of alice with INBOX selected;
        the first session stays current.
        """
        first = (self.server, self.transport)
        if not hasattr(self, "_second"):
            self._second = self.second()
        self.server, self.transport = self._second
        try:
            return self.send(command)
        finally:
            self.server, self.transport = first

    def test_uidFetchReportsDelivery(self) -> None:
        """
        A delivery is announced (EXISTS, RECENT) before the tagged reply of
        a UID FETCH, after the FETCH data.
        """
        self.select()
        deliver(self.store, ALICE, MSG1)
        self.assertEqual(
            self.send(b"f UID FETCH 1 FLAGS\r\n"),
            b"* 1 FETCH (FLAGS (\\Recent) UID 1)\r\n* 3 EXISTS\r\n* 3 RECENT\r\nf OK FETCH completed\r\n",
        )
        self.assertEqual(self.send(b"n NOOP\r\n"), b"n OK NOOP completed\r\n")

    def test_statusReportsFlagChange(self) -> None:
        """
        Another session's flag change is an untagged FETCH before the tagged
        reply of STATUS, then not again.
        """
        self.select()
        self.other(b"s STORE 2 +FLAGS.SILENT (\\Flagged)\r\n")
        self.assertEqual(
            self.send(b"t STATUS Trash (MESSAGES)\r\n"),
            b"* STATUS Trash (MESSAGES 0)\r\n* 2 FETCH (FLAGS (\\Flagged \\Recent))\r\nt OK STATUS completed\r\n",
        )
        self.assertEqual(self.send(b"n NOOP\r\n"), b"n OK NOOP completed\r\n")

    def test_flagChangeCarriesModSeq(self) -> None:
        """
        With CONDSTORE enabled, the reported flag change carries the
        message's new MODSEQ.
        """
        self.send(b"e ENABLE CONDSTORE\r\n")
        self.select()
        self.other(b"s STORE 1 +FLAGS.SILENT (\\Seen)\r\n")
        modSeq = self.store.openFolder(ALICE).messages()[0].modSeq
        self.assertEqual(
            self.send(b"l LIST \"\" Trash\r\n"),
            b'* LIST (\\HasNoChildren \\Trash) "." "Trash"\r\n'
            b"* 1 FETCH (FLAGS (\\Seen \\Recent) MODSEQ (%d))\r\nl OK LIST completed\r\n" % (modSeq,),
        )

    def test_listReportsExpunge(self) -> None:
        """
        Another session's expunge is announced before the tagged reply of
        LIST, and later sequence numbers shift.
        """
        self.select()
        self.other(b"s STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
        self.other(b"x EXPUNGE\r\n")
        self.assertEqual(
            self.send(b"l LIST \"\" INBOX\r\n"),
            b'* LIST (\\HasNoChildren) "." "INBOX"\r\n* 1 EXPUNGE\r\nl OK LIST completed\r\n',
        )
        self.assertEqual(self.send(b"f FETCH 1 UID\r\n"), b"* 1 FETCH (UID 2)\r\nf OK FETCH completed\r\n")

    def test_noExpungeAfterFetchStoreSearch(self) -> None:
        """
        A message expunged elsewhere while a delivery arrives: FETCH, STORE
        and SEARCH (and their UID forms) report the new message but not the
        EXPUNGE, and keep the old sequence numbers; once the session knows
        the message is gone it is left out of their results (FETCH says
        C{EXPUNGEISSUED}).  NOOP then announces the EXPUNGE and the numbers
        shift.
        """
        self.select()
        self.other(b"s STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
        self.other(b"x EXPUNGE\r\n")
        deliver(self.store, ALICE, MSG1)
        self.assertEqual(
            self.send(b"f FETCH 1:* UID\r\n"),
            b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n* 3 EXISTS\r\n* 3 RECENT\r\nf OK FETCH completed\r\n",
        )
        self.assertEqual(
            self.send(b"u UID FETCH 1:* UID\r\n"),
            b"* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\nu OK [EXPUNGEISSUED] Some messages were already expunged\r\n",
        )
        self.assertEqual(
            self.send(b"s STORE 1:2 +FLAGS (\\Answered)\r\n"),
            b"* 2 FETCH (FLAGS (\\Answered \\Recent))\r\ns OK STORE completed\r\n",
        )
        self.assertEqual(self.send(b"s UID STORE 1 +FLAGS (\\Seen)\r\n"), b"s OK STORE completed\r\n")
        self.assertEqual(self.send(b"q SEARCH ANSWERED\r\n"), b"* SEARCH 2\r\nq OK SEARCH completed\r\n")
        self.assertEqual(self.send(b"q UID SEARCH ALL\r\n"), b"* SEARCH 2 3\r\nq OK SEARCH completed\r\n")
        self.assertEqual(self.send(b"n NOOP\r\n"), b"* 1 EXPUNGE\r\nn OK NOOP completed\r\n")
        self.assertEqual(self.send(b"f FETCH 2 UID\r\n"), b"* 2 FETCH (UID 3)\r\nf OK FETCH completed\r\n")

    def test_fetchOfMessageGoneSinceLastReport(self) -> None:
        """
        A FETCH of a body expunged by another session before this one heard
        of it leaves that message out instead of failing, says
        C{EXPUNGEISSUED}, and the EXPUNGE follows at the next command that
        may send it.
        """
        self.select()
        self.store.openFolder(ALICE).expunge([1])
        self.assertEqual(
            self.send(b"f FETCH 1:2 BODY.PEEK[HEADER.FIELDS (Subject)]\r\n"),
            b"* 2 FETCH (BODY[HEADER.FIELDS (Subject)] {19}\r\nSubject: second\r\n\r\n)\r\n"
            b"f OK [EXPUNGEISSUED] Some messages were already expunged\r\n",
        )
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.send(b"c CHECK\r\n"), b"* 1 EXPUNGE\r\nc OK CHECK completed\r\n")

    def test_ownChangesNotRepeated(self) -> None:
        """
        A session's own STORE, APPEND and EXPUNGE are reported once, by the
        command itself (APPEND to the selected mailbox by EXISTS before its
        tagged reply).
        """
        self.select()
        self.assertEqual(
            self.send(b"s STORE 1 +FLAGS (\\Deleted)\r\n"),
            b"* 1 FETCH (FLAGS (\\Deleted \\Recent))\r\ns OK STORE completed\r\n",
        )
        self.assertEqual(self.send(b"x EXPUNGE\r\n"), b"* 1 EXPUNGE\r\nx OK EXPUNGE completed\r\n")
        response = self.send(b"a APPEND INBOX {6}\r\nx: y\r\n\r\n")
        self.assertTrue(response.endswith(b"\r\n* 2 EXISTS\r\n* 2 RECENT\r\na OK [APPENDUID 1700000000 3] APPEND completed\r\n"), response)
        self.assertEqual(self.send(b"n NOOP\r\n"), b"n OK NOOP completed\r\n")

    def test_noReportOutsideSelectedState(self) -> None:
        """
        Without a selected mailbox, and after LOGOUT's BYE, nothing is
        reported.
        """
        self.select()
        self.send(b"u UNSELECT\r\n")
        deliver(self.store, ALICE, MSG2)
        self.assertEqual(self.send(b"n NOOP\r\n"), b"n OK NOOP completed\r\n")
        self.select()
        deliver(self.store, ALICE, MSG2)
        self.assertEqual(
            self.send(b"o LOGOUT\r\n"), b"* BYE Logging out\r\no OK LOGOUT completed\r\n"
        )


class ESearchTests(ExtensionTestMixin, unittest.SynchronousTestCase):
    """
    ESEARCH (RFC 4731): C{SEARCH RETURN (...)}.
    """

    def setUp(self) -> None:
        super().setUp()
        for _ in range(5):
            deliver(self.store, ALICE, MSG1)
        self.select()
        # Messages 1..7; 2, 3, 4 and 7 flagged.
        self.send(b"f STORE 2:4,7 +FLAGS.SILENT (\\Flagged)\r\n")

    def test_returnOptions(self) -> None:
        """
        MIN, MAX, COUNT and ALL (as a compact set) in one ESEARCH response
        tagged with the command's tag; RETURN () means ALL; the UID form
        says UID and answers UIDs.
        """
        self.assertEqual(
            self.send(b"a1 SEARCH RETURN (MIN MAX COUNT ALL) FLAGGED\r\n"),
            b'* ESEARCH (TAG "a1") MIN 2 MAX 7 ALL 2:4,7 COUNT 4\r\na1 OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.send(b"a2 SEARCH RETURN () FLAGGED\r\n"),
            b'* ESEARCH (TAG "a2") ALL 2:4,7\r\na2 OK SEARCH completed\r\n',
        )
        self.send(b"x STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
        self.send(b"y EXPUNGE\r\n")
        # Sequence numbers moved down by one; UIDs did not.
        self.assertEqual(
            self.send(b"a3 UID SEARCH RETURN (COUNT MIN) FLAGGED\r\n"),
            b'* ESEARCH (TAG "a3") UID MIN 2 COUNT 4\r\na3 OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.send(b"a4 SEARCH RETURN (ALL) CHARSET UTF-8 FLAGGED\r\n"),
            b'* ESEARCH (TAG "a4") ALL 1:3,6\r\na4 OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.send(b"a5 UID SEARCH RETURN (MAX) SUBJECT first\r\n"),
            b'* ESEARCH (TAG "a5") UID MAX 7\r\na5 OK SEARCH completed\r\n',
        )

    def test_nothingFound(self) -> None:
        """
        Without matches only COUNT (0) is reported, or nothing but the tag.
        """
        self.assertEqual(
            self.send(b"b1 SEARCH RETURN (MIN MAX ALL COUNT) DELETED\r\n"),
            b'* ESEARCH (TAG "b1") COUNT 0\r\nb1 OK SEARCH completed\r\n',
        )
        self.assertEqual(
            self.send(b"b2 UID SEARCH RETURN (MIN) DELETED\r\n"),
            b'* ESEARCH (TAG "b2") UID\r\nb2 OK SEARCH completed\r\n',
        )

    def test_modseq(self) -> None:
        """
        With a MODSEQ key the response carries the highest MODSEQ of the
        messages it reports (RFC 7162 section 3.2).
        """
        highest = max(m.modSeq for m in self.store.openFolder(ALICE).messages())
        response = self.send(b"c1 SEARCH RETURN (MIN COUNT) MODSEQ 1\r\n")
        self.assertEqual(
            response, b'* ESEARCH (TAG "c1") MIN 1 COUNT 7 MODSEQ %d\r\nc1 OK SEARCH completed\r\n' % (highest,)
        )

    def test_plainSearchUnchanged(self) -> None:
        self.assertEqual(
            self.send(b"d SEARCH FLAGGED\r\n"), b"* SEARCH 2 3 4 7\r\nd OK SEARCH completed\r\n"
        )

    def test_badOptions(self) -> None:
        """
        SAVE (RFC 5182, not offered) and unknown options are BAD; so is a
        RETURN without its list.
        """
        for line in (b"e SEARCH RETURN (SAVE) ALL", b"e SEARCH RETURN (FOO) ALL", b"e SEARCH RETURN ALL"):
            self.assertTrue(self.send(line + b"\r\n").startswith(b"e BAD"), line)


class QresyncTests(ExtensionTestMixin, unittest.SynchronousTestCase):
    """
    QRESYNC (RFC 7162) on the memory store, which keeps no expunge log: the
    VANISHED (EARLIER) sets fall back to every missing UID.
    """

    def setUp(self) -> None:
        super().setUp()
        for _ in range(3):
            deliver(self.store, ALICE, MSG1)
        self.assertEqual(self.send(b"e ENABLE QRESYNC\r\n"), b"* ENABLED QRESYNC\r\ne OK ENABLE completed\r\n")

    def test_selectFallsBackToMissingUids(self) -> None:
        self.select()
        self.send(b"s UID STORE 2,4 +FLAGS.SILENT (\\Deleted)\r\n")
        self.assertEqual(self.send(b"x EXPUNGE\r\n"), b"* VANISHED 2,4\r\nx OK EXPUNGE completed\r\n")
        validity = self.store.openFolder(ALICE).uidValidity()
        response = self.send(b"q SELECT INBOX (QRESYNC (%d 1 1:4))\r\n" % (validity,))
        self.assertTrue(response.startswith(b"* OK [CLOSED] Previous mailbox closed\r\n"), response)
        self.assertIn(b"\r\n* VANISHED (EARLIER) 2,4\r\n", response)
        self.assertTrue(response.endswith(b"q OK [READ-WRITE] SELECT completed\r\n"), response)
        response = self.send(b"f UID FETCH 1:* (UID) (CHANGEDSINCE 1 VANISHED)\r\n")
        self.assertTrue(response.startswith(b"* VANISHED (EARLIER) 2,4\r\n"), response)

    def test_moveAnnouncesVanished(self) -> None:
        self.select()
        response = self.send(b"m UID MOVE 1:2 Archive\r\n")
        self.assertIn(b"] Moved\r\n* VANISHED 1:2\r\nm OK MOVE completed\r\n", response)

    def test_badParameters(self) -> None:
        for line in (
            b"a SELECT INBOX (QRESYNC (0 1))",
            b"a SELECT INBOX (QRESYNC (1))",
            b"a SELECT INBOX (QRESYNC (1 x))",
            b"a SELECT INBOX (QRESYNC (1 1 junk))",
            b"a SELECT INBOX (FOO)",
        ):
            self.assertTrue(self.send(line + b"\r\n").startswith(b"a BAD"), line)
        self.select()
        self.assertTrue(self.send(b"b FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n").startswith(b"b BAD"))

    def test_fetchResponsesCarryUid(self) -> None:
        """
        With QRESYNC every FETCH response names the UID (RFC 7162 section
        3.2.4): FETCH, STORE and changes reported from other sessions.
        """
        self.select()
        self.assertEqual(
            self.send(b"f FETCH 2 (FLAGS)\r\n"), b"* 2 FETCH (FLAGS (\\Recent) UID 2)\r\nf OK FETCH completed\r\n"
        )
        response = self.send(b"s STORE 2 +FLAGS (\\Seen)\r\n")
        self.assertIn(b"* 2 FETCH (FLAGS (\\Seen \\Recent) UID 2 MODSEQ (", response)
        other = self.store.openFolder(ALICE)
        other.setFlags(3, ["\\Flagged"])
        self.assertIn(b"* 3 FETCH (UID 3 FLAGS (\\Flagged \\Recent) MODSEQ (", self.send(b"n NOOP\r\n"))
