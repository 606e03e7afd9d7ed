"""
C{python -m bench}: start mailsrv and the reference stack, run each
workload against both (alternating which goes first), several times, and
report medians, spread and the mailsrv/reference ratio as a table and JSON.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

from bench.target import MailsrvUnderTest, Target, defaultPeersDir, peersRunning, raiseFileLimit, startPeers, stopPeers


#: workload name -> (module, function); each function is C{run(target, *,
#: quick) -> {figure: metric}}, in the order they run.
WORKLOADS = {
    "smtp": ("bench.smtp_ingest", "run"),
    "submission": ("bench.submission", "run"),
    "imap": ("bench.imap_bench", "runTarget"),
    "pop3": ("bench.pop3", "run"),
    "idle": ("bench.idle", "run"),
    "bigmsg": ("bench.bigmsg", "run"),
    "queue": ("bench.queue", "run"),
    "sieve": ("bench.sieve_ingest", "run"),
}

#: Workloads that run against mailsrv only (the queue starts its own mailsrv
#: with loopback fixtures; the reference stack has no Sieve configured).
MAILSRV_ONLY = {"queue", "sieve"}

#: Workloads that start mailsrv processes of their own and so take
#: C{passwordScheme} too.
OWN_MAILSRV = {"queue", "idle"}

#: Where each run's logs and JSON go (one directory per run).
RUNS = Path("/var/tmp/mailsrv-bench")


def _normalise(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """
    Accept bare numbers from workloads that do not use L{bench.common.metric}.
    """
    out = {}
    for name, value in raw.items():
        if isinstance(value, dict) and "value" in value:
            out[name] = {"value": float(value["value"]), "unit": value.get("unit", ""), "better": value.get("better", "info")}
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = {"value": float(value), "unit": "", "better": "info"}
    return out


def _summary(values: list[float]) -> Optional[dict[str, Any]]:
    if not values:
        return None
    median = statistics.median(values)
    return {
        "median": median,
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / median if median else 0.0,
        "runs": values,
    }


def _command(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machineFacts() -> dict[str, Any]:
    import twisted

    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "postfix": _command("postconf", "-h", "mail_version") or "not installed",
        "dovecot": _command("dovecot", "--version") or "not installed",
    }


def formatTable(results: dict[str, Any], peers: bool) -> str:
    """
    The results as a Markdown table; mailsrv-only workloads show "—" in
    the reference column.
    """
    rows = [("workload", "figure", "unit", "mailsrv median (spread)", "reference median (spread)", "ratio m/r", "better")]

    def cell(s: Optional[dict[str, Any]]) -> str:
        if s is None:
            return "—"
        return f"{s['median']:.4g} (±{50 * s['spread']:.0f}%)"

    for workload, figures in results.items():
        errors = figures.get("error")
        if isinstance(errors, list):
            # The figures of the runs that worked still go in the table.
            for error in errors:
                lines = [line for line in str(error).splitlines() if line.strip()]
                who = lines[0].split(":", 1)[0] if lines else ""
                rows.append((workload, f"error ({who}): {lines[-1].strip()[:100] if lines else ''}", "", "", "", "", ""))
        for name, f in figures.items():
            if name == "error":
                continue
            ratio = f"{f['ratio']:.2f}" if f.get("ratio") is not None else "—"
            reference = cell(f["reference"]) if peers else "—"
            rows.append((workload, name, f["unit"], cell(f["mailsrv"]), reference, ratio, f["better"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition (smoke test)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per figure (default 3)")
    parser.add_argument("--only", default="", help="comma-separated workloads: " + ",".join(WORKLOADS))
    parser.add_argument("--no-peers", action="store_true", help="benchmark mailsrv alone")
    parser.add_argument("--peers-dir", type=Path, default=defaultPeersDir(), help="the reference stack's scripts (default %(default)s)")
    peers = parser.add_mutually_exclusive_group()
    peers.add_argument("--stop-peers", action="store_true", help="stop the reference stack afterwards even if it was running before")
    peers.add_argument("--keep-peers", action="store_true", help="leave the reference stack running afterwards even if this run started it")
    parser.add_argument("--json", type=Path, help="write the results as JSON here too")
    parser.add_argument(
        "--run-dir",
        type=Path,
        help=f"directory for this run's logs and results.json (default {RUNS}/<UTC time>)",
    )
    parser.add_argument(
        "--mailsrv-hash",
        choices=("PLAIN", "default"),
        default="PLAIN",
        help="password storage for mailsrv's accounts: PLAIN like the reference's passwd-file "
        "(default), or mailsrv's default ARGON2ID",
    )
    options = parser.parse_args(argv)
    reps = 1 if options.quick else max(1, options.reps)

    wanted = [w.strip() for w in options.only.split(",") if w.strip()] if options.only else list(WORKLOADS)
    unknown = [w for w in wanted if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads: {', '.join(unknown)}")
    runners: dict[str, Callable[..., dict[str, Any]]] = {}
    for name in WORKLOADS:
        if name not in wanted:
            continue
        module, function = WORKLOADS[name]
        run = getattr(importlib.import_module(module), function)
        if name in OWN_MAILSRV:
            run = functools.partial(run, passwordScheme=options.mailsrv_hash)
        runners[name] = run

    started = datetime.datetime.now(datetime.timezone.utc)
    loadStart = os.getloadavg()
    runDir = options.run_dir or RUNS / started.strftime("%Y%m%dT%H%M%SZ")
    runDir.mkdir(parents=True, exist_ok=True)
    print(f"bench: logs and results in {runDir}", file=sys.stderr)
    raiseFileLimit()
    mailsrv = MailsrvUnderTest(passwordScheme=options.mailsrv_hash)
    targets: list[Target] = [mailsrv.start()]
    peersNote = "not requested (--no-peers)"
    startedPeers = False
    if not options.no_peers:
        startedPeers = not peersRunning()
        try:
            targets.append(startPeers(options.peers_dir, runDir))
            peersNote = "running"
        except Exception as e:
            peersNote = f"could not start: {e}"
            print(f"reference stack {peersNote}; reporting mailsrv alone", file=sys.stderr)
    havePeers = len(targets) == 2

    raw: dict[str, dict[str, dict[str, list[float]]]] = {}
    meta: dict[str, dict[str, tuple[str, str]]] = {}
    errors: dict[str, list[str]] = {}
    try:
        for workload, run in runners.items():
            for rep in range(reps):
                order = targets if rep % 2 == 0 else list(reversed(targets))
                for target in order:
                    if workload in MAILSRV_ONLY and target.name != "mailsrv":
                        continue
                    t = time.monotonic()
                    try:
                        target.settle()
                        figures = _normalise(run(target, quick=options.quick))
                    except Exception:
                        message = traceback.format_exc(limit=3)
                        errors.setdefault(workload, []).append(f"{target.name}: {message}")
                        print(f"{workload} on {target.name} failed:\n{message}", file=sys.stderr)
                        continue
                    for name, f in figures.items():
                        raw.setdefault(workload, {}).setdefault(name, {}).setdefault(target.name, []).append(f["value"])
                        meta.setdefault(workload, {})[name] = (f["unit"], f["better"])
                    print(f"{workload} rep {rep + 1}/{reps} {target.name}: {time.monotonic() - t:.1f} s", file=sys.stderr)
    finally:
        shutil.copyfile(mailsrv.server.logFile, runDir / "mailsrv.log")
        mailsrv.stop()
        if not options.no_peers and (options.stop_peers or (startedPeers and not options.keep_peers)):
            left = stopPeers(options.peers_dir, runDir)
            if left:
                print(f"reference stack processes still alive after stop.sh: {left}", file=sys.stderr)

    results: dict[str, Any] = {}
    for workload in runners:
        figures = {}
        for name, byTarget in raw.get(workload, {}).items():
            m = _summary(byTarget.get("mailsrv", []))
            r = _summary(byTarget.get("reference", []))
            ratio = m["median"] / r["median"] if m and r and r["median"] else None
            unit, better = meta[workload][name]
            figures[name] = {"unit": unit, "better": better, "mailsrv": m, "reference": r, "ratio": ratio}
        results[workload] = figures
        if workload in errors:
            results[workload] = {**figures, "error": errors[workload]} if figures else {"error": errors[workload]}

    report = {
        "date": started.isoformat(timespec="seconds"),
        "machine": machineFacts(),
        "options": {"quick": options.quick, "reps": reps, "workloads": list(runners), "mailsrvHash": options.mailsrv_hash},
        "peers": peersNote,
        "runDir": str(runDir),
        # Load averages (1, 5, 15 min) at the start and the end: other work
        # on the machine shows here first.
        "loadavg": {"start": loadStart, "end": os.getloadavg()},
        "results": results,
    }
    table = formatTable(results, havePeers)
    print(f"\nmailsrv vs Postfix+Dovecot ({peersNote}), {report['date']}, reps={reps}\n")
    print(table)
    text = json.dumps(report, indent=2) + "\n"
    (runDir / "results.json").write_text(text)
    (runDir / "table.md").write_text(table + "\n")
    if options.json:
        options.json.write_text(text)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
