"""
A real POP3 client, Debian's fetchmail, downloads and deletes a maildrop
from a running mailsrv: over POP3S (995) and over POP3 (110) with STLS,
which that endpoint requires.

fetchmail hands each message to an MDA that writes it to a file unchanged
(C{no stripcr}, C{set invisible}: no CR stripping, no Received header of
its own), so what arrives can be compared byte for byte with what the
server stored.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from mailsrv.testing.server import RunningServer

from .conftest import PASSWORD

ALICE = "alice@example.test"

pytestmark = pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail is not installed")

# Content that trips naive POP3 encoders: lines starting with a dot, a line
# that is only a dot, 8-bit octets, and a message larger than the server's
# 64 KiB read chunk with dots right at chunk-sized offsets.
MESSAGES = [
    b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n..two dots\r\nend\r\n",
    b"Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGr\xc3\xbc\xc3\x9fe, \xe2\x82\xac\r\n",
    b"Subject: big\r\n\r\n" + b"".join(b".%05d " % i + b"x" * 90 + b"\r\n" for i in range(3000)),
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    """
    A server of the test's own with a maildrop of L{MESSAGES}, delivered
    over SMTP as any mail would be.
    """
    srv = RunningServer(tmp_path / "srv")
    srv.addUser(ALICE, PASSWORD)
    srv.start()
    try:
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as client:
            for message in MESSAGES:
                client.sendmail("sender@remote.test", [ALICE], message)
        yield srv
    finally:
        srv.stop()


def stored(server: RunningServer) -> list[bytes]:
    """
    The messages in the account's INBOX as the server keeps them.
    """
    root = server.maildir(ALICE)
    return sorted(p.read_bytes() for sub in ("new", "cur") for p in (root / sub).iterdir())


def fetchmail(server: RunningServer, tmp_path: Path, port: int, tlsOptions: str) -> tuple[subprocess.CompletedProcess[str], list[bytes]]:
    """
    Run fetchmail once against C{port}; return its result and the messages
    its MDA received.
    """
    out = tmp_path / "delivered"
    out.mkdir()
    mda = tmp_path / "mda.sh"
    mda.write_text(f'#!/bin/sh\nexec cat > "{out}/$(date +%s%N).$$"\n')
    mda.chmod(0o755)
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        "set invisible\n"
        f"poll 127.0.0.1 service {port} protocol pop3 auth password\n"
        f'  user "{ALICE}" password "{PASSWORD}"\n'
        f"  {tlsOptions}\n"
        "  fetchall nokeep no rewrite no stripcr\n"
        f'  mda "{mda}"\n'
    )
    rc.chmod(0o600)
    result = subprocess.run(
        ["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog", "-v", "-i", str(tmp_path / "fetchids"),
         # As root the lock defaults to /run/fetchmail.pid, which would make
         # parallel tests refuse to run.
         "--pidfile", str(tmp_path / "fetchmail.pid")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FETCHMAILHOME": str(tmp_path)},
    )
    return result, sorted(p.read_bytes() for p in out.iterdir())


def verifiedTLS(server: RunningServer) -> str:
    """
    fetchmail options that check the server's certificate against the
    self-signed one it generated, instead of turning checks off.
    """
    cert = server.dataDir / "tls" / "selfsigned-cert.pem"
    return f'sslcertck sslcertfile "{cert}" sslcommonname "mail.example.test"'


def test_pop3sDownloadAndDelete(server: RunningServer, tmp_path: Path) -> None:
    """
    Over implicit TLS fetchmail retrieves every message byte for byte as
    stored, deletes them, and the maildrop is empty afterwards.
    """
    before = stored(server)
    assert len(before) == len(MESSAGES)
    result, delivered = fetchmail(server, tmp_path, server.ports["pop3s"], "ssl " + verifiedTLS(server))
    assert result.returncode == 0, result.stdout + result.stderr
    assert delivered == before
    assert stored(server) == []


def test_pop3StlsDownloadAndDelete(server: RunningServer, tmp_path: Path) -> None:
    """
    On the STLS-required port fetchmail upgrades with STLS, logs in,
    retrieves every message byte for byte and deletes them.
    """
    before = stored(server)
    result, delivered = fetchmail(server, tmp_path, server.ports["pop3"], "sslproto 'tls1.2+' " + verifiedTLS(server))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "POP3> STLS" in result.stdout + result.stderr
    assert delivered == before
    assert stored(server) == []


def test_pop3PlaintextRefused(server: RunningServer, tmp_path: Path) -> None:
    """
    Without TLS fetchmail cannot log in on port 110: nothing is retrieved
    and the maildrop stays as it was.
    """
    before = stored(server)
    result, delivered = fetchmail(server, tmp_path, server.ports["pop3"], "sslproto ''")
    assert result.returncode != 0
    assert "POP3> STLS" not in result.stdout + result.stderr
    assert delivered == []
    assert stored(server) == before
