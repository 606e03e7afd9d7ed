# -*- test-case-name: tests.auth.test_throttle -*-
"""
Failed-login throttling for every protocol (Fail2ban, built in).

All three protocols log in through the one portal, with the connection's
L{mailsrv.envelope.Session} as the mind, so wrapping the portal is enough to
count failures for SMTP AUTH, IMAP LOGIN/AUTHENTICATE and POP3 USER/PASS
alike.

Failures are counted per client network (an IPv4 address, or the /64 of an
IPv6 address, since one IPv6 client usually owns a whole /64) and per
account:

 - a network with C{maxFailures} failures within C{window} seconds is
   banned for C{banTime} seconds: every login from it is refused, even with
   the right password, without checking the password;
 - an account with C{maxAccountFailures} failures within C{window} (from
   any number of networks: distributed guessing) is under attack, and each
   further network that fails on it is banned at once.

A successful login is never delayed and never counted.  Bans are kept in
memory and in a JSON file (C{data_dir/state/bans.json}) so that a restart
keeps them; the C{mailsrv ban} command edits the same file under the same
lock, and the server re-reads it when it changes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import ipaddress
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence, Union

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

if TYPE_CHECKING:
    from mailsrv.config.schema import Config

BAN_FILE_VERSION = 1

# Bound the memory an attacker with many addresses can make us use: past
# this many tracked networks (or accounts), the least recently failing ones
# are forgotten.
MAX_TRACKED = 100_000

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def networkFor(host: str) -> Optional[str]:
    """
    The key failures and bans are counted under: the IPv4 address, or the
    /64 network of an IPv6 address (IPv4-mapped IPv6 addresses count as
    IPv4), as text.  L{None} when C{host} is not an IP address (a UNIX
    socket, say), which is then never throttled.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def parseBanKey(text: str) -> str:
    """
    The ban key for an address or network an operator typed (C{mailsrv ban
    del 2001:db8::1} finds the ban of C{2001:db8::/64}).

    @raise ValueError: if C{text} is neither an address nor a network.
    """
    if "/" in text:
        network = ipaddress.ip_network(text, strict=False)
        if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 64:
            return str(ipaddress.IPv6Network(f"{network.network_address}/64", strict=False))
        return str(network) if network.num_addresses > 1 else str(network.network_address)
    key = networkFor(text)
    if key is None:
        raise ValueError(f"{text!r} is not an IP address")
    return key


@dataclasses.dataclass(frozen=True)
class Ban:
    """
    @ivar key: the banned address or network (see L{networkFor}).
    @ivar until: POSIX time the ban ends.
    @ivar reason: why, for C{mailsrv ban list}.
    """

    key: str
    until: float
    reason: str = ""


def banFilePath(config: "Config") -> Path:
    """
    Where the server and the C{mailsrv ban} command keep the bans.
    """
    return config.server.stateDir / "bans.json"


class BanFile:
    """
    The persisted ban list: a small JSON file replaced atomically, with
    read-modify-write cycles serialised by an advisory lock on a sibling
    C{.lock} file, shared by the server and the C{mailsrv ban} command.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lockPath = path.with_name(path.name + ".lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._lockPath, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def stamp(self) -> Optional[tuple[int, int, int]]:
        """
        What changes when the file is replaced (for cheap change checks).
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> dict[str, Ban]:
        """
        The bans in the file; a missing file is an empty list.

        @raise ValueError: if the file is not a ban list.
        """
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict) or data.get("version") != BAN_FILE_VERSION:
            raise ValueError(f"{self.path}: not a version {BAN_FILE_VERSION} ban list")
        bans = {}
        for key, entry in dict(data.get("bans", {})).items():
            bans[key] = Ban(key, float(entry["until"]), str(entry.get("reason", "")))
        return bans

    def write(self, bans: Iterable[Ban]) -> None:
        """
        Replace the file with C{bans} (call while holding L{locked}).
        """
        payload = {
            "version": BAN_FILE_VERSION,
            "bans": {b.key: {"until": b.until, "reason": b.reason} for b in sorted(bans, key=lambda b: b.key)},
        }
        fd, tmp = tempfile.mkstemp(prefix=".bans.", dir=str(self.path.parent))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(payload, f, indent=1)
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def remove(self, key: str) -> bool:
        """
        Lift a ban; whether there was one.
        """
        with self.locked():
            bans = self.read()
            if key not in bans:
                return False
            del bans[key]
            self.write(bans.values())
            return True


class AuthThrottle:
    """
    Counts failed logins and keeps the bans (see the module docstring).

    @param clock: the time source (the reactor in production).
    @param banFile: where bans persist, or L{None} to keep them in memory
        only.
    @param exempt: networks never throttled (monitoring hosts, say).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        maxFailures: int = 10,
        window: float = 600.0,
        banTime: float = 3600.0,
        maxAccountFailures: int = 100,
        banFile: Optional[BanFile] = None,
        exempt: Sequence[str] = (),
    ) -> None:
        self._clock = clock
        self.maxFailures = maxFailures
        self.window = window
        self.banTime = banTime
        self.maxAccountFailures = maxAccountFailures
        self._banFile = banFile
        self._exempt: list[IPNetwork] = [ipaddress.ip_network(n, strict=False) for n in exempt]
        self._byNetwork: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._byAccount: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._bans: dict[str, Ban] = {}
        self._stamp: Optional[tuple[int, int, int]] = None
        self._reload()

    # ------------------------------------------------------------ bans

    def _reload(self) -> None:
        """
        Re-read the ban file if it changed (another process, or a restart).
        """
        if self._banFile is None:
            return
        stamp = self._banFile.stamp()
        if stamp == self._stamp:
            return
        try:
            self._bans = self._banFile.read()
        except (ValueError, KeyError, TypeError, OSError) as e:
            self.log.error("Cannot read ban list {path}: {problem}", path=str(self._banFile.path), problem=str(e))
            return
        self._stamp = stamp

    def bans(self) -> list[Ban]:
        """
        The bans in force now.
        """
        self._reload()
        now = self._clock.seconds()
        return sorted((b for b in self._bans.values() if b.until > now), key=lambda b: b.key)

    def banFor(self, host: str) -> Optional[Ban]:
        """
        The ban refusing logins from C{host} now, if any.
        """
        key = networkFor(host)
        if key is None:
            return None
        self._reload()
        ban = self._bans.get(key)
        if ban is None or ban.until <= self._clock.seconds():
            return None
        return ban

    def _ban(self, key: str, reason: str) -> Ban:
        now = self._clock.seconds()
        ban = Ban(key, now + self.banTime, reason)
        self._bans[key] = ban
        self._byNetwork.pop(key, None)
        if self._banFile is not None:
            try:
                with self._banFile.locked():
                    current = {k: b for k, b in self._banFile.read().items() if b.until > now}
                    current[key] = ban
                    self._banFile.write(current.values())
                self._bans = current
                self._stamp = self._banFile.stamp()
            except (ValueError, KeyError, TypeError, OSError) as e:
                # The ban still holds in memory until the next restart.
                self.log.error(
                    "Cannot save ban list {path}: {problem}", path=str(self._banFile.path), problem=str(e)
                )
        return ban

    # -------------------------------------------------------- failures

    def isExempt(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return True
        return any(address in n for n in self._exempt)

    def _count(self, table: "collections.OrderedDict[str, collections.deque[float]]", key: str, now: float) -> int:
        times = table.pop(key, None) or collections.deque()
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        table[key] = times  # most recently failing last
        while len(table) > MAX_TRACKED:
            table.popitem(last=False)
        return len(times)

    def recordFailure(self, host: str, account: Optional[str]) -> Optional[Ban]:
        """
        Count one failed login from C{host} for C{account} (the login name
        as given, or L{None}); returns the ban it caused, if any.
        """
        key = networkFor(host)
        if key is None or self.isExempt(host):
            return None
        now = self._clock.seconds()
        failures = self._count(self._byNetwork, key, now)
        accountFailures = 0
        if account:
            accountFailures = self._count(self._byAccount, account.lower(), now)
        reason = None
        if failures >= self.maxFailures:
            reason = f"{failures} failed logins in {self.window:g}s"
        elif accountFailures >= self.maxAccountFailures:
            reason = f"failed login for {account}, which had {accountFailures} failures in {self.window:g}s"
        if reason is None:
            return None
        ban = self._ban(key, reason)
        self.log.warn(
            "Banned {network} from logging in for {banTime:g}s: {reason}",
            network=key,
            banTime=self.banTime,
            reason=reason,
            account=account,
            peer=host,
        )
        return ban


class LoginBanned(UnauthorizedLogin):
    """
    The client's network is banned: the login fails like a wrong password
    (the protocols answer it the same way, so a guesser learns nothing).
    """


class ThrottledPortal(Portal):
    """
    The one portal, refusing logins from banned networks and counting
    failed ones.  The mind must be the connection's
    L{mailsrv.envelope.Session} (anything with a C{peerHost}); logins
    without one are passed through untouched.
    """

    log = Logger()

    def __init__(self, realm: IRealm, checkers: Iterable[Any], throttle: AuthThrottle) -> None:
        super().__init__(realm, checkers)
        self.throttle = throttle

    def login(self, credentials: Any, mind: Any, *interfaces: Any) -> "Deferred[Any]":
        host = getattr(mind, "peerHost", None)
        if not isinstance(host, str) or self.throttle.isExempt(host):
            return super().login(credentials, mind, *interfaces)
        account = _loginName(credentials)
        ban = self.throttle.banFor(host)
        if ban is not None:
            self.log.info(
                "Login for {account} from {peer} refused: {network} is banned until {until:.0f}",
                account=account,
                peer=host,
                network=ban.key,
                until=ban.until,
                outcome="banned",
                sessionId=getattr(mind, "sessionId", None),
            )
            d: Deferred[Any] = Deferred()
            d.errback(LoginBanned("Authentication failed"))
            return d

        def failed(failure: Any) -> Any:
            if failure.check(UnauthorizedLogin):
                self.throttle.recordFailure(host, account)
            return failure

        return super().login(credentials, mind, *interfaces).addErrback(failed)


def _loginName(credentials: Any) -> Optional[str]:
    name = getattr(credentials, "username", None)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if not isinstance(name, str) or not name:
        return None
    return name[:320]
