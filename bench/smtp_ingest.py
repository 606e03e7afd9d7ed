"""
SMTP ingest on the MX port: 4 KB messages to one local recipient over C
concurrent sessions, each session sending its share of N messages one
transaction after another.

Two figures per C: accepted messages/s (N over the time until the last 250)
and the time until all N are files in the recipient's Maildir (C{new/} +
C{cur/}); Postfix acknowledges before delivering (queue, then LMTP to
Dovecot), mailsrv delivers into the Maildir before it answers 250, so the
second figure is the one that compares like with like.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, Optional

from bench.common import (
    HIGHER,
    INFO,
    LOWER,
    Utilisation,
    clearMaildir,
    countMaildir,
    makeMessage,
    metric,
    runWorkers,
    smtpSession,
    split,
)
from bench.target import Target

MESSAGE_SIZE = 4096
FULL = {1: 500, 10: 2000, 50: 3000}
QUICK = {1: 20, 10: 50, 50: 50}
SENDER = "sender@remote.example.net"


def _worker(host: str, port: int, shares: list[int], recipient: str, tag: str, starttls: bool,
            auth: Optional[tuple[str, str]]) -> tuple[int, float, list[float]]:
    """
    One load-generator process: its sessions run concurrently in asyncio.
    """

    async def main() -> list[tuple[int, float, float]]:
        sessions = []
        for i, count in enumerate(shares):
            msgs = [makeMessage(MESSAGE_SIZE, f"{tag}-{i}-{j}", SENDER, recipient) for j in range(count)]
            sessions.append(smtpSession(host, port, msgs, SENDER if auth is None else auth[0], recipient,
                                        starttls=starttls, auth=auth))
        return list(await asyncio.gather(*sessions))

    results = asyncio.run(main())
    return sum(r[0] for r in results), max(r[1] for r in results), [r[2] for r in results]


class Watcher(threading.Thread):
    """
    Polls the Maildir until it holds C{expected} messages.
    """

    def __init__(self, target: Target, expected: int, timeout: float) -> None:
        super().__init__(daemon=True)
        self.maildir = target.maildir()
        self.expected = expected
        self.timeout = timeout
        self.done: Optional[float] = None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if countMaildir(self.maildir) >= self.expected:
                self.done = time.time()
                return
            time.sleep(0.005)


def sendAndWait(target: Target, port: int, total: int, concurrency: int, *, starttls: bool = False,
                auth: Optional[tuple[str, str]] = None, timeout: float = 300) -> dict[str, Any]:
    """
    Send C{total} messages over C{concurrency} sessions from up to 4
    processes and wait until they are all in the recipient's Maildir.
    """
    maildir = target.maildir()
    clearMaildir(maildir)
    processes = min(concurrency, 4)
    perSession = split(total, concurrency)
    shares = [perSession[i::processes] for i in range(processes)]
    tag = uuid.uuid4().hex[:8]
    watcher = Watcher(target, total, timeout)
    watcher.start()
    serverCpu0 = _serverCpu(target)
    with Utilisation() as util:
        t0, results, cpu = runWorkers(
            _worker, [(target.host, port, s, target.user, f"{tag}-{k}", starttls, auth) for k, s in enumerate(shares)]
        )
        watcher.join()
    accepted = sum(r[0] for r in results)
    lastAck = max(r[1] for r in results)
    ready = sorted(x for r in results for x in r[2])
    if watcher.done is None:
        raise RuntimeError(f"only {countMaildir(maildir)} of {total} messages arrived in {timeout} s")
    found = countMaildir(maildir)
    if accepted != total or found != total:
        raise RuntimeError(f"accepted {accepted}, found {found}, expected {total}")
    wall = max(watcher.done, lastAck) - t0
    return {
        "accepted": accepted,
        "ackSeconds": lastAck - t0,
        "deliveredSeconds": watcher.done - t0,
        "readyMedian": ready[len(ready) // 2],
        "loadgenCpu": cpu / wall,
        "machineCores": util.cores,
        "serverCpu": _serverCpu(target) - serverCpu0,
    }


def _serverCpu(target: Target) -> float:
    from bench.common import cpuSeconds

    return cpuSeconds(target.pids())


def run(target: Target, *, quick: bool = False) -> dict[str, dict[str, Any]]:
    """
    The MX ingest figures for C = 1, 10, 50.
    """
    sizes = QUICK if quick else FULL
    out: dict[str, dict[str, Any]] = {}
    for c, n in sizes.items():
        r = sendAndWait(target, target.ports["smtp"], n, c)
        out[f"C={c} accepted"] = metric(r["accepted"] / r["ackSeconds"], "msg/s", HIGHER)
        out[f"C={c} all in Maildir"] = metric(r["deliveredSeconds"], "s", LOWER)
        out[f"C={c} into Maildir"] = metric(r["accepted"] / r["deliveredSeconds"], "msg/s", HIGHER)
        out[f"C={c} loadgen CPU"] = metric(100 * r["loadgenCpu"], "% of a core", INFO)
        out[f"C={c} machine CPU"] = metric(100 * r["machineCores"], "% of a core", INFO)
    return out
