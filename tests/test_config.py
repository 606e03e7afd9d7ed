"""
Configuration loading and validation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsrv.config.load import advertisedPort, loadConfig, parseConfig, parseListen, parseListenSpec
from mailsrv.config.schema import DEFAULT_ENDPOINTS, LimitsConfig
from mailsrv.errors import ConfigError
from mailsrv.policy.endpoint import Protocol, TLSMode

REPO = Path(__file__).resolve().parents[1]


def test_defaults() -> None:
    """
    No file: the seven standard endpoints with the documented TLS modes.
    """
    config = loadConfig(None)
    modes = {e.name: (e.listen, e.tls, e.auth) for e in config.endpoints}
    assert modes == {
        "smtp": (("0.0.0.0:25",), TLSMode.STARTTLS, False),
        "submission": (("0.0.0.0:587",), TLSMode.STARTTLS_REQUIRED, True),
        "submissions": (("0.0.0.0:465",), TLSMode.IMPLICIT, True),
        "pop3": (("0.0.0.0:110",), TLSMode.STARTTLS_REQUIRED, True),
        "pop3s": (("0.0.0.0:995",), TLSMode.IMPLICIT, True),
        "imap": (("0.0.0.0:143",), TLSMode.STARTTLS_REQUIRED, True),
        "imaps": (("0.0.0.0:993",), TLSMode.IMPLICIT, True),
    }
    assert config.server.dataDir == Path("/var/lib/mailsrv")
    assert config.server.configDir == Path("/etc/mailsrv")


def test_example_file_is_valid_and_complete() -> None:
    """
    etc/mailsrv.toml loads, and states the same endpoints as the defaults.
    """
    config = loadConfig(REPO / "etc" / "mailsrv.toml")
    assert config.endpoints == DEFAULT_ENDPOINTS
    assert config.server.domains == ("example.com",)


def test_example_limits_are_the_defaults() -> None:
    """
    The [limits] of etc/mailsrv.toml state the built-in defaults, which
    follow Postfix and Dovecot (RFC 3501 and RFC 1939 idle minimums).
    """
    config = loadConfig(REPO / "etc" / "mailsrv.toml")
    assert config.limits == LimitsConfig()
    assert (config.limits.imapIdleTimeout, config.limits.pop3IdleTimeout) == (1800.0, 600.0)
    assert (config.limits.loginTimeout, config.limits.maxConnectionsPerUserIP) == (180.0, 10)


def test_connection_limit_keys() -> None:
    """
    The IMAP/POP3 caps, the user+IP cap (0: none) and the timers load.
    """
    config = parseConfig(
        {
            "limits": {
                "imap_max_connections": 50,
                "imap_max_connections_per_ip": 5,
                "pop3_max_connections": 40,
                "pop3_max_connections_per_ip": 4,
                "max_connections_per_user_ip": 0,
                "login_timeout": 30,
                "imap_idle_timeout": 900.5,
                "pop3_idle_timeout": 120,
                "min_data_rate": 100,
            }
        },
        "f",
    )
    limits = config.limits
    assert (limits.imapMaxConnections, limits.imapMaxConnectionsPerIP) == (50, 5)
    assert (limits.pop3MaxConnections, limits.pop3MaxConnectionsPerIP) == (40, 4)
    assert limits.maxConnectionsPerUserIP == 0
    assert (limits.loginTimeout, limits.imapIdleTimeout, limits.pop3IdleTimeout) == (30.0, 900.5, 120.0)
    assert limits.minDataRate == 100


def test_standard_endpoint_inherits_defaults() -> None:
    """
    A table named after a standard endpoint may set only `listen`; only the
    named endpoints run.
    """
    config = parseConfig({"endpoints": {"imaps": {"listen": ["127.0.0.1:10993"]}}}, "f")
    [imaps] = config.endpoints
    assert (imaps.protocol, imaps.tls, imaps.auth, imaps.listen) == (
        Protocol.IMAP, TLSMode.IMPLICIT, True, ("127.0.0.1:10993",)
    )


def test_custom_endpoint() -> None:
    """
    A custom endpoint needs protocol and listen; TLS defaults to required.
    """
    config = parseConfig({"endpoints": {"imap-alt": {"protocol": "imap", "listen": ["[::1]:1143"]}}}, "f")
    assert config.endpoints[0].tls is TLSMode.STARTTLS_REQUIRED


@pytest.mark.parametrize(
    "data,key",
    [
        ({"nonsense": {}}, "nonsense"),
        ({"server": {"hostname": "bad_name!"}}, "server.hostname"),
        ({"server": {"domains": ["ok.test", 3]}}, "server.domains"),
        ({"server": {"data_dir": ""}}, "server.data_dir"),
        ({"tls": {"cert": "/a"}}, "tls.key"),
        ({"limits": {"recipients": 0}}, "limits.recipients"),
        ({"limits": {"command_timeout": "5"}}, "limits.command_timeout"),
        ({"limits": {"imap_max_connections_per_ip": 0}}, "limits.imap_max_connections_per_ip"),
        ({"limits": {"max_connections_per_user_ip": -1}}, "limits.max_connections_per_user_ip"),
        ({"limits": {"login_timeout": 0}}, "limits.login_timeout"),
        ({"limits": {"min_data_rate": 1.5}}, "limits.min_data_rate"),
        ({"endpoints": {"smtp": {"listen": ["127.0.0.1"]}}}, "endpoints.smtp.listen"),
        ({"endpoints": {"smtp": {"listen": ["127.0.0.1:99999"]}}}, "endpoints.smtp.listen"),
        ({"endpoints": {"smtp": {"protocol": "lmtp"}}}, "endpoints.smtp.protocol"),
        ({"endpoints": {"smtp": {"auth": "yes"}}}, "endpoints.smtp.auth"),
        ({"endpoints": {"x": {"listen": ["127.0.0.1:1"]}}}, "endpoints.x.protocol"),
        ({"endpoints": {"sub": {"protocol": "submission", "listen": ["127.0.0.1:1"], "auth": False}}}, "endpoints.sub.auth"),
        ({"endpoints": {"smtp": {"extra": 1}}}, "endpoints.smtp.extra"),
        ({"endpoints": "x"}, "endpoints"),
        ({"endpoints": {"smtp": {"listen": ["systemd:"]}}}, "endpoints.smtp.listen"),
        ({"endpoints": {"smtp": {"listen": ["systemd:a=b"]}}}, "endpoints.smtp.listen"),
        ({"endpoints": {"smtp": {"listen": ["systemd:two words"]}}}, "endpoints.smtp.listen"),
        ({"endpoints": {"smtp": {"listen": ["systemd:x"]}, "imap": {"listen": ["systemd:x"]}}}, "endpoints.imap.listen"),
        ({"endpoints": {"smtp": {"port": 0}}}, "endpoints.smtp.port"),
        ({"endpoints": {"smtp": {"port": "25"}}}, "endpoints.smtp.port"),
        ({"rspamd": {"learn": True}}, "rspamd.password"),
        ({"rspamd": {"learn": True, "password": "x", "controller_url": "ftp://x"}}, "rspamd.controller_url"),
        ({"sieve": {"enabled": "yes"}}, "sieve.enabled"),
        ({"sieve": {"max_script_size": 0}}, "sieve.max_script_size"),
        ({"sieve": {"max_redirects": 1}}, "sieve.max_redirects"),
    ],
)
def test_errors_name_the_key(data: dict, key: str) -> None:
    """
    Every bad value is reported with the file and the dotted key.
    """
    with pytest.raises(ConfigError) as info:
        parseConfig(data, "conf.toml")
    assert info.value.key == key
    assert str(info.value).startswith(f"conf.toml: {key}: ")


def test_file_errors(tmp_path: Path) -> None:
    """
    Missing files and TOML syntax errors name the file.
    """
    with pytest.raises(ConfigError, match="file not found"):
        loadConfig(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        loadConfig(bad)


@pytest.mark.parametrize(
    "spec,expected",
    [("0.0.0.0:25", ("0.0.0.0", 25)), ("[::]:993", ("::", 993)), ("localhost:2525", ("localhost", 2525))],
)
def test_parse_listen(spec: str, expected: tuple[str, int]) -> None:
    """
    host:port and [v6]:port forms.
    """
    assert parseListen(spec) == expected


def test_systemd_listen_and_advertised_port() -> None:
    """
    C{systemd:NAME} names a socket passed by systemd; the port published
    for an endpoint is its C{port} key, else its first host:port, else the
    standard port of its protocol and TLS mode.
    """
    assert parseListenSpec("systemd:smtp") == "smtp"
    assert parseListenSpec("[::1]:25") == ("::1", 25)
    config = parseConfig(
        {
            "endpoints": {
                "smtp": {"listen": ["systemd:smtp"]},
                "submissions": {"listen": ["systemd:submissions", "127.0.0.1:4650"]},
                "imaps": {"listen": ["systemd:imaps"], "port": 10993},
                "imap": {"listen": ["127.0.0.1:1143"]},
                "pop3s": {"listen": ["systemd:pop3s"]},
                "web": {"protocol": "http", "listen": ["systemd:web"], "tls": "implicit"},
            }
        },
        "f",
    )
    ports = {e.name: advertisedPort(e) for e in config.endpoints}
    assert ports == {"smtp": 25, "submissions": 4650, "imaps": 10993, "imap": 1143, "pop3s": 995, "web": 443}
    assert config.endpoint("imaps").listen == ("systemd:imaps",)


def test_sieve_section() -> None:
    """
    Sieve is on by default (as in docker-mailserver) and can be turned off.
    """
    from mailsrv.config.schema import SieveConfig

    assert loadConfig(None).sieve == SieveConfig(enabled=True, maxScriptSize=1024 * 1024)
    assert loadConfig(REPO / "etc" / "mailsrv.toml").sieve == SieveConfig()
    config = parseConfig({"sieve": {"enabled": False, "max_script_size": 4096}}, "conf.toml")
    assert config.sieve == SieveConfig(enabled=False, maxScriptSize=4096)
