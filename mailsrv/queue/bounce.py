# -*- test-case-name: tests.queue.test_bounce -*-
"""
Delivery status notifications (RFC 3464): the C{multipart/report;
report-type=delivery-status} message a sender gets back when the queue
gives up on some recipients.

A bounce is a new message from the null sender C{<>} that re-enters
through the pipeline (so local senders get it in their INBOX and remote
ones through the queue).  Because it has a null sender, a bounce that
cannot be delivered is never bounced again: no loops.  Only the header
section of the original is returned (C{text/rfc822-headers}), so a bounce
is small whatever the original's size.
"""

from __future__ import annotations

import email.utils
import uuid
from typing import Optional, Sequence

from mailsrv.queue.spool import QueueEntry, RecipientState

MAX_RETURNED_HEADERS = 64 * 1024


def _ascii(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def _addressType(address: str) -> str:
    return f"rfc822; {address}" if address.isascii() else f"utf-8; {address}"


def originalHeaders(message: bytes) -> bytes:
    """
    The header section of C{message} (bounded), CRLF lines.
    """
    head = message[:MAX_RETURNED_HEADERS]
    end = head.find(b"\r\n\r\n")
    if end >= 0:
        head = head[: end + 2]
    elif not head.endswith(b"\r\n"):
        cut = head.rfind(b"\r\n")
        head = head[: cut + 2] if cut >= 0 else b""
    return head


def buildBounce(
    entry: QueueEntry,
    failed: Sequence[RecipientState],
    hostname: str,
    headers: bytes,
    now: float,
    retryUntil: Optional[float] = None,
) -> bytes:
    """
    The complete DSN message (CRLF lines), addressed to C{entry.sender}.

    @param retryUntil: when given, the report is a delay warning (C{Action:
        delayed}, RFC 3464 section 2.3.3) for recipients still being
        retried until then, not a failure report.
    """
    delayed = retryUntil is not None
    boundary = f"{uuid.uuid4().hex}/{hostname}"
    date = email.utils.formatdate(now, localtime=True)
    problems = "\r\n".join(
        f"<{r.address}>: {_ascii(r.diagnostic) or ('not yet delivered' if delayed else 'delivery failed')}"
        for r in failed
    )
    if delayed:
        assert retryUntil is not None
        human = (
            f"This is the mail system at host {hostname}.\r\n"
            "\r\n"
            "THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE.\r\n"
            "\r\n"
            "Your message could not be delivered yet to the recipients below.\r\n"
            "Delivery will be tried again until "
            f"{email.utils.formatdate(retryUntil, localtime=True)}.\r\n"
            "\r\n"
            f"{problems}\r\n"
        )
    else:
        human = (
            f"This is the mail system at host {hostname}.\r\n"
            "\r\n"
            "I'm sorry to have to inform you that your message could not\r\n"
            "be delivered to one or more recipients. The details are below.\r\n"
            "\r\n"
            f"{problems}\r\n"
        )
    perMessage = (
        f"Reporting-MTA: dns; {hostname}\r\n"
        f"X-Mailsrv-Queue-ID: {entry.queueId}\r\n"
        f"Arrival-Date: {email.utils.formatdate(entry.createdAt, localtime=True)}\r\n"
    )
    perRecipient = []
    for r in failed:
        lines = [
            f"Final-Recipient: {_addressType(r.address)}",
            "Action: delayed" if delayed else "Action: failed",
            f"Status: {r.status or ('4.0.0' if delayed else '5.0.0')}",
        ]
        if r.remoteMta:
            lines.append(f"Remote-MTA: dns; {_ascii(r.remoteMta)}")
        if r.diagnostic:
            kind = "smtp" if r.remoteMta else "x-mailsrv"
            lines.append(f"Diagnostic-Code: {kind}; {_ascii(r.diagnostic)}")
        lines.append(f"Last-Attempt-Date: {date}")
        if retryUntil is not None:
            lines.append(f"Will-Retry-Until: {email.utils.formatdate(retryUntil, localtime=True)}")
        perRecipient.append("\r\n".join(lines) + "\r\n")
    status = perMessage + "".join("\r\n" + block for block in perRecipient)
    top = (
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
        f"To: <{entry.sender}>\r\n"
        f"Subject: {'Delayed Mail (still being retried)' if delayed else 'Undelivered Mail Returned to Sender'}\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@{hostname}>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"\r\n'
        "\r\n"
        "This is a MIME-encapsulated message.\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        f"{human}"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        f"{status}"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Undelivered Message Headers\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
    ).encode("utf-8")
    return top + headers + f"\r\n--{boundary}--\r\n".encode("ascii")
