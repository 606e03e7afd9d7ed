# -*- test-case-name: tests.protocols.test_pop3 -*-
"""
The POP3 avatar: one account's maildrop (its INBOX) and the exclusive lock
RFC 1939 section 8 asks for.

The realm hands out an L{IPOP3Maildrop} for a successful POP3 login; the
service builder registers it once for all POP3 endpoints::

    realm.registerAvatarFactory(IPOP3Maildrop, maildropFactory(store))

The lock lives in this process only (a L{MaildropLocks} table), which is
enough because one mailsrv process serves every POP3 endpoint; it keeps two
POP3 sessions of the same account from numbering and deleting the same
snapshot.  IMAP sessions and deliveries are not locked out: a POP3 session
works on its snapshot and deletes by UID at QUIT, so concurrent changes do
not corrupt it.
"""

from __future__ import annotations

from typing import Callable

from zope.interface import Attribute, Interface, implementer

from mailsrv.interfaces import IMailFolder, IMailStore


class IPOP3Maildrop(Interface):
    """
    What a POP3 session gets from the realm after login.
    """

    account = Attribute("The canonical account id (C{local@domain}), a C{str}.")
    folder = Attribute("The account's INBOX, an L{IMailFolder}.")

    def lock() -> bool:
        """
        Take the exclusive maildrop lock for this session.

        @return: C{False} (and nothing taken) when another session holds it.
        """

    def unlock() -> None:
        """
        Release the lock if this maildrop holds it; safe to call twice.
        """


class MaildropLocks:
    """
    The set of accounts with an open POP3 transaction in this process.
    """

    def __init__(self) -> None:
        self._held: set[str] = set()

    def acquire(self, account: str) -> bool:
        if account in self._held:
            return False
        self._held.add(account)
        return True

    def release(self, account: str) -> None:
        self._held.discard(account)

    def isLocked(self, account: str) -> bool:
        return account in self._held


#: The table shared by every maildrop of the process unless a caller (a test)
#: passes its own.
processLocks = MaildropLocks()


@implementer(IPOP3Maildrop)
class Maildrop:
    """
    An account's INBOX with a lock from a L{MaildropLocks} table.
    """

    def __init__(self, account: str, folder: IMailFolder, locks: MaildropLocks) -> None:
        self.account = account
        self.folder = folder
        self._locks = locks
        self._locked = False

    def lock(self) -> bool:
        if self._locked:
            return True
        self._locked = self._locks.acquire(self.account)
        return self._locked

    def unlock(self) -> None:
        if self._locked:
            self._locked = False
            self._locks.release(self.account)

    def __repr__(self) -> str:
        return f"Maildrop({self.account!r})"


def maildropFactory(
    store: IMailStore, locks: MaildropLocks = processLocks
) -> Callable[[str], Maildrop]:
    """
    The avatar factory to register on the realm for L{IPOP3Maildrop}.

    The INBOX is opened when the avatar is requested, i.e. after the
    password was checked, never for an unauthenticated name.
    """

    def makeMaildrop(account: str) -> Maildrop:
        return Maildrop(account, store.openFolder(account, "INBOX"), locks)

    return makeMaildrop
