# -*- test-case-name: tests.test_envelope -*-
"""
Plain data shared by the protocols and the pipeline: L{Address}, L{Session}
and L{Envelope}.

A L{Session} lives as long as a connection (its protocol knowledge is reset on
STARTTLS); an L{Envelope} lives for one mail transaction and is reset on RSET
and after DATA.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from mailsrv.policy.endpoint import EndpointPolicy


@dataclasses.dataclass(frozen=True)
class Address:
    """
    A mailbox address.

    @ivar local: the local part as the client sent it (case preserved; UTF-8
        allowed when the transaction uses SMTPUTF8), without quotes.
    @ivar domain: the domain, lower-cased, without a trailing dot.
    """

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @classmethod
    def fromString(cls, text: str) -> "Address":
        """
        Split C{local@domain} at the last C{@} and normalise the domain.

        @raise ValueError: if there is no C{@} or either side is empty.
        """
        local, sep, domain = text.rpartition("@")
        domain = domain.rstrip(".").lower()
        if not sep or not local or not domain:
            raise ValueError(f"not an address: {text!r}")
        return cls(local, domain)


@dataclasses.dataclass(frozen=True)
class TLSInfo:
    """What was negotiated on a TLS connection (for logs and Received:)."""

    version: str
    cipher: str


def newSessionId() -> str:
    return uuid.uuid4().hex[:12]


@dataclasses.dataclass
class Session:
    """
    One client connection.

    @ivar sessionId: short random id carried by every log event of the session.
    @ivar endpoint: the policy of the endpoint the client connected to.
    @ivar peerHost: the client's IP address as text.
    @ivar heloName: the name given in HELO/EHLO, or L{None}.
    @ivar tls: negotiated TLS parameters, or L{None} before TLS.
    @ivar authenticatedAs: the account id after a successful AUTH, or L{None}.
    """

    endpoint: "EndpointPolicy"
    peerHost: str
    peerPort: int = 0
    sessionId: str = dataclasses.field(default_factory=newSessionId)
    heloName: Optional[str] = None
    esmtp: bool = False
    tls: Optional[TLSInfo] = None
    authenticatedAs: Optional[str] = None

    def resetAfterStartTLS(self, tls: TLSInfo) -> None:
        """
        Forget what the client said before TLS (RFC 3207 section 4.2): the
        HELO name and authentication must be given again over TLS.
        """
        self.tls = tls
        self.heloName = None
        self.esmtp = False
        self.authenticatedAs = None


@dataclasses.dataclass
class Envelope:
    """
    One mail transaction.

    @ivar mailFrom: the reverse path, or L{None} for the null sender C{<>}.
    @ivar recipients: accepted forward paths, in RCPT order.
    @ivar mailParams: ESMTP parameters of MAIL FROM (upper-case keys).
    @ivar rcptParams: ESMTP parameters per accepted recipient.
    @ivar messageId: a queue id, unique on this host, safe in file names.
    @ivar quarantined: a filter asked for the message to go to the Junk
        folder instead of the INBOX.
    @ivar filterVerdicts: filter name -> its verdict on the message
        (C{accept}, C{add-header}, C{quarantine}), set by the pipeline
        after the end-of-data checks, for the transaction's log line.
    @ivar reachedVia: local account -> the accepted recipient address that
        first reached it (as given, C{+tag} included; an alias for mail
        the alias table routed), set by the pipeline.
    """

    mailFrom: Optional[Address] = None
    recipients: list[Address] = dataclasses.field(default_factory=list)
    mailParams: dict[str, Optional[str]] = dataclasses.field(default_factory=dict)
    rcptParams: list[dict[str, Optional[str]]] = dataclasses.field(default_factory=list)
    messageId: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    receivedAt: float = dataclasses.field(default_factory=time.time)
    quarantined: bool = False
    filterVerdicts: dict[str, str] = dataclasses.field(default_factory=dict)
    reachedVia: dict[str, Address] = dataclasses.field(default_factory=dict)
