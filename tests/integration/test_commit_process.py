"""
The server's commit process, seen from outside: it runs beside the server,
takes every delivery, is replaced when it dies (the delivery it had not
confirmed is refused with a temporary error, never acknowledged), and
leaves with the server.
"""

from __future__ import annotations

import os
import signal
import smtplib
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mailsrv.testing.server import RunningServer, freePorts

ALICE = "alice@example.test"


def message(n: int) -> bytes:
    return f"Message-ID: <commit-{n}@example.net>\r\nSubject: {n}\r\n\r\nbody {n}\r\n".encode()


def delivered(server: RunningServer) -> list[bytes]:
    """
    The messages in alice's new/, without the trace fields the server
    added in front.
    """
    new = server.maildir(ALICE) / "new"
    files = sorted(new.iterdir()) if new.is_dir() else []
    return sorted(b"Message-ID:" + p.read_bytes().split(b"\r\nMessage-ID:", 1)[1] for p in files)


def waitUntil(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def isRunning(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def makeServer(root: Path) -> RunningServer:
    """
    A server with the MX endpoint and /metrics.
    """
    (webPort,) = freePorts(1)
    server = RunningServer(
        root,
        endpoints=("smtp",),
        extraConfig=f'[endpoints.web]\nprotocol = "http"\nlisten = ["127.0.0.1:{webPort}"]\n\n',
    )
    server.ports["web"] = webPort
    return server


def metric(server: RunningServer, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.ports['web']}/metrics", timeout=10) as r:
        body = r.read().decode("utf-8")
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_commitProcessReplaced(tmp_path: Path) -> None:
    """
    Killing the commit process between deliveries costs nothing: the next
    delivery in the same session starts a new one; the failure is logged
    and counted, and the new process leaves with the server.
    """
    server = makeServer(tmp_path / "srv")
    server.addUser(ALICE, "secret")
    server.start()
    try:
        [first] = server.childPids()
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            smtp.sendmail("a@example.net", [ALICE], message(1))
            os.kill(first, signal.SIGKILL)
            waitUntil(lambda: "Commit process ended" in server.log())
            # The same session goes on; the next delivery starts a new process.
            smtp.sendmail("a@example.net", [ALICE], message(2))
        assert delivered(server) == [message(1), message(2)]
        [second] = server.childPids()
        assert second != first
        assert "Commit process started (pid %d)" % second in server.log()
        assert metric(server, "mailsrv_commit_process_failures_total") == 1
    finally:
        server.stop()
    assert not isRunning(second)
    assert "Traceback" not in server.log()


def test_unconfirmedDeliveryRefused(tmp_path: Path) -> None:
    """
    A delivery whose commit process dies before confirming it gets 451,
    not 250; the client's retry is delivered once.
    """
    server = makeServer(tmp_path / "srv")
    server.addUser(ALICE, "secret")
    server.start()
    try:
        [child] = server.childPids()
        # Stop (not kill) the process: the job waits in its pipe.
        os.kill(child, signal.SIGSTOP)
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            smtp.ehlo()
            smtp.mail("a@example.net")
            smtp.rcpt(ALICE)
            code, _ = smtp.docmd("DATA")
            assert code == 354
            smtp.send(message(3) + b".\r\n")
            time.sleep(0.3)
            os.kill(child, signal.SIGKILL)
            code, reply = smtp.getreply()
            assert code == 451, reply
            assert delivered(server) == []
            smtp.sendmail("a@example.net", [ALICE], message(3))
        assert delivered(server) == [message(3)]
        assert "Unconfirmed delivery " in server.log() and " undone after its commit process ended" in server.log()
        assert metric(server, "mailsrv_commit_unconfirmed_deliveries_total", outcome="undone") == 1
        assert metric(server, "mailsrv_commit_process_failures_total") == 1
    finally:
        server.stop()
