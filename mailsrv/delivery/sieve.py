# -*- test-case-name: tests.test_delivery_sieve -*-
"""
What an account's Sieve actions mean for its copy of a message: the
placements (folder and flags) in its mailbox, the addresses it is
redirected to, and a vacation reply to consider.

Pure: the caller (L{mailsrv.delivery.local}) does the storing and sending.
Failures follow RFC 5228 section 2.10.6 and Pigeonhole: whatever cannot be
done as the script says ends up kept in the default folder (the INBOX, or
C{Junk} for quarantined mail), and is logged for the operator.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

from twisted.logger import Logger

from mailsrv.errors import MailError
from mailsrv.interfaces import Placement
from mailsrv.mailbox_names import hierarchyToStore
from mailsrv.sieve import Discard, FileInto, Keep, Redirect, Vacation
from mailsrv.storage.validation import normalizeFlags

log = Logger()

#: Sieve scripts name mailboxes in the IMAP name space, whose hierarchy
#: delimiter mailsrv's IMAP server announces as ".".
SIEVE_DELIMITER = "."

#: Trace field added to redirected mail; a message that already carries it
#: for the same account is not redirected again (a loop between scripts).
REDIRECTED_FROM = "X-Sieve-Redirected-From"

#: Redirected at most this many times in all, whoever did it.
MAX_REDIRECT_HOPS = 5


@dataclasses.dataclass
class AccountOutcome:
    """
    @ivar placements: the account's copies (none: discarded).
    @ivar redirects: addresses to send the message to.
    @ivar vacation: the vacation action, if the script took one.
    """

    placements: list[Placement] = dataclasses.field(default_factory=list)
    redirects: list[str] = dataclasses.field(default_factory=list)
    vacation: Optional[Vacation] = None


def redirectedFrom(headerBlock: bytes) -> list[str]:
    """
    The accounts named by the message's L{REDIRECTED_FROM} fields,
    lower-cased.
    """
    prefix = REDIRECTED_FROM.lower().encode("ascii") + b":"
    found = []
    for line in headerBlock.split(b"\r\n"):
        if line.lower().startswith(prefix):
            found.append(line[len(prefix) :].strip().decode("utf-8", "replace").lower())
    return found


def outcomeFor(
    account: str,
    actions: Sequence[object],
    *,
    defaultFolder: str,
    folderExists: Callable[[str], bool],
    headerBlock: bytes,
    context: dict[str, object],
) -> AccountOutcome:
    """
    Turn a script's final actions (implicit keep resolved) into what to do.

    @param defaultFolder: where C{keep} puts the message.
    @param folderExists: whether a store folder of the account exists
        (C{fileinto} without C{:create} into a missing one keeps instead,
        as Pigeonhole does unless told to create mailboxes).
    @param context: log fields (C{msgId}, ...).
    """
    outcome = AccountOutcome()
    keepFallback = False
    loops = redirectedFrom(headerBlock)
    for action in actions:
        if isinstance(action, Keep):
            outcome.placements.append(Placement(account, defaultFolder, storableFlags(action.flags, context)))
        elif isinstance(action, FileInto):
            placement = _fileInto(account, action, folderExists, context)
            if placement is None:
                keepFallback = True
            else:
                outcome.placements.append(placement)
        elif isinstance(action, Redirect):
            if account.lower() in loops or len(loops) >= MAX_REDIRECT_HOPS:
                log.warn(
                    "Sieve redirect of mail for {account} to {address} not done: "
                    "the message was redirected {hops} times already (a loop?); kept instead",
                    account=account,
                    address=action.address,
                    hops=len(loops),
                    **context,
                )
                keepFallback = True
            else:
                outcome.redirects.append(action.address)
        elif isinstance(action, Vacation):
            outcome.vacation = action
        elif isinstance(action, Discard):
            pass
        else:
            log.warn(
                "Sieve action {action!r} for {account} is not supported; message kept",
                action=action,
                account=account,
                **context,
            )
            keepFallback = True
    if keepFallback and not any(p.folder == defaultFolder for p in outcome.placements):
        outcome.placements.append(Placement(account, defaultFolder))
    return outcome


def _fileInto(
    account: str, action: FileInto, folderExists: Callable[[str], bool], context: dict[str, object]
) -> Optional[Placement]:
    try:
        folder = hierarchyToStore(action.mailbox, SIEVE_DELIMITER)
    except MailError:
        log.warn(
            "Sieve fileinto {mailbox!r} for {account}: not a valid mailbox name; message kept",
            mailbox=action.mailbox,
            account=account,
            **context,
        )
        return None
    if not action.create and not folderExists(folder):
        log.info(
            "Sieve fileinto {mailbox!r} for {account}: no such mailbox (use :create to create it); message kept",
            mailbox=action.mailbox,
            account=account,
            **context,
        )
        return None
    return Placement(account, folder, storableFlags(action.flags, context))


def storableFlags(flags: frozenset[str], context: dict[str, object]) -> frozenset[str]:
    """
    The flags a message can be stored with; others (an unknown system flag,
    a keyword that is not an IMAP atom) are left out and logged.
    """
    kept = set()
    for flag in flags:
        try:
            kept |= normalizeFlags([flag])
        except MailError:
            log.info("Sieve flag {flag!r} cannot be stored; left out", flag=flag, **context)
    return frozenset(kept)
