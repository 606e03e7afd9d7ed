"""
Helpers shared by the workloads: metric records, Maildir counting, CPU and
RSS measurement from C{/proc}, a minimal asyncio SMTP client and a
multiprocessing runner for the load generator.

The load generator measures its own CPU time (L{runWorkers} returns each
worker's C{time.process_time()}), because on a 2-core machine a Python
client can easily become the bottleneck; the workloads report it beside
their figures so a reader can tell.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

HIGHER = "higher"
LOWER = "lower"
INFO = "info"


def metric(value: float, unit: str, better: str) -> dict[str, Any]:
    """
    One figure of a workload run.

    @param better: L{HIGHER}, L{LOWER} or L{INFO} (not a figure of merit,
        e.g. the load generator's CPU).
    """
    return {"value": float(value), "unit": unit, "better": better}


def clientContext() -> ssl.SSLContext:
    """
    TLS without verification: both servers use self-signed certificates.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ------------------------------------------------------------------ Maildir


def maildirFiles(maildir: Path) -> list[Path]:
    files = []
    for sub in ("new", "cur"):
        try:
            with os.scandir(maildir / sub) as it:
                files.extend(Path(e.path) for e in it if e.is_file())
        except FileNotFoundError:
            pass
    return files


def countMaildir(maildir: Path) -> int:
    """
    Messages in C{new/} and C{cur/}: what "delivered" means for both stacks.
    """
    n = 0
    for sub in ("new", "cur"):
        try:
            with os.scandir(maildir / sub) as it:
                n += sum(1 for _ in it)
        except FileNotFoundError:
            pass
    return n


#: A folder's index and UID state, Dovecot's and mailsrv's (same names as
#: in mailsrv/storage and Dovecot's Maildir format).
INDEX_FILES = (
    "dovecot-uidlist",
    "dovecot-keywords",
    "dovecot.index",
    "dovecot.index.cache",
    "dovecot.index.log",
    "dovecot.index.log.2",
    "mailsrv-cache",
    "mailsrv-modseq",
)


def clearMaildir(maildir: Path) -> None:
    """
    Empty the folder for the next repetition as a new mailbox: remove its
    messages and its index and UID state (L{INDEX_FILES}), then replace
    C{new/} and C{cur/} by fresh directories.  Keeping the index made
    Dovecot's LMTP slower with every repetition: after a few runs its
    C{dovecot-uidlist} still listed 17,265 messages deleted long before,
    and 20 LMTP processes took seconds of CPU per delivery.  A directory
    that once held thousands of entries stays large and slows every
    later scan.
    """
    for name in INDEX_FILES:
        try:
            (maildir / name).unlink()
        except FileNotFoundError:
            pass
    for path in maildirFiles(maildir):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    for sub in ("new", "cur"):
        d = maildir / sub
        try:
            st = d.stat()
            d.rmdir()
        except OSError:
            continue
        d.mkdir(mode=st.st_mode & 0o7777)
        os.chown(d, st.st_uid, st.st_gid)


def waitForCount(maildir: Path, expected: int, timeout: float) -> Optional[float]:
    """
    Poll until C{expected} messages are in the Maildir.

    @return: C{time.time()} when they were, or L{None} on timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if countMaildir(maildir) >= expected:
            return time.time()
        time.sleep(0.005)
    return None


# --------------------------------------------------------------- /proc data


def _readStat(pid: int) -> Optional[list[str]]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2 :].split()


def cpuSeconds(pids: Iterable[int]) -> float:
    """
    User+system CPU of the processes and their reaped children.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = _readStat(pid)
        if fields:
            total += sum(int(x) for x in fields[11:15])
    return total / tick


def machineBusy() -> tuple[float, float]:
    """
    (busy, total) jiffies of all CPUs since boot, for a busy fraction over
    an interval.
    """
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


def rssBytes(pids: Iterable[int]) -> tuple[int, int]:
    """
    (sum, largest single) resident set size of the processes.
    """
    total = largest = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        kb = int(line.split()[1]) * 1024
                        total += kb
                        largest = max(largest, kb)
                        break
        except OSError:
            pass
    return total, largest


class RSSSampler:
    """
    Samples the summed RSS of a target's processes in a thread and keeps
    the peak.  Sampling (not VmHWM) because the reference stack is many
    processes that come and go.
    """

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.02, hwmFirst: bool = False) -> None:
        self._pids = pids
        self._hwmFirst = hwmFirst
        self._interval = interval
        self.peak = 0
        self.peakSingle = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total, single = rssBytes(self._pids())
            self.peak = max(self.peak, total)
            self.peakSingle = max(self.peakSingle, single)
            self._stop.wait(self._interval)

    def __enter__(self) -> "RSSSampler":
        self.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        pids = self._pids()
        if self._hwmFirst:
            # mailsrv: the kernel's high-water mark of its main process
            # catches a peak shorter than the sampling interval (its commit
            # process holds no more than one small message per delivery).
            hwm = highWaterMark(pids[0])
            if hwm > self._hwmBefore:
                others = rssBytes(pids[1:])[0]
                self.peak = max(self.peak, hwm + others)
                self.peakSingle = max(self.peakSingle, hwm)

    def start(self) -> None:
        self._hwmBefore = highWaterMark(self._pids()[0]) if self._hwmFirst else 0


def highWaterMark(pid: int) -> int:
    """
    C{VmHWM}: the process's peak RSS since it started, in bytes.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Utilisation:
    """
    Machine CPU busy fraction over a block, in "cores" (0..nproc).
    """

    def __enter__(self) -> "Utilisation":
        self._start = machineBusy()
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, total = machineBusy()
        ncpu = os.cpu_count() or 1
        dt = total - self._start[1]
        self.cores = ncpu * (busy - self._start[0]) / dt if dt else 0.0


# --------------------------------------------------------------- messages


def makeMessage(size: int, tag: str, sender: str, recipient: str) -> bytes:
    """
    A CRLF message of about C{size} octets, no line starting with a dot
    (so it is its own SMTP DATA payload).
    """
    head = (
        f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: bench {tag}\r\n"
        f"Message-ID: <{tag}@bench.example.test>\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog, 0123456789 abcdefghijklmnopqrstuvwx\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


# ------------------------------------------------------------ SMTP client


class SMTPError(Exception):
    pass


async def readReply(reader: asyncio.StreamReader) -> bytes:
    out = b""
    while True:
        line = await reader.readline()
        if not line:
            raise SMTPError(f"connection closed after {out!r}")
        out += line
        if line[3:4] != b"-":
            return out


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes, expect: bytes) -> bytes:
    writer.write(line + b"\r\n")
    reply = await readReply(reader)
    if not reply.startswith(expect):
        raise SMTPError(f"{line[:40]!r} -> {reply!r}")
    return reply


async def smtpSession(
    host: str,
    port: int,
    messages: Sequence[bytes],
    sender: str,
    recipient: str,
    starttls: bool = False,
    auth: Optional[tuple[str, str]] = None,
) -> tuple[int, float, float]:
    """
    One SMTP session sending C{messages} one transaction at a time (no
    pipelining, like C{smtp-source}).

    @return: (accepted, time.time() of the last 250, seconds from connect
        until ready to send, i.e. banner+EHLO[+TLS+AUTH]).
    """
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    try:
        await readReply(reader)
        await command(reader, writer, b"EHLO bench.example.test", b"250")
        if starttls:
            await command(reader, writer, b"STARTTLS", b"220")
            await writer.start_tls(clientContext())
            await command(reader, writer, b"EHLO bench.example.test", b"250")
        if auth:
            token = base64.b64encode(b"\0" + auth[0].encode() + b"\0" + auth[1].encode())
            await command(reader, writer, b"AUTH PLAIN " + token, b"235")
        ready = time.monotonic() - t0
        accepted = 0
        last = time.time()
        for msg in messages:
            await command(reader, writer, f"MAIL FROM:<{sender}>".encode(), b"250")
            await command(reader, writer, f"RCPT TO:<{recipient}>".encode(), b"250")
            await command(reader, writer, b"DATA", b"354")
            writer.write(msg)
            await command(reader, writer, b".", b"250")
            accepted += 1
            last = time.time()
        writer.write(b"QUIT\r\n")
        try:
            await asyncio.wait_for(reader.read(), 5)
        except (asyncio.TimeoutError, ConnectionError, ssl.SSLError):
            pass
        return accepted, last, ready
    finally:
        writer.close()


# ------------------------------------------------------------ worker pool


def _workerMain(
    fn: Callable[..., Any], args: tuple[Any, ...], barrier: Any, queue: Any
) -> None:
    try:
        barrier.wait(60)
        cpu0 = time.process_time()
        result = fn(*args)
        queue.put(("ok", result, time.process_time() - cpu0))
    except BaseException as e:  # reported to the parent
        queue.put(("error", f"{type(e).__name__}: {e}", 0.0))


def runWorkers(fn: Callable[..., Any], argsList: Sequence[tuple[Any, ...]], timeout: float = 600) -> tuple[float, list[Any], float]:
    """
    Run C{fn(*args)} in one process per C{args}, all released at once.

    @return: (time.time() at release, results, CPU seconds the workers used).
    @raise RuntimeError: if a worker failed.
    """
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(argsList) + 1)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_workerMain, args=(fn, a, barrier, queue), daemon=True) for a in argsList]
    for p in procs:
        p.start()
    barrier.wait(60)
    t0 = time.time()
    results, cpu, errors = [], 0.0, []
    for _ in procs:
        status, value, used = queue.get(timeout=timeout)
        if status == "ok":
            results.append(value)
            cpu += used
        else:
            errors.append(value)
    for p in procs:
        p.join(10)
    if errors:
        raise RuntimeError("; ".join(errors))
    return t0, results, cpu


def split(n: int, parts: int) -> list[int]:
    """
    C{n} as C{parts} near-equal non-negative integers.
    """
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
