"""
The outbound configuration sections: defaults, validation, and the
annotated example file documenting every key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsrv.config.load import loadConfig, parseConfig
from mailsrv.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "mailsrv.toml"


def test_defaults() -> None:
    """
    Without the sections: spoof protection on, client IP hidden, 5 min to
    1 h backoff, 5 days lifetime, system resolver, no relay, MX port 25.
    """
    config = parseConfig({}, "t")
    assert (config.submission.spoofProtection, config.submission.showClientIP) == (True, False)
    assert (config.queue.retryInitial, config.queue.retryMax, config.queue.lifetime) == (300, 3600, 432000)
    assert config.dns.nameservers == ()
    assert config.relay.host is None
    assert config.delivery.mxPort == 25


def test_values(tmp_path: Path) -> None:
    """
    Every key is read; the relay password may come from a file and is
    never shown in the repr of the configuration.
    """
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    config = parseConfig(
        {
            "submission": {"spoof_protection": False, "show_client_ip": True},
            "queue": {"retry_initial": 1, "retry_max": 2, "lifetime": 10, "max_active": 3, "per_destination": 1},
            "dns": {"nameservers": ["127.0.0.1:5353", "[::1]:53", "127.0.0.2"], "timeout": 2},
            "relay": {"host": "relay.example", "tls": "implicit", "username": "u", "password_file": str(secret)},
            "delivery": {"mx_port": 2525},
        },
        "t",
    )
    assert config.dns.nameservers == (("127.0.0.1", 5353), ("::1", 53), ("127.0.0.2", 53))
    assert config.relay.password == "s3cret"
    assert config.relay.effectivePort == 465
    assert "s3cret" not in repr(config)
    assert config.delivery.mxPort == 2525


@pytest.mark.parametrize(
    "data, key",
    [
        ({"queue": {"retry_initial": 10, "retry_max": 5}}, "queue.retry_max"),
        ({"queue": {"unknown": 1}}, "queue.unknown"),
        ({"dns": {"nameservers": ["ns.example"]}}, "dns.nameservers"),
        ({"relay": {"host": "r.example", "tls": "none"}}, "relay.tls"),
        ({"relay": {"host": "r.example", "username": "u"}}, "relay.password"),
        ({"relay": {"host": "r.example", "password": "a", "password_file": "/x"}}, "relay.password_file"),
        ({"relay": {"username": "u", "password": "p"}}, "relay.host"),
        ({"delivery": {"mx_port": 0}}, "delivery.mx_port"),
        ({"submission": {"spoof_protection": "yes"}}, "submission.spoof_protection"),
    ],
)
def test_errors_name_the_key(data: dict, key: str) -> None:  # type: ignore[type-arg]
    """
    Bad values are errors naming the dotted key.
    """
    with pytest.raises(ConfigError) as caught:
        parseConfig(data, "t")
    assert caught.value.key == key


def test_example_documents_every_key() -> None:
    """
    The annotated example loads and mentions every key of the outbound
    sections.
    """
    loadConfig(EXAMPLE)
    text = EXAMPLE.read_text()
    for section, keys in {
        "submission": ["spoof_protection", "show_client_ip"],
        "queue": ["retry_initial", "retry_max", "lifetime", "max_active", "per_destination"],
        "dns": ["nameservers", "timeout"],
        "relay": ["host", "port", "tls", "username", "password_file", "verify", "ca_file"],
        "delivery": ["mx_port", "connect_timeout", "command_timeout"],
    }.items():
        assert f"\n[{section}]\n" in text
        chunk = text.split(f"\n[{section}]\n", 1)[1].split("\n[", 1)[0]
        for key in keys:
            assert f"{key} =" in chunk, (section, key)
