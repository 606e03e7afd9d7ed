# -*- test-case-name: tests.protocols.test_imap -*-
"""
An L{IMailFolder} seen through Twisted's C{IMailboxIMAP}.

The mailbox keeps the session's view: the list of messages in
message-sequence-number order as the client knows it.  The backend changes
under it (deliveries, other sessions); L{IMAPMailbox.sync} folds those
changes into the view and says what to tell the client, because RFC 3501
forbids renumbering messages without telling the client (EXPUNGE).  The
server reports before the tagged reply of every command, but must not send
EXPUNGE after FETCH, STORE or SEARCH (section 7.4.1): the client may have
sent sequence numbers that such an EXPUNGE would shift.  So a message
expunged elsewhere can stay in the view as a I{ghost} (its number still
valid, its data gone) until a command that may announce it; FETCH, STORE,
SEARCH, COPY and MOVE skip ghosts.

C{\\Recent} is approximated per process: a L{RecentTracker} shared by all
sessions on one store remembers the highest UID that some session has
already been shown as recent; a read-write SELECT claims the messages above
it.  After a restart every message counts as recent once.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime
from typing import Any, BinaryIO, Iterable, Optional, Sequence, Union

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.mail.imap4 import MessageSet, ReadOnlyMailbox, statusRequestHelper
from twisted.mail.interfaces import ICloseableMailboxIMAP, IMailboxIMAP, IMessageIMAPCopier
from zope.interface import implementer

from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import IMailFolder, MessageInfo
from mailsrv.protocols.imap.message import IMAPMessage

DELIMITER = "."

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")

RecentKey = tuple[str, str, int]


class RecentTracker:
    """
    Which messages some session has already reported as C{\\Recent}: the
    highest such UID per C{(account, folder, UIDVALIDITY)}.  One instance per
    store, shared by all sessions of the process.
    """

    def __init__(self) -> None:
        self._claimed: dict[RecentKey, int] = {}

    def watermark(self, key: RecentKey) -> int:
        return self._claimed.get(key, 0)

    def claim(self, key: RecentKey, uid: int) -> None:
        if uid > self._claimed.get(key, 0):
            self._claimed[key] = uid


class Expunged(list):  # type: ignore[type-arg]
    """
    The sequence numbers to announce with C{EXPUNGE}, each valid when sent
    in order, and (C{uids}) the UIDs of those messages, for the
    C{VANISHED} that replaces them once QRESYNC is enabled (RFC 7162).
    """

    def __init__(self, seqs: Iterable[int] = (), uids: Iterable[int] = ()) -> None:
        super().__init__(seqs)
        self.uids: list[int] = sorted(uids)


def uidRanges(uids: Iterable[int]) -> list[tuple[int, int]]:
    """
    Ascending C{(low, high)} ranges covering exactly C{uids}.
    """
    ranges: list[tuple[int, int]] = []
    for uid in sorted(set(uids)):
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], uid)
        else:
            ranges.append((uid, uid))
    return ranges


def rangesText(ranges: Sequence[tuple[int, int]]) -> bytes:
    return b",".join(b"%d" % (a,) if a == b else b"%d:%d" % (a, b) for a, b in ranges)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


@dataclasses.dataclass
class SyncResult:
    """
    What changed since the view was last synchronised, in the order the
    client must hear it.

    @ivar expunged: sequence numbers to announce with C{EXPUNGE}, each valid
        at the moment it is sent (so ascending numbers are already adjusted).
    @ivar flags: sequence number (after the expunges) to new flags.
    @ivar exists: the new message count if messages arrived, else L{None}.
    @ivar recent: the new recent count when C{exists} is set.
    """

    expunged: Expunged = dataclasses.field(default_factory=Expunged)
    flags: dict[int, list[str]] = dataclasses.field(default_factory=dict)
    modSeqs: dict[int, int] = dataclasses.field(default_factory=dict)
    exists: Optional[int] = None
    recent: int = 0


def parseAppendDate(date: Union[bytes, str, None]) -> Optional[float]:
    """
    The APPEND date-time (C{"17-Jul-1996 02:44:25 -0700"}) as POSIX time.

    @raise ValueError: if it is not in that form.
    """
    if date is None:
        return None
    text = date.decode("ascii") if isinstance(date, bytes) else date
    return datetime.datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S %z").timestamp()


def _setLast(messages: MessageSet, last: int) -> None:
    try:
        messages.last = last
    except ValueError:
        pass  # already set by the caller


_CANONICAL = {f.lower(): f for f in SYSTEM_FLAGS}


def _storableFlags(flags: Iterable[str]) -> set[str]:
    """
    Flags a client may set: system flags in their canonical spelling (they
    are case-insensitive), keywords as given; never C{\\Recent}, which is
    the server's to set (RFC 3501 section 2.3.2).
    """
    return {_CANONICAL.get(f.lower(), f) for f in flags if f.lower() != "\\recent"}


@implementer(IMailboxIMAP, ICloseableMailboxIMAP, IMessageIMAPCopier)
class IMAPMailbox:
    """
    One folder as opened by one session.

    @ivar folder: the backend folder.
    @ivar name: the IMAP name (decoded, C{.} delimiter).
    """

    def __init__(
        self, folder: IMailFolder, name: str, writeable: bool, tracker: RecentTracker
    ) -> None:
        self.folder = folder
        self.name = name
        self._writeable = writeable
        self._tracker = tracker
        self._key: RecentKey = (folder.account, folder.name, folder.uidValidity())
        folder.refresh()
        self._infos: list[MessageInfo] = list(folder.messages())
        watermark = tracker.watermark(self._key)
        self._recent = {i.uid for i in self._infos if i.uid > watermark}
        self._listeners: list[Any] = []
        self.changed = False
        # The backend snapshot the view was last compared with: a refresh
        # that returns the same object found nothing new, so the per-command
        # sync of a large folder costs no comparison.
        self._seen: Optional[Sequence[MessageInfo]] = None
        # Ghosts: UIDs in the view whose message is gone from the backend but
        # whose EXPUNGE the client has not been sent yet.
        self._gone: set[int] = set()
        # UIDs whose flags changed in the backend and have not been reported.
        self._flagsChanged: set[int] = set()
        # The message count the client knows (the last EXISTS, minus the
        # EXPUNGEs sent since).
        self._known = len(self._infos)

    # ------------------------------------------------------------ session view

    def claimRecent(self) -> None:
        """
        Make this session the one that reports the current recent messages
        (a read-write SELECT); EXAMINE and STATUS only look.
        """
        if self._writeable and self._infos:
            self._tracker.claim(self._key, self._infos[-1].uid)

    def _folderChanged(self) -> None:
        self.changed = True
        for listener in list(self._listeners):
            notify = getattr(listener, "mailboxChanged", None)
            if notify is not None:
                notify(self)

    def sync(self, allowExpunge: bool = True) -> SyncResult:
        """
        Fold backend changes into the view and report what the client has
        not heard yet: flag changes, new messages and, if C{allowExpunge},
        expunges.  Without C{allowExpunge}, messages gone from the backend
        stay in the view as ghosts (their sequence numbers keep counting)
        and are announced by a later call.
        """
        self.changed = False
        self.folder.refresh()
        snapshot = self.folder.messages()
        if snapshot is not self._seen:
            self._seen = snapshot
            self._merge(snapshot)
        return self._report(allowExpunge)

    def _merge(self, snapshot: Sequence[MessageInfo]) -> None:
        """
        Update the view from a backend snapshot: remember ghosts and flag
        changes, append new messages.
        """
        current = {i.uid: i for i in snapshot}
        infos = self._infos
        for position, info in enumerate(infos):
            now = current.get(info.uid)
            if now is None:
                self._gone.add(info.uid)
            elif now is not info and (now.flags != info.flags or now.modSeq != info.modSeq):
                infos[position] = now
                self._flagsChanged.add(info.uid)
        lastUid = infos[-1].uid if infos else 0
        new = sorted((i for i in snapshot if i.uid > lastUid), key=lambda i: i.uid)
        if new:
            watermark = self._tracker.watermark(self._key)
            self._recent.update(i.uid for i in new if i.uid > watermark)
            infos.extend(new)
            self.claimRecent()

    def _report(self, allowExpunge: bool) -> SyncResult:
        """
        What to tell the client now, in order: EXPUNGEs (when allowed), flag
        changes by their sequence numbers after those, then EXISTS/RECENT
        if the count the client knows went up.
        """
        result = SyncResult()
        if allowExpunge and self._gone:
            result.expunged = self._forget(self._gone)
            self._gone = set()
        if self._flagsChanged:
            pending = self._flagsChanged - self._gone
            self._flagsChanged &= self._gone
            for seq, info in enumerate(self._infos, 1):
                if info.uid in pending:
                    result.flags[seq] = self._message(info).getFlags()
                    result.modSeqs[seq] = info.modSeq
        if len(self._infos) > self._known:
            # EXPUNGE already told the client the count went down; EXISTS is
            # only needed when it goes up.
            self._known = len(self._infos)
            result.exists = self._known
            result.recent = len(self._recent)
        return result

    def hasGhosts(self) -> bool:
        """
        Whether some message of the view is a ghost (see L{isGone}); lets
        FETCH and SEARCH skip the per-message check in the usual case.
        """
        return bool(self._gone)

    def isGone(self, uid: int) -> bool:
        """
        Whether message C{uid} is a ghost: expunged elsewhere, not yet
        announced to this session.
        """
        return uid in self._gone

    def markGone(self, uid: int) -> None:
        """
        Record that message C{uid} was found missing while being read or
        changed; the next sync that may announce expunges does.
        """
        if any(info.uid == uid for info in self._infos):
            self._gone.add(uid)

    def _message(self, info: MessageInfo) -> IMAPMessage:
        return IMAPMessage(self.folder, info, info.uid in self._recent)

    def _select(self, messages: MessageSet, uid: bool) -> list[tuple[int, MessageInfo]]:
        """
        The C{(sequence number, info)} pairs of a sequence or UID set, in
        sequence order: each range is a slice of the view (UIDs ascend in
        it, so UID ranges are found by bisection), not a test per message,
        which on a large folder cost more than the FETCH itself.
        """
        infos = self._infos
        if uid:
            _setLast(messages, infos[-1].uid if infos else 0)
            uids = [i.uid for i in infos]
        else:
            _setLast(messages, len(infos))
        positions: list[int] = []
        for low, high in messages.ranges:
            if low > high:
                low, high = high, low
            if uid:
                positions.extend(range(bisect.bisect_left(uids, low), bisect.bisect_right(uids, high)))
            else:
                positions.extend(range(max(low, 1) - 1, min(high, len(infos))))
        if len(messages.ranges) > 1:
            positions = sorted(set(positions))
        return [(p + 1, infos[p]) for p in positions]

    def firstUnseen(self) -> Optional[int]:
        for seq, info in enumerate(self._infos, 1):
            if "\\Seen" not in info.flags:
                return seq
        return None

    def isSelectedFolder(self, other: "IMAPMailbox") -> bool:
        return self._key == other._key

    # -------------------------------------------------------- IMailboxIMAPInfo

    def getFlags(self) -> list[str]:
        keywords = set()
        # Backends share one frozenset per distinct flag combination.
        for flags in {id(i.flags): i.flags for i in self._infos}.values():
            keywords.update(f for f in flags if not f.startswith("\\"))
        return list(SYSTEM_FLAGS) + sorted(keywords)

    def getHierarchicalDelimiter(self) -> str:
        return DELIMITER

    # ------------------------------------------------------------ IMailboxIMAP

    def getUIDValidity(self) -> int:
        return self.folder.uidValidity()

    def getUIDNext(self) -> int:
        return self.folder.uidNext()

    def highestModSeq(self) -> Optional[int]:
        """
        The folder's RFC 7162 HIGHESTMODSEQ, or L{None} when the backend
        keeps no MODSEQs (then the mailbox is C{NOMODSEQ}).
        """
        highest = getattr(self.folder, "highestModSeq", None)
        if highest is None:
            return None
        # Never 0 on the wire: RFC 7162 MODSEQs are positive.
        return max(int(highest()), 1)

    def getUID(self, message: int) -> int:
        return self._infos[message - 1].uid

    def getMessageCount(self) -> int:
        return len(self._infos)

    def getRecentCount(self) -> int:
        return len(self._recent)

    def getUnseenCount(self) -> int:
        return sum(1 for i in self._infos if "\\Seen" not in i.flags)

    def isWriteable(self) -> bool:
        return self._writeable

    def destroy(self) -> None:
        raise NotImplementedError("folders are deleted through the account")

    def requestStatus(self, names: Iterable[str]) -> dict[str, int]:
        names = list(names)
        wantsModSeq = "HIGHESTMODSEQ" in names
        result = statusRequestHelper(self, [n for n in names if n != "HIGHESTMODSEQ"])
        if wantsModSeq:
            result["HIGHESTMODSEQ"] = self.highestModSeq() or 0
        return result

    def addListener(self, listener: Any) -> None:
        if not self._listeners:
            self.folder.addChangeListener(self._folderChanged)
        self._listeners.append(listener)

    def removeListener(self, listener: Any) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
            if not self._listeners:
                self.folder.removeChangeListener(self._folderChanged)

    def addMessage(
        self,
        message: Union[bytes, BinaryIO],
        flags: Iterable[Union[str, bytes]] = (),
        date: Union[bytes, str, None] = None,
    ) -> "Deferred[int]":
        """
        Store a message durably (C{IMailFolder.append}); fires with its UID.
        The session view learns about it at the next L{sync}.
        """
        data = message if isinstance(message, bytes) else message.read()
        textFlags = [f.decode("ascii") if isinstance(f, bytes) else f for f in flags]
        return maybeDeferred(
            self.folder.append, data, sorted(_storableFlags(textFlags)), parseAppendDate(date)
        )

    def expunge(self, uids: Optional[MessageSet] = None) -> "Deferred[Expunged]":
        """
        Remove the messages flagged C{\\Deleted} (only those in C{uids}, a
        UID set, for UIDPLUS C{UID EXPUNGE}); fires with the sequence
        numbers to announce, each valid when sent in order.
        """
        if not self._writeable:
            raise ReadOnlyMailbox()
        if uids is not None:
            candidates = [i for _, i in self._select(uids, True)]
        else:
            candidates = self._infos
        # Ghosts are announced by the sync after this command, not here.
        doomed = [i.uid for i in candidates if "\\Deleted" in i.flags and i.uid not in self._gone]
        if not doomed:
            return succeed(Expunged())
        return maybeDeferred(self.folder.expunge, doomed).addCallback(
            lambda _: self._forget(set(doomed))
        )

    def _forget(self, gone: set[int]) -> Expunged:
        """
        Drop messages from the view; the sequence numbers to announce with
        EXPUNGE, each valid at the moment it is sent (and their UIDs).
        """
        announced = []
        uids = []
        kept = []
        for seq, info in enumerate(self._infos, 1):
            if info.uid in gone:
                announced.append(seq - len(announced))
                uids.append(info.uid)
                self._recent.discard(info.uid)
            else:
                kept.append(info)
        self._infos = kept
        self._known -= len(announced)
        self._gone -= gone
        self._flagsChanged -= gone
        return Expunged(announced, uids)

    def vanishedSince(self, modSeq: int, within: Optional[MessageSet] = None) -> bytes:
        """
        The RFC 7162 C{VANISHED (EARLIER)} set: UIDs expunged after
        C{modSeq} (limited to the UID set C{within}), as a sequence set.
        Where the backend does not know every expunge since then, every UID
        below UIDNEXT that is not in the mailbox is reported, which the RFC
        allows (clients ignore UIDs they never had).  Messages still in
        this session's view (expunged elsewhere, not announced yet) are
        left out.
        """
        present = [info.uid for info in self._infos]
        recorded = getattr(self.folder, "vanishedSince", None)
        uids = recorded(modSeq) if recorded is not None else None
        if uids is not None:
            ranges = uidRanges(set(uids) - set(present))
        else:
            ranges = []
            previous = 0
            for uid in present:
                if uid > previous + 1:
                    ranges.append((previous + 1, uid - 1))
                previous = uid
            top = self.folder.uidNext() - 1
            if top > previous:
                ranges.append((previous + 1, top))
        if within is not None and ranges:
            _setLast(within, max(self.folder.uidNext() - 1, 1))
            wanted = _merge([(min(a, b), max(a, b)) for a, b in within.ranges])
            ranges = _merge(
                [
                    (max(low, a), min(high, b))
                    for low, high in ranges
                    for a, b in wanted
                    if max(low, a) <= min(high, b)
                ]
            )
        return rangesText(ranges)

    def changedSince(
        self, modSeq: int, within: Optional[MessageSet] = None
    ) -> list[tuple[int, IMAPMessage]]:
        """
        C{(sequence number, message)} of the messages whose MODSEQ is above
        C{modSeq}, among the UIDs C{within} (all when L{None}).
        """
        if within is None:
            pairs = list(enumerate(self._infos, 1))
        else:
            pairs = self._select(within, True)
        return [
            (seq, self._message(info))
            for seq, info in pairs
            if info.modSeq > modSeq and info.uid not in self._gone
        ]

    def transfer(
        self, messages: MessageSet, uid: bool, target: "IMAPMailbox", move: bool
    ) -> "Deferred[tuple[list[tuple[int, int]], Expunged]]":
        """
        COPY or MOVE messages to C{target} inside the store (no message is
        read here).  Fires with the C{(source UID, target UID)} pairs and,
        for a move, the sequence numbers to announce with EXPUNGE.
        """
        if move and not self._writeable:
            raise ReadOnlyMailbox()
        wanted = [info.uid for _, info in self._select(messages, uid) if info.uid not in self._gone]
        if not wanted:
            return succeed(([], Expunged()))

        def done(pairs: Any) -> tuple[list[tuple[int, int]], Expunged]:
            pairs = list(pairs)
            expunged = self._forget({p[0] for p in pairs}) if move else Expunged()
            return pairs, expunged

        return maybeDeferred(self.folder.transfer, wanted, target.folder, move).addCallback(done)

    def infos(self) -> list[MessageInfo]:
        """
        The session's view, in sequence order (a copy).
        """
        return list(self._infos)

    def info(self, seq: int) -> MessageInfo:
        """
        The session's view of message C{seq}.
        """
        return self._infos[seq - 1]

    def fetch(self, messages: MessageSet, uid: bool) -> list[tuple[int, IMAPMessage]]:
        return [(seq, self._message(info)) for seq, info in self._select(messages, uid)]

    def store(
        self,
        messages: MessageSet,
        flags: Iterable[str],
        mode: int,
        uid: bool,
        unchangedSince: Optional[int] = None,
        modified: Optional[list[int]] = None,
    ) -> dict[int, list[str]]:
        """
        Set (C{mode} 0), add (1) or remove (-1) flags; returns the new flags
        of every message touched, by sequence number.

        @param unchangedSince: RFC 7162 C{UNCHANGEDSINCE}: messages whose
            MODSEQ is above it are left alone and their sequence numbers
            appended to C{modified}.
        """
        if not self._writeable:
            raise ReadOnlyMailbox()
        change = _storableFlags(flags)
        result = {}
        for seq, info in self._select(messages, uid):
            if info.uid in self._gone:
                continue
            if unchangedSince is not None and info.modSeq > unchangedSince:
                if modified is not None:
                    modified.append(seq)
                continue
            if mode > 0:
                new = set(info.flags) | change
            elif mode < 0:
                new = set(info.flags) - change
            else:
                new = set(change)
            if new != set(info.flags):
                try:
                    info = self.folder.setFlags(info.uid, sorted(new))
                except MailError as e:
                    if e.kind is not ErrorKind.NOT_FOUND:
                        raise
                    self._gone.add(info.uid)
                    continue
                self._infos[seq - 1] = info
                self._flagsChanged.discard(info.uid)
            result[seq] = self._message(info).getFlags()
        return result

    def copy(self, message: IMAPMessage) -> "Deferred[int]":
        """
        Store a copy of a message from another mailbox (COPY), keeping its
        flags (but not C{\\Recent}) and its internal date.
        """
        with message.open() as f:
            data = f.read()
        return maybeDeferred(
            self.folder.append,
            data,
            sorted(_storableFlags(message.getFlags())),
            message.info.internalDate,
        )

    def setSeen(self, seqs: Iterable[int]) -> None:
        """
        Add C{\\Seen} to messages whose body is fetched without PEEK
        (RFC 3501 section 6.4.5), on a read-write mailbox only.
        """
        if not self._writeable:
            return
        for seq in seqs:
            info = self._infos[seq - 1]
            if "\\Seen" not in info.flags and info.uid not in self._gone:
                try:
                    self._infos[seq - 1] = self.folder.setFlags(info.uid, sorted(info.flags | {"\\Seen"}))
                except MailError as e:
                    if e.kind is not ErrorKind.NOT_FOUND:
                        raise
                    self._gone.add(info.uid)

    # --------------------------------------------------- ICloseableMailboxIMAP

    def close(self) -> None:
        for listener in list(self._listeners):
            self.removeListener(listener)
