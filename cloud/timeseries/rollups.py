"""Buckets, rollups and the delta aggregate, shared by both stores.

A bucket holds what every aggregate needs, so one rollup row per series and
period answers mean, sum, min, max, last and delta, and daily rollups are
computed from hourly ones without going back to raw data:

    n        how many raw readings            (daily: sum of the hourly n)
    total    their sum                        (daily: sum of the hourly totals)
    lo, hi   their minimum and maximum        (daily: min of lo, max of hi)
    opening  the first reading's value        (daily: the first hourly opening)
    closing  the last reading's value         (daily: the last hourly closing)

"delta" is for cumulative registers (energy counters, 1-0:1.8.0): the
increase from the last reading before the bucket to the last reading in it,
``closing[k] - closing[k-1]``, InfluxQL's ``difference(last(value))``. The
deltas of consecutive buckets add up exactly to the increase across the whole
range: nothing is lost or counted twice, even with a reading missing at a
boundary. The first bucket with nothing before it gives ``closing - opening``.

Watermarks: `downsample` records, per resolution, the end of the last closed
bucket it rolled up. A 1h or 1d query reads rollups before that watermark and
aggregates raw readings from it on, so a query never misses the open bucket
(today) nor the readings written since the last run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from cloud.timeseries.store import BUCKET_MS, Point, RetentionWindows, from_ms

__all__ = [
    "Bucket",
    "DownsamplePlan",
    "bucket_points",
    "ceil_ms",
    "floor_ms",
    "plan_downsample",
    "query_buckets",
]


_ONE_MS = timedelta(milliseconds=1)


class Bucket(NamedTuple):
    """The aggregates of one series over one period starting at `start_ms`."""

    start_ms: int
    n: int
    total: float
    lo: float
    hi: float
    opening: float
    closing: float


def floor_ms(timestamp_ms: int, size_ms: int) -> int:
    return timestamp_ms - timestamp_ms % size_ms


def ceil_ms(timestamp_ms: int, size_ms: int) -> int:
    return -floor_ms(-timestamp_ms, size_ms)


def bucket_points(
    meter: str, obis: str, buckets: Iterable[Bucket], aggregate: str, baseline: float | None
) -> list[Point]:
    """Points from buckets sorted by start; `baseline` is the register's last
    reading before the first bucket (for "delta"), or None."""
    points = []
    previous = baseline
    for bucket in buckets:
        if aggregate == "mean":
            value = bucket.total / bucket.n
        elif aggregate == "sum":
            value = bucket.total
        elif aggregate == "min":
            value = bucket.lo
        elif aggregate == "max":
            value = bucket.hi
        elif aggregate == "last":
            value = bucket.closing
        else:  # delta
            value = bucket.closing - (bucket.opening if previous is None else previous)
            previous = bucket.closing
        points.append(Point(meter, obis, from_ms(bucket.start_ms), value, count=bucket.n))
    return points


class BucketSource(NamedTuple):
    """What a store provides for `query_buckets`, for one series.

    raw_buckets(size_ms, start_ms, end_ms): buckets of raw readings in the
        aligned half-open range; rollup_buckets(resolution, start_ms, end_ms):
        stored rollup rows; raw_last_before(ms) / rollup_closing_before(
        resolution, ms): the baseline for "delta"; watermark(resolution).
    """

    raw_buckets: Callable[[int, int, int], list[Bucket]]
    rollup_buckets: Callable[[str, int, int], list[Bucket]]
    raw_last_before: Callable[[int], float | None]
    rollup_closing_before: Callable[[str, int], float | None]
    watermark: Callable[[str], int | None]


def query_buckets(
    source: BucketSource,
    meter: str,
    obis: str,
    start_ms: int,
    end_ms: int,
    resolution: str,
    aggregate: str,
) -> list[Point]:
    """The buckets whose start lies in [start_ms, end_ms), each with all its data:
    rollups before the watermark, raw readings from it on."""
    size = BUCKET_MS[resolution]
    first, stop = ceil_ms(start_ms, size), ceil_ms(end_ms, size)
    watermark = source.watermark(resolution) if resolution in ("1h", "1d") else None
    split = first if watermark is None else max(first, min(stop, watermark))
    buckets: list[Bucket] = []
    if split > first:
        buckets += source.rollup_buckets(resolution, first, split)
    if stop > split:
        buckets += source.raw_buckets(size, split, stop)
    baseline = None
    if aggregate == "delta" and buckets:
        if watermark is not None and first <= watermark:
            baseline = source.rollup_closing_before(resolution, first)
        if baseline is None:
            baseline = source.raw_last_before(first)
    return bucket_points(meter, obis, buckets, aggregate, baseline)


@dataclass(frozen=True, slots=True)
class DownsamplePlan:
    """Which ranges one `downsample` run recomputes; empty when stop <= start.

    The hourly range starts on a day boundary so that the daily buckets it
    feeds are recomputed from complete hourly data.
    """

    start_ms: int
    hourly_stop_ms: int
    daily_stop_ms: int


def plan_downsample(
    now_ms: int, since_ms: int | None, daily_watermark_ms: int | None, retention: RetentionWindows
) -> DownsamplePlan:
    """From `since`, else from the last run minus the late-data window, else (first
    run) from the start of the raw retention window."""
    day = BUCKET_MS["1d"]
    if since_ms is not None:
        start = since_ms
    elif daily_watermark_ms is None:
        start = now_ms - retention.raw // _ONE_MS
    else:
        start = min(daily_watermark_ms, now_ms - retention.late_data // _ONE_MS)
    return DownsamplePlan(
        floor_ms(start, day), floor_ms(now_ms, BUCKET_MS["1h"]), floor_ms(now_ms, day)
    )
