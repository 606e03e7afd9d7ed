"""
Submission over real sockets (587 with STARTTLS, 465 with implicit TLS):
authentication required, spoof protection on the envelope sender and on
From:, Message-ID and Date completed, client address kept out of Received.
"""

from __future__ import annotations

import smtplib
from typing import Iterator

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import clientContext, maildirFiles, token
from tests.integration.conftest import PASSWORD

ALICE = "alice@example.test"
BOB = "bob@example.test"


@pytest.fixture(scope="module")
def submission(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = RunningServer(tmp_path_factory.mktemp("submission"), endpoints=("submission", "submissions"))
    srv.addUser(ALICE, PASSWORD)
    srv.addUser(BOB, PASSWORD)
    result = srv.mailsrv("alias", "add", "sales@example.test", ALICE)
    assert result.returncode == 0, result.stderr
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def connect(server: RunningServer, endpoint: str) -> smtplib.SMTP:
    if endpoint == "submissions":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            "127.0.0.1", server.ports[endpoint], timeout=10, context=clientContext()
        )
    else:
        client = smtplib.SMTP("127.0.0.1", server.ports[endpoint], timeout=10)
        client.starttls(context=clientContext())
    client.ehlo("client.home.example")
    return client


def body(sender: str, subject: str, extra: str = "") -> bytes:
    return f"From: <{sender}>\r\nTo: <{BOB}>\r\nSubject: {subject}\r\n{extra}\r\nHello.\r\n".encode()


ENDPOINTS = ["submission", "submissions"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unauthenticated_refused(submission: RunningServer, endpoint: str) -> None:
    """
    MAIL without AUTH gets 530 5.7.0 on both submission ports.
    """
    client = connect(submission, endpoint)
    try:
        code, text = client.mail(ALICE)
        assert (code, text[:5]) == (530, b"5.7.0")
    finally:
        client.close()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_envelope_spoofing_refused(submission: RunningServer, endpoint: str) -> None:
    """
    An authenticated user may not use another account's address as the
    envelope sender: 553 5.7.1 at MAIL FROM.
    """
    client = connect(submission, endpoint)
    try:
        client.login(ALICE, PASSWORD)
        code, text = client.mail(BOB)
        assert code == 553
        assert text == (
            b"5.7.1 <bob@example.test>: Sender address rejected: not owned by user alice@example.test"
        )
    finally:
        client.close()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_from_spoofing_refused(submission: RunningServer, endpoint: str) -> None:
    """
    A From: header the account does not own is refused with 553 5.7.1 at
    the end of data, and nothing is delivered.
    """
    subject = token("spoof")
    client = connect(submission, endpoint)
    try:
        client.login(ALICE, PASSWORD)
        with pytest.raises(smtplib.SMTPDataError) as caught:
            client.sendmail(ALICE, [BOB], body(BOB, subject))
        assert caught.value.smtp_code == 553
        assert caught.value.smtp_error.startswith(b"5.7.1 Sender address rejected")
    finally:
        client.close()
    assert maildirFiles(submission, BOB, subject) == []


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_alias_sender_accepted_and_completed(submission: RunningServer, endpoint: str) -> None:
    """
    An alias of the account is accepted as envelope sender and From:;
    the delivered message gained Message-ID and Date, and its Received
    header does not show the client's address or name.
    """
    subject = token("alias")
    client = connect(submission, endpoint)
    try:
        client.login(ALICE, PASSWORD)
        client.sendmail("sales@example.test", [BOB], body("sales@example.test", subject))
    finally:
        client.quit()
    (path,) = maildirFiles(submission, BOB, subject)
    data = path.read_bytes()
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nMessage-ID: <" in head
    assert b"\r\nDate: " in head
    received = [line for line in head.split(b"\r\n") if line.startswith(b"Received:")]
    assert received == [b"Received: from authenticated-user"]
    assert b"127.0.0.1" not in head
    assert b"client.home.example" not in head
