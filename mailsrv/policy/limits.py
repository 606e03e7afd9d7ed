# -*- test-case-name: tests.test_policy_limits -*-
"""
Connection counting: a cap on simultaneous connections overall and per
client address, so that one client cannot take every slot.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Iterable


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
