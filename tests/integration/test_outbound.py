"""
Outbound delivery end to end: a real mailsrv (twistd) queues mail from an
authenticated user, finds the MX through a real twisted.names server on
loopback, and delivers to a recording SMTP server on loopback.  Nothing
leaves 127.0.0.0/8.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from pathlib import Path
from typing import Iterator

import pytest

from mailsrv.testing.dns import DNSProcess
from mailsrv.testing.server import RunningServer, freePort
from mailsrv.testing.smtpsink import SMTPSink
from tests.integration.clients import clientContext, maildirFiles, token, waitFor
from tests.integration.conftest import PASSWORD

ALICE = "alice@example.test"

ZONES = {
    "remote.test": {
        "remote.test": {"MX": [[10, "mx.remote.test"]]},
        "mx.remote.test": {"A": ["127.0.0.1"]},
        "fallback.remote.test": {"MX": [[5, "dead.remote.test"], [10, "mx.remote.test"]]},
        "dead.remote.test": {"A": ["127.0.0.2"]},
        "implicit.remote.test": {"A": ["127.0.0.1"]},
        "nullmx.remote.test": {"MX": [[0, ""]]},
    }
}


@pytest.fixture(scope="module")
def dnsServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DNSProcess]:
    proc = DNSProcess(ZONES, tmp_path_factory.mktemp("dns"))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def rcptPolicy(rcpt: str, seen: int) -> tuple[int, str]:
    local = rcpt.partition("@")[0]
    if local.startswith("reject"):
        return 550, "5.1.1 No such user here"
    if local.startswith("later") and seen == 0:
        return 451, "4.3.0 Try again later"
    return 250, "2.1.5 Ok"


@pytest.fixture(scope="module")
def sink() -> Iterator[SMTPSink]:
    s = SMTPSink(rcptPolicy=rcptPolicy).start()
    try:
        yield s
    finally:
        s.stop()


def makeServer(root: Path, dnsServer: DNSProcess, port: int, extra: str = "") -> RunningServer:
    srv = RunningServer(
        root,
        endpoints=("smtp", "submission"),
        extraConfig=(
            f'[dns]\nnameservers = ["{dnsServer.nameserver}"]\ntimeout = 2\n\n'
            f"[delivery]\nmx_port = {port}\nconnect_timeout = 2\ncommand_timeout = 10\n\n"
            "[queue]\nretry_initial = 1\nretry_max = 2\n\n" + extra
        ),
    )
    srv.addUser(ALICE, PASSWORD)
    return srv


@pytest.fixture(scope="module")
def sender(tmp_path_factory: pytest.TempPathFactory, dnsServer: DNSProcess, sink: SMTPSink) -> Iterator[RunningServer]:
    srv = makeServer(tmp_path_factory.mktemp("outbound"), dnsServer, sink.port)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def submit(server: RunningServer, recipients: list[str], message: bytes) -> str:
    client = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10)
    try:
        client.starttls(context=clientContext())
        client.login(ALICE, PASSWORD)
        client.mail(ALICE)
        for r in recipients:
            code, text = client.rcpt(r)
            assert code == 250, (r, code, text)
        code, text = client.data(message)
        assert code == 250, text
        return text.decode().rsplit(" ", 1)[1]
    finally:
        client.quit()


def delivered(sink: SMTPSink, needle: bytes) -> list:  # type: ignore[type-arg]
    return [t for t in sink.transactions if needle in t.data]


def test_delivery_byte_identical(sender: RunningServer, sink: SMTPSink) -> None:
    """
    A message with lines starting with dots (one right at a 16 KiB
    boundary) and two recipients of one domain arrives in one transaction,
    identical to what was submitted apart from the Received header on top.
    """
    subject = token("ok")
    line = b"x" * 78 + b"\r\n"
    body = b".leading dot\r\n" + line * 300 + b".\r\n..\r\n" + b"y" * 50 + b"\r\n"
    message = (
        f"From: <{ALICE}>\r\nTo: <a@remote.test>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
    ).encode() + body
    queueId = submit(sender, ["a@remote.test", "b@remote.test"], message)
    waitFor(lambda: delivered(sink, subject.encode()))
    (t,) = delivered(sink, subject.encode())
    assert t.mailFrom == ALICE
    assert sorted(t.recipients) == ["a@remote.test", "b@remote.test"]
    assert "SIZE=" in t.mailParams
    assert t.tls is False  # the sink offers no STARTTLS here
    assert t.data.endswith(message)
    added = t.data[: -len(message)]
    assert added.startswith(b"Received: from authenticated-user\r\n")
    assert added.count(b"\r\nReceived:") == 0 and queueId.encode() in added
    waitFor(lambda: not list((sender.dataDir / "queue" / "deferred").iterdir()) and not list(
        (sender.dataDir / "queue" / "active").iterdir()
    ))


def test_implicit_mx_and_dead_mx_fallback(sender: RunningServer, sink: SMTPSink) -> None:
    """
    A domain without MX is delivered to its own address; a domain whose
    best MX does not answer is delivered to the next one.
    """
    subject = token("fallback")
    message = f"From: <{ALICE}>\r\nSubject: {subject}\r\n\r\nhi\r\n".encode()
    submit(sender, ["x@implicit.remote.test", "y@fallback.remote.test"], message)
    waitFor(lambda: len(delivered(sink, subject.encode())) == 2)
    rcpts = sorted(r for t in delivered(sink, subject.encode()) for r in t.recipients)
    assert rcpts == ["x@implicit.remote.test", "y@fallback.remote.test"]


def test_tempfail_then_retry(sender: RunningServer, sink: SMTPSink) -> None:
    """
    A recipient refused with 451 is retried (after retry_initial = 1 s)
    and delivered exactly once.
    """
    subject = token("later")
    rcpt = f"later-{subject}@remote.test"
    submit(sender, [rcpt], f"From: <{ALICE}>\r\nSubject: {subject}\r\n\r\nhi\r\n".encode())
    waitFor(lambda: delivered(sink, subject.encode()))
    time.sleep(1.5)
    assert len(delivered(sink, subject.encode())) == 1
    assert sink.offered[rcpt] == 2


def bounceFor(server: RunningServer, needle: str) -> email.message.Message:
    waitFor(lambda: maildirFiles(server, ALICE, needle))
    (path,) = maildirFiles(server, ALICE, needle)
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def checkReport(report: email.message.Message, rcpt: str, status: str) -> None:
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    parts = list(report.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    blocks = parts[1].get_payload()
    assert blocks[0]["Reporting-MTA"] == "dns; mail.example.test"
    assert blocks[1]["Final-Recipient"] == f"rfc822; {rcpt}"
    assert blocks[1]["Action"] == "failed"
    assert blocks[1]["Status"] == status


def test_5xx_bounces(sender: RunningServer, sink: SMTPSink) -> None:
    """
    A 550 fails the recipient at once: the sender gets an RFC 3464 report
    from <> naming the recipient, the status and the remote reply, and
    the message is no longer queued.
    """
    subject = token("reject")
    rcpt = f"reject-{subject}@remote.test"
    submit(sender, [rcpt], f"From: <{ALICE}>\r\nSubject: {subject}\r\n\r\nhi\r\n".encode())
    report = bounceFor(sender, subject)
    assert report["Return-Path"] == "<>"
    checkReport(report, rcpt, "5.1.1")
    assert "550 5.1.1 No such user here" in str(list(report.iter_parts())[1].get_payload()[1]["Diagnostic-Code"])
    assert subject in list(report.iter_parts())[2].get_content()


def test_null_mx_bounces(sender: RunningServer) -> None:
    """
    A domain with a null MX (RFC 7505) is bounced with 5.1.10 without any
    connection attempt.
    """
    subject = token("nullmx")
    rcpt = "someone@nullmx.remote.test"
    submit(sender, [rcpt], f"From: <{ALICE}>\r\nSubject: {subject}\r\n\r\nhi\r\n".encode())
    checkReport(bounceFor(sender, subject), rcpt, "5.1.10")


def test_restart_mid_queue_delivers_once(
    tmp_path: Path, dnsServer: DNSProcess, sink: SMTPSink
) -> None:
    """
    A message queued while its MX is down stays queued across a restart
    of the server and is delivered exactly once when the MX comes back.
    """
    port = freePort()  # nothing listens there yet
    srv = makeServer(tmp_path, dnsServer, port, "")
    srv.start()
    subject = token("restart")
    try:
        submit(srv, ["r@remote.test"], f"From: <{ALICE}>\r\nSubject: {subject}\r\n\r\nhi\r\n".encode())
        waitFor(lambda: list((srv.dataDir / "queue" / "deferred").iterdir()))
    finally:
        srv.stop()
    back = SMTPSink(rcptPolicy=rcptPolicy, port=port).start()
    try:
        srv.start()
        waitFor(lambda: delivered(back, subject.encode()))
        waitFor(lambda: not list((srv.dataDir / "queue" / "deferred").iterdir()))
        time.sleep(2.5)
        assert len(delivered(back, subject.encode())) == 1
    finally:
        srv.stop()
        back.stop()
