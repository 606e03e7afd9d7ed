# -*- test-case-name: tests.auth.test_sasl -*-
"""
SASL mechanisms PLAIN (RFC 4616) and LOGIN, shared by SMTP AUTH, POP3 AUTH
and IMAP AUTHENTICATE.

The exchange is driven by the protocol: it base64-decodes each client line
with L{decodeResponse} and feeds it to L{SASLExchange.respond}, which returns
either the next challenge or the finished credentials.
"""

from __future__ import annotations

import base64
import binascii
from typing import Optional, Union

from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.mail.interfaces import IChallengeResponse
from zope.interface import implementer

MECHANISMS = ("PLAIN", "LOGIN")

# Long enough for any sane user name and password, short enough that a
# client cannot make the server buffer much.
MAX_RESPONSE = 4096


class SASLError(Exception):
    """
    The client's SASL data is malformed, or it cancelled the exchange.

    @ivar cancelled: the client sent C{*} (RFC 4954 section 4).
    """

    def __init__(self, message: str, cancelled: bool = False) -> None:
        super().__init__(message)
        self.cancelled = cancelled


def decodeResponse(line: bytes) -> bytes:
    """
    Decode one base64 client response; C{=} is the empty response.

    @raise SASLError: for C{*} (cancel), invalid base64 or an over-long line.
    """
    line = line.strip()
    if line == b"*":
        raise SASLError("authentication cancelled", cancelled=True)
    if line == b"=":
        return b""
    if len(line) > MAX_RESPONSE:
        raise SASLError("response too long")
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise SASLError("invalid base64 in response") from None


def encodeChallenge(challenge: bytes) -> bytes:
    return base64.b64encode(challenge)


def parsePlain(response: bytes) -> UsernamePassword:
    """
    Split a PLAIN response C{authzid NUL authcid NUL passwd}.

    An authorization identity different from the authentication identity
    would mean acting as another user; mailsrv has no such right to grant,
    so it is refused outright.
    """
    parts = response.split(b"\0")
    if len(parts) != 3:
        raise SASLError("malformed PLAIN response")
    authzid, authcid, password = parts
    if not authcid:
        raise SASLError("empty user name")
    if authzid and authzid != authcid:
        raise SASLError("authorization identity not permitted")
    return UsernamePassword(authcid, password)


class SASLExchange:
    """
    One authentication exchange for one mechanism.
    """

    def __init__(self, mechanism: str) -> None:
        mechanism = mechanism.upper()
        if mechanism not in MECHANISMS:
            raise SASLError(f"unsupported mechanism {mechanism}")
        self.mechanism = mechanism
        self._username: Optional[bytes] = None

    def start(self, initial: Optional[bytes]) -> Union[bytes, UsernamePassword]:
        """
        Begin with an optional initial response (already decoded).

        @return: a challenge to send (raw bytes, the protocol encodes it), or
            the credentials when the exchange is complete.
        """
        if initial is not None:
            return self.respond(initial)
        if self.mechanism == "PLAIN":
            return b""
        return b"Username:"

    def respond(self, response: bytes) -> Union[bytes, UsernamePassword]:
        """
        Take one decoded client response.
        """
        if self.mechanism == "PLAIN":
            return parsePlain(response)
        if self._username is None:
            if not response:
                raise SASLError("empty user name")
            self._username = response
            return b"Password:"
        return UsernamePassword(self._username, response)


@implementer(IChallengeResponse, IUsernamePassword)
class PlainChallenge(UsernamePassword):
    """
    PLAIN for Twisted's IMAP4Server, which drives L{IChallengeResponse}
    objects itself.  Unlike Twisted's C{PLAINCredentials} it refuses a
    foreign authorization identity.
    """

    def __init__(self) -> None:
        super().__init__(b"", b"")

    def getChallenge(self) -> bytes:
        return b""

    def setResponse(self, response: bytes) -> None:
        from twisted.mail.imap4 import IllegalClientResponse

        try:
            creds = parsePlain(response)
        except SASLError as e:
            raise IllegalClientResponse(str(e)) from None
        self.username, self.password = creds.username, creds.password

    def moreChallenges(self) -> bool:
        return False
