# -*- test-case-name: tests.auth.test_files -*-
"""
Tests for L{mailsrv.auth.files}: parsing and writing docker-mailserver's
account and alias files.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest
from twisted.logger import capturedLogs

from mailsrv.auth.files import (
    ACCOUNTS_FILE,
    LOCK_FILE,
    VIRTUAL_FILE,
    AccountsDocument,
    ConfigFileError,
    VirtualDocument,
    addressProblem,
    atomicWrite,
    canonicalAddress,
    lockedConfig,
    readAccounts,
    readVirtual,
    writeAccounts,
    writeVirtual,
)

H1 = "{SHA512-CRYPT}$6$abc$hash1"
H2 = "{BLF-CRYPT}$2y$05$hash2"


def test_accountsBasic() -> None:
    """
    Accounts are read as canonical (lower-case) ids, comments and blank
    lines are ignored, CRLF and trailing white space are tolerated.
    """
    text = f"# accounts\r\n\r\nUser@Example.TEST|{H1}  \r\nother@example.test|{H2}\r\n"
    doc = AccountsDocument.fromText(text)
    assert doc.accounts() == {"user@example.test": H1, "other@example.test": H2}
    assert doc.problems == []


def test_accountsMalformedLinesReportedAndSkipped() -> None:
    """
    Malformed lines are skipped and logged with their line number; the good
    lines around them still count.  A duplicate keeps the first entry.
    """
    text = "\n".join(
        [
            f"a@example.test|{H1}",  # 1
            "no-separator-here",  # 2
            f"not-an-address|{H1}",  # 3
            "b@example.test|$6$noscheme",  # 4
            f"A@example.test|{H2}",  # 5 duplicate
            f"c@example.test|{H2}",  # 6
        ]
    )
    with capturedLogs() as events:
        doc = AccountsDocument.fromText(text, "accounts.cf")
    assert doc.accounts() == {"a@example.test": H1, "c@example.test": H2}
    assert [p.lineNumber for p in doc.problems] == [2, 3, 4, 5]
    logged = sorted(e["lineNumber"] for e in events if e.get("path") == "accounts.cf")
    assert logged == [2, 3, 4, 5]
    assert str(doc.problems[0]).startswith("accounts.cf:2: ")


def test_accountsExtraFieldsKept() -> None:
    """
    docker-mailserver allows a third |field (userdb attributes); it does not
    become part of the hash, and survives a password change.
    """
    doc = AccountsDocument.fromText(f"a@example.test|{H1}|userdb_quota_rule=*:storage=1G\n")
    assert doc.accounts() == {"a@example.test": H1}
    doc.setPassword("a@example.test", H2)
    assert doc.toText() == f"a@example.test|{H2}|userdb_quota_rule=*:storage=1G\n"


def test_accountsEditPreservesComments() -> None:
    """
    Editing changes only the affected lines: comments, blank lines and even
    malformed lines are written back as they were, new accounts go at the
    end.
    """
    text = f"# Managed by hand\n\na@example.test|{H1}\nbroken line\n# end\n"
    doc = AccountsDocument.fromText(text)
    doc.setPassword("A@EXAMPLE.TEST", H2)
    doc.setPassword("new@example.test", H1)
    assert doc.toText() == (
        f"# Managed by hand\n\na@example.test|{H2}\nbroken line\n# end\n"
        f"new@example.test|{H1}\n"
    )
    assert doc.remove("a@example.test")
    assert not doc.remove("a@example.test")
    assert doc.toText() == f"# Managed by hand\n\nbroken line\n# end\nnew@example.test|{H1}\n"


def test_virtualSeparators() -> None:
    """
    Targets may be separated by commas, spaces or both; the catch-all key
    @domain is accepted; remote targets keep their local-part case.
    """
    text = (
        "info@example.test a@example.test,b@example.test\n"
        "sales@example.test   a@example.test  Boss@Remote.ORG\n"
        "team@example.test a@example.test, b@example.test ,c@example.test\n"
        "@example.test catch@example.test\n"
    )
    doc = VirtualDocument.fromText(text)
    assert doc.aliases() == {
        "info@example.test": ("a@example.test", "b@example.test"),
        "sales@example.test": ("a@example.test", "Boss@remote.org"),
        "team@example.test": ("a@example.test", "b@example.test", "c@example.test"),
        "@example.test": ("catch@example.test",),
    }
    assert doc.problems == []


def test_virtualContinuationLines() -> None:
    """
    As in every Postfix table source, a line starting with white space
    continues the previous entry; one with nothing before it is malformed.
    """
    doc = VirtualDocument.fromText(
        "  orphan@example.test x@example.test\n"
        "list@example.test a@example.test,\n"
        "    b@example.test\n"
        "\tc@example.test\n"
    )
    assert doc.aliases() == {
        "list@example.test": ("a@example.test", "b@example.test", "c@example.test")
    }
    assert [p.lineNumber for p in doc.problems] == [1]


def test_virtualMalformed() -> None:
    """
    Keys that are not addresses, aliases without targets, bad targets and
    duplicates are reported with their line numbers and skipped.
    """
    doc = VirtualDocument.fromText(
        "example.test anything\n"  # 1: virtual alias domain syntax, unsupported
        "lonely@example.test\n"  # 2
        "x@example.test not-an-address\n"  # 3
        "ok@example.test a@example.test\n"  # 4
        "ok@example.test b@example.test\n"  # 5
    )
    assert doc.aliases() == {"ok@example.test": ("a@example.test",)}
    assert [p.lineNumber for p in doc.problems] == [1, 2, 3, 5]


def test_virtualEdit() -> None:
    """
    Adding a target extends the alias line in place; removing the last
    target removes the alias; duplicates are refused case-insensitively;
    comments stay.
    """
    doc = VirtualDocument.fromText("# aliases\ninfo@example.test a@example.test\n# tail\n")
    assert doc.addTarget("info@example.test", "b@example.test")
    assert not doc.addTarget("INFO@example.test", "B@Example.test")
    assert doc.addTarget("new@example.test", "a@example.test")
    assert doc.toText() == (
        "# aliases\ninfo@example.test a@example.test,b@example.test\n# tail\n"
        "new@example.test a@example.test\n"
    )
    assert doc.removeTarget("info@example.test", "A@example.test")
    assert not doc.removeTarget("info@example.test", "zzz@example.test")
    assert doc.removeTarget("info@example.test", "b@example.test")
    assert "info@example.test" not in doc.aliases()
    assert doc.toText() == "# aliases\n# tail\nnew@example.test a@example.test\n"
    assert doc.removeAlias("new@example.test")
    assert not doc.removeAlias("new@example.test")


@pytest.mark.parametrize(
    "address,catchAll,ok",
    [
        ("user@example.test", False, True),
        ("first.last+tag@sub.example.test", False, True),
        ("@example.test", True, True),
        ("@example.test", False, False),
        ("user", False, False),
        ("a@b@example.test", False, False),
        ("us er@example.test", False, False),
        ("us|er@example.test", False, False),
        ("us,er@example.test", False, False),
        ("us\x01er@example.test", False, False),
        ("user@exa_mple.test", False, False),
        ("user@-example.test", False, False),
        ("user@example..test", False, False),
        ("user@", False, False),
        ("x" * 65 + "@example.test", False, False),
    ],
)
def test_addressProblem(address: str, catchAll: bool, ok: bool) -> None:
    """
    Address validation accepts ordinary addresses (and @domain only when
    asked) and refuses what would corrupt the files or is not an address.
    """
    assert (addressProblem(address, allowCatchAll=catchAll) is None) is ok


def test_canonicalAddress() -> None:
    """
    Canonical addresses are lower case without surrounding space or a
    trailing dot on the domain.
    """
    assert canonicalAddress(" Foo@Example.TEST. ") == "foo@example.test"


def test_missingFilesAreEmpty(tmp_path: Path) -> None:
    """
    A fresh config dir has no files yet: that means no accounts and no
    aliases, not an error.
    """
    assert readAccounts(tmp_path).accounts() == {}
    assert readVirtual(tmp_path).aliases() == {}


def test_notUtf8IsAnError(tmp_path: Path) -> None:
    """
    A file that is not UTF-8 raises ConfigFileError naming the file.
    """
    (tmp_path / ACCOUNTS_FILE).write_bytes(b"a@example.test|{PLAIN}\xff\xfe\n")
    with pytest.raises(ConfigFileError, match=ACCOUNTS_FILE):
        readAccounts(tmp_path)


def test_writeModesAndContent(tmp_path: Path) -> None:
    """
    The accounts file is written with mode 0600 (it holds hashes) even over
    a laxer existing file; the alias file keeps an existing file's mode;
    both leave no temporary files behind and read back identically.
    """
    accountsPath = tmp_path / ACCOUNTS_FILE
    accountsPath.write_text(f"a@example.test|{H1}\n")
    os.chmod(accountsPath, 0o644)
    doc = readAccounts(tmp_path)
    doc.setPassword("b@example.test", H2)
    writeAccounts(tmp_path, doc)
    assert stat.S_IMODE(os.stat(accountsPath).st_mode) == 0o600
    assert readAccounts(tmp_path).accounts() == {"a@example.test": H1, "b@example.test": H2}

    virtualPath = tmp_path / VIRTUAL_FILE
    virtualPath.write_text("x@example.test a@example.test\n")
    os.chmod(virtualPath, 0o640)
    vdoc = readVirtual(tmp_path)
    vdoc.addTarget("x@example.test", "b@example.test")
    writeVirtual(tmp_path, vdoc)
    assert stat.S_IMODE(os.stat(virtualPath).st_mode) == 0o640
    assert readVirtual(tmp_path).aliases() == {"x@example.test": ("a@example.test", "b@example.test")}
    assert sorted(p.name for p in tmp_path.iterdir()) == [ACCOUNTS_FILE, VIRTUAL_FILE]


def test_atomicWriteReplacesInode(tmp_path: Path) -> None:
    """
    atomicWrite replaces the file by rename (a new inode), so a reader that
    opened the old file keeps reading the complete old content.
    """
    path = tmp_path / "f"
    path.write_text("old\n")
    with open(path) as reader:
        atomicWrite(path, "new\n", 0o600)
        assert reader.read() == "old\n"
    assert path.read_text() == "new\n"


def test_atomicWriteFailureLeavesOriginal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    If writing the temporary file fails, the original file is untouched and
    the temporary file is removed.
    """
    path = tmp_path / "f"
    path.write_text("old\n")

    def failingFsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failingFsync)
    with pytest.raises(OSError):
        atomicWrite(path, "new\n", 0o600)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def _holdLock(configDir: str, ready: "multiprocessing.synchronize.Event", seconds: float) -> None:
    with lockedConfig(Path(configDir)):
        ready.set()
        time.sleep(seconds)


def test_lockIsExclusiveAcrossProcesses(tmp_path: Path) -> None:
    """
    While another process holds the config lock, taking it waits until
    that process lets go.
    """
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_holdLock, args=(str(tmp_path), ready, 0.5))
    holder.start()
    try:
        assert ready.wait(10)
        started = time.monotonic()
        with lockedConfig(tmp_path):
            waited = time.monotonic() - started
        assert waited >= 0.3
    finally:
        holder.join(10)
    assert (tmp_path / LOCK_FILE).exists()
