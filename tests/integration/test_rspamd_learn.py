"""
Spam learning from IMAP moves, end to end: a real mailsrv with C{[rspamd]
learn} and a real Rspamd (Debian's) whose Bayes classifier keeps its
tokens in a real Redis, both on loopback.  Mail comes in with smtplib, a
user moves it with imaplib, and Rspamd's controller counts what it learnt.
"""

from __future__ import annotations

import imaplib
import smtplib
import time
from typing import Iterator

import pytest

from mailsrv.testing.rspamd import LEARN_PASSWORD, RspamdProcess
from mailsrv.testing.server import RunningServer
from tests.integration.clients import clientContext, token, waitFor
from tests.integration.conftest import PASSWORD

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RspamdProcess]:
    process = RspamdProcess(tmp_path_factory.mktemp("rspamd"), learning=True)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, rspamd: RspamdProcess) -> Iterator[RunningServer]:
    srv = RunningServer(
        tmp_path_factory.mktemp("learn"),
        endpoints=("smtp", "imaps"),
        extraConfig=(
            f'[rspamd]\nlearn = true\ncontroller_url = "{rspamd.controllerUrl}"\npassword = "{LEARN_PASSWORD}"\n\n'
        ),
    )
    srv.addUser(ALICE, PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def deliver(server: RunningServer, subject: str) -> None:
    body = " ".join(f"word{i}-{subject}" for i in range(40))
    client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10)
    try:
        client.sendmail(
            "sender@remote.test", [ALICE],
            f"From: <sender@remote.test>\r\nTo: <{ALICE}>\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode(),
        )
    finally:
        client.quit()


def uidOf(imap: imaplib.IMAP4, folder: str, subject: str) -> bytes:
    assert imap.select(folder)[0] == "OK"
    typ, data = imap.uid("SEARCH", "SUBJECT", f'"{subject}"')
    [uid] = data[0].split()
    return uid


def test_moves_teach_rspamd(server: RunningServer, rspamd: RspamdProcess) -> None:
    """
    MOVE into Junk learns spam, MOVE out of Junk learns ham, COPY into
    Junk learns spam; MOVE from Junk into Trash learns nothing.  The IMAP
    commands succeed at once whatever Rspamd does.
    """
    first, second = token("spammy"), token("other")
    deliver(server, first)
    deliver(server, second)
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext(), timeout=10)
    try:
        imap.login(ALICE, PASSWORD)
        before = rspamd.learned()
        assert imap.uid("MOVE", uidOf(imap, "INBOX", first), "Junk")[0] == "OK"
        waitFor(lambda: rspamd.learned() == before + 1)
        waitFor(lambda: f"Rspamd learned 1 of 1 messages of {ALICE} as spam (moved to Junk)" in server.log())

        assert imap.uid("MOVE", uidOf(imap, "Junk", first), "INBOX")[0] == "OK"
        waitFor(lambda: rspamd.learned() == before + 2)
        waitFor(lambda: f"Rspamd learned 1 of 1 messages of {ALICE} as ham (moved to INBOX)" in server.log())

        assert imap.uid("COPY", uidOf(imap, "INBOX", second), "Junk")[0] == "OK"
        waitFor(lambda: rspamd.learned() == before + 3)

        assert imap.uid("MOVE", uidOf(imap, "Junk", second), "Trash")[0] == "OK"
        time.sleep(1.0)
        assert rspamd.learned() == before + 3
        assert "(moved to Trash)" not in server.log()
    finally:
        imap.logout()
