# -*- test-case-name: tests.sieve.test_interpreter -*-
"""
L{MessageContext}: everything a script may look at for one message and
one recipient.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Callable, Optional


def _everyMailboxExists(name: str) -> bool:
    return True


@dataclasses.dataclass(frozen=True)
class MessageContext:
    """
    One message as seen by the script run for one recipient.

    @ivar envelopeFrom: the reverse path, C{""} for the null sender C{<>}.
    @ivar envelopeTo: the recipient this evaluation is for (the final
        account address, e.g. C{alice@example.test}); the envelope test's
        C{"to"}.
    @ivar originalRecipient: the address given in RCPT TO before alias
        expansion (may equal C{envelopeTo}).
    @ivar header: the raw header section, up to and including the empty
        line, with CRLF line endings.
    @ivar size: the message size in octets (the size test).
    @ivar body: the raw body (after the empty line), possibly truncated; with
        L{None} a body test is a runtime error.
    @ivar mailboxExists: whether a mailbox exists, for the mailbox
        extension's mailboxexists test; the name is given as the script
        wrote it.
    @ivar now: the current time for currentdate, and the local time zone of
        the date tests (by its offset); L{None} means
        C{datetime.now(timezone.utc)} in the server's local zone.  A naive
        value is taken as UTC.
    """

    envelopeFrom: str
    envelopeTo: str
    originalRecipient: str
    header: bytes
    size: int
    body: Optional[bytes] = None
    mailboxExists: Callable[[str], bool] = _everyMailboxExists
    now: Optional[datetime] = None
