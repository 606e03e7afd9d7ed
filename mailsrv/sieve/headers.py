# -*- test-case-name: tests.sieve.test_headers -*-
"""
What Sieve tests see of a message's header section (RFC 5228 sections
2.7.2, 2.7.4, 5.1, 5.7) and of addresses.

Field names compare case-insensitively.  A value is unfolded (the line
breaks of continuation lines removed, their white space kept), taken as
UTF-8 or, when that fails, Latin-1, RFC 2047 encoded words are decoded, and
leading and trailing white space is dropped.  Nothing here raises on a
malformed header: what cannot be decoded is compared as written.
"""

from __future__ import annotations

import binascii
import email.utils
import re
from typing import Optional

#: Fields after this many are ignored (a bound on work, not a rule).
MAX_FIELDS = 10_000

#: The separator of RFC 5233 subaddresses (user+detail).
SUBADDRESS_SEPARATOR = "+"

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*=*")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")


def decodeOctets(raw: bytes) -> str:
    """
    Header octets as text: UTF-8 (RFC 6532) when they are valid UTF-8,
    else Latin-1 (every octet a character, so nothing is lost).
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _decodeWordOctets(encoding: str, data: str) -> Optional[bytes]:
    try:
        if encoding in "bB":
            if not _BASE64.fullmatch(data):
                return None
            data = data.rstrip("=")
            return binascii.a2b_base64(data + "=" * (-len(data) % 4))
        return binascii.a2b_qp(data.encode("ascii"), header=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def _decodeCharset(octets: bytes, charset: str) -> str:
    # RFC 2231 allows a language after the charset: "utf-8*en".
    charset = charset.split("*", 1)[0]
    try:
        return octets.decode(charset, "replace")
    except Exception:
        # An unknown or non-text codec name.
        return octets.decode("utf-8", "replace")


def decodeEncodedWords(value: str) -> str:
    """
    Decode RFC 2047 encoded words.  White space between two encoded words
    is dropped, and adjacent words in the same charset are decoded together
    (senders split multi-octet characters across words).  A word that
    cannot be decoded stays as written.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = bytearray()
    pendingCharset: Optional[str] = None
    pos = 0

    def flush() -> None:
        nonlocal pendingCharset
        if pendingCharset is not None:
            out.append(_decodeCharset(bytes(pending), pendingCharset))
            pending.clear()
            pendingCharset = None

    for match in _ENCODED_WORD.finditer(value):
        charset, encoding, data = match.groups()
        between = value[pos : match.start()]
        octets = _decodeWordOctets(encoding, data)
        if octets is None:
            flush()
            out.append(between + match.group())
        elif pendingCharset is not None and (not between or between.isspace()):
            if charset.lower() != pendingCharset.lower():
                flush()
                pendingCharset = charset
            pending.extend(octets)
        else:
            flush()
            out.append(between)
            pendingCharset = charset
            pending.extend(octets)
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def parseFields(raw: bytes) -> list[tuple[str, str]]:
    """
    The fields of a header section as C{(lower-case name, value)}; the
    value is unfolded and decoded to text but not RFC 2047 decoded or
    stripped.  Parsing stops at the first empty line; lines that are
    neither a field nor a continuation are skipped.
    """
    fields: list[tuple[str, bytes]] = []
    for line in raw.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if fields:
                fieldName, value = fields[-1]
                # Unfolding removes the line break and keeps the blank.
                fields[-1] = (fieldName, value + line)
            continue
        if len(fields) >= MAX_FIELDS:
            continue
        colon = line.find(b":")
        rawName = line[:colon].rstrip(b" \t") if colon > 0 else b""
        if not _FIELD_NAME.fullmatch(rawName):
            continue
        fields.append((rawName.decode("ascii").lower(), line[colon + 1 :]))
    return [(name, decodeOctets(value)) for name, value in fields]


def extractAddresses(value: str) -> list[str]:
    """
    The addresses in an address-list field value (display names, comments
    and group syntax removed), as written.  Empty entries (an empty group,
    C{<>}) are left out.
    """
    try:
        pairs = email.utils.getaddresses([value])
    except Exception:
        # Older email.utils versions could raise on some malformed input.
        pairs = [("", part.strip()) for part in value.split(",")]
    return [address for _, address in pairs if address]


def splitAddress(address: str) -> Optional[tuple[str, str]]:
    """
    C{(localpart, domain)} of an address, split at the last C{@}, or
    L{None} when it has no non-empty local part and domain (RFC 5228
    section 2.7.4: such an address only matches with C{:all}).
    """
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return None
    return local, domain


def addressPart(address: str, part: str) -> Optional[str]:
    """
    The part of an address an address test compares, or L{None} when the
    address has no such part (then it matches no key).

    @param part: C{all}, C{localpart}, C{domain}, C{user} or C{detail}.
    """
    if part == "all":
        return address
    split = splitAddress(address)
    if split is None:
        return None
    local, domain = split
    if part == "localpart":
        return local
    if part == "domain":
        return domain
    user, separator, detail = local.partition(SUBADDRESS_SEPARATOR)
    if part == "user":
        return user
    # RFC 5233 section 4: no separator, no detail part (not even "").
    return detail if separator else None


class HeaderSection:
    """
    A message's header section, parsed once and looked up by name; decoded
    values and addresses are kept, as scripts often test the same field
    many times.
    """

    def __init__(self, raw: bytes) -> None:
        self.fields = parseFields(raw)
        self._byName: dict[str, list[str]] = {}
        for name, value in self.fields:
            self._byName.setdefault(name, []).append(value)
        self._values: dict[str, list[str]] = {}
        self._addresses: dict[str, list[str]] = {}

    def exists(self, name: str) -> bool:
        return name.lower() in self._byName

    def rawValues(self, name: str) -> list[str]:
        """
        The unfolded values of every field C{name}, in order, not RFC 2047
        decoded.
        """
        return self._byName.get(name.lower(), [])

    def values(self, name: str) -> list[str]:
        """
        The values of every field C{name} as the header test compares them:
        RFC 2047 decoded, without leading and trailing white space.
        """
        name = name.lower()
        values = self._values.get(name)
        if values is None:
            values = [decodeEncodedWords(value).strip() for value in self.rawValues(name)]
            self._values[name] = values
        return values

    def first(self, name: str) -> Optional[str]:
        """
        The first value of C{name} as L{values} gives it, or L{None}.
        """
        values = self.values(name)
        return values[0] if values else None

    def addresses(self, name: str) -> list[str]:
        """
        The addresses in every field C{name}.
        """
        name = name.lower()
        found = self._addresses.get(name)
        if found is None:
            found = []
            for value in self.rawValues(name):
                found.extend(extractAddresses(value))
            self._addresses[name] = found
        return found


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'
_ADDR_SPEC = re.compile(rf"(?:{_DOT_ATOM}|{_QUOTED})@(?:{_DOT_ATOM}|\[[^\[\]\\\s]*\])")
_NAME_ADDR = re.compile(r"[^<>]*<([^<>]*)>\s*")


def validAddress(text: str) -> Optional[str]:
    """
    The addr-spec of an address a script gives (for redirect, vacation's
    C{:from} and C{:addresses}): a bare C{local@domain}, or one in angle
    brackets with an optional display name; L{None} when it is not valid.
    """
    text = text.strip()
    match = _NAME_ADDR.fullmatch(text)
    if match is not None:
        text = match.group(1).strip()
    if len(text) > 320 or _ADDR_SPEC.fullmatch(text) is None:
        return None
    return text
