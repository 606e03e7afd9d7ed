# -*- test-case-name: tests.sieve.test_regex -*-
"""
The C{:regex} match type (draft-ietf-sieve-regex): POSIX extended regular
expressions (ERE), searched for anywhere in the value.

A key is parsed here as ERE and refused when it uses something ERE leaves
undefined or that Python's C{re} would read differently (back-references,
C{(?...)} groups, stacked quantifiers such as C{a**} or C{a+?}, escapes
like C{\\d}), rather than being passed to C{re} as is.

Matching a user's pattern against text an outsider controls must not stall
delivery, and Python's backtracking C{re} takes time exponential in nested
quantifiers (C{(a+)+b}) and polynomial in consecutive ones (C{.*.*x} needs
seconds on 4 KB).  So the parsed pattern goes to C{re} only when it has at
most one variable-width quantifier and no alternation or quantifier inside
a quantifier; every other pattern runs on L{_Program}, a backtracking
matcher that remembers which (instruction, position) pairs already failed
and so never does the same work twice (RE2's "bit state" engine): its time
is at most the pattern size times the text length.  Both give the same
matches and groups (leftmost, then the first alternative, greedy
quantifiers, as Perl and Python do), except that a group inside nested
quantifiers that can both match the empty string (C{(a*)*}) may hold a
different iteration's text.  POSIX's leftmost-longest rule is not
followed; that only changes what the match variables hold.

Patterns are limited to L{MAX_PATTERN} characters and a compiled size of
L{MAX_PROGRAM} instructions; only the first L{MAX_SUBJECT} characters of a
value are searched (fewer for a pattern so large that L{MAX_WORK} would
be exceeded).

C{.} matches any character including a line break and C{$} only matches at
the very end (POSIX without C{REG_NEWLINE}).  Character classes
(C{[[:alpha:]]} and the rest, C{\\w}, C{\\s}, word boundaries) are ASCII, as
in the C locale.  With i;ascii-casemap only C{A}-C{Z} and C{a}-C{z} are
equal.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Optional, Union

#: Longest accepted pattern, in characters.
MAX_PATTERN = 1024

#: Only this many characters of each value are searched.
MAX_SUBJECT = 4096

#: Largest compiled program (counted repetitions are expanded).
MAX_PROGRAM = 4096

#: The linear-time matcher tries at most this many (instruction, position)
#: pairs per value (about a third of a second): for a very large pattern
#: it searches fewer than L{MAX_SUBJECT} characters.
MAX_WORK = 1 << 20

#: Largest repetition count in C{{m,n}} (POSIX RE_DUP_MAX).
MAX_REPEAT = 255


class RegexError(ValueError):
    """
    The pattern is not a valid or supported regular expression.
    """


# --- the parsed pattern -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Literal:
    char: str


@dataclasses.dataclass(frozen=True)
class _Any:
    pass


@dataclasses.dataclass(frozen=True)
class _Set:
    """
    A bracket expression or class escape: the characters in C{chars} or in
    one of the inclusive C{ranges}, or (C{negated}) every other character.
    """

    negated: bool
    chars: frozenset[str]
    ranges: tuple[tuple[str, str], ...]

    def contains(self, char: str, fold: bool = False) -> bool:
        """
        Whether C{char} is in the set; with C{fold}, whether it or its other
        ASCII case is (a negated set then excludes both cases).
        """
        found = self._listed(char)
        if not found and fold and char.isascii() and char.isalpha():
            found = self._listed(char.swapcase())
        return found != self.negated

    def _listed(self, char: str) -> bool:
        return char in self.chars or any(low <= char <= high for low, high in self.ranges)


@dataclasses.dataclass(frozen=True)
class _Assert:
    """
    A zero-width assertion: C{bol}, C{eol}, C{word} (C{\\b}), C{notword}
    (C{\\B}), C{wordstart} (C{\\<}) or C{wordend} (C{\\>}).
    """

    kind: str


@dataclasses.dataclass(frozen=True)
class _Group:
    index: int
    node: "_Node"


@dataclasses.dataclass(frozen=True)
class _Concat:
    nodes: tuple["_Node", ...]


@dataclasses.dataclass(frozen=True)
class _Alternation:
    branches: tuple["_Node", ...]


@dataclasses.dataclass(frozen=True)
class _Repeat:
    node: "_Node"
    low: int
    high: Optional[int]  # None: unbounded


_Node = Union[_Literal, _Any, _Set, _Assert, _Group, _Concat, _Alternation, _Repeat]

_ALPHA_RANGES = (("A", "Z"), ("a", "z"))
_DIGIT_RANGE = (("0", "9"),)
_SPACE_CHARS = frozenset(" \t\n\r\f\v")
_NAMED_CLASSES: dict[str, tuple[frozenset[str], tuple[tuple[str, str], ...]]] = {
    "alpha": (frozenset(), _ALPHA_RANGES),
    "digit": (frozenset(), _DIGIT_RANGE),
    "alnum": (frozenset(), _ALPHA_RANGES + _DIGIT_RANGE),
    "upper": (frozenset(), (("A", "Z"),)),
    "lower": (frozenset(), (("a", "z"),)),
    "space": (_SPACE_CHARS, ()),
    "blank": (frozenset(" \t"), ()),
    "punct": (frozenset(), (("!", "/"), (":", "@"), ("[", "`"), ("{", "~"))),
    "print": (frozenset(), ((" ", "~"),)),
    "graph": (frozenset(), (("!", "~"),)),
    "cntrl": (frozenset("\x7f"), (("\x00", "\x1f"),)),
    "xdigit": (frozenset(), (("0", "9"), ("A", "F"), ("a", "f"))),
}
_WORD = _Set(False, frozenset("_"), _ALPHA_RANGES + _DIGIT_RANGE)
_ESCAPE_CLASSES = {
    "w": _WORD,
    "W": _Set(True, _WORD.chars, _WORD.ranges),
    "s": _Set(False, _SPACE_CHARS, ()),
    "S": _Set(True, _SPACE_CHARS, ()),
}
_ESCAPE_ASSERTIONS = {"b": "word", "B": "notword", "<": "wordstart", ">": "wordend"}
_QUANTIFIER_CHARS = frozenset("*+?{")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_INTERVAL = re.compile(r"\{([0-9]+)(,([0-9]*))?\}")


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0
        self.groups = 0

    def parse(self) -> _Node:
        node = self._alternation()
        if self.pos < len(self.pattern):
            # Only an unmatched ")" stops the top-level alternation early.
            raise RegexError("unmatched ')'")
        return node

    def _alternation(self) -> _Node:
        branches = [self._branch()]
        while self.pos < len(self.pattern) and self.pattern[self.pos] == "|":
            self.pos += 1
            branches.append(self._branch())
        return branches[0] if len(branches) == 1 else _Alternation(tuple(branches))

    def _branch(self) -> _Node:
        pieces: list[_Node] = []
        pattern = self.pattern
        while self.pos < len(pattern) and pattern[self.pos] not in "|)":
            atom = self._atom()
            pieces.append(self._quantified(atom))
        return pieces[0] if len(pieces) == 1 else _Concat(tuple(pieces))

    def _quantified(self, atom: _Node) -> _Node:
        pattern = self.pattern
        if self.pos >= len(pattern) or pattern[self.pos] not in _QUANTIFIER_CHARS:
            return atom
        bounds = self._quantifier()
        if bounds is None:
            return atom
        if isinstance(atom, _Assert):
            raise RegexError("a quantifier cannot follow an anchor or word boundary")
        if self.pos < len(pattern) and pattern[self.pos] in _QUANTIFIER_CHARS:
            if pattern[self.pos] != "{" or _INTERVAL.match(pattern, self.pos):
                # ERE leaves "a**" undefined, and Python reads "a*?" as lazy
                # and "a*+" as possessive.
                raise RegexError(f"stacked quantifiers at offset {self.pos}")
        low, high = bounds
        return _Repeat(atom, low, high)

    def _quantifier(self) -> Optional[tuple[int, Optional[int]]]:
        char = self.pattern[self.pos]
        if char == "*":
            self.pos += 1
            return 0, None
        if char == "+":
            self.pos += 1
            return 1, None
        if char == "?":
            self.pos += 1
            return 0, 1
        match = _INTERVAL.match(self.pattern, self.pos)
        if match is None:
            if self.pattern[self.pos + 1 : self.pos + 2].isdigit():
                raise RegexError(f"invalid interval at offset {self.pos}")
            # A "{" that starts no interval is an ordinary character.
            return None
        low = int(match.group(1)[:6])
        if match.group(2) is None:
            high: Optional[int] = low
        elif match.group(3):
            high = int(match.group(3)[:6])
        else:
            high = None
        if low > MAX_REPEAT or (high is not None and (high > MAX_REPEAT or high < low)):
            raise RegexError(f"invalid interval {match.group()}")
        self.pos = match.end()
        return low, high

    def _atom(self) -> _Node:
        pattern = self.pattern
        char = pattern[self.pos]
        self.pos += 1
        if char == "(":
            if self.pos < len(pattern) and pattern[self.pos] in "*+?":
                raise RegexError("'(' followed by a quantifier (Python extensions are not supported)")
            self.groups += 1
            index = self.groups
            node = self._alternation()
            if self.pos >= len(pattern) or pattern[self.pos] != ")":
                raise RegexError("unmatched '('")
            self.pos += 1
            return _Group(index, node)
        if char in "*+?":
            raise RegexError(f"quantifier {char!r} with nothing to repeat at offset {self.pos - 1}")
        if char == "{" and _INTERVAL.match(pattern, self.pos - 1):
            raise RegexError(f"interval with nothing to repeat at offset {self.pos - 1}")
        if char == ".":
            return _Any()
        if char == "^":
            return _Assert("bol")
        if char == "$":
            return _Assert("eol")
        if char == "[":
            return self._bracket()
        if char == "\\":
            return self._escape()
        return _Literal(char)

    def _escape(self) -> _Node:
        pattern = self.pattern
        if self.pos >= len(pattern):
            raise RegexError("trailing backslash")
        char = pattern[self.pos]
        self.pos += 1
        if char in _ESCAPE_CLASSES:
            return _ESCAPE_CLASSES[char]
        if char in _ESCAPE_ASSERTIONS:
            return _Assert(_ESCAPE_ASSERTIONS[char])
        if char.isdigit():
            raise RegexError("back-references are not supported")
        if char.isalnum():
            # POSIX leaves "\d", "\n" and the like undefined; Python gives
            # them meanings users might not expect from Sieve.
            raise RegexError(f"unsupported escape \\{char}")
        return _Literal(char)

    def _bracket(self) -> _Set:
        pattern = self.pattern
        start = self.pos - 1
        negated = False
        if self.pos < len(pattern) and pattern[self.pos] == "^":
            negated = True
            self.pos += 1
        chars: set[str] = set()
        ranges: list[tuple[str, str]] = []
        first = True
        while True:
            if self.pos >= len(pattern):
                raise RegexError(f"unmatched '[' at offset {start}")
            char = pattern[self.pos]
            if char == "]" and not first:
                self.pos += 1
                break
            first = False
            if pattern.startswith("[:", self.pos):
                end = pattern.find(":]", self.pos + 2)
                name = pattern[self.pos + 2 : end] if end >= 0 else ""
                if name not in _NAMED_CLASSES:
                    raise RegexError(f"unknown character class [:{name}:]")
                classChars, classRanges = _NAMED_CLASSES[name]
                chars.update(classChars)
                ranges.extend(classRanges)
                self.pos = end + 2
                continue
            low = self._bracketChar()
            if (
                self.pos + 1 < len(pattern)
                and pattern[self.pos] == "-"
                and pattern[self.pos + 1] != "]"
            ):
                self.pos += 1
                high = self._bracketChar()
                if high < low:
                    raise RegexError(f"invalid range {low}-{high}")
                ranges.append((low, high))
            else:
                chars.add(low)
        return _Set(negated, frozenset(chars), tuple(ranges))

    def _bracketChar(self) -> str:
        pattern = self.pattern
        for opener, closer in (("[=", "=]"), ("[.", ".]")):
            if pattern.startswith(opener, self.pos):
                end = pattern.find(closer, self.pos + 2)
                if end != self.pos + 3:
                    raise RegexError("only single characters are supported in [= =] and [. .]")
                char = pattern[self.pos + 2]
                self.pos = end + 2
                return char
        # A backslash is an ordinary character inside brackets (POSIX).
        char = pattern[self.pos]
        self.pos += 1
        return char


# --- translation to Python's re --------------------------------------------


def _charCode(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _translate(node: _Node) -> str:
    if isinstance(node, _Literal):
        return re.escape(node.char)
    if isinstance(node, _Any):
        return "."
    if isinstance(node, _Set):
        body = "".join(_charCode(c) for c in sorted(node.chars))
        body += "".join(f"{_charCode(low)}-{_charCode(high)}" for low, high in node.ranges)
        return f"[{'^' if node.negated else ''}{body}]"
    if isinstance(node, _Assert):
        return {
            "bol": r"\A",
            "eol": r"\Z",
            "word": r"\b",
            "notword": r"\B",
            "wordstart": r"\b(?=\w)",
            "wordend": r"\b(?<=\w)",
        }[node.kind]
    if isinstance(node, _Group):
        return f"({_translate(node.node)})"
    if isinstance(node, _Concat):
        return "".join(_translate(n) for n in node.nodes)
    if isinstance(node, _Alternation):
        return "(?:" + "|".join(_translate(n) for n in node.branches) + ")"
    inner = f"(?:{_translate(node.node)})"
    if node.high is None:
        if node.low == 0:
            return inner + "*"
        if node.low == 1:
            return inner + "+"
        return f"{inner}{{{node.low},}}"
    return f"{inner}{{{node.low},{node.high}}}"


def _cheapForBacktracking(node: _Node) -> bool:
    """
    Whether C{re} runs this pattern in time linear in the text per start
    position: at most one variable-width quantifier, and none of them (nor
    any fixed repetition) contains an alternation or another quantifier.
    """
    variable = 0

    def walk(node: _Node, underRepeat: bool) -> bool:
        nonlocal variable
        if isinstance(node, _Repeat):
            if underRepeat:
                return False
            if node.high != node.low:
                variable += 1
            return walk(node.node, True)
        if isinstance(node, _Alternation):
            return not underRepeat and all(walk(n, underRepeat) for n in node.branches)
        if isinstance(node, _Group):
            return walk(node.node, underRepeat)
        if isinstance(node, _Concat):
            return all(walk(n, underRepeat) for n in node.nodes)
        return True

    return walk(node, False) and variable <= 1


# --- the linear-time matcher ------------------------------------------------

_CHAR, _ANY, _SET, _SPLIT, _JUMP, _SAVE, _ASSERT, _MATCH, _LOOP = range(9)


def _isWordChar(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "_")


class _Program:
    """
    A pattern compiled to instructions for L{_Program.search}.
    """

    def __init__(self, node: _Node, groups: int, fold: bool) -> None:
        self.fold = fold
        self.groups = groups
        self.code: list[tuple[int, object, object]] = [(_SAVE, 0, None)]
        self._emit(node)
        self.code.append((_SAVE, 1, None))
        self.code.append((_MATCH, None, None))
        first = node.nodes[0] if isinstance(node, _Concat) and node.nodes else node
        self.anchored = isinstance(first, _Assert) and first.kind == "bol"
        # Starts where this character is not cannot match: skip them.
        self.firstChar: Optional[str] = None
        if self.code[1][0] == _CHAR:
            self.firstChar = self.code[1][1]  # type: ignore[assignment]

    def _append(self, instruction: tuple[int, object, object]) -> int:
        if len(self.code) >= MAX_PROGRAM:
            raise RegexError("regular expression too complex")
        self.code.append(instruction)
        return len(self.code) - 1

    def _emit(self, node: _Node) -> None:
        if isinstance(node, _Literal):
            char = node.char.translate(_ASCII_LOWER) if self.fold else node.char
            self._append((_CHAR, char, None))
        elif isinstance(node, _Any):
            self._append((_ANY, None, None))
        elif isinstance(node, _Set):
            self._append((_SET, node, None))
        elif isinstance(node, _Assert):
            self._append((_ASSERT, node.kind, None))
        elif isinstance(node, _Group):
            self._append((_SAVE, 2 * node.index, None))
            self._emit(node.node)
            self._append((_SAVE, 2 * node.index + 1, None))
        elif isinstance(node, _Concat):
            for child in node.nodes:
                self._emit(child)
        elif isinstance(node, _Alternation):
            jumps = []
            for branch in node.branches[:-1]:
                split = self._append((_SPLIT, None, None))
                self._emit(branch)
                jumps.append(self._append((_JUMP, None, None)))
                self.code[split] = (_SPLIT, split + 1, len(self.code))
            self._emit(node.branches[-1])
            for jump in jumps:
                self.code[jump] = (_JUMP, len(self.code), None)
        else:
            for _ in range(node.low):
                self._emit(node.node)
            if node.high is None:
                split = self._append((_SPLIT, None, None))
                self._emit(node.node)
                self._append((_LOOP, split, None))
                self.code[split] = (_SPLIT, split + 1, len(self.code))
                self.code[-1] = (_LOOP, split, len(self.code))
            else:
                splits = []
                for _ in range(node.high - node.low):
                    splits.append(self._append((_SPLIT, None, None)))
                    self._emit(node.node)
                for split in splits:
                    self.code[split] = (_SPLIT, split + 1, len(self.code))

    def search(self, text: str) -> Optional[list[int]]:
        """
        The capture offsets of the first match (C{2 * (groups + 1)}
        numbers, -1 where a group did not take part), or L{None}.
        """
        code = self.code
        fold = self.fold
        length = len(text)
        compared = text.translate(_ASCII_LOWER) if self.fold else text
        # One flag per (instruction, position), set once the pair has been
        # tried: without back-references a pair that failed once fails
        # again whatever the captures, so it is explored at most once over
        # all start positions.
        width = length + 1
        visited = bytearray(len(code) * width)
        slots = [-1] * (2 * (self.groups + 1))
        firstChar = self.firstChar
        start = 0
        while start <= length:
            if firstChar is not None:
                start = compared.find(firstChar, start)
                if start < 0:
                    return None
            # Stack entries: (pc, pos) to try, or (-1 - slot, offset) to
            # put a capture slot back while backtracking.
            stack: list[tuple[int, int]] = [(0, start)]
            while stack:
                pc, pos = stack.pop()
                if pc < 0:
                    slots[-1 - pc] = pos
                    continue
                while True:
                    key = pc * width + pos
                    if visited[key]:
                        break
                    visited[key] = 1
                    op, a, b = code[pc]
                    if op == _CHAR:
                        if pos < length and compared[pos] == a:
                            pc += 1
                            pos += 1
                            continue
                        break
                    if op == _ANY:
                        if pos < length:
                            pc += 1
                            pos += 1
                            continue
                        break
                    if op == _SET:
                        if pos < length and a.contains(text[pos], fold):  # type: ignore[attr-defined]
                            pc += 1
                            pos += 1
                            continue
                        break
                    if op == _SPLIT:
                        stack.append((b, pos))  # type: ignore[arg-type]
                        pc = a  # type: ignore[assignment]
                        continue
                    if op == _JUMP:
                        pc = a  # type: ignore[assignment]
                        continue
                    if op == _LOOP:
                        # Back to the head of a * or + loop (a), unless the
                        # head was already tried at this position: then this
                        # iteration matched nothing, and like Python's re
                        # the loop ends here (b) instead of backtracking
                        # into the iteration.  (If the head was tried on an
                        # earlier, failed path, b was tried there too.)
                        pc = b if visited[a * width + pos] else a  # type: ignore[operator, assignment]
                        continue
                    if op == _SAVE:
                        slot: int = a  # type: ignore[assignment]
                        stack.append((-1 - slot, slots[slot]))
                        slots[slot] = pos
                        pc += 1
                        continue
                    if op == _ASSERT:
                        if _assertion(a, text, pos):  # type: ignore[arg-type]
                            pc += 1
                            continue
                        break
                    return list(slots)
            if self.anchored:
                return None
            start += 1
        return None


def _assertion(kind: str, text: str, pos: int) -> bool:
    if kind == "bol":
        return pos == 0
    if kind == "eol":
        return pos == len(text)
    before = pos > 0 and _isWordChar(text[pos - 1])
    after = pos < len(text) and _isWordChar(text[pos])
    if kind == "word":
        return before != after
    if kind == "notword":
        return before == after
    if kind == "wordstart":
        return after and not before
    return before and not after


# --- the public face --------------------------------------------------------


class Regex:
    """
    A compiled C{:regex} key.

    @ivar groups: the number of parenthesised groups.
    """

    def __init__(self, pattern: str, fold: bool) -> None:
        if len(pattern) > MAX_PATTERN:
            raise RegexError(f"regular expression longer than {MAX_PATTERN} characters")
        parser = _Parser(pattern)
        node = parser.parse()
        self.groups = parser.groups
        self._compiled: Optional["re.Pattern[str]"] = None
        self._program: Optional[_Program] = None
        # Always build the program: it bounds the pattern's size even when
        # re will do the matching.
        program = _Program(node, parser.groups, fold)
        if _cheapForBacktracking(node):
            flags = re.DOTALL | re.ASCII | (re.IGNORECASE if fold else 0)
            self._compiled = re.compile(_translate(node), flags)
        else:
            self._program = program

    @property
    def usesLinearMatcher(self) -> bool:
        """
        Whether the pattern runs on the linear-time matcher rather than
        C{re}.
        """
        return self._program is not None

    def search(self, value: str) -> Optional[list[str]]:
        """
        Search the value (its first L{MAX_SUBJECT} characters).

        @return: the match variables, C{${0}} (the whole match) then one per
            group (C{""} for a group that did not take part), or L{None}.
        """
        text = value[:MAX_SUBJECT]
        if self._compiled is not None:
            match = self._compiled.search(text)
            if match is None:
                return None
            return [match.group(0)] + [g or "" for g in match.groups()]
        assert self._program is not None
        limit = max(64, MAX_WORK // len(self._program.code))
        text = text[:limit]
        slots = self._program.search(text)
        if slots is None:
            return None
        captures = []
        for group in range(self.groups + 1):
            start, end = slots[2 * group], slots[2 * group + 1]
            captures.append(text[start:end] if start >= 0 and end >= 0 else "")
        return captures


@functools.lru_cache(maxsize=256)
def compileRegex(pattern: str, fold: bool) -> Regex:
    """
    A cached L{Regex}.

    @param fold: compare under i;ascii-casemap (ASCII letters in either
        case are equal) rather than i;octet.
    @raise RegexError: if the pattern is invalid, unsupported or too large.
    """
    return Regex(pattern, fold)


_QUOTE_REGEX = re.compile(r"([\\^$.\[\]()*+?{}|])")


def quoteRegex(text: str) -> str:
    """
    C{text} with every ERE special character escaped (the C{:quoteregex}
    modifier of C{set}).
    """
    return _QUOTE_REGEX.sub(r"\\\1", text)
