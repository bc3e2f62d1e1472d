"""One meter-year of 15-minute energy readings in each time-series store, then
the year's daily consumption (``aggregate="delta"``) queried: ms per query
against the 200 ms goal, from raw data and from the daily rollups.

`python -m bench ingest_query` (if listed in bench/__main__.py) or
`python -c "import bench.ingest_query as b; b.run()"`. Starts its own influxd
(tests/servers.py) in a temporary folder and stops it after.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench._timing import machine_line
from cloud.timeseries import InfluxStore, SqliteStore, TimeSeriesStore
from cloud.timeseries.store import to_ms
from fastcodec.obis import parse_obis
from fastcodec.uplink import Batch, Reading

GOAL_MS = 200.0
POINTS = 35_040  # 365 days × 96 quarter-hours
START = datetime(2023, 1, 1, tzinfo=UTC)
END = datetime(2024, 1, 1, tzinfo=UTC)
METER, OBIS = "BENCH-0001", "1-0:1.8.0"


def meter_year() -> Batch:
    code = parse_obis(OBIS)
    start_ms = to_ms(START)
    register, readings = 100_000.0, []
    for i in range(POINTS):
        register += 0.05 + (i % 96 > 28) * 0.125  # Wh per quarter-hour, more by day
        readings.append(Reading(METER, code, start_ms + i * 900_000, register, "kWh", 0))
    return Batch.from_readings("bench", 1, start_ms, readings)


def best_ms(function: Callable[[], object], repeats: int = 7) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        timings.append((time.perf_counter() - started) * 1000)
    return min(timings)


def measure(name: str, store: TimeSeriesStore, batch: Batch) -> None:
    started = time.perf_counter()
    store.write_batch(batch)
    write_s = time.perf_counter() - started
    assert store.count(meter=METER) == POINTS

    def daily() -> object:
        days = store.query_range(METER, OBIS, START, END, "1d", "delta")
        assert len(days) == 365
        return days

    from_raw = best_ms(daily)
    started = time.perf_counter()
    store.downsample(END, since=START)
    downsample_s = time.perf_counter() - started
    from_rollups = best_ms(daily)
    print(
        f"{name:<7} write {POINTS} points {write_s * 1000:7.0f} ms, downsample "
        f"{downsample_s * 1000:6.0f} ms | daily delta for a year: from raw "
        f"{from_raw:6.1f} ms ({from_raw / GOAL_MS:.2f}x of {GOAL_MS:.0f} ms goal), "
        f"from rollups {from_rollups:6.1f} ms ({from_rollups / GOAL_MS:.2f}x)"
    )


def run() -> None:
    from tests.servers import start_influxd, stop

    print(machine_line())
    batch = meter_year()
    with tempfile.TemporaryDirectory(prefix="voltstack-bench-") as folder:
        sqlite = SqliteStore(Path(folder) / "ts.sqlite")
        try:
            measure("sqlite", sqlite, batch)
        finally:
            sqlite.close()
        influx_dir = Path(folder) / "influxd"
        influx_dir.mkdir()
        server = start_influxd(influx_dir)
        try:
            influx = InfluxStore(
                server.url,
                "bench",
                username=server.admin_username,
                password=server.admin_password,
            )
            measure("influx", influx, batch)
            influx.close()
        finally:
            stop(server.process)


if __name__ == "__main__":
    run()
