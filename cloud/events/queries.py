"""Read queries of the events for the API and the console (read side only).

Newest first by the time the event happened (`occurred_at`, then id), each
list one statement whatever the filters, served by the table's indexes on
``occurred_at``, ``(gateway_id, occurred_at)`` and ``(meter_serial, occurred_at)``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.orm import Session

from cloud.events.exceptions import InvalidEventWindow
from cloud.fleet.models import DeviceEvent

__all__ = ["list_events"]


def list_events(
    *,
    session: Session,
    limit: int,
    offset: int = 0,
    gateway_id: str | None = None,
    meter_serial: str | None = None,
    kinds: Collection[str] | None = None,
    severities: Collection[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    within: Sequence[tuple[datetime, datetime | None]] | None = None,
) -> list[DeviceEvent]:
    """Events matching every filter given, newest first.

    Args:
        since: inclusive lower bound on `occurred_at`.
        until: exclusive upper bound on `occurred_at`.
        within: only events that occurred in one of these ``[start, end)``
            periods (end None: open); empty: none at all. A customer's link
            periods of its meter (`cloud.users.visibility`).

    Raises:
        InvalidEventWindow: `since` is after `until`.
    """
    if since is not None and until is not None and since > until:
        raise InvalidEventWindow(
            f"since ({since.isoformat()}) is after until ({until.isoformat()})"
        )
    query = select(DeviceEvent)
    if gateway_id is not None:
        query = query.where(DeviceEvent.gateway_id == gateway_id)
    if meter_serial is not None:
        query = query.where(DeviceEvent.meter_serial == meter_serial)
    if kinds:
        query = query.where(DeviceEvent.kind.in_(sorted(kinds)))
    if severities:
        query = query.where(DeviceEvent.severity.in_(sorted(severities)))
    if since is not None:
        query = query.where(DeviceEvent.occurred_at >= since)
    if until is not None:
        query = query.where(DeviceEvent.occurred_at < until)
    if within is not None:
        query = query.where(_within(within))
    query = query.order_by(DeviceEvent.occurred_at.desc(), DeviceEvent.id.desc())
    return list(session.scalars(query.limit(limit).offset(offset)))


def _within(periods: Sequence[tuple[datetime, datetime | None]]) -> ColumnElement[bool]:
    if not periods:
        return false()
    return or_(
        *(
            and_(
                DeviceEvent.occurred_at >= start,
                true() if end is None else DeviceEvent.occurred_at < end,
            )
            for start, end in periods
        )
    )
