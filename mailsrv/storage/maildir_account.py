# -*- test-case-name: tests.storage.test_maildir_account -*-
"""
Account-level files of a Maildir++ account: IMAP subscriptions and the
special use of folders.

C{subscriptions} is Dovecot's file, so subscriptions survive a move in
either direction.  Dovecot 2.x writes version 2::

    V<TAB>2
    <empty line>
    Archive<TAB>2024          one folder per line, levels separated by TAB

with TAB, LF and SOH inside a level escaped as SOH C{t}, SOH C{n}, SOH C{1}.
Version 1 (older Dovecot and Courier) has no header and one name per line
with C{.} between levels.  Levels are in IMAP modified UTF-7, as the folder
directories are.  mailsrv reads both and writes version 2.

C{mailsrv-special-use} is mailsrv's own (Dovecot keeps special use in its
configuration): C{<attribute><TAB><folder name in UTF-8, / between levels>}
per line.  Both files are replaced atomically under the account's metadata
lock; they are not fsync'd (losing a subscription in a crash loses no mail).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from mailsrv.storage.fsync import writeFileAtomically
from mailsrv.storage.uidlist import lockedFolder
from mailsrv.storage.validation import (
    decodeModifiedUTF7,
    encodeModifiedUTF7,
    normalizeFolderName,
)

SUBSCRIPTIONS_NAME = "subscriptions"
SPECIAL_USE_NAME = "mailsrv-special-use"

#: RFC 6154 attributes a folder may carry.
SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")

_V2_HEADER = "V\t2"


def _unescape(level: str) -> str:
    out = []
    i = 0
    while i < len(level):
        ch = level[i]
        if ch == "\x01" and i + 1 < len(level):
            out.append({"t": "\t", "n": "\n", "1": "\x01"}.get(level[i + 1], level[i + 1]))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _escape(level: str) -> str:
    return level.replace("\x01", "\x011").replace("\t", "\x01t").replace("\n", "\x01n")


def parseSubscriptions(text: str) -> list[str]:
    """
    Folder names (C{/} between levels, decoded) from a Dovecot
    C{subscriptions} file of version 1 or 2; names mailsrv cannot address
    are skipped.
    """
    lines = text.split("\n")
    if lines and lines[0] == _V2_HEADER:
        body = lines[1:]
        if body and body[0] == "":
            body = body[1:]
        raw = [[_unescape(level) for level in line.split("\t")] for line in body if line]
    else:
        raw = [line.split(".") for line in lines if line.strip()]
    names = []
    for levels in raw:
        try:
            name = normalizeFolderName("/".join(decodeModifiedUTF7(level) for level in levels))
        except Exception:
            continue
        if name not in names:
            names.append(name)
    return names


def formatSubscriptions(names: list[str]) -> bytes:
    """
    A version 2 C{subscriptions} file for folder names (C{/} between levels).
    """
    lines = [_V2_HEADER, ""]
    for name in names:
        lines.append("\t".join(_escape(encodeModifiedUTF7(level)) for level in name.split("/")))
    return ("\n".join(lines) + "\n").encode("utf-8")


def readSubscriptions(accountDir: Path) -> list[str]:
    try:
        return parseSubscriptions((accountDir / SUBSCRIPTIONS_NAME).read_text("utf-8", "replace"))
    except FileNotFoundError:
        return []


def setSubscribed(accountDir: Path, name: str, subscribed: bool) -> None:
    """
    Add or remove one name, under the account's lock (so two sessions
    subscribing at once both win).  Blocking but small: reactor thread.
    """
    name = normalizeFolderName(name)
    accountDir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with lockedFolder(accountDir):
        names = readSubscriptions(accountDir)
        if subscribed and name not in names:
            names.append(name)
        elif not subscribed and name in names:
            names.remove(name)
        else:
            return
        writeFileAtomically(accountDir / SUBSCRIPTIONS_NAME, formatSubscriptions(names), 0o600, durable=False)


def readSpecialUse(accountDir: Path) -> dict[str, str]:
    """
    Folder name -> special-use attribute, from C{mailsrv-special-use}.
    """
    try:
        text = (accountDir / SPECIAL_USE_NAME).read_text("utf-8", "replace")
    except FileNotFoundError:
        return {}
    result: dict[str, str] = {}
    for line in text.split("\n"):
        use, _, name = line.partition("\t")
        if use in SPECIAL_USES and name:
            try:
                result[normalizeFolderName(name)] = use
            except Exception:
                continue
    return result


def setSpecialUse(accountDir: Path, name: str, use: Optional[str]) -> None:
    """
    Record or forget the special use of a folder.

    @raise ValueError: for an attribute not in L{SPECIAL_USES}.
    """
    name = normalizeFolderName(name)
    if use is not None and use not in SPECIAL_USES:
        raise ValueError(f"unknown special use {use!r}")
    accountDir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with lockedFolder(accountDir):
        uses = readSpecialUse(accountDir)
        if use is None:
            if uses.pop(name, None) is None:
                return
        else:
            uses[name] = use
        data = "".join(f"{u}\t{n}\n" for n, u in sorted(uses.items())).encode("utf-8")
        writeFileAtomically(accountDir / SPECIAL_USE_NAME, data, 0o600, durable=False)
