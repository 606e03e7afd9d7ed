# -*- test-case-name: tests.protocols.test_managesieve -*-
"""
The script commands of the ManageSieve server (RFC 5804 sections 2.5 to
2.12): HAVESPACE, PUTSCRIPT, CHECKSCRIPT, LISTSCRIPTS, GETSCRIPT,
SETACTIVE, DELETESCRIPT and RENAMESCRIPT, over an L{ISieveScriptStore}.

Each command runs as a coroutine while the session holds further input;
store refusals (L{mailsrv.errors.MailError}) become C{NO} with their
response code, anything unexpected is logged and answered C{NO
(TRYLATER)}.  Scripts are checked by a L{ScriptChecker} (the Sieve
parser) before PUTSCRIPT stores them, for CHECKSCRIPT, and before
SETACTIVE activates one that was put in place by other means.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.defer import Deferred, maybeDeferred

from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import SCRIPT_ACTIVE, SCRIPT_EXISTS, ISieveScriptStore
from mailsrv.protocols.managesieve.responses import (
    ACTIVE,
    ALREADYEXISTS,
    MAXSCRIPTS,
    MAXSIZE,
    NONEXISTENT,
    TEXT_TEMP,
    TRYLATER,
    WARNINGS,
    quoted,
    response,
)
from mailsrv.sieve import SUPPORTED_EXTENSIONS, SieveError, parseScript

if TYPE_CHECKING:
    from mailsrv.protocols.managesieve.server import ManageSieveLimits

Runner = Callable[..., "Deferred[Any]"]


@dataclasses.dataclass(frozen=True)
class ScriptCheck:
    """
    What the Sieve parser says about a script: C{error} (shown to the
    client, e.g. C{line 3: unknown command}) when it is invalid, and
    C{warnings} about a valid one.
    """

    error: Optional[str] = None
    warnings: tuple[str, ...] = ()


ScriptChecker = Callable[[bytes], ScriptCheck]

#: The SIEVE capability: every extension the Sieve package implements,
#: sorted (RFC 5804 section 1.7 lists them space-separated).
SIEVE_EXTENSIONS: tuple[str, ...] = tuple(sorted(SUPPORTED_EXTENSIONS))


def checkSieve(content: bytes) -> ScriptCheck:
    """
    The L{ScriptChecker} of the server: L{mailsrv.sieve.parseScript}, whose
    error (C{line N: message}) the client sees.  The size was checked
    against the store's limit before, so the parser's own limit is not
    applied a second time.
    """
    try:
        parseScript(content, maxSize=max(len(content), 1))
    except SieveError as e:
        return ScriptCheck(error=str(e))
    return ScriptCheck()


class ScriptCommands:
    """
    The script commands, mixed into L{ManageSieveServer}; they run in the
    authenticated state only.
    """

    # Provided by ManageSieveServer.
    _account: Optional[str]
    _connected: bool
    _scripts: ISieveScriptStore
    _checkScript: ScriptChecker
    _limits: "ManageSieveLimits"
    _runInThread: Optional[Runner]
    transport: Any
    _ok: Callable[..., None]
    _no: Callable[..., None]
    _info: Callable[..., None]
    _failure: Callable[..., None]
    _run: Callable[[Any], None]
    _done: Callable[[], None]

    def _name(self, value: bytes) -> Optional[str]:
        """
        A script name from the wire, or L{None} after answering that it is
        not UTF-8.
        """
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            self._no("Invalid script name.")
            return None

    def _storeFailed(self, error: MailError) -> None:
        """
        Answer a store refusal with its response code.
        """
        kind = error.kind
        if kind is ErrorKind.NOT_FOUND:
            self._no("Script does not exist.", NONEXISTENT)
        elif kind is ErrorKind.PERM and error.reason == SCRIPT_EXISTS:
            self._no("A script with that name already exists.", ALREADYEXISTS)
        elif kind is ErrorKind.PERM and error.reason == SCRIPT_ACTIVE:
            self._no("Cannot delete the active script.", ACTIVE)
        elif kind is ErrorKind.TOO_MANY:
            self._no(error.message + ".", MAXSCRIPTS)
        elif kind is ErrorKind.TOO_BIG:
            self._no(error.message + ".", MAXSIZE)
        elif kind is ErrorKind.SYNTAX:
            self._no(error.message + ".")
        else:
            self._no(TEXT_TEMP, TRYLATER)

    def _scriptCommand(self, command: str, operation: Callable[[], Any]) -> None:
        """
        Run one script command's coroutine, mapping store refusals to
        responses and anything else to a logged C{TRYLATER}.
        """

        async def run() -> None:
            try:
                await operation()
            except MailError as e:
                if self._connected:
                    if e.kind is ErrorKind.TEMP:
                        self._info("ManageSieve {command} failed: {problem}", command=command, problem=e.message)
                    self._storeFailed(e)
            except Exception:
                self._failure("ManageSieve {command} failed", command=command)
                if self._connected:
                    self._no(TEXT_TEMP, TRYLATER)
            finally:
                self._done()

        self._run(run())

    async def _check(self, content: bytes) -> ScriptCheck:
        if len(content) <= self._limits.inlineCheckSize or self._runInThread is None:
            result: ScriptCheck = await maybeDeferred(self._checkScript, content)
        else:
            result = await self._runInThread(self._checkScript, content)
        return result

    def _checkAnswer(self, check: ScriptCheck, success: str) -> None:
        if check.warnings:
            self._ok("; ".join(check.warnings), WARNINGS)
        else:
            self._ok(success)

    def do_HAVESPACE(self, rawName: bytes, size: int) -> None:
        name = self._name(rawName)
        if name is None:
            return
        account = self._account
        assert account is not None

        async def haveSpace() -> None:
            await self._scripts.checkSpace(account, name, size)
            if self._connected:
                self._ok("Putscript would succeed.")

        self._scriptCommand("HAVESPACE", haveSpace)

    def do_PUTSCRIPT(self, rawName: bytes, content: bytes) -> None:
        name = self._name(rawName)
        if name is None:
            return
        account = self._account
        assert account is not None

        async def put() -> None:
            # Name, size and count first: they are cheap, and a full
            # account should not cost a parse.
            await self._scripts.checkSpace(account, name, len(content))
            check = await self._check(content)
            if check.error is not None:
                if self._connected:
                    self._no(check.error)
                return
            await self._scripts.putScript(account, name, content)
            self._info(
                "Sieve script {script} stored for {account}, {size} octets", script=name, size=len(content)
            )
            if self._connected:
                self._checkAnswer(check, "Putscript completed.")

        self._scriptCommand("PUTSCRIPT", put)

    def do_CHECKSCRIPT(self, content: bytes) -> None:
        async def checkScript() -> None:
            if len(content) > self._scripts.maxScriptSize:
                raise MailError(
                    ErrorKind.TOO_BIG, f"Script is too large (max {self._scripts.maxScriptSize} octets)"
                )
            check = await self._check(content)
            if not self._connected:
                return
            if check.error is not None:
                self._no(check.error)
            else:
                self._checkAnswer(check, "Script is valid.")

        self._scriptCommand("CHECKSCRIPT", checkScript)

    def do_LISTSCRIPTS(self) -> None:
        account = self._account
        assert account is not None

        async def listScripts() -> None:
            scripts = await self._scripts.listScripts(account)
            if not self._connected:
                return
            lines = [quoted(name) + (b" ACTIVE" if active else b"") + b"\r\n" for name, active in scripts]
            self.transport.write(  # type: ignore[union-attr]
                b"".join(lines) + response(b"OK", "Listscripts completed.") + b"\r\n"
            )

        self._scriptCommand("LISTSCRIPTS", listScripts)

    def do_GETSCRIPT(self, rawName: bytes) -> None:
        name = self._name(rawName)
        if name is None:
            return
        account = self._account
        assert account is not None

        async def getScript() -> None:
            content = await self._scripts.getScript(account, name)
            if self._connected:
                self.transport.write(  # type: ignore[union-attr]
                    b"{%d}\r\n%s\r\n%s\r\n" % (len(content), content, response(b"OK", "Getscript completed."))
                )

        self._scriptCommand("GETSCRIPT", getScript)

    def do_SETACTIVE(self, rawName: bytes) -> None:
        name = self._name(rawName)
        if name is None:
            return
        account = self._account
        assert account is not None

        async def setActive() -> None:
            if name:
                # As Pigeonhole: a script that does not compile (one put
                # in place by other means) is not activated.
                check = await self._check(await self._scripts.getScript(account, name))
                if check.error is not None:
                    if self._connected:
                        self._no(f"Script is invalid: {check.error}")
                    return
            kept = await self._scripts.setActive(account, name)
            if name:
                self._info("Sieve script {script} activated for {account}", script=name)
                text = "Script activated."
            else:
                self._info("Sieve scripts deactivated for {account}")
                text = "Scripts deactivated."
            if kept is not None:
                text += f' The previous active script was kept as "{kept}".'
            if self._connected:
                self._ok(text)

        self._scriptCommand("SETACTIVE", setActive)

    def do_DELETESCRIPT(self, rawName: bytes) -> None:
        name = self._name(rawName)
        if name is None:
            return
        account = self._account
        assert account is not None

        async def delete() -> None:
            await self._scripts.deleteScript(account, name)
            self._info("Sieve script {script} deleted for {account}", script=name)
            if self._connected:
                self._ok("Deletescript completed.")

        self._scriptCommand("DELETESCRIPT", delete)

    def do_RENAMESCRIPT(self, rawOld: bytes, rawNew: bytes) -> None:
        old = self._name(rawOld)
        if old is None:
            return
        new = self._name(rawNew)
        if new is None:
            return
        account = self._account
        assert account is not None

        async def rename() -> None:
            await self._scripts.renameScript(account, old, new)
            self._info("Sieve script {script} renamed to {newName} for {account}", script=old, newName=new)
            if self._connected:
                self._ok("Renamescript completed.")

        self._scriptCommand("RENAMESCRIPT", rename)
