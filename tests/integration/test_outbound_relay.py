"""
Relay-host mode over real sockets: every external message goes to a
second mailsrv acting as the provider's relay, over implicit TLS (465) or
STARTTLS (587), with AUTH; with certificate verification on (the
default), the relay's self-signed certificate is refused and the message
stays queued.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import maildirFiles, token
from tests.integration.conftest import PASSWORD
from tests.integration.test_outbound import ALICE, submit, waitFor

RELAY_USER = "relayuser@relay.test"
BOB = "bob@relay.test"


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = RunningServer(
        tmp_path_factory.mktemp("relay"),
        domain="relay.test",
        endpoints=("submission", "submissions"),
        # A provider's relay lets its customer send as their own domain.
        extraConfig="[submission]\nspoof_protection = false\n",
    )
    srv.addUser(RELAY_USER, PASSWORD)
    srv.addUser(BOB, PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def sender(root: Path, relay: RunningServer, endpoint: str, verify: bool) -> RunningServer:
    tls = "implicit" if endpoint == "submissions" else "starttls"
    srv = RunningServer(
        root,
        endpoints=("submission",),
        extraConfig=(
            f'[relay]\nhost = "127.0.0.1"\nport = {relay.ports[endpoint]}\ntls = "{tls}"\n'
            f'username = "{RELAY_USER}"\npassword = "{PASSWORD}"\nverify = {"true" if verify else "false"}\n\n'
            "[queue]\nretry_initial = 1\nretry_max = 1\n\n"
            # Never used: everything goes to the relay.
            '[dns]\nnameservers = ["127.0.0.1:9"]\n'
        ),
    )
    srv.addUser(ALICE, PASSWORD)
    return srv


@pytest.mark.parametrize("endpoint", ["submissions", "submission"])
def test_relay_with_auth(tmp_path: Path, relay: RunningServer, endpoint: str) -> None:
    """
    The message reaches the relay over TLS with AUTH and is delivered by it.
    """
    srv = sender(tmp_path, relay, endpoint, verify=False)
    srv.start()
    try:
        subject = token(f"relay-{endpoint}")
        submit(srv, [BOB], f"From: <{ALICE}>\r\nSubject: {subject}\r\n\r\nvia relay\r\n".encode())
        waitFor(lambda: maildirFiles(relay, BOB, subject))
        (path,) = maildirFiles(relay, BOB, subject)
        data = path.read_bytes()
        assert b"with ESMTPSA" in data  # TLS and AUTH at the relay
        assert b"Return-Path: <alice@example.test>" in data
        assert f"AUTH success for {RELAY_USER}" in relay.log()
    finally:
        srv.stop()


def test_relay_certificate_verified_by_default(tmp_path: Path, relay: RunningServer) -> None:
    """
    With verify = true the relay's self-signed certificate fails the
    handshake: nothing is delivered and the message stays queued.
    """
    srv = sender(tmp_path, relay, "submissions", verify=True)
    srv.start()
    try:
        subject = token("verify")
        submit(srv, [BOB], f"From: <{ALICE}>\r\nSubject: {subject}\r\n\r\nx\r\n".encode())
        waitFor(lambda: list((srv.dataDir / "queue" / "deferred").iterdir()))
        time.sleep(1.5)
        assert maildirFiles(relay, BOB, subject) == []
        assert list((srv.dataDir / "queue" / "deferred").iterdir()) or list(
            (srv.dataDir / "queue" / "active").iterdir()
        )
    finally:
        srv.stop()
