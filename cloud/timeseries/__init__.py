"""Time-series storage of readings: one interface, InfluxDB and SQLite behind it.

`TimeSeriesStore` (cloud.timeseries.store) is what ingestion writes to and the
modules read from; `InfluxStore`/`InfluxClientStore` (cloud.timeseries.influx)
and `SqliteStore` (cloud.timeseries.sqlite) implement it. See
docs/timeseries-stores.md.
"""

from __future__ import annotations

from cloud.timeseries.exceptions import (
    InvalidQuery,
    PointsRejected,
    StoreAuthError,
    StoreQueryError,
    StoreUnavailable,
    TimeSeriesError,
)
from cloud.timeseries.influx import InfluxClientStore, InfluxStore, RetryPolicy
from cloud.timeseries.sqlite import SqliteStore
from cloud.timeseries.store import (
    AGGREGATES,
    RESOLUTIONS,
    Aggregate,
    Point,
    Resolution,
    RetentionWindows,
    TimeSeriesStore,
)

__all__ = [
    "AGGREGATES",
    "RESOLUTIONS",
    "Aggregate",
    "InfluxClientStore",
    "InfluxStore",
    "InvalidQuery",
    "Point",
    "PointsRejected",
    "Resolution",
    "RetentionWindows",
    "RetryPolicy",
    "SqliteStore",
    "StoreAuthError",
    "StoreQueryError",
    "StoreUnavailable",
    "TimeSeriesError",
    "TimeSeriesStore",
]
