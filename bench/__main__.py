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
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

from bench.target import MailsrvUnderTest, Target, startPeers, stopPeers

REPO = Path(__file__).resolve().parents[1]

#: workload name -> module; each module has C{run(target, *, quick) -> dict}.
WORKLOADS = {
    "smtp": "bench.smtp_ingest",
    "submission": "bench.submission",
    "pop3": "bench.pop3",
    "bigmsg": "bench.bigmsg",
    "queue": "bench.queue",
}

#: Workloads that run against mailsrv only (they start their own mailsrv
#: with loopback fixtures; C{run} also takes C{passwordScheme}).
MAILSRV_ONLY = {"queue"}


def _imapRunner() -> Optional[Callable[..., dict[str, Any]]]:
    """
    The IMAP workload lives in C{bench/imap_bench.py} (its own signature:
    C{run(host, ports, user, password)}); absent until it lands.
    """
    try:
        module = importlib.import_module("bench.imap_bench")
    except ImportError:
        return None
    run = getattr(module, "run", None)

    def runIMAP(target: Target, *, quick: bool = False) -> dict[str, Any]:
        assert run is not None
        return dict(run(target.host, dict(target.ports), target.user, target.password))

    return runIMAP if run is not None else None


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
            return "-"
        return f"{s['median']:.4g} (±{50 * s['spread']:.0f}%)"

    for workload, figures in results.items():
        if "error" in figures and not isinstance(figures.get("error"), dict):
            rows.append((workload, "error: " + str(figures["error"])[:80], "", "", "", "", ""))
            continue
        for name, f in figures.items():
            ratio = f"{f['ratio']:.2f}" if f.get("ratio") is not None else "-"
            reference = "—" if workload in MAILSRV_ONLY else cell(f["reference"]) if peers else "-"
            rows.append((workload, name, f["unit"], cell(f["mailsrv"]), reference, ratio, f["better"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition (smoke test)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per figure (default 3)")
    parser.add_argument("--only", default="", help="comma-separated workloads: " + ",".join([*WORKLOADS, "imap"]))
    parser.add_argument("--no-peers", action="store_true", help="benchmark mailsrv alone")
    parser.add_argument("--peers-dir", type=Path, default=REPO.parent / "shared" / "peers")
    parser.add_argument("--stop-peers", action="store_true", help="stop the reference stack afterwards")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--mailsrv-hash",
        choices=("PLAIN", "default"),
        default="PLAIN",
        help="password storage for mailsrv's accounts: PLAIN like the reference's passwd-file "
        "(default), or mailsrv's default ARGON2ID",
    )
    options = parser.parse_args(argv)
    reps = 1 if options.quick else max(1, options.reps)

    available = [*WORKLOADS, "imap"]
    wanted = [w.strip() for w in options.only.split(",") if w.strip()] if options.only else available
    unknown = [w for w in wanted if w not in available]
    if unknown:
        parser.error(f"unknown workloads: {', '.join(unknown)}")
    runners: dict[str, Callable[..., dict[str, Any]]] = {}
    for name in wanted:
        if name == "imap":
            imap = _imapRunner()
            if imap is not None:
                runners[name] = imap
            elif options.only:
                parser.error("bench/imap_bench.py is not available")
        elif name in MAILSRV_ONLY:
            runners[name] = functools.partial(
                importlib.import_module(WORKLOADS[name]).run, passwordScheme=options.mailsrv_hash
            )
        else:
            runners[name] = importlib.import_module(WORKLOADS[name]).run

    started = datetime.datetime.now(datetime.timezone.utc)
    mailsrv = MailsrvUnderTest(passwordScheme=options.mailsrv_hash)
    targets: list[Target] = [mailsrv.start()]
    peersNote = "not requested (--no-peers)"
    if not options.no_peers:
        try:
            targets.append(startPeers(options.peers_dir))
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
        mailsrv.stop()
        if havePeers and options.stop_peers:
            stopPeers(options.peers_dir)

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
        "results": results,
    }
    table = formatTable(results, havePeers)
    print(f"\nmailsrv vs Postfix+Dovecot ({peersNote}), {report['date']}, reps={reps}\n")
    print(table)
    if options.json:
        options.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
