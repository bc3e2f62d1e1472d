"""Revoking credentials (console sessions, API tokens): one row, or all of a user's.

Both kinds carry ``revoked_at``; revoking is setting it, once. Revoking one
row is audited here (idempotent: a second revoke writes nothing); revoking
all of a user's is one UPDATE whose count the caller puts in its own audit
entry (disable, password change, log out everywhere).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from cloud.users.audit import Actor, record_audit
from cloud.users.models import ApiToken, LoginSession

__all__ = ["revoke_all_of_user", "revoke_one"]


def revoke_one(
    session: Session,
    row: LoginSession | ApiToken,
    *,
    actor: Actor,
    action: str,
    target: str,
    details: Mapping[str, Any],
    now: datetime,
) -> None:
    """Revoke `row` and audit it, unless it is revoked already."""
    if row.revoked_at is not None:
        return
    row.revoked_at = now
    record_audit(
        session=session, actor=actor, action=action, target=target, details=details, at=now
    )


def revoke_all_of_user(
    session: Session,
    model: type[LoginSession] | type[ApiToken],
    user_id: int,
    now: datetime,
    keep_id: int | None = None,
) -> int:
    """Revoke every unrevoked `model` row of the user but `keep_id`; how many."""
    query = update(model).where(model.user_id == user_id, model.revoked_at.is_(None))
    if keep_id is not None:
        query = query.where(model.id != keep_id)
    result = cast(
        CursorResult[Any],
        session.execute(
            query.values(revoked_at=now).execution_options(synchronize_session="fetch")
        ),
    )
    return int(result.rowcount)
