# -*- test-case-name: tests.integration.test_filters_senderauth -*-
"""
Sender authentication over real sockets: a running C{twistd mailsrv} whose
C{[dns] nameservers} is a twisted.names server on loopback serving SPF,
DKIM and DMARC records.
"""

from __future__ import annotations

import smtplib
from typing import Iterator

import dkim
import pytest

from mailsrv.testing.dns import DNSProcess
from mailsrv.testing.server import RunningServer
from tests.filters.test_senderauth import PRIVATE_PEM, ZONES

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("senderauth")
    zones = dict(ZONES)
    zones["quarantine.test"] = {
        "quarantine.test": {"TXT": ["v=spf1 -all"]},
        "_dmarc.quarantine.test": {"TXT": ["v=DMARC1; p=quarantine"]},
    }
    dnsServer = DNSProcess(zones, root)
    port = dnsServer.start()
    srv = RunningServer(
        root / "srv",
        extraConfig=f'[dns]\nnameservers = ["127.0.0.1:{port}"]\ntimeout = 5\n\n[sender_auth]\nenabled = true\n',
        endpoints=("smtp",),
    )
    srv.addUser(ALICE, "secret")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        dnsServer.stop()


def send(server: RunningServer, sender: str, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname="client.test", timeout=30) as s:
        s.sendmail(sender, [ALICE], data)


def files(server: RunningServer, folder: str, needle: str) -> list[bytes]:
    root = server.maildir(ALICE) / folder
    out = []
    for sub in ("new", "cur"):
        d = root / sub
        if d.is_dir():
            out += [p.read_bytes() for p in d.iterdir() if needle.encode() in p.read_bytes()]
    return out


def test_dmarc_reject_refused(mx: RunningServer) -> None:
    """
    Unsigned mail From a p=reject domain whose SPF does not allow us is
    refused at the end of data with 550 5.7.1 (as OpenDMARC does) and stored nowhere.
    """
    data = b"From: <a@signed.test>\r\nSubject: forged-1\r\n\r\nHi\r\n"
    with pytest.raises(smtplib.SMTPDataError) as info:
        send(mx, "a@signed.test", data)
    assert info.value.smtp_code == 550
    assert b"5.7.1" in info.value.smtp_error and b"DMARC" in info.value.smtp_error
    assert files(mx, ".", "forged-1") == []


def test_signed_delivered_with_results_and_forged_header_removed(mx: RunningServer) -> None:
    """
    A DKIM-signed message passes, gets one Authentication-Results header
    naming this server, and an incoming one claiming our name is removed.
    """
    body = b"From: <a@signed.test>\r\nSubject: signed-1\r\n\r\nHi\r\n"
    signed = dkim.sign(body, b"sel", b"signed.test", PRIVATE_PEM, include_headers=[b"from", b"subject"])
    forged = b"Authentication-Results: mail.example.test; dmarc=pass header.from=evil.test\r\n"
    send(mx, "a@signed.test", forged + signed + body)
    [stored] = files(mx, ".", "signed-1")
    headers = stored.split(b"\r\n\r\n", 1)[0].decode()
    results = [h for h in headers.replace("\r\n\t", " ").split("\r\n") if h.startswith("Authentication-Results:")]
    assert len(results) == 1, headers
    assert results[0].startswith("Authentication-Results: mail.example.test;")
    assert "dkim=pass" in results[0] and "dmarc=pass" in results[0] and "spf=fail" in results[0]
    assert "evil.test" not in headers


def test_dmarc_quarantine_goes_to_junk(mx: RunningServer) -> None:
    """
    Failing mail under p=quarantine is accepted into the Junk folder.
    """
    send(mx, "a@quarantine.test", b"From: <a@quarantine.test>\r\nSubject: junk-1\r\n\r\nHi\r\n")
    assert files(mx, ".", "junk-1") == []
    [stored] = files(mx, ".Junk", "junk-1")
    assert b"dmarc=fail" in stored
