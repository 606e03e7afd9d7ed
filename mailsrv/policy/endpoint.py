# -*- test-case-name: tests.test_policy_endpoint -*-
"""
Per-endpoint policy: data, not subclasses.

An L{EndpointPolicy} says how one listener treats TLS and authentication.
Every protocol asks it the same questions (L{EndpointPolicy.offersStartTLS},
L{EndpointPolicy.mayAuthenticate}, ...), so the same rules hold for SMTP,
POP3 and IMAP.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Optional


class TLSMode(enum.Enum):
    """
    How an endpoint uses TLS.

     - C{IMPLICIT}: TLS from the first byte (465, 993, 995).
     - C{STARTTLS}: plaintext, STARTTLS offered; plaintext use allowed (25).
     - C{STARTTLS_REQUIRED}: plaintext until STARTTLS; authentication and
       (for submission) mail transactions refused before it (587, 143, 110).
     - C{NONE}: no TLS at all.
    """

    IMPLICIT = "implicit"
    STARTTLS = "starttls"
    STARTTLS_REQUIRED = "starttls-required"
    NONE = "none"


class Protocol(enum.Enum):
    SMTP = "smtp"  # MX: receives from the world, no AUTH by default
    SUBMISSION = "submission"  # clients sending mail: AUTH required
    POP3 = "pop3"
    IMAP = "imap"
    HTTP = "http"  # MTA-STS policy, client autoconfig, metrics (mailsrv.http)
    MANAGESIEVE = "managesieve"  # Sieve script management, RFC 5804 (port 4190)


@dataclasses.dataclass(frozen=True)
class EndpointPolicy:
    """
    @ivar name: the endpoint's table name in the config (C{smtp}, C{imaps}...).
    @ivar protocol: the wire protocol spoken.
    @ivar listen: C{host:port} strings (C{[::1]:port} for IPv6), or
        C{systemd:NAME} for a socket passed by systemd (socket activation).
    @ivar tls: the TLS mode.
    @ivar auth: whether authentication is offered at all on this endpoint.
    @ivar proxyProtocol: whether every connection starts with a PROXY v1/v2
        header from a load balancer (see L{mailsrv.policy.proxy}).
    @ivar trustedProxies: networks (C{"192.0.2.0/24"}) PROXY connections
        are accepted from; required when C{proxyProtocol} is set.
    @ivar port: the port clients connect to, when it is not the one
        listened on (systemd sockets, port forwarding); see
        L{mailsrv.config.load.advertisedPort}.
    """

    name: str
    protocol: Protocol
    listen: tuple[str, ...]
    tls: TLSMode
    auth: bool
    proxyProtocol: bool = False
    trustedProxies: tuple[str, ...] = ()
    port: Optional[int] = None

    @property
    def implicitTLS(self) -> bool:
        return self.tls is TLSMode.IMPLICIT

    def offersStartTLS(self, tlsActive: bool) -> bool:
        """
        Whether STARTTLS/STLS is advertised and accepted now.
        """
        return not tlsActive and self.tls in (TLSMode.STARTTLS, TLSMode.STARTTLS_REQUIRED)

    def mayAuthenticate(self, tlsActive: bool) -> bool:
        """
        Whether AUTH/LOGIN/USER is offered and accepted now.

        Passwords never cross an unencrypted connection on an endpoint that
        has TLS: like Postfix's C{smtpd_tls_auth_only} and Dovecot's
        C{disable_plaintext_auth}, an endpoint with optional STARTTLS accepts
        credentials only after it.  Only C{tls = "none"} allows plaintext
        authentication (and the service warns about it at start).
        """
        if not self.auth:
            return False
        return tlsActive or self.tls is TLSMode.NONE

    def requiresTLSBeforeTransaction(self, tlsActive: bool) -> bool:
        """
        Whether a mail transaction (SMTP MAIL) must wait for STARTTLS.
        """
        return not tlsActive and self.tls is TLSMode.STARTTLS_REQUIRED

    @property
    def requiresAuthForMail(self) -> bool:
        """
        Submission endpoints only carry mail from authenticated clients.
        """
        return self.protocol is Protocol.SUBMISSION
