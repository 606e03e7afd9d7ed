# -*- test-case-name: tests.auth.test_files -*-
"""
docker-mailserver's account and alias files, read and written.

 - C{postfix-accounts.cf}: one C{user@domain|{SCHEME}hash} per line,
   optionally followed by C{|userdb-fields} (kept as they are).
 - C{postfix-virtual.cf}: a Postfix virtual(5) source table,
   C{alias@domain target[,target...]} (targets separated by commas and/or
   white space; C{@domain} as the key is a catch-all).  As in any Postfix
   table source, a line starting with white space continues the previous
   one.

Both: blank lines and lines starting with C{#} are ignored; trailing white
space and CRLF line ends are tolerated.  A malformed line is logged with its
line number and skipped, so that one typo does not lock every user out.

The files are edited through L{AccountsDocument} and L{VirtualDocument},
which keep every line they do not change (comments, blank lines, even
malformed lines) so that an operator's notes survive the C{mailsrv}
command.  Writers hold L{lockedConfig} and replace a file with
L{atomicWrite}; readers (the running server) never lock, as they only ever
see a complete old file or a complete new one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence

from twisted.logger import Logger

_log = Logger()

ACCOUNTS_FILE = "postfix-accounts.cf"
VIRTUAL_FILE = "postfix-virtual.cf"
LOCK_FILE = ".mailsrv-accounts.lock"

ACCOUNTS_MODE = 0o600  # it holds password hashes
VIRTUAL_MODE = 0o644

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_MAX_LOCAL = 64  # RFC 5321 section 4.5.3.1.1


class ConfigFileError(Exception):
    """
    A whole file could not be read (permissions, I/O, not UTF-8).  The text
    names the file and what to do about it.
    """


@dataclasses.dataclass(frozen=True)
class LineProblem:
    """
    One malformed line: what is wrong and where (1-based line number).
    """

    path: str
    lineNumber: int
    problem: str

    def __str__(self) -> str:
        return f"{self.path}:{self.lineNumber}: {self.problem}"


# ------------------------------------------------------------- addresses


def isDomain(domain: str) -> bool:
    """
    Whether C{domain} (lower case, no trailing dot) is a sequence of valid
    host name labels.  Internationalised domains must be given in their
    ASCII (C{xn--}) form.
    """
    if not domain or len(domain) > 253:
        return False
    return all(_LABEL.match(label) for label in domain.split("."))


def addressProblem(address: str, allowCatchAll: bool = False) -> Optional[str]:
    """
    What is wrong with C{address}, or L{None} if it may be written to the
    files.

    Besides basic address syntax this refuses what would break the file
    formats: C{|} (the accounts field separator), C{,} and white space (alias
    target separators) and control characters.

    @param allowCatchAll: accept C{@domain}, the alias catch-all.
    """
    if address.count("@") != 1:
        return "an address needs exactly one '@'"
    local, _, domain = address.partition("@")
    if not local:
        if not allowCatchAll:
            return "the local part (before '@') is empty"
    else:
        if len(local) > _MAX_LOCAL:
            return f"the local part is longer than {_MAX_LOCAL} characters"
        for ch in local:
            if ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F:
                return "the local part contains white space or control characters"
            if ch in "|,":
                return f"the local part contains {ch!r}"
    if not isDomain(domain.lower()):
        return f"{domain!r} is not a valid domain name"
    return None


def canonicalAddress(address: str) -> str:
    """
    The canonical form of an address: lower-cased, surrounding white space
    and a trailing dot on the domain removed.  Local parts are compared
    case-insensitively throughout mailsrv (see L{mailsrv.interfaces}).
    """
    address = address.strip().lower()
    local, sep, domain = address.rpartition("@")
    if sep:
        return f"{local}@{domain.rstrip('.')}"
    return address


def _looksLikeAddress(address: str, allowCatchAll: bool) -> bool:
    local, sep, domain = address.rpartition("@")
    return bool(sep and domain and (local or allowCatchAll) and "@" not in local)


# ----------------------------------------------------------- line model


@dataclasses.dataclass
class _Line:
    """
    One logical line of a file.  C{key} is L{None} for comments, blank and
    malformed lines, which are written back exactly as read.
    """

    text: str
    key: Optional[str] = None


def _logicalLines(text: str, continuation: bool) -> Iterator[tuple[int, str]]:
    """
    Yield C{(lineNumber, line)} with line ends and trailing white space
    removed; with C{continuation}, lines starting with white space are
    joined to the previous non-comment line, as Postfix does.
    """
    pending: Optional[list] = None
    physical = text.split("\n")
    if physical and physical[-1] == "":
        physical.pop()  # the end of the last line, not an empty line
    for number, raw in enumerate(physical, start=1):
        line = raw.rstrip()
        isContinuation = (
            continuation
            and pending is not None
            and line[:1].isspace()
            and line.strip() != ""
            and not line.lstrip().startswith("#")
        )
        if isContinuation:
            assert pending is not None
            pending[1] += "\n" + line
            continue
        if pending is not None:
            yield pending[0], pending[1]
            pending = None
        if line.strip() == "" or line.lstrip().startswith("#"):
            yield number, line
        else:
            pending = [number, line]
    if pending is not None:
        yield pending[0], pending[1]


def _isIgnorable(line: str) -> bool:
    stripped = line.strip()
    return stripped == "" or stripped.startswith("#")


def _joinLines(lines: Sequence[_Line]) -> str:
    texts = [line.text for line in lines]
    while texts and texts[-1] == "":
        texts.pop()
    return "".join(t + "\n" for t in texts)


def _report(problems: list[LineProblem], path: str, number: int, problem: str) -> None:
    found = LineProblem(path, number, problem)
    problems.append(found)
    _log.warn(
        "{path}:{lineNumber}: {problem}; line ignored",
        path=path,
        lineNumber=number,
        problem=problem,
    )


# ------------------------------------------------------------- accounts


class AccountsDocument:
    """
    C{postfix-accounts.cf}, parsed and editable, keeping unchanged lines.

    @ivar problems: the malformed lines found when parsing.
    """

    def __init__(
        self,
        lines: list[_Line],
        hashes: dict[str, tuple[str, str]],
        problems: list[LineProblem],
    ) -> None:
        self._lines = lines
        self._hashes = hashes  # account -> (hash, extra "|fields" or "")
        self.problems = problems

    @classmethod
    def fromText(cls, text: str, path: str = ACCOUNTS_FILE) -> "AccountsDocument":
        """
        Parse the file's text.  The first entry for an account wins, as in
        Dovecot's passwd-file; later ones are reported as malformed.
        """
        lines: list[_Line] = []
        hashes: dict[str, tuple[str, str]] = {}
        problems: list[LineProblem] = []
        for number, line in _logicalLines(text, continuation=False):
            if _isIgnorable(line):
                lines.append(_Line(line))
                continue
            address, sep, rest = line.strip().partition("|")
            address = canonicalAddress(address)
            passwordHash, _, extra = rest.partition("|")
            passwordHash = passwordHash.strip()
            problem = None
            if not sep:
                problem = "expected 'user@domain|{SCHEME}hash'"
            elif not _looksLikeAddress(address, allowCatchAll=False):
                problem = "the account is not a user@domain address"
            elif not passwordHash.startswith("{") or "}" not in passwordHash:
                problem = f"the password of {address} has no {{SCHEME}} prefix"
            elif address in hashes:
                problem = f"duplicate account {address} (the first entry is used)"
            if problem is not None:
                _report(problems, path, number, problem)
                lines.append(_Line(line))
                continue
            hashes[address] = (passwordHash, f"|{extra}" if extra else "")
            lines.append(_Line(line, address))
        return cls(lines, hashes, problems)

    def accounts(self) -> dict[str, str]:
        """
        Canonical account id -> stored C{{SCHEME}hash}.
        """
        return {account: entry[0] for account, entry in self._hashes.items()}

    def __contains__(self, account: str) -> bool:
        return canonicalAddress(account) in self._hashes

    def setPassword(self, account: str, passwordHash: str) -> None:
        """
        Set the hash of an account, adding the account if it is new.  Extra
        userdb fields of an existing entry are kept.
        """
        account = canonicalAddress(account)
        extra = self._hashes.get(account, ("", ""))[1]
        text = f"{account}|{passwordHash}{extra}"
        self._hashes[account] = (passwordHash, extra)
        for line in self._lines:
            if line.key == account:
                line.text = text
                return
        self._lines.append(_Line(text, account))

    def remove(self, account: str) -> bool:
        """
        Remove an account; whether it existed.
        """
        account = canonicalAddress(account)
        if account not in self._hashes:
            return False
        del self._hashes[account]
        self._lines = [line for line in self._lines if line.key != account]
        return True

    def toText(self) -> str:
        return _joinLines(self._lines)


# ------------------------------------------------------------- aliases


class VirtualDocument:
    """
    C{postfix-virtual.cf}, parsed and editable, keeping unchanged lines.

    Alias keys are canonical (lower case).  Targets keep the case of their
    local part as written, because a remote server may treat it as
    significant; their domain is lower-cased.

    @ivar problems: the malformed lines found when parsing.
    """

    def __init__(
        self,
        lines: list[_Line],
        aliases: dict[str, list[str]],
        problems: list[LineProblem],
    ) -> None:
        self._lines = lines
        self._aliases = aliases
        self.problems = problems

    @classmethod
    def fromText(cls, text: str, path: str = VIRTUAL_FILE) -> "VirtualDocument":
        """
        Parse the file's text.  The first entry for an alias wins, as with
        Postfix's C{postmap}; later ones are reported as malformed.
        """
        lines: list[_Line] = []
        aliases: dict[str, list[str]] = {}
        problems: list[LineProblem] = []
        for number, line in _logicalLines(text, continuation=True):
            if _isIgnorable(line):
                lines.append(_Line(line))
                continue
            fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
            alias = canonicalAddress(fields[0])
            targets = [_normaliseTarget(t) for t in fields[1:]]
            problem = None
            if line[:1].isspace():
                problem = "continuation line without an entry before it"
            elif not _looksLikeAddress(alias, allowCatchAll=True):
                problem = f"{fields[0]!r} is not an alias@domain or @domain key"
            elif not targets:
                problem = f"alias {alias} has no target"
            elif alias in aliases:
                problem = f"duplicate alias {alias} (the first entry is used)"
            else:
                bad = [t for t in targets if not _looksLikeAddress(t, allowCatchAll=False)]
                if bad:
                    problem = f"alias {alias}: target {bad[0]!r} is not an address"
            if problem is not None:
                _report(problems, path, number, problem)
                lines.append(_Line(line))
                continue
            aliases[alias] = _dedupe(targets)
            lines.append(_Line(line, alias))
        return cls(lines, aliases, problems)

    def aliases(self) -> dict[str, tuple[str, ...]]:
        """
        Canonical alias (or C{@domain}) -> targets, in file order.
        """
        return {alias: tuple(targets) for alias, targets in self._aliases.items()}

    def addTarget(self, alias: str, target: str) -> bool:
        """
        Add C{target} to an alias, creating the alias if needed; whether it
        was not there already.
        """
        alias = canonicalAddress(alias)
        target = _normaliseTarget(target)
        targets = self._aliases.get(alias)
        if targets is None:
            self._aliases[alias] = [target]
            self._lines.append(_Line(f"{alias} {target}", alias))
            return True
        if target.lower() in (t.lower() for t in targets):
            return False
        targets.append(target)
        self._rewrite(alias)
        return True

    def removeTarget(self, alias: str, target: str) -> bool:
        """
        Remove one target; the alias goes when its last target does.
        Whether the target was there.
        """
        alias = canonicalAddress(alias)
        targets = self._aliases.get(alias)
        if targets is None:
            return False
        kept = [t for t in targets if t.lower() != target.strip().lower()]
        if len(kept) == len(targets):
            return False
        if not kept:
            return self.removeAlias(alias)
        self._aliases[alias] = kept
        self._rewrite(alias)
        return True

    def removeAlias(self, alias: str) -> bool:
        """
        Remove an alias with all its targets; whether it existed.
        """
        alias = canonicalAddress(alias)
        if alias not in self._aliases:
            return False
        del self._aliases[alias]
        self._lines = [line for line in self._lines if line.key != alias]
        return True

    def _rewrite(self, alias: str) -> None:
        text = f"{alias} {','.join(self._aliases[alias])}"
        for line in self._lines:
            if line.key == alias:
                line.text = text
                return

    def toText(self) -> str:
        return _joinLines(self._lines)


def _normaliseTarget(target: str) -> str:
    local, sep, domain = target.strip().rpartition("@")
    if not sep:
        return target.strip()
    return f"{local}@{domain.rstrip('.').lower()}"


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item.lower() not in seen:
            seen.add(item.lower())
            out.append(item)
    return out


# ------------------------------------------------------------- file I/O


@dataclasses.dataclass(frozen=True)
class FileStamp:
    """
    What identifies one version of a file without reading it.  The change
    time is included so that fixing a file's permissions is noticed too.
    """

    mtimeNs: int
    size: int
    inode: int
    ctimeNs: int

    @classmethod
    def fromStat(cls, st: os.stat_result) -> "FileStamp":
        return cls(st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def statFile(path: Path) -> Optional[FileStamp]:
    """
    The stamp of C{path}, or L{None} if it does not exist.

    @raise ConfigFileError: if it cannot be examined.
    """
    try:
        return FileStamp.fromStat(os.stat(path))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigFileError(f"{path}: cannot examine: {e.strerror}") from None


def readText(path: Path) -> tuple[str, Optional[FileStamp]]:
    """
    The text of C{path} and the stamp of exactly the version read (empty
    and L{None} if the file does not exist: a fresh install has no accounts).

    @raise ConfigFileError: if it exists but cannot be read or is not UTF-8.
    """
    try:
        with open(path, "rb") as f:
            stamp = FileStamp.fromStat(os.fstat(f.fileno()))
            data = f.read()
    except FileNotFoundError:
        return "", None
    except OSError as e:
        raise ConfigFileError(
            f"{path}: cannot read: {e.strerror}; check its owner and permissions"
        ) from None
    try:
        return data.decode("utf-8"), stamp
    except UnicodeDecodeError as e:
        raise ConfigFileError(
            f"{path}: not UTF-8 (byte {e.start}); save it as UTF-8"
        ) from None


def readAccounts(configDir: Path) -> AccountsDocument:
    """
    Parse C{configDir/postfix-accounts.cf} (empty if missing).

    @raise ConfigFileError: if it cannot be read.
    """
    path = configDir / ACCOUNTS_FILE
    text, _ = readText(path)
    return AccountsDocument.fromText(text, str(path))


def readVirtual(configDir: Path) -> VirtualDocument:
    """
    Parse C{configDir/postfix-virtual.cf} (empty if missing).

    @raise ConfigFileError: if it cannot be read.
    """
    path = configDir / VIRTUAL_FILE
    text, _ = readText(path)
    return VirtualDocument.fromText(text, str(path))


def writeAccounts(configDir: Path, document: AccountsDocument) -> None:
    """
    Replace the accounts file atomically, mode 0600.  Call with
    L{lockedConfig} held.
    """
    atomicWrite(configDir / ACCOUNTS_FILE, document.toText(), ACCOUNTS_MODE, keepMode=False)


def writeVirtual(configDir: Path, document: VirtualDocument) -> None:
    """
    Replace the alias file atomically, keeping its mode if it exists.  Call
    with L{lockedConfig} held.
    """
    atomicWrite(configDir / VIRTUAL_FILE, document.toText(), VIRTUAL_MODE, keepMode=True)


def atomicWrite(path: Path, text: str, mode: int, keepMode: bool = False) -> None:
    """
    Replace C{path} with C{text} so that a reader (or a crash) sees either
    the old or the new file, never a mix: write a temporary file in the
    same directory, fsync it, rename it over C{path}, fsync the directory.

    The owner and group of an existing file are kept when the process may
    set them (typically root editing a file the server reads as another
    user), so an edit does not make the file unreadable to the server.

    @param mode: permission bits of the new file.
    @param keepMode: use the existing file's permission bits instead of
        C{mode} when the file exists.
    """
    directory = path.parent
    try:
        existing: Optional[os.stat_result] = os.stat(path)
    except FileNotFoundError:
        existing = None
    if keepMode and existing is not None:
        mode = existing.st_mode & 0o7777
    fd, tmpName = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        if existing is not None:
            with contextlib.suppress(PermissionError):
                os.fchown(fd, existing.st_uid, existing.st_gid)
        data = text.encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmpName)
        raise
    os.close(fd)
    try:
        os.replace(tmpName, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmpName)
        raise
    _fsyncDirectory(directory)


def _fsyncDirectory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:
        # Some file systems cannot fsync a directory; the rename is still
        # atomic there.
        if e.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def lockedConfig(configDir: Path) -> Iterator[None]:
    """
    Hold an exclusive lock on C{configDir/.mailsrv-accounts.lock} so that
    two runs of the C{mailsrv} command cannot interleave their
    read-modify-write of the account and alias files (the second waits).
    """
    lockPath = configDir / LOCK_FILE
    fd = os.open(lockPath, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
