# -*- test-case-name: tests.integration.test_imap_bodystructure -*-
"""
BODYSTRUCTURE and MIME part fetches over real loopback sockets (implicit
TLS) against a real mailsrv on the Maildir store, with C{imapclient} and
C{imaplib}: the corpus of varied MIME messages answers as
L{mailsrv.protocols.imap.bodystructure} computes it, parts come back byte
for byte, and a 30 MB multipart message is described and served without
the server's memory growing with it (peak RSS, C{VmHWM}).
"""

from __future__ import annotations

import base64
import email
import imaplib
import io
import os
from email.policy import compat32
from pathlib import Path
from typing import Iterator

import pytest
from twisted.mail.imap4 import collapseNestedLists

from mailsrv.mime import parseStructure
from mailsrv.protocols.imap.bodystructure import bodyStructure
from mailsrv.testing.mimecorpus import corpus
from mailsrv.testing.server import RunningServer
from tests.integration.clients import clientContext

imapclient = pytest.importorskip("imapclient")

PASSWORD = "secret"
USER = "mime@example.test"
BIG = "bigmime@example.test"
CORPUS = corpus()

#: The large message: two 15 MB base64 attachments and a text part.
ATTACHMENT = 15 * 1024 * 1024


@pytest.fixture(scope="module")
def imapServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = RunningServer(tmp_path_factory.mktemp("bodystructure"), endpoints=("imaps",))
    srv.addUser(USER, PASSWORD)
    srv.addUser(BIG, PASSWORD)
    writeBigMessage(srv.maildir(BIG))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def writeBigMessage(maildir: Path) -> None:
    """
    Write the large multipart message straight into C{cur/}, in pieces.
    """
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    tmp = maildir / "tmp" / "big"
    block = base64.encodebytes(os.urandom(57 * 1000)).replace(b"\n", b"\r\n")
    with open(tmp, "wb") as f:
        f.write(
            b"From: sender@example.test\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="big-boundary"\r\n\r\n'
            b"--big-boundary\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nTwo attachments.\r\n"
        )
        for n in (1, 2):
            f.write(
                b"--big-boundary\r\nContent-Type: application/octet-stream; name=\"a%d.bin\"\r\n"
                b"Content-Transfer-Encoding: base64\r\n"
                b"Content-Disposition: attachment; filename=\"a%d.bin\"\r\n\r\n" % (n, n)
            )
            written = 0
            while written < ATTACHMENT:
                f.write(block)
                written += len(block)
        f.write(b"--big-boundary--\r\n")
    size = tmp.stat().st_size
    os.rename(tmp, maildir / "cur" / f"1700000000.M1P1.big,S={size},W={size}:2,")


def serverMemory(server: RunningServer) -> dict[str, int]:
    assert server.process is not None
    result = {}
    with open(f"/proc/{server.process.pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                result[key] = int(value.split()[0]) * 1024
    return result


def client(server: RunningServer, user: str) -> "imapclient.IMAPClient":
    c = imapclient.IMAPClient(
        "127.0.0.1", port=server.ports["imaps"], ssl=True, ssl_context=clientContext(), timeout=60
    )
    c.login(user, PASSWORD)
    return c


def test_corpusBodystructure(imapServer: RunningServer) -> None:
    """
    Every corpus message: the BODYSTRUCTURE on the wire is the one computed
    from the message (imaplib, raw), imapclient parses it, and BODY[1] of
    each multipart is the first part's body as the email package reads it.
    """
    c = client(imapServer, USER)
    for _, data in CORPUS:
        c.append("INBOX", data)
    c.select_folder("INBOX", readonly=True)
    uids = c.search("ALL")
    assert len(uids) == len(CORPUS)
    parsed = c.fetch(uids, ["BODYSTRUCTURE", "BODY.PEEK[1]"])
    for uid, (name, data) in zip(uids, CORPUS):
        structure = parsed[uid][b"BODYSTRUCTURE"]
        theirs = email.message_from_bytes(data, policy=compat32)
        if theirs.is_multipart() and theirs.get_content_type().startswith("multipart/"):
            assert structure.is_multipart, name
            first = theirs.get_payload()[0]
            if not first.is_multipart():
                body = first._payload.encode("ascii", "surrogateescape")  # type: ignore[attr-defined]
                assert parsed[uid][b"BODY[1]"] == body, name
    c.logout()

    imap = imaplib.IMAP4_SSL("127.0.0.1", imapServer.ports["imaps"], ssl_context=clientContext(), timeout=30)
    imap.login(USER, PASSWORD)
    imap.select("INBOX", readonly=True)
    for seq, (name, data) in enumerate(CORPUS, 1):
        typ, response = imap.fetch(str(seq), "(BODYSTRUCTURE)")
        assert typ == "OK"
        wire = b"".join(p if isinstance(p, bytes) else b"".join(p) for p in response)
        expected = collapseNestedLists([bodyStructure(parseStructure(io.BytesIO(data)), True)])
        assert wire.replace(b"\r\n", b"").endswith(b"BODYSTRUCTURE " + expected.replace(b"\r\n", b"") + b")"), name
    imap.logout()


def test_bigMultipartMemoryBound(imapServer: RunningServer) -> None:
    """
    BODYSTRUCTURE of a 30 MB multipart message: right sizes and line
    counts, and the server's peak RSS grows by a few MiB at most (parsing
    it whole, as before, cost several times its size); a 15 MB part fetched
    with BODY.PEEK[2] streams from the file too.
    """
    c = client(imapServer, BIG)
    c.select_folder("INBOX", readonly=True)
    before = serverMemory(imapServer)
    structure = c.fetch([1], ["BODYSTRUCTURE"])[1][b"BODYSTRUCTURE"]
    after = serverMemory(imapServer)
    assert structure.is_multipart
    parts = structure[0]
    assert len(parts) == 3
    assert parts[0][:2] == (b"text", b"plain")
    for part in parts[1:]:
        assert part[:2] == (b"application", b"octet-stream")
        assert part[6] >= ATTACHMENT
    growth = after["VmHWM"] - before["VmHWM"]
    print(f"BODYSTRUCTURE of a {parts[1][6] * 2 // 2**20} MiB+ message: peak RSS {before['VmHWM'] // 1024} -> {after['VmHWM'] // 1024} KiB")
    assert growth < 8 * 1024 * 1024, (before, after)

    body = c.fetch([1], ["BODY.PEEK[2]"])[1][b"BODY[2]"]
    assert len(body) == parts[1][6]
    streamed = serverMemory(imapServer)
    assert streamed["VmHWM"] - before["VmHWM"] < 24 * 1024 * 1024, (before, streamed)
    c.logout()
