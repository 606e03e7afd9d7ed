# -*- test-case-name: tests.protocols.test_imap_extensions -*-
"""
IMAP extensions beyond RFC 3501, as a mixin for
L{mailsrv.protocols.imap.server.IMAPServer}:

 - UIDPLUS (RFC 4315): C{APPENDUID} (in the server's APPEND), C{COPYUID},
   C{UID EXPUNGE};
 - MOVE (RFC 6851), C{UID MOVE}: the store moves each message atomically,
   the client hears C{* OK [COPYUID ...]} then the C{EXPUNGE}s;
 - UNSELECT (RFC 3691), ENABLE (RFC 5161; C{CONDSTORE} and C{QRESYNC}
   can be enabled), ID (RFC 2971);
 - CREATE-SPECIAL-USE (RFC 6154): C{CREATE name (USE (\\Sent))};
 - QUOTA (RFC 9208, storage resource only): GETQUOTA, GETQUOTAROOT, with
   one root C{""} per account; SETQUOTA is refused (the administrator sets
   quotas in C{dovecot-quotas.cf});
 - EXPUNGE and CLOSE that hold further commands until the store answered,
   so replies stay in order (Twisted's ran them concurrently);
 - QRESYNC (RFC 7162): once enabled, expunges are announced with
   C{VANISHED <uids>} (EXPUNGE, UID EXPUNGE, MOVE and changes made
   elsewhere); the SELECT parameter and the C{VANISHED} FETCH modifier live
   in the server and in L{mailsrv.protocols.imap.fetch}, the expunged UIDs
   in the folder index's MODSEQ log.

LITERAL+ lives in the server's line handling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.mail.imap4 import (
    IllegalClientResponse,
    IMAP4Server,
    MailboxException,
    MessageSet,
    parseNestedParens,
)
from twisted.python.failure import Failure

from mailsrv.errors import ErrorKind, MailError

if TYPE_CHECKING:
    from twisted.logger import Logger

#: What C{ID} tells clients about us (RFC 2971); no version, so as not to
#: help an attacker pick exploits.
SERVER_ID = (b"name", b"mailsrv", b"vendor", b"mailsrv")

_UID_COMMANDS = (b"COPY", b"FETCH", b"STORE", b"SEARCH", b"EXPUNGE", b"MOVE")


def _seqText(numbers: list[int]) -> bytes:
    """
    A compact sequence set (C{1:3,7}) for numbers in ascending order.
    """
    parts = []
    start = prev = None
    for n in numbers:
        if start is None:
            start = prev = n
        elif n == prev + 1:  # type: ignore[operator]
            prev = n
        else:
            parts.append((start, prev))
            start = prev = n
    if start is not None:
        parts.append((start, prev))
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in parts)  # type: ignore[str-bytes-safe]


def _quoted(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def quotaResponse(used: int, limit: int) -> bytes:
    """
    The C{QUOTA} response for the account's root, in KiB as RFC 9208 wants
    (usage rounded up, so a nearly full account never looks emptier).
    """
    return b'QUOTA "" (STORAGE %d %d)' % ((used + 1023) // 1024, limit // 1024)


class ExtensionsMixin:
    """
    See the module docstring.  Uses the server's C{mbox}, C{account},
    C{_block}/C{_unblock}, C{_mailboxNo}, C{_decodeName} and C{_syncSelected}.
    """

    log: "Logger"
    mbox: Any
    account: Any
    state: str

    # ------------------------------------------------------------------ UID

    def do_UID(self, tag: bytes, command: bytes, line: bytes) -> None:
        command = command.upper()
        if command not in _UID_COMMANDS:
            raise IllegalClientResponse(command.decode("ascii", "replace"))
        self.dispatchCommand(tag, command, line, uid=1)  # type: ignore[attr-defined]

    select_UID = (do_UID, IMAP4Server.arg_atom, IMAP4Server.arg_line)

    # -------------------------------------------------------------- EXPUNGE

    def opt_seqset(self, line: Optional[bytes]) -> tuple[Optional[MessageSet], bytes]:
        line = (line or b"").strip()
        if not line:
            return None, b""
        return IMAP4Server.arg_seqset(self, line)  # type: ignore[arg-type]

    def do_EXPUNGE(self, tag: bytes, messages: Optional[MessageSet] = None, uid: int = 0) -> None:
        if bool(uid) != (messages is not None):
            self.sendBadResponse(tag, b"UID EXPUNGE takes a UID set, EXPUNGE nothing")  # type: ignore[attr-defined]
            return
        if not self.mbox.isWriteable():
            self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox is read-only")  # type: ignore[attr-defined]
            return
        self._block()  # type: ignore[attr-defined]
        d = maybeDeferred(self.mbox.expunge, messages)
        d.addCallbacks(self._expunged, self._commandFailed, (tag,), None, (tag, b"EXPUNGE"), None)

    select_EXPUNGE = (do_EXPUNGE, opt_seqset)

    def _expunged(self, announced: list[int], tag: bytes) -> None:
        self._sendExpunged(announced)  # type: ignore[attr-defined]
        self.sendPositiveResponse(tag, b"EXPUNGE completed")  # type: ignore[attr-defined]
        self._unblock()  # type: ignore[attr-defined]

    def _commandFailed(self, failure: Failure, tag: bytes, command: bytes) -> None:
        if failure.check(MailError, MailboxException):
            self._mailboxNo(tag, failure.value)  # type: ignore[attr-defined]
        else:
            self.log.failure("{command} failed", failure, command=command.decode())
            self.sendNegativeResponse(tag, b"[SERVERBUG] " + command + b" failed")  # type: ignore[attr-defined]
        self._unblock()  # type: ignore[attr-defined]

    # ------------------------------------------------------ CLOSE, UNSELECT

    def _deselect(self) -> None:
        mbox, self.mbox = self.mbox, None
        if mbox is not None:
            mbox.removeListener(self)
            close = getattr(mbox, "close", None)
            if close is not None:
                close()
        self.state = "auth"

    def do_CLOSE(self, tag: bytes) -> None:
        """
        Expunge silently (no untagged EXPUNGE, RFC 3501 section 6.4.2) when
        read-write, then leave the selected state.
        """
        if not self.mbox.isWriteable():
            self._deselect()
            self.sendPositiveResponse(tag, b"CLOSE completed")  # type: ignore[attr-defined]
            return
        self._block()  # type: ignore[attr-defined]

        def closed(_: object) -> None:
            self._deselect()
            self.sendPositiveResponse(tag, b"CLOSE completed")  # type: ignore[attr-defined]
            self._unblock()  # type: ignore[attr-defined]

        maybeDeferred(self.mbox.expunge).addCallbacks(closed, self._commandFailed, errbackArgs=(tag, b"CLOSE"))

    select_CLOSE = (do_CLOSE,)

    def do_UNSELECT(self, tag: bytes) -> None:
        self._deselect()
        self.sendPositiveResponse(tag, b"UNSELECT completed")  # type: ignore[attr-defined]

    select_UNSELECT = (do_UNSELECT,)

    # ------------------------------------------------------------ COPY, MOVE

    def do_COPY(self, tag: bytes, messages: MessageSet, mailbox: bytes, uid: int = 0) -> None:
        self._transfer(tag, messages, mailbox, uid, move=False)

    def do_MOVE(self, tag: bytes, messages: MessageSet, mailbox: bytes, uid: int = 0) -> None:
        self._transfer(tag, messages, mailbox, uid, move=True)

    select_COPY = (do_COPY, IMAP4Server.arg_seqset, IMAP4Server.arg_finalastring)
    select_MOVE = (do_MOVE, IMAP4Server.arg_seqset, IMAP4Server.arg_finalastring)

    def _transfer(self, tag: bytes, messages: MessageSet, mailbox: bytes, uid: int, move: bool) -> None:
        command = b"MOVE" if move else b"COPY"
        if move and not self.mbox.isWriteable():
            self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox is read-only")  # type: ignore[attr-defined]
            return
        try:
            target = self.account.select(self._decodeName(mailbox), 1)  # type: ignore[attr-defined]
        except (MailError, MailboxException) as e:
            self._mailboxNo(tag, e)  # type: ignore[attr-defined]
            return
        if target is None:
            self.sendNegativeResponse(tag, b"[TRYCREATE] Mailbox doesn't exist")  # type: ignore[attr-defined]
            return
        self._block()  # type: ignore[attr-defined]
        d = Deferred.fromCoroutine(self._checkedTransfer(messages, uid, target, move))
        d.addCallbacks(
            self._transferred, self._commandFailed, (tag, target, command), None, (tag, command), None
        )

    async def _checkedTransfer(self, messages: MessageSet, uid: int, target: Any, move: bool) -> Any:
        if not move:
            selected = self.mbox.fetch(messages, uid)
            await self._checkQuota(sum(msg.getSize() for _, msg in selected))
        return await self.mbox.transfer(messages, bool(uid), target, move)

    def _transferred(self, result: tuple[list[tuple[int, int]], list[int]], tag: bytes, target: Any, command: bytes) -> None:
        pairs, expunged = result
        reports = getattr(getattr(self, "factory", None), "spamReports", None)
        if reports is not None and pairs:
            # Into or out of Junk: the user's verdict, for spam learning.
            reports.messagesMoved(self.mbox.folder, target.folder, [p[1] for p in pairs])
        code = b""
        if pairs:
            code = b"[COPYUID %d %b %b] " % (
                target.getUIDValidity(),
                _seqText([p[0] for p in pairs]),
                _seqText([p[1] for p in pairs]),
            )
        if command == b"MOVE":
            if code:
                self.sendUntaggedResponse(b"OK " + code + b"Moved")  # type: ignore[attr-defined]
            self._sendExpunged(expunged)  # type: ignore[attr-defined]
            code = b""
        # COPY or MOVE into the selected mailbox is reported (EXISTS) before
        # the tagged reply, like any other change.
        self.sendPositiveResponse(tag, code + command + b" completed")  # type: ignore[attr-defined]
        self._unblock()  # type: ignore[attr-defined]

    # ---------------------------------------------------------------- QUOTA

    async def _checkQuota(self, adding: int) -> None:
        """
        Fail with C{NO_QUOTA} when storing C{adding} more octets would
        exceed the account's limit.
        """
        quota = getattr(self.account, "quota", None)
        if quota is None:
            return
        limit = quota.limit(self.account.account)
        if limit is None:
            return
        used = await quota.usage(self.account.account)
        if used + adding > limit:
            raise MailError(ErrorKind.NO_QUOTA, "Quota exceeded")

    def _quotaLimit(self) -> Optional[int]:
        quota = getattr(self.account, "quota", None)
        return None if quota is None else quota.limit(self.account.account)

    def _sendQuota(self, tag: bytes, roots: Optional[bytes]) -> None:
        limit = self._quotaLimit()
        if roots is not None:
            self.sendUntaggedResponse(b"QUOTAROOT " + roots + (b' ""' if limit is not None else b""))  # type: ignore[attr-defined]
        if limit is None:
            if roots is None:
                self.sendNegativeResponse(tag, b"[NONEXISTENT] No such quota root")  # type: ignore[attr-defined]
            else:
                self.sendPositiveResponse(tag, b"GETQUOTAROOT completed")  # type: ignore[attr-defined]
            return
        self._block()  # type: ignore[attr-defined]

        def report(used: int) -> None:
            self.sendUntaggedResponse(quotaResponse(used, limit))  # type: ignore[attr-defined]
            self.sendPositiveResponse(tag, b"GETQUOTA%b completed" % (b"ROOT" if roots is not None else b""))  # type: ignore[attr-defined]
            self._unblock()  # type: ignore[attr-defined]

        self.account.quota.usage(self.account.account).addCallbacks(
            report, self._commandFailed, errbackArgs=(tag, b"GETQUOTA")
        )

    def do_GETQUOTA(self, tag: bytes, root: bytes) -> None:
        if root != b"":
            self.sendNegativeResponse(tag, b"[NONEXISTENT] No such quota root")  # type: ignore[attr-defined]
            return
        self._sendQuota(tag, None)

    def do_GETQUOTAROOT(self, tag: bytes, mailbox: bytes) -> None:
        try:
            name = self._decodeName(mailbox)  # type: ignore[attr-defined]
            if self.account.select(name, 0) is None:
                self.sendNegativeResponse(tag, b"[NONEXISTENT] Mailbox doesn't exist")  # type: ignore[attr-defined]
                return
        except (MailError, MailboxException) as e:
            self._mailboxNo(tag, e)  # type: ignore[attr-defined]
            return
        from twisted.mail.imap4 import _prepareMailboxName

        self._sendQuota(tag, _prepareMailboxName(name))

    def do_SETQUOTA(self, tag: bytes, root: bytes, limits: Any) -> None:
        self.sendNegativeResponse(tag, b"[NOPERM] Quotas are set by the administrator")  # type: ignore[attr-defined]

    auth_GETQUOTA = select_GETQUOTA = (do_GETQUOTA, IMAP4Server.arg_finalastring)
    auth_GETQUOTAROOT = select_GETQUOTAROOT = (do_GETQUOTAROOT, IMAP4Server.arg_finalastring)
    auth_SETQUOTA = select_SETQUOTA = (do_SETQUOTA, IMAP4Server.arg_astring, IMAP4Server.arg_plist)

    # ---------------------------------------------------------- ENABLE, ID

    def arg_atoms(self, line: bytes) -> tuple[list[bytes], bytes]:
        atoms = line.split()
        if not atoms:
            raise IllegalClientResponse("Missing argument")
        return atoms, b""

    def do_ENABLE(self, tag: bytes, capabilities: list[bytes]) -> None:
        """
        C{CONDSTORE} and C{QRESYNC} (RFC 7162; QRESYNC implies CONDSTORE)
        can be enabled; RFC 5161 says unknown names are ignored, so they are
        left out of C{ENABLED}.
        """
        enabled = b""
        names = {c.upper() for c in capabilities}
        if b"CONDSTORE" in names:
            self._enableCondstore()  # type: ignore[attr-defined]
            enabled += b" CONDSTORE"
        if b"QRESYNC" in names:
            self._enableQresync()  # type: ignore[attr-defined]
            enabled += b" QRESYNC"
        self.sendUntaggedResponse(b"ENABLED" + enabled)  # type: ignore[attr-defined]
        self.sendPositiveResponse(tag, b"ENABLE completed")  # type: ignore[attr-defined]

    auth_ENABLE = (do_ENABLE, arg_atoms)

    def arg_idParams(self, line: Optional[bytes]) -> tuple[Optional[list[Any]], bytes]:
        line = (line or b"").strip()
        if line.upper() == b"NIL":
            return None, b""
        if not line.startswith(b"(") or not line.endswith(b")"):
            raise IllegalClientResponse("ID takes NIL or a list")
        try:
            parsed = parseNestedParens(line[1:-1])
        except Exception:
            raise IllegalClientResponse("Malformed ID list") from None
        if len(parsed) % 2 or len(parsed) > 60:
            raise IllegalClientResponse("Malformed ID list")
        return parsed, b""

    def do_ID(self, tag: bytes, params: Optional[list[Any]]) -> None:
        if params:
            fields = {
                bytes(k).decode("utf-8", "replace")[:30].lower(): (
                    bytes(v).decode("utf-8", "replace")[:100] if isinstance(v, bytes) else None
                )
                for k, v in zip(params[::2], params[1::2])
                if isinstance(k, bytes)
            }
            self.log.info(
                "IMAP client id {clientName} {clientVersion}",
                clientName=fields.get("name"),
                clientVersion=fields.get("version"),
                **self._logFields(),  # type: ignore[attr-defined]
            )
        self.sendUntaggedResponse(b"ID (" + b" ".join(_quoted(v) for v in SERVER_ID) + b")")  # type: ignore[attr-defined]
        self.sendPositiveResponse(tag, b"ID completed")  # type: ignore[attr-defined]

    unauth_ID = auth_ID = select_ID = (do_ID, arg_idParams)

    # ---------------------------------------------------- CREATE-SPECIAL-USE

    def opt_createParams(self, line: bytes) -> tuple[Optional[bytes], bytes]:
        """
        The RFC 4466 create parameters; only C{(USE (attr))} is known.
        """
        line = line.strip()
        if not line:
            return None, b""
        try:
            parsed = parseNestedParens(line)
        except Exception:
            raise IllegalClientResponse("Malformed CREATE parameters") from None
        if (
            len(parsed) != 1
            or not isinstance(parsed[0], list)
            or len(parsed[0]) != 2
            or not isinstance(parsed[0][0], bytes)
            or parsed[0][0].upper() != b"USE"
            or not isinstance(parsed[0][1], list)
            or len(parsed[0][1]) != 1
        ):
            raise IllegalClientResponse("Unsupported CREATE parameters")
        return bytes(parsed[0][1][0]), b""

    def do_CREATE(self, tag: bytes, name: bytes, use: Optional[bytes] = None) -> None:
        # Attributes are case-insensitive atoms: \sent is \Sent.
        useText = "\\" + use.decode("ascii", "replace").lstrip("\\").capitalize() if use else None
        try:
            self.account.create(self._decodeName(name), useText)  # type: ignore[attr-defined]
        except (MailError, MailboxException) as e:
            self._mailboxNo(tag, e)  # type: ignore[attr-defined]
        else:
            self.sendPositiveResponse(tag, b"CREATE completed")  # type: ignore[attr-defined]

    auth_CREATE = select_CREATE = (do_CREATE, IMAP4Server.arg_astring, opt_createParams)

