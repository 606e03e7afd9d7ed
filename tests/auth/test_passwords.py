# -*- test-case-name: tests.auth.test_passwords -*-
"""
Tests for L{mailsrv.auth.passwords}.
"""

from __future__ import annotations

import shutil
import subprocess

import argon2
import bcrypt
import pytest
from twisted.logger import capturedLogs

from mailsrv.auth.passwords import (
    ARGON2_MEMORY_COST,
    ARGON2_PARALLELISM,
    ARGON2_TIME_COST,
    TIMING_DUMMY_HASH,
    hashPassword,
    shaCrypt,
    splitScheme,
    verifyPassword,
)

_LONG_TEXT = (
    "a very much longer text to encrypt.  This one even stretches over more"
    "than one line."
)

# The test vectors published with Drepper's specification,
# https://www.akkadia.org/drepper/SHA-crypt.txt: (setting, password, hash).
SHA256_VECTORS = [
    ("$5$saltstring", "Hello world!",
     "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"),
    ("$5$rounds=10000$saltstringsaltstring", "Hello world!",
     "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"),
    ("$5$rounds=5000$toolongsaltstring", "This is just a test",
     "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5"),
    ("$5$rounds=1400$anotherlongsaltstring", _LONG_TEXT,
     "$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1"),
    ("$5$rounds=77777$short", "we have a short salt string but not a short password",
     "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/"),
    ("$5$rounds=123456$asaltof16chars..", "a short string",
     "$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD"),
    ("$5$rounds=10$roundstoolow", "the minimum number is still observed",
     "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC"),
]  # fmt: skip

SHA512_VECTORS = [
    ("$6$saltstring", "Hello world!",
     "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLi"
     "BFdcbYEdFCoEOfaS35inz1"),
    ("$6$rounds=10000$saltstringsaltstring", "Hello world!",
     "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/"
     "UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."),
    ("$6$rounds=5000$toolongsaltstring", "This is just a test",
     "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7o"
     "GDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"),
    ("$6$rounds=1400$anotherlongsaltstring", _LONG_TEXT,
     "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoY"
     "N3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"),
    ("$6$rounds=77777$short", "we have a short salt string but not a short password",
     "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRUL"
     "J5CCaUeOxFmtlcGZelFl5CxtgfiAc0"),
    ("$6$rounds=123456$asaltof16chars..", "a short string",
     "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu."
     "Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1"),
    ("$6$rounds=10$roundstoolow", "the minimum number is still observed",
     "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZ"
     "t58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."),
]  # fmt: skip


@pytest.mark.parametrize("setting,password,expected", SHA256_VECTORS + SHA512_VECTORS)
def test_shaCryptSpecVectors(setting: str, password: str, expected: str) -> None:
    """
    shaCrypt reproduces every published SHA-crypt test vector, including salt
    truncation to 16 characters and the clamping of rounds to 1000.
    """
    assert shaCrypt(password.encode(), setting) == expected


@pytest.mark.parametrize("setting,password,expected", SHA256_VECTORS + SHA512_VECTORS)
def test_verifySpecVectors(setting: str, password: str, expected: str) -> None:
    """
    The spec vectors verify under their Dovecot scheme name, and a one-letter
    change of the password is refused.
    """
    scheme = "SHA512-CRYPT" if expected.startswith("$6$") else "SHA256-CRYPT"
    stored = "{" + scheme + "}" + expected
    assert verifyPassword(password.encode(), stored)
    assert not verifyPassword(password.encode() + b"x", stored)


def test_shaCryptAcceptsCompleteHashAsSetting() -> None:
    """
    As with crypt(3), a complete hash may be passed as the setting; its hash
    part is ignored, which is how verification recomputes it.
    """
    _, password, expected = SHA512_VECTORS[1]
    assert shaCrypt(password.encode(), expected) == expected


def test_shaCryptRejectsBadSettings() -> None:
    """
    Something that is not a SHA-crypt setting raises ValueError, and
    verifyPassword turns a malformed rounds field into a refusal.
    """
    with pytest.raises(ValueError):
        shaCrypt(b"x", "$1$abc$")
    with pytest.raises(ValueError):
        shaCrypt(b"x", "$6$rounds=lots$salt$")
    assert not verifyPassword(b"x", "{SHA512-CRYPT}$6$rounds=lots$salt$abc")


def _openssl(*args: str, stdin: bytes = b"") -> str:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    return subprocess.run(
        ["openssl", "passwd", *args], input=stdin, capture_output=True, check=True
    ).stdout.decode().strip()


@pytest.mark.parametrize("flag,scheme", [("-6", "SHA512-CRYPT"), ("-5", "SHA256-CRYPT")])
def test_opensslHashes(flag: str, scheme: str) -> None:
    """
    Hashes made by an independent implementation (OpenSSL) verify, with a
    fixed salt, a random salt and a password longer than the digest (read
    from stdin), and our own computation gives the identical string.
    """
    fixed = _openssl(flag, "-salt", "abc", "secret")
    assert shaCrypt(b"secret", fixed) == fixed
    assert verifyPassword(b"secret", "{" + scheme + "}" + fixed)
    assert not verifyPassword(b"Secret", "{" + scheme + "}" + fixed)

    randomSalt = _openssl(flag, "secret")
    assert verifyPassword(b"secret", "{" + scheme + "}" + randomSalt)

    longPassword = "pässwörd-" * 12
    long = _openssl(flag, "-salt", "0123456789abcdef", "-stdin", stdin=longPassword.encode() + b"\n")
    assert verifyPassword(longPassword.encode(), "{" + scheme + "}" + long)
    assert not verifyPassword(longPassword.encode()[:-1], "{" + scheme + "}" + long)


def test_bcrypt() -> None:
    """
    BLF-CRYPT hashes verify with the $2y$ prefix Dovecot and PHP write as
    well as $2b$ and $2a$; a wrong password is refused.
    """
    made = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()
    assert made.startswith("$2b$")
    for prefix in ("$2y$", "$2b$", "$2a$"):
        stored = "{BLF-CRYPT}" + prefix + made[4:]
        assert verifyPassword(b"secret", stored), prefix
        assert not verifyPassword(b"secreT", stored), prefix


def test_bcryptLongPasswordTruncatedAt72() -> None:
    """
    bcrypt only ever used the first 72 bytes; a longer password must still
    verify (as it does in Dovecot) instead of raising.
    """
    password = b"x" * 72
    stored = "{BLF-CRYPT}" + bcrypt.hashpw(password, bcrypt.gensalt(rounds=4)).decode()
    assert verifyPassword(password + b"more", stored)
    assert not verifyPassword(password[:-1], stored)


def test_argon2Schemes() -> None:
    """
    ARGON2ID and ARGON2I PHC strings verify; a hash filed under the other
    Argon2 scheme name is refused.
    """
    argon2id = argon2.PasswordHasher(time_cost=1, memory_cost=1024, type=argon2.Type.ID)
    argon2i = argon2.PasswordHasher(time_cost=1, memory_cost=1024, type=argon2.Type.I)
    hid = argon2id.hash(b"secret")
    hi = argon2i.hash(b"secret")
    assert verifyPassword(b"secret", "{ARGON2ID}" + hid)
    assert not verifyPassword(b"wrong", "{ARGON2ID}" + hid)
    assert verifyPassword(b"secret", "{ARGON2I}" + hi)
    assert not verifyPassword(b"wrong", "{ARGON2I}" + hi)
    assert not verifyPassword(b"secret", "{ARGON2I}" + hid)
    assert not verifyPassword(b"secret", "{ARGON2ID}" + hi)


def test_hashPasswordRoundtrip() -> None:
    """
    New hashes are {ARGON2ID} with Dovecot's parameters, verify, are salted
    (two hashes of one password differ) and refuse other passwords.
    """
    stored = hashPassword(b"correct horse")
    assert stored.startswith(
        "{ARGON2ID}$argon2id$v=19$"
        f"m={ARGON2_MEMORY_COST},t={ARGON2_TIME_COST},p={ARGON2_PARALLELISM}$"
    )
    assert (ARGON2_MEMORY_COST, ARGON2_TIME_COST, ARGON2_PARALLELISM) == (65536, 3, 1)
    assert verifyPassword(b"correct horse", stored)
    assert not verifyPassword(b"correct horsE", stored)
    assert hashPassword(b"correct horse") != stored


def test_timingDummyHashMatchesDefault() -> None:
    """
    The dummy hash used for unknown users has exactly the scheme and cost
    parameters of new hashes, so it costs as much to verify; and it does not
    verify the empty password.
    """
    prefix = hashPassword(b"x").rsplit("$", 2)[0]
    assert TIMING_DUMMY_HASH.rsplit("$", 2)[0] == prefix
    assert not verifyPassword(b"", TIMING_DUMMY_HASH)


def test_dovecotStyleStrings() -> None:
    """
    Strings as "doveadm pw" prints them verify: scheme names are
    case-insensitive, CRYPT dispatches on the $id$ prefix, PLAIN and
    CLEARTEXT compare the password.
    """
    sha512 = shaCrypt(b"pw", "$6$0123456789abcdef")
    bf = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)
    for stored in (
        "{SHA512-CRYPT}" + sha512,
        "{sha512-crypt}" + sha512,
        "{CRYPT}" + sha512,
        "{CRYPT}" + bf,
        "{BLF-CRYPT}" + bf,
        "{PLAIN}pw",
        "{CLEARTEXT}pw",
    ):
        assert verifyPassword(b"pw", stored), stored
        assert not verifyPassword(b"pw2", stored), stored


def test_plainIsExact() -> None:
    """
    PLAIN compares the whole password, UTF-8 encoded: prefixes, extensions
    and case changes are refused.
    """
    assert verifyPassword("grüße".encode(), "{PLAIN}grüße")
    assert not verifyPassword(b"gr", "{PLAIN}grüße")
    assert not verifyPassword("grüßex".encode(), "{PLAIN}grüße")
    assert not verifyPassword(b"", "{PLAIN}x")


def test_unknownSchemeLogsSchemeNotHash() -> None:
    """
    An unknown scheme is refused with a warning that names the scheme and
    never contains the hash.
    """
    with capturedLogs() as events:
        assert not verifyPassword(b"pw", "{MD5-CRYPT}$1$saltsalt$SECRETHASHVALUE")
    warnings = [e for e in events if e.get("scheme") == "MD5-CRYPT"]
    assert warnings
    for event in events:
        assert "SECRETHASHVALUE" not in repr(event)


@pytest.mark.parametrize(
    "stored",
    ["", "nobraces", "{}x", "{SHA512-CRYPT}", "{SHA512-CRYPT}$5$abc$def",
     "{BLF-CRYPT}$6$abc", "{BLF-CRYPT}$2y$garbage", "{ARGON2ID}$argon2id$garbage",
     "{SHA512-CRYPT"],
)  # fmt: skip
def test_malformedRefused(stored: str) -> None:
    """
    Malformed and mismatched entries refuse the login without raising.
    """
    assert verifyPassword(b"pw", stored) is False


def test_splitScheme() -> None:
    """
    splitScheme upper-cases the scheme and leaves the rest untouched, and
    reports a missing prefix as None.
    """
    assert splitScheme("{blf-crypt}$2y$X") == ("BLF-CRYPT", "$2y$X")
    assert splitScheme("$6$abc") == (None, "$6$abc")
