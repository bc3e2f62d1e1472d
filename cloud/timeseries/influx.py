"""`InfluxStore`: InfluxDB through the v1-compatible HTTP API; `InfluxClientStore`:
writes through influxdb-client's v2 write API (2.x/3.x bucket and token).

Wire (the API InfluxDB 1.x, 2.x and 3.x all serve):

- writes: ``POST /write?db=…&precision=ns`` with line protocol from
  `fastcodec.lineprotocol.encode_readings` (its timestamps are ns, the
  schema's precision), gzip-compressed with ``Content-Encoding: gzip``, at
  most `WRITE_CHUNK_LINES` lines per request (InfluxDB's advice: ~5-10k);
- queries: ``POST /query`` with InfluxQL and ``epoch=ms`` (POST because
  ``SELECT … INTO``, ``DELETE`` and ``CREATE`` are refused on GET);
- auth: ``Authorization: Basic`` user/password (1.x) or ``Authorization:
  Token …`` (2.x/3.x v1 compatibility) — a header, never the URL, so no
  password reaches an access log.

Failure policy: connection errors, timeouts, 5xx and 429 are retried with
exponential back-off and full jitter, bounded in attempts and total time
(`RetryPolicy`), then `StoreUnavailable`; 401/403 raise `StoreAuthError` and
any other 4xx `PointsRejected` (writes) or `StoreQueryError` (queries) at once
— a bad point fails the same way every time, the caller dead-letters it.
One urllib3 `PoolManager` keeps connections alive and is thread-safe.

Idempotence comes from the schema (docs/timeseries-schema.md): tags meter and
obis, so a reading written again overwrites the same point.

Rollups (InfluxDB 1.x): ``SELECT count(value) AS n, sum(value) AS total, …
INTO "<db>"."vs_1h"."reading_1h" … GROUP BY time(1h), *`` and from there into
``"vs_1d"."reading_1d"``: one measurement per resolution, each in its own
retention policy (created ``DURATION INF`` unless `enforce_retention_on_server`,
because InfluxDB refuses writes older than a finite duration — backfills and
tests write the past). `apply_retention` deletes explicitly with
``DELETE FROM <measurement> WHERE time < …`` so it is exact; the measurement
names differ per resolution because InfluxQL DELETE spans every retention
policy of the database.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import math
import random
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import urllib3

from cloud.timeseries.exceptions import (
    PointsRejected,
    StoreAuthError,
    StoreQueryError,
    StoreUnavailable,
)
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
from fastcodec import lineprotocol
from fastcodec.exceptions import EncodeError
from fastcodec.uplink import Batch

__all__ = ["InfluxClientStore", "InfluxStore", "RetryPolicy", "quote_identifier", "quote_string"]

logger = logging.getLogger(__name__)

WRITE_CHUNK_LINES = 10_000
_DAY_MS = BUCKET_MS["1d"]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with exponential back-off and full jitter.

    Attempt k (from 0) waits ``uniform(0, min(max_delay_s, base_delay_s * 2**k))``
    before the next one; no attempt starts once `max_total_s` has passed.
    """

    max_attempts: int = 5
    base_delay_s: float = 0.1
    max_delay_s: float = 2.0
    max_total_s: float = 15.0


def quote_identifier(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(text: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _Retryable(Exception):
    """One attempt failed in a way another attempt may not."""


class InfluxStore:
    """A `TimeSeriesStore` on InfluxDB's v1-compatible HTTP API.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8086``.
        database: the v1 database (on 2.x/3.x: the database name a DBRP
            mapping gives the bucket).
        username, password: InfluxDB 1.x credentials (HTTP basic auth).
        token: a 2.x/3.x token instead (``Authorization: Token …``).
        retention: how long each resolution is kept.
        retry: the retry policy for connection errors, 5xx and 429.
        timeout_s: per-request connect and read timeout.
        gzip_writes: compress write bodies (``Content-Encoding: gzip``).
        create_schema: create the database and the rollup retention policies
            on first use (needs admin rights on 1.x; off for 2.x/3.x).
        rollup_retention_policies: keep rollups in retention policies
            ``vs_1h``/``vs_1d`` (1.x); False puts their measurements in the
            database's default policy.
        enforce_retention_on_server: give those policies the retention windows
            as DURATION, so the server drops old shards itself.
        measurement: the raw readings' measurement (docs/timeseries-schema.md).
    """

    supports_rollups = True

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        retention: RetentionWindows | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        gzip_writes: bool = True,
        create_schema: bool = True,
        rollup_retention_policies: bool = True,
        enforce_retention_on_server: bool = False,
        measurement: str = lineprotocol.DEFAULT_MEASUREMENT,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.retention = retention or RetentionWindows()
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.gzip_writes = gzip_writes
        self.measurement = measurement
        self.enforce_retention_on_server = enforce_retention_on_server
        self._schema_pending = create_schema
        self._skipped_non_finite = 0
        self._headers: dict[str, str] = {}
        if token is not None:
            self._headers["Authorization"] = f"Token {token}"
        elif username is not None:
            basic = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {basic}"
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=8, retries=False)
        db = quote_identifier(database)
        self._rp = {"1h": "vs_1h", "1d": "vs_1d"} if rollup_retention_policies else None
        self._raw = f"{db}..{quote_identifier(measurement)}"
        self._rollup = {
            resolution: f"{db}.{quote_identifier(self._rp[resolution]) if self._rp else ''}."
            f"{quote_identifier(f'{measurement}_{resolution}')}"
            for resolution in ("1h", "1d")
        }
        self._watermarks = (
            f'{db}.{quote_identifier(self._rp["1d"]) if self._rp else ""}."vs_watermark"'
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, {self.database!r})"

    @property
    def skipped_non_finite(self) -> int:
        return self._skipped_non_finite

    # --- HTTP with bounded retries -------------------------------------------

    def _retrying(self, what: str, attempt: Callable[[float], _T]) -> _T:
        """Run `attempt(timeout_s)` until it returns, raises a final error, or the
        policy runs out; `_Retryable` marks the failures worth another try."""
        policy = self.retry
        started = time.monotonic()
        reason = "no attempt made"
        attempts = 0
        for number in range(policy.max_attempts):
            remaining = policy.max_total_s - (time.monotonic() - started)
            if remaining <= 0:
                break
            attempts += 1
            try:
                return attempt(min(self.timeout_s, remaining))
            except _Retryable as exc:
                reason = str(exc)
            delay = random.uniform(0, min(policy.max_delay_s, policy.base_delay_s * 2**number))
            if number + 1 == policy.max_attempts or time.monotonic() - started + delay >= (
                policy.max_total_s
            ):
                break
            logger.info("%s failed (%s); retry in %.2f s", what, reason, delay)
            time.sleep(delay)
        raise StoreUnavailable(
            f"{what} at {self.url} failed after {attempts} attempt(s): {reason}",
            attempts=attempts,
        )

    def _http(
        self,
        what: str,
        path: str,
        params: dict[str, str],
        body: bytes,
        headers: dict[str, str],
        rejected: type[PointsRejected] | type[StoreQueryError],
    ) -> bytes:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"

        def attempt(timeout_s: float) -> bytes:
            try:
                response = self._pool.request(
                    "POST",
                    url,
                    body=body,
                    headers={**self._headers, **headers},
                    timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
                    retries=False,
                )
            except urllib3.exceptions.HTTPError as exc:
                raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
            status, data = response.status, response.data
            if status < 300:
                return bytes(data)
            message = _error_message(data)
            if status == 429 or status >= 500:
                raise _Retryable(f"HTTP {status}: {message}")
            if status in (401, 403):
                raise StoreAuthError(f"{what}: HTTP {status}: {message}", status=status)
            if rejected is PointsRejected:
                raise PointsRejected(f"{what}: HTTP {status}: {message}", status=status)
            raise StoreQueryError(f"{what}: HTTP {status}: {message}")

        return self._retrying(what, attempt)

    def query(self, influxql: str) -> list[dict[str, Any]]:
        """Run InfluxQL statements through ``/query``; one result per statement.

        Raises:
            StoreQueryError: the server refused a statement.
            StoreAuthError, StoreUnavailable: as for every request.
        """
        body = urllib.parse.urlencode({"q": influxql, "db": self.database, "epoch": "ms"})
        data = self._http(
            "query",
            "/query",
            {},
            body.encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
            StoreQueryError,
        )
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise StoreQueryError(f"query: the answer is not JSON: {data[:200]!r}") from exc
        if "error" in document:
            raise StoreQueryError(f"query refused: {document['error']}")
        results: list[dict[str, Any]] = document.get("results", [])
        for result in results:
            if "error" in result:
                raise StoreQueryError(f"query refused: {result['error']} ({influxql[:200]})")
        return results

    def _series(self, influxql: str) -> list[dict[str, Any]]:
        try:
            series: list[dict[str, Any]] = self.query(influxql)[0].get("series", [])
        except StoreQueryError as exc:
            # Nothing written yet (the schema is created on the first write or
            # downsample): no data, not an error.
            if "database not found" in str(exc) or "retention policy not found" in str(exc):
                return []
            raise
        return series

    def create_schema(self) -> None:
        """Create the database and the rollup retention policies (idempotent)."""
        statements = [f"CREATE DATABASE {quote_identifier(self.database)}"]
        if self._rp:
            for resolution, window in (
                ("1h", self.retention.hourly),
                ("1d", self.retention.daily),
            ):
                duration = (
                    f"{max(1, int(window.total_seconds() // 3600))}h"
                    if self.enforce_retention_on_server
                    else "INF"
                )
                statements.append(
                    f"CREATE RETENTION POLICY {quote_identifier(self._rp[resolution])} ON "
                    f"{quote_identifier(self.database)} DURATION {duration} REPLICATION 1"
                )
        self.query(";".join(statements))
        self._schema_pending = False

    def _ensure_schema(self) -> None:
        if self._schema_pending:
            self.create_schema()

    # --- writing -------------------------------------------------------------

    def write_batch(self, batch: Batch) -> int:
        """See `TimeSeriesStore.write_batch`.

        Raises:
            PointsRejected: the encoder refused a reading (a serial ending in a
                backslash, a timestamp outside InfluxDB's range) or the server
                answered 4xx; 1.x may have stored part of the batch then
                ("partial write"), which a corrected rewrite overwrites.
        """
        skipped = sum(1 for value in batch.values if not math.isfinite(value))
        try:
            text = lineprotocol.encode_readings(
                batch, measurement=self.measurement, skip_non_finite=True
            )
        except EncodeError as exc:
            raise PointsRejected(f"batch {batch.sequence}: {exc}") from exc
        if skipped:
            logger.warning("skipped %d non-finite value(s) of batch %s", skipped, batch.sequence)
            self._skipped_non_finite += skipped
        self._ensure_schema()
        lines = text.splitlines(keepends=True)
        for first in range(0, len(lines), WRITE_CHUNK_LINES):
            self._write_lines("".join(lines[first : first + WRITE_CHUNK_LINES]))
        return len(lines)

    def _write_lines(self, text: str, retention_policy: str | None = None) -> None:
        body = text.encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip_writes:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        params = {"db": self.database, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        self._http("write", "/write", params, body, headers, PointsRejected)

    # --- reading -------------------------------------------------------------

    def _where(
        self,
        meter: str | None,
        obis: str | None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> str:
        conditions = []
        if meter is not None:
            conditions.append(f'"meter" = {quote_string(meter)}')
        if obis is not None:
            conditions.append(f'"obis" = {quote_string(obis)}')
        if start_ms is not None:
            conditions.append(f"time >= {start_ms * 1_000_000}")
        if end_ms is not None:
            conditions.append(f"time < {end_ms * 1_000_000}")
        return f" WHERE {' AND '.join(conditions)}" if conditions else ""

    def latest(self, meter: str, obis: str | None = None) -> list[Point]:
        """See `TimeSeriesStore.latest`."""
        series = self._series(
            f'SELECT "value", "unit", "quality" FROM {self._raw}{self._where(meter, obis)}'
            ' GROUP BY "obis" ORDER BY time DESC LIMIT 1'
        )
        points = [
            Point(meter, one["tags"]["obis"], from_ms(ts), float(value), unit, int(quality))
            for one in series
            for ts, value, unit, quality in one["values"]
        ]
        return sorted(points, key=lambda point: point.obis)

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
        if resolution == "raw":
            series = self._series(
                f'SELECT "value", "unit", "quality" FROM {self._raw}'
                f"{self._where(meter, obis, start_ms, end_ms)} ORDER BY time ASC"
            )
            return [
                Point(meter, obis, from_ms(ts), float(value), unit, int(quality))
                for one in series
                for ts, value, unit, quality in one["values"]
            ]
        return query_buckets(
            self._bucket_source(meter, obis), meter, obis, start_ms, end_ms, resolution, aggregate
        )

    def _bucket_source(self, meter: str, obis: str) -> BucketSource:
        def rows_to_buckets(series: list[dict[str, Any]]) -> list[Bucket]:
            return [
                Bucket(int(row[0]), int(row[1]), *(float(value) for value in row[2:]))
                for one in series
                for row in one["values"]
            ]

        def raw_buckets(size_ms: int, start_ms: int, stop_ms: int) -> list[Bucket]:
            return rows_to_buckets(
                self._series(
                    'SELECT count("value"), sum("value"), min("value"), max("value"),'
                    f' first("value"), last("value") FROM {self._raw}'
                    f"{self._where(meter, obis, start_ms, stop_ms)}"
                    f" GROUP BY time({size_ms}ms) fill(none)"
                )
            )

        def rollup_buckets(resolution: str, start_ms: int, stop_ms: int) -> list[Bucket]:
            return rows_to_buckets(
                self._series(
                    'SELECT "n", "total", "lo", "hi", "opening", "closing" FROM '
                    f"{self._rollup[resolution]}{self._where(meter, obis, start_ms, stop_ms)}"
                    " ORDER BY time ASC"
                )
            )

        def last_before(source: str, field: str, before_ms: int) -> float | None:
            series = self._series(
                f'SELECT last("{field}") FROM {source}{self._where(meter, obis, None, before_ms)}'
            )
            return float(series[0]["values"][0][1]) if series else None

        return BucketSource(
            raw_buckets,
            rollup_buckets,
            lambda before_ms: last_before(self._raw, "value", before_ms),
            lambda resolution, before_ms: last_before(
                self._rollup[resolution], "closing", before_ms
            ),
            self._watermark,
        )

    def _watermark(self, resolution: str) -> int | None:
        if not self.supports_rollups:
            return None
        series = self._series(
            f'SELECT max("until_ms") FROM {self._watermarks}'
            f' WHERE "resolution" = {quote_string(resolution)}'
        )
        return int(series[0]["values"][0][1]) if series else None

    def meters_reporting_since(self, since: datetime) -> set[str]:
        """See `TimeSeriesStore.meters_reporting_since`: one InfluxQL query,
        ``SELECT last(value) … WHERE time >= since GROUP BY meter`` — one
        series per meter that has a point in the window. (``SHOW TAG VALUES``
        ignores the time condition on InfluxDB 1.x, so it cannot answer this.)
        """
        since_ms = to_ms(since, "since")
        series = self._series(
            f'SELECT last("value") FROM {self._raw}{self._where(None, None, since_ms)}'
            ' GROUP BY "meter"'
        )
        return {one["tags"]["meter"] for one in series if one.get("values")}

    def count(
        self,
        meter: str | None = None,
        obis: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> int:
        """See `TimeSeriesStore.count`."""
        start_ms = None if start is None else to_ms(start, "start")
        end_ms = None if end is None else to_ms(end, "end")
        series = self._series(
            f'SELECT count("value") FROM {self._raw}{self._where(meter, obis, start_ms, end_ms)}'
        )
        return int(series[0]["values"][0][1]) if series else 0

    # --- rollups and retention -----------------------------------------------

    def downsample(self, now: datetime, *, since: datetime | None = None) -> None:
        """See `TimeSeriesStore.downsample`: ``SELECT … INTO`` one day at a time."""
        if not self.supports_rollups:
            logger.info("downsample: rollups run on the server (tasks) for %r", self)
            return
        self._ensure_schema()
        now_ms = to_ms(now, "now")
        since_ms = None if since is None else to_ms(since, "since")
        plan = plan_downsample(now_ms, since_ms, self._watermark("1d"), self.retention)
        hourly = (
            'SELECT count("value") AS "n", sum("value") AS "total", min("value") AS "lo",'
            ' max("value") AS "hi", first("value") AS "opening", last("value") AS "closing"'
            f" INTO {self._rollup['1h']} FROM {self._raw}"
        )
        daily = (
            'SELECT sum("n") AS "n", sum("total") AS "total", min("lo") AS "lo",'
            ' max("hi") AS "hi", first("opening") AS "opening", last("closing") AS "closing"'
            f" INTO {self._rollup['1d']} FROM {self._rollup['1h']}"
        )
        for select, stop_ms, size in (
            (hourly, plan.hourly_stop_ms, "1h"),
            (daily, plan.daily_stop_ms, "1d"),
        ):
            # One day per statement bounds the memory a SELECT … INTO needs.
            day = plan.start_ms
            while day < stop_ms:
                until = min(day + _DAY_MS, stop_ms)
                self.query(
                    f"{select}{self._where(None, None, day, until)} GROUP BY time({size}), *"
                    " fill(none)"
                )
                day = until
            self._write_lines(
                f"vs_watermark,resolution={size} until_ms={stop_ms}i {stop_ms * 1_000_000}\n",
                self._rp["1d"] if self._rp else None,
            )

    def apply_retention(self, now: datetime) -> None:
        """See `TimeSeriesStore.apply_retention`: InfluxQL ``DELETE … WHERE time < …``."""
        if not self.supports_rollups:
            logger.info("apply_retention: the bucket's retention applies for %r", self)
            return
        now_ms = to_ms(now, "now")
        statements = []
        for measurement, window in (
            (self.measurement, self.retention.raw),
            (f"{self.measurement}_1h", self.retention.hourly),
            (f"{self.measurement}_1d", self.retention.daily),
        ):
            cutoff_ms = now_ms - int(window.total_seconds() * 1000)
            statements.append(
                f"DELETE FROM {quote_identifier(measurement)} WHERE time < {cutoff_ms * 1_000_000}"
            )
        self.query(";".join(statements))

    # --- lifecycle -----------------------------------------------------------

    def ping(self, timeout_s: float = 2.0) -> bool:
        """See `TimeSeriesStore.ping`: one ``GET /ping``, no retries."""
        try:
            response = self._pool.request(
                "GET", f"{self.url}/ping", headers=self._headers, timeout=timeout_s, retries=False
            )
        except urllib3.exceptions.HTTPError:
            return False
        return bool(response.status == 204)

    def close(self) -> None:
        """See `TimeSeriesStore.close`."""
        self._pool.clear()


def _error_message(data: bytes | str) -> str:
    text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
    try:
        document = json.loads(text)
    except ValueError:
        return text[:300].strip()
    if isinstance(document, dict):
        return str(document.get("error") or document.get("message") or document)[:300]
    return str(document)[:300]


class InfluxClientStore(InfluxStore):
    """`InfluxStore` writing through influxdb-client's v2 write API.

    For InfluxDB 2.x/3.x: ``POST /api/v2/write?org=…&bucket=…&precision=ns`` with
    ``Authorization: Token …`` (gzip when `gzip_writes`), the same retry policy
    as `InfluxStore` (the client's own retries are off). Reads go through the
    v1-compatible ``/query`` with the same token, `database` being the name a
    DBRP mapping gives the bucket. Rollups and retention are the server's job
    there (2.x tasks and bucket retention; InfluxQL ``INTO`` and ``DELETE`` are
    not served by the v1 compatibility API): `downsample` and
    `apply_retention` do nothing, 1h/1d queries aggregate raw data.

    Args:
        url: the server.
        bucket: the 2.x/3.x bucket (1.8+: ``database/retention_policy``).
        org: the organisation (ignored by 3.x and 1.8+).
        token: the API token.
        database: the v1 name for queries; defaults to the bucket.
        **options: as for `InfluxStore`.
    """

    supports_rollups = False

    def __init__(
        self,
        url: str,
        bucket: str,
        *,
        org: str,
        token: str,
        database: str | None = None,
        **options: Any,
    ) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        options.setdefault("create_schema", False)
        super().__init__(url, database or bucket, token=token, **options)
        self.bucket, self.org = bucket, org
        self._client = InfluxDBClient(
            url=self.url,
            token=token,
            org=org,
            timeout=int(self.timeout_s * 1000),
            enable_gzip=self.gzip_writes,
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def _write_lines(self, text: str, retention_policy: str | None = None) -> None:
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        def attempt(timeout_s: float) -> None:
            try:
                self._write_api.write(
                    bucket=self.bucket, org=self.org, record=text, write_precision=WritePrecision.NS
                )
            except ApiException as exc:
                status = int(exc.status or 0)
                message = _error_message(exc.body) if exc.body else str(exc.reason)
                if status == 429 or status >= 500 or status == 0:
                    raise _Retryable(f"HTTP {status}: {message}") from exc
                if status in (401, 403):
                    raise StoreAuthError(f"write: HTTP {status}: {message}", status=status) from exc
                raise PointsRejected(f"write: HTTP {status}: {message}", status=status) from exc
            except urllib3.exceptions.HTTPError as exc:
                raise _Retryable(f"{type(exc).__name__}: {exc}") from exc

        self._retrying("write", attempt)

    def close(self) -> None:
        """See `TimeSeriesStore.close`."""
        self._write_api.close()
        self._client.close()
        super().close()
