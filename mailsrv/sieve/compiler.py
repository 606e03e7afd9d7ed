# -*- test-case-name: tests.sieve.test_parser -*-
"""
Everything about a script that can be checked before a message arrives
(RFC 5228 sections 2.6, 3.2 and the extensions' syntax sections): that
extensions are required before they are used, commands and tests exist,
arguments have the right number, types and tags, tags do not conflict,
comparators, address parts, relational operators, date parts, zones and
regular expressions are valid, and require, elsif and else stand where
they may.

The result is a L{Script} whose strings are decoded (encoded-character) and,
when the script requires variables, compiled into templates.  A value that
only exists after variable expansion (a redirect address, a regex key built
from a variable) is checked again at run time.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Optional, Sequence, Union

from mailsrv.sieve.dates import DATE_PARTS, parseZone
from mailsrv.sieve.encoded import decodeEncodedCharacters
from mailsrv.sieve.errors import SieveSyntaxError
from mailsrv.sieve.grammar import (
    Argument,
    CommandNode,
    NumberArgument,
    StringList,
    TagArgument,
    TestNode,
    parseTree,
)
from mailsrv.sieve.headers import validAddress
from mailsrv.sieve.matching import COMPARATORS, RELATIONS, MatchSpec, checkSpec
from mailsrv.sieve.regex import RegexError, compileRegex
from mailsrv.sieve.script import (
    Command,
    Conditional,
    Node,
    Script,
    StringArgument,
    Test,
    Value,
)
from mailsrv.sieve.variables import (
    MAX_VARIABLES,
    MODIFIER_PRECEDENCE,
    Template,
    compileTemplate,
    isVariableName,
)

#: The capabilities this package implements.
SUPPORTED_EXTENSIONS = frozenset(
    {
        "fileinto",
        "envelope",
        "encoded-character",
        "copy",
        "imap4flags",
        "mailbox",
        "subaddress",
        "relational",
        "comparator-i;octet",
        "comparator-i;ascii-casemap",
        "comparator-i;ascii-numeric",
        "regex",
        "body",
        "variables",
        "vacation",
        "vacation-seconds",
        "date",
        "ihave",
    }
)

#: Requiring one of these brings the others in too (RFC 6131 section 2).
_IMPLIED_EXTENSIONS = {"vacation-seconds": ("vacation",)}

#: Headers an address test may name (RFC 5228 section 5.1 asks that it be
#: limited to headers that hold addresses); any X- or Resent- header is
#: allowed as well.
ADDRESS_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "sender",
        "reply-to",
        "return-path",
        "delivered-to",
        "envelope-to",
        "errors-to",
        "disposition-notification-to",
        "mail-followup-to",
        "mail-reply-to",
        "followup-to",
        "original-recipient",
        "original-from",
    }
)

ENVELOPE_PARTS = frozenset({"from", "to"})

_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_STRING, _STRING_LIST, _NUMBER = "string", "string-list", "number"


@dataclasses.dataclass(frozen=True)
class _Tag:
    """
    A tagged argument a command or test accepts.

    @ivar argument: the type of the argument that follows the tag, if any.
    @ivar group: tags of one group exclude each other.
    @ivar extension: the capability the tag needs.
    @ivar constant: its argument is a name, not subject to variables.
    """

    name: str
    argument: Optional[str] = None
    group: Optional[str] = None
    extension: Optional[str] = None
    constant: bool = False


@dataclasses.dataclass(frozen=True)
class _Spec:
    """
    The signature of a command or test.

    @ivar positional: the types of the positional arguments.
    @ivar optional: how many of the leading positional arguments may be
        left out.
    @ivar constant: indices of positional arguments that are names (not
        subject to variables).
    @ivar tests: C{"none"}, C{"one"} (a single test) or C{"list"}.
    """

    name: str
    extension: Optional[str] = None
    tags: tuple[_Tag, ...] = ()
    positional: tuple[str, ...] = ()
    optional: int = 0
    constant: tuple[int, ...] = ()
    tests: str = "none"
    block: bool = False


_COMPARATOR = (_Tag("comparator", _STRING, "comparator", constant=True),)
_MATCH_TYPES = (
    _Tag("is", group="match"),
    _Tag("contains", group="match"),
    _Tag("matches", group="match"),
    _Tag("regex", group="match", extension="regex"),
    _Tag("count", _STRING, "match", "relational", constant=True),
    _Tag("value", _STRING, "match", "relational", constant=True),
)
_ADDRESS_PARTS = (
    _Tag("all", group="addresspart"),
    _Tag("localpart", group="addresspart"),
    _Tag("domain", group="addresspart"),
    _Tag("user", group="addresspart", extension="subaddress"),
    _Tag("detail", group="addresspart", extension="subaddress"),
)
_COPY = _Tag("copy", extension="copy")
_FLAGS = _Tag("flags", _STRING_LIST, extension="imap4flags")
_ZONE = _Tag("zone", _STRING, "zone")

_COMMANDS = {
    spec.name: spec
    for spec in (
        _Spec("require", positional=(_STRING_LIST,), constant=(0,)),
        _Spec("if", tests="one", block=True),
        _Spec("elsif", tests="one", block=True),
        _Spec("else", block=True),
        _Spec("stop"),
        _Spec("keep", tags=(_FLAGS,)),
        _Spec("discard"),
        _Spec("redirect", tags=(_COPY,), positional=(_STRING,)),
        _Spec(
            "fileinto",
            "fileinto",
            tags=(_COPY, _FLAGS, _Tag("create", extension="mailbox")),
            positional=(_STRING,),
        ),
        _Spec(
            "vacation",
            "vacation",
            tags=(
                _Tag("days", _NUMBER, "period"),
                _Tag("seconds", _NUMBER, "period", "vacation-seconds"),
                _Tag("subject", _STRING),
                _Tag("from", _STRING),
                _Tag("addresses", _STRING_LIST),
                _Tag("mime"),
                _Tag("handle", _STRING),
            ),
            positional=(_STRING,),
        ),
        _Spec(
            "set",
            "variables",
            tags=tuple(_Tag(name, group=f"precedence{precedence}") for name, precedence in MODIFIER_PRECEDENCE.items()),
            positional=(_STRING, _STRING),
            constant=(0,),
        ),
        _Spec("setflag", "imap4flags", positional=(_STRING, _STRING_LIST), optional=1, constant=(0,)),
        _Spec("addflag", "imap4flags", positional=(_STRING, _STRING_LIST), optional=1, constant=(0,)),
        _Spec("removeflag", "imap4flags", positional=(_STRING, _STRING_LIST), optional=1, constant=(0,)),
        _Spec("error", "ihave", positional=(_STRING,)),
    )
}

_TESTS = {
    spec.name: spec
    for spec in (
        _Spec("address", tags=_COMPARATOR + _ADDRESS_PARTS + _MATCH_TYPES, positional=(_STRING_LIST, _STRING_LIST)),
        _Spec(
            "envelope",
            "envelope",
            tags=_COMPARATOR + _ADDRESS_PARTS + _MATCH_TYPES,
            positional=(_STRING_LIST, _STRING_LIST),
        ),
        _Spec("header", tags=_COMPARATOR + _MATCH_TYPES, positional=(_STRING_LIST, _STRING_LIST)),
        _Spec("exists", positional=(_STRING_LIST,)),
        _Spec("size", tags=(_Tag("over", group="size"), _Tag("under", group="size")), positional=(_NUMBER,)),
        _Spec("allof", tests="list"),
        _Spec("anyof", tests="list"),
        _Spec("not", tests="one"),
        _Spec("true"),
        _Spec("false"),
        _Spec(
            "body",
            "body",
            tags=_COMPARATOR
            + _MATCH_TYPES
            + (
                _Tag("raw", group="transform"),
                _Tag("text", group="transform"),
                _Tag("content", _STRING_LIST, "transform"),
            ),
            positional=(_STRING_LIST,),
        ),
        _Spec("string", "variables", tags=_COMPARATOR + _MATCH_TYPES, positional=(_STRING_LIST, _STRING_LIST)),
        _Spec(
            "hasflag",
            "imap4flags",
            tags=_COMPARATOR + _MATCH_TYPES,
            positional=(_STRING_LIST, _STRING_LIST),
            optional=1,
            constant=(0,),
        ),
        _Spec("mailboxexists", "mailbox", positional=(_STRING_LIST,)),
        _Spec(
            "date",
            "date",
            tags=_COMPARATOR + _MATCH_TYPES + (_ZONE, _Tag("originalzone", group="zone")),
            positional=(_STRING, _STRING, _STRING_LIST),
        ),
        _Spec("currentdate", "date", tags=_COMPARATOR + _MATCH_TYPES + (_ZONE,), positional=(_STRING, _STRING_LIST)),
        _Spec("ihave", "ihave", positional=(_STRING_LIST,), constant=(0,)),
    )
}


@functools.lru_cache(maxsize=None)
def _tagIndex(spec: _Spec) -> dict[str, _Tag]:
    return {tag.name: tag for tag in spec.tags}


def parseScript(source: Union[str, bytes], *, maxSize: int = 1 << 20) -> Script:
    """
    Parse and validate a script.

    @param source: the script; bytes are decoded as UTF-8.
    @param maxSize: the largest script accepted, in octets.
    @raise SieveSyntaxError: if the script is too large, not UTF-8, or not
        valid (the error names the line).
    """
    if isinstance(source, bytes):
        if len(source) > maxSize:
            raise SieveSyntaxError(1, f"script larger than {maxSize} octets")
        try:
            text = source.decode("utf-8")
        except UnicodeDecodeError as e:
            line = source.count(b"\n", 0, e.start) + 1
            raise SieveSyntaxError(line, "script is not valid UTF-8") from None
    else:
        text = source
        if len(text) > maxSize or len(text.encode("utf-8", "surrogatepass")) > maxSize:
            raise SieveSyntaxError(1, f"script larger than {maxSize} octets")
    return _Compiler().compile(parseTree(text))


class _Compiler:
    def __init__(self) -> None:
        self.extensions: set[str] = set()
        self.variableNames: set[str] = set()

    # --- structure ---------------------------------------------------------

    def compile(self, tree: Sequence[CommandNode]) -> Script:
        index = 0
        while index < len(tree) and tree[index].name == "require":
            self._require(tree[index])
            index += 1
        commands = self._block(tree[index:])
        return Script(commands, frozenset(self.extensions))

    def _require(self, node: CommandNode) -> None:
        spec = _COMMANDS["require"]
        _, args = self._arguments(node, spec, node.arguments)
        self._noTestsOrBlock(node)
        names = args[0]
        assert isinstance(names, tuple)
        for name in names:
            assert isinstance(name, str)
            if name not in SUPPORTED_EXTENSIONS:
                raise SieveSyntaxError(node.line, f'unsupported extension "{name}"')
            self.extensions.add(name)
            self.extensions.update(_IMPLIED_EXTENSIONS.get(name, ()))

    def _block(self, nodes: Sequence[CommandNode]) -> tuple[Node, ...]:
        compiled: list[Node] = []
        # The if (and elsifs) that an elsif or else may continue.
        openBranches: Optional[list[tuple[Optional[Test], tuple[Node, ...]]]] = None
        openLine = 0
        for node in nodes:
            name = node.name
            if name in ("elsif", "else"):
                if openBranches is None:
                    raise SieveSyntaxError(node.line, f"{name} without a preceding if")
                openBranches.append(self._branch(node))
                if name == "else":
                    compiled.append(Conditional(openLine, tuple(openBranches)))
                    openBranches = None
                continue
            if openBranches is not None:
                compiled.append(Conditional(openLine, tuple(openBranches)))
                openBranches = None
            if name == "if":
                openBranches = [self._branch(node)]
                openLine = node.line
            elif name == "require":
                raise SieveSyntaxError(node.line, "require must come before any other command (RFC 5228 section 3.2)")
            else:
                compiled.append(self._command(node))
        if openBranches is not None:
            compiled.append(Conditional(openLine, tuple(openBranches)))
        return tuple(compiled)

    def _branch(self, node: CommandNode) -> tuple[Optional[Test], tuple[Node, ...]]:
        spec = _COMMANDS[node.name]
        self._arguments(node, spec, node.arguments)
        test = self._testsOf(node, spec)
        if node.block is None:
            raise SieveSyntaxError(node.line, f"{node.name} needs a block")
        assert spec.tests in ("one", "none")
        single = test[0] if test else None
        if single is not None and single.name == "ihave":
            return single, self._ihaveBlock(single, node.block)
        return single, self._block(node.block)

    def _ihaveBlock(self, test: Test, block: Sequence[CommandNode]) -> tuple[Node, ...]:
        # RFC 5463 section 4: in "if ihave ..." the capabilities are usable
        # inside the block when supported; when not, the block never runs
        # and is not checked beyond its grammar.
        names = test.args[0]
        assert isinstance(names, tuple)
        if not all(name in SUPPORTED_EXTENSIONS for name in names):
            return ()
        saved = set(self.extensions)
        for name in names:
            assert isinstance(name, str)
            self.extensions.add(name)
            self.extensions.update(_IMPLIED_EXTENSIONS.get(name, ()))
        try:
            return self._block(block)
        finally:
            self.extensions = saved

    def _command(self, node: CommandNode) -> Command:
        spec = _COMMANDS.get(node.name)
        if spec is None:
            raise SieveSyntaxError(node.line, f"unknown command {node.name!r}")
        self._needExtension(spec.extension, node.line, f"command {node.name!r}")
        tags, args = self._arguments(node, spec, node.arguments)
        self._noTestsOrBlock(node)
        command = Command(node.name, node.line, tags, args)
        check = getattr(self, f"check_{node.name}", None)
        if check is not None:
            check(command)
        return command

    def _noTestsOrBlock(self, node: CommandNode) -> None:
        if node.tests:
            raise SieveSyntaxError(node.line, f"command {node.name!r} takes no test")
        if node.block is not None:
            raise SieveSyntaxError(node.line, f"command {node.name!r} takes no block")

    def _testsOf(self, node: Union[CommandNode, TestNode], spec: _Spec) -> tuple[Test, ...]:
        if spec.tests == "none":
            if node.tests:
                raise SieveSyntaxError(node.line, f"{node.name!r} takes no test")
            return ()
        if not node.tests:
            raise SieveSyntaxError(node.line, f"{node.name!r} needs a test")
        if spec.tests == "one" and (node.testList or len(node.tests) != 1):
            raise SieveSyntaxError(node.line, f"{node.name!r} takes one test, not a test list")
        if spec.tests == "list" and not node.testList:
            raise SieveSyntaxError(node.line, f"{node.name!r} takes a test list in parentheses")
        return tuple(self._test(test) for test in node.tests)

    def _test(self, node: TestNode) -> Test:
        spec = _TESTS.get(node.name)
        if spec is None:
            raise SieveSyntaxError(node.line, f"unknown test {node.name!r}")
        self._needExtension(spec.extension, node.line, f"test {node.name!r}")
        tags, args = self._arguments(node, spec, node.arguments)
        tests = self._testsOf(node, spec)
        match = None
        if any(tag.group == "match" for tag in spec.tags):
            match = self._matchSpec(node.line, tags)
        addressPart = "all"
        for part in ("localpart", "domain", "user", "detail"):
            if part in tags:
                addressPart = part
        test = Test(node.name, node.line, tags, args, tests, match, addressPart)
        if match is not None:
            self._checkKeys(test)
        check = getattr(self, f"check_{node.name}", None)
        if check is not None:
            check(test)
        return test

    # --- arguments ---------------------------------------------------------

    def _needExtension(self, extension: Optional[str], line: int, what: str) -> None:
        if extension is not None and extension not in self.extensions:
            raise SieveSyntaxError(line, f'{what} requires "{extension}"')

    def _arguments(
        self, node: Union[CommandNode, TestNode], spec: _Spec, arguments: Sequence[Argument]
    ) -> tuple[dict[str, Value], tuple[Optional[Value], ...]]:
        if not arguments and not spec.positional:
            return {}, ()
        tagSpecs = _tagIndex(spec)
        tags: dict[str, Value] = {}
        groups: dict[str, str] = {}
        positional: list[Argument] = []
        index = 0
        while index < len(arguments):
            argument = arguments[index]
            index += 1
            if not isinstance(argument, TagArgument):
                positional.append(argument)
                continue
            if positional:
                raise SieveSyntaxError(
                    argument.line, f"tagged argument :{argument.name} must come before the positional arguments"
                )
            tag = tagSpecs.get(argument.name)
            if tag is None:
                raise SieveSyntaxError(argument.line, f"{node.name!r} has no tagged argument :{argument.name}")
            self._needExtension(tag.extension, argument.line, f"tagged argument :{tag.name}")
            if tag.name in tags:
                raise SieveSyntaxError(argument.line, f"tagged argument :{tag.name} given twice")
            if tag.group is not None:
                if tag.group in groups:
                    raise SieveSyntaxError(
                        argument.line, f"tagged arguments :{groups[tag.group]} and :{tag.name} cannot be combined"
                    )
                groups[tag.group] = tag.name
            if tag.argument is None:
                tags[tag.name] = True
                continue
            if index >= len(arguments):
                raise SieveSyntaxError(argument.line, f"tagged argument :{tag.name} needs a {tag.argument}")
            tags[tag.name] = self._convert(arguments[index], tag.argument, f":{tag.name}", tag.constant)
            index += 1
        required = len(spec.positional) - spec.optional
        if not required <= len(positional) <= len(spec.positional):
            expected = (
                str(len(spec.positional)) if not spec.optional else f"{required} or {len(spec.positional)}"
            )
            raise SieveSyntaxError(
                node.line, f"{node.name!r} takes {expected} positional argument(s), not {len(positional)}"
            )
        missing = len(spec.positional) - len(positional)
        args: list[Optional[Value]] = [None] * missing
        for offset, argument in enumerate(positional):
            position = missing + offset
            args.append(
                self._convert(
                    argument,
                    spec.positional[position],
                    f"argument {position + 1 - missing} of {node.name!r}",
                    position in spec.constant,
                )
            )
        return tags, tuple(args)

    def _convert(self, argument: Argument, kind: str, what: str, constant: bool) -> Value:
        if kind == _NUMBER:
            if not isinstance(argument, NumberArgument):
                raise SieveSyntaxError(argument.line, f"{what} must be a number")
            return argument.value
        if not isinstance(argument, StringList):
            raise SieveSyntaxError(argument.line, f"{what} must be a {'string' if kind == _STRING else 'string list'}")
        strings = tuple(self._string(value, argument.line, constant) for value in argument.values)
        if kind == _STRING:
            if argument.bracketed or len(strings) != 1:
                raise SieveSyntaxError(argument.line, f"{what} must be a single string, not a list")
            return strings[0]
        return strings

    def _string(self, text: str, line: int, constant: bool) -> StringArgument:
        if "encoded-character" in self.extensions:
            try:
                text = decodeEncodedCharacters(text)
            except ValueError as e:
                raise SieveSyntaxError(line, str(e)) from None
        if constant or "variables" not in self.extensions:
            return text
        try:
            template = compileTemplate(text)
        except ValueError as e:
            raise SieveSyntaxError(line, str(e)) from None
        if isinstance(template, Template):
            for part in template.parts:
                if not isinstance(part, str) and part.index < 0:
                    self._countVariable(part.name, line)
        return template

    def _countVariable(self, name: str, line: int) -> None:
        self.variableNames.add(name)
        if len(self.variableNames) > MAX_VARIABLES:
            raise SieveSyntaxError(line, f"more than {MAX_VARIABLES} variables")

    def _matchSpec(self, line: int, tags: dict[str, Value]) -> MatchSpec:
        comparator = tags.get("comparator", "i;ascii-casemap")
        assert isinstance(comparator, str)
        comparator = comparator.lower()
        if comparator not in COMPARATORS:
            raise SieveSyntaxError(line, f'unknown comparator "{comparator}"')
        needed = COMPARATORS[comparator]
        if needed is not None and needed not in self.extensions:
            raise SieveSyntaxError(line, f'comparator "{comparator}" requires "{needed}"')
        matchType = "is"
        relation: Optional[str] = None
        for name in ("is", "contains", "matches", "regex", "count", "value"):
            if name in tags:
                matchType = name
                if name in ("count", "value"):
                    given = tags[name]
                    assert isinstance(given, str)
                    relation = given.lower()
                    if relation not in RELATIONS:
                        raise SieveSyntaxError(line, f'unknown relational operator "{relation}"')
        spec = MatchSpec(matchType, comparator, relation)
        problem = checkSpec(spec)
        if problem is not None:
            raise SieveSyntaxError(line, problem)
        return spec

    def _checkKeys(self, test: Test) -> None:
        match = test.match
        assert match is not None
        if match.matchType != "regex":
            return
        keys = test.args[-1]
        assert isinstance(keys, tuple)
        for key in keys:
            if isinstance(key, str):
                try:
                    compileRegex(key, match.caseInsensitive)
                except RegexError as e:
                    raise SieveSyntaxError(test.line, f'invalid regular expression "{key}": {e}') from None

    # --- per command and test ----------------------------------------------

    def _literals(self, value: Optional[Value]) -> list[str]:
        """
        The strings of an argument that are known now (not templates).
        """
        if isinstance(value, str):
            return [value]
        if isinstance(value, tuple):
            return [item for item in value if isinstance(item, str)]
        return []

    def check_redirect(self, command: Command) -> None:
        for address in self._literals(command.args[0]):
            if validAddress(address) is None:
                raise SieveSyntaxError(command.line, f'invalid redirect address "{address}"')

    def check_fileinto(self, command: Command) -> None:
        for mailbox in self._literals(command.args[0]):
            if not validMailboxName(mailbox):
                raise SieveSyntaxError(command.line, f'invalid mailbox name "{mailbox}"')

    def check_vacation(self, command: Command) -> None:
        for address in self._literals(command.tags.get("from")):
            if validAddress(address) is None:
                raise SieveSyntaxError(command.line, f'invalid :from address "{address}"')
        for address in self._literals(command.tags.get("addresses")):
            if validAddress(address) is None:
                raise SieveSyntaxError(command.line, f'invalid address "{address}" in :addresses')

    def check_set(self, command: Command) -> None:
        name = command.args[0]
        assert isinstance(name, str)
        if not isVariableName(name):
            raise SieveSyntaxError(command.line, f'invalid variable name "{name}"')
        self._countVariable(name.lower(), command.line)

    def _checkFlagVariables(self, line: int, name: str, names: Optional[Value]) -> None:
        if names is None:
            return
        if "variables" not in self.extensions:
            raise SieveSyntaxError(line, f'{name} with a variable name requires "variables"')
        for variable in self._literals(names):
            if not isVariableName(variable):
                raise SieveSyntaxError(line, f'invalid variable name "{variable}"')
            self._countVariable(variable.lower(), line)

    def check_setflag(self, command: Command) -> None:
        self._checkFlagVariables(command.line, command.name, command.args[0])

    check_addflag = check_setflag
    check_removeflag = check_setflag

    def check_hasflag(self, test: Test) -> None:
        self._checkFlagVariables(test.line, test.name, test.args[0])

    def check_size(self, test: Test) -> None:
        if "over" not in test.tags and "under" not in test.tags:
            raise SieveSyntaxError(test.line, "size needs :over or :under")

    def _checkHeaderNames(self, test: Test, names: Optional[Value]) -> None:
        for name in self._literals(names):
            if not _HEADER_NAME.fullmatch(name):
                raise SieveSyntaxError(test.line, f'invalid header name "{name}"')

    def check_header(self, test: Test) -> None:
        self._checkHeaderNames(test, test.args[0])

    check_exists = check_header

    def check_address(self, test: Test) -> None:
        self._checkHeaderNames(test, test.args[0])
        for name in self._literals(test.args[0]):
            lower = name.lower()
            if lower not in ADDRESS_HEADERS and not lower.startswith(("x-", "resent-")):
                raise SieveSyntaxError(test.line, f'header "{name}" does not hold addresses')

    def check_envelope(self, test: Test) -> None:
        for part in self._literals(test.args[0]):
            if part.lower() not in ENVELOPE_PARTS:
                raise SieveSyntaxError(test.line, f'unknown envelope part "{part}"')

    def _checkDate(self, test: Test, part: Optional[Value]) -> None:
        for name in self._literals(part):
            if name.lower() not in DATE_PARTS:
                raise SieveSyntaxError(test.line, f'unknown date part "{name}"')
        for zone in self._literals(test.tags.get("zone")):
            if parseZone(zone) is None:
                raise SieveSyntaxError(test.line, f'invalid time zone "{zone}" (expected +hhmm or -hhmm)')

    def check_date(self, test: Test) -> None:
        self._checkHeaderNames(test, test.args[0])
        self._checkDate(test, test.args[1])

    def check_currentdate(self, test: Test) -> None:
        self._checkDate(test, test.args[0])


def validMailboxName(name: str) -> bool:
    """
    Whether a fileinto or mailboxexists name can be passed on: not empty
    and without control characters.
    """
    return bool(name) and not any(ord(char) < 0x20 or ord(char) == 0x7F for char in name)
