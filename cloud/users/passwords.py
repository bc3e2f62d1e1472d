"""Password hashing (argon2id) and the password policy.

Strategy: argon2-cffi's `PasswordHasher` with its default profile, RFC 9106's
"low memory" recommendation for argon2id (t=3, m=64 MiB, p=4). The hash is a
PHC string that names its own parameters, so old hashes keep verifying after
the parameters change, and `needs_rehash` tells the login to store a new
one made with today's parameters.

For an unknown email the login still verifies the password against a dummy
hash made with the same parameters, so the answer takes about as long as
for a known one and timing does not tell which emails are registered.

Policy (NIST SP 800-63B style: length over composition rules):
at least `MIN_LENGTH` characters, at most `MAX_LENGTH` (argon2 would hash a
megabyte happily; we refuse to be asked to), not the email address or its
local part, not one of `COMMON_PASSWORDS`. Each refusal names its rule.
"""

from __future__ import annotations

import logging
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from cloud.users.exceptions import WeakPassword

__all__ = [
    "COMMON_PASSWORDS",
    "DEFAULT_HASHER",
    "MAX_LENGTH",
    "MIN_LENGTH",
    "check_password_policy",
    "dummy_verify",
    "hash_password",
    "needs_rehash",
    "verify_password",
]

logger = logging.getLogger(__name__)

MIN_LENGTH = 12
MAX_LENGTH = 1024
DEFAULT_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile

# Long enough to pass the length rule, and still the first thing an attacker
# tries (breach corpora). Compared lower-cased, spaces removed.
COMMON_PASSWORDS = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123456123456",
        "111111111111",
        "000000000000",
        "password1234",
        "password12345",
        "password123456",
        "passwordpassword",
        "password!123",
        "p@ssw0rd1234",
        "qwerty123456",
        "qwertyuiop12",
        "qwertyuiopasdf",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "iloveyou1234",
        "letmein12345",
        "welcome12345",
        "welcome@1234",
        "changeme1234",
        "administrator",
        "administrator1",
        "adminadmin123",
        "admin1234567",
        "abcdefghijkl",
        "abcd12345678",
        "trustno1trustno1",
        "sunshine1234",
        "football1234",
        "baseball1234",
        "monkey123456",
        "dragon123456",
        "superman1234",
        "starwars1234",
        "princess1234",
        "voltstack123",
        "voltstack1234",
        "correcthorsebatterystaple",
    }
)


def check_password_policy(password: str, *, email: str | None = None) -> None:
    """Refuse a password that breaks a rule.

    Args:
        password: the candidate.
        email: the user's address; the password may not be it or its local part.

    Raises:
        WeakPassword: with ``rule`` one of ``too_short``, ``too_long``,
            ``contains_email``, ``common``.
    """
    if len(password) < MIN_LENGTH:
        raise WeakPassword("too_short", f"use at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword("too_long", f"use at most {MAX_LENGTH} characters")
    folded = password.casefold()
    if email:
        address = email.casefold()
        local_part = address.split("@", 1)[0]
        if address in folded or (len(local_part) >= 4 and folded == local_part):
            raise WeakPassword("contains_email", "do not use your email address")
    if "".join(folded.split()) in COMMON_PASSWORDS:
        raise WeakPassword("common", "this password is too common: choose another")


def hash_password(password: str, *, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    """An argon2id PHC string for `password` (fresh random salt)."""
    return hasher.hash(password)


def verify_password(
    password_hash: str, password: str, *, hasher: PasswordHasher = DEFAULT_HASHER
) -> bool:
    """True if `password` matches; False for a mismatch or an unreadable hash."""
    try:
        return hasher.verify(password_hash, password)
    except VerifyMismatchError:
        return False
    except (VerificationError, InvalidHashError):
        logger.warning("a stored password hash cannot be verified (corrupt or unknown format)")
        return False


def needs_rehash(password_hash: str, *, hasher: PasswordHasher = DEFAULT_HASHER) -> bool:
    """True if the hash was made with other parameters than `hasher`'s."""
    try:
        return hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@cache
def _dummy_hash(time_cost: int, memory_cost: int, parallelism: int, hash_len: int) -> str:
    hasher = PasswordHasher(
        time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, hash_len=hash_len
    )
    return hasher.hash("no user has this password")


def dummy_verify(password: str, *, hasher: PasswordHasher = DEFAULT_HASHER) -> None:
    """Spend the time of a verification for a user that does not exist."""
    dummy = _dummy_hash(hasher.time_cost, hasher.memory_cost, hasher.parallelism, hasher.hash_len)
    verify_password(dummy, password[:MAX_LENGTH], hasher=hasher)
