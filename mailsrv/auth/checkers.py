# -*- test-case-name: tests.auth.test_checkers -*-
"""
The cred checker for user name and password logins (SMTP AUTH PLAIN/LOGIN,
IMAP LOGIN, POP3 USER/PASS) against the L{IDirectory}.
"""

from __future__ import annotations

from typing import Any, Callable, Union

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.auth.passwords import TIMING_DUMMY_HASH, verifyPassword
from mailsrv.interfaces import IDirectory

# Longer login names are refused without a lookup and logged shortened.
_MAX_LOGIN = 320


def _asText(value: Union[str, bytes]) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def _asBytes(value: Union[str, bytes]) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


@implementer(ICredentialsChecker)
class AccountChecker:
    """
    Checks L{IUsernamePassword} credentials against the accounts of an
    L{IDirectory}; the avatar id is the canonical account id (C{str}).

    Password hashing is slow on purpose, so it runs off the reactor thread.
    An unknown user and a wrong password fail the same way
    (C{UnauthorizedLogin("Authentication failed")}) and cost the same: for
    an unknown user a dummy hash of the default scheme is verified, so that
    response times do not tell which accounts exist.

    @param verify: C{verify(password: bytes, stored: str) -> bool}.
    @param deferToThread: runs C{verify} away from the reactor and returns a
        L{Deferred}; tests pass a synchronous stand-in.
    @param dummyHash: the hash verified for unknown users.
    """

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()

    def __init__(
        self,
        directory: IDirectory,
        verify: Callable[[bytes, str], bool] = verifyPassword,
        deferToThread: Callable[..., "Deferred[Any]"] = threads.deferToThread,
        dummyHash: str = TIMING_DUMMY_HASH,
    ) -> None:
        self._directory = directory
        self._verify = verify
        self._deferToThread = deferToThread
        self._dummyHash = dummyHash

    def requestAvatarId(self, credentials: IUsernamePassword) -> "Deferred[str]":
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IUsernamePassword) -> str:
        password = _asBytes(credentials.password)
        try:
            login = _asText(credentials.username)
        except UnicodeDecodeError:
            login = None
        account = None
        stored = None
        if login is not None and len(login) <= _MAX_LOGIN:
            account = self._directory.canonicalAccount(login)
            if account is not None:
                stored = self._directory.passwordHash(account)
        shownLogin = (login or repr(credentials.username))[:_MAX_LOGIN]

        if account is None or stored is None:
            await self._deferToThread(self._verify, password, self._dummyHash)
            self._logOutcome(shownLogin, "unknown-user")
            raise UnauthorizedLogin("Authentication failed")

        if await self._deferToThread(self._verify, password, stored):
            self._logOutcome(account, "success")
            return account
        self._logOutcome(account, "bad-password")
        raise UnauthorizedLogin("Authentication failed")

    def _logOutcome(self, account: str, outcome: str) -> None:
        self.log.info(
            "Password login for {account}: {outcome}", account=account, outcome=outcome
        )
