"""
SIGHUP and `mailsrv reload` against a real twistd process: a broken config
is refused and logged while the server keeps serving; the fixed config is
applied (a new certificate is served at once) without a restart.
"""

from __future__ import annotations

import imaplib
import os
import signal
import time

from mailsrv.testing.server import RunningServer
from mailsrv.tls import generateSelfSigned
from tests.integration.clients import clientContext
from tests.integration.conftest import PASSWORD
from tests.integration.test_reload import servedCommonName


def waitForLog(server: RunningServer, needle: str, count: int = 1, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while server.log().count(needle) < count:
        assert time.monotonic() < deadline, f"{needle!r} not logged {count} times:\n{server.log()[-3000:]}"
        time.sleep(0.05)
    return server.log()


def imapLogin(server: RunningServer) -> str:
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext())
    try:
        return imap.login("alice@example.test", PASSWORD)[0]
    finally:
        imap.logout()


def test_sighup_broken_then_fixed_config(fresh_server: RunningServer) -> None:
    """
    Break the config and send SIGHUP: the log says why it was refused and
    logins still work.  Fix it (now with [tls] files and a changed limit)
    and send SIGHUP: the new certificate is served to the very next
    connection, the limit is reported as needing a restart, and the process
    is the same.
    """
    fresh_server.start()
    process = fresh_server.process
    assert process is not None
    original = fresh_server.configFile.read_text()
    fresh_server.configFile.write_text(original.replace("[server]\n", "[server]\nbogus_key = 1\n", 1))
    os.kill(process.pid, signal.SIGHUP)
    log = waitForLog(fresh_server, "Reload refused, keeping the running configuration")
    assert "server.bogus_key: unknown key" in log
    assert imapLogin(fresh_server) == "OK"

    tlsDir = fresh_server.root / "tls"
    cert, key = tlsDir / "fullchain.pem", tlsDir / "privkey.pem"
    generateSelfSigned("sighup.example.test", cert, key)
    fresh_server.configFile.write_text(
        original.replace("[endpoints.", f'[tls]\ncert = "{cert}"\nkey = "{key}"\n\n[limits]\nrecipients = 7\n\n[endpoints.', 1)
    )
    os.kill(process.pid, signal.SIGHUP)
    log = waitForLog(fresh_server, "applied")
    assert "tls.cert, tls.key applied" in log
    assert "need a restart to take effect: limits.recipients" in log
    assert servedCommonName(fresh_server.ports["imaps"]) == "CN=sighup.example.test"
    assert process.poll() is None and fresh_server.process is process
    assert imapLogin(fresh_server) == "OK"


def test_mailsrv_reload_command(fresh_server: RunningServer) -> None:
    """
    `mailsrv reload` signals the server found through its pidfile; with an
    invalid config it reports the error (exit 2) and does not signal.
    """
    fresh_server.start()
    result = fresh_server.mailsrv("reload")
    assert result.returncode == 0, result.stderr
    assert f"process {fresh_server.process.pid}" in result.stdout
    waitForLog(fresh_server, "Reloaded ")
    original = fresh_server.configFile.read_text()
    fresh_server.configFile.write_text(original + "\n[limits]\nrecipients = -1\n")
    result = fresh_server.mailsrv("reload")
    assert result.returncode == 2
    assert "limits.recipients" in result.stderr
    time.sleep(0.5)
    assert "SIGHUP: reloading" in fresh_server.log()
    assert fresh_server.log().count("SIGHUP: reloading") == 1


def test_mailsrv_reload_without_server(fresh_server: RunningServer) -> None:
    """
    With no server running, `mailsrv reload` says so and exits 1.
    """
    result = fresh_server.mailsrv("reload")
    assert result.returncode == 1
    assert "no running server" in result.stderr
