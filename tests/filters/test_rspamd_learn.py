"""
Tests for L{mailsrv.filters.rspamd_learn}: which moves teach what.  The
whole path against a real Rspamd and Redis is in
C{tests/integration/test_rspamd_learn.py}.
"""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from mailsrv.filters.rspamd_learn import RspamdLearner, folderRole, verdict
from mailsrv.interfaces import ISpamReports


@pytest.mark.parametrize(
    "name, uses, role",
    [
        ("Junk", {}, "junk"),
        ("Spam", {}, "junk"),
        ("Lists/spam", {}, "junk"),
        ("Trash", {}, "trash"),
        ("Deleted Messages", {}, "trash"),
        ("INBOX", {}, ""),
        ("Werbung", {"Werbung": "\\Junk"}, "junk"),
        ("Papierkorb", {"Papierkorb": "\\Trash"}, "trash"),
        ("Junk", {"Junk": "\\Archive"}, ""),
    ],
)
def test_folder_role(name: str, uses: dict[str, str], role: str) -> None:
    assert folderRole(name, uses) == role


@pytest.mark.parametrize(
    "source, destination, kind",
    [
        ("", "junk", "spam"),
        ("trash", "junk", "spam"),
        ("junk", "", "ham"),
        ("junk", "trash", ""),
        ("junk", "junk", ""),
        ("", "", ""),
        ("", "trash", ""),
    ],
)
def test_verdict(source: str, destination: str, kind: str) -> None:
    assert verdict(source, destination) == kind


def test_interface() -> None:
    learner = RspamdLearner(None, "http://127.0.0.1:11334", "pw", lambda account: {}, None, None)  # type: ignore[arg-type]
    assert verifyObject(ISpamReports, learner)
