# -*- test-case-name: tests.storage.test_behaviour -*-
"""
The behaviour every L{IMailStore} backend shares, run against each backend
(see the C{store} fixture in C{conftest.py}): protocol code tested against
the memory store must see the same semantics as against Maildir.
"""

from __future__ import annotations

from typing import Any

import pytest
from zope.interface.verify import verifyObject

from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IMailFolder, IMailStore, IMessageWriter

from .helpers import failureResultOf, successResultOf

ALICE = "alice@example.com"
BOB = "bob@example.org"
MESSAGE = b"From: x@example.net\r\nSubject: hi\r\n\r\nbody line\r\n"


def deliver(store: Any, accounts: list[str], data: bytes = MESSAGE) -> None:
    """
    Deliver C{data} to the INBOX of C{accounts}, in two writes.
    """
    writer = store.startMessage(accounts)
    writer.write(data[:10])
    writer.write(data[10:])
    successResultOf(writer.commit())


def uids(folder: Any) -> list[int]:
    return [m.uid for m in folder.messages()]


def readAll(folder: Any, uid: int) -> bytes:
    with folder.openMessage(uid) as f:
        return f.read()


def expectError(kind: ErrorKind, f: Any, *args: Any) -> MailError:
    with pytest.raises(MailError) as info:
        f(*args)
    assert info.value.kind is kind, info.value
    return info.value


# ---------------------------------------------------------------- interfaces


def test_providesInterfaces(store: Any) -> None:
    """
    The store, its folders and its writers provide their interfaces fully.
    """
    assert verifyObject(IMailStore, store)
    assert verifyObject(IMailFolder, store.openFolder(ALICE))
    writer = store.startMessage([ALICE])
    assert verifyObject(IMessageWriter, writer)
    writer.abort()


# ----------------------------------------------------------------- delivery


def test_deliveryVisibleAfterRefresh(store: Any) -> None:
    """
    A committed delivery appears in the INBOX with UID 1, its CRLF size and
    its exact bytes; an already open view sees it only after refresh().
    """
    inbox = store.openFolder(ALICE)
    assert inbox.messages() == ()
    deliver(store, [ALICE])
    assert list(inbox.messages()) == []
    inbox.refresh()
    [info] = inbox.messages()
    assert info.uid == 1
    assert info.size == len(MESSAGE)
    assert info.flags == frozenset()
    assert readAll(inbox, 1) == MESSAGE
    assert inbox.uidNext() == 2


def test_nothingVisibleBeforeCommit(store: Any) -> None:
    """
    Bytes written but not committed are invisible to readers.
    """
    writer = store.startMessage([ALICE])
    writer.write(MESSAGE)
    assert list(store.openFolder(ALICE).messages()) == []
    successResultOf(writer.commit())
    assert len(store.openFolder(ALICE).messages()) == 1


def test_abortDiscards(store: Any) -> None:
    """
    An aborted message never appears; later writes are ignored and a commit
    fails instead of delivering.
    """
    writer = store.startMessage([ALICE])
    writer.write(MESSAGE)
    writer.abort()
    writer.write(b"more\r\n")
    writer.abort()
    failure = failureResultOf(writer.commit(), MailError)
    assert failure.value.temporary
    assert list(store.openFolder(ALICE).messages()) == []


def test_abortAfterCommitIsNoop(store: Any) -> None:
    """
    abort() after a successful commit leaves the message in place.
    """
    writer = store.startMessage([ALICE])
    writer.write(MESSAGE)
    successResultOf(writer.commit())
    writer.abort()
    assert len(store.openFolder(ALICE).messages()) == 1


def test_emptyMessage(store: Any) -> None:
    """
    A message with no bytes written can still be committed (size 0).
    """
    writer = store.startMessage([ALICE])
    successResultOf(writer.commit())
    [info] = store.openFolder(ALICE).messages()
    assert info.size == 0


def test_deliveryToSeveralAccounts(store: Any) -> None:
    """
    One delivery lands once in each account's INBOX, duplicates in the
    account list included.
    """
    deliver(store, [ALICE, BOB, ALICE])
    for account in (ALICE, BOB):
        inbox = store.openFolder(account)
        assert uids(inbox) == [1]
        assert readAll(inbox, 1) == MESSAGE


def test_startMessageNeedsAccounts(store: Any) -> None:
    """
    A delivery to nobody is a programming error.
    """
    with pytest.raises(ValueError):
        store.startMessage([])


def test_uidsAscendAndAreNotReused(store: Any) -> None:
    """
    UIDs ascend from 1 in delivery order; an expunged UID is never given
    again.
    """
    for i in range(3):
        deliver(store, [ALICE], MESSAGE + b"%d\r\n" % i)
    inbox = store.openFolder(ALICE)
    assert uids(inbox) == [1, 2, 3]
    assert [readAll(inbox, u)[-3:] for u in (1, 2, 3)] == [b"0\r\n", b"1\r\n", b"2\r\n"]
    successResultOf(inbox.expunge([3]))
    deliver(store, [ALICE])
    inbox.refresh()
    assert uids(inbox) == [1, 2, 4]
    assert inbox.uidNext() == 5


def test_uidValidityStable(store: Any) -> None:
    """
    A folder keeps its UIDVALIDITY; a folder re-created under the same name
    gets a different one.
    """
    store.createFolder(ALICE, "Work")
    first = store.openFolder(ALICE, "Work").uidValidity()
    assert first > 0
    assert store.openFolder(ALICE, "Work").uidValidity() == first
    store.deleteFolder(ALICE, "Work")
    store.createFolder(ALICE, "Work")
    assert store.openFolder(ALICE, "Work").uidValidity() != first


def test_uidlFormat(store: Any) -> None:
    """
    The POP3 UIDL is Dovecot's default C{%08Xu%08Xv}, which Dovecot prints
    in lower-case hex, and survives flag changes.
    """
    deliver(store, [ALICE])
    inbox = store.openFolder(ALICE)
    expected = "%08x%08x" % (1, inbox.uidValidity())
    assert inbox.uidl(1) == expected
    inbox.setFlags(1, ["\\Seen"])
    assert inbox.uidl(1) == expected


def test_openMissingMessage(store: Any) -> None:
    """
    Opening or asking the UIDL of an unknown UID is NOT_FOUND.
    """
    inbox = store.openFolder(ALICE)
    expectError(ErrorKind.NOT_FOUND, inbox.openMessage, 7)
    expectError(ErrorKind.NOT_FOUND, inbox.uidl, 7)


# -------------------------------------------------------------------- flags


def test_setFlags(store: Any) -> None:
    """
    setFlags replaces the flags, canonicalises system flags, drops
    \\Recent, keeps keywords, and is seen by a new view.
    """
    deliver(store, [ALICE])
    inbox = store.openFolder(ALICE)
    info = inbox.setFlags(1, ["\\seen", "\\Recent", "$Label1", "\\FLAGGED"])
    assert info.flags == {"\\Seen", "\\Flagged", "$Label1"}
    assert inbox.messages()[0].flags == info.flags
    assert store.openFolder(ALICE).messages()[0].flags == info.flags
    info = inbox.setFlags(1, ["\\Deleted"])
    assert info.flags == {"\\Deleted"}
    assert store.openFolder(ALICE).messages()[0].flags == {"\\Deleted"}
    assert readAll(inbox, 1) == MESSAGE


@pytest.mark.parametrize("flag", ["\\Bogus", "has space", "par(en", "", "caf\u00e9"])
def test_setFlagsRefusesInvalid(store: Any, flag: str) -> None:
    """
    Unknown system flags and keywords that are not IMAP atoms are refused.
    """
    deliver(store, [ALICE])
    inbox = store.openFolder(ALICE)
    expectError(ErrorKind.SYNTAX, inbox.setFlags, 1, [flag])


def test_setFlagsMissing(store: Any) -> None:
    """
    Setting flags on a message that is gone is NOT_FOUND.
    """
    inbox = store.openFolder(ALICE)
    expectError(ErrorKind.NOT_FOUND, inbox.setFlags, 3, ["\\Seen"])


def test_keywordLimit(store: Any) -> None:
    """
    A folder holds at most 26 distinct keywords (Maildir's a-z letters).
    """
    deliver(store, [ALICE])
    inbox = store.openFolder(ALICE)
    inbox.setFlags(1, [f"kw{i}" for i in range(26)])
    expectError(ErrorKind.TOO_MANY, inbox.setFlags, 1, ["kw26"])
    assert len(inbox.setFlags(1, ["kw3"]).flags) == 1


# ---------------------------------------------------------- append, expunge


def test_append(store: Any) -> None:
    """
    append stores the message with flags and internal date, returns its
    UID, and the message appears at the next refresh.
    """
    store.createFolder(ALICE, "Sent")
    sent = store.openFolder(ALICE, "Sent")
    uid = successResultOf(sent.append(MESSAGE, ["\\Seen", "Work"], 1_000_000_000.0))
    assert uid == 1
    sent.refresh()
    [info] = sent.messages()
    assert (info.uid, info.flags, info.internalDate, info.size) == (
        1,
        {"\\Seen", "Work"},
        1_000_000_000.0,
        len(MESSAGE),
    )
    assert readAll(sent, 1) == MESSAGE
    assert successResultOf(sent.append(MESSAGE)) == 2


def test_appendInvalidFlags(store: Any) -> None:
    """
    append reports invalid flags through the Deferred, storing nothing.
    """
    inbox = store.openFolder(ALICE)
    failure = failureResultOf(inbox.append(MESSAGE, ["\\Nope"]), MailError)
    assert failure.value.kind is ErrorKind.SYNTAX
    inbox.refresh()
    assert inbox.messages() == ()


def test_expunge(store: Any) -> None:
    """
    expunge removes messages from the view and the backend, ignoring UIDs
    that are already gone.
    """
    for _ in range(3):
        deliver(store, [ALICE])
    inbox = store.openFolder(ALICE)
    successResultOf(inbox.expunge([2, 9]))
    assert uids(inbox) == [1, 3]
    successResultOf(inbox.expunge([2]))
    assert uids(store.openFolder(ALICE)) == [1, 3]
    expectError(ErrorKind.NOT_FOUND, inbox.openMessage, 2)


# --------------------------------------------------------------- listeners


def test_listenersOnDelivery(store: Any) -> None:
    """
    A delivery calls the listeners of every INBOX view; a removed listener
    is not called; a failing listener does not fail the delivery.
    """
    calls: list[str] = []
    one, two = store.openFolder(ALICE), store.openFolder(ALICE)

    def broken() -> None:
        raise RuntimeError("listener bug")

    def listenerTwo() -> None:
        calls.append("two")

    one.addChangeListener(broken)
    one.addChangeListener(lambda: calls.append("one"))
    two.addChangeListener(listenerTwo)
    deliver(store, [ALICE])
    assert sorted(calls) == ["one", "two"]
    two.removeChangeListener(listenerTwo)
    deliver(store, [ALICE])
    assert sorted(calls) == ["one", "one", "two"]
    deliver(store, [BOB])
    assert len(calls) == 3


def test_listenersOnOtherSessionsChanges(store: Any) -> None:
    """
    append, expunge and setFlags through one view call the listeners of the
    other views of the folder, not the view's own.
    """
    mine, other = store.openFolder(ALICE), store.openFolder(ALICE)
    calls: list[str] = []
    mine.addChangeListener(lambda: calls.append("mine"))
    other.addChangeListener(lambda: calls.append("other"))
    successResultOf(mine.append(MESSAGE))
    assert calls == ["other"]
    mine.refresh()
    mine.setFlags(1, ["\\Seen"])
    assert calls == ["other", "other"]
    successResultOf(mine.expunge([1]))
    assert calls == ["other", "other", "other"]


# ------------------------------------------------------------------ folders


def test_folderLifecycle(store: Any) -> None:
    """
    Folders are listed INBOX first then sorted; created, opened, deleted;
    INBOX is case-insensitive and cannot be created or deleted.
    """
    assert store.listFolders(ALICE) == ["INBOX"]
    for name in ("Trash", "Archive/2024", "Archive", "Entw\u00fcrfe", "a&b"):
        store.createFolder(ALICE, name)
    assert store.listFolders(ALICE) == [
        "INBOX",
        "Archive",
        "Archive/2024",
        "Entw\u00fcrfe",
        "Trash",
        "a&b",
    ]
    assert store.openFolder(ALICE, "inbox").name == "INBOX"
    assert store.openFolder(ALICE, "Entw\u00fcrfe").name == "Entw\u00fcrfe"
    expectError(ErrorKind.PERM, store.createFolder, ALICE, "Trash")
    expectError(ErrorKind.PERM, store.createFolder, ALICE, "Inbox")
    expectError(ErrorKind.NOT_FOUND, store.openFolder, ALICE, "trash")
    expectError(ErrorKind.PERM, store.deleteFolder, ALICE, "INBOX")
    expectError(ErrorKind.NOT_FOUND, store.deleteFolder, ALICE, "Nope")
    store.deleteFolder(ALICE, "Archive")
    assert store.listFolders(ALICE) == ["INBOX", "Archive/2024", "Entw\u00fcrfe", "Trash", "a&b"]
    assert store.listFolders(BOB) == ["INBOX"]


def test_deletedFolderView(store: Any) -> None:
    """
    A view of a folder deleted by another session fails to refresh with
    NOT_FOUND.
    """
    store.createFolder(ALICE, "Old")
    view = store.openFolder(ALICE, "Old")
    store.deleteFolder(ALICE, "Old")
    expectError(ErrorKind.NOT_FOUND, view.refresh)


def test_renameWithChildren(store: Any) -> None:
    """
    Renaming a folder renames its children and keeps messages, UIDs and
    UIDVALIDITY.
    """
    store.createFolder(ALICE, "A")
    store.createFolder(ALICE, "A/B")
    store.createFolder(ALICE, "AB")
    folder = store.openFolder(ALICE, "A/B")
    successResultOf(folder.append(MESSAGE, ["\\Seen"]))
    validity = folder.uidValidity()
    store.renameFolder(ALICE, "A", "C/D")
    assert store.listFolders(ALICE) == ["INBOX", "AB", "C/D", "C/D/B"]
    moved = store.openFolder(ALICE, "C/D/B")
    assert moved.uidValidity() == validity
    assert [(m.uid, m.flags) for m in moved.messages()] == [(1, {"\\Seen"})]
    assert readAll(moved, 1) == MESSAGE


def test_renameRefusals(store: Any) -> None:
    """
    Renaming a missing folder is NOT_FOUND; onto an existing name, or into
    itself, is PERM.
    """
    store.createFolder(ALICE, "A")
    store.createFolder(ALICE, "B")
    expectError(ErrorKind.NOT_FOUND, store.renameFolder, ALICE, "Nope", "X")
    expectError(ErrorKind.PERM, store.renameFolder, ALICE, "A", "B")
    expectError(ErrorKind.PERM, store.renameFolder, ALICE, "A", "INBOX")
    expectError(ErrorKind.PERM, store.renameFolder, ALICE, "A", "A/sub")
    assert store.listFolders(ALICE) == ["INBOX", "A", "B"]


def test_renameInbox(store: Any) -> None:
    """
    Renaming INBOX moves its messages to the new folder and leaves INBOX
    existing and empty (RFC 3501 6.3.5).
    """
    deliver(store, [ALICE])
    deliver(store, [ALICE])
    store.renameFolder(ALICE, "INBOX", "Old mail")
    assert store.listFolders(ALICE) == ["INBOX", "Old mail"]
    assert store.openFolder(ALICE).messages() == ()
    old = store.openFolder(ALICE, "Old mail")
    assert uids(old) == [1, 2]
    assert readAll(old, 2) == MESSAGE


# --------------------------------------------------------------- validation

BAD_NAMES = [
    "",
    "../x",
    "a/../../b",
    "..",
    ".",
    ".hidden",
    "a.b",
    "a//b",
    "/abs",
    "trailing/",
    "nul\x00byte",
    "new\nline",
    "wild*",
    "wild%",
    "x" * 300,
    "\u00e9" * 100,
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_badFolderNamesRefused(store: Any, name: str) -> None:
    """
    Names that could escape the account directory, change the Maildir++
    hierarchy or break IMAP LIST are refused with SYNTAX everywhere.
    """
    expectError(ErrorKind.SYNTAX, store.createFolder, ALICE, name)
    expectError(ErrorKind.SYNTAX, store.openFolder, ALICE, name)
    expectError(ErrorKind.SYNTAX, store.deleteFolder, ALICE, name)
    store.createFolder(ALICE, "Ok")
    expectError(ErrorKind.SYNTAX, store.renameFolder, ALICE, "Ok", name)
    assert store.listFolders(ALICE) == ["INBOX", "Ok"]


BAD_ACCOUNTS = [
    "noat",
    "@example.com",
    "alice@",
    "../x@example.com",
    ".alice@example.com",
    "..@example.com",
    "alice@..",
    "alice@.example.com",
    "alice@../../etc",
    "a/b@example.com",
    "alice@exa/mple.com",
    "al\x00ice@example.com",
    "alice@exam\x00ple.com",
    "a@b@example.com",
    "x" * 65 + "@example.com",
]


@pytest.mark.parametrize("account", BAD_ACCOUNTS)
def test_badAccountsRefused(store: Any, account: str) -> None:
    """
    Account ids that are not path-safe are refused with SYNTAX before any
    mailbox is touched.
    """
    expectError(ErrorKind.SYNTAX, store.openFolder, account)
    expectError(ErrorKind.SYNTAX, store.listFolders, account)
    expectError(ErrorKind.SYNTAX, store.createFolder, account, "X")
    expectError(ErrorKind.SYNTAX, store.startMessage, [ALICE, account])


# ----------------------------------------------------------------- placement


def test_placeIntoFoldersWithFlags(store: Any) -> None:
    """
    L{IMessageWriter.place} sends the copies where it says, replacing the
    INBOX given to startMessage: a folder that does not exist yet is
    created, and each copy starts with its own flags (system flags and
    keywords).
    """
    from mailsrv.interfaces import Placement

    writer = store.startMessage([ALICE, BOB])
    writer.write(MESSAGE)
    writer.place(
        [
            Placement(ALICE, "Lists/Python", frozenset({"\\seen", "$label1"})),
            Placement(ALICE, "INBOX", frozenset({"\\Flagged"})),
            Placement(BOB, "INBOX"),
        ]
    )
    successResultOf(writer.commit())
    assert "Lists/Python" in store.listFolders(ALICE)
    # Subscribed too: many clients show subscribed folders only.
    assert "Lists/Python" in store.subscriptions(ALICE)
    [listed] = store.openFolder(ALICE, "Lists/Python").messages()
    assert listed.flags == frozenset({"\\Seen", "$label1"})
    [inbox] = store.openFolder(ALICE).messages()
    assert inbox.flags == frozenset({"\\Flagged"})
    [bobs] = store.openFolder(BOB).messages()
    assert bobs.flags == frozenset()
    assert readAll(store.openFolder(ALICE, "Lists/Python"), listed.uid) == MESSAGE


def test_placeNowhereElse(store: Any) -> None:
    """
    An account left out of the placements gets no copy; the same
    placement given twice is one copy.
    """
    from mailsrv.interfaces import Placement

    writer = store.startMessage([ALICE, BOB])
    writer.write(MESSAGE)
    writer.place([Placement(BOB, "Archive"), Placement(BOB, "Archive")])
    successResultOf(writer.commit())
    assert store.openFolder(ALICE).messages() == ()
    assert len(store.openFolder(BOB, "Archive").messages()) == 1
    assert store.openFolder(BOB).messages() == ()


def test_placeRefusesBadNames(store: Any) -> None:
    """
    An invalid folder name or flag is a C{SYNTAX} error from place(); the
    writer can still be aborted.
    """
    from mailsrv.interfaces import Placement

    writer = store.startMessage([ALICE])
    writer.write(MESSAGE)
    expectError(ErrorKind.SYNTAX, writer.place, [Placement(ALICE, "a//b")])
    expectError(ErrorKind.SYNTAX, writer.place, [Placement(ALICE, "INBOX", frozenset({"\\Recentish"}))])
    writer.abort()
    assert store.openFolder(ALICE).messages() == ()
