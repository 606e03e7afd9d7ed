"""
The queue against a running server: C{mailsrv queue list} shows a
deferred message with its error, C{mailsrv queue flush} makes the server
retry it at once (long before its next attempt) and it reaches the MX;
and delivery to an MX offering STARTTLS, 8BITMIME and SMTPUTF8 uses TLS
and passes C{BODY=8BITMIME} and C{SMTPUTF8} on.
"""

from __future__ import annotations

import smtplib
import ssl
from typing import Iterator

import pytest

from mailsrv.testing.dns import DNSProcess
from mailsrv.testing.server import RunningServer
from mailsrv.testing.smtpsink import SMTPSink
from mailsrv.tls import generateSelfSigned
from tests.integration.clients import clientContext, token
from tests.integration.conftest import PASSWORD
from tests.integration.test_outbound import ZONES, delivered, rcptPolicy, waitFor

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, SMTPSink]]:
    root = tmp_path_factory.mktemp("queuecli")
    dnsServer = DNSProcess(ZONES, root)
    dnsServer.start()
    certPath, keyPath = root / "sink.crt", root / "sink.key"
    generateSelfSigned("mx.remote.test", certPath, keyPath)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certPath, keyPath)
    sink = SMTPSink(tls=context, rcptPolicy=rcptPolicy).start()
    # Retries an hour apart: only a flush can deliver within the test.
    srv = RunningServer(
        root,
        endpoints=("submission",),
        extraConfig=(
            f'[dns]\nnameservers = ["{dnsServer.nameserver}"]\ntimeout = 2\n\n'
            f"[delivery]\nmx_port = {sink.port}\nconnect_timeout = 2\ncommand_timeout = 10\n\n"
            "[queue]\nretry_initial = 3600\nretry_max = 3600\n\n"
        ),
    )
    srv.addUser(ALICE, PASSWORD)
    srv.start()
    try:
        yield srv, sink
    finally:
        srv.stop()
        sink.stop()
        dnsServer.stop()


def submit(server: RunningServer, recipients: list[str], message: bytes, options: tuple[str, ...] = ()) -> str:
    client = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10)
    try:
        client.starttls(context=clientContext())
        client.login(ALICE, PASSWORD)
        client.mail(ALICE, list(options))
        for r in recipients:
            code, text = client.rcpt(r)
            assert code == 250, (r, code, text)
        code, text = client.data(message)
        assert code == 250, text
        return text.decode().rsplit(" ", 1)[1]
    finally:
        client.quit()


def test_flush_delivers_deferred(setup: tuple[RunningServer, SMTPSink]) -> None:
    """
    A message deferred by a 451 is listed with its error and is delivered
    right after `mailsrv queue flush`, not an hour later; then the queue
    no longer lists it.
    """
    srv, sink = setup
    subject = token("flush")
    rcpt = f"later-{subject}@remote.test"
    queueId = submit(srv, [rcpt], f"From: <{ALICE}>\r\nSubject: {subject}\r\n\r\nhi\r\n".encode())
    waitFor(lambda: (srv.dataDir / "queue" / "deferred" / queueId).is_dir())
    listing = srv.mailsrv("queue", "list")
    assert listing.returncode == 0, listing.stderr
    (line,) = [l for l in listing.stdout.splitlines() if l.startswith(queueId)]
    assert line.split()[1] == "deferred" and rcpt in line and "451 4.3.0 Try again later" in line
    shown = srv.mailsrv("queue", "show", queueId)
    assert f"Subject: {subject}" in shown.stdout and "Attempts: 1" in shown.stdout
    assert not delivered(sink, subject.encode())
    flushed = srv.mailsrv("queue", "flush")
    assert flushed.returncode == 0, flushed.stderr
    waitFor(lambda: delivered(sink, subject.encode()), timeout=15)
    assert sink.offered[rcpt] == 2
    waitFor(lambda: queueId not in srv.mailsrv("queue", "list").stdout)


def test_delete_deferred(setup: tuple[RunningServer, SMTPSink]) -> None:
    """
    A deferred message deleted while the server runs is gone for good: a
    flush afterwards does not deliver it.
    """
    srv, sink = setup
    subject = token("delete")
    rcpt = f"later-{subject}@remote.test"
    queueId = submit(srv, [rcpt], f"From: <{ALICE}>\r\nSubject: {subject}\r\n\r\nhi\r\n".encode())
    waitFor(lambda: (srv.dataDir / "queue" / "deferred" / queueId).is_dir())
    result = srv.mailsrv("queue", "delete", queueId)
    assert result.returncode == 0, result.stderr
    assert srv.mailsrv("queue", "flush").returncode == 0
    waitFor(lambda: not (srv.dataDir / "queue" / "flush").exists())
    # The flush was taken; a retry would have reached the sink by now.
    waitFor(lambda: f"Queue entry {queueId} is gone (deleted)" in srv.log(), timeout=10)
    assert sink.offered[rcpt] == 1
    assert not delivered(sink, subject.encode())


def test_starttls_and_body_parameters(setup: tuple[RunningServer, SMTPSink]) -> None:
    """
    To an MX offering STARTTLS the queue delivers over TLS, and the
    submitted BODY=8BITMIME and SMTPUTF8 go on in MAIL FROM because the
    MX offers both; the 8-bit body arrives byte for byte.
    """
    srv, sink = setup
    subject = token("params")
    body = "Grüße aus Köln\r\n".encode("utf-8")
    message = f"From: <{ALICE}>\r\nSubject: {subject}\r\n\r\n".encode() + body
    submit(srv, ["dest@remote.test"], message, ("BODY=8BITMIME", "SMTPUTF8"))
    waitFor(lambda: delivered(sink, subject.encode()))
    (t,) = delivered(sink, subject.encode())
    assert t.tls is True
    params = t.mailParams.split()
    assert "BODY=8BITMIME" in params and "SMTPUTF8" in params
    assert t.data.endswith(b"\r\n\r\n" + body)
    assert f"\r\nSubject: {subject}\r\n".encode() in t.data


def test_7bit_sends_no_body_parameters(setup: tuple[RunningServer, SMTPSink]) -> None:
    """
    A plain ASCII submission without BODY or SMTPUTF8 is passed on without
    them (only SIZE).
    """
    srv, sink = setup
    subject = token("plain")
    submit(srv, ["dest@remote.test"], f"From: <{ALICE}>\r\nSubject: {subject}\r\n\r\nhi\r\n".encode())
    waitFor(lambda: delivered(sink, subject.encode()))
    (t,) = delivered(sink, subject.encode())
    assert [p.split("=")[0] for p in t.mailParams.split()] == ["SIZE"]
