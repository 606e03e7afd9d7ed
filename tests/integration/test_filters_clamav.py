# -*- test-case-name: tests.integration.test_filters_clamav -*-
"""
Virus scanning over real sockets: a running C{twistd mailsrv} handing
each message to a real clamd (Debian clamav-daemon) on loopback, whose
only signature detects the EICAR test string.
"""

from __future__ import annotations

import base64
import smtplib
from typing import Iterator

import pytest

from mailsrv.testing.clamd import EICAR, REPORTED, ClamdProcess, clamdBinary
from mailsrv.testing.server import RunningServer

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    if clamdBinary() is None:
        pytest.skip("clamd is not installed (Debian package clamav-daemon)")
    root = tmp_path_factory.mktemp("clamav")
    clamd = ClamdProcess(root / "clamd")
    (root / "clamd").mkdir()
    clamd.start()
    srv = RunningServer(
        root / "srv",
        extraConfig=f'[clamav]\nenabled = true\naddress = "{clamd.address}"\nstream_max_length = {1024 * 1024}\n',
        endpoints=("smtp", "submission"),
    )
    srv.addUser(ALICE, "secret")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        clamd.stop()


def stored(server: RunningServer, needle: bytes) -> list[bytes]:
    out = []
    for folder in (".", ".Junk"):
        for sub in ("new", "cur"):
            d = server.maildir(ALICE) / folder / sub
            if d.is_dir():
                out += [p.read_bytes() for p in d.iterdir() if needle in p.read_bytes()]
    return out


def infected(subject: str) -> bytes:
    return (
        f"From: <bob@remote.test>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n".encode()
        + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n'
        + b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        + b"Content-Disposition: attachment; filename=eicar.com\r\n\r\n"
        + base64.encodebytes(EICAR).replace(b"\n", b"\r\n")
        + b"--b--\r\n"
    )


def test_infected_refused(mx: RunningServer) -> None:
    """
    A message with the EICAR file attached (base64, as mail carries it) is
    refused at the end of data with 5.7.1 naming the signature, logged,
    and stored nowhere.
    """
    with smtplib.SMTP("127.0.0.1", mx.ports["smtp"], timeout=30) as s:
        with pytest.raises(smtplib.SMTPDataError) as info:
            s.sendmail("bob@remote.test", [ALICE], infected("virus-1"))
    assert info.value.smtp_code == 554
    assert info.value.smtp_error == f"5.7.1 Message rejected: virus found ({REPORTED})".encode()
    assert stored(mx, b"virus-1") == []
    assert f"Virus {REPORTED} found" in mx.log()


def test_clean_accepted(mx: RunningServer) -> None:
    """
    A clean message is scanned and delivered.
    """
    with smtplib.SMTP("127.0.0.1", mx.ports["smtp"], timeout=30) as s:
        s.sendmail("bob@remote.test", [ALICE], b"From: <bob@remote.test>\r\nSubject: clean-1\r\n\r\nHello.\r\n")
    assert len(stored(mx, b"clean-1")) == 1


def test_submission_scanned(mx: RunningServer) -> None:
    """
    Authenticated users' mail is scanned too: a compromised account cannot
    send the virus to a local user.
    """
    with smtplib.SMTP("127.0.0.1", mx.ports["submission"], timeout=30) as s:
        s.starttls()
        s.login(ALICE, "secret")
        with pytest.raises(smtplib.SMTPDataError) as info:
            s.sendmail(ALICE, [ALICE], infected("virus-2").replace(b"bob@remote.test", ALICE.encode()))
    assert info.value.smtp_code == 554
    assert stored(mx, b"virus-2") == []
