"""Read queries of the ingestion bookkeeping for the API (read side only).

`cloud.fleet.service` writes counters and dead letters; these functions read
them with the filters the API offers, keyword-only like the services.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from cloud.fleet.exceptions import DeadLetterNotFound
from cloud.ingestion.models import COUNTERS, DeadLetter, IngestionStatistics

__all__ = ["get_dead_letter", "ingestion_totals", "list_dead_letters", "list_statistics"]


SelectT = TypeVar("SelectT", bound=Select[Any])


def _window(query: SelectT, gateway_id: str | None, since: datetime, until: datetime) -> SelectT:
    query = query.where(
        IngestionStatistics.bucket_start_at >= since, IngestionStatistics.bucket_start_at < until
    )
    if gateway_id is not None:
        query = query.where(IngestionStatistics.gateway_id == gateway_id)
    return query


def list_statistics(
    *,
    session: Session,
    since: datetime,
    until: datetime,
    limit: int,
    offset: int = 0,
    gateway_id: str | None = None,
) -> list[IngestionStatistics]:
    """Per-gateway, per-minute counters with ``since <= minute < until``, oldest first."""
    query = _window(select(IngestionStatistics), gateway_id, since, until)
    query = query.order_by(IngestionStatistics.bucket_start_at, IngestionStatistics.gateway_id)
    return list(session.scalars(query.limit(limit).offset(offset)))


def ingestion_totals(
    *, session: Session, since: datetime, until: datetime, gateway_id: str | None = None
) -> dict[str, int]:
    """Each counter summed over the window (all gateways unless one is named)."""
    sums = [func.coalesce(func.sum(IngestionStatistics.__table__.c[name]), 0) for name in COUNTERS]
    row: tuple[Any, ...] = tuple(
        session.execute(_window(select(*sums), gateway_id, since, until)).one()
    )
    return {name: int(value) for name, value in zip(COUNTERS, row, strict=True)}


def list_dead_letters(
    *,
    session: Session,
    limit: int,
    offset: int = 0,
    gateway_id: str | None = None,
    reason_code: str | None = None,
    unresolved_only: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[DeadLetter]:
    """Dead letters matching every filter given, newest first."""
    query = select(DeadLetter)
    if gateway_id is not None:
        query = query.where(DeadLetter.gateway_id == gateway_id)
    if reason_code is not None:
        query = query.where(DeadLetter.reason_code == reason_code)
    if unresolved_only:
        query = query.where(DeadLetter.resolved_at.is_(None))
    if since is not None:
        query = query.where(DeadLetter.received_at >= since)
    if until is not None:
        query = query.where(DeadLetter.received_at < until)
    query = query.order_by(DeadLetter.received_at.desc(), DeadLetter.id.desc())
    return list(session.scalars(query.limit(limit).offset(offset)))


def get_dead_letter(*, session: Session, dead_letter_id: int) -> DeadLetter:
    """One dead letter with its payload.

    Raises:
        DeadLetterNotFound: no such id.
    """
    letter = session.get(DeadLetter, dead_letter_id)
    if letter is None:
        raise DeadLetterNotFound(dead_letter_id)
    return letter
