"""
The per-attempt delivery log line, from a real mailsrv logging JSON
(C{twistd --logger=mailsrv.logs.jsonLogger}) that delivers through a
loopback DNS server to a recording SMTP server with STARTTLS: over MX with
opportunistic (unverified) TLS, and to a relay host whose certificate is
verified.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any, Iterator

import pytest

from mailsrv.testing.dns import DNSProcess
from mailsrv.testing.server import RunningServer
from mailsrv.testing.smtpsink import SMTPSink
from mailsrv.tls import generateSelfSigned
from tests.integration.clients import token
from tests.integration.conftest import PASSWORD
from tests.integration.test_outbound import ALICE, ZONES, rcptPolicy, submit, waitFor


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DNSProcess, SMTPSink, Path]]:
    root = tmp_path_factory.mktemp("attemptlog")
    dnsServer = DNSProcess(ZONES, root)
    dnsServer.start()
    certPath, keyPath = root / "sink.crt", root / "sink.key"
    generateSelfSigned("mx.remote.test", certPath, keyPath)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certPath, keyPath)
    sink = SMTPSink(tls=context, rcptPolicy=rcptPolicy).start()
    try:
        yield dnsServer, sink, certPath
    finally:
        sink.stop()
        dnsServer.stop()


def jsonServer(root: Path, dnsServer: DNSProcess, extra: str) -> RunningServer:
    srv = RunningServer(
        root,
        endpoints=("submission",),
        extraConfig=(
            f'[dns]\nnameservers = ["{dnsServer.nameserver}"]\ntimeout = 2\n\n'
            "[queue]\nretry_initial = 1\nretry_max = 1\n\n" + extra
        ),
    )
    srv.logger = "mailsrv.logs.jsonLogger"
    srv.addUser(ALICE, PASSWORD)
    return srv


def attemptLines(server: RunningServer, queueId: str) -> list[dict[str, Any]]:
    records = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("msgId") == queueId and "rcpt" in record and "attempt" in record:
                records.append(record)
    return records


def test_mx_attempts_logged(tmp_path: Path, world: tuple[DNSProcess, SMTPSink, Path]) -> None:
    """
    One JSON line per recipient and attempt: sent, bounced (5xx) and
    deferred (4xx) then sent on the second attempt, each with the MX host
    and address, TLS version (unverified: opportunistic), DSN code, SMTP
    reply, delay and attempt number.
    """
    dnsServer, sink, _ = world
    srv = jsonServer(
        tmp_path, dnsServer, f"[delivery]\nmx_port = {sink.port}\nconnect_timeout = 2\ncommand_timeout = 10\n"
    )
    srv.start()
    try:
        ok, rejected, later = (token(p) + "@remote.test" for p in ("ok", "reject", "later"))
        queueId = submit(srv, [ok, rejected, later], f"From: <{ALICE}>\r\nSubject: s\r\n\r\nbody\r\n".encode())
        waitFor(lambda: len(attemptLines(srv, queueId)) == 4)
        records = attemptLines(srv, queueId)
        byStatus = {(r["rcpt"], r["status"]): r for r in records}
        assert set(byStatus) == {(ok, "sent"), (rejected, "bounced"), (later, "deferred"), (later, "sent")}
        sent = byStatus[(ok, "sent")]
        assert sent["relay"] == f"mx.remote.test[127.0.0.1]:{sink.port}"
        assert (sent["relayHost"], sent["relayIP"]) == ("mx.remote.test", "127.0.0.1")
        assert sent["tlsVersion"] in ("TLSv1.2", "TLSv1.3") and sent["tlsVerified"] is False
        assert sent["tls"] == f"{sent['tlsVersion']} unverified"
        assert (sent["attempt"], sent["dsn"], sent["mailFrom"]) == (1, "2.0.0", ALICE)
        assert sent["reply"].startswith("250 ")
        assert isinstance(sent["delay"], (int, float)) and 0 <= sent["delay"] < 10
        bounced = byStatus[(rejected, "bounced")]
        assert (bounced["dsn"], bounced["reply"]) == ("5.1.1", "550 5.1.1 No such user here")
        assert byStatus[(later, "deferred")]["reply"] == "451 4.3.0 Try again later"
        retried = byStatus[(later, "sent")]
        assert retried["attempt"] == 2 and retried["delay"] >= 1
        # The text form, for grep.
        assert f"{queueId}: to=<{rejected}>, relay=mx.remote.test[127.0.0.1]:{sink.port}, tls=" in bounced["text"]
        assert "status=bounced (550 5.1.1 No such user here)" in bounced["text"]
    finally:
        srv.stop()


def test_relay_attempt_verified(tmp_path: Path, world: tuple[DNSProcess, SMTPSink, Path]) -> None:
    """
    To a relay host whose certificate is checked (against ca_file, with
    its name), the line says the TLS session was verified.
    """
    dnsServer, sink, certPath = world
    srv = jsonServer(
        tmp_path,
        dnsServer,
        f'[relay]\nhost = "mx.remote.test"\nport = {sink.port}\ntls = "starttls"\nca_file = "{certPath}"\n',
    )
    srv.start()
    try:
        rcpt = token("ok") + "@elsewhere.test"
        queueId = submit(srv, [rcpt], f"From: <{ALICE}>\r\nSubject: s\r\n\r\nbody\r\n".encode())
        waitFor(lambda: attemptLines(srv, queueId))
        (record,) = attemptLines(srv, queueId)
        assert record["status"] == "sent", record
        assert record["relay"] == f"mx.remote.test[127.0.0.1]:{sink.port}"
        assert record["tlsVerified"] is True and record["tls"].endswith(" verified")
    finally:
        srv.stop()
