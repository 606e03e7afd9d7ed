# -*- test-case-name: tests.storage.test_validation -*-
"""
Rules every storage backend applies to what clients control: account ids,
folder names and flags.

They live here, not in one backend, so that the memory store used by the
protocol tests refuses exactly what the Maildir store refuses (L{IMailStore}
says names are validated "whatever the backend").

Encodings:

 - Account ids are C{str}, C{local@domain}; both parts become directory names
   under the Maildir root, so they must be path-safe (L{splitAccount}).
 - Folder names are Unicode C{str} as the user sees them (the IMAP layer
   decodes modified UTF-7 before calling the store), C{/} is the hierarchy
   separator.  L{encodeModifiedUTF7} gives the IMAP wire / Dovecot on-disk
   form of one component.
 - Flags are C{str}: IMAP system flags (C{\\Seen}) and keywords (atoms).
"""

from __future__ import annotations

import base64
import re
from typing import Iterable

from mailsrv.errors import ErrorKind, MailError

INBOX = "INBOX"

#: Longest folder name accepted, in octets of its modified UTF-7 form.  A
#: Maildir++ folder is one directory entry (C{.a.b.c}), and directory entries
#: are limited to 255 octets on every common filesystem.
MAX_FOLDER_NAME = 240

#: RFC 5321 limits a local part to 64 octets; domains to 255.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 253

#: Maildir keeps keywords as the letters a-z in file names, so a folder can
#: use at most 26 different keywords.  Both backends enforce it.
MAX_KEYWORDS = 26

#: IMAP system flags a message can carry, by lower-cased name.  C{\\Recent} is
#: not stored (it is a property of a session, not of a message).
SYSTEM_FLAGS = {
    f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
}
RECENT = "\\Recent"

# Characters never allowed in a folder name component:
#  - C{/} is the separator; C{.} is Maildir++'s separator on disk, so a
#    component containing it would silently change the hierarchy (Dovecot
#    refuses it too);
#  - C{*} and C{%} are IMAP LIST wildcards;
#  - control characters (C0, DEL, C1) have no business in a name.
_BAD_NAME_CHARS = re.compile(r"[./*%\x00-\x1f\x7f-\x9f]")

# Path-unsafe characters in account ids (NUL, separators, controls).
_BAD_ACCOUNT_CHARS = re.compile(r"[/\\@\x00-\x1f\x7f]")

# IMAP atom-specials and controls: a keyword must be an atom (RFC 3501).
_BAD_KEYWORD_CHARS = re.compile(r'[^\x21-\x7e]|[(){%*"\\\]]')


def _syntax(message: str) -> MailError:
    return MailError(ErrorKind.SYNTAX, message)


def splitAccount(account: str) -> tuple[str, str]:
    """
    Split and check an account id so that both halves can name directories.

    The local part and domain are lower-cased (the ids are canonical already;
    this only protects the layout from a caller that forgot).  Refused: no
    C{@}, empty halves, a leading C{.} (hides the entry, and C{..} escapes),
    C{/}, C{\\}, NUL or other control characters, over-long halves.

    @return: C{(local, domain)}.
    @raise MailError: C{SYNTAX} when the id is not path-safe.
    """
    if not isinstance(account, str):
        raise _syntax("Invalid account")
    local, sep, domain = account.rpartition("@")
    local = local.lower()
    domain = domain.lower()
    for part, limit in ((local, MAX_LOCAL_PART), (domain, MAX_DOMAIN)):
        if (
            not sep
            or not part
            or part.startswith(".")
            or _BAD_ACCOUNT_CHARS.search(part)
            or len(part.encode("utf-8", "surrogatepass")) > limit
        ):
            raise _syntax("Invalid account")
    return local, domain


def normalizeFolderName(name: str) -> str:
    """
    Check a folder name and return its canonical form.

    C{INBOX} is case-insensitive (RFC 3501), also as the first component of a
    child (C{inbox/x} is C{INBOX/x}); every other name is case-sensitive.
    Refused: empty names and components (C{a//b}, C{/a}, C{a/}), C{.} anywhere
    (so C{.} and C{..} components are impossible), C{*}, C{%}, control
    characters and names longer than L{MAX_FOLDER_NAME} octets once encoded.

    @raise MailError: C{SYNTAX} for an invalid name.
    """
    if not isinstance(name, str) or not name:
        raise _syntax("Invalid mailbox name")
    parts = name.split("/")
    for part in parts:
        if not part or _BAD_NAME_CHARS.search(part):
            raise _syntax("Invalid mailbox name")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    try:
        encodedLength = sum(len(encodeModifiedUTF7(p)) + 1 for p in parts)
    except UnicodeError:
        raise _syntax("Invalid mailbox name")
    if encodedLength > MAX_FOLDER_NAME:
        raise _syntax("Mailbox name too long")
    return "/".join(parts)


def normalizeFlags(flags: Iterable[str]) -> frozenset[str]:
    """
    Canonicalise IMAP flags for storage.

    System flags are matched case-insensitively and returned in their usual
    spelling; C{\\Recent} is dropped (never stored); other backslash flags are
    refused; keywords must be IMAP atoms and keep their spelling.

    @raise MailError: C{SYNTAX} for an unknown system flag or a keyword that
        is not an atom.
    """
    result = set()
    for flag in flags:
        if not isinstance(flag, str) or not flag:
            raise _syntax("Invalid flag")
        if flag.startswith("\\"):
            lowered = flag.lower()
            if lowered == RECENT.lower():
                continue
            if lowered not in SYSTEM_FLAGS:
                raise _syntax("Invalid flag")
            result.add(SYSTEM_FLAGS[lowered])
        else:
            if _BAD_KEYWORD_CHARS.search(flag) or len(flag) > 128:
                raise _syntax("Invalid flag")
            result.add(flag)
    return frozenset(result)


def keywordsOf(flags: Iterable[str]) -> set[str]:
    """
    The keywords (non-system flags) among normalised C{flags}.
    """
    return {f for f in flags if not f.startswith("\\")}


# ------------------------------------------------------- modified UTF-7


def _b64encode(text: str) -> str:
    raw = base64.b64encode(text.encode("utf-16-be")).decode("ascii")
    return raw.rstrip("=").replace("/", ",")


def encodeModifiedUTF7(text: str) -> str:
    """
    Encode one name in IMAP modified UTF-7 (RFC 3501 section 5.1.3), the form
    Dovecot uses for Maildir++ folder directories.
    """
    out = []
    pending: list[str] = []
    for ch in text:
        if 0x20 <= ord(ch) <= 0x7E:
            if pending:
                out.append("&" + _b64encode("".join(pending)) + "-")
                pending = []
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    if pending:
        out.append("&" + _b64encode("".join(pending)) + "-")
    return "".join(out)


def decodeModifiedUTF7(text: str) -> str:
    """
    Decode IMAP modified UTF-7.

    @raise ValueError: if C{text} is not valid modified UTF-7.
    """
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if not 0x20 <= ord(ch) <= 0x7E:
            raise ValueError("not modified UTF-7")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError("unterminated modified base64")
        chunk = text[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            if not re.fullmatch(r"[A-Za-z0-9+,]+", chunk):
                raise ValueError("bad modified base64")
            padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
            try:
                out.append(base64.b64decode(padded, validate=True).decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError) as e:
                raise ValueError("bad modified base64") from e
        i = end + 1
    return "".join(out)
