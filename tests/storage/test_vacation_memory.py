"""
Tests for L{mailsrv.storage.vacation_memory}.
"""

from __future__ import annotations

import json
from pathlib import Path

from mailsrv.storage.maildir import MaildirStore
from mailsrv.storage.vacation_memory import MEMORY_FILE, MaildirVacationMemory

from .helpers import synchronousRunner

ALICE = "alice@example.com"


def memory(tmp_path: Path, **kwargs: int) -> MaildirVacationMemory:
    store = MaildirStore(tmp_path / "mail", runInThread=synchronousRunner, hostname="mx.example")
    return MaildirVacationMemory(store, **kwargs)


def test_onceUntilExpiry(tmp_path: Path) -> None:
    """
    A key is claimed once; claimed again only after its time has passed.
    Other keys and other accounts are independent.
    """
    m = memory(tmp_path)
    assert m.claim(ALICE, "k1", until=1000.0, now=0.0)
    assert not m.claim(ALICE, "k1", until=2000.0, now=500.0)
    assert m.claim(ALICE, "k2", until=1000.0, now=500.0)
    assert m.claim("bob@example.com", "k1", until=1000.0, now=500.0)
    assert m.claim(ALICE, "k1", until=3000.0, now=1000.0)
    assert not m.claim(ALICE, "k1", until=4000.0, now=2999.0)


def test_fileBoundedAndExpiredDropped(tmp_path: Path) -> None:
    """
    Expired entries are dropped, and past the limit those due soonest go.
    """
    m = memory(tmp_path, maxEntries=3)
    for i in range(5):
        assert m.claim(ALICE, f"k{i}", until=100.0 + i, now=0.0)
    stored = json.loads((tmp_path / "mail" / "example.com" / "alice" / MEMORY_FILE).read_bytes())
    assert sorted(stored) == ["k2", "k3", "k4"]
    assert m.claim(ALICE, "late", until=500.0, now=103.5)
    stored = json.loads((tmp_path / "mail" / "example.com" / "alice" / MEMORY_FILE).read_bytes())
    assert sorted(stored) == ["k4", "late"]


def test_damagedFileStartsAfresh(tmp_path: Path) -> None:
    m = memory(tmp_path)
    assert m.claim(ALICE, "k", until=100.0, now=0.0)
    path = tmp_path / "mail" / "example.com" / "alice" / MEMORY_FILE
    path.write_bytes(b"{not json")
    assert m.claim(ALICE, "k", until=100.0, now=0.0)
    assert not m.claim(ALICE, "k", until=100.0, now=0.0)
