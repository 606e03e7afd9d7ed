# -*- test-case-name: tests.storage.test_quota -*-
"""
Storage quotas from docker-mailserver's C{config_dir/dovecot-quotas.cf}.

One line per account, C{user@domain:limit}, where the limit uses Dovecot's
size syntax: a number of octets, optionally followed by C{B}, C{k}/C{K},
C{M}, C{G} or C{T} (powers of 1024, as Dovecot reads them; a trailing
C{B} as in C{500MB} is accepted too).  C{0} or a missing line means no
limit.  Blank lines and C{#} comments are ignored; a malformed line is
logged and ignored rather than locking the account out.

The file is re-read when its modification time or size changes, so
C{mailsrv quota set} takes effect without a restart.

Usage is measured, not tracked: the sizes of every message file of the
account (all folders), from the C{S=} field of the file name where present
(so no file is opened) or from C{stat}.  That is the same number Dovecot's
Maildir++ quota counts.  Only L{FileQuota.usage} touches the disk, in the
thread pool.  L{FileQuota} is protocol-neutral: IMAP APPEND uses it today,
SMTP delivery can wrap its target with it later.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.interfaces import IQuota
from mailsrv.storage.maildir_files import sizesFromBase, splitFilename
from mailsrv.storage.validation import splitAccount

QUOTAS_NAME = "dovecot-quotas.cf"

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+)\s*([bkmgtBKMGT]?)[bB]?\s*$")

Runner = Callable[..., "defer.Deferred[Any]"]


def parseSize(text: str) -> int:
    """
    Octets for a Dovecot size (C{1G}, C{500M}, C{10240}, C{100kB}).

    @raise ValueError: if C{text} is not one.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parseQuotas(text: str) -> tuple[dict[str, int], list[int]]:
    """
    Parse C{dovecot-quotas.cf}.

    @return: account (lower-cased) -> limit in octets (accounts with no
        limit left out), and the numbers of the lines that were ignored.
    """
    limits: dict[str, int] = {}
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        account, sep, size = line.rpartition(":")
        try:
            if not sep or "@" not in account:
                raise ValueError(line)
            limit = parseSize(size)
        except ValueError:
            bad.append(number)
            continue
        if limit > 0:
            limits[account.strip().lower()] = limit
        else:
            limits.pop(account.strip().lower(), None)
    return limits, bad


def maildirUsage(mailRoot: Path) -> Callable[[str], int]:
    """
    A function measuring an account's usage under a Maildir++ root
    (C{data_dir/mail}); blocking.
    """

    def usage(account: str) -> int:
        local, domain = splitAccount(account)
        accountDir = Path(mailRoot) / domain / local
        folders = [accountDir]
        try:
            folders += [
                Path(e.path)
                for e in os.scandir(accountDir)
                if e.name.startswith(".") and not e.name.startswith("..") and e.is_dir(follow_symlinks=False)
            ]
        except FileNotFoundError:
            return 0
        total = 0
        for folder in folders:
            for subdir in ("cur", "new"):
                try:
                    entries = list(os.scandir(folder / subdir))
                except FileNotFoundError:
                    continue
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    size = sizesFromBase(splitFilename(entry.name)[0])[0]
                    if size is None:
                        try:
                            size = entry.stat(follow_symlinks=False).st_size
                        except FileNotFoundError:
                            continue
                    total += size
        return total

    return usage


@implementer(IQuota)
class FileQuota:
    """
    Limits from C{dovecot-quotas.cf}, usage from a measuring function.

    @param configDir: where C{dovecot-quotas.cf} lives.
    @param measure: account -> octets used; blocking, run in a thread.
    @param runInThread: how to run C{measure} (default: the reactor's
        thread pool); tests pass a synchronous runner.
    """

    log = Logger()

    def __init__(
        self,
        configDir: Path,
        measure: Callable[[str], int],
        runInThread: Optional[Runner] = None,
    ) -> None:
        self._path = Path(configDir) / QUOTAS_NAME
        self._measure = measure
        if runInThread is None:
            from twisted.internet import threads

            runInThread = threads.deferToThread
        self._run = runInThread
        self._lock = threading.Lock()
        self._stamp: Optional[tuple[int, int]] = None
        self._limits: dict[str, int] = {}

    def _load(self) -> dict[str, int]:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            self._stamp, self._limits = None, {}
            return self._limits
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    text = self._path.read_text("utf-8", "replace")
                except FileNotFoundError:
                    text = ""
                self._limits, bad = parseQuotas(text)
                self._stamp = stamp
                for number in bad:
                    self.log.warn("Ignoring malformed line {line} of {path}", line=number, path=str(self._path))
            return self._limits

    def limit(self, account: str) -> Optional[int]:
        return self._load().get(account.lower())

    def usage(self, account: str) -> "defer.Deferred[int]":
        return defer.maybeDeferred(self._run, self._measure, account)
