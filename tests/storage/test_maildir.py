# -*- test-case-name: tests.storage.test_maildir -*-
"""
Tests for what is particular to L{mailsrv.storage.maildir}: the files on
disk, durability (fsync calls), Dovecot compatibility and path safety.  The
behaviour shared with the memory store is in C{test_behaviour.py}.
"""

from __future__ import annotations

import io
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from twisted.internet import defer

from mailsrv.errors import ErrorKind, MailError
from mailsrv.storage import maildir as maildirModule
from mailsrv.storage import maildir_writer
from mailsrv.storage.maildir import MaildirStore
from mailsrv.storage.maildir_files import CRLFCounter, CRLFReader, crlfSizeOfFile
from mailsrv.storage.uidlist import lockedFolder

from .helpers import failureResultOf, successResultOf, synchronousRunner

ALICE = "alice@example.com"
BOB = "bob@example.com"
MESSAGE = b"Subject: hi\r\n\r\nbody\r\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "mail"


def makeStore(root: Path, runner: Callable[..., Any] = synchronousRunner) -> MaildirStore:
    return MaildirStore(root, runInThread=runner, hostname="mx.example")


def files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.is_dir() else []


def allFiles(top: Path) -> list[Path]:
    return sorted(p for p in top.rglob("*") if p.is_file() and not p.name.startswith(("dovecot", "mailsrv")))


def deliver(store: MaildirStore, accounts: list[str], data: bytes = MESSAGE) -> None:
    writer = store.startMessage(accounts)
    writer.write(data)
    successResultOf(writer.commit())


class FsyncRecorder:
    """
    Replaces C{os.fsync} to record what was synced (as paths, read from
    /proc/self/fd) and whether it ran inside the injected thread runner.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced: list[str] = []
        self.outsideRunner: list[str] = []
        self.inRunner = False
        self._real = os.fsync
        monkeypatch.setattr(os, "fsync", self.fsync)

    def fsync(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        self.synced.append(path)
        if not self.inRunner:
            self.outsideRunner.append(path)
        self._real(fd)

    def runner(self, f: Callable[..., Any], *args: Any) -> "defer.Deferred[Any]":
        self.inRunner = True
        try:
            return defer.maybeDeferred(f, *args)
        finally:
            self.inRunner = False


# ------------------------------------------------------------------ delivery


def test_deliveryWritesOneFileLinkedTwice(root: Path) -> None:
    """
    A delivery to two accounts stores the bytes once: the two new/ entries
    are hard links to one inode, and tmp/ is empty afterwards.
    """
    store = makeStore(root)
    deliver(store, [ALICE, BOB])
    [a] = files(root / "example.com/alice/new")
    [b] = files(root / "example.com/bob/new")
    statA = os.stat(root / "example.com/alice/new" / a)
    statB = os.stat(root / "example.com/bob/new" / b)
    assert statA.st_ino == statB.st_ino
    assert statA.st_nlink == 2
    assert a != b
    assert a.endswith(f",S={len(MESSAGE)},W={len(MESSAGE)}")
    assert files(root / "example.com/alice/tmp") == []
    assert (root / "example.com/bob/new" / b).read_bytes() == MESSAGE


def test_smallMessageWrittenAtCommit(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A message up to C{IN_MEMORY_LIMIT} octets creates no file before
    commit: the commit thread creates, writes and fsyncs it (creating a
    file may wait for the filesystem journal and must not stall the
    reactor).  Abort before then leaves nothing behind.
    """
    recorder = FsyncRecorder(monkeypatch)
    store = makeStore(root, recorder.runner)
    opened: list[str] = []
    realOpen = maildir_writer.os.open

    def recordingOpen(path: Any, *args: Any) -> int:
        if Path(path).parent.name == "tmp":
            opened.append("runner" if recorder.inRunner else "outside")
        return realOpen(path, *args)

    monkeypatch.setattr(maildir_writer.os, "open", recordingOpen)
    writer = store.startMessage([ALICE, BOB])
    writer.write(MESSAGE)
    assert allFiles(root) == []
    successResultOf(writer.commit())
    assert opened and set(opened) == {"runner"}
    [name] = files(root / "example.com/alice/new")
    assert (root / "example.com/alice/new" / name).read_bytes() == MESSAGE
    aborted = store.startMessage([ALICE])
    aborted.write(MESSAGE)
    aborted.abort()
    assert files(root / "example.com/alice/tmp") == []


def test_uncommittedOnlyInTmp(root: Path) -> None:
    """
    Once a message outgrows memory its bytes are in the first account's
    tmp/ only until commit; abort removes them, leaving no message file
    anywhere.
    """
    store = makeStore(root)
    writer = store.startMessage([ALICE, BOB])
    writer.write(MESSAGE)
    writer.write(b"x" * maildir_writer.IN_MEMORY_LIMIT)
    [tmp] = files(root / "example.com/alice/tmp")
    assert files(root / "example.com/alice/new") == []
    assert files(root / "example.com/bob/new") == []
    writer.abort()
    assert allFiles(root) == []
    assert tmp


def test_permissions(root: Path) -> None:
    """
    Mail directories are created 0700 and message files 0600.
    """
    store = makeStore(root)
    deliver(store, [ALICE])
    for directory in ("example.com", "example.com/alice", "example.com/alice/new"):
        assert stat.S_IMODE(os.stat(root / directory).st_mode) == 0o700
    [name] = files(root / "example.com/alice/new")
    assert stat.S_IMODE(os.stat(root / "example.com/alice/new" / name).st_mode) == 0o600


def test_commitFsyncsInThread(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    commit fsyncs the message file, every new/ directory and the directories
    created for a first delivery, all inside the thread runner (not tmp/:
    removing the tmp name needs no durability).
    """
    recorder = FsyncRecorder(monkeypatch)
    store = makeStore(root, recorder.runner)
    writer = store.startMessage([ALICE, BOB])
    writer.write(MESSAGE + b"x" * maildir_writer.IN_MEMORY_LIMIT)
    tmpFile = str(root / "example.com/alice/tmp" / files(root / "example.com/alice/tmp")[0])
    assert recorder.synced == []
    successResultOf(writer.commit())
    synced = recorder.synced
    assert synced[0] == tmpFile
    for directory in (
        "example.com/alice/new",
        "example.com/bob/new",
        "example.com/alice",
        "example.com",
        "",
    ):
        assert str(root / directory).rstrip("/") in synced, directory
    assert recorder.outsideRunner == []
    # The second delivery does not re-sync the parents.
    recorder.synced.clear()
    deliver(store, [ALICE])
    assert str(root) not in recorder.synced
    assert str(root / "example.com/alice/new") in recorder.synced


def test_fsyncFailureFailsCommit(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    If fsync fails the commit fails with a temporary error and no message
    file is left behind.
    """
    store = makeStore(root)
    writer = store.startMessage([ALICE, BOB])
    writer.write(MESSAGE)

    def brokenFsync(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", brokenFsync)
    failure = failureResultOf(writer.commit(), MailError)
    assert failure.value.kind is ErrorKind.TEMP and failure.value.temporary
    assert allFiles(root) == []
    writer.abort()


def test_linkFailureRemovesLinks(root: Path) -> None:
    """
    If one account cannot receive (its directory is broken), the links made
    for the others are removed and the commit fails temporarily.
    """
    store = makeStore(root)
    (root / "example.com").mkdir(parents=True)
    (root / "example.com/bob").write_bytes(b"not a directory")
    writer = store.startMessage([ALICE, BOB])
    writer.write(MESSAGE)
    failure = failureResultOf(writer.commit(), MailError)
    assert failure.value.temporary
    assert files(root / "example.com/alice/new") == []
    assert files(root / "example.com/alice/tmp") == []


def test_writeErrorReportedAtCommit(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A failing write (disk full) does not raise from write(); the commit
    fails temporarily and the partial file is removed.
    """
    store = makeStore(root)
    writer = store.startMessage([ALICE])
    writer.write(b"start\r\n" + b"x" * maildir_writer.IN_MEMORY_LIMIT)

    class FullDisk(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    realFile = writer._file
    assert realFile is not None
    monkeypatch.setattr(writer, "_file", io.BufferedWriter(FullDisk(), buffer_size=1))
    writer.write(b"x" * 100)
    realFile.close()
    failureResultOf(writer.commit(), MailError)
    assert allFiles(root) == []


def test_defaultRunnerUsesReactorThreadPool(root: Path) -> None:
    """
    Without runInThread, blocking work goes to the given reactor's thread
    pool and the result is delivered through callFromThread.
    """
    calls: list[str] = []

    class Pool:
        def callInThreadWithCallback(self, onResult: Any, f: Any, *a: Any, **kw: Any) -> None:
            calls.append("pool")
            onResult(True, f(*a, **kw))

    class Reactor:
        def getThreadPool(self) -> Pool:
            return Pool()

        def callFromThread(self, f: Any, *a: Any, **kw: Any) -> None:
            calls.append("callFromThread")
            f(*a, **kw)

    store = MaildirStore(root, reactor=Reactor(), hostname="mx.example")
    deliver(store, [ALICE])
    assert calls == ["pool", "callFromThread"]
    assert len(store.openFolder(ALICE).messages()) == 1


# ------------------------------------------------------- append and expunge


def test_appendDurableAndInCur(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    append writes into cur/ with the flag letters, sets the internal date as
    mtime, and fsyncs the file, cur/ and the uidlist before firing.
    """
    recorder = FsyncRecorder(monkeypatch)
    store = makeStore(root, recorder.runner)
    store.createFolder(ALICE, "Sent")
    folder = store.openFolder(ALICE, "Sent")
    recorder.synced.clear()
    uid = successResultOf(folder.append(MESSAGE, ["\\Seen", "\\Draft", "Work"], 1e9))
    path = root / "example.com/alice/.Sent"
    [name] = files(path / "cur")
    assert name.endswith(":2,DSa")
    assert os.stat(path / "cur" / name).st_mtime == 1e9
    assert (path / "dovecot-keywords").read_text() == "0 Work\n"
    assert f"{uid} :{name.split(':')[0]}" in (path / "dovecot-uidlist").read_text()
    assert str(path / "cur") in recorder.synced
    assert str(path) in recorder.synced  # directory of the replaced uidlist
    # The file itself is synced before it leaves tmp/.
    assert str(path / "tmp" / name.split(":")[0]) in recorder.synced
    assert recorder.outsideRunner == []


def test_expungeDurable(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    expunge unlinks the file and fsyncs its directory and the uidlist in the
    runner; the uidlist no longer lists the UID.
    """
    recorder = FsyncRecorder(monkeypatch)
    store = makeStore(root, recorder.runner)
    deliver(store, [ALICE])
    deliver(store, [ALICE])
    inbox = store.openFolder(ALICE)
    recorder.synced.clear()
    successResultOf(inbox.expunge([1]))
    accountDir = root / "example.com/alice"
    assert len(files(accountDir / "cur")) == 1
    assert str(accountDir / "cur") in recorder.synced
    assert str(accountDir) in recorder.synced
    assert recorder.outsideRunner == []
    lines = (accountDir / "dovecot-uidlist").read_text().splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["2"]


# --------------------------------------------------------------- refresh


def test_refreshMovesNewToCur(root: Path) -> None:
    """
    A session's refresh moves new/ files to cur/ with an empty :2, suffix.
    """
    store = makeStore(root)
    deliver(store, [ALICE])
    [name] = files(root / "example.com/alice/new")
    store.openFolder(ALICE)
    assert files(root / "example.com/alice/new") == []
    assert files(root / "example.com/alice/cur") == [name + ":2,"]


def test_uidsStableAcrossInstances(root: Path) -> None:
    """
    A new store object (a restart) sees the same UIDs and UIDVALIDITY, and
    continues numbering after them.
    """
    first = makeStore(root)
    for _ in range(3):
        deliver(first, [ALICE])
    inbox = first.openFolder(ALICE)
    successResultOf(inbox.expunge([2]))
    before = [(m.uid, m.key) for m in inbox.messages()]
    validity = inbox.uidValidity()
    second = makeStore(root)
    again = second.openFolder(ALICE)
    assert [(m.uid, m.key) for m in again.messages()] == before
    assert again.uidValidity() == validity
    deliver(second, [ALICE])
    again.refresh()
    assert [m.uid for m in again.messages()] == [1, 3, 4]


def test_newFilesNumberedByDeliveryTime(root: Path) -> None:
    """
    Files that appear without a UID (dropped in by another program) get
    UIDs in the order of the timestamp in their names, above existing UIDs.
    """
    store = makeStore(root)
    deliver(store, [ALICE])
    store.openFolder(ALICE)
    new = root / "example.com/alice/new"
    for stamp in ("1500000300", "1500000100", "1500000200"):
        (new / f"{stamp}.M1P1.other").write_bytes(stamp.encode() + b"\n")
    inbox = store.openFolder(ALICE)
    assert [(m.uid, m.key[:10]) for m in inbox.messages()][1:] == [
        (2, "1500000100"),
        (3, "1500000200"),
        (4, "1500000300"),
    ]


def test_concurrentStoresDoNotShareUids(root: Path) -> None:
    """
    Two store objects (as two processes) delivering and refreshing in turn
    never give one UID to two messages.
    """
    one, two = makeStore(root), makeStore(root)
    viewOne, viewTwo = one.openFolder(ALICE), two.openFolder(ALICE)
    for i in range(6):
        deliver(one if i % 2 else two, [ALICE], b"%d\r\n" % i)
        (viewOne if i % 3 else viewTwo).refresh()
    viewOne.refresh()
    viewTwo.refresh()
    seen = {m.uid: viewOne.openMessage(m.uid).read() for m in viewOne.messages()}
    assert sorted(seen) == [1, 2, 3, 4, 5, 6]
    assert sorted(seen.values()) == [b"%d\r\n" % i for i in range(6)]
    assert [(m.uid, m.key) for m in viewTwo.messages()] == [
        (m.uid, m.key) for m in viewOne.messages()
    ]


def test_uidlistLockExcludesOtherWriters(root: Path) -> None:
    """
    While another descriptor (another process, or thread) holds the folder
    lock, a refresh waits for it instead of racing on the uidlist.
    """
    store = makeStore(root)
    inbox = store.openFolder(ALICE)
    finished = threading.Event()

    def refresh() -> None:
        inbox.refresh()
        finished.set()

    with lockedFolder(root / "example.com/alice"):
        worker = threading.Thread(target=refresh)
        worker.start()
        assert not finished.wait(0.3)
    assert finished.wait(5)
    worker.join()


def test_corruptUidlistRebuilt(root: Path) -> None:
    """
    An unreadable uidlist is set aside and the folder gets a new
    UIDVALIDITY (clients must resynchronise rather than trust wrong UIDs).
    """
    store = makeStore(root)
    deliver(store, [ALICE])
    old = store.openFolder(ALICE).uidValidity()
    accountDir = root / "example.com/alice"
    (accountDir / "dovecot-uidlist").write_text("garbage here\n")
    inbox = store.openFolder(ALICE)
    assert inbox.uidValidity() != old
    assert [m.uid for m in inbox.messages()] == [1]
    assert (accountDir / "dovecot-uidlist.broken").read_text() == "garbage here\n"


def test_flagsChangedByOtherProcess(root: Path) -> None:
    """
    When another program renamed a message file (new flags), open and
    setFlags still find it by its base name.
    """
    store = makeStore(root)
    deliver(store, [ALICE])
    inbox = store.openFolder(ALICE)
    cur = root / "example.com/alice/cur"
    [name] = files(cur)
    os.rename(cur / name, cur / (name + "F"))
    assert inbox.openMessage(1).read() == MESSAGE
    info = inbox.setFlags(1, ["\\Seen"])
    assert info.flags == {"\\Seen"}
    assert files(cur) == [name + "S"]


def test_symlinksNotServed(root: Path, tmp_path: Path) -> None:
    """
    A symlink planted in cur/ is not treated as a message, so it cannot
    expose a file outside the Maildir.
    """
    store = makeStore(root)
    store.openFolder(ALICE)
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret\n")
    os.symlink(secret, root / "example.com/alice/cur/1500000000.M1P1.evil:2,")
    assert store.openFolder(ALICE).messages() == ()


# ------------------------------------------------------------------ Dovecot

DOVECOT_UIDLIST = """\
3 V1600000000 N10 G0123456789abcdef0123456789abcdef
3 :1600000100.M11P100.oldhost,S={s1},W={w1}
7 W{w2} :1600000200.M22P100.oldhost
8 P0000legacy :1600000250.M25P100.oldhost,S={s3}
9 G5555 :1600000300.M33P100.oldhost,S={s4}
"""
BODY1 = b"Subject: one\n\nline one\nline two\n"
BODY2 = b"Subject: two\n\nmixed\r\nends\n"
BODY3 = b"Subject: three\n\nx\n"
BODY4 = b"Subject: four\n\n" + b"long line\n" * 20000
BODY5 = b"Subject: five\n\nunknown to the uidlist\n"


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture
def dovecotMailbox(root: Path) -> Path:
    """
    An account as Dovecot leaves it: LF files, S=/W= in some names, a v3
    uidlist with extension fields, keywords, one file in new/ and one file
    the uidlist does not know yet.
    """
    account = root / "example.com" / "alice"
    for sub in ("cur", "new", "tmp"):
        (account / sub).mkdir(parents=True)
    (account / "dovecot-uidlist").write_text(
        DOVECOT_UIDLIST.format(
            s1=len(BODY1),
            w1=len(crlf(BODY1)),
            w2=len(crlf(BODY2)),
            s3=len(BODY3),
            s4=len(BODY4),
        )
    )
    (account / "dovecot-keywords").write_text("0 $Label1\n1 Junk\n")
    cur, new = account / "cur", account / "new"
    (cur / f"1600000100.M11P100.oldhost,S={len(BODY1)},W={len(crlf(BODY1))}:2,Sa").write_bytes(BODY1)
    (cur / "1600000200.M22P100.oldhost:2,FRb").write_bytes(BODY2)
    (cur / f"1600000250.M25P100.oldhost,S={len(BODY3)}:2,ST").write_bytes(BODY3)
    (new / f"1600000300.M33P100.oldhost,S={len(BODY4)}").write_bytes(BODY4)
    (new / "1600000000.M44P100.oldhost").write_bytes(BODY5)
    os.utime(cur / "1600000200.M22P100.oldhost:2,FRb", (1600000200, 1600000200))
    return account


def test_dovecotMailboxKeepsUids(root: Path, dovecotMailbox: Path) -> None:
    """
    A Dovecot mailbox keeps its UIDVALIDITY, UIDs and keywords; sizes are
    CRLF sizes (from W=, the W field, or counted); the unknown file gets
    the next UID although it is older.
    """
    inbox = makeStore(root).openFolder(ALICE)
    assert inbox.uidValidity() == 1600000000
    summary = [(m.uid, m.size, m.flags) for m in inbox.messages()]
    assert summary == [
        (3, len(crlf(BODY1)), {"\\Seen", "$Label1"}),
        (7, len(crlf(BODY2)), {"\\Flagged", "\\Answered", "Junk"}),
        (8, len(crlf(BODY3)), {"\\Seen", "\\Deleted"}),
        (9, len(crlf(BODY4)), frozenset()),
        (10, len(crlf(BODY5)), frozenset()),
    ]
    assert inbox.uidNext() == 11
    assert inbox.messages()[1].internalDate == 1600000200
    assert inbox.uidl(3) == "000000035f5e1000"
    assert inbox.uidl(8) == "0000legacy"


def test_dovecotMessagesServedAsCRLF(root: Path, dovecotMailbox: Path) -> None:
    """
    LF-only (and mixed) files are served with CRLF line ends, streamed,
    with working readline and seek.
    """
    inbox = makeStore(root).openFolder(ALICE)
    for uid, body in ((3, BODY1), (7, BODY2), (9, BODY4)):
        with inbox.openMessage(uid) as f:
            assert f.read() == crlf(body)
            f.seek(0)
            assert f.readline() == body.split(b"\n")[0] + b"\r\n"
            f.seek(5)
            assert f.read(4) == crlf(body)[5:9]


def test_dovecotMailboxRewrittenCompatibly(root: Path, dovecotMailbox: Path) -> None:
    """
    After a refresh the uidlist is still version 3 with the same V, G and
    extension fields, lists the new UID, and new/ is empty; a new delivery
    and a restart keep everything.
    """
    store = makeStore(root)
    store.openFolder(ALICE)
    text = (dovecotMailbox / "dovecot-uidlist").read_text()
    header, *records = text.splitlines()
    assert header == "3 V1600000000 N11 G0123456789abcdef0123456789abcdef"
    assert records[1] == f"7 W{len(crlf(BODY2))} :1600000200.M22P100.oldhost"
    # The size mailsrv had to read the file for is kept (Dovecot's W).
    assert records[2].startswith("8 P0000legacy W21 :1600000250.M25P100.oldhost")
    assert records[4] == f"10 W{len(crlf(BODY5))} :1600000000.M44P100.oldhost"
    assert files(dovecotMailbox / "new") == []
    deliver(store, [ALICE])
    inbox = makeStore(root).openFolder(ALICE)
    assert [m.uid for m in inbox.messages()] == [3, 7, 8, 9, 10, 11]
    assert inbox.messages()[0].flags == {"\\Seen", "$Label1"}


def test_dovecotKeywordsExtended(root: Path, dovecotMailbox: Path) -> None:
    """
    A new keyword takes the next free letter; existing ones keep theirs.
    """
    inbox = makeStore(root).openFolder(ALICE)
    inbox.setFlags(3, ["$Label1", "Project"])
    assert (dovecotMailbox / "dovecot-keywords").read_text() == "0 $Label1\n1 Junk\n2 Project\n"
    assert any(n.endswith(":2,ac") for n in files(dovecotMailbox / "cur"))


def test_preservesUnknownLetters(root: Path, dovecotMailbox: Path) -> None:
    """
    Letters IMAP cannot express (P, passed) survive a flag change.
    """
    cur = dovecotMailbox / "cur"
    os.rename(cur / "1600000200.M22P100.oldhost:2,FRb", cur / "1600000200.M22P100.oldhost:2,P")
    inbox = makeStore(root).openFolder(ALICE)
    inbox.setFlags(7, ["\\Seen"])
    assert "1600000200.M22P100.oldhost:2,PS" in files(cur)


# ----------------------------------------------------------- folders, paths


def test_folderDirectories(root: Path) -> None:
    """
    Folders are Maildir++ directories named in modified UTF-7 with a
    maildirfolder marker; unknown or non-canonical dot-directories are not
    listed.
    """
    store = makeStore(root)
    store.createFolder(ALICE, "Entw\u00fcrfe")
    store.createFolder(ALICE, "Archive/2024")
    accountDir = root / "example.com/alice"
    assert (accountDir / ".Entw&APw-rfe/maildirfolder").exists()
    assert (accountDir / ".Archive.2024/cur").is_dir()
    for junk in (".bad&&name", ".a..b", "..hidden", ".x\u00e9"):
        (accountDir / junk).mkdir()
    (accountDir / ".plainfile").write_bytes(b"")
    assert store.listFolders(ALICE) == ["INBOX", "Archive/2024", "Entw\u00fcrfe"]


def test_nothingOutsideRoot(root: Path, tmp_path: Path) -> None:
    """
    After every kind of escape attempt, nothing exists beside the store's
    root and no directory was created for a refused name.
    """
    store = makeStore(root)
    attempts: list[Callable[[], Any]] = [
        lambda: store.createFolder(ALICE, "../../../escape"),
        lambda: store.createFolder(ALICE, "a/../../b"),
        lambda: store.createFolder("../escape@example.com", "x"),
        lambda: store.createFolder("alice@../../escape", "x"),
        lambda: store.openFolder("x@" + "../" * 5),
        lambda: store.startMessage(["../../x@example.com"]),
        lambda: store.renameFolder(ALICE, "INBOX", "../x"),
    ]
    for attempt in attempts:
        with pytest.raises(MailError) as info:
            attempt()
        assert info.value.kind is ErrorKind.SYNTAX
    assert set(os.listdir(tmp_path)) <= {"mail"}
    assert not root.exists() or list(root.iterdir()) == []


def test_cleanTmp(root: Path) -> None:
    """
    cleanTmp removes tmp/ files older than the limit in INBOX and folders,
    keeps recent ones and message files, and counts what it removed.
    """
    store = makeStore(root)
    store.createFolder(ALICE, "Sent")
    deliver(store, [ALICE])
    old = time.time() - 40 * 3600
    stale = [
        root / "example.com/alice/tmp/stale1",
        root / "example.com/alice/.Sent/tmp/stale2",
    ]
    for path in stale:
        path.write_bytes(b"x")
        os.utime(path, (old, old))
    fresh = root / "example.com/alice/tmp/fresh"
    fresh.write_bytes(b"x")
    assert store.cleanTmp() == 2
    assert not any(p.exists() for p in stale)
    assert fresh.exists()
    assert len(files(root / "example.com/alice/new")) == 1


# ------------------------------------------------------------ file helpers


@pytest.mark.parametrize("chunkSize", [1, 2, 3, 7, 65536])
def test_crlfReaderAcrossChunks(chunkSize: int) -> None:
    """
    LF->CRLF conversion is right whatever the read sizes, also when a CRLF
    or a bare LF falls on a chunk border of the underlying file.
    """
    data = b"a\r\nb\nc\r\r\n\n\n" + b"x" * 65533 + b"\r\n" + b"y" * 65535 + b"\r" + b"\nz\n"
    reader = io.BufferedReader(CRLFReader(io.BytesIO(data), len(crlf(data))), chunkSize)
    out = b""
    while chunk := reader.read(chunkSize):
        out += chunk
    assert out == crlf(data)
    reader.seek(3)
    assert reader.read(3) == crlf(data)[3:6]


def test_crlfCounter() -> None:
    """
    The CRLF size counts bare LFs once, CRLFs split over chunks not at all.
    """
    counter = CRLFCounter()
    for chunk in (b"a\r", b"\nb\n", b"\n", b"c\r", b"\r\n"):
        counter.update(chunk)
    assert (counter.physical, counter.crlf) == (10, 12)
    assert crlfSizeOfFile(io.BytesIO(b"x\ny\r\nz\n")) == 9


def test_moduleHeaderNamesTests() -> None:
    """
    The module points trial at its tests (house style).
    """
    with open(maildirModule.__file__) as f:
        assert "test-case-name: tests.storage.test_maildir" in f.readline()


def test_measuredSizeKeptInUidlist(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A file whose name lacks C{,W=} is read once to learn its CRLF size; the
    size goes into C{dovecot-uidlist} as Dovecot's C{W} field, so a later
    process opens the folder without reading the file.
    """
    store = makeStore(root)
    inbox = store.openFolder(ALICE)
    maildir = root / "example.com" / "alice"
    (maildir / "cur" / "1700000000.M1P1.procmail:2,S").write_bytes(b"Subject: x\n\nbody\n")
    inbox.refresh()
    assert [m.size for m in inbox.messages()] == [20]
    records = (maildir / "dovecot-uidlist").read_text().splitlines()[1:]
    assert records == ["1 W20 :1700000000.M1P1.procmail"]

    opened: list[str] = []
    realOpen = open

    def recordingOpen(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return realOpen(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", recordingOpen)
    again = makeStore(root).openFolder(ALICE)
    assert [m.size for m in again.messages()] == [20]
    assert not [p for p in opened if "/cur/" in p or "/new/" in p]


def test_placedWithFlagsGoesToCur(root: Path) -> None:
    """
    A copy placed with flags is linked into C{cur/} with them in its info
    (keywords by their letter in C{dovecot-keywords}), as Dovecot delivers
    such mail; one without goes to C{new/}.  Both are links to one file.
    """
    from mailsrv.interfaces import Placement

    store = makeStore(root)
    writer = store.startMessage([ALICE])
    writer.write(MESSAGE)
    writer.place([Placement(ALICE, "INBOX", frozenset({"\\Seen", "Work"})), Placement(ALICE, "Archive")])
    successResultOf(writer.commit())
    account = root / "example.com" / "alice"
    [name] = files(account / "cur")
    assert name.endswith(":2,Sa")
    assert (account / "dovecot-keywords").read_text() == "0 Work\n"
    assert files(account / "new") == []
    [archived] = files(account / ".Archive" / "new")
    assert os.stat(account / "cur" / name).st_ino == os.stat(account / ".Archive" / "new" / archived).st_ino
    assert files(account / "tmp") == []


def test_placementIntoNewFolderIsDurable(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A copy placed with flags into a folder created for it (a Sieve
    C{fileinto :create}) is durable when the commit fires: the file, its
    C{cur/} entry, C{cur/}'s entry in the new folder and the folder's entry
    in the account are fsync'd, all off the calling thread.
    """
    from mailsrv.interfaces import Placement

    deliver(makeStore(root), [ALICE])  # the account exists already
    recorder = FsyncRecorder(monkeypatch)
    store = makeStore(root, recorder.runner)
    writer = store.startMessage([ALICE])
    writer.write(MESSAGE)
    writer.place([Placement(ALICE, "Archive/2026", frozenset({"\\Seen"}))])
    successResultOf(writer.commit())
    account = root / "example.com" / "alice"
    folder = account / ".Archive.2026"
    [name] = files(folder / "cur")
    assert name.endswith(":2,S")
    synced = set(recorder.synced)
    assert {str(folder / "cur"), str(folder), str(account)} <= synced, recorder.synced
    assert any(path.startswith(str(account / "tmp")) for path in recorder.synced), recorder.synced
    assert recorder.outsideRunner == []
