# -*- test-case-name: tests.storage.test_memory,tests.storage.test_behaviour -*-
"""
An in-memory L{IMailStore}, for protocol and pipeline tests.

It keeps the semantics of the Maildir store (the shared behavioural tests in
C{tests/storage/test_behaviour.py} run against both) so that a protocol
tested against it behaves the same on disk:

 - UIDs ascend from 1 per folder and are never reused; UIDVALIDITY is fixed
   when a folder is created and differs from every earlier folder's.
 - Each L{MemoryMailStore.openFolder} returns a new view with its own
   snapshot; deliveries and other sessions' appends become visible in a view
   at its next L{MemoryFolder.refresh}.  A view's own L{MemoryFolder.setFlags}
   and L{MemoryFolder.expunge} update its snapshot at once.
 - Change listeners of every other view of the folder are called after an
   append, expunge or flag change, and those of every INBOX view after a
   delivery.  They are called synchronously: there are no threads here, so
   "on the reactor thread" holds trivially.

Every Deferred returned has already fired.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import time
from typing import BinaryIO, Callable, Iterable, Mapping, Optional, Sequence

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IMailFolder, IMailStore, IMessageWriter, MessageInfo, Placement
from mailsrv.storage.maildir_account import SPECIAL_USES
from mailsrv.storage.validation import (
    INBOX,
    MAX_KEYWORDS,
    keywordsOf,
    normalizeFlags,
    normalizeFolderName,
    splitAccount,
)

Listener = Callable[[], None]


@dataclasses.dataclass
class _Message:
    uid: int
    key: str
    data: bytes
    flags: frozenset[str]
    internalDate: float
    modSeq: int = 0

    def info(self) -> MessageInfo:
        return MessageInfo(
            uid=self.uid,
            key=self.key,
            size=len(self.data),
            flags=self.flags,
            internalDate=self.internalDate,
            modSeq=self.modSeq,
        )


class _Mailbox:
    """
    The state of one folder, shared by all views (L{MemoryFolder}) of it.

    @ivar keywords: every keyword ever set in the folder; like Maildir's
        C{dovecot-keywords} it only grows, and is limited to L{MAX_KEYWORDS}.
    @ivar listeners: C{(view, listener)} pairs, so that a view is not told
        about its own changes.
    """

    log = Logger()

    def __init__(self, uidValidity: int) -> None:
        self.uidValidity = uidValidity
        self.nextUid = 1
        self.messages: dict[int, _Message] = {}
        self.keywords: set[str] = set()
        self.listeners: list[tuple["MemoryFolder", Listener]] = []
        self.deleted = False
        # RFC 7162 MODSEQ: raised by every append, flag change and expunge.
        self.highestModSeq = 0

    def nextModSeq(self) -> int:
        self.highestModSeq += 1
        return self.highestModSeq

    def checkKeywords(self, flags: frozenset[str]) -> None:
        new = keywordsOf(flags) - self.keywords
        if len(self.keywords) + len(new) > MAX_KEYWORDS:
            raise MailError(ErrorKind.TOO_MANY, "Too many keywords in this mailbox")
        self.keywords |= new

    def add(self, key: str, data: bytes, flags: frozenset[str], date: float) -> int:
        self.checkKeywords(flags)
        uid = self.nextUid
        self.nextUid += 1
        self.messages[uid] = _Message(uid, key, data, flags, date, self.nextModSeq())
        return uid

    def notify(self, exclude: Optional["MemoryFolder"] = None) -> None:
        for view, listener in list(self.listeners):
            if view is exclude:
                continue
            try:
                listener()
            except Exception:
                # A broken listener (one IMAP session) must not fail the
                # delivery or the other sessions' notifications.
                self.log.failure("Mailbox change listener failed")


@implementer(IMailFolder)
class MemoryFolder:
    """
    One session's view of an in-memory folder.  Create with
    L{MemoryMailStore.openFolder}.
    """

    def __init__(
        self, store: "MemoryMailStore", account: str, name: str, mailbox: _Mailbox
    ) -> None:
        self._store = store
        self.account = account
        self.name = name
        self._mailbox = mailbox
        self._snapshot: dict[int, MessageInfo] = {}
        self._uidNext = 1
        self.refresh()

    def uidValidity(self) -> int:
        return self._mailbox.uidValidity

    def uidNext(self) -> int:
        return self._uidNext

    def highestModSeq(self) -> int:
        """
        The RFC 7162 HIGHESTMODSEQ as of the last refresh.
        """
        return self._highestModSeq

    def refresh(self) -> None:
        """
        Take a new snapshot.

        @raise MailError: C{NOT_FOUND} if the folder was deleted meanwhile.
        """
        if self._mailbox.deleted:
            raise MailError(ErrorKind.NOT_FOUND, "Mailbox does not exist")
        self._snapshot = {
            uid: msg.info() for uid, msg in sorted(self._mailbox.messages.items())
        }
        self._uidNext = self._mailbox.nextUid
        self._highestModSeq = self._mailbox.highestModSeq

    def messages(self) -> Sequence[MessageInfo]:
        return tuple(self._snapshot.values())

    def _message(self, uid: int) -> _Message:
        msg = self._mailbox.messages.get(uid)
        if msg is None:
            raise MailError(ErrorKind.NOT_FOUND, "No such message")
        return msg

    def uidl(self, uid: int) -> str:
        # Same format as the Maildir store (Dovecot's %08Xu%08Xv, which
        # Dovecot prints in lower case).
        msg = self._message(uid)
        return f"{msg.uid:08x}{self._mailbox.uidValidity:08x}"

    def openMessage(self, uid: int) -> BinaryIO:
        return io.BytesIO(self._message(uid).data)

    def setFlags(self, uid: int, flags: Iterable[str]) -> MessageInfo:
        normalized = normalizeFlags(flags)
        msg = self._message(uid)
        self._mailbox.checkKeywords(normalized)
        msg.flags = normalized
        msg.modSeq = self._mailbox.nextModSeq()
        self._highestModSeq = max(self._highestModSeq, msg.modSeq)
        info = msg.info()
        if uid in self._snapshot:
            self._snapshot[uid] = info
        self._mailbox.notify(exclude=self)
        return info

    def expunge(self, uids: Iterable[int]) -> "defer.Deferred[None]":
        removed = False
        for uid in list(uids):
            if self._mailbox.messages.pop(uid, None) is not None:
                removed = True
            self._snapshot.pop(uid, None)
        if removed:
            self._mailbox.nextModSeq()
            self._mailbox.notify(exclude=self)
        return defer.succeed(None)

    def append(
        self,
        data: bytes,
        flags: Iterable[str] = (),
        internalDate: Optional[float] = None,
    ) -> "defer.Deferred[int]":
        try:
            if self._mailbox.deleted:
                raise MailError(ErrorKind.NOT_FOUND, "Mailbox does not exist")
            normalized = normalizeFlags(flags)
            store = self._store
            date = store._clock() if internalDate is None else internalDate
            uid = self._mailbox.add(store._newKey(), bytes(data), normalized, date)
        except MailError as e:
            return defer.fail(e)
        self._mailbox.notify(exclude=self)
        return defer.succeed(uid)

    def transfer(
        self, uids: Iterable[int], target: IMailFolder, move: bool
    ) -> "defer.Deferred[Sequence[tuple[int, int]]]":
        """
        Copy or move messages into C{target}; a message another view moved
        or expunged first is skipped, as in the Maildir store.
        """
        if not isinstance(target, MemoryFolder) or target._store is not self._store:
            return defer.fail(MailError(ErrorKind.PERM, "Cannot copy between stores"))
        if target._mailbox.deleted:
            return defer.fail(MailError(ErrorKind.NOT_FOUND, "Mailbox does not exist"))
        pairs = []
        try:
            for uid in sorted(set(uids)):
                msg = self._mailbox.messages.get(uid)
                if msg is None:
                    continue
                newUid = target._mailbox.add(
                    self._store._newKey(), msg.data, msg.flags, msg.internalDate
                )
                pairs.append((uid, newUid))
                if move:
                    del self._mailbox.messages[uid]
                    self._snapshot.pop(uid, None)
        except MailError as e:
            return defer.fail(e)
        if pairs:
            target._mailbox.notify(exclude=target)
            if move:
                self._mailbox.notify(exclude=self)
        return defer.succeed(pairs)

    def addChangeListener(self, listener: Listener) -> None:
        self._mailbox.listeners.append((self, listener))

    def removeChangeListener(self, listener: Listener) -> None:
        try:
            self._mailbox.listeners.remove((self, listener))
        except ValueError:
            pass


@implementer(IMessageWriter)
class MemoryMessageWriter:
    """
    A delivery into the INBOX of several accounts, kept in memory until
    L{commit}.  Create with L{MemoryMailStore.startMessage}.
    """

    def __init__(self, store: "MemoryMailStore", accounts: Sequence[str], folder: str = INBOX) -> None:
        self._store = store
        self._placements = [Placement(account, folder) for account in accounts]
        self._chunks: list[bytes] = []
        self._state = "writing"

    def place(self, placements: Sequence[Placement]) -> None:
        if self._state != "writing":
            raise RuntimeError("place() after commit()")
        resolved: list[Placement] = []
        for placement in placements:
            local, domain = splitAccount(placement.account)
            flags = normalizeFlags(placement.flags)
            placement = Placement(f"{local}@{domain}", normalizeFolderName(placement.folder), flags)
            if placement not in resolved:
                resolved.append(placement)
        if not resolved:
            raise ValueError("place() needs at least one placement")
        for i, placement in enumerate(resolved):
            # Checked before anything is stored: a delivery never fails
            # halfway.  Keywords a folder has no room for are dropped.
            try:
                self._store._deliveryMailbox(placement.account, placement.folder).checkKeywords(placement.flags)
            except MailError:
                systemFlags = frozenset(f for f in placement.flags if f.startswith("\\"))
                resolved[i] = dataclasses.replace(placement, flags=systemFlags)
        self._placements = resolved

    def write(self, data: bytes) -> None:
        if self._state == "aborted":
            return
        if self._state != "writing":
            raise RuntimeError("write() after commit()")
        self._chunks.append(bytes(data))

    def commit(self) -> "defer.Deferred[None]":
        if self._state != "writing":
            return defer.fail(
                MailError(ErrorKind.TEMP, "Message not writable", temporary=True)
            )
        self._state = "committed"
        data = b"".join(self._chunks)
        self._chunks = []
        now = self._store._clock()
        mailboxes = []
        for placement in self._placements:
            mailbox = self._store._deliveryMailbox(placement.account, placement.folder)
            # place() checked the keyword limit: a delivery never fails halfway.
            mailbox.add(self._store._newKey(), data, placement.flags, now)
            mailboxes.append(mailbox)
        for mailbox in mailboxes:
            mailbox.notify()
        return defer.succeed(None)

    def abort(self) -> None:
        if self._state == "writing":
            self._state = "aborted"
            self._chunks = []


@implementer(IMailStore)
class MemoryMailStore:
    """
    All mailboxes, in memory.

    @param clock: returns the current POSIX time; used for internal dates and
        for UIDVALIDITY (which, as in Dovecot, starts from the current time
        and is kept strictly increasing so a re-created folder never reuses
        an old value).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._accounts: dict[str, dict[str, _Mailbox]] = {}
        self._lastUidValidity = 0
        self._keys = itertools.count(1)
        self._subscriptions: dict[str, list[str]] = {}
        self._specialUse: dict[str, dict[str, str]] = {}

    def _newKey(self) -> str:
        return f"mem{next(self._keys)}"

    def _newUidValidity(self) -> int:
        self._lastUidValidity = max(int(self._clock()), self._lastUidValidity + 1)
        return self._lastUidValidity

    def _folders(self, account: str) -> tuple[str, dict[str, _Mailbox]]:
        local, domain = splitAccount(account)
        account = f"{local}@{domain}"
        folders = self._accounts.get(account)
        if folders is None:
            folders = self._accounts[account] = {}
        if INBOX not in folders:
            folders[INBOX] = _Mailbox(self._newUidValidity())
        return account, folders

    def _inbox(self, account: str) -> _Mailbox:
        return self._folders(account)[1][INBOX]

    def _deliveryMailbox(self, account: str, name: str) -> _Mailbox:
        """
        A folder to deliver into; created and subscribed if missing (see
        L{mailsrv.storage.maildir.MaildirStore._deliveryFolder}).
        """
        folders = self._folders(account)[1]
        if name not in folders:
            folders[name] = _Mailbox(self._newUidValidity())
            if name != INBOX:
                self.setSubscribed(account, name, True)
        return folders[name]

    def openFolder(self, account: str, name: str = INBOX) -> MemoryFolder:
        account, folders = self._folders(account)
        name = normalizeFolderName(name)
        mailbox = folders.get(name)
        if mailbox is None:
            raise MailError(ErrorKind.NOT_FOUND, "Mailbox does not exist")
        return MemoryFolder(self, account, name, mailbox)

    def listFolders(self, account: str) -> Sequence[str]:
        folders = self._folders(account)[1]
        return [INBOX] + sorted(n for n in folders if n != INBOX)

    def createFolder(self, account: str, name: str) -> None:
        folders = self._folders(account)[1]
        name = normalizeFolderName(name)
        if name in folders:
            raise MailError(ErrorKind.PERM, "Mailbox already exists")
        folders[name] = _Mailbox(self._newUidValidity())

    def deleteFolder(self, account: str, name: str) -> None:
        folders = self._folders(account)[1]
        name = normalizeFolderName(name)
        if name == INBOX:
            raise MailError(ErrorKind.PERM, "INBOX cannot be deleted")
        mailbox = folders.pop(name, None)
        if mailbox is None:
            raise MailError(ErrorKind.NOT_FOUND, "Mailbox does not exist")
        # Children stay (IMAP DELETE removes one name; Maildir++ does the same).
        mailbox.deleted = True
        mailbox.notify()

    def renameFolder(self, account: str, old: str, new: str) -> None:
        """
        Rename C{old} and its children to C{new}.  Renaming INBOX moves its
        messages into a new folder and leaves INBOX empty (RFC 3501).

        @raise MailError: C{NOT_FOUND} if C{old} is missing; C{PERM} if
            C{new} or one of the renamed children's new names exists, or
            C{new} is inside C{old}.
        """
        folders = self._folders(account)[1]
        old = normalizeFolderName(old)
        new = normalizeFolderName(new)
        if old not in folders:
            raise MailError(ErrorKind.NOT_FOUND, "Mailbox does not exist")
        if new in folders:
            raise MailError(ErrorKind.PERM, "Mailbox already exists")
        if new.startswith(old + "/"):
            raise MailError(ErrorKind.PERM, "Cannot rename a mailbox into itself")
        if old == INBOX:
            inbox = folders[INBOX]
            target = folders[new] = _Mailbox(self._newUidValidity())
            for msg in sorted(inbox.messages.values(), key=lambda m: m.uid):
                target.add(msg.key, msg.data, msg.flags, msg.internalDate)
            inbox.messages.clear()
            inbox.notify()
            return
        moves = [
            (name, new + name[len(old) :])
            for name in folders
            if name == old or name.startswith(old + "/")
        ]
        if any(dest in folders for _, dest in moves):
            raise MailError(ErrorKind.PERM, "Mailbox already exists")
        mailboxes = [(dest, folders.pop(src)) for src, dest in moves]
        folders.update(mailboxes)

    def subscriptions(self, account: str) -> Sequence[str]:
        return list(self._subscriptions.get(self._folders(account)[0], ()))

    def setSubscribed(self, account: str, name: str, subscribed: bool) -> None:
        names = self._subscriptions.setdefault(self._folders(account)[0], [])
        name = normalizeFolderName(name)
        if subscribed and name not in names:
            names.append(name)
        elif not subscribed and name in names:
            names.remove(name)

    def specialUse(self, account: str) -> Mapping[str, str]:
        return dict(self._specialUse.get(self._folders(account)[0], {}))

    def setSpecialUse(self, account: str, name: str, use: Optional[str]) -> None:
        uses = self._specialUse.setdefault(self._folders(account)[0], {})
        name = normalizeFolderName(name)
        if use is None:
            uses.pop(name, None)
        elif use not in SPECIAL_USES:
            raise MailError(ErrorKind.SYNTAX, "Unknown special use")
        else:
            uses[name] = use

    def startMessage(self, accounts: Sequence[str], folder: str = INBOX) -> MemoryMessageWriter:
        """
        @param folder: the folder of each account to deliver into, created
            where missing.
        @raise ValueError: if C{accounts} is empty.
        @raise MailError: C{SYNTAX} for an invalid account id or folder name.
        """
        folder = normalizeFolderName(folder)
        canonical: list[str] = []
        for account in accounts:
            local, domain = splitAccount(account)
            if f"{local}@{domain}" not in canonical:
                canonical.append(f"{local}@{domain}")
        if not canonical:
            raise ValueError("startMessage() needs at least one account")
        return MemoryMessageWriter(self, canonical, folder)
