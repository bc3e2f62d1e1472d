"""The uplink batch data model, shared by both twins of `fastcodec.uplink`.

A `Batch` is columnar: per-batch dictionaries (meter serials, OBIS codes,
units) and one `array.array` column per reading attribute, so that the agent
can build it and the cloud can consume it without one Python object per
reading. `Batch.readings()` gives the row view for the paths where speed does
not matter. The JSON debugging form lives here too: it is about the data
model, not the binary layout (docs/uplink-format.md describes both).
"""

from __future__ import annotations

import enum
import json
import math
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from fastcodec._obis_types import Obis
from fastcodec.exceptions import EncodeError, FrameError
from fastcodec.obis import format_obis, parse_obis

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_DICTIONARY_ENTRIES",
    "MAX_GATEWAY_ID_BYTES",
    "MAX_READINGS_PER_BATCH",
    "MAX_SERIAL_BYTES",
    "MAX_UNIT_BYTES",
    "Batch",
    "QualityFlag",
    "Reading",
    "batch_from_json",
    "batch_to_json",
]

MAGIC = b"VSUB"
FORMAT_VERSION = 1
MAX_READINGS_PER_BATCH = 1_000_000
MAX_DICTIONARY_ENTRIES = 65_535
MAX_GATEWAY_ID_BYTES = 64
MAX_SERIAL_BYTES = 64
MAX_UNIT_BYTES = 16

_JSON_FORMAT_NAME = "voltstack.uplink"


class QualityFlag(enum.IntFlag):
    """Quality bits of a reading (uint16). Bits 8..15 are reserved: encoders
    of v1 leave them 0, decoders keep whatever they find (forward compatible)."""

    ESTIMATED = 0x0001  # substituted or interpolated, not measured
    CLOCK_INVALID = 0x0002  # the meter says its clock is not trustworthy
    OVERFLOW = 0x0004  # the register wrapped or overflowed since the last reading
    AGENT_TIMESTAMP = 0x0008  # time taken by the agent, not by the meter
    REPLAYED = 0x0010  # sent from the store-and-forward buffer after an outage
    METER_ERROR = 0x0020  # the meter flagged an error or alarm with the value
    CLOCK_ADJUSTED = 0x0040  # the meter clock was set or shifted (DST) in the period
    INCOMPLETE_PERIOD = 0x0080  # a profile interval cut short by a power failure


class Reading(NamedTuple):
    """One reading, the row view of a batch."""

    meter: str
    obis: Obis
    timestamp_ms: int
    value: float
    unit: str
    quality: int


def _column(name: str, typecode: str, column: Any) -> array[Any]:
    if isinstance(column, array) and column.typecode == typecode:
        return column
    try:
        return array(typecode, column)
    except (TypeError, OverflowError, ValueError) as exc:
        raise EncodeError(f"batch column {name}: {exc}") from exc


@dataclass(eq=False)
class Batch:
    """One uplink batch: header, dictionaries and parallel reading columns.

    Reading `i` is meter `meters[meter_index[i]]`, OBIS code
    `obis_codes[obis_index[i]]`, time `timestamps_ms[i]` (ms since the Unix
    epoch, UTC), value `values[i]` (float64), unit `units[unit_index[i]]` and
    quality bits `quality[i]` (`QualityFlag`). Columns given as other
    sequences are converted to `array.array` ('H' indices and quality, 'q'
    timestamps, 'd' values); arrays of the right type are kept as they are.
    Two batches are equal when every field is, values compared bit for bit
    (so NaN equals the same NaN).
    """

    gateway_id: str
    sequence: int
    created_at_ms: int
    meters: Sequence[str]
    obis_codes: Sequence[Obis]
    units: Sequence[str]
    meter_index: array[int]
    obis_index: array[int]
    unit_index: array[int]
    timestamps_ms: array[int]
    values: array[float]
    quality: array[int]

    def __post_init__(self) -> None:
        self.meters = tuple(self.meters)
        self.obis_codes = tuple(
            code if type(code) is Obis else Obis(*code) for code in self.obis_codes
        )
        self.units = tuple(self.units)
        self.meter_index = _column("meter_index", "H", self.meter_index)
        self.obis_index = _column("obis_index", "H", self.obis_index)
        self.unit_index = _column("unit_index", "H", self.unit_index)
        self.timestamps_ms = _column("timestamps_ms", "q", self.timestamps_ms)
        self.values = _column("values", "d", self.values)
        self.quality = _column("quality", "H", self.quality)

    def __len__(self) -> int:
        return len(self.values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Batch):
            return NotImplemented
        return (
            self.gateway_id == other.gateway_id
            and self.sequence == other.sequence
            and self.created_at_ms == other.created_at_ms
            and self.meters == other.meters
            and self.obis_codes == other.obis_codes
            and self.units == other.units
            and self.meter_index == other.meter_index
            and self.obis_index == other.obis_index
            and self.unit_index == other.unit_index
            and self.timestamps_ms == other.timestamps_ms
            and self.values.tobytes() == other.values.tobytes()
            and self.quality == other.quality
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def readings(self) -> Iterator[Reading]:
        """The readings one by one (not for hot paths: one object per reading).

        Raises:
            IndexError: a column holds an index outside its dictionary (only
                possible for a batch built by hand; decoded batches are checked).
        """
        meters, codes, units = self.meters, self.obis_codes, self.units
        for meter, code, timestamp_ms, value, unit, quality in zip(
            self.meter_index,
            self.obis_index,
            self.timestamps_ms,
            self.values,
            self.unit_index,
            self.quality,
            strict=True,
        ):
            yield Reading(meters[meter], codes[code], timestamp_ms, value, units[unit], quality)

    @classmethod
    def from_readings(
        cls, gateway_id: str, sequence: int, created_at_ms: int, readings: Iterable[Reading]
    ) -> Batch:
        """Build a batch from rows, the dictionaries in order of first appearance.

        Args:
            gateway_id: the publishing gateway.
            sequence: the gateway's batch sequence number (uint64).
            created_at_ms: when the batch was made, ms since the Unix epoch.
            readings: `Reading`s or 6-tuples in the same order.

        Raises:
            EncodeError: a value does not fit its column (e.g. quality > 0xFFFF).
        """
        meter_ids: dict[str, int] = {}
        obis_ids: dict[Obis, int] = {}
        unit_ids: dict[str, int] = {}
        meter_index: list[int] = []
        obis_index: list[int] = []
        unit_index: list[int] = []
        timestamps_ms: list[int] = []
        values: list[float] = []
        quality: list[int] = []
        for meter, code, timestamp_ms, value, unit, flags in readings:
            meter_index.append(meter_ids.setdefault(meter, len(meter_ids)))
            key = code if type(code) is Obis else Obis(*code)
            obis_index.append(obis_ids.setdefault(key, len(obis_ids)))
            unit_index.append(unit_ids.setdefault(unit, len(unit_ids)))
            timestamps_ms.append(timestamp_ms)
            values.append(value)
            quality.append(flags)
        return cls(
            gateway_id,
            sequence,
            created_at_ms,
            tuple(meter_ids),
            tuple(obis_ids),
            tuple(unit_ids),
            _column("meter_index", "H", meter_index),
            _column("obis_index", "H", obis_index),
            _column("unit_index", "H", unit_index),
            _column("timestamps_ms", "q", timestamps_ms),
            _column("values", "d", values),
            _column("quality", "H", quality),
        )


# --- JSON debugging form ------------------------------------------------------


def _json_value(value: float) -> float | str:
    # JSON has no NaN or infinities: they travel as strings (their payload bits are lost).
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def batch_to_json(batch: Batch) -> str:
    """The batch as readable JSON, one object per reading (for debugging).

    Floats are written so they read back exactly; NaN and infinities are the
    strings "NaN", "Infinity" and "-Infinity".

    Raises:
        IndexError: a column holds an index outside its dictionary.
    """
    document = {
        "format": _JSON_FORMAT_NAME,
        "version": FORMAT_VERSION,
        "gateway_id": batch.gateway_id,
        "sequence": batch.sequence,
        "created_at_ms": batch.created_at_ms,
        "readings": [
            {
                "meter": reading.meter,
                "obis": format_obis(reading.obis),
                "timestamp_ms": reading.timestamp_ms,
                "value": _json_value(reading.value),
                "unit": reading.unit,
                "quality": reading.quality,
            }
            for reading in batch.readings()
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=1)


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise FrameError(f"uplink batch JSON: {reason}")


def _json_int(document: dict[str, Any], key: str, low: int, high: int) -> int:
    value = document.get(key)
    _require(
        type(value) is int and low <= value <= high,
        f"{key!r} must be an integer in {low}..{high}",
    )
    return int(value)  # type: ignore[arg-type]


def _json_str(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    _require(type(value) is str, f"{key!r} must be a string")
    return str(value)


def _json_float(document: dict[str, Any]) -> float:
    value = document.get("value")
    specials = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
    if type(value) is str and value in specials:
        return specials[value]
    _require(type(value) in (int, float), "'value' must be a number, 'NaN' or '±Infinity'")
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError as exc:
        raise FrameError("uplink batch JSON: 'value' does not fit a float64") from exc


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def batch_from_json(text: str) -> Batch:
    """Read the JSON form back into a batch (dictionaries in order of first use).

    Args:
        text: what `batch_to_json` wrote, or the same by hand.

    Returns:
        The batch. Its readings equal the original's; its dictionaries may
        differ when the original had unused or repeated entries.

    Raises:
        FrameError: not JSON, not this form, or a field of the wrong type or
            out of range (offset = character position for JSON syntax errors).
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FrameError(f"uplink batch JSON: {exc.msg}", exc.pos) from exc
    except RecursionError as exc:
        raise FrameError("uplink batch JSON: nested too deeply") from exc
    _require(isinstance(document, dict), "the top level must be an object")
    _require(document.get("format") == _JSON_FORMAT_NAME, f"'format' must be {_JSON_FORMAT_NAME!r}")
    _require(document.get("version") == FORMAT_VERSION, f"'version' must be {FORMAT_VERSION}")
    rows = document.get("readings")
    _require(isinstance(rows, list), "'readings' must be a list")
    readings = []
    for row in rows:
        _require(isinstance(row, dict), "each reading must be an object")
        quality = _json_int(row, "quality", 0, 0xFFFF)
        readings.append(
            Reading(
                _json_str(row, "meter"),
                parse_obis(_json_str(row, "obis")),
                _json_int(row, "timestamp_ms", _INT64_MIN, _INT64_MAX),
                _json_float(row),
                _json_str(row, "unit"),
                quality,
            )
        )
    return Batch.from_readings(
        _json_str(document, "gateway_id"),
        _json_int(document, "sequence", 0, 2**64 - 1),
        _json_int(document, "created_at_ms", _INT64_MIN, _INT64_MAX),
        readings,
    )
