"""
The PROXY protocol wrapper in memory: the wrapped protocol is connected only
after the header, sees the proxied address, and untrusted or silent peers
never reach it.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from mailsrv.config.load import parseConfig
from mailsrv.errors import ConfigError
from mailsrv.policy.proxy import (
    HEADER_TIMEOUT,
    ProxyProtocolFactory,
    addressIn,
    parseNetworks,
    v1Header,
    v2Header,
)


class Recorder(Protocol):
    """
    Records what a protocol behind the wrapper sees.
    """

    def __init__(self) -> None:
        self.peerAtConnect: Optional[Any] = None
        self.data = b""
        self.lost = False

    def connectionMade(self) -> None:
        self.peerAtConnect = self.transport.getPeer()
        self.transport.write(b"220 greeting\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure) -> None:
        self.lost = True


def connect(peerHost: str = "127.0.0.1", trusted: str = "127.0.0.0/8") -> tuple[Any, Recorder, StringTransport, MemoryReactorClock]:
    clock = MemoryReactorClock()
    inner = Factory.forProtocol(Recorder)
    factory = ProxyProtocolFactory(inner, parseNetworks([trusted]), "smtp", clock)
    wrapper = factory.buildProtocol(IPv4Address("TCP", peerHost, 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", peerHost, 40000))
    wrapper.makeConnection(transport)
    return wrapper, wrapper.wrappedProtocol, transport, clock


@pytest.mark.parametrize("header", [v1Header, v2Header])
def test_wrapped_protocol_connected_after_header(header: Any) -> None:
    """
    Nothing is sent before the header; then the protocol connects, and its
    connectionMade already sees the client address from the header.
    Bytes after the header in the same read reach it.
    """
    wrapper, inner, transport, _ = connect()
    assert inner.peerAtConnect is None and transport.value() == b""
    wrapper.dataReceived(header("203.0.113.7", 51000, "127.0.0.1", 25) + b"EHLO x\r\n")
    assert inner.peerAtConnect == IPv4Address("TCP", "203.0.113.7", 51000)
    assert transport.value() == b"220 greeting\r\n"
    assert inner.data == b"EHLO x\r\n"
    assert wrapper.getHost() == IPv4Address("TCP", "127.0.0.1", 25)


@pytest.mark.parametrize("header", [v1Header, v2Header])
def test_header_split_into_single_bytes(header: Any) -> None:
    """
    A header arriving one octet per read is still parsed (Twisted's own
    wrapper wants the whole signature in the first read).
    """
    wrapper, inner, transport, _ = connect()
    for i, byte in enumerate(header("2001:db8::5", 1234, "::1", 993)):
        assert inner.peerAtConnect is None, i
        wrapper.dataReceived(bytes([byte]))
    assert inner.peerAtConnect.host == "2001:db8::5"
    assert not transport.disconnecting


def test_untrusted_source_refused_before_reading() -> None:
    """
    A connection from outside trusted_proxies is aborted at once; a header
    it sends is ignored and the protocol never connects.
    """
    wrapper, inner, transport, _ = connect(peerHost="192.0.2.50", trusted="10.0.0.0/8")
    assert transport.disconnecting
    wrapper.dataReceived(v1Header("203.0.113.7", 1, "10.0.0.1", 25))
    assert inner.peerAtConnect is None
    wrapper.connectionLost(Failure(ConnectionError()))
    assert not inner.lost


@pytest.mark.parametrize("data", [b"EHLO client\r\n", b"PROXY nonsense\r\n", b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c"])
def test_not_a_header_refused(data: bytes) -> None:
    """
    A trusted peer that sends anything but a valid header is disconnected
    and the protocol is never connected.
    """
    wrapper, inner, transport, _ = connect()
    wrapper.dataReceived(data)
    assert transport.disconnecting
    assert inner.peerAtConnect is None


def test_no_header_times_out() -> None:
    """
    A peer that sends nothing is disconnected after HEADER_TIMEOUT, and a
    completed header cancels the timer.
    """
    wrapper, inner, transport, clock = connect()
    clock.advance(HEADER_TIMEOUT - 0.1)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting
    wrapper2, inner2, transport2, clock2 = connect()
    wrapper2.dataReceived(v1Header("203.0.113.7", 1, "127.0.0.1", 25))
    clock2.advance(HEADER_TIMEOUT * 2)
    assert not transport2.disconnecting
    assert clock2.getDelayedCalls() == []


def test_connection_lost_reaches_connected_protocol_only() -> None:
    """
    connectionLost is forwarded once the protocol is connected.
    """
    wrapper, inner, _, _ = connect()
    wrapper.dataReceived(v2Header("198.51.100.1", 1, "127.0.0.1", 25))
    wrapper.connectionLost(Failure(ConnectionError()))
    assert inner.lost


def test_address_in() -> None:
    """
    Membership handles IPv4-mapped IPv6 and rejects non-addresses.
    """
    nets = parseNetworks(["127.0.0.1", "fd00::/8"])
    assert addressIn("127.0.0.1", nets)
    assert addressIn("::ffff:127.0.0.1", nets)
    assert addressIn("fd12::1", nets)
    assert not addressIn("127.0.0.2", nets)
    assert not addressIn("unix", nets)


def _endpoint(**keys: Any) -> dict[str, Any]:
    return {"endpoints": {"smtp": {"listen": ["127.0.0.1:2525"], **keys}}}


def test_config_keys() -> None:
    """
    proxy_protocol and trusted_proxies reach the endpoint policy, networks
    normalised.
    """
    config = parseConfig(_endpoint(proxy_protocol=True, trusted_proxies=["10.1.2.3", "fd00::/8"]), "t.toml")
    policy = config.endpoint("smtp")
    assert policy.proxyProtocol
    assert policy.trustedProxies == ("10.1.2.3/32", "fd00::/8")
    assert not parseConfig(_endpoint(), "t.toml").endpoint("smtp").proxyProtocol


@pytest.mark.parametrize(
    "keys,problem",
    [
        ({"proxy_protocol": True}, "required"),
        ({"trusted_proxies": ["10.0.0.0/8"]}, "only used"),
        ({"proxy_protocol": True, "trusted_proxies": ["10.0.0.300/8"]}, "not an IP network"),
        ({"proxy_protocol": "yes", "trusted_proxies": ["10.0.0.0/8"]}, "true or false"),
    ],
)
def test_config_errors(keys: dict[str, Any], problem: str) -> None:
    """
    Inconsistent or malformed PROXY settings are config errors naming the key.
    """
    with pytest.raises(ConfigError) as e:
        parseConfig(_endpoint(**keys), "t.toml")
    assert "endpoints.smtp." in str(e.value) and problem in str(e.value)
