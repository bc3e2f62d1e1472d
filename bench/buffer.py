"""The store-and-forward buffer: append and drain rates beside SQLite's own ceiling.

Input: 100,000 readings (64 meters x 20 OBIS codes, one reading each per
second over 78 s), appended and drained in batches of 1,000 (one uplink
message). For synchronous FULL and NORMAL:

- `raw INSERT ceiling`: a bare `executemany(INSERT)` of the same rows into a
  fresh, index-free table in WAL mode with the same synchronous setting, one
  transaction per 1,000 — the physical limit of SQLite on this disk;
- `SqliteBuffer.append`: one `append` per 1,000;
- `lease+acknowledge`: `lease(1000)` then `acknowledge` until empty (the
  drain; what the uplink does while the broker answers at once).

The agent must drain to a local broker at >= 20,000 readings/s end to end,
so the buffer alone should be far faster: goal >= 100,000 readings/s.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Literal

from bench._timing import machine_line, report
from edge_agent.adapters.sqlite_buffer import SqliteBuffer
from edge_agent.domain.readings import Reading

BATCH = 1000
TOTAL = 100_000
GOAL_DRAIN_READINGS_PER_S = 100_000
NOW_S = 1_800_000_000.0


def _readings() -> list[Reading]:
    start_ms = int(NOW_S * 1000) - 120_000  # live: within the last 5 minutes
    codes = [f"1-0:{c}.{d}.0" for c in (1, 2, 3, 4, 32, 52, 72, 31, 51, 71) for d in (7, 8)]
    return [
        Reading(
            f"LGZ{1000000 + i % 64}", codes[i // 64 % 20], start_ms + i // 1280 * 1000, i, "kWh"
        )
        for i in range(TOTAL)
    ]


def _raw_insert(path: Path, synchronous: str, readings: list[Reading]) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute("CREATE TABLE t (meter, obis, at_ms, value, unit, quality)")
    started = time.perf_counter()
    for first in range(0, len(readings), BATCH):
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", readings[first : first + BATCH]
        )
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def _buffer_runs(
    path: Path, synchronous: Literal["FULL", "NORMAL"], readings: list[Reading]
) -> tuple[float, float]:
    with SqliteBuffer(
        path, max_readings=10**7, max_age_days=35, synchronous=synchronous, clock=lambda: NOW_S
    ) as buffer:
        started = time.perf_counter()
        for first in range(0, len(readings), BATCH):
            buffer.append(readings[first : first + BATCH])
        appended = time.perf_counter() - started
        started = time.perf_counter()
        delivered = 0
        while (lease := buffer.lease(BATCH)) is not None:
            delivered += buffer.acknowledge(lease.lease_id)
        drained = time.perf_counter() - started
    assert delivered == len(readings)
    return appended, drained


def run() -> None:
    print(machine_line())
    readings = _readings()
    batches = len(readings) // BATCH
    with tempfile.TemporaryDirectory(prefix="bench-buffer-") as folder:
        for synchronous in ("FULL", "NORMAL"):
            raw = _raw_insert(Path(folder) / f"raw-{synchronous}.sqlite", synchronous, readings)
            appended, drained = _buffer_runs(
                Path(folder) / f"buffer-{synchronous}.sqlite", synchronous, readings
            )
            report(
                f"buffer 1000/batch synchronous={synchronous}",
                {
                    "raw INSERT ceiling": raw / batches,
                    "SqliteBuffer.append": appended / batches,
                    "lease+acknowledge": drained / batches,
                },
                "raw INSERT ceiling",
                items=BATCH,
                item_name="reading",
            )
            rate = len(readings) / drained
            print(
                f"{'':<36} drain goal >= {GOAL_DRAIN_READINGS_PER_S:,} readings/s: "
                f"{rate:,.0f} ({rate / GOAL_DRAIN_READINGS_PER_S:.2f}x the goal)"
            )


if __name__ == "__main__":
    run()
