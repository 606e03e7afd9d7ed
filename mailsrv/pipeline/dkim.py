# -*- test-case-name: tests.test_dkim -*-
"""
DKIM signing (RFC 6376) of mail submitted by the server's own users and
of mail the server writes itself, and the keys it signs with.

Keys live where docker-mailserver and OpenDKIM keep them, so an
installation moved over keeps its published records:
C{config_dir/opendkim/keys/<domain>/<selector>.private} (a PKCS#1 RSA key,
mode 0600) beside C{<selector>.txt} (the TXT record, OpenDKIM's zone file
syntax).  The selector is C{[dkim] selector}; a domain whose key has
another selector is found through OpenDKIM's C{opendkim/KeyTable}, as
docker-mailserver writes it.

L{DKIMSigner} is an L{IModifier} and must be the B{last} one: the
signature covers Message-ID and Date, which the submission modifier may
add, and any header edited after signing would break it.  Only mail of
authenticated sessions and the server's own (bounces, Sieve vacation
replies and redirects) is signed, never mail relayed in from the world,
with the key of the domain of its From: address; for submitted mail the
submission modifier has already checked that the user owns that address.  Signing reads the whole message into memory (dkimpy wants
bytes), bounded by the message size limit, in a thread: RSA and hashing
a large body would stall the reactor.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.envelope import Envelope, Session
from mailsrv.errors import ErrorKind, MailError
from mailsrv.interfaces import HeaderEdit, IMessageContent, IModifier
from mailsrv.pipeline.submission import isInternal, isSubmission

log = Logger()

# Header fields signed when present (and their absence signed when not, so
# that none can be added in transit); From: is signed once more than it
# occurs, so a second From: cannot be added either.
SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "cc",
    "reply-to",
    "from",
)

# relaxed/relaxed survives the re-folding and whitespace changes some
# relays make to headers and bodies.
CANONICALIZATION = (b"relaxed", b"relaxed")

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


class DKIMKeyError(Exception):
    """
    A key that cannot be created or used; the message says which and why.
    """


def validDomain(domain: str) -> bool:
    """
    Whether C{domain} is an ASCII host name, safe to join to a path.
    """
    return len(domain) <= 253 and _NAME.match(domain) is not None and "." in domain


def validSelector(selector: str) -> bool:
    return len(selector) <= 63 and _NAME.match(selector) is not None


def keysDirectory(configDir: Path) -> Path:
    return Path(configDir) / "opendkim" / "keys"


@dataclasses.dataclass(frozen=True)
class SigningKey:
    domain: str
    selector: str
    privateKey: bytes = dataclasses.field(repr=False)


class KeyStore:
    """
    Finds the signing key of a domain; reads the files at every call (it
    runs in a thread), so keys created with C{mailsrv dkim generate} are
    used at once, without a reload.
    """

    def __init__(self, configDir: Path, selector: str) -> None:
        self.configDir = Path(configDir)
        self.selector = selector

    def _keyTableSelector(self, domain: str) -> Optional[tuple[str, str]]:
        """
        C{(selector, file name)} of C{domain} in OpenDKIM's KeyTable
        (C{mail._domainkey.example.com example.com:mail:/path/mail.private}),
        if there is one.  Only the file name is used: the path is the one
        inside docker-mailserver's container.
        """
        try:
            text = (self.configDir / "opendkim" / "KeyTable").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            fields = line.split()
            if len(fields) != 2 or fields[0].startswith("#"):
                continue
            parts = fields[1].split(":", 2)
            if len(parts) == 3 and parts[0].lower() == domain and validSelector(parts[1]):
                name = os.path.basename(parts[2])
                if name and not name.startswith("."):
                    return parts[1], name
        return None

    def find(self, domain: str) -> Optional[SigningKey]:
        """
        Blocking.  The key of C{domain}, or L{None} when it has none.

        @raise DKIMKeyError: a key file exists but cannot be read.
        """
        domain = domain.lower()
        if not validDomain(domain):
            return None
        directory = keysDirectory(self.configDir) / domain
        candidates = [(self.selector, f"{self.selector}.private")]
        fromTable = self._keyTableSelector(domain)
        if fromTable is not None:
            candidates.append(fromTable)
        for selector, name in candidates:
            path = directory / name
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as e:
                raise DKIMKeyError(f"cannot read {path}: {e.strerror}") from None
            _checkPrivateKey(path, data)
            return SigningKey(domain, selector, data)
        return None


def _checkPrivateKey(path: Path, data: bytes) -> None:
    """
    @raise DKIMKeyError: C{data} is not a PKCS#1 RSA key dkimpy can use (a
        damaged key must not fail deep inside signing, unexplained).
    """
    from dkim.crypto import parse_pem_private_key

    try:
        parse_pem_private_key(data)
    except Exception as e:
        raise DKIMKeyError(f"{path} holds no usable PEM RSA private key ({type(e).__name__})") from None


def fromDomain(message: IMessageContent) -> Optional[str]:
    """
    The domain of the first From: mailbox (the one DMARC aligns with).
    """
    values = message.headers().get_all("From") or []
    for _, address in email.utils.getaddresses([str(v) for v in values]):
        local, at, domain = address.rpartition("@")
        if at and local and domain:
            return domain.strip().rstrip(".").lower()
    return None


def signMessage(message: IMessageContent, key: SigningKey) -> str:
    """
    Blocking.  The C{DKIM-Signature} field (text, folded with CRLF, without
    the final CRLF) for C{message} as it is now.
    """
    import dkim

    with message.open() as f:
        data = f.read()
    try:
        signature = dkim.sign(
            data,
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.privateKey,
            canonicalize=CANONICALIZATION,
            include_headers=[h.encode("ascii") for h in SIGNED_HEADERS],
        )
    except (dkim.DKIMException, ValueError) as e:
        raise DKIMKeyError(f"cannot sign with the key of {key.domain} ({key.selector}): {e}") from None
    return bytes(signature).decode("ascii").rstrip("\r\n")


@implementer(IModifier)
class DKIMSigner:
    """
    Adds a DKIM-Signature to submitted mail whose From: domain has a key.

    A domain without a key is sent unsigned.  A key that exists but cannot
    be used fails the message temporarily (C{451 4.3.0}, the reason in the
    log): sending it unsigned would quietly fail DMARC at the receiver.

    @param runBlocking: runs a blocking callable off the reactor thread.
    """

    def __init__(
        self,
        keys: KeyStore,
        runBlocking: Callable[..., "defer.Deferred[Any]"],
        enabled: bool = True,
    ) -> None:
        self.keys = keys
        self.runBlocking = runBlocking
        self.enabled = enabled

    def modify(
        self, session: Session, envelope: Envelope, message: IMessageContent
    ) -> "defer.Deferred[HeaderEdit]":
        # Mail the users submit, and mail the server writes itself (bounces,
        # Sieve vacation replies and redirects): what OpenDKIM signs for
        # docker-mailserver.  Mail from the world keeps its own signatures.
        if not self.enabled or not (isSubmission(session) or isInternal(session)):
            return defer.succeed(HeaderEdit())
        domain = fromDomain(message)
        if domain is None or not validDomain(domain):
            return defer.succeed(HeaderEdit())
        return defer.Deferred.fromCoroutine(self._sign(session, envelope, message, domain))

    async def _sign(self, session: Session, envelope: Envelope, message: IMessageContent, domain: str) -> HeaderEdit:
        context = {"msgId": envelope.messageId, "sessionId": session.sessionId, "endpoint": session.endpoint.name}
        try:
            key = await self.runBlocking(self.keys.find, domain)
            if key is None:
                return HeaderEdit()
            signature = await self.runBlocking(signMessage, message, key)
        except DKIMKeyError as e:
            log.error("DKIM signing for {domain} impossible: {error}", domain=domain, error=str(e), **context)
            raise MailError(ErrorKind.TEMP, "Temporary local problem, try again later", temporary=True)
        log.info("DKIM-signed for {domain} with selector {selector}", domain=domain, selector=key.selector, **context)
        return HeaderEdit(prepend=(signature,))


# -- key generation (mailsrv dkim generate) --------------------------------


@dataclasses.dataclass(frozen=True)
class GeneratedKey:
    """
    @ivar publicKey: base64 DER SubjectPublicKeyInfo, the C{p=} tag.
    """

    domain: str
    selector: str
    privatePath: Path
    txtPath: Path
    publicKey: str

    def txtValue(self) -> str:
        return f"v=DKIM1; h=sha256; k=rsa; p={self.publicKey}"

    def txtStrings(self) -> list[str]:
        """
        The value as TXT character-strings (at most 255 octets each).
        """
        head = "v=DKIM1; h=sha256; k=rsa; "
        p = f"p={self.publicKey}"
        return [head] + [p[i : i + 250] for i in range(0, len(p), 250)]

    def zoneRecord(self, qualified: bool = True) -> str:
        """
        The record in zone file syntax, as OpenDKIM's C{opendkim-genkey}
        writes it; C{qualified} gives the full owner name.
        """
        owner = f"{self.selector}._domainkey" + (f".{self.domain}." if qualified else "")
        strings = self.txtStrings()
        body = "\n\t  ".join(f'"{s}"' for s in strings)
        return f"{owner}\tIN\tTXT\t( {body} )  ; ----- DKIM key {self.selector} for {self.domain}\n"


def _writePrivate(path: Path, data: bytes, replace: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    if not replace:
        fd = os.open(path, flags, 0o600)
        target = path
    else:
        target = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(target, flags, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if target != path:
        os.rename(target, path)


def generateKey(configDir: Path, domain: str, selector: str, bits: int = 2048, replace: bool = False) -> GeneratedKey:
    """
    Create an RSA key for C{domain} in the OpenDKIM layout (private key
    0600, PKCS#1 PEM as OpenDKIM writes it) and its C{.txt} record.

    @raise DKIMKeyError: bad domain, selector or size, or a key of that
        selector exists and C{replace} is false.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    domain = domain.strip().rstrip(".").lower()
    if not validDomain(domain):
        raise DKIMKeyError(f"invalid domain {domain[:80]!r}")
    if not validSelector(selector):
        raise DKIMKeyError(f"invalid selector {selector[:80]!r} (letters, digits, hyphens)")
    if bits not in (1024, 2048, 3072, 4096):
        raise DKIMKeyError(f"unsupported key size {bits} (1024, 2048, 3072 or 4096; 2048 is usual)")
    directory = keysDirectory(configDir) / domain
    privatePath = directory / f"{selector}.private"
    if privatePath.exists() and not replace:
        raise DKIMKeyError(f"{privatePath} exists; use --force to replace it (and update the DNS record)")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise DKIMKeyError(f"cannot create {directory}: {e.strerror}") from None
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    generated = GeneratedKey(
        domain, selector, privatePath, directory / f"{selector}.txt", base64.b64encode(public).decode("ascii")
    )
    try:
        _writePrivate(privatePath, private, replace)
        generated.txtPath.write_text(generated.zoneRecord(qualified=False), encoding="ascii")
    except FileExistsError:
        raise DKIMKeyError(f"{privatePath} exists; use --force to replace it") from None
    except OSError as e:
        raise DKIMKeyError(f"cannot write {e.filename}: {e.strerror}") from None
    return generated


def signerFor(configDir: Path, selector: str, reactor: Any) -> DKIMSigner:
    """
    The signer the service uses: keys under C{configDir}, signing in the
    reactor's thread pool.
    """
    from twisted.internet import threads

    def runBlocking(f: Callable[..., Any], *args: Any) -> "defer.Deferred[Any]":
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

    return DKIMSigner(KeyStore(configDir, selector), runBlocking)
