"""The append-only audit log: who did what, to what, when and from where.

`record_audit` adds its entry in the caller's transaction, so a privileged
action and its record commit or vanish together. Details are made JSON-able
here (dates to ISO strings, sets sorted) so every writer stores the same form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.core.exceptions import InvalidInput
from cloud.core.problems import request_id_of
from cloud.users._common import check_page, clock
from cloud.users.models import AuditEntry, User

if TYPE_CHECKING:
    from starlette.requests import Request

    from cloud.core.authz import Principal

__all__ = ["Actor", "list_audit", "record_audit"]

_ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


@dataclass(frozen=True)
class Actor:
    """Who does something, for the audit log: from the request's principal.

    Attributes:
        subject: the user's email, ``token:<prefix>``, ``system`` or ``anonymous``.
        user_id: the acting user, if any.
        ip: the client address the request came from.
        request_id: the request id of the structured logs.
    """

    subject: str
    user_id: int | None = None
    ip: str | None = None
    request_id: str | None = None

    @classmethod
    def of_request(cls, request: Request, principal: Principal) -> Actor:
        """The request's principal, with the address and request id it came with."""
        return cls(
            subject=principal.subject,
            user_id=principal.user_id,
            ip=request.client.host if request.client else None,
            request_id=request_id_of(request),
        )

    @classmethod
    def system(cls) -> Actor:
        """The command line or a background job."""
        return cls("system")

    @classmethod
    def anonymous(cls, *, ip: str | None = None, request_id: str | None = None) -> Actor:
        return cls("anonymous", ip=ip, request_id=request_id)

    @classmethod
    def of_user(cls, user: User, *, ip: str | None = None, request_id: str | None = None) -> Actor:
        return cls(user.email, user.id, ip, request_id)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(item) for item in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def record_audit(
    *,
    session: Session,
    actor: Actor,
    action: str,
    target: str | None = None,
    details: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append an entry to the audit log (in the caller's transaction).

    Args:
        session: the unit of work's session, the one doing the action.
        actor: who, and from where.
        action: a dotted verb, ``user.create``.
        target: what it was done to, ``user:12``.
        details: JSON-able facts (dates become ISO strings); never secrets.
        at: when (default now).

    Raises:
        InvalidInput: an action that is not a dotted lower-case verb.
    """
    if len(action) > 64 or not _ACTION_PATTERN.fullmatch(action):
        raise InvalidInput(f"audit action {action[:64]!r}: dotted lower-case words")
    entry = AuditEntry(
        at=clock(at),
        actor_user_id=actor.user_id,
        actor=actor.subject[:320],
        action=action,
        target=target[:200] if target else None,
        details=_jsonable(details) if details is not None else None,
        ip=actor.ip[:45] if actor.ip else None,
        request_id=actor.request_id[:64] if actor.request_id else None,
    )
    session.add(entry)
    session.flush()
    return entry


def list_audit(
    *,
    session: Session,
    actor_user_id: int | None = None,
    action: str | None = None,
    action_prefix: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditEntry]:
    """Audit entries, newest first, filtered and paged.

    Args:
        actor_user_id, action, target: exact matches.
        action_prefix: ``user.`` gives every user action.
        since, until: ``since <= at < until``.
        limit: 1 … 500; offset ≥ 0.

    Raises:
        InvalidInput: limit or offset out of range.
    """
    check_page(limit, offset)
    query = select(AuditEntry)
    if actor_user_id is not None:
        query = query.where(AuditEntry.actor_user_id == actor_user_id)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if action_prefix is not None:
        escaped = action_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(AuditEntry.action.like(f"{escaped}%", escape="\\"))
    if target is not None:
        query = query.where(AuditEntry.target == target)
    if since is not None:
        query = query.where(AuditEntry.at >= clock(since))
    if until is not None:
        query = query.where(AuditEntry.at < clock(until))
    query = query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))
