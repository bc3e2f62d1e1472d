"""`SqliteStore`: the embedded time-series store (the demo's default), stdlib sqlite3.

Schema (WAL, one file)::

    series(id, meter, obis)             UNIQUE(meter, obis): the dictionary; readings
                                        carry the small integer id, not the strings
    unit(id, name)                      UNIQUE(name): the unit dictionary
    raw(series_id, ts_ms, value, unit_id, quality)
                                        PRIMARY KEY(series_id, ts_ms) WITHOUT ROWID:
                                        the identity of a reading, clustered so a
                                        series' range is one contiguous B-tree scan;
                                        INDEX(ts_ms) for retention and downsampling
    rollup_1h / rollup_1d(series_id, bucket_ms, n, total, lo, hi, opening, closing)
                                        PRIMARY KEY(series_id, bucket_ms) WITHOUT ROWID
    watermark(resolution, until_ms)     end of the last closed bucket rolled up

Idempotence: ``INSERT … ON CONFLICT(series_id, ts_ms) DO UPDATE`` — the last
value written wins, the count does not change. Rollups are upserted the same
way, so rerunning `downsample` over a range rewrites the same rows.

One connection serialised by a lock serves the threads of a process; WAL
and a busy timeout let other processes (a second worker, the console) read
while one writes.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cloud.timeseries.exceptions import StoreUnavailable
from cloud.timeseries.rollups import Bucket, BucketSource, plan_downsample, query_buckets
from cloud.timeseries.store import (
    BUCKET_MS,
    Aggregate,
    Point,
    Resolution,
    RetentionWindows,
    check_query,
    from_ms,
    to_ms,
)
from fastcodec.obis import format_obis
from fastcodec.uplink import Batch

__all__ = ["SqliteStore"]

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, meter TEXT NOT NULL, obis TEXT NOT NULL, UNIQUE (meter, obis));
CREATE TABLE IF NOT EXISTS unit (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS raw (
    series_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, value REAL NOT NULL,
    unit_id INTEGER NOT NULL, quality INTEGER NOT NULL,
    PRIMARY KEY (series_id, ts_ms)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS raw_ts ON raw (ts_ms);
CREATE TABLE IF NOT EXISTS watermark (resolution TEXT PRIMARY KEY, until_ms INTEGER NOT NULL);
"""
_ROLLUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    series_id INTEGER NOT NULL, bucket_ms INTEGER NOT NULL, n INTEGER NOT NULL,
    total REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL,
    opening REAL NOT NULL, closing REAL NOT NULL,
    PRIMARY KEY (series_id, bucket_ms)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {table}_bucket ON {table} (bucket_ms);
"""
_ROLLUP_TABLES = {"1h": "rollup_1h", "1d": "rollup_1d"}

# Buckets of a source table: (time column, n, total, lo, hi, opening/closing column).
_SOURCES = {
    "raw": ("ts_ms", "count(*)", "sum(value)", "min(value)", "max(value)", "value"),
    "rollup_1h": ("bucket_ms", "sum(n)", "sum(total)", "min(lo)", "max(hi)", None),
}


def _buckets_sql(source: str, size_ms: int, one_series: bool) -> str:
    """SELECT series_id, bucket, n, total, lo, hi, opening, closing over a time range.

    SQLite has no first()/last() aggregate: the bucket's first and last times are
    aggregated, then the two rows are fetched back through the primary key.
    """
    time_col, n, total, lo, hi, value = _SOURCES[source]
    first_col, last_col = (value, value) if value else ("opening", "closing")
    where = f"{time_col} >= :start AND {time_col} < :stop"
    if one_series:
        where = f"series_id = :series AND {where}"
    # ((t % s) + s) % s: SQLite's % keeps the dividend's sign; buckets floor.
    bucket = f"{time_col} - (({time_col} % {size_ms}) + {size_ms}) % {size_ms}"
    return (
        f"WITH agg AS (SELECT series_id, {bucket} AS b, {n} AS n, {total} AS total, "
        f"{lo} AS lo, {hi} AS hi, min({time_col}) AS t0, max({time_col}) AS t1 "
        f"FROM {source} WHERE {where} GROUP BY series_id, b) "
        f"SELECT agg.series_id, agg.b, agg.n, agg.total, agg.lo, agg.hi, "
        f"f.{first_col}, l.{last_col} FROM agg "
        f"JOIN {source} f ON f.series_id = agg.series_id AND f.{time_col} = agg.t0 "
        f"JOIN {source} l ON l.series_id = agg.series_id AND l.{time_col} = agg.t1 "
        f"WHERE true ORDER BY agg.series_id, agg.b"
    )


class SqliteStore:
    """A `TimeSeriesStore` in one SQLite file (WAL).

    Args:
        path: the database file (created with its schema when missing), or
            ":memory:".
        retention: how long each resolution is kept.

    Raises:
        StoreUnavailable: the file cannot be opened or its schema created.
    """

    def __init__(self, path: str | Path, *, retention: RetentionWindows | None = None) -> None:
        self.retention = retention or RetentionWindows()
        self.path = str(path)
        self._lock = threading.RLock()
        self._skipped_non_finite = 0
        self._series_ids: dict[tuple[str, str], int] = {}
        self._unit_ids: dict[str, int] = {}
        try:
            self._db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            script = _SCHEMA + "".join(
                _ROLLUP_SCHEMA.format(table=table) for table in _ROLLUP_TABLES.values()
            )
            self._db.executescript(script)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the SQLite store {self.path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    @property
    def skipped_non_finite(self) -> int:
        return self._skipped_non_finite

    # --- plumbing ------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc

    def _rows(self, sql: str, parameters: Any = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, parameters).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc

    def _dictionary_id(
        self, db: sqlite3.Connection, table: str, key: Any, insert: str, select: str
    ) -> int:
        db.execute(insert, key)
        return int(db.execute(select, key).fetchone()[0])

    def _series_id(self, db: sqlite3.Connection, meter: str, obis: str) -> int:
        key = (meter, obis)
        found = self._series_ids.get(key)
        if found is None:
            found = self._dictionary_id(
                db,
                "series",
                key,
                "INSERT OR IGNORE INTO series (meter, obis) VALUES (?, ?)",
                "SELECT id FROM series WHERE meter = ? AND obis = ?",
            )
            self._series_ids[key] = found
        return found

    def _unit_id(self, db: sqlite3.Connection, unit: str) -> int:
        found = self._unit_ids.get(unit)
        if found is None:
            found = self._dictionary_id(
                db,
                "unit",
                (unit,),
                "INSERT OR IGNORE INTO unit (name) VALUES (?)",
                "SELECT id FROM unit WHERE name = ?",
            )
            self._unit_ids[unit] = found
        return found

    def _find_series(self, meter: str, obis: str) -> int | None:
        found = self._series_ids.get((meter, obis))
        if found is not None:
            return found
        rows = self._rows("SELECT id FROM series WHERE meter = ? AND obis = ?", (meter, obis))
        return int(rows[0][0]) if rows else None

    # --- writing -------------------------------------------------------------

    def write_batch(self, batch: Batch) -> int:
        """See `TimeSeriesStore.write_batch`."""
        values = batch.values
        finite = [i for i, value in enumerate(values) if math.isfinite(value)]
        skipped = len(values) - len(finite)
        if skipped:
            logger.warning("skipped %d non-finite value(s) of batch %s", skipped, batch.sequence)
        with self._transaction() as db:
            self._skipped_non_finite += skipped
            codes = [format_obis(code) for code in batch.obis_codes]
            series: dict[tuple[int, int], int] = {}
            units = [self._unit_id(db, unit) for unit in batch.units]
            meter_index, obis_index, unit_index = (
                batch.meter_index,
                batch.obis_index,
                batch.unit_index,
            )
            timestamps_ms, quality = batch.timestamps_ms, batch.quality
            rows = []
            for i in finite:
                key = (meter_index[i], obis_index[i])
                series_id = series.get(key)
                if series_id is None:
                    series_id = self._series_id(db, batch.meters[key[0]], codes[key[1]])
                    series[key] = series_id
                rows.append(
                    (series_id, timestamps_ms[i], values[i], units[unit_index[i]], quality[i])
                )
            db.executemany(
                "INSERT INTO raw (series_id, ts_ms, value, unit_id, quality) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (series_id, ts_ms) DO UPDATE SET value = excluded.value,"
                " unit_id = excluded.unit_id, quality = excluded.quality",
                rows,
            )
        return len(finite)

    # --- reading -------------------------------------------------------------

    def latest(self, meter: str, obis: str | None = None) -> list[Point]:
        """See `TimeSeriesStore.latest`."""
        sql = (
            "SELECT s.obis, r.ts_ms, r.value, u.name, r.quality FROM series s"
            " JOIN raw r ON r.series_id = s.id"
            " AND r.ts_ms = (SELECT max(ts_ms) FROM raw WHERE series_id = s.id)"
            " JOIN unit u ON u.id = r.unit_id WHERE s.meter = ?"
        )
        parameters: tuple[str, ...] = (meter,)
        if obis is not None:
            sql += " AND s.obis = ?"
            parameters += (obis,)
        return sorted(
            (
                Point(meter, code, from_ms(ts_ms), value, unit, quality)
                for code, ts_ms, value, unit, quality in self._rows(sql, parameters)
            ),
            key=lambda point: point.obis,
        )

    def query_range(
        self,
        meter: str,
        obis: str,
        start: datetime,
        end: datetime,
        resolution: Resolution = "raw",
        aggregate: Aggregate = "mean",
    ) -> list[Point]:
        """See `TimeSeriesStore.query_range`."""
        start_ms, end_ms = to_ms(start, "start"), to_ms(end, "end")
        check_query(resolution, aggregate, start_ms, end_ms)
        series_id = self._find_series(meter, obis)
        if series_id is None:
            return []
        if resolution == "raw":
            rows = self._rows(
                "SELECT r.ts_ms, r.value, u.name, r.quality FROM raw r"
                " JOIN unit u ON u.id = r.unit_id"
                " WHERE r.series_id = ? AND r.ts_ms >= ? AND r.ts_ms < ? ORDER BY r.ts_ms",
                (series_id, start_ms, end_ms),
            )
            return [
                Point(meter, obis, from_ms(ts_ms), value, unit, quality)
                for ts_ms, value, unit, quality in rows
            ]
        return query_buckets(
            self._bucket_source(series_id), meter, obis, start_ms, end_ms, resolution, aggregate
        )

    def _bucket_source(self, series_id: int) -> BucketSource:
        def raw_buckets(size_ms: int, start_ms: int, stop_ms: int) -> list[Bucket]:
            rows = self._rows(
                _buckets_sql("raw", size_ms, one_series=True),
                {"series": series_id, "start": start_ms, "stop": stop_ms},
            )
            return [Bucket(*row[1:]) for row in rows]

        def rollup_buckets(resolution: str, start_ms: int, stop_ms: int) -> list[Bucket]:
            rows = self._rows(
                f"SELECT bucket_ms, n, total, lo, hi, opening, closing"
                f" FROM {_ROLLUP_TABLES[resolution]}"
                " WHERE series_id = ? AND bucket_ms >= ? AND bucket_ms < ? ORDER BY bucket_ms",
                (series_id, start_ms, stop_ms),
            )
            return [Bucket(*row) for row in rows]

        def raw_last_before(before_ms: int) -> float | None:
            rows = self._rows(
                "SELECT value FROM raw WHERE series_id = ? AND ts_ms < ?"
                " ORDER BY ts_ms DESC LIMIT 1",
                (series_id, before_ms),
            )
            return float(rows[0][0]) if rows else None

        def rollup_closing_before(resolution: str, before_ms: int) -> float | None:
            rows = self._rows(
                f"SELECT closing FROM {_ROLLUP_TABLES[resolution]}"
                " WHERE series_id = ? AND bucket_ms < ? ORDER BY bucket_ms DESC LIMIT 1",
                (series_id, before_ms),
            )
            return float(rows[0][0]) if rows else None

        return BucketSource(
            raw_buckets, rollup_buckets, raw_last_before, rollup_closing_before, self._watermark
        )

    def _watermark(self, resolution: str) -> int | None:
        rows = self._rows("SELECT until_ms FROM watermark WHERE resolution = ?", (resolution,))
        return int(rows[0][0]) if rows else None

    def meters_reporting_since(self, since: datetime) -> set[str]:
        """See `TimeSeriesStore.meters_reporting_since`.

        One query, one primary-key seek per series (``EXISTS`` on
        ``(series_id, ts_ms)``): its cost follows the number of series, not
        the number of readings in the window, which grows with the read rate.
        """
        since_ms = to_ms(since, "since")
        rows = self._rows(
            "SELECT DISTINCT s.meter FROM series s WHERE EXISTS"
            " (SELECT 1 FROM raw r WHERE r.series_id = s.id AND r.ts_ms >= ?)",
            (since_ms,),
        )
        return {meter for (meter,) in rows}

    def count(
        self,
        meter: str | None = None,
        obis: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> int:
        """See `TimeSeriesStore.count`."""
        conditions, parameters = ["true"], []
        if meter is not None:
            conditions.append("s.meter = ?")
            parameters.append(meter)
        if obis is not None:
            conditions.append("s.obis = ?")
            parameters.append(obis)
        if start is not None:
            conditions.append("r.ts_ms >= ?")
            parameters.append(to_ms(start, "start"))
        if end is not None:
            conditions.append("r.ts_ms < ?")
            parameters.append(to_ms(end, "end"))
        rows = self._rows(
            "SELECT count(*) FROM raw r JOIN series s ON s.id = r.series_id WHERE "
            + " AND ".join(conditions),
            parameters,
        )
        return int(rows[0][0])

    # --- rollups and retention -----------------------------------------------

    def downsample(self, now: datetime, *, since: datetime | None = None) -> None:
        """See `TimeSeriesStore.downsample`."""
        now_ms = to_ms(now, "now")
        since_ms = None if since is None else to_ms(since, "since")
        plan = plan_downsample(now_ms, since_ms, self._watermark("1d"), self.retention)
        steps = (
            ("raw", "rollup_1h", "1h", plan.hourly_stop_ms),
            ("rollup_1h", "rollup_1d", "1d", plan.daily_stop_ms),
        )
        with self._transaction() as db:
            for source, target, resolution, stop_ms in steps:
                if stop_ms > plan.start_ms:
                    db.execute(
                        f"INSERT INTO {target}"
                        " (series_id, bucket_ms, n, total, lo, hi, opening, closing) "
                        + _buckets_sql(source, BUCKET_MS[resolution], one_series=False)
                        + " ON CONFLICT (series_id, bucket_ms) DO UPDATE SET n = excluded.n,"
                        " total = excluded.total, lo = excluded.lo, hi = excluded.hi,"
                        " opening = excluded.opening, closing = excluded.closing",
                        {"start": plan.start_ms, "stop": stop_ms},
                    )
                db.execute(
                    "INSERT INTO watermark (resolution, until_ms) VALUES (?, ?)"
                    " ON CONFLICT (resolution) DO UPDATE"
                    " SET until_ms = max(until_ms, excluded.until_ms)",
                    (resolution, stop_ms),
                )

    def apply_retention(self, now: datetime) -> None:
        """See `TimeSeriesStore.apply_retention`."""
        now_ms = to_ms(now, "now")
        windows = (
            ("raw", "ts_ms", self.retention.raw),
            ("rollup_1h", "bucket_ms", self.retention.hourly),
            ("rollup_1d", "bucket_ms", self.retention.daily),
        )
        with self._transaction() as db:
            for table, column, window in windows:
                cutoff = now_ms - window // timedelta(milliseconds=1)
                deleted = db.execute(f"DELETE FROM {table} WHERE {column} < ?", (cutoff,)).rowcount
                logger.info("retention: deleted %d row(s) of %s", deleted, table)

    # --- lifecycle -----------------------------------------------------------

    def ping(self) -> bool:
        """See `TimeSeriesStore.ping`."""
        try:
            self._rows("SELECT 1")
        except StoreUnavailable:
            return False
        return True

    def close(self) -> None:
        """See `TimeSeriesStore.close`."""
        with self._lock:
            self._db.close()
