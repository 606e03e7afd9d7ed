# -*- test-case-name: tests.storage.test_behaviour_transfer -*-
"""
COPY/MOVE between folders, subscriptions and special use: behaviour shared
by every L{IMailStore} backend (see the C{store} fixture), plus the Dovecot
file formats of the Maildir backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from mailsrv.errors import ErrorKind, MailError
from mailsrv.storage.maildir_account import formatSubscriptions, parseSubscriptions

from .helpers import successResultOf
from .test_behaviour import ALICE, MESSAGE, deliver, readAll, uids


def _twoFolders(store: Any) -> tuple[Any, Any]:
    store.createFolder(ALICE, "Archive")
    deliver(store, [ALICE])
    deliver(store, [ALICE], MESSAGE + b"second\r\n")
    inbox = store.openFolder(ALICE)
    inbox.setFlags(uids(inbox)[0], ["\\Seen", "work"])
    return inbox, store.openFolder(ALICE, "Archive")


def test_copyKeepsFlagsAndDate(store: Any) -> None:
    """
    A copy gets a new UID in the target, the same bytes, flags (keywords
    included) and internal date, and the original stays.
    """
    inbox, archive = _twoFolders(store)
    first = inbox.messages()[0]
    pairs = successResultOf(inbox.transfer([first.uid], archive, False))
    archive.refresh()
    assert pairs == [(first.uid, archive.messages()[0].uid)]
    copied = archive.messages()[0]
    assert copied.flags == first.flags == frozenset({"\\Seen", "work"})
    assert copied.internalDate == first.internalDate
    assert readAll(archive, copied.uid) == readAll(inbox, first.uid)
    inbox.refresh()
    assert len(inbox.messages()) == 2


def test_moveRemovesOriginal(store: Any) -> None:
    """
    A move fires with the UID pairs in source order and the messages are
    gone from the source, for this view and after a refresh.
    """
    inbox, archive = _twoFolders(store)
    both = uids(inbox)
    pairs = successResultOf(inbox.transfer(both, archive, True))
    assert [p[0] for p in pairs] == both
    assert uids(inbox) == []
    inbox.refresh()
    assert uids(inbox) == []
    archive.refresh()
    assert uids(archive) == [p[1] for p in pairs]


def test_concurrentMovesKeepOneCopy(store: Any) -> None:
    """
    Two sessions moving the same message (to different folders): exactly
    one copy survives, and the loser reports nothing moved.
    """
    inbox, archive = _twoFolders(store)
    store.createFolder(ALICE, "Other")
    other = store.openFolder(ALICE, "Other")
    second = store.openFolder(ALICE)
    uid = uids(inbox)[0]
    first = successResultOf(inbox.transfer([uid], archive, True))
    late = successResultOf(second.transfer([uid], other, True))
    archive.refresh()
    other.refresh()
    assert len(first) == 1 and late == []
    assert len(archive.messages()) + len(other.messages()) == 1


def test_transferSkipsExpunged(store: Any) -> None:
    """
    Copying a message another session expunged is not an error; it is
    left out of the result.
    """
    inbox, archive = _twoFolders(store)
    stale = store.openFolder(ALICE)
    gone = uids(inbox)[0]
    successResultOf(inbox.expunge([gone]))
    pairs = successResultOf(stale.transfer(uids(stale), archive, False))
    assert [p[0] for p in pairs] == [uids(inbox)[0]]


def test_subscriptionsPersist(storeFactory: Callable[[], Any]) -> None:
    """
    Subscriptions survive a new store object (a restart) and may name
    folders that do not exist.
    """
    store = storeFactory()
    store.setSubscribed(ALICE, "Sent", True)
    store.setSubscribed(ALICE, "Nope/Child", True)
    store.setSubscribed(ALICE, "Sent", True)
    store.setSubscribed(ALICE, "Gone", False)
    again = storeFactory()
    assert sorted(again.subscriptions(ALICE)) == ["Nope/Child", "Sent"]
    again.setSubscribed(ALICE, "Sent", False)
    assert storeFactory().subscriptions(ALICE) == ["Nope/Child"]


def test_subscribeInvalidName(store: Any) -> None:
    """
    Names are validated like folder names.
    """
    with pytest.raises(MailError) as info:
        store.setSubscribed(ALICE, "../x", True)
    assert info.value.kind is ErrorKind.SYNTAX


def test_specialUsePersists(storeFactory: Callable[[], Any]) -> None:
    """
    Special-use attributes are kept per folder, survive a restart, and
    unknown attributes are refused.
    """
    store = storeFactory()
    store.setSpecialUse(ALICE, "Sent Items", "\\Sent")
    store.setSpecialUse(ALICE, "Spam", "\\Junk")
    store.setSpecialUse(ALICE, "Spam", None)
    assert dict(storeFactory().specialUse(ALICE)) == {"Sent Items": "\\Sent"}
    with pytest.raises(MailError):
        store.setSpecialUse(ALICE, "X", "\\Bogus")


def test_dovecotSubscriptionFormats(tmp_path: Path) -> None:
    """
    Version 2 files (TAB between levels, modified UTF-7) and version 1
    files (one dotted name a line) are both read; mailsrv writes version 2.
    """
    v2 = "V\t2\n\nINBOX\nArchive\t2024\nEntw&APw-rfe\n"
    assert parseSubscriptions(v2) == ["INBOX", "Archive/2024", "Entwürfe"]
    assert parseSubscriptions("Sent\nArchive.2024\n") == ["Sent", "Archive/2024"]
    assert formatSubscriptions(["Archive/2024", "Entwürfe"]) == b"V\t2\n\nArchive\t2024\nEntw&APw-rfe\n"
