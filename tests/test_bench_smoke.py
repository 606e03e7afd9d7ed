"""
Smoke test of the benchmark harness: C{python -m bench} in its quick mode
against mailsrv alone must run end to end and write JSON of the documented
shape.  It measures nothing; the figures live in C{bench/README.md}.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quickSMTPRun(tmp_path: Path) -> None:
    """
    C{--quick --no-peers --only smtp} exits 0 and reports, for each
    concurrency, mailsrv figures with a median and no reference figures or
    ratios, the peers' absence being stated.
    """
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-peers", "--only", "smtp", "--json", str(out),
         "--run-dir", str(tmp_path / "run")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert set(report) >= {"date", "machine", "options", "peers", "results"}
    assert report["peers"].startswith("not requested")
    assert report["options"]["workloads"] == ["smtp"]
    assert report["machine"]["nproc"] >= 1
    figures = report["results"]["smtp"]
    for c in (1, 10, 50):
        accepted = figures[f"C={c} accepted"]
        assert accepted["unit"] == "msg/s" and accepted["better"] == "higher"
        assert accepted["mailsrv"]["median"] > 0
        assert len(accepted["mailsrv"]["runs"]) == 1
        assert accepted["reference"] is None and accepted["ratio"] is None
        assert figures[f"C={c} all in Maildir"]["mailsrv"]["median"] > 0
    assert "C=50 accepted" in result.stdout


def test_quickSieveRun(tmp_path: Path) -> None:
    """
    C{--only sieve}: ingest with a Sieve script, mailsrv only; every message
    is counted in the INBOX, so the script ran and kept them.
    """
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-peers", "--only", "sieve", "--json", str(out),
         "--run-dir", str(tmp_path / "run")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figure = json.loads(out.read_text())["results"]["sieve"]["C=10 into Maildir, with a Sieve script"]
    assert figure["mailsrv"]["median"] > 0 and figure["reference"] is None
    assert "Sieve script" in (tmp_path / "run" / "mailsrv.log").read_text()


def test_quickIdleRun(tmp_path: Path) -> None:
    """
    C{--only idle}: the idle-connection figures for both sizes of the quick
    mode, memory per connection and NOOP latencies measured, the load
    generator's CPU reported; logs and JSON in the run directory.
    """
    runDir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-peers", "--only", "idle", "--run-dir", str(runDir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((runDir / "results.json").read_text())
    assert (runDir / "mailsrv.log").is_file() and (runDir / "table.md").is_file()
    figures = report["results"]["idle"]
    assert figures["NOOP median, no idle connections"]["mailsrv"]["median"] > 0
    for n in (100, 300):
        assert figures[f"N={n} RSS per connection"]["unit"] == "KiB"
        assert figures[f"N={n} RSS per connection"]["mailsrv"]["median"] > 0
        noop = figures[f"N={n} NOOP median"]["mailsrv"]["median"]
        assert 0 < noop <= figures[f"N={n} NOOP p95"]["mailsrv"]["median"]
        assert figures[f"N={n} loadgen CPU, setup"]["better"] == "info"


def test_limitsTableRaisesConnectionLimits() -> None:
    """
    Every mailsrv the bench starts gets one C{[limits]} table: the defaults
    of L{MAILSRV_LIMITS} (connection caps far above the 10,000 idle
    connections) with per-server overrides on top, and no connection limit
    that the configuration loader reads is left at its default.
    """
    from bench.target import MAILSRV_LIMITS, limitsTable, unraisedConnectionLimits
    from mailsrv.config.load import parseConfig

    assert MAILSRV_LIMITS["max_connections"] > 10_000
    table = limitsTable({"max_connections": 5, "command_timeout": 30})
    assert table.startswith("[limits]\n")
    assert "max_connections = 5\n" in table and "command_timeout = 30\n" in table
    assert [line for line in table.splitlines() if line.startswith("max_connections =")] == ["max_connections = 5"]
    assert unraisedConnectionLimits() == []
    import tomllib

    data = tomllib.loads(
        '[server]\nhostname = "mail.example.test"\ndomains = ["example.test"]\n\n' + limitsTable()
    )
    limits = parseConfig(data, "bench").limits
    assert limits.maxConnections == MAILSRV_LIMITS["max_connections"]


def test_peerScriptDoesNotHoldTheCaller(tmp_path: Path) -> None:
    """
    A start script whose daemon keeps the script's stdout and stderr open
    (as Dovecot does) returns as soon as the script exits; its output is
    in the log file.
    """
    import os
    import signal
    import time

    from bench.target import _runScript

    pidFile = tmp_path / "daemon.pid"
    script = tmp_path / "start.sh"
    script.write_text(f"echo starting\nsleep 60 &\necho $! > {pidFile}\necho started >&2\n")
    log = tmp_path / "run" / "peers.log"
    started = time.monotonic()
    try:
        assert _runScript(script, log, timeout=30) == 0
        assert time.monotonic() - started < 10
    finally:
        if pidFile.exists():
            os.kill(int(pidFile.read_text()), signal.SIGTERM)
    text = log.read_text()
    assert "starting" in text and "started" in text
