"""Line protocol throughput: fastcodec compiled and pure beside influxdb-client.

Input: 102,400 readings (64 meters x 20 OBIS codes x 80 quarter-hours) in the
columnar batch the uplink decoder produces. The peer builds the same lines
with influxdb-client's `Point(...).tag(...).field(...).time(...)
.to_line_protocol()`; the lines are checked identical before timing (both
sort tags and fields by key and drop a float's trailing ".0"). Goal: >= 1 M
lines/s compiled.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from bench._timing import machine_line, report, seconds_per_call
from fastcodec import _lineprotocol_c, _lineprotocol_py
from fastcodec._obis_types import Obis
from fastcodec._uplink_types import Batch, Reading

GOAL_LINES_PER_S = 1e6


def _batch() -> Batch:
    rng = random.Random(62056)
    meters = [f"LGZ{1000000 + i}" for i in range(64)]
    codes = [Obis(1, 0, c, 8, e) for c in (1, 2, 3, 4) for e in (0, 1, 2)] + [
        Obis(1, 0, c, 7, 0) for c in (1, 2, 32, 52, 72, 31, 51, 71)
    ]
    start_ms = 1_700_000_000_000
    readings = [
        Reading(meter, code, start_ms + slot * 900_000, round(rng.uniform(0, 99999), 3), "kWh", 0)
        for slot in range(80)
        for meter in meters
        for code in codes
    ]
    return Batch.from_readings("gw-0042", 1, start_ms, readings)


def _peer(batch: Batch) -> Callable[[], str]:
    from influxdb_client import Point, WritePrecision

    def encode() -> str:
        return "".join(
            Point("reading")
            .tag("meter", r.meter)
            .tag("obis", str(r.obis))
            .field("value", r.value)
            .field("unit", r.unit)
            .field("quality", r.quality)
            .time(r.timestamp_ms * 1_000_000, WritePrecision.NS)
            .to_line_protocol()
            + "\n"
            for r in batch.readings()
        )

    return encode


def run() -> None:
    batch = _batch()
    peer = _peer(batch)
    ours = _lineprotocol_c.encode_readings(batch)
    assert ours == peer(), "influxdb-client writes different lines"
    assert _lineprotocol_py.encode_readings(batch) == ours

    count = len(batch)
    print(machine_line())
    timings = {
        "fastcodec cython": seconds_per_call(lambda: _lineprotocol_c.encode_readings(batch), 3),
        "fastcodec python": seconds_per_call(lambda: _lineprotocol_py.encode_readings(batch), 3),
        "influxdb-client": seconds_per_call(peer, 3),
    }
    report(
        f"line protocol {count} readings",
        timings,
        baseline="influxdb-client",
        items=count,
        item_name="line",
    )
    rate = count / timings["fastcodec cython"]
    print(f"line protocol goal >= 1 M lines/s: {rate / GOAL_LINES_PER_S:.1f}x of the goal")
