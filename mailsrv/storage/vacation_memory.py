# -*- test-case-name: tests.storage.test_vacation_memory -*-
"""
Whom an account's Sieve vacation already answered, and until when it must
not answer them again (RFC 5230 section 4.2, C{:days}): one small JSON file
per account, C{home/.mailsrv-vacation.json}, beside the scripts.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from mailsrv.storage.fsync import writeFileAtomically
from mailsrv.storage.maildir import MaildirStore

MEMORY_FILE = Path("home") / ".mailsrv-vacation.json"
LOCK_FILE = Path("home") / ".mailsrv-vacation.lock"

#: Remembered senders per account; past it, those due soonest are forgotten
#: (a flood of distinct senders must not grow the file without bound).
MAX_ENTRIES = 10_000


class MaildirVacationMemory:
    """
    Blocking: call from a thread.
    """

    def __init__(self, store: MaildirStore, maxEntries: int = MAX_ENTRIES) -> None:
        self._store = store
        self._maxEntries = maxEntries

    def claim(self, account: str, key: str, until: float, now: float) -> bool:
        """
        Whether a reply for C{key} (a sender and a vacation C{:handle}) may
        go now; if so it is recorded as answered until C{until}.  Not
        durable: after a crash at worst one more reply goes out.

        @raise mailsrv.errors.MailError: C{SYNTAX} for an invalid account.
        @raise OSError: when the file cannot be read or written.
        """
        home = self._store._account(account)[1] / "home"
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(home.parent / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = home.parent / MEMORY_FILE
            answered = self._read(path)
            answered = {k: t for k, t in answered.items() if t > now}
            if key in answered:
                return False
            answered[key] = until
            if len(answered) > self._maxEntries:
                keep = sorted(answered.items(), key=lambda item: item[1])[-self._maxEntries :]
                answered = dict(keep)
            writeFileAtomically(path, json.dumps(answered).encode("ascii"), 0o600, durable=False)
            return True
        finally:
            os.close(fd)

    @staticmethod
    def _read(path: Path) -> dict[str, float]:
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError:
            return {}  # damaged: start afresh (costs at most one reply per sender)
        if not isinstance(data, dict):
            return {}
        return {k: float(t) for k, t in data.items() if isinstance(k, str) and isinstance(t, (int, float))}
