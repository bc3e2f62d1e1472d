# Uplink batch format v1 (gateway → cloud, MQTT vs/v1/{gateway_id}/readings):
# the pure-Python twin.
#
# Spec: docs/uplink-format.md (this module and `_uplink_c.pyx` implement it;
# the document is the contract for third-party decoders). In short, all
# integers little-endian:
#
#   "VSUB" | version u8 = 1 | flags u8 | sequence u64 | created_at_ms i64 |
#   reading_count u32 | gateway id (u8 length + UTF-8) |
#   meters: u16 count, then (u8 length + UTF-8) each |
#   OBIS codes: u16 count, then 6 bytes A..F each |
#   units: u16 count, then (u8 length + UTF-8) each |
#   columns of reading_count entries: meter index, OBIS index, unit index
#   (1 byte each when its dictionary has ≤ 256 entries, else 2), quality u16,
#   value f64, then timestamps as zigzag LEB128 varints of the difference to
#   the previous timestamp (the first to created_at_ms), modulo 2^64 |
#   CRC-32 (ISO-HDLC, zlib.crc32) of everything before it, u32.
#
# Strategy: columnar on both sides. The encoder validates the batch, then
# writes each column with array.tobytes(); the decoder checks magic, version,
# CRC and flags first, bounds every count by the bytes that remain before
# allocating anything, then reads each column with array.frombytes(). Only the
# timestamp varints need a per-reading loop.
#
# Invariants: any bytes give a Batch or a CodecError (ChecksumError for a CRC
# mismatch, FrameError otherwise, offset = first offending byte); memory is
# bounded by the input length; decode(encode(b)) == b for every valid batch
# (values bit for bit, NaN payloads included); a decoded batch's indices are
# all inside their dictionaries.
from __future__ import annotations

import sys
import zlib
from array import array
from typing import Any

from fastcodec._obis_types import Obis
from fastcodec._uplink_types import (
    FORMAT_VERSION,
    MAGIC,
    MAX_DICTIONARY_ENTRIES,
    MAX_GATEWAY_ID_BYTES,
    MAX_READINGS_PER_BATCH,
    MAX_SERIAL_BYTES,
    MAX_UNIT_BYTES,
    Batch,
    QualityFlag,
    Reading,
    _column,
    batch_from_json,
    batch_to_json,
)
from fastcodec.exceptions import ChecksumError, EncodeError, FrameError

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
    "decode_batch",
    "encode_batch",
]

# Header flag bits 0..3 change how the batch must be read: a v1 decoder
# refuses a batch with any of them set. Bits 4..7 are informational: ignored.
MUST_UNDERSTAND_FLAGS = 0x0F
_HEADER_BYTES = 26  # magic .. reading_count
_CRC_BYTES = 4
# Smallest batch: header, a 1-byte gateway id, three empty dictionaries, CRC.
_MIN_BATCH_BYTES = _HEADER_BYTES + 2 + 2 + 2 + 2 + _CRC_BYTES
_UINT64_MASK = (1 << 64) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_LITTLE_ENDIAN = sys.byteorder == "little"


# --- encoding -------------------------------------------------------------------


def _utf8(text: object, what: str, min_bytes: int, max_bytes: int) -> bytes:
    if not isinstance(text, str):
        raise EncodeError(f"{what} must be str, not {type(text).__name__}")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{what} {text!r} is not encodable as UTF-8") from exc
    if not min_bytes <= len(raw) <= max_bytes:
        raise EncodeError(
            f"{what} {text!r} is {len(raw)} UTF-8 bytes, not {min_bytes}..{max_bytes}"
        )
    return raw


def _int_in(value: object, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise EncodeError(f"{what} must be an int in {low}..{high}, not {value!r}")
    return value


def _le(column: array[Any]) -> bytes:
    if _LITTLE_ENDIAN:
        return column.tobytes()
    swapped = array(column.typecode, column)
    swapped.byteswap()
    return swapped.tobytes()


def _index_column(column: array[int], entries: int, what: str) -> bytes:
    if column and max(column) >= entries:
        raise EncodeError(f"{what} index {max(column)} is outside its {entries}-entry dictionary")
    if entries <= 256:
        return array("B", column).tobytes()
    return _le(column)


def _dictionary_count(entries: int, what: str) -> bytes:
    if entries > MAX_DICTIONARY_ENTRIES:
        raise EncodeError(f"{entries} {what} in one batch: at most {MAX_DICTIONARY_ENTRIES}")
    return entries.to_bytes(2, "little")


def _zigzag_varint(value: int, out: bytearray) -> None:
    signed = value - (1 << 64) if value >> 63 else value
    encoded = ((signed << 1) ^ (signed >> 63)) & _UINT64_MASK
    while encoded >= 0x80:
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7
    out.append(encoded)


def encode_batch(batch: Batch) -> bytes:
    """Encode a batch in uplink format v1.

    Args:
        batch: the batch; its columns must all have the same length.

    Returns:
        The payload to publish, CRC included.

    Raises:
        EncodeError: a field out of range or too long, columns of different
            lengths, an index outside its dictionary, too many readings or
            dictionary entries.
    """
    count = len(batch.values)
    if count > MAX_READINGS_PER_BATCH:
        raise EncodeError(f"{count} readings in one batch: at most {MAX_READINGS_PER_BATCH}")
    for name in ("meter_index", "obis_index", "unit_index", "timestamps_ms", "quality"):
        if len(getattr(batch, name)) != count:
            raise EncodeError(
                f"batch column {name} has {len(getattr(batch, name))} entries, values has {count}"
            )
    out = bytearray(MAGIC)
    out.append(FORMAT_VERSION)
    out.append(0)
    out += _int_in(batch.sequence, "sequence", 0, _UINT64_MASK).to_bytes(8, "little")
    created_at_ms = _int_in(batch.created_at_ms, "created_at_ms", _INT64_MIN, _INT64_MAX)
    out += created_at_ms.to_bytes(8, "little", signed=True)
    out += count.to_bytes(4, "little")
    gateway_id = _utf8(batch.gateway_id, "gateway id", 1, MAX_GATEWAY_ID_BYTES)
    out.append(len(gateway_id))
    out += gateway_id
    out += _dictionary_count(len(batch.meters), "meters")
    for meter in batch.meters:
        raw = _utf8(meter, "meter serial", 1, MAX_SERIAL_BYTES)
        out.append(len(raw))
        out += raw
    out += _dictionary_count(len(batch.obis_codes), "OBIS codes")
    for code in batch.obis_codes:
        if len(code) != 6 or not all(type(g) is int and 0 <= g <= 255 for g in code):
            raise EncodeError(f"OBIS code {code!r} is not six value groups 0..255")
        out += bytes(code)
    out += _dictionary_count(len(batch.units), "units")
    for unit in batch.units:
        raw = _utf8(unit, "unit", 0, MAX_UNIT_BYTES)
        out.append(len(raw))
        out += raw
    out += _index_column(_column("meter_index", "H", batch.meter_index), len(batch.meters), "meter")
    out += _index_column(
        _column("obis_index", "H", batch.obis_index), len(batch.obis_codes), "OBIS"
    )
    out += _index_column(_column("unit_index", "H", batch.unit_index), len(batch.units), "unit")
    out += _le(_column("quality", "H", batch.quality))
    out += _le(_column("values", "d", batch.values))
    previous = created_at_ms
    for timestamp_ms in _column("timestamps_ms", "q", batch.timestamps_ms):
        _zigzag_varint((timestamp_ms - previous) & _UINT64_MASK, out)
        previous = timestamp_ms
    out += zlib.crc32(out).to_bytes(4, "little")
    return bytes(out)


# --- decoding -------------------------------------------------------------------


class _Reader:
    """A cursor over the payload (CRC excluded) that refuses to read past its end."""

    def __init__(self, data: bytes, end: int, position: int) -> None:
        self.data = data
        self.end = end
        self.position = position

    def take(self, size: int, what: str) -> bytes:
        if self.end - self.position < size:
            raise FrameError(f"uplink batch truncated in {what}", self.position)
        start = self.position
        self.position += size
        return self.data[start : self.position]

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "little")

    def text(self, what: str, min_bytes: int, max_bytes: int) -> str:
        start = self.position
        length = self.uint(1, what)
        if not min_bytes <= length <= max_bytes:
            raise FrameError(f"{what} length {length} is not {min_bytes}..{max_bytes}", start)
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(f"{what} is not valid UTF-8", start + 1 + exc.start) from exc

    def dictionary_count(self, entry_min_bytes: int, what: str) -> int:
        start = self.position
        entries = self.uint(2, f"{what} count")
        if entries * entry_min_bytes > self.end - self.position:
            raise FrameError(f"{entries} {what} cannot fit in the bytes that remain", start)
        return entries


def _check_envelope(data: bytes) -> None:
    """Magic, version, CRC and flags: everything before the fields are read."""
    if len(data) < 5:
        raise FrameError("uplink batch truncated: shorter than its magic and version", len(data))
    if data[:4] != MAGIC:
        raise FrameError("not an uplink batch: bad magic (expected 'VSUB')", 0)
    if data[4] != FORMAT_VERSION:
        raise FrameError(f"unsupported uplink batch version {data[4]} (this decoder reads 1)", 4)
    if len(data) < _MIN_BATCH_BYTES:
        raise FrameError(f"uplink batch truncated: {len(data)} bytes", len(data))
    computed = zlib.crc32(memoryview(data)[: len(data) - _CRC_BYTES])
    carried = int.from_bytes(data[len(data) - _CRC_BYTES :], "little")
    if computed != carried:
        raise ChecksumError("uplink batch CRC-32", computed, carried, len(data) - _CRC_BYTES)
    if data[5] & MUST_UNDERSTAND_FLAGS:
        raise FrameError(f"uplink batch flags 0x{data[5]:02X} need a newer decoder", 5)


def _read_index_column(reader: _Reader, count: int, entries: int, what: str) -> array[int]:
    width = 1 if entries <= 256 else 2
    start = reader.position
    raw = reader.take(count * width, f"{what} index column")
    if width == 1:
        column = array("H", array("B", raw))
    else:
        column = array("H")
        column.frombytes(raw)
        if not _LITTLE_ENDIAN:
            column.byteswap()
    if count and max(column) >= entries:
        first = next(i for i, index in enumerate(column) if index >= entries)
        raise FrameError(
            f"{what} index {column[first]} is outside its {entries}-entry dictionary",
            start + first * width,
        )
    return column


def _read_fixed_column(reader: _Reader, typecode: str, count: int, what: str) -> array[Any]:
    column = array(typecode)
    column.frombytes(reader.take(count * column.itemsize, what))
    if not _LITTLE_ENDIAN:
        column.byteswap()
    return column


def _read_timestamps(reader: _Reader, count: int, created_at_ms: int) -> array[int]:
    data, position, end = reader.data, reader.position, reader.end
    timestamps: list[int] = []
    previous = created_at_ms
    for _ in range(count):
        start = position
        encoded = 0
        shift = 0
        while True:
            if position >= end:
                raise FrameError("uplink batch truncated in the timestamp column", position)
            byte = data[position]
            position += 1
            if shift == 63 and byte > 1:
                raise FrameError("timestamp varint does not fit 64 bits", start)
            encoded |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        delta = (encoded >> 1) ^ -(encoded & 1)
        previous = ((previous + delta + (1 << 63)) & _UINT64_MASK) - (1 << 63)
        timestamps.append(previous)
    reader.position = position
    return array("q", timestamps)


def decode_batch(data: bytes | bytearray | memoryview) -> Batch:
    """Decode an uplink batch (format v1).

    Args:
        data: the MQTT payload.

    Returns:
        The batch; every index in it is inside its dictionary.

    Raises:
        ChecksumError: the CRC-32 does not match (a corrupted payload).
        FrameError: not a v1 batch, truncated, a count or length that the
            remaining bytes cannot hold, a string that is not UTF-8, an index
            outside its dictionary, or bytes left over.
    """
    data = bytes(memoryview(data))
    _check_envelope(data)
    reader = _Reader(data, len(data) - _CRC_BYTES, 6)
    sequence = reader.uint(8, "sequence")
    created_at_ms = int.from_bytes(reader.take(8, "created_at_ms"), "little", signed=True)
    count_offset = reader.position
    count = reader.uint(4, "reading count")
    if count > MAX_READINGS_PER_BATCH:
        raise FrameError(f"{count} readings: at most {MAX_READINGS_PER_BATCH}", count_offset)
    gateway_id = reader.text("gateway id", 1, MAX_GATEWAY_ID_BYTES)
    meters = [
        reader.text("meter serial", 1, MAX_SERIAL_BYTES)
        for _ in range(reader.dictionary_count(2, "meters"))
    ]
    obis_codes = []
    for _ in range(reader.dictionary_count(6, "OBIS codes")):
        raw = reader.take(6, "OBIS code")
        obis_codes.append(Obis(raw[0], raw[1], raw[2], raw[3], raw[4], raw[5]))
    units = [
        reader.text("unit", 0, MAX_UNIT_BYTES) for _ in range(reader.dictionary_count(1, "units"))
    ]
    widths = sum(1 if len(entries) <= 256 else 2 for entries in (meters, obis_codes, units))
    # Every reading needs its fixed columns plus at least one timestamp byte.
    if count * (widths + 2 + 8 + 1) > reader.end - reader.position:
        raise FrameError(f"{count} readings cannot fit in the bytes that remain", count_offset)
    meter_index = _read_index_column(reader, count, len(meters), "meter")
    obis_index = _read_index_column(reader, count, len(obis_codes), "OBIS")
    unit_index = _read_index_column(reader, count, len(units), "unit")
    quality = _read_fixed_column(reader, "H", count, "quality column")
    values = _read_fixed_column(reader, "d", count, "value column")
    timestamps_ms = _read_timestamps(reader, count, created_at_ms)
    if reader.position != reader.end:
        raise FrameError(
            f"{reader.end - reader.position} bytes left over after the timestamps",
            reader.position,
        )
    return Batch(
        gateway_id,
        sequence,
        created_at_ms,
        tuple(meters),
        tuple(obis_codes),
        tuple(units),
        meter_index,
        obis_index,
        unit_index,
        timestamps_ms,
        values,
        quality,
    )
