# -*- test-case-name: tests.filters.test_rspamd_learn -*-
"""
Teaching Rspamd from what users do (docker-mailserver's C{RSPAMD_LEARN}):
a message moved or copied over IMAP into the Junk folder is sent to
Rspamd's controller as spam, one moved out of Junk into any folder but the
Trash as ham.  Rspamd's Bayes classifier then scores the next such message
accordingly.

Folders are told by their special use (RFC 6154 C{\\Junk}, C{\\Trash}) or,
without one, by their usual names.  Learning runs in the background, one
message after another; a failure is logged and never affects the IMAP
command.  Rspamd answers a message it has learnt already with an error,
logged at info level: users move the same message back and forth.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Mapping, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.client import FileBodyProducer
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent
from zope.interface import implementer

from mailsrv.filters.rspamd import _readBody
from mailsrv.interfaces import IMailFolder, ISpamReports

#: Folder names taken as Junk or Trash when no special use says so.
JUNK_NAMES = frozenset({"junk", "spam"})
TRASH_NAMES = frozenset({"trash", "deleted messages", "deleted items"})

RunBlocking = Callable[..., "defer.Deferred[Any]"]


def folderRole(name: str, specialUse: Mapping[str, str]) -> str:
    """
    C{"junk"}, C{"trash"} or C{""} for a store folder name.
    """
    use = specialUse.get(name)
    if use == "\\Junk":
        return "junk"
    if use == "\\Trash":
        return "trash"
    if use is None:
        leaf = name.rsplit("/", 1)[-1].lower()
        if leaf in JUNK_NAMES:
            return "junk"
        if leaf in TRASH_NAMES:
            return "trash"
    return ""


def verdict(source: str, destination: str) -> str:
    """
    What a move from a folder of role C{source} into one of role
    C{destination} says: C{"spam"}, C{"ham"} or C{""} (nothing).
    """
    if destination == "junk" and source != "junk":
        return "spam"
    if source == "junk" and destination not in ("junk", "trash"):
        return "ham"
    return ""


@implementer(ISpamReports)
class RspamdLearner:
    """
    @param agent: an HTTP agent.
    @param controllerUrl: Rspamd's controller, C{http://127.0.0.1:11334}.
    @param password: the controller's C{enable_password}.
    @param specialUse: the store's account -> folder -> special use.
    @param runBlocking: reads message files off the reactor thread.
    @param maxSize: larger messages are not sent.
    """

    log = Logger()

    def __init__(
        self,
        agent: IAgent,
        controllerUrl: str,
        password: str,
        specialUse: Callable[[str], Mapping[str, str]],
        runBlocking: RunBlocking,
        clock: IReactorTime,
        timeout: float = 30.0,
        maxSize: int = 50 * 1024 * 1024,
    ) -> None:
        self.agent = agent
        self.url = controllerUrl.rstrip("/")
        self.password = password
        self.specialUse = specialUse
        self.runBlocking = runBlocking
        self.clock = clock
        self.timeout = timeout
        self.maxSize = maxSize

    def messagesMoved(self, source: IMailFolder, destination: IMailFolder, uids: Sequence[int]) -> None:
        try:
            uses = self.specialUse(destination.account)
            kind = verdict(folderRole(source.name, uses), folderRole(destination.name, uses))
        except Exception:
            self.log.failure("Cannot tell what moving mail into {folder} means", folder=destination.name)
            return
        if kind and uids:
            defer.Deferred.fromCoroutine(self._learnAll(kind, destination, list(uids)))

    async def _learnAll(self, kind: str, folder: IMailFolder, uids: list[int]) -> None:
        learned = 0
        try:
            # The view was opened before the transfer added the messages.
            folder.refresh()
        except Exception:
            self.log.failure("Cannot read {folder} of {account} to learn from it", folder=folder.name, account=folder.account)
            return
        for uid in uids:
            try:
                data = await self.runBlocking(self._read, folder, uid)
                if data is None:
                    continue
                if await self.learn(kind, data):
                    learned += 1
            except Exception:
                self.log.failure(
                    "Rspamd could not learn message {uid} of {account} as {kind}",
                    uid=uid,
                    account=folder.account,
                    kind=kind,
                )
        self.log.info(
            "Rspamd learned {learned} of {count} messages of {account} as {kind} (moved to {folder})",
            learned=learned,
            count=len(uids),
            account=folder.account,
            kind=kind,
            folder=folder.name,
        )

    def _read(self, folder: IMailFolder, uid: int) -> "bytes | None":
        with folder.openMessage(uid) as f:
            data = f.read(self.maxSize + 1)
        if len(data) > self.maxSize:
            self.log.info("Message {uid} of {account} too large to learn", uid=uid, account=folder.account)
            return None
        return data

    async def learn(self, kind: str, data: bytes) -> bool:
        """
        Send one message to C{/learnspam} or C{/learnham}; whether Rspamd
        learned it (C{False}: it knew it already, or refused, logged).
        """
        headers = Headers({b"Password": [self.password.encode("utf-8")]})
        request = self.agent.request(
            b"POST", f"{self.url}/learn{kind}".encode("ascii"), headers, FileBodyProducer(io.BytesIO(data))
        )
        timer = self.clock.callLater(self.timeout, request.cancel)
        try:
            response = await request
            body = await _readBody(response)
        finally:
            if timer.active():
                timer.cancel()
        if response.code == 200:
            return True
        self.log.info(
            "Rspamd did not learn a message as {kind}: HTTP {code} {answer}",
            kind=kind,
            code=response.code,
            answer=body[:200].decode("utf-8", "replace"),
        )
        return False


def rspamdLearner(config: Any, store: Any, reactor: Any) -> "RspamdLearner | None":
    """
    The learner when C{[rspamd] learn}, else L{None}.
    """
    rspamd = config.rspamd
    if not rspamd.learn:
        return None
    from twisted.internet.threads import deferToThread

    from mailsrv.filters.rspamd import rspamdAgent

    return RspamdLearner(
        rspamdAgent(reactor),
        rspamd.controllerUrl,
        rspamd.password,
        store.specialUse,
        deferToThread,
        reactor,
        timeout=rspamd.timeout,
        maxSize=rspamd.maxSize,
    )
