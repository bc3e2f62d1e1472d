"""The SQLite buffer against a real SQLite file: API, policy, limits, disk full."""

from __future__ import annotations

import math
import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.adapters.sqlite_buffer import (
    SCHEMA_VERSION,
    BufferClosed,
    BufferCorrupt,
    BufferFull,
    BufferLocked,
    SqliteBuffer,
)
from edge_agent.domain.buffer_policy import (
    age_cutoff_ms,
    live_cutoff_ms,
    order_key,
    select_drops,
    select_lease,
)
from edge_agent.domain.readings import Reading

NOW_S = 1_800_000_000.0
NOW_MS = int(NOW_S * 1000)


class Clock:
    def __init__(self) -> None:
        self.now_s = NOW_S

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def buffer(tmp_path: Path, clock: Clock) -> Iterator[SqliteBuffer]:
    with SqliteBuffer(
        tmp_path / "buffer.sqlite", max_readings=100_000, max_age_days=35, clock=clock
    ) as opened:
        yield opened


def reading(meter: str, at_ms: int, value: float = 1.0, obis: str = "1-0:1.8.0") -> Reading:
    return Reading(meter, obis, at_ms, value, "kWh", 0)


def drain(buffer: SqliteBuffer) -> list[Reading]:
    sent = []
    while (lease := buffer.lease(1000)) is not None:
        sent.extend(lease.readings)
        buffer.acknowledge(lease.lease_id)
    return sent


def test_a_fresh_buffer_is_wal_with_the_schema(buffer: SqliteBuffer, tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "buffer.sqlite")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    connection.close()
    assert buffer.stats().depth == 0
    assert buffer.lease(10) is None


def test_append_then_lease_and_acknowledge_delivers_every_reading_once(
    buffer: SqliteBuffer,
) -> None:
    readings = [reading(f"M{i % 7}", NOW_MS - 3_600_000 + i * 1000, float(i)) for i in range(2500)]
    buffer.append(readings)
    assert buffer.stats().depth == 2500
    sent = drain(buffer)
    assert sorted(sent, key=order_key) == sorted(readings, key=order_key)
    assert buffer.stats().depth == 0


def test_a_duplicate_replaces_the_buffered_reading(buffer: SqliteBuffer) -> None:
    buffer.append([reading("M1", NOW_MS, 1.0)])
    buffer.append([reading("M1", NOW_MS, 2.0), reading("M1", NOW_MS, 3.0)])
    assert drain(buffer) == [reading("M1", NOW_MS, 3.0)]


def test_a_corrected_reading_in_flight_is_sent_again(buffer: SqliteBuffer) -> None:
    buffer.append([reading("M1", NOW_MS, 1.0)])
    lease = buffer.lease(10)
    assert lease is not None
    buffer.append([reading("M1", NOW_MS, 1.0)])  # the same: stays in flight
    assert buffer.lease(10) is None
    buffer.append([reading("M1", NOW_MS, 2.0)])  # corrected: pending again
    assert buffer.acknowledge(lease.lease_id) == 0
    assert drain(buffer) == [reading("M1", NOW_MS, 2.0)]


def test_nan_and_infinities_survive(buffer: SqliteBuffer) -> None:
    buffer.append([reading("M1", NOW_MS, math.nan), reading("M1", NOW_MS + 1, math.inf)])
    sent = drain(buffer)
    assert math.isnan(sent[0].value)
    assert sent[1].value == math.inf


def test_leases_follow_the_reference_policy(tmp_path: Path, clock: Clock) -> None:
    # Distinct timestamps, so the order is the same whatever breaks ties.
    rng = random.Random(7)
    times = rng.sample(range(NOW_MS - 86_400_000, NOW_MS), 3000)
    live_times = rng.sample(range(NOW_MS - 200_000, NOW_MS), 300)
    readings = [reading(f"M{i % 10}", at) for i, at in enumerate(times)]
    readings += [reading(f"L{i % 4}", at) for i, at in enumerate(live_times)]
    with SqliteBuffer(
        tmp_path / "b.sqlite", max_readings=10**6, max_age_days=35, clock=clock
    ) as buffer:
        buffer.append(readings)
        pending = set(readings)
        while pending:
            expected = select_lease(
                pending, 200, live_share=0.3, live_from_ms=live_cutoff_ms(NOW_S, 300)
            )
            lease = buffer.lease(200, live_share=0.3)
            assert lease is not None
            assert list(lease.readings) == expected
            buffer.acknowledge(lease.lease_id)
            pending -= set(expected)
        assert buffer.lease(200) is None


def test_in_flight_readings_are_not_leased_again_until_released(buffer: SqliteBuffer) -> None:
    buffer.append([reading("M1", NOW_MS + i) for i in range(10)])
    first = buffer.lease(4)
    second = buffer.lease(4)
    assert first is not None and second is not None
    assert set(first.readings).isdisjoint(second.readings)
    assert second.sequence == first.sequence + 1
    assert buffer.stats().in_flight == 8
    assert buffer.release(first.lease_id) == 4
    again = buffer.lease(100)
    assert again is not None
    assert set(again.readings) == set(first.readings) | {reading("M1", NOW_MS + i) for i in (8, 9)}
    assert buffer.release_all() == 10
    assert buffer.stats().in_flight == 0


def test_a_lease_older_than_the_timeout_comes_back(tmp_path: Path, clock: Clock) -> None:
    with SqliteBuffer(
        tmp_path / "b.sqlite", max_readings=1000, max_age_days=35, clock=clock, lease_timeout_s=60
    ) as buffer:
        buffer.append([reading("M1", NOW_MS)])
        stale = buffer.lease(10)
        assert stale is not None
        clock.now_s += 61
        fresh = buffer.lease(10)
        assert fresh is not None
        assert fresh.readings == stale.readings
        assert buffer.acknowledge(stale.lease_id) == 0  # its PUBACK came too late
        assert buffer.acknowledge(fresh.lease_id) == 1


def test_only_acknowledge_deletes_delivered_readings(buffer: SqliteBuffer) -> None:
    buffer.append([reading("M1", NOW_MS + i) for i in range(5)])
    lease = buffer.lease(5)
    assert lease is not None
    buffer.enforce_limits()  # within the limits: no effect
    buffer.release(lease.lease_id + 1000)  # unknown lease: no effect
    assert buffer.acknowledge(lease.lease_id + 1000) == 0
    assert buffer.stats().depth == 5
    assert buffer.acknowledge(lease.lease_id) == 5
    assert buffer.acknowledge(lease.lease_id) == 0
    assert buffer.stats().depth == 0


def test_limits_drop_oldest_first_counted_and_persisted(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "b.sqlite"
    rng = random.Random(3)
    times = rng.sample(range(NOW_MS - 40 * 86_400_000, NOW_MS), 1500)
    readings = [reading(f"M{i % 5}", at) for i, at in enumerate(times)]
    with SqliteBuffer(path, max_readings=1000, max_age_days=35, clock=clock) as buffer:
        buffer.append(readings)
        lease = buffer.lease(100)  # the oldest 100, in flight: never dropped
        assert lease is not None
        pending = set(readings) - set(lease.readings)
        by_age, by_size = select_drops(
            pending, in_flight=100, max_readings=1000, age_from_ms=age_cutoff_ms(NOW_S, 35)
        )
        report = buffer.enforce_limits()
        assert (report.by_age, report.by_size) == (len(by_age), len(by_size))
        assert report.total == 500
        expected_per_meter: dict[str, int] = {}
        for dropped in by_age + by_size:
            expected_per_meter[dropped.meter] = expected_per_meter.get(dropped.meter, 0) + 1
        assert dict(report.per_meter) == expected_per_meter
        assert buffer.stats().depth == 1000
        assert buffer.enforce_limits().total == 0
        assert buffer.acknowledge(lease.lease_id) == 100
        survivors = drain(buffer)
        assert set(survivors) == pending - set(by_age + by_size)
    with SqliteBuffer(path, max_readings=1000, max_age_days=35, clock=clock) as buffer:
        totals = buffer.drop_counters()
        assert (totals.by_age, totals.by_size) == (len(by_age), len(by_size))
        assert buffer.stats().drops_total == 500


def test_stats_report_depth_age_and_size(buffer: SqliteBuffer, clock: Clock) -> None:
    buffer.append([reading("M1", NOW_MS - 90_000), reading("M2", NOW_MS - 30_000)])
    buffer.lease(1)
    stats = buffer.stats()
    assert (stats.depth, stats.in_flight, stats.drops_total) == (2, 1, 0)
    assert stats.oldest_age_s == pytest.approx(90.0)
    assert stats.bytes_on_disk > 0


def test_one_process_at_a_time_and_closed_means_closed(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buffer = SqliteBuffer(path, max_readings=1000, max_age_days=1)
    with pytest.raises(BufferLocked):
        SqliteBuffer(path, max_readings=1000, max_age_days=1)
    buffer.close()
    buffer.close()
    with pytest.raises(BufferClosed):
        buffer.append([reading("M1", NOW_MS)])
    SqliteBuffer(path, max_readings=1000, max_age_days=1).close()


def test_foreign_or_newer_databases_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.sqlite"
    connection = sqlite3.connect(foreign)
    connection.execute("CREATE TABLE something (x)")
    connection.commit()
    connection.close()
    with pytest.raises(BufferCorrupt, match="not a buffer"):
        SqliteBuffer(foreign, max_readings=1000, max_age_days=1)
    newer = tmp_path / "newer.sqlite"
    SqliteBuffer(newer, max_readings=1000, max_age_days=1).close()
    connection = sqlite3.connect(newer)
    connection.execute("UPDATE schema_version SET version = 99")
    connection.commit()
    connection.close()
    with pytest.raises(BufferCorrupt, match="v99"):
        SqliteBuffer(newer, max_readings=1000, max_age_days=1)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all, " * 100)
    with pytest.raises(BufferCorrupt):
        SqliteBuffer(garbage, max_readings=1000, max_age_days=1)


def test_a_full_disk_raises_buffer_full_and_damages_nothing(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    stored: list[Reading] = []
    with SqliteBuffer(path, max_readings=10**6, max_age_days=35, max_db_bytes=256 * 1024) as buffer:
        with pytest.raises(BufferFull, match="full"):
            for batch in range(1000):
                readings = [reading(f"M{i}", NOW_MS + batch * 1000) for i in range(100)]
                buffer.append(readings)
                stored.extend(readings)
        assert buffer.stats().depth == len(stored)  # the failed batch left nothing
        # The agent keeps running: delivering frees room for new readings.
        lease = buffer.lease(1000)
        assert lease is not None
        buffer.acknowledge(lease.lease_id)
        buffer.append([reading("M0", NOW_MS - 1)])
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()


def test_the_buffer_may_be_used_from_several_threads(buffer: SqliteBuffer) -> None:
    def produce(meter: str) -> None:
        for i in range(50):
            buffer.append([reading(meter, NOW_MS + i)])

    threads = [threading.Thread(target=produce, args=(f"M{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    delivered = 0
    while any(thread.is_alive() for thread in threads) or buffer.stats().depth:
        lease = buffer.lease(7)
        if lease is not None:
            delivered += buffer.acknowledge(lease.lease_id)
    for thread in threads:
        thread.join()
    assert delivered == 200
