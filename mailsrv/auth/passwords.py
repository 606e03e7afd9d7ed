# -*- test-case-name: tests.auth.test_passwords -*-
"""
Password hashes as Dovecot stores them: C{{SCHEME}hash}.

This is the format of docker-mailserver's C{postfix-accounts.cf}, so an
accounts file written by C{doveadm pw} (or by docker-mailserver's C{setup
email add}) keeps working here unchanged, and hashes written here work in
Dovecot.

Verified schemes:

 - C{SHA512-CRYPT} (C{$6$}) and C{SHA256-CRYPT} (C{$5$}): Ulrich Drepper's
   SHA-crypt, implemented below from the specification because Python's
   C{crypt} module is deprecated (and gone in 3.13);
 - C{BLF-CRYPT} (C{$2y$}, C{$2b$}, C{$2a$}): bcrypt, via the C{bcrypt}
   package;
 - C{ARGON2ID} and C{ARGON2I}: PHC strings, via C{argon2-cffi};
 - C{CRYPT}: whichever of the above the C{$id$} prefix names, as Dovecot's
   C{CRYPT} scheme defers to the system crypt;
 - C{PLAIN} and C{CLEARTEXT}: the password itself.

New hashes are C{ARGON2ID} with Dovecot's parameters.  Every comparison of
secret-derived data uses L{hmac.compare_digest}.

These functions are slow on purpose (that is what a password hash is for):
callers on the reactor thread must run them in a thread pool.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Callable, Optional

import argon2
import bcrypt
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.logger import Logger

_log = Logger()

DEFAULT_SCHEME = "ARGON2ID"

# Dovecot's defaults for ARGON2ID (doveadm pw -s ARGON2ID): 64 MiB, 3 passes,
# one lane, 16-byte salt, 32-byte hash.
ARGON2_MEMORY_COST = 65536
ARGON2_TIME_COST = 3
ARGON2_PARALLELISM = 1

_argon2Hasher = argon2.PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_COST,
    parallelism=ARGON2_PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=argon2.Type.ID,
)

# A hash of a random, discarded password, made with exactly the parameters
# of hashPassword().  The cred checker verifies against it when the login
# name is unknown, so that "no such user" costs as much as "wrong password"
# and the response time does not reveal which accounts exist.
TIMING_DUMMY_HASH = (
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$"
    "sF8+WqSOQu7b/rwcQxn0Kw$aT6oU4x2VyrtSrMOgjpgS154pJuLQ1YngGlHAcSVo0c"
)

# bcrypt only ever looked at the first 72 bytes; the bcrypt package (5.x)
# refuses longer input instead of truncating, so truncate as crypt_blowfish
# (and thus Dovecot) does.
_BCRYPT_MAX_PASSWORD = 72


# ---------------------------------------------------------------- SHA-crypt

_CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

SHA_CRYPT_DEFAULT_ROUNDS = 5000
SHA_CRYPT_MIN_ROUNDS = 1000
SHA_CRYPT_MAX_ROUNDS = 999999999
_SHA_CRYPT_MAX_SALT = 16

# The order in which the digest bytes are encoded, three at a time, from the
# specification's b64_from_24bit() calls; the final group is shorter.
_SHA512_ORDER = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4),
    (47, 5, 26), (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51),
    (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13), (56, 14, 35),
    (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19),
    (62, 20, 41),
)  # fmt: skip
_SHA256_ORDER = (
    (0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14),
    (15, 25, 5), (6, 16, 26), (27, 7, 17), (18, 28, 8), (9, 19, 29),
)  # fmt: skip


def _b64From24Bit(b2: int, b1: int, b0: int, n: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(n):
        out.append(_CRYPT_ALPHABET[w & 0x3F])
        w >>= 6
    return "".join(out)


def _repeatTo(block: bytes, length: int) -> bytes:
    """
    C{block} repeated and cut to exactly C{length} bytes (the P and S
    sequences of the specification, steps 16 and 20).
    """
    return (block * (length // len(block) + 1))[:length]


def shaCrypt(password: bytes, setting: str) -> str:
    """
    Compute a SHA-crypt hash (C{$5$} or C{$6$}) following Drepper's
    specification, U{https://www.akkadia.org/drepper/SHA-crypt.txt}.

    @param setting: C{$6$salt}, C{$6$rounds=N$salt} or a complete hash (the
        hash part is ignored), as glibc's C{crypt()} accepts it.  The salt
        is cut to 16 characters; rounds are clamped to 1000..999999999; a
        C{rounds=} given explicitly appears in the result even when it is
        the default, exactly as in glibc.

    @return: the complete hash, C{$6$[rounds=N$]salt$hash}.

    @raise ValueError: if C{setting} is not a SHA-crypt setting.
    """
    if setting.startswith("$6$"):
        ident, newHash, digestSize, order = "6", hashlib.sha512, 64, _SHA512_ORDER
    elif setting.startswith("$5$"):
        ident, newHash, digestSize, order = "5", hashlib.sha256, 32, _SHA256_ORDER
    else:
        raise ValueError("not a SHA-crypt setting")
    rest = setting[3:]
    rounds = SHA_CRYPT_DEFAULT_ROUNDS
    explicitRounds = False
    if rest.startswith("rounds="):
        spec, sep, rest = rest[len("rounds=") :].partition("$")
        if not sep or not spec.isdigit() or not spec.isascii():
            raise ValueError("invalid rounds= field")
        rounds = max(SHA_CRYPT_MIN_ROUNDS, min(SHA_CRYPT_MAX_ROUNDS, int(spec)))
        explicitRounds = True
    saltText = rest.split("$", 1)[0][:_SHA_CRYPT_MAX_SALT]
    salt = saltText.encode("utf-8")

    # Steps 4-8: digest B of password, salt, password.
    b = newHash(password + salt + password).digest()
    # Steps 1-3 and 9-12: digest A.
    a = newHash(password + salt)
    a.update(_repeatTo(b, len(password)) if password else b"")
    n = len(password)
    while n > 0:
        a.update(b if n & 1 else password)
        n >>= 1
    aDigest = a.digest()
    # Steps 13-16: the byte sequence P from the password.
    dp = newHash(password * len(password)).digest()
    p = _repeatTo(dp, len(password)) if password else b""
    # Steps 17-20: the byte sequence S from the salt.
    ds = newHash(salt * (16 + aDigest[0])).digest()
    s = _repeatTo(ds, len(salt)) if salt else b""
    # Step 21: the rounds.
    c = aDigest
    for i in range(rounds):
        h = newHash(p if i & 1 else c)
        if i % 3:
            h.update(s)
        if i % 7:
            h.update(p)
        h.update(c if i & 1 else p)
        c = h.digest()
    # Step 22: encoding.
    encoded = "".join(_b64From24Bit(c[x], c[y], c[z], 4) for x, y, z in order)
    if digestSize == 64:
        encoded += _b64From24Bit(0, 0, c[63], 2)
    else:
        encoded += _b64From24Bit(0, c[31], c[30], 3)
    roundsField = f"rounds={rounds}$" if explicitRounds else ""
    return f"${ident}${roundsField}{saltText}${encoded}"


def _verifyShaCrypt(password: bytes, stored: str) -> bool:
    try:
        computed = shaCrypt(password, stored)
    except ValueError:
        return False
    return hmac.compare_digest(computed.encode("utf-8"), stored.encode("utf-8"))


# ------------------------------------------------------------ other schemes


def _verifyBcrypt(password: bytes, stored: str) -> bool:
    if not stored.startswith(("$2y$", "$2b$", "$2a$")):
        return False
    try:
        return bool(bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], stored.encode("ascii")))
    except (ValueError, UnicodeEncodeError):
        return False


def _argon2Verifier(prefix: str) -> Callable[[bytes, str], bool]:
    def verify(password: bytes, stored: str) -> bool:
        # The scheme name and the PHC identifier must agree: a hash filed
        # under the wrong scheme is a broken entry, not a login.
        if not stored.startswith(prefix):
            return False
        try:
            return bool(_argon2Hasher.verify(stored, password))
        except (VerificationError, InvalidHashError):
            return False

    return verify


def _verifyPlain(password: bytes, stored: str) -> bool:
    return hmac.compare_digest(password, stored.encode("utf-8"))


def _verifyCrypt(password: bytes, stored: str) -> bool:
    """
    Dovecot's C{CRYPT} scheme hands the string to the system crypt(), which
    picks the algorithm from the C{$id$} prefix.  Only the modern ones are
    supported; DES and MD5 crypt are refused.
    """
    if stored.startswith(("$5$", "$6$")):
        return _verifyShaCrypt(password, stored)
    if stored.startswith(("$2y$", "$2b$", "$2a$")):
        return _verifyBcrypt(password, stored)
    return False


_VERIFIERS: dict[str, Callable[[bytes, str], bool]] = {
    "SHA512-CRYPT": lambda password, stored: stored.startswith("$6$")
    and _verifyShaCrypt(password, stored),
    "SHA256-CRYPT": lambda password, stored: stored.startswith("$5$")
    and _verifyShaCrypt(password, stored),
    "BLF-CRYPT": _verifyBcrypt,
    "ARGON2ID": _argon2Verifier("$argon2id$"),
    "ARGON2I": _argon2Verifier("$argon2i$"),
    "CRYPT": _verifyCrypt,
    "PLAIN": _verifyPlain,
    "CLEARTEXT": _verifyPlain,
}

SUPPORTED_SCHEMES = frozenset(_VERIFIERS)


def splitScheme(stored: str) -> tuple[Optional[str], str]:
    """
    Split C{{SCHEME}rest} into the upper-cased scheme name and the rest.

    @return: C{(None, stored)} when there is no C{{SCHEME}} prefix.
    """
    if stored.startswith("{"):
        scheme, sep, rest = stored[1:].partition("}")
        if sep and scheme:
            return scheme.upper(), rest
    return None, stored


def verifyPassword(password: bytes, stored: str) -> bool:
    """
    Whether C{password} matches the stored C{{SCHEME}hash}.

    Never raises for bad input: a malformed hash, an unknown scheme or a
    missing C{{SCHEME}} prefix all give C{False}, with a warning naming the
    scheme (never the hash, which is as good as a password to an offline
    attacker).
    """
    scheme, rest = splitScheme(stored)
    if scheme is None:
        _log.warn(
            "Password hash without a {{SCHEME}} prefix; refusing the login",
            scheme=None,
        )
        return False
    verifier = _VERIFIERS.get(scheme)
    if verifier is None:
        _log.warn(
            "Unsupported password scheme {scheme}; refusing the login",
            scheme=scheme[:40],
        )
        return False
    try:
        return bool(verifier(password, rest))
    except Exception:
        # A hash library failing on some odd input must refuse the login, not
        # break the authentication exchange.
        _log.failure("Password verification failed for scheme {scheme}", scheme=scheme)
        return False


def hashPassword(password: bytes) -> str:
    """
    Hash a new password with L{DEFAULT_SCHEME} (ARGON2ID with Dovecot's
    parameters), as C{{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$...}.
    """
    return "{" + DEFAULT_SCHEME + "}" + _argon2Hasher.hash(password)
