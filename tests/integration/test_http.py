"""
The HTTP endpoint of a real server: MTA-STS policy, Thunderbird autoconfig,
Outlook Autodiscover and Prometheus metrics, over loopback.
"""

from __future__ import annotations

import imaplib
import smtplib
import socket
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from typing import Iterator, Optional

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailsrv.policy.proxy import v1Header
from mailsrv.testing.server import RunningServer, freePorts
from tests.integration.clients import clientContext, message, token
from tests.integration.conftest import PASSWORD


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    ports = dict(zip(("web", "webproxy"), freePorts(2)))
    extra = (
        '[mta_sts]\nmode = "enforce"\nmax_age = 86400\nmx = ["mail.example.test", "*.backup.example.test"]\n\n'
        f'[endpoints.web]\nprotocol = "http"\nlisten = ["127.0.0.1:{ports["web"]}"]\n\n'
        f'[endpoints.webproxy]\nprotocol = "http"\nlisten = ["127.0.0.1:{ports["webproxy"]}"]\n'
        'proxy_protocol = true\ntrusted_proxies = ["127.0.0.1"]\n\n'
    )
    srv = RunningServer(tmp_path_factory.mktemp("web"), extraConfig=extra)
    srv.ports.update(ports)
    srv.addUser("alice@example.test", PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def get(server: RunningServer, path: str, data: Optional[bytes] = None) -> tuple[int, str, bytes]:
    url = f"http://127.0.0.1:{server.ports['web']}{path}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
            return r.status, r.headers.get("content-type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read()


def test_mta_sts_policy(web: RunningServer) -> None:
    """
    The policy is text/plain, CRLF lines, with the configured mode, every
    mx pattern and max_age (RFC 8461 section 3.2).
    """
    status, contentType, body = get(web, "/.well-known/mta-sts.txt")
    assert status == 200
    assert contentType.split(";")[0].strip() == "text/plain"
    lines = body.decode("ascii").split("\r\n")
    assert lines[-1] == "" and all(lines[:-1])
    pairs = [tuple(line.split(": ", 1)) for line in lines[:-1]]
    assert pairs == [
        ("version", "STSv1"),
        ("mode", "enforce"),
        ("mx", "mail.example.test"),
        ("mx", "*.backup.example.test"),
        ("max_age", "86400"),
    ]


@pytest.mark.parametrize("path", ["/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml"])
def test_autoconfig(web: RunningServer, path: str) -> None:
    """
    Thunderbird autoconfig parses as XML and names this server's real
    ports: implicit TLS first, STARTTLS after; SMTP is submission only.
    """
    status, contentType, body = get(web, path + "?emailaddress=alice%40example.test")
    assert status == 200 and "xml" in contentType
    root = ET.fromstring(body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None and provider.get("id") == "example.test"
    incoming = [
        (s.get("type"), int(s.findtext("port")), s.findtext("socketType"), s.findtext("hostname"))
        for s in provider.findall("incomingServer")
    ]
    p = web.ports
    assert incoming == [
        ("imap", p["imaps"], "SSL", "mail.example.test"),
        ("imap", p["imap"], "STARTTLS", "mail.example.test"),
        ("pop3", p["pop3s"], "SSL", "mail.example.test"),
        ("pop3", p["pop3"], "STARTTLS", "mail.example.test"),
    ]
    outgoing = [(int(s.findtext("port")), s.findtext("socketType")) for s in provider.findall("outgoingServer")]
    assert outgoing == [(p["submissions"], "SSL"), (p["submission"], "STARTTLS")]
    assert {s.findtext("username") for s in provider.iter() if s.find("username") is not None} == {"%EMAILADDRESS%"}


def test_autoconfig_unknown_domain(web: RunningServer) -> None:
    """
    Settings are only given out for the server's own domains.
    """
    assert get(web, "/mail/config-v1.1.xml?emailaddress=bob%40elsewhere.test")[0] == 404
    assert get(web, "/mail/config-v1.1.xml")[0] == 404


AUTODISCOVER_REQUEST = b"""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request><EMailAddress>alice@example.test</EMailAddress>
  <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request></Autodiscover>"""


def test_autodiscover(web: RunningServer) -> None:
    """
    Outlook's POX request gets one preferred entry per protocol with the
    login name, parsed back with its namespaces; GET is refused.
    """
    status, contentType, body = get(web, "/autodiscover/autodiscover.xml", AUTODISCOVER_REQUEST)
    assert status == 200 and "xml" in contentType
    ns = {
        "a": "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006",
        "o": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a",
    }
    root = ET.fromstring(body)
    assert root.tag == f"{{{ns['a']}}}Autodiscover"
    account = root.find("o:Response/o:Account", ns)
    assert account is not None and account.findtext("o:Action", namespaces=ns) == "settings"
    protocols = {
        p.findtext("o:Type", namespaces=ns): (
            int(p.findtext("o:Port", namespaces=ns)),
            p.findtext("o:Encryption", namespaces=ns),
            p.findtext("o:LoginName", namespaces=ns),
        )
        for p in account.findall("o:Protocol", ns)
    }
    assert protocols == {
        "IMAP": (web.ports["imaps"], "SSL", "alice@example.test"),
        "POP3": (web.ports["pop3s"], "SSL", "alice@example.test"),
        "SMTP": (web.ports["submissions"], "SSL", "alice@example.test"),
    }
    assert get(web, "/Autodiscover/Autodiscover.xml", AUTODISCOVER_REQUEST)[0] == 200
    assert get(web, "/autodiscover/autodiscover.xml")[0] == 405
    bad = AUTODISCOVER_REQUEST.replace(b"example.test", b"elsewhere.test")
    assert get(web, "/autodiscover/autodiscover.xml", bad)[0] == 404


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_count_logged_events(web: RunningServer) -> None:
    """
    After a delivered message, a refused recipient, a good and a bad IMAP
    login and a TLS connection, /metrics (parsed by prometheus_client's own
    parser) shows each per endpoint and outcome.
    """
    before = samples(get(web, "/metrics")[2])
    with smtplib.SMTP("127.0.0.1", web.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("x@remote.test", ["alice@example.test"], message(token("metrics")))
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("x@remote.test", ["nobody@example.test"], message(token("metrics")))
    imap = imaplib.IMAP4_SSL("127.0.0.1", web.ports["imaps"], ssl_context=clientContext())
    imap.login("alice@example.test", PASSWORD)
    imap.logout()
    imap = imaplib.IMAP4_SSL("127.0.0.1", web.ports["imaps"], ssl_context=clientContext())
    with pytest.raises(imaplib.IMAP4.error):
        imap.login("alice@example.test", "wrong")
    imap.logout()
    with smtplib.SMTP_SSL("127.0.0.1", web.ports["submissions"], timeout=10, context=clientContext()) as smtp:
        smtp.ehlo()
    status, contentType, body = get(web, "/metrics")
    assert status == 200 and contentType.startswith("text/plain")
    after = samples(body)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("mailsrv_connections_total", endpoint="smtp", protocol="smtp") == 1
    assert delta("mailsrv_connections_total", endpoint="imaps", protocol="imap") == 2
    assert delta("mailsrv_messages_total", endpoint="smtp", result="accepted") == 1
    assert delta("mailsrv_smtp_rejections_total", endpoint="smtp", stage="rcpt", code="550", reason="unknown-user") == 1
    assert delta("mailsrv_auth_attempts_total", protocol="imap", outcome="success") == 1
    assert delta("mailsrv_auth_attempts_total", protocol="imap", outcome="failure") == 1
    assert delta("mailsrv_tls_handshakes_total", endpoint="submissions", version="TLSv1.3") == 1
    assert after[("mailsrv_up", ())] == 1


def test_metrics_refused_outside_metrics_networks(web: RunningServer) -> None:
    """
    A client outside [http] metrics_networks (here a proxied public address)
    gets 403, while the MTA-STS policy stays public.
    """
    port = web.ports["webproxy"]

    def fetch(path: str) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(v1Header("203.0.113.80", 1234, "127.0.0.1", port))
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: mta-sts.example.test\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data

    assert fetch("/metrics").startswith(b"HTTP/1.0 403")
    assert fetch("/.well-known/mta-sts.txt").startswith(b"HTTP/1.0 200")
