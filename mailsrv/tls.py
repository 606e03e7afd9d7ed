# -*- test-case-name: tests.test_tls -*-
"""
The one TLS server context shared by every endpoint.

L{ServerTLS} provides C{IOpenSSLServerConnectionCreator}: implicit-TLS
listeners wrap their factory with it in a C{TLSMemoryBIOFactory}, and the
STARTTLS/STLS commands pass the same object to C{transport.startTLS}.  Each
new TLS connection asks it for a connection object; at that moment it checks
(at most once a second) whether the certificate or key file changed and, if
so, builds a new context.  Renewed certificates (certbot, acme.sh) are served
to the next connection without a restart; connections already open keep the
context they started with.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.config.schema import TLSConfig

if TYPE_CHECKING:
    from mailsrv.envelope import TLSInfo

# Mozilla's "intermediate" list (TLS 1.2 suites with forward secrecy and
# AEAD only; TLS 1.3 suites are not configurable through this string and
# are all strong).  No RC4, 3DES, export, NULL or anonymous suites.
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)

log = Logger()


def generateSelfSigned(hostname: str, certPath: Path, keyPath: Path) -> None:
    """
    Write a self-signed certificate for C{hostname} and its key (mode 0600).
    """
    from mailsrv.storage.fsync import writeFileAtomically

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certPath.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    writeFileAtomically(
        keyPath,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    writeFileAtomically(certPath, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def loadCertificateOptions(certPath: Path, keyPath: Path) -> ssl.CertificateOptions:
    """
    Build the server options from a PEM chain (leaf first) and a PEM key.

    @raise ValueError: if the files cannot be read or do not match.
    """
    try:
        chainPEM = certPath.read_bytes()
        keyPEM = keyPath.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {e.filename}: {e.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(chainPEM)
        key = serialization.load_pem_private_key(keyPEM, password=None)
    except ValueError as e:
        raise ValueError(f"{certPath} or {keyPath} is not valid PEM: {e}") from None
    # cryptography objects, not pyOpenSSL's X509/PKey (deprecated there).
    options = ssl.CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]
        certificate=certs[0],  # type: ignore[arg-type]
        extraCertChain=certs[1:],  # type: ignore[arg-type]
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(CIPHERS),
    )
    # Building the context now checks that the key matches the certificate.
    try:
        options.getContext()
    except SSL.Error as e:
        raise ValueError(f"{certPath} and {keyPath} do not form a certificate and key: {e}") from None
    return options


def _fileStamp(path: Path) -> Optional[tuple[int, int, int]]:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    A reloading TLS server connection creator.

    @ivar certPath: the certificate chain in use.
    @ivar keyPath: the key in use.
    """

    def __init__(
        self,
        certPath: Path,
        keyPath: Path,
        clock: Callable[[], float] = time.monotonic,
        checkInterval: float = 1.0,
    ) -> None:
        self.certPath = certPath
        self.keyPath = keyPath
        self._clock = clock
        self._checkInterval = checkInterval
        self._stamp = (_fileStamp(certPath), _fileStamp(keyPath))
        self._options = loadCertificateOptions(certPath, keyPath)
        self._lastCheck = clock()

    def _maybeReload(self) -> None:
        now = self._clock()
        if now - self._lastCheck < self._checkInterval:
            return
        self._lastCheck = now
        stamp = (_fileStamp(self.certPath), _fileStamp(self.keyPath))
        if stamp == self._stamp:
            return
        try:
            options = loadCertificateOptions(self.certPath, self.keyPath)
        except ValueError as e:
            # Mid-renewal the chain may be new and the key still old; keep
            # serving the old pair and try again at the next connection.
            log.warn("TLS certificate not reloaded: {problem}", problem=str(e))
            return
        self._stamp = stamp
        self._options = options
        log.info("TLS certificate reloaded from {cert}", cert=str(self.certPath))

    def context(self) -> SSL.Context:
        self._maybeReload()
        return self._options.getContext()

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self.context(), None)


def serverTLSFromConfig(config: TLSConfig, hostname: str, dataDir: Path) -> ServerTLS:
    """
    The shared creator: the configured files, or a self-signed certificate
    kept in C{dataDir/tls} (generated on first start) when none are
    configured or the configured files do not exist yet.
    """
    if config.cert is not None and config.key is not None:
        if config.cert.exists() and config.key.exists():
            return ServerTLS(config.cert, config.key)
        log.error(
            "TLS files {cert} / {key} not found: serving a self-signed certificate "
            "until they exist",
            cert=str(config.cert),
            key=str(config.key),
        )
    certPath = dataDir / "tls" / "selfsigned-cert.pem"
    keyPath = dataDir / "tls" / "selfsigned-key.pem"
    if not (certPath.exists() and keyPath.exists()):
        generateSelfSigned(hostname, certPath, keyPath)
        log.warn(
            "Generated a SELF-SIGNED certificate for {hostname} in {path}: clients will "
            "warn about it. Set [tls] cert and key to a real certificate.",
            hostname=hostname,
            path=str(certPath),
        )
    else:
        log.warn("Using the self-signed certificate in {path}", path=str(certPath))
    creator = ServerTLS(certPath, keyPath)
    if config.cert is not None and config.key is not None:
        # Switch to the configured files as soon as they appear.
        creator.certPath, creator.keyPath = config.cert, config.key
        creator._stamp = (None, None)
    return creator


def negotiatedTLS(transport: object) -> Optional["TLSInfo"]:
    """
    The TLS version and cipher of a connection whose handshake completed
    (implicit TLS or after STARTTLS), else L{None}.  Call it from
    C{IHandshakeListener.handshakeCompleted}.
    """
    from mailsrv.envelope import TLSInfo

    getHandle = getattr(transport, "getHandle", None)
    if getHandle is None:
        return None
    connection = getHandle()
    if not isinstance(connection, SSL.Connection):
        return None
    version = connection.get_protocol_version_name()
    cipher = connection.get_cipher_name()
    if not cipher:
        return None
    return TLSInfo(version=version, cipher=cipher)
