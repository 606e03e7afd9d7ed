# -*- test-case-name: tests.sieve.test_vacation -*-
"""
What the delivery agent needs to carry out a L{Vacation} action (RFC 5230
sections 4.5 to 6, RFC 3834): whether to reply at all, the reply itself,
and the key under which it remembers having replied.

The reply must be sent with the null reverse path (C{MAIL FROM:<>}) to the
original envelope sender, and only if no reply under the same
L{vacationKey} went out within L{Vacation.period}; both are the caller's
business, as is storing the keys.
"""

from __future__ import annotations

import email.header
import email.utils
import hashlib
import quopri
import re
import uuid
from datetime import datetime, timezone
from typing import Optional, Sequence

from mailsrv.sieve.actions import Vacation
from mailsrv.sieve.context import MessageContext
from mailsrv.sieve.headers import HeaderSection, extractAddresses, validAddress
from mailsrv.sieve.interpreter import defaultHandle

#: Local parts of senders that are lists or programs (RFC 5230 section
#: 4.6, RFC 3834 section 2), compared in lower case.
SYSTEM_LOCALPARTS = frozenset(
    {"mailer-daemon", "listserv", "majordomo", "noreply", "no-reply", "donotreply", "do-not-reply"}
)
SYSTEM_PREFIXES = ("owner-",)
SYSTEM_SUFFIXES = ("-request", "-owner", "-bounces", "-bounce")

#: Header fields where the user's address must appear (RFC 5230 4.5).
RECIPIENT_HEADERS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")

#: Values of Microsoft's X-Auto-Response-Suppress that ask for no
#: out-of-office reply.
_SUPPRESS_VALUES = frozenset({"all", "oof", "autoreply"})

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")

#: Only these fields of a :mime reason's own header reach the reply.
_MIME_FIELD = re.compile(r"content-[a-z0-9-]+", re.IGNORECASE)


def normaliseAddress(address: str) -> str:
    """
    An address as the user-address comparison sees it: the addr-spec, in
    lower case, without a C{+detail} in the local part.
    """
    address = (validAddress(address) or address).strip().lower()
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    return f"{local.split('+', 1)[0]}@{domain}"


def isSystemSender(address: str) -> bool:
    """
    Whether an envelope sender is a mailing list or a program that must
    not get automatic replies.
    """
    local = address.rpartition("@")[0].lower() if "@" in address else address.lower()
    return local in SYSTEM_LOCALPARTS or local.startswith(SYSTEM_PREFIXES) or local.endswith(SYSTEM_SUFFIXES)


def vacationApplies(
    action: Vacation, context: MessageContext, *, userAddresses: Sequence[str]
) -> tuple[bool, str]:
    """
    Whether a vacation reply may be sent for this message at all (the
    once-per-period rule aside).

    @param userAddresses: the user's addresses; the action's C{:addresses},
        the envelope recipient and the original recipient count too.
    @return: C{(True, "")}, or C{(False, why)} with a reason for the log.
    """
    sender = context.envelopeFrom.strip()
    if not sender:
        return False, "the envelope sender is null"
    if isSystemSender(sender):
        return False, f"the envelope sender {sender} is a list or system address"
    headers = HeaderSection(context.header)
    for value in headers.values("auto-submitted"):
        if value.split(";", 1)[0].strip().lower() != "no":
            return False, f"the message has Auto-Submitted: {value}"
    for value in headers.values("precedence"):
        if value.strip().lower() in ("bulk", "list", "junk"):
            return False, f"the message has Precedence: {value}"
    for name, _ in headers.fields:
        if name.startswith("list-"):
            return False, f"the message has a {name} field (mailing list)"
    for value in headers.values("x-auto-response-suppress"):
        words = {word.strip().lower() for word in value.split(",")}
        if words & _SUPPRESS_VALUES:
            return False, f"the message has X-Auto-Response-Suppress: {value}"
    for name in ("x-autoreply", "x-autorespond"):
        if headers.exists(name):
            return False, f"the message has a {name} field (an automatic reply)"
    mine = {
        normaliseAddress(address)
        for address in (*userAddresses, *action.addresses, context.envelopeTo, context.originalRecipient)
        if address
    }
    if normaliseAddress(sender) in mine:
        return False, "the message is from the user's own address"
    for name in RECIPIENT_HEADERS:
        for address in headers.addresses(name):
            if normaliseAddress(address) in mine:
                return True, ""
    return False, "none of the user's addresses is in To, Cc, Bcc, Resent-To, Resent-Cc or Resent-Bcc"


def vacationKey(action: Vacation, sender: str) -> str:
    """
    The key for "already replied to this sender with this reply": a
    SHA-256 hex digest of the sender (in lower case) and the handle.
    """
    handle = action.handle or defaultHandle(
        action.reason, action.subject, action.fromAddress, action.addresses, action.mime
    )
    digest = hashlib.sha256()
    digest.update(sender.strip().lower().encode("utf-8", "surrogatepass"))
    digest.update(b"\x00")
    digest.update(handle.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _oneLine(text: str) -> str:
    # Nothing a script or a sender wrote may start a new header field.
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())


def _encodeText(text: str) -> str:
    """
    A header value: as is when ASCII, RFC 2047 encoded otherwise; folded.
    """
    if text.isascii():
        return email.header.Header(text, "us-ascii", header_name="Subject").encode(linesep="\r\n")
    return email.header.Header(text, "utf-8", header_name="Subject").encode(linesep="\r\n")


def _encodeMailbox(text: str) -> str:
    pairs = extractAddresses(text)
    name, address = email.utils.parseaddr(text)
    if not address and pairs:
        address = pairs[0]
    return email.utils.formataddr((_oneLine(name), _oneLine(address)), charset="utf-8")


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def _textBody(reason: str) -> tuple[list[str], bytes]:
    data = reason.replace("\r\n", "\n").replace("\r", "\n")
    if not data.endswith("\n"):
        data += "\n"
    fields = ["Content-Type: text/plain; charset=utf-8"]
    if data.isascii() and all(len(line) <= 998 for line in data.split("\n")):
        fields.append("Content-Transfer-Encoding: 7bit")
        return fields, data.replace("\n", "\r\n").encode("ascii")
    fields.append("Content-Transfer-Encoding: quoted-printable")
    encoded = quopri.encodestring(data.encode("utf-8"), quotetabs=False)
    return fields, encoded.replace(b"\n", b"\r\n")


def _mimeBody(reason: str) -> tuple[list[str], bytes]:
    """
    A C{:mime} reason: its Content-* header fields and its body as given.
    A reason without a header of its own is sent as plain text.
    """
    text = _crlf(reason)
    head, separator, body = text.partition("\r\n\r\n")
    fields: list[str] = []
    lines = head.split("\r\n") if separator else []
    for line in lines:
        if line[:1] in (" ", "\t") and fields:
            fields[-1] += "\r\n" + line
            continue
        name, colon, _ = line.partition(":")
        if not colon or not re.fullmatch(r"[\x21-\x39\x3b-\x7e]+", name.strip()):
            return _textBody(reason)
        fields.append(line)
    fields = [field for field in fields if _MIME_FIELD.fullmatch(field.partition(":")[0].strip())]
    if not fields:
        return _textBody(reason)
    if not body.endswith("\r\n"):
        body += "\r\n"
    return fields, body.encode("utf-8", "surrogateescape")


def buildVacationReply(
    action: Vacation, context: MessageContext, *, userAddress: str, messageIdDomain: str, now: datetime
) -> bytes:
    """
    The complete reply message, with CRLF line endings.

    @param userAddress: the From when the action has no C{:from}.
    @param messageIdDomain: the right-hand side of the reply's Message-ID.
    @param now: the reply's Date (naive means UTC).
    """
    headers = HeaderSection(context.header)
    if action.subject is not None:
        subject = _oneLine(action.subject)
    else:
        original = _oneLine(headers.first("subject") or "")
        subject = f"Auto: {original}" if original else "Automated reply"
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    fields = [
        f"From: {_encodeMailbox(action.fromAddress or userAddress)}",
        f"To: <{_oneLine(context.envelopeFrom)}>",
        f"Subject: {_encodeText(subject)}",
        f"Date: {email.utils.format_datetime(now)}",
        f"Message-ID: <{uuid.uuid4().hex}@{_oneLine(messageIdDomain)}>",
    ]
    originalId: Optional[str] = None
    match = _MESSAGE_ID.search(headers.first("message-id") or "")
    if match is not None:
        originalId = match.group()
        references = _MESSAGE_ID.findall(headers.first("references") or "")
        # Keep the chain short: the newest references are the useful ones.
        references = [*references[-9:], originalId]
        fields.append(f"In-Reply-To: {originalId}")
        fields.append("References: " + "\r\n ".join(references))
    fields.append("Auto-Submitted: auto-replied (vacation)")
    # Ask Exchange and its kin not to answer the answer.
    fields.append("X-Auto-Response-Suppress: All")
    fields.append("MIME-Version: 1.0")
    bodyFields, body = _mimeBody(action.reason) if action.mime else _textBody(action.reason)
    fields.extend(bodyFields)
    head = "\r\n".join(fields) + "\r\n\r\n"
    return head.encode("utf-8") + body
