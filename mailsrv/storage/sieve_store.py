# -*- test-case-name: tests.storage.test_sieve_store -*-
"""
Sieve scripts in Pigeonhole's file layout (what docker-mailserver
configures with C{sieve = file:~/sieve;active=~/.dovecot.sieve}, C{~}
being C{home/} inside the account's Maildir directory)::

    <root>/<domain>/<local>/home/
        sieve/<name>.sieve          one file per script
        sieve/tmp/                  scripts being written
        .dovecot.sieve              symlink to sieve/<name>.sieve: the
                                    active script (no link: none active)

Delivery reads C{home/.dovecot.sieve}; everything else is ManageSieve's.

Invariants:

 - A script is written to C{sieve/tmp/} (C{O_EXCL}), fsync'd, renamed to
   C{sieve/<name>.sieve} and the directory fsync'd: readers see the old
   or the new content, and a stored script survives a crash.
 - The active link is replaced by creating the new link under a temporary
   name in C{home/} and renaming it over C{.dovecot.sieve}, so there is
   never an instant without an active script while switching.  The link
   is relative (C{sieve/<name>.sieve}), as Pigeonhole writes it, so the
   tree can be moved.
 - A regular file at C{home/.dovecot.sieve} (docker-mailserver copies a
   script from its config directory there) is not one of the account's
   scripts: it is not listed as active.  Activating or deactivating
   moves it into C{sieve/} under a new name (C{dovecot-sieve-<date>})
   before it is replaced, so nothing the user had is lost.
 - Names are checked by L{checkScriptName} before any path is built; a
   name never contains C{/} and is never C{.} or C{..}, so every script
   path is one entry of C{sieve/}.
 - Operations on one account are serialised by a per-account lock (one
   mailsrv process serves every ManageSieve endpoint).

All file work runs in a thread (C{runInThread}), never on the reactor.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import SCRIPT_ACTIVE, SCRIPT_EXISTS, ISieveScriptStore
from mailsrv.storage.commit import MaildirTree, unlinkQuietly
from mailsrv.storage.fsync import createDurably, fsyncDirectory
from mailsrv.storage.validation import splitAccount

__all__ = ["MaildirSieveStore", "checkScriptName", "MAX_SCRIPT_NAME"]

Runner = Callable[..., "defer.Deferred[Any]"]

HOME = "home"
SCRIPTS = "sieve"
ACTIVE_LINK = ".dovecot.sieve"
SUFFIX = ".sieve"
TMP = "tmp"

#: Longest script name in octets of UTF-8: with the suffix it stays well
#: inside the 255 octets of a directory entry.
MAX_SCRIPT_NAME = 200

# RFC 5804 section 1.6: no C0 or C1 control characters, DEL, LINE
# SEPARATOR or PARAGRAPH SEPARATOR; "/" for path safety.
_BAD_NAME_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029/]")


def checkScriptName(name: str) -> str:
    """
    Check a script name (RFC 5804 section 1.6, and path safety).

    @return: C{name}, unchanged.
    @raise MailError: C{SYNTAX} for an empty or over-long name, one with
        control characters, C{/} or lone surrogates (not UTF-8), and for
        C{.} and C{..}.
    """
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise MailError(ErrorKind.SYNTAX, "Invalid script name")
    if _BAD_NAME_CHARS.search(name):
        raise MailError(ErrorKind.SYNTAX, "Invalid script name")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise MailError(ErrorKind.SYNTAX, "Invalid script name") from None
    if len(encoded) > MAX_SCRIPT_NAME:
        raise MailError(ErrorKind.SYNTAX, "Script name too long")
    return name


def _defaultRunner(reactor: Any) -> Runner:
    from twisted.internet import threads

    if reactor is None:
        return threads.deferToThread

    def run(f: Callable[..., Any], *args: Any) -> "defer.Deferred[Any]":
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

    return run


def _temporary(what: str) -> MailError:
    return MailError(ErrorKind.TEMP, what, temporary=True)


class _Account:
    """
    The paths of one account's scripts.
    """

    def __init__(self, root: Path, account: str) -> None:
        local, domain = splitAccount(account)
        self.account = f"{local}@{domain}"
        self.home = root / domain / local / HOME
        self.scripts = self.home / SCRIPTS
        self.tmp = self.scripts / TMP
        self.active = self.home / ACTIVE_LINK

    def script(self, name: str) -> Path:
        return self.scripts / (checkScriptName(name) + SUFFIX)


@implementer(ISieveScriptStore)
class MaildirSieveStore:
    """
    L{ISieveScriptStore} over the Maildir tree under C{root} (normally
    C{data_dir/mail}).

    @param maxScripts: scripts per account; 0 for no limit.
    @param maxScriptSize: largest script in octets.
    @param reactor: provides the thread pool; L{None} for the global one.
    @param runInThread: overrides how blocking work runs (tests pass a
        synchronous runner).
    @param clock: POSIX time, for the names of scripts kept aside.
    """

    log = Logger()

    def __init__(
        self,
        root: Path,
        maxScripts: int = 20,
        maxScriptSize: int = 1024 * 1024,
        reactor: Any = None,
        runInThread: Optional[Runner] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.maxScripts = maxScripts
        self.maxScriptSize = maxScriptSize
        self._run = runInThread or _defaultRunner(reactor)
        self._clock = clock
        self._tree = MaildirTree(self.root)
        self._locks: dict[str, threading.Lock] = {}
        self._locksLock = threading.Lock()

    # ------------------------------------------------------------ plumbing

    def _call(self, account: str, f: Callable[..., Any], *args: Any) -> "defer.Deferred[Any]":
        """
        Run C{f(paths, *args)} in a thread under the account's lock.  An
        invalid account fails the Deferred, never raises.
        """
        try:
            paths = _Account(self.root, account)
        except MailError as e:
            return defer.fail(e)
        return self._run(self._locked, paths, f, *args)

    def _locked(self, paths: _Account, f: Callable[..., Any], *args: Any) -> Any:
        with self._locksLock:
            lock = self._locks.setdefault(paths.account, threading.Lock())
        with lock:
            try:
                return f(paths, *args)
            except MailError:
                raise
            except OSError as e:
                self.log.error(
                    "Sieve script storage of {account} failed: {problem}",
                    account=paths.account,
                    problem=f"{e.strerror or e} ({e.filename or ''})",
                )
                raise _temporary("Temporary storage failure") from None

    def _ensureDirectories(self, paths: _Account) -> None:
        """
        Create C{home/sieve/tmp/} and the directories leading to it, and
        make C{home/sieve} durable in its parents (once per process).
        """
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        chain = [p for p in reversed(paths.tmp.parents) if self.root in p.parents]
        for path in [*chain, paths.tmp]:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
        self._tree.makeDurable(paths.home, SCRIPTS)

    def _names(self, paths: _Account) -> list[str]:
        try:
            entries = list(os.scandir(paths.scripts))
        except FileNotFoundError:
            return []
        names = []
        for entry in entries:
            if not entry.name.endswith(SUFFIX) or not entry.is_file(follow_symlinks=False):
                continue
            name = entry.name[: -len(SUFFIX)]
            try:
                names.append(checkScriptName(name))
            except MailError:
                self.log.warn("Ignoring Sieve script file {path}: invalid name", path=entry.path)
        return sorted(names)

    def _activeState(self, paths: _Account) -> tuple[str, Optional[str]]:
        """
        What C{home/.dovecot.sieve} is: C{("none", None)}, C{("link",
        name)} for a link to one of the scripts (C{name} L{None} when it
        points anywhere else or to a missing script), or C{("file",
        None)} for a regular file not managed here.

        @raise MailError: C{TEMP} for anything else there (a directory).
        """
        try:
            info = os.lstat(paths.active)
        except FileNotFoundError:
            return "none", None
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(paths.active)
            resolved = Path(os.path.normpath(paths.home / target))
            name = resolved.name
            if resolved.parent != paths.scripts or not name.endswith(SUFFIX):
                return "link", None
            name = name[: -len(SUFFIX)]
            try:
                checkScriptName(name)
            except MailError:
                return "link", None
            if not self._exists(paths.scripts / (name + SUFFIX)):
                return "link", None
            return "link", name
        if stat.S_ISREG(info.st_mode):
            return "file", None
        self.log.error("{path} is neither a link nor a file", path=str(paths.active))
        raise _temporary("Temporary storage failure")

    def _exists(self, path: Path) -> bool:
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except FileNotFoundError:
            return False

    def _checkSpace(self, paths: _Account, name: str, size: int) -> None:
        checkScriptName(name)
        if size > self.maxScriptSize:
            raise MailError(
                ErrorKind.TOO_BIG, f"Script is too large (max {self.maxScriptSize} octets)"
            )
        if self.maxScripts:
            names = self._names(paths)
            if name not in names and len(names) >= self.maxScripts:
                raise MailError(
                    ErrorKind.TOO_MANY, f"Too many scripts (max {self.maxScripts})"
                )

    # ------------------------------------------------------------ ISieveScriptStore

    def listScripts(self, account: str) -> "defer.Deferred[Sequence[tuple[str, bool]]]":
        def list_(paths: _Account) -> list[tuple[str, bool]]:
            _, active = self._activeState(paths)
            return [(name, name == active) for name in self._names(paths)]

        return self._call(account, list_)

    def getScript(self, account: str, name: str) -> "defer.Deferred[bytes]":
        def get(paths: _Account, name: str) -> bytes:
            path = paths.script(name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                raise MailError(ErrorKind.NOT_FOUND, "Script does not exist") from None
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise MailError(ErrorKind.NOT_FOUND, "Script does not exist") from None
                raise
            with open(fd, "rb") as f:
                return f.read()

        return self._call(account, get, name)

    def checkSpace(self, account: str, name: str, size: int) -> "defer.Deferred[None]":
        return self._call(account, self._checkSpace, name, size)

    def putScript(self, account: str, name: str, content: bytes) -> "defer.Deferred[None]":
        return self._call(account, self._put, name, content)

    def _put(self, paths: _Account, name: str, content: bytes) -> None:
        self._checkSpace(paths, name, len(content))
        target = paths.script(name)
        self._ensureDirectories(paths)
        temporary = paths.tmp / f"{uuid.uuid4().hex}{SUFFIX}"
        try:
            createDurably(temporary, content)
            os.rename(temporary, target)
        except BaseException:
            unlinkQuietly(temporary)
            raise
        fsyncDirectory(paths.scripts)

    def deleteScript(self, account: str, name: str) -> "defer.Deferred[None]":
        def delete(paths: _Account, name: str) -> None:
            path = paths.script(name)
            if not self._exists(path):
                raise MailError(ErrorKind.NOT_FOUND, "Script does not exist")
            if self._activeState(paths) == ("link", name):
                raise MailError(
                    ErrorKind.PERM, "Cannot delete the active script", reason=SCRIPT_ACTIVE
                )
            os.unlink(path)
            fsyncDirectory(paths.scripts)

        return self._call(account, delete, name)

    def renameScript(self, account: str, old: str, new: str) -> "defer.Deferred[None]":
        return self._call(account, self._rename, old, new)

    def _rename(self, paths: _Account, old: str, new: str) -> None:
        source, target = paths.script(old), paths.script(new)
        if not self._exists(source):
            raise MailError(ErrorKind.NOT_FOUND, "Script does not exist")
        # Linking refuses an existing target atomically, which a rename
        # (that replaces it) cannot.
        exists = MailError(
            ErrorKind.PERM, "A script with that name already exists", reason=SCRIPT_EXISTS
        )
        try:
            os.link(source, target)
        except FileExistsError:
            raise exists from None
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK):
                raise
            # No hard links on this file system: the per-account lock
            # keeps the check and the rename together, but the link of an
            # active script dangles for a moment (a delivery then runs no
            # script).
            if self._exists(target):
                raise exists from None
            active = self._activeState(paths) == ("link", old)
            os.rename(source, target)
            if active:
                self._link(paths, new)
            fsyncDirectory(paths.scripts)
            return
        if self._activeState(paths) == ("link", old):
            # Point the link at the new name before the old one goes.
            fsyncDirectory(paths.scripts)
            self._link(paths, new)
        os.unlink(source)
        fsyncDirectory(paths.scripts)

    def setActive(self, account: str, name: str) -> "defer.Deferred[Optional[str]]":
        return self._call(account, self._setActive, name)

    def _setActive(self, paths: _Account, name: str) -> Optional[str]:
        if name and not self._exists(paths.script(name)):
            raise MailError(ErrorKind.NOT_FOUND, "Script does not exist")
        kind, _ = self._activeState(paths)
        kept = self._keepUnmanaged(paths) if kind == "file" else None
        if name:
            self._link(paths, name)
        elif kind != "none":
            os.unlink(paths.active)
            fsyncDirectory(paths.home)
        return kept

    def _link(self, paths: _Account, name: str) -> None:
        """
        Point C{.dovecot.sieve} at C{sieve/<name>.sieve}, atomically.
        """
        temporary = paths.home / f"{ACTIVE_LINK}.{uuid.uuid4().hex}"
        os.symlink(f"{SCRIPTS}/{name}{SUFFIX}", temporary)
        try:
            os.rename(temporary, paths.active)
        except BaseException:
            unlinkQuietly(temporary)
            raise
        fsyncDirectory(paths.home)

    def _keepUnmanaged(self, paths: _Account) -> str:
        """
        Give the regular file at C{.dovecot.sieve} a name among the scripts
        (a second link to it, made durable), so that replacing or removing
        C{.dovecot.sieve} loses nothing.  Not counted against
        C{maxScripts}: keeping what the user had comes first.

        @return: the script name it is kept under.
        """
        self._ensureDirectories(paths)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self._clock()))
        base = f"dovecot-sieve-{stamp}"
        for attempt in range(1, 1000):
            name = base if attempt == 1 else f"{base}-{attempt}"
            target = paths.scripts / (name + SUFFIX)
            try:
                os.link(paths.active, target)
            except FileExistsError:
                continue
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK):
                    raise
                self._copy(paths, target)
            fsyncDirectory(paths.scripts)
            self.log.info(
                "Kept the unmanaged active Sieve script of {account} as {script}",
                account=paths.account,
                script=name,
            )
            return name
        raise _temporary("Temporary storage failure")

    def _copy(self, paths: _Account, target: Path) -> None:
        """
        Copy C{.dovecot.sieve} to C{target} durably, for file systems
        without hard links.
        """
        with open(paths.active, "rb") as f:
            content = f.read()
        createDurably(target, content)
