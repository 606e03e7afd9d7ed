# -*- test-case-name: tests.ops.test_proxy -*-
"""
PROXY protocol (HAProxy v1 and v2) in front of any endpoint.

Twisted's L{HAProxyProtocolWrapper} connects the wrapped protocol as soon
as the TCP connection is made, before the header is read: the greeting goes
out at once and everything the protocol does on connect (its L{Session},
the connection log line, connection filters) sees the proxy's address.
L{ProxyProtocolWrapper} instead connects the wrapped protocol only once the
header is parsed, so the protocol only ever sees the real client.

It also refuses, before reading a byte, connections whose TCP source is not
one of the endpoint's trusted proxies: otherwise anyone able to reach the
port could claim any address.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Optional, Union

from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocol, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._info import ProxyInfo
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# A proxy sends its header at once; a peer that does not is not a proxy.
HEADER_TIMEOUT = 10.0

_V1_SIGNATURE = V1Parser.PROXYSTR + b" "
_V2_SIGNATURE = V2Parser.PREFIX


def parseNetworks(specs: Iterable[str]) -> tuple[Network, ...]:
    """
    Parse C{192.0.2.0/24}-style strings (a bare address is a /32 or /128).

    @raise ValueError: naming the first bad entry.
    """
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec, strict=False))
        except ValueError:
            raise ValueError(f"{spec!r} is not an IP network (address/prefix)") from None
    return tuple(networks)


def addressIn(host: str, networks: Iterable[Network]) -> bool:
    """
    Whether the IP address C{host} is in one of C{networks}; an IPv4 address
    mapped into IPv6 (C{::ffff:192.0.2.1}) counts as the IPv4 address.
    """
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == n.version and address in n for n in networks)


def _normalised(address: Optional[IAddress]) -> Optional[IAddress]:
    """
    The address with its host in canonical text form: Twisted's v2 parser
    writes IPv6 addresses uncompressed (C{2001:db8:0:0:0:0:0:5}), which
    would not match the same client seen without a proxy.
    """
    host = getattr(address, "host", None)
    if host is None:
        return address
    try:
        canonical = str(ipaddress.ip_address(host))
    except ValueError:
        return address
    return type(address)(address.type, canonical, address.port)  # type: ignore[attr-defined]


class ProxyProtocolWrapper(ProtocolWrapper):
    """
    Reads a PROXY v1 or v2 header, then connects the wrapped protocol with
    this wrapper as its transport, whose C{getPeer}/C{getHost} give the
    addresses from the header.

    The header may arrive in several reads.  A peer that is not trusted,
    sends something other than a header, or sends none within
    C{HEADER_TIMEOUT} seconds is disconnected; the wrapped protocol never
    sees it.
    """

    factory: "ProxyProtocolFactory"
    log = Logger()

    def __init__(self, factory: "ProxyProtocolFactory", wrappedProtocol: IProtocol) -> None:
        super().__init__(factory, wrappedProtocol)
        self._buffer = b""
        self._parser: Union[V1Parser, V2Parser, None] = None
        self._proxyInfo: Optional[ProxyInfo] = None
        self._wrappedConnected = False
        self._refused = False
        self._timeout: Optional[IDelayedCall] = None

    def makeConnection(self, transport: Any) -> None:
        # ProtocolWrapper.makeConnection without connecting the wrapped
        # protocol: that waits for the header.
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        host = getattr(peer, "host", "")
        if not addressIn(host, self.factory.trustedProxies):
            self.log.warn(
                "PROXY connection from {peer} on {endpoint} refused: not a trusted proxy",
                peer=host,
                endpoint=self.factory.endpointName,
                outcome="untrusted",
            )
            self._refused = True
            self.transport.abortConnection()
            return
        self._timeout = self.factory.clock.callLater(HEADER_TIMEOUT, self._headerTimedOut)

    def _headerTimedOut(self) -> None:
        self._timeout = None
        self._refuse("no PROXY header within {seconds} seconds".format(seconds=HEADER_TIMEOUT))

    def _refuse(self, problem: str) -> None:
        self.log.warn(
            "PROXY connection from {peer} on {endpoint} refused: {problem}",
            peer=getattr(self.transport.getPeer(), "host", ""),
            endpoint=self.factory.endpointName,
            problem=problem,
            outcome="invalid",
        )
        self._refused = True
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._wrappedConnected:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._proxyInfo is not None or self._refused:
            return
        if self._parser is None:
            self._buffer += data
            data = self._buffer
            if data.startswith(_V2_SIGNATURE):
                if len(data) < 16:
                    return  # the v2 parser needs the fixed 16-octet part
                if data[12] & 0xF0 != 0x20:
                    self._refuse("unsupported PROXY v2 version")
                    return
                self._parser = V2Parser()
            elif data.startswith(_V1_SIGNATURE):
                self._parser = V1Parser()
            elif _V2_SIGNATURE.startswith(data) or _V1_SIGNATURE.startswith(data):
                return  # a signature's prefix so far: wait for more
            else:
                self._refuse("no PROXY header")
                return
            self._buffer = b""
        try:
            info, remaining = self._parser.feed(data)
        except InvalidProxyHeader:
            self._refuse("invalid PROXY header")
            return
        if info is None:
            return
        self._proxyInfo = ProxyInfo(info.header, _normalised(info.source), _normalised(info.destination))
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        self._wrappedConnected = True
        self.wrappedProtocol.makeConnection(self)
        if remaining and self.connected:
            self.wrappedProtocol.dataReceived(remaining)

    def getPeer(self) -> IAddress:
        if self._proxyInfo is not None and self._proxyInfo.source is not None:
            return self._proxyInfo.source
        return self.transport.getPeer()

    def getHost(self) -> IAddress:
        if self._proxyInfo is not None and self._proxyInfo.destination is not None:
            return self._proxyInfo.destination
        return self.transport.getHost()

    def connectionLost(self, reason: Failure) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        if self._wrappedConnected:
            super().connectionLost(reason)
        else:
            self.connected = False
            self.factory.unregisterProtocol(self)


class ProxyProtocolFactory(WrappingFactory):
    """
    Wraps an endpoint's factory (after any implicit-TLS wrapping: the PROXY
    header precedes the TLS handshake) so that it speaks the PROXY protocol.

    @param trustedProxies: the networks connections are accepted from.
    @param endpointName: for log events.
    @param clock: schedules the header timeout.
    """

    protocol = ProxyProtocolWrapper
    noisy = False

    def __init__(
        self,
        wrappedFactory: Any,
        trustedProxies: Iterable[Network],
        endpointName: str,
        clock: IReactorTime,
    ) -> None:
        super().__init__(wrappedFactory)
        self.trustedProxies = tuple(trustedProxies)
        self.endpointName = endpointName
        self.clock = clock

    def logPrefix(self) -> str:
        inner = getattr(self.wrappedFactory, "logPrefix", None)
        name = inner() if callable(inner) else type(self.wrappedFactory).__name__
        return f"{name} (PROXY)"


def v1Header(source: str, sourcePort: int, destination: str, destinationPort: int) -> bytes:
    """
    A PROXY v1 (text) header, as a load balancer sends it; used by
    C{mailsrv doctor} to reach a PROXY endpoint, and by tests.
    """
    family = "TCP6" if ipaddress.ip_address(source).version == 6 else "TCP4"
    return f"PROXY {family} {source} {destination} {sourcePort} {destinationPort}\r\n".encode("ascii")


def v2Header(source: str, sourcePort: int, destination: str, destinationPort: int) -> bytes:
    """
    A PROXY v2 (binary) header for a TCP connection.
    """
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    family = 0x11 if src.version == 4 else 0x21  # AF_INET/AF_INET6, STREAM
    body = src.packed + dst.packed + sourcePort.to_bytes(2, "big") + destinationPort.to_bytes(2, "big")
    return _V2_SIGNATURE + bytes([0x21, family]) + len(body).to_bytes(2, "big") + body
