# -*- test-case-name: tests.test_pipeline -*-
"""
The C{Received:} trace header (RFC 5321 section 4.4), with the protocol
keywords of RFC 3848 / RFC 6531 and the TLS parameters (RFC 8314 section
4.3) in the comment form Postfix uses, which operators grep for.
"""

from __future__ import annotations

import email.utils
from typing import Optional

from mailsrv.envelope import Envelope, Session


def protocolKeyword(session: Session, envelope: Envelope) -> str:
    """
    C{SMTP}, C{ESMTP}, C{ESMTPS}, C{ESMTPA}, C{ESMTPSA}, or the C{UTF8}
    variants for SMTPUTF8 transactions.
    """
    if not session.esmtp:
        return "SMTP"
    base = "UTF8SMTP" if "SMTPUTF8" in envelope.mailParams else "ESMTP"
    return base + ("S" if session.tls else "") + ("A" if session.authenticatedAs else "")


def _clean(text: Optional[str]) -> str:
    return "".join(c if c.isprintable() and c not in "()\\" else "?" for c in (text or "unknown"))


# The From-domain written instead of the client's name and address when
# they are hidden (RFC 5321 requires one; this is a valid single label).
HIDDEN_PEER = "authenticated-user"


def receivedHeader(
    session: Session,
    envelope: Envelope,
    hostname: str,
    date: Optional[float] = None,
    hidePeer: bool = False,
) -> bytes:
    """
    The header as CRLF-terminated bytes, folded over several lines.

    @param hidePeer: leave out the client's HELO name and IP address
        (the privacy default for submitted mail: a user's home address
        should not travel with every message they send).
    """
    if hidePeer:
        lines = [f"Received: from {HIDDEN_PEER}"]
    else:
        lines = [f"Received: from {_clean(session.heloName)} (unknown [{session.peerHost}])"]
    if session.tls is not None:
        lines.append(f"\t(using {_clean(session.tls.version)} with cipher {_clean(session.tls.cipher)})")
    forClause = ""
    if len(envelope.recipients) == 1:
        forClause = f"\n\tfor <{envelope.recipients[0]}>"
    stamp = email.utils.formatdate(envelope.receivedAt if date is None else date, localtime=True)
    lines.append(
        f"\tby {hostname} (mailsrv) with {protocolKeyword(session, envelope)} id {envelope.messageId}"
        f"{forClause}; {stamp}"
    )
    return ("\r\n".join("\n".join(lines).split("\n")) + "\r\n").encode("utf-8")
