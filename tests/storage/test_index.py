# -*- test-case-name: tests.storage.test_index -*-
"""
Tests for L{mailsrv.storage.index}: the Maildir header cache
(C{mailsrv-cache}), the MODSEQ log (C{mailsrv-modseq}) and the reuse of
unchanged folder snapshots, through L{mailsrv.storage.maildir.MaildirStore}.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from mailsrv.interfaces import IIndexedFolder
from mailsrv.storage import index as indexModule
from mailsrv.storage.index import CACHE_NAME, MODSEQ_NAME, HeaderCache
from mailsrv.storage.maildir import MaildirStore
from mailsrv.storage.maildir_sync import FolderMetadata

from .helpers import successResultOf, synchronousRunner

ACCOUNT = "alice@example.test"


def message(i: int) -> bytes:
    return (
        f"From: Sender {i} <s{i}@example.test>\r\n"
        f"Subject: note {i}\r\n"
        "X-Other: not indexed\r\n"
        "Content-Type: text/plain;\r\n charset=utf-8\r\n"
        "\r\n"
        f"body {i}\r\nsecond line\r\n"
    ).encode()


def newStore(tmp_path: Path) -> MaildirStore:
    return MaildirStore(tmp_path / "mail", runInThread=synchronousRunner, hostname="test.example")


def inboxDir(tmp_path: Path) -> Path:
    return tmp_path / "mail" / "example.test" / "alice"


def deliver(store: MaildirStore, data: bytes) -> None:
    writer = store.startMessage([ACCOUNT])
    writer.write(data)
    successResultOf(writer.commit())


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """
    Count the messages whose contents the index parses.
    """
    calls: list[int] = []
    original = indexModule.summarize

    def counting(f: Any) -> Any:
        calls.append(1)
        return original(f)

    monkeypatch.setattr(indexModule, "summarize", counting)
    return calls


def summaries(store: MaildirStore) -> dict[int, Any]:
    folder = store.openFolder(ACCOUNT)
    return dict(successResultOf(folder.summaries([i.uid for i in folder.messages()])))


def test_providesInterface(tmp_path: Path) -> None:
    """
    Maildir folders provide L{IIndexedFolder}.
    """
    assert verifyObject(IIndexedFolder, newStore(tmp_path).openFolder(ACCOUNT))


def test_summaryContents(tmp_path: Path) -> None:
    """
    A summary holds the indexed fields byte-exact (continuation lines
    included, unindexed fields left out), the header size and the body's
    line count.
    """
    store = newStore(tmp_path)
    deliver(store, message(1))
    (summary,) = summaries(store).values()
    assert summary.fields == (
        ("from", b"From: Sender 1 <s1@example.test>\r\n"),
        ("subject", b"Subject: note 1\r\n"),
        ("content-type", b"Content-Type: text/plain;\r\n charset=utf-8\r\n"),
    )
    assert summary.headerSize == message(1).index(b"\r\n\r\n") + 4
    assert summary.bodyLines == 2
    assert summary.size == len(message(1))


def test_openReadsNoContents(tmp_path: Path, counted: list[int]) -> None:
    """
    Opening a folder and listing its messages parses no message; the first
    summary request parses each once, and a new store (a restarted server)
    gets them from C{mailsrv-cache} without parsing any.
    """
    store = newStore(tmp_path)
    for i in range(5):
        deliver(store, message(i))
    newStore(tmp_path).openFolder(ACCOUNT).messages()
    assert counted == []
    first = summaries(store)
    assert len(counted) == 5
    assert (inboxDir(tmp_path) / CACHE_NAME).exists()
    assert summaries(newStore(tmp_path)) == first
    assert len(counted) == 5


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-10],
        lambda data: b"garbage\n" + data,
        lambda data: data.replace(b'"version": 2', b'"version": 99', 1),
        lambda data: data.replace(b"note", b"NOTE"),
    ],
    ids=["truncated", "garbage", "otherVersion", "checksum"],
)
def test_damagedCacheIsRebuilt(tmp_path: Path, counted: list[int], damage: Any) -> None:
    """
    A truncated, unparsable, foreign-version or checksum-failing cache file
    is not trusted: every message is parsed again, the results are right,
    and a valid file replaces the damaged one.
    """
    store = newStore(tmp_path)
    for i in range(3):
        deliver(store, message(i))
    expected = summaries(store)
    path = inboxDir(tmp_path) / CACHE_NAME
    path.write_bytes(damage(path.read_bytes()))
    del counted[:]
    assert summaries(newStore(tmp_path)) == expected
    assert len(counted) == 3
    assert HeaderCache._parse(path.read_bytes()).keys() == HeaderCache(inboxDir(tmp_path)).load().keys()
    assert len(HeaderCache(inboxDir(tmp_path)).load()) == 3


def test_staleRecordIsReparsed(tmp_path: Path, counted: list[int]) -> None:
    """
    A record whose size does not match the message it names (a stale or
    foreign cache) is ignored for that message, which is parsed again.
    """
    store = newStore(tmp_path)
    deliver(store, message(1))
    summaries(store)
    path = inboxDir(tmp_path) / CACHE_NAME
    header, record = path.read_bytes().split(b"\n")[:2]
    fields = json.loads(record)
    fields[1] += 1  # size
    fields[4] = [["subject", "Subject: wrong\r\n"]]
    body = json.dumps(fields).encode() + b"\n"
    import zlib

    meta = json.loads(header)
    meta["crc"] = zlib.crc32(body)
    path.write_bytes(json.dumps(meta).encode() + b"\n" + body)
    del counted[:]
    (summary,) = summaries(newStore(tmp_path)).values()
    assert len(counted) == 1
    assert ("subject", b"Subject: note 1\r\n") in summary.fields


def test_newAndVanishedFiles(tmp_path: Path, counted: list[int]) -> None:
    """
    Files added behind the store's back are parsed once when asked for;
    files removed are dropped from the cache file on its next write.
    """
    store = newStore(tmp_path)
    for i in range(3):
        deliver(store, message(i))
    summaries(store)
    cur = inboxDir(tmp_path) / "cur"
    victim = sorted(os.listdir(cur))[0]
    os.unlink(cur / victim)
    data = message(9)
    (cur / f"1700000000.M1P1.elsewhere,S={len(data)},W={len(data)}:2,").write_bytes(data)
    del counted[:]
    result = summaries(store)
    assert len(counted) == 1
    assert len(result) == 3
    saved = HeaderCache(inboxDir(tmp_path)).load()
    assert victim.split(":")[0] not in saved
    assert "1700000000.M1P1.elsewhere,S=%d,W=%d" % (len(data), len(data)) in saved


def settle(folderDir: Path) -> None:
    """
    Date the folder's directories and metadata files a minute back, as if
    nothing had changed for a while.
    """
    past = time.time() - 60
    for name in ("cur", "new", "dovecot-uidlist", "dovecot-keywords"):
        if (folderDir / name).exists():
            os.utime(folderDir / name, (past, past))


def test_unchangedFolderIsNotRescanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Opening a folder whose directories and metadata files are as the last
    refresh left them (and settled) reuses that snapshot without listing
    the directories; any change (here a delivery) makes the next open
    rescan.
    """
    store = newStore(tmp_path)
    deliver(store, message(1))
    store.openFolder(ACCOUNT)  # moves it from new/ to cur/
    settle(inboxDir(tmp_path))
    store.openFolder(ACCOUNT)
    calls: list[int] = []
    original = FolderMetadata.sync

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FolderMetadata, "sync", counting)
    assert [i.uid for i in store.openFolder(ACCOUNT).messages()] == [1]
    assert calls == []
    deliver(store, message(2))
    assert [i.uid for i in store.openFolder(ACCOUNT).messages()] == [1, 2]
    assert calls


def test_sharedSnapshotIsCopiedOnWrite(tmp_path: Path) -> None:
    """
    Two views sharing a reused snapshot stay independent: flags set
    through one do not show in the other before its refresh.
    """
    store = newStore(tmp_path)
    deliver(store, message(1))
    store.openFolder(ACCOUNT)
    settle(inboxDir(tmp_path))
    store.openFolder(ACCOUNT)
    one, two = store.openFolder(ACCOUNT), store.openFolder(ACCOUNT)
    one.setFlags(1, ["\\Seen"])
    assert one.messages()[0].flags == {"\\Seen"}
    assert two.messages()[0].flags == frozenset()
    two.refresh()
    assert two.messages()[0].flags == {"\\Seen"}


def test_modSeqGrowsOnFlagChanges(tmp_path: Path) -> None:
    """
    Every flag change gives the message a MODSEQ above every earlier one,
    also when another process renamed the file; the values survive a new
    store, and an expunge raises HIGHESTMODSEQ.
    """
    store = newStore(tmp_path)
    deliver(store, message(1))
    deliver(store, message(2))
    folder = store.openFolder(ACCOUNT)
    first = {i.uid: i.modSeq for i in folder.messages()}
    assert all(first.values()) and folder.highestModSeq() == max(first.values())
    info = folder.setFlags(1, ["\\Flagged"])
    assert info.modSeq > max(first.values())
    assert folder.highestModSeq() == info.modSeq
    cur = inboxDir(tmp_path) / "cur"
    (name,) = [n for n in os.listdir(cur) if n.endswith(":2,")]
    os.rename(cur / name, cur / (name + "S"))  # another process sets \Seen
    folder.refresh()
    byUid = {i.uid: i for i in folder.messages()}
    assert byUid[2].modSeq > info.modSeq
    assert byUid[1].modSeq == info.modSeq
    again = newStore(tmp_path).openFolder(ACCOUNT)
    assert {i.uid: i.modSeq for i in again.messages()} == {1: byUid[1].modSeq, 2: byUid[2].modSeq}
    before = again.highestModSeq()
    successResultOf(again.expunge([1]))
    again.refresh()
    assert again.highestModSeq() > before


def test_damagedModSeqLogStartsAbove(tmp_path: Path) -> None:
    """
    A damaged MODSEQ log is replaced, and the new MODSEQs are above every
    value a client may have seen.
    """
    store = newStore(tmp_path)
    deliver(store, message(1))
    folder = store.openFolder(ACCOUNT)
    folder.setFlags(1, ["\\Seen"])
    seen = folder.highestModSeq()
    (inboxDir(tmp_path) / MODSEQ_NAME).write_bytes(b"not a log\n")
    again = newStore(tmp_path).openFolder(ACCOUNT)
    assert again.messages()[0].modSeq > seen
    assert (inboxDir(tmp_path) / MODSEQ_NAME).read_bytes().startswith(b"MAILSRV-MODSEQ 2 ")


def test_modSeqLogCompacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The append-only log is rewritten with one line per message once it has
    grown several times larger than the folder, keeping the values.
    """
    monkeypatch.setattr(indexModule.ModSeqLog, "COMPACT_FACTOR", 1)
    monkeypatch.setattr(indexModule.ModSeqLog, "COMPACT_SLACK", 10)
    store = newStore(tmp_path)
    deliver(store, message(1))
    folder = store.openFolder(ACCOUNT)
    for n in range(30):
        folder.setFlags(1, ["\\Seen"] if n % 2 else [])
    lines = (inboxDir(tmp_path) / MODSEQ_NAME).read_bytes().splitlines()
    assert len(lines) <= 12
    assert newStore(tmp_path).openFolder(ACCOUNT).messages()[0].modSeq == folder.highestModSeq()


def test_expungedUidsRemembered(tmp_path: Path) -> None:
    """
    Expunged UIDs are recorded with the MODSEQ of their expunge, whoever
    removed the files, and a new process (store) reads them back.
    """
    store = newStore(tmp_path)
    for n in range(5):
        deliver(store, message(n))
    folder = store.openFolder(ACCOUNT)
    before = folder.highestModSeq()
    assert folder.vanishedSince(before) == []
    successResultOf(folder.expunge([2, 3]))
    folder.refresh()
    middle = folder.highestModSeq()
    assert middle > before
    # Another program deletes a file.
    cur = inboxDir(tmp_path) / "cur"
    victim = next(p for p in cur.iterdir() if folder.messages()[-1].key in p.name)
    victim.unlink()
    folder.refresh()
    assert folder.vanishedSince(before) == [2, 3, 5]
    assert folder.vanishedSince(middle) == [5]
    assert folder.vanishedSince(folder.highestModSeq()) == []
    again = newStore(tmp_path).openFolder(ACCOUNT)
    assert again.vanishedSince(before) == [2, 3, 5]


def test_expungeLogBounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Compaction keeps the most recent expunged UIDs only; asking about
    earlier MODSEQs then answers L{None} (not known).
    """
    monkeypatch.setattr(indexModule.ModSeqLog, "MAX_EXPUNGED_UIDS", 3)
    monkeypatch.setattr(indexModule.ModSeqLog, "COMPACT_FACTOR", 1)
    monkeypatch.setattr(indexModule.ModSeqLog, "COMPACT_SLACK", 0)
    store = newStore(tmp_path)
    for n in range(8):
        deliver(store, message(n))
    folder = store.openFolder(ACCOUNT)
    start = folder.highestModSeq()
    marks = []
    for uid in range(1, 6):
        successResultOf(folder.expunge([uid]))
        folder.refresh()
        marks.append(folder.highestModSeq())
    assert folder.vanishedSince(start) is None
    assert folder.vanishedSince(marks[1]) == [3, 4, 5]
    assert newStore(tmp_path).openFolder(ACCOUNT).vanishedSince(marks[1]) == [3, 4, 5]
    lines = (inboxDir(tmp_path) / MODSEQ_NAME).read_bytes().splitlines()
    assert sum(1 for line in lines if line.startswith(b"- ")) <= 3


def test_version1LogUpgraded(tmp_path: Path) -> None:
    """
    A version 1 log (no UIDs) keeps its MODSEQs; expunges before the
    upgrade are unknown, those after it are recorded.
    """
    store = newStore(tmp_path)
    for n in range(3):
        deliver(store, message(n))
    folder = store.openFolder(ACCOUNT)
    modseqs = [m.modSeq for m in folder.messages()]
    path = inboxDir(tmp_path) / MODSEQ_NAME
    header, *lines = path.read_text().splitlines()
    magic, _, validity, highest, _ = header.split(" ")
    old = [f"{magic} 1 {validity} {highest}"] + [" ".join(line.split(" ")[:3]) for line in lines if not line.startswith("-")]
    path.write_text("\n".join(old) + "\n")
    again = newStore(tmp_path).openFolder(ACCOUNT)
    assert [m.modSeq for m in again.messages()] == modseqs
    assert again.vanishedSince(0) is None
    mark = again.highestModSeq()
    successResultOf(again.expunge([2]))
    again.refresh()
    assert again.vanishedSince(mark) == [2]


def test_highestModSeqAfterRestart(tmp_path: Path) -> None:
    """
    A new process whose first refresh finds nothing to add to the log still
    reports the log's HIGHESTMODSEQ (it reported 0 before).
    """
    store = newStore(tmp_path)
    deliver(store, message(1))
    first = store.openFolder(ACCOUNT)
    again = newStore(tmp_path).openFolder(ACCOUNT)
    assert again.highestModSeq() == first.highestModSeq() == again.messages()[0].modSeq > 0
