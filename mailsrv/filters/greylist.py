# -*- test-case-name: tests.filters.test_greylist -*-
"""
Greylisting (off by default, as in docker-mailserver): the first attempt
of each (client network, sender, recipient) triplet is refused at RCPT with
C{450 4.7.1}; a retry after C{delay} seconds passes.  Real mail servers
retry; much spamware does not.

The client is taken by network (IPv4 /24, IPv6 /64), as postgrey does,
because big senders retry from another host of the same pool.  A client
network with C{auto_whitelist} successful retries skips greylisting from
then on.  Authenticated sessions, submission endpoints and the
C{whitelist} networks are never greylisted.

The state survives restarts in C{data_dir/state/greylist.json}, written
(atomically: temporary file, fsync, rename) a moment after it changes
rather than on every RCPT, and when the server stops; losing the last
seconds of it in a crash only means one more retry for a few senders.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from mailsrv.envelope import Address, Envelope, Session
from mailsrv.filters.base import Filter
from mailsrv.interfaces import ACCEPT, FilterAction, FilterResult
from mailsrv.policy.endpoint import Protocol

if TYPE_CHECKING:
    from mailsrv.config.schema import Config

STATE_VERSION = 1

# Bounds on the state, against a flood of forged triplets; the entries seen
# longest ago go first.
MAX_TRIPLETS = 200_000
MAX_CLIENTS = 50_000

# Seconds between a change and writing the state file.
SAVE_DELAY = 5.0

GREYLISTED = "Greylisted, please try again later"


def clientNetwork(address: str) -> str:
    """
    The network a client is greylisted by: its IPv4 /24 or IPv6 /64
    (IPv4-mapped IPv6 addresses count as IPv4).
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is None:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        ip = ip.ipv4_mapped
    return str(ipaddress.ip_network(f"{ip}/24", strict=False))


class Greylist:
    """
    The greylisting decisions and their state.

    Triplets map to C{[firstSeen, lastSeen, passed]}; client networks to
    C{[passedRetries, lastSeen]}.

    @param path: the state file, or L{None} to keep the state in memory.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        path: Optional[Path] = None,
        delay: float = 300.0,
        retryWindow: float = 2 * 86400.0,
        expiry: float = 35 * 86400.0,
        autoWhitelist: int = 5,
        whitelist: Sequence[str] = (),
    ) -> None:
        self.clock = clock
        self.path = path
        self.delay = delay
        self.retryWindow = retryWindow
        self.expiry = expiry
        self.autoWhitelist = autoWhitelist
        self.whitelist = [ipaddress.ip_network(n, strict=False) for n in whitelist]
        self.triplets: dict[str, list[Any]] = {}
        self.clients: dict[str, list[Any]] = {}
        self._saveCall: Optional[IDelayedCall] = None
        if path is not None:
            self._load(path)

    # -- decisions ------------------------------------------------------

    def whitelisted(self, peer: str) -> bool:
        """
        Whether C{peer} is in a configured whitelist network or its network
        was auto-whitelisted (and has been seen within C{expiry}).
        """
        try:
            ip = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            ip = None
        if ip is not None and any(ip in n for n in self.whitelist):
            return True
        if not self.autoWhitelist:
            return False
        now = self.clock.seconds()
        entry = self.clients.get(clientNetwork(peer))
        if entry is None or now - entry[1] > self.expiry or entry[0] < self.autoWhitelist:
            return False
        entry[1] = now
        self._changed()
        return True

    def check(self, peer: str, sender: str, recipient: str) -> bool:
        """
        Record an attempt and say whether it may pass.
        """
        now = self.clock.seconds()
        network = clientNetwork(peer)
        key = "\0".join((network, sender.lower(), recipient.lower()))
        entry = self.triplets.get(key)
        if entry is not None:
            first, last, passed = entry
            if passed and now - last <= self.expiry:
                entry[1] = now
                self._changed()
                return True
            if not passed and now - first <= self.retryWindow:
                if now - first < self.delay:
                    return False
                entry[1:] = [now, True]
                client = self.clients.setdefault(network, [0, now])
                client[0] += 1
                client[1] = now
                self._changed()
                return True
        # New, or forgotten (expired): start over.
        self.triplets.pop(key, None)
        self.triplets[key] = [now, now, False]
        self._changed()
        return self.delay <= 0

    # -- state ----------------------------------------------------------

    def _changed(self) -> None:
        if self.path is not None and self._saveCall is None:
            self._saveCall = self.clock.callLater(SAVE_DELAY, self.save)

    def prune(self) -> None:
        """
        Forget expired entries, then the oldest ones above the bounds.
        """
        now = self.clock.seconds()
        self.triplets = {
            k: v
            for k, v in self.triplets.items()
            if (now - v[1] <= self.expiry if v[2] else now - v[0] <= self.retryWindow)
        }
        self.clients = {k: v for k, v in self.clients.items() if now - v[1] <= self.expiry}
        for table, bound in ((self.triplets, MAX_TRIPLETS), (self.clients, MAX_CLIENTS)):
            if len(table) > bound:
                for key in sorted(table, key=lambda k: table[k][1])[: len(table) - bound]:
                    del table[key]

    def save(self) -> None:
        """
        Write the state file now (atomically).
        """
        if self._saveCall is not None and self._saveCall.active():
            self._saveCall.cancel()
        self._saveCall = None
        if self.path is None:
            return
        self.prune()
        data = {"version": STATE_VERSION, "triplets": self.triplets, "clients": self.clients}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            self.log.error("Cannot write greylist state {path}: {error}", path=str(self.path), error=str(e))

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            # Losing greylist state only delays some mail once more.
            self.log.error("Greylist state {path} unreadable, starting empty: {error}", path=str(path), error=str(e))
            return
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            self.log.error("Greylist state {path} has an unknown format, starting empty", path=str(path))
            return
        self.triplets = {
            k: [float(v[0]), float(v[1]), bool(v[2])]
            for k, v in data.get("triplets", {}).items()
            if isinstance(v, list) and len(v) == 3
        }
        self.clients = {
            k: [int(v[0]), float(v[1])] for k, v in data.get("clients", {}).items() if isinstance(v, list) and len(v) == 2
        }
        self.prune()


class GreylistFilter(Filter):
    """
    Greylists each recipient of mail from the world, at RCPT.
    """

    name = "greylist"
    log = Logger()

    def __init__(self, greylist: Greylist) -> None:
        self.greylist = greylist

    def checkRecipient(
        self, session: Session, envelope: Envelope, recipient: Address
    ) -> "defer.Deferred[FilterResult]":
        if session.endpoint.protocol is not Protocol.SMTP or session.authenticatedAs is not None:
            return defer.succeed(ACCEPT)
        if self.greylist.whitelisted(session.peerHost):
            return defer.succeed(ACCEPT)
        sender = str(envelope.mailFrom) if envelope.mailFrom is not None else ""
        if self.greylist.check(session.peerHost, sender, str(recipient)):
            return defer.succeed(ACCEPT)
        self.log.info(
            "Greylisted {peer} from {mailFrom} to {rcpt}",
            peer=session.peerHost,
            mailFrom=sender or "<>",
            rcpt=str(recipient),
            sessionId=session.sessionId,
            endpoint=session.endpoint.name,
            msgId=envelope.messageId,
        )
        return defer.succeed(FilterResult(FilterAction.TEMPFAIL, GREYLISTED, reason="greylisted"))


def greylistFilters(config: "Config", reactor: Any) -> list[GreylistFilter]:
    """
    The greylisting filter when C{[greylist] enabled}, its state in
    C{data_dir/state/greylist.json}.
    """
    settings = config.greylist
    if not settings.enabled:
        return []
    greylist = Greylist(
        reactor,
        config.server.stateDir / "greylist.json",
        delay=settings.delay,
        retryWindow=settings.retryWindow,
        expiry=settings.expiry,
        autoWhitelist=settings.autoWhitelist,
        whitelist=settings.whitelist,
    )
    # What changed in the last moments is written when the server stops.
    reactor.addSystemEventTrigger("before", "shutdown", greylist.save)
    return [GreylistFilter(greylist)]
