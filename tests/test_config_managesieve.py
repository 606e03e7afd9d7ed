# -*- test-case-name: tests.test_config_managesieve -*-
"""
ManageSieve in the configuration and the service: the [managesieve]
section, endpoints with protocol = "managesieve" (off by default, port
4190) and the factory the service builds for them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory

from mailsrv.config.load import advertisedPort, loadConfig, parseConfig
from mailsrv.config.schema import DEFAULT_ENDPOINTS, ManageSieveConfig
from mailsrv.errors import ConfigError
from mailsrv.ops.reload import changedKeys
from mailsrv.policy.endpoint import Protocol, TLSMode
from mailsrv.protocols.managesieve.server import ManageSieveFactory
from mailsrv.service import MailService
from mailsrv.storage.sieve_store import MaildirSieveStore

REPO = Path(__file__).resolve().parents[1]


def test_defaults() -> None:
    """
    ManageSieve is not among the default endpoints; its section has
    Pigeonhole-like defaults.
    """
    config = parseConfig({}, "f")
    assert all(p.protocol is not Protocol.MANAGESIEVE for p in config.endpoints)
    assert config.endpoints == DEFAULT_ENDPOINTS
    assert config.managesieve == ManageSieveConfig()
    assert config.managesieve.maxScripts == 20


def test_exampleFile() -> None:
    """
    etc/mailsrv.toml states the defaults of [managesieve], and its
    commented [endpoints.managesieve] block is a valid endpoint.
    """
    example = REPO / "etc" / "mailsrv.toml"
    assert loadConfig(example).managesieve == ManageSieveConfig()
    text = example.read_text()
    block = text[text.index("# [endpoints.managesieve]") :]
    uncommented = "\n".join(line[2:] for line in block.splitlines() if line.startswith("# "))
    [endpoint] = parseConfig(tomllib.loads(uncommented), "f").endpoints
    assert (endpoint.name, endpoint.protocol, endpoint.listen, endpoint.tls, endpoint.auth) == (
        "managesieve", Protocol.MANAGESIEVE, ("0.0.0.0:4190",), TLSMode.STARTTLS_REQUIRED, True
    )


def test_endpointDefaults() -> None:
    """
    An endpoint with protocol = "managesieve" and nothing else listens on
    port 4190 with STARTTLS required and authentication; implicit TLS is a
    choice too.
    """
    config = parseConfig(
        {
            "endpoints": {
                "managesieve": {"protocol": "managesieve"},
                "sieves": {"protocol": "managesieve", "tls": "implicit", "listen": ["127.0.0.1:5190"]},
            }
        },
        "f",
    )
    plain, implicit = config.endpoints
    assert (plain.listen, plain.tls, plain.auth, advertisedPort(plain)) == (
        ("0.0.0.0:4190",), TLSMode.STARTTLS_REQUIRED, True, 4190
    )
    assert (implicit.tls, advertisedPort(implicit)) == (TLSMode.IMPLICIT, 5190)


def test_keys() -> None:
    """
    Every [managesieve] key loads.
    """
    config = parseConfig(
        {
            "managesieve": {
                "max_scripts": 0,
                "max_connections": 5,
                "max_connections_per_ip": 2,
                "idle_timeout": 120,
            }
        },
        "f",
    )
    assert config.managesieve == ManageSieveConfig(0, 5, 2, 120.0)


@pytest.mark.parametrize(
    "data,key",
    [
        ({"max_scripts": -1}, "managesieve.max_scripts"),
        ({"max_script_size": 4096}, "managesieve.max_script_size"),  # it is [sieve]'s
        ({"max_connections": "5"}, "managesieve.max_connections"),
        ({"max_connections_per_ip": 0}, "managesieve.max_connections_per_ip"),
        ({"idle_timeout": 0}, "managesieve.idle_timeout"),
        ({"max_quota": 1}, "managesieve.max_quota"),
    ],
)
def test_badValues(data: dict, key: str) -> None:
    """
    Bad values and unknown keys name the key.
    """
    with pytest.raises(ConfigError) as e:
        parseConfig({"managesieve": data}, "f")
    assert e.value.key == key


def test_reloadNamesKeys() -> None:
    """
    A changed [managesieve] key is reported by its TOML name (it needs a
    restart, like the other limits).
    """
    a = parseConfig({}, "a")
    b = parseConfig({"managesieve": {"max_scripts": 5}}, "b")
    assert changedKeys(a, b) == ["managesieve.max_scripts"]


def test_serviceBuildsFactory(tmp_path: Path) -> None:
    """
    The service builds a ManageSieve factory per managesieve endpoint,
    over the script store in the mail directory with the configured
    limits (the script size is [sieve]'s, the one delivery runs); implicit
    TLS wraps it.
    """
    path = tmp_path / "mailsrv.toml"
    path.write_text(
        f'[server]\nhostname = "mail.example.test"\ndomains = ["example.test"]\n'
        f'data_dir = "{tmp_path / "data"}"\nconfig_dir = "{tmp_path / "conf"}"\n\n'
        "[managesieve]\nmax_scripts = 7\nidle_timeout = 90\n\n[sieve]\nmax_script_size = 4096\n\n"
        "[limits]\nlogin_timeout = 30\n\n"
        '[endpoints.managesieve]\nprotocol = "managesieve"\nlisten = ["127.0.0.1:14190"]\n'
        '[endpoints.sieves]\nprotocol = "managesieve"\ntls = "implicit"\nlisten = ["127.0.0.1:15190"]\n'
    )
    service = MailService(loadConfig(path), MemoryReactorClock())
    factories = {child.name: child.factory for child in service if hasattr(child, "factory")}
    plain = factories["managesieve 127.0.0.1:14190"]
    implicit = factories["sieves 127.0.0.1:15190"]
    assert isinstance(plain, ManageSieveFactory)
    assert isinstance(implicit, TLSMemoryBIOFactory)
    assert isinstance(implicit.wrappedFactory, ManageSieveFactory)
    assert plain.tls is service.tls
    store = plain.scripts
    assert isinstance(store, MaildirSieveStore)
    assert (store.root, store.maxScripts, store.maxScriptSize) == (tmp_path / "data" / "mail", 7, 4096)
    assert (plain.limits.idleTimeout, plain.limits.loginTimeout) == (90.0, 30.0)
    assert plain.connections is implicit.wrappedFactory.connections
    assert plain.portal is service.portal
