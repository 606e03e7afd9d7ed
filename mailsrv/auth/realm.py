# -*- test-case-name: tests.auth.test_realm -*-
"""
The one realm behind the one portal.

Each protocol registers a factory for the avatar interface it asks for
(C{IAuthenticatedUser} for SMTP, Twisted's IMAP C{IAccount}, a POP3
mailbox), so the realm needs to know nothing about protocols and one
account logs in the same way everywhere.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.cred.portal import IRealm
from zope.interface import Interface, implementer

from mailsrv.interfaces import IAuthenticatedUser

AvatarFactory = Callable[[str], Any]


@implementer(IAuthenticatedUser)
class AuthenticatedUser:
    def __init__(self, account: str) -> None:
        self.account = account

    def __repr__(self) -> str:
        return f"AuthenticatedUser({self.account!r})"


@implementer(IRealm)
class MailRealm:
    """
    Hands out one avatar per requested interface for an account id.
    """

    def __init__(self) -> None:
        self._factories: dict[type[Interface], tuple[AvatarFactory, Optional[Callable[[Any], None]]]] = {}
        self.registerAvatarFactory(IAuthenticatedUser, AuthenticatedUser)

    def registerAvatarFactory(
        self,
        interface: type[Interface],
        factory: AvatarFactory,
        logout: Optional[Callable[[Any], None]] = None,
    ) -> None:
        """
        @param factory: called with the account id, returns an avatar
            providing C{interface}.
        @param logout: called with the avatar when the session ends.
        """
        self._factories[interface] = (factory, logout)

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: type[Interface]) -> tuple[Any, Any, Callable[[], None]]:
        account = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        for interface in interfaces:
            if interface in self._factories:
                factory, logout = self._factories[interface]
                avatar = factory(account)
                if logout is None:
                    return interface, avatar, lambda: None
                return interface, avatar, lambda: logout(avatar)
        raise NotImplementedError(f"no avatar for {interfaces!r}")
