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
        [sys.executable, "-m", "bench", "--quick", "--no-peers", "--only", "smtp", "--json", str(out)],
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
