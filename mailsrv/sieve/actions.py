# -*- test-case-name: tests.sieve.test_interpreter -*-
"""
The actions a script leaves for the delivery agent to carry out, as frozen
data.

Mailbox names are passed through as the script wrote them (C{"Lists/Python"}
or C{"INBOX.Lists"}); mapping them to the store's names and hierarchy
separator is the delivery agent's business.  Flags are sets of IMAP flag
strings: the system flags spelt C{\\Seen}, C{\\Answered}, C{\\Flagged},
C{\\Deleted}, C{\\Draft}, keywords as the script gave them.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Optional, Union


@dataclasses.dataclass(frozen=True)
class Keep:
    """
    Deliver to the INBOX (an explicit keep, the implicit keep, or a
    fileinto "INBOX").
    """

    flags: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class FileInto:
    """
    Deliver to a mailbox.

    @ivar create: create the mailbox if it does not exist (RFC 5490
        C{:create}); without it a missing mailbox means the delivery agent
        keeps the message in the INBOX instead.
    @ivar copy: the script used C{:copy}; informative only, as its effect
        on the implicit keep has already been applied.
    """

    mailbox: str
    flags: frozenset[str] = frozenset()
    create: bool = False
    copy: bool = False


@dataclasses.dataclass(frozen=True)
class Redirect:
    """
    Forward the message, unchanged, to C{address} (a bare addr-spec).

    @ivar copy: the script used C{:copy} (informative, see L{FileInto}).
    """

    address: str
    copy: bool = False


@dataclasses.dataclass(frozen=True)
class Discard:
    """
    The script ran C{discard}.  It delivers nothing and only cancelled the
    implicit keep: other actions in the same list are still to be carried
    out (RFC 5228 section 4.4).  It is in the list so the delivery agent can
    log that the message was discarded when no other action delivers it.
    """


@dataclasses.dataclass(frozen=True)
class Vacation:
    """
    Send an automatic reply (RFC 5230), if L{mailsrv.sieve.vacation.vacationApplies}
    agrees and no reply was sent to this sender for this handle within the
    period.

    @ivar reason: the reply's text (or, with C{mime}, a MIME entity).
    @ivar subject: the reply's subject, or L{None} for the default.
    @ivar fromAddress: the reply's From, or L{None} for the user's address.
    @ivar addresses: more addresses of the user (C{:addresses}).
    @ivar days: the period in days (C{:days}, default 7, at least 1); when
        the script used C{:seconds}, those seconds rounded up to days.
    @ivar handle: what identifies this reply for the once-per-period rule:
        C{:handle} when given, else a digest of the reply's arguments (RFC
        5230 section 4.2).
    @ivar mime: C{reason} is a MIME entity (C{:mime}).
    @ivar seconds: the period in seconds when the script used C{:seconds}
        (RFC 6131; 0 means reply to every message), else L{None}.
    """

    reason: str
    subject: Optional[str]
    fromAddress: Optional[str]
    addresses: tuple[str, ...]
    days: int
    handle: str
    mime: bool
    seconds: Optional[int] = None

    def period(self) -> timedelta:
        """
        How long to wait before replying to the same sender again.
        """
        if self.seconds is not None:
            return timedelta(seconds=self.seconds)
        return timedelta(days=self.days)


Action = Union[Keep, FileInto, Redirect, Discard, Vacation]
