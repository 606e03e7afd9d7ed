# -*- test-case-name: tests.auth.test_directory -*-
"""
Tests for L{mailsrv.auth.directory.FileDirectory}.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mailsrv.auth.directory import FileDirectory
from mailsrv.auth.files import ACCOUNTS_FILE, VIRTUAL_FILE
from mailsrv.interfaces import IDirectory

H = "{PLAIN}x"


class FakeClock:
    """
    A monotonic clock the test moves by hand.
    """

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FileDirectoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.configDir = Path(self.mktemp())
        self.configDir.mkdir(parents=True)
        self.clock = FakeClock()

    def writeAccounts(self, *accounts: str) -> None:
        text = "".join(f"{a}|{H}\n" for a in accounts)
        self._replace(ACCOUNTS_FILE, text)

    def writeAliases(self, text: str) -> None:
        self._replace(VIRTUAL_FILE, text)

    def _replace(self, name: str, text: str) -> None:
        # Replace by rename, as the mailsrv command does: a new inode, so the
        # change is seen even within the file system's timestamp resolution.
        tmp = self.configDir / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.configDir / name)

    def directory(self, domains: tuple[str, ...] = ("example.test",), **kw: object) -> FileDirectory:
        return FileDirectory(self.configDir, domains, clock=self.clock, **kw)  # type: ignore[arg-type]

    # -------------------------------------------------------------- tests

    def test_interface(self) -> None:
        """
        FileDirectory provides IDirectory.
        """
        self.assertTrue(verifyObject(IDirectory, self.directory()))

    def test_emptyConfigDir(self) -> None:
        """
        Without files there are no accounts, and only the configured domains
        are local.
        """
        d = self.directory()
        self.assertTrue(d.isLocalDomain("Example.TEST."))
        self.assertFalse(d.isLocalDomain("other.test"))
        self.assertIsNone(d.canonicalAccount("a@example.test"))
        self.assertEqual(d.expandRecipient("a@example.test"), [])

    def test_accountsAreCaseInsensitive(self) -> None:
        """
        Logins and lookups ignore case; the canonical id is lower case.
        """
        self.writeAccounts("Alice@Example.test")
        d = self.directory()
        self.assertEqual(d.canonicalAccount("ALICE@example.TEST"), "alice@example.test")
        self.assertEqual(d.passwordHash("alice@EXAMPLE.test"), H)
        self.assertIsNone(d.passwordHash("bob@example.test"))
        self.assertEqual(d.expandRecipient("Alice@example.test"), ["alice@example.test"])

    def test_localDomainsFromFiles(self) -> None:
        """
        Domains of accounts and of alias keys (catch-alls included) are
        local, as in docker-mailserver; domains only in targets are not.
        """
        self.writeAccounts("a@acct.test")
        self.writeAliases("x@alias.test a@acct.test\n@catch.test a@acct.test\ny@alias.test z@remote.test\n")
        d = self.directory()
        for domain in ("example.test", "acct.test", "alias.test", "catch.test"):
            self.assertTrue(d.isLocalDomain(domain), domain)
        self.assertFalse(d.isLocalDomain("remote.test"))

    def test_aliasExpansion(self) -> None:
        """
        Aliases expand recursively to accounts; an external target is
        returned as written; duplicates collapse.
        """
        self.writeAccounts("a@example.test", "b@example.test")
        self.writeAliases(
            "team@example.test a@example.test,list@example.test,Ext@Remote.test\n"
            "list@example.test b@example.test,a@example.test\n"
        )
        d = self.directory()
        self.assertEqual(
            d.expandRecipient("team@example.test"),
            ["a@example.test", "b@example.test", "Ext@remote.test"],
        )

    def test_aliasToUnknownLocalAddress(self) -> None:
        """
        A target in a local domain that is neither account nor alias yields
        nothing (no bounce loop through a non-existent mailbox).
        """
        self.writeAccounts("a@example.test")
        self.writeAliases("x@example.test ghost@example.test,a@example.test\n")
        self.assertEqual(self.directory().expandRecipient("x@example.test"), ["a@example.test"])

    def test_aliasLoop(self) -> None:
        """
        A loop is cut and logged; the accounts reachable outside the loop
        still receive the mail.
        """
        self.writeAccounts("a@example.test")
        self.writeAliases(
            "x@example.test y@example.test\n"
            "y@example.test x@example.test,a@example.test\n"
        )
        d = self.directory()
        with capturedLogs() as events:
            result = d.expandRecipient("x@example.test")
        self.assertEqual(result, ["a@example.test"])
        self.assertTrue(any("loop" in e.get("log_format", "") for e in events))

    def test_pureLoopIsEmpty(self) -> None:
        """
        Aliases that only point at each other deliver nowhere.
        """
        self.writeAliases("x@example.test y@example.test\ny@example.test x@example.test\n")
        self.assertEqual(self.directory().expandRecipient("x@example.test"), [])

    def test_depthLimit(self) -> None:
        """
        A chain longer than maxDepth is cut: the account at its end is not
        reached, while a shorter chain does reach it.
        """
        self.writeAccounts("end@example.test")
        chain = "".join(f"a{i}@example.test a{i + 1}@example.test\n" for i in range(5))
        self.writeAliases(chain + "a5@example.test end@example.test\n")
        self.assertEqual(self.directory(maxDepth=10).expandRecipient("a0@example.test"), ["end@example.test"])
        self.assertEqual(self.directory(maxDepth=3).expandRecipient("a0@example.test"), [])

    def test_aliasShadowsAccountUnlessListed(self) -> None:
        """
        As in Postfix, an alias with the same name as an account decides
        where its mail goes; listing the address itself keeps a copy in the
        account.
        """
        self.writeAccounts("me@example.test")
        self.writeAliases("me@example.test me@example.test,me@remote.test\n")
        self.assertEqual(
            self.directory().expandRecipient("me@example.test"),
            ["me@example.test", "me@remote.test"],
        )
        self.writeAliases("me@example.test me@remote.test\n")
        self.assertEqual(
            self.directory().expandRecipient("me@example.test"), ["me@remote.test"]
        )

    def test_catchAll(self) -> None:
        """
        The catch-all receives mail only for addresses that are neither
        accounts nor aliases, and only in its own domain.
        """
        self.writeAccounts("a@example.test", "c@example.test")
        self.writeAliases("@example.test c@example.test\ninfo@example.test a@example.test\n")
        d = self.directory(domains=("example.test", "other.test"))
        self.assertEqual(d.expandRecipient("a@example.test"), ["a@example.test"])
        self.assertEqual(d.expandRecipient("info@example.test"), ["a@example.test"])
        self.assertEqual(d.expandRecipient("random@example.test"), ["c@example.test"])
        self.assertEqual(d.expandRecipient("random@other.test"), [])

    def test_subAddressing(self) -> None:
        """
        user+tag@domain goes to user@domain (account or alias) when the full
        address is unknown; an exact match for the full address wins; the
        delimiter is configurable and can be disabled.
        """
        self.writeAccounts("a@example.test", "a+exact@example.test")
        self.writeAliases("list@example.test a@example.test,x@remote.test\n")
        d = self.directory()
        self.assertEqual(d.expandRecipient("a+news@example.test"), ["a@example.test"])
        self.assertEqual(d.expandRecipient("a+exact@example.test"), ["a+exact@example.test"])
        self.assertEqual(
            d.expandRecipient("list+x@example.test"), ["a@example.test", "x@remote.test"]
        )
        self.assertEqual(d.expandRecipient("b+news@example.test"), [])
        self.assertEqual(d.expandRecipient("+news@example.test"), [])
        dash = self.directory(recipientDelimiter="-")
        self.assertEqual(dash.expandRecipient("a-news@example.test"), ["a@example.test"])
        self.assertEqual(dash.expandRecipient("a+news@example.test"), [])
        self.assertEqual(self.directory(recipientDelimiter="").expandRecipient("a+news@example.test"), [])

    def test_subAddressingBeforeCatchAll(self) -> None:
        """
        user+tag@domain reaches user, not the catch-all.
        """
        self.writeAccounts("a@example.test", "c@example.test")
        self.writeAliases("@example.test c@example.test\n")
        self.assertEqual(self.directory().expandRecipient("a+x@example.test"), ["a@example.test"])

    def test_reloadAfterInterval(self) -> None:
        """
        A change to the files is seen once reloadInterval has passed since
        the last check, and not before.
        """
        self.writeAccounts("a@example.test")
        d = self.directory()
        self.assertIsNone(d.canonicalAccount("b@example.test"))
        self.writeAccounts("a@example.test", "b@example.test")
        self.writeAliases("x@new.test b@example.test\n")
        self.clock.now += 0.5
        self.assertIsNone(d.canonicalAccount("b@example.test"))
        self.assertFalse(d.isLocalDomain("new.test"))
        self.clock.now += 0.6
        self.assertEqual(d.canonicalAccount("b@example.test"), "b@example.test")
        self.assertTrue(d.isLocalDomain("new.test"))
        self.assertEqual(d.expandRecipient("x@new.test"), ["b@example.test"])

    def test_noRereadWhenUnchanged(self) -> None:
        """
        When the files did not change, a check does not read them again.
        """
        self.writeAccounts("a@example.test")
        d = self.directory()
        reads: list[str] = []
        original = d._parseAccounts

        def counting(text: str, path: str) -> None:
            reads.append(path)
            original(text, path)

        d._parseAccounts = counting  # type: ignore[method-assign]
        self.clock.now += 5
        d.canonicalAccount("a@example.test")
        self.assertEqual(reads, [])
        self.writeAccounts("a@example.test", "b@example.test")
        self.clock.now += 5
        d.canonicalAccount("a@example.test")
        self.assertEqual(len(reads), 1)

    def test_deletedFileEmptiesTable(self) -> None:
        """
        Removing the accounts file removes the accounts.
        """
        self.writeAccounts("a@example.test")
        d = self.directory()
        os.unlink(self.configDir / ACCOUNTS_FILE)
        self.clock.now += 2
        self.assertIsNone(d.canonicalAccount("a@example.test"))

    def test_unreadableFileKeepsPreviousTable(self) -> None:
        """
        A file that cannot be read (here: not UTF-8) leaves the previous
        accounts in force and logs one error naming the file; once fixed, it
        is loaded.
        """
        self.writeAccounts("a@example.test")
        d = self.directory()
        self._replace(ACCOUNTS_FILE, "")
        (self.configDir / ACCOUNTS_FILE).write_bytes(b"b@example.test|{PLAIN}\xff\n")
        self.clock.now += 2
        with capturedLogs() as events:
            self.assertEqual(d.canonicalAccount("a@example.test"), "a@example.test")
            self.clock.now += 2
            self.assertEqual(d.canonicalAccount("a@example.test"), "a@example.test")
        errors = [e for e in events if "problem" in e and ACCOUNTS_FILE in e["problem"]]
        self.assertEqual(len(errors), 1)
        self.writeAccounts("b@example.test")
        self.clock.now += 2
        self.assertIsNone(d.canonicalAccount("a@example.test"))
        self.assertEqual(d.canonicalAccount("b@example.test"), "b@example.test")

    def test_malformedLinesDoNotHideOthers(self) -> None:
        """
        A typo on one line of the alias file does not disable the others.
        """
        self.writeAccounts("a@example.test")
        self.writeAliases("oops\nx@example.test a@example.test\n")
        self.assertEqual(self.directory().expandRecipient("x@example.test"), ["a@example.test"])
