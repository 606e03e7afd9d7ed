"""
L{mailsrv.sieve.evaluate}: every test, match type, comparator and address
part against a sample message, the implicit keep rules, flags, variables,
body, dates, vacation actions and the limits.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mailsrv.sieve import (
    Discard,
    FileInto,
    Keep,
    Redirect,
    SieveRuntimeError,
    Vacation,
    evaluate,
    parseScript,
)
from tests.sieve.support import HEADER, holds, makeContext, makeHeader, run

# --- implicit keep and the action list -------------------------------------


def test_emptyScriptKeeps() -> None:
    """
    With no action the implicit keep delivers to the INBOX.
    """
    assert run("") == [Keep()]


def test_keepCancelsImplicitKeep() -> None:
    """
    An explicit keep is the only keep.
    """
    assert run("keep;") == [Keep()]


def test_fileintoCancelsImplicitKeep() -> None:
    """
    fileinto replaces the implicit keep.
    """
    assert run('require "fileinto"; fileinto "Archive";') == [FileInto("Archive")]


def test_keepAndFileinto() -> None:
    """
    keep and fileinto together deliver twice, in script order.
    """
    assert run('require "fileinto"; keep; fileinto "Archive";') == [Keep(), FileInto("Archive")]


def test_fileintoCopyKeepsImplicitKeep() -> None:
    """
    fileinto :copy leaves the implicit keep in place (RFC 3894).
    """
    assert run('require ["fileinto", "copy"]; fileinto :copy "Archive";') == [
        FileInto("Archive", copy=True),
        Keep(),
    ]


def test_redirectCancelsImplicitKeep() -> None:
    """
    redirect without :copy replaces the implicit keep.
    """
    assert run('redirect "carol@example.net";') == [Redirect("carol@example.net")]


def test_redirectCopyKeepsImplicitKeep() -> None:
    """
    redirect :copy leaves the implicit keep in place.
    """
    assert run('require "copy"; redirect :copy "carol@example.net";') == [
        Redirect("carol@example.net", copy=True),
        Keep(),
    ]


def test_redirectAddressIsReducedToAddrSpec() -> None:
    """
    A redirect to "Name <addr>" redirects to addr.
    """
    assert run('redirect "Carol <carol@example.net>";') == [Redirect("carol@example.net")]


def test_discard() -> None:
    """
    discard cancels the implicit keep and is reported.
    """
    assert run("discard;") == [Discard()]


def test_discardDoesNotCancelExplicitKeep() -> None:
    """
    discard only cancels the implicit keep (RFC 5228 4.4).
    """
    assert run("keep; discard;") == [Keep(), Discard()]
    assert run("discard; keep;") == [Discard(), Keep()]


def test_stop() -> None:
    """
    stop ends the script; the implicit keep still applies.
    """
    assert run("stop; discard;") == [Keep()]
    assert run("if true { stop; } discard;") == [Keep()]


def test_stopAfterAction() -> None:
    """
    Actions before stop stand.
    """
    assert run('require "fileinto"; fileinto "A"; stop; fileinto "B";') == [FileInto("A")]


def test_duplicatesCollapse() -> None:
    """
    The same fileinto, keep or redirect twice is one action (RFC 5228
    2.10.3).
    """
    assert run('require "fileinto"; fileinto "A"; fileinto "A"; keep; keep;') == [FileInto("A"), Keep()]
    assert run('redirect "a@example.net"; redirect "A@EXAMPLE.NET";') == [Redirect("a@example.net")]


def test_duplicateFileintoMergesArguments() -> None:
    """
    Merged fileintos keep every flag and :create; :copy only if both had
    it.
    """
    actions = run(
        'require ["fileinto", "imap4flags", "mailbox", "copy"];'
        'fileinto :copy :flags "\\\\Seen" "A"; fileinto :create :flags "$Work" "A";'
    )
    assert actions == [FileInto("A", frozenset({"\\Seen", "$Work"}), create=True, copy=False)]


def test_fileintoInboxIsKeep() -> None:
    """
    fileinto "INBOX" (any case) is a keep and collapses with keep.
    """
    assert run('require "fileinto"; fileinto "INBOX";') == [Keep()]
    assert run('require "fileinto"; keep; fileinto "inbox";') == [Keep()]


def test_fileintoInboxCopy() -> None:
    """
    fileinto :copy "INBOX" and the implicit keep are one keep.
    """
    assert run('require ["fileinto", "copy"]; fileinto :copy "INBOX";') == [Keep()]


def test_mailboxNamesPassThrough() -> None:
    """
    Mailbox names reach the action as written, hierarchy and all.
    """
    actions = run('require "fileinto"; fileinto "INBOX.Lists"; fileinto "Lists/Python"; fileinto "Entwürfe";')
    assert [a.mailbox for a in actions if isinstance(a, FileInto)] == ["INBOX.Lists", "Lists/Python", "Entwürfe"]


def test_fileintoCreate() -> None:
    """
    :create is passed on.
    """
    assert run('require ["fileinto", "mailbox"]; fileinto :create "Junk";') == [FileInto("Junk", create=True)]


def test_tooManyActions() -> None:
    """
    More distinct actions than maxActions is a runtime error.
    """
    script = 'require "fileinto";' + "".join(f'fileinto "f{i}";' for i in range(5))
    assert len(run(script, maxActions=5)) == 5
    with pytest.raises(SieveRuntimeError, match="more than 4 actions"):
        run(script, maxActions=4)


def test_tooManyRedirects() -> None:
    """
    More distinct redirect addresses than maxRedirects is a runtime error;
    the same address again does not count.
    """
    script = "".join(f'redirect "r{i}@example.net";' for i in range(3))
    assert len(run(script + 'redirect "r0@example.net";', maxRedirects=3)) == 3
    with pytest.raises(SieveRuntimeError, match="more than 2 redirects"):
        run(script, maxRedirects=2)


def test_scriptIsReusable() -> None:
    """
    One compiled script runs against many messages without state leaking.
    """
    script = parseScript('require ["variables", "fileinto"]; if header :matches "x-a" "*" { set "v" "${1}"; } fileinto "${v}x";')
    first = evaluate(script, makeContext(makeHeader("X-A: one")))
    second = evaluate(script, makeContext(makeHeader("X-B: two")))
    assert first == [FileInto("onex")]
    assert second == [FileInto("x")]


# --- header, exists, size ---------------------------------------------------


@pytest.mark.parametrize(
    "test, expected",
    [
        ('header :is "subject" "[python-dev] Release schedule"', True),
        ('header :is "Subject" "[PYTHON-DEV] release SCHEDULE"', True),
        ('header :comparator "i;octet" :is "subject" "[PYTHON-DEV] release SCHEDULE"', False),
        ('header :contains "subject" "release"', True),
        ('header :contains "subject" "nope"', False),
        ('header :matches "subject" "[[]python-dev] *"', False),
        ('header :matches "subject" "\\\\[python-dev] *"', True),
        ('header :matches "subject" "*schedule"', True),
        ('header "x-spam" "yes"', True),
        ('header ["x-nope", "x-spam"] ["no", "yes"]', True),
        ('header :contains "x-nope" ""', False),
        ('header :contains "x-spam" ""', True),
        ('header :is "x-empty" ""', True),
        ('header :is "received" "x"', False),
    ],
)
def test_header(test: str, expected: bool) -> None:
    """
    The header test with each match type; names in any case; a missing
    header never matches.
    """
    assert holds(test) is expected


def test_headerDecodesEncodedWords() -> None:
    """
    Header values are compared RFC 2047 decoded.
    """
    header = makeHeader("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=")
    assert holds('header :contains "subject" "Köln"', header=header)


def test_headerWithMalformedValue() -> None:
    """
    A malformed header is compared as written, never an error.
    """
    header = makeHeader("Subject: =?utf-8?b?####?= \xff", b"X-Bin: \x00\x01\xfe")
    assert holds('header :contains "subject" "=?utf-8?b?####?="', header=header)
    assert holds('header :contains "x-bin" "\u00fe"', header=header)


@pytest.mark.parametrize(
    "test, expected",
    [
        ('exists "x-spam"', True),
        ('exists ["X-Spam", "Subject"]', True),
        ('exists ["x-spam", "x-nope"]', False),
        ('exists "x-empty"', True),
        ('not exists "x-nope"', True),
    ],
)
def test_exists(test: str, expected: bool) -> None:
    """
    exists is true only when every named header is present.
    """
    assert holds(test) is expected


@pytest.mark.parametrize(
    "test, size, expected",
    [
        ("size :over 100", 101, True),
        ("size :over 100", 100, False),
        ("size :under 100", 99, True),
        ("size :under 100", 100, False),
        ("size :over 1K", 1025, True),
        ("size :under 1M", 1 << 20, False),
    ],
)
def test_size(test: str, size: int, expected: bool) -> None:
    """
    :over and :under are strict comparisons with the message size.
    """
    assert holds(test, size=size) is expected


@pytest.mark.parametrize(
    "test, expected",
    [
        ("true", True),
        ("false", False),
        ("not true", False),
        ("not not true", True),
        ("allof (true, true)", True),
        ("allof (true, false)", False),
        ("anyof (false, true)", True),
        ("anyof (false, false)", False),
        ("anyof (allof (true, not false), false)", True),
    ],
)
def test_logic(test: str, expected: bool) -> None:
    """
    true, false, not, allof and anyof.
    """
    assert holds(test) is expected


# --- address and envelope ---------------------------------------------------


@pytest.mark.parametrize(
    "test, expected",
    [
        ('address :is "from" "bob@example.org"', True),
        ('address :is "from" "Bob Example"', False),
        ('address :is :all "From" "BOB@EXAMPLE.ORG"', True),
        ('address :is :localpart "from" "bob"', True),
        ('address :is :domain "from" "example.org"', True),
        ('address :is :domain "to" "example.net"', True),
        ('address :is :domain "to" "example.com"', False),
        ('address :contains "to" "carol"', True),
        ('address :matches :domain "cc" "*.com"', True),
        ('address :is :localpart "cc" "dave+lists"', True),
        ('address :is "bcc" "x@y.z"', False),
        ('address :is ["to", "cc"] "dave+lists@example.com"', True),
    ],
)
def test_address(test: str, expected: bool) -> None:
    """
    The address test compares address parts, never display names.
    """
    assert holds(test) is expected


@pytest.mark.parametrize(
    "test, expected",
    [
        ('address :user "cc" "dave"', True),
        ('address :detail "cc" "lists"', True),
        ('address :detail "from" ""', False),
        ('address :detail :matches "from" "*"', False),
        ('address :user "from" "bob"', True),
    ],
)
def test_subaddress(test: str, expected: bool) -> None:
    """
    :user and :detail with "+" as separator; no detail matches nothing.
    """
    assert holds(test, require='"subaddress"') is expected


def test_addressInvalidMatchesOnlyAll() -> None:
    """
    An address without a domain matches with :all only.
    """
    header = makeHeader("From: root")
    assert holds('address :is "from" "root"', header=header)
    assert not holds('address :is :localpart "from" "root"', header=header)
    assert not holds('address :matches :domain "from" "*"', header=header)


def test_addressGroupSyntax() -> None:
    """
    Addresses inside groups count; an empty group has none.
    """
    header = makeHeader("To: Team: a@x.test, b@x.test;", "Cc: undisclosed-recipients:;")
    assert holds('address :is "to" "b@x.test"', header=header)
    assert not holds('address :matches "cc" "*"', header=header)


@pytest.mark.parametrize(
    "test, expected",
    [
        ('envelope :is "from" "bob@example.org"', True),
        ('envelope :is "to" "alice@example.test"', True),
        ('envelope :is :domain "to" "EXAMPLE.TEST"', True),
        ('envelope :is :localpart "from" "bob"', True),
        ('envelope :is "to" "bob@example.org"', False),
        ('envelope :contains ["from", "to"] "alice"', True),
    ],
)
def test_envelope(test: str, expected: bool) -> None:
    """
    envelope "from" is the reverse path, "to" the recipient.
    """
    assert holds(test, require='"envelope"') is expected


def test_envelopeNullSender() -> None:
    """
    The null reverse path is "" whatever the address part (RFC 5228 5.4).
    """
    for part in ("", ":localpart", ":domain", ":all"):
        assert holds(f'envelope :is {part} "from" ""', require='"envelope"', envelopeFrom="")
    assert not holds('envelope :matches "from" "?*"', require='"envelope"', envelopeFrom="")


def test_envelopeDetail() -> None:
    """
    Subaddress parts work on envelope addresses too.
    """
    assert holds(
        'envelope :detail "to" "shop"', require='"envelope", "subaddress"', envelopeTo="alice+shop@example.test"
    )


# --- comparators and relational ---------------------------------------------


@pytest.mark.parametrize(
    "test, expected",
    [
        ('header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "5"', True),
        ('header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "10"', False),
        ('header :value "ge" "x-spam-score" "10"', True),
        ('header :value "lt" :comparator "i;ascii-numeric" "x-spam" "999"', False),
        ('header :is :comparator "i;ascii-numeric" "x-spam-score" "007"', True),
        ('header :count "eq" :comparator "i;ascii-numeric" "x-spam" "1"', True),
        ('header :count "eq" :comparator "i;ascii-numeric" "x-nope" "0"', True),
        ('address :count "eq" :comparator "i;ascii-numeric" ["to", "cc"] "3"', True),
        ('address :count "gt" :comparator "i;ascii-numeric" "to" "2"', False),
        ('header :count "ne" :comparator "i;ascii-numeric" "received" "1"', False),
    ],
)
def test_relational(test: str, expected: bool) -> None:
    """
    :value orders by comparator (i;ascii-casemap orders "7" after "10");
    :count counts header fields or addresses.
    """
    assert holds(test, require='"relational", "comparator-i;ascii-numeric"') is expected


# --- regex ------------------------------------------------------------------


@pytest.mark.parametrize(
    "test, expected",
    [
        ('header :regex "subject" "^\\\\[python-[a-z]+\\\\]"', True),
        ('header :regex "subject" "RELEASE"', True),
        ('header :regex :comparator "i;octet" "subject" "RELEASE"', False),
        ('header :regex "list-id" "<[^>]+[.]python[.]org>$"', True),
        ('address :regex :domain "from" "^example\\\\.(org|com)$"', True),
        ('header :regex "subject" "^Release"', False),
    ],
)
def test_regex(test: str, expected: bool) -> None:
    """
    :regex searches, case-insensitively by default.
    """
    assert holds(test, require='"regex"') is expected


def test_regexBuiltFromVariableIsCheckedAtRunTime() -> None:
    """
    A regex that only turns out invalid after expansion is a runtime error.
    """
    script = 'require ["regex", "variables"]; set "p" "(x"; if header :regex "subject" "${p}" { keep; }'
    with pytest.raises(SieveRuntimeError, match="line 1: invalid regular expression"):
        run(script)


# --- variables --------------------------------------------------------------


def test_setAndExpand() -> None:
    """
    Variables expand in action arguments; names are case-insensitive;
    unset variables are empty.
    """
    actions = run('require ["variables", "fileinto"]; set "Folder" "Lists"; fileinto "${folder}/${FOLDER}${unset}";')
    assert actions == [FileInto("Lists/Lists")]


@pytest.mark.parametrize(
    "modifiers, value, result",
    [
        (":lower", "HeLLo", "hello"),
        (":upper", "HeLLo", "HELLO"),
        (":lowerfirst", "HeLLo", "heLLo"),
        (":upperfirst", "heLLo", "HeLLo"),
        (":upperfirst :lower", "hELLO", "Hello"),
        (":lower :upperfirst", "hELLO", "Hello"),
        (":quotewildcard", "a*b?c\\\\d", "a\\*b\\?c\\\\d"),
        (":length", "Grüße", "5"),
        (":length :upper", "abc", "3"),
        (":quotewildcard :length", "a*", "3"),
        ("", "", ""),
    ],
)
def test_setModifiers(modifiers: str, value: str, result: str) -> None:
    """
    set modifiers apply by precedence whatever their order (RFC 5229 4.1).
    """
    actions = run(f'require ["variables", "fileinto"]; set {modifiers} "v" "{value}"; fileinto "=${{v}}=";')
    assert actions == [FileInto(f"={result}=")]


def test_quoteregexModifier() -> None:
    """
    :quoteregex (with regex) makes a value safe to use in a regex key.
    """
    script = (
        'require ["variables", "regex", "fileinto"]; set :quoteregex "q" "a.b";'
        'if header :regex "x-a" "^${q}$" { fileinto "yes"; }'
    )
    assert run(script, header=makeHeader("X-A: a.b")) == [FileInto("yes")]
    assert run(script, header=makeHeader("X-A: axb")) == [Keep()]


def test_matchVariablesFromMatches() -> None:
    """
    :matches sets ${0} to the value and ${1}... to the wildcards.
    """
    script = (
        'require ["variables", "fileinto"];'
        'if header :matches "list-id" "*<*.*.*>" { fileinto "${2}|${3}|${0}|${9}"; }'
    )
    assert run(script) == [FileInto("python-dev|python|Python development <python-dev.python.org>|")]


def test_matchVariablesFromRegex() -> None:
    """
    :regex sets ${0} to the match and ${1}... to the groups.
    """
    script = (
        'require ["variables", "fileinto", "regex"];'
        'if header :regex "subject" "^\\\\[([^]]+)\\\\] (.*)$" { fileinto "${1}:${2}:${0}"; }'
    )
    assert run(script) == [FileInto("python-dev:Release schedule:[python-dev] Release schedule")]


def test_failedMatchKeepsMatchVariables() -> None:
    """
    A failed :matches leaves the match variables as they were (RFC 5229
    3.2).
    """
    script = (
        'require ["variables", "fileinto"];'
        'if header :matches "x-spam" "*" {}'
        'if header :matches "subject" "nothing*" {}'
        'fileinto "${1}";'
    )
    assert run(script) == [FileInto("Yes")]


def test_matchVariablesWithoutVariablesExtension() -> None:
    """
    Without variables, "${1}" is just text.
    """
    assert run('require "fileinto"; if header :matches "x-spam" "*" { fileinto "${1}"; }') == [FileInto("${1}")]


def test_expandedKeyWildcardsAreWildcards() -> None:
    """
    Wildcards that come from a variable are wildcards in a :matches key;
    :quotewildcard makes them literal.
    """
    base = 'require "variables"; set {mod} "k" "R*"; if header :matches "subject" "*] ${{k}}" {{ discard; }}'
    assert run(base.format(mod="")) == [Discard()]
    assert run(base.format(mod=":quotewildcard")) == [Keep()]


@pytest.mark.parametrize(
    "test, expected",
    [
        ('string :is "${a}" "one"', True),
        ('string :contains "${a} ${b}" "one two"', True),
        ('string :matches "${a}" "o*"', True),
        ('string :is "${unset}" ""', True),
        ('string :count "eq" :comparator "i;ascii-numeric" ["${a}", "", "${b}"] "2"', True),
        ('string :value "gt" :comparator "i;ascii-numeric" "${n}" "9"', True),
    ],
)
def test_stringTest(test: str, expected: bool) -> None:
    """
    The string test matches expanded strings; :count counts non-empty ones.
    """
    script = (
        'require ["variables", "relational", "comparator-i;ascii-numeric"];'
        f'set "a" "one"; set "b" "two"; set "n" "10"; if {test} {{ discard; }}'
    )
    assert (run(script) == [Discard()]) is expected


def test_variableValueIsBounded() -> None:
    """
    A variable's value is cut at the limit rather than growing without end.
    """
    from mailsrv.sieve.variables import MAX_VARIABLE_LENGTH

    doubling = "".join('set "v" "${v}${v}";' for _ in range(20))
    script = f'require ["variables", "fileinto"]; set "v" "xxxxxxxx"; {doubling} set :length "n" "${{v}}"; fileinto "${{n}}";'
    assert run(script) == [FileInto(str(MAX_VARIABLE_LENGTH))]


def test_encodedCharacterInKeys() -> None:
    """
    Encoded characters work in keys and action arguments.
    """
    header = makeHeader("Subject: café")
    script = 'require ["encoded-character", "fileinto"]; if header :contains "subject" "caf${unicode:e9}" { fileinto "${hex:41}"; }'
    assert run(script, header=header) == [FileInto("A")]


# --- imap4flags -------------------------------------------------------------


def test_implicitKeepGetsFinalFlags() -> None:
    """
    The implicit keep carries the internal flags variable's final value.
    """
    assert run('require "imap4flags"; setflag "\\\\seen"; addflag ["$Work", "\\\\FLAGGED"];') == [
        Keep(frozenset({"\\Seen", "$Work", "\\Flagged"}))
    ]


def test_keepAndFileintoUseCurrentFlags() -> None:
    """
    keep and fileinto take the flags as they are when they run.
    """
    script = (
        'require ["imap4flags", "fileinto"];'
        'addflag "\\\\Seen"; fileinto "A"; addflag "$Later \\\\Answered"; keep; removeflag "\\\\seen"; fileinto "B";'
    )
    assert run(script) == [
        FileInto("A", frozenset({"\\Seen"})),
        Keep(frozenset({"\\Seen", "$Later", "\\Answered"})),
        FileInto("B", frozenset({"$Later", "\\Answered"})),
    ]


def test_flagsArgumentOverridesVariable() -> None:
    """
    :flags replaces the internal variable for one action only.
    """
    script = 'require ["imap4flags", "fileinto", "copy"]; setflag "$A"; fileinto :copy :flags "$B \\\\Draft" "X";'
    assert run(script) == [FileInto("X", frozenset({"$B", "\\Draft"}), copy=True), Keep(frozenset({"$A"}))]


def test_invalidFlagsAreDropped() -> None:
    """
    Strings that are not IMAP flags are not passed on.
    """
    assert run('require "imap4flags"; setflag ["\\\\Recent", "\\\\Bogus", "a(b", "ok", "Ok", "$Ünï"];') == [
        Keep(frozenset({"ok"}))
    ]


@pytest.mark.parametrize(
    "setup, test, expected",
    [
        ('setflag "A B";', 'hasflag ["b", "A"]', True),
        ('setflag "A B";', 'hasflag :is "b A"', True),
        ('setflag "A B";', 'hasflag "C"', False),
        ('setflag "\\\\Seen";', 'hasflag "\\\\seen"', True),
        ('setflag "";', 'hasflag ""', False),
        ('setflag "NonJunk gnus-forward";', 'hasflag :contains "forward"', True),
        ('setflag "A B A";', 'hasflag :count "eq" :comparator "i;ascii-numeric" "2"', True),
        ("", 'hasflag :count "eq" :comparator "i;ascii-numeric" "0"', True),
    ],
)
def test_hasflag(setup: str, test: str, expected: bool) -> None:
    """
    hasflag compares each flag with each key flag; :count counts flags.
    """
    script = f'require ["imap4flags", "relational", "comparator-i;ascii-numeric"]; {setup} if {test} {{ discard; }}'
    assert (Discard() in run(script)) is expected


def test_flagVariables() -> None:
    """
    With variables, flag commands and hasflag may name a variable, which
    is a plain variable holding space-separated flags.
    """
    script = (
        'require ["imap4flags", "variables", "fileinto"];'
        'setflag "f" "$A"; addflag "f" ["$B", "$a"]; set "g" "$C $D"; removeflag "g" "$d";'
        'if allof (hasflag "f" "$B", hasflag ["g", "f"] "$C", not hasflag "g" "$D") { fileinto "${f}|${g}"; }'
    )
    assert run(script) == [FileInto("$A $B|$C")]


# --- body -------------------------------------------------------------------

MULTIPART_HEADER = makeHeader(
    "From: bob@example.org",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="b1"',
)
MULTIPART_BODY = (
    b"preamble secret\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Gr=FC=DFe, the newsletter\r\n"
    b"--b1\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"PGI+VW5zdWJzY3JpYmU8L2I+\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"YmluYXJ5IGRhdGE=\r\n"
    b"--b1--\r\n"
)


@pytest.mark.parametrize(
    "test, expected",
    [
        ('body :contains "Grüße"', True),
        ('body :text :contains "UNSUBSCRIBE"', True),
        ('body :text :contains "binary data"', False),
        ('body :contains "secret"', False),
        ('body :raw :contains "Gr=FC=DFe"', True),
        ('body :raw :contains "Grüße"', False),
        ('body :raw :contains "secret"', True),
        ('body :content "text/html" :contains "<b>"', True),
        ('body :content "text/html" :contains "Grüße"', False),
        ('body :content "text" :contains "Grüße"', True),
        ('body :content "application/octet-stream" :contains "binary data"', True),
        ('body :content "" :contains "binary data"', True),
        ('body :content "image" :contains ""', False),
        ('body :text :matches "*newsletter*"', True),
        ('body :text :is "Grüße, the newsletter"', True),
    ],
)
def test_body(test: str, expected: bool) -> None:
    """
    :raw is the body as received; :text the decoded text parts; :content
    the parts of the given types.
    """
    assert holds(test, require='"body"', header=MULTIPART_HEADER, body=MULTIPART_BODY) is expected


def test_bodyOfSimpleMessage() -> None:
    """
    A message without MIME structure is one text/plain part.
    """
    assert holds('body :contains "release is on friday"', require='"body"')


def test_bodyWhenHeaderLacksEmptyLine() -> None:
    """
    A header section given without its empty line still separates the body.
    """
    header = MULTIPART_HEADER.rstrip(b"\r\n")
    assert holds('body :text :contains "Grüße"', require='"body"', header=header, body=MULTIPART_BODY)
    assert holds('body :text :contains "plain"', require='"body"', header=b"", body=b"plain text\r\n")


def test_bodyWithRegex() -> None:
    """
    The body test takes :regex like any other.
    """
    assert holds('body :regex "release is on (mon|fri)day"', require='"body", "regex"')


def test_bodyMissing() -> None:
    """
    A body test without the body is a runtime error.
    """
    with pytest.raises(SieveRuntimeError, match="body test needs the message body"):
        run('require "body"; if body :contains "x" { keep; }', body=None)


def test_bodyNotNeededWhenNotTested() -> None:
    """
    A script with a body test that does not run needs no body.
    """
    assert run('require "body"; if false { if body :contains "x" { keep; } }', body=None) == [Keep()]


# --- date and currentdate ---------------------------------------------------


@pytest.mark.parametrize(
    "part, zone, value",
    [
        ("date", ":originalzone", "2024-01-02"),
        ("time", ":originalzone", "10:20:30"),
        ("hour", ':zone "+0000"', "09"),
        ("hour", ':zone "-0530"', "03"),
        ("zone", ":originalzone", "+0100"),
        ("zone", ':zone "-0530"', "-0530"),
        ("year", "", "2024"),
        ("month", "", "01"),
        ("day", "", "02"),
        ("minute", "", "20"),
        ("second", "", "30"),
        ("weekday", "", "2"),
        ("julian", "", "60311"),
        ("iso8601", "", "2024-01-02T09:20:30Z"),
        ("iso8601", ":originalzone", "2024-01-02T10:20:30+01:00"),
        ("std11", ":originalzone", "Tue, 02 Jan 2024 10:20:30 +0100"),
    ],
)
def test_dateParts(part: str, zone: str, value: str) -> None:
    """
    The date test reads the Date header; without a zone argument it is
    converted to the local zone (here UTC, the zone of "now").
    """
    assert holds(f'date :is {zone} "date" "{part}" "{value}"', require='"date"')


def test_dateFromReceived() -> None:
    """
    A Received field's date follows its last semicolon.
    """
    assert holds('date :is "received" "time" "09:20:31"', require='"date"')


def test_dateUnparsable() -> None:
    """
    A missing or unreadable date never matches (except :count "0").
    """
    header = makeHeader("Date: sometime next week")
    assert not holds('date :matches "date" "date" "*"', require='"date"', header=header)
    assert holds(
        'date :count "eq" :comparator "i;ascii-numeric" "date" "year" "0"',
        require='"date", "relational", "comparator-i;ascii-numeric"',
        header=header,
    )


def test_dateRange() -> None:
    """
    Date ranges compare as strings with :value.
    """
    test = 'allof (date :value "ge" "date" "date" "2024-01-01", date :value "le" "date" "date" "2024-01-31")'
    assert holds(test, require='"date", "relational"')


@pytest.mark.parametrize(
    "test, expected",
    [
        ('currentdate :is "date" "2024-07-03"', True),
        ('currentdate :is "time" "14:05:09"', True),
        ('currentdate :zone "+0200" :is "hour" "16"', True),
        ('currentdate :zone "-1200" :is "date" "2024-07-03"', True),
        ('currentdate :zone "+1200" :is "date" "2024-07-04"', True),
        ('currentdate :is "weekday" "3"', True),
        ('currentdate :is "zone" "+0000"', True),
        ('currentdate :value "ge" "date" "2024-07-01"', True),
        ('currentdate :value "gt" "iso8601" "2024-07-03T14:05:09Z"', False),
    ],
)
def test_currentdate(test: str, expected: bool) -> None:
    """
    currentdate reads the context's "now".
    """
    assert holds(test, require='"date", "relational"') is expected


def test_localZoneComesFromNow() -> None:
    """
    Without :zone, the local zone is that of "now".
    """
    now = datetime(2024, 7, 3, 23, 30, tzinfo=timezone(timedelta(hours=2)))
    assert holds('currentdate :is "zone" "+0200"', require='"date"', now=now)
    assert holds('date :is "date" "hour" "11"', require='"date"', now=now)


def test_zoneFromVariableCheckedAtRunTime() -> None:
    """
    A zone that is only known after expansion is checked at run time.
    """
    with pytest.raises(SieveRuntimeError, match="invalid time zone"):
        run('require ["date", "variables"]; set "z" "CET"; if currentdate :zone "${z}" "hour" "1" { keep; }')


# --- vacation ---------------------------------------------------------------


def test_vacationDefaults() -> None:
    """
    vacation leaves the implicit keep; :days defaults to 7; the handle is a
    digest of the reply.
    """
    actions = run('require "vacation"; vacation "I am away.";')
    assert len(actions) == 2 and actions[1] == Keep()
    vacation = actions[0]
    assert isinstance(vacation, Vacation)
    assert (vacation.reason, vacation.subject, vacation.fromAddress, vacation.addresses) == ("I am away.", None, None, ())
    assert (vacation.days, vacation.seconds, vacation.mime) == (7, None, False)
    assert vacation.period() == timedelta(days=7)
    assert len(vacation.handle) == 64


def test_vacationArguments() -> None:
    """
    Every vacation argument reaches the action.
    """
    (vacation, _) = run(
        'require "vacation"; vacation :days 3 :subject "Away" :from "Alice <alice@example.test>"'
        ' :addresses ["a@example.test", "b@example.test"] :mime :handle "h1" "Content-Type: text/plain\r\n\r\nAway";'
    )
    assert vacation == Vacation(
        "Content-Type: text/plain\r\n\r\nAway",
        "Away",
        "Alice <alice@example.test>",
        ("a@example.test", "b@example.test"),
        3,
        "h1",
        True,
    )


def test_vacationMinimumDays() -> None:
    """
    :days 0 is raised to the minimum of 1.
    """
    (vacation, _) = run('require "vacation"; vacation :days 0 "x";')
    assert isinstance(vacation, Vacation) and vacation.days == 1


def test_vacationSeconds() -> None:
    """
    :seconds gives the exact period, and days rounded up.
    """
    (vacation, _) = run('require "vacation-seconds"; vacation :seconds 3600 "x";')
    assert isinstance(vacation, Vacation)
    assert (vacation.seconds, vacation.days, vacation.period()) == (3600, 1, timedelta(hours=1))
    (always, _) = run('require "vacation-seconds"; vacation :seconds 0 "x";')
    assert isinstance(always, Vacation) and always.period() == timedelta(0)


def test_vacationHandleChangesWithReply() -> None:
    """
    The default handle differs when the reply differs, not otherwise.
    """

    def handle(source: str) -> str:
        vacation = run('require "vacation"; ' + source)[0]
        assert isinstance(vacation, Vacation)
        return vacation.handle

    assert handle('vacation "a";') == handle('vacation :days 3 "a";')
    assert handle('vacation "a";') != handle('vacation "b";')
    assert handle('vacation "a";') != handle('vacation :subject "s" "a";')


def test_twoVacationsAreAnError() -> None:
    """
    A script may take only one vacation action.
    """
    with pytest.raises(SieveRuntimeError, match="more than one vacation"):
        run('require "vacation"; vacation "a"; vacation "b";')


def test_vacationInDateRange() -> None:
    """
    Roundcube's out-of-office rule: vacation between two dates.
    """
    script = (
        'require ["vacation", "date", "relational"];'
        'if allof (currentdate :value "ge" "date" "{start}", currentdate :value "le" "date" "{end}")'
        ' {{ vacation :subject "Away" "Back soon."; }}'
    )
    assert isinstance(run(script.format(start="2024-07-01", end="2024-07-14"))[0], Vacation)
    assert run(script.format(start="2024-08-01", end="2024-08-14")) == [Keep()]


# --- other tests and runtime errors -----------------------------------------


def test_mailboxexists() -> None:
    """
    mailboxexists asks the context about every name.
    """
    existing = {"INBOX", "Junk"}
    script = 'require ["mailbox", "fileinto"]; if mailboxexists {names} {{ fileinto "Junk"; }}'
    assert run(script.format(names='"Junk"'), mailboxExists=existing.__contains__) == [FileInto("Junk")]
    assert run(script.format(names='["Junk", "Spam"]'), mailboxExists=existing.__contains__) == [Keep()]


def test_ihave() -> None:
    """
    ihave is true only for supported capabilities.
    """
    script = 'require "ihave"; if ihave {names} {{ discard; }}'
    assert run(script.format(names='"fileinto"')) == [Discard()]
    assert run(script.format(names='["fileinto", "reject"]')) == [Keep()]


def test_errorCommand() -> None:
    """
    The error command fails the script with its message.
    """
    with pytest.raises(SieveRuntimeError, match="line 1: error: stop here"):
        run('require "ihave"; error "stop here";')


def test_invalidRedirectFromVariable() -> None:
    """
    A redirect address that is only known after expansion is checked at
    run time.
    """
    with pytest.raises(SieveRuntimeError, match="invalid redirect address"):
        run('require "variables"; set "a" "nobody"; redirect "${a}";')


def test_invalidMailboxFromVariable() -> None:
    """
    An empty mailbox name after expansion is a runtime error.
    """
    with pytest.raises(SieveRuntimeError, match="invalid mailbox name"):
        run('require ["variables", "fileinto"]; fileinto "${unset}";')


def test_headerTestOnSampleIsFast() -> None:
    """
    A realistic script runs in well under a millisecond per message.
    """
    import time

    script = parseScript(
        'require ["fileinto", "regex", "variables"];'
        'if header :regex "list-id" "<([a-z_-]+)[.]" { fileinto "Lists/${1}"; }'
    )
    context = makeContext(HEADER)
    start = time.monotonic()
    for _ in range(200):
        evaluate(script, context)
    assert (time.monotonic() - start) / 200 < 0.005


def test_ihaveEnablesVariablesInBlock() -> None:
    """
    Inside "if ihave "variables"" match variables work as if required.
    """
    script = 'require ["ihave", "fileinto"]; if ihave "variables" { if header :matches "x-spam" "*" { fileinto "${1}"; } }'
    assert run(script) == [FileInto("Yes")]
