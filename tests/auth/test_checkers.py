# -*- test-case-name: tests.auth.test_checkers -*-
"""
Tests for L{mailsrv.auth.checkers.AccountChecker}.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import threads
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailsrv.auth.checkers import AccountChecker
from mailsrv.auth.passwords import TIMING_DUMMY_HASH, verifyPassword
from mailsrv.interfaces import IDirectory


@implementer(IDirectory)
class MemoryDirectory:
    """
    An IDirectory over a dict of account -> hash.
    """

    def __init__(self, hashes: dict[str, str]) -> None:
        self.hashes = hashes

    def isLocalDomain(self, domain: str) -> bool:
        return True

    def expandRecipient(self, address: str) -> list[str]:
        return [address] if address in self.hashes else []

    def passwordHash(self, account: str) -> Optional[str]:
        return self.hashes.get(account.lower())

    def canonicalAccount(self, login: str) -> Optional[str]:
        return login.lower() if login.lower() in self.hashes else None


class RecordingThreads:
    """
    A synchronous stand-in for deferToThread that records what it ran.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def __call__(self, f: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        self.calls.append((f, args))
        return maybeDeferred(f, *args)


class AccountCheckerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = MemoryDirectory({"alice@example.test": "{PLAIN}s3cret"})
        self.threads = RecordingThreads()
        self.checker = AccountChecker(self.directory, deferToThread=self.threads)

    def test_interface(self) -> None:
        """
        AccountChecker provides ICredentialsChecker for username/password.
        """
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker))

    def test_successBytes(self) -> None:
        """
        Correct bytes credentials give the canonical account id (str), with
        the login matched case-insensitively; verification ran through the
        thread function.
        """
        d = self.checker.requestAvatarId(UsernamePassword(b"Alice@Example.TEST", b"s3cret"))
        self.assertEqual(self.successResultOf(d), "alice@example.test")
        self.assertEqual(self.threads.calls, [(verifyPassword, (b"s3cret", "{PLAIN}s3cret"))])

    def test_successStr(self) -> None:
        """
        str credentials are accepted too.
        """
        d = self.checker.requestAvatarId(UsernamePassword("alice@example.test", "s3cret"))  # type: ignore[arg-type]
        self.assertEqual(self.successResultOf(d), "alice@example.test")

    def test_wrongPassword(self) -> None:
        """
        A wrong password fails with UnauthorizedLogin("Authentication failed").
        """
        d = self.checker.requestAvatarId(UsernamePassword(b"alice@example.test", b"nope"))
        failure = self.failureResultOf(d, UnauthorizedLogin)
        self.assertEqual(str(failure.value), "Authentication failed")

    def test_unknownUserSameFailureAndCost(self) -> None:
        """
        An unknown user fails exactly like a wrong password, after verifying
        the password against the dummy hash (so it takes as long).
        """
        d = self.checker.requestAvatarId(UsernamePassword(b"mallory@example.test", b"x"))
        failure = self.failureResultOf(d, UnauthorizedLogin)
        self.assertEqual(str(failure.value), "Authentication failed")
        self.assertEqual(self.threads.calls, [(verifyPassword, (b"x", TIMING_DUMMY_HASH))])

    def test_undecodableLogin(self) -> None:
        """
        A login name that is not UTF-8 is an unknown user, not a crash.
        """
        d = self.checker.requestAvatarId(UsernamePassword(b"\xff\xfe", b"x"))
        self.failureResultOf(d, UnauthorizedLogin)
        self.assertEqual(len(self.threads.calls), 1)

    def test_defaultRunsInThreadPool(self) -> None:
        """
        Without an injected function, verification goes to Twisted's
        deferToThread, off the reactor thread.
        """
        checker = AccountChecker(self.directory)
        self.assertIs(checker._deferToThread, threads.deferToThread)

    def test_waitsForVerification(self) -> None:
        """
        The result waits for the threaded verification: nothing fires until
        the thread's Deferred does.
        """
        pending: list[Deferred[Any]] = []

        def neverRuns(f: Callable[..., Any], *args: Any) -> "Deferred[Any]":
            d: Deferred[Any] = Deferred()
            pending.append(d)
            return d

        checker = AccountChecker(self.directory, deferToThread=neverRuns)
        d = checker.requestAvatarId(UsernamePassword(b"alice@example.test", b"s3cret"))
        self.assertNoResult(d)
        pending[0].callback(True)
        self.assertEqual(self.successResultOf(d), "alice@example.test")

    def test_injectedVerify(self) -> None:
        """
        The verify function is injectable; its verdict decides.
        """
        seen: list[tuple[bytes, str]] = []

        def verify(password: bytes, stored: str) -> bool:
            seen.append((password, stored))
            return password == b"magic"

        checker = AccountChecker(self.directory, verify=verify, deferToThread=self.threads)
        self.assertEqual(
            self.successResultOf(checker.requestAvatarId(UsernamePassword(b"alice@example.test", b"magic"))),
            "alice@example.test",
        )
        self.failureResultOf(
            checker.requestAvatarId(UsernamePassword(b"alice@example.test", b"s3cret")),
            UnauthorizedLogin,
        )
        self.assertEqual(seen[0], (b"magic", "{PLAIN}s3cret"))

    def test_logsOutcomeWithoutPassword(self) -> None:
        """
        One event per attempt, with account and outcome fields, and the
        password nowhere in it.
        """
        with capturedLogs() as events:
            self.failureResultOf(
                self.checker.requestAvatarId(UsernamePassword(b"alice@example.test", b"pw-NOPE1")),
                UnauthorizedLogin,
            )
            self.failureResultOf(
                self.checker.requestAvatarId(UsernamePassword(b"bob@example.test", b"pw-NOPE2")),
                UnauthorizedLogin,
            )
            self.successResultOf(
                self.checker.requestAvatarId(UsernamePassword(b"alice@example.test", b"s3cret"))
            )
        outcomes = [(e["account"], e["outcome"]) for e in events if "outcome" in e]
        self.assertEqual(
            outcomes,
            [
                ("alice@example.test", "bad-password"),
                ("bob@example.test", "unknown-user"),
                ("alice@example.test", "success"),
            ],
        )
        for event in events:
            self.assertNotIn("NOPE", repr(event))
            self.assertNotIn("s3cret", repr(event))

    def test_threadFailurePropagates(self) -> None:
        """
        If verification cannot run at all (thread pool stopped), the error is
        not disguised as a wrong password: it propagates so the protocol can
        answer with a temporary failure.
        """

        def broken(f: Callable[..., Any], *args: Any) -> "Deferred[Any]":
            return maybeDeferred(lambda: 1 / 0)

        checker = AccountChecker(self.directory, deferToThread=broken)
        d = checker.requestAvatarId(UsernamePassword(b"alice@example.test", b"s3cret"))
        self.failureResultOf(d, ZeroDivisionError)
