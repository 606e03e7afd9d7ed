"""
Generated input: mangled scripts only ever raise L{SieveSyntaxError} or
L{SieveRuntimeError}, random header sections never make a test raise, and
both regular expression engines agree on random patterns.
"""

from __future__ import annotations

import random
import re

from mailsrv.sieve import SieveRuntimeError, SieveSyntaxError, evaluate, parseScript
from mailsrv.sieve.regex import RegexError, _Parser, _Program, _translate
from tests.sieve.support import makeContext
from tests.sieve.test_parser import DOVECOT_SPAM, ROUNDCUBE, THUNDERBIRD

PIECES = list('ifelsekeep:;,"[]{}()\\ \n#/*.0123456789KMG$') + [
    "${",
    "${1}",
    "text:\n",
    "\n.\n",
    "require",
    '"fileinto"',
    '"variables"',
    "anyof",
    "not",
    "true",
    ":over",
    ":matches",
    '"*"',
    "stop",
    "discard",
    'redirect "a@b.c";',
]


def test_mangledScripts() -> None:
    """
    Scripts with random insertions and deletions either compile and run or
    fail with a Sieve error, never anything else.
    """
    rng = random.Random(5228)
    context = makeContext()
    for _ in range(1500):
        base = rng.choice([ROUNDCUBE, THUNDERBIRD, DOVECOT_SPAM])
        pos = rng.randrange(len(base))
        insert = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 4)))
        source = base[:pos] + insert + base[pos + rng.randint(0, 6) :]
        try:
            script = parseScript(source)
        except SieveSyntaxError:
            continue
        try:
            evaluate(script, context)
        except SieveRuntimeError:
            pass


SCRIPT = parseScript(
    'require ["envelope", "date", "body", "relational", "comparator-i;ascii-numeric", "subaddress", "regex"];'
    'if anyof (header :contains "subject" "x", address :domain ["from", "to"] "b",'
    ' address :count "gt" :comparator "i;ascii-numeric" "to" "1", date :is "date" "year" "2020",'
    ' body :text :contains "x", address :detail "cc" "x", header :regex "subject" "a+b", exists "x") { keep; }'
)


def test_randomHeaders() -> None:
    """
    Header sections and bodies of random octets never make a test raise.
    """
    rng = random.Random(2047)
    alphabet = b'From:To:Cc:Subject:Date =?utf-8?q?b?= =?x?b?##?= <>@,;"\\()\r\n\t ab\xc3\xff\x00'
    for _ in range(1500):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        evaluate(SCRIPT, makeContext(raw, body=raw))


def test_enginesAgreeOnRandomPatterns() -> None:
    """
    The linear-time matcher finds the same match as re for random
    patterns and texts.
    """
    rng = random.Random(1003)
    atoms = ["a", "b", ".", "[ab]", "[^a]", "(a|b)", "(ab)", "^", "$", "\\b", "(a*)", "(|a)", "[[:alpha:]]", "\\w"]
    quantifiers = ["", "", "*", "+", "?", "{1,2}", "{2}"]
    for _ in range(1500):
        pattern = "".join(rng.choice(atoms) + rng.choice(quantifiers) for _ in range(rng.randint(1, 4)))
        try:
            parser = _Parser(pattern)
            node = parser.parse()
        except RegexError:
            continue
        fold = rng.random() < 0.3
        program = _Program(node, parser.groups, fold)
        compiled = re.compile(_translate(node), re.DOTALL | re.ASCII | (re.IGNORECASE if fold else 0))
        for _ in range(3):
            text = "".join(rng.choice("abxAB ") for _ in range(rng.randint(0, 8)))
            expected = compiled.search(text)
            found = program.search(text)
            assert (expected is None) == (found is None), (pattern, text, fold)
            if expected is not None and found is not None:
                assert list(expected.span()) == found[:2], (pattern, text, fold)
