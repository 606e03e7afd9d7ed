# -*- test-case-name: tests.filters.test_senderauth -*-
"""
Tests for L{mailsrv.filters.senderauth} against a real DNS server
(twisted.names, in a subprocess on loopback) serving SPF, DKIM and DMARC
records.  The system resolver is never used.
"""

from __future__ import annotations

import base64
from typing import Any, Iterator

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import defer
from zope.interface.verify import verifyObject

from mailsrv.envelope import Address, Envelope, Session
from mailsrv.filters.senderauth import (
    AuthResultsScrubber,
    SenderAuthFilter,
    SyncResolver,
    authservIdOf,
    checkDKIM,
    checkDMARC,
    checkSPF,
    organizationalDomain,
)
from mailsrv.interfaces import FilterAction, IFilter, IModifier
from mailsrv.pipeline.content import SpooledMessage, applyEdit
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode
from mailsrv.testing.dns import DNSProcess

MX = EndpointPolicy("smtp", Protocol.SMTP, ("127.0.0.1:25",), TLSMode.NONE, auth=False)
SUBMISSION = EndpointPolicy("submission", Protocol.SUBMISSION, ("127.0.0.1:587",), TLSMode.NONE, auth=True)

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
)
PUBLIC_B64 = base64.b64encode(
    KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode("ascii")

def chunks(text: str) -> list[str]:
    """
    A TXT value as DNS strings of at most 255 octets.
    """
    return [text[i : i + 255] for i in range(0, len(text), 255)]


ZONES = {
    "pass.test": {"pass.test": {"TXT": ["v=spf1 ip4:127.0.0.2 -all"]}},
    "soft.test": {"soft.test": {"TXT": ["v=spf1 ip4:127.0.0.2 ~all"]}},
    "nospf.test": {"nospf.test": {"A": ["127.0.0.9"]}},
    "helo.test": {"helo.test": {"TXT": ["v=spf1 a -all"], "A": ["127.0.0.2"]}},
    "signed.test": {
        "signed.test": {"TXT": ["v=spf1 -all"]},
        "sel._domainkey.signed.test": {"TXT": [chunks(f"v=DKIM1; k=rsa; p={PUBLIC_B64}")]},
        "_dmarc.signed.test": {"TXT": ["v=DMARC1; p=reject"]},
    },
    "strict.test": {
        "strict.test": {"TXT": ["v=spf1 ip4:127.0.0.2 -all"]},
        "_dmarc.strict.test": {"TXT": ["v=DMARC1; p=reject; sp=quarantine"]},
    },
    "relaxed.test": {
        "relaxed.test": {"TXT": ["v=spf1 ip4:127.0.0.2 -all"]},
        "_dmarc.relaxed.test": {"TXT": ["v=DMARC1; p=none; sp=reject; aspf=s"]},
        "bounce.relaxed.test": {"TXT": ["v=spf1 ip4:127.0.0.2 -all"]},
    },
}


@pytest.fixture(scope="module")
def resolver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncResolver]:
    server = DNSProcess(ZONES, tmp_path_factory.mktemp("dns"))
    port = server.start()
    try:
        yield SyncResolver([("127.0.0.1", port)], timeout=5)
    finally:
        server.stop()


def sign(message: bytes) -> bytes:
    signature = dkim.sign(message, b"sel", b"signed.test", PRIVATE_PEM, include_headers=[b"from", b"subject"])
    return signature + message


def content(message: bytes) -> SpooledMessage:
    spooled = SpooledMessage()
    spooled.write(message)
    spooled.finish()
    return spooled


def result(d: "defer.Deferred[Any]") -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred did not fire"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def filterFor(resolver: SyncResolver, **kw: Any) -> SenderAuthFilter:
    return SenderAuthFilter(resolver, "mx.local.test", deferToThread=defer.maybeDeferred, **kw)


MESSAGE = b"From: Sender <a@signed.test>\r\nTo: b@local.test\r\nSubject: hi\r\n\r\nHello.\r\n"


@pytest.mark.parametrize(
    "ip,sender,expected",
    [
        ("127.0.0.2", "a@pass.test", "pass"),
        ("127.0.0.3", "a@pass.test", "fail"),
        ("127.0.0.3", "a@soft.test", "softfail"),
        ("127.0.0.3", "a@nospf.test", "none"),
    ],
)
def test_spf_results(resolver: SyncResolver, ip: str, sender: str, expected: str) -> None:
    """
    SPF pass, fail, softfail and none from records served over DNS.
    """
    assert checkSPF(resolver, ip, sender, "client.test").result == expected


def test_spf_helo_fallback(resolver: SyncResolver) -> None:
    """
    For the null sender the HELO identity (postmaster@HELO) is checked.
    """
    spf = checkSPF(resolver, "127.0.0.2", "", "helo.test")
    assert (spf.result, spf.mailFrom) == ("pass", "postmaster@helo.test")
    assert checkSPF(resolver, "127.0.0.3", "", "helo.test").result == "fail"


def test_dkim_signed_verifies_and_tampered_fails(resolver: SyncResolver) -> None:
    """
    A message signed with the key published in DNS verifies; the same
    message with one body byte changed fails.
    """
    signed = sign(MESSAGE)
    [good] = checkDKIM(resolver, signed)
    assert (good.result, good.domain, good.selector) == ("pass", "signed.test", "sel")
    [bad] = checkDKIM(resolver, signed.replace(b"Hello.", b"Hello!"))
    assert bad.result == "fail"
    assert [r.result for r in checkDKIM(resolver, MESSAGE)] == ["none"]


def test_dmarc(resolver: SyncResolver) -> None:
    """
    DMARC passes through aligned DKIM or SPF, fails otherwise, uses the
    organisational domain's record (and its sp=) for subdomains, and honours
    strict SPF alignment.
    """
    signed = sign(MESSAGE)
    dkims = checkDKIM(resolver, signed)
    assert checkDMARC(resolver, "signed.test", None, dkims).result == "pass"
    failed = checkDMARC(resolver, "signed.test", None, checkDKIM(resolver, MESSAGE))
    assert (failed.result, failed.policy) == ("fail", "reject")

    spf = checkSPF(resolver, "127.0.0.2", "x@strict.test", "h")
    assert checkDMARC(resolver, "strict.test", spf, []).result == "pass"
    sub = checkDMARC(resolver, "news.strict.test", checkSPF(resolver, "127.0.0.3", "x@strict.test", "h"), [])
    assert (sub.result, sub.policy) == ("fail", "quarantine")

    # aspf=s: an SPF pass for a subdomain is not aligned with the parent.
    bounce = checkSPF(resolver, "127.0.0.2", "x@bounce.relaxed.test", "h")
    assert bounce.result == "pass"
    assert checkDMARC(resolver, "relaxed.test", bounce, []).result == "fail"
    assert checkDMARC(resolver, "nospf.test", None, []).result == "none"


def test_organizational_domain() -> None:
    """
    The public suffix list decides; unknown TLDs use the default rule.
    """
    assert organizationalDomain("a.b.example.co.uk") == "example.co.uk"
    assert organizationalDomain("mail.example.com") == "example.com"
    assert organizationalDomain("a.b.example.test") == "example.test"


def test_filter_rejects_dmarc_reject(resolver: SyncResolver) -> None:
    """
    Unsigned mail claiming a p=reject domain, from an address SPF does not
    allow, is rejected; with dmarcReject="quarantine" it goes to Junk
    instead.  The Authentication-Results header names us.
    """
    session = Session(MX, "127.0.0.3", heloName="client.test")
    envelope = Envelope(mailFrom=Address("a", "signed.test"))
    f = filterFor(resolver)
    verifyObject(IFilter, f)
    assert result(f.checkSender(session, envelope)).action is FilterAction.ACCEPT
    outcome = result(f.checkMessage(session, envelope, content(MESSAGE)))
    assert outcome.action is FilterAction.REJECT
    assert "DMARC" in outcome.reply

    q = filterFor(resolver, dmarcReject="quarantine")
    result(q.checkSender(session, envelope))
    outcome = result(q.checkMessage(session, envelope, content(MESSAGE)))
    assert outcome.action is FilterAction.QUARANTINE
    [header] = outcome.addHeaders
    assert header.startswith("Authentication-Results: mx.local.test;")
    assert "spf=fail" in header and "dmarc=fail" in header and "dkim=none" in header


def test_filter_accepts_signed(resolver: SyncResolver) -> None:
    """
    Signed mail passes DKIM and DMARC and is accepted with one header.
    """
    session = Session(MX, "127.0.0.3", heloName="client.test")
    envelope = Envelope(mailFrom=Address("a", "signed.test"))
    f = filterFor(resolver)
    result(f.checkSender(session, envelope))
    outcome = result(f.checkMessage(session, envelope, content(sign(MESSAGE))))
    assert outcome.action is FilterAction.ACCEPT
    [header] = outcome.addHeaders
    assert "dkim=pass" in header and "header.d=signed.test" in header and "dmarc=pass" in header


def test_filter_spf_reject_mode(resolver: SyncResolver) -> None:
    """
    With spfFailAction="reject" an SPF fail is refused at MAIL FROM.
    """
    session = Session(MX, "127.0.0.3", heloName="client.test")
    f = filterFor(resolver, spfFailAction="reject")
    outcome = result(f.checkSender(session, Envelope(mailFrom=Address("a", "pass.test"))))
    assert outcome.action is FilterAction.REJECT


def test_submission_not_checked(resolver: SyncResolver) -> None:
    """
    Authenticated sessions and submission endpoints are never checked: no
    DNS, no header.
    """
    f = filterFor(resolver, spfFailAction="reject")
    for session in (
        Session(SUBMISSION, "127.0.0.3", authenticatedAs="a@signed.test"),
        Session(MX, "127.0.0.3", authenticatedAs="a@signed.test"),
    ):
        envelope = Envelope(mailFrom=Address("a", "pass.test"))
        assert result(f.checkSender(session, envelope)).action is FilterAction.ACCEPT
        outcome = result(f.checkMessage(session, envelope, content(MESSAGE)))
        assert (outcome.action, outcome.addHeaders) == (FilterAction.ACCEPT, ())


def test_scrubber_removes_only_our_authserv_id() -> None:
    """
    Incoming Authentication-Results claiming our authserv-id (any case,
    with comments or a version) are removed; others stay.
    """
    scrubber = AuthResultsScrubber("MX.local.test")
    verifyObject(IModifier, scrubber)
    headers = (
        b"Authentication-Results: mx.local.test; dkim=pass\r\n"
        b"Authentication-Results: (forged) MX.Local.Test 1;\r\n\tdmarc=pass\r\n"
        b"Authentication-Results: other.test; spf=pass\r\n"
        b"Subject: x\r\n"
    )
    msg = content(headers + b"\r\nbody\r\n")
    edit = result(scrubber.modify(Session(MX, "127.0.0.3"), Envelope(), msg))
    assert applyEdit(msg.headerBlock, edit) == b"Authentication-Results: other.test; spf=pass\r\nSubject: x\r\n"
    untouched = result(scrubber.modify(Session(SUBMISSION, "127.0.0.3", authenticatedAs="a@b"), Envelope(), msg))
    assert untouched.remove is None
    assert authservIdOf(" example.org (comment) 1; none") == "example.org"
