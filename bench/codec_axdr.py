"""A-XDR capture-buffer decoding: fastcodec compiled and pure beside gurux-dlms.

Input: a profile-generic buffer of 24 rows {clock as octet-string[12],
status unsigned, 4 x double-long-unsigned energy registers}: one day of
hourly load profile, 914 octets of A-XDR. Ours goes
straight to columns (`decode_capture_buffer`, clocks as aware datetimes); the
peer is gurux-dlms `_GXCommon.getData` on the same octets (rows of GXStructure,
clocks left as raw octets, so it does less work than we do). Both results are
checked equal before timing.
"""

from __future__ import annotations

import datetime as dt

from bench._timing import machine_line, report, seconds_per_call
from fastcodec import _axdr_c, _axdr_py
from fastcodec._axdr_types import CosemDateTime, Tag, Typed

ROWS = 24
GOAL_US = 20.0


def build_buffer() -> bytes:
    start = dt.datetime(2024, 3, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    rows = []
    for row in range(ROWS):
        clock = CosemDateTime.from_datetime(start + dt.timedelta(hours=row))
        rows.append(
            (
                Typed(Tag.OCTET_STRING, clock),
                Typed(Tag.UNSIGNED, 0x08 if row == 5 else 0),
                *(
                    Typed(Tag.DOUBLE_LONG_UNSIGNED, 1_000_000 * register + 431 * row)
                    for register in range(1, 5)
                ),
            )
        )
    return _axdr_py.encode(rows)


def run() -> None:
    from gurux_dlms import GXByteBuffer, GXDLMSSettings
    from gurux_dlms.internal._GXCommon import _GXCommon
    from gurux_dlms.internal._GXDataInfo import _GXDataInfo

    buffer = build_buffer()
    settings = GXDLMSSettings(False, None)

    def gurux_decode() -> object:
        return _GXCommon.getData(settings, GXByteBuffer(buffer), _GXDataInfo())

    ours = _axdr_c.decode_capture_buffer(buffer)
    assert _axdr_py.decode_capture_buffer(buffer) == ours
    theirs = gurux_decode()
    assert isinstance(theirs, list) and len(theirs) == ours.row_count
    for row_index, row in enumerate(theirs):
        clock_octets = bytes(row[0])
        gurux_clock = _GXCommon.getData(
            settings, GXByteBuffer(b"\x19" + clock_octets), _GXDataInfo()
        ).value
        assert ours.columns[0][row_index] == gurux_clock
        assert [int(cell) for cell in row[1:]] == [column[row_index] for column in ours.columns[1:]]

    print(machine_line())
    case = f"A-XDR capture buffer {ROWS} rows ({len(buffer)} B)"
    timings = {
        "fastcodec cython": seconds_per_call(lambda: _axdr_c.decode_capture_buffer(buffer)),
        "fastcodec python": seconds_per_call(lambda: _axdr_py.decode_capture_buffer(buffer)),
        "gurux-dlms": seconds_per_call(gurux_decode),
    }
    report(case, timings, baseline="gurux-dlms", items=ROWS, item_name="row")
    generic = {
        "fastcodec cython": seconds_per_call(lambda: _axdr_c.decode(buffer)),
        "fastcodec python": seconds_per_call(lambda: _axdr_py.decode(buffer)),
        "gurux-dlms": timings["gurux-dlms"],
    }
    report(
        f"A-XDR decode() rows {ROWS} ({len(buffer)} B)",
        generic,
        baseline="gurux-dlms",
        items=ROWS,
        item_name="row",
    )
    compiled_us = timings["fastcodec cython"] * 1e6
    print(f"{case:<36} goal ≤ {GOAL_US:.0f} µs per frame's data: {compiled_us:.2f} µs")
