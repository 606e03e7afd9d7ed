# -*- test-case-name: tests.auth.test_throttle -*-
"""
Tests for L{mailsrv.auth.throttle}: failure counting, bans, persistence and
the throttled portal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from mailsrv.auth.realm import MailRealm
from mailsrv.auth.throttle import (
    AuthThrottle,
    BanFile,
    LoginBanned,
    ThrottledPortal,
    networkFor,
    parseBanKey,
)
from mailsrv.envelope import Session
from mailsrv.interfaces import IAuthenticatedUser
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode

POLICY = EndpointPolicy("imap", Protocol.IMAP, ("127.0.0.1:143",), TLSMode.NONE, auth=True)


def session(host: str) -> Session:
    return Session(endpoint=POLICY, peerHost=host)


class NetworkKeyTests(SynchronousTestCase):
    def test_ipv4(self) -> None:
        """
        An IPv4 client is counted under its own address.
        """
        self.assertEqual(networkFor("192.0.2.7"), "192.0.2.7")

    def test_ipv6Slash64(self) -> None:
        """
        IPv6 clients are counted per /64, so hopping addresses in one's own
        /64 does not reset the count.
        """
        self.assertEqual(networkFor("2001:db8:1:2::5"), "2001:db8:1:2::/64")
        self.assertEqual(networkFor("2001:db8:1:2:ffff::9"), "2001:db8:1:2::/64")
        self.assertNotEqual(networkFor("2001:db8:1:3::5"), "2001:db8:1:2::/64")

    def test_mapped(self) -> None:
        """
        An IPv4-mapped IPv6 address counts as the IPv4 address.
        """
        self.assertEqual(networkFor("::ffff:192.0.2.7"), "192.0.2.7")

    def test_notAnAddress(self) -> None:
        """
        A peer that is not an IP address (a UNIX socket) has no key.
        """
        self.assertIsNone(networkFor("unknown"))

    def test_parseBanKey(self) -> None:
        """
        What an operator types maps to the key a ban is stored under.
        """
        self.assertEqual(parseBanKey("2001:db8::1"), "2001:db8::/64")
        self.assertEqual(parseBanKey("2001:db8::/64"), "2001:db8::/64")
        self.assertEqual(parseBanKey("192.0.2.1"), "192.0.2.1")
        self.assertEqual(parseBanKey("192.0.2.1/32"), "192.0.2.1")
        self.assertRaises(ValueError, parseBanKey, "example.com")


class AuthThrottleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.throttle = AuthThrottle(self.clock, maxFailures=3, window=60, banTime=600, maxAccountFailures=5)

    def test_banAfterMaxFailures(self) -> None:
        """
        The Nth failure within the window bans the network; before it, no
        ban.
        """
        self.assertIsNone(self.throttle.recordFailure("192.0.2.1", "a@x"))
        self.assertIsNone(self.throttle.recordFailure("192.0.2.1", "a@x"))
        self.assertIsNone(self.throttle.banFor("192.0.2.1"))
        ban = self.throttle.recordFailure("192.0.2.1", "a@x")
        self.assertIsNotNone(ban)
        self.assertEqual(self.throttle.banFor("192.0.2.1"), ban)
        self.assertIsNone(self.throttle.banFor("192.0.2.2"))

    def test_windowSlides(self) -> None:
        """
        Failures older than the window are forgotten.
        """
        self.throttle.recordFailure("192.0.2.1", "a@x")
        self.throttle.recordFailure("192.0.2.1", "a@x")
        self.clock.advance(61)
        self.assertIsNone(self.throttle.recordFailure("192.0.2.1", "a@x"))
        self.assertIsNone(self.throttle.banFor("192.0.2.1"))

    def test_banExpires(self) -> None:
        """
        A ban ends after the ban time.
        """
        for _ in range(3):
            self.throttle.recordFailure("192.0.2.1", None)
        self.clock.advance(599)
        self.assertIsNotNone(self.throttle.banFor("192.0.2.1"))
        self.clock.advance(2)
        self.assertIsNone(self.throttle.banFor("192.0.2.1"))
        self.assertEqual(self.throttle.bans(), [])

    def test_ipv6Hopping(self) -> None:
        """
        Failures from different addresses of one /64 add up.
        """
        for i in range(3):
            self.throttle.recordFailure(f"2001:db8::{i + 1}", None)
        self.assertIsNotNone(self.throttle.banFor("2001:db8::ffff"))
        self.assertIsNone(self.throttle.banFor("2001:db8:0:1::1"))

    def test_distributedGuessing(self) -> None:
        """
        Once an account had maxAccountFailures failures from anywhere, each
        further network failing on it is banned at its first failure.
        """
        for i in range(4):
            self.assertIsNone(self.throttle.recordFailure(f"198.51.100.{i}", "Alice@x"))
        self.assertIsNotNone(self.throttle.recordFailure("198.51.100.200", "alice@x"))
        self.assertIsNotNone(self.throttle.recordFailure("198.51.100.201", "alice@x"))
        self.assertIsNone(self.throttle.banFor("198.51.100.1"))
        self.assertIsNone(self.throttle.recordFailure("198.51.100.202", "bob@x"))

    def test_exempt(self) -> None:
        """
        Exempt networks are never counted nor banned.
        """
        throttle = AuthThrottle(self.clock, maxFailures=1, exempt=["192.0.2.0/24"])
        self.assertIsNone(throttle.recordFailure("192.0.2.9", None))
        self.assertIsNone(throttle.banFor("192.0.2.9"))
        self.assertIsNotNone(throttle.recordFailure("198.51.100.1", None))

    def test_persisted(self) -> None:
        """
        Bans are written to the ban file and a new throttle (a restart)
        reads them back; expired bans are dropped on the next write.
        """
        path = Path(self.mktemp()) / "state" / "bans.json"
        throttle = AuthThrottle(self.clock, maxFailures=1, banTime=600, banFile=BanFile(path))
        throttle.recordFailure("192.0.2.1", None)
        data = json.loads(path.read_text())
        self.assertEqual(list(data["bans"]), ["192.0.2.1"])
        self.assertEqual(data["bans"]["192.0.2.1"]["until"], self.clock.seconds() + 600)

        restarted = AuthThrottle(self.clock, maxFailures=1, banFile=BanFile(path))
        self.assertIsNotNone(restarted.banFor("192.0.2.1"))

        self.clock.advance(601)
        restarted.recordFailure("192.0.2.2", None)
        self.assertEqual(list(json.loads(path.read_text())["bans"]), ["192.0.2.2"])

    def test_removedByOtherProcess(self) -> None:
        """
        A ban lifted in the file (by C{mailsrv ban del}) is lifted in the
        running server at its next check.
        """
        path = Path(self.mktemp()) / "bans.json"
        throttle = AuthThrottle(self.clock, maxFailures=1, banFile=BanFile(path))
        throttle.recordFailure("192.0.2.1", None)
        self.assertTrue(BanFile(path).remove("192.0.2.1"))
        self.assertFalse(BanFile(path).remove("192.0.2.1"))
        self.assertIsNone(throttle.banFor("192.0.2.1"))

    def test_corruptFile(self) -> None:
        """
        An unreadable ban file is logged and does not stop logins or bans.
        """
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not json")
        with capturedLogs() as events:
            throttle = AuthThrottle(self.clock, maxFailures=1, banFile=BanFile(path))
            self.assertIsNone(throttle.banFor("192.0.2.1"))
            self.assertIsNotNone(throttle.recordFailure("192.0.2.1", None))
            self.assertIsNotNone(throttle.banFor("192.0.2.1"))
        problems = [e for e in events if e["log_format"].startswith("Cannot")]
        self.assertTrue(problems)
        self.assertEqual(problems[0]["path"], str(path))


class ThrottledPortalTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.throttle = AuthThrottle(self.clock, maxFailures=2, window=60, banTime=100)
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"right")
        self.portal = ThrottledPortal(MailRealm(), [checker], self.throttle)

    def login(self, host: str, password: bytes) -> Any:
        return self.portal.login(UsernamePassword(b"alice", password), session(host), IAuthenticatedUser)

    def test_successNotCounted(self) -> None:
        """
        Successful logins pass through and never count.
        """
        for _ in range(5):
            iface, avatar, _ = self.successResultOf(self.login("192.0.2.1", b"right"))
            self.assertEqual(avatar.account, "alice")
        self.assertEqual(self.throttle.bans(), [])

    def test_bannedEvenWithRightPassword(self) -> None:
        """
        After maxFailures failures the right password is refused too, with
        the same error as a wrong one; another address is unaffected; after
        the ban time the right password works again.
        """
        for _ in range(2):
            self.failureResultOf(self.login("192.0.2.1", b"wrong"), UnauthorizedLogin)
        failure = self.failureResultOf(self.login("192.0.2.1", b"right"), UnauthorizedLogin)
        self.assertIsInstance(failure.value, LoginBanned)
        self.successResultOf(self.login("192.0.2.2", b"right"))
        self.clock.advance(101)
        self.successResultOf(self.login("192.0.2.1", b"right"))

    def test_noPeer(self) -> None:
        """
        A login whose mind has no peer address is not throttled.
        """
        throttle = AuthThrottle(self.clock, maxFailures=1)
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"right")
        portal = ThrottledPortal(MailRealm(), [checker], throttle)
        for _ in range(3):
            self.failureResultOf(
                portal.login(UsernamePassword(b"alice", b"wrong"), None, IAuthenticatedUser), UnauthorizedLogin
            )
        self.successResultOf(portal.login(UsernamePassword(b"alice", b"right"), None, IAuthenticatedUser))


class ConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        Throttling is on by default with the documented numbers.
        """
        from mailsrv.config.load import parseConfig

        throttle = parseConfig({}, "t").authThrottle
        self.assertEqual(
            (throttle.enabled, throttle.maxFailures, throttle.window, throttle.banTime, throttle.maxAccountFailures),
            (True, 10, 600.0, 3600.0, 100),
        )

    def test_parsed(self) -> None:
        """
        Every key of [auth_throttle] is read.
        """
        from mailsrv.config.load import parseConfig

        throttle = parseConfig(
            {
                "auth_throttle": {
                    "enabled": False,
                    "max_failures": 3,
                    "window": 60,
                    "ban_time": 1.5,
                    "max_account_failures": 7,
                    "exempt": ["192.0.2.1", "2001:db8::/48"],
                }
            },
            "t",
        ).authThrottle
        self.assertEqual(throttle.exempt, ("192.0.2.1/32", "2001:db8::/48"))
        self.assertEqual((throttle.enabled, throttle.maxFailures, throttle.banTime), (False, 3, 1.5))

    def test_errors(self) -> None:
        """
        Unknown keys and bad values name the key.
        """
        from mailsrv.config.load import parseConfig
        from mailsrv.errors import ConfigError

        for table, key in (
            ({"max_failure": 3}, "auth_throttle.max_failure"),
            ({"max_failures": 0}, "auth_throttle.max_failures"),
            ({"exempt": ["nonsense"]}, "auth_throttle.exempt"),
        ):
            error = self.assertRaises(ConfigError, parseConfig, {"auth_throttle": table}, "t")
            self.assertEqual(error.key, key)


class BanCommandTests(SynchronousTestCase):
    def test_listAndDelete(self) -> None:
        """
        C{mailsrv ban list} shows bans in force (not expired ones);
        C{mailsrv ban del} lifts one, by address or by any address of a
        banned IPv6 /64, and fails for an address that is not banned.
        """
        import io
        import time

        from mailsrv.auth.throttle import Ban
        from mailsrv.cli import main

        root = Path(self.mktemp())
        root.mkdir()
        config = root / "mailsrv.toml"
        config.write_text(f'[server]\nhostname = "mx.test"\ndata_dir = "{root}/data"\nconfig_dir = "{root}/conf"\n')
        (root / "data" / "state").mkdir(parents=True)
        BanFile(root / "data" / "state" / "bans.json").write(
            [
                Ban("192.0.2.1", time.time() + 100, "3 failed logins"),
                Ban("2001:db8::/64", time.time() + 100, "x"),
                Ban("192.0.2.9", time.time() - 1, "old"),
            ]
        )

        def run(*args: str) -> tuple[int, str]:
            out, err = io.StringIO(), io.StringIO()
            code = main(["--config", str(config), "ban", *args], stdout=out, stderr=err)
            return code, out.getvalue() + err.getvalue()

        code, text = run("list")
        self.assertEqual(code, 0)
        self.assertEqual([line.split()[0] for line in text.splitlines()], ["192.0.2.1", "2001:db8::/64"])
        self.assertIn("(3 failed logins)", text)
        self.assertEqual(run("del", "2001:db8::77")[0], 0)
        self.assertEqual(run("del", "192.0.2.5"), (1, "mailsrv: 192.0.2.5 is not banned\n"))
        self.assertEqual(run("del", "not-an-ip")[0], 1)
        code, text = run("list")
        self.assertEqual([line.split()[0] for line in text.splitlines()], ["192.0.2.1"])
