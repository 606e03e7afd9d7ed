# -*- test-case-name: tests.storage.test_sieve_scripts -*-
"""
Each account's active Sieve script, where Dovecot's Pigeonhole keeps it in
docker-mailserver's layout: C{home/.dovecot.sieve} in the account's
directory, usually a symlink to one of the scripts in C{home/sieve/}.  A
mailbox moved over from docker-mailserver keeps its filters.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.errors import MailError
from mailsrv.interfaces import ISieveScripts
from mailsrv.sieve import Script, SieveError, parseScript
from mailsrv.storage.maildir import MaildirStore

#: Where the active script is, relative to the account's directory.
ACTIVE_SCRIPT = Path("home") / ".dovecot.sieve"

#: Larger scripts are refused (Pigeonhole's sieve_max_script_size default).
MAX_SCRIPT_SIZE = 1024 * 1024

_StatKey = tuple[int, int, int, int]


@implementer(ISieveScripts)
class MaildirSieveScripts:
    """
    Reads and compiles each account's active script when it changes: a
    delivery costs two C{stat}s while it does not.
    """

    log = Logger()

    def __init__(
        self,
        store: MaildirStore,
        maxSize: int = MAX_SCRIPT_SIZE,
        runBlocking: Callable[..., "defer.Deferred[Any]"] = defer.maybeDeferred,
    ) -> None:
        """
        @param runBlocking: runs the reading and compiling of a changed
            script (a thread in the server; large scripts take seconds).
        """
        self._store = store
        self._maxSize = maxSize
        self._runBlocking = runBlocking
        self._compiled: dict[str, tuple[_StatKey, Optional[Script]]] = {}
        # account -> its script's path: asked at every delivery, and the
        # account name checks are the costly part (one entry per account).
        self._paths: dict[str, Path] = {}

    def scriptPath(self, account: str) -> Path:
        """
        @raise MailError: C{SYNTAX} for an invalid account.
        """
        path = self._paths.get(account)
        if path is None:
            path = self._paths[account] = self._store._account(account)[1] / ACTIVE_SCRIPT
        return path

    def _status(self, account: str) -> Optional[tuple[Path, os.stat_result]]:
        try:
            path = self.scriptPath(account)
            return path, os.stat(path)
        except (FileNotFoundError, NotADirectoryError, MailError):
            self._compiled.pop(account, None)
            return None
        except OSError as e:
            self.log.warn(
                "Cannot read the Sieve script of {account} ({error}): mail is kept in the INBOX",
                account=account,
                error=e.strerror,
            )
            return None

    def hasActiveScript(self, account: str) -> bool:
        return self._status(account) is not None

    def activeScript(self, account: str) -> "defer.Deferred[Optional[Script]]":
        found = self._status(account)
        if found is None:
            return defer.succeed(None)
        path, status = found
        key = (status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size)
        cached = self._compiled.get(account)
        if cached is not None and cached[0] == key:
            return defer.succeed(cached[1])

        def compiled(script: Optional[Script]) -> Optional[Script]:
            self._compiled[account] = (key, script)
            return script

        return self._runBlocking(self._compile, account, path, status.st_size).addCallback(compiled)

    def _compile(self, account: str, path: Path, size: int) -> Optional[Script]:
        """
        The compiled script, or L{None} (logged once per version of the
        file) when it cannot be used.
        """
        if size > self._maxSize:
            self.log.warn(
                "The Sieve script {path} of {account} is {size} octets, over the limit of {limit}: "
                "mail is kept in the INBOX until it is made smaller",
                path=str(path),
                account=account,
                size=size,
                limit=self._maxSize,
            )
            return None
        try:
            source = path.read_bytes()
            script = parseScript(source, maxSize=self._maxSize)
        except OSError as e:
            self.log.warn(
                "Cannot read the Sieve script {path} of {account} ({error}): mail is kept in the INBOX",
                path=str(path),
                account=account,
                error=e.strerror,
            )
            return None
        except SieveError as e:
            self.log.warn(
                "The Sieve script {path} of {account} does not compile ({error}): "
                "mail is kept in the INBOX until it is fixed",
                path=str(path),
                account=account,
                error=str(e),
            )
            return None
        self.log.info("Sieve script {path} of {account} loaded", path=str(path), account=account)
        return script
