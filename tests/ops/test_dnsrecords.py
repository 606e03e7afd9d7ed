"""
`mailsrv dns-records`: the output is a valid zone, parsed back, whose DKIM
records carry the keys on disk (checked against openssl's own view of the
key) and whose SRV records name the configured ports.
"""

from __future__ import annotations

import base64
import io
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.names import dns
from twisted.names.authority import BindAuthority

from mailsrv.cli import main


def writeConfig(root: Path, extra: str = "") -> Path:
    path = root / "mailsrv.toml"
    path.write_text(
        '[server]\nhostname = "mail.example.test"\ndomains = ["example.test"]\n'
        f'data_dir = "{root / "data"}"\nconfig_dir = "{root / "conf"}"\n\n'
        '[endpoints.smtp]\nlisten = ["0.0.0.0:25"]\n'
        '[endpoints.submissions]\nlisten = ["0.0.0.0:465"]\n'
        '[endpoints.imaps]\nlisten = ["0.0.0.0:993"]\n'
        '[endpoints.imap]\nlisten = ["0.0.0.0:143"]\n' + extra
    )
    return path


def host(name: object) -> str:
    return str(name).rstrip(".") or "."


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def txtRecords(zone: str) -> dict[str, list[str]]:
    """
    Owner -> TXT values, each the concatenation of its quoted strings.
    """
    out: dict[str, list[str]] = {}
    for line in zone.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        fields = shlex.split(line)
        if fields[3] == "TXT":
            out.setdefault(fields[0].rstrip("."), []).append("".join(fields[4:]))
    return out


@pytest.fixture
def dkimDir(tmp_path: Path) -> Path:
    keys = tmp_path / "conf" / "opendkim" / "keys" / "example.test"
    keys.mkdir(parents=True)
    return keys


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_records_parse_and_match_keys_on_disk(tmp_path: Path, dkimDir: Path) -> None:
    """
    The output loads as a BIND zone (MX, A, SRV, CNAME) and its TXT records
    hold SPF, DMARC with rua, MTA-STS, TLS-RPT and one DKIM record per key
    file, whose p= is the key openssl derives from the file.
    """
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(dkimDir / "mail.private"), "2048"],
        check=True, capture_output=True,
    )
    edKey = ed25519.Ed25519PrivateKey.generate()
    (dkimDir / "ed.private").write_bytes(
        edKey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    config = writeConfig(tmp_path)
    code, zone, err = run("--config", str(config), "dns-records", "example.test", "--ip", "192.0.2.10", "--dmarc-rua", "reports@example.test")
    assert code == 0, err

    zoneFile = tmp_path / "example.test"
    zoneFile.write_text(zone)
    authority = BindAuthority(str(zoneFile))
    records = {name.decode(): recs for name, recs in authority.records.items()}
    [mx] = [r for r in records["example.test"] if isinstance(r, dns.Record_MX)]
    assert (mx.preference, host(mx.name)) == (10, "mail.example.test")
    assert [r.dottedQuad() for r in records["mail.example.test"]] == ["192.0.2.10"]
    srv = {name: (r.priority, r.port, host(r.target)) for name, recs in records.items() for r in recs if isinstance(r, dns.Record_SRV)}
    assert srv["_submissions._tcp.example.test"] == (0, 465, "mail.example.test")
    assert srv["_imaps._tcp.example.test"][1:] == (993, "mail.example.test")
    assert srv["_imap._tcp.example.test"][1:] == (143, "mail.example.test")
    assert srv["_imaps._tcp.example.test"][0] < srv["_imap._tcp.example.test"][0]
    assert srv["_pop3s._tcp.example.test"] == (0, 0, ".")  # not offered (RFC 6186)
    assert host(records["mta-sts.example.test"][0].name) == "mail.example.test"

    txt = txtRecords(zone)
    assert txt["example.test"] == ["v=spf1 mx ip4:192.0.2.10 -all"]
    assert txt["_dmarc.example.test"][0].startswith("v=DMARC1;")
    assert "rua=mailto:reports@example.test" in txt["_dmarc.example.test"][0]
    assert txt["_mta-sts.example.test"][0].startswith("v=STSv1; id=")
    assert txt["_smtp._tls.example.test"] == ["v=TLSRPTv1; rua=mailto:tls-reports@example.test"]

    pem = subprocess.run(
        ["openssl", "rsa", "-in", str(dkimDir / "mail.private"), "-pubout"], check=True, capture_output=True, text=True
    ).stdout
    opensslKey = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    assert txt["mail._domainkey.example.test"] == [f"v=DKIM1; k=rsa; p={opensslKey}"]
    rawEd = edKey.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert txt["ed._domainkey.example.test"] == [f"v=DKIM1; k=ed25519; p={base64.b64encode(rawEd).decode()}"]
    # Long values are split into strings of at most 255 octets.
    dkimLine = next(line for line in zone.splitlines() if line.startswith("mail._domainkey"))
    assert all(len(s) <= 255 for s in shlex.split(dkimLine)[4:])


def test_no_dkim_key_is_said(tmp_path: Path) -> None:
    """
    Without a key on disk no DKIM record is invented; a comment says so.
    """
    code, zone, _ = run("--config", str(writeConfig(tmp_path)), "dns-records", "example.test")
    assert code == 0
    assert "_domainkey" not in "".join(line for line in zone.splitlines() if not line.startswith(";"))
    assert "; DKIM: no key in" in zone
    assert "needs A/AAAA records" in zone


def test_bad_arguments(tmp_path: Path, dkimDir: Path) -> None:
    """
    A bad --ip is a user error; an unreadable key file is named.
    """
    config = str(writeConfig(tmp_path))
    assert run("--config", config, "dns-records", "example.test", "--ip", "nope")[0] == 1
    (dkimDir / "mail.private").write_text("garbage")
    code, _, err = run("--config", config, "dns-records", "example.test")
    assert code == 2 and "mail.private" in err


def test_sieve_srv_only_with_a_managesieve_endpoint(tmp_path: Path) -> None:
    """
    C{_sieve._tcp} (RFC 5804) is published only when a ManageSieve endpoint
    is configured, with its port.
    """
    code, zone, err = run("--config", str(writeConfig(tmp_path)), "dns-records", "example.test", "--ip", "192.0.2.10")
    assert code == 0, err
    assert "_sieve._tcp" not in zone
    extra = '[endpoints.managesieve]\nprotocol = "managesieve"\nlisten = ["0.0.0.0:4190"]\ntls = "starttls-required"\n'
    other = tmp_path / "other"
    other.mkdir()
    code, zone, err = run("--config", str(writeConfig(other, extra)), "dns-records", "example.test", "--ip", "192.0.2.10")
    assert code == 0, err
    [line] = [l for l in zone.splitlines() if l.startswith("_sieve._tcp.example.test.")]
    assert line.split()[-4:] == ["0", "1", "4190", "mail.example.test."]
