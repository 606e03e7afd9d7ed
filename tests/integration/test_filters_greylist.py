# -*- test-case-name: tests.integration.test_filters_greylist -*-
"""
Greylisting over real sockets, with a short delay: the first attempt is
deferred, an early retry too, a retry after the delay passes, and the
state survives a restart.
"""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

import pytest

from mailsrv.testing.server import RunningServer

ALICE = "alice@example.test"
DELAY = 2


def server(root: Path) -> RunningServer:
    srv = RunningServer(
        root,
        extraConfig=f"[greylist]\nenabled = true\ndelay = {DELAY}\nretry_window = 600\n",
        endpoints=("smtp", "submission"),
    )
    return srv


def attempt(srv: RunningServer, sender: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
        s.sendmail(sender, [ALICE], f"Subject: {subject}\r\n\r\nhi\r\n".encode())


def test_greylisting(tmp_path: Path) -> None:
    """
    450 4.7.1 for a new triplet and for a retry before the delay; a retry
    after it is delivered; after a restart the passed triplet still passes
    and a triplet first seen before the restart is remembered.
    """
    srv = server(tmp_path)
    srv.addUser(ALICE, "secret")
    srv.start()
    try:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
                attempt(srv, "bob@remote.test", "grey-1")
            [(code, text)] = info.value.recipients.values()
            assert (code, text) == (450, f"4.7.1 <{ALICE}>: Greylisted, please try again later".encode())
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            attempt(srv, "carol@remote.test", "grey-2")
        time.sleep(DELAY + 0.2)
        attempt(srv, "bob@remote.test", "grey-1")
        # Authenticated users are never greylisted.
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=30) as s:
            s.starttls()
            s.login(ALICE, "secret")
            s.sendmail(ALICE, [ALICE], b"Subject: grey-3\r\n\r\nhi\r\n")
    finally:
        srv.stop()
    assert (srv.dataDir / "state" / "greylist.json").exists()
    srv.start()
    try:
        attempt(srv, "bob@remote.test", "grey-1")
        attempt(srv, "carol@remote.test", "grey-2")
    finally:
        srv.stop()
    new = srv.maildir(ALICE) / "new"
    subjects = sorted(p.read_bytes().split(b"Subject: ")[1][:6] for p in new.iterdir())
    assert subjects == [b"grey-1", b"grey-1", b"grey-2", b"grey-3"]
