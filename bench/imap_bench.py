"""
IMAP on a large folder: a 10,000-message INBOX written straight into the
Maildir (as a migration leaves it), then over implicit TLS (C{imaps}):

 - C{login_select_s}: connect, LOGIN and SELECT INBOX (first, cold, and the
   median of warm ones);
 - C{fetch_all_s}: C{FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE)};
 - C{uid_search_header_s}: C{UID SEARCH HEADER Subject x};
 - C{fetch_body_1000_s}: C{FETCH 1:1000 BODY.PEEK[]} (PEEK so that every
   round measures the same work; BODY[] would also rename 1,000 files to
   set C{\\Seen});
 - C{idle_rss_per_connection_bytes}: the server's resident memory growth
   per authenticated connection sitting in IDLE (each SELECTs the small
   C{Drafts} folder), over C{idle} connections.

Standalone: C{run(host, ports, user, password)} measures a running server
whose user already has the folder (see L{generateMaildir}); C{python -m
bench.imap_bench} starts a mailsrv of its own and prints the JSON;
C{python -m bench.imap_bench --side-by-side} also starts the reference
Dovecot (C{../shared/peers}), puts the same folder in its Maildir, measures
both in turns and prints a Markdown table with the ratios.  The client is a
raw socket reader: C{imaplib} would spend more CPU parsing than the server
spends answering.

Memory per IDLE connection: mailsrv is one process, so its RSS growth;
Dovecot forks one C{imap} process per session, so the sum of their RSS
(shared library pages counted once per process, as C{ps} shows them) and,
for comparison, their PSS (shared pages divided among the sharers).  The
TLS proxying C{imap-login} processes are reported separately.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

MESSAGES = 10_000
IDLE = 1_000

_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


def _context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class IMAPConnection:
    """
    A minimal IMAP client: send a command, read the response up to its
    tagged line, skipping literals by their announced size.
    """

    def __init__(self, host: str, port: int, tls: bool = True) -> None:
        sock = socket.create_connection((host, port), timeout=120)
        self.sock = _context().wrap_socket(sock) if tls else sock
        self.buf = bytearray()
        self.counter = 0
        self._line()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def _line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buf[: end + 2])
                del self.buf[: end + 2]
                return line
            self._fill()

    def _skip(self, size: int) -> None:
        while len(self.buf) < size:
            self._fill()
        del self.buf[:size]

    def command(self, text: bytes) -> tuple[bytes, int]:
        """
        Run one command; returns the tagged line and the number of
        untagged lines.
        """
        self.counter += 1
        tag = b"b%d" % self.counter
        self.sock.sendall(tag + b" " + text + b"\r\n")
        untagged = 0
        while True:
            line = self._line()
            while True:
                match = _LITERAL.search(line)
                if match is None:
                    break
                self._skip(int(match.group(1)))
                line = self._line()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text!r} failed: {line!r}")
                return line, untagged
            untagged += 1

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def makeMessage(i: int) -> bytes:
    """
    A plausible 2-3 KiB message; one in ten has C{x} as a subject word.
    """
    subject = f"Report {i} x" if i % 10 == 0 else f"Report {i}"
    body = "".join(f"Line {n} of message {i}: lorem ipsum dolor sit amet.\r\n" for n in range(40))
    return (
        f"Return-Path: <sender{i % 50}@remote.test>\r\n"
        f"From: Sender {i % 50} <sender{i % 50}@remote.test>\r\n"
        "To: Bench <bench@example.test>\r\n"
        f"Cc: list{i % 7}@remote.test\r\n"
        f"Subject: {subject}\r\n"
        f"Date: Mon, 01 Jan 2024 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d} +0000\r\n"
        f"Message-ID: <bench-{i}@remote.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
    ).encode()


def generateMaildir(maildir: Path, count: int = MESSAGES) -> None:
    """
    Write C{count} messages into C{maildir/cur} (no uidlist: the server
    gives the UIDs on first SELECT, as after a migration without one).
    """
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    start = 1_700_000_000
    for i in range(count):
        data = makeMessage(i)
        flags = "S" if i % 3 else ""
        name = f"{start + i}.M{i}P1.bench,S={len(data)},W={len(data)}:2,{flags}"
        with open(maildir / "cur" / name, "wb") as f:
            f.write(data)
        os.utime(maildir / "cur" / name, (start + i, start + i))


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _pss(pid: int) -> int:
    """
    The proportional set size of a process (shared pages divided among
    the processes sharing them), 0 if unknown.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def processMemory(pid: int) -> dict[str, int]:
    """
    RSS and PSS of one process (mailsrv).
    """
    return {"rss": _rss(pid), "pss": _pss(pid)}


def dovecotMemory() -> dict[str, int]:
    """
    Summed RSS and PSS of Dovecot's C{imap} processes (one per session),
    and the RSS of its C{imap-login} processes (which proxy TLS).
    """
    totals = {"rss": 0, "pss": 0, "login_rss": 0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        if name == "imap":
            totals["rss"] += _rss(int(entry))
            totals["pss"] += _pss(int(entry))
        elif name == "imap-login":
            totals["login_rss"] += _rss(int(entry))
    return totals


def _login(host: str, port: int, user: str, password: str) -> IMAPConnection:
    conn = IMAPConnection(host, port)
    conn.command(b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))
    return conn


def run(
    host: str,
    ports: dict[str, int],
    user: str,
    password: str,
    *,
    pid: Optional[int] = None,
    idle: int = IDLE,
    rounds: int = 3,
    memory: Optional[Callable[[], dict[str, int]]] = None,
    folder: str = "INBOX",
) -> dict[str, Any]:
    """
    Measure a running server; C{user}'s C{folder} must hold the large
    folder.  C{pid} (the server process) or C{memory} (named byte counts,
    C{rss} first) enables the memory measurement.
    """
    cpu0, wall0 = time.process_time(), time.perf_counter()
    select = b"SELECT " + folder.encode()
    if memory is None and pid is not None:
        serverPid = pid

        def memory() -> dict[str, int]:
            return processMemory(serverPid)

    port = ports["imaps"]
    result: dict[str, Any] = {}
    selects = []
    for _ in range(rounds + 1):
        started = time.perf_counter()
        conn = _login(host, port, user, password)
        _, untagged = conn.command(select)
        selects.append(time.perf_counter() - started)
        conn.close()
    result["login_select_cold_s"] = round(selects[0], 4)
    result["login_select_s"] = round(statistics.median(selects[1:]), 4)

    conn = _login(host, port, user, password)
    conn.command(select)
    timings: dict[str, list[float]] = {"fetch_all_s": [], "uid_search_header_s": [], "fetch_body_1000_s": []}
    counts: dict[str, int] = {}
    for _ in range(rounds):
        for key, command in (
            ("fetch_all_s", b"FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE)"),
            ("uid_search_header_s", b"UID SEARCH HEADER Subject x"),
            ("fetch_body_1000_s", b"FETCH 1:1000 BODY.PEEK[]"),
        ):
            started = time.perf_counter()
            _, counts[key] = conn.command(command)
            timings[key].append(time.perf_counter() - started)
    conn.close()
    for key, values in timings.items():
        result[key] = round(statistics.median(values), 4)
    result["fetch_all_responses"] = counts["fetch_all_s"]
    result["loadgen_cpu"] = (time.process_time() - cpu0) / (time.perf_counter() - wall0)

    if memory is not None and idle:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < idle + 100:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, idle + 1000), hard))
        before = memory()
        idlers = []
        started = time.perf_counter()
        try:
            for _ in range(idle):
                c = _login(host, port, user, password)
                c.command(b"SELECT Drafts")
                c.counter += 1
                c.sock.sendall(b"i IDLE\r\n")
                assert c._line().startswith(b"+")
                idlers.append(c)
            time.sleep(1.0)
            after = memory()
        finally:
            for c in idlers:
                c.close()
        result["idle_connections"] = len(idlers)
        result["idle_setup_s"] = round(time.perf_counter() - started, 2)
        for name in after:
            result[f"idle_{name}_before_bytes"] = before[name]
            result[f"idle_{name}_after_bytes"] = after[name]
            result[f"idle_{name}_per_connection_bytes"] = (after[name] - before[name]) // max(len(idlers), 1)
    return result


def fillFolder(target: Any, count: int) -> str:
    """
    A new Maildir++ folder of C{count} messages for C{target}'s user, beside
    the INBOX the other workloads fill and empty; owned as the target's
    Maildirs must be.

    @return: its IMAP name.
    """
    import shutil
    import uuid

    name = "Bench" + uuid.uuid4().hex[:8]
    path = target.maildir() / ("." + name)
    shutil.rmtree(path, ignore_errors=True)
    generateMaildir(path, count)
    (path / "maildirfolder").touch()
    if target.owner is not None:
        for root, dirs, files in os.walk(path):
            for entry in (root, *(os.path.join(root, f) for f in files)):
                os.chown(entry, *target.owner)
    return name


#: The main harness's figures: result key, label, unit, scale, better.
_FIGURES = (
    ("login_select_cold_s", "LOGIN+SELECT, first (builds the index)", "ms", 1000, "lower"),
    ("login_select_s", "LOGIN+SELECT (connect, TLS, warm)", "ms", 1000, "lower"),
    ("fetch_all_s", "FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE)", "ms", 1000, "lower"),
    ("uid_search_header_s", "UID SEARCH HEADER Subject x", "ms", 1000, "lower"),
    ("fetch_body_1000_s", "FETCH 1:1000 BODY.PEEK[]", "ms", 1000, "lower"),
    ("loadgen_cpu", "loadgen CPU", "% of a core", 100, "info"),
)

#: Messages in the folder: full run, C{--quick}.
FULL_FOLDER = MESSAGES
QUICK_FOLDER = 1_000


def runTarget(target: Any, *, quick: bool = False) -> dict[str, dict[str, Any]]:
    """
    The C{imap} workload of C{python -m bench}: a fresh folder of 10,000
    messages (1,000 with C{quick}) for the target's user, the figures of
    L{run} on it (the idle connections are C{bench/idle.py}'s), the folder
    removed afterwards.
    """
    count = QUICK_FOLDER if quick else FULL_FOLDER
    folder = fillFolder(target, count)
    try:
        result = run(target.host, dict(target.ports), target.user, target.password, idle=0, folder=folder)
    finally:
        import shutil

        shutil.rmtree(target.maildir() / ("." + folder), ignore_errors=True)
    if result["fetch_all_responses"] != count:
        raise RuntimeError(f"FETCH 1:* returned {result['fetch_all_responses']} responses, expected {count}")
    return {
        label: {"value": result[key] * scale, "unit": unit, "better": better}
        for key, label, unit, scale, better in _FIGURES
    }


#: Figures of the side-by-side table: key, label, unit, scale.
_TABLE = (
    ("login_select_cold_s", "LOGIN+SELECT, first (cold index)", "ms", 1000),
    ("login_select_s", "LOGIN+SELECT (connect, TLS, warm)", "ms", 1000),
    ("fetch_all_s", "FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE)", "ms", 1000),
    ("uid_search_header_s", "UID SEARCH HEADER Subject x", "ms", 1000),
    ("fetch_body_1000_s", "FETCH 1:1000 BODY.PEEK[]", "ms", 1000),
    ("idle_rss_per_connection_bytes", "RSS per IDLE connection", "KiB", 1 / 1024),
    ("idle_pss_per_connection_bytes", "PSS per IDLE connection", "KiB", 1 / 1024),
    ("idle_login_rss_per_connection_bytes", "imap-login RSS per IDLE connection", "KiB", 1 / 1024),
)


def sideBySide(reps: int = 2, count: int = MESSAGES, idle: int = IDLE, stopPeersAfter: bool = True) -> dict[str, Any]:
    """
    mailsrv (C{{PLAIN}} passwords like the reference, via
    L{bench.target.MailsrvUnderTest}) and the reference Dovecot, the same
    C{count}-message INBOX for alice in both, measured C{reps} times in
    alternating order; medians and mailsrv/Dovecot ratios.
    """
    import pwd
    import shutil
    import subprocess

    from bench.target import PEER_MAIL_ROOT, MailsrvUnderTest, defaultPeersDir, startPeers, stopPeers

    peersDir = defaultPeersDir()
    mailsrv = MailsrvUnderTest(passwordScheme="PLAIN", endpoints=("smtp", "imaps"))
    generateMaildir(mailsrv.server.maildir("alice@example.test"), count)
    targets: dict[str, dict[str, Any]] = {}
    try:
        mailsrvTarget = mailsrv.start()
        process = mailsrv.server.process
        assert process is not None
        targets["mailsrv"] = {"target": mailsrvTarget, "memory": lambda: processMemory(process.pid)}
        reference = startPeers(peersDir)
        alice = PEER_MAIL_ROOT / "example.test" / "alice"
        shutil.rmtree(alice, ignore_errors=True)
        generateMaildir(alice, count)
        vmail = pwd.getpwnam("vmail")
        subprocess.run(["chown", "-R", f"{vmail.pw_uid}:{vmail.pw_gid}", str(alice)], check=True)
        targets["dovecot"] = {"target": reference, "memory": dovecotMemory}
        runs: dict[str, list[dict[str, Any]]] = {"mailsrv": [], "dovecot": []}
        for rep in range(reps):
            order = ["mailsrv", "dovecot"] if rep % 2 == 0 else ["dovecot", "mailsrv"]
            for name in order:
                t = targets[name]["target"]
                started = time.perf_counter()
                runs[name].append(
                    run(t.host, dict(t.ports), t.user, t.password, idle=idle, memory=targets[name]["memory"])
                )
                print(f"rep {rep + 1}/{reps} {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    finally:
        mailsrv.stop()
        if stopPeersAfter:
            stopPeers(peersDir)
    dovecotVersion = subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout.strip()
    import twisted

    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "messages": count,
        "idle": idle,
        "reps": reps,
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "twisted": twisted.__version__,
            "dovecot": dovecotVersion,
            "loadavg": os.getloadavg(),
        },
        "runs": runs,
        "rows": [],
    }
    for key, label, unit, scale in _TABLE:
        values = {name: [r[key] for r in results if key in r] for name, results in runs.items()}
        m = statistics.median(values["mailsrv"]) * scale if values["mailsrv"] else None
        d = statistics.median(values["dovecot"]) * scale if values["dovecot"] else None
        ratio = m / d if m is not None and d else None
        report["rows"].append({"figure": label, "unit": unit, "mailsrv": m, "dovecot": d, "ratio": ratio, "raw": values})
    return report


def markdownTable(report: dict[str, Any]) -> str:
    """
    The side-by-side rows as a Markdown table.
    """

    def cell(value: Optional[float]) -> str:
        return "—" if value is None else f"{value:.4g}"

    lines = [
        "| figure | unit | mailsrv | Dovecot | ratio m/D |",
        "|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}"
        lines.append(f"| {row['figure']} | {row['unit']} | {cell(row['mailsrv'])} | {cell(row['dovecot'])} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    """
    Start a mailsrv of our own on loopback, fill the folder, measure, print
    JSON (with the machine it ran on); with C{--side-by-side [--reps N]},
    the comparison with the reference Dovecot (see L{sideBySide}).
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if "--side-by-side" in sys.argv:
        reps = int(sys.argv[sys.argv.index("--reps") + 1]) if "--reps" in sys.argv else 2
        count = int(os.environ.get("IMAP_BENCH_MESSAGES", MESSAGES))
        idle = int(os.environ.get("IMAP_BENCH_IDLE", IDLE))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * idle + 1000)), hard))
        report = sideBySide(reps=reps, count=count, idle=idle)
        print(json.dumps(report, indent=2, default=str))
        print(markdownTable(report))
        return
    from mailsrv.testing.server import RunningServer

    count = int(os.environ.get("IMAP_BENCH_MESSAGES", MESSAGES))
    idle = int(os.environ.get("IMAP_BENCH_IDLE", IDLE))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * idle + 1000)), hard))
    with tempfile.TemporaryDirectory(prefix="imap-bench-") as tmp:
        from bench.target import limitsTable

        server = RunningServer(Path(tmp), endpoints=("smtp", "imaps"), extraConfig=limitsTable())
        user = "bench@example.test"
        server.addUser(user, "bench-password")
        generateMaildir(server.maildir(user), count)
        server.start()
        try:
            assert server.process is not None
            result = run("127.0.0.1", server.ports, user, "bench-password", pid=server.process.pid, idle=idle)
        finally:
            server.stop()
    result["messages"] = count
    result["machine"] = {
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
