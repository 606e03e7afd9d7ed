# -*- test-case-name: tests.protocols.test_managesieve -*-
"""
ManageSieve responses (RFC 5804 section 4): C{OK}, C{NO} and C{BYE} lines
with an optional response code and a human-readable string, and the
strings the server sends (quoted when they may be, literals otherwise).
"""

from __future__ import annotations

from typing import Optional, Union

from mailsrv.protocols.managesieve.parser import MAX_QUOTED

ENCRYPT_NEEDED = b"ENCRYPT-NEEDED"
MAXSIZE = b"QUOTA/MAXSIZE"
MAXSCRIPTS = b"QUOTA/MAXSCRIPTS"
NONEXISTENT = b"NONEXISTENT"
ALREADYEXISTS = b"ALREADYEXISTS"
ACTIVE = b"ACTIVE"
WARNINGS = b"WARNINGS"
TRYLATER = b"TRYLATER"

# Some texts are Dovecot's, which clients and users already know.
TEXT_PLAINTEXT = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
TEXT_TEMP = "Temporary server failure, try again later."
TEXT_USER_IP = "Maximum number of connections from user+IP exceeded (max_connections_per_user_ip=%d)"


def quoted(value: Union[bytes, str]) -> bytes:
    """
    A string as the server sends it: quoted (C{\\} and C{"} escaped) when
    it may be, otherwise a literal C{{N}CRLF...}.
    """
    if isinstance(value, str):
        value = value.encode("utf-8")
    if len(value) <= MAX_QUOTED and not any(c in value for c in b"\r\n\0"):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n%s" % (len(value), value)


def response(kind: bytes, text: Optional[str] = None, code: Optional[bytes] = None) -> bytes:
    """
    One C{OK}, C{NO} or C{BYE} line (without CRLF): C{NO (CODE) "text"}.
    """
    line = kind
    if code is not None:
        line += b" (" + code + b")"
    if text is not None:
        line += b" " + quoted(text)
    return line
