"""
The SMTP server's own refusals (STARTTLS and AUTH required, commands out of
sequence, syntax, limits, bare LF, timeouts) over real sockets with
smtplib: each is logged once and counted on /metrics under its reason, read
with prometheus_client's own parser.
"""

from __future__ import annotations

import smtplib
import socket
import time
import urllib.request
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailsrv.testing.dns import DNSProcess
from mailsrv.testing.server import RunningServer, freePorts
from tests.integration.clients import clientContext

ALICE, PASSWORD = "alice@example.test", "secret"
COMMAND_TIMEOUT = 4

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("refusals")
    dnsServer = DNSProcess({}, root)
    dnsPort = dnsServer.start()
    (webPort,) = freePorts(1)
    srv = RunningServer(
        root / "srv",
        endpoints=("smtp", "submission"),
        extraConfig=(
            f'[dns]\nnameservers = ["127.0.0.1:{dnsPort}"]\ntimeout = 5\n\n'
            f"[limits]\nmessage_size = 10000\nrecipients = 3\nmax_errors = 8\n"
            f"command_timeout = {COMMAND_TIMEOUT}\n\n"
            f'[endpoints.web]\nprotocol = "http"\nlisten = ["127.0.0.1:{webPort}"]\n\n'
        ),
    )
    srv.ports["web"] = webPort
    srv.addUser(ALICE, PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        dnsServer.stop()


def scrape(server: RunningServer) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.ports['web']}/metrics", timeout=10) as r:
        body = r.read().decode("utf-8")
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def rejections(samples: Samples) -> dict[tuple[str, str, str, str], float]:
    """
    (endpoint, stage, code, reason) -> count.
    """
    out = {}
    for (name, labels), value in samples.items():
        if name == "mailsrv_smtp_rejections_total":
            d = dict(labels)
            out[(d["endpoint"], d["stage"], d["code"], d["reason"])] = value
    return out


def mx(server: RunningServer) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname="client.test", timeout=30)


def submission(server: RunningServer) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", server.ports["submission"], local_hostname="client.test", timeout=30)


def test_refusals_logged_and_counted(server: RunningServer) -> None:
    """
    Every refusal is counted exactly once under its endpoint, stage, code
    and reason; over-limit recipients once per transaction; failed logins
    as failed auth attempts only.
    """
    before = rejections(scrape(server))
    # Submission: MAIL and AUTH before STARTTLS, MAIL before AUTH, a
    # wrong password.
    with submission(server) as s:
        s.ehlo()
        assert s.mail(ALICE)[0] == 530
        assert s.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")[0] == 530
    with submission(server) as s:
        s.starttls(context=clientContext())
        s.ehlo()
        assert s.mail(ALICE)[0] == 530
        s.user, s.password = ALICE, "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.auth("PLAIN", s.auth_plain)
    # MX: out of sequence, syntax, unknown command, line too long.
    with mx(server) as s:
        assert s.mail("a@remote.test")[0] == 503  # before EHLO
        s.ehlo()
        assert s.rcpt(ALICE)[0] == 503
        assert s.docmd("DATA")[0] == 503
        assert s.docmd("MAIL", "<a@remote.test>")[0] == 501
        assert s.docmd("XYZZY")[0] == 502
        assert s.docmd("NOOP", "x" * 3000)[0] == 500
    # MX: too many recipients (twice in one transaction, logged once),
    # a bad RCPT parameter, DATA before RCPT.
    with mx(server) as s:
        s.ehlo()
        assert s.mail("a@remote.test")[0] == 250
        assert s.docmd("DATA")[0] == 503
        assert s.rcpt(ALICE, ["NOTIFY=SOMETIMES"])[0] == 555
        assert [s.rcpt(ALICE)[0] for _ in range(5)] == [250, 250, 250, 452, 452]
    # MX: declared SIZE too large (smtplib sends SIZE=), then a message
    # that grows over the limit in DATA, then one with a bare LF.
    with mx(server) as s:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            s.sendmail("a@remote.test", [ALICE], b"Subject: big\r\n\r\n" + b"x" * 20000 + b"\r\n")
        assert refused.value.smtp_code == 552
        s.rset()
        assert s.mail("a@remote.test")[0] == 250
        assert s.rcpt(ALICE)[0] == 250
        assert s.data(b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 20)[0] == 552
        assert s.mail("a@remote.test")[0] == 250
        assert s.rcpt(ALICE)[0] == 250
        s.putcmd("DATA")
        assert s.getreply()[0] == 354
        s.send(b"Subject: lf\r\n\r\na\nb\r\n.\r\n")
        assert s.getreply()[0] == 550
    # MX: a client repeating a bad command; the eighth error ends the
    # session.
    with mx(server) as s:
        s.ehlo()
        assert [s.rcpt(ALICE)[0] for _ in range(8)] == [503] * 8
        assert s.getreply()[0] == 421
    # MX: an idle client is timed out.
    with socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=30) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        started = time.monotonic()
        assert reader.readline().startswith(b"421 4.4.2 ")
        assert COMMAND_TIMEOUT - 1 < time.monotonic() - started < COMMAND_TIMEOUT + 10
        assert reader.readline() == b""

    samples = scrape(server)
    after = rejections(samples)
    delta = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}
    assert delta == {
        ("submission", "mail", "530", "starttls-required"): 1,
        ("submission", "auth", "530", "starttls-required"): 1,
        ("submission", "mail", "530", "auth-required"): 1,
        ("smtp", "mail", "503", "helo-required"): 1,
        ("smtp", "rcpt", "503", "bad-sequence"): 9,
        ("smtp", "data", "503", "bad-sequence"): 2,
        ("smtp", "mail", "501", "syntax"): 1,
        ("smtp", "command", "502", "unknown-command"): 1,
        ("smtp", "command", "500", "line-too-long"): 1,
        ("smtp", "rcpt", "555", "syntax"): 1,
        ("smtp", "rcpt", "452", "too-many-recipients"): 1,
        ("smtp", "mail", "552", "size"): 1,
        ("smtp", "data", "552", "size"): 1,
        ("smtp", "data", "550", "bare-newline"): 1,
        ("smtp", "session", "421", "too-many-errors"): 1,
        ("smtp", "command", "421", "timeout"): 1,
    }
    auth = {dict(labels)["outcome"]: v for (name, labels), v in samples.items() if name == "mailsrv_auth_attempts_total"}
    assert auth == {"failure": 1}
    log = server.log()
    assert "SMTP MAIL from 127.0.0.1 on submission refused: 530 Must issue a STARTTLS command first" in log
    assert "SMTP session from 127.0.0.1 on smtp refused: 421 mail.example.test Error: too many errors" in log
