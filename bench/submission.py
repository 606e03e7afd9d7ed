"""
Submission with AUTH: C = 10 concurrent clients, each session a whole
mail-client submission (connect, EHLO, STARTTLS, EHLO, AUTH PLAIN, one
4 KB message to the user's own address, QUIT), so the TLS handshake and
the password check are part of every message, as they are for a real MUA.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from bench.common import HIGHER, INFO, LOWER, Utilisation, clearMaildir, countMaildir, makeMessage, metric, runWorkers, smtpSession, split
from bench.smtp_ingest import Watcher
from bench.target import Target

CONCURRENCY = 10
FULL = 400
QUICK = 20
MESSAGE_SIZE = 4096


def _worker(host: str, port: int, sessions: list[int], user: str, password: str, tag: str) -> tuple[int, float, list[float]]:
    async def client(slot: int, count: int) -> tuple[int, float, list[float]]:
        accepted, last, ready = 0, 0.0, []
        for j in range(count):
            msg = makeMessage(MESSAGE_SIZE, f"{tag}-{slot}-{j}", user, user)
            a, t, r = await smtpSession(host, port, [msg], user, user, starttls=True, auth=(user, password))
            accepted += a
            last = max(last, t)
            ready.append(r)
        return accepted, last, ready

    async def main() -> list[tuple[int, float, list[float]]]:
        return list(await asyncio.gather(*(client(i, n) for i, n in enumerate(sessions))))

    results = asyncio.run(main())
    return sum(r[0] for r in results), max(r[1] for r in results), [x for r in results for x in r[2]]


def run(target: Target, *, quick: bool = False) -> dict[str, dict[str, Any]]:
    total = QUICK if quick else FULL
    maildir = target.maildir()
    clearMaildir(maildir)
    processes = 2
    perClient = split(total, CONCURRENCY)
    shares = [perClient[i::processes] for i in range(processes)]
    tag = uuid.uuid4().hex[:8]
    watcher = Watcher(target, total, 300)
    watcher.start()
    with Utilisation() as util:
        t0, results, cpu = runWorkers(
            _worker, [(target.host, target.ports["submission"], s, target.user, target.password, f"{tag}-{k}")
                      for k, s in enumerate(shares)]
        )
        watcher.join()
    done = watcher.done
    if done is None:
        raise RuntimeError(f"only {countMaildir(maildir)} of {total} submitted messages arrived")
    accepted = sum(r[0] for r in results)
    lastAck = max(r[1] for r in results)
    ready = sorted(x for r in results for x in r[2])
    wall = max(done, lastAck) - t0
    return {
        "C=10 sessions (1 msg each)": metric(accepted / (lastAck - t0), "sessions/s", HIGHER),
        "C=10 all in Maildir": metric(done - t0, "s", LOWER),
        "connect..AUTH done, median": metric(1000 * ready[len(ready) // 2], "ms", LOWER),
        "loadgen CPU": metric(100 * cpu / wall, "% of a core", INFO),
        "machine CPU": metric(100 * util.cores, "% of a core", INFO),
    }
