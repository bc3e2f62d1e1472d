"""Single-use links (invitations, password resets): issue, check, use, void.

The token is ``secrets.token_urlsafe(32)`` (256 bits), mailed once; only its
SHA-256 is stored. Checking (`peek`) and using (`use`) are apart so that a
weak password can be retried with the same link; `use` is a conditional
UPDATE, so of two concurrent requests with one link only one wins.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from cloud.users._common import MAX_TOKEN_CHARS, digest
from cloud.users.exceptions import InvalidOneTimeToken
from cloud.users.models import OneTimeToken, OneTimeTokenPurpose, User

__all__ = ["issue", "peek", "use", "void"]


def issue(
    session: Session, user: User, purpose: OneTimeTokenPurpose, validity: timedelta, now: datetime
) -> str:
    """A new link token for the user, valid for `validity`; the secret, shown once."""
    token = secrets.token_urlsafe(32)
    session.add(
        OneTimeToken(
            token_hash=digest(token),
            user_id=user.id,
            purpose=purpose,
            created_at=now,
            expires_at=now + validity,
        )
    )
    session.flush()
    return token


def peek(session: Session, token: str, purpose: OneTimeTokenPurpose, now: datetime) -> OneTimeToken:
    """The valid, unused token row, without using it (so a weak password can be retried).

    Raises:
        InvalidOneTimeToken: forged, of another purpose, used or expired.
    """
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidOneTimeToken(purpose)
    row = session.scalars(
        select(OneTimeToken).where(OneTimeToken.token_hash == digest(token))
    ).one_or_none()
    if row is None or row.purpose != purpose or row.used_at is not None or now >= row.expires_at:
        raise InvalidOneTimeToken(purpose)
    return row


def use(session: Session, row: OneTimeToken, purpose: OneTimeTokenPurpose, now: datetime) -> None:
    """Mark a token from `peek` used.

    Single use even against a concurrent request with the same link: only the
    transaction whose UPDATE still finds it unused gets it.

    Raises:
        InvalidOneTimeToken: another request used it first.
    """
    used = cast(
        CursorResult[Any],
        session.execute(
            update(OneTimeToken)
            .where(OneTimeToken.id == row.id, OneTimeToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ),
    )
    if used.rowcount != 1:
        raise InvalidOneTimeToken(purpose)
    row.used_at = now


def void(
    session: Session, user_id: int, now: datetime, purpose: OneTimeTokenPurpose | None = None
) -> None:
    """Make every unused link of the user (of one purpose, or all) unusable."""
    query = update(OneTimeToken).where(
        OneTimeToken.user_id == user_id, OneTimeToken.used_at.is_(None)
    )
    if purpose is not None:
        query = query.where(OneTimeToken.purpose == purpose)
    session.execute(query.values(used_at=now).execution_options(synchronize_session=False))
