"""
Load and abuse against a real mailsrv: a few thousand concurrent
connections over SMTP, IMAP and POP3, slow-loris clients sending a byte
every two seconds, and clients that pipeline commands without ever reading
the replies.  Meanwhile a new client must still be served within seconds,
the server's memory must stay bounded, idle SMTP connections must be
closed by C{[limits] command_timeout}, and every slow-loris client by the
same timeout counted from its command's first octet.

C{MAILSRV_ABUSE_CONNECTIONS} (default 2000) sets the number of idle
connections.  Non-reading clients of each protocol, and of IMAP also over
implicit TLS, are in a test of their own.  Idle IMAP and POP3 connections
stay open here: they are closed by C{login_timeout} (3 minutes), longer
than this test; C{test_connection_limits} covers it.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from pathlib import Path
from typing import Iterator

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import clientContext

CONNECTIONS = int(os.environ.get("MAILSRV_ABUSE_CONNECTIONS", "2000"))
COMMAND_TIMEOUT = 8.0
LORIS = 10  # per protocol
NON_READERS = 10  # per protocol
NON_READER_PROTOCOLS = ("smtp", "imap", "pop3")
# What one connection may cost the server, and what the abusers may add on
# top; generous, but far below what unbounded buffering reaches.
PER_CONNECTION = 16 * 1024
ABUSE_ALLOWANCE = 64 * 1024 * 1024
NEW_CLIENT_LATENCY = 3.0

GREETINGS = {"smtp": b"220 ", "imap": b"* OK", "imaps": b"* OK", "pop3": b"+OK"}
# A command each protocol answers in every state before login, at length.
CHATTY = {"smtp": b"HELP\r\n", "imap": b"a CAPABILITY\r\n", "imaps": b"a CAPABILITY\r\n", "pop3": b"CAPA\r\n"}
IMPLICIT_TLS = frozenset(("imaps",))
LORIS_LINES = {"smtp": b"EHLO slowloris.test\r\n", "imap": b"a NOOP\r\n", "pop3": b"CAPA\r\n"}
# What a slow-loris client gets before the server closes its connection.
LORIS_CLOSED = {
    "smtp": b"421 4.4.2 mail.example.test Error: timeout exceeded\r\n",
    "imap": b"* BYE Disconnected: command not completed in time\r\n",
    "pop3": b"-ERR Disconnected: command not completed in time.\r\n",
}


def rss(pid: int) -> int:
    """
    Resident set size of process C{pid} in octets.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    srv = RunningServer(
        tmp_path,
        endpoints=("smtp", "imap", "imaps", "pop3"),
        extraConfig=(
            f"[limits]\ncommand_timeout = {COMMAND_TIMEOUT}\n"
            f"max_connections = {CONNECTIONS * 2}\n"
            f"imap_max_connections = {CONNECTIONS * 2}\n"
            f"pop3_max_connections = {CONNECTIONS * 2}\n"
        ),
    )
    srv.addUser("alice@example.test", "secret")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class Abuse:
    def __init__(self, server: RunningServer) -> None:
        self.server = server
        assert server.process is not None
        self.pid = server.process.pid
        self.peak = 0
        self.latencies: list[float] = []
        self.stopping = asyncio.Event()
        self.timedOut = 0
        self.blasted = 0
        self.greeted = 0
        self.lorisClosed: list[tuple[str, float]] = []

    async def open(self, protocol: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.server.ports[protocol], ssl=clientContext() if protocol in IMPLICIT_TLS else None
        )
        greeting = await asyncio.wait_for(reader.readline(), 30)
        assert greeting.startswith(GREETINGS[protocol]), greeting
        return reader, writer

    async def sampleMemory(self) -> None:
        while not self.stopping.is_set():
            self.peak = max(self.peak, rss(self.pid))
            await asyncio.sleep(0.2)

    async def idle(self, protocol: str, ready: asyncio.Semaphore) -> None:
        """
        Connect, read the greeting and say nothing more.  SMTP ones must be
        closed by the server with 421 after the command timeout.
        """
        async with ready:
            reader, writer = await self.open(protocol)
        self.greeted += 1
        try:
            if protocol == "smtp":
                start = time.monotonic()
                line = await asyncio.wait_for(reader.readline(), COMMAND_TIMEOUT + 30)
                assert line.startswith(b"421 4.4.2 "), line
                assert await reader.read() == b""
                assert time.monotonic() - start >= COMMAND_TIMEOUT - 1
                self.timedOut += 1
            else:
                await self.stopping.wait()
        finally:
            writer.close()

    async def loris(self, protocol: str) -> None:
        """
        Send a command one byte every two seconds, over and over, until the
        server closes the connection; record its last words and how long
        after the first byte it closed.
        """
        reader, writer = await self.open(protocol)
        line = LORIS_LINES[protocol]
        received = b""
        start = time.monotonic()
        closed = False
        try:
            i = 0
            while not self.stopping.is_set():
                if not received:
                    # Once the server answered, only wait for its close: a
                    # write to a closed socket would end in a reset.
                    writer.write(line[i % len(line) : i % len(line) + 1])
                    i += 1
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), 2.0)
                except asyncio.TimeoutError:
                    continue
                received += chunk
                if not chunk:
                    closed = True
                    break
        except ConnectionError:
            closed = True
        finally:
            writer.close()
        if closed and received == LORIS_CLOSED[protocol]:
            self.lorisClosed.append((protocol, time.monotonic() - start))

    async def nonReader(self, protocol: str) -> None:
        """
        Pipeline chatty commands as fast as the server takes them and never
        read a reply.
        """
        reader, writer = await self.open(protocol)
        block = CHATTY[protocol] * (65536 // len(CHATTY[protocol]))
        try:
            while not self.stopping.is_set():
                writer.write(block)
                try:
                    await asyncio.wait_for(writer.drain(), 1.0)
                except asyncio.TimeoutError:
                    # The server stopped reading: that is the point.
                    continue
                self.blasted += len(block)
        except ConnectionError:
            pass
        finally:
            writer.transport.abort()

    async def newClient(self) -> None:
        """
        A well-behaved client of each protocol, timed from connect to the
        answer of its first command (a whole delivery for SMTP).
        """
        for protocol, talk, expect in (
            (
                "smtp",
                b"EHLO new.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
                b"354 ",
            ),
            ("imap", b"a CAPABILITY\r\n", b"a OK"),
            ("pop3", b"CAPA\r\n", b".\r\n"),
        ):
            start = time.monotonic()
            reader, writer = await asyncio.wait_for(self.open(protocol), 10)
            writer.write(talk)
            buffer = b""
            while expect not in buffer:
                chunk = await asyncio.wait_for(reader.read(4096), 10)
                assert chunk, buffer
                buffer += chunk
            if protocol == "smtp":
                writer.write(b"Subject: new\r\n\r\nhello\r\n.\r\nQUIT\r\n")
                while b"221 " not in buffer:
                    chunk = await asyncio.wait_for(reader.read(4096), 10)
                    assert chunk, buffer
                    buffer += chunk
                assert b"250 2.0.0 Ok: queued" in buffer or buffer.count(b"250 ") >= 3, buffer
            self.latencies.append(time.monotonic() - start)
            writer.close()


async def run(server: RunningServer) -> Abuse:
    abuse = Abuse(server)
    baseline = rss(abuse.pid)
    sampler = asyncio.ensure_future(abuse.sampleMemory())
    ready = asyncio.Semaphore(200)
    protocols = ["smtp", "smtp", "imap", "pop3"]
    start = time.monotonic()
    idle = [asyncio.ensure_future(abuse.idle(protocols[i % 4], ready)) for i in range(CONNECTIONS)]
    # Wait until every idle connection got its greeting.
    while abuse.greeted < CONNECTIONS:
        failed = [t for t in idle if t.done() and t.exception()]
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        await asyncio.sleep(0.1)
    opened = time.monotonic() - start
    afterIdle = rss(abuse.pid)
    lorises = [asyncio.ensure_future(abuse.loris(p)) for p in ("smtp", "imap", "pop3") for _ in range(LORIS)]
    abusers = [asyncio.ensure_future(abuse.nonReader(p)) for p in NON_READER_PROTOCOLS for _ in range(NON_READERS)]
    for _ in range(8):
        await asyncio.sleep(1.0)
        await abuse.newClient()
    await asyncio.gather(*[t for i, t in enumerate(idle) if protocols[i % 4] == "smtp"])
    # Every slow-loris client is closed by the server on its own.
    await asyncio.wait_for(asyncio.gather(*lorises), COMMAND_TIMEOUT + 30)
    abuse.stopping.set()
    await asyncio.gather(*abusers, *idle, sampler)
    abuse.summary = (  # type: ignore[attr-defined]
        f"{CONNECTIONS} idle connections opened in {opened:.1f} s; server RSS {baseline / 2**20:.0f} MiB "
        f"at start, {afterIdle / 2**20:.0f} MiB with them open, peak {abuse.peak / 2**20:.0f} MiB with "
        f"{3 * LORIS} slow-loris and {len(NON_READER_PROTOCOLS) * NON_READERS} non-reading clients "
        f"({abuse.blasted / 2**20:.0f} MiB of commands taken from them); new-client latency max "
        f"{max(abuse.latencies):.2f} s; {abuse.timedOut} idle SMTP connections closed by the timeout; "
        f"{len(abuse.lorisClosed)} slow-loris clients closed after "
        f"{min((t for _, t in abuse.lorisClosed), default=0):.1f}-{max((t for _, t in abuse.lorisClosed), default=0):.1f} s"
    )
    abuse.baseline = baseline  # type: ignore[attr-defined]
    return abuse


def test_connectionsSlowLorisAndNonReaders(server: RunningServer) -> None:
    """
    With C{CONNECTIONS} idle connections open, slow-loris clients and
    clients that never read: new clients of every protocol are served
    within a few seconds, the server's RSS stays within a fixed allowance
    per connection plus a bound for the abusers, every idle SMTP
    connection gets 421 after the command timeout, and every slow-loris
    client (SMTP, IMAP, POP3) gets its protocol's timeout reply and is
    closed C{command_timeout} after its command's first octet.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < CONNECTIONS + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, CONNECTIONS + 500), hard))
    abuse = asyncio.run(run(server))
    print("\n" + abuse.summary)  # type: ignore[attr-defined]
    assert max(abuse.latencies) < NEW_CLIENT_LATENCY, abuse.latencies
    assert abuse.timedOut == len([i for i in range(CONNECTIONS) if i % 4 < 2])
    closedBy = sorted(p for p, _ in abuse.lorisClosed)
    assert closedBy == sorted(["smtp", "imap", "pop3"] * LORIS), abuse.summary  # type: ignore[attr-defined]
    assert all(COMMAND_TIMEOUT - 1 <= t < COMMAND_TIMEOUT + 5 for _, t in abuse.lorisClosed), abuse.lorisClosed
    limit = abuse.baseline + CONNECTIONS * PER_CONNECTION + ABUSE_ALLOWANCE  # type: ignore[attr-defined]
    assert abuse.peak < limit, abuse.summary  # type: ignore[attr-defined]
    assert server.process is not None and server.process.poll() is None


async def blastWithoutReading(server: RunningServer, protocol: str, seconds: float) -> tuple[int, int]:
    """
    Ten clients pipeline chatty commands for C{seconds} without reading;
    the server's RSS before and at the peak.
    """
    abuse = Abuse(server)
    baseline = rss(abuse.pid)
    sampler = asyncio.ensure_future(abuse.sampleMemory())
    blasters = [asyncio.ensure_future(abuse.nonReader(protocol)) for _ in range(NON_READERS)]
    await asyncio.sleep(seconds)
    abuse.stopping.set()
    await asyncio.gather(*blasters, sampler)
    return baseline, abuse.peak


NON_READER_GROWTH = 40 * 1024 * 1024


@pytest.mark.parametrize("protocol", ["smtp", "pop3", "imap", "imaps"])
def test_nonReadersBounded(server: RunningServer, protocol: str) -> None:
    """
    Ten clients pipelining commands that each get a long reply (HELP,
    CAPABILITY, CAPA) and never reading, in plaintext and (IMAP) over
    implicit TLS: within five seconds the server's RSS grows by less than
    40 MiB (unbounded buffering grew it by about 100 MiB in that time, and
    on without end).
    """
    baseline, peak = asyncio.run(blastWithoutReading(server, protocol, 5.0))
    print(f"\n{protocol} non-readers: RSS {baseline / 2**20:.0f} MiB -> peak {peak / 2**20:.0f} MiB")
    assert peak - baseline < NON_READER_GROWTH
