"""Read queries of the fleet for the API and the console (read side only).

`cloud.fleet.service` changes the fleet; these functions only read it, with
keyword-only arguments like the services, and answer what a list page needs
in a fixed number of statements (a page of gateways, then their meter counts,
then their last status events — never one query per row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from cloud.fleet.exceptions import MeterNotFound
from cloud.fleet.models import Gateway, GatewayStatusEvent, Meter
from cloud.fleet.service import get_gateway

__all__ = [
    "GatewayOverview",
    "gateway_overviews",
    "installations",
    "list_gateways",
    "list_meters",
    "status_history",
]


@dataclass(frozen=True)
class GatewayOverview:
    """A gateway with its installed meter count and last status transition."""

    gateway: Gateway
    meter_count: int
    last_status: GatewayStatusEvent | None


def list_gateways(
    *,
    session: Session,
    limit: int,
    offset: int = 0,
    online: bool | None = None,
    include_decommissioned: bool = False,
) -> list[Gateway]:
    """Gateways by id, optionally only online or offline ones."""
    query = select(Gateway)
    if online is not None:
        query = query.where(Gateway.online.is_(online))
    if not include_decommissioned:
        query = query.where(Gateway.decommissioned_at.is_(None))
    return list(session.scalars(query.order_by(Gateway.id).limit(limit).offset(offset)))


def gateway_overviews(*, session: Session, gateways: Sequence[Gateway]) -> list[GatewayOverview]:
    """Attach meter counts and the last status event to `gateways` (two queries)."""
    ids = [gateway.id for gateway in gateways]
    if not ids:
        return []
    counts = dict(
        session.execute(
            select(Meter.gateway_id, func.count())
            .where(Meter.gateway_id.in_(ids), Meter.removed_at.is_(None))
            .group_by(Meter.gateway_id)
        ).all()
    )
    newest = (
        select(GatewayStatusEvent.gateway_id, func.max(GatewayStatusEvent.at))
        .where(GatewayStatusEvent.gateway_id.in_(ids))
        .group_by(GatewayStatusEvent.gateway_id)
    )
    last: dict[str, GatewayStatusEvent] = {}
    events = session.scalars(
        select(GatewayStatusEvent)
        .where(tuple_(GatewayStatusEvent.gateway_id, GatewayStatusEvent.at).in_(newest))
        .order_by(GatewayStatusEvent.id)
    )
    for event in events:
        last[event.gateway_id] = event  # the highest id wins a tie on `at`
    return [
        GatewayOverview(gateway, int(counts.get(gateway.id, 0)), last.get(gateway.id))
        for gateway in gateways
    ]


def status_history(
    *,
    session: Session,
    gateway_id: str,
    limit: int,
    offset: int = 0,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[GatewayStatusEvent]:
    """A gateway's online/offline transitions, newest first.

    Raises:
        GatewayNotFound: no such gateway.
    """
    get_gateway(session=session, gateway_id=gateway_id)
    query = select(GatewayStatusEvent).where(GatewayStatusEvent.gateway_id == gateway_id)
    if since is not None:
        query = query.where(GatewayStatusEvent.at >= since)
    if until is not None:
        query = query.where(GatewayStatusEvent.at < until)
    query = query.order_by(GatewayStatusEvent.at.desc(), GatewayStatusEvent.id.desc())
    return list(session.scalars(query.limit(limit).offset(offset)))


def list_meters(
    *,
    session: Session,
    limit: int,
    offset: int = 0,
    gateway_id: str | None = None,
    include_removed: bool = False,
) -> list[Meter]:
    """Meter installations by serial (then installation time)."""
    query = select(Meter)
    if gateway_id is not None:
        query = query.where(Meter.gateway_id == gateway_id)
    if not include_removed:
        query = query.where(Meter.removed_at.is_(None))
    query = query.order_by(Meter.serial, Meter.installed_at, Meter.id)
    return list(session.scalars(query.limit(limit).offset(offset)))


def installations(*, session: Session, serial: str) -> list[Meter]:
    """Every installation of a serial, oldest first.

    Raises:
        MeterNotFound: the serial was never installed.
    """
    rows = list(
        session.scalars(
            select(Meter).where(Meter.serial == serial).order_by(Meter.installed_at, Meter.id)
        )
    )
    if not rows:
        raise MeterNotFound(serial)
    return rows
