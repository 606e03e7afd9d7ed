"""
L{mailsrv.sieve.headers}: header fields unfolded and decoded, addresses
extracted and split, all without raising on malformed input.
"""

from __future__ import annotations

import pytest

from mailsrv.sieve.headers import (
    HeaderSection,
    addressPart,
    decodeEncodedWords,
    extractAddresses,
    parseFields,
    validAddress,
)
from tests.sieve.support import HEADER, makeHeader


def test_parseFieldsUnfoldsAndStopsAtEmptyLine() -> None:
    """
    Continuation lines join their field (the blank kept); parsing stops at
    the empty line; names are lower case.
    """
    fields = parseFields(b"Subject: a\r\n\tb\r\nX-A:  1 \r\n\r\nNot: header\r\n")
    assert fields == [("subject", " a\tb"), ("x-a", "  1 ")]


def test_parseFieldsSkipsGarbage() -> None:
    """
    Lines that are not fields (an mbox From line, a name with spaces) are
    skipped; a continuation before any field is ignored.
    """
    fields = parseFields(b" orphan\r\nFrom bob@example.org Mon Jan  1\r\nbad name: x\r\n: empty\r\nOk: yes\r\n")
    assert fields == [("ok", " yes")]


def test_parseFieldsBareLF() -> None:
    """
    Bare LF line endings are read as well.
    """
    assert parseFields(b"A: 1\nB: 2\n\n") == [("a", " 1"), ("b", " 2")]


def test_nameWithBlankBeforeColon() -> None:
    """
    Obsolete syntax "Subject :" is accepted.
    """
    assert parseFields(b"Subject : hi\r\n") == [("subject", " hi")]


def test_eightBitHeaders() -> None:
    """
    UTF-8 header octets are text; other 8-bit octets are read as Latin-1.
    """
    section = HeaderSection(b"Subject: Gr\xc3\xbc\xc3\x9fe\r\nX-Old: caf\xe9\r\n\r\n")
    assert section.values("subject") == ["Grüße"]
    assert section.values("x-old") == ["café"]


@pytest.mark.parametrize(
    "raw, decoded",
    [
        ("=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "Grüße"),
        ("=?UTF-8?B?R3LDvMOfZQ==?=", "Grüße"),
        ("=?utf-8?b?R3LDvMOfZQ?=", "Grüße"),
        ("=?iso-8859-1?q?caf=E9_au_lait?=", "café au lait"),
        ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),
        ("=?utf-8?q?a?=\t =?utf-8?q?b?=", "ab"),
        ("x =?utf-8?q?a?= y", "x a y"),
        ("=?utf-8?q?=C3?= =?utf-8?q?=BC?=", "ü"),
        ("=?utf-8*en?q?hi?=", "hi"),
        ("=?x-unknown?q?abc?=", "abc"),
        ("=?utf-8?x?abc?=", "=?utf-8?x?abc?="),
        ("=?utf-8?b?####?=", "=?utf-8?b?####?="),
        ("plain =? text ?=", "plain =? text ?="),
        ("=?utf-8?q?=FF?=", "\ufffd"),
    ],
)
def test_decodeEncodedWords(raw: str, decoded: str) -> None:
    """
    RFC 2047: B and Q words, blanks between words dropped, split
    characters rejoined; unknown charsets and garbage tolerated.
    """
    assert decodeEncodedWords(raw) == decoded


def test_valuesAreDecodedAndStripped() -> None:
    """
    The header test's values: all fields of the name, decoded, stripped.
    """
    section = HeaderSection(makeHeader("X-A:  one ", "x-a: =?utf-8?q?two?=", "X-B: three"))
    assert section.values("X-A") == ["one", "two"]
    assert section.first("x-b") == "three"
    assert section.first("x-c") is None
    assert section.exists("X-B") and not section.exists("x-c")


def test_sampleHeader() -> None:
    """
    The shared test message reads as expected (folded subject, empty field).
    """
    section = HeaderSection(HEADER)
    assert section.values("subject") == ["[python-dev] Release schedule"]
    assert section.values("x-empty") == [""]


@pytest.mark.parametrize(
    "value, addresses",
    [
        ("Alice <alice@example.test>, carol@example.net", ["alice@example.test", "carol@example.net"]),
        ("undisclosed-recipients:;", []),
        ("Team: a@x.test, b@x.test;, c@x.test", ["a@x.test", "b@x.test", "c@x.test"]),
        ('"Doe, John" <john@example.test>', ["john@example.test"]),
        ("root", ["root"]),
        ("<>", []),
        ("", []),
        ("=?utf-8?q?J=C3=B6rg?= <joerg@example.test>", ["joerg@example.test"]),
        ("a@b (comment)", ["a@b"]),
    ],
)
def test_extractAddresses(value: str, addresses: list[str]) -> None:
    """
    Display names, comments and groups are removed; empty entries dropped.
    """
    assert extractAddresses(value) == addresses


def test_extractAddressesFromGarbage() -> None:
    """
    Garbage gives whatever addresses can be found, never an exception.
    """
    for garbage in ("<<<>>> @@", "a@b@c", '"unclosed <x@y', "\x00\x01", ",,,"):
        assert isinstance(extractAddresses(garbage), list)


@pytest.mark.parametrize(
    "address, part, expected",
    [
        ("Alice+work@Example.TEST", "all", "Alice+work@Example.TEST"),
        ("Alice+work@Example.TEST", "localpart", "Alice+work"),
        ("Alice+work@Example.TEST", "domain", "Example.TEST"),
        ("Alice+work@Example.TEST", "user", "Alice"),
        ("Alice+work@Example.TEST", "detail", "work"),
        ("alice+@example.test", "detail", ""),
        ("alice@example.test", "user", "alice"),
        ("alice@example.test", "detail", None),
        ("a+b+c@example.test", "detail", "b+c"),
        ('"odd@local"@example.test', "localpart", '"odd@local"'),
        ("root", "all", "root"),
        ("root", "localpart", None),
        ("root", "domain", None),
        ("@example.test", "domain", None),
    ],
)
def test_addressPart(address: str, part: str, expected: str | None) -> None:
    """
    Address parts, subaddress parts, and invalid addresses that only
    match with :all (RFC 5228 2.7.4, RFC 5233 4).
    """
    assert addressPart(address, part) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("bob@example.org", "bob@example.org"),
        ("  bob@example.org ", "bob@example.org"),
        ("<bob@example.org>", "bob@example.org"),
        ("Bob <bob@example.org>", "bob@example.org"),
        ('"Bob, B." <bob@example.org>', "bob@example.org"),
        ('"quoted local"@example.org', '"quoted local"@example.org'),
        ("jörg@example.test", "jörg@example.test"),
        ("bob@[192.0.2.1]", "bob@[192.0.2.1]"),
        ("bob", None),
        ("bob@", None),
        ("@example.org", None),
        ("bob smith@example.org", None),
        ("bob@example.org, eve@example.org", None),
        ("bob@example..org", None),
        ("", None),
    ],
)
def test_validAddress(text: str, expected: str | None) -> None:
    """
    Addresses a script gives for redirect and vacation are checked and
    reduced to the addr-spec.
    """
    assert validAddress(text) == expected
