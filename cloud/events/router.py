"""REST routes of the events: the fleet's and one meter's, newest first.

Mounted under ``/api/v1``. Every route declares ``events:read``; a customer
holds it only on its own meters (`cloud.users.policies`, Grant.OWN), so it
reaches ``/meters/{serial}/events`` for those and never the fleet-wide list,
and there only the events from while the meter was linked to one of its
accounts (`cloud.users.visibility`): not the previous occupant's.
Times are ISO 8601 with a time zone; `since` inclusive, `until` exclusive.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime

from cloud.core.authz import Principal, require
from cloud.core.deps import DbSession
from cloud.core.pagination import Page, PagingDep
from cloud.core.problems import ProblemResponses
from cloud.events import queries
from cloud.events.schemas import EventRead
from cloud.fleet import queries as fleet_queries
from cloud.fleet.models import EventSeverity
from cloud.users.visibility import meter_window

__all__ = ["TAGS", "router"]

TAGS = [
    {
        "name": "events",
        "description": "What gateways report besides readings: last gasps and power "
        "restores, meters lost and found, tamper, buffer overflows, agent starts.",
    }
]

router = APIRouter(responses=ProblemResponses)

Serial = Annotated[str, Path(min_length=1, max_length=64, description="The meter serial.")]
Kinds = Annotated[
    list[str] | None,
    Query(max_length=20, description="Only these kinds (repeat: kind=last_gasp&kind=tamper)."),
]
Severities = Annotated[list[EventSeverity] | None, Query(max_length=3)]
Since = Annotated[AwareDatetime | None, Query(description="From (inclusive), ISO 8601 with zone.")]
Until = Annotated[AwareDatetime | None, Query(description="To (exclusive), ISO 8601 with zone.")]


@router.get(
    "/events",
    tags=["events"],
    summary="List events",
    response_model=Page[EventRead],
    dependencies=[require("events:read")],
)
def list_events(
    session: DbSession,
    paging: PagingDep,
    gateway_id: Annotated[
        str | None, Query(max_length=64, description="Only this gateway.")
    ] = None,
    meter: Annotated[str | None, Query(max_length=64, description="Only this meter.")] = None,
    kind: Kinds = None,
    severity: Severities = None,
    since: Since = None,
    until: Until = None,
) -> Page[EventRead]:
    """Events of the whole fleet, newest first (by when they happened)."""
    rows = queries.list_events(
        session=session,
        limit=paging.fetch(),
        offset=paging.offset,
        gateway_id=gateway_id,
        meter_serial=meter,
        kinds=kind,
        severities=[value.value for value in severity] if severity else None,
        since=since,
        until=until,
    )
    return paging.answer(rows, EventRead.model_validate)


@router.get(
    "/meters/{serial}/events",
    tags=["events"],
    summary="A meter's events",
    response_model=Page[EventRead],
)
def meter_events(
    serial: Serial,
    principal: Annotated[Principal, require("events:read")],
    session: DbSession,
    paging: PagingDep,
    kind: Kinds = None,
    since: Since = None,
    until: Until = None,
) -> Page[EventRead]:
    """One meter's events, newest first; 404 for a serial never installed.

    A customer gets only those from while the meter was linked to it.
    """
    fleet_queries.installations(session=session, serial=serial)
    window = meter_window(
        session=session, principal=principal, permission="events:read", serial=serial
    )
    rows = queries.list_events(
        session=session,
        limit=paging.fetch(),
        offset=paging.offset,
        meter_serial=serial,
        kinds=kind,
        since=since,
        until=until,
        within=window.periods,
    )
    return paging.answer(rows, EventRead.model_validate)
