"""
Sieve at final delivery, end to end: a real mailsrv (twistd) receives mail
on its MX port with smtplib, runs the recipient's script from
C{home/.dovecot.sieve} (docker-mailserver's place for it), and the result is
checked over IMAP with imaplib: folders, flags, discard, redirects (local,
and remote through a real twisted.names server and a recording SMTP server
on loopback) and vacation replies.
"""

from __future__ import annotations

import imaplib
import smtplib
import time
from pathlib import Path
from typing import Iterator

import pytest

from mailsrv.testing.dns import DNSProcess
from mailsrv.testing.server import RunningServer
from mailsrv.testing.smtpsink import SMTPSink
from tests.integration.clients import clientContext, maildirFiles, token, waitFor
from tests.integration.conftest import PASSWORD

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"

ZONES = {
    "remote.test": {
        "remote.test": {"MX": [[10, "mx.remote.test"]]},
        "mx.remote.test": {"A": ["127.0.0.1"]},
    }
}

ALICE_SCRIPT = r"""
# Filters as Roundcube's managesieve plugin writes them.
require ["fileinto", "imap4flags", "mailbox", "envelope", "subaddress", "copy", "vacation", "variables"];

if header :contains "subject" "[python]" {
    fileinto :create "Lists.Python";
    stop;
}
if envelope :detail "to" "shop" {
    addflag ["\\Seen", "$Shopping"];
    fileinto :create "Shopping";
    stop;
}
if header :is "X-Test-Action" "drop" {
    discard;
    stop;
}
if header :is "X-Test-Action" "missing-folder" {
    fileinto "Nonexistent";
    stop;
}
if header :is "X-Test-Action" "forward-local" {
    redirect :copy "bob@example.test";
}
if header :is "X-Test-Action" "forward-remote" {
    redirect "friend@remote.test";
}
if header :matches "subject" "away*" {
    set "who" "${1}";
    vacation :days 1 :subject "Away${who}" "I am away until Monday.";
}
"""


@pytest.fixture(scope="module")
def dnsServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DNSProcess]:
    proc = DNSProcess(ZONES, tmp_path_factory.mktemp("dns"))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def sink() -> Iterator[SMTPSink]:
    s = SMTPSink().start()
    try:
        yield s
    finally:
        s.stop()


def installScript(server: RunningServer, account: str, text: str) -> Path:
    """
    Install C{text} as the account's active script the way Pigeonhole's
    ManageSieve does: C{home/sieve/<name>.sieve} and the symlink.
    """
    home = server.maildir(account) / "home"
    (home / "sieve").mkdir(parents=True, exist_ok=True)
    script = home / "sieve" / "roundcube.sieve"
    script.write_text(text, "utf-8")
    active = home / ".dovecot.sieve"
    if active.is_symlink() or active.exists():
        active.unlink()
    active.symlink_to("sieve/roundcube.sieve")
    return script


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dnsServer: DNSProcess, sink: SMTPSink) -> Iterator[RunningServer]:
    srv = RunningServer(
        tmp_path_factory.mktemp("sieve"),
        endpoints=("smtp", "imaps"),
        extraConfig=(
            f'[dns]\nnameservers = ["{dnsServer.nameserver}"]\ntimeout = 2\n\n'
            f"[delivery]\nmx_port = {sink.port}\nconnect_timeout = 2\ncommand_timeout = 10\n\n"
            "[queue]\nretry_initial = 1\nretry_max = 2\n\n"
        ),
    )
    for account in (ALICE, BOB, CAROL):
        srv.addUser(account, PASSWORD)
    installScript(srv, ALICE, ALICE_SCRIPT)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def send(server: RunningServer, recipient: str, subject: str, *, sender: str = "someone@remote.test",
         headers: str = "", to: str = ALICE) -> None:
    data = (
        f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n{headers}\r\nBody of {subject}.\r\n"
    ).encode("utf-8")
    client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10)
    try:
        client.ehlo("client.remote.test")
        client.sendmail(sender, [recipient], data)
    finally:
        client.quit()


class Mailbox:
    def __init__(self, server: RunningServer, account: str) -> None:
        self.imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext(), timeout=10)
        self.imap.login(account, PASSWORD)

    def find(self, folder: str, needle: str) -> list[bytes]:
        """
        The FLAGS of every message in C{folder} whose subject has C{needle}.
        """
        typ, _ = self.imap.select(f'"{folder}"', readonly=True)
        if typ != "OK":
            return []
        typ, data = self.imap.search(None, "SUBJECT", f'"{needle}"')
        flags = []
        for number in data[0].split():
            typ, fetched = self.imap.fetch(number, "(FLAGS)")
            flags.append(fetched[0])
        return flags

    def close(self) -> None:
        self.imap.logout()


@pytest.fixture
def alice(server: RunningServer) -> Iterator[Mailbox]:
    box = Mailbox(server, ALICE)
    yield box
    box.close()


def test_fileinto_creates_folder(server: RunningServer, alice: Mailbox) -> None:
    subject = f"[python] {token('list')}"
    send(server, ALICE, subject)
    assert len(alice.find("Lists.Python", subject)) == 1
    assert alice.find("INBOX", subject) == []
    assert "Sieve for alice@example.test: into Lists/Python" in server.log()
    typ, listed = alice.imap.lsub()
    assert typ == "OK" and any(b'"Lists.Python"' in line or line.endswith(b" Lists.Python") for line in listed), listed


def test_subaddress_flags_and_keyword(server: RunningServer, alice: Mailbox) -> None:
    """
    Mail for alice+shop@ is filed by its +detail, with \\Seen and a keyword.
    """
    subject = token("order")
    send(server, "alice+shop@example.test", subject)
    [flags] = alice.find("Shopping", subject)
    assert b"\\Seen" in flags and b"$Shopping" in flags, flags
    assert alice.find("INBOX", subject) == []


def test_discard(server: RunningServer, alice: Mailbox) -> None:
    subject = token("dropped")
    send(server, ALICE, subject, headers="X-Test-Action: drop\r\n")
    waitFor(lambda: "Sieve for alice@example.test: discarded" in server.log())
    for folder in ("INBOX", "Lists.Python", "Shopping"):
        assert alice.find(folder, subject) == []


def test_missing_folder_keeps(server: RunningServer, alice: Mailbox) -> None:
    """
    fileinto without :create into a folder that does not exist keeps the
    message in the INBOX, as Pigeonhole does, and says why in the log.
    """
    subject = token("nofolder")
    send(server, ALICE, subject, headers="X-Test-Action: missing-folder\r\n")
    assert len(alice.find("INBOX", subject)) == 1
    assert "fileinto 'Nonexistent' for alice@example.test: no such mailbox" in server.log()


def test_redirect_copy_to_local_user(server: RunningServer, alice: Mailbox) -> None:
    subject = token("fwdlocal")
    send(server, ALICE, subject, headers="X-Test-Action: forward-local\r\n")
    assert len(alice.find("INBOX", subject)) == 1
    bob = Mailbox(server, BOB)
    try:
        waitFor(lambda: len(bob.find("INBOX", subject)) == 1)
    finally:
        bob.close()
    [copy] = maildirFiles(server, BOB, subject)
    assert b"X-Sieve-Redirected-From: alice@example.test\r\n" in copy.read_bytes()


def test_redirect_to_remote_keeps_sender(server: RunningServer, sink: SMTPSink, alice: Mailbox) -> None:
    """
    A redirect without :copy leaves nothing in the mailbox; the copy goes
    out through the queue to the remote MX with the original envelope
    sender.
    """
    subject = token("fwdremote")
    send(server, ALICE, subject, sender="origin@remote.test", headers="X-Test-Action: forward-remote\r\n")
    waitFor(lambda: any(subject.encode() in t.data for t in sink.transactions))
    [transaction] = [t for t in sink.transactions if subject.encode() in t.data]
    assert transaction.mailFrom == "origin@remote.test"
    assert transaction.recipients == ["friend@remote.test"]
    assert alice.find("INBOX", subject) == []


def test_vacation_once_per_sender(server: RunningServer, sink: SMTPSink, alice: Mailbox) -> None:
    """
    The first message gets an auto-reply from <> with the script's subject
    (variables expanded) and RFC 3834's headers; a second one from the same
    sender within :days gets none; the message itself is kept.
    """
    who = token("v")
    sender = f"{who}@remote.test"
    send(server, ALICE, f"away {who}", sender=sender)
    waitFor(lambda: any(t.recipients == [sender] for t in sink.transactions))
    [reply] = [t for t in sink.transactions if t.recipients == [sender]]
    assert reply.mailFrom == ""
    assert b"Auto-Submitted: auto-replied" in reply.data
    assert f"Subject: Away {who}".encode() in reply.data
    assert b"I am away until Monday." in reply.data
    assert f"In-Reply-To: <away.{who}@remote.test>".encode() in reply.data
    assert len(alice.find("INBOX", f"away {who}")) == 1
    send(server, ALICE, f"away {who}", sender=sender)
    waitFor(lambda: "already replied within the period" in server.log())
    time.sleep(0.5)
    assert len([t for t in sink.transactions if t.recipients == [sender]]) == 1


def test_no_vacation_to_lists(server: RunningServer, sink: SMTPSink, alice: Mailbox) -> None:
    who = token("list")
    sender = f"{who}@remote.test"
    send(server, ALICE, f"away {who}", sender=sender, headers="List-Id: <news.remote.test>\r\nPrecedence: list\r\n")
    assert len(alice.find("INBOX", f"away {who}")) == 1
    waitFor(lambda: f"Vacation reply of alice@example.test to {sender} not sent" in server.log())
    assert not any(t.recipients == [sender] for t in sink.transactions)


def test_broken_script_keeps_mail(server: RunningServer) -> None:
    """
    A script that does not compile is logged with its line number, and the
    mail is kept in the INBOX; fixing the file takes effect at the next
    delivery without a reload.
    """
    installScript(server, CAROL, 'require "fileinto";\nif header :contains "subject" "x" {\n  fileinto "X"\n}\n')
    subject = token("broken")
    send(server, CAROL, subject, to=CAROL)
    carol = Mailbox(server, CAROL)
    try:
        assert len(carol.find("INBOX", subject)) == 1
        assert "does not compile (line 4" in server.log()
        installScript(server, CAROL, 'require ["fileinto", "mailbox"];\nfileinto :create "Everything";\n')
        subject = token("fixed")
        send(server, CAROL, subject, to=CAROL)
        assert len(carol.find("Everything", subject)) == 1
    finally:
        carol.close()


def test_accounts_without_script_untouched(server: RunningServer) -> None:
    """
    One transaction for a scripted and an unscripted account: each gets
    its own outcome.
    """
    subject = f"[python] {token('both')}"
    data = f"From: <x@remote.test>\r\nTo: <{ALICE}>, <{BOB}>\r\nSubject: {subject}\r\n\r\nhi\r\n".encode()
    client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10)
    try:
        client.sendmail("x@remote.test", [ALICE, BOB], data)
    finally:
        client.quit()
    alice, bob = Mailbox(server, ALICE), Mailbox(server, BOB)
    try:
        assert len(alice.find("Lists.Python", subject)) == 1
        assert alice.find("INBOX", subject) == []
        assert len(bob.find("INBOX", subject)) == 1
    finally:
        alice.close()
        bob.close()
