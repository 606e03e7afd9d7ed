"""
A real IMAP client against a real server: mbsync (isync) synchronises a
mailbox both ways, and the second run has nothing to do.  Also: a Maildir
written by hand in Dovecot's format keeps its UIDs and keywords over IMAP.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import clientContext, message

imapclient = pytest.importorskip("imapclient")

PASSWORD = "secret"


@pytest.fixture(scope="module")
def syncServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = RunningServer(tmp_path_factory.mktemp("mbsync"))
    srv.addUser("sync@example.test", PASSWORD)
    srv.addUser("dove@example.test", PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def client(server: RunningServer, user: str) -> "imapclient.IMAPClient":
    c = imapclient.IMAPClient("127.0.0.1", port=server.ports["imaps"], ssl=True, ssl_context=clientContext(), timeout=10)
    c.login(user, PASSWORD)
    return c


def localMessages(folder: Path) -> dict[str, Path]:
    found = {}
    for sub in ("cur", "new"):
        for path in (folder / sub).iterdir():
            subject = re.search(rb"^Subject: (.*?)\r?$", path.read_bytes(), re.M)
            assert subject is not None
            found[subject.group(1).decode()] = path
    return found


def runMbsync(config: Path) -> str:
    result = subprocess.run(
        ["mbsync", "-V", "-c", str(config), "-a"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (Debian package isync) is not installed")
def test_mbsyncBothWaysThenNoop(syncServer: RunningServer, tmp_path: Path) -> None:
    """
    mbsync pulls the server's messages, pushes local ones (APPEND), carries
    flag changes both ways, and a second run changes nothing on either side.
    """
    c = client(syncServer, "sync@example.test")
    for i in range(3):
        c.append("INBOX", message(f"server-{i}"), flags=[b"\\Seen"] if i == 0 else [])
    c.logout()
    local = tmp_path / "local"
    for sub in ("cur", "new", "tmp"):
        (local / "INBOX" / sub).mkdir(parents=True)
    for i in range(2):
        (local / "INBOX" / "new" / f"17000000{i}.local{i}.host").write_bytes(message(f"local-{i}"))
    cert = syncServer.dataDir / "tls" / "selfsigned-cert.pem"
    config = tmp_path / "mbsyncrc"
    config.write_text(
        f"IMAPAccount acc\nHost 127.0.0.1\nPort {syncServer.ports['imaps']}\n"
        f"User sync@example.test\nPass {PASSWORD}\nSSLType IMAPS\nCertificateFile {cert}\n\n"
        "IMAPStore far\nAccount acc\n\n"
        f"MaildirStore near\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel ch\nFar :far:\nNear :near:\nPatterns INBOX\nCreate Both\nExpunge Both\n"
        f"SyncState *\nSync All\n"
    )
    runMbsync(config)
    near = localMessages(local / "INBOX")
    assert sorted(near) == ["local-0", "local-1", "server-0", "server-1", "server-2"]
    assert near["server-0"].name.endswith("S")
    c = client(syncServer, "sync@example.test")
    c.select_folder("INBOX")
    byUid = {uid: data[b"BODY[HEADER.FIELDS (SUBJECT)]"] for uid, data in c.fetch(c.search(), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]).items()}
    assert sorted(v.strip().decode() for v in byUid.values()) == sorted(f"Subject: {s}" for s in near)
    # A flag set on the server and one set locally travel.
    server1 = next(uid for uid, v in byUid.items() if b"server-1" in v)
    c.add_flags([server1], [b"\\Flagged"])
    c.logout()
    local0 = near["local-0"]
    os.rename(local0, local0.parent.parent / "cur" / (local0.name.split(":")[0] + ":2,S"))
    runMbsync(config)
    near = localMessages(local / "INBOX")
    assert "F" in near["server-1"].name.split(":2,")[1]
    c = client(syncServer, "sync@example.test")
    c.select_folder("INBOX")
    flags = {data[b"BODY[HEADER.FIELDS (SUBJECT)]"].strip().decode(): data[b"FLAGS"] for data in c.fetch(c.search(), ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]).values()}
    assert b"\\Seen" in flags["Subject: local-0"]
    uidsBefore = c.search()
    flagsBefore = c.get_flags(uidsBefore)
    c.logout()
    before = sorted(p.name for p in (local / "INBOX" / "cur").iterdir())
    runMbsync(config)
    assert sorted(p.name for p in (local / "INBOX" / "cur").iterdir()) == before
    c = client(syncServer, "sync@example.test")
    c.select_folder("INBOX")
    assert c.search() == uidsBefore
    assert c.get_flags(uidsBefore) == flagsBefore
    c.logout()


def test_dovecotMaildirKeepsUidsAndKeywords(syncServer: RunningServer) -> None:
    """
    A folder written in Dovecot's format (dovecot-uidlist v3 with gaps in
    the UIDs, dovecot-keywords, LF line ends, flags and keyword letters in
    the names) is served with its UIDVALIDITY, UIDs and keywords; a new
    message continues from Dovecot's next UID, and the uidlist stays one
    Dovecot can read.
    """
    root = syncServer.maildir("dove@example.test")
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = [
        ("1690000000.M1P1.old,S=40,W=44", "2,S", 7),
        ("1690000001.M2P1.old,S=40,W=44", "2,Fab", 12),
        ("1690000002.M3P1.old,S=40,W=44", "2,c", 40),
    ]
    lines = ["3 V1234567 N41 G0123456789abcdef0123456789abcdef"]
    for i, (base, info, uid) in enumerate(names):
        body = f"Subject: dove-{i}\nFrom: a@b.test\n\nLine one\nline two\n".encode()
        (root / "cur" / f"{base}:{info}").write_bytes(body)
        lines.append(f"{uid} :{base}")
    (root / "dovecot-uidlist").write_text("\n".join(lines) + "\n")
    (root / "dovecot-keywords").write_text("0 $Forwarded\n1 Work\n2 $Junk\n")
    c = client(syncServer, "dove@example.test")
    info = c.select_folder("INBOX")
    assert info[b"UIDVALIDITY"] == 1234567
    assert info[b"UIDNEXT"] == 41
    fetched = c.fetch(c.search(), ["FLAGS", "RFC822.SIZE"])  # keyed by UID
    assert sorted(fetched) == [7, 12, 40]
    flags = {uid: set(d[b"FLAGS"]) - {b"\\Recent"} for uid, d in fetched.items()}
    assert flags == {7: {b"\\Seen"}, 12: {b"\\Flagged", b"$Forwarded", b"Work"}, 40: {b"$Junk"}}
    assert {d[b"RFC822.SIZE"] for d in fetched.values()} == {44}
    assert c.search(["KEYWORD", "Work"]) == [12]
    c.add_flags([7], [b"Work"])
    c.append("INBOX", message("new-one"))
    c.select_folder("INBOX")
    assert c.search() == [7, 12, 40, 41]
    assert set(c.get_flags([7])[7]) >= {b"\\Seen", b"Work"}
    c.logout()
    uidlist = (root / "dovecot-uidlist").read_text().splitlines()
    assert uidlist[0].startswith("3 V1234567 N42")
    assert [line.split()[0] for line in uidlist[1:]] == ["7", "12", "40", "41"]
    [renamed] = [p.name for p in (root / "cur").iterdir() if p.name.startswith("1690000000.")]
    assert renamed.endswith(":2,Sb")
