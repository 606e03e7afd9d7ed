# -*- test-case-name: tests.ops.test_doctor -*-
"""
C{mailsrv doctor [DOMAIN]}: one line per check, C{PASS}, C{WARN} or
C{FAIL}, and for every problem a C{fix:} line saying what to do.

The checks answer the questions behind "my mail lands in spam" and "my
client cannot connect": is the config valid; is the certificate valid,
complete, unexpired and for this host name; does every endpoint answer
locally with the TLS mode it is configured for; is DNS published as
C{mailsrv dns-records} says (MX here, forward-confirmed reverse DNS, SPF
covering this host, DKIM matching the key on disk, DMARC, MTA-STS and
TLS-RPT consistent with the served policy); is the public address on a
DNS blocklist; can mail leave (outbound port 25, or a relay host).

DNS goes through C{[dns] nameservers} when set (the tests point it at a
twisted.names zone on loopback), else the system's resolver.  The exit
code is 1 if any check failed, else 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import enum
import ipaddress
import socket
import ssl
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TextIO

from cryptography import x509
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.names import dns
from twisted.names.error import AuthoritativeDomainError, DomainError

from mailsrv.config.load import advertisedPort, parseListenSpec
from mailsrv.config.schema import Config
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode
from mailsrv.policy.proxy import addressIn, parseNetworks, v1Header

DEFAULT_DNSBLS = ("zen.spamhaus.org", "bl.spamcop.net")
DEFAULT_PORT25_PROBE = "gmail-smtp-in.l.google.com:25"
EXPIRY_WARNING_DAYS = 14


class Status(enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclasses.dataclass(frozen=True)
class Check:
    """
    The result of one check.

    @ivar name: a short stable name (C{mx}, C{spf}, C{endpoint imaps}...).
    @ivar hint: what to do about a WARN or FAIL.
    """

    name: str
    status: Status
    detail: str
    hint: str = ""

    def lines(self) -> list[str]:
        out = [f"{self.status.value}  {self.name:<24} {self.detail}"]
        if self.hint and self.status is not Status.PASS:
            out.append(f"      fix: {self.hint}")
        return out


def _ok(name: str, detail: str) -> Check:
    return Check(name, Status.PASS, detail)


def _warn(name: str, detail: str, hint: str) -> Check:
    return Check(name, Status.WARN, detail, hint)


def _fail(name: str, detail: str, hint: str) -> Check:
    return Check(name, Status.FAIL, detail, hint)


# ------------------------------------------------------------ certificate


def _hostMatches(pattern: str, hostname: str) -> bool:
    pattern, hostname = pattern.lower().rstrip("."), hostname.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = hostname.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == hostname


def certificateFiles(config: Config) -> tuple[Path, Path]:
    """
    The files the server serves: [tls] cert/key, or the generated
    self-signed pair.
    """
    if config.tls.cert is not None and config.tls.key is not None:
        return config.tls.cert, config.tls.key
    tlsDir = config.server.dataDir / "tls"
    return tlsDir / "selfsigned-cert.pem", tlsDir / "selfsigned-key.pem"


def checkCertificate(config: Config, now: Optional[datetime.datetime] = None) -> list[Check]:
    """
    The certificate checks: loads and matches its key, chain, expiry, names.
    """
    from mailsrv.tls import loadCertificateOptions

    now = now or datetime.datetime.now(datetime.timezone.utc)
    certPath, keyPath = certificateFiles(config)
    hostname = config.server.hostname
    if not certPath.exists() or not keyPath.exists():
        if config.tls.cert is None:
            return [_warn("certificate", f"no certificate yet in {certPath.parent}",
                          "start the server once (it generates a self-signed one), then set [tls] cert/key")]
        return [_fail("certificate", f"{certPath} or {keyPath} does not exist",
                      "point [tls] cert/key at certbot's fullchain.pem and privkey.pem (check permissions)")]
    try:
        loadCertificateOptions(certPath, keyPath)
        chain = x509.load_pem_x509_certificates(certPath.read_bytes())
    except (ValueError, OSError) as e:
        return [_fail("certificate", str(e), "fix or re-issue the certificate and key files")]
    leaf = chain[0]
    checks = [_ok("certificate", f"{certPath} loads and matches {keyPath}")]
    notAfter = leaf.not_valid_after_utc
    days = (notAfter - now).days
    if notAfter <= now:
        checks.append(_fail("certificate expiry", f"expired on {notAfter:%Y-%m-%d}",
                            "renew it (certbot renew); the server picks up renewed files by itself"))
    elif leaf.not_valid_before_utc > now:
        checks.append(_fail("certificate expiry", f"not valid before {leaf.not_valid_before_utc:%Y-%m-%d}",
                            "check the system clock"))
    elif days < EXPIRY_WARNING_DAYS:
        checks.append(_warn("certificate expiry", f"expires in {days} days ({notAfter:%Y-%m-%d})",
                            "check that certbot's renewal timer runs: systemctl list-timers certbot"))
    else:
        checks.append(_ok("certificate expiry", f"valid until {notAfter:%Y-%m-%d} ({days} days)"))
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if any(_hostMatches(n, hostname) for n in names):
        checks.append(_ok("certificate names", f"covers {hostname}"))
    else:
        checks.append(_fail("certificate names", f"does not cover {hostname} (names: {', '.join(names) or 'none'})",
                            f"issue the certificate for {hostname} (certbot certonly -d {hostname})"))
    if leaf.issuer == leaf.subject:
        checks.append(_warn("certificate chain", "self-signed: mail clients will warn, MTA-STS enforce fails",
                            "get a certificate from Let's Encrypt (docs/tls-certbot.md)"))
    elif len(chain) == 1:
        checks.append(_warn("certificate chain", "no intermediate certificates in the file",
                            "use fullchain.pem, not cert.pem"))
    else:
        for child, parent in zip(chain, chain[1:]):
            try:
                child.verify_directly_issued_by(parent)
            except (ValueError, TypeError, Exception) as e:
                checks.append(_fail("certificate chain", f"{child.subject.rfc4514_string()} is not signed by the next "
                                    f"certificate ({e.__class__.__name__})", "use the fullchain.pem of the same issuance"))
                break
        else:
            checks.append(_ok("certificate chain", f"{len(chain)} certificates, each signed by the next"))
    return checks


# -------------------------------------------------------------- endpoints


def _localHost(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def _readReply(sock: Any, protocol: Protocol) -> bytes:
    data = b""
    while b"\n" not in data or (protocol in (Protocol.SMTP, Protocol.SUBMISSION) and data.splitlines()[-1][3:4] == b"-"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed by the server after {data[:80]!r}")
        data += chunk
        if data.endswith(b"\n") and protocol in (Protocol.SMTP, Protocol.SUBMISSION):
            if data.splitlines()[-1][3:4] != b"-":
                break
    if protocol is Protocol.MANAGESIEVE:
        # The greeting is the capability list up to an OK (or NO/BYE) line.
        while not data.endswith(b"\n") or not data.splitlines()[-1].startswith((b"OK", b"NO", b"BYE")):
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed by the server after {data[:80]!r}")
            data += chunk
    return data


_GREETING = {
    Protocol.SMTP: b"220",
    Protocol.SUBMISSION: b"220",
    Protocol.IMAP: b"* OK",
    Protocol.POP3: b"+OK",
    Protocol.MANAGESIEVE: b'"',  # a capability line
}


def probeEndpoint(policy: EndpointPolicy, spec: str, timeout: float) -> Check:
    """
    Connect to one listening address from this host and speak the
    endpoint's protocol up to a completed TLS handshake.  Blocking: run it
    in a thread.
    """
    name = f"endpoint {policy.name}"
    hint = "is mailsrv running? systemctl status mailsrv; journalctl -u mailsrv -e"
    address = parseListenSpec(spec)
    if isinstance(address, str):
        # A socket systemd listens on: its address is in the socket unit,
        # not here; the advertised port on loopback reaches a ListenStream=
        # that names a port alone or 0.0.0.0.
        host, port = "127.0.0.1", advertisedPort(policy)
        name = f"endpoint {policy.name} ({spec})"
        hint = f"systemctl status mailsrv.service mailsrv-{address}.socket; journalctl -u mailsrv -e"
    else:
        host, port = _localHost(address[0]), address[1]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the certificate is checked on its own
    try:
        sock: Any = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        return _fail(name, f"{host}:{port}: {e.strerror or e}", hint)
    try:
        if policy.proxyProtocol:
            local = sock.getsockname()
            if not addressIn(local[0], parseNetworks(policy.trustedProxies)):
                return _warn(name, f"{host}:{port} expects PROXY headers only from {', '.join(policy.trustedProxies)}",
                             "check it through the load balancer")
            sock.sendall(v1Header(local[0], local[1], host, port))
        version = None
        if policy.tls is TLSMode.IMPLICIT:
            sock = context.wrap_socket(sock)
            version = sock.version()
        if policy.protocol is Protocol.HTTP:
            sock.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: doctor\r\n\r\n")
            status = _readReply(sock, policy.protocol).split(b"\r\n", 1)[0]
            if b" 200 " not in status + b" ":
                return _fail(name, f"{host}:{port}: {status.decode('ascii', 'replace')}", hint)
            return _ok(name, f"{host}:{port} http, tls {policy.tls.value}" + (f" ({version})" if version else ""))
        greeting = _readReply(sock, policy.protocol)
        if not greeting.startswith(_GREETING[policy.protocol]):
            return _fail(name, f"{host}:{port}: unexpected greeting {greeting[:60]!r}",
                         "another program listens on this port: ss -ltnp")
        if policy.tls in (TLSMode.STARTTLS, TLSMode.STARTTLS_REQUIRED):
            if policy.protocol in (Protocol.SMTP, Protocol.SUBMISSION):
                sock.sendall(b"EHLO doctor.invalid\r\n")
                ehlo = _readReply(sock, policy.protocol)
                if b"STARTTLS" not in ehlo:
                    return _fail(name, f"{host}:{port}: STARTTLS not offered", hint)
                command, expected = b"STARTTLS\r\n", b"220"
            elif policy.protocol is Protocol.IMAP:
                command, expected = b"a STARTTLS\r\n", b"a OK"
            elif policy.protocol is Protocol.MANAGESIEVE:
                command, expected = b"STARTTLS\r\n", b"OK"
            else:
                command, expected = b"STLS\r\n", b"+OK"
            sock.sendall(command)
            reply = _readReply(sock, policy.protocol)
            if not reply.startswith(expected):
                return _fail(name, f"{host}:{port}: STARTTLS refused: {reply[:60]!r}", hint)
            sock = context.wrap_socket(sock)
            version = sock.version()
        detail = f"{host}:{port} {policy.protocol.value}, tls {policy.tls.value}"
        return _ok(name, detail + (f" ({version})" if version else ""))
    except (OSError, ssl.SSLError) as e:
        return _fail(name, f"{host}:{port}: {e}", hint)
    finally:
        sock.close()


# -------------------------------------------------------------------- DNS


class LookupFailed(Exception):
    """
    A DNS lookup failed for another reason than "no such record".
    """


def _txtValue(rr: Any) -> str:
    return b"".join(rr.payload.data).decode("utf-8", "replace")


class DNSChecks:
    """
    The DNS checks for one domain, through C{resolver} (an C{IResolver}).
    """

    def __init__(
        self,
        config: Config,
        resolver: Any,
        domain: str,
        addresses: Sequence[str],
        dnsbls: Sequence[str],
        timeout: float,
    ) -> None:
        self.config = config
        self.resolver = resolver
        self.domain = domain.rstrip(".").lower()
        self.addresses = list(addresses)
        self.dnsbls = list(dnsbls)
        self.timeout = (timeout,)
        self.mxHosts: list[str] = []
        self.hostname = config.server.hostname

    async def _lookup(self, method: str, name: str) -> list[Any]:
        try:
            answers, _, _ = await getattr(self.resolver, method)(name, timeout=self.timeout)
        except (DomainError, AuthoritativeDomainError):
            return []
        except Exception as e:
            raise LookupFailed(f"{name}: {e.__class__.__name__} {e}".strip()) from None
        return list(answers)

    async def _txt(self, name: str, prefix: str) -> list[str]:
        answers = await self._lookup("lookupText", name)
        values = [_txtValue(rr) for rr in answers if rr.type == dns.TXT]
        return [v for v in values if v.lower().startswith(prefix.lower())]

    async def _addressesOf(self, name: str) -> list[str]:
        out = []
        for method, rtype in (("lookupAddress", dns.A), ("lookupIPV6Address", dns.AAAA)):
            for rr in await self._lookup(method, name):
                if rr.type == rtype:
                    out.append(str(ipaddress.ip_address(rr.payload.dottedQuad() if rtype == dns.A else socket.inet_ntop(socket.AF_INET6, rr.payload.address))))
        return out

    async def run(self) -> list[Check]:
        checks: list[Check] = []
        for step in (self.mx, self.publicAddress, self.reverseDNS, self.spf, self.dkim, self.dmarc, self.mtaSts, self.tlsrpt, self.dnsbl):
            try:
                checks.extend(await step())
            except LookupFailed as e:
                checks.append(_warn(step.__name__, f"DNS lookup failed: {e}",
                                    "check [dns] nameservers and that this host can query DNS"))
        return checks

    async def mx(self) -> list[Check]:
        answers = await self._lookup("lookupMailExchange", self.domain)
        self.mxHosts = [str(rr.payload.name).rstrip(".").lower() for rr in answers if rr.type == dns.MX]
        records = f"{self.domain}. MX 10 {self.hostname}."
        if not self.mxHosts:
            return [_fail("mx", f"{self.domain} has no MX record", f"publish: {records}")]
        if self.hostname in self.mxHosts:
            return [_ok("mx", f"{self.domain} MX -> {', '.join(self.mxHosts)}")]
        return [_fail("mx", f"{self.domain} MX -> {', '.join(self.mxHosts)}, not {self.hostname}",
                      f"publish: {records} (or set [server] hostname to the MX name)")]

    async def publicAddress(self) -> list[Check]:
        found = await self._addressesOf(self.hostname)
        if not self.addresses:
            self.addresses = found
        if not found:
            return [_fail("host address", f"{self.hostname} has no A/AAAA record",
                          f"publish: {self.hostname}. A <this server's public IPv4 address>")]
        missing = [a for a in self.addresses if a not in found]
        if missing:
            return [_fail("host address", f"{self.hostname} -> {', '.join(found)}, not {', '.join(missing)}",
                          f"point {self.hostname} at this server")]
        return [_ok("host address", f"{self.hostname} -> {', '.join(found)}")]

    async def reverseDNS(self) -> list[Check]:
        checks = []
        for address in self.addresses:
            reverse = ipaddress.ip_address(address).reverse_pointer
            names = [str(rr.payload.name).rstrip(".").lower() for rr in await self._lookup("lookupPointer", reverse) if rr.type == dns.PTR]
            hint = f"ask your hosting provider to set the reverse DNS (PTR) of {address} to {self.hostname}"
            if not names:
                checks.append(_fail("reverse dns", f"{address} has no PTR record", hint))
                continue
            confirmed = [n for n in names if address in await self._addressesOf(n)]
            if not confirmed:
                checks.append(_fail("reverse dns", f"{address} -> {', '.join(names)}, which does not resolve back", hint))
            elif self.hostname not in confirmed:
                checks.append(_warn("reverse dns", f"{address} -> {confirmed[0]} (forward-confirmed, but not {self.hostname})", hint))
            else:
                checks.append(_ok("reverse dns", f"{address} -> {self.hostname} -> {address}"))
        return checks

    async def spf(self) -> list[Check]:
        from mailsrv.ops.dnsrecords import spfRecord

        records = await self._txt(self.domain, "v=spf1")
        hint = f'publish: {self.domain}. TXT "{spfRecord([])}"'
        if not records:
            return [_fail("spf", f"{self.domain} has no SPF record", hint)]
        if len(records) > 1:
            return [_fail("spf", f"{self.domain} has {len(records)} SPF records (a permanent error)", "merge them into one")]
        terms = records[0].split()[1:]
        covered, unknown = False, []
        for term in terms:
            qualifier = term[0] if term[0] in "+-~?" else "+"
            mechanism = term.lstrip("+-~?").lower()
            if mechanism == "all":
                if qualifier == "+":
                    return [_fail("spf", f"{records[0]!r} allows the whole Internet", "end it with -all or ~all")]
                break
            if qualifier != "+":
                continue
            if mechanism == "mx" and self.hostname in self.mxHosts:
                covered = True
            elif mechanism == f"mx:{self.domain}" and self.hostname in self.mxHosts:
                covered = True
            elif mechanism in (f"a:{self.hostname}",) or (mechanism == "a" and self.domain == self.hostname):
                covered = True
            elif mechanism.startswith(("ip4:", "ip6:")) and self.addresses:
                network = ipaddress.ip_network(mechanism[4:], strict=False)
                if any(ipaddress.ip_address(a) in network for a in self.addresses if ipaddress.ip_address(a).version == network.version):
                    covered = True
            elif mechanism.startswith(("include:", "redirect=", "a:", "exists:")):
                unknown.append(mechanism)
        if covered:
            return [_ok("spf", f"{records[0]!r} covers {self.hostname}")]
        if unknown:
            return [_warn("spf", f"{records[0]!r}: this host is covered only if {', '.join(unknown)} includes it",
                          "add 'mx' (or ip4:/ip6: of this server) to the record")]
        return [_fail("spf", f"{records[0]!r} does not cover {self.hostname}", "add 'mx' (or ip4:/ip6: of this server)")]

    async def dkim(self) -> list[Check]:
        from mailsrv.ops.dnsrecords import DKIM_KEYS_DIR, dkimKeys

        try:
            keys = dkimKeys(self.config, self.domain)
        except ValueError as e:
            return [_fail("dkim", str(e), "replace the key file (mode 0600, PEM)")]
        if not keys:
            where = self.config.server.configDir / DKIM_KEYS_DIR / self.domain
            return [_warn("dkim", f"no DKIM key in {where}", "generate a key (opendkim-genkey -s mail -d "
                          f"{self.domain} -D {where}), then publish what `mailsrv dns-records {self.domain}` prints")]
        checks = []
        for key in keys:
            name = f"{key.selector}._domainkey.{self.domain}"
            records = await self._txt(name, "v=DKIM1")
            hint = f"publish the {name} record that `mailsrv dns-records {self.domain}` prints"
            published = []
            for record in records:
                tags = dict(t.strip().split("=", 1) for t in record.split(";") if "=" in t)
                published.append("".join(tags.get("p", "").split()))
            if not records:
                checks.append(_fail("dkim", f"{name} has no DKIM record", hint))
            elif key.publicKey in published:
                checks.append(_ok("dkim", f"{name} matches {key.path}"))
            else:
                checks.append(_fail("dkim", f"{name} does not match {key.path}", hint))
        return checks

    async def dmarc(self) -> list[Check]:
        from mailsrv.ops.dnsrecords import dmarcRecord

        records = await self._txt(f"_dmarc.{self.domain}", "v=DMARC1")
        if not records:
            return [_fail("dmarc", f"_dmarc.{self.domain} has no DMARC record",
                          f'publish: _dmarc.{self.domain}. TXT "{dmarcRecord("dmarc-reports@" + self.domain)}"')]
        if "rua=" not in records[0]:
            return [_warn("dmarc", f"{records[0]!r} asks for no reports", "add rua=mailto:... to learn who sends as you")]
        return [_ok("dmarc", repr(records[0]))]

    async def mtaSts(self) -> list[Check]:
        from mailsrv.http.site import mtaStsPolicyId

        records = await self._txt(f"_mta-sts.{self.domain}", "v=STSv1")
        served = any(p.protocol is Protocol.HTTP for p in self.config.endpoints)
        policyId = mtaStsPolicyId(self.config)
        if not records:
            return [_warn("mta-sts", f"_mta-sts.{self.domain} has no MTA-STS record (senders may skip TLS checks)",
                          "add an http endpoint and publish the records `mailsrv dns-records` prints")]
        checks = []
        tags = dict(t.strip().split("=", 1) for t in records[0].split(";") if "=" in t)
        if not served:
            checks.append(_warn("mta-sts", "a record is published but no http endpoint serves the policy",
                                'add [endpoints.http] protocol = "http" (behind https://mta-sts.' + self.domain + "/)"))
        elif tags.get("id") != policyId:
            checks.append(_warn("mta-sts", f"record id {tags.get('id')} is not the served policy's id {policyId}",
                                f'publish: _mta-sts.{self.domain}. TXT "v=STSv1; id={policyId}"'))
        else:
            checks.append(_ok("mta-sts", f"record id {policyId} matches the served policy"))
        patterns = self.config.mtaSts.mx or (self.hostname,)
        uncovered = [h for h in self.mxHosts if not any(_hostMatches(p, h) for p in patterns)]
        if uncovered:
            make = _fail if self.config.mtaSts.mode == "enforce" else _warn
            checks.append(make("mta-sts mx", f"MX {', '.join(uncovered)} not in the policy's mx ({', '.join(patterns)})",
                               "list every MX host in [mta_sts] mx"))
        else:
            checks.append(_ok("mta-sts mx", f"policy ({self.config.mtaSts.mode}) covers every MX"))
        return checks

    async def tlsrpt(self) -> list[Check]:
        from mailsrv.ops.dnsrecords import tlsrptRecord

        records = await self._txt(f"_smtp._tls.{self.domain}", "v=TLSRPTv1")
        if not records:
            return [_warn("tls-rpt", f"_smtp._tls.{self.domain} has no TLS-RPT record",
                          f'publish: _smtp._tls.{self.domain}. TXT "{tlsrptRecord("tls-reports@" + self.domain)}"')]
        return [_ok("tls-rpt", repr(records[0]))]

    async def dnsbl(self) -> list[Check]:
        checks = []
        for address in self.addresses:
            ip = ipaddress.ip_address(address)
            if ip.version != 4:
                continue  # most lists are IPv4 only
            reversed4 = ".".join(reversed(address.split(".")))
            for zone in self.dnsbls:
                answers = [rr for rr in await self._lookup("lookupAddress", f"{reversed4}.{zone}") if rr.type == dns.A]
                codes = [rr.payload.dottedQuad() for rr in answers]
                if not codes:
                    checks.append(_ok("dnsbl", f"{address} not listed on {zone}"))
                elif all(c.startswith("127.255.255.") for c in codes):
                    checks.append(_warn("dnsbl", f"{zone} refused the query ({codes[0]})",
                                        "query it through your own resolver, not a public one"))
                else:
                    checks.append(_fail("dnsbl", f"{address} is listed on {zone} ({', '.join(codes)})",
                                        f"see the delisting page of {zone}; until then use a relay host ([relay])"))
        return checks


# --------------------------------------------------------------- outbound


def probeOutbound(config: Config, probe: str, timeout: float) -> Check:
    """
    Whether mail can leave: a TCP connection to the relay host, or to
    C{probe} (C{host:port}) answering C{220}.  Blocking: run it in a thread.
    """
    if config.relay.host:
        target = (config.relay.host, config.relay.effectivePort)
        label, hint = "relay host", "check [relay] host and port, and the provider's firewall"
    else:
        host, _, port = probe.rpartition(":")
        target = (host.strip("[]"), int(port))
        label, hint = "outbound port 25", "your provider blocks port 25: ask them to open it, or set [relay] host"
    try:
        with socket.create_connection(target, timeout=timeout) as sock:
            sock.settimeout(timeout)
            banner = sock.recv(512) if not config.relay.host or config.relay.tls != "implicit" else b"220"
    except OSError as e:
        return _fail(label, f"cannot reach {target[0]}:{target[1]}: {e.strerror or e}", hint)
    if not banner.startswith(b"220"):
        return _fail(label, f"{target[0]}:{target[1]} answered {banner[:40]!r}", hint)
    return _ok(label, f"{target[0]}:{target[1]} answers")


# ------------------------------------------------------------------ runner


def resolverFor(config: Config, reactor: Any) -> Any:
    from twisted.names import client

    if config.dns.nameservers:
        return client.Resolver(servers=list(config.dns.nameservers), reactor=reactor)
    return client.createResolver()


def checkSieveScripts(config: Config) -> list[Check]:
    """
    Every account's active Sieve script compiles (one warning per script
    that does not: its mail is kept in the INBOX).  Blocking.
    """
    from mailsrv.ops.sievecheck import activeScripts
    from mailsrv.sieve import SieveError, parseScript

    if not config.sieve.enabled:
        return [_ok("sieve", "users' Sieve scripts are not run ([sieve] enabled = false)")]
    checks = []
    count = 0
    for account, path in activeScripts(config.server.mailDir):
        count += 1
        try:
            parseScript(path.read_bytes(), maxSize=config.sieve.maxScriptSize)
        except (OSError, SieveError) as e:
            error = e.strerror if isinstance(e, OSError) else str(e)
            checks.append(
                _warn(
                    "sieve",
                    f"the script of {account} ({path}) cannot be used: {error}",
                    "fix it (`mailsrv sieve check` compiles it again); until then its mail is kept in the INBOX",
                )
            )
    if not checks:
        checks.append(_ok("sieve", f"{count} active Sieve scripts, all compile"))
    return checks


async def runChecks(
    reactor: Any,
    configPath: Optional[Path],
    domains: Sequence[str],
    *,
    dns: bool = True,
    addresses: Sequence[str] = (),
    dnsbls: Sequence[str] = DEFAULT_DNSBLS,
    port25Probe: Optional[str] = DEFAULT_PORT25_PROBE,
    timeout: float = 5.0,
    report: Callable[[Check], None] = lambda c: None,
) -> list[Check]:
    """
    Every check, in order; each result is also passed to C{report} as soon
    as it is known.
    """
    from mailsrv.cli import _loadConfig
    from mailsrv.errors import ConfigError

    checks: list[Check] = []

    def add(new: list[Check]) -> None:
        for check in new:
            checks.append(check)
            report(check)

    try:
        config = _loadConfig(configPath)
    except ConfigError as e:
        add([_fail("config", str(e), "fix the key named above; `mailsrv reload` applies it")])
        return checks
    add([_ok("config", f"{config.source} is valid")])
    add(checkCertificate(config))
    pool = reactor.getThreadPool()
    add(await deferToThreadPool(reactor, pool, checkSieveScripts, config))
    for policy in config.endpoints:
        for spec in policy.listen:
            add([await deferToThreadPool(reactor, pool, probeEndpoint, policy, spec, timeout)])
    if dns:
        resolver = resolverFor(config, reactor)
        for domain in domains or config.server.domains:
            add(await DNSChecks(config, resolver, domain, addresses, dnsbls, timeout).run())
    if port25Probe or config.relay.host:
        add([await deferToThreadPool(reactor, pool, probeOutbound, config, port25Probe or "", timeout)])
    return checks


def runDoctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    C{mailsrv doctor}: the edge where the reactor runs.
    """
    from twisted.internet import task

    def report(check: Check) -> None:
        for line in check.lines():
            print(line, file=out, flush=True)

    results: list[list[Check]] = []

    def main(reactor: Any) -> Deferred[None]:
        d = Deferred.fromCoroutine(
            runChecks(
                reactor,
                args.config,
                [args.domain] if args.domain else [],
                dns=not args.no_dns,
                addresses=args.ip,
                dnsbls=args.dnsbl or DEFAULT_DNSBLS,
                port25Probe=None if args.no_port25 else args.port25_probe,
                timeout=args.timeout,
                report=report,
            )
        )
        d.addCallback(results.append)
        return d

    try:
        task.react(main)
    except SystemExit as e:
        if e.code not in (0, None):
            return 2
    checks = results[0] if results else []
    failed = sum(c.status is Status.FAIL for c in checks)
    warned = sum(c.status is Status.WARN for c in checks)
    print(f"\n{len(checks)} checks: {failed} failed, {warned} warnings", file=out)
    return 1 if failed else 0
