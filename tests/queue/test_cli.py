"""
C{mailsrv queue list|show|flush|delete} through L{mailsrv.cli.main},
against a spool holding hand-made entries in each state.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from mailsrv.cli import EXIT_OK, EXIT_USER, main
from mailsrv.queue.admin import formatAge
from mailsrv.queue.spool import DELIVERED, FAILED, QueueEntry, RecipientState, Spool

HEADERS = b"From: <alice@example.test>\r\nTo: <a@remote.test>\r\nSubject: queued one\r\n"


def run(config: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--config", str(config), *argv], stdin=io.StringIO(), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Spool]:
    config = tmp_path / "mailsrv.toml"
    config.write_text(
        "[server]\n"
        'hostname = "mail.example.test"\n'
        'domains = ["example.test"]\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        f'config_dir = "{tmp_path / "conf"}"\n'
    )
    spool = Spool(tmp_path / "data" / "queue")
    spool.ensureDirectories()
    return config, spool


def enqueue(spool: Spool, entry: QueueEntry, state: str, body: bytes = b"body\r\n") -> None:
    writer = spool.newWriter(entry)
    writer.write(HEADERS + b"\r\n" + body)
    writer.commit()
    if state != "incoming":
        spool.move(entry.queueId, "incoming", state)


def deferredEntry(queueId: str = "DEFER0001") -> QueueEntry:
    return QueueEntry(
        queueId=queueId,
        sender="alice@example.test",
        recipients=[
            RecipientState("a@remote.test", diagnostic="451 4.3.0 Try again later", status="4.3.0", remoteMta="mx.remote.test"),
            RecipientState("b@remote.test", state=DELIVERED, status="2.0.0"),
        ],
        createdAt=time.time() - 2 * 3600 - 300,
        attempts=3,
        nextAttempt=time.time() + 600,
        lastError="451 4.3.0 Try again later",
        mailParams={"BODY": "8BITMIME"},
    )


def test_list_aligned(setup: tuple[Path, Spool]) -> None:
    """
    One line per message under a header, columns aligned: id, state, age,
    size, sender, recipients (with a state when not pending) and the last
    error; a count at the end.
    """
    config, spool = setup
    enqueue(spool, deferredEntry(), "deferred")
    enqueue(
        spool,
        QueueEntry(queueId="NEW000000001", sender="", recipients=[RecipientState("x@else.test", state=FAILED)], createdAt=time.time()),
        "incoming",
    )
    code, out, _ = run(config, "queue", "list")
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATE", "AGE", "SIZE", "SENDER", "RECIPIENTS", "LAST", "ERROR"]
    assert lines[-1] == "-- 2 messages"
    byId = {line.split()[0]: line for line in lines[1:-1]}
    deferred = byId["DEFER0001"].split(None, 6)
    assert deferred[:3] == ["DEFER0001", "deferred", "2h05m"]
    assert deferred[4] == "<alice@example.test>"
    assert deferred[5] == "a@remote.test,b@remote.test(delivered)"
    assert deferred[6] == "451 4.3.0 Try again later"
    assert byId["NEW000000001"].split()[4:6] == ["<>", "x@else.test(failed)"]
    # Aligned: every column starts at the same offset on every line.
    for column in ("STATE", "SENDER", "RECIPIENTS"):
        offset = lines[0].index(column)
        for line in lines[1:-1]:
            assert line[offset - 2 : offset] == "  " and line[offset] != " "


def test_list_empty(setup: tuple[Path, Spool]) -> None:
    """
    An empty queue says so.
    """
    config, _ = setup
    assert run(config, "queue", "list")[:2] == (EXIT_OK, "Mail queue is empty\n")


def test_list_unreadable_envelope(setup: tuple[Path, Spool]) -> None:
    """
    A damaged envelope is listed as such instead of breaking the listing.
    """
    config, spool = setup
    enqueue(spool, deferredEntry(), "deferred")
    (spool.path("deferred", "DEFER0001") / "envelope.json").write_text("{not json")
    code, out, _ = run(config, "queue", "list")
    assert code == EXIT_OK
    assert "unreadable envelope" in out


def test_show(setup: tuple[Path, Spool]) -> None:
    """
    show prints the envelope, each recipient with its state and last
    reply, and the header section of the message (not its body).
    """
    config, spool = setup
    enqueue(spool, deferredEntry(), "deferred", body=b"secret body\r\n")
    code, out, _ = run(config, "queue", "show", "DEFER0001")
    assert code == EXIT_OK
    assert "Queue-ID: DEFER0001\nState: deferred\nSender: <alice@example.test>\n" in out
    assert "Attempts: 3\n" in out
    assert "Parameters: BODY=8BITMIME\n" in out
    assert "Recipient: <a@remote.test> pending 4.3.0 via mx.remote.test\n    451 4.3.0 Try again later\n" in out
    assert "Recipient: <b@remote.test> delivered 2.0.0\n" in out
    assert out.endswith("\n\nFrom: <alice@example.test>\nTo: <a@remote.test>\nSubject: queued one\n")
    assert "secret body" not in out


@pytest.mark.parametrize("command", ["show", "delete"])
@pytest.mark.parametrize("bad", ["../queue", "a/b", "abc", "x" * 65, "DEFER.0001"])
def test_invalid_ids_refused(setup: tuple[Path, Spool], command: str, bad: str) -> None:
    """
    An id that is not 6 to 64 letters and digits is refused before it is
    used in a path; nothing is touched.
    """
    config, spool = setup
    enqueue(spool, deferredEntry(), "deferred")
    code, out, err = run(config, "queue", command, bad)
    assert code == EXIT_USER
    assert "invalid queue id" in err and out == ""
    assert spool.find("DEFER0001") == "deferred"


@pytest.mark.parametrize("command", ["show", "delete"])
def test_unknown_id(setup: tuple[Path, Spool], command: str) -> None:
    """
    A well-formed id that is not queued is a user error.
    """
    config, _ = setup
    code, _, err = run(config, "queue", command, "NOSUCH123")
    assert code == EXIT_USER
    assert err == "mailsrv: no message NOSUCH123 in the queue\n"


@pytest.mark.parametrize("state", ["incoming", "deferred", "active"])
def test_delete(setup: tuple[Path, Spool], state: str) -> None:
    """
    delete removes the message whatever its state, leaving nothing behind
    in any state directory or in tmp/.
    """
    config, spool = setup
    enqueue(spool, deferredEntry(), state)
    enqueue(spool, deferredEntry("KEEP00001"), "deferred")
    code, out, _ = run(config, "queue", "delete", "DEFER0001")
    assert code == EXIT_OK
    assert out.startswith("Deleted DEFER0001")
    assert ("delivery attempt was running" in out) == (state == "active")
    assert spool.find("DEFER0001") is None
    assert os.listdir(spool.root / "tmp") == []
    assert spool.find("KEEP00001") == "deferred"
    assert run(config, "queue", "delete", "DEFER0001")[0] == EXIT_USER


def test_delete_is_one_rename(setup: tuple[Path, Spool], monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The message leaves its state directory in one rename into tmp/ before
    anything is removed, so the scheduler never sees it half-deleted.
    """
    config, spool = setup
    enqueue(spool, deferredEntry(), "deferred")
    seen: list[tuple[str, str]] = []
    realRename = os.rename

    def rename(source: str, target: str) -> None:
        seen.append((str(source), str(target)))
        # At the rename the message is still complete.
        assert sorted(os.listdir(source)) == ["envelope.json", "message"]
        realRename(source, target)

    monkeypatch.setattr(os, "rename", rename)
    assert run(config, "queue", "delete", "DEFER0001")[0] == EXIT_OK
    ((source, target),) = seen
    assert source == str(spool.path("deferred", "DEFER0001"))
    assert Path(target).parent == spool.root / "tmp"


def test_flush_creates_trigger(setup: tuple[Path, Spool]) -> None:
    """
    flush leaves the trigger file the running server polls, which the
    server then consumes once.
    """
    config, spool = setup
    code, out, _ = run(config, "queue", "flush")
    assert code == EXIT_OK
    assert "within a second" in out
    assert spool.takeFlushRequest() is True
    assert spool.takeFlushRequest() is False


def test_format_age() -> None:
    """
    Ages are short and keep two units at most.
    """
    assert [formatAge(s) for s in (-5, 45, 720, 3 * 3600 + 300, 2 * 86400 + 4 * 3600 + 59)] == [
        "0s",
        "45s",
        "12m",
        "3h05m",
        "2d04h",
    ]
