# -*- test-case-name: tests.storage.test_quota -*-
"""
Tests for L{mailsrv.storage.quota}: Dovecot size syntax, the quota file,
reloading, and measuring a Maildir account.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

from mailsrv.interfaces import IQuota
from mailsrv.storage.maildir import MaildirStore
from mailsrv.storage.quota import FileQuota, maildirUsage, parseQuotas, parseSize

from .helpers import successResultOf, synchronousRunner


@pytest.mark.parametrize(
    "text,octets",
    [("10240", 10240), ("1G", 1024**3), ("500M", 500 * 1024**2), ("100k", 102400), ("2K", 2048), ("5MB", 5 * 1024**2), ("7B", 7)],
)
def test_parseSize(text: str, octets: int) -> None:
    """
    Dovecot's size suffixes are powers of 1024.
    """
    assert parseSize(text) == octets


@pytest.mark.parametrize("text", ["", "M", "1X", "-1", "1.5G"])
def test_parseSizeRefuses(text: str) -> None:
    """
    Anything else is not a size.
    """
    with pytest.raises(ValueError):
        parseSize(text)


def test_parseQuotas() -> None:
    """
    Accounts are lower-cased, zero means unlimited, comments and bad lines
    are skipped and reported by number.
    """
    limits, bad = parseQuotas("# c\nAlice@Example.test:1G\n\nbob@example.test:0\nbroken\ncarol@example.test:lots\n")
    assert limits == {"alice@example.test": 1024**3}
    assert bad == [5, 6]


def test_fileQuotaReloads(tmp_path: Path) -> None:
    """
    A changed file is picked up on the next lookup; a missing file means no
    limits.
    """
    quota = FileQuota(tmp_path, lambda account: 0, synchronousRunner)
    assert verifyObject(IQuota, quota)
    assert quota.limit("alice@example.test") is None
    (tmp_path / "dovecot-quotas.cf").write_text("alice@example.test:10M\n")
    assert quota.limit("alice@example.test") == 10 * 1024**2
    (tmp_path / "dovecot-quotas.cf").write_text("alice@example.test:20M\nbob@example.test:1k\n")
    assert quota.limit("ALICE@example.test") == 20 * 1024**2
    os.unlink(tmp_path / "dovecot-quotas.cf")
    assert quota.limit("alice@example.test") is None


def test_maildirUsage(tmp_path: Path) -> None:
    """
    Usage counts every message file in every folder, from the name's S=
    when present, from stat otherwise; other files are not counted.
    """
    store = MaildirStore(tmp_path / "mail", runInThread=synchronousRunner, hostname="h")
    store.createFolder("alice@example.test", "Sent")
    inbox = store.openFolder("alice@example.test")
    successResultOf(inbox.append(b"x" * 100))
    sent = store.openFolder("alice@example.test", "Sent")
    successResultOf(sent.append(b"y" * 50))
    account = tmp_path / "mail" / "example.test" / "alice"
    (account / "new" / "1.plain.host").write_bytes(b"z" * 7)
    quota = FileQuota(tmp_path, maildirUsage(tmp_path / "mail"), synchronousRunner)
    assert successResultOf(quota.usage("alice@example.test")) == 157
    assert successResultOf(quota.usage("nobody@example.test")) == 0
