"""
The MX endpoint over real sockets: relay tricks, smuggling variants,
CHUNKING, sub-addressing, and memory use with a large message.  Outcomes
are checked by counting files in the Maildir, not by trusting replies.
"""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import Line, maildirFiles, token

ALICE = "alice@example.test"


def session(server: RunningServer) -> Line:
    c = Line(server.ports["smtp"])
    assert c.smtpReply().startswith(b"220 ")
    c.send(b"EHLO client.test\r\n")
    assert c.smtpReply().startswith(b"250")
    return c


def command(c: Line, line: bytes) -> int:
    c.send(line + b"\r\n")
    return int(c.smtpReply()[:3])


# Addresses that must never be relayed by an unauthenticated client: each is
# refused at RCPT or treated as a local address (and unknown here).
RELAY_TRICKS = [
    b"<victim@elsewhere.example>",
    b"<victim%elsewhere.example@example.test>",
    b"<elsewhere.example!victim@example.test>",
    b"<@example.test:victim@elsewhere.example>",
    b"<@example.test,@example.test:victim@elsewhere.example>",
    b'<"victim@elsewhere.example"@example.test>',
    b"<victim@elsewhere.example@example.test>",
    b"<victim@[127.0.0.1]>",
    b"<victim@[192.0.2.1]>",
    b"<victim@elsewhere.example.>",
    b"<VICTIM@ELSEWHERE.EXAMPLE>",
    b"<victim@elsewhere.example >",
    b"victim@elsewhere.example",
    b"<victim@localhost>",
    b"<victim@example.test.elsewhere.example>",
]


@pytest.mark.parametrize("address", RELAY_TRICKS, ids=[a.decode() for a in RELAY_TRICKS])
def test_relay_tricks_refused(server: RunningServer, address: bytes) -> None:
    """
    Every address trick is refused with a 5xx at RCPT (relay denied,
    unknown local user or bad syntax): nothing leaves, nothing is queued.
    """
    c = session(server)
    try:
        assert command(c, b"MAIL FROM:<probe@remote.test>") == 250
        code = command(c, b"RCPT TO:" + address)
        assert 500 <= code < 600, (address, code)
        assert command(c, b"DATA") == 503
    finally:
        c.close()


SMUGGLE_VARIANTS = {
    "LF.LF": b"\n.\n",
    "CRLF.LF": b"\r\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
    "CR.CR": b"\r.\r",
    "CRLF.NUL": b"\r\n.\x00\r\n",
}


@pytest.mark.parametrize("name", list(SMUGGLE_VARIANTS))
def test_smuggling_variants(server: RunningServer, name: str) -> None:
    """
    A message whose body carries a fake end of data followed by a second
    transaction: at most one message arrives, and never the smuggled one.
    """
    tok = token("smuggle")
    eod = SMUGGLE_VARIANTS[name]
    c = session(server)
    try:
        command(c, b"MAIL FROM:<sender@remote.test>")
        command(c, b"RCPT TO:<alice@example.test>")
        assert command(c, b"DATA") == 354
        c.send(
            f"Subject: {tok} first\r\n\r\nbody".encode() + eod
            + f"MAIL FROM:<spoof@bank.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: {tok} smuggled\r\n\r\nevil\r\n".encode()
            + b".\r\n"
        )
        reply = c.smtpReply()
        assert reply[:3] in (b"250", b"550"), reply
        assert command(c, b"NOOP") == 250
    finally:
        c.close()
    delivered = maildirFiles(server, ALICE, tok)
    assert len(delivered) <= 1
    for path in delivered:
        data = path.read_bytes()
        assert b"Return-Path: <sender@remote.test>" in data
        assert data.count(b"\n") == data.count(b"\r\n")


def test_chunking_delivery(server: RunningServer) -> None:
    """
    BDAT chunks (pipelined) deliver one message byte for byte.
    """
    tok = token("bdat")
    body = f"Subject: {tok}\r\n\r\n.leading dot\r\nend\r\n".encode()
    c = session(server)
    try:
        c.send(b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
        assert c.smtpReply().startswith(b"250") and c.smtpReply().startswith(b"250")
        c.send(b"BDAT %d\r\n" % 10 + body[:10] + b"BDAT %d LAST\r\n" % (len(body) - 10) + body[10:])
        assert c.smtpReply().startswith(b"250 2.0.0 Ok: 10 octets")
        assert c.smtpReply().startswith(b"250 2.0.0 Ok: queued as")
    finally:
        c.close()
    [path] = maildirFiles(server, ALICE, tok)
    assert path.read_bytes().endswith(body)


def test_subaddress_and_unknown_user(server: RunningServer) -> None:
    """
    user+tag@domain reaches user with the tag in Delivered-To; an unknown
    user is 550 5.1.1.
    """
    tok = token("tag")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("client.test")
        s.mail("s@remote.test")
        assert s.rcpt("nobody@example.test") == (
            550, b"5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table"
        )
        assert s.rcpt("alice+lists@example.test")[0] == 250
        s.data(f"Subject: {tok}\r\n\r\nx\r\n".encode())
    [path] = maildirFiles(server, ALICE, tok)
    assert b"\r\nDelivered-To: alice+lists@example.test\r\n" in path.read_bytes()


def _vmHWM(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_large_message_bounded_memory(fresh_server: RunningServer) -> None:
    """
    A 50 MB message is accepted and stored intact while the server's peak
    RSS grows by less than 10 MB.
    """
    config = fresh_server.configFile.read_text()
    fresh_server.configFile.write_text(
        config.replace("[endpoints.", "[limits]\nmessage_size = 62914560\n\n[endpoints.", 1)
    )
    fresh_server.start()
    assert fresh_server.process is not None
    pid = fresh_server.process.pid
    # Warm up: one small delivery, so lazy imports are not counted.
    with smtplib.SMTP("127.0.0.1", fresh_server.ports["smtp"], timeout=30) as s:
        s.sendmail("s@remote.test", [ALICE], b"Subject: warm\r\n\r\nx\r\n")
    before = _vmHWM(pid)
    tok = token("big")
    line = b"x" * 998 + b"\r\n"
    c = session(fresh_server)
    try:
        command(c, b"MAIL FROM:<s@remote.test> SIZE=52430000")
        command(c, b"RCPT TO:<alice@example.test>")
        assert command(c, b"DATA") == 354
        c.send(f"Subject: {tok}\r\n\r\n".encode())
        chunk = line * 1024  # 1 MiB
        for _ in range(50):
            c.sock.sendall(chunk)
        c.send(b".\r\n")
        c.sock.settimeout(60)
        assert c.smtpReply().startswith(b"250 ")
    finally:
        c.close()
    time.sleep(0.2)
    growth = _vmHWM(pid) - before
    [path] = maildirFiles(fresh_server, ALICE, tok)
    assert path.stat().st_size > 50_000_000
    print(f"peak RSS growth for a 51 MB message: {growth / 1e6:.2f} MB")
    assert growth < 10 * 1024 * 1024, f"peak RSS grew by {growth / 1e6:.1f} MB"


def test_quota_over_smtp(fresh_server: RunningServer) -> None:
    """
    dovecot-quotas.cf limits delivery: a message that would not fit gets
    552 5.2.2 after DATA, a full mailbox 452 4.2.2 at RCPT; the file is read
    again when it changes.
    """
    quotas = fresh_server.configDir / "dovecot-quotas.cf"
    quotas.write_text("alice@example.test:2000\n")
    fresh_server.start()
    port = fresh_server.ports["smtp"]
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail("s@remote.test", [ALICE], b"Subject: fits\r\n\r\n" + b"x" * 700 + b"\r\n")
        s.mail("s@remote.test")
        assert s.rcpt(ALICE)[0] == 250
        code, text = s.data(b"Subject: too big\r\n\r\n" + b"y" * 1500 + b"\r\n")
        assert (code, text[:5]) == (552, b"5.2.2"), text
    quotas.write_text("alice@example.test:500\n")
    time.sleep(0.05)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("s@remote.test")
        code, text = s.rcpt(ALICE)
        assert (code, text[:5]) == (452, b"4.2.2"), text
    assert len(maildirFiles(fresh_server, ALICE, "fits")) == 1
    assert maildirFiles(fresh_server, ALICE, "too big") == []


def test_aliases_catchall_and_loops(fresh_server: RunningServer) -> None:
    """
    Over real sockets: an alias reaches both its accounts (one file, two
    links), an alias of an alias is followed, a catch-all takes unknown
    local parts of its domain, and an alias loop is refused, not spun.
    """
    (fresh_server.configDir / "postfix-virtual.cf").write_text(
        "team@example.test alice@example.test,bob@example.test\n"
        "everyone@example.test team@example.test\n"
        "loop1@example.test loop2@example.test\n"
        "loop2@example.test loop1@example.test\n"
        "@catchall.test alice@example.test\n"
    )
    fresh_server.addUser("bob@example.test", "secret")
    fresh_server.start()
    tok = token("alias")
    with smtplib.SMTP("127.0.0.1", fresh_server.ports["smtp"], timeout=10) as s:
        s.ehlo("client.test")
        s.mail("s@remote.test")
        assert s.rcpt("everyone@example.test")[0] == 250
        assert s.rcpt("Whoever@CatchAll.test")[0] == 250
        code, _ = s.rcpt("loop1@example.test")
        assert code == 550
        s.data(f"Subject: {tok}\r\n\r\nx\r\n".encode())
    [alice] = maildirFiles(fresh_server, ALICE, tok)
    [bob] = maildirFiles(fresh_server, "bob@example.test", tok)
    assert alice.stat().st_ino == bob.stat().st_ino


def test_pipelined_transaction_limits_and_dsn(fresh_server: RunningServer) -> None:
    """
    One pipelined burst over a real socket: replies come back in order,
    the recipient limit answers 452 4.5.3, DSN parameters are accepted,
    and a too-big SIZE is refused before any data is sent.
    """
    config = fresh_server.configFile.read_text()
    fresh_server.configFile.write_text(
        config.replace("[endpoints.", "[limits]\nrecipients = 2\nmessage_size = 100000\n\n[endpoints.", 1)
    )
    fresh_server.start()
    tok = token("pipe")
    c = session(fresh_server)
    try:
        c.send(
            b"MAIL FROM:<s@remote.test> RET=HDRS ENVID=abc\r\n"
            b"RCPT TO:<alice@example.test> NOTIFY=FAILURE ORCPT=rfc822;alice@example.test\r\n"
            b"RCPT TO:<nobody@example.test>\r\n"
            b"RCPT TO:<alice+x@example.test>\r\n"
            b"RCPT TO:<alice+y@example.test>\r\n"
            b"DATA\r\n"
        )
        codes = [int(c.smtpReply()[:3]) for _ in range(6)]
        assert codes == [250, 250, 550, 250, 452, 354]
        c.send(f"Subject: {tok}\r\n\r\nx\r\n.\r\n".encode())
        assert c.smtpReply().startswith(b"250 ")
        assert command(c, b"MAIL FROM:<s@remote.test> SIZE=100001") == 552
    finally:
        c.close()
    assert len(maildirFiles(fresh_server, ALICE, tok)) == 1
