"""
Metrics counted from log events, in memory.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from twisted.logger import Logger, LogPublisher

from mailsrv.config.load import parseConfig
from mailsrv.errors import ConfigError
from mailsrv.http.site import autoconfigXML, clientServers, mtaStsPolicy, mtaStsPolicyId
from mailsrv.metrics import Metrics, MetricsService

import pytest


def value(metrics: Metrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_events_counted_while_service_runs() -> None:
    """
    The service's observer counts connection, login and message events
    while running and nothing after it stopped; close lines and unrelated
    events are not counted.
    """
    publisher = LogPublisher()
    log = Logger(observer=publisher)
    metrics = Metrics()
    service = MetricsService(metrics, publisher)
    service.startService()
    log.info("SMTP connection from {peer} on {endpoint}", peer="192.0.2.1", endpoint="smtp")
    log.info("SMTP connection from {peer} on {endpoint} closed", peer="192.0.2.1", endpoint="smtp")
    log.info("POP3 login {outcome} for {account} via {mechanism} from {peer} on {endpoint}", outcome="failure", account="a", mechanism="USER", peer="p", endpoint="pop3s")
    log.info("AUTH {outcome} for {account} from {peer} on {endpoint}", outcome="failure", account="a", peer="p", endpoint="submission")
    log.info("AUTH success for {account} from {peer} on {endpoint}", outcome="success", account="a", peer="p", endpoint="submission")
    log.info("Refused {msgId}: {code} {text}", msgId="m", code=552, text="too big", endpoint="smtp", reason="size")
    log.info("Something else {x}", x=1)
    service.stopService()
    log.info("SMTP connection from {peer} on {endpoint}", peer="192.0.2.1", endpoint="smtp")
    assert value(metrics, "mailsrv_connections_total", endpoint="smtp", protocol="smtp") == 1
    assert value(metrics, "mailsrv_auth_attempts_total", protocol="pop3", outcome="failure") == 1
    assert value(metrics, "mailsrv_auth_attempts_total", protocol="smtp", outcome="failure") == 1
    assert value(metrics, "mailsrv_auth_attempts_total", protocol="smtp", outcome="success") == 1
    assert value(metrics, "mailsrv_messages_total", endpoint="smtp", result="rejected") == 1
    assert value(metrics, "mailsrv_smtp_rejections_total", endpoint="smtp", stage="data", code="552", reason="size") == 1


def test_malformed_event_ignored() -> None:
    """
    An event without the expected fields does not raise out of the
    observer (twisted.logger would drop a raising observer).
    """
    metrics = Metrics()
    metrics.observe({"log_format": "Accepted {msgId}"})
    metrics.observe({"log_format": None})
    assert value(metrics, "mailsrv_messages_total", endpoint="-", result="accepted") == 1


def test_mta_sts_config_and_policy() -> None:
    """
    [mta_sts] defaults to testing with the server's host name as the MX;
    the policy id changes with the policy.
    """
    base = {"server": {"hostname": "mx.example.test"}}
    config = parseConfig(base, "t")
    assert mtaStsPolicy(config) == "version: STSv1\r\nmode: testing\r\nmx: mx.example.test\r\nmax_age: 604800\r\n"
    enforced = parseConfig({**base, "mta_sts": {"mode": "enforce"}}, "t")
    assert mtaStsPolicyId(config) != mtaStsPolicyId(enforced)


@pytest.mark.parametrize(
    "section,key",
    [
        ({"mta_sts": {"mode": "strict"}}, "mta_sts.mode"),
        ({"mta_sts": {"max_age": 40000000}}, "mta_sts.max_age"),
        ({"mta_sts": {"mx": ["bad host"]}}, "mta_sts.mx"),
        ({"http": {"metrics_networks": ["nowhere"]}}, "http.metrics_networks"),
        ({"endpoints": {"web": {"protocol": "http", "listen": ["127.0.0.1:80"], "tls": "starttls"}}}, "endpoints.web.tls"),
        ({"endpoints": {"web": {"protocol": "http", "listen": ["127.0.0.1:80"], "auth": True}}}, "endpoints.web.auth"),
    ],
)
def test_http_config_errors(section: dict, key: str) -> None:
    """
    Bad HTTP-related values are errors naming the key.
    """
    with pytest.raises(ConfigError) as e:
        parseConfig(section, "t.toml")
    assert key in str(e.value)


def test_http_endpoint_defaults() -> None:
    """
    An http endpoint defaults to plain HTTP without authentication, and is
    never advertised to mail clients.
    """
    config = parseConfig({"endpoints": {"web": {"protocol": "http", "listen": ["127.0.0.1:80"]}}}, "t")
    web = config.endpoint("web")
    assert (web.tls.value, web.auth) == ("none", False)
    assert clientServers(config) == []
    assert b"incomingServer" not in autoconfigXML(config, "example.test")


def test_client_settings_for_systemd_sockets() -> None:
    """
    Endpoints on systemd sockets are advertised on their standard ports
    (or their C{port} key), since no listen address says which.
    """
    config = parseConfig(
        {
            "endpoints": {
                "imaps": {"listen": ["systemd:imaps"]},
                "submission": {"listen": ["systemd:submission"], "port": 2587},
            }
        },
        "t",
    )
    assert [(s.kind, s.port, s.implicitTLS) for s in clientServers(config)] == [
        ("imap", 993, True),
        ("smtp", 2587, False),
    ]


def test_queue_gauges_and_deliveries(tmp_path) -> None:
    """
    Queue size and oldest age per state come from the spool directories;
    delivery outcomes from the scheduler's log events.
    """
    import os

    queue = tmp_path / "queue"
    for name, state, age in (("a", "deferred", 300), ("b", "deferred", 60), ("c", "incoming", 5)):
        entry = queue / state / name
        entry.mkdir(parents=True)
        os.utime(entry, (1000.0 - age, 1000.0 - age))
    metrics = Metrics(queue, clock=lambda: 1000.0)
    assert value(metrics, "mailsrv_queue_messages", state="deferred") == 2
    assert value(metrics, "mailsrv_queue_messages", state="incoming") == 1
    assert value(metrics, "mailsrv_queue_messages", state="active") == 0
    assert value(metrics, "mailsrv_queue_oldest_age_seconds", state="deferred") == 300
    assert value(metrics, "mailsrv_queue_oldest_age_seconds", state="active") == 0
    metrics.observe({"log_format": "Queue entry {msgId} done: {delivered} delivered, {bounced} returned", "delivered": 2, "bounced": 1})
    metrics.observe({"log_format": "Queue entry {msgId} deferred for {delay}s: {error}", "delay": 300})
    assert value(metrics, "mailsrv_deliveries_total", outcome="delivered") == 2
    assert value(metrics, "mailsrv_deliveries_total", outcome="returned") == 1
    assert value(metrics, "mailsrv_deliveries_total", outcome="deferred") == 1
