"""
Live reload in process: a valid new configuration applies its live keys and
names the ones that need a restart; an invalid one changes nothing and is
logged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs

from mailsrv.config.load import loadConfig
from mailsrv.ops.reload import LIVE_KEYS, Reloader, ReloadService, changedKeys, pidfilePath
from mailsrv.service import MailService
from mailsrv.tls import generateSelfSigned


def writeConfig(root: Path, extra: str = "", port: int = 2525, domains: str = '"example.test"') -> Path:
    path = root / "mailsrv.toml"
    path.write_text(
        f'[server]\nhostname = "mail.example.test"\ndomains = [{domains}]\n'
        f'data_dir = "{root / "data"}"\nconfig_dir = "{root / "conf"}"\n\n{extra}\n'
        f'[endpoints.smtp]\nlisten = ["127.0.0.1:{port}"]\n'
    )
    return path


@pytest.fixture
def service(tmp_path: Path) -> MailService:
    return MailService(loadConfig(writeConfig(tmp_path)), MemoryReactorClock())


def commonName(service: MailService) -> str:
    service.tls.context()  # as the next connection does
    return service.tls._options.certificate.subject.rfc4514_string()  # type: ignore[attr-defined]


def test_changed_keys() -> None:
    """
    Section keys, endpoint keys and added endpoints are reported by their
    TOML names.
    """
    from mailsrv.config.load import parseConfig

    a = parseConfig({"endpoints": {"smtp": {"listen": ["127.0.0.1:25"]}}}, "a")
    b = parseConfig(
        {
            "server": {"domains": ["x.test"]},
            "limits": {"message_size": 10},
            "endpoints": {"smtp": {"listen": ["127.0.0.1:26"]}, "imap": {"listen": ["127.0.0.1:143"]}},
        },
        "b",
    )
    assert changedKeys(a, b) == [
        "server.domains",
        "limits.message_size",
        "endpoints.imap",
        "endpoints.smtp.listen",
    ]
    assert changedKeys(a, a) == []


def test_invalid_config_keeps_running_one(service: MailService, tmp_path: Path) -> None:
    """
    A broken file is refused with the config error in the log; the running
    configuration object is untouched.
    """
    before = service.config
    (tmp_path / "mailsrv.toml").write_text("[server]\nhostname = 5\n")
    with capturedLogs() as events:
        result = Reloader(service).reload()
    assert result.error is not None and "server.hostname" in result.error
    assert service.config is before
    [event] = [e for e in events if e.get("outcome") == "invalid"]
    assert "server.hostname" in event["problem"]


def test_certificate_and_domains_applied_listen_needs_restart(service: MailService, tmp_path: Path) -> None:
    """
    New [tls] files are served at once, a new domain is local at once, and a
    changed listen address is reported as needing a restart.
    """
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generateSelfSigned("reloaded.example.test", cert, key)
    writeConfig(
        tmp_path,
        extra=f'[tls]\ncert = "{cert}"\nkey = "{key}"\n',
        port=2526,
        domains='"example.test", "new.test"',
    )
    assert not service.directory.isLocalDomain("new.test")
    result = Reloader(service).reload()
    assert result.error is None
    assert sorted(result.applied) == ["server.domains", "tls.cert", "tls.key"]
    assert result.restartNeeded == ["endpoints.smtp.listen"]
    assert service.tls.certPath == cert
    assert "CN=reloaded.example.test" in commonName(service)
    assert service.directory.isLocalDomain("new.test")
    assert service.config.tls.cert == cert
    # Not applied, so not claimed: the running config keeps the old listener.
    assert service.config.endpoint("smtp").listen == ("127.0.0.1:2525",)


def test_bad_certificate_refused(service: MailService, tmp_path: Path) -> None:
    """
    [tls] pointing at files that are not a certificate and key refuses the
    whole reload and keeps the old certificate.
    """
    bad = tmp_path / "bad.pem"
    bad.write_text("not pem")
    writeConfig(tmp_path, extra=f'[tls]\ncert = "{bad}"\nkey = "{bad}"\n')
    oldPath = service.tls.certPath
    result = Reloader(service).reload()
    assert result.error is not None and "bad.pem" in result.error
    assert service.tls.certPath == oldPath
    assert service.config.tls.cert is None


def test_live_keys_are_real_keys(service: MailService) -> None:
    """
    Every LIVE_KEYS entry names a key that changedKeys can report.
    """
    from mailsrv.config.load import parseConfig

    a = parseConfig({}, "a")
    c = parseConfig(
        {
            "server": {"domains": ["x.test"]},
            "tls": {"cert": "/c", "key": "/k"},
            "mta_sts": {"mode": "enforce", "max_age": 60, "mx": ["mx.x.test"]},
            "http": {"metrics_networks": ["10.0.0.0/8"]},
        },
        "c",
    )
    assert set(changedKeys(a, c)) == LIVE_KEYS


def test_pidfile_written_and_removed(service: MailService) -> None:
    """
    While the reload service runs, the pidfile holds this process id, and
    it is removed at stop.
    """
    reloadService = ReloadService(Reloader(service), pidfilePath(service.config), MemoryReactorClock(), installSignal=False)
    reloadService.startService()
    path = pidfilePath(service.config)
    assert path.read_text().strip() == str(os.getpid())
    reloadService.stopService()
    assert not path.exists()
