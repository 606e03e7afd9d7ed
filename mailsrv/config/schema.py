# -*- test-case-name: tests.test_config -*-
"""
The validated configuration: frozen dataclasses with explicit defaults.

This module is the single catalogue of configuration keys.  The TOML names
(snake_case) map one-to-one onto the fields; L{mailsrv.config.load} does the
mapping and validation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode

DEFAULT_DATA_DIR = Path("/var/lib/mailsrv")
DEFAULT_CONFIG_DIR = Path("/etc/mailsrv")
DEFAULT_CONFIG_FILE = DEFAULT_CONFIG_DIR / "mailsrv.toml"


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    hostname: str
    domains: tuple[str, ...]
    dataDir: Path
    configDir: Path

    @property
    def mailDir(self) -> Path:
        return self.dataDir / "mail"

    @property
    def stateDir(self) -> Path:
        return self.dataDir / "state"


@dataclasses.dataclass(frozen=True)
class TLSConfig:
    """
    @ivar cert: PEM certificate chain (leaf first), or L{None} to use the
        self-signed certificate generated into the data directory.
    @ivar key: PEM private key matching C{cert}.
    """

    cert: Optional[Path] = None
    key: Optional[Path] = None


@dataclasses.dataclass(frozen=True)
class LimitsConfig:
    """
    Limits on what a client controls.  Exceeding one gets the protocol's
    error reply, never unbounded memory.
    """

    messageSize: int = 25 * 1024 * 1024
    recipients: int = 100
    commandTimeout: float = 300.0
    dataTimeout: float = 600.0
    maxErrors: int = 20
    maxConnections: int = 1000
    maxConnectionsPerIP: int = 20
    # Clients exempt from the per-IP limit (Postfix exempts $mynetworks).
    connectionLimitExceptions: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


@dataclasses.dataclass(frozen=True)
class Config:
    source: str  # the file read, or "<defaults>"
    server: ServerConfig
    tls: TLSConfig
    limits: LimitsConfig
    endpoints: tuple[EndpointPolicy, ...]

    def endpoint(self, name: str) -> EndpointPolicy:
        for e in self.endpoints:
            if e.name == name:
                return e
        raise KeyError(name)


# The seven standard endpoints.  A config table named after one of them may
# set only the keys it changes.
DEFAULT_ENDPOINTS: tuple[EndpointPolicy, ...] = (
    EndpointPolicy("smtp", Protocol.SMTP, ("0.0.0.0:25",), TLSMode.STARTTLS, auth=False),
    EndpointPolicy(
        "submission", Protocol.SUBMISSION, ("0.0.0.0:587",), TLSMode.STARTTLS_REQUIRED, auth=True
    ),
    EndpointPolicy(
        "submissions", Protocol.SUBMISSION, ("0.0.0.0:465",), TLSMode.IMPLICIT, auth=True
    ),
    EndpointPolicy("pop3", Protocol.POP3, ("0.0.0.0:110",), TLSMode.STARTTLS_REQUIRED, auth=True),
    EndpointPolicy("pop3s", Protocol.POP3, ("0.0.0.0:995",), TLSMode.IMPLICIT, auth=True),
    EndpointPolicy("imap", Protocol.IMAP, ("0.0.0.0:143",), TLSMode.STARTTLS_REQUIRED, auth=True),
    EndpointPolicy("imaps", Protocol.IMAP, ("0.0.0.0:993",), TLSMode.IMPLICIT, auth=True),
)
