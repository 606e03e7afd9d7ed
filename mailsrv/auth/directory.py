# -*- test-case-name: tests.auth.test_directory -*-
"""
The L{IDirectory} backed by docker-mailserver's files in C{config_dir}.

Lookups are answered from in-memory tables.  At most once per
C{reloadInterval} a lookup C{stat}s the two files and re-reads whichever
changed, so an account added with the C{mailsrv} command is seen by the
running server within a second, without a restart or a signal.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.auth.files import (
    ACCOUNTS_FILE,
    VIRTUAL_FILE,
    AccountsDocument,
    ConfigFileError,
    FileStamp,
    VirtualDocument,
    canonicalAddress,
    readText,
    statFile,
)
from mailsrv.interfaces import IDirectory

DEFAULT_MAX_DEPTH = 10


@dataclasses.dataclass
class _Watched:
    """
    One file and the version of it the tables were built from.  C{failed}
    is the stamp of a version that could not be read, so that the error is
    logged once per broken version rather than once per lookup.
    """

    path: Path
    stamp: Optional[FileStamp] = None
    failed: Optional[FileStamp] = None
    loaded: bool = False


def _domainOf(address: str) -> str:
    return address.rpartition("@")[2]


@implementer(IDirectory)
class FileDirectory:
    """
    Accounts from C{postfix-accounts.cf}, aliases from C{postfix-virtual.cf}.

    Local domains are the configured ones plus every domain that has an
    account or an alias (catch-alls included), as in docker-mailserver.

    @param configDir: the directory holding both files.
    @param domains: the configured local domains (C{server.domains}).
    @param recipientDelimiter: separates the user from an extension in
        C{user+tag@domain}; empty to disable sub-addressing.
    @param reloadInterval: minimum seconds between two checks of the files.
    @param clock: monotonic time source (injectable for tests).
    @param maxDepth: how deep alias expansion may nest before it gives up.
    """

    log = Logger()

    def __init__(
        self,
        configDir: Path,
        domains: Iterable[str],
        *,
        recipientDelimiter: str = "+",
        reloadInterval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        maxDepth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self._configDir = Path(configDir)
        self._configuredDomains = frozenset(d.strip().rstrip(".").lower() for d in domains)
        self._delimiter = recipientDelimiter
        self._reloadInterval = reloadInterval
        self._clock = clock
        self._maxDepth = maxDepth
        self._accountsFile = _Watched(self._configDir / ACCOUNTS_FILE)
        self._virtualFile = _Watched(self._configDir / VIRTUAL_FILE)
        self._accounts: dict[str, str] = {}
        self._aliases: dict[str, tuple[str, ...]] = {}
        self._localDomains: frozenset[str] = self._configuredDomains
        self._lastCheck: Optional[float] = None
        self._maybeReload()

    # ---------------------------------------------------------- reloading

    def _maybeReload(self) -> None:
        now = self._clock()
        if self._lastCheck is not None and now - self._lastCheck < self._reloadInterval:
            return
        self._lastCheck = now
        changed = False
        if self._refresh(self._accountsFile, self._parseAccounts):
            changed = True
        if self._refresh(self._virtualFile, self._parseVirtual):
            changed = True
        if changed:
            self._localDomains = (
                self._configuredDomains
                | {_domainOf(a) for a in self._accounts}
                | {_domainOf(a) for a in self._aliases}
            )

    def _refresh(self, watched: _Watched, parse: Callable[[str, str], None]) -> bool:
        """
        Re-read C{watched} if it changed since it was loaded; whether the
        tables changed.  On failure the previous tables stay in force.
        """
        current: Optional[FileStamp] = None
        try:
            current = statFile(watched.path)
            if watched.loaded and current == watched.stamp:
                return False
            if current is not None and current == watched.failed:
                return False
            text, stamp = readText(watched.path)
        except ConfigFileError as e:
            if current is None or current != watched.failed:
                # Logged once per broken version of the file.
                self.log.error(
                    "{problem}; still using the previous version",
                    problem=str(e),
                    path=str(watched.path),
                )
            watched.failed = current
            return False
        parse(text, str(watched.path))
        watched.stamp = stamp
        watched.failed = None
        watched.loaded = True
        self.log.info("Loaded {path}", path=str(watched.path))
        return True

    def _parseAccounts(self, text: str, path: str) -> None:
        self._accounts = AccountsDocument.fromText(text, path).accounts()

    def _parseVirtual(self, text: str, path: str) -> None:
        self._aliases = VirtualDocument.fromText(text, path).aliases()

    # ------------------------------------------------------------ lookups

    def isLocalDomain(self, domain: str) -> bool:
        self._maybeReload()
        return domain.strip().rstrip(".").lower() in self._localDomains

    def canonicalAccount(self, login: str) -> Optional[str]:
        self._maybeReload()
        account = canonicalAddress(login)
        return account if account in self._accounts else None

    def passwordHash(self, account: str) -> Optional[str]:
        self._maybeReload()
        return self._accounts.get(canonicalAddress(account))

    def expandRecipient(self, address: str) -> Sequence[str]:
        """
        The final destinations of mail for C{address}.

        Resolution of one address, first match wins:

         1. an alias of exactly that address: its targets, each resolved in
            turn (so an alias may point at another alias).  As in Postfix,
            an alias shadows an account of the same name; an alias that
            lists itself (C{me@x me@x,other@y}) delivers to the account and
            forwards a copy;
         2. an account of exactly that address: the account;
         3. with sub-addressing, C{user+tag@domain} is resolved as
            C{user@domain} by steps 1 and 2;
         4. the catch-all alias C{@domain}, only when nothing above matched.

        A target in a domain that is not local is returned as it is written
        (local part case kept): it is an external address, and the pipeline
        decides to forward it; callers must not assume every result is an
        account id.  Loops and chains deeper than C{maxDepth} are cut and
        logged; the rest of the expansion still counts.  Duplicates are
        removed, keeping the first occurrence.

        @return: empty when nobody here receives mail for C{address}.
        """
        self._maybeReload()
        out: list[str] = []
        self._resolve(canonicalAddress(address), 0, (), out)
        seen: set[str] = set()
        result = []
        for target in out:
            key = target.lower()
            if key not in seen:
                seen.add(key)
                result.append(target)
        return result

    def _resolve(self, address: str, depth: int, chain: tuple[str, ...], out: list[str]) -> None:
        if depth > self._maxDepth:
            self.log.warn(
                "Alias chain {chain} is deeper than {maxDepth}; cut at {address}",
                chain=" -> ".join(chain),
                maxDepth=self._maxDepth,
                address=address,
            )
            return
        for candidate in self._candidates(address):
            targets = self._aliases.get(candidate)
            if targets is not None:
                self._expandAlias(candidate, targets, depth, chain + (candidate,), out)
                return
            if candidate in self._accounts:
                out.append(candidate)
                return
        catchAll = self._aliases.get("@" + _domainOf(address))
        if catchAll is not None:
            self._expandAlias("@" + _domainOf(address), catchAll, depth, chain + (address,), out)

    def _candidates(self, address: str) -> list[str]:
        """
        The exact address, then the address without its extension.
        """
        candidates = [address]
        if self._delimiter:
            local, _, domain = address.rpartition("@")
            base, sep, _ = local.partition(self._delimiter)
            if sep and base:
                candidates.append(f"{base}@{domain}")
        return candidates

    def _expandAlias(
        self,
        alias: str,
        targets: Sequence[str],
        depth: int,
        chain: tuple[str, ...],
        out: list[str],
    ) -> None:
        for target in targets:
            canonical = canonicalAddress(target)
            if _domainOf(canonical) not in self._localDomains:
                out.append(target)
            elif canonical == alias:
                # "me@x me@x,other@y": keep a copy in the account.
                if canonical in self._accounts:
                    out.append(canonical)
            elif canonical in chain:
                self.log.warn(
                    "Alias loop {chain}; {target} skipped",
                    chain=" -> ".join(chain + (canonical,)),
                    target=canonical,
                )
            else:
                self._resolve(canonical, depth + 1, chain, out)
