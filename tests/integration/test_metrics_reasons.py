"""
/metrics after real traffic that trips every refusal reason and filter
verdict: one mailsrv with DNSBL, greylisting, SPF/DKIM/DMARC, ClamAV,
Rspamd, a sending rate limit and a quota, its DNS from a loopback
twisted.names server, its outbound mail to a recording SMTP server with
STARTTLS.  The page is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
import urllib.request
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailsrv.testing.clamd import EICAR, ClamdProcess, clamdBinary
from mailsrv.testing.dns import DNSProcess
from mailsrv.testing.rspamd import RspamdProcess, rspamdBinary
from mailsrv.testing.server import RunningServer, freePorts
from mailsrv.testing.smtpsink import SMTPSink
from mailsrv.tls import generateSelfSigned
from tests.filters.test_senderauth import ZONES as AUTH_ZONES
from tests.integration.clients import clientContext, token
from tests.integration.test_outbound import rcptPolicy, waitFor

ALICE, BOB = "alice@example.test", "bob@example.test"
PASSWORD = "secret"

ZONES = {
    **AUTH_ZONES,
    "quarantine.test": {
        "quarantine.test": {"TXT": ["v=spf1 -all"]},
        "_dmarc.quarantine.test": {"TXT": ["v=DMARC1; p=quarantine"]},
    },
    "bl.test": {"2.0.0.127.bl.test": {"A": ["127.0.0.2"]}},
    "remote.test": {
        "remote.test": {"MX": [[10, "mx.remote.test"]]},
        "mx.remote.test": {"A": ["127.0.0.1"]},
    },
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    if clamdBinary() is None or rspamdBinary() is None:
        pytest.skip("clamd and rspamd are needed (Debian packages clamav-daemon, rspamd)")
    root = tmp_path_factory.mktemp("reasons")
    dnsServer = DNSProcess(ZONES, root)
    dnsPort = dnsServer.start()
    (root / "clamd").mkdir()
    clamd = ClamdProcess(root / "clamd")
    clamd.start()
    rspamd = RspamdProcess(root / "rspamd")
    rspamd.start()
    certPath, keyPath = root / "sink.crt", root / "sink.key"
    generateSelfSigned("mx.remote.test", certPath, keyPath)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certPath, keyPath)
    sink = SMTPSink(tls=context, rcptPolicy=rcptPolicy).start()
    (webPort,) = freePorts(1)
    srv = RunningServer(
        root / "srv",
        endpoints=("smtp", "submission"),
        extraConfig=(
            f'[dns]\nnameservers = ["127.0.0.1:{dnsPort}"]\ntimeout = 5\n\n'
            "[sender_auth]\nenabled = true\n\n"
            '[dnsbl]\nzones = [{ zone = "bl.test" }]\n\n'
            '[greylist]\nenabled = true\ndelay = 300\nwhitelist = ["127.0.0.1/32"]\n\n'
            f'[clamav]\nenabled = true\naddress = "{clamd.address}"\n\n'
            f'[rspamd]\nenabled = true\nurl = "{rspamd.url}"\ntimeout = 10\n\n'
            "[rate_limit]\nmessages_per_hour = 1\n\n"
            f"[delivery]\nmx_port = {sink.port}\nconnect_timeout = 2\ncommand_timeout = 10\n\n"
            f'[endpoints.web]\nprotocol = "http"\nlisten = ["127.0.0.1:{webPort}"]\n\n'
        ),
    )
    srv.ports["web"] = webPort
    srv.addUser(ALICE, PASSWORD)
    srv.addUser(BOB, PASSWORD)
    (srv.configDir / "dovecot-quotas.cf").write_text(f"{BOB}:1k\n")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        sink.stop()
        rspamd.stop()
        clamd.stop()
        dnsServer.stop()


def scrape(server: RunningServer) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.ports['web']}/metrics", timeout=10) as r:
        body = r.read().decode("utf-8")
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def mx(server: RunningServer, source: str = "127.0.0.1") -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname="client.test", timeout=30,
                        source_address=(source, 0))


def infected() -> bytes:
    return (
        b"From: <bob@remote.test>\r\nSubject: virus\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n'
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(EICAR).replace(b"\n", b"\r\n")
        + b"--b--\r\n"
    )


def test_reasons_and_verdicts_on_metrics(server: RunningServer) -> None:
    """
    Each refusal is counted under its reason and stage, each filter's
    verdict under its name, logins, TLS versions and outbound attempts by
    status and TLS.
    """
    before = scrape(server)
    # Accepted, with Authentication-Results and rspamd's headers added.
    with mx(server) as s:
        s.sendmail("bob@remote.test", [ALICE], f"From: <bob@remote.test>\r\nSubject: {token('ok')}\r\n\r\nHi\r\n".encode())
    # Relay denied, unknown user.
    with mx(server) as s:
        s.ehlo()
        s.mail("bob@remote.test")
        assert s.rcpt("x@remote.test")[0] == 554
        assert s.rcpt("nobody@example.test")[0] == 550
        s.rset()
        # Declared size over the limit.
        assert s.mail("bob@remote.test", ["SIZE=999999999999"])[0] == 552
        # Over quota: bob has 1 KiB.
        with pytest.raises((smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError)):
            s.sendmail("bob@remote.test", [BOB], b"Subject: big\r\n\r\n" + b"x" * 4000 + b"\r\n")
    # DMARC p=reject, DMARC p=quarantine.
    with mx(server) as s:
        with pytest.raises(smtplib.SMTPDataError):
            s.sendmail("a@signed.test", [ALICE], b"From: <a@signed.test>\r\nSubject: forged\r\n\r\nHi\r\n")
    with mx(server) as s:
        s.sendmail("a@quarantine.test", [ALICE], b"From: <a@quarantine.test>\r\nSubject: q\r\n\r\nHi\r\n")
    # A virus, spam.
    with mx(server) as s:
        with pytest.raises(smtplib.SMTPDataError) as info:
            s.sendmail("bob@remote.test", [ALICE], infected())
        assert info.value.smtp_code == 554
    with mx(server) as s:
        with pytest.raises(smtplib.SMTPDataError) as info:
            s.sendmail("bob@remote.test", [ALICE], b"From: <bob@remote.test>\r\nSubject: MAILSRV-TEST-REJECT\r\n\r\nx\r\n")
        assert info.value.smtp_code == 550
    # Greylisted (a client not on the greylist's whitelist), DNSBL-listed.
    with mx(server, "127.0.0.3") as s:
        s.ehlo()
        s.mail("bob@remote.test")
        assert s.rcpt(ALICE)[0] == 450
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        mx(server, "127.0.0.2")
    assert refused.value.smtp_code == 554
    # Submission: a failed login, then one message out (to the sink over
    # STARTTLS, one recipient refused by it), then the rate limit.
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as s:
        s.starttls(context=clientContext())
        s.ehlo()
        s.user, s.password = ALICE, "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.auth("PLAIN", s.auth_plain)  # one attempt (login() would try LOGIN next)
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as s:
        s.starttls(context=clientContext())
        s.login(ALICE, PASSWORD)
        ok, refused = token("ok") + "@remote.test", token("reject") + "@remote.test"
        s.sendmail(ALICE, [ok, refused], f"From: <{ALICE}>\r\nSubject: out\r\n\r\nHi\r\n".encode())
        code, _ = s.mail(ALICE)
        assert code == 452  # rate limited
    waitFor(lambda: any(k[0] == "mailsrv_delivery_attempts_total" and ("status", "bounced") in k[1] for k in scrape(server)))
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    rejected = "mailsrv_smtp_rejections_total"
    assert delta(rejected, endpoint="smtp", stage="rcpt", code="554", reason="relay-denied") == 1
    assert delta(rejected, endpoint="smtp", stage="rcpt", code="550", reason="unknown-user") == 1
    assert delta(rejected, endpoint="smtp", stage="mail", code="552", reason="size") == 1
    assert delta(rejected, endpoint="smtp", stage="rcpt", code="452", reason="quota") + delta(
        rejected, endpoint="smtp", stage="data", code="552", reason="quota"
    ) == 1
    assert delta(rejected, endpoint="smtp", stage="data", code="550", reason="dmarc") == 1
    assert delta(rejected, endpoint="smtp", stage="data", code="554", reason="virus") == 1
    assert delta(rejected, endpoint="smtp", stage="data", code="550", reason="spam") == 1
    assert delta(rejected, endpoint="smtp", stage="rcpt", code="450", reason="greylisted") == 1
    assert delta(rejected, endpoint="smtp", stage="connect", code="554", reason="dnsbl") == 1
    assert delta(rejected, endpoint="submission", stage="mail", code="452", reason="rate-limited") == 1

    verdicts = "mailsrv_filter_verdicts_total"
    assert delta(verdicts, filter="dnsbl", verdict="reject") == 1
    assert delta(verdicts, filter="greylist", verdict="tempfail") == 1
    assert delta(verdicts, filter="senderauth", verdict="reject") == 1
    assert delta(verdicts, filter="senderauth", verdict="quarantine") == 1
    assert delta(verdicts, filter="senderauth", verdict="add-header") >= 1
    assert delta(verdicts, filter="clamav", verdict="reject") == 1
    assert delta(verdicts, filter="clamav", verdict="accept") >= 2
    assert delta(verdicts, filter="rspamd", verdict="reject") == 1
    assert delta(verdicts, filter="ratelimit", verdict="tempfail") == 1

    assert delta("mailsrv_auth_attempts_total", protocol="smtp", outcome="failure") == 1
    assert delta("mailsrv_tls_handshakes_total", endpoint="submission", version="TLSv1.3") == 2
    attempts = "mailsrv_delivery_attempts_total"
    tls = next(dict(k[1])["tls"] for k in after if k[0] == attempts and ("status", "sent") in k[1])
    assert tls in ("TLSv1.2", "TLSv1.3")
    assert delta(attempts, status="sent", tls=tls, verified="false") == 1
    assert delta(attempts, status="bounced", tls=tls, verified="false") == 1
    # The transaction's summary line carries every filter's verdict.
    quarantined = [line for line in server.log().splitlines() if "Accepted" in line and "a@quarantine.test" in line]
    assert len(quarantined) == 1 and "senderauth=quarantine" in quarantined[0], quarantined
    assert "filters dnsbl=accept ratelimit=accept greylist=accept" in quarantined[0]
