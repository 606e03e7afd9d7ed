"""
Tests for L{mailsrv.mailbox_names}.
"""

from __future__ import annotations

import pytest

from mailsrv.errors import ErrorKind, MailError
from mailsrv.mailbox_names import hierarchyToStore


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Lists.Python", "Lists/Python"),
        ("inbox", "INBOX"),
        ("Inbox.Sub", "INBOX/Sub"),
        ("Junk.", "Junk"),
        ("Entwürfe", "Entwürfe"),
    ],
)
def test_dotHierarchy(name: str, expected: str) -> None:
    assert hierarchyToStore(name, ".") == expected


@pytest.mark.parametrize("name", ["", ".", "a..b", ".a", "a/b"])
def test_unstorable(name: str) -> None:
    with pytest.raises(MailError) as info:
        hierarchyToStore(name, ".")
    assert info.value.kind is ErrorKind.SYNTAX
