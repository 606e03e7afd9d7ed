# -*- test-case-name: tests.storage.test_sieve_store -*-
"""
Tests for L{mailsrv.storage.sieve_store}: Pigeonhole's file layout under
the account's Maildir directory, atomic and durable writes, the active
link, name checks and the limits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import SCRIPT_ACTIVE, SCRIPT_EXISTS, ISieveScriptStore
from mailsrv.storage.sieve_store import MAX_SCRIPT_NAME, MaildirSieveStore, checkScriptName

from .helpers import failureResultOf, successResultOf, synchronousRunner
from .test_maildir import FsyncRecorder

ALICE = "alice@example.com"
BOB = "bob@example.com"
SCRIPT = b'require "fileinto";\r\nfileinto "Lists";\r\n'
# 2023-11-14 22:13:20 UTC
NOW = 1_700_000_000.0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "mail"


def makeStore(root: Path, runner: Any = synchronousRunner, **kw: Any) -> MaildirSieveStore:
    kw.setdefault("maxScripts", 3)
    kw.setdefault("maxScriptSize", 100)
    return MaildirSieveStore(root, runInThread=runner, clock=lambda: NOW, **kw)


@pytest.fixture
def store(root: Path) -> MaildirSieveStore:
    return makeStore(root)


def home(root: Path, account: str = ALICE) -> Path:
    local, domain = account.split("@")
    return root / domain / local / "home"


def error(d: Any) -> MailError:
    failure = failureResultOf(d, MailError)
    assert isinstance(failure.value, MailError)
    return failure.value


def test_provides(store: MaildirSieveStore) -> None:
    """
    The store provides L{ISieveScriptStore}.
    """
    assert verifyObject(ISieveScriptStore, store)


# ------------------------------------------------------------------ layout


def test_layout(store: MaildirSieveStore, root: Path) -> None:
    """
    Scripts are home/sieve/<name>.sieve in the account's Maildir
    directory; the active one is the relative symlink home/.dovecot.sieve
    -> sieve/<name>.sieve; without an active script there is no link.
    """
    assert successResultOf(store.listScripts(ALICE)) == []
    successResultOf(store.putScript(ALICE, "main", SCRIPT))
    assert (home(root) / "sieve" / "main.sieve").read_bytes() == SCRIPT
    assert os.listdir(home(root) / "sieve" / "tmp") == []
    assert not os.path.lexists(home(root) / ".dovecot.sieve")
    assert successResultOf(store.setActive(ALICE, "main")) is None
    link = home(root) / ".dovecot.sieve"
    assert os.readlink(link) == "sieve/main.sieve"
    assert link.read_bytes() == SCRIPT
    assert successResultOf(store.listScripts(ALICE)) == [("main", True)]
    assert successResultOf(store.setActive(ALICE, "")) is None
    assert not os.path.lexists(link)
    assert successResultOf(store.listScripts(ALICE)) == [("main", False)]
    # Nothing but home/ was added to the account directory.
    assert os.listdir(root / "example.com" / "alice") == ["home"]
    assert sorted(os.listdir(home(root))) == ["sieve"]


def test_listSortedAndFiltered(store: MaildirSieveStore, root: Path) -> None:
    """
    LISTSCRIPTS lists the .sieve files of sieve/, sorted, marking the
    active one; other files, directories and links there are ignored.
    """
    for name in ("b", "a", "c"):
        successResultOf(store.putScript(ALICE, name, SCRIPT))
    successResultOf(store.setActive(ALICE, "b"))
    scripts = home(root) / "sieve"
    (scripts / "notes.txt").write_text("x")
    (scripts / "dir.sieve").mkdir()
    os.symlink("a.sieve", scripts / "link.sieve")
    (scripts / "tmp" / "half.sieve").write_text("x")
    assert successResultOf(store.listScripts(ALICE)) == [("a", False), ("b", True), ("c", False)]


def test_accountsSeparate(store: MaildirSieveStore, root: Path) -> None:
    """
    Each account has its own scripts; the account id is canonicalised.
    """
    successResultOf(store.putScript("Alice@Example.COM", "a", SCRIPT))
    assert successResultOf(store.listScripts(ALICE)) == [("a", False)]
    assert successResultOf(store.listScripts(BOB)) == []


def test_invalidAccount(store: MaildirSieveStore) -> None:
    """
    An account id that is not path-safe fails the Deferred (never
    raises), before any path is built.
    """
    for account in ("../x@example.com", "alice", "a/b@example.com"):
        assert error(store.listScripts(account)).kind is ErrorKind.SYNTAX


# -------------------------------------------------------------- put and get


def test_putReplaces(store: MaildirSieveStore, root: Path) -> None:
    """
    PUTSCRIPT of an existing name replaces it; the active script stays
    active with the new content.
    """
    successResultOf(store.putScript(ALICE, "main", SCRIPT))
    successResultOf(store.setActive(ALICE, "main"))
    successResultOf(store.putScript(ALICE, "main", b"keep;\r\n"))
    assert successResultOf(store.getScript(ALICE, "main")) == b"keep;\r\n"
    assert (home(root) / ".dovecot.sieve").read_bytes() == b"keep;\r\n"
    assert successResultOf(store.listScripts(ALICE)) == [("main", True)]


def test_getMissing(store: MaildirSieveStore, root: Path) -> None:
    """
    A missing script is NOT_FOUND; so is a symlink planted in sieve/
    (never followed).
    """
    assert error(store.getScript(ALICE, "x")).kind is ErrorKind.NOT_FOUND
    successResultOf(store.putScript(ALICE, "a", SCRIPT))
    os.symlink("/etc/passwd", home(root) / "sieve" / "evil.sieve")
    assert error(store.getScript(ALICE, "evil")).kind is ErrorKind.NOT_FOUND


def test_putDurable(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A stored script is durable before the Deferred fires: its content is
    fsync'd (as the temporary file), then the sieve/ directory after the
    rename; the first script also makes the new directories durable.
    All of it runs in the thread runner.
    """
    recorder = FsyncRecorder(monkeypatch)
    store = makeStore(root, recorder.runner)
    successResultOf(store.putScript(ALICE, "main", SCRIPT))
    scripts = home(root) / "sieve"
    [content] = [p for p in recorder.synced if p.startswith(str(scripts / "tmp") + "/")]
    assert content.endswith(".sieve")
    assert recorder.synced[-1] == str(scripts)
    assert recorder.synced.index(content) < recorder.synced.index(str(scripts))
    for directory in (root, root / "example.com", root / "example.com" / "alice", home(root)):
        assert str(directory) in recorder.synced
    assert recorder.outsideRunner == []
    # The next script pays only for itself.
    recorder.synced.clear()
    successResultOf(store.putScript(ALICE, "other", SCRIPT))
    assert len(recorder.synced) == 2


def test_putAtomic(store: MaildirSieveStore, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A put that fails before its rename leaves the old script as it was
    and no temporary file.
    """
    successResultOf(store.putScript(ALICE, "main", SCRIPT))

    def failingRename(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", failingRename)
    failure = error(store.putScript(ALICE, "main", b"keep;"))
    assert failure.kind is ErrorKind.TEMP and failure.temporary
    assert successResultOf(store.getScript(ALICE, "main")) == SCRIPT
    assert os.listdir(home(root) / "sieve" / "tmp") == []


def test_activationDurable(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Activation, deactivation, delete and rename fsync the directories they
    change, in the thread runner.
    """
    recorder = FsyncRecorder(monkeypatch)
    store = makeStore(root, recorder.runner)
    successResultOf(store.putScript(ALICE, "a", SCRIPT))
    successResultOf(store.putScript(ALICE, "b", SCRIPT))
    for operation, directory in (
        (lambda: store.setActive(ALICE, "a"), home(root)),
        (lambda: store.renameScript(ALICE, "a", "c"), home(root) / "sieve"),
        (lambda: store.deleteScript(ALICE, "b"), home(root) / "sieve"),
        (lambda: store.setActive(ALICE, ""), home(root)),
    ):
        recorder.synced.clear()
        successResultOf(operation())
        assert recorder.synced[-1] == str(directory)
    assert recorder.outsideRunner == []


# ------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a/b", "/", "tab\t", "nl\n", "nul\x00", "del\x7f", "c1\x85", "ls\u2028", "ps\u2029",
     "x" * (MAX_SCRIPT_NAME + 1), "\udcff"],
)
def test_invalidNames(store: MaildirSieveStore, root: Path, name: str) -> None:
    """
    RFC 5804 section 1.6 (no control characters, DEL, C1, line and
    paragraph separators; UTF-8) plus path safety: no "/", not "." or
    "..", a length limit.  Nothing is created for a refused name.
    """
    with pytest.raises(MailError) as e:
        checkScriptName(name)
    assert e.value.kind is ErrorKind.SYNTAX
    for d in (
        store.putScript(ALICE, name, SCRIPT),
        store.getScript(ALICE, name),
        store.setActive(ALICE, name) if name else store.getScript(ALICE, name),
        store.deleteScript(ALICE, name),
        store.renameScript(ALICE, name, "ok"),
        store.checkSpace(ALICE, name, 1),
    ):
        assert error(d).kind is ErrorKind.SYNTAX
    assert not root.exists() or not any(root.rglob("*.sieve"))


@pytest.mark.parametrize("name", ["Ferien ☀", 'with "quotes"', ".hidden", "a.b.sieve", "x" * MAX_SCRIPT_NAME, "tmp"])
def test_validNames(store: MaildirSieveStore, name: str) -> None:
    """
    Spaces, quotes, dots and any printable Unicode are fine.
    """
    successResultOf(store.putScript(ALICE, name, SCRIPT))
    assert successResultOf(store.listScripts(ALICE)) == [(name, False)]
    assert successResultOf(store.getScript(ALICE, name)) == SCRIPT


# ------------------------------------------------------------------ limits


def test_maxScripts(store: MaildirSieveStore) -> None:
    """
    One script more than maxScripts is TOO_MANY; replacing one is not a
    new script.
    """
    for name in ("a", "b", "c"):
        successResultOf(store.putScript(ALICE, name, SCRIPT))
    failure = error(store.putScript(ALICE, "d", SCRIPT))
    assert failure.kind is ErrorKind.TOO_MANY and failure.message == "Too many scripts (max 3)"
    assert error(store.checkSpace(ALICE, "d", 1)).kind is ErrorKind.TOO_MANY
    successResultOf(store.putScript(ALICE, "a", b"keep;"))
    successResultOf(store.checkSpace(ALICE, "a", 1))


def test_noScriptLimit(root: Path) -> None:
    """
    maxScripts = 0 means no limit.
    """
    store = makeStore(root, maxScripts=0)
    for i in range(5):
        successResultOf(store.putScript(ALICE, f"s{i}", SCRIPT))
    assert len(successResultOf(store.listScripts(ALICE))) == 5


def test_maxScriptSize(store: MaildirSieveStore, root: Path) -> None:
    """
    A script over maxScriptSize is TOO_BIG (also for HAVESPACE); nothing
    is written.
    """
    successResultOf(store.putScript(ALICE, "a", b"x" * 100))
    failure = error(store.putScript(ALICE, "b", b"x" * 101))
    assert failure.kind is ErrorKind.TOO_BIG and failure.message == "Script is too large (max 100 octets)"
    assert error(store.checkSpace(ALICE, "b", 101)).kind is ErrorKind.TOO_BIG
    assert successResultOf(store.listScripts(ALICE)) == [("a", False)]


# ------------------------------------------------------- delete and rename


def test_delete(store: MaildirSieveStore, root: Path) -> None:
    """
    Deleting removes the file; the active script is refused
    (SCRIPT_ACTIVE), a missing one is NOT_FOUND.
    """
    successResultOf(store.putScript(ALICE, "a", SCRIPT))
    successResultOf(store.putScript(ALICE, "b", SCRIPT))
    successResultOf(store.setActive(ALICE, "a"))
    failure = error(store.deleteScript(ALICE, "a"))
    assert (failure.kind, failure.reason) == (ErrorKind.PERM, SCRIPT_ACTIVE)
    successResultOf(store.deleteScript(ALICE, "b"))
    assert not (home(root) / "sieve" / "b.sieve").exists()
    assert error(store.deleteScript(ALICE, "b")).kind is ErrorKind.NOT_FOUND


def test_rename(store: MaildirSieveStore, root: Path) -> None:
    """
    Renaming moves the file; a taken name is SCRIPT_EXISTS (the other
    script untouched); a missing script NOT_FOUND.
    """
    successResultOf(store.putScript(ALICE, "a", SCRIPT))
    successResultOf(store.putScript(ALICE, "b", b"keep;"))
    failure = error(store.renameScript(ALICE, "a", "b"))
    assert (failure.kind, failure.reason) == (ErrorKind.PERM, SCRIPT_EXISTS)
    assert successResultOf(store.getScript(ALICE, "b")) == b"keep;"
    assert error(store.renameScript(ALICE, "x", "y")).kind is ErrorKind.NOT_FOUND
    successResultOf(store.renameScript(ALICE, "a", "c"))
    assert successResultOf(store.listScripts(ALICE)) == [("b", False), ("c", False)]
    assert successResultOf(store.getScript(ALICE, "c")) == SCRIPT


def test_renameActive(store: MaildirSieveStore, root: Path) -> None:
    """
    The active script stays active under its new name: the link is
    replaced before the old name goes.
    """
    successResultOf(store.putScript(ALICE, "a", SCRIPT))
    successResultOf(store.setActive(ALICE, "a"))
    successResultOf(store.renameScript(ALICE, "a", "new"))
    assert os.readlink(home(root) / ".dovecot.sieve") == "sieve/new.sieve"
    assert successResultOf(store.listScripts(ALICE)) == [("new", True)]


def test_renameWithoutHardLinks(store: MaildirSieveStore, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    On a file system without hard links renaming still works, and still
    refuses a taken name.
    """
    successResultOf(store.putScript(ALICE, "a", SCRIPT))
    successResultOf(store.putScript(ALICE, "b", SCRIPT))
    successResultOf(store.setActive(ALICE, "a"))

    def noLinks(*args: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", noLinks)
    assert error(store.renameScript(ALICE, "a", "b")).reason == SCRIPT_EXISTS
    successResultOf(store.renameScript(ALICE, "a", "c"))
    assert successResultOf(store.listScripts(ALICE)) == [("b", False), ("c", True)]


# -------------------------------------------- what else .dovecot.sieve is


def test_regularActiveFileNotListedActive(store: MaildirSieveStore, root: Path) -> None:
    """
    A regular file at .dovecot.sieve (docker-mailserver copies one there)
    is not one of the scripts: listing works and shows none active.
    """
    successResultOf(store.putScript(ALICE, "a", SCRIPT))
    (home(root) / ".dovecot.sieve").write_bytes(b"discard;\r\n")
    assert successResultOf(store.listScripts(ALICE)) == [("a", False)]
    successResultOf(store.deleteScript(ALICE, "a"))


def test_regularActiveFileKeptOnActivation(store: MaildirSieveStore, root: Path) -> None:
    """
    Activating replaces a regular .dovecot.sieve by the link, after
    keeping its content as a script named after the date (not counted
    against maxScripts); a second one on the same second gets a suffix.
    """
    for name in ("a", "b", "c"):
        successResultOf(store.putScript(ALICE, name, SCRIPT))
    active = home(root) / ".dovecot.sieve"
    active.write_bytes(b"discard;\r\n")
    assert successResultOf(store.setActive(ALICE, "a")) == "dovecot-sieve-20231114-221320"
    assert os.readlink(active) == "sieve/a.sieve"
    assert successResultOf(store.getScript(ALICE, "dovecot-sieve-20231114-221320")) == b"discard;\r\n"
    os.unlink(active)
    active.write_bytes(b"stop;\r\n")
    assert successResultOf(store.setActive(ALICE, "")) == "dovecot-sieve-20231114-221320-2"
    assert not os.path.lexists(active)
    assert successResultOf(store.getScript(ALICE, "dovecot-sieve-20231114-221320-2")) == b"stop;\r\n"


def test_regularActiveFileCopiedWithoutHardLinks(
    store: MaildirSieveStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Where hard links are not possible the file is copied, durably.
    """
    successResultOf(store.putScript(ALICE, "a", SCRIPT))
    (home(root) / ".dovecot.sieve").write_bytes(b"discard;\r\n")

    def noLinks(*args: Any) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", noLinks)
    kept = successResultOf(store.setActive(ALICE, "a"))
    assert successResultOf(store.getScript(ALICE, kept)) == b"discard;\r\n"


def test_foreignLinks(store: MaildirSieveStore, root: Path) -> None:
    """
    A link pointing outside sieve/ or to a missing script is no active
    script; activation replaces it.  An absolute link into sieve/ counts.
    """
    successResultOf(store.putScript(ALICE, "a", SCRIPT))
    active = home(root) / ".dovecot.sieve"
    os.symlink("/etc/passwd", active)
    assert successResultOf(store.listScripts(ALICE)) == [("a", False)]
    os.unlink(active)
    os.symlink("sieve/gone.sieve", active)
    assert successResultOf(store.listScripts(ALICE)) == [("a", False)]
    assert successResultOf(store.setActive(ALICE, "a")) is None
    assert os.readlink(active) == "sieve/a.sieve"
    os.unlink(active)
    os.symlink(str(home(root) / "sieve" / "a.sieve"), active)
    assert successResultOf(store.listScripts(ALICE)) == [("a", True)]


def test_directoryInTheWay(store: MaildirSieveStore, root: Path) -> None:
    """
    Anything else at .dovecot.sieve is a temporary failure, never removed.
    """
    successResultOf(store.putScript(ALICE, "a", SCRIPT))
    (home(root) / ".dovecot.sieve").mkdir()
    assert error(store.listScripts(ALICE)).kind is ErrorKind.TEMP
    assert error(store.setActive(ALICE, "a")).kind is ErrorKind.TEMP
    assert (home(root) / ".dovecot.sieve").is_dir()


def test_setActiveMissing(store: MaildirSieveStore) -> None:
    """
    Activating a script that does not exist is NOT_FOUND; deactivating
    when nothing is active is fine.
    """
    assert error(store.setActive(ALICE, "x")).kind is ErrorKind.NOT_FOUND
    assert successResultOf(store.setActive(ALICE, "")) is None
