"""Metering reads: a meter's latest values and one quantity over a time range.

Plain functions with keyword-only arguments over a `TimeSeriesStore`. They
check what the store would refuse less clearly (an OBIS code that is not one,
an empty or inverted range) and bound the answer: at most `max_points`
points, counted before reading — bucket queries by arithmetic, raw queries
with `store.count` — so no request makes the API build an unbounded list.
Both take an optional window (`within`, `visible`): a customer's answer is
cut to the periods its meter was linked to it (`cloud.users.visibility`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
    from_ms,
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


def latest_values(
    *, store: TimeSeriesStore, serial: str, visible: Callable[[datetime], bool] | None = None
) -> list[Point]:
    """The newest reading of each of the meter's OBIS codes, sorted by code.

    Args:
        visible: when given, a value taken at a time it refuses is left out
            (a customer sees nothing from before its meter was linked to it).
    """
    points = store.latest(serial)
    if visible is None:
        return points
    return [point for point in points if visible(point.at)]


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
    within: Sequence[tuple[datetime, datetime]] | None = None,
) -> ReadingSeries:
    """Readings (``raw``) or buckets (``15m``, ``1h``, ``1d``) of one meter's quantity.

    Args:
        within: when given, only these parts of ``[start, end)`` are answered
            (a customer's link periods, `cloud.users.visibility`); a bucket
            that reaches outside a part is left out, so no bucket mixes in
            readings from outside. Empty: an empty series.

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
    pieces = [(start, end)] if within is None else _whole_buckets(within, resolution)
    expected = sum(_expected_points(store, serial, code, a, b, resolution) for a, b in pieces)
    if expected > max_points:
        raise TooManyPoints(expected, max_points)
    points = [
        point
        for a, b in pieces
        for point in store.query_range(serial, code, a, b, resolution, aggregate)
    ]
    if resolution == "raw" or not points:
        unit = points[-1].unit if points else None
    else:
        newest = store.latest(serial, code)
        unit = newest[0].unit if newest else None
    return ReadingSeries(obis=code, unit=unit, points=points)


def _expected_points(
    store: TimeSeriesStore,
    serial: str,
    code: str,
    start: datetime,
    end: datetime,
    resolution: Resolution,
) -> int:
    if resolution == "raw":
        return store.count(meter=serial, obis=code, start=start, end=end)
    size = BUCKET_MS[resolution]
    # Buckets whose start lies in [start, end): an upper bound of the answer.
    return math.ceil(to_ms(end) / size) - math.ceil(to_ms(start) / size) + 1


def _whole_buckets(
    pieces: Sequence[tuple[datetime, datetime]], resolution: Resolution
) -> list[tuple[datetime, datetime]]:
    """The pieces shrunk to whole buckets (raw readings: as they are)."""
    if resolution == "raw":
        return list(pieces)
    size = BUCKET_MS[resolution]
    whole = []
    for start, end in pieces:
        first_ms = math.ceil(to_ms(start) / size) * size
        last_ms = to_ms(end) // size * size
        if first_ms < last_ms:
            whole.append((from_ms(first_ms), from_ms(last_ms)))
    return whole
