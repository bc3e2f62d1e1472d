# Uplink batch format v1: the compiled twin.
#
# Same API, results and errors as fastcodec/_uplink_py.py, which summarises
# the layout (docs/uplink-format.md is the full spec). The per-batch parts
# (header, dictionaries, validation messages) are Python; the per-reading
# parts are C loops over the array.array buffers: index columns narrowed or
# widened, fixed columns copied little-endian, timestamps zigzag-varint coded.
# The encoder sizes the output exactly (one pass over the timestamps) and
# writes into a single bytes object; the decoder allocates the columns only
# after the remaining byte count has shown they can be filled.
# cython: language_level=3

from cpython cimport array
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t
from libc.string cimport memcpy

import sys
import zlib

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

MUST_UNDERSTAND_FLAGS = 0x0F
cdef enum:
    _HEADER_BYTES = 26
    _CRC_BYTES = 4
    _MIN_BATCH_BYTES = 26 + 2 + 2 + 2 + 2 + 4
    _FORMAT_VERSION = 1
    _MUST_UNDERSTAND = 0x0F

cdef object _UINT64_MASK = (1 << 64) - 1
cdef object _INT64_MIN = -(1 << 63)
cdef object _INT64_MAX = (1 << 63) - 1
cdef array.array _U16_TEMPLATE = array.array("H")
cdef array.array _I64_TEMPLATE = array.array("q")
cdef array.array _F64_TEMPLATE = array.array("d")
_crc32 = zlib.crc32


# --- little-endian stores and loads (compilers merge these into one access) --------


cdef inline void _put_u16(uint8_t *p, uint16_t value) noexcept nogil:
    p[0] = <uint8_t>value
    p[1] = <uint8_t>(value >> 8)


cdef inline void _put_u64(uint8_t *p, uint64_t value) noexcept nogil:
    cdef int i
    for i in range(8):
        p[i] = <uint8_t>(value >> (8 * i))


cdef inline uint16_t _get_u16(const uint8_t *p) noexcept nogil:
    return <uint16_t>(p[0] | (p[1] << 8))


cdef inline uint64_t _get_u64(const uint8_t *p) noexcept nogil:
    cdef uint64_t value = 0
    cdef int i
    for i in range(8):
        value |= (<uint64_t>p[i]) << (8 * i)
    return value


cdef inline uint64_t _zigzag(uint64_t delta) noexcept nogil:
    # delta holds a two's-complement int64; zigzag maps small |delta| to small codes.
    return (delta << 1) ^ (<uint64_t>(<int64_t>delta >> 63))


cdef inline int _varint_size(uint64_t value) noexcept nogil:
    cdef int size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


# --- encoding ---------------------------------------------------------------------


cdef bytes _utf8(text, str what, Py_ssize_t min_bytes, Py_ssize_t max_bytes):
    if not isinstance(text, str):
        raise EncodeError(f"{what} must be str, not {type(text).__name__}")
    try:
        raw = (<str>text).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{what} {text!r} is not encodable as UTF-8") from exc
    if not min_bytes <= len(raw) <= max_bytes:
        raise EncodeError(
            f"{what} {text!r} is {len(raw)} UTF-8 bytes, not {min_bytes}..{max_bytes}"
        )
    return raw


cdef object _int_in(value, str what, low, high):
    if type(value) is not int or not low <= value <= high:
        raise EncodeError(f"{what} must be an int in {low}..{high}, not {value!r}")
    return value


cdef bytes _dictionary_count(Py_ssize_t entries, str what):
    if entries > MAX_DICTIONARY_ENTRIES:
        raise EncodeError(f"{entries} {what} in one batch: at most {MAX_DICTIONARY_ENTRIES}")
    return entries.to_bytes(2, "little")


cdef void _check_indices(array.array column, Py_ssize_t entries, str what) except *:
    cdef const uint16_t *indices = column.data.as_ushorts
    cdef Py_ssize_t i, count = len(column)
    cdef uint16_t largest = 0
    for i in range(count):
        if indices[i] > largest:
            largest = indices[i]
    if count and largest >= entries:
        raise EncodeError(f"{what} index {largest} is outside its {entries}-entry dictionary")


cdef uint8_t *_write_index_column(
    uint8_t *p, array.array column, Py_ssize_t count, Py_ssize_t entries
) noexcept:
    cdef const uint16_t *indices = column.data.as_ushorts
    cdef Py_ssize_t i
    if entries <= 256:
        for i in range(count):
            p[i] = <uint8_t>indices[i]
        return p + count
    for i in range(count):
        _put_u16(p + 2 * i, indices[i])
    return p + 2 * count


cdef uint8_t *_write_bytes(uint8_t *p, bytes raw, bint with_length) noexcept:
    cdef Py_ssize_t size = len(raw)
    if with_length:
        p[0] = <uint8_t>size
        p += 1
    memcpy(p, <const char *>raw, size)
    return p + size


def encode_batch(batch):
    """Encode a batch in uplink format v1 (see _uplink_py.encode_batch)."""
    cdef Py_ssize_t count = len(batch.values)
    cdef Py_ssize_t i, size, widths
    cdef array.array meter_index, obis_index, unit_index, quality, values, timestamps
    cdef const long long *times
    cdef const uint16_t *flags
    cdef const double *floats
    cdef uint64_t previous, code, bits
    cdef Py_ssize_t varint_bytes = 0
    cdef uint8_t *p
    cdef uint8_t *start
    if count > MAX_READINGS_PER_BATCH:
        raise EncodeError(f"{count} readings in one batch: at most {MAX_READINGS_PER_BATCH}")
    for name in ("meter_index", "obis_index", "unit_index", "timestamps_ms", "quality"):
        if len(getattr(batch, name)) != count:
            raise EncodeError(
                f"batch column {name} has {len(getattr(batch, name))} entries, values has {count}"
            )
    sequence = _int_in(batch.sequence, "sequence", 0, _UINT64_MASK)
    created_at_ms = _int_in(batch.created_at_ms, "created_at_ms", _INT64_MIN, _INT64_MAX)
    gateway_id = _utf8(batch.gateway_id, "gateway id", 1, MAX_GATEWAY_ID_BYTES)
    meters_count = _dictionary_count(len(batch.meters), "meters")
    meters = [_utf8(meter, "meter serial", 1, MAX_SERIAL_BYTES) for meter in batch.meters]
    obis_count = _dictionary_count(len(batch.obis_codes), "OBIS codes")
    codes = []
    for code_value in batch.obis_codes:
        if len(code_value) != 6 or not all(type(g) is int and 0 <= g <= 255 for g in code_value):
            raise EncodeError(f"OBIS code {code_value!r} is not six value groups 0..255")
        codes.append(bytes(code_value))
    units_count = _dictionary_count(len(batch.units), "units")
    units = [_utf8(unit, "unit", 0, MAX_UNIT_BYTES) for unit in batch.units]
    meter_index = _column("meter_index", "H", batch.meter_index)
    _check_indices(meter_index, len(meters), "meter")
    obis_index = _column("obis_index", "H", batch.obis_index)
    _check_indices(obis_index, len(codes), "OBIS")
    unit_index = _column("unit_index", "H", batch.unit_index)
    _check_indices(unit_index, len(units), "unit")
    quality = _column("quality", "H", batch.quality)
    values = _column("values", "d", batch.values)
    timestamps = _column("timestamps_ms", "q", batch.timestamps_ms)

    times = timestamps.data.as_longlongs
    previous = <uint64_t><int64_t>created_at_ms
    for i in range(count):
        varint_bytes += _varint_size(_zigzag(<uint64_t>times[i] - previous))
        previous = <uint64_t>times[i]
    widths = (
        (1 if len(meters) <= 256 else 2)
        + (1 if len(codes) <= 256 else 2)
        + (1 if len(units) <= 256 else 2)
    )
    size = (
        _HEADER_BYTES + 1 + len(gateway_id)
        + 2 + sum([1 + len(raw) for raw in meters])
        + 2 + 6 * len(codes)
        + 2 + sum([1 + len(raw) for raw in units])
        + count * (widths + 2 + 8) + varint_bytes + _CRC_BYTES
    )
    out = PyBytes_FromStringAndSize(NULL, size)
    start = <uint8_t *>PyBytes_AS_STRING(out)
    p = start
    memcpy(p, b"VSUB", 4)
    p[4] = _FORMAT_VERSION
    p[5] = 0
    _put_u64(p + 6, <uint64_t>sequence)
    _put_u64(p + 14, <uint64_t><int64_t>created_at_ms)
    _put_u16(p + 22, <uint16_t>(count & 0xFFFF))
    _put_u16(p + 24, <uint16_t>(count >> 16))
    p = _write_bytes(p + _HEADER_BYTES, gateway_id, True)
    p = _write_bytes(p, meters_count, False)
    for raw in meters:
        p = _write_bytes(p, raw, True)
    p = _write_bytes(p, obis_count, False)
    for raw in codes:
        p = _write_bytes(p, raw, False)
    p = _write_bytes(p, units_count, False)
    for raw in units:
        p = _write_bytes(p, raw, True)
    p = _write_index_column(p, meter_index, count, len(meters))
    p = _write_index_column(p, obis_index, count, len(codes))
    p = _write_index_column(p, unit_index, count, len(units))
    flags = quality.data.as_ushorts
    for i in range(count):
        _put_u16(p + 2 * i, flags[i])
    p += 2 * count
    floats = values.data.as_doubles
    for i in range(count):
        memcpy(&bits, &floats[i], 8)
        _put_u64(p + 8 * i, bits)
    p += 8 * count
    previous = <uint64_t><int64_t>created_at_ms
    for i in range(count):
        code = _zigzag(<uint64_t>times[i] - previous)
        previous = <uint64_t>times[i]
        while code >= 0x80:
            p[0] = <uint8_t>((code & 0x7F) | 0x80)
            code >>= 7
            p += 1
        p[0] = <uint8_t>code
        p += 1
    crc = _crc32(memoryview(out)[: size - _CRC_BYTES])
    return _finish(out, start, size, crc)


cdef bytes _finish(bytes out, uint8_t *start, Py_ssize_t size, object crc):
    cdef uint64_t value = crc
    cdef uint8_t *p = start + size - _CRC_BYTES
    p[0] = <uint8_t>value
    p[1] = <uint8_t>(value >> 8)
    p[2] = <uint8_t>(value >> 16)
    p[3] = <uint8_t>(value >> 24)
    return out


# --- decoding ---------------------------------------------------------------------


cdef class _Reader:
    cdef bytes data
    cdef const uint8_t *p
    cdef Py_ssize_t end
    cdef Py_ssize_t position

    def __cinit__(self, bytes data, Py_ssize_t end, Py_ssize_t position):
        self.data = data
        self.p = <const uint8_t *><const char *>data
        self.end = end
        self.position = position

    cdef Py_ssize_t take(self, Py_ssize_t size, str what) except -1:
        """Advance by `size`; return where the taken bytes start."""
        cdef Py_ssize_t start = self.position
        if self.end - self.position < size:
            raise FrameError(f"uplink batch truncated in {what}", self.position)
        self.position += size
        return start

    cdef uint64_t uint(self, Py_ssize_t size, str what) except? 0xFFFFFFFFFFFFFFFF:
        cdef Py_ssize_t start = self.take(size, what)
        cdef uint64_t value = 0
        cdef Py_ssize_t i
        for i in range(size):
            value |= (<uint64_t>self.p[start + i]) << (8 * i)
        return value

    cdef str text(self, str what, Py_ssize_t min_bytes, Py_ssize_t max_bytes):
        cdef Py_ssize_t start = self.position
        cdef Py_ssize_t length = <Py_ssize_t>self.uint(1, what)
        cdef Py_ssize_t begin
        if not min_bytes <= length <= max_bytes:
            raise FrameError(f"{what} length {length} is not {min_bytes}..{max_bytes}", start)
        begin = self.take(length, what)
        try:
            return self.data[begin : begin + length].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(f"{what} is not valid UTF-8", start + 1 + exc.start) from exc

    cdef Py_ssize_t dictionary_count(self, Py_ssize_t entry_min_bytes, str what) except -1:
        cdef Py_ssize_t start = self.position
        cdef Py_ssize_t entries = <Py_ssize_t>self.uint(2, f"{what} count")
        if entries * entry_min_bytes > self.end - self.position:
            raise FrameError(f"{entries} {what} cannot fit in the bytes that remain", start)
        return entries


cdef void _check_envelope(bytes data) except *:
    cdef Py_ssize_t length = len(data)
    cdef const uint8_t *p = <const uint8_t *><const char *>data
    cdef uint64_t carried
    if length < 5:
        raise FrameError("uplink batch truncated: shorter than its magic and version", length)
    if data[:4] != MAGIC:
        raise FrameError("not an uplink batch: bad magic (expected 'VSUB')", 0)
    if p[4] != _FORMAT_VERSION:
        raise FrameError(f"unsupported uplink batch version {p[4]} (this decoder reads 1)", 4)
    if length < _MIN_BATCH_BYTES:
        raise FrameError(f"uplink batch truncated: {length} bytes", length)
    computed = _crc32(memoryview(data)[: length - _CRC_BYTES])
    carried = (
        <uint64_t>p[length - 4]
        | (<uint64_t>p[length - 3] << 8)
        | (<uint64_t>p[length - 2] << 16)
        | (<uint64_t>p[length - 1] << 24)
    )
    if computed != carried:
        raise ChecksumError("uplink batch CRC-32", computed, carried, length - _CRC_BYTES)
    if p[5] & _MUST_UNDERSTAND:
        raise FrameError(f"uplink batch flags 0x{p[5]:02X} need a newer decoder", 5)


cdef array.array _read_index_column(_Reader reader, Py_ssize_t count, Py_ssize_t entries, str what):
    cdef Py_ssize_t width = 1 if entries <= 256 else 2
    cdef Py_ssize_t start = reader.take(count * width, f"{what} index column")
    cdef const uint8_t *p = reader.p + start
    cdef array.array column = array.clone(_U16_TEMPLATE, count, False)
    cdef uint16_t *indices = column.data.as_ushorts
    cdef uint16_t largest = 0
    cdef Py_ssize_t i
    if width == 1:
        for i in range(count):
            indices[i] = p[i]
            if p[i] > largest:
                largest = p[i]
    else:
        for i in range(count):
            indices[i] = _get_u16(p + 2 * i)
            if indices[i] > largest:
                largest = indices[i]
    if count and largest >= entries:
        for i in range(count):
            if indices[i] >= entries:
                raise FrameError(
                    f"{what} index {indices[i]} is outside its {entries}-entry dictionary",
                    start + i * width,
                )
    return column


cdef array.array _read_quality(_Reader reader, Py_ssize_t count):
    cdef Py_ssize_t start = reader.take(count * 2, "quality column")
    cdef const uint8_t *p = reader.p + start
    cdef array.array column = array.clone(_U16_TEMPLATE, count, False)
    cdef uint16_t *flags = column.data.as_ushorts
    cdef Py_ssize_t i
    for i in range(count):
        flags[i] = _get_u16(p + 2 * i)
    return column


cdef array.array _read_values(_Reader reader, Py_ssize_t count):
    cdef Py_ssize_t start = reader.take(count * 8, "value column")
    cdef const uint8_t *p = reader.p + start
    cdef array.array column = array.clone(_F64_TEMPLATE, count, False)
    cdef double *floats = column.data.as_doubles
    cdef uint64_t bits
    cdef Py_ssize_t i
    for i in range(count):
        bits = _get_u64(p + 8 * i)
        memcpy(&floats[i], &bits, 8)
    return column


cdef array.array _read_timestamps(_Reader reader, Py_ssize_t count, int64_t created_at_ms):
    cdef const uint8_t *p = reader.p
    cdef Py_ssize_t position = reader.position, end = reader.end, begin
    cdef array.array column = array.clone(_I64_TEMPLATE, count, False)
    cdef long long *times = column.data.as_longlongs
    cdef uint64_t previous = <uint64_t>created_at_ms, encoded, byte
    cdef int shift
    cdef Py_ssize_t i
    for i in range(count):
        begin = position
        encoded = 0
        shift = 0
        while True:
            if position >= end:
                raise FrameError("uplink batch truncated in the timestamp column", position)
            byte = p[position]
            position += 1
            if shift == 63 and byte > 1:
                raise FrameError("timestamp varint does not fit 64 bits", begin)
            encoded |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        previous += (encoded >> 1) ^ (0 - (encoded & 1))
        times[i] = <long long>previous
    reader.position = position
    return column


def decode_batch(data):
    """Decode an uplink batch (format v1); see _uplink_py.decode_batch."""
    cdef bytes raw = data if type(data) is bytes else bytes(memoryview(data))
    cdef _Reader reader
    cdef Py_ssize_t count, count_offset, widths, entries, start, i
    cdef const uint8_t *q
    _check_envelope(raw)
    reader = _Reader(raw, len(raw) - _CRC_BYTES, 6)
    sequence = reader.uint(8, "sequence")
    created_at_ms = <int64_t>reader.uint(8, "created_at_ms")
    count_offset = reader.position
    count = <Py_ssize_t>reader.uint(4, "reading count")
    if count > MAX_READINGS_PER_BATCH:
        raise FrameError(f"{count} readings: at most {MAX_READINGS_PER_BATCH}", count_offset)
    gateway_id = reader.text("gateway id", 1, MAX_GATEWAY_ID_BYTES)
    entries = reader.dictionary_count(2, "meters")
    meters = tuple([reader.text("meter serial", 1, MAX_SERIAL_BYTES) for i in range(entries)])
    entries = reader.dictionary_count(6, "OBIS codes")
    codes = []
    for i in range(entries):
        start = reader.take(6, "OBIS code")
        q = reader.p + start
        codes.append(Obis(q[0], q[1], q[2], q[3], q[4], q[5]))
    obis_codes = tuple(codes)
    entries = reader.dictionary_count(1, "units")
    units = tuple([reader.text("unit", 0, MAX_UNIT_BYTES) for i in range(entries)])
    widths = (
        (1 if len(meters) <= 256 else 2)
        + (1 if len(obis_codes) <= 256 else 2)
        + (1 if len(units) <= 256 else 2)
    )
    if count * (widths + 2 + 8 + 1) > reader.end - reader.position:
        raise FrameError(f"{count} readings cannot fit in the bytes that remain", count_offset)
    meter_index = _read_index_column(reader, count, len(meters), "meter")
    obis_index = _read_index_column(reader, count, len(obis_codes), "OBIS")
    unit_index = _read_index_column(reader, count, len(units), "unit")
    quality = _read_quality(reader, count)
    values = _read_values(reader, count)
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
        meters,
        obis_codes,
        units,
        meter_index,
        obis_index,
        unit_index,
        timestamps_ms,
        values,
        quality,
    )
