"""
DKIM end to end: a key made with C{mailsrv dkim generate} is published in
a real twisted.names zone on loopback; a user submits a message, the
queue delivers it over STARTTLS to a recording SMTP server, and dkimpy
verifies what arrived against the key it fetches from that DNS server.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from typing import Iterator, Optional

import dkim
import pytest
from twisted.names import dns

from mailsrv.testing.dns import DNSProcess, LOOPBACK
from mailsrv.testing.server import RunningServer
from mailsrv.testing.smtpsink import SMTPSink
from mailsrv.tls import generateSelfSigned
from tests.integration.clients import clientContext, token
from tests.integration.conftest import PASSWORD
from tests.integration.test_outbound import delivered, waitFor

ALICE = "alice@example.test"


def txtLookup(port: int) -> "object":
    """
    A dkimpy C{dnsfunc} that asks the loopback DNS fixture (UDP), so the
    key really comes from the published zone.
    """

    def lookup(name: bytes, timeout: int = 5) -> Optional[bytes]:
        query = dns.Message(id=4242, recDes=0)
        query.addQuery(name.rstrip(b"."), dns.TXT)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(query.toStr(), (LOOPBACK, port))
            answer = dns.Message()
            answer.fromStr(s.recv(65535))
        for record in answer.answers:
            if record.type == dns.TXT:
                return b"".join(record.payload.data)
        return None

    return lookup


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, SMTPSink, DNSProcess]]:
    root = tmp_path_factory.mktemp("dkim")
    # The key is made first (with the admin command) so that the zone can
    # publish it; the server's config file is then written around it.
    srv = RunningServer(root, endpoints=("submission",))
    result = srv.mailsrv("dkim", "generate", "example.test")
    assert result.returncode == 0, result.stderr
    value = "".join(re.findall(r'"([^"]*)"', result.stdout))
    strings = [value[i : i + 255] for i in range(0, len(value), 255)]
    zones = {
        "example.test": {"mail._domainkey.example.test": {"TXT": [strings]}},
        "remote.test": {"remote.test": {"MX": [[10, "mx.remote.test"]]}, "mx.remote.test": {"A": ["127.0.0.1"]}},
    }
    dnsServer = DNSProcess(zones, root)
    dnsServer.start()
    certPath, keyPath = root / "sink.crt", root / "sink.key"
    generateSelfSigned("mx.remote.test", certPath, keyPath)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certPath, keyPath)
    sink = SMTPSink(tls=context).start()
    srv = RunningServer(
        root,
        endpoints=("submission",),
        extraConfig=(
            f'[dns]\nnameservers = ["{dnsServer.nameserver}"]\ntimeout = 2\n\n'
            f"[delivery]\nmx_port = {sink.port}\nconnect_timeout = 2\ncommand_timeout = 10\n\n"
        ),
    )
    srv.addUser(ALICE, PASSWORD)
    srv.start()
    try:
        yield srv, sink, dnsServer
    finally:
        srv.stop()
        sink.stop()
        dnsServer.stop()


def submit(server: RunningServer, message: bytes) -> None:
    client = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10)
    try:
        client.starttls(context=clientContext())
        client.login(ALICE, PASSWORD)
        client.sendmail(ALICE, ["bob@remote.test"], message)
    finally:
        client.quit()


def test_signature_verifies_against_published_key(setup: tuple[RunningServer, SMTPSink, DNSProcess]) -> None:
    """
    The message arrives (over STARTTLS) with a DKIM-Signature for
    example.test that dkimpy verifies with the key from DNS; the Date and
    Message-ID the server added are covered; a changed body or header
    fails.
    """
    srv, sink, dnsServer = setup
    subject = token("dkim")
    message = (
        f"From: Alice <{ALICE}>\r\nTo: <bob@remote.test>\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello Bob,\r\n.a dot line\r\n\r\nAlice\r\n"
    ).encode()
    submit(srv, message)
    waitFor(lambda: delivered(sink, subject.encode()))
    (t,) = delivered(sink, subject.encode())
    assert t.tls is True
    data = t.data
    assert data.startswith(b"Received: ") and b"\r\nDKIM-Signature: v=1; a=rsa-sha256;" in data
    assert b" d=example.test;" in data and b" s=mail;" in data
    lookup = txtLookup(dnsServer.port)
    assert dkim.verify(data, dnsfunc=lookup)
    assert not dkim.verify(data.replace(b"Hello Bob", b"Hello Eve"), dnsfunc=lookup)
    assert not dkim.verify(re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000", data), dnsfunc=lookup)
    assert b"\r\nDate: " in data and b"\r\nMessage-ID: <" in data
