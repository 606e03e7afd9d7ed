# -*- test-case-name: tests.test_mailbox_names -*-
"""
Mailbox names as clients write them (IMAP, and Sieve scripts, which share
IMAP's name space) and as the store keeps them (levels joined by C{/}).
"""

from __future__ import annotations

from mailsrv.errors import ErrorKind, MailError

INBOX = "INBOX"
STORE_SEPARATOR = "/"


def hierarchyToStore(name: str, delimiter: str) -> str:
    """
    The store name of a mailbox name whose levels are joined by
    C{delimiter}, with C{INBOX} matched case-insensitively as the first
    level.

    @raise MailError: C{SYNTAX} if the name cannot be stored (empty, empty
        levels, or a C{/} inside a level).
    """
    name = name.rstrip(delimiter)
    if STORE_SEPARATOR in name or not name:
        raise MailError(ErrorKind.SYNTAX, "Invalid mailbox name")
    levels = name.split(delimiter)
    if any(not level for level in levels):
        raise MailError(ErrorKind.SYNTAX, "Invalid mailbox name")
    if levels[0].upper() == INBOX:
        levels[0] = INBOX
    return STORE_SEPARATOR.join(levels)
