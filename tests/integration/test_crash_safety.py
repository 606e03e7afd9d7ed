"""
Crash safety: a real mailsrv under SMTP load is killed with SIGKILL at
random instants and restarted, again and again (in every fourth round only
its commit process is killed, and the server starts another), while one of
the two recipients has a Sieve script filing his copies into a folder it
creates, flagged; afterwards no acknowledged message is missing or
duplicated, no message file is half-written, stale C{tmp/} files (Maildir
and queue) are cleaned up, IMAP UIDs seen before the later crashes are
unchanged, and outbound mail queued before the crashes is delivered once
its MX comes up.

The short form runs C{MAILSRV_CRASH_ROUNDS} (default 20) kills; see
C{docs/testing.md} for a long run.  C{MAILSRV_CRASH_SEED} replays a run.
"""

from __future__ import annotations

import dataclasses
import email.parser
import imaplib
import os
import random
import re
import signal
import smtplib
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

from mailsrv.testing.dns import DNSProcess
from mailsrv.testing.server import RunningServer, freePort
from mailsrv.testing.smtpsink import SMTPSink
from tests.integration.clients import clientContext

ROUNDS = int(os.environ.get("MAILSRV_CRASH_ROUNDS", "20"))
SEED = int(os.environ.get("MAILSRV_CRASH_SEED", str(random.randrange(2**32))))

ALICE = "alice@example.test"
BOB = "bob@example.test"
PASSWORD = "secret"
# MX clients deliver to alice, and every third message also to bob (one
# file, hard-linked into both Maildirs).
MX_CLIENTS = 3

# bob's Sieve script files his copies into a folder it creates, flagged
# \Seen (C{cur/} with the flag in the name): the placement path of
# delivery is under the same kills.
BOB_SCRIPT = 'require ["fileinto", "mailbox", "imap4flags"];\naddflag "\\\\Seen";\nfileinto :create "Archive";\n'
FOLDERS = {ALICE: ("INBOX", ""), BOB: ("Archive", ".Archive")}

ZONES = {
    "remote.test": {
        "remote.test": {"MX": [[10, "mx.remote.test"]]},
        "mx.remote.test": {"A": ["127.0.0.1"]},
    }
}

SIZES = (300, 3_000, 20_000, 150_000)

_SIZE_FIELDS = re.compile(r",S=(\d+),W=(\d+)")


@dataclasses.dataclass
class Sent:
    """
    One message and what its client learnt about it.

    @ivar acked: a 250 came back for it.
    @ivar unanswered: attempts that ended without any final reply (the
        server died somewhere between the end of DATA and the 250); each
        may or may not have been delivered.
    @ivar refused: attempts answered with a temporary error after DATA
        (its commit process died first); none of them may be delivered.
    """

    messageId: str
    recipients: tuple[str, ...]
    data: bytes
    attempts: int = 0
    acked: bool = False
    unanswered: int = 0
    refused: int = 0


class Ledger:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: dict[str, Sent] = {}

    def add(self, sent: Sent) -> None:
        with self.lock:
            self.messages[sent.messageId] = sent


def makeMessage(rng: random.Random, messageId: str, sender: str, recipients: tuple[str, ...]) -> bytes:
    size = rng.choice(SIZES)
    line = (f"{messageId} " * 8)[:76].encode() + b"\r\n"
    body = line * max(1, size // len(line))
    return (
        f"From: <{sender}>\r\nTo: {', '.join(recipients)}\r\nSubject: crash {messageId}\r\n"
        f"Message-ID: <{messageId}>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
    ).encode() + body + f"end-of-{messageId}\r\n".encode()


class Client(threading.Thread):
    """
    Sends unique messages in sessions of several transactions, reconnecting
    whenever the server goes away and resending a message until it gets a
    250, as an MTA would.
    """

    def __init__(
        self, name: str, port: int, ledger: Ledger, stop: threading.Event, seed: int, submission: bool = False
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.port = port
        self.ledger = ledger
        self.stopping = stop
        self.rng = random.Random(seed)
        self.submission = submission
        self.sequence = 0
        self.errors: list[str] = []

    def newMessage(self) -> Sent:
        self.sequence += 1
        messageId = f"{self.name}.{self.sequence}@crash.test"
        if self.submission:
            recipients: tuple[str, ...] = (f"r{self.sequence}@remote.test",)
            sender = ALICE
        else:
            recipients = (ALICE, BOB) if self.sequence % 3 == 0 else (ALICE,)
            sender = "loader@remote.test"
        sent = Sent(messageId, recipients, makeMessage(self.rng, messageId, sender, recipients))
        self.ledger.add(sent)
        return sent

    def connect(self) -> Optional[smtplib.SMTP]:
        try:
            conn = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
            conn.ehlo("loader.crash.test")
            if self.submission:
                conn.starttls(context=clientContext())
                conn.ehlo("loader.crash.test")
                conn.login(ALICE, PASSWORD)
            return conn
        except (OSError, smtplib.SMTPException):
            return None

    def run(self) -> None:
        pending: Optional[Sent] = None
        while not self.stopping.is_set():
            conn = self.connect()
            if conn is None:
                time.sleep(0.02)
                continue
            try:
                while not self.stopping.is_set():
                    if pending is None:
                        pending = self.newMessage()
                    pending.attempts += 1
                    sender = ALICE if self.submission else "loader@remote.test"
                    code, text = conn.mail(sender)
                    if code != 250:
                        raise RuntimeError(f"MAIL: {code} {text!r}")
                    for rcpt in pending.recipients:
                        code, text = conn.rcpt(rcpt)
                        if code != 250:
                            raise RuntimeError(f"RCPT: {code} {text!r}")
                    conn.putcmd("data")
                    code, text = conn.getreply()
                    if code != 354:
                        raise RuntimeError(f"DATA: {code} {text!r}")
                    # From here on the server may commit the message and
                    # die before its 250 reaches us.  (No line of the test
                    # messages starts with a dot.)
                    try:
                        conn.send(pending.data + b".\r\n")
                        code, text = conn.getreply()
                    except (OSError, smtplib.SMTPServerDisconnected):
                        pending.unanswered += 1
                        raise
                    if code == 250:
                        pending.acked = True
                        pending = None
                    elif 400 <= code < 500:
                        # The commit process died before confirming: not
                        # delivered (the server made sure), sent again.
                        pending.refused += 1
                        conn.rset()
                    else:
                        # Refused: not delivered; sent again after a pause.
                        self.errors.append(f"DATA: {code} {text!r}")
                        conn.rset()
                        time.sleep(0.05)
            except (OSError, smtplib.SMTPException):
                pass
            except RuntimeError as e:
                self.errors.append(str(e))
            finally:
                try:
                    conn.close()
                except OSError:
                    pass


def kill(server: RunningServer) -> None:
    """
    SIGKILL the server and its commit process at once, as a crash of the
    service would, and wait until both are gone.
    """
    assert server.process is not None
    children = server.childPids()
    server.process.kill()
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.process.wait()
    for pid in children:
        while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
            time.sleep(0.01)
    server.stop()


def _state(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line
    except OSError:
        pass
    return "zombie"


def killCommitProcess(server: RunningServer) -> None:
    """
    SIGKILL the server's commit process alone: the server goes on and
    starts another one.
    """
    for pid in server.childPids():
        os.kill(pid, signal.SIGKILL)


def imapUIDs(server: RunningServer, account: str, folder: str = "INBOX") -> tuple[int, dict[str, set[int]]]:
    """
    UIDVALIDITY of the account's C{folder} and Message-ID -> UIDs.
    """
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext(), timeout=30)
    try:
        imap.login(account, PASSWORD)
        typ, _ = imap.select(folder)
        assert typ == "OK"
        validity = int(imap.response("UIDVALIDITY")[1][0])
        typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK", data
        uids: dict[str, set[int]] = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))  # type: ignore[union-attr]
            header = email.parser.BytesHeaderParser().parsebytes(item[1])
            uids.setdefault(str(header["Message-ID"]).strip("<>"), set()).add(uid)
        imap.logout()
        return validity, uids
    finally:
        try:
            imap.shutdown()
        except OSError:
            pass


def checkMaildir(root: Path) -> dict[str, int]:
    """
    Check every message file in new/ and cur/ and count them by
    Message-ID: each is complete (its size is the C{S=} and C{W=} in its
    name, it parses, ends with the marker line of its Message-ID).
    """
    counts: dict[str, int] = {}
    problems = []
    for sub in ("new", "cur"):
        directory = root / sub
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            data = path.read_bytes()
            sizes = _SIZE_FIELDS.search(path.name)
            if sizes is None:
                problems.append(f"{path.name}: no S=/W= sizes")
                continue
            crlf = len(data) + data.count(b"\n") - data.count(b"\r\n")
            if (len(data), crlf) != (int(sizes.group(1)), int(sizes.group(2))):
                problems.append(f"{path.name}: {len(data)} octets ({crlf} CRLF)")
            headers = email.parser.BytesHeaderParser().parsebytes(data)
            messageId = str(headers["Message-ID"] or "").strip("<>")
            if not messageId or not data.endswith(f"\r\nend-of-{messageId}\r\n".encode()):
                problems.append(f"{path.name}: truncated or unparseable")
                continue
            counts[messageId] = counts.get(messageId, 0) + 1
    assert not problems, problems
    return counts


def tmpFiles(server: RunningServer) -> list[Path]:
    return [p for p in (server.dataDir / "mail").glob("*/*/tmp/*") if p.is_file()]


@pytest.fixture
def dnsServer(tmp_path: Path) -> Iterator[DNSProcess]:
    proc = DNSProcess(ZONES, tmp_path)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_killNineUnderLoad(tmp_path: Path, dnsServer: DNSProcess) -> None:
    """
    SIGKILL at random instants under load from three MX clients and one
    submission client, C{ROUNDS} times: every message that got a 250 is in
    its recipients' Maildirs exactly once (more only if an earlier attempt
    of it went unanswered), nothing unacknowledged appears more often than
    it was attempted without answer, every file is whole, stale tmp/ files
    are removed at start, UIDs seen over IMAP half-way are unchanged at the
    end, and the outbound mail acknowledged while its MX was down is
    delivered once the MX answers.
    """
    rng = random.Random(SEED)
    mxPort = freePort()
    server = RunningServer(
        tmp_path / "srv",
        endpoints=("smtp", "submission", "imaps"),
        extraConfig=(
            f'[dns]\nnameservers = ["{dnsServer.nameserver}"]\ntimeout = 2\n\n'
            f"[delivery]\nmx_port = {mxPort}\nconnect_timeout = 2\ncommand_timeout = 10\n\n"
            "[queue]\nretry_initial = 1\nretry_max = 1\n\n"
        ),
    )
    server.addUser(ALICE, PASSWORD)
    server.addUser(BOB, PASSWORD)
    home = server.maildir(BOB) / "home"
    home.mkdir(parents=True)
    (home / ".dovecot.sieve").write_text(BOB_SCRIPT)
    server.start()
    inbound, outbound = Ledger(), Ledger()
    stop = threading.Event()
    clients = [
        Client(f"mx{i}", server.ports["smtp"], inbound, stop, rng.randrange(2**32)) for i in range(MX_CLIENTS)
    ]
    clients.append(Client("sub", server.ports["submission"], outbound, stop, rng.randrange(2**32), submission=True))
    snapshot: dict[str, tuple[int, dict[str, set[int]]]] = {}
    sink: Optional[SMTPSink] = None
    started = time.monotonic()
    try:
        for c in clients:
            c.start()
        for round in range(ROUNDS):
            time.sleep(rng.uniform(0.15, 0.9))
            if round % 4 == 3:
                killCommitProcess(server)
            else:
                kill(server)
                server.start()
            if round == ROUNDS // 2:
                snapshot = {a: imapUIDs(server, a, FOLDERS[a][0]) for a in (ALICE, BOB)}
        # One more kill, then let the clients finish their messages.
        time.sleep(rng.uniform(0.15, 0.9))
        kill(server)
        server.start()
        time.sleep(0.5)
        stop.set()
        for c in clients:
            c.join(30)
            assert not c.is_alive()
        server.stop()
        leftovers = tmpFiles(server)
        old = time.time() - 37 * 3600
        for path in leftovers:
            os.utime(path, (old, old))
        sink = SMTPSink(port=mxPort).start()
        server.start()
        assert tmpFiles(server) == [], "stale tmp/ files survived the start"
        queueTmp = server.dataDir / "queue" / "tmp"
        assert not queueTmp.is_dir() or not any(queueTmp.iterdir()), "queue tmp/ not cleaned at start"

        counts = {a: checkMaildir(server.maildir(a) / FOLDERS[a][1]) for a in (ALICE, BOB)}
        filed = list((server.maildir(BOB) / ".Archive" / "cur").iterdir())
        assert filed and all(p.name.endswith(":2,S") for p in filed), "bob's script did not file his mail"
        assert not [p for sub in ("new", "cur") for p in (server.maildir(BOB) / sub).glob("*")], "bob's INBOX"
        wrong = []
        for sent in inbound.messages.values():
            for rcpt in sent.recipients:
                n = counts[rcpt].get(sent.messageId, 0)
                low = 1 if sent.acked else 0
                if not low <= n <= int(sent.acked) + sent.unanswered:
                    wrong.append((sent.messageId, rcpt, n, sent.acked, sent.attempts, sent.unanswered))
        assert not wrong, f"seed {SEED}: (id, rcpt, copies, acked, attempts, unanswered): {wrong}"
        known = set(inbound.messages)
        for rcpt in (ALICE, BOB):
            assert set(counts[rcpt]) <= known

        for account, (validity, before) in snapshot.items():
            validityAfter, after = imapUIDs(server, account, FOLDERS[account][0])
            assert validityAfter == validity
            changed = {mid: (uids, after.get(mid)) for mid, uids in before.items() if not uids <= after.get(mid, set())}
            assert not changed, f"seed {SEED}: UIDs changed across restarts: {changed}"
            assert sum(len(u) for u in after.values()) == sum(counts[account].values())

        ackedOut = [s for s in outbound.messages.values() if s.acked]
        deadline = time.monotonic() + 30
        while True:
            arrived = {m for t in sink.transactions for m in re.findall(rb"Message-ID: <([^>]+)>", t.data)}
            missing = [s.messageId for s in ackedOut if s.messageId.encode() not in arrived]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert not missing, f"seed {SEED}: queued mail not delivered after the restarts: {missing}"

        acked = sum(s.acked for s in inbound.messages.values())
        unanswered = sum(s.unanswered for s in inbound.messages.values())
        refused = sum(s.refused for s in inbound.messages.values())
        duplicates = sum(max(0, n - 1) for c in counts.values() for n in c.values())
        print(
            f"\ncrash safety (seed {SEED}): {ROUNDS + 1} kills in {time.monotonic() - started:.1f} s; "
            f"MX {len(inbound.messages)} messages, {acked} acknowledged, {unanswered} attempts unanswered, "
            f"{duplicates} duplicate copies, {refused} refused (451); {len(leftovers)} tmp/ files left by kills; "
            f"{len(snapshot.get(ALICE, (0, {}))[1])} UIDs kept; submission {len(outbound.messages)} messages, "
            f"{len(ackedOut)} acknowledged and delivered after the restarts"
        )
        # The run proves something only if mail flowed and kills hit it.
        assert acked >= ROUNDS
        assert ackedOut
        errors = [e for c in clients for e in c.errors]
        assert not errors, errors
    finally:
        stop.set()
        server.stop()
        if sink is not None:
            sink.stop()
