"""
The endpoint policy answers the same questions for every protocol.
"""

from __future__ import annotations

from mailsrv.config.schema import DEFAULT_ENDPOINTS
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode

POLICIES = {e.name: e for e in DEFAULT_ENDPOINTS}


def test_starttls_offered_only_before_tls_on_explicit_endpoints() -> None:
    """
    STARTTLS is offered on 25/587/110/143 before TLS, never on implicit ones.
    """
    for name in ("smtp", "submission", "pop3", "imap"):
        assert POLICIES[name].offersStartTLS(False)
        assert not POLICIES[name].offersStartTLS(True)
    for name in ("submissions", "pop3s", "imaps"):
        assert not POLICIES[name].offersStartTLS(False)


def test_authentication_only_over_tls() -> None:
    """
    Credentials are accepted only over TLS, except on tls="none" endpoints;
    never on the MX endpoint.
    """
    for name in ("submission", "submissions", "pop3", "pop3s", "imap", "imaps"):
        assert not POLICIES[name].mayAuthenticate(False)
        assert POLICIES[name].mayAuthenticate(True)
    assert not POLICIES["smtp"].mayAuthenticate(True)
    optional = EndpointPolicy("x", Protocol.IMAP, (), TLSMode.STARTTLS, auth=True)
    assert not optional.mayAuthenticate(False)
    plain = EndpointPolicy("x", Protocol.IMAP, (), TLSMode.NONE, auth=True)
    assert plain.mayAuthenticate(False)


def test_transactions() -> None:
    """
    Submission needs TLS (587) and AUTH for MAIL; the MX needs neither.
    """
    assert POLICIES["submission"].requiresTLSBeforeTransaction(False)
    assert not POLICIES["submission"].requiresTLSBeforeTransaction(True)
    assert POLICIES["submission"].requiresAuthForMail
    assert POLICIES["submissions"].requiresAuthForMail
    assert not POLICIES["smtp"].requiresTLSBeforeTransaction(False)
    assert not POLICIES["smtp"].requiresAuthForMail
