# -*- test-case-name: tests.filters.test_senderauth -*-
"""
Sender authentication on the MX endpoint: SPF, DKIM, ARC and DMARC, reported
in one C{Authentication-Results:} header (RFC 8601).

The checks use maintained libraries: pyspf (SPF, RFC 7208), dkimpy (DKIM,
RFC 6376, and ARC, RFC 8617) and the public suffix list of publicsuffix2 for
DMARC's organisational domain (RFC 7489 section 3.2); DMARC itself is a few
lines here, because the libraries that offer it pick the wrong policy for a
record found at the From domain (they apply C{sp=}).  These libraries
resolve names synchronously, so every check runs in a worker thread, never
on the reactor thread, and their DNS goes through L{SyncResolver}: dnspython
pointed at the configured C{[dns] nameservers} (the system resolver only
when none are configured).

Only mail from the world is checked: sessions on submission endpoints, and
authenticated or internal sessions, pass untouched.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.envelope import Envelope, Session
from mailsrv.filters.base import Filter
from mailsrv.interfaces import (
    ACCEPT,
    FilterAction,
    FilterResult,
    HeaderEdit,
    IMessageContent,
    IModifier,
)
from mailsrv.policy.endpoint import Protocol

if TYPE_CHECKING:
    from mailsrv.config.schema import Config

# Bound on how many MAIL FROM results wait for their end of data (a
# transaction aborted with RSET leaves one behind).
_MAX_PENDING = 10_000


# ------------------------------------------------------------------- DNS


class SyncResolver:
    """
    Blocking DNS for the libraries, used from worker threads only.

    @param nameservers: C{(address, port)} pairs; empty for the system's
        C{/etc/resolv.conf}.
    @param timeout: seconds one lookup may take.
    """

    def __init__(self, nameservers: Sequence[tuple[str, int]] = (), timeout: float = 10.0) -> None:
        import dns.nameserver
        import dns.resolver

        if nameservers:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers]
        else:
            self._resolver = dns.resolver.Resolver()
        self._resolver.lifetime = timeout
        self._resolver.timeout = min(timeout, 3.0)
        self.timeout = timeout

    def resolve(self, name: str, qtype: str) -> Any:
        """
        The dnspython answer, or L{None} for NXDOMAIN / no data.

        @raise dns.exception.DNSException: for a temporary failure.
        """
        import dns.resolver

        try:
            return self._resolver.resolve(name, qtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None

    def txt(self, name: str) -> list[bytes]:
        """
        Each TXT record of C{name}, its strings joined.
        """
        answer = self.resolve(name, "TXT")
        return [] if answer is None else [b"".join(r.strings) for r in answer]

    def dkimTxt(self, name: bytes, timeout: float = 5) -> Optional[bytes]:
        """
        The C{dnsfunc} dkimpy wants: one TXT record's text, or L{None}.
        """
        records = self.txt(name.decode("ascii").rstrip("."))
        return records[0] if records else None

    def spfLookup(self, name: str, qtype: str, strict: Any = True, timeout: float = 20) -> list[Any]:
        """
        The C{DNSLookup} pyspf wants: C{((name, type), data)} pairs.
        """
        import dns.exception
        import spf

        try:
            answer = self.resolve(name, qtype)
        except dns.exception.DNSException as e:
            raise spf.TempError(f"DNS {e}")
        out: list[Any] = []
        for rdata in answer or ():
            if qtype in ("A", "AAAA"):
                out.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                out.append(((name, qtype), (rdata.preference, rdata.exchange.to_text(True))))
            elif qtype == "PTR":
                out.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                out.append(((name, qtype), rdata.strings))
        return out


_spfContext = threading.local()


def _installSPFLookup() -> None:
    """
    pyspf resolves through one module-level function; route it to the
    resolver of the calling thread's check (see L{checkSPF}).
    """
    import spf

    if getattr(spf.DNSLookup, "_mailsrv", False):
        return
    original = spf.DNSLookup

    def lookup(name: str, qtype: str, strict: Any = True, timeout: float = 20) -> Any:
        resolver = getattr(_spfContext, "resolver", None)
        if resolver is None:
            return original(name, qtype, strict, timeout)
        return resolver.spfLookup(name, qtype, strict, timeout)

    lookup._mailsrv = True  # type: ignore[attr-defined]
    spf.DNSLookup = lookup


# ---------------------------------------------------------------- checks


@dataclasses.dataclass(frozen=True)
class SPFResult:
    """
    @ivar result: RFC 7208 result (C{pass}, C{fail}, C{softfail}, C{neutral},
        C{none}, C{temperror}, C{permerror}).
    @ivar mailFrom: the identity checked: the MAIL FROM address, or
        C{postmaster@HELO} for the null sender (RFC 7208 section 2.4).
    @ivar helo: the HELO name.
    """

    result: str
    mailFrom: str
    helo: str
    explanation: str = ""

    @property
    def domain(self) -> str:
        return self.mailFrom.rpartition("@")[2].lower()


def checkSPF(resolver: SyncResolver, ip: str, mailFrom: str, helo: str) -> SPFResult:
    """
    SPF for the MAIL FROM identity; for the null sender the HELO identity is
    checked instead.  Blocking: call from a worker thread.
    """
    import spf

    _installSPFLookup()
    identity = mailFrom or f"postmaster@{helo}"
    _spfContext.resolver = resolver
    try:
        result, _, explanation = spf.query(
            i=ip, s=identity, h=helo, timeout=resolver.timeout, querytime=resolver.timeout * 2
        ).check()
    finally:
        _spfContext.resolver = None
    return SPFResult(result, identity, helo, explanation)


@dataclasses.dataclass(frozen=True)
class DKIMResult:
    result: str  # pass | fail | temperror | permerror | none
    domain: str = ""
    selector: str = ""


def checkDKIM(resolver: SyncResolver, message: bytes) -> list[DKIMResult]:
    """
    Verify every DKIM-Signature of C{message}.  Blocking.
    """
    import dkim
    import dns.exception

    headers, _ = dkim.rfc822_parse(message)
    count = sum(1 for name, _ in headers if name.lower() == b"dkim-signature")
    if not count:
        return [DKIMResult("none")]
    results = []
    for index in range(count):
        verifier = dkim.DKIM(message)
        try:
            ok = verifier.verify(idx=index, dnsfunc=resolver.dkimTxt)
            result = "pass" if ok else "fail"
        except (dns.exception.DNSException, dkim.DnsTimeoutError):
            result = "temperror"
        except dkim.ValidationError as e:
            # dkimpy reports a changed body as a validation error; that is
            # a failed signature (RFC 8601 "fail"), not a broken one.
            result = "fail" if "mismatch" in str(e) else "permerror"
        except dkim.DKIMException:
            result = "permerror"
        fields = verifier.signature_fields or {}
        results.append(
            DKIMResult(
                result,
                fields.get(b"d", b"").decode("ascii", "replace").lower(),
                fields.get(b"s", b"").decode("ascii", "replace"),
            )
        )
    return results


def checkARC(resolver: SyncResolver, message: bytes) -> str:
    """
    The ARC chain validation status (RFC 8617): C{none}, C{pass} or
    C{fail}.  Blocking.
    """
    import dkim

    if b"arc-seal:" not in message.lower().split(b"\r\n\r\n", 1)[0]:
        return "none"
    try:
        cv, _, _ = dkim.ARC(message).verify(dnsfunc=resolver.dkimTxt)
    except Exception:
        return "fail"
    return cv.decode("ascii") if cv else "none"


_psl: Any = None


def organizationalDomain(domain: str) -> str:
    """
    RFC 7489 section 3.2, with the public suffix list; for a name under a
    TLD the list does not know, the default rule C{*} applies (the last two
    labels).
    """
    global _psl
    from publicsuffix2 import PublicSuffixList

    if _psl is None:
        _psl = PublicSuffixList()
    domain = domain.lower().rstrip(".")
    org = _psl.get_sld(domain, strict=True)
    if org is None:
        org = ".".join(domain.split(".")[-2:])
    return str(org)


@dataclasses.dataclass(frozen=True)
class DMARCResult:
    """
    @ivar result: C{pass}, C{fail}, C{none}, C{temperror}, C{permerror}.
    @ivar policy: the policy that applies to a failing message (C{none},
        C{quarantine}, C{reject}), or C{""} without a record.
    """

    result: str
    fromDomain: str = ""
    policy: str = ""


def _dmarcRecord(resolver: SyncResolver, domain: str) -> Optional[dict[str, str]]:
    records = [r for r in resolver.txt(f"_dmarc.{domain}") if r[:8].lower() == b"v=dmarc1"]
    if len(records) != 1:
        return None  # none, or several: no policy (RFC 7489 6.6.3)
    tags: dict[str, str] = {}
    for part in records[0].decode("ascii", "replace").split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = value.strip().lower()
    return tags


def checkDMARC(
    resolver: SyncResolver, fromDomain: str, spf: Optional[SPFResult], dkims: Sequence[DKIMResult]
) -> DMARCResult:
    """
    DMARC for one RFC5322.From domain.  Blocking.
    """
    import dns.exception

    fromDomain = fromDomain.lower().rstrip(".")
    org = organizationalDomain(fromDomain)
    try:
        record = _dmarcRecord(resolver, fromDomain)
        policyKey = "p"
        if record is None and org != fromDomain:
            record = _dmarcRecord(resolver, org)
            policyKey = "sp"
    except dns.exception.DNSException:
        return DMARCResult("temperror", fromDomain)
    if record is None:
        return DMARCResult("none", fromDomain)
    policy = record.get(policyKey) or record.get("p", "")
    if policy not in ("none", "quarantine", "reject"):
        policy = record.get("p", "none")
        if policy not in ("none", "quarantine", "reject"):
            return DMARCResult("permerror", fromDomain)

    def aligned(domain: str, mode: str) -> bool:
        domain = domain.lower()
        if mode == "s":
            return domain == fromDomain
        return bool(domain) and organizationalDomain(domain) == org

    if spf is not None and spf.result == "pass" and aligned(spf.domain, record.get("aspf", "r")):
        return DMARCResult("pass", fromDomain, policy)
    if any(d.result == "pass" and aligned(d.domain, record.get("adkim", "r")) for d in dkims):
        return DMARCResult("pass", fromDomain, policy)
    return DMARCResult("fail", fromDomain, policy)


def fromDomains(content: IMessageContent) -> list[str]:
    """
    The distinct domains of the RFC5322.From addresses.
    """
    import email.utils

    values = content.headers().get_all("From") or []
    domains = []
    for _, address in email.utils.getaddresses([str(v) for v in values]):
        domain = address.rpartition("@")[2].strip().lower().rstrip(".")
        if domain and domain not in domains:
            domains.append(domain)
    return domains


def authenticationResults(
    authservId: str,
    spf: Optional[SPFResult],
    dkims: Sequence[DKIMResult],
    arc: Optional[str],
    dmarc: Optional[DMARCResult],
) -> str:
    """
    The C{Authentication-Results:} field (RFC 8601), folded one method per
    line.
    """
    from authres import AuthenticationResultsHeader, DKIMAuthenticationResult, SPFAuthenticationResult
    from authres.arc import ARCAuthenticationResult
    from authres.dmarc import DMARCAuthenticationResult

    results: list[Any] = []
    if spf is not None:
        results.append(
            SPFAuthenticationResult(result=spf.result, smtp_mailfrom=spf.mailFrom, smtp_helo=spf.helo or None)
        )
    for d in dkims:
        if d.result == "none":
            results.append(DKIMAuthenticationResult(result="none"))
        else:
            results.append(
                DKIMAuthenticationResult(result=d.result, header_d=d.domain or None, header_s=d.selector or None)
            )
    if arc is not None:
        results.append(ARCAuthenticationResult(result=arc))
    if dmarc is not None:
        results.append(
            DMARCAuthenticationResult(
                result=dmarc.result, header_from=dmarc.fromDomain or None, policy=dmarc.policy or None
            )
        )
    if not results:
        return f"Authentication-Results: {authservId}; none"
    text = str(AuthenticationResultsHeader(authserv_id=authservId, results=results))
    # One method per line keeps the field readable and under 998 octets.
    return text.replace("; ", ";\n\t")


def authservIdOf(fieldValue: str) -> str:
    """
    The authserv-id of an Authentication-Results field value (comments
    removed, version dropped).
    """
    depth = 0
    text = []
    for ch in fieldValue.split(";", 1)[0]:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth:
            text.append(ch)
    words = "".join(text).split()
    return words[0].lower().rstrip(".") if words else ""


# ----------------------------------------------------------------- filter


def checksSession(session: Session) -> bool:
    """
    Whether a session's mail is subject to sender authentication: only mail
    from the world on an MX (C{smtp}) endpoint.
    """
    return session.endpoint.protocol is Protocol.SMTP and session.authenticatedAs is None


class SenderAuthFilter(Filter):
    """
    SPF at MAIL FROM, DKIM, ARC and DMARC at the end of data; reports one
    C{Authentication-Results:} header, refuses mail whose DMARC policy says
    reject (or quarantines it, with C{dmarcReject="quarantine"}) and
    quarantines mail whose DMARC policy says quarantine.

    @param deferToThread: runs the blocking checks off the reactor thread.
    @param spfFailAction: what an SPF C{fail} alone does: C{none} (only
        reported; DMARC decides) or C{reject}.
    """

    name = "senderauth"
    log = Logger()

    def __init__(
        self,
        resolver: SyncResolver,
        authservId: str,
        spf: bool = True,
        dkim: bool = True,
        arc: bool = True,
        dmarc: bool = True,
        dmarcReject: str = "reject",
        spfFailAction: str = "none",
        deferToThread: Callable[..., "defer.Deferred[Any]"] = threads.deferToThread,
    ) -> None:
        self.resolver = resolver
        self.authservId = authservId.lower()
        self.spf = spf
        self.dkim = dkim
        self.arc = arc
        self.dmarc = dmarc
        self.dmarcReject = dmarcReject
        self.spfFailAction = spfFailAction
        self._deferToThread = deferToThread
        self._spfResults: collections.OrderedDict[str, SPFResult] = collections.OrderedDict()

    def checkSender(self, session: Session, envelope: Envelope) -> "defer.Deferred[FilterResult]":
        if not (self.spf and checksSession(session)):
            return defer.succeed(ACCEPT)
        return defer.Deferred.fromCoroutine(self._checkSender(session, envelope))

    async def _checkSender(self, session: Session, envelope: Envelope) -> FilterResult:
        mailFrom = str(envelope.mailFrom) if envelope.mailFrom is not None else ""
        helo = session.heloName or ""
        result = await self._deferToThread(checkSPF, self.resolver, session.peerHost, mailFrom, helo)
        self._spfResults[envelope.messageId] = result
        while len(self._spfResults) > _MAX_PENDING:
            self._spfResults.popitem(last=False)
        self.log.info(
            "SPF {spf} for {mailFrom} from {peer}",
            spf=result.result,
            mailFrom=result.mailFrom,
            peer=session.peerHost,
            sessionId=session.sessionId,
            msgId=envelope.messageId,
        )
        if result.result == "fail" and self.spfFailAction == "reject":
            return FilterResult(FilterAction.REJECT, f"SPF check failed for {result.domain}", reason="spf")
        if result.result == "temperror" and self.spfFailAction == "reject":
            return FilterResult(FilterAction.TEMPFAIL, "SPF check could not complete, try again later", reason="spf")
        return ACCEPT

    def checkMessage(
        self, session: Session, envelope: Envelope, message: IMessageContent
    ) -> "defer.Deferred[FilterResult]":
        spf = self._spfResults.pop(envelope.messageId, None)
        if not checksSession(session):
            return defer.succeed(ACCEPT)
        return defer.Deferred.fromCoroutine(self._checkMessage(session, envelope, message, spf))

    async def _checkMessage(
        self, session: Session, envelope: Envelope, message: IMessageContent, spf: Optional[SPFResult]
    ) -> FilterResult:
        domains = fromDomains(message)
        dkims, arc, dmarcs = await self._deferToThread(self._checkBody, message, spf, domains)
        dmarc = _worst(dmarcs)
        header = authenticationResults(self.authservId, spf, dkims, arc, dmarc)
        self.log.info(
            "Sender authentication: spf={spf} dkim={dkim} arc={arc} dmarc={dmarc} for {fromDomain}",
            spf=spf.result if spf else None,
            dkim=",".join(d.result for d in dkims),
            arc=arc,
            dmarc=dmarc.result if dmarc else None,
            fromDomain=dmarc.fromDomain if dmarc else None,
            sessionId=session.sessionId,
            msgId=envelope.messageId,
        )
        if dmarc is not None and dmarc.result == "fail":
            if dmarc.policy == "reject":
                if self.dmarcReject == "reject":
                    return FilterResult(
                        FilterAction.REJECT,
                        f"Message rejected by the DMARC policy of {dmarc.fromDomain}",
                        addHeaders=(header,),
                        reason="dmarc",
                    )
                return FilterResult(FilterAction.QUARANTINE, addHeaders=(header,))
            if dmarc.policy == "quarantine":
                return FilterResult(FilterAction.QUARANTINE, addHeaders=(header,))
        return FilterResult(FilterAction.ACCEPT, addHeaders=(header,))

    def _checkBody(
        self, message: IMessageContent, spf: Optional[SPFResult], domains: list[str]
    ) -> tuple[list[DKIMResult], Optional[str], list[DMARCResult]]:
        # In a worker thread: dkimpy needs the whole message in memory.
        with message.open() as f:
            data = f.read()
        dkims = checkDKIM(self.resolver, data) if self.dkim or self.dmarc else []
        arc = checkARC(self.resolver, data) if self.arc else None
        dmarcs = [checkDMARC(self.resolver, d, spf, dkims) for d in domains] if self.dmarc else []
        return (dkims if self.dkim else [], arc, dmarcs)


_SEVERITY = {"fail": 4, "temperror": 3, "permerror": 2, "pass": 1, "none": 0}
_POLICY = {"reject": 2, "quarantine": 1, "none": 0, "": 0}


def _worst(results: Sequence[DMARCResult]) -> Optional[DMARCResult]:
    """
    With several From domains (RFC 7489 6.6.1), the most severe outcome.
    """
    if not results:
        return None
    return max(results, key=lambda r: (_SEVERITY.get(r.result, 0), _POLICY.get(r.policy, 0)))


@implementer(IModifier)
class AuthResultsScrubber:
    """
    Removes incoming C{Authentication-Results:} fields that claim to come
    from this server (RFC 8601 section 5): only our own header, added by
    L{SenderAuthFilter}, may carry our authserv-id.  Applies to mail from
    the world only; submitted mail is left alone.
    """

    def __init__(self, authservId: str) -> None:
        self.authservId = authservId.lower().rstrip(".")

    def modify(self, session: Session, envelope: Envelope, message: IMessageContent) -> "defer.Deferred[HeaderEdit]":
        if not checksSession(session):
            return defer.succeed(HeaderEdit())

        def forged(name: str, raw: bytes) -> bool:
            if name != "authentication-results":
                return False
            value = raw.split(b":", 1)[1].decode("utf-8", "replace").replace("\r\n", "")
            return authservIdOf(value) == self.authservId

        return defer.succeed(HeaderEdit(remove=forged))


# ----------------------------------------------------------------- wiring


def senderAuthFilters(config: "Config") -> list[SenderAuthFilter]:
    """
    The sender authentication filter for the pipeline, as configured
    (C{[sender_auth]}, DNS from C{[dns]}), or none when disabled.
    """
    settings = config.senderAuth
    if not settings.enabled:
        return []
    resolver = SyncResolver(config.dns.nameservers, config.dns.timeout)
    return [
        SenderAuthFilter(
            resolver,
            config.server.hostname,
            spf=settings.spf,
            dkim=settings.dkim,
            arc=settings.arc,
            dmarc=settings.dmarc,
            dmarcReject=settings.dmarcReject,
            spfFailAction=settings.spfFail,
        )
    ]


def senderAuthModifiers(config: "Config") -> list[AuthResultsScrubber]:
    """
    The modifier removing forged Authentication-Results, when sender
    authentication is enabled.
    """
    return [AuthResultsScrubber(config.server.hostname)] if config.senderAuth.enabled else []
