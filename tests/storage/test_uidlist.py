# -*- test-case-name: tests.storage.test_uidlist -*-
"""
Tests for L{mailsrv.storage.uidlist}: Dovecot's uidlist and keywords files.
"""

from __future__ import annotations

import pytest

from mailsrv.storage.uidlist import (
    formatKeywords,
    formatUidList,
    parseKeywords,
    parseUidList,
)


def test_parseVersion3() -> None:
    """
    A v3 uidlist gives UIDVALIDITY, next UID, extra header fields, and
    records with extension fields and base names (flags stripped).
    """
    uidList = parseUidList(
        "3 V1234 N20 G00ff X9\n"
        "1 :111.M1P1.host,S=5,W=6\n"
        "4 W99 P1a2b :222.M2P2.host:2,S\n"
    )
    assert (uidList.uidValidity, uidList.nextUid, uidList.headerFields) == (1234, 20, ["G00ff", "X9"])
    assert [(r.uid, r.base, r.extensions) for r in uidList.records] == [
        (1, "111.M1P1.host,S=5,W=6", []),
        (4, "222.M2P2.host", ["W99", "P1a2b"]),
    ]
    assert uidList.records[1].extension("P") == "1a2b"
    assert uidList.records[1].extension("G") is None


def test_roundTrip() -> None:
    """
    Formatting writes version 3 with the fields read, and parses back.
    """
    text = "3 V1234 N20 G00ff\n1 :a\n4 W99 :b\n"
    assert formatUidList(parseUidList(text)).decode() == text


def test_parseVersion1() -> None:
    """
    Old version 1 files (positional header, "uid filename") are read.
    """
    uidList = parseUidList("1 555 3\n1 100.P1.h:2,S\n2 101.P1.h\n")
    assert (uidList.uidValidity, uidList.nextUid) == (555, 3)
    assert [r.base for r in uidList.records] == ["100.P1.h", "101.P1.h"]


def test_nextUidBelowRecordsIsRaised() -> None:
    """
    A next UID not above the last record is corrected, so UIDs never
    repeat.
    """
    assert parseUidList("3 V1 N2\n5 :x\n").nextUid == 6


@pytest.mark.parametrize(
    "text",
    ["", "9 V1 N1\n", "3 N1\n", "3 V0 N1\n", "3 V1 N9\n2 :a\n1 :b\n", "3 V1 N9\nx :a\n"],
)
def test_parseRejects(text: str) -> None:
    """
    Unknown versions, missing or zero UIDVALIDITY, descending or non-numeric
    UIDs are errors (the store then starts a new UIDVALIDITY).
    """
    with pytest.raises(ValueError):
        parseUidList(text)


def test_keywords() -> None:
    """
    Keywords parse by index, ignore junk lines and indexes beyond z, and
    format back sorted.
    """
    keywords = parseKeywords("1 Junk\n0 $Label1\njunk\n26 tooFar\n")
    assert keywords == {0: "$Label1", 1: "Junk"}
    assert formatKeywords(keywords) == b"0 $Label1\n1 Junk\n"
