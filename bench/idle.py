"""
Idle IMAP connections: N authenticated connections over implicit TLS, each
C{LOGIN}, C{SELECT Drafts}, C{IDLE}, held open by several load-generator
processes (asyncio); while they are open, the round trip of C{NOOP} on one
more connection (median and 95th percentile of 50, one after another).

N = 1,000 for both stacks, and 10,000 for mailsrv alone: Dovecot forks an
C{imap} process per session (about 5 MiB RSS each here), so 10,000 of them
would need some 50 GiB.  The same 50 NOOPs with no idle connection open are
the baseline.

Memory per connection: mailsrv is one process, so the growth of its RSS
(and PSS) over the N connections.  Each size runs against a fresh mailsrv
of its own (same configuration as the harness's, L{MailsrvUnderTest}): in a
process that has already served a larger burst, freed heap is reused and
the growth reads near zero (1,000 IDLE connections measured 24 KiB each in
a fresh process, 0-1 KiB in one that had served 1,000 before).  Dovecot:
the sum over its C{imap} processes (one per session; RSS counts shared
library pages once per process, PSS divides them among the sharers), and
separately the growth of its TLS-proxying C{imap-login} processes.

The load generator's CPU is measured from C{/proc} (its processes' user +
system time), while the connections are set up and while the NOOPs run;
the server's CPU while N connections sit in IDLE is reported too.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from multiprocessing.connection import Connection
from typing import Any, Callable, Optional

from bench.common import INFO, LOWER, Utilisation, clientContext, cpuSeconds, metric, split
from bench.imap_bench import IMAPConnection, dovecotMemory, processMemory
from bench.target import MailsrvUnderTest, Target, raiseFileLimit

#: Idle connections per figure, by target.
FULL = {"mailsrv": (1_000, 10_000), "reference": (1_000,)}
QUICK = {"mailsrv": (100, 300), "reference": (100,)}
NOOPS = 50
#: Connections one load-generator process holds; handshakes it runs at once.
PER_PROCESS = 2_500
IN_FLIGHT = 16
SETUP_TIMEOUT = 900.0
#: Seconds over which the CPU of servers and holders with N idle
#: connections is measured.
IDLE_WINDOW = 2.0
KIB = 1024


class IdleFailure(Exception):
    pass


async def _expect(reader: asyncio.StreamReader, tag: bytes) -> None:
    while True:
        line = await reader.readline()
        if not line:
            raise IdleFailure(f"connection closed waiting for {tag!r}")
        if line.startswith(tag + b" "):
            if not line.startswith(tag + b" OK"):
                raise IdleFailure(line.decode(errors="replace").strip())
            return
        if line.startswith(b"* BYE"):
            raise IdleFailure(line.decode(errors="replace").strip())


async def _openIdle(host: str, port: int, user: str, password: str) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection(host, port, ssl=clientContext(), limit=1 << 16)
    greeting = await reader.readline()
    if not greeting.startswith(b"* OK"):
        raise IdleFailure(f"greeting {greeting!r}")
    writer.write(b'a LOGIN "%s" "%s"\r\n' % (user.encode(), password.encode()))
    await _expect(reader, b"a")
    writer.write(b"b SELECT Drafts\r\n")
    await _expect(reader, b"b")
    writer.write(b"c IDLE\r\n")
    line = await reader.readline()
    while line.startswith(b"* "):
        line = await reader.readline()
    if not line.startswith(b"+"):
        raise IdleFailure(f"IDLE answered {line!r}")
    return writer


def _holder(host: str, port: int, count: int, user: str, password: str, control: Connection) -> None:
    """
    One load-generator process: open C{count} idle connections, report,
    hold them until told to stop.
    """
    raiseFileLimit()

    async def main() -> None:
        slots = asyncio.Semaphore(IN_FLIGHT)
        failures: list[str] = []

        async def one() -> Optional[asyncio.StreamWriter]:
            async with slots:
                if failures:
                    return None
                try:
                    return await asyncio.wait_for(_openIdle(host, port, user, password), 120)
                except (OSError, asyncio.TimeoutError, IdleFailure) as e:
                    failures.append(f"{type(e).__name__}: {e}")
                    return None

        writers = [w for w in await asyncio.gather(*(one() for _ in range(count))) if w is not None]
        control.send(("ready", len(writers), failures[:3]))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, control.recv)
        for w in writers:
            w.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)

    try:
        asyncio.run(main())
    except BaseException as e:  # reported to the parent
        control.send(("error", 0, [f"{type(e).__name__}: {e}"]))
    finally:
        control.close()


def _noops(target: Target, count: int = NOOPS) -> list[float]:
    """
    Round-trip times of C{count} NOOPs on one fresh connection, seconds.
    """
    conn = IMAPConnection(target.host, target.ports["imaps"])
    try:
        conn.command(b'LOGIN "%s" "%s"' % (target.user.encode(), target.password.encode()))
        conn.command(b"SELECT Drafts")
        times = []
        for _ in range(count):
            started = time.perf_counter()
            conn.command(b"NOOP")
            times.append(time.perf_counter() - started)
        conn.command(b"LOGOUT")
        return times
    finally:
        conn.close()


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def hold(target: Target, n: int, memory: Callable[[], dict[str, int]], serverPids: Callable[[], list[int]]) -> dict[str, Any]:
    """
    Open C{n} idle connections from several processes, measure memory and
    NOOP latency, close them.
    """
    raiseFileLimit()
    ctx = multiprocessing.get_context("fork")
    # Up to 4 processes (2 cores: more would only compete with the server),
    # more only if one would hold over PER_PROCESS connections.
    processes = max(1, min(4, -(-n // 250)), -(-n // PER_PROCESS))
    time.sleep(1.0)
    before = memory()
    pipes, procs = [], []
    for share in split(n, processes):
        parent, child = ctx.Pipe()
        p = ctx.Process(
            target=_holder, args=(target.host, target.ports["imaps"], share, target.user, target.password, child), daemon=True
        )
        p.start()
        child.close()
        pipes.append(parent)
        procs.append(p)
    pids = [p.pid for p in procs if p.pid is not None]
    started = time.monotonic()
    serverSetup0 = cpuSeconds(serverPids())
    try:
        opened, failures = 0, []
        for pipe in pipes:
            remaining = SETUP_TIMEOUT - (time.monotonic() - started)
            if remaining <= 0 or not pipe.poll(remaining):
                raise RuntimeError(f"idle connections not ready after {SETUP_TIMEOUT:.0f} s")
            status, count, errors = pipe.recv()
            opened += count
            failures += errors
        setup = time.monotonic() - started
        setupCpu = cpuSeconds(pids)
        serverSetupCpu = cpuSeconds(serverPids()) - serverSetup0
        if opened != n:
            raise RuntimeError(
                f"{opened} of {n} idle connections opened ({'; '.join(failures)}); "
                "for mailsrv see MAILSRV_LIMITS in bench/target.py"
            )
        time.sleep(1.0)
        after = memory()
        # CPU while the connections sit in IDLE: nobody should be working.
        serverCpu0, loadCpu0, idle0 = cpuSeconds(serverPids()), cpuSeconds(pids), time.monotonic()
        with Utilisation() as util:
            time.sleep(IDLE_WINDOW)
        idleWall = time.monotonic() - idle0
        loadCpu = cpuSeconds(pids) - loadCpu0
        serverCpu = cpuSeconds(serverPids()) - serverCpu0
        # The NOOP client is this process: its CPU against the wall time
        # tells whether it, not the server, set the latency.
        noopCpu0, noop0 = time.process_time(), time.perf_counter()
        noops = _noops(target)
        noopCpu = (time.process_time() - noopCpu0) / (time.perf_counter() - noop0)
    finally:
        for pipe in pipes:
            try:
                pipe.send("stop")
            except OSError:
                pass
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()
        for pipe in pipes:
            pipe.close()
    return {
        "before": before,
        "after": after,
        "setup": setup,
        "setupCpu": setupCpu,
        "serverSetupCpu": serverSetupCpu,
        "noops": noops,
        "loadCpu": loadCpu / idleWall,
        "serverCpu": serverCpu / idleWall,
        "noopCpu": noopCpu,
        "machineCores": util.cores,
        "processes": processes,
    }


def _figures(n: int, r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    before, after = r["before"], r["after"]
    label = f"N={n}"
    out = {
        f"{label} RSS per connection": metric((after["rss"] - before["rss"]) / n / KIB, "KiB", LOWER),
        f"{label} PSS per connection": metric((after["pss"] - before["pss"]) / n / KIB, "KiB", LOWER),
    }
    if "login_rss" in after:
        out[f"{label} imap-login RSS per connection"] = metric(
            (after["login_rss"] - before["login_rss"]) / n / KIB, "KiB", INFO
        )
    out.update(
        {
            f"{label} NOOP median": metric(1000 * statistics.median(r["noops"]), "ms", LOWER),
            f"{label} NOOP p95": metric(1000 * _p95(r["noops"]), "ms", LOWER),
            f"{label} setup (TLS, LOGIN, SELECT, IDLE)": metric(r["setup"], "s", LOWER),
            f"{label} loadgen CPU, setup": metric(100 * r["setupCpu"] / r["setup"], "% of a core", INFO),
            f"{label} server CPU, setup": metric(100 * r["serverSetupCpu"] / r["setup"], "% of a core", INFO),
            f"{label} loadgen CPU, idle": metric(100 * r["loadCpu"], "% of a core", INFO),
            f"{label} server CPU, idle": metric(100 * r["serverCpu"], "% of a core", INFO),
            f"{label} NOOP client CPU": metric(100 * r["noopCpu"], "% of a core", INFO),
            f"{label} machine CPU, idle": metric(100 * r["machineCores"], "% of a core", INFO),
            f"{label} load generator processes": metric(r["processes"], "proc", INFO),
        }
    )
    return out


def run(target: Target, *, quick: bool = False, passwordScheme: str = "PLAIN") -> dict[str, dict[str, Any]]:
    raiseFileLimit()
    sizes = (QUICK if quick else FULL)[target.name]
    out: dict[str, dict[str, Any]] = {}
    baseline = _noops(target)
    out["NOOP median, no idle connections"] = metric(1000 * statistics.median(baseline), "ms", LOWER)
    out["NOOP p95, no idle connections"] = metric(1000 * _p95(baseline), "ms", LOWER)
    for n in sizes:
        if target.name == "mailsrv":
            fresh = MailsrvUnderTest(passwordScheme=passwordScheme, endpoints=("imaps",))
            try:
                t = fresh.start()
                pid = t.pids()[0]
                r = hold(t, n, lambda: processMemory(pid), t.pids)
            finally:
                fresh.stop()
        else:
            r = hold(target, n, dovecotMemory, target.pids)
        out.update(_figures(n, r))
    return out
