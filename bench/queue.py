"""
Queue throughput to a local sink (mailsrv only): N 4 KB messages submitted
over C concurrent authenticated sessions (STARTTLS, AUTH PLAIN, several
messages per session) to C{user@sink.test}, which a loopback twisted.names
server (L{mailsrv.testing.dns}) maps to 127.0.0.1 and whose "MX" is a
recording SMTP server (L{mailsrv.testing.smtpsink}) on a free port.

The workload starts its own mailsrv (C{[dns] nameservers} and C{[delivery]
mx_port} pointing at the fixtures; every other setting, including C{[queue]
max_active} and C{per_destination}, at its default), so it cannot run
against the reference stack: Postfix would have to be reconfigured to use
this DNS server and port.  The harness shows no reference figures for it.

Figures: submissions accepted per second (N over the time until the last
250), the time until the sink holds all N and the end-to-end rate that
gives, how long the queue took to drain after the last 250, messages per
outbound connection and the most connections the sink saw at once, and
CPU (mailsrv, load generator, machine).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from bench.common import HIGHER, INFO, LOWER, Utilisation, cpuSeconds, makeMessage, metric, runWorkers, smtpSession, split
from bench.target import MailsrvUnderTest, Target
from mailsrv.testing.dns import DNSProcess
from mailsrv.testing.smtpsink import SMTPSink

MESSAGE_SIZE = 4096
FULL = (1000, 10)  # N messages, C sessions
QUICK = (20, 4)
RECIPIENT = "user@sink.test"
ZONES = {
    "sink.test": {
        "sink.test": {"MX": [[10, "mx.sink.test"]]},
        "mx.sink.test": {"A": ["127.0.0.1"]},
    }
}
TIMEOUT = 300.0

_SUBJECT = re.compile(rb"^Subject: bench (\S+)\r$", re.M)


class CountingSink(SMTPSink):
    """
    The recording sink, also counting connections open at once, with
    C{TCP_NODELAY} on its sockets: it writes each reply line separately, so
    with Nagle's algorithm every multi-line or pipelined reply would wait
    for mailsrv's delayed ACK (about 90 ms per message here), a cost of the
    test sink that a real MX, which writes a reply in one piece, does not
    have.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.open = 0
        self.peakOpen = 0

    def _session(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self.open += 1
            self.peakOpen = max(self.peakOpen, self.open)
        try:
            super()._session(sock)
        finally:
            with self.lock:
                self.open -= 1


def _worker(host: str, port: int, shares: list[int], user: str, password: str, tag: str) -> tuple[int, float]:
    """
    One load-generator process: its sessions run concurrently, each
    sending its share of the messages one transaction after another.
    """

    async def main() -> list[tuple[int, float, float]]:
        sessions = []
        for i, count in enumerate(shares):
            msgs = [makeMessage(MESSAGE_SIZE, f"{tag}-{i}-{j}", user, RECIPIENT) for j in range(count)]
            sessions.append(smtpSession(host, port, msgs, user, RECIPIENT, starttls=True, auth=(user, password)))
        return list(await asyncio.gather(*sessions))

    results = asyncio.run(main())
    return sum(r[0] for r in results), max(r[1] for r in results)


def _waitForSink(sink: SMTPSink, expected: int, timeout: float, out: dict[str, Optional[float]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(sink.transactions) >= expected:
            out["done"] = time.time()
            return
        time.sleep(0.005)


def run(target: Target, *, quick: bool = False, passwordScheme: str = "PLAIN") -> dict[str, dict[str, Any]]:
    if target.name != "mailsrv":
        raise RuntimeError("the queue workload runs against mailsrv only")
    total, concurrency = QUICK if quick else FULL
    work = Path(tempfile.mkdtemp(prefix="mailsrv-bench-queue-"))
    dns = DNSProcess(ZONES, work)
    sink = CountingSink().start()
    server: Optional[MailsrvUnderTest] = None
    try:
        dns.start()
        server = MailsrvUnderTest(
            passwordScheme=passwordScheme,
            endpoints=("submission",),
            extraConfig=(
                f'[dns]\nnameservers = ["{dns.nameserver}"]\ntimeout = 5\n\n'
                f"[delivery]\nmx_port = {sink.port}\nconnect_timeout = 5\ncommand_timeout = 30\n\n"
                # A deferral would otherwise stall the run for 5 minutes; it
                # is counted below either way.
                "[queue]\nretry_initial = 1\nretry_max = 2\n"
            ),
        )
        mailsrv = server.start()
        pid = mailsrv.pids()[0]
        return _measure(mailsrv, server, sink, pid, total, concurrency)
    finally:
        if server is not None:
            server.stop()
        sink.stop()
        dns.stop()
        shutil.rmtree(work, ignore_errors=True)


def _measure(
    target: Target, server: MailsrvUnderTest, sink: CountingSink, pid: int, total: int, concurrency: int
) -> dict[str, dict[str, Any]]:
    processes = min(concurrency, 2)
    perSession = split(total, concurrency)
    shares = [perSession[i::processes] for i in range(processes)]
    tag = uuid.uuid4().hex[:8]
    arrival: dict[str, Optional[float]] = {"done": None}
    watcher = threading.Thread(target=_waitForSink, args=(sink, total, TIMEOUT, arrival), daemon=True)
    watcher.start()
    cpu0 = cpuSeconds([pid])
    with Utilisation() as util:
        t0, results, loadgenCpu = runWorkers(
            _worker,
            [(target.host, target.ports["submission"], s, target.user, target.password, f"{tag}-{k}")
             for k, s in enumerate(shares)],
        )
        watcher.join()
    serverCpu = cpuSeconds([pid]) - cpu0
    done = arrival["done"]
    if done is None:
        raise RuntimeError(f"only {len(sink.transactions)} of {total} queued messages reached the sink in {TIMEOUT} s")
    accepted = sum(r[0] for r in results)
    lastAck = max(r[1] for r in results)
    with sink.lock:
        transactions = list(sink.transactions)
        connections = sink.connections
    tags = set()
    for t in transactions:
        if t.recipients != [RECIPIENT]:
            raise RuntimeError(f"unexpected recipients at the sink: {t.recipients}")
        m = _SUBJECT.search(t.data)
        if m is None or not m.group(1).decode().startswith(tag):
            raise RuntimeError("a message at the sink is not one of this run's")
        tags.add(m.group(1))
    if accepted != total or len(transactions) != total or len(tags) != total:
        raise RuntimeError(
            f"accepted {accepted}, {len(transactions)} at the sink ({len(tags)} distinct), expected {total}"
        )
    deferrals = server.server.log().count("deferred for")
    wall = max(done, lastAck) - t0
    label = f"N={total} C={concurrency}"
    return {
        f"{label} accepted": metric(accepted / (lastAck - t0), "msg/s", HIGHER),
        f"{label} all at sink": metric(done - t0, "s", LOWER),
        f"{label} end-to-end": metric(total / (done - t0), "msg/s", HIGHER),
        "drain after last 250": metric(max(0.0, done - lastAck), "s", LOWER),
        "msgs per connection": metric(total / connections if connections else 0.0, "msg", HIGHER),
        "sink connections at once, max": metric(sink.peakOpen, "conn", INFO),
        "deferred attempts": metric(deferrals, "count", LOWER),
        "mailsrv CPU": metric(100 * serverCpu / wall, "% of a core", INFO),
        "loadgen CPU": metric(100 * loadgenCpu / wall, "% of a core", INFO),
        "machine CPU": metric(100 * util.cores, "% of a core", INFO),
    }
