"""What a customer user owns: its accounts and the meters linked to them now.

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


def account_numbers(*, session: Session, user_id: int) -> frozenset[str]:
    """Numbers of the accounts the user holds."""
    return frozenset(
        session.scalars(select(Account.number).where(Account.holder_user_id == user_id))
    )
