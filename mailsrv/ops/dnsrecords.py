# -*- test-case-name: tests.ops.test_dnsrecords -*-
"""
C{mailsrv dns-records DOMAIN}: the zone lines to publish, ready to paste.

Everything is derived from the configuration and the files on disk, so the
output is what C{mailsrv doctor} later checks against: the MX is
C{server.hostname}, the DKIM record carries the public half of each key in
C{config_dir/opendkim/keys/DOMAIN/SELECTOR.private} (docker-mailserver's
layout), the C{_mta-sts} id is the digest of the policy the HTTP endpoint
serves, and the RFC 6186 SRV records name the ports actually configured.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
from pathlib import Path
from typing import Optional, TextIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailsrv.config.load import advertisedPort
from mailsrv.config.schema import Config
from mailsrv.policy.endpoint import Protocol, TLSMode

DKIM_KEYS_DIR = Path("opendkim") / "keys"


@dataclasses.dataclass(frozen=True)
class DKIMKey:
    """
    One DKIM key found on disk.

    @ivar keyType: C{rsa} or C{ed25519} (the DKIM C{k=} tag).
    @ivar publicKey: the C{p=} value: base64 of the SubjectPublicKeyInfo
        (RSA, RFC 6376) or of the raw 32-octet key (Ed25519, RFC 8463).
    """

    domain: str
    selector: str
    path: Path
    keyType: str
    publicKey: str

    def record(self) -> str:
        return f"v=DKIM1; k={self.keyType}; p={self.publicKey}"


def dkimKeys(config: Config, domain: str) -> list[DKIMKey]:
    """
    The DKIM keys on disk for C{domain}, by selector.

    @raise ValueError: naming a key file that cannot be read.
    """
    directory = config.server.configDir / DKIM_KEYS_DIR / domain
    keys = []
    for path in sorted(directory.glob("*.private")) if directory.is_dir() else []:
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as e:
            raise ValueError(f"cannot read DKIM key {path}: {e}") from None
        public = private.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            keyType = "ed25519"
        elif isinstance(public, rsa.RSAPublicKey):
            raw = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            keyType = "rsa"
        else:
            raise ValueError(f"DKIM key {path} is neither RSA nor Ed25519")
        keys.append(DKIMKey(domain, path.stem, path, keyType, base64.b64encode(raw).decode("ascii")))
    return keys


def txtStrings(value: str) -> str:
    """
    A TXT value as quoted strings of at most 255 octets each (RFC 1035
    character-strings), as a zone file wants long DKIM keys.
    """
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


# RFC 6186 (and RFC 8314 for submissions): service -> (protocol, implicit TLS, priority).
SRV_SERVICES = (
    ("_submissions._tcp", Protocol.SUBMISSION, True, 0),
    ("_submission._tcp", Protocol.SUBMISSION, False, 10),
    ("_imaps._tcp", Protocol.IMAP, True, 0),
    ("_imap._tcp", Protocol.IMAP, False, 10),
    ("_pop3s._tcp", Protocol.POP3, True, 20),
    ("_pop3._tcp", Protocol.POP3, False, 30),
)


def _port(config: Config, protocol: Protocol, implicit: bool) -> Optional[int]:
    for policy in config.endpoints:
        if policy.protocol is protocol and policy.listen and policy.tls is not TLSMode.NONE:
            if policy.implicitTLS == implicit:
                return advertisedPort(policy)
    return None


def spfRecord(addresses: list[str]) -> str:
    """
    C{mx} covers this server as long as the MX record points here; explicit
    addresses are added when known (they keep working if the MX moves).
    """
    terms = ["v=spf1", "mx"]
    for address in addresses:
        terms.append(("ip6:" if ":" in address else "ip4:") + address)
    terms.append("-all")
    return " ".join(terms)


def dmarcRecord(rua: str) -> str:
    return f"v=DMARC1; p=none; adkim=r; aspf=r; rua=mailto:{rua}"


def tlsrptRecord(rua: str) -> str:
    return f"v=TLSRPTv1; rua=mailto:{rua}"


def zoneLines(
    config: Config,
    domain: str,
    addresses: list[str],
    dmarcRua: Optional[str] = None,
    tlsrptRua: Optional[str] = None,
) -> list[str]:
    """
    The records to publish, as BIND zone-file lines with absolute names.
    """
    from mailsrv.http.site import mtaStsPolicyId

    domain = domain.rstrip(".").lower()
    host = config.server.hostname
    out = [f"; DNS records for {domain}, from mailsrv configuration {config.source}", ""]

    def line(name: str, rtype: str, value: str) -> None:
        out.append(f"{name + '.':<40} 3600 IN {rtype:<5} {value}")

    out.append("; Mail for the domain goes to this server.")
    line(domain, "MX", f"10 {host}.")
    if addresses:
        for address in addresses:
            line(host, "AAAA" if ":" in address else "A", address)
        out.append(f"; Also ask your provider for reverse DNS (PTR) of {', '.join(addresses)} -> {host}.")
    else:
        out.append(f"; {host} needs A/AAAA records for this server's public addresses (give them with --ip).")
    out.append("")
    out.append("; SPF: who may send mail for the domain.")
    line(domain, "TXT", txtStrings(spfRecord(addresses)))
    keys = dkimKeys(config, domain)
    if keys:
        out.append("; DKIM: public half of each key in " + str(config.server.configDir / DKIM_KEYS_DIR / domain))
        for key in keys:
            line(f"{key.selector}._domainkey.{domain}", "TXT", txtStrings(key.record()))
    else:
        out.append(f"; DKIM: no key in {config.server.configDir / DKIM_KEYS_DIR / domain}; generate one, then run this again.")
    out.append("; DMARC: start with p=none, read the reports, then move to p=quarantine or p=reject.")
    line(f"_dmarc.{domain}", "TXT", txtStrings(dmarcRecord(dmarcRua or f"dmarc-reports@{domain}")))
    out.append("")
    out.append("; MTA-STS (RFC 8461): the policy is served by the http endpoint at https://mta-sts." + domain + "/")
    line(f"_mta-sts.{domain}", "TXT", txtStrings(f"v=STSv1; id={mtaStsPolicyId(config)}"))
    line(f"mta-sts.{domain}", "CNAME", f"{host}.")
    out.append("; TLS reporting (RFC 8460).")
    line(f"_smtp._tls.{domain}", "TXT", txtStrings(tlsrptRecord(tlsrptRua or f"tls-reports@{domain}")))
    out.append("")
    out.append("; Mail client autoconfiguration (RFC 6186; '0 0 0 .' = not offered).")
    for service, protocol, implicit, priority in SRV_SERVICES:
        port = _port(config, protocol, implicit)
        if port is None:
            line(f"{service}.{domain}", "SRV", "0 0 0 .")
        else:
            line(f"{service}.{domain}", "SRV", f"{priority} 1 {port} {host}.")
    # RFC 5804 section 1.8, only when a ManageSieve endpoint is set up
    # (it is not one of the defaults): clients find the port through it.
    sievePort = _port(config, Protocol.MANAGESIEVE, False)
    if sievePort is not None:
        line(f"_sieve._tcp.{domain}", "SRV", f"0 1 {sievePort} {host}.")
    if any(p.protocol is Protocol.HTTP for p in config.endpoints):
        line(f"autoconfig.{domain}", "CNAME", f"{host}.")
    return out


def dnsRecordsCommand(config: Config, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    C{mailsrv dns-records DOMAIN [--ip ADDRESS]...}.
    """
    import ipaddress

    for address in args.ip:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            print(f"mailsrv: --ip {address!r} is not an IP address", file=err)
            return 1
    try:
        lines = zoneLines(config, args.domain, list(args.ip), args.dmarc_rua, args.tlsrpt_rua)
    except ValueError as e:
        print(f"mailsrv: {e}", file=err)
        return 2
    for text in lines:
        print(text, file=out)
    return 0
