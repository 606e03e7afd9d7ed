"""
L{mailsrv.sieve.parseScript}: the grammar and every static check, with the
line numbers of errors; scripts as mail clients write them.
"""

from __future__ import annotations

import re

import pytest

from mailsrv.sieve import SUPPORTED_EXTENSIONS, Script, SieveSyntaxError, parseScript
from mailsrv.sieve.script import Command, Conditional
from mailsrv.sieve.variables import Template


def syntaxError(source: str | bytes) -> SieveSyntaxError:
    with pytest.raises(SieveSyntaxError) as raised:
        parseScript(source)
    return raised.value


# --- valid scripts ----------------------------------------------------------


def test_emptyScript() -> None:
    """
    An empty script (or only comments) is valid and has no commands.
    """
    assert parseScript("").commands == ()
    assert parseScript("# nothing\n/* at all */\n").commands == ()


def test_requireListsExtensions() -> None:
    """
    Required capabilities are recorded; vacation-seconds brings vacation.
    """
    script = parseScript('require ["fileinto", "copy"];\nrequire "vacation-seconds";')
    assert script.extensions == {"fileinto", "copy", "vacation-seconds", "vacation"}


def test_supportedExtensions() -> None:
    """
    The capability list holds what the package implements and nothing it
    does not.
    """
    assert {"fileinto", "variables", "imap4flags", "regex", "body", "date", "vacation"} <= SUPPORTED_EXTENSIONS
    assert not {"reject", "ereject", "editheader", "notify"} & SUPPORTED_EXTENSIONS


def test_everyExtensionCanBeRequired() -> None:
    """
    Requiring all supported capabilities at once is valid.
    """
    names = ", ".join(f'"{name}"' for name in sorted(SUPPORTED_EXTENSIONS))
    assert parseScript(f"require [{names}];").extensions >= SUPPORTED_EXTENSIONS


def test_ifElsifElseChain() -> None:
    """
    if, elsif and else become one conditional with three branches.
    """
    script = parseScript(
        """
        if header :is "x" "1" { keep; }
        elsif header :is "x" "2" { discard; }
        else { stop; }
        keep;
        """
    )
    conditional, keep = script.commands
    assert isinstance(conditional, Conditional)
    assert [test.name if test else None for test, _ in conditional.branches] == ["header", "header", None]
    assert isinstance(keep, Command) and keep.name == "keep"


def test_twoIfsAreTwoConditionals() -> None:
    """
    An if after an if starts a new conditional.
    """
    script = parseScript("if true { keep; } if false { discard; }")
    assert len(script.commands) == 2


def test_nestedTestsAndBlocks() -> None:
    """
    Tests nest inside allof, anyof and not; blocks nest inside blocks.
    """
    script = parseScript(
        """
        if allof (not exists "x", anyof (true, size :over 10K), header :contains "a" ["b", "c"]) {
            if true { if false { stop; } }
        }
        """
    )
    (conditional,) = script.commands
    assert isinstance(conditional, Conditional)
    test = conditional.branches[0][0]
    assert test is not None
    assert [t.name for t in test.tests] == ["not", "anyof", "header"]


def test_tagsInAnyOrder() -> None:
    """
    Tagged arguments may come in any order before the positional ones.
    """
    parseScript('if header :comparator "i;octet" :contains "a" "b" { keep; }')
    parseScript('if address :contains :domain :comparator "i;octet" "from" "b" { keep; }')


def test_comparatorNamesAreCaseInsensitive() -> None:
    """
    Comparator names are compared without regard to case.
    """
    parseScript('if header :comparator "I;OCTET" :is "a" "b" { keep; }')


def test_identifiersAreCaseInsensitive() -> None:
    """
    Commands, tests and tags may be written in any case.
    """
    parseScript('IF Header :CONTAINS "subject" "x" { Keep; STOP; }')


def test_templatesOnlyWithVariables() -> None:
    """
    Strings with ${...} are templates only when variables is required.
    """
    (plain,) = parseScript('require "fileinto"; fileinto "${x}";').commands
    (template,) = parseScript('require ["fileinto", "variables"]; fileinto "${x}";').commands
    assert isinstance(plain, Command) and plain.args[0] == "${x}"
    assert isinstance(template, Command) and isinstance(template.args[0], Template)


def test_encodedCharacter() -> None:
    """
    ${hex:} and ${unicode:} are decoded when encoded-character is
    required, and left alone otherwise.
    """
    source = 'fileinto "${hex:48 69}-${unicode:263a}-${HEX:c3 a9}";'
    (decoded,) = parseScript('require ["fileinto", "encoded-character"];' + source).commands
    (raw,) = parseScript('require "fileinto";' + source).commands
    assert isinstance(decoded, Command) and decoded.args[0] == "Hi-\u263a-\u00e9"
    assert isinstance(raw, Command) and raw.args[0] == "${hex:48 69}-${unicode:263a}-${HEX:c3 a9}"


def test_malformedEncodedCharacterStays() -> None:
    """
    A sequence that is not well-formed is not decoded (RFC 5228 2.4.2.4).
    """
    (command,) = parseScript('require ["fileinto", "encoded-character"]; fileinto "${hex:xyz}${hex:}";').commands
    assert isinstance(command, Command) and command.args[0] == "${hex:xyz}${hex:}"


def test_bytesAreUTF8() -> None:
    """
    A script given as bytes is read as UTF-8.
    """
    (command,) = parseScript('require "fileinto"; fileinto "Entw\u00fcrfe";'.encode()).commands
    assert isinstance(command, Command) and command.args[0] == "Entw\u00fcrfe"


def test_ihaveBlockWithUnsupportedExtension() -> None:
    """
    Inside "if ihave" an unsupported capability's commands are not
    checked; a supported one is usable without require.
    """
    parseScript('require "ihave"; if ihave "reject" { reject "no"; } else { keep; }')
    parseScript('require "ihave"; if ihave "fileinto" { fileinto "x"; }')
    assert syntaxError('require "ihave"; if ihave "fileinto" { keep; } fileinto "x";').line == 1


ROUNDCUBE = """require ["fileinto","imap4flags","vacation","date","relational","copy","body","variables","envelope","regex","mailbox"];
# rule:[Spam]
if header :contains "X-Spam-Flag" "YES"
{
\tfileinto :create "Junk";
\tstop;
}
# rule:[boss]
if anyof (address :is "from" "boss@example.com", header :contains "subject" "urgent")
{
\taddflag "\\\\Flagged";
\tfileinto :copy :flags "\\\\Seen" "INBOX.Important";
}
# rule:[lists]
if header :regex "list-id" "<([a-z_-]+)[.]"
{
\tset :lower "list" "${1}";
\tfileinto "Lists/${list}";
}
# rule:[Out of Office]
if allof (currentdate :zone "+0100" :value "ge" "iso8601" "2024-07-01T00:00:00+01:00", currentdate :zone "+0100" :value "le" "iso8601" "2024-07-14T23:59:59+01:00")
{
\tvacation :days 7 :addresses "alice@example.test" :subject "Out of office" :from "\\"Alice\\" <alice@example.test>" "I am away until the 15th.";
}
"""

THUNDERBIRD = """require ["fileinto", "envelope", "subaddress", "relational", "comparator-i;ascii-numeric", "body"];

/* Sort mailing lists */
if header :contains ["List-Id"] ["<python-dev.python.org>"] {
  fileinto "Lists/python-dev";
  stop;
}

if envelope :detail "to" "shop" {
  fileinto "Shopping";
}

if header :value "ge" :comparator "i;ascii-numeric" "X-Spam-Score" "5" {
  discard;
  stop;
}

if body :text :contains ["unsubscribe", "newsletter"] {
  fileinto "Newsletters";
}
"""

DOVECOT_SPAM = """require ["fileinto", "mailbox", "relational", "comparator-i;ascii-numeric"];
if anyof (header :is "X-Spam" "Yes", header :contains "X-Spam-Flag" "YES") {
    fileinto :create "Junk";
    stop;
}
"""


@pytest.mark.parametrize("source", [ROUNDCUBE, THUNDERBIRD, DOVECOT_SPAM], ids=["roundcube", "thunderbird", "spam"])
def test_realisticScripts(source: str) -> None:
    """
    Scripts as Roundcube's managesieve plugin, Thunderbird's sieve add-on
    and a Dovecot spam setup write them compile.
    """
    assert isinstance(parseScript(source), Script)


def test_deepButAllowedNesting() -> None:
    """
    Blocks nested 32 deep are accepted.
    """
    parseScript("if true {" * 32 + "keep;" + "}" * 32)


# --- grammar errors ---------------------------------------------------------


@pytest.mark.parametrize(
    "source, line, message",
    [
        ("keep", 1, "expected ';' or '{'"),
        ("keep;\nif true\nkeep;", 2, "'true' takes no test"),
        ("keep;\nif true;", 2, "if needs a block"),
        ("if true {\n keep;\n", 3, "expected '}' to close the block of line 1"),
        ("keep;\n}", 2, "unexpected '}'"),
        ('if header ["a", "b" "c" { keep; }', 1, "expected ',' or ']'"),
        ('if header ["a", ] "c" { keep; }', 1, "expected a string"),
        ("if anyof (true; false) { keep; }", 1, "expected ',' or '\\)'"),
        ("if anyof (true,\n) { keep; }", 2, "expected a test"),
        ("if anyof () { keep; }", 1, "expected a test"),
        ('"string";', 1, "unexpected a string"),
    ],
)
def test_grammarErrors(source: str, line: int, message: str) -> None:
    """
    Grammar errors name the line of the offending token.
    """
    error = syntaxError(source)
    assert error.line == line
    assert error.message is not None
    assert re.search(message, error.message), error.message


def test_blocksTooDeep() -> None:
    """
    Blocks nested deeper than the limit are refused.
    """
    assert "nested more than 32" in syntaxError("if true {" * 33 + "keep;" + "}" * 33).message


def test_testsTooDeep() -> None:
    """
    Tests nested deeper than the limit are refused (no stack exhaustion).
    """
    assert "nested more than 32" in syntaxError("if " + "not " * 40 + "true { keep; }").message


def test_stringListTooLong() -> None:
    """
    A string list longer than the limit is refused.
    """
    keys = ", ".join(['"k"'] * 5000)
    assert "string list longer" in syntaxError(f'if header "a" [{keys}] {{ keep; }}').message


def test_scriptTooLarge() -> None:
    """
    maxSize bounds the script, as text or bytes.
    """
    with pytest.raises(SieveSyntaxError, match="larger than 100 octets"):
        parseScript("#" * 101, maxSize=100)
    with pytest.raises(SieveSyntaxError, match="larger than 100 octets"):
        parseScript(b"#" * 101, maxSize=100)
    with pytest.raises(SieveSyntaxError, match="larger than 100 octets"):
        parseScript("\u00e9" * 60, maxSize=100)


def test_invalidUTF8() -> None:
    """
    Bytes that are not UTF-8 are a syntax error on their line.
    """
    error = syntaxError(b'keep;\n# caf\xe9\n')
    assert (error.line, error.message) == (2, "script is not valid UTF-8")


# --- validation errors ------------------------------------------------------


@pytest.mark.parametrize(
    "source, line, message",
    [
        ('require "reject";', 1, 'unsupported extension "reject"'),
        ('require ["fileinto",\n "ereject"];', 1, 'unsupported extension "ereject"'),
        ('require "x-nonsense";', 1, 'unsupported extension "x-nonsense"'),
        ('require "FileInto";', 1, 'unsupported extension "FileInto"'),
        ('keep;\nfileinto "x";', 2, "command 'fileinto' requires \"fileinto\""),
        ('if envelope "to" "a" { keep; }', 1, "test 'envelope' requires \"envelope\""),
        ('require "fileinto";\nfileinto :copy "x";', 2, 'tagged argument :copy requires "copy"'),
        ('require "fileinto";\nfileinto :create "x";', 2, 'tagged argument :create requires "mailbox"'),
        ('keep :flags "\\\\Seen";', 1, 'tagged argument :flags requires "imap4flags"'),
        ('if header :regex "a" "b" { keep; }', 1, 'tagged argument :regex requires "regex"'),
        ('if header :count "eq" "a" "1" { keep; }', 1, 'tagged argument :count requires "relational"'),
        ('if address :user "from" "a" { keep; }', 1, 'tagged argument :user requires "subaddress"'),
        ('set "a" "b";', 1, "command 'set' requires \"variables\""),
        ('vacation "away";', 1, "command 'vacation' requires \"vacation\""),
        ('require "vacation";\nvacation :seconds 10 "x";', 2, 'requires "vacation-seconds"'),
        ('if header :comparator "i;ascii-numeric" "a" "1" { keep; }', 1, 'requires "comparator-i;ascii-numeric"'),
        ("keep;\nrequire \"fileinto\";", 2, "require must come before any other command"),
        ('if true { require "fileinto"; }', 1, "require must come before"),
        ("elsif true { keep; }", 1, "elsif without a preceding if"),
        ("keep;\nelse { keep; }", 2, "else without a preceding if"),
        ("if true { keep; } else { keep; } else { keep; }", 1, "else without a preceding if"),
        ("if true { keep; } keep; elsif true { keep; }", 1, "elsif without a preceding if"),
        ("frobnicate;", 1, "unknown command 'frobnicate'"),
        ("if frobnicated { keep; }", 1, "unknown test 'frobnicated'"),
        ("if true;", 1, "if needs a block"),
        ("if { keep; }", 1, "'if' needs a test"),
        ("else true { keep; }", 1, "else without"),
        ("if true { keep; } else true { keep; }", 1, "'else' takes no test"),
        ("keep { stop; }", 1, "takes no block"),
        ("keep true;", 1, "takes no test"),
        ("if not (true) { keep; }", 1, "takes one test, not a test list"),
        ("if anyof true { keep; }", 1, "takes a test list in parentheses"),
        ("if true 1 { keep; }", 1, "takes 0 positional argument"),
        ('if header "a" { keep; }', 1, "takes 2 positional argument\\(s\\), not 1"),
        ('redirect "a@b" "c@d";', 1, "takes 1 positional argument\\(s\\), not 2"),
        ("redirect 10;", 1, "must be a string"),
        ('redirect ["a@b.c"];', 1, "must be a single string, not a list"),
        ('if size :over "10" { keep; }', 1, "must be a number"),
        ("if size 10 { keep; }", 1, "size needs :over or :under"),
        ("if size :over :under 10 { keep; }", 1, "tagged arguments :over and :under cannot be combined"),
        ('if header :is :contains "a" "b" { keep; }', 1, "tagged arguments :is and :contains cannot be combined"),
        ('if header :is :is "a" "b" { keep; }', 1, "tagged argument :is given twice"),
        ('if address :all :domain "from" "b" { keep; }', 1, ":all and :domain cannot be combined"),
        ('if header "a" :is "b" { keep; }', 1, "must come before the positional arguments"),
        ('if header :frob "a" "b" { keep; }', 1, "has no tagged argument :frob"),
        ('if header :comparator { keep; }', 1, "tagged argument :comparator needs a string"),
        ('if header :comparator "i;nonsense" "a" "b" { keep; }', 1, 'unknown comparator "i;nonsense"'),
        (
            'require ["relational", "comparator-i;ascii-numeric"];\nif header :comparator "i;ascii-numeric" :contains "a" "1" { keep; }',
            2,
            "i;ascii-numeric does not support :contains",
        ),
        ('require "relational";\nif header :value "gtx" "a" "1" { keep; }', 2, 'unknown relational operator "gtx"'),
        ('redirect "not an address";', 1, 'invalid redirect address "not an address"'),
        ('redirect "";', 1, "invalid redirect address"),
        ('require "fileinto";\nfileinto "";', 2, 'invalid mailbox name ""'),
        ('if header "bad name" "x" { keep; }', 1, 'invalid header name "bad name"'),
        ('if exists "a:b" { keep; }', 1, 'invalid header name "a:b"'),
        ('if address "subject" "x" { keep; }', 1, 'header "subject" does not hold addresses'),
        ('require "envelope";\nif envelope "orcpt" "x" { keep; }', 2, 'unknown envelope part "orcpt"'),
        ('require "regex";\nif header :regex "a" "(unclosed" { keep; }', 2, "invalid regular expression"),
        ('require "regex";\nif header :regex "a" "\\\\d+" { keep; }', 2, "unsupported escape"),
        ('require "variables";\nset "1x" "a";', 2, 'invalid variable name "1x"'),
        ('require "variables";\nset "a.b" "a";', 2, 'invalid variable name "a.b"'),
        ('require "variables";\nset :lower :upper "a" "b";', 2, ":lower and :upper cannot be combined"),
        ('require "variables";\nset :lowerfirst :upperfirst "a" "b";', 2, "cannot be combined"),
        ('require ["variables", "fileinto"];\nfileinto "${env.x}";', 2, "unknown variable namespace"),
        ('require "imap4flags";\nsetflag "var" "\\\\Seen";', 2, 'setflag with a variable name requires "variables"'),
        ('require "imap4flags";\nif hasflag "var" "x" { keep; }', 2, 'hasflag with a variable name requires "variables"'),
        ('require "date";\nif currentdate "fortnight" "1" { keep; }', 2, 'unknown date part "fortnight"'),
        ('require "date";\nif currentdate :zone "CET" "hour" "1" { keep; }', 2, 'invalid time zone "CET"'),
        ('require "date";\nif currentdate :zone "+2500" "hour" "1" { keep; }', 2, "invalid time zone"),
        ('require "date";\nif currentdate :originalzone "hour" "1" { keep; }', 2, "has no tagged argument :originalzone"),
        ('require "date";\nif date :zone "+0100" :originalzone "date" "hour" "1" { keep; }', 2, "cannot be combined"),
        ('require "vacation";\nvacation :from "nobody" "x";', 2, 'invalid :from address "nobody"'),
        ('require "vacation";\nvacation :addresses ["ok@example.test", "bad"] "x";', 2, 'invalid address "bad"'),
        ('require "vacation";\nvacation :days "3" "x";', 2, ":days must be a number"),
        ('require "vacation-seconds";\nvacation :days 1 :seconds 60 "x";', 2, ":days and :seconds cannot be combined"),
        ('require "body";\nif body :raw :text "x" { keep; }', 2, ":raw and :text cannot be combined"),
        ('require "body";\nif body :content "x" { keep; }', 2, "takes 1 positional argument\\(s\\), not 0"),
        ('require "encoded-character";\nkeep;\nif header "a" "${unicode:D800}" { keep; }', 3, "not a Unicode character"),
        ('require "encoded-character";\nif header "a" "${hex:ff}" { keep; }', 2, "not give valid UTF-8"),
        ('require "ihave";\nerror;', 2, "takes 1 positional argument"),
    ],
)
def test_validationErrors(source: str, line: int, message: str) -> None:
    """
    Everything checkable before a message arrives is checked, and the
    error names the line.
    """
    error = syntaxError(source)
    assert error.line == line, str(error)
    assert re.search(message, error.message), error.message


def test_errorString() -> None:
    """
    str() of a syntax error is "line N: message".
    """
    error = syntaxError("keep;\n\nfrobnicate;")
    assert str(error) == "line 3: unknown command 'frobnicate'"
    assert (error.line, error.message) == (3, "unknown command 'frobnicate'")


def test_tooManyVariables() -> None:
    """
    A script may not use more than the limit of distinct variables.
    """
    sets = "".join(f'set "v{i}" "x";\n' for i in range(300))
    assert "more than 256 variables" in syntaxError('require "variables";\n' + sets).message


def test_addressTestAllowsXHeaders() -> None:
    """
    The address test accepts the usual address headers and any X- or
    Resent- header.
    """
    parseScript('if address ["from", "To", "reply-to", "X-Original-To", "resent-from"] "a@b" { keep; }')
