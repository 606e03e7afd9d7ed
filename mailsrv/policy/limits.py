# -*- test-case-name: tests.test_policy_limits -*-
"""
Connection counting: a cap on simultaneous connections overall and per
client address, so that one client cannot take every slot
(L{ConnectionLimiter}, one per protocol), and a cap on logged-in sessions
per account and client address (L{UserAddressLimiter}, Dovecot's
C{mail_max_userip_connections}).

The address counted is the one the protocol sees in C{connectionMade}: on a
PROXY protocol endpoint that is the client's address from the header, since
L{mailsrv.policy.proxy} connects the protocol only once it is parsed.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Iterable, Optional


class ConnectionLimiter:
    """
    @ivar active: connections currently counted.
    """

    def __init__(self, maxTotal: int, maxPerAddress: int, exceptions: Iterable[str] = ()) -> None:
        self.maxTotal = maxTotal
        self.maxPerAddress = maxPerAddress
        self._exceptions = [ipaddress.ip_network(n, strict=False) for n in exceptions]
        self._perAddress: Counter[str] = Counter()
        self.active = 0

    def _exempt(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._exceptions)

    def acquire(self, address: str) -> bool:
        """
        Count a new connection from C{address}; L{False} (and nothing
        counted) when a limit is reached.
        """
        if self.active >= self.maxTotal:
            return False
        if self._perAddress[address] >= self.maxPerAddress and not self._exempt(address):
            return False
        self.active += 1
        self._perAddress[address] += 1
        return True

    def release(self, address: str) -> None:
        self.active -= 1
        self._perAddress[address] -= 1
        if self._perAddress[address] <= 0:
            del self._perAddress[address]


class UserAddressLimiter:
    """
    Counts logged-in sessions per (account, client address).  Unlike
    L{ConnectionLimiter} there are no exempt networks: like Dovecot's
    C{mail_max_userip_connections} it applies to loopback too (a webmail on
    the same machine is one client address for all its users, but each
    user's own sessions are still capped).

    @ivar maxPerUserAddress: sessions allowed per pair; 0 for no limit.
    """

    def __init__(self, maxPerUserAddress: int) -> None:
        self.maxPerUserAddress = maxPerUserAddress
        self._sessions: Counter[tuple[str, str]] = Counter()

    def acquire(self, account: str, address: str) -> bool:
        """
        Count a session of C{account} from C{address}; L{False} (and
        nothing counted) when the pair already has the maximum.
        """
        key = (account.lower(), address)
        if self.maxPerUserAddress and self._sessions[key] >= self.maxPerUserAddress:
            return False
        self._sessions[key] += 1
        return True

    def release(self, account: str, address: str) -> None:
        key = (account.lower(), address)
        self._sessions[key] -= 1
        if self._sessions[key] <= 0:
            del self._sessions[key]

    def count(self, account: str, address: str) -> int:
        return self._sessions.get((account.lower(), address), 0)


class SessionSlots:
    """
    The places one session holds in the counts: its connection (in a
    L{ConnectionLimiter}) from when it is admitted, and its account and
    address (in a L{UserAddressLimiter}) from its login; both given back
    together by L{release} when the connection is lost.  Either limiter
    may be L{None} (not counted).
    """

    def __init__(
        self,
        connections: Optional[ConnectionLimiter] = None,
        userAddresses: Optional[UserAddressLimiter] = None,
    ) -> None:
        self._connections = connections
        self._userAddresses = userAddresses
        self._address: Optional[str] = None
        self._login: Optional[tuple[str, str]] = None

    @property
    def maxPerUserAddress(self) -> int:
        return self._userAddresses.maxPerUserAddress if self._userAddresses is not None else 0

    def admitConnection(self, address: str) -> bool:
        """
        Count the connection from C{address}; L{False} (nothing counted)
        when a connection limit is reached.
        """
        if self._connections is None:
            return True
        if not self._connections.acquire(address):
            return False
        self._address = address
        return True

    def admitLogin(self, account: str, address: str) -> bool:
        """
        Count the session of C{account} from C{address}; L{False} (nothing
        counted) when the pair already has C{max_connections_per_user_ip}.
        """
        if self._userAddresses is None:
            return True
        if not self._userAddresses.acquire(account, address):
            return False
        self._login = (account, address)
        return True

    def releaseLogin(self) -> None:
        """
        Give back the login's place (a login that could not go on).
        """
        if self._login is not None and self._userAddresses is not None:
            self._userAddresses.release(*self._login)
        self._login = None

    def release(self) -> None:
        """
        Give back whatever is counted; a second call does nothing.
        """
        if self._address is not None and self._connections is not None:
            self._connections.release(self._address)
        self._address = None
        self.releaseLogin()
