"""InfluxDB line protocol encoder (selector: compiled or pure twin).

See `fastcodec._lineprotocol_py` for the escaping rules and
docs/timeseries-schema.md for the readings schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastcodec import _select

if TYPE_CHECKING:
    from fastcodec._lineprotocol_py import (
        DEFAULT_MEASUREMENT,
        MAX_TIMESTAMP_MS,
        MAX_TIMESTAMP_NS,
        MIN_TIMESTAMP_MS,
        MIN_TIMESTAMP_NS,
        encode_point,
        encode_readings,
        escape_field_key,
        escape_measurement,
        escape_string_field,
        escape_tag,
    )

    IMPLEMENTATION: str
else:
    _impl, IMPLEMENTATION = _select.load("lineprotocol")
    DEFAULT_MEASUREMENT = _impl.DEFAULT_MEASUREMENT
    MAX_TIMESTAMP_MS = _impl.MAX_TIMESTAMP_MS
    MAX_TIMESTAMP_NS = _impl.MAX_TIMESTAMP_NS
    MIN_TIMESTAMP_MS = _impl.MIN_TIMESTAMP_MS
    MIN_TIMESTAMP_NS = _impl.MIN_TIMESTAMP_NS
    encode_point = _impl.encode_point
    encode_readings = _impl.encode_readings
    escape_field_key = _impl.escape_field_key
    escape_measurement = _impl.escape_measurement
    escape_string_field = _impl.escape_string_field
    escape_tag = _impl.escape_tag

__all__ = [
    "DEFAULT_MEASUREMENT",
    "IMPLEMENTATION",
    "MAX_TIMESTAMP_MS",
    "MAX_TIMESTAMP_NS",
    "MIN_TIMESTAMP_MS",
    "MIN_TIMESTAMP_NS",
    "encode_point",
    "encode_readings",
    "escape_field_key",
    "escape_measurement",
    "escape_string_field",
    "escape_tag",
]
