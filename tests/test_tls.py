"""
The shared TLS creator: loading, validation and reloading on file change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography import x509
from OpenSSL import SSL
from zope.interface.verify import verifyObject
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator

from mailsrv.config.schema import TLSConfig
from mailsrv.tls import ServerTLS, generateSelfSigned, loadCertificateOptions, serverTLSFromConfig


def servedName(creator: ServerTLS) -> str:
    cert = creator.context()
    # The context's certificate is what a new connection would present.
    conn = SSL.Connection(cert, None)
    return conn.get_certificate().to_cryptography().subject.rfc4514_string()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_minimum_version_and_ciphers(tmp_path: Path) -> None:
    """
    The context refuses TLS below 1.2 and offers no weak suites.
    """
    generateSelfSigned("a.test", tmp_path / "c.pem", tmp_path / "k.pem")
    ctx = loadCertificateOptions(tmp_path / "c.pem", tmp_path / "k.pem").getContext()
    options = ctx.set_options(0)  # returns the options in force
    assert options & SSL.OP_NO_TLSv1 and options & SSL.OP_NO_TLSv1_1
    conn = SSL.Connection(ctx, None)
    ciphers = conn.get_cipher_list()
    assert ciphers, "no ciphers"
    for weak in ("RC4", "3DES", "DES-CBC", "NULL", "EXP", "anon", "MD5", "CBC-SHA"):
        assert not [c for c in ciphers if weak in c and not c.startswith("TLS_")], (weak, ciphers)


def test_reload_after_change(tmp_path: Path) -> None:
    """
    New files are picked up on the first connection after the check
    interval; a broken pair keeps the old certificate in service.
    """
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    generateSelfSigned("one.test", cert, key)
    clock = FakeClock()
    creator = ServerTLS(cert, key, clock=clock, checkInterval=1.0)
    verifyObject(IOpenSSLServerConnectionCreator, creator)
    assert servedName(creator) == "CN=one.test"
    generateSelfSigned("two.test", cert, key)
    assert servedName(creator) == "CN=one.test"  # not yet: within the interval
    clock.now = 1.5
    assert servedName(creator) == "CN=two.test"
    # Half-renewed: a new certificate with the old key.
    generateSelfSigned("three.test", tmp_path / "c3.pem", tmp_path / "k3.pem")
    os.replace(tmp_path / "c3.pem", cert)
    clock.now = 3.0
    assert servedName(creator) == "CN=two.test"
    os.replace(tmp_path / "k3.pem", key)
    clock.now = 4.5
    assert servedName(creator) == "CN=three.test"


def test_bad_files(tmp_path: Path) -> None:
    """
    Unreadable, non-PEM and mismatched files are reported with their names.
    """
    generateSelfSigned("a.test", tmp_path / "c.pem", tmp_path / "k.pem")
    generateSelfSigned("b.test", tmp_path / "c2.pem", tmp_path / "k2.pem")
    with pytest.raises(ValueError, match="do not form"):
        loadCertificateOptions(tmp_path / "c.pem", tmp_path / "k2.pem")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(ValueError, match="junk.pem"):
        loadCertificateOptions(tmp_path / "junk.pem", tmp_path / "k.pem")
    with pytest.raises(ValueError, match="cannot read"):
        loadCertificateOptions(tmp_path / "missing.pem", tmp_path / "k.pem")


def test_self_signed_fallback_then_configured(tmp_path: Path) -> None:
    """
    Configured files that do not exist yet: a self-signed certificate for the
    host name is served, and the configured one as soon as it appears.
    """
    cert, key = tmp_path / "live" / "fullchain.pem", tmp_path / "live" / "privkey.pem"
    creator = serverTLSFromConfig(TLSConfig(cert=cert, key=key), "mail.example.test", tmp_path / "data")
    creator._checkInterval = 0
    assert servedName(creator) == "CN=mail.example.test"
    assert (tmp_path / "data" / "tls" / "selfsigned-key.pem").stat().st_mode & 0o077 == 0
    generateSelfSigned("real.example.test", cert, key)
    assert servedName(creator) == "CN=real.example.test"
    san = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert san.value.get_values_for_type(x509.DNSName) == ["real.example.test"]
