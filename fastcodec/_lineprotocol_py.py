# InfluxDB line protocol encoder: the pure-Python twin.
#
# Spec: InfluxDB v1 line protocol reference
# (https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/):
#
#   measurement[,tag_key=tag_value...] field_key=field_value[,...] [timestamp]
#
# Escaping: the measurement escapes comma and space; tag keys, tag values and
# field keys escape comma, equals sign and space; string field values are in
# double quotes with backslash and double quote escaped. Floats are written
# with Python's shortest round-trip repr ("1.5", "1e+16"; a trailing ".0" is
# dropped as influxdb-client does: "2" is a float in line protocol), integers
# with the "i" suffix, booleans as true/false, timestamps in nanoseconds.
#
# What line protocol cannot carry is refused with EncodeError rather than
# written so that InfluxDB reads something else: line breaks in a
# measurement, tag or field key; an empty measurement, key or tag value; a
# measurement starting with "#" (a comment line); the key "time"; a name or
# tag value ending in a backslash (InfluxDB 1.x reads "\," or "\ " at the end
# as an escaped separator; a backslash anywhere else is kept literally, which
# tests/integration/test_lineprotocol_influx.py checks on a real influxd);
# NaN and infinities (InfluxDB has no such floats); text that is not valid
# Unicode (lone surrogates); integers and timestamps outside int64.
#
# Tags are written sorted by key and fields sorted by key (InfluxDB's
# recommendation; influxdb-client does the same), so equal points give equal
# lines.
#
# The readings schema (docs/timeseries-schema.md): measurement "reading",
# tags meter and obis (the identity of a series: same meter, OBIS code and
# timestamp = same point, so rewriting a batch changes nothing), fields
# quality (integer flags), unit (string) and value (float), time in ns.
# `encode_readings` takes the columnar batch the uplink decoder produces and
# escapes each dictionary entry once per batch, not once per reading.
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fastcodec.exceptions import EncodeError
from fastcodec.obis import format_obis

if TYPE_CHECKING:
    from fastcodec._uplink_types import Batch

__all__ = [
    "DEFAULT_MEASUREMENT",
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

DEFAULT_MEASUREMENT = "reading"
# InfluxDB's time range: int64 nanoseconds, minus the two values it reserves.
MIN_TIMESTAMP_NS = -(2**63) + 2
MAX_TIMESTAMP_NS = 2**63 - 2
MIN_TIMESTAMP_MS = -(MAX_TIMESTAMP_NS // 1_000_000)
MAX_TIMESTAMP_MS = MAX_TIMESTAMP_NS // 1_000_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _checked_name(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise EncodeError(f"{what} must be str, not {type(text).__name__}")
    if not text:
        raise EncodeError(f"{what} must not be empty")
    if "\n" in text or "\r" in text:
        raise EncodeError(f"{what} {text!r} contains a line break")
    if text.endswith("\\"):
        raise EncodeError(
            f"{what} {text!r} ends with a backslash, which InfluxDB would read as an escape"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{what} {text!r} is not valid Unicode") from exc
    return text


def escape_measurement(name: str) -> str:
    """Escape a measurement name (comma and space).

    Raises:
        EncodeError: empty, a line break, a trailing backslash, a leading "#",
            or not valid Unicode.
    """
    text = _checked_name(name, "measurement")
    if text.startswith("#"):
        raise EncodeError(f"measurement {text!r} starts with '#', which marks a comment line")
    return text.replace(",", "\\,").replace(" ", "\\ ")


def escape_tag(text: str, what: str = "tag") -> str:
    """Escape a tag key or tag value (comma, equals sign and space).

    Raises:
        EncodeError: empty, a line break, a trailing backslash, or not valid
            Unicode; `what` names the offending item in the message.
    """
    return _checked_name(text, what).replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_field_key(key: str) -> str:
    """Escape a field key (comma, equals sign and space); "time" is refused.

    Raises:
        EncodeError: as `escape_tag`, or the key is "time".
    """
    if key == "time":
        raise EncodeError("'time' cannot be a field key")
    return escape_tag(key, "field key")


def escape_string_field(value: str) -> str:
    """A string field value, quoted, with backslash and double quote escaped.

    Raises:
        EncodeError: not valid Unicode (a lone surrogate).
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"string field {value!r} is not valid Unicode") from exc
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _float_text(value: float) -> str:
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def _field_value(key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise EncodeError(f"field {key!r}: integer {value} does not fit int64")
        return f"{int(value)}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EncodeError(f"field {key!r}: {value!r} cannot be stored (finite floats only)")
        return _float_text(float(value))
    if isinstance(value, str):
        return escape_string_field(value)
    raise EncodeError(f"field {key!r}: {type(value).__name__} is not a line protocol type")


def _timestamp_text(timestamp_ns: object) -> str:
    if timestamp_ns is None:
        return ""
    if type(timestamp_ns) is not int or not MIN_TIMESTAMP_NS <= timestamp_ns <= MAX_TIMESTAMP_NS:
        raise EncodeError(f"timestamp {timestamp_ns!r} ns is outside InfluxDB's time range")
    return f" {timestamp_ns}"


def encode_point(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, float | int | bool | str],
    timestamp_ns: int | None = None,
) -> str:
    """One point as a line of line protocol (no trailing newline).

    Args:
        measurement: the measurement name.
        tags: tag keys and values (str); written sorted by key.
        fields: at least one field: float, int (written with "i"), bool or
            str; written sorted by key.
        timestamp_ns: nanoseconds since the Unix epoch, or None to let the
            server stamp the point.

    Returns:
        The line, e.g. 'reading,meter=M1,obis=1-0:1.8.0 value=1.5 1700000000000000000'.

    Raises:
        EncodeError: no fields, or anything line protocol cannot carry (see
            the module header).
    """
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        parts.append(f",{escape_tag(key, 'tag key')}={escape_tag(tags[key], 'tag value')}")
    if not fields:
        raise EncodeError("a point needs at least one field")
    separator = " "
    for key in sorted(fields):
        parts.append(f"{separator}{escape_field_key(key)}={_field_value(key, fields[key])}")
        separator = ","
    parts.append(_timestamp_text(timestamp_ns))
    return "".join(parts)


def _check_columns(batch: Batch) -> int:
    count = len(batch.values)
    for name in ("meter_index", "obis_index", "unit_index", "timestamps_ms", "quality"):
        if len(getattr(batch, name)) != count:
            raise EncodeError(f"batch column {name} has a different length from values")
    for name, entries in (
        ("meter_index", len(batch.meters)),
        ("obis_index", len(batch.obis_codes)),
        ("unit_index", len(batch.units)),
    ):
        column = getattr(batch, name)
        if count and max(column) >= entries:
            raise EncodeError(f"batch column {name} points outside its {entries}-entry dictionary")
    return count


def encode_readings(
    batch: Batch, *, measurement: str = DEFAULT_MEASUREMENT, skip_non_finite: bool = False
) -> str:
    """A batch of readings as line protocol, one line per reading, each ending in "\\n".

    The schema (docs/timeseries-schema.md): `measurement,meter=…,obis=…
    quality=…i,unit="…",value=… <ns>`, with obis in canonical text form.

    Args:
        batch: the columnar batch (`fastcodec.uplink.Batch`, e.g. as decoded).
        measurement: the measurement name.
        skip_non_finite: leave out readings whose value is NaN or infinite
            instead of refusing the batch.

    Returns:
        The lines, ready for InfluxDB's /write endpoint with precision=ns.

    Raises:
        EncodeError: a serial or measurement line protocol cannot carry, a
            non-finite value (unless skipped), a timestamp outside InfluxDB's
            range, or inconsistent columns.
    """
    prefix = escape_measurement(measurement)
    count = _check_columns(batch)
    meter_tags = [f"{prefix},meter={escape_tag(m, 'meter serial')}" for m in batch.meters]
    obis_tags = [f",obis={format_obis(code)} quality=" for code in batch.obis_codes]
    unit_fields = [f"i,unit={escape_string_field(unit)},value=" for unit in batch.units]
    meter_index, obis_index, unit_index = batch.meter_index, batch.obis_index, batch.unit_index
    timestamps_ms, values, quality = batch.timestamps_ms, batch.values, batch.quality
    lines = []
    isfinite = math.isfinite
    for i in range(count):
        value = values[i]
        if not isfinite(value):
            if skip_non_finite:
                continue
            raise EncodeError(f"reading {i}: value {value!r} cannot be stored (finite floats only)")
        timestamp_ms = timestamps_ms[i]
        if not MIN_TIMESTAMP_MS <= timestamp_ms <= MAX_TIMESTAMP_MS:
            raise EncodeError(
                f"reading {i}: timestamp {timestamp_ms} ms is outside InfluxDB's range"
            )
        text = repr(value)
        if text.endswith(".0"):
            text = text[:-2]
        lines.append(
            f"{meter_tags[meter_index[i]]}{obis_tags[obis_index[i]]}{quality[i]}"
            f"{unit_fields[unit_index[i]]}{text} {timestamp_ms * 1_000_000}\n"
        )
    return "".join(lines)
