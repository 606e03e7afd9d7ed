"""
`mailsrv import-dms` on a docker-mailserver layout, then IMAP over TLS sees
the same UIDVALIDITY, UIDs and flags Dovecot had.
"""

from __future__ import annotations

import imaplib
import re
from pathlib import Path
from typing import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailsrv.auth.passwords import shaCrypt
from mailsrv.testing.server import RunningServer
from tests.integration.clients import clientContext

INBOX_UIDS = {100: "1600000000.M1P11.dms", 101: "1600000100.M2P11.dms", 105: "1600000200.M3P11.dms"}


def message(subject: str) -> bytes:
    return f"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\nbody {subject}\r\n".encode()


def makeMaildir(path: Path, uidvalidity: int, nextUid: int, messages: dict[int, tuple[str, str]]) -> None:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    lines = [f"3 V{uidvalidity} N{nextUid} G0123456789abcdef0123456789abcdef"]
    for uid, (base, flags) in messages.items():
        data = message(base)
        (path / "cur" / f"{base},S={len(data)}:2,{flags}").write_bytes(data)
        lines.append(f"{uid} :{base},S={len(data)}")
    (path / "dovecot-uidlist").write_text("\n".join(lines) + "\n")
    (path / "dovecot-uidvalidity").write_text(f"{uidvalidity:x}\n")


@pytest.fixture
def dms(tmp_path: Path) -> Path:
    """
    docker-mailserver's docker-data/dms: config/ and mail-data/.
    """
    root = tmp_path / "dms"
    config = root / "config"
    config.mkdir(parents=True)
    config.joinpath("postfix-accounts.cf").write_text(
        f"alice@example.test|{{SHA512-CRYPT}}{shaCrypt(b'alice-pw', '$6$abcdefgh12345678')}\n"
        f"bob@example.test|{{SHA512-CRYPT}}{shaCrypt(b'bob-pw', '$6$zyxwvuts')}\n"
    )
    config.joinpath("postfix-virtual.cf").write_text("info@example.test alice@example.test,bob@example.test\n")
    config.joinpath("dovecot-quotas.cf").write_text("alice@example.test:50M\n")
    keys = config / "opendkim" / "keys" / "example.test"
    keys.mkdir(parents=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    keys.joinpath("mail.private").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    )
    keys.joinpath("mail.txt").write_text('mail._domainkey IN TXT ( "v=DKIM1; k=rsa; " "p=..." )\n')
    alice = root / "mail-data" / "example.test" / "alice"
    flags = ["S", "", "FS"]
    makeMaildir(alice, 1600000000, 106, {uid: (base, flags[i]) for i, (uid, base) in enumerate(INBOX_UIDS.items())})
    makeMaildir(alice / ".Sent", 1600000500, 8, {7: ("1600000300.M4P11.dms", "S")})
    (alice / "subscriptions").write_text("Sent\n")
    return root


@pytest.fixture
def target(tmp_path: Path) -> Iterator[RunningServer]:
    srv = RunningServer(tmp_path / "mailsrv")
    yield srv
    srv.stop()


def test_import_then_imap_sees_same_uids(dms: Path, target: RunningServer) -> None:
    """
    After the import, alice logs in with her docker-mailserver password and
    INBOX and Sent have Dovecot's UIDVALIDITY, UIDs and flags; aliases,
    quotas and the DKIM key are in place.  A second import changes nothing.
    """
    result = target.mailsrv("import-dms", str(dms / "config"), str(dms / "mail-data"))
    assert result.returncode == 0, result.stderr
    assert "Imported 2 accounts, 2 alias targets, 1 quotas, 1 DKIM keys, 1 Maildirs" in result.stdout
    assert "info@example.test alice@example.test,bob@example.test" in target.mailsrv("alias", "list").stdout
    assert (target.configDir / "dovecot-quotas.cf").read_text() == "alice@example.test:50M\n"
    key = target.configDir / "opendkim" / "keys" / "example.test" / "mail.private"
    assert key.read_bytes() == (dms / "config" / "opendkim" / "keys" / "example.test" / "mail.private").read_bytes()
    assert key.stat().st_mode & 0o777 == 0o600

    target.start()
    imap = imaplib.IMAP4_SSL("127.0.0.1", target.ports["imaps"], ssl_context=clientContext())
    try:
        assert imap.login("alice@example.test", "alice-pw")[0] == "OK"
        imap.select("INBOX")
        assert imap.response("UIDVALIDITY")[1] == [b"1600000000"]
        status = imap.status("INBOX", "(UIDNEXT UIDVALIDITY MESSAGES)")[1][0]
        assert b"UIDNEXT 106" in status and b"MESSAGES 3" in status
        typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
        assert typ == "OK"
        fetched = {}
        for item in data:
            uid = int(re.search(rb"UID (\d+)", item).group(1))
            flagText = re.search(rb"FLAGS \(([^)]*)\)", item).group(1)
            subject = imap.uid("FETCH", str(uid), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1]
            fetched[uid] = (subject.decode().strip(), set(flagText.split()) - {b"\\Recent"})
        assert fetched == {
            100: (f"Subject: {INBOX_UIDS[100]}", {b"\\Seen"}),
            101: (f"Subject: {INBOX_UIDS[101]}", set()),
            105: (f"Subject: {INBOX_UIDS[105]}", {b"\\Flagged", b"\\Seen"}),
        }
        imap.select("Sent")
        assert imap.response("UIDVALIDITY")[1] == [b"1600000500"]
        assert imap.uid("SEARCH", "ALL")[1] == [b"7"]
    finally:
        imap.logout()

    again = target.mailsrv("import-dms", str(dms / "config"), str(dms / "mail-data"))
    assert again.returncode == 0
    assert "Imported 0 accounts, 0 alias targets, 0 quotas, 0 DKIM keys, 0 Maildirs" in again.stdout
    assert "exists already" in again.stderr


def test_not_a_dms_directory(tmp_path: Path, target: RunningServer) -> None:
    """
    A directory without postfix-accounts.cf is refused and nothing is
    written.
    """
    (tmp_path / "empty").mkdir()
    result = target.mailsrv("import-dms", str(tmp_path / "empty"), str(tmp_path / "empty"))
    assert result.returncode == 1 and "not a docker-mailserver config directory" in result.stderr
    assert not (target.configDir / "postfix-accounts.cf").exists()


def test_dry_run_changes_nothing(dms: Path, target: RunningServer) -> None:
    """
    --dry-run reports what would be imported and writes nothing; --move
    then moves the Maildir instead of copying it.
    """
    result = target.mailsrv("import-dms", "--dry-run", str(dms / "config"), str(dms / "mail-data"))
    assert result.returncode == 0 and "Would import 2 accounts" in result.stdout
    assert not (target.configDir / "postfix-accounts.cf").exists()
    assert not target.maildir("alice@example.test").exists()
    result = target.mailsrv("import-dms", "--move", str(dms / "config"), str(dms / "mail-data"))
    assert result.returncode == 0, result.stderr
    assert (target.maildir("alice@example.test") / "dovecot-uidlist").exists()
    assert not (dms / "mail-data" / "example.test" / "alice").exists()


def test_sieve_scripts_come_along(dms: Path, target: RunningServer) -> None:
    """
    Users' Sieve scripts keep working: alice's ManageSieve scripts travel
    with her Maildir (C{home/sieve/} and the C{.dovecot.sieve} symlink),
    bob's config-directory script becomes his active script, and the
    server-wide one is reported, not imported.  Mail then lands where the
    scripts say.
    """
    import smtplib

    config = dms / "config"
    home = dms / "mail-data" / "example.test" / "alice" / "home"
    (home / "sieve").mkdir(parents=True)
    (home / "sieve" / "roundcube.sieve").write_text('require ["fileinto"];\nfileinto "Sent";\n')
    (home / ".dovecot.sieve").symlink_to("sieve/roundcube.sieve")
    (config / "bob@example.test.dovecot.sieve").write_text('require ["fileinto", "mailbox"];\nfileinto :create "FromConfig";\n')
    (config / "before.dovecot.sieve").write_text('require ["fileinto"];\n')

    result = target.mailsrv("import-dms", str(config), str(dms / "mail-data"))
    assert result.returncode == 0, result.stderr
    assert "1 Maildirs, 1 Sieve scripts" in result.stdout
    assert "before.dovecot.sieve is a server-wide Sieve script: not imported" in result.stderr
    active = target.maildir("alice@example.test") / "home" / ".dovecot.sieve"
    assert active.is_symlink() and active.read_text().endswith('fileinto "Sent";\n')
    bobScript = target.maildir("bob@example.test") / "home" / ".dovecot.sieve"
    assert bobScript.read_bytes() == (config / "bob@example.test.dovecot.sieve").read_bytes()
    assert bobScript.stat().st_mode & 0o777 == 0o600

    target.start()
    client = smtplib.SMTP("127.0.0.1", target.ports["smtp"], timeout=10)
    try:
        for rcpt in ("alice@example.test", "bob@example.test"):
            client.sendmail("x@remote.test", [rcpt], f"Subject: for {rcpt}\r\n\r\nhi\r\n".encode())
    finally:
        client.quit()
    aliceSent = target.maildir("alice@example.test") / ".Sent" / "new"
    assert any(b"Subject: for alice@example.test" in p.read_bytes() for p in aliceSent.iterdir())
    bobFiled = target.maildir("bob@example.test") / ".FromConfig" / "new"
    assert any(b"Subject: for bob@example.test" in p.read_bytes() for p in bobFiled.iterdir())

    again = target.mailsrv("import-dms", str(config), str(dms / "mail-data"))
    assert "0 Sieve scripts" in again.stdout
