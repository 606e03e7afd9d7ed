# -*- test-case-name: tests.integration.test_filters_rspamd -*-
"""
Spam checking over real sockets: a running C{twistd mailsrv} asking a real
Rspamd (Debian), started offline on loopback with test rules that turn a
word in the Subject into each of Rspamd's actions
(L{mailsrv.testing.rspamd}).
"""

from __future__ import annotations

import smtplib
from typing import Iterator

import pytest

from mailsrv.testing.rspamd import RspamdProcess, rspamdBinary
from mailsrv.testing.server import RunningServer

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    if rspamdBinary() is None:
        pytest.skip("rspamd is not installed (Debian package rspamd)")
    root = tmp_path_factory.mktemp("rspamd")
    rspamd = RspamdProcess(root / "rspamd")
    rspamd.start()
    srv = RunningServer(
        root / "srv",
        extraConfig=f'[rspamd]\nenabled = true\nurl = "{rspamd.url}"\ntimeout = 10\n',
        endpoints=("smtp",),
    )
    srv.addUser(ALICE, "secret")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        rspamd.stop()


def send(server: RunningServer, subject: str, extra: bytes = b"") -> None:
    data = b"From: <bob@remote.test>\r\n" + extra + f"Subject: {subject}\r\n\r\nHello.\r\n".encode()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname="client.remote.test", timeout=30) as s:
        s.sendmail("bob@remote.test", [ALICE], data)


def stored(server: RunningServer, folder: str, needle: str) -> list[bytes]:
    out = []
    for sub in ("new", "cur"):
        d = server.maildir(ALICE) / folder / sub
        if d.is_dir():
            out += [p.read_bytes() for p in d.iterdir() if needle.encode() in p.read_bytes()]
    return out


def headers(message: bytes) -> str:
    return message.split(b"\r\n\r\n", 1)[0].decode()


def test_reject(mx: RunningServer) -> None:
    """
    Rspamd's reject refuses the message with 550 5.7.1 and its text.
    """
    with pytest.raises(smtplib.SMTPDataError) as info:
        send(mx, "MAILSRV-TEST-REJECT rs-1")
    assert (info.value.smtp_code, info.value.smtp_error) == (550, b"5.7.1 Spam message rejected")
    assert stored(mx, ".", "rs-1") + stored(mx, ".Junk", "rs-1") == []


def test_soft_reject(mx: RunningServer) -> None:
    """
    Rspamd's soft reject defers the message with 450 4.7.1.
    """
    with pytest.raises(smtplib.SMTPDataError) as info:
        send(mx, "MAILSRV-TEST-SOFT rs-2")
    assert (info.value.smtp_code, info.value.smtp_error) == (450, b"4.7.1 Try again later (test)")


def test_add_header_goes_to_junk(mx: RunningServer) -> None:
    """
    add header: delivered into Junk (not the INBOX) with X-Spam: Yes and
    the score; an X-Spam header forged by the sender is gone.
    """
    send(mx, "MAILSRV-TEST-JUNK rs-3", extra=b"X-Spam: No\r\nX-Spam-Score: -50\r\n")
    assert stored(mx, ".", "rs-3") == []
    [message] = stored(mx, ".Junk", "rs-3")
    h = headers(message)
    assert "X-Spam: Yes\r\n" in h and "X-Spam-Action: add header\r\n" in h
    assert "X-Spam-Score: 7.00 / 15.00\r\n" in h
    assert "X-Spam: No" not in h and "-50" not in h


def test_rewrite_subject(mx: RunningServer) -> None:
    """
    rewrite subject: delivered into the INBOX with Rspamd's Subject.
    """
    send(mx, "MAILSRV-TEST-SUBJECT rs-4")
    [message] = stored(mx, ".", "rs-4")
    h = headers(message)
    assert h.count("Subject:") == 1
    assert "Subject: *** SPAM *** MAILSRV-TEST-SUBJECT rs-4\r\n" in h
    assert "X-Spam-Action: rewrite subject" in h


def test_ham(mx: RunningServer) -> None:
    """
    Ordinary mail goes to the INBOX marked "no action".
    """
    send(mx, "hello rs-5")
    [message] = stored(mx, ".", "rs-5")
    assert "X-Spam-Action: no action\r\n" in headers(message)
    assert "X-Spam: Yes" not in headers(message)
