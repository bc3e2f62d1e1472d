"""REST routes of the fleet: gateways, their status history, meters and installations.

Reads go through `cloud.fleet.queries`, changes through `cloud.fleet.service`
inside one unit of work each (committed before the response is built). Domain
errors are not caught here: `cloud.core.problems` turns them into
problem+json (404, 409, 422). Every route declares its permission with
`require`. Mounted under ``/api/v1`` by the app factory.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import AwareDatetime

from cloud.core.authz import require
from cloud.core.db import unit_of_work, utc_now
from cloud.core.deps import DbSession, JsonBody, Sessions
from cloud.core.pagination import Page, PagingDep
from cloud.core.problems import ProblemResponses, problem_doc
from cloud.fleet import queries, service
from cloud.fleet.models import Meter
from cloud.fleet.schemas import (
    GatewayCreate,
    GatewayDetail,
    GatewayRead,
    GatewayRegistered,
    GatewayStatusEventRead,
    GatewaySummary,
    MeterCreate,
    MeterDetail,
    MeterMove,
    MeterRead,
    MeterRemove,
)

__all__ = ["TAGS", "router"]

TAGS = [
    {
        "name": "gateways",
        "description": "Field and substation gateways: registration (broker credentials), "
        "online/offline state and its history, the meters installed on them.",
    },
    {
        "name": "meters",
        "description": "Meter installations: which gateway a meter is wired to, since when, "
        "with which instrument transformer ratios; moves and removals keep the history.",
    },
]

router = APIRouter(responses=ProblemResponses)

GatewayId = Annotated[str, Path(min_length=1, max_length=64, description="The gateway id.")]
Serial = Annotated[str, Path(min_length=1, max_length=64, description="The meter serial.")]


def _summary(overview: queries.GatewayOverview) -> GatewaySummary:
    return GatewaySummary(
        **GatewayRead.model_validate(overview.gateway).model_dump(),
        meter_count=overview.meter_count,
        last_status=GatewayStatusEventRead.model_validate(overview.last_status)
        if overview.last_status
        else None,
    )


@router.get(
    "/gateways",
    tags=["gateways"],
    summary="List gateways",
    response_model=Page[GatewaySummary],
    dependencies=[require("fleet:read")],
)
def list_gateways(
    session: DbSession,
    paging: PagingDep,
    online: Annotated[bool | None, Query(description="Only online (true) or offline.")] = None,
    include_decommissioned: Annotated[bool, Query()] = False,
) -> Page[GatewaySummary]:
    """Gateways by id, with online state, last status transition and installed meter count."""
    rows = queries.list_gateways(
        session=session,
        limit=paging.fetch(),
        offset=paging.offset,
        online=online,
        include_decommissioned=include_decommissioned,
    )
    gateways, next_offset = paging.page(rows)
    overviews = queries.gateway_overviews(session=session, gateways=gateways)
    return Page(
        items=[_summary(overview) for overview in overviews],
        limit=paging.limit,
        offset=paging.offset,
        next_offset=next_offset,
    )


@router.post(
    "/gateways",
    tags=["gateways"],
    summary="Register a gateway",
    status_code=status.HTTP_201_CREATED,
    response_model=GatewayRegistered,
    dependencies=[require("fleet:write"), JsonBody],
    responses={409: problem_doc("Already registered")},
)
def register_gateway(
    body: GatewayCreate, sessions: Sessions, request: Request, response: Response
) -> GatewayRegistered:
    """Register a gateway and create its broker credentials.

    The answer holds the broker password: the only time it is shown (only a
    hash is stored). Put it on the gateway, then regenerate the broker files
    (`voltstack-cloud broker-acl`).
    """
    with unit_of_work(sessions) as session:
        gateway, password = service.register_gateway(
            session=session, gateway_id=body.id, name=body.name, site=body.site
        )
        answer = GatewayRegistered(
            gateway=GatewayRead.model_validate(gateway), broker_password=password
        )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Location"] = str(request.url_for("get_gateway", gateway_id=gateway.id))
    return answer


@router.get(
    "/gateways/{gateway_id}",
    tags=["gateways"],
    summary="Get a gateway",
    response_model=GatewayDetail,
    dependencies=[require("fleet:read")],
)
def get_gateway(gateway_id: GatewayId, session: DbSession) -> GatewayDetail:
    """One gateway with its summary and the meters installed on it now."""
    gateway = service.get_gateway(session=session, gateway_id=gateway_id)
    (overview,) = queries.gateway_overviews(session=session, gateways=[gateway])
    meters = service.meters_of_gateway(session=session, gateway_id=gateway_id)
    return GatewayDetail(
        **_summary(overview).model_dump(),
        meters=[MeterRead.model_validate(meter) for meter in meters],
    )


@router.get(
    "/gateways/{gateway_id}/status-history",
    tags=["gateways"],
    summary="A gateway's online/offline history",
    response_model=Page[GatewayStatusEventRead],
    dependencies=[require("fleet:read")],
)
def gateway_status_history(
    gateway_id: GatewayId,
    session: DbSession,
    paging: PagingDep,
    since: Annotated[AwareDatetime | None, Query(description="ISO 8601 with time zone.")] = None,
    until: Annotated[AwareDatetime | None, Query(description="ISO 8601 with time zone.")] = None,
) -> Page[GatewayStatusEventRead]:
    """Transitions online ↔ offline with their reason (birth, last will …), newest first."""
    rows = queries.status_history(
        session=session,
        gateway_id=gateway_id,
        limit=paging.fetch(),
        offset=paging.offset,
        since=since,
        until=until,
    )
    return paging.answer(rows, GatewayStatusEventRead.model_validate)


@router.post(
    "/gateways/{gateway_id}/meters",
    tags=["meters"],
    summary="Install a meter on a gateway",
    status_code=status.HTTP_201_CREATED,
    response_model=MeterRead,
    dependencies=[require("fleet:write"), JsonBody],
    responses={
        409: problem_doc("Installed on a gateway already, or the gateway is decommissioned")
    },
)
def register_meter(
    gateway_id: GatewayId,
    body: MeterCreate,
    sessions: Sessions,
    request: Request,
    response: Response,
) -> MeterRead:
    """Install a meter (by serial) on this gateway; a serial installed anywhere is 409."""
    with unit_of_work(sessions) as session:
        meter = service.register_meter(
            session=session, gateway_id=gateway_id, **body.model_dump(exclude_none=True)
        )
        answer = MeterRead.model_validate(meter)
    response.headers["Location"] = str(request.url_for("get_meter", serial=meter.serial))
    return answer


@router.get(
    "/meters",
    tags=["meters"],
    summary="List meters",
    response_model=Page[MeterRead],
    dependencies=[require("fleet:read")],
)
def list_meters(
    session: DbSession,
    paging: PagingDep,
    gateway_id: Annotated[
        str | None, Query(max_length=64, description="Only this gateway.")
    ] = None,
    include_removed: Annotated[bool, Query(description="Past installations too.")] = False,
) -> Page[MeterRead]:
    """Meter installations by serial; by default only the installed ones."""
    rows = queries.list_meters(
        session=session,
        limit=paging.fetch(),
        offset=paging.offset,
        gateway_id=gateway_id,
        include_removed=include_removed,
    )
    return paging.answer(rows, MeterRead.model_validate)


def _detail(serial: str, rows: list[Meter]) -> MeterDetail:
    current = next((row for row in rows if row.removed_at is None), None)
    return MeterDetail(
        serial=serial,
        current=MeterRead.model_validate(current) if current else None,
        installations=[MeterRead.model_validate(row) for row in rows],
    )


@router.get(
    "/meters/{serial}",
    tags=["meters"],
    summary="Get a meter",
    response_model=MeterDetail,
    dependencies=[require("fleet:read")],
)
def get_meter(serial: Serial, session: DbSession) -> MeterDetail:
    """A meter's current installation and its installation history (oldest first)."""
    return _detail(serial, queries.installations(session=session, serial=serial))


@router.post(
    "/meters/{serial}/move",
    tags=["meters"],
    summary="Move a meter to another gateway",
    response_model=MeterRead,
    dependencies=[require("fleet:write"), JsonBody],
    responses={409: problem_doc("The target gateway is decommissioned")},
)
def move_meter(serial: Serial, body: MeterMove, sessions: Sessions) -> MeterRead:
    """Close the meter's installation and open one on `gateway_id` at the same instant.

    Fields left out keep the old installation's values (send ``null`` to clear
    `installation_point` or `unit_id`).
    """
    given = body.model_dump(include=body.model_fields_set - {"gateway_id", "at"})
    with unit_of_work(sessions) as session:
        meter = service.move_meter(
            session=session,
            serial=serial,
            gateway_id=body.gateway_id,
            at=body.at or utc_now(),
            **given,
        )
        return MeterRead.model_validate(meter)


@router.post(
    "/meters/{serial}/remove",
    tags=["meters"],
    summary="Remove a meter",
    response_model=MeterRead,
    dependencies=[require("fleet:write"), JsonBody],
)
def remove_meter(serial: Serial, sessions: Sessions, body: MeterRemove | None = None) -> MeterRead:
    """Close the meter's open installation (default: now); its history stays."""
    at = body.at if body and body.at else utc_now()
    with unit_of_work(sessions) as session:
        return MeterRead.model_validate(service.remove_meter(session=session, serial=serial, at=at))
