# -*- test-case-name: tests.sieve.test_interpreter -*-
"""
Running a compiled script against one message (RFC 5228 sections 2.10, 4
and 5, and the extensions' semantics).

The result is the final action list: duplicate keeps and fileintos to the
same mailbox collapse into one (RFC 5228 section 2.10.3) with the union of
their flags, as do redirects to the same address; a fileinto "INBOX" is a
keep; and the implicit keep, unless an action cancelled it, is a L{Keep}
with the internal flags variable's final value (RFC 5232 section 3).  Anything that goes wrong raises L{SieveRuntimeError}; the
caller then delivers as if there were no script (RFC 5228 section 2.10.6).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, tzinfo
from typing import Callable, Optional, Sequence

from mailsrv.sieve.actions import Action, Discard, FileInto, Keep, Redirect, Vacation
from mailsrv.sieve.body import bodyTexts
from mailsrv.sieve.compiler import SUPPORTED_EXTENSIONS, validMailboxName
from mailsrv.sieve.context import MessageContext
from mailsrv.sieve.dates import DATE_PARTS, datePart, headerDate, inZone, localNow, parseZone
from mailsrv.sieve.errors import SieveRuntimeError
from mailsrv.sieve.flags import addFlags, flagString, parseFlags, removeFlags
from mailsrv.sieve.headers import HeaderSection, addressPart, validAddress
from mailsrv.sieve.matching import matchValues
from mailsrv.sieve.regex import RegexError
from mailsrv.sieve.script import Command, Conditional, Node, Script, Test, Value
from mailsrv.sieve.variables import MAX_VARIABLE_LENGTH, Template, applyModifiers

_SECONDS_PER_DAY = 86400


class _Stop(Exception):
    """
    The script ran C{stop}.
    """


def evaluate(script: Script, context: MessageContext, *, maxActions: int = 32, maxRedirects: int = 4) -> list[Action]:
    """
    Run a script for one message and recipient.

    @param maxActions: the most distinct actions a script may take (the
        implicit keep aside).
    @param maxRedirects: the most distinct redirect addresses.
    @return: the final actions in the order the script took them, the
        implicit keep (if not cancelled) last.
    @raise SieveRuntimeError: if the script fails; deliver with a plain keep.
    """
    return _Run(script, context, maxActions, maxRedirects).run()


class _Actions:
    """
    The actions taken so far, with duplicates merged as they come.
    """

    def __init__(self, maxActions: int, maxRedirects: int) -> None:
        self.maxActions = maxActions
        self.maxRedirects = maxRedirects
        self.items: list[Action] = []
        # Merge keys ("keep", "fileinto:<mailbox>", "redirect:<address>",
        # "discard", "vacation") -> index in items.
        self._index: dict[str, int] = {}
        self.redirects = 0
        self.implicitKeep = True

    def _add(self, key: str, action: Action, merge: Callable[[Action, Action], Action], line: int) -> None:
        index = self._index.get(key)
        if index is not None:
            self.items[index] = merge(self.items[index], action)
            return
        if len(self.items) >= self.maxActions:
            raise SieveRuntimeError(f"line {line}: more than {self.maxActions} actions")
        self._index[key] = len(self.items)
        self.items.append(action)

    def keep(self, flags: Sequence[str], line: int) -> None:
        self.implicitKeep = False
        self._add("keep", Keep(frozenset(flags)), _mergeFlags, line)

    def fileInto(self, mailbox: str, flags: Sequence[str], create: bool, copy: bool, line: int) -> None:
        if mailbox.upper() == "INBOX":
            # RFC 3501 makes INBOX case-insensitive; filing there is a keep.
            # Its :copy still leaves the implicit keep alone, which changes
            # nothing as the keep would go to the same place.
            if not copy:
                self.implicitKeep = False
            self._add("keep", Keep(frozenset(flags)), _mergeFlags, line)
            return
        if not copy:
            self.implicitKeep = False
        self._add(f"fileinto:{mailbox}", FileInto(mailbox, frozenset(flags), create, copy), _mergeFileInto, line)

    def redirect(self, address: str, copy: bool, line: int) -> None:
        if not copy:
            self.implicitKeep = False
        key = f"redirect:{address.lower()}"
        if key not in self._index:
            if self.redirects >= self.maxRedirects:
                raise SieveRuntimeError(f"line {line}: more than {self.maxRedirects} redirects")
            self.redirects += 1
        self._add(key, Redirect(address, copy), _mergeRedirect, line)

    def discard(self, line: int) -> None:
        self.implicitKeep = False
        self._add("discard", Discard(), lambda old, new: old, line)

    def vacation(self, action: Vacation, line: int) -> None:
        if "vacation" in self._index:
            raise SieveRuntimeError(f"line {line}: more than one vacation action")
        self._add("vacation", action, lambda old, new: old, line)

    def final(self, flags: Sequence[str]) -> list[Action]:
        result = list(self.items)
        if self.implicitKeep:
            index = self._index.get("keep")
            if index is None:
                result.append(Keep(frozenset(flags)))
            else:
                # A fileinto "INBOX" :copy is already the implicit keep.
                result[index] = _mergeFlags(result[index], Keep(frozenset(flags)))
        return result


def _mergeFlags(old: Action, new: Action) -> Action:
    assert isinstance(old, Keep) and isinstance(new, Keep)
    return Keep(old.flags | new.flags)


def _mergeFileInto(old: Action, new: Action) -> Action:
    assert isinstance(old, FileInto) and isinstance(new, FileInto)
    return FileInto(old.mailbox, old.flags | new.flags, old.create or new.create, old.copy and new.copy)


def _mergeRedirect(old: Action, new: Action) -> Action:
    assert isinstance(old, Redirect) and isinstance(new, Redirect)
    return Redirect(old.address, old.copy and new.copy)


class _Run:
    """
    The state of one evaluation.
    """

    def __init__(self, script: Script, context: MessageContext, maxActions: int, maxRedirects: int) -> None:
        self.script = script
        self.context = context
        self.variables: dict[str, str] = {}
        self.matches: list[str] = []
        # The internal flags variable of RFC 5232.
        self.flags: list[str] = []
        self.actions = _Actions(maxActions, maxRedirects)
        self._headers: Optional[HeaderSection] = None
        self._bodies: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        self._now: Optional[datetime] = None

    def run(self) -> list[Action]:
        try:
            self._block(self.script.commands)
        except _Stop:
            pass
        return self.actions.final(self.flags)

    # --- helpers -----------------------------------------------------------

    @property
    def headers(self) -> HeaderSection:
        if self._headers is None:
            self._headers = HeaderSection(self.context.header)
        return self._headers

    @property
    def now(self) -> datetime:
        if self._now is None:
            self._now = localNow(self.context.now)
        return self._now

    def _string(self, value: Optional[Value]) -> str:
        if isinstance(value, Template):
            return value.expand(self.variables, self.matches)
        assert isinstance(value, str)
        return value

    def _strings(self, value: Optional[Value]) -> list[str]:
        assert isinstance(value, tuple)
        return [self._string(item) for item in value]

    def _flagList(self, command: Command) -> list[str]:
        if "flags" in command.tags:
            return parseFlags(self._strings(command.tags["flags"]))
        return list(self.flags)

    # --- commands ----------------------------------------------------------

    def _block(self, nodes: Sequence[Node]) -> None:
        for node in nodes:
            if isinstance(node, Conditional):
                for test, block in node.branches:
                    if test is None or self._test(test):
                        self._block(block)
                        break
            else:
                getattr(self, f"cmd_{node.name}")(node)

    def cmd_stop(self, command: Command) -> None:
        raise _Stop()

    def cmd_keep(self, command: Command) -> None:
        self.actions.keep(self._flagList(command), command.line)

    def cmd_discard(self, command: Command) -> None:
        self.actions.discard(command.line)

    def cmd_redirect(self, command: Command) -> None:
        given = self._string(command.args[0])
        address = validAddress(given)
        if address is None:
            raise SieveRuntimeError(f'line {command.line}: invalid redirect address "{given}"')
        self.actions.redirect(address, bool(command.tags.get("copy")), command.line)

    def cmd_fileinto(self, command: Command) -> None:
        mailbox = self._string(command.args[0])
        if not validMailboxName(mailbox):
            raise SieveRuntimeError(f'line {command.line}: invalid mailbox name "{mailbox}"')
        self.actions.fileInto(
            mailbox,
            self._flagList(command),
            bool(command.tags.get("create")),
            bool(command.tags.get("copy")),
            command.line,
        )

    def cmd_vacation(self, command: Command) -> None:
        tags = command.tags
        reason = self._string(command.args[0])
        subject = self._string(tags["subject"]) if "subject" in tags else None
        fromAddress = None
        if "from" in tags:
            fromAddress = self._string(tags["from"]).strip()
            if validAddress(fromAddress) is None:
                raise SieveRuntimeError(f'line {command.line}: invalid :from address "{fromAddress}"')
        addresses = tuple(self._strings(tags["addresses"])) if "addresses" in tags else ()
        mime = bool(tags.get("mime"))
        seconds: Optional[int] = None
        if "seconds" in tags:
            seconds = tags["seconds"]  # type: ignore[assignment]
            assert isinstance(seconds, int)
            days = -(-seconds // _SECONDS_PER_DAY)
        else:
            period = tags.get("days", 7)
            assert isinstance(period, int)
            # RFC 5230 section 4.1: a period below the minimum is raised to it.
            days = max(1, period)
        if "handle" in tags:
            handle = self._string(tags["handle"])
        else:
            handle = defaultHandle(reason, subject, fromAddress, addresses, mime)
        self.actions.vacation(
            Vacation(reason, subject, fromAddress, addresses, days, handle, mime, seconds), command.line
        )

    def cmd_set(self, command: Command) -> None:
        name = command.args[0]
        assert isinstance(name, str)
        modifiers = [tag for tag in command.tags]
        value = applyModifiers(self._string(command.args[1]), modifiers)
        self.variables[name.lower()] = value[:MAX_VARIABLE_LENGTH]

    def _changeFlags(self, command: Command, change: Callable[[list[str], list[str]], list[str]]) -> None:
        given = self._strings(command.args[1])
        variable = command.args[0]
        if variable is None:
            self.flags = change(self.flags, given)
            return
        assert isinstance(variable, str)
        name = variable.lower()
        current = parseFlags([self.variables.get(name, "")])
        self.variables[name] = flagString(change(current, given))[:MAX_VARIABLE_LENGTH]

    def cmd_setflag(self, command: Command) -> None:
        self._changeFlags(command, lambda current, given: parseFlags(given))

    def cmd_addflag(self, command: Command) -> None:
        self._changeFlags(command, addFlags)

    def cmd_removeflag(self, command: Command) -> None:
        self._changeFlags(command, removeFlags)

    def cmd_error(self, command: Command) -> None:
        raise SieveRuntimeError(f"line {command.line}: error: {self._string(command.args[0])}")

    # --- tests -------------------------------------------------------------

    def _test(self, test: Test) -> bool:
        result: bool = getattr(self, f"test_{test.name}")(test)
        return result

    def _match(self, test: Test, values: Sequence[str], keys: Sequence[str]) -> bool:
        assert test.match is not None
        try:
            matched, captures = matchValues(test.match, values, keys)
        except RegexError as e:
            raise SieveRuntimeError(f"line {test.line}: invalid regular expression: {e}") from None
        if matched and captures is not None:
            # RFC 5229 section 3.2: only a successful match sets them.  (They
            # are only read through templates, which exist only when
            # variables is required or enabled by ihave.)
            self.matches = captures
        return matched

    def test_true(self, test: Test) -> bool:
        return True

    def test_false(self, test: Test) -> bool:
        return False

    def test_not(self, test: Test) -> bool:
        return not self._test(test.tests[0])

    def test_allof(self, test: Test) -> bool:
        return all(self._test(inner) for inner in test.tests)

    def test_anyof(self, test: Test) -> bool:
        return any(self._test(inner) for inner in test.tests)

    def test_exists(self, test: Test) -> bool:
        return all(self.headers.exists(name) for name in self._strings(test.args[0]))

    def test_size(self, test: Test) -> bool:
        limit = test.args[0]
        assert isinstance(limit, int)
        if "over" in test.tags:
            return self.context.size > limit
        return self.context.size < limit

    def test_header(self, test: Test) -> bool:
        values = [value for name in self._strings(test.args[0]) for value in self.headers.values(name)]
        return self._match(test, values, self._strings(test.args[1]))

    def test_address(self, test: Test) -> bool:
        values = []
        for name in self._strings(test.args[0]):
            for address in self.headers.addresses(name):
                part = addressPart(address, test.addressPart)
                if part is not None:
                    values.append(part)
        return self._match(test, values, self._strings(test.args[1]))

    def test_envelope(self, test: Test) -> bool:
        values = []
        for name in self._strings(test.args[0]):
            name = name.lower()
            if name == "from":
                address = self.context.envelopeFrom
                if not address:
                    # RFC 5228 section 5.4: the null reverse path is the
                    # empty string whatever the address part.
                    values.append("")
                    continue
            elif name == "to":
                address = self.context.envelopeTo
            else:
                raise SieveRuntimeError(f'line {test.line}: unknown envelope part "{name}"')
            part = addressPart(address, test.addressPart)
            if part is not None:
                values.append(part)
        return self._match(test, values, self._strings(test.args[1]))

    def test_body(self, test: Test) -> bool:
        body = self.context.body
        if body is None:
            raise SieveRuntimeError(f"line {test.line}: the body test needs the message body")
        types: tuple[str, ...] = ()
        if "raw" in test.tags:
            transform = "raw"
        elif "content" in test.tags:
            transform, types = "content", tuple(self._strings(test.tags["content"]))
        else:
            transform = "text"
        texts = self._bodies.get((transform, types))
        if texts is None:
            texts = bodyTexts(self.context.header, body, transform, types)
            self._bodies[(transform, types)] = texts
        return self._match(test, texts, self._strings(test.args[0]))

    def test_string(self, test: Test) -> bool:
        values = self._strings(test.args[0])
        assert test.match is not None
        if test.match.matchType == "count":
            # RFC 5229 section 5: :count counts the non-empty strings.
            values = [value for value in values if value]
        return self._match(test, values, self._strings(test.args[1]))

    def test_hasflag(self, test: Test) -> bool:
        names = test.args[0]
        if names is None:
            flags = self.flags
        else:
            assert isinstance(names, tuple)
            flags = parseFlags(self.variables.get(str(name).lower(), "") for name in names)
        keys = self._strings(test.args[1])
        assert test.match is not None
        if test.match.matchType != "count":
            # A key may list several flags separated by spaces.
            keys = [word for key in keys for word in key.split()]
        return self._match(test, flags, keys)

    def test_mailboxexists(self, test: Test) -> bool:
        return all(self.context.mailboxExists(name) for name in self._strings(test.args[0]))

    def _zone(self, test: Test) -> Optional[tzinfo]:
        if "originalzone" in test.tags:
            return None
        if "zone" in test.tags:
            text = self._string(test.tags["zone"])
            zone = parseZone(text)
            if zone is None:
                raise SieveRuntimeError(f'line {test.line}: invalid time zone "{text}"')
            return zone
        return self.now.tzinfo

    def _datePart(self, test: Test, value: Optional[Value]) -> str:
        part = self._string(value).lower()
        if part not in DATE_PARTS:
            raise SieveRuntimeError(f'line {test.line}: unknown date part "{part}"')
        return part

    def test_date(self, test: Test) -> bool:
        name = self._string(test.args[0])
        part = self._datePart(test, test.args[1])
        zone = self._zone(test)
        values = []
        for raw in self.headers.values(name):
            when = headerDate(raw, name)
            if when is not None:
                values.append(datePart(inZone(when, zone), part))
        return self._match(test, values, self._strings(test.args[2]))

    def test_currentdate(self, test: Test) -> bool:
        part = self._datePart(test, test.args[0])
        value = datePart(inZone(self.now, self._zone(test)), part)
        return self._match(test, [value], self._strings(test.args[1]))

    def test_ihave(self, test: Test) -> bool:
        names = test.args[0]
        assert isinstance(names, tuple)
        return all(name in SUPPORTED_EXTENSIONS for name in names)


def defaultHandle(
    reason: str, subject: Optional[str], fromAddress: Optional[str], addresses: Sequence[str], mime: bool
) -> str:
    """
    The handle of a vacation action without C{:handle}: a digest of the
    arguments that make up the reply (RFC 5230 section 4.2), so a changed
    reply goes out again to senders who had the old one.
    """
    digest = hashlib.sha256()
    for part in (reason, subject or "", fromAddress or "", "\n".join(addresses), "mime" if mime else ""):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()

