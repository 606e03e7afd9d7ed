"""
Changes on disk reach the running server without a restart: a renewed
certificate, a new account added with the CLI.
"""

from __future__ import annotations

import imaplib
import socket
import time

from mailsrv.testing.server import RunningServer
from mailsrv.tls import generateSelfSigned
from tests.integration.clients import clientContext
from tests.integration.conftest import PASSWORD


def servedCommonName(port: int) -> str:
    sock = clientContext().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
    try:
        der = sock.getpeercert(binary_form=True)
    finally:
        sock.close()
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return cert.subject.rfc4514_string()


def test_certificate_renewal_served_without_restart(fresh_server: RunningServer) -> None:
    """
    Replacing the configured certificate and key files makes the next
    connection get the new certificate; the process is the same.
    """
    tlsDir = fresh_server.root / "tls"
    cert, key = tlsDir / "fullchain.pem", tlsDir / "privkey.pem"
    generateSelfSigned("first.example.test", cert, key)
    config = fresh_server.configFile.read_text()
    fresh_server.configFile.write_text(config.replace("[endpoints.", f'[tls]\ncert = "{cert}"\nkey = "{key}"\n\n[endpoints.', 1))
    fresh_server.start()
    port = fresh_server.ports["imaps"]
    assert servedCommonName(port) == "CN=first.example.test"
    pid = fresh_server.process.pid
    generateSelfSigned("renewed.example.test", cert, key)
    deadline = time.monotonic() + 10
    while servedCommonName(port) != "CN=renewed.example.test":
        assert time.monotonic() < deadline, "renewed certificate never served"
        time.sleep(0.3)
    assert fresh_server.process.pid == pid and fresh_server.process.poll() is None
    assert servedCommonName(fresh_server.ports["submissions"]) == "CN=renewed.example.test"


def test_account_added_with_cli_can_log_in(fresh_server: RunningServer) -> None:
    """
    An account created with `mailsrv email add` while the server runs can log
    in at once, and one deleted can no longer.
    """
    fresh_server.start()
    port = fresh_server.ports["imaps"]
    result = fresh_server.mailsrv("email", "add", "carol@example.test", "n3w-pass")
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 5
    while True:
        imap = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=clientContext())
        try:
            imap.login("carol@example.test", "n3w-pass")
            break
        except imaplib.IMAP4.error:
            assert time.monotonic() < deadline, "new account cannot log in"
            time.sleep(0.3)
        finally:
            imap.logout()
    assert fresh_server.mailsrv("email", "del", "carol@example.test").returncode == 0
    time.sleep(1.5)
    imap = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=clientContext())
    try:
        try:
            imap.login("carol@example.test", "n3w-pass")
        except imaplib.IMAP4.error:
            pass
        else:
            raise AssertionError("deleted account still logs in")
    finally:
        imap.logout()
    imap = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=clientContext())
    assert imap.login("alice@example.test", PASSWORD)[0] == "OK"
    imap.logout()
