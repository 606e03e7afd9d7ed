# -*- test-case-name: tests.test_config -*-
"""
Read the TOML configuration file into a validated L{Config}.

Everything is checked here, before any listener is created: unknown sections
and keys, wrong types and bad values raise L{ConfigError}, whose text names
the file and the dotted key (C{endpoints.imap.tls}) in one line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Callable, Optional

from mailsrv.config.schema import (
    DEFAULT_CONFIG_DIR,
    DEFAULT_DATA_DIR,
    DEFAULT_ENDPOINTS,
    AuthThrottleConfig,
    ClamAVConfig,
    DNSBLConfig,
    DNSListZone,
    GreylistConfig,
    RateLimitConfig,
    RspamdConfig,
    SenderAuthConfig,
    Config,
    DeliveryConfig,
    SieveConfig,
    DKIMConfig,
    DNSConfig,
    HTTPConfig,
    LimitsConfig,
    ManageSieveConfig,
    MTASTSConfig,
    QueueConfig,
    RelayConfig,
    SubmissionConfig,
    ServerConfig,
    TLSConfig,
)
from mailsrv.errors import ConfigError
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode

_HOSTNAME_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)


def isHostname(name: str) -> bool:
    """
    Whether C{name} is a syntactically valid DNS host name (LDH labels).
    """
    if not name or len(name) > 253:
        return False
    return all(_HOSTNAME_LABEL.match(label) for label in name.rstrip(".").split("."))


def parseListen(spec: str) -> tuple[str, int]:
    """
    Split C{host:port} or C{[v6addr]:port} into an interface and a port.

    @raise ValueError: with a message suited to a config error.
    """
    if spec.startswith("["):
        host, sep, port = spec[1:].partition("]:")
        if not sep:
            raise ValueError(f"{spec!r} is not [address]:port")
        ipaddress.IPv6Address(host)
    else:
        host, sep, port = spec.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{spec!r} is not host:port")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not isHostname(host):
                raise ValueError(f"{host!r} is neither an IP address nor a host name")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"port {port!r} is not a number between 1 and 65535")
    return host, int(port)


# A listening socket passed by systemd (socket activation), by its
# FileDescriptorName: printable ASCII without ':' (systemd's rule) and, so the
# name survives Twisted's endpoint-string syntax, without '=' or '\\'.
SYSTEMD_PREFIX = "systemd:"
_SOCKET_NAME = re.compile(r"^[!-~]{1,255}$")


def systemdSocketName(spec: str) -> Optional[str]:
    """
    The socket name of a C{systemd:NAME} listen spec, or L{None} for a
    C{host:port} one.

    @raise ValueError: for a C{systemd:} spec with an invalid name.
    """
    if not spec.startswith(SYSTEMD_PREFIX):
        return None
    name = spec[len(SYSTEMD_PREFIX) :]
    if not _SOCKET_NAME.match(name) or any(c in name for c in ":=\\"):
        raise ValueError(
            f"{spec!r}: after systemd: comes the socket's FileDescriptorName "
            "(printable ASCII without spaces, ':', '=' or '\\')"
        )
    return name


def parseListenSpec(spec: str) -> "tuple[str, int] | str":
    """
    A listen spec: C{(host, port)} for C{host:port}, or the socket name
    (a C{str}) for C{systemd:NAME}.

    @raise ValueError: with a message suited to a config error.
    """
    name = systemdSocketName(spec)
    return name if name is not None else parseListen(spec)


# The port clients use for each kind of endpoint, when no listen address
# says it (systemd sockets): published in DNS SRV records and autoconfig,
# and probed by `mailsrv doctor` on the loopback address.
_STANDARD_PORTS: dict[tuple[Protocol, bool], int] = {
    (Protocol.SMTP, False): 25,
    (Protocol.SMTP, True): 465,
    (Protocol.SUBMISSION, False): 587,
    (Protocol.SUBMISSION, True): 465,
    (Protocol.IMAP, False): 143,
    (Protocol.IMAP, True): 993,
    (Protocol.POP3, False): 110,
    (Protocol.POP3, True): 995,
    (Protocol.HTTP, False): 80,
    (Protocol.HTTP, True): 443,
    # RFC 5804 registers 4190 only; implicit TLS has no port of its own.
    (Protocol.MANAGESIEVE, False): 4190,
    (Protocol.MANAGESIEVE, True): 4190,
}

# Where an endpoint of a protocol without a standard endpoint listens when
# its table gives no `listen`.
_DEFAULT_LISTEN: dict[Protocol, tuple[str, ...]] = {
    Protocol.MANAGESIEVE: ("0.0.0.0:4190",),
}


def advertisedPort(policy: EndpointPolicy) -> int:
    """
    The port clients reach C{policy} on: its C{port} key, else the port of
    its first C{host:port} listen address, else the standard port of its
    protocol and TLS mode.
    """
    if policy.port is not None:
        return policy.port
    for spec in policy.listen:
        address = parseListenSpec(spec)
        if isinstance(address, tuple):
            return address[1]
    return _STANDARD_PORTS[(policy.protocol, policy.implicitTLS)]


class _Table:
    """
    One TOML table being consumed: every key read is ticked off, so that
    what is left at the end is unknown and reported.
    """

    def __init__(self, path: str, prefix: str, data: Any) -> None:
        self.path = path
        self.prefix = prefix
        if not isinstance(data, dict):
            raise ConfigError(path, prefix, "must be a table")
        self._data = dict(data)

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.path, f"{self.prefix}.{key}" if self.prefix else key, problem)

    def take(
        self, key: str, kind: type | tuple[type, ...], default: Any, check: Optional[Callable[[Any], Any]] = None
    ) -> Any:
        if key not in self._data:
            return default
        value = self._data.pop(key)
        if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.error(key, f"must be {_kindName(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise self.error(key, f"must be {_kindName(kind)}, not {type(value).__name__}")
        if check is not None:
            try:
                value = check(value)
            except ValueError as e:
                raise self.error(key, str(e)) from None
        return value

    def table(self, key: str) -> "_Table":
        return _Table(self.path, f"{self.prefix}.{key}" if self.prefix else key, self._data.pop(key, {}))

    def keys(self) -> list[str]:
        return list(self._data)

    def finish(self) -> None:
        for key in self._data:
            raise self.error(key, "unknown key")


def _kindName(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _stringList(check: Optional[Callable[[str], Any]] = None) -> Callable[[list[Any]], tuple[Any, ...]]:
    def validate(values: list[Any]) -> tuple[Any, ...]:
        out = []
        for v in values:
            if not isinstance(v, str):
                raise ValueError(f"every entry must be a string, not {type(v).__name__}")
            out.append(check(v) if check else v)
        return tuple(out)

    return validate


def _hostname(value: str) -> str:
    if not isHostname(value):
        raise ValueError(f"{value!r} is not a valid host name")
    return value.rstrip(".").lower()


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


def _enum(enumType: Any) -> Callable[[str], Any]:
    def validate(value: str) -> Any:
        try:
            return enumType(value)
        except ValueError:
            choices = " | ".join(m.value for m in enumType)
            raise ValueError(f"{value!r} is not one of {choices}") from None

    return validate


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an address or network") from None
    return value


def _path(value: str) -> Path:
    if not value:
        raise ValueError("must not be empty")
    return Path(value)


def _server(t: _Table) -> ServerConfig:
    server = ServerConfig(
        hostname=t.take("hostname", str, None, _hostname) or socket.getfqdn().lower(),
        domains=t.take("domains", list, (), _stringList(_hostname)),
        dataDir=t.take("data_dir", str, DEFAULT_DATA_DIR, _path),
        configDir=t.take("config_dir", str, DEFAULT_CONFIG_DIR, _path),
    )
    t.finish()
    return server


def _tls(t: _Table) -> TLSConfig:
    cert = t.take("cert", str, None, _path)
    key = t.take("key", str, None, _path)
    t.finish()
    if (cert is None) != (key is None):
        raise t.error("key" if key is None else "cert", "cert and key must be given together")
    return TLSConfig(cert=cert, key=key)


def _limits(t: _Table) -> LimitsConfig:
    d = LimitsConfig()
    limits = LimitsConfig(
        messageSize=t.take("message_size", int, d.messageSize, _positive),
        recipients=t.take("recipients", int, d.recipients, _positive),
        commandTimeout=float(t.take("command_timeout", (int, float), d.commandTimeout, _positive)),
        dataTimeout=float(t.take("data_timeout", (int, float), d.dataTimeout, _positive)),
        minDataRate=t.take("min_data_rate", int, d.minDataRate, _positive),
        maxErrors=t.take("max_errors", int, d.maxErrors, _positive),
        maxConnections=t.take("max_connections", int, d.maxConnections, _positive),
        maxConnectionsPerIP=t.take("max_connections_per_ip", int, d.maxConnectionsPerIP, _positive),
        imapMaxConnections=t.take("imap_max_connections", int, d.imapMaxConnections, _positive),
        imapMaxConnectionsPerIP=t.take(
            "imap_max_connections_per_ip", int, d.imapMaxConnectionsPerIP, _positive
        ),
        pop3MaxConnections=t.take("pop3_max_connections", int, d.pop3MaxConnections, _positive),
        pop3MaxConnectionsPerIP=t.take(
            "pop3_max_connections_per_ip", int, d.pop3MaxConnectionsPerIP, _positive
        ),
        connectionLimitExceptions=t.take(
            "connection_limit_exceptions", list, d.connectionLimitExceptions, _stringList(_network)
        ),
        maxConnectionsPerUserIP=t.take(
            "max_connections_per_user_ip", int, d.maxConnectionsPerUserIP, _nonNegative
        ),
        loginTimeout=float(t.take("login_timeout", (int, float), d.loginTimeout, _positive)),
        imapIdleTimeout=float(t.take("imap_idle_timeout", (int, float), d.imapIdleTimeout, _positive)),
        pop3IdleTimeout=float(t.take("pop3_idle_timeout", (int, float), d.pop3IdleTimeout, _positive)),
    )
    t.finish()
    return limits


def _listen(values: list[Any]) -> tuple[str, ...]:
    specs = _stringList()(values)
    for spec in specs:
        parseListenSpec(spec)
    return specs


def _endpoint(name: str, t: _Table) -> EndpointPolicy:
    defaults = {e.name: e for e in DEFAULT_ENDPOINTS}
    base = defaults.get(name)
    protocol = t.take("protocol", str, base.protocol if base else None, _enum(Protocol))
    if protocol is None:
        raise t.error("protocol", "required for an endpoint that is not one of the standard seven")
    listen = t.take("listen", list, base.listen if base else _DEFAULT_LISTEN.get(protocol), _listen)
    if listen is None:
        raise t.error("listen", "required for an endpoint that is not one of the standard seven")
    defaultTLS = base.tls if base else (
        TLSMode.STARTTLS if protocol is Protocol.SMTP else TLSMode.STARTTLS_REQUIRED
    )
    if protocol is Protocol.HTTP:
        defaultTLS = TLSMode.NONE
    tls = t.take("tls", str, defaultTLS, _enum(TLSMode))
    if protocol is Protocol.HTTP and tls not in (TLSMode.NONE, TLSMode.IMPLICIT):
        raise t.error("tls", 'an http endpoint has tls = "none" or "implicit" (HTTPS)')
    auth = t.take("auth", bool, base.auth if base else protocol not in (Protocol.SMTP, Protocol.HTTP))
    if protocol is Protocol.HTTP and auth:
        raise t.error("auth", "an http endpoint does not authenticate")
    port = t.take("port", int, None, _port)
    proxyProtocol = t.take("proxy_protocol", bool, False)
    trustedProxies = t.take("trusted_proxies", list, (), _networks)
    t.finish()
    if protocol is Protocol.SUBMISSION and not auth:
        raise t.error("auth", "a submission endpoint must offer authentication")
    if proxyProtocol and not trustedProxies:
        raise t.error("trusted_proxies", "required when proxy_protocol = true")
    if trustedProxies and not proxyProtocol:
        raise t.error("trusted_proxies", "only used with proxy_protocol = true")
    return EndpointPolicy(
        name=name,
        protocol=protocol,
        listen=listen,
        tls=tls,
        auth=auth,
        proxyProtocol=proxyProtocol,
        trustedProxies=trustedProxies,
        port=port,
    )


def _networks(values: list[Any]) -> tuple[str, ...]:
    from mailsrv.policy.proxy import parseNetworks

    specs = _stringList()(values)
    return tuple(str(n) for n in parseNetworks(specs))


def _endpoints(t: _Table) -> tuple[EndpointPolicy, ...]:
    names = t.keys()
    if not names:
        return DEFAULT_ENDPOINTS
    endpoints = tuple(_endpoint(name, t.table(name)) for name in names)
    seen: dict[Any, str] = {}
    for e in endpoints:
        for spec in e.listen:
            # A systemd socket, like a port, can be taken by one listener only.
            address = parseListenSpec(spec)
            if address in seen:
                raise ConfigError(
                    t.path, f"endpoints.{e.name}.listen", f"{spec} is also used by endpoints.{seen[address]}"
                )
            seen[address] = e.name
    return endpoints


def _ipNetwork(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or network") from None


def _oneOf(*choices: str) -> Callable[[str], str]:
    def validate(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {' | '.join(choices)}")
        return value

    return validate


def _senderAuth(t: _Table) -> SenderAuthConfig:
    d = SenderAuthConfig()
    senderAuth = SenderAuthConfig(
        enabled=t.take("enabled", bool, d.enabled),
        spf=t.take("spf", bool, d.spf),
        dkim=t.take("dkim", bool, d.dkim),
        arc=t.take("arc", bool, d.arc),
        dmarc=t.take("dmarc", bool, d.dmarc),
        spfFail=t.take("spf_fail", str, d.spfFail, _oneOf("none", "reject")),
        dmarcReject=t.take("dmarc_reject", str, d.dmarcReject, _oneOf("reject", "quarantine")),
    )
    t.finish()
    return senderAuth


def _authThrottle(t: _Table) -> AuthThrottleConfig:
    d = AuthThrottleConfig()
    throttle = AuthThrottleConfig(
        enabled=t.take("enabled", bool, d.enabled),
        maxFailures=t.take("max_failures", int, d.maxFailures, _positive),
        window=float(t.take("window", (int, float), d.window, _positive)),
        banTime=float(t.take("ban_time", (int, float), d.banTime, _positive)),
        maxAccountFailures=t.take("max_account_failures", int, d.maxAccountFailures, _positive),
        exempt=t.take("exempt", list, d.exempt, _stringList(_ipNetwork)),
    )
    t.finish()
    return throttle


def _submission(t: _Table) -> SubmissionConfig:
    d = SubmissionConfig()
    submission = SubmissionConfig(
        spoofProtection=t.take("spoof_protection", bool, d.spoofProtection),
        showClientIP=t.take("show_client_ip", bool, d.showClientIP),
    )
    t.finish()
    return submission


def _queue(t: _Table) -> QueueConfig:
    d = QueueConfig()
    queue = QueueConfig(
        retryInitial=float(t.take("retry_initial", (int, float), d.retryInitial, _positive)),
        retryMax=float(t.take("retry_max", (int, float), d.retryMax, _positive)),
        lifetime=float(t.take("lifetime", (int, float), d.lifetime, _positive)),
        maxActive=t.take("max_active", int, d.maxActive, _positive),
        perDestination=t.take("per_destination", int, d.perDestination, _positive),
        delayWarning=float(t.take("delay_warning", (int, float), d.delayWarning, _nonNegative)),
    )
    t.finish()
    if queue.retryMax < queue.retryInitial:
        raise t.error("retry_max", "must not be less than retry_initial")
    return queue


def _nonNegative(value: float) -> float:
    if value < 0:
        raise ValueError("must not be negative")
    return value


_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _selector(value: str) -> str:
    if not _SELECTOR.match(value):
        raise ValueError(f"{value!r} is not a DKIM selector (letters, digits, hyphens, dots)")
    return value


def _dkim(t: _Table) -> DKIMConfig:
    d = DKIMConfig()
    dkim = DKIMConfig(
        enabled=t.take("enabled", bool, d.enabled),
        selector=t.take("selector", str, d.selector, _selector),
    )
    t.finish()
    return dkim


def _nameserver(spec: str) -> tuple[str, int]:
    if spec.startswith("[") or spec.count(":") == 1:
        host, port = parseListen(spec)
    else:
        host, port = spec, 53
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    return host, port


def _dns(t: _Table) -> DNSConfig:
    d = DNSConfig()
    dns = DNSConfig(
        nameservers=t.take("nameservers", list, d.nameservers, _stringList(_nameserver)),
        timeout=float(t.take("timeout", (int, float), d.timeout, _positive)),
    )
    t.finish()
    return dns


def _port(value: int) -> int:
    if not 0 < value < 65536:
        raise ValueError("must be a port number between 1 and 65535")
    return value


def _relay(t: _Table) -> RelayConfig:
    host = t.take("host", str, None, _relayHost)
    port = t.take("port", int, 0, _port)
    tls = t.take("tls", str, "starttls", _oneOf("implicit", "starttls"))
    username = t.take("username", str, None)
    password = t.take("password", str, None)
    passwordFile = t.take("password_file", str, None, _path)
    verify = t.take("verify", bool, True)
    caFile = t.take("ca_file", str, None, _path)
    t.finish()
    if password is not None and passwordFile is not None:
        raise t.error("password_file", "give password or password_file, not both")
    if passwordFile is not None:
        try:
            password = passwordFile.read_text(encoding="utf-8").strip("\r\n")
        except OSError as e:
            raise t.error("password_file", f"cannot read {passwordFile}: {e.strerror}") from None
    if (username is None) != (password is None):
        raise t.error("username" if username is None else "password", "username and password go together")
    if host is None and (username is not None or port):
        raise t.error("host", "required when other relay keys are set")
    return RelayConfig(
        host=host, port=port, tls=tls, username=username, password=password, verify=verify, caFile=caFile
    )


def _relayHost(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return _hostname(value)


def _delivery(t: _Table) -> DeliveryConfig:
    d = DeliveryConfig()
    delivery = DeliveryConfig(
        mxPort=t.take("mx_port", int, d.mxPort, _port),
        connectTimeout=float(t.take("connect_timeout", (int, float), d.connectTimeout, _positive)),
        commandTimeout=float(t.take("command_timeout", (int, float), d.commandTimeout, _positive)),
    )
    t.finish()
    return delivery


def _sieve(t: _Table) -> SieveConfig:
    d = SieveConfig()
    sieve = SieveConfig(
        enabled=t.take("enabled", bool, d.enabled),
        maxScriptSize=t.take("max_script_size", int, d.maxScriptSize, _positive),
    )
    t.finish()
    return sieve


def _http(t: _Table) -> HTTPConfig:
    d = HTTPConfig()
    http = HTTPConfig(
        metricsNetworks=t.take("metrics_networks", list, d.metricsNetworks, _stringList(_ipNetwork)),
    )
    t.finish()
    return http


def _maxAge(value: int) -> int:
    # RFC 8461 section 3.2: at most 31557600 seconds (about a year).
    if not 0 <= value <= 31557600:
        raise ValueError("must be between 0 and 31557600 seconds")
    return value


def _mxPattern(value: str) -> str:
    # RFC 8461 section 4.1: a host name, or "*." and a host name.
    return "*." + _hostname(value[2:]) if value.startswith("*.") else _hostname(value)


def _mtaSts(t: _Table) -> MTASTSConfig:
    d = MTASTSConfig()
    mtaSts = MTASTSConfig(
        mode=t.take("mode", str, d.mode, _oneOf("testing", "enforce", "none")),
        maxAge=t.take("max_age", int, d.maxAge, _maxAge),
        mx=t.take("mx", list, d.mx, _stringList(_mxPattern)),
    )
    t.finish()
    return mtaSts


# ---------------------------------------------------------------- filters


def _dnsListZone(t: _Table) -> DNSListZone:
    zone = t.take("zone", str, None, _hostname)
    if zone is None:
        raise t.error("zone", "required")
    entry = DNSListZone(
        zone=zone.rstrip(".").lower(),
        weight=t.take("weight", int, 1),
        answers=t.take("answers", list, (), _stringList(_ipNetwork)),
    )
    t.finish()
    return entry


def _dnsbl(t: _Table) -> DNSBLConfig:
    d = DNSBLConfig()
    zones = []
    for index, value in enumerate(t.take("zones", list, [])):
        zones.append(_dnsListZone(_Table(t.path, f"{t.prefix}.zones[{index}]", value)))
    dnsbl = DNSBLConfig(
        zones=tuple(zones),
        threshold=t.take("threshold", int, d.threshold, _positive),
        maxCacheTTL=float(t.take("max_cache_ttl", (int, float), d.maxCacheTTL, _nonNegative)),
    )
    t.finish()
    return dnsbl


def _greylist(t: _Table) -> GreylistConfig:
    d = GreylistConfig()
    greylist = GreylistConfig(
        enabled=t.take("enabled", bool, d.enabled),
        delay=float(t.take("delay", (int, float), d.delay, _nonNegative)),
        retryWindow=float(t.take("retry_window", (int, float), d.retryWindow, _positive)),
        expiry=float(t.take("expiry", (int, float), d.expiry, _positive)),
        autoWhitelist=t.take("auto_whitelist", int, d.autoWhitelist, _nonNegative),
        whitelist=t.take("whitelist", list, d.whitelist, _stringList(_ipNetwork)),
    )
    t.finish()
    if greylist.retryWindow <= greylist.delay:
        raise t.error("retry_window", "must be longer than delay")
    return greylist


def _clamdAddress(value: str) -> str:
    if value.startswith("/"):
        return value
    parseListen(value)
    return value


def _clamav(t: _Table) -> ClamAVConfig:
    d = ClamAVConfig()
    clamav = ClamAVConfig(
        enabled=t.take("enabled", bool, d.enabled),
        address=t.take("address", str, d.address, _clamdAddress),
        streamMaxLength=t.take("stream_max_length", int, d.streamMaxLength, _positive),
        chunkSize=t.take("chunk_size", int, d.chunkSize, _positive),
        timeout=float(t.take("timeout", (int, float), d.timeout, _positive)),
        failMode=t.take("fail_mode", str, d.failMode, _oneOf("tempfail", "accept")),
    )
    t.finish()
    return clamav


def _httpURL(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+/?$", value):
        raise ValueError(f"{value!r} is not an http:// or https:// base URL (scheme, host and port only)")
    return value.rstrip("/")


def _rspamd(t: _Table) -> RspamdConfig:
    d = RspamdConfig()
    rspamd = RspamdConfig(
        enabled=t.take("enabled", bool, d.enabled),
        url=t.take("url", str, d.url, _httpURL),
        timeout=float(t.take("timeout", (int, float), d.timeout, _positive)),
        maxSize=t.take("max_size", int, d.maxSize, _positive),
        failMode=t.take("fail_mode", str, d.failMode, _oneOf("tempfail", "accept")),
        learn=t.take("learn", bool, d.learn),
        controllerUrl=t.take("controller_url", str, d.controllerUrl, _httpURL),
        password=t.take("password", str, d.password),
    )
    t.finish()
    if rspamd.learn and not rspamd.password:
        raise t.error("password", "learn = true needs the controller's enable_password")
    return rspamd


def _rateLimit(t: _Table) -> RateLimitConfig:
    d = RateLimitConfig()
    rateLimit = RateLimitConfig(
        messagesPerHour=t.take("messages_per_hour", int, d.messagesPerHour, _nonNegative),
        exempt=t.take("exempt", list, d.exempt, _stringList(str.lower)),
    )
    t.finish()
    return rateLimit


def _managesieve(t: _Table) -> ManageSieveConfig:
    d = ManageSieveConfig()
    managesieve = ManageSieveConfig(
        maxScripts=t.take("max_scripts", int, d.maxScripts, _nonNegative),
        maxConnections=t.take("max_connections", int, d.maxConnections, _positive),
        maxConnectionsPerIP=t.take("max_connections_per_ip", int, d.maxConnectionsPerIP, _positive),
        idleTimeout=float(t.take("idle_timeout", (int, float), d.idleTimeout, _positive)),
    )
    t.finish()
    return managesieve


# The filters' sections (mailsrv.filters): TOML name -> (Config field, parser).
_FILTER_SECTIONS: dict[str, tuple[str, Callable[[_Table], Any]]] = {
    "dnsbl": ("dnsbl", _dnsbl),
    "greylist": ("greylist", _greylist),
    "clamav": ("clamav", _clamav),
    "rspamd": ("rspamd", _rspamd),
    "rate_limit": ("rateLimit", _rateLimit),
}


# The HTTP endpoint's sections (mailsrv.http): TOML name -> (Config field, parser).
_OPS_SECTIONS: dict[str, tuple[str, Callable[[_Table], Any]]] = {
    "http": ("http", _http),
    "mta_sts": ("mtaSts", _mtaSts),
}


# Sections of protocols without a table of their own elsewhere.
_PROTOCOL_SECTIONS: dict[str, tuple[str, Callable[[_Table], Any]]] = {
    "managesieve": ("managesieve", _managesieve),
}


# Sections of the outbound side, read before the rest of the document.
_OUTBOUND_SECTIONS: dict[str, Callable[[_Table], Any]] = {
    "submission": _submission,
    "queue": _queue,
    "dns": _dns,
    "relay": _relay,
    "delivery": _delivery,
    "sieve": _sieve,
    "dkim": _dkim,
}


def parseConfig(data: dict[str, Any], source: str) -> Config:
    """
    Validate an already-parsed TOML document.
    """
    if not isinstance(data, dict):
        return _parseCore(data, source)
    rest = dict(data)
    named = (*_OUTBOUND_SECTIONS, *_OPS_SECTIONS, *_FILTER_SECTIONS, *_PROTOCOL_SECTIONS)
    top = _Table(source, "", {k: rest.pop(k) for k in named if k in rest})
    sections = {name: parse(top.table(name)) for name, parse in _OUTBOUND_SECTIONS.items()}
    sections.update({field: parse(top.table(name)) for name, (field, parse) in _OPS_SECTIONS.items()})
    sections.update({field: parse(top.table(name)) for name, (field, parse) in _FILTER_SECTIONS.items()})
    sections.update({field: parse(top.table(name)) for name, (field, parse) in _PROTOCOL_SECTIONS.items()})
    return dataclasses.replace(_parseCore(rest, source), **sections)


def _parseCore(data: dict[str, Any], source: str) -> Config:
    top = _Table(source, "", data)
    server = _server(top.table("server"))
    tls = _tls(top.table("tls"))
    limits = _limits(top.table("limits"))
    endpoints = _endpoints(top.table("endpoints"))
    authThrottle = _authThrottle(top.table("auth_throttle"))
    senderAuth = _senderAuth(top.table("sender_auth"))
    top.finish()
    return Config(
        source=source,
        server=server,
        tls=tls,
        limits=limits,
        endpoints=endpoints,
        authThrottle=authThrottle,
        senderAuth=senderAuth,
    )


def loadConfig(path: Optional[Path]) -> Config:
    """
    Load and validate C{path}, or the embedded defaults when it is L{None}.

    @raise ConfigError: naming the file and key of the first problem.
    """
    if path is None:
        return parseConfig({}, "<defaults>")
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(source, "-", "file not found") from None
    except OSError as e:
        raise ConfigError(source, "-", f"cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, "-", f"not valid TOML: {e}") from None
    return parseConfig(data, source)


def replaceServer(config: Config, **changes: Any) -> Config:
    """
    A copy of C{config} with some L{ServerConfig} fields replaced.
    """
    return dataclasses.replace(config, server=dataclasses.replace(config.server, **changes))
