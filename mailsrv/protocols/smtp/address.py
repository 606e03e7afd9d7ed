# -*- test-case-name: tests.protocols.test_smtp_address -*-
"""
Parse the arguments of MAIL FROM and RCPT TO (RFC 5321 section 4.1.2,
RFC 6531 for UTF-8).

Address tricks that once made servers open relays are resolved here into
one unambiguous L{Address}: a source route (C{@a,@b:user@c}) is accepted and
ignored, as RFC 5321 section 3.6.1 asks; a quoted local part keeps every
character, including C{@} and C{%}, inside the local part; an address
literal stays a literal domain (C{[192.0.2.1]}) that no routing treats as
local.  Whatever remains is routed by the domain after the last C{@} only.
"""

from __future__ import annotations

import re
from typing import Optional

from mailsrv.envelope import Address

MAX_LOCAL = 64
MAX_DOMAIN = 255
MAX_PATH = 256

_ATEXT = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_PARAM_KEY = re.compile(rb"^[A-Za-z0-9][A-Za-z0-9-]*$")


class AddressSyntaxError(ValueError):
    """
    The path is malformed; the message says how, for the log.
    """


def _parseDomain(text: str, utf8: bool) -> str:
    if text.startswith("["):
        if not text.endswith("]") or len(text) < 3:
            raise AddressSyntaxError("bad address literal")
        inner = text[1:-1]
        if not re.fullmatch(r"[0-9.]+|IPv6:[0-9A-Fa-f:.]+", inner):
            raise AddressSyntaxError("bad address literal")
        return text.lower()
    domain = text.rstrip(".").lower() if text.endswith(".") and not text.endswith("..") else text.lower()
    if not domain or len(domain) > MAX_DOMAIN:
        raise AddressSyntaxError("bad domain length")
    for label in domain.split("."):
        if utf8 and not label.isascii():
            try:
                label = label.encode("idna").decode("ascii")
            except UnicodeError:
                raise AddressSyntaxError("bad internationalised domain") from None
        if not _LABEL.match(label):
            raise AddressSyntaxError(f"bad domain label {label!r}")
    return domain


def _parseLocal(data: bytes, utf8: bool) -> tuple[str, int]:
    """
    Parse a local part at the start of C{data}; return it (unquoted) and the
    number of bytes consumed.
    """
    if data[:1] == b'"':
        out = bytearray()
        i = 1
        while i < len(data):
            c = data[i]
            if c == 0x5C:  # backslash quotes the next character
                if i + 1 >= len(data):
                    break
                out.append(data[i + 1])
                i += 2
                continue
            if c == 0x22:
                local = bytes(out)
                if any(b < 0x20 or b == 0x7F for b in local):
                    raise AddressSyntaxError("control character in quoted local part")
                return _decodeLocal(local, utf8), i + 1
            out.append(c)
            i += 1
        raise AddressSyntaxError("unterminated quoted string")
    i = 0
    while i < len(data) and (data[i] in _ATEXT or data[i] == 0x2E or (data[i] >= 0x80)):
        i += 1
    local = data[:i]
    if not local or local.startswith(b".") or local.endswith(b"."):
        raise AddressSyntaxError("bad local part")
    return _decodeLocal(local, utf8), i


def _decodeLocal(local: bytes, utf8: bool) -> str:
    if not local:
        raise AddressSyntaxError("empty local part")
    if not local.isascii() and not utf8:
        raise NonASCIIAddress("8-bit local part without SMTPUTF8")
    try:
        text = local.decode("utf-8")
    except UnicodeDecodeError:
        raise AddressSyntaxError("local part is not UTF-8") from None
    if len(local) > MAX_LOCAL:
        raise AddressSyntaxError("local part too long")
    return text


class NonASCIIAddress(AddressSyntaxError):
    """
    A UTF-8 address was used in a transaction without SMTPUTF8.
    """


def parsePath(data: bytes, allowNull: bool, utf8: bool) -> tuple[Optional[Address], bytes]:
    """
    Parse C{<path>} (or a bare address, as Postfix tolerates) at the start of
    C{data}.

    @return: the address (L{None} for the null path C{<>}) and the rest of
        the line (the ESMTP parameters, unparsed).
    @raise AddressSyntaxError: on malformed input.
    """
    data = data.lstrip(b" ")
    bracketed = data.startswith(b"<")
    if bracketed:
        data = data[1:]
        if data.startswith(b">"):
            if not allowNull:
                raise AddressSyntaxError("null path not allowed here")
            return None, data[1:]
        if data.startswith(b"@"):
            # A source route: @host1,@host2:mailbox.  Ignored (RFC 5321 3.6.1).
            colon = data.find(b":")
            if colon < 0:
                raise AddressSyntaxError("bad source route")
            data = data[colon + 1 :]
    local, used = _parseLocal(data, utf8)
    data = data[used:]
    if not data.startswith(b"@"):
        raise AddressSyntaxError("missing domain")
    data = data[1:]
    end = data.find(b">") if bracketed else data.find(b" ")
    if end < 0:
        if bracketed:
            raise AddressSyntaxError("missing >")
        end = len(data)
    domainBytes = data[:end]
    if b"@" in domainBytes or b" " in domainBytes or b"<" in domainBytes:
        raise AddressSyntaxError("bad domain")
    if not domainBytes.isascii() and not utf8:
        raise NonASCIIAddress("8-bit domain without SMTPUTF8")
    try:
        domainText = domainBytes.decode("utf-8")
    except UnicodeDecodeError:
        raise AddressSyntaxError("domain is not UTF-8") from None
    domain = _parseDomain(domainText, utf8)
    rest = data[end + 1 :] if bracketed else data[end:]
    if len(local.encode("utf-8")) + 1 + len(domain) > MAX_PATH:
        raise AddressSyntaxError("path too long")
    return Address(local, domain), rest


def parseParameters(data: bytes) -> dict[str, Optional[str]]:
    """
    Parse ESMTP parameters C{KEY[=VALUE] ...}; keys are upper-cased.

    @raise AddressSyntaxError: on a malformed or repeated parameter.
    """
    params: dict[str, Optional[str]] = {}
    for item in data.split():
        key, eq, value = item.partition(b"=")
        if not _PARAM_KEY.match(key) or (eq and not value):
            raise AddressSyntaxError("bad parameter")
        name = key.decode("ascii").upper()
        if name in params:
            raise AddressSyntaxError("repeated parameter")
        try:
            params[name] = value.decode("utf-8") if eq else None
        except UnicodeDecodeError:
            raise AddressSyntaxError("bad parameter value") from None
    return params
