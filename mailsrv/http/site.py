# -*- test-case-name: tests.integration.test_http -*-
"""
The resources of the HTTP endpoint.

 - C{/.well-known/mta-sts.txt}: the MTA-STS policy (RFC 8461) built from
   C{[mta_sts]}; publish the endpoint as C{https://mta-sts.<domain>/}.
 - C{/mail/config-v1.1.xml} and C{/.well-known/autoconfig/mail/config-v1.1.xml}:
   Thunderbird's autoconfig (also read by K-9/Thunderbird for Android,
   Evolution, KMail).
 - C{/autodiscover/autodiscover.xml} (POST): Microsoft's "POX" Autodiscover
   for Outlook and many phones.
 - C{/metrics}: Prometheus text format, only for C{[http] metrics_networks}.

Client settings are derived from the configured endpoints, so they never
disagree with what the server actually listens on: implicit TLS endpoints
are offered first (RFC 8314), plaintext-only endpoints never.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Callable, Optional

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from mailsrv.config.load import advertisedPort
from mailsrv.config.schema import Config
from mailsrv.metrics import CONTENT_TYPE, Metrics
from mailsrv.policy.endpoint import Protocol, TLSMode
from mailsrv.policy.proxy import addressIn, parseNetworks

# Requests larger than this are not read into an Autodiscover parse.
MAX_AUTODISCOVER_BODY = 16 * 1024

_EMAIL = re.compile(r"<EMailAddress>\s*([^<\s]{3,320})\s*</EMailAddress>", re.IGNORECASE)


@dataclass(frozen=True)
class ClientServer:
    """
    One way for a mail client to reach this server.

    @ivar kind: C{imap}, C{pop3} or C{smtp}.
    @ivar implicitTLS: TLS from the first byte (else STARTTLS).
    """

    kind: str
    hostname: str
    port: int
    implicitTLS: bool


def clientServers(config: Config) -> list[ClientServer]:
    """
    The endpoints a mail client may use, implicit TLS first, then STARTTLS;
    endpoints without TLS or without authentication are left out.
    """
    kinds = {Protocol.IMAP: "imap", Protocol.POP3: "pop3", Protocol.SUBMISSION: "smtp"}
    out = []
    for policy in config.endpoints:
        kind = kinds.get(policy.protocol)
        if kind is None or not policy.listen or not policy.auth or policy.tls is TLSMode.NONE:
            continue
        out.append(ClientServer(kind, config.server.hostname, advertisedPort(policy), policy.implicitTLS))
    order = {"imap": 0, "pop3": 1, "smtp": 2}
    return sorted(out, key=lambda s: (order[s.kind], not s.implicitTLS))


def mtaStsPolicy(config: Config) -> str:
    """
    The policy file (RFC 8461 section 3.2), CRLF-terminated lines.
    """
    mx = config.mtaSts.mx or (config.server.hostname,)
    lines = ["version: STSv1", f"mode: {config.mtaSts.mode}"]
    lines += [f"mx: {host}" for host in mx]
    lines.append(f"max_age: {config.mtaSts.maxAge}")
    return "".join(line + "\r\n" for line in lines)


def mtaStsPolicyId(config: Config) -> str:
    """
    The C{id} for the C{_mta-sts} TXT record: a digest of the policy, so it
    changes exactly when the policy does (senders refetch on a new id).
    """
    return hashlib.sha256(mtaStsPolicy(config).encode()).hexdigest()[:20]


def _sub(parent: ET.Element, tag: str, text: Optional[str] = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _xml(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def autoconfigXML(config: Config, domain: str) -> bytes:
    """
    Thunderbird's C{clientConfig} version 1.1 document for C{domain}.
    """
    root = ET.Element("clientConfig", version="1.1")
    provider = _sub(root, "emailProvider", id=domain)
    _sub(provider, "domain", domain)
    _sub(provider, "displayName", f"{domain} mail")
    _sub(provider, "displayShortName", domain)
    for server in clientServers(config):
        tag = "outgoingServer" if server.kind == "smtp" else "incomingServer"
        element = _sub(provider, tag, type=server.kind)
        _sub(element, "hostname", server.hostname)
        _sub(element, "port", str(server.port))
        _sub(element, "socketType", "SSL" if server.implicitTLS else "STARTTLS")
        _sub(element, "authentication", "password-cleartext")
        _sub(element, "username", "%EMAILADDRESS%")
    return _xml(root)


_AUTODISCOVER_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
_OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"


def autodiscoverXML(config: Config, address: str) -> bytes:
    """
    The Outlook POX Autodiscover response for C{address}.
    """
    root = ET.Element("Autodiscover", xmlns=_AUTODISCOVER_NS)
    response = _sub(root, "Response", xmlns=_OUTLOOK_NS)
    account = _sub(response, "Account")
    _sub(account, "AccountType", "email")
    _sub(account, "Action", "settings")
    seen = set()
    for server in clientServers(config):
        if server.kind in seen:
            continue  # Outlook takes one entry per protocol: the preferred
        seen.add(server.kind)
        protocol = _sub(account, "Protocol")
        _sub(protocol, "Type", server.kind.upper())
        _sub(protocol, "Server", server.hostname)
        _sub(protocol, "Port", str(server.port))
        _sub(protocol, "LoginName", address)
        _sub(protocol, "DomainRequired", "off")
        _sub(protocol, "SPA", "off")
        _sub(protocol, "SSL", "on")
        _sub(protocol, "Encryption", "SSL" if server.implicitTLS else "TLS")
        _sub(protocol, "AuthRequired", "on")
    return _xml(root)


def _domainOf(address: str) -> Optional[str]:
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local or not domain or len(address) > 320:
        return None
    return domain.rstrip(".").lower()


class _Leaf(Resource):
    isLeaf = True

    def __init__(self, config: Callable[[], Config]) -> None:
        super().__init__()
        self._config = config

    def _notFound(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"not found\n"


class MTASTSPolicy(_Leaf):
    def render_GET(self, request: Request) -> bytes:
        config = self._config()
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", f"max-age={min(config.mtaSts.maxAge, 86400)}".encode())
        return mtaStsPolicy(config).encode("ascii")


class Autoconfig(_Leaf):
    """
    The domain comes from C{?emailaddress=} (Thunderbird always sends it) or
    from the C{autoconfig.<domain>} host name; only local domains are
    answered.
    """

    def __init__(self, config: Callable[[], Config], isLocalDomain: Callable[[str], bool]) -> None:
        super().__init__(config)
        self._isLocal = isLocalDomain

    def render_GET(self, request: Request) -> bytes:
        domain = None
        emails = request.args.get(b"emailaddress")
        if emails:
            domain = _domainOf(emails[0].decode("utf-8", "replace"))
        if domain is None:
            host = (request.getRequestHostname() or b"").decode("ascii", "replace").lower()
            if host.startswith("autoconfig."):
                domain = host[len("autoconfig."):]
        if domain is None or not self._isLocal(domain):
            return self._notFound(request)
        request.setHeader(b"content-type", b"application/xml; charset=utf-8")
        return autoconfigXML(self._config(), domain)


class Autodiscover(_Leaf):
    def __init__(self, config: Callable[[], Config], isLocalDomain: Callable[[str], bool]) -> None:
        super().__init__(config)
        self._isLocal = isLocalDomain

    def render_POST(self, request: Request) -> bytes:
        # A regular expression, not an XML parser: the request is untrusted
        # and only one element of it matters.
        body = request.content.read(MAX_AUTODISCOVER_BODY + 1) if request.content else b""
        if len(body) > MAX_AUTODISCOVER_BODY:
            request.setResponseCode(413)
            return b""
        match = _EMAIL.search(body.decode("utf-8", "replace"))
        address = match.group(1) if match else None
        domain = _domainOf(address) if address else None
        if address is None or domain is None or not self._isLocal(domain):
            return self._notFound(request)
        request.setHeader(b"content-type", b"application/xml; charset=utf-8")
        return autodiscoverXML(self._config(), address)

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        return b""


class MetricsResource(_Leaf):
    def __init__(self, config: Callable[[], Config], metrics: Metrics) -> None:
        super().__init__(config)
        self._metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        networks = parseNetworks(self._config().http.metricsNetworks)
        host = getattr(request.getClientAddress(), "host", "")
        if not addressIn(host, networks):
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"forbidden: not in [http] metrics_networks\n"
        request.setHeader(b"content-type", CONTENT_TYPE.encode())
        return self._metrics.render()


def _tree(parts: dict[str, Any]) -> Resource:
    root = Resource()
    for path, leaf in parts.items():
        node = root
        segments = path.strip("/").split("/")
        for segment in segments[:-1]:
            child = node.children.get(segment.encode())
            if child is None:
                child = Resource()
                node.putChild(segment.encode(), child)
            node = child
        node.putChild(segments[-1].encode(), leaf)
    return root


def buildSite(config: Callable[[], Config], isLocalDomain: Callable[[str], bool], metrics: Metrics) -> Site:
    """
    The C{Site} for an HTTP endpoint.  C{config} is called per request, so
    a reload's new C{[mta_sts]} or domains are served at once.
    """
    autoconfig = Autoconfig(config, isLocalDomain)
    autodiscover = Autodiscover(config, isLocalDomain)
    root = _tree(
        {
            ".well-known/mta-sts.txt": MTASTSPolicy(config),
            "mail/config-v1.1.xml": autoconfig,
            ".well-known/autoconfig/mail/config-v1.1.xml": autoconfig,
            "autodiscover/autodiscover.xml": autodiscover,
            "Autodiscover/Autodiscover.xml": autodiscover,
            "metrics": MetricsResource(config, metrics),
        }
    )
    site = Site(root, timeout=60)
    site.displayTracebacks = False
    site.noisy = False
    return site


def siteForService(service: Any) -> Site:
    """
    The C{Site} for one HTTP endpoint of a L{MailService}; the first call
    also starts counting metrics for the service.
    """
    from mailsrv.metrics import MetricsService

    metrics = getattr(service, "metrics", None)
    if metrics is None:
        metrics = service.metrics = Metrics(service.config.server.queueDir)
        MetricsService(metrics).setServiceParent(service)
    return buildSite(lambda: service.config, service.directory.isLocalDomain, metrics)
