"""
Fuzzing the Sieve language: users upload scripts (ManageSieve, or files in
their home), so every script is untrusted input to the delivery agent.

Generated scripts (well-formed ones built from the grammar, and mutations
of realistic ones: cut, spliced, bytes flipped) and generated messages:
L{parseScript} either compiles or raises L{SieveSyntaxError}, nothing
else; a compiled script run on a message either returns actions or raises
L{SieveRuntimeError}; each step finishes in bounded time; the actions are
of the kinds the delivery agent knows.

C{MAILSRV_FUZZ_EXAMPLES} raises the number of examples for a long run.
"""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from mailsrv.sieve import (
    Discard,
    FileInto,
    Keep,
    MessageContext,
    Redirect,
    SieveRuntimeError,
    SieveSyntaxError,
    Vacation,
    evaluate,
    parseScript,
)
from tests.security.test_fuzz_protocols import FUZZ

#: Seconds one parse or one run may take on the 2-core test machine; a
#: quadratic or exponential path shows up far above it.
STEP_LIMIT = 2.0

REALISTIC = [
    b'require ["fileinto", "mailbox", "imap4flags"];\n'
    b'if header :contains "subject" "[python]" { fileinto :create "Lists.Python"; stop; }\n'
    b'if address :domain :is "from" "bank.example" { addflag "$Finance"; fileinto "Finance"; }\n',
    b'require ["vacation", "date", "relational", "variables"];\n'
    b'if allof (currentdate :value "ge" "date" "2026-01-01", currentdate :value "le" "date" "2026-12-31") {\n'
    b'  set "who" "${1}";\n  vacation :days 3 :subject "Away" :addresses ["a@example.test"] text:\nI am away.\n..x\n.\n;\n}\n',
    b'require ["regex", "envelope", "subaddress", "copy", "body"];\n'
    b'if envelope :detail "to" "shop" { redirect :copy "b@example.test"; }\n'
    b'elsif header :regex "subject" "^\\\\[(ticket|issue) #[0-9]+\\\\]" { discard; }\n'
    b'elsif body :text :contains "unsubscribe" { keep; } else { stop; }\n',
    b'require ["encoded-character", "variables", "ihave"];\n'
    b'set :upper "x" "${hex:41 42}${unicode:263a}";\n'
    b'if ihave "fileinto" { if string :is "${x}" "AB" { keep; } }\n',
    b'/* comment */ if not anyof (size :over 100K, exists ["X-Spam", "List-Id"]) { keep; } # end\n',
]

TOKENS = [
    b"require", b"if", b"elsif", b"else", b"keep", b"discard", b"stop", b"redirect", b"fileinto", b"vacation",
    b"set", b"addflag", b"setflag", b"removeflag", b"header", b"address", b"envelope", b"exists", b"size",
    b"allof", b"anyof", b"not", b"true", b"false", b"body", b"string", b"hasflag", b"date", b"currentdate",
    b":is", b":contains", b":matches", b":regex", b":count", b":value", b":over", b":under", b":comparator",
    b":localpart", b":domain", b":all", b":user", b":detail", b":copy", b":create", b":flags", b":days",
    b":seconds", b":subject", b":from", b":addresses", b":mime", b":handle", b":text", b":raw", b":content",
    b":lower", b":upper", b":length", b":quotewildcard", b"{", b"}", b"(", b")", b"[", b"]", b",", b";",
    b'"fileinto"', b'"vacation"', b'"variables"', b'"regex"', b'"imap4flags"', b'"x"', b'"*"', b'"?*\\\\"',
    b'"${1}"', b'"${x}"', b'"a.b"', b'"\\\\Seen"', b'"i;ascii-numeric"', b'"ge"', b'"subject"', b'"from"',
    b'"(a+)+b"', b'".*.*.*x"', b'"[[:alpha:]]+"', b'"\\\\1"', b"10", b"1K", b"999999999999G", b"text:\n.\n",
    b"text:\nx\n..\n.\n", b"#c\n", b"/*", b"*/", b'"', b"\\", b"\x00", b"\xff", b"\n",
]

HEADER_NAMES = [b"Subject", b"From", b"To", b"Cc", b"List-Id", b"X-Spam", b"Date", b"Received", b"Content-Type"]
HEADER_VALUES = [
    b"hello", b"[python] release", b"=?utf-8?b?w6l0w6k=?=", b"=?bogus?q?x?=", b"a@b.example", b"<x@y>, \"Q\" <q@r>",
    b"Undisclosed recipients:;", b"Tue, 8 Dec 2026 01:02:03 +0100", b"not a date", b"multipart/mixed; boundary=b",
    b"\xff\xfe", b"x" * 5000, b"a\r\n folded",
]


@st.composite
def scripts(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["tokens", "mutated", "spliced"]))
    if kind == "tokens":
        return b" ".join(draw(st.lists(st.sampled_from(TOKENS), max_size=60)))
    base = draw(st.sampled_from(REALISTIC))
    if kind == "spliced":
        other = draw(st.sampled_from(REALISTIC))
        return base[: draw(st.integers(0, len(base)))] + other[draw(st.integers(0, len(other))) :]
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[position : position + draw(st.integers(1, 20))]
        else:
            data[position:position] = draw(st.sampled_from(TOKENS))
    return bytes(data)


@st.composite
def messages(draw: st.DrawFn) -> MessageContext:
    fields = draw(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), st.sampled_from(HEADER_VALUES)), max_size=12))
    header = b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n"
    body = draw(st.sampled_from([b"", b"unsubscribe here\r\n", b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n", b"\xff" * 100]))
    return MessageContext(
        envelopeFrom=draw(st.sampled_from(["", "s@remote.example", "MAILER-DAEMON@x", "not an address"])),
        envelopeTo=draw(st.sampled_from(["alice@example.test", "alice+shop@example.test"])),
        originalRecipient="alice+shop@example.test",
        header=header,
        size=len(header) + len(body),
        body=body,
        mailboxExists=lambda name: name == "Finance",
    )


def timed(f, *args):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    try:
        return f(*args)
    finally:
        elapsed = time.monotonic() - started
        assert elapsed < STEP_LIMIT, f"{f.__name__} took {elapsed:.2f} s"


@FUZZ
@given(scripts(), messages())
def test_scripts_compile_or_refuse_and_run_or_fail_cleanly(source: bytes, context: MessageContext) -> None:
    try:
        script = timed(parseScript, source)
    except SieveSyntaxError as e:
        assert e.line >= 1 and str(e).startswith(f"line {e.line}: ")
        return
    try:
        actions = timed(evaluate, script, context)
    except SieveRuntimeError:
        return
    assert all(isinstance(a, (Keep, FileInto, Redirect, Discard, Vacation)) for a in actions), actions


def test_realistic_scripts_compile() -> None:
    """
    The seeds are valid, so the mutations start from scripts that work.
    """
    for source in REALISTIC:
        parseScript(source)
