# -*- test-case-name: tests.protocols.test_imap -*-
"""
An account's folders in an L{IMailStore}, seen through Twisted's
C{IAccountIMAP}.

Mailbox names.  Twisted hands the account names already decoded from
modified UTF-7 (C{str}).  The IMAP hierarchy delimiter is C{.}, as Dovecot
with Maildir++ (and so docker-mailserver) shows it, so that clients moving
over see the same names; the store separates levels with C{/}.  So IMAP
C{Archive.2024} is store C{Archive/2024}; an IMAP name containing C{/}
cannot be stored and is refused, and a store folder whose name has a C{.}
inside one level cannot be shown and is left out of LIST.  C{INBOX} is
case-insensitive (RFC 3501 section 5.1), also as the first level of a
longer name.

Subscriptions are kept by the store (Dovecot's C{subscriptions} file for
Maildir) and may name folders that do not exist (RFC 3501 section 6.3.6).

Special use (RFC 6154).  The five folders every client looks for (Sent,
Drafts, Trash, Junk, Archive) are created and subscribed at login when
missing, as Dovecot's C{auto = subscribe} does in docker-mailserver, and
carry their attribute by name; C{CREATE name (USE (\\Sent))}
(RFC 6154 CREATE-SPECIAL-USE) records the attribute of any other folder in
the store.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional

from twisted.mail.imap4 import MailboxException
from twisted.mail.interfaces import IAccountIMAP, INamespacePresenter
from zope.interface import implementer

from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IMailStore, IQuota
from mailsrv.mailbox_names import STORE_SEPARATOR, hierarchyToStore
from mailsrv.protocols.imap.mailbox import DELIMITER, IMAPMailbox, RecentTracker


#: Folders created at login, with their RFC 6154 attribute.
DEFAULT_FOLDERS = {
    "Drafts": "\\Drafts",
    "Sent": "\\Sent",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}

#: Attributes CREATE-SPECIAL-USE accepts.
SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")


class MailboxError(MailboxException):
    """
    A refusal the server sends as C{NO [code] text}.

    @ivar code: the RFC 5530 response code, e.g. C{NONEXISTENT}.
    @ivar text: client-visible text.
    """

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def imapToStore(name: str) -> str:
    """
    The store name for a decoded IMAP mailbox name.

    @raise MailboxError: C{CANNOT} if the name cannot be stored.
    """
    try:
        return hierarchyToStore(name, DELIMITER)
    except MailError:
        raise MailboxError("CANNOT", "Invalid mailbox name") from None


def storeToImap(name: str) -> Optional[str]:
    """
    The IMAP name of a store folder, or L{None} if it cannot be shown.
    """
    levels = name.split(STORE_SEPARATOR)
    if any(DELIMITER in level for level in levels):
        return None
    return DELIMITER.join(levels)


def _storeError(e: MailError, notFound: str = "NONEXISTENT") -> MailboxError:
    code = {
        ErrorKind.NOT_FOUND: notFound,
        ErrorKind.NO_QUOTA: "OVERQUOTA",
        ErrorKind.TOO_BIG: "TOOBIG",
        ErrorKind.SYNTAX: "CANNOT",
        ErrorKind.TEMP: "UNAVAILABLE",
        ErrorKind.POLICY: "NOPERM",
        ErrorKind.TOO_MANY: "LIMIT",
    }.get(e.kind, "CANNOT")
    return MailboxError(code, e.message)


def patternToRegexp(pattern: str) -> "re.Pattern[str]":
    """
    A LIST pattern as a regular expression for whole names: C{*} matches
    anything, C{%} anything but the delimiter.  A leading C{INBOX} matches
    in any case.
    """
    if pattern[:5].upper() == "INBOX" and pattern[5:6] in ("", DELIMITER, "*", "%"):
        pattern = "INBOX" + pattern[5:]
    parts = []
    for piece in re.split(r"([*%])", pattern):
        if piece == "*":
            parts.append(".*")
        elif piece == "%":
            parts.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts), re.DOTALL)


class ListEntry:
    """
    What LIST needs about a mailbox, without opening it.
    """

    def __init__(self, flags: list[str]) -> None:
        self._flags = flags

    def getFlags(self) -> list[str]:
        return self._flags

    def getHierarchicalDelimiter(self) -> str:
        return DELIMITER


@implementer(IAccountIMAP, INamespacePresenter)
class IMAPAccount:
    """
    The IMAP avatar of one account.

    @ivar account: the canonical account id.
    """

    def __init__(
        self,
        store: IMailStore,
        account: str,
        tracker: RecentTracker,
        quota: Optional[IQuota] = None,
        defaultFolders: Mapping[str, str] = DEFAULT_FOLDERS,
    ) -> None:
        self.store = store
        self.account = account
        self.quota = quota
        self.defaultFolders = dict(defaultFolders)
        self._tracker = tracker

    def createDefaultFolders(self) -> None:
        """
        Create and subscribe the special-use folders that are missing.  A
        failure is not a login failure: the client can still work.
        """
        existing = set(self._storeNames())
        for name in self.defaultFolders:
            if name in existing:
                continue
            try:
                self.store.createFolder(self.account, name)
                self.store.setSubscribed(self.account, name, True)
            except MailError:
                continue

    def specialUses(self) -> Mapping[str, str]:
        """
        Store folder name -> special-use attribute: the defaults by name,
        overridden by what CREATE-SPECIAL-USE recorded.
        """
        uses = dict(self.defaultFolders)
        uses.update(self.store.specialUse(self.account))
        return uses

    def _storeNames(self) -> list[str]:
        return list(self.store.listFolders(self.account))

    def _exists(self, storeName: str) -> bool:
        return storeName in self._storeNames()

    # ----------------------------------------------------------- IAccountIMAP

    def select(self, name: str, readwrite: int = 1) -> Optional[IMAPMailbox]:
        """
        Open a mailbox, or L{None} if there is no such mailbox.
        """
        try:
            storeName = imapToStore(name)
            folder = self.store.openFolder(self.account, storeName)
        except MailboxError:
            return None
        except MailError as e:
            if e.kind in (ErrorKind.NOT_FOUND, ErrorKind.SYNTAX):
                return None
            raise _storeError(e) from None
        return IMAPMailbox(folder, storeToImap(storeName) or name, bool(readwrite), self._tracker)

    def addMailbox(self, name: str, mbox: Any = None) -> bool:
        return self.create(name)

    def create(self, pathspec: str, use: Optional[str] = None) -> bool:
        """
        Create a mailbox and any missing parents (RFC 3501 section 6.3.3),
        with the special-use attribute C{use} (RFC 6154 CREATE-SPECIAL-USE).
        """
        storeName = imapToStore(pathspec)
        if use is not None and use not in SPECIAL_USES:
            raise MailboxError("USEATTR", "Unsupported special-use attribute")
        existing = set(self._storeNames())
        if storeName in existing:
            raise MailboxError("ALREADYEXISTS", "Mailbox already exists")
        levels = storeName.split(STORE_SEPARATOR)
        try:
            for depth in range(1, len(levels) + 1):
                partial = STORE_SEPARATOR.join(levels[:depth])
                if partial not in existing:
                    self.store.createFolder(self.account, partial)
            if use is not None:
                self.store.setSpecialUse(self.account, storeName, use)
        except MailError as e:
            raise _storeError(e) from None
        return True

    def delete(self, name: str) -> None:
        storeName = imapToStore(name)
        if storeName == "INBOX":
            raise MailboxError("CANNOT", "INBOX cannot be deleted")
        names = self._storeNames()
        if storeName not in names:
            raise MailboxError("NONEXISTENT", "Mailbox doesn't exist")
        # Children stay and the name lives on as an implied \Noselect parent
        # in LIST (RFC 3501 section 6.3.4).
        try:
            self.store.deleteFolder(self.account, storeName)
        except MailError as e:
            raise _storeError(e) from None

    def rename(self, oldname: str, newname: str) -> None:
        old, new = imapToStore(oldname), imapToStore(newname)
        names = self._storeNames()
        if old not in names:
            raise MailboxError("NONEXISTENT", "Mailbox doesn't exist")
        if new in names:
            raise MailboxError("ALREADYEXISTS", "Target mailbox already exists")
        try:
            self.store.renameFolder(self.account, old, new)
        except MailError as e:
            raise _storeError(e) from None

    def isSubscribed(self, name: str) -> bool:
        try:
            storeName = imapToStore(name)
        except MailboxError:
            return False
        return storeName in self.store.subscriptions(self.account)

    def subscribe(self, name: str) -> None:
        try:
            self.store.setSubscribed(self.account, imapToStore(name), True)
        except MailError as e:
            raise _storeError(e) from None

    def unsubscribe(self, name: str) -> None:
        try:
            self.store.setSubscribed(self.account, imapToStore(name), False)
        except MailError as e:
            raise _storeError(e) from None

    def listSubscribed(self, ref: str, wildcard: str) -> list[tuple[str, ListEntry]]:
        """
        LSUB: subscribed names matching C{ref + wildcard}, existing or not
        (a missing one is C{\\Noselect}, RFC 3501 section 6.3.9).
        """
        listed = {n: e for n, e in self.listMailboxes(ref, wildcard)}
        regexp = patternToRegexp(ref + wildcard)
        result = []
        subscribed = [storeToImap(s) for s in self.store.subscriptions(self.account)]
        for name in sorted((n for n in subscribed if n is not None), key=lambda n: (n != "INBOX", n)):
            if not regexp.fullmatch(name):
                continue
            result.append((name, listed.get(name) or ListEntry(["\\Noselect"])))
        return result

    def listMailboxes(self, ref: str, wildcard: str) -> list[tuple[str, ListEntry]]:
        """
        Mailboxes matching C{ref + wildcard}, INBOX first.  Parents that only
        exist implicitly (C{A} when only C{A.B} exists) are listed with
        C{\\Noselect}.  C{LIST "" ""} asks for the delimiter (RFC 3501
        section 6.3.8) and gets the empty name.
        """
        if not wildcard:
            return [("", ListEntry(["\\Noselect"]))]
        real = [n for n in (storeToImap(s) for s in self._storeNames()) if n is not None]
        names: dict[str, bool] = {n: True for n in real}
        for n in real:
            levels = n.split(DELIMITER)
            for depth in range(1, len(levels)):
                names.setdefault(DELIMITER.join(levels[:depth]), False)
        regexp = patternToRegexp(ref + wildcard)
        result = []
        uses = {storeToImap(n): u for n, u in self.specialUses().items()}
        ordered = sorted(names, key=lambda n: (n != "INBOX", n))
        for n in ordered:
            if not regexp.fullmatch(n):
                continue
            hasChildren = any(o.startswith(n + DELIMITER) for o in names)
            flags = ["\\HasChildren" if hasChildren else "\\HasNoChildren"]
            if not names[n]:
                flags.insert(0, "\\Noselect")
            elif n in uses:
                flags.append(uses[n])
            result.append((n, ListEntry(flags)))
        return result

    # ---------------------------------------------------- INamespacePresenter

    def getPersonalNamespaces(self) -> list[list[bytes]]:
        return [[b"", DELIMITER.encode("ascii")]]

    def getSharedNamespaces(self) -> None:
        return None

    def getOtherNamespaces(self) -> None:
        return None

    def getUserNamespaces(self) -> None:
        return None


def accountFactory(
    store: IMailStore,
    quota: Optional[IQuota] = None,
    defaultFolders: Mapping[str, str] = DEFAULT_FOLDERS,
) -> Callable[[str], IMAPAccount]:
    """
    The avatar factory to register with the realm::

        realm.registerAvatarFactory(imap4.IAccount, accountFactory(store))

    All accounts made by one factory share one L{RecentTracker}, so that
    only one session reports a new message as C{\\Recent}.

    @param quota: the quotas APPEND and COPY respect, and GETQUOTA reports.
    @param defaultFolders: folder name -> special use, created at login.
    """
    tracker = RecentTracker()

    def makeAccount(account: str) -> IMAPAccount:
        avatar = IMAPAccount(store, account, tracker, quota, defaultFolders)
        avatar.createDefaultFolders()
        return avatar

    return makeAccount
