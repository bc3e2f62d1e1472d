"""What a customer user owns: its accounts, the meters linked to them now,
and the periods each meter was linked to them (what they may see of it).

Kept apart from `service` so that `policies` can ask without importing the
whole service (which itself imports `policies`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cloud.core.db import utc_now
from cloud.customers.models import Account, AccountMeter


def meter_serials(*, session: Session, user_id: int, at: datetime | None = None) -> frozenset[str]:
    """Serials linked at `at` (default now) to accounts the user holds."""
    moment = at or utc_now()
    rows = session.scalars(
        select(AccountMeter.meter_serial)
        .join(Account, Account.id == AccountMeter.account_id)
        .where(
            Account.holder_user_id == user_id,
            AccountMeter.linked_at <= moment,
            or_(AccountMeter.unlinked_at.is_(None), AccountMeter.unlinked_at > moment),
        )
    )
    return frozenset(rows)


Period = tuple[datetime, datetime | None]


def meter_periods(*, session: Session, user_id: int, serial: str) -> tuple[Period, ...]:
    """When `serial` was linked to accounts the user holds: ``(linked_at,
    unlinked_at or None)``, oldest first, overlaps merged. Empty: never."""
    rows = session.execute(
        select(AccountMeter.linked_at, AccountMeter.unlinked_at)
        .join(Account, Account.id == AccountMeter.account_id)
        .where(Account.holder_user_id == user_id, AccountMeter.meter_serial == serial)
        .order_by(AccountMeter.linked_at)
    )
    merged: list[Period] = []
    for linked_at, unlinked_at in rows:
        if merged and (merged[-1][1] is None or linked_at <= merged[-1][1]):
            previous_start, previous_end = merged[-1]
            still_open = previous_end is None or unlinked_at is None
            merged[-1] = (previous_start, None if still_open else max(previous_end, unlinked_at))
        else:
            merged.append((linked_at, unlinked_at))
    return tuple(merged)


def account_numbers(*, session: Session, user_id: int) -> frozenset[str]:
    """Numbers of the accounts the user holds."""
    return frozenset(
        session.scalars(select(Account.number).where(Account.holder_user_id == user_id))
    )
