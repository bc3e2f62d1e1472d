"""What every users module shares: the clock, the settings, digests, the principal,
looking a user up, and page bounds.

The users services live in several modules (accounts, sessions, tokens,
one_time_tokens, audit) that `cloud.users.service` re-exports; this module is
their common floor and imports none of them, so they can all import it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.core.db import utc_now
from cloud.core.exceptions import InvalidInput, NaiveTimestamp
from cloud.users.exceptions import InvalidEmail, UserNotFound
from cloud.users.mail import EMAIL_PATTERN
from cloud.users.models import EMAIL_MAX_LENGTH, User

__all__ = [
    "DEFAULT_SETTINGS",
    "MAX_PAGE",
    "MAX_TOKEN_CHARS",
    "UserPrincipal",
    "UserSettings",
    "check_page",
    "clock",
    "digest",
    "get_user",
    "normalize_email",
    "user_by_email",
]

MAX_PAGE = 500
# Longer than any token we issue: refused before hashing anything.
MAX_TOKEN_CHARS = 128


@dataclass(frozen=True)
class UserSettings:
    """The security parameters (docs/users.md explains the defaults)."""

    max_failed_logins: int = 5
    lockout: timedelta = timedelta(minutes=15)
    session_idle: timedelta = timedelta(minutes=30)
    session_lifetime: timedelta = timedelta(hours=12)
    session_touch_interval: timedelta = timedelta(minutes=1)
    invite_validity: timedelta = timedelta(days=7)
    reset_validity: timedelta = timedelta(hours=1)
    max_pending_resets: int = 3
    token_max_lifetime: timedelta = timedelta(days=365)
    token_touch_interval: timedelta = timedelta(minutes=1)


DEFAULT_SETTINGS = UserSettings()


@dataclass(frozen=True)
class UserPrincipal:
    """An authenticated caller, field for field what `cloud.core.authz.Principal` needs.

    Attributes:
        subject: the user's email.
        roles: the user's role, as read now from its row.
        kind: ``session`` or ``token``.
        user_id: the user.
        scopes: an API token's scopes; None for a session (the role decides).
        credential_id: the session or token id (to revoke "this" session).
    """

    subject: str
    roles: frozenset[str]
    kind: Literal["session", "token"]
    user_id: int
    scopes: frozenset[str] | None
    credential_id: int


def clock(now: datetime | None) -> datetime:
    """`now`, or the clock's time when None.

    Raises:
        NaiveTimestamp: `now` has no time zone.
    """
    if now is None:
        return utc_now()
    if now.tzinfo is None or now.utcoffset() is None:
        raise NaiveTimestamp("now")
    return now


def digest(token: str) -> str:
    """What is stored of a secret: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_page(limit: int, offset: int) -> None:
    """Raises InvalidInput unless ``1 <= limit <= MAX_PAGE`` and ``offset >= 0``."""
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidInput(f"limit must be 1-{MAX_PAGE} and offset ≥ 0")


def normalize_email(email: str) -> str:
    """The stored form: trimmed, lower-cased (so uniqueness ignores case).

    Raises:
        InvalidEmail: not an address (one @, a dotted domain, ≤ 254 characters).
    """
    normalized = email.strip().lower()
    if len(normalized) > EMAIL_MAX_LENGTH or not EMAIL_PATTERN.fullmatch(normalized):
        raise InvalidEmail(email)
    return normalized


def get_user(*, session: Session, user_id: int) -> User:
    """The user with this id.

    Raises:
        UserNotFound: no such user.
    """
    user = session.get(User, user_id)
    if user is None:
        raise UserNotFound(user_id)
    return user


def user_by_email(session: Session, email: str) -> User | None:
    """The user with this (already normalized) address, if any."""
    return session.scalars(select(User).where(User.email == email)).one_or_none()
