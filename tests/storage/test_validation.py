# -*- test-case-name: tests.storage.test_validation -*-
"""
Tests for L{mailsrv.storage.validation}: the naming rules both backends
share, and the modified UTF-7 codec used for Dovecot's folder directories.
"""

from __future__ import annotations

import pytest

from mailsrv.errors import ErrorKind, MailError
from mailsrv.storage.validation import (
    decodeModifiedUTF7,
    encodeModifiedUTF7,
    normalizeFlags,
    normalizeFolderName,
    splitAccount,
)


@pytest.mark.parametrize(
    "text, encoded",
    [
        ("Sent", "Sent"),
        ("Entw\u00fcrfe", "Entw&APw-rfe"),
        ("a&b", "a&-b"),
        # RFC 3501 5.1.3's example.
        ("~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("\U0001f4e7", "&2D3c5w-"),
    ],
)
def test_modifiedUTF7(text: str, encoded: str) -> None:
    """
    Encoding matches RFC 3501 (and so Dovecot's directory names) and decodes
    back.
    """
    assert encodeModifiedUTF7(text) == encoded
    assert decodeModifiedUTF7(encoded) == text


@pytest.mark.parametrize("bad", ["&", "&U,BTFw", "&!!-", "caf\u00e9", "&A-"])
def test_modifiedUTF7Invalid(bad: str) -> None:
    """
    Malformed modified UTF-7 is an error, not garbage.
    """
    with pytest.raises(ValueError):
        decodeModifiedUTF7(bad)


def test_normalizeFolderName() -> None:
    """
    INBOX is canonicalised case-insensitively, also as a parent; other names
    keep their case.
    """
    assert normalizeFolderName("inBox") == "INBOX"
    assert normalizeFolderName("inbox/Sub") == "INBOX/Sub"
    assert normalizeFolderName("Inboxes") == "Inboxes"
    assert normalizeFolderName("a/B/c") == "a/B/c"


def test_folderNameLengthCountsEncodedOctets() -> None:
    """
    The length limit applies to the modified UTF-7 form, which is what
    becomes one directory entry.
    """
    assert normalizeFolderName("x" * 239) == "x" * 239
    with pytest.raises(MailError):
        normalizeFolderName("x" * 240)
    with pytest.raises(MailError):
        normalizeFolderName("\u00e9" * 100)


def test_splitAccountLowercases() -> None:
    """
    Account ids are split at the last @ and lower-cased.
    """
    assert splitAccount("Alice@Example.COM") == ("alice", "example.com")


def test_normalizeFlagsErrorKind() -> None:
    """
    Invalid flags are SYNTAX errors.
    """
    with pytest.raises(MailError) as info:
        normalizeFlags(["\\Recentish"])
    assert info.value.kind is ErrorKind.SYNTAX
