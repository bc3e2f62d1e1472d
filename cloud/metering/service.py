"""Metering reads: a meter's latest values and one quantity over a time range.

Plain functions with keyword-only arguments over a `TimeSeriesStore`. They
check what the store would refuse less clearly (an OBIS code that is not one,
an empty or inverted range) and bound the answer: at most `max_points`
points, counted before reading — bucket queries by arithmetic, raw queries
with `store.count` — so no request makes the API build an unbounded list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from cloud.metering.exceptions import InvalidObis, TooManyPoints
from cloud.timeseries.exceptions import InvalidQuery
from cloud.timeseries.store import (
    BUCKET_MS,
    Aggregate,
    Point,
    Resolution,
    TimeSeriesStore,
    check_query,
    to_ms,
)
from fastcodec.exceptions import CodecError
from fastcodec.obis import describe_obis, parse_obis

__all__ = ["ReadingSeries", "canonical_obis", "latest_values", "obis_name", "reading_series"]


def canonical_obis(text: str) -> str:
    """The canonical text of an OBIS code (``1.8.0`` → ``1-0:1.8.0``).

    Raises:
        InvalidObis: not an OBIS code.
    """
    try:
        return str(parse_obis(text))
    except CodecError as error:
        raise InvalidObis(text, str(error)) from error


def obis_name(obis: str) -> str | None:
    """What the OBIS code measures, when fastcodec knows it."""
    info = describe_obis(parse_obis(obis))
    return info.name if info else None


def latest_values(*, store: TimeSeriesStore, serial: str) -> list[Point]:
    """The newest reading of each of the meter's OBIS codes, sorted by code."""
    return store.latest(serial)


@dataclass(frozen=True)
class ReadingSeries:
    """One quantity of one meter over ``[start, end)``.

    Attributes:
        obis: the canonical OBIS code.
        unit: the unit of the points: the raw readings' own unit, or for
            buckets the unit of the newest raw reading of the series (rollups
            keep none); None when the series has no readings.
        points: oldest first.
    """

    obis: str
    unit: str | None
    points: list[Point]


def reading_series(
    *,
    store: TimeSeriesStore,
    serial: str,
    obis: str,
    start: datetime,
    end: datetime,
    resolution: Resolution,
    aggregate: Aggregate,
    max_points: int,
) -> ReadingSeries:
    """Readings (``raw``) or buckets (``15m``, ``1h``, ``1d``) of one meter's quantity.

    Raises:
        InvalidObis: `obis` is not an OBIS code.
        InvalidQuery: unknown resolution or aggregate, or `end` not after `start`.
        TooManyPoints: the answer would hold more than `max_points` points.
        StoreUnavailable: the store is down.
    """
    code = canonical_obis(obis)
    start_ms, end_ms = to_ms(start, "start"), to_ms(end, "end")
    check_query(resolution, aggregate, start_ms, end_ms)
    if end_ms <= start_ms:
        raise InvalidQuery("end must be after start")
    if resolution == "raw":
        expected = store.count(meter=serial, obis=code, start=start, end=end)
    else:
        size = BUCKET_MS[resolution]
        # Buckets whose start lies in [start, end): an upper bound of the answer.
        expected = math.ceil(end_ms / size) - math.ceil(start_ms / size) + 1
    if expected > max_points:
        raise TooManyPoints(expected, max_points)
    points = store.query_range(serial, code, start, end, resolution, aggregate)
    if resolution == "raw":
        unit = points[-1].unit if points else None
    else:
        newest = store.latest(serial, code)
        unit = newest[0].unit if newest else None
    return ReadingSeries(obis=code, unit=unit, points=points)
