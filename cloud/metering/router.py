"""REST routes of metering: a meter's latest values and time-range queries.

Mounted under ``/api/v1``. The meter must be known to the fleet (installed
now or before: 404 otherwise), so a typo is told apart from a silent meter.
OBIS codes go in the path in text form (``1-0:1.8.0``; ``:`` and ``*`` need no
escaping in a path segment). Times are ISO 8601 with a time zone.

A customer sees a meter's data only from while the meter was linked to one
of its accounts (`cloud.users.visibility`): a range reaching before (the
previous occupant's readings) is answered for its linked part only, and
latest values from outside are left out. Staff see the whole history.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime

from cloud.core.authz import Principal, require
from cloud.core.db import utc_now
from cloud.core.deps import DbSession, SettingsDep, Store
from cloud.core.problems import ProblemResponses
from cloud.fleet import queries as fleet_queries
from cloud.metering import service
from cloud.metering.schemas import LatestValue, LatestValues, ReadingPoint, ReadingSeriesRead
from cloud.timeseries.store import Aggregate, Resolution
from cloud.users.visibility import meter_window

__all__ = ["DEFAULT_RANGE", "TAGS", "router"]

TAGS = [
    {
        "name": "readings",
        "description": "What the meters measured, from the time-series store: latest values "
        "and one quantity over a time range, raw or in 15-minute, hourly or daily buckets.",
    }
]

DEFAULT_RANGE = timedelta(days=1)

router = APIRouter(responses=ProblemResponses)

Serial = Annotated[str, Path(min_length=1, max_length=64, description="The meter serial.")]
ReadingsReader = Annotated[Principal, require("readings:read")]


@router.get(
    "/meters/{serial}/latest",
    tags=["readings"],
    summary="Latest values of a meter",
    response_model=LatestValues,
)
def latest_values(
    serial: Serial, session: DbSession, store: Store, principal: ReadingsReader
) -> LatestValues:
    """The newest reading of every quantity (OBIS code) the meter reported, with units.

    For a customer, only values taken while the meter was linked to it.
    """
    fleet_queries.installations(session=session, serial=serial)
    window = meter_window(
        session=session, principal=principal, permission="readings:read", serial=serial
    )
    points = service.latest_values(
        store=store, serial=serial, visible=window.allows if window.restricted else None
    )
    return LatestValues(
        meter=serial,
        values=[
            LatestValue(
                obis=point.obis,
                name=service.obis_name(point.obis),
                at=point.at,
                value=point.value,
                unit=point.unit,
                quality=point.quality,
            )
            for point in points
        ],
    )


@router.get(
    "/meters/{serial}/readings/{obis}",
    tags=["readings"],
    summary="A meter's quantity over a time range",
    response_model=ReadingSeriesRead,
)
def readings(
    serial: Serial,
    principal: ReadingsReader,
    obis: Annotated[
        str, Path(max_length=32, description="OBIS code, e.g. 1-0:1.8.0 (energy import).")
    ],
    session: DbSession,
    store: Store,
    settings: SettingsDep,
    start: Annotated[
        AwareDatetime | None,
        Query(description="Inclusive, ISO 8601 with a time zone (default: end - 1 day)."),
    ] = None,
    end: Annotated[
        AwareDatetime | None,
        Query(description="Exclusive, ISO 8601 with a time zone (default: now)."),
    ] = None,
    resolution: Annotated[
        Resolution, Query(description="raw readings, or 15m / 1h / 1d buckets (UTC-aligned).")
    ] = "raw",
    aggregate: Annotated[
        Aggregate,
        Query(description="Per bucket: mean, sum, min, max, last, or delta (register increase)."),
    ] = "mean",
) -> ReadingSeriesRead:
    """Raw readings or aggregated buckets with ``start <= t < end``, oldest first.

    At most `max_points_per_query` points (10,000 by default): a larger answer
    is refused with 422 — narrow the range or pick a coarser resolution.
    `aggregate` is ignored for raw readings; ``delta`` suits cumulative
    registers (energy), ``mean``/``max`` instantaneous ones (power, voltage).
    A customer gets only what was measured while the meter was linked to it
    (buckets wholly inside those periods).
    """
    end = end or utc_now()
    start = start or end - DEFAULT_RANGE
    fleet_queries.installations(session=session, serial=serial)
    window = meter_window(
        session=session, principal=principal, permission="readings:read", serial=serial
    )
    series = service.reading_series(
        store=store,
        serial=serial,
        obis=obis,
        start=start,
        end=end,
        resolution=resolution,
        aggregate=aggregate,
        max_points=settings.max_points_per_query,
        within=window.clip(start, end) if window.restricted else None,
    )
    return ReadingSeriesRead(
        meter=serial,
        obis=series.obis,
        name=service.obis_name(series.obis),
        resolution=resolution,
        aggregate=None if resolution == "raw" else aggregate,
        start=start,
        end=end,
        unit=series.unit,
        points=[
            ReadingPoint(
                at=point.at,
                value=point.value,
                unit=point.unit,
                quality=point.quality,
                count=point.count,
            )
            for point in series.points
        ],
    )
