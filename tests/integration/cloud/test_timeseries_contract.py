"""The `TimeSeriesStore` contract, run against both stores: `InfluxStore` on the
real influxd (tests/servers.py; a fresh database per test) and `SqliteStore`
in a temporary file. What one store does, the other must do the same way."""

from __future__ import annotations

import math
import secrets
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.core.exceptions import NaiveTimestamp
from cloud.timeseries import (
    InfluxStore,
    InvalidQuery,
    Point,
    RetentionWindows,
    RetryPolicy,
    SqliteStore,
    StoreUnavailable,
    TimeSeriesStore,
)
from cloud.timeseries.store import to_ms
from fastcodec.obis import parse_obis
from fastcodec.uplink import Batch, Reading
from tests.servers import InfluxServer

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)
QUARTER = timedelta(minutes=15)
ENERGY, POWER = "1-0:1.8.0", "1-0:1.7.0"
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05, max_total_s=2.0)


@pytest.fixture(params=["sqlite", "influx"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TimeSeriesStore]:
    """A fresh, empty store of each kind."""
    made: TimeSeriesStore
    if request.param == "sqlite":
        made = SqliteStore(tmp_path / "ts.sqlite")
        yield made
        made.close()
        return
    server: InfluxServer = request.getfixturevalue("influxd")
    database = f"ts_{secrets.token_hex(6)}"
    made = InfluxStore(
        server.url, database, username=server.admin_username, password=server.admin_password
    )
    yield made
    made.close()
    server.query(f'DROP DATABASE "{database}"')


def reading(meter: str, obis: str, at: datetime, value: float, unit: str = "kWh") -> Reading:
    return Reading(meter, parse_obis(obis), to_ms(at), value, unit, 0)


def batch(readings: list[Reading], sequence: int = 1) -> Batch:
    return Batch.from_readings("gw-test", sequence, to_ms(T0), readings)


def series(meter: str, obis: str, values: list[float], step: timedelta = QUARTER) -> Batch:
    return batch([reading(meter, obis, T0 + i * step, value) for i, value in enumerate(values)])


def values(points: list[Point]) -> list[float]:
    return [point.value for point in points]


def test_both_stores_follow_the_protocol(store: TimeSeriesStore) -> None:
    assert isinstance(store, TimeSeriesStore)
    assert store.ping()


def test_readings_read_back_exactly(store: TimeSeriesStore) -> None:
    exact = [0.1, -1234.5678901234567, 1e-300, 5e-324, 2.0**60, 123456789.00000001, 1 / 3]
    readings = [
        Reading("MTR-1", parse_obis(POWER), to_ms(T0 + i * QUARTER), value, "kW", i * 257)
        for i, value in enumerate(exact)
    ]
    assert store.write_batch(batch(readings)) == len(exact)
    points = store.query_range("MTR-1", POWER, T0, T0 + timedelta(days=1))
    assert [p.value.hex() for p in points] == [value.hex() for value in exact]
    assert [(p.at, p.unit, p.quality) for p in points] == [
        (T0 + i * QUARTER, "kW", i * 257) for i in range(len(exact))
    ]
    assert all(p.meter == "MTR-1" and p.obis == POWER and p.count is None for p in points)


def test_nan_and_infinity_are_skipped_and_counted(store: TimeSeriesStore) -> None:
    assert store.write_batch(series("M", POWER, [1.0, math.nan, math.inf, -math.inf, 2.0])) == 2
    assert store.skipped_non_finite == 3
    assert store.count() == 2
    assert values(store.query_range("M", POWER, T0, T0 + timedelta(hours=2))) == [1.0, 2.0]


def test_writing_again_changes_nothing_but_the_values(store: TimeSeriesStore) -> None:
    first = series("M", ENERGY, [1.0, 2.0, 3.0])
    store.write_batch(first)
    store.write_batch(first)
    assert store.count() == 3
    store.write_batch(series("M", ENERGY, [1.5, 2.5, 3.5]))
    assert store.count() == 3
    assert store.count(meter="M", obis=ENERGY, start=T0 + QUARTER, end=T0 + 2 * QUARTER) == 1
    assert values(store.query_range("M", ENERGY, T0, T0 + timedelta(days=1))) == [1.5, 2.5, 3.5]
    # The same reading twice in one batch: the last one wins.
    twice = batch([reading("M", ENERGY, T0, 7.0), reading("M", ENERGY, T0, 8.0)])
    assert store.write_batch(twice) == 2
    assert store.count() == 3
    assert store.latest("M", ENERGY)[0].value == 3.5
    assert values(store.query_range("M", ENERGY, T0, T0 + QUARTER)) == [8.0]


def test_latest_gives_the_newest_reading_per_obis(store: TimeSeriesStore) -> None:
    store.write_batch(series("M", ENERGY, [10.0, 11.0, 12.0]))
    store.write_batch(series("M", POWER, [0.5, 0.25]))
    store.write_batch(series("other", POWER, [9.0, 9.0, 9.0, 9.0]))
    latest = store.latest("M")
    assert [(p.obis, p.at, p.value, p.unit) for p in latest] == [
        (POWER, T0 + QUARTER, 0.25, "kWh"),
        (ENERGY, T0 + 2 * QUARTER, 12.0, "kWh"),
    ]
    assert store.latest("M", ENERGY) == [latest[1]]
    assert store.latest("nobody") == []


def test_meters_reporting_since_names_the_meters_with_a_reading_in_the_window(
    store: TimeSeriesStore,
) -> None:
    assert store.meters_reporting_since(T0) == set()
    store.write_batch(series("stale", ENERGY, [1.0, 2.0]))  # T0, T0 + 15 min
    store.write_batch(series("fresh", ENERGY, [1.0, 2.0, 3.0, 4.0]))  # up to T0 + 45 min
    store.write_batch(batch([reading("power only", POWER, T0 + 3 * QUARTER, 0.5)]))
    # Inclusive at `since`, any OBIS code counts, a meter is named once.
    assert store.meters_reporting_since(T0 + 2 * QUARTER) == {"fresh", "power only"}
    assert store.meters_reporting_since(T0 + QUARTER) == {"stale", "fresh", "power only"}
    assert store.meters_reporting_since(T0 + 4 * QUARTER) == set()
    with pytest.raises(NaiveTimestamp):
        store.meters_reporting_since(datetime(2024, 3, 1))


def power_profile() -> list[float]:
    # Two days of 15-minute power, multiples of 1/4 so every sum is exact.
    return [(i % 7) * 0.25 + (i // 96) * 10 for i in range(2 * 96)]


def expected_buckets(raw: list[float], per_bucket: int, aggregate: str) -> list[float]:
    chunks = [raw[i : i + per_bucket] for i in range(0, len(raw), per_bucket)]
    pick = {
        "mean": lambda c: sum(c) / len(c),
        "sum": sum,
        "min": min,
        "max": max,
        "last": lambda c: c[-1],
    }[aggregate]
    return [pick(chunk) for chunk in chunks]


@pytest.mark.parametrize("downsampled", [False, True], ids=["from-raw", "from-rollups"])
def test_ranges_at_every_resolution(store: TimeSeriesStore, downsampled: bool) -> None:
    raw = power_profile()
    store.write_batch(series("M", POWER, raw))
    end = T0 + timedelta(days=2)
    if downsampled:
        store.downsample(end, since=T0)
    assert values(store.query_range("M", POWER, T0, end)) == raw
    assert values(store.query_range("M", POWER, T0, end, "15m", "sum")) == raw
    for aggregate in ("mean", "sum", "min", "max", "last"):
        hourly = store.query_range("M", POWER, T0, end, "1h", aggregate)  # type: ignore[arg-type]
        assert values(hourly) == expected_buckets(raw, 4, aggregate), aggregate
        assert [p.at for p in hourly] == [T0 + timedelta(hours=h) for h in range(48)]
        daily = store.query_range("M", POWER, T0, end, "1d", aggregate)  # type: ignore[arg-type]
        assert values(daily) == expected_buckets(raw, 96, aggregate), aggregate
        assert [p.count for p in daily] == [96, 96]
    # A bucket is returned when its start lies in [start, end), with all its data.
    later = store.query_range("M", POWER, T0 + timedelta(minutes=1), end, "1h", "sum")
    assert values(later) == expected_buckets(raw, 4, "sum")[1:]


def test_downsampling_keeps_up_with_late_and_new_data(store: TimeSeriesStore) -> None:
    raw = power_profile()
    store.write_batch(series("M", POWER, raw[:96]))
    store.downsample(T0 + timedelta(days=1), since=T0)
    # The second day arrives after the run: 1h and 1d read it from raw data.
    store.write_batch(
        batch([reading("M", POWER, T0 + i * QUARTER, raw[i]) for i in range(96, 192)])
    )
    end = T0 + timedelta(days=2)
    assert values(store.query_range("M", POWER, T0, end, "1d", "sum")) == expected_buckets(
        raw, 96, "sum"
    )
    # A late correction inside the late-data window is picked up by the next run.
    store.write_batch(batch([reading("M", POWER, T0, 100.0)]))
    store.downsample(end)
    assert store.query_range("M", POWER, T0, end, "1h", "max")[0].value == 100.0
    assert values(store.query_range("M", POWER, T0, end, "1d", "sum")) == expected_buckets(
        [100.0, *raw[1:]], 96, "sum"
    )


def test_delta_gives_a_counters_increase_per_period(store: TimeSeriesStore) -> None:
    # An energy register over three days: +1 Wh per quarter-hour on day 1, +2 on day 2, +3 ...
    register, counter = [], 1000.0
    for i in range(3 * 96):
        counter += 1 + i // 96
        register.append(counter)
    store.write_batch(series("M", ENERGY, register))
    end = T0 + timedelta(days=3)
    for downsample in (False, True):
        if downsample:
            store.downsample(end, since=T0)
        daily = store.query_range("M", ENERGY, T0, end, "1d", "delta")
        # The first day has nothing before it: last minus first reading.
        assert values(daily) == [register[95] - register[0], 192.0, 288.0]
        later = store.query_range("M", ENERGY, T0 + timedelta(days=1), end, "1d", "delta")
        assert values(later) == [192.0, 288.0]
        hourly = store.query_range("M", ENERGY, T0 + timedelta(hours=24), end, "1h", "delta")
        assert values(hourly)[:2] == [8.0, 8.0]
        assert sum(values(hourly)) == register[-1] - register[95]


def test_retention_removes_what_is_older_than_its_window(store: TimeSeriesStore) -> None:
    now = T0 + timedelta(days=5 * 365)
    store.retention = RetentionWindows(
        raw=timedelta(days=90), hourly=timedelta(days=730), daily=timedelta(days=3650)
    )
    ages = [timedelta(days=4 * 365), timedelta(days=365), timedelta(days=91), timedelta(days=89)]
    readings = [reading("M", POWER, now - age, float(n)) for n, age in enumerate(ages)]
    store.write_batch(batch(readings))
    store.downsample(now, since=now - timedelta(days=5 * 365))
    store.apply_retention(now)
    everything = (now - timedelta(days=5 * 365), now)
    assert values(store.query_range("M", POWER, *everything)) == [3.0]
    assert store.count() == 1
    assert values(store.query_range("M", POWER, *everything, "1h", "last")) == [1.0, 2.0, 3.0]
    assert values(store.query_range("M", POWER, *everything, "1d", "last")) == [0.0, 1.0, 2.0, 3.0]
    # A cutoff exactly at a reading's time keeps it.
    store.apply_retention(now - timedelta(days=1))
    assert store.count() == 1


HOSTILE_SERIALS = [
    "a,b",
    "with space",
    "k=v",
    'quo"te',
    "apo'strophe",
    "back\\slash",
    "☃ 电 😀,=",
    "tab\there",
]


def test_hostile_serials_round_trip(store: TimeSeriesStore) -> None:
    readings = [reading(serial, ENERGY, T0, float(n)) for n, serial in enumerate(HOSTILE_SERIALS)]
    assert store.write_batch(batch(readings)) == len(HOSTILE_SERIALS)
    for n, serial in enumerate(HOSTILE_SERIALS):
        [point] = store.latest(serial)
        assert (point.meter, point.value) == (serial, float(n))
        assert values(store.query_range(serial, ENERGY, T0, T0 + QUARTER)) == [float(n)]
        assert store.count(meter=serial) == 1
    assert store.count() == len(HOSTILE_SERIALS)
    assert store.meters_reporting_since(T0) == set(HOSTILE_SERIALS)


def test_concurrent_writers_lose_nothing(store: TimeSeriesStore) -> None:
    errors: list[BaseException] = []

    def writer(meter: str) -> None:
        try:
            for part in range(10):
                store.write_batch(
                    batch(
                        [
                            reading(meter, POWER, T0 + (part * 50 + i) * QUARTER, float(i))
                            for i in range(50)
                        ],
                        sequence=part,
                    )
                )
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"M{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count() == 1000
    assert store.count(meter="M1") == 500


def test_bad_queries_are_refused(store: TimeSeriesStore) -> None:
    end = T0 + timedelta(days=1)
    with pytest.raises(InvalidQuery):
        store.query_range("M", POWER, T0, end, "5m")  # type: ignore[arg-type]
    with pytest.raises(InvalidQuery):
        store.query_range("M", POWER, T0, end, "1h", "median")  # type: ignore[arg-type]
    with pytest.raises(InvalidQuery):
        store.query_range("M", POWER, end, T0)
    with pytest.raises(NaiveTimestamp):
        store.query_range("M", POWER, T0.replace(tzinfo=None), end)
    assert store.query_range("nobody", POWER, T0, end, "1d", "delta") == []


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_store_that_is_down_says_so(tmp_path: Path) -> None:
    influx = InfluxStore(
        f"http://127.0.0.1:{closed_port()}", "nowhere", username="u", password="p", retry=FAST_RETRY
    )
    assert not influx.ping()
    with pytest.raises(StoreUnavailable) as raised:
        influx.write_batch(series("M", POWER, [1.0]))
    assert raised.value.attempts == FAST_RETRY.max_attempts
    with pytest.raises(StoreUnavailable):
        influx.count()
    influx.close()

    # The embedded store is "down" when its file is gone from under it or closed.
    with pytest.raises(StoreUnavailable):
        SqliteStore(tmp_path / "missing-folder" / "ts.sqlite")
    sqlite = SqliteStore(tmp_path / "ts.sqlite")
    sqlite.close()
    assert not sqlite.ping()
    with pytest.raises(StoreUnavailable):
        sqlite.write_batch(series("M", POWER, [1.0]))
