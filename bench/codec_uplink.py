"""Uplink batch v1 throughput: fastcodec compiled and pure beside JSON.

Input: 10,240 readings (64 meters x 20 OBIS codes x 8 quarter-hours) with
3-decimal register values, the shape of a gateway's 2-hour batch. The peer is
what a naive agent would publish: `json.dumps`/`json.loads` of the same
readings as a list of dicts. Both sides are checked to carry the same
readings before timing. Goal: >= 2 M readings/s for encode and for decode,
compiled.
"""

from __future__ import annotations

import json
import random

from bench._timing import machine_line, report, seconds_per_call
from fastcodec import _uplink_c, _uplink_py
from fastcodec._obis_types import Obis
from fastcodec._uplink_types import Batch, Reading

GOAL_READINGS_PER_S = 2e6


def _readings() -> list[Reading]:
    rng = random.Random(62056)
    meters = [f"LGZ{1000000 + i}" for i in range(64)]
    codes = [Obis(1, 0, c, 8, e) for c in (1, 2, 3, 4) for e in (0, 1, 2)] + [
        Obis(1, 0, c, 7, 0) for c in (1, 2, 32, 52, 72, 31, 51, 71)
    ]
    start_ms = 1_700_000_000_000
    return [
        Reading(meter, code, start_ms + slot * 900_000, round(rng.uniform(0, 99999), 3), "kWh", 0)
        for slot in range(8)
        for meter in meters
        for code in codes
    ]


def _as_dicts(readings: list[Reading]) -> list[dict[str, object]]:
    return [
        {
            "meter": r.meter,
            "obis": str(r.obis),
            "timestamp_ms": r.timestamp_ms,
            "value": r.value,
            "unit": r.unit,
            "quality": r.quality,
        }
        for r in readings
    ]


def run() -> None:
    readings = _readings()
    batch = Batch.from_readings("gw-0042", 1, readings[-1].timestamp_ms + 60_000, readings)
    encoded = _uplink_c.encode_batch(batch)
    rows = _as_dicts(readings)
    text = json.dumps(rows)
    # Same readings on both sides before timing.
    assert _uplink_py.encode_batch(batch) == encoded
    assert list(_uplink_c.decode_batch(encoded).readings()) == readings
    assert json.loads(text) == _as_dicts(list(_uplink_c.decode_batch(encoded).readings()))

    count = len(readings)
    print(machine_line())
    report(
        f"uplink encode {count} readings",
        {
            "fastcodec cython": seconds_per_call(lambda: _uplink_c.encode_batch(batch)),
            "fastcodec python": seconds_per_call(lambda: _uplink_py.encode_batch(batch)),
            "json.dumps": seconds_per_call(lambda: json.dumps(rows)),
        },
        baseline="json.dumps",
        items=count,
        item_name="reading",
    )
    decode_timings = {
        "fastcodec cython": seconds_per_call(lambda: _uplink_c.decode_batch(encoded)),
        "fastcodec python": seconds_per_call(lambda: _uplink_py.decode_batch(encoded)),
        "json.loads": seconds_per_call(lambda: json.loads(text)),
    }
    report(
        f"uplink decode {count} readings",
        decode_timings,
        baseline="json.loads",
        items=count,
        item_name="reading",
    )
    print(
        f"uplink size: {len(encoded) / count:.1f} B/reading (ours) vs "
        f"{len(text.encode()) / count:.1f} B/reading (JSON), "
        f"{len(text.encode()) / len(encoded):.1f}x smaller"
    )
    rate = count / decode_timings["fastcodec cython"]
    print(f"uplink decode goal >= 2 M readings/s: {rate / GOAL_READINGS_PER_S:.1f}x of the goal")
