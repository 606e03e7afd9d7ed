# -*- test-case-name: tests.test_config -*-
"""
The validated configuration: frozen dataclasses with explicit defaults.

This module is the single catalogue of configuration keys.  The TOML names
(snake_case) map one-to-one onto the fields; L{mailsrv.config.load} does the
mapping and validation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode

DEFAULT_DATA_DIR = Path("/var/lib/mailsrv")
DEFAULT_CONFIG_DIR = Path("/etc/mailsrv")
DEFAULT_CONFIG_FILE = DEFAULT_CONFIG_DIR / "mailsrv.toml"


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    hostname: str
    domains: tuple[str, ...]
    dataDir: Path
    configDir: Path

    @property
    def mailDir(self) -> Path:
        return self.dataDir / "mail"

    @property
    def stateDir(self) -> Path:
        return self.dataDir / "state"

    @property
    def queueDir(self) -> Path:
        return self.dataDir / "queue"


@dataclasses.dataclass(frozen=True)
class TLSConfig:
    """
    @ivar cert: PEM certificate chain (leaf first), or L{None} to use the
        self-signed certificate generated into the data directory.
    @ivar key: PEM private key matching C{cert}.
    """

    cert: Optional[Path] = None
    key: Optional[Path] = None


@dataclasses.dataclass(frozen=True)
class LimitsConfig:
    """
    Limits on what a client controls.  Exceeding one gets the protocol's
    error reply, never unbounded memory.
    """

    messageSize: int = 25 * 1024 * 1024
    recipients: int = 100
    # Seconds a command line may take in every protocol, from the end of
    # the previous reply in SMTP (Postfix's smtpd_timeout with
    # smtpd_per_request_deadline) and from its first octet in IMAP and POP3.
    commandTimeout: float = 300.0
    # Seconds DATA, BDAT and IMAP literals may stall; with minDataRate
    # (octets a second, Postfix's smtpd_min_data_rate) the deadline moves
    # on as data arrives, so slow links still get big messages through.
    dataTimeout: float = 600.0
    minDataRate: int = 500
    maxErrors: int = 20
    # SMTP connections (all SMTP and submission endpoints together).
    maxConnections: int = 1000
    maxConnectionsPerIP: int = 20
    # IMAP and POP3 connections (Dovecot's process_limit x client_limit).
    # Per IP more than SMTP: a NAT'd office runs several clients, each
    # with several IMAP connections.
    imapMaxConnections: int = 1000
    imapMaxConnectionsPerIP: int = 100
    pop3MaxConnections: int = 1000
    pop3MaxConnectionsPerIP: int = 100
    # Clients exempt from the per-IP limits (Postfix exempts $mynetworks).
    connectionLimitExceptions: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # Logged-in IMAP (and, separately, POP3) sessions per account and
    # client address, loopback included (Dovecot's
    # mail_max_userip_connections); 0 for no limit.
    maxConnectionsPerUserIP: int = 10
    # IMAP and POP3: seconds from connect to a successful login, however
    # busy the client is meanwhile (Dovecot's 3 minutes).
    loginTimeout: float = 180.0
    # Seconds of silence after login: RFC 3501 section 5.4 asks for at
    # least 30 minutes, RFC 1939 section 3 for at least 10.
    imapIdleTimeout: float = 1800.0
    pop3IdleTimeout: float = 600.0


@dataclasses.dataclass(frozen=True)
class AuthThrottleConfig:
    """
    Failed-login throttling for SMTP AUTH, IMAP and POP3 (Fail2ban, built
    in); see L{mailsrv.auth.throttle}.

    @ivar maxFailures: failed logins from one address (IPv6: one /64)
        within C{window} seconds that ban it for C{banTime} seconds.
    @ivar maxAccountFailures: failed logins for one account, from anywhere,
        within C{window}, after which each network failing on it is banned
        at its first failure (distributed guessing).
    @ivar exempt: networks never throttled.
    """

    enabled: bool = True
    maxFailures: int = 10
    window: float = 600.0
    banTime: float = 3600.0
    maxAccountFailures: int = 100
    exempt: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SubmissionConfig:
    """
    Mail from authenticated users (ports 587 and 465).

    @ivar spoofProtection: the envelope sender and every From: address must
        be owned by the account (its own address or an alias that reaches
        it); otherwise C{553 5.7.1}.
    @ivar showClientIP: put the client's HELO name and IP address in the
        C{Received:} header (off by default, for the sender's privacy).
    """

    spoofProtection: bool = True
    showClientIP: bool = False


@dataclasses.dataclass(frozen=True)
class QueueConfig:
    """
    The outbound queue (C{data_dir/queue}).

    @ivar retryInitial: seconds before the first retry after a temporary
        failure; doubled after each further one, up to C{retryMax}.
    @ivar lifetime: seconds after which a message still not delivered is
        returned to its sender.
    @ivar maxActive: messages being delivered at the same time.
    @ivar perDestination: connections open at the same time to one
        destination (a recipient domain, or the relay host).
    @ivar delayWarning: seconds after which a message still not delivered
        makes the sender get one "delayed" notice (RFC 3464 C{Action:
        delayed}); 0 sends none.
    """

    retryInitial: float = 300.0
    retryMax: float = 3600.0
    lifetime: float = 5 * 24 * 3600.0
    maxActive: int = 100
    perDestination: int = 4
    delayWarning: float = 0.0


@dataclasses.dataclass(frozen=True)
class DKIMConfig:
    """
    DKIM signing of submitted mail (L{mailsrv.pipeline.dkim}).

    @ivar enabled: sign mail of authenticated users whose From: domain has
        a key in C{config_dir/opendkim/keys/<domain>/<selector>.private}.
    @ivar selector: the selector looked for and used by C{mailsrv dkim
        generate}; docker-mailserver's default is C{mail}.
    """

    enabled: bool = True
    selector: str = "mail"


@dataclasses.dataclass(frozen=True)
class DNSConfig:
    """
    @ivar nameservers: C{(address, port)} pairs to query, in order; empty
        for the system's resolver configuration (C{/etc/resolv.conf}).
    @ivar timeout: seconds a lookup may take before it counts as a
        temporary failure.
    """

    nameservers: tuple[tuple[str, int], ...] = ()
    timeout: float = 10.0


@dataclasses.dataclass(frozen=True)
class RelayConfig:
    """
    A relay host ("smart host") every external message is handed to,
    instead of the recipients' MX hosts.

    @ivar host: its name or address; L{None} to deliver directly.
    @ivar port: its port (default: 465 for implicit TLS, 587 for STARTTLS).
    @ivar tls: C{implicit} or C{starttls} (always required: the password
        never travels in clear).
    @ivar verify: check the relay's certificate against C{caFile} (or the
        system's trust store) and C{host}.
    @ivar password: the password itself, or read from C{password_file}.
    """

    host: Optional[str] = None
    port: int = 0
    tls: str = "starttls"
    username: Optional[str] = None
    password: Optional[str] = dataclasses.field(default=None, repr=False)
    verify: bool = True
    caFile: Optional[Path] = None

    @property
    def effectivePort(self) -> int:
        if self.port:
            return self.port
        return 465 if self.tls == "implicit" else 587


@dataclasses.dataclass(frozen=True)
class DeliveryConfig:
    """
    @ivar mxPort: the port of the recipients' MX hosts; only lab setups and
        tests change it from 25.
    @ivar connectTimeout: seconds to wait for a TCP connection to an MX.
    @ivar commandTimeout: seconds to wait for each reply of the MX.
    """

    mxPort: int = 25
    connectTimeout: float = 30.0
    commandTimeout: float = 300.0


@dataclasses.dataclass(frozen=True)
class SieveConfig:
    """
    Users' Sieve scripts (RFC 5228) at final delivery
    (L{mailsrv.delivery.local}).

    @ivar enabled: run each account's active script
        (C{home/.dovecot.sieve} in its mail directory).
    @ivar maxScriptSize: larger scripts are not run (logged).
    """

    enabled: bool = True
    maxScriptSize: int = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class HTTPConfig:
    """
    The optional HTTP endpoint (an C{[endpoints.X]} with C{protocol =
    "http"}); see L{mailsrv.http}.

    @ivar metricsNetworks: client networks allowed to read C{/metrics}.
    """

    metricsNetworks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


@dataclasses.dataclass(frozen=True)
class MTASTSConfig:
    """
    The MTA-STS policy (RFC 8461) served at C{/.well-known/mta-sts.txt}.

    @ivar mode: C{testing} (report only), C{enforce} or C{none}.
    @ivar maxAge: seconds senders cache the policy.
    @ivar mx: MX host patterns the policy allows; empty means
        C{server.hostname}.
    """

    mode: str = "testing"
    maxAge: int = 604800
    mx: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SenderAuthConfig:
    """
    SPF, DKIM, ARC and DMARC checks on mail from the world (MX endpoints
    only; never for authenticated or submitted mail), reported in one
    C{Authentication-Results:} header.  See L{mailsrv.filters.senderauth}.

    @ivar spfFail: what an SPF C{fail} alone does: C{none} (reported; DMARC
        decides) or C{reject} (C{554 5.7.1} at MAIL FROM).
    @ivar dmarcReject: what a DMARC failure under C{p=reject} does:
        C{reject} or C{quarantine} (into the Junk folder).
    """

    enabled: bool = True
    spf: bool = True
    dkim: bool = True
    arc: bool = True
    dmarc: bool = True
    spfFail: str = "none"
    dmarcReject: str = "reject"


@dataclasses.dataclass(frozen=True)
class DNSListZone:
    """
    One DNS list queried at connect (L{mailsrv.filters.dnsbl}).

    @ivar zone: the list's DNS zone (C{zen.spamhaus.org}).
    @ivar weight: added to the client's score when it is listed; negative
        for allow lists (DNSWL), as Postfix postscreen does.
    @ivar answers: the A records that count as listed (addresses or
        networks); empty means any address in 127.0.0.0/8.
    """

    zone: str
    weight: int = 1
    answers: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class DNSBLConfig:
    """
    DNS block and allow lists checked when a client connects to an MX
    endpoint; no zones (the default) means no lookups.

    @ivar threshold: a client whose summed weights reach it is refused
        with C{554 5.7.1}.
    @ivar maxCacheTTL: upper bound, in seconds, on how long an answer is
        reused (its DNS TTL otherwise).
    """

    zones: tuple[DNSListZone, ...] = ()
    threshold: int = 1
    maxCacheTTL: float = 3600.0


@dataclasses.dataclass(frozen=True)
class GreylistConfig:
    """
    Greylisting of mail from the world (L{mailsrv.filters.greylist}); off
    by default.

    @ivar delay: seconds a new (client network, sender, recipient) triplet
        is refused with C{450 4.7.1}.
    @ivar retryWindow: seconds a refused triplet is remembered while
        waiting for the retry.
    @ivar expiry: seconds a passed triplet (or an auto-whitelisted client)
        stays known after it was last seen.
    @ivar autoWhitelist: successful retries after which a client network
        skips greylisting; 0 never.
    @ivar whitelist: client networks never greylisted.
    """

    enabled: bool = False
    delay: float = 300.0
    retryWindow: float = 2 * 86400.0
    expiry: float = 35 * 86400.0
    autoWhitelist: int = 5
    whitelist: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ClamAVConfig:
    """
    Virus scanning through clamd (L{mailsrv.filters.clamav}); off by
    default.

    @ivar address: clamd's socket: a path (C{LocalSocket}) or C{host:port}
        (C{TCPSocket}).
    @ivar streamMaxLength: clamd's C{StreamMaxLength}; larger messages are
        not sent (logged, accepted).
    @ivar failMode: C{tempfail} or C{accept} when clamd fails or times out.
    """

    enabled: bool = False
    address: str = "/run/clamav/clamd.ctl"
    streamMaxLength: int = 25 * 1024 * 1024
    chunkSize: int = 64 * 1024
    timeout: float = 60.0
    failMode: str = "tempfail"


@dataclasses.dataclass(frozen=True)
class RspamdConfig:
    """
    Spam checking through Rspamd's HTTP protocol (L{mailsrv.filters.rspamd});
    off by default.

    @ivar url: the normal worker (or proxy) base URL; C{/checkv2} is added.
    @ivar maxSize: larger messages are not checked (logged, accepted).
    @ivar failMode: C{tempfail} or C{accept} when Rspamd fails or times out.
    @ivar learn: teach Rspamd's Bayes classifier from users' moves over
        IMAP: into C{Junk} is spam, out of it (but not into C{Trash}) ham
        (L{mailsrv.filters.rspamd_learn}); docker-mailserver's
        C{RSPAMD_LEARN}.
    @ivar controllerUrl: Rspamd's controller worker, which learns.
    @ivar password: the controller's C{enable_password}, in clear.
    """

    enabled: bool = False
    url: str = "http://127.0.0.1:11333"
    timeout: float = 30.0
    maxSize: int = 50 * 1024 * 1024
    failMode: str = "tempfail"
    learn: bool = False
    controllerUrl: str = "http://127.0.0.1:11334"
    password: str = ""


@dataclasses.dataclass(frozen=True)
class RateLimitConfig:
    """
    Outbound limit per authenticated user (L{mailsrv.filters.ratelimit}).

    @ivar messagesPerHour: messages one account may send within any hour
        before MAIL FROM gets C{452 4.7.1}; 0 for no limit.
    @ivar exempt: accounts without a limit.
    """

    messagesPerHour: int = 0
    exempt: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ManageSieveConfig:
    """
    ManageSieve endpoints (C{protocol = "managesieve"}, RFC 5804), where
    users manage their Sieve scripts; see
    L{mailsrv.protocols.managesieve}.  The login, command and literal
    timers and C{max_connections_per_user_ip} come from C{[limits]}.

    @ivar maxScripts: scripts one account may have (Pigeonhole's
        C{sieve_quota_max_scripts}); 0 for no limit.  The largest script
        is C{[sieve] max_script_size}, the one delivery runs.
    @ivar maxConnections: connections of all ManageSieve endpoints together.
    @ivar maxConnectionsPerIP: of them, from one client address.
    @ivar idleTimeout: seconds of silence allowed after login.
    """

    maxScripts: int = 20
    maxConnections: int = 100
    maxConnectionsPerIP: int = 10
    idleTimeout: float = 600.0


@dataclasses.dataclass(frozen=True)
class Config:
    source: str  # the file read, or "<defaults>"
    server: ServerConfig
    tls: TLSConfig
    limits: LimitsConfig
    endpoints: tuple[EndpointPolicy, ...]
    submission: SubmissionConfig = dataclasses.field(default_factory=SubmissionConfig)
    queue: QueueConfig = dataclasses.field(default_factory=QueueConfig)
    dns: DNSConfig = dataclasses.field(default_factory=DNSConfig)
    relay: RelayConfig = dataclasses.field(default_factory=RelayConfig)
    delivery: DeliveryConfig = dataclasses.field(default_factory=DeliveryConfig)
    sieve: SieveConfig = dataclasses.field(default_factory=SieveConfig)
    dkim: DKIMConfig = dataclasses.field(default_factory=DKIMConfig)
    authThrottle: AuthThrottleConfig = dataclasses.field(default_factory=AuthThrottleConfig)
    senderAuth: SenderAuthConfig = dataclasses.field(default_factory=SenderAuthConfig)
    http: HTTPConfig = dataclasses.field(default_factory=HTTPConfig)
    mtaSts: MTASTSConfig = dataclasses.field(default_factory=MTASTSConfig)
    dnsbl: DNSBLConfig = dataclasses.field(default_factory=DNSBLConfig)
    greylist: GreylistConfig = dataclasses.field(default_factory=GreylistConfig)
    clamav: ClamAVConfig = dataclasses.field(default_factory=ClamAVConfig)
    rspamd: RspamdConfig = dataclasses.field(default_factory=RspamdConfig)
    rateLimit: RateLimitConfig = dataclasses.field(default_factory=RateLimitConfig)
    managesieve: ManageSieveConfig = dataclasses.field(default_factory=ManageSieveConfig)

    def endpoint(self, name: str) -> EndpointPolicy:
        for e in self.endpoints:
            if e.name == name:
                return e
        raise KeyError(name)


# The seven standard endpoints.  A config table named after one of them may
# set only the keys it changes.
DEFAULT_ENDPOINTS: tuple[EndpointPolicy, ...] = (
    EndpointPolicy("smtp", Protocol.SMTP, ("0.0.0.0:25",), TLSMode.STARTTLS, auth=False),
    EndpointPolicy(
        "submission", Protocol.SUBMISSION, ("0.0.0.0:587",), TLSMode.STARTTLS_REQUIRED, auth=True
    ),
    EndpointPolicy(
        "submissions", Protocol.SUBMISSION, ("0.0.0.0:465",), TLSMode.IMPLICIT, auth=True
    ),
    EndpointPolicy("pop3", Protocol.POP3, ("0.0.0.0:110",), TLSMode.STARTTLS_REQUIRED, auth=True),
    EndpointPolicy("pop3s", Protocol.POP3, ("0.0.0.0:995",), TLSMode.IMPLICIT, auth=True),
    EndpointPolicy("imap", Protocol.IMAP, ("0.0.0.0:143",), TLSMode.STARTTLS_REQUIRED, auth=True),
    EndpointPolicy("imaps", Protocol.IMAP, ("0.0.0.0:993",), TLSMode.IMPLICIT, auth=True),
)
