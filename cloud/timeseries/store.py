"""The time-series store interface: what ingestion writes and the modules read.

Two implementations follow it, `InfluxStore` (InfluxDB through the
v1-compatible HTTP API) and `SqliteStore` (the embedded default); one
contract test suite (tests/integration/cloud/test_timeseries_contract.py)
runs against both. docs/timeseries-stores.md explains the choices.

Invariants every store keeps:

- a reading is identified by (meter, OBIS code, timestamp): writing it again
  leaves one point holding the last value written (idempotent storage, so
  at-least-once delivery gives exactly-once storage);
- timestamps are timezone-aware UTC `datetime`s in this API and ms since the
  Unix epoch in the batch; a naive datetime is refused (`NaiveTimestamp`);
- NaN and ±infinity cannot be stored (InfluxDB has no such floats): they are
  skipped, logged and counted in `skipped_non_finite`, never a crash;
- ranges are half-open, ``start <= t < end``; buckets are aligned on the Unix
  epoch in UTC (a day is a UTC day);
- raw data is kept `RetentionWindows.raw`, hourly rollups `.hourly`, daily
  rollups `.daily`; queries at 1h and 1d read the rollups up to the last
  `downsample` and the raw data after it, so they are never stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, get_args, runtime_checkable

from cloud.core.exceptions import NaiveTimestamp
from cloud.timeseries.exceptions import InvalidQuery
from fastcodec.uplink import Batch

__all__ = [
    "AGGREGATES",
    "BUCKET_MS",
    "RESOLUTIONS",
    "Aggregate",
    "Point",
    "Resolution",
    "RetentionWindows",
    "TimeSeriesStore",
    "from_ms",
    "to_ms",
]

Resolution = Literal["raw", "15m", "1h", "1d"]
Aggregate = Literal["mean", "sum", "last", "max", "min", "delta"]
RESOLUTIONS: tuple[str, ...] = get_args(Resolution)
AGGREGATES: tuple[str, ...] = get_args(Aggregate)
BUCKET_MS = {"15m": 15 * 60_000, "1h": 3_600_000, "1d": 86_400_000}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(moment: datetime, what: str = "timestamp") -> int:
    """Milliseconds since the Unix epoch of an aware datetime (exact, no float).

    Raises:
        NaiveTimestamp: `moment` has no tzinfo.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise NaiveTimestamp(what)
    return (moment - _EPOCH) // _MS


def from_ms(timestamp_ms: int) -> datetime:
    """The aware UTC datetime of ms since the Unix epoch."""
    return _EPOCH + timedelta(milliseconds=timestamp_ms)


@dataclass(frozen=True, slots=True)
class Point:
    """One stored reading (resolution "raw") or one aggregated bucket.

    Attributes:
        meter: the meter serial.
        obis: the OBIS code in canonical text (``1-0:1.8.0``).
        at: the reading's time, or the bucket's start (aware, UTC).
        value: the value, or the aggregate over the bucket.
        unit: the unit as stored (raw points); None for buckets.
        quality: the quality flags (raw points); None for buckets.
        count: how many raw readings the bucket holds; None for raw points.
    """

    meter: str
    obis: str
    at: datetime
    value: float
    unit: str | None = None
    quality: int | None = None
    count: int | None = None


@dataclass(frozen=True, slots=True)
class RetentionWindows:
    """How long each resolution is kept (`apply_retention` deletes what is older).

    Attributes:
        raw: raw readings (15-minute profiles and instantaneous values).
        hourly: the 1h rollups.
        daily: the 1d rollups.
        late_data: how far back `downsample` recomputes closed buckets on every
            run, so readings that arrive late (a gateway's buffer replayed after
            an outage) reach the rollups; older late data needs
            ``downsample(now, since=…)``.
    """

    raw: timedelta = timedelta(days=90)
    hourly: timedelta = timedelta(days=2 * 365)
    daily: timedelta = timedelta(days=10 * 365)
    late_data: timedelta = timedelta(days=2)


@runtime_checkable
class TimeSeriesStore(Protocol):
    """What a time-series store offers; `InfluxStore` and `SqliteStore` follow it."""

    retention: RetentionWindows

    @property
    def skipped_non_finite(self) -> int:
        """Readings left out since the store was opened because their value was
        NaN or infinite."""
        ...

    def write_batch(self, batch: Batch) -> int:
        """Store a batch of readings; idempotent per (meter, OBIS, timestamp).

        Returns:
            How many readings were written (the batch's length minus the
            non-finite values skipped; a reading repeated in the batch counts
            each time, the last one wins).

        Raises:
            PointsRejected: a reading the store cannot hold; nothing is retried.
            StoreUnavailable: the store is down (after bounded retries).
        """
        ...

    def latest(self, meter: str, obis: str | None = None) -> list[Point]:
        """The newest raw reading of each of the meter's OBIS codes (or of one),
        sorted by OBIS code."""
        ...

    def query_range(
        self,
        meter: str,
        obis: str,
        start: datetime,
        end: datetime,
        resolution: Resolution = "raw",
        aggregate: Aggregate = "mean",
    ) -> list[Point]:
        """Readings or buckets of one series with ``start <= at < end``, oldest first.

        Args:
            meter: the meter serial.
            obis: the OBIS code in canonical text.
            start: inclusive, aware.
            end: exclusive, aware.
            resolution: "raw" (readings as stored; `aggregate` is ignored), or
                buckets of "15m" (from raw data), "1h" or "1d" (from the rollups,
                and from raw data after the last `downsample`); empty buckets
                are left out.
            aggregate: "mean", "sum", "min", "max", "last" (the last reading in
                the bucket), or "delta" for cumulative registers: the increase
                of the register from the last reading before the bucket to the
                last reading in it (the first bucket of a series with nothing
                before it: last minus first reading in the bucket).

        Raises:
            InvalidQuery: unknown resolution or aggregate, or start > end.
            NaiveTimestamp: start or end without a time zone.
        """
        ...

    def meters_reporting_since(self, since: datetime) -> set[str]:
        """The serials of the meters with at least one raw reading at or after
        `since` (any OBIS code), in one round trip to the store — what the
        console's fleet dashboard counts as "reporting".

        Raises:
            NaiveTimestamp: `since` without a time zone.
        """
        ...

    def count(
        self,
        meter: str | None = None,
        obis: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> int:
        """How many raw readings are stored (optionally for one meter, OBIS code
        and half-open time range)."""
        ...

    def downsample(self, now: datetime, *, since: datetime | None = None) -> None:
        """Roll raw readings up into closed hourly buckets and hourly into closed
        daily buckets, up to `now` (a bucket is closed when it ends at or before
        `now`). Recomputes from the last run minus `retention.late_data`, or from
        `since` when given; rewriting a bucket is idempotent."""
        ...

    def apply_retention(self, now: datetime) -> None:
        """Delete raw readings older than ``now - retention.raw``, hourly rollups
        older than ``now - retention.hourly`` and daily ones older than
        ``now - retention.daily``; nothing else."""
        ...

    def ping(self) -> bool:
        """True when the store is ready to serve; never raises."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable after."""
        ...


def check_query(resolution: str, aggregate: str, start_ms: int, end_ms: int) -> None:
    """Refuse what `query_range` does not define.

    Raises:
        InvalidQuery: unknown resolution or aggregate, or start after end.
    """
    if resolution not in RESOLUTIONS:
        raise InvalidQuery(f"unknown resolution {resolution!r}: one of {', '.join(RESOLUTIONS)}")
    if aggregate not in AGGREGATES:
        raise InvalidQuery(f"unknown aggregate {aggregate!r}: one of {', '.join(AGGREGATES)}")
    if start_ms > end_ms:
        raise InvalidQuery("start is after end")
