"""
`mailsrv doctor`: every check's pass and fail branch.

DNS comes from a twisted.names zone server on loopback (C{[dns]
nameservers}); endpoints are a real server's loopback ports; the outbound
port 25 probe targets a loopback port.  A "good" installation passes
everything it can on loopback; a "bad" one fails each check in a known way.
Certificate branches are checked in process.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from mailsrv.config.load import loadConfig, parseConfig
from mailsrv.http.site import mtaStsPolicyId
from mailsrv.ops.dnsrecords import dkimKeys
from mailsrv.ops.doctor import Status, checkCertificate
from mailsrv.testing.server import RunningServer, SOURCE_ROOT, freePort, freePorts
from tests.ops.dnszone import ZoneServer


def writeKey(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    )


def doctor(config: Path, *args: str) -> tuple[int, list[tuple[str, str, str]]]:
    """
    Run `mailsrv doctor` and return its exit code and (status, name, detail)
    per result line.
    """
    result = subprocess.run(
        [sys.executable, "-m", "mailsrv.cli", "--config", str(config), "doctor", "--timeout", "3", *args],
        capture_output=True, text=True, timeout=120, cwd=SOURCE_ROOT,
        env={"PYTHONPATH": SOURCE_ROOT, "PATH": "/usr/bin:/bin"},
    )
    lines = []
    for line in result.stdout.splitlines():
        if line[:4] in ("PASS", "WARN", "FAIL"):
            lines.append((line[:4], line[6:30].strip(), line[31:]))
    assert lines, result.stdout + result.stderr
    return result.returncode, lines


def has(lines: list[tuple[str, str, str]], status: str, name: str, detail: str = "") -> bool:
    return any(s == status and n == name and detail in d for s, n, d in lines)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("doctor")
    goodKey = root / "good" / "conf" / "opendkim" / "keys" / "good.test" / "mail.private"
    writeKey(goodKey)
    badKeys = root / "bad" / "conf" / "opendkim" / "keys" / "bad.test"
    writeKey(badKeys / "mail.private")
    writeKey(badKeys / "other.private")
    unrelated = root / "unrelated.private"
    writeKey(unrelated)

    # The running "good" server: its config is written before the zone
    # exists, so the zone's MTA-STS id is computed from that config.
    webPort = freePort()
    server = RunningServer(
        root / "good", domain="good.test",
        extraConfig=(
            '[dns]\nnameservers = ["127.0.0.1:1"]\n\n'
            f'[endpoints.web]\nprotocol = "http"\nlisten = ["127.0.0.1:{webPort}"]\n\n'
        ),
    )
    server.ports["web"] = webPort
    goodConfig = loadConfig(server.configFile)
    goodDkim = dkimKeys(goodConfig, "good.test")[0].record()
    (root / "u" / "opendkim" / "keys" / "x").mkdir(parents=True)
    unrelated.rename(root / "u" / "opendkim" / "keys" / "x" / "mail.private")
    unrelatedDkim = dkimKeys(parseConfig({"server": {"config_dir": str(root / "u")}}, "u"), "x")[0].record()

    zones = {
        "good.test": {
            "good.test": {"MX": [[10, "mail.good.test"]], "TXT": ["v=spf1 mx -all"]},
            "mail.good.test": {"A": ["192.0.2.10"]},
            "mail._domainkey.good.test": {"TXT": [goodDkim]},
            "_dmarc.good.test": {"TXT": ["v=DMARC1; p=reject; rua=mailto:d@good.test"]},
            "_mta-sts.good.test": {"TXT": [f"v=STSv1; id={mtaStsPolicyId(goodConfig)}"]},
            "_smtp._tls.good.test": {"TXT": ["v=TLSRPTv1; rua=mailto:t@good.test"]},
        },
        "2.0.192.in-addr.arpa": {"10.2.0.192.in-addr.arpa": {"PTR": ["mail.good.test"]}},
        "bad.test": {
            "bad.test": {"MX": [[10, "mx.elsewhere.test"]], "TXT": ["v=spf1 ip4:203.0.113.5 -all"]},
            "mail.bad.test": {"A": ["198.51.100.20"]},
            "mail._domainkey.bad.test": {"TXT": [unrelatedDkim]},
            "_mta-sts.bad.test": {"TXT": ["v=STSv1; id=20240101"]},
        },
        "odd.test": {
            "odd.test": {"MX": [[10, "mail.bad.test"]], "TXT": ["v=spf1 mx -all", "v=spf1 a -all"]},
            "_dmarc.odd.test": {"TXT": ["v=DMARC1; p=none"]},
            "_smtp._tls.odd.test": {"TXT": ["v=TLSRPTv1; rua=mailto:t@odd.test"]},
        },
        "plus.test": {"plus.test": {"MX": [[10, "mail.bad.test"]], "TXT": ["v=spf1 +all"]}},
        "100.51.198.in-addr.arpa": {"20.100.51.198.in-addr.arpa": {"PTR": ["other.bad.test"]}},
        "bl.test": {"20.100.51.198.bl.test": {"A": ["127.0.0.2"]}},
        "refuse.test": {"20.100.51.198.refuse.test": {"A": ["127.255.255.254"]}},
    }
    zone = ZoneServer(zones, root).start()
    server.configFile.write_text(server.configFile.read_text().replace('["127.0.0.1:1"]', f'["{zone.nameserver}"]'))
    server.addUser("alice@good.test", "pw")
    server.start()

    badConfig = root / "bad" / "mailsrv.toml"
    smtpPort, imapsPort = freePorts(2)
    badConfig.write_text(
        '[server]\nhostname = "mail.bad.test"\ndomains = ["bad.test", "odd.test", "plus.test"]\n'
        f'data_dir = "{root / "bad" / "data"}"\nconfig_dir = "{root / "bad" / "conf"}"\n\n'
        f'[dns]\nnameservers = ["{zone.nameserver}"]\n\n'
        '[mta_sts]\nmode = "enforce"\n\n'
        f'[endpoints.smtp]\nlisten = ["127.0.0.1:{smtpPort}"]\n'
        f'[endpoints.imaps]\nlisten = ["127.0.0.1:{imapsPort}"]\n'
    )
    try:
        yield {"server": server, "bad": badConfig, "root": root}
    finally:
        server.stop()
        zone.stop()


def test_good_installation_passes(setup: dict) -> None:
    """
    Against the running server and a complete zone every check passes
    (the self-signed chain is the one warning) and the exit code is 0.
    """
    server: RunningServer = setup["server"]
    code, lines = doctor(server.configFile, "good.test", "--dnsbl", "bl.test", "--port25-probe", f"127.0.0.1:{server.ports['smtp']}")
    failures = [l for l in lines if l[0] != "PASS"]
    assert failures == [("WARN", "certificate chain", failures[0][2])], lines
    assert code == 0
    assert has(lines, "PASS", "sieve", "0 active Sieve scripts, all compile")
    for name in ("config", "certificate", "certificate expiry", "certificate names", "mx", "host address",
                 "reverse dns", "spf", "dkim", "dmarc", "mta-sts", "mta-sts mx", "tls-rpt", "dnsbl", "outbound port 25"):
        assert has(lines, "PASS", name), (name, lines)
    endpoints = [l for l in lines if l[1].startswith("endpoint ")]
    assert len(endpoints) == 8 and all(s == "PASS" for s, _, _ in endpoints), endpoints
    assert has(lines, "PASS", "endpoint imaps", "tls implicit (TLSv1.3)")
    assert has(lines, "PASS", "endpoint imap", "tls starttls-required (TLSv1.3)")
    assert has(lines, "PASS", "endpoint web", "http")


def test_bad_installation_fails_each_check(setup: dict) -> None:
    """
    A wrong zone, wrong keys, unreachable endpoints and a closed port 25
    give the expected FAIL/WARN lines, and exit code 1.
    """
    home = setup["root"] / "bad" / "data" / "mail" / "bad.test" / "bob" / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".dovecot.sieve").write_text('require "fileinto";\nfileinto "x"\n')
    code, lines = doctor(
        setup["bad"], "--ip", "198.51.100.99", "--ip", "198.51.100.20",
        "--dnsbl", "bl.test", "--dnsbl", "refuse.test", "--port25-probe", f"127.0.0.1:{freePort()}",
    )
    assert code == 1
    expected = [
        ("PASS", "config", ""),
        ("WARN", "certificate", "no certificate yet"),
        ("WARN", "sieve", "the script of bob@bad.test"),
        ("FAIL", "endpoint smtp", "Connection refused"),
        ("FAIL", "endpoint imaps", ""),
        ("FAIL", "mx", "not mail.bad.test"),
        ("FAIL", "host address", "not 198.51.100.99"),
        ("FAIL", "reverse dns", "198.51.100.99 has no PTR"),
        ("FAIL", "reverse dns", "does not resolve back"),
        ("FAIL", "spf", "does not cover"),
        ("FAIL", "dkim", "mail._domainkey.bad.test does not match"),
        ("FAIL", "dkim", "other._domainkey.bad.test has no DKIM record"),
        ("FAIL", "dmarc", "_dmarc.bad.test has no DMARC record"),
        ("WARN", "mta-sts", "no http endpoint serves the policy"),
        ("FAIL", "mta-sts mx", "mx.elsewhere.test not in the policy"),
        ("WARN", "tls-rpt", "_smtp._tls.bad.test has no TLS-RPT"),
        ("FAIL", "dnsbl", "198.51.100.20 is listed on bl.test (127.0.0.2)"),
        ("PASS", "dnsbl", "198.51.100.99 not listed on bl.test"),
        ("WARN", "dnsbl", "refuse.test refused the query"),
        ("FAIL", "outbound port 25", "cannot reach"),
        # odd.test and plus.test
        ("PASS", "mx", "odd.test MX -> mail.bad.test"),
        ("FAIL", "spf", "odd.test has 2 SPF records"),
        ("WARN", "dmarc", "asks for no reports"),
        ("WARN", "mta-sts", "_mta-sts.odd.test has no MTA-STS record"),
        ("PASS", "tls-rpt", "v=TLSRPTv1"),
        ("FAIL", "spf", "allows the whole Internet"),
        ("PASS", "mx", "plus.test MX"),
    ]
    missing = [e for e in expected if not has(lines, *e)]
    assert not missing, (missing, lines)
    fixes = subprocess.run(
        [sys.executable, "-m", "mailsrv.cli", "--config", str(setup["bad"]), "doctor", "bad.test", "--no-port25",
         "--dnsbl", "bl.test", "--timeout", "3"],
        capture_output=True, text=True, timeout=120, cwd=SOURCE_ROOT, env={"PYTHONPATH": SOURCE_ROOT},
    ).stdout
    assert "fix: publish: bad.test. MX 10 mail.bad.test." in fixes
    assert "outbound port 25" not in fixes


def test_invalid_config_is_a_failure(tmp_path: Path) -> None:
    """
    An invalid config is one FAIL line naming the key; nothing else runs.
    """
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nhostname = "x.test"\nbogus = 1\n')
    code, lines = doctor(config, "--no-dns", "--no-port25")
    assert code == 1
    assert lines == [("FAIL", "config", lines[0][2])] and "server.bogus" in lines[0][2]


# ----------------------------------------------------------- certificates


def makeCert(
    path: Path, names: list[str], *, days: int = 90, issuer: tuple | None = None, selfSigned: bool = False
) -> tuple:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    signKey, issuerName = (key, subject) if issuer is None else (issuer[1], issuer[0].subject)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuerName).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2)).not_valid_after(now + datetime.timedelta(days=days))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    builder = builder.add_extension(x509.BasicConstraints(ca=not names, path_length=None), critical=True)
    cert = builder.sign(signKey, hashes.SHA256())
    return cert, key


def configWithCert(tmp_path: Path, chain: list, key: object) -> object:
    cert, keyPath = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    cert.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    keyPath.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # type: ignore[attr-defined]
    return parseConfig({"server": {"hostname": "mail.example.test"}, "tls": {"cert": str(cert), "key": str(keyPath)}}, "t")


def statuses(checks: list) -> dict[str, Status]:
    return {c.name: c.status for c in checks}


def test_certificate_good_chain(tmp_path: Path) -> None:
    """
    A leaf for the host name (here via a wildcard) followed by its CA
    passes every certificate check.
    """
    ca = makeCert(tmp_path / "ca", [], days=3650)
    leaf, key = makeCert(tmp_path / "leaf", ["*.example.test"], issuer=ca)
    result = statuses(checkCertificate(configWithCert(tmp_path, [leaf, ca[0]], key)))  # type: ignore[arg-type]
    assert result == {
        "certificate": Status.PASS,
        "certificate expiry": Status.PASS,
        "certificate names": Status.PASS,
        "certificate chain": Status.PASS,
    }


def test_certificate_problems(tmp_path: Path) -> None:
    """
    Expiring soon warns, expired fails, wrong names fail, a chain whose
    next certificate is not the issuer fails, a missing intermediate warns,
    missing files fail.
    """
    ca = makeCert(tmp_path, [], days=3650)
    other = makeCert(tmp_path, [], days=3650)
    leaf, key = makeCert(tmp_path, ["mail.example.test"], days=5, issuer=ca)
    assert statuses(checkCertificate(configWithCert(tmp_path, [leaf, ca[0]], key)))["certificate expiry"] is Status.WARN  # type: ignore[arg-type]
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
    assert statuses(checkCertificate(configWithCert(tmp_path, [leaf, ca[0]], key), now=later))["certificate expiry"] is Status.FAIL  # type: ignore[arg-type]
    assert statuses(checkCertificate(configWithCert(tmp_path, [leaf, other[0]], key)))["certificate chain"] is Status.FAIL  # type: ignore[arg-type]
    assert statuses(checkCertificate(configWithCert(tmp_path, [leaf], key)))["certificate chain"] is Status.WARN  # type: ignore[arg-type]
    wrong, wrongKey = makeCert(tmp_path, ["www.example.test"], issuer=ca)
    assert statuses(checkCertificate(configWithCert(tmp_path, [wrong, ca[0]], wrongKey)))["certificate names"] is Status.FAIL  # type: ignore[arg-type]
    mismatched = configWithCert(tmp_path, [leaf, ca[0]], wrongKey)
    assert statuses(checkCertificate(mismatched)) == {"certificate": Status.FAIL}  # type: ignore[arg-type]
    gone = parseConfig({"tls": {"cert": str(tmp_path / "no.pem"), "key": str(tmp_path / "no.key")}}, "t")
    assert statuses(checkCertificate(gone)) == {"certificate": Status.FAIL}
