"""
One 50 MB message in over SMTP (MX port) and out over IMAPS (FETCH BODY[]):
the server's peak resident memory while each happens.

For mailsrv that is one process; for the reference it is the sum over all
Postfix and Dovecot processes sampled together (smtpd, cleanup, lmtp, imap,
...), since the message passes through several of them.  Both are sampled
every 20 ms from C{/proc}; the baseline just before is reported so that the
growth can be read too.
"""

from __future__ import annotations

import asyncio
import imaplib
import time
import uuid
from typing import Any

from bench.common import (
    INFO,
    LOWER,
    RSSSampler,
    clearMaildir,
    clientContext,
    countMaildir,
    readReply,
    command,
    metric,
    rssBytes,
    waitForCount,
)
from bench.target import Target

FULL = 50_000_000
QUICK = 5_000_000
MB = 1024 * 1024


def bigMessage(size: int, tag: str, recipient: str) -> bytes:
    head = (
        f"From: <sender@remote.example.net>\r\nTo: <{recipient}>\r\nSubject: big {tag}\r\n"
        f"Message-ID: <{tag}@bench.example.test>\r\n\r\n"
    ).encode()
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789ab\r\n"
    return head + line * ((size - len(head)) // len(line))


async def _send(host: str, port: int, recipient: str, data: bytes) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await readReply(reader)
        await command(reader, writer, b"EHLO bench.example.test", b"250")
        await command(reader, writer, b"MAIL FROM:<sender@remote.example.net>", b"250")
        await command(reader, writer, f"RCPT TO:<{recipient}>".encode(), b"250")
        await command(reader, writer, b"DATA", b"354")
        view = memoryview(data)
        for i in range(0, len(data), MB):
            writer.write(view[i : i + MB])
            await writer.drain()
        await command(reader, writer, b".", b"250")
        await command(reader, writer, b"QUIT", b"221")
    finally:
        writer.close()


def run(target: Target, *, quick: bool = False) -> dict[str, dict[str, Any]]:
    size = QUICK if quick else FULL
    user = target.otherUser
    maildir = target.maildir(user)
    clearMaildir(maildir)
    tag = uuid.uuid4().hex[:8]
    data = bigMessage(size, tag, user)
    time.sleep(0.5)
    baseline, _ = rssBytes(target.pids())

    cpu0 = time.process_time()
    t0 = time.monotonic()
    with RSSSampler(target.pids, hwmFirst=target.name == "mailsrv") as inbound:
        asyncio.run(_send(target.host, target.ports["smtp"], user, data))
        if waitForCount(maildir, 1, 120) is None:
            raise RuntimeError("the big message did not arrive")
    smtpSeconds = time.monotonic() - t0
    smtpCpu = time.process_time() - cpu0
    time.sleep(0.5)
    between, _ = rssBytes(target.pids())

    cpu0 = time.process_time()
    t0 = time.monotonic()
    with RSSSampler(target.pids, hwmFirst=target.name == "mailsrv") as outbound:
        imap = imaplib.IMAP4_SSL(target.host, target.ports["imaps"], ssl_context=clientContext(), timeout=120)
        imap.login(user, target.password)
        imap.select("INBOX")
        typ, fetched = imap.fetch("1", "(BODY.PEEK[])")
        imap.logout()
    imapSeconds = time.monotonic() - t0
    imapCpu = time.process_time() - cpu0
    body = fetched[0][1] if fetched and isinstance(fetched[0], tuple) else b""
    # The servers prepend their Received: headers.
    if not body.endswith(data[data.index(b"\r\n\r\n") :]) or len(body) < len(data):
        raise RuntimeError(f"fetched {len(body)} octets that do not end with the {len(data)} sent")
    if countMaildir(maildir) != 1:
        raise RuntimeError("unexpected messages in the maildrop")
    clearMaildir(maildir)
    return {
        "RSS before": metric(baseline / MB, "MiB", INFO),
        "peak RSS, SMTP in": metric(inbound.peak / MB, "MiB", LOWER),
        "peak growth, SMTP in": metric((inbound.peak - baseline) / MB, "MiB", LOWER),
        "largest process peak, SMTP in": metric(inbound.peakSingle / MB, "MiB", LOWER),
        "peak RSS, IMAP out": metric(outbound.peak / MB, "MiB", LOWER),
        "peak growth, IMAP out": metric((outbound.peak - between) / MB, "MiB", LOWER),
        "largest process peak, IMAP out": metric(outbound.peakSingle / MB, "MiB", LOWER),
        "SMTP in until in Maildir": metric(smtpSeconds, "s", LOWER),
        "IMAP login+FETCH BODY[]": metric(imapSeconds, "s", LOWER),
        # Includes the RSS sampler thread (50 reads of /proc a second).
        "loadgen CPU, SMTP in": metric(100 * smtpCpu / smtpSeconds, "% of a core", INFO),
        "loadgen CPU, IMAP out": metric(100 * imapCpu / imapSeconds, "% of a core", INFO),
    }
