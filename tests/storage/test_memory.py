# -*- test-case-name: tests.storage.test_memory -*-
"""
Tests for what is particular to L{mailsrv.storage.memory}; the shared
behaviour is in C{test_behaviour.py}.
"""

from __future__ import annotations

from mailsrv.storage.memory import MemoryMailStore

from .helpers import successResultOf


def test_clockGivesDatesAndUidValidity() -> None:
    """
    The injected clock gives deliveries their internal date and folders
    their UIDVALIDITY, which stays strictly increasing when the clock does
    not move.
    """
    store = MemoryMailStore(clock=lambda: 1_700_000_000.5)
    writer = store.startMessage(["a@example.com"])
    writer.write(b"x\r\n")
    successResultOf(writer.commit())
    inbox = store.openFolder("a@example.com")
    assert inbox.messages()[0].internalDate == 1_700_000_000.5
    assert inbox.uidValidity() == 1_700_000_000
    store.createFolder("a@example.com", "X")
    assert store.openFolder("a@example.com", "X").uidValidity() == 1_700_000_001


def test_accountIdsAreCanonicalised() -> None:
    """
    An account id differing only in case reaches the same mailboxes.
    """
    store = MemoryMailStore()
    writer = store.startMessage(["Alice@Example.com"])
    successResultOf(writer.commit())
    assert len(store.openFolder("alice@example.com").messages()) == 1
