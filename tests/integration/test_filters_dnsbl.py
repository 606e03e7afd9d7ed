# -*- test-case-name: tests.integration.test_filters_dnsbl -*-
"""
DNS lists over real sockets: a running C{twistd mailsrv} whose C{[dns]
nameservers} is a twisted.names server on loopback serving block and
allow list zones.  Clients connect from different loopback addresses
(127.0.0.X), each listed differently.
"""

from __future__ import annotations

import smtplib
from typing import Iterator

import pytest

from mailsrv.testing.dns import DNSProcess
from mailsrv.testing.server import RunningServer

ZONES = {
    "bl.test": {
        "2.0.0.127.bl.test": {"A": ["127.0.0.2"]},
        "3.0.0.127.bl.test": {"A": ["127.0.0.2"]},
        "5.0.0.127.bl.test": {"A": ["127.0.0.2"]},
    },
    "weak.test": {
        "3.0.0.127.weak.test": {"A": ["127.0.0.2"]},
        "4.0.0.127.weak.test": {"A": ["127.0.0.2"]},
    },
    "wl.test": {"5.0.0.127.wl.test": {"A": ["127.0.15.1"]}},
}


@pytest.fixture(scope="module")
def mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("dnsbl")
    dnsServer = DNSProcess(ZONES, root)
    port = dnsServer.start()
    srv = RunningServer(
        root / "srv",
        extraConfig=(
            f'[dns]\nnameservers = ["127.0.0.1:{port}"]\ntimeout = 5\n\n'
            "[dnsbl]\nthreshold = 2\nzones = [\n"
            '  { zone = "bl.test", weight = 2 },\n'
            '  { zone = "weak.test", weight = 1 },\n'
            '  { zone = "wl.test", weight = -5 },\n]\n'
        ),
        endpoints=("smtp",),
    )
    srv.addUser("alice@example.test", "secret")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        dnsServer.stop()


def greeting(server: RunningServer, source: str) -> tuple[int, bytes]:
    """
    The greeting a client connecting from C{source} gets.
    """
    client = smtplib.SMTP(timeout=30)
    client.source_address = (source, 0)
    try:
        code, text = client.connect("127.0.0.1", server.ports["smtp"])
    except smtplib.SMTPConnectError as e:
        return e.smtp_code, e.smtp_error
    finally:
        client.close()
    return code, text


def test_listed_refused(mx: RunningServer) -> None:
    """
    A client in a list heavy enough on its own gets 554 5.7.1 naming the
    list instead of the greeting.
    """
    code, text = greeting(mx, "127.0.0.2")
    assert code == 554
    assert text == b"5.7.1 Service unavailable; client [127.0.0.2] listed in bl.test"


def test_not_listed_greeted(mx: RunningServer) -> None:
    """
    A client no list names is greeted (and can deliver).
    """
    code, _ = greeting(mx, "127.0.0.6")
    assert code == 220
    with smtplib.SMTP(timeout=30, source_address=("127.0.0.6", 0)) as s:
        s.connect("127.0.0.1", mx.ports["smtp"])
        s.sendmail("bob@remote.test", ["alice@example.test"], b"Subject: dnsbl-clean\r\n\r\nhi\r\n")


def test_weights_add_up(mx: RunningServer) -> None:
    """
    The light list alone (weight 1) lets a client in; together with the
    block list (1 + 2) it is refused, both lists named.
    """
    assert greeting(mx, "127.0.0.4")[0] == 220
    code, text = greeting(mx, "127.0.0.3")
    assert code == 554
    assert b"listed in bl.test, weak.test" in text


def test_allow_list_lowers_score(mx: RunningServer) -> None:
    """
    A client in the block list and the allow list (2 - 5) is greeted, and
    the decision is logged with both lists.
    """
    assert greeting(mx, "127.0.0.5")[0] == 220
    assert "allowed by wl.test" in mx.log()
