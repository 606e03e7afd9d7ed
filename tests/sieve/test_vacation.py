"""
L{mailsrv.sieve.vacation}: every rule that stops an automatic reply, the
reply's header fields and body, and the reply key.
"""

from __future__ import annotations

import email
import email.policy
import re
from datetime import datetime, timezone

import pytest

from mailsrv.sieve import MessageContext, Vacation
from mailsrv.sieve.vacation import (
    buildVacationReply,
    isSystemSender,
    normaliseAddress,
    vacationApplies,
    vacationKey,
)
from tests.sieve.support import makeContext, makeHeader

USER = "alice@example.test"
BASE = [
    "From: Bob <bob@example.org>",
    "To: Alice <alice@example.test>",
    "Subject: Lunch?",
    "Message-ID: <m1@example.org>",
]


def vacation(**kwargs: object) -> Vacation:
    fields: dict[str, object] = dict(
        reason="I am away.", subject=None, fromAddress=None, addresses=(), days=7, handle="h", mime=False
    )
    fields.update(kwargs)
    return Vacation(**fields)  # type: ignore[arg-type]


def applies(*extra: str, base: list[str] = BASE, action: Vacation | None = None, **kwargs: object) -> tuple[bool, str]:
    context = makeContext(makeHeader(*base, *extra), **kwargs)  # type: ignore[arg-type]
    return vacationApplies(action or vacation(), context, userAddresses=[USER])


def test_appliesToOrdinaryMessage() -> None:
    """
    A personal message to the user gets a reply.
    """
    assert applies() == (True, "")


def test_nullSender() -> None:
    """
    No reply to the null sender.
    """
    assert applies(envelopeFrom="") == (False, "the envelope sender is null")


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@example.org",
        "owner-python-dev@example.org",
        "python-dev-request@example.org",
        "LISTSERV@example.org",
        "majordomo@example.org",
        "python-dev-bounces@example.org",
        "noreply@example.org",
        "no-reply@example.org",
    ],
)
def test_systemSenders(sender: str) -> None:
    """
    No reply to lists and programs (RFC 5230 4.6, RFC 3834).
    """
    ok, why = applies(envelopeFrom=sender)
    assert not ok and "list or system address" in why


def test_isSystemSender() -> None:
    """
    Ordinary senders are not system senders.
    """
    assert not isSystemSender("bob@example.org")
    assert not isSystemSender("requests@example.org")
    assert isSystemSender("mailer-daemon")


@pytest.mark.parametrize(
    "field, reason",
    [
        ("Auto-Submitted: auto-generated", "Auto-Submitted"),
        ("Auto-Submitted: auto-replied; owner-email=x@y", "Auto-Submitted"),
        ("Precedence: bulk", "Precedence"),
        ("Precedence: LIST", "Precedence"),
        ("Precedence: junk", "Precedence"),
        ("List-Id: <python-dev.python.org>", "list-id"),
        ("List-Unsubscribe: <mailto:leave@example.org>", "list-unsubscribe"),
        ("List-Post: <mailto:list@example.org>", "list-post"),
        ("X-Auto-Response-Suppress: OOF, DR", "X-Auto-Response-Suppress"),
        ("X-Auto-Response-Suppress: All", "X-Auto-Response-Suppress"),
        ("X-Autoreply: yes", "x-autoreply"),
    ],
)
def test_headersThatStopReplies(field: str, reason: str) -> None:
    """
    Automatic, bulk and list messages get no reply.
    """
    ok, why = applies(field)
    assert not ok and reason in why


@pytest.mark.parametrize("field", ["Auto-Submitted: no", "Precedence: first-class", "X-Auto-Response-Suppress: DR, RN"])
def test_harmlessValues(field: str) -> None:
    """
    Values that do not mark automatic or bulk mail do not stop the reply.
    """
    assert applies(field) == (True, "")


def test_fromUserThemselves() -> None:
    """
    No reply to the user's own messages (any detail, any case).
    """
    ok, why = applies(envelopeFrom="Alice+sent@Example.TEST")
    assert not ok and "own address" in why


def test_notAddressedToUser() -> None:
    """
    No reply when the user is not among the visible recipients (a Bcc'd
    list copy, for instance).
    """
    ok, why = applies(base=["From: bob@example.org", "To: team@example.org"], envelopeTo="alice@example.test")
    assert not ok and "none of the user's addresses" in why


@pytest.mark.parametrize(
    "field",
    [
        "Cc: Alice <ALICE@example.test>",
        "Bcc: alice+x@example.test",
        "Resent-To: alice@example.test",
        "Resent-Cc: someone@else.test, alice@example.test",
    ],
)
def test_userInOtherRecipientFields(field: str) -> None:
    """
    Cc, Bcc, Resent-To and Resent-Cc count, case and +detail ignored.
    """
    base = ["From: bob@example.org", "To: team@example.org", field]
    assert applies(base=base, envelopeTo="alice@example.test") == (True, "")


def test_vacationAddressesCount() -> None:
    """
    The action's :addresses are the user's addresses too.
    """
    base = ["From: bob@example.org", "To: a.smith@example.test"]
    action = vacation(addresses=("A. Smith <a.smith@example.test>",))
    assert applies(base=base, action=action) == (True, "")


def test_originalRecipientCounts() -> None:
    """
    A message to an alias of the user (the RCPT TO before expansion) gets a
    reply.
    """
    base = ["From: bob@example.org", "To: sales@example.test"]
    assert applies(base=base, originalRecipient="sales@example.test") == (True, "")


def test_normaliseAddress() -> None:
    """
    Addresses compare in lower case without detail or display name.
    """
    assert normaliseAddress("Alice <Alice+Work@Example.TEST>") == "alice@example.test"
    assert normaliseAddress("root") == "root"


# --- the reply --------------------------------------------------------------

NOW = datetime(2024, 7, 3, 14, 5, 9, tzinfo=timezone.utc)


def reply(action: Vacation, *extra: str, base: list[str] = BASE, **kwargs: object) -> tuple[bytes, email.message.EmailMessage]:
    context = makeContext(makeHeader(*base, *extra), **kwargs)  # type: ignore[arg-type]
    raw = buildVacationReply(action, context, userAddress=USER, messageIdDomain="mx.example.test", now=NOW)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return raw, message


def test_replyHeaders() -> None:
    """
    The reply goes from the user to the envelope sender, threads under the
    original and says it is automatic.
    """
    raw, message = reply(vacation(), "References: <r0@example.org>")
    assert message["From"] == USER
    assert message["To"] == "bob@example.org"
    assert message["Subject"] == "Auto: Lunch?"
    assert message["Date"] == "Wed, 03 Jul 2024 14:05:09 +0000"
    assert re.fullmatch(r"<[0-9a-f]{32}@mx\.example\.test>", message["Message-ID"])
    assert message["In-Reply-To"] == "<m1@example.org>"
    assert message["References"].split() == ["<r0@example.org>", "<m1@example.org>"]
    assert message["Auto-Submitted"] == "auto-replied (vacation)"
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "I am away.\r\n"


def test_replyUsesCRLF() -> None:
    """
    Every line of the reply ends with CRLF.
    """
    raw, _ = reply(vacation(reason="line one\nline two\r\nline three"))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"line three\r\n")


def test_replySubjectAndFromFromAction() -> None:
    """
    :subject and :from replace the defaults.
    """
    _, message = reply(vacation(subject="Away until Monday", fromAddress="Alice Example <alice@example.test>"))
    assert message["Subject"] == "Away until Monday"
    assert message["From"] == "Alice Example <alice@example.test>"


def test_replyNonASCII() -> None:
    """
    Non-ASCII subjects and names are RFC 2047 encoded; the text is
    quoted-printable UTF-8.
    """
    raw, message = reply(
        vacation(subject="Bin weg – zurück am Montag", fromAddress="Jörg <joerg@example.test>", reason="Grüße\n")
    )
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert message["Subject"] == "Bin weg – zurück am Montag"
    assert message["From"] == "Jörg <joerg@example.test>"
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert message.get_content() == "Grüße\r\n"


def test_replyDefaultSubjectDecodesOriginal() -> None:
    """
    The default subject is "Auto: " and the decoded original subject.
    """
    base = ["From: bob@example.org", "To: alice@example.test", "Subject: =?utf-8?q?K=C3=B6ln?="]
    _, message = reply(vacation(), base=base)
    assert message["Subject"] == "Auto: Köln"


def test_replyWithoutOriginalSubjectOrMessageId() -> None:
    """
    Without a subject the reply says it is automated; without a
    Message-ID it has no threading fields.
    """
    _, message = reply(vacation(), base=["From: bob@example.org", "To: alice@example.test"])
    assert message["Subject"] == "Automated reply"
    assert message["In-Reply-To"] is None and message["References"] is None


def test_replyHeaderInjection() -> None:
    """
    Line breaks in script-given values cannot add header fields.
    """
    raw, message = reply(vacation(subject="Away\r\nBcc: victim@example.org"))
    assert message["Bcc"] is None
    assert b"\r\nBcc:" not in raw


def test_replyMime() -> None:
    """
    With :mime the reason is a MIME entity: its Content fields head the
    body; other fields in it are dropped.
    """
    entity = (
        "Content-Type: multipart/alternative; boundary=XX\r\n"
        "Bcc: victim@example.org\r\n\r\n"
        "--XX\r\nContent-Type: text/plain\r\n\r\nAway\r\n"
        "--XX\r\nContent-Type: text/html\r\n\r\n<b>Away</b>\r\n--XX--\r\n"
    )
    _, message = reply(vacation(reason=entity, mime=True))
    assert message.get_content_type() == "multipart/alternative"
    assert message["Bcc"] is None
    parts = [part.get_content() for part in message.iter_parts()]
    assert parts == ["Away", "<b>Away</b>"]


def test_replyMimeWithoutHeaderIsText() -> None:
    """
    A :mime reason without a header of its own is sent as plain text.
    """
    _, message = reply(vacation(reason="Just text, no header.", mime=True))
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Just text, no header.\r\n"


# --- the key ----------------------------------------------------------------


def test_vacationKey() -> None:
    """
    The key depends on the sender (any case) and the handle.
    """
    action = vacation(handle="h1")
    assert vacationKey(action, "Bob@Example.org") == vacationKey(action, "bob@example.org")
    assert vacationKey(action, "bob@example.org") != vacationKey(action, "eve@example.org")
    assert vacationKey(action, "bob@example.org") != vacationKey(vacation(handle="h2"), "bob@example.org")
    assert re.fullmatch(r"[0-9a-f]{64}", vacationKey(action, "bob@example.org"))


def test_vacationKeyWithoutHandle() -> None:
    """
    An action built without a handle gets the default digest.
    """
    assert vacationKey(vacation(handle=""), "bob@example.org") == vacationKey(
        vacation(handle=""), "bob@example.org"
    )
    assert vacationKey(vacation(handle="", reason="a"), "b@x") != vacationKey(vacation(handle="", reason="b"), "b@x")


def test_contextIsPlainData() -> None:
    """
    MessageContext is frozen and its defaults need no I/O.
    """
    context = MessageContext("a@b", "c@d", "c@d", b"\r\n", 2)
    assert context.body is None and context.now is None and context.mailboxExists("x")
    with pytest.raises(Exception):
        context.size = 3  # type: ignore[misc]
