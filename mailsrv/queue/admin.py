# -*- test-case-name: tests.queue.test_cli -*-
"""
C{mailsrv queue list|show|flush|delete}: the operator's view of the
outbound spool, safe to use while the server runs.

The command never talks to the server; it works on the spool directory
the server works on, relying on the same rules the scheduler relies on:

 - reading is harmless: an envelope is replaced atomically, so it is
   either the old or the new version; a message that moves between
   states while being listed is simply looked up again;
 - C{flush} only creates the trigger file C{queue/flush}, which the
   server polls every second and then retries every deferred message;
 - C{delete} renames the message directory out of its state directory
   into C{tmp/} in one C{rename(2)} and only then removes it.  The
   scheduler finds a message by looking in the state directories, so it
   sees the message either whole or not at all; an attempt already
   running when the message is deleted finds it gone when it wants to
   record the outcome, and drops it (a recipient may still have been
   delivered by that attempt).
"""

from __future__ import annotations

import time
from typing import Callable, Optional, TextIO

from mailsrv.queue.bounce import MAX_RETURNED_HEADERS, originalHeaders
from mailsrv.queue.spool import MESSAGE_FILE, PENDING, QueueEntry, Spool, validQueueId

# How often delete looks the message up again when the scheduler moved it
# between the look-up and the rename.
_DELETE_TRIES = 20


class QueueCommandError(Exception):
    """
    A user error (bad or unknown queue id): printed as it is, exit code 1.
    """


def formatAge(seconds: float) -> str:
    """
    A short age for listings: C{45s}, C{12m}, C{3h05m}, C{2d04h}.
    """
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _oneLine(text: str) -> str:
    return " ".join(text.split())


class QueueAdmin:
    """
    The queue subcommands on one spool.

    @param clock: seconds since the epoch, for ages.
    """

    def __init__(self, spool: Spool, out: TextIO, clock: Callable[[], float] = time.time) -> None:
        self.spool = spool
        self.out = out
        self.clock = clock

    def _checkId(self, queueId: str) -> str:
        if not validQueueId(queueId):
            raise QueueCommandError(f"invalid queue id {queueId[:80]!r} (6 to 64 letters and digits)")
        return queueId

    def _load(self, queueId: str) -> tuple[str, QueueEntry]:
        """
        The state and envelope of a message, looked up again if it moved
        between the two reads (the scheduler renames while we look).
        """
        for _ in range(_DELETE_TRIES):
            state = self.spool.find(queueId)
            if state is None:
                break
            try:
                return state, self.spool.load(state, queueId)
            except FileNotFoundError:
                continue
        raise QueueCommandError(f"no message {queueId} in the queue")

    # -- list ---------------------------------------------------------------

    def list(self) -> int:
        """
        One aligned line per message: id, state, age, size, sender,
        recipients (each with its state when not pending), last error.
        Returns how many messages were listed.
        """
        now = self.clock()
        rows: list[tuple[str, ...]] = []
        for state, queueId in list(self.spool.entries()):
            try:
                entry = self.spool.load(state, queueId)
            except FileNotFoundError:
                continue  # delivered or deleted meanwhile
            except (OSError, ValueError, KeyError) as e:
                rows.append((queueId, state, "?", "?", "?", "?", f"unreadable envelope: {e}"))
                continue
            recipients = ",".join(
                r.address if r.state == PENDING else f"{r.address}({r.state})" for r in entry.recipients
            )
            rows.append(
                (
                    queueId,
                    state,
                    formatAge(now - entry.createdAt),
                    str(entry.size),
                    f"<{entry.sender}>",
                    recipients,
                    _oneLine(entry.lastError),
                )
            )
        if not rows:
            print("Mail queue is empty", file=self.out)
            return 0
        header = ("ID", "STATE", "AGE", "SIZE", "SENDER", "RECIPIENTS", "LAST ERROR")
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
        for row in (header, *rows):
            cells = [cell.ljust(width) for cell, width in zip(row, widths)]
            print("  ".join(cells + [row[-1]]).rstrip(), file=self.out)
        print(f"-- {len(rows)} message{'s' if len(rows) != 1 else ''}", file=self.out)
        return len(rows)

    # -- show ---------------------------------------------------------------

    def show(self, queueId: str) -> None:
        """
        The envelope, each recipient's state and last reply, then the
        header section of the message.
        """
        self._checkId(queueId)
        state, entry = self._load(queueId)
        out = self.out
        created = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(entry.createdAt))
        print(f"Queue-ID: {entry.queueId}", file=out)
        print(f"State: {state}", file=out)
        print(f"Sender: <{entry.sender}>", file=out)
        print(f"Queued: {created} ({formatAge(self.clock() - entry.createdAt)} ago)", file=out)
        print(f"Size: {entry.size}", file=out)
        print(f"Attempts: {entry.attempts}", file=out)
        if entry.nextAttempt and state == "deferred":
            wait = entry.nextAttempt - self.clock()
            when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(entry.nextAttempt))
            print(f"Next-Attempt: {when} (in {formatAge(wait)})", file=out)
        if entry.mailParams:
            params = " ".join(k if v is None else f"{k}={v}" for k, v in sorted(entry.mailParams.items()))
            print(f"Parameters: {params}", file=out)
        if entry.lastError:
            print(f"Last-Error: {_oneLine(entry.lastError)}", file=out)
        for r in entry.recipients:
            line = f"Recipient: <{r.address}> {r.state}"
            if r.status:
                line += f" {r.status}"
            if r.remoteMta:
                line += f" via {r.remoteMta}"
            print(line, file=out)
            if r.diagnostic:
                print(f"    {_oneLine(r.diagnostic)}", file=out)
        print("", file=out)
        headers = self._headers(state, queueId)
        if headers is None:
            print("(message file gone: delivered or deleted meanwhile)", file=out)
        else:
            out.write(headers.decode("utf-8", "replace").replace("\r\n", "\n"))

    def _headers(self, state: str, queueId: str) -> Optional[bytes]:
        for _ in range(_DELETE_TRIES):
            try:
                with open(self.spool.path(state, queueId) / MESSAGE_FILE, "rb") as f:
                    return originalHeaders(f.read(MAX_RETURNED_HEADERS))
            except FileNotFoundError:
                found = self.spool.find(queueId)
                if found is None:
                    return None
                state = found
        return None

    # -- flush --------------------------------------------------------------

    def flush(self) -> None:
        """
        Ask the running server to retry every deferred message now.
        """
        self.spool.ensureDirectories()
        self.spool.requestFlush()
        print("Flush requested: the server retries deferred messages within a second", file=self.out)

    # -- delete -------------------------------------------------------------

    def delete(self, queueId: str) -> None:
        """
        Remove a message from the queue (see the module docstring for why
        this is safe against the running server).
        """
        self._checkId(queueId)
        for _ in range(_DELETE_TRIES):
            state = self.spool.find(queueId)
            if state is None:
                break
            try:
                self.spool.remove(state, queueId)
            except FileNotFoundError:
                continue  # moved by the scheduler between find and rename
            note = " (a delivery attempt was running; it may still have delivered some recipients)"
            print(f"Deleted {queueId}{note if state == 'active' else ''}", file=self.out)
            return
        raise QueueCommandError(f"no message {queueId} in the queue")
