"""SqliteStore and the shared rollup helpers, without any server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloud import timeseries
from cloud.timeseries import RetentionWindows, SqliteStore
from cloud.timeseries.rollups import Bucket, bucket_points, ceil_ms, floor_ms, plan_downsample
from cloud.timeseries.store import from_ms, to_ms
from fastcodec.obis import parse_obis
from fastcodec.uplink import Batch, Reading

DAY_MS = 86_400_000


def test_public_api() -> None:
    for name in timeseries.__all__:
        assert getattr(timeseries, name) is not None


def test_ms_conversions_are_exact() -> None:
    moment = datetime(2262, 4, 11, 23, 47, 16, 854_000, tzinfo=UTC)
    assert from_ms(to_ms(moment)) == moment
    assert floor_ms(-1, 1000) == -1000 and ceil_ms(1, 1000) == 1000 and ceil_ms(0, 1000) == 0


def test_delta_telescopes_across_gaps() -> None:
    buckets = [
        Bucket(0, 2, 3.0, 1.0, 2.0, 1.0, 2.0),
        Bucket(2 * DAY_MS, 1, 7.0, 7.0, 7.0, 7.0, 7.0),
    ]
    assert [p.value for p in bucket_points("M", "x", buckets, "delta", None)] == [1.0, 5.0]
    assert [p.value for p in bucket_points("M", "x", buckets, "delta", 0.5)] == [1.5, 5.0]
    assert [p.count for p in bucket_points("M", "x", buckets, "mean", None)] == [2, 1]


def test_downsample_plan_starts_on_a_day_and_looks_back_for_late_data() -> None:
    windows = RetentionWindows()
    now = 100 * DAY_MS + 5_400_000  # 01:30 on day 100
    first = plan_downsample(now, None, None, windows)
    assert (first.start_ms, first.hourly_stop_ms, first.daily_stop_ms) == (
        10 * DAY_MS,
        100 * DAY_MS + 3_600_000,
        100 * DAY_MS,
    )
    assert plan_downsample(now, None, 100 * DAY_MS, windows).start_ms == 98 * DAY_MS
    assert plan_downsample(now, 3 * DAY_MS + 1, 100 * DAY_MS, windows).start_ms == 3 * DAY_MS


def test_a_meter_year_is_dictionary_encoded(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ts.sqlite")
    code = parse_obis("1-0:1.8.0")
    start = datetime(2023, 1, 1, tzinfo=UTC)
    readings = [
        Reading("LGZ-1", code, to_ms(start) + i * 900_000, float(i), "kWh", 0)
        for i in range(35_040)
    ]
    assert store.write_batch(Batch.from_readings("gw", 1, 0, readings)) == 35_040
    days = store.query_range(
        "LGZ-1", "1-0:1.8.0", start, start + timedelta(days=365), "1d", "delta"
    )
    assert [p.value for p in days] == [95.0] + [96.0] * 364
    [(series,)] = store._rows("SELECT count(*) FROM series")
    assert series == 1
    store.close()
