# -*- test-case-name: tests.ops.test_reload -*-
"""
Live reload: C{SIGHUP}, C{systemctl reload mailsrv} or C{mailsrv reload}.

Accounts, aliases, quotas and certificate files are already watched and
re-read when they change; a reload additionally re-reads the configuration
file.  The new file is validated completely first: if it is invalid the
running configuration stays in force and the log says why, so a typo never
takes the server down.

What a valid new file changes at once (L{LIVE_KEYS}): C{[tls] cert/key}
(the next connection gets the new certificate), C{[server] domains},
C{[mta_sts]} and C{[http] metrics_networks}.
Every other changed key is listed in a warning that says a restart is
needed: listeners, the data and config directories and protocol limits are
built into objects that live connections hold.

The server writes its process id to C{data_dir/state/mailsrv.pid} so that
C{mailsrv reload} can find it without twistd's own pidfile (which the
systemd unit disables).
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import signal
from pathlib import Path
from typing import Any, Callable, Optional

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

from mailsrv import systemd
from mailsrv.config.load import loadConfig
from mailsrv.config.schema import Config
from mailsrv.errors import ConfigError

PIDFILE_NAME = "mailsrv.pid"

# Sections read afresh on every use (each HTTP request), applied as a whole.
LIVE_SECTIONS = {"mtaSts": "mta_sts", "http": "http"}

# Dotted TOML keys applied without a restart.
LIVE_KEYS = frozenset(
    {"tls.cert", "tls.key", "server.domains", "mta_sts.mode", "mta_sts.max_age", "mta_sts.mx", "http.metrics_networks"}
)


log = Logger()


def pidfilePath(config: Config) -> Path:
    """
    Where the running server keeps its process id.
    """
    return config.server.stateDir / PIDFILE_NAME


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    return value


def changedKeys(old: Config, new: Config) -> list[str]:
    """
    The dotted TOML keys (C{endpoints.imap.listen}, C{tls.cert}) whose values
    differ between two configurations.  An endpoint added or removed is
    reported as C{endpoints.NAME}.
    """
    changed: list[str] = []
    for field in dataclasses.fields(old):
        if field.name in ("source",):
            continue
        a, b = getattr(old, field.name), getattr(new, field.name, None)
        if field.name == "endpoints":
            changed.extend(_endpointChanges(a, b))
        elif dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            section = _snake(field.name)
            for sub in dataclasses.fields(a):
                if _value(getattr(a, sub.name)) != _value(getattr(b, sub.name, None)):
                    changed.append(f"{section}.{_snake(sub.name)}")
        elif a != b:
            changed.append(_snake(field.name))
    return changed


def _endpointChanges(old: tuple[Any, ...], new: tuple[Any, ...]) -> list[str]:
    before = {e.name: e for e in old}
    after = {e.name: e for e in new}
    changed = [f"endpoints.{name}" for name in sorted(before.keys() ^ after.keys())]
    for name in sorted(before.keys() & after.keys()):
        for field in dataclasses.fields(before[name]):
            if getattr(before[name], field.name) != getattr(after[name], field.name):
                changed.append(f"endpoints.{name}.{_snake(field.name)}")
    return changed


@dataclasses.dataclass
class ReloadResult:
    """
    What one reload did.

    @ivar error: why the new configuration was refused, or L{None}.
    @ivar applied: changed keys now in force.
    @ivar restartNeeded: changed keys that take effect only after a restart.
    """

    error: Optional[str] = None
    applied: list[str] = dataclasses.field(default_factory=list)
    restartNeeded: list[str] = dataclasses.field(default_factory=list)


class Reloader:
    """
    Re-reads the configuration file of a running L{MailService} and applies
    what can be applied live.

    @param service: the running service (its C{config}, C{tls} and
        C{directory} attributes are used).
    @param load: the config loader (injectable for tests).
    """

    def __init__(self, service: Any, load: Callable[[Optional[Path]], Config] = loadConfig) -> None:
        self.service = service
        self._load = load

    def reload(self) -> ReloadResult:
        old: Config = self.service.config
        path = None if old.source == "<defaults>" else Path(old.source)
        try:
            new = self._load(path)
        except ConfigError as e:
            log.error(
                "Reload refused, keeping the running configuration: {problem}",
                problem=str(e),
                outcome="invalid",
            )
            return ReloadResult(error=str(e))
        result = ReloadResult()
        changed = changedKeys(old, new)
        config = old
        tlsKeys = [k for k in changed if k.startswith("tls.")]
        if tlsKeys:
            problem = self._swapCertificate(new)
            if problem is not None:
                log.error(
                    "Reload refused, keeping the running configuration: {problem}",
                    problem=problem,
                    outcome="invalid",
                )
                return ReloadResult(error=problem)
            config = dataclasses.replace(config, tls=new.tls)
            result.applied.extend(tlsKeys)
        if "server.domains" in changed:
            self._setDomains(new.server.domains)
            config = dataclasses.replace(
                config, server=dataclasses.replace(config.server, domains=new.server.domains)
            )
            result.applied.append("server.domains")
        for attribute, section in LIVE_SECTIONS.items():
            keys = [k for k in changed if k.startswith(section + ".")]
            if keys:
                config = dataclasses.replace(config, **{attribute: getattr(new, attribute)})
                result.applied.extend(keys)
        result.restartNeeded = [k for k in changed if k not in LIVE_KEYS]
        self.service.config = config
        self._recheckFiles()
        log.info(
            "Reloaded {source}: {applied} applied",
            source=old.source,
            applied=", ".join(result.applied) or "no changed keys",
            outcome="ok",
        )
        if result.restartNeeded:
            log.warn(
                "Changed keys that need a restart to take effect: {keys}",
                keys=", ".join(result.restartNeeded),
            )
        return result

    def _swapCertificate(self, new: Config) -> Optional[str]:
        """
        Point the shared TLS creator at the new files, after checking that
        they load; the problem if they do not.
        """
        from mailsrv.tls import _fileStamp, loadCertificateOptions

        tls = self.service.tls
        if new.tls.cert is None or new.tls.key is None:
            return None if tls.certPath.parent == new.server.dataDir / "tls" else (
                "removing [tls] cert/key needs a restart"
            )
        try:
            options = loadCertificateOptions(new.tls.cert, new.tls.key)
        except ValueError as e:
            return str(e)
        # ServerTLS keeps checking these paths for renewals from now on.
        tls.certPath, tls.keyPath = new.tls.cert, new.tls.key
        tls._options = options
        tls._stamp = (_fileStamp(new.tls.cert), _fileStamp(new.tls.key))
        log.info("TLS certificate loaded from {cert}", cert=str(new.tls.cert))
        return None

    def _setDomains(self, domains: tuple[str, ...]) -> None:
        directory = self.service.directory
        directory._configuredDomains = frozenset(domains)
        # Domains of accounts and aliases are added at the next file check.
        directory._localDomains = frozenset(domains) | {
            a.rpartition("@")[2] for a in list(directory._accounts) + list(directory._aliases)
        }

    def _recheckFiles(self) -> None:
        """
        Re-check every watched file now instead of at the next use.
        """
        tls = self.service.tls
        tls._lastCheck = float("-inf")
        tls.context()
        for name in ("directory", "quota", "dkim"):
            target = getattr(self.service, name, None)
            recheck = getattr(target, "reload", None) or getattr(target, "_maybeReload", None)
            if callable(recheck):
                try:
                    recheck()
                except Exception:
                    log.failure("Reload of {name} failed", name=name)


class ReloadService(Service):
    """
    Installs the C{SIGHUP} handler and keeps the pidfile while the server
    runs.

    @param reactor: signals are turned into a reload on the reactor thread
        with C{callFromThread}, which is safe to call from a signal handler.
    @param installSignal: tests running in-process pass C{False}.
    """

    name = "reload"

    def __init__(self, reloader: Reloader, pidfile: Path, reactor: IReactorCore, installSignal: bool = True) -> None:
        self.reloader = reloader
        self.pidfile = pidfile
        self.reactor = reactor
        self.installSignal = installSignal
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        try:
            self.pidfile.parent.mkdir(parents=True, exist_ok=True)
            self.pidfile.write_text(f"{os.getpid()}\n")
        except OSError as e:
            log.warn("Cannot write {pidfile}: {problem}; `mailsrv reload` will not find the server",
                     pidfile=str(self.pidfile), problem=e.strerror)
        if self.installSignal:
            self._previous = signal.signal(signal.SIGHUP, self._onSignal)

    def _onSignal(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self._reload)  # type: ignore[attr-defined]

    def _reload(self) -> None:
        log.info("SIGHUP: reloading")
        # Type=notify units: systemctl reload waits for READY=1 again.
        systemd.notify("RELOADING=1")
        try:
            self.reloader.reload()
        except Exception:
            log.failure("Reload failed; the running configuration stays in force")
        finally:
            systemd.notify("READY=1")

    def stopService(self) -> None:
        super().stopService()
        if self.installSignal and self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
        try:
            if self.pidfile.read_text().strip() == str(os.getpid()):
                self.pidfile.unlink()
        except OSError:
            pass


def signalRunningServer(config: Config) -> int:
    """
    Send C{SIGHUP} to the server whose pidfile is in C{config}'s state
    directory; the process id signalled.

    @raise LookupError: with a message for the operator if no server runs.
    """
    path = pidfilePath(config)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        raise LookupError(f"no running server: cannot read a process id from {path}") from None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise LookupError(f"no running server: process {pid} from {path} does not exist") from None
    except PermissionError:
        raise LookupError(f"not allowed to signal process {pid}: run as the server's user or root") from None
    return pid
