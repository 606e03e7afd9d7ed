# -*- test-case-name: tests.test_interfaces -*-
"""
Every seam of mailsrv, written as a contract.

Protocol code talks to these interfaces, never to files.  Implementations are
declared with C{@implementer} and checked with C{verifyObject} in the tests.

Conventions shared by all interfaces here:

 - Account ids are canonical addresses: C{local@domain}, domain lower-cased,
   local part lower-cased (mailsrv treats local parts case-insensitively, as
   Postfix virtual mailboxes and Dovecot do).  The L{IDirectory} produces
   them; everything else takes them as given.
 - Message bytes are always CRLF-terminated lines, already dot-unstuffed.
 - A method returning a L{Deferred} never raises synchronously; failures
   arrive as a L{mailsrv.errors.MailError} errback.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterable, Mapping, Optional, Sequence

from zope.interface import Attribute, Interface

from mailsrv.errors import ErrorKind

if TYPE_CHECKING:
    import email.message

    from twisted.internet.defer import Deferred

    from mailsrv.envelope import Address, Envelope, Session
    from mailsrv.mime import MimePart
    from mailsrv.sieve import Script
    from mailsrv.storage.commit import DeliveryJob


# --------------------------------------------------------------- directory


class IDirectory(Interface):
    """
    Who receives mail here and who may log in: local domains, accounts and
    aliases.

    Lookups are synchronous and cheap (in-memory tables); an implementation
    backed by files re-reads them when they change, at most once per lookup
    burst, so that a change made by the C{mailsrv} command is seen by the
    next connection without a restart.
    """

    def isLocalDomain(domain: str) -> bool:
        """
        Whether C{domain} (any case, no trailing dot) is delivered here.
        """

    def expandRecipient(address: str) -> Sequence[str]:
        """
        The accounts that mail for C{address} goes to, after alias expansion
        (recursive, with loop detection) and catch-all.  Empty when nobody
        here receives mail for it.  C{address} is C{local@domain} with the
        domain known to be local.
        """

    def passwordHash(account: str) -> Optional[str]:
        """
        The stored hash (C{{SCHEME}}...) for a login name, or L{None} if there
        is no such account.  The login name may differ in case from the
        canonical account id; see L{canonicalAccount}.
        """

    def canonicalAccount(login: str) -> Optional[str]:
        """
        The account id for a login name (case-insensitive), or L{None}.
        """


# ----------------------------------------------------------------- storage


@dataclasses.dataclass(frozen=True)
class MessageInfo:
    """
    What a folder knows about one message without opening it.

    @ivar uid: IMAP UID, stable for the folder's UIDVALIDITY.
    @ivar key: the backend's unique, stable name for the message (for Maildir
        the base name before C{:2,}); usable in POP3 UIDL only through
        L{IMailFolder.uidl}.
    @ivar size: size in octets with CRLF line endings (what IMAP RFC822.SIZE
        and POP3 LIST report).
    @ivar flags: IMAP system flags (C{\\Seen}...) and keywords.
    @ivar internalDate: POSIX time of delivery.
    @ivar modSeq: the RFC 7162 modification sequence: grows whenever the
        message's flags change; 0 from a backend without them (one that
        does not provide L{IIndexedFolder}).
    """

    uid: int
    key: str
    size: int
    flags: frozenset[str]
    internalDate: float
    modSeq: int = 0


@dataclasses.dataclass(frozen=True)
class MessageSummary:
    """
    What a folder's index knows about a message's contents, so that header
    requests need not open it.

    @ivar size: the CRLF size of the message it describes.
    @ivar headerSize: octets of the header block, with its empty line.
    @ivar bodyLines: lines in the body, or L{None} if not counted (large
        messages).
    @ivar fields: the indexed header fields present in the message, each as
        C{(lower-case name, raw bytes with continuation lines and CRLF)},
        in message order.
    @ivar structure: the MIME structure (L{mailsrv.mime.MimePart}) of a
        multipart or C{message/*} message, when the index has parsed it;
        L{None} for other messages (C{fields} and C{bodyLines} describe
        them) and for large ones not parsed yet (see
        L{IIndexedFolder.summaries}).
    """

    size: int
    headerSize: int
    bodyLines: Optional[int]
    fields: tuple[tuple[str, bytes], ...]
    structure: Optional["MimePart"] = None


@dataclasses.dataclass(frozen=True)
class Placement:
    """
    One copy of a delivered message: the account, its folder (store name,
    C{/} between levels) and the IMAP flags it starts with (system flags
    such as C{\\Seen}, and keywords).
    """

    account: str
    folder: str = "INBOX"
    flags: frozenset[str] = frozenset()


class IMessageWriter(Interface):
    """
    A message being stored.  Bytes go to stable storage as they arrive (no
    whole message in memory); nothing becomes visible to readers before
    L{commit} succeeds.
    """

    def write(data: bytes) -> None:
        """
        Append message bytes (CRLF lines).  May be called any number of
        times, from the reactor thread; must return quickly.
        """

    def place(placements: Sequence[Placement]) -> None:
        """
        Deliver into these destinations instead of those given to
        L{IMailStore.startMessage} (decided once the message is known, e.g.
        by a Sieve script).  At most once, after the last L{write} and
        before L{commit}.  Missing folders are created and subscribed.
        Each placement is one copy (for Maildir, one more link to the same
        file).  Keywords a folder has no room for are dropped (as Dovecot
        does).

        @raise mailsrv.errors.MailError: C{SYNTAX} for an invalid account,
            folder name or flag.
        """

    def commit() -> "Deferred[None]":
        """
        Make the message durable and visible in every destination: file
        contents and directory entries are fsync'd before the Deferred fires.
        Called at most once, after the last L{write}.
        """

    def abort() -> None:
        """
        Discard the message.  Safe to call at any time, also after a failed
        commit; a no-op after a successful one.
        """


class IDeliveryCommitter(Interface):
    """
    Does the disk work that makes a delivery durable and visible (see
    L{mailsrv.storage.commit}), away from the reactor thread.
    """

    def commit(job: "DeliveryJob") -> "Deferred[None]":
        """
        Run C{job}.  The Deferred fires once the message file and every new
        directory entry are fsync'd, or fails with the C{OSError} that
        stopped it (nothing of the message is then left behind).
        """


class IMailFolder(Interface):
    """
    One folder (IMAP mailbox) of one account.

    The view is a snapshot taken by L{refresh}; other sessions and deliveries
    change the backend between refreshes.
    """

    account = Attribute("The account id owning this folder.")
    name = Attribute("The folder name, C{INBOX} or a path using C{/} as separator.")

    def uidValidity() -> int:
        """
        The folder's UIDVALIDITY; never changes for an existing folder.
        """

    def uidNext() -> int:
        """
        The UID the next new message will get.
        """

    def refresh() -> None:
        """
        Rescan the backend, giving UIDs to new messages (persistently).
        """

    def messages() -> Sequence[MessageInfo]:
        """
        The messages as of the last L{refresh}, in ascending UID order.
        """

    def uidl(uid: int) -> str:
        """
        The POP3 unique id of a message: printable ASCII, stable across
        sessions and across flag changes.
        """

    def openMessage(uid: int) -> BinaryIO:
        """
        A binary file with the full message (CRLF lines), positioned at 0.

        @raise mailsrv.errors.MailError: C{NOT_FOUND} if it vanished.
        """

    def setFlags(uid: int, flags: Iterable[str]) -> MessageInfo:
        """
        Replace the flags of a message; returns the updated info.
        """

    def expunge(uids: Iterable[int]) -> "Deferred[None]":
        """
        Remove messages durably.  Messages already gone are ignored.
        """

    def append(
        data: bytes, flags: Iterable[str] = (), internalDate: Optional[float] = None
    ) -> "Deferred[int]":
        """
        Store a new message durably and return its UID.
        """

    def addChangeListener(listener: Callable[[], None]) -> None:
        """
        Call C{listener()} (on the reactor thread) when the folder may have
        changed because of another session or a delivery.
        """

    def removeChangeListener(listener: Callable[[], None]) -> None:
        """
        Undo L{addChangeListener}.
        """

    def transfer(
        uids: Iterable[int], target: "IMailFolder", move: bool
    ) -> "Deferred[Sequence[tuple[int, int]]]":
        """
        Copy (or, with C{move}, move) messages of this folder into
        C{target}, another folder of the same store, keeping flags and
        internal dates.  Fires, once the new messages are durable (and, for a
        move, the originals gone durably), with C{(source uid, target uid)}
        pairs in ascending source-UID order.

        Messages already gone are skipped.  A move is atomic per message:
        when two sessions move the same message at once, exactly one of them
        gets it (a crash may leave a copy in both folders, never in neither).
        """


class IIndexedFolder(Interface):
    """
    An L{IMailFolder} with a metadata index: header summaries and
    modification sequences (RFC 7162 CONDSTORE).  Its L{MessageInfo}s carry
    C{modSeq}; every flag change (by any session or process) and every
    expunge raises L{highestModSeq}, which never goes down for one
    UIDVALIDITY.
    """

    indexedFields = Attribute(
        "The lower-case header field names L{MessageSummary.fields} holds "
        "(every occurrence of each); other fields need the message itself."
    )

    def highestModSeq() -> int:
        """
        The highest MODSEQ of the folder as of the last refresh.
        """

    def vanishedSince(modSeq: int) -> Optional[Sequence[int]]:
        """
        The UIDs of messages expunged after C{modSeq} (RFC 7162 QRESYNC),
        in ascending order, as of the last refresh; L{None} when the index
        no longer knows (or never knew) every expunge since then.
        """

    def summaries(
        uids: Sequence[int], structure: bool = False
    ) -> "Deferred[Mapping[int, MessageSummary]]":
        """
        The summaries of these messages of the snapshot, building the
        missing ones (in a thread when there are many, so the reactor stays
        responsive).  Messages that vanished are left out.

        @param structure: also complete what BODYSTRUCTURE needs for large
            messages, which a plain summary leaves out (the body line count,
            the MIME structure of a multipart): the file is read once, in a
            thread, line by line, and the result kept in the index.
        """


class IMailStore(Interface):
    """
    All mailboxes of all accounts.  Folder names use C{/} as hierarchy
    separator and are validated here (no path escapes, whatever the backend).
    """

    def openFolder(account: str, name: str = "INBOX") -> IMailFolder:
        """
        @raise mailsrv.errors.MailError: C{NOT_FOUND} for a missing folder
            (INBOX always exists), C{SYNTAX} for an invalid name.
        """

    def listFolders(account: str) -> Sequence[str]:
        """
        All folder names of an account, INBOX first.
        """

    def createFolder(account: str, name: str) -> None:
        """
        @raise mailsrv.errors.MailError: C{PERM} if it exists, C{SYNTAX} if
            the name is invalid.
        """

    def deleteFolder(account: str, name: str) -> None:
        """
        @raise mailsrv.errors.MailError: C{NOT_FOUND}, or C{PERM} for INBOX.
        """

    def renameFolder(account: str, old: str, new: str) -> None:
        """
        Rename a folder and its children.
        """

    def startMessage(accounts: Sequence[str], folder: str = "INBOX") -> IMessageWriter:
        """
        Begin delivering one message into the INBOX of each account.  The
        bytes are written once; the commit makes them appear in every INBOX.

        @param folder: deliver into this folder of each account instead of
            the INBOX (C{Junk} for quarantined mail), creating and
            subscribing it where it is missing.
        """

    def subscriptions(account: str) -> Sequence[str]:
        """
        The folder names the account subscribed to (IMAP SUBSCRIBE), in any
        order; they need not exist (RFC 3501 section 6.3.6).
        """

    def setSubscribed(account: str, name: str, subscribed: bool) -> None:
        """
        Add C{name} to or remove it from the subscriptions, persistently.

        @raise mailsrv.errors.MailError: C{SYNTAX} for an invalid name.
        """

    def specialUse(account: str) -> Mapping[str, str]:
        """
        Folder name -> RFC 6154 special-use attribute (C{\\Sent}...) set with
        L{setSpecialUse}.
        """

    def setSpecialUse(account: str, name: str, use: Optional[str]) -> None:
        """
        Record (or with L{None} forget) the special use of a folder,
        persistently.
        """


class ISieveScripts(Interface):
    """
    Each account's active Sieve script (RFC 5228), which decides at final
    delivery where the account's copy of a message goes.
    """

    def hasActiveScript(account: str) -> bool:
        """
        Whether the account has an active script.  Called from the reactor
        thread for each delivery: cheap (one C{stat}).
        """

    def activeScript(account: str) -> "Deferred[Optional[Script]]":
        """
        The account's active script, compiled; L{None} when it has none,
        or when it does not compile (logged: the message is then kept in
        the INBOX, as Dovecot's Pigeonhole does).  Compiling a large
        script takes long: it happens only when the script changed, off
        the reactor thread.
        """


#: L{mailsrv.errors.MailError} reasons of L{ISieveScriptStore} refusals
#: that have no L{ErrorKind} of their own (kind C{PERM}).
SCRIPT_EXISTS = "script-exists"
SCRIPT_ACTIVE = "script-active"


class ISieveScriptStore(Interface):
    """
    Each account's Sieve scripts as ManageSieve (RFC 5804) manages them:
    any number of named scripts, at most one of them active.  The active
    one is what L{ISieveScripts} runs at delivery.

    Encodings: script names are C{str} as the client sent them (UTF-8 on
    the wire), checked by the store: RFC 5804 section 1.6 (no control
    characters, no line or paragraph separator) plus path safety (no
    C{/}, not C{.} or C{..}, a length limit); the store neither
    case-folds nor normalises them.  Contents are C{bytes}, the script as
    the client sent it; the store does not parse them (the protocol checks
    a script before L{putScript}).

    Every method returns a L{Deferred} and does its disk work off the
    reactor thread; calls for one account are serialised, so two sessions
    of one user cannot interleave a rename with an activation.  Failures
    are L{mailsrv.errors.MailError}s whose message is client-visible:

     - C{SYNTAX}: an invalid name;
     - C{NOT_FOUND}: no script of that name;
     - C{PERM} with reason L{SCRIPT_EXISTS}: the new name is taken;
     - C{PERM} with reason L{SCRIPT_ACTIVE}: the active script cannot be
       deleted;
     - C{TOO_MANY}: one script more than C{maxScripts};
     - C{TOO_BIG}: a script larger than C{maxScriptSize};
     - C{TEMP}: local trouble (disk, an unexpected file where a script or
       the active link should be).
    """

    maxScripts = Attribute("Scripts an account may have, an C{int}; 0 for no limit.")
    maxScriptSize = Attribute("Largest script in octets, an C{int}.")

    def listScripts(account: str) -> "Deferred[Sequence[tuple[str, bool]]]":
        """
        The account's scripts as C{(name, active)} pairs, sorted by name;
        at most one is active.  An account without scripts (or without a
        directory yet) has none.
        """

    def getScript(account: str, name: str) -> "Deferred[bytes]":
        """
        The content of a script.
        """

    def checkSpace(account: str, name: str, size: int) -> "Deferred[None]":
        """
        Whether L{putScript} of C{size} octets under C{name} would fit the
        limits (RFC 5804 HAVESPACE); fails as L{putScript} would.
        Advisory: another session may use the room meanwhile.
        """

    def putScript(account: str, name: str, content: bytes) -> "Deferred[None]":
        """
        Store a script, replacing one of the same name (also the active
        one, which then stays active with the new content).  Atomic (a
        reader sees the old or the new content, never a mix) and durable:
        the content and the directory entry are fsync'd before the
        Deferred fires.
        """

    def deleteScript(account: str, name: str) -> "Deferred[None]":
        """
        Remove a script, durably.  The active script is refused
        (C{PERM}, L{SCRIPT_ACTIVE}).
        """

    def renameScript(account: str, old: str, new: str) -> "Deferred[None]":
        """
        Rename a script; if it is the active one it stays active under the
        new name, with no instant at which no script is active.
        """

    def setActive(account: str, name: str) -> "Deferred[Optional[str]]":
        """
        Make C{name} the active script, or with C{""} leave none active.
        Activation is atomic.

        @return: (in the Deferred) the name under which an active script
            that was not one of the account's scripts (a file put in place
            by other means) was kept, so that nothing is lost; L{None}
            when there was none.
        """


class ISpamReports(Interface):
    """
    What users say about mail by moving it: into their Junk folder (spam),
    or out of it (ham), for a spam filter to learn from.
    """

    def messagesMoved(source: IMailFolder, destination: IMailFolder, uids: Sequence[int]) -> None:
        """
        Messages were copied or moved (IMAP COPY, MOVE) from C{source} into
        C{destination}, where they now have C{uids}.  Called once the
        transfer succeeded; must not block nor fail: reporting is the
        implementation's to do in the background and to log.
        """


class IQuota(Interface):
    """
    Storage quotas per account (Dovecot's C{dovecot-quotas.cf} in the file
    backend).  Delivery and IMAP APPEND/COPY ask before storing; the check
    is advisory under concurrency (two appends racing may both pass).
    """

    def limit(account: str) -> Optional[int]:
        """
        The account's storage limit in octets, or L{None} for no limit.
        """

    def usage(account: str) -> "Deferred[int]":
        """
        Octets the account's messages take now (all folders).
        """


# ---------------------------------------------------------------- delivery


class IDelivery(Interface):
    """
    One message on its way to a target.  Calls come in this order:
    L{checkSender} (once, awaited), L{addRecipient} (one or more times, each
    awaited), L{write} (any number of times), then exactly one of
    L{commit} or L{abort}.  L{abort} may come at any point.
    """

    def checkSender() -> "Deferred[None]":
        """
        Decide on the reverse path of the envelope given to
        L{IDeliveryTarget.startDelivery}, or fail with a
        L{mailsrv.errors.MailError} saying why it is refused.
        """

    def addRecipient(recipient: "Address") -> "Deferred[None]":
        """
        Accept one recipient, or fail with a L{mailsrv.errors.MailError}
        saying why not (the protocol maps it to a reply).  A failed
        recipient is not part of the delivery.
        """

    def write(data: bytes) -> None:
        """
        Message bytes: CRLF lines, dot-unstuffed, in order, headers first.
        Must not block; the target streams them to storage.
        """

    def commit() -> "Deferred[None]":
        """
        Fires once the message is durable for every accepted recipient; only
        then may the protocol acknowledge it.  Fails with a MailError.
        """

    def abort() -> None:
        """
        Forget the message; nothing acknowledged is affected.
        """


class IDeliveryTarget(Interface):
    """
    Somewhere a message can go: local mailboxes, the outbound queue, or a
    pipeline that decides between them.
    """

    def startDelivery(session: "Session", envelope: "Envelope") -> IDelivery:
        """
        Begin a delivery for a transaction whose MAIL FROM was accepted.  Must
        not touch disk before the first L{IDelivery.write}.
        """


class IConnectionPolicy(Interface):
    """
    Decides, when a client connects, whether it may talk to us at all
    (DNSBL, connection limits, bans).
    """

    def checkConnection(session: "Session") -> "Deferred[None]":
        """
        Fires when the client may proceed; fails with a
        L{mailsrv.errors.MailError} (whose message is shown in a 554 or 421
        greeting) when it may not.
        """


class ISenderPolicy(Interface):
    """
    Decides whether a session may use a reverse path (MAIL FROM).
    """

    def checkSender(session: "Session", sender: Optional["Address"]) -> None:
        """
        @raise mailsrv.errors.MailError: if the sender is refused.
        """


# ---------------------------------------------------------------- identity


class IAuthenticatedUser(Interface):
    """
    The avatar of a successful login on SMTP submission: who sent the mail.
    IMAP and POP3 ask the same realm for their own avatar interfaces.
    """

    account = Attribute("The canonical account id (C{local@domain}).")


# ----------------------------------------------------------------- filters


class FilterAction(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"  # permanent refusal (5xx)
    TEMPFAIL = "tempfail"  # try again later (4xx)
    QUARANTINE = "quarantine"  # accept, but deliver into the Junk folder


@dataclasses.dataclass(frozen=True)
class FilterResult:
    """
    What a filter found.  Filters report; the pipeline decides (the first
    REJECT or TEMPFAIL wins, QUARANTINE is remembered, headers of every
    filter are added).

    @ivar reply: client-visible text for REJECT/TEMPFAIL (generic; details
        go to the log).
    @ivar addHeaders: complete header fields (C{Name: value}, no CRLF) to
        prepend to the message.
    @ivar kind: the error kind of a REJECT or TEMPFAIL when it is not the
        usual L{ErrorKind.REJECTED} (a virus is refused as C{POLICY}, 554).
    @ivar reason: the refusal's reason in logs and metrics when the
        filter's name is not precise enough (C{spf}, C{dmarc}).
    """

    action: FilterAction = FilterAction.ACCEPT
    reply: Optional[str] = None
    addHeaders: tuple[str, ...] = ()
    kind: Optional[ErrorKind] = None
    reason: Optional[str] = None


ACCEPT = FilterResult()


class IMessageContent(Interface):
    """
    A received message, spooled, as the filters and modifiers see it.
    """

    size = Attribute("Size in octets of the whole message (header block and body).")
    headerBlock = Attribute(
        "The raw header section (C{bytes}), CRLF lines, without the empty line "
        "that separates it from the body."
    )

    def headers() -> "email.message.Message":
        """
        The header section parsed by the standard library (compat32 policy).
        """

    def open() -> BinaryIO:
        """
        The whole message (header block, empty line, body) as a binary file
        positioned at 0.  The caller closes it.
        """


class IFilter(Interface):
    """
    A check on incoming mail.  Every stage returns a L{FilterResult}
    (or a Deferred of one); a stage a filter does not care about returns
    L{ACCEPT}.  Filters must not modify anything.
    """

    name = Attribute("Short name for logs and config (C{spf}, C{clamav}...).")

    def checkConnection(session: "Session") -> "Deferred[FilterResult]":
        """
        At connect, before the greeting.
        """

    def checkSender(session: "Session", envelope: "Envelope") -> "Deferred[FilterResult]":
        """
        After MAIL FROM.
        """

    def checkRecipient(session: "Session", envelope: "Envelope", recipient: "Address") -> "Deferred[FilterResult]":
        """
        After each RCPT TO that routing accepted.
        """

    def checkMessage(
        session: "Session", envelope: "Envelope", message: IMessageContent
    ) -> "Deferred[FilterResult]":
        """
        After the end of data, before the message is stored.
        """


@dataclasses.dataclass(frozen=True)
class HeaderEdit:
    """
    How a modifier changes the header section.

    @ivar prepend: fields (C{Name: value}, folded with CRLF+WSP if long, no
        final CRLF) put on top of the header section, in order.
    @ivar append: fields added at the end of the header section.
    @ivar remove: predicate on (lower-case field name, raw field bytes
        including continuation lines) telling which existing fields to drop.
    """

    prepend: tuple[str, ...] = ()
    append: tuple[str, ...] = ()
    remove: Optional[Callable[[str, bytes], bool]] = None


class IModifier(Interface):
    """
    Changes the header section of a message after the filters accepted it
    (adding Message-ID/Date, DKIM signing, removing forged headers).
    Modifiers run in order; each sees the result of the previous ones.
    """

    def modify(session: "Session", envelope: "Envelope", message: IMessageContent) -> "Deferred[HeaderEdit]":
        """
        Return the edit to apply, or fail with a L{mailsrv.errors.MailError}
        to refuse the message.
        """
