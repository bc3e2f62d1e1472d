# A-XDR encoding of COSEM data: the compiled twin.
#
# Same API, results and error offsets as fastcodec/_axdr_py.py, which
# documents the encoding rules and the spec clauses (IEC 62056-6-2 / Blue
# Book §4.1.5 data types, §4.1.6.1 date and time; Green Book §9.5 A-XDR);
# the value model is in fastcodec/_axdr_types.py.
#
# Strategy: the decoders walk a `const unsigned char *` with an explicit end;
# every read is preceded by a remaining-length check, so bounds checks are
# off in the walkers. Integers become Python ints through the C API, dates
# become ClockDateTime objects through the datetime C API (no Python-level
# constructor call). `decode_capture_buffer` switches on the tag octet in C
# and fills preallocated column lists, so a row of {clock, u8, 4 x u32}
# costs a few C-API calls and no Python dispatch. The encoder is not the hot
# path: it is the reference algorithm, compiled.
# cython: language_level=3

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.datetime cimport PyDateTimeAPI, import_datetime
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_FromLong, PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.object cimport PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

import datetime as _dt
import struct

from fastcodec._axdr_types import (
    DONT_CARE,
    BitString,
    CaptureColumns,
    ClockDateTime,
    ClockStatus,
    CompactArray,
    CosemDate,
    CosemDateTime,
    CosemTime,
    DontCare,
    Tag,
    TypeDescription,
    Typed,
    timezone_for_deviation,
)
from fastcodec.exceptions import EncodeError, FrameError

import_datetime()

__all__ = [
    "DONT_CARE",
    "MAX_DEPTH",
    "BitString",
    "CaptureColumns",
    "ClockDateTime",
    "ClockStatus",
    "CompactArray",
    "CosemDate",
    "CosemDateTime",
    "CosemTime",
    "Tag",
    "TypeDescription",
    "Typed",
    "decode",
    "decode_capture_buffer",
    "decode_date_time",
    "decode_from",
    "decode_typed",
    "decode_typed_from",
    "encode",
]

cdef enum:
    C_MAX_DEPTH = 16
    MAX_DEVIATION_MINUTES = 840

MAX_DEPTH = C_MAX_DEPTH

# Tag members by value, so that typed decoding does not call Tag(x).
cdef list _TAGS = [None] * 256
for _tag in Tag:
    _TAGS[int(_tag)] = _tag

# Least contents size of each type in a compact-array (-1: not allowed).
cdef int _MIN_SIZE[256]
for _i in range(256):
    _MIN_SIZE[_i] = -1
for _tag_value, _size in (
    (0, 0), (3, 1), (4, 1), (5, 4), (6, 4), (9, 1), (10, 1), (12, 1), (13, 1), (15, 1),
    (16, 2), (17, 1), (18, 2), (20, 8), (21, 8), (22, 1), (23, 4), (24, 8), (25, 12),
    (26, 5), (27, 4), (255, 0),
):
    _MIN_SIZE[_tag_value] = _size

cdef int _DAYS_IN_MONTH[13]
_DAYS_IN_MONTH[:] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

cdef dict _TIMEZONES = {}
cdef object _CLOCK_TYPE = ClockDateTime
cdef str _CLOCK_STATUS = "clock_status"


# --- low-level readers ----------------------------------------------------------

cdef inline uint16_t _be16(const unsigned char *p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]


cdef inline uint32_t _be32(const unsigned char *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint64_t _be64(const unsigned char *p) noexcept nogil:
    return (<uint64_t>_be32(p) << 32) | _be32(p + 4)


cdef int _short(Py_ssize_t end, Py_ssize_t offset, Py_ssize_t size, str what) except -1:
    # Called only when the check failed, so that the message is built only then.
    raise FrameError(f"{what} needs {size} octets, {end - offset} left", offset)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _read_length(
    const unsigned char *buf, Py_ssize_t offset, Py_ssize_t end, Py_ssize_t *value
) except -1:
    """An A-XDR length at `offset`: stores it in value, returns the offset after it."""
    cdef unsigned char first
    cdef int size, i
    cdef uint64_t length = 0
    if offset >= end:
        raise FrameError("length expected, input ends", offset)
    first = buf[offset]
    if first < 0x80:
        value[0] = first
        return offset + 1
    size = first & 0x7F
    if size == 0 or size > 4:
        raise FrameError(f"length form 0x{first:02X} not supported (1..4 length octets)", offset)
    if size > end - offset + 1:
        _short(end, offset + 1, size, "length")
    for i in range(size):
        length = (length << 8) | buf[offset + 1 + i]
    value[0] = <Py_ssize_t>length
    return offset + 1 + size


cdef Py_ssize_t _read_count(
    const unsigned char *buf, Py_ssize_t offset, Py_ssize_t end, Py_ssize_t *count, str what
) except -1:
    cdef Py_ssize_t after = _read_length(buf, offset, end, count)
    if count[0] > end - after:
        raise FrameError(
            f"{what} of {count[0]} elements, only {end - after} octets left", offset
        )
    return after


cdef Py_ssize_t _read_sized(
    const unsigned char *buf, Py_ssize_t offset, Py_ssize_t end, Py_ssize_t *start, str what
) except -1:
    """Checks a length-prefixed string; stores its start, returns its length."""
    cdef Py_ssize_t length
    start[0] = _read_length(buf, offset, end, &length)
    if length > end - start[0]:
        raise FrameError(f"{what} of {length} octets, only {end - start[0]} left", offset)
    return length


# --- dates ----------------------------------------------------------------------------

cdef inline bint _is_leap(int year) noexcept:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


cdef object _timezone(int deviation):
    zone = _TIMEZONES.get(deviation)
    if zone is None:
        zone = timezone_for_deviation(deviation)
        _TIMEZONES[deviation] = zone
    return zone


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _date_time(const unsigned char *p, bint raw):
    """The 12 date-time octets at p (the caller checked they are there)."""
    cdef int year = _be16(p)
    cdef int month = p[2]
    cdef int day = p[3]
    cdef int hour = p[5]
    cdef int minute = p[6]
    cdef int second = p[7]
    cdef int hundredths = p[8]
    cdef int deviation = <int16_t>_be16(p + 9)
    cdef int status = p[11]
    if not raw and (
        1 <= year <= 9999
        and 1 <= month <= 12
        and 1 <= day <= _DAYS_IN_MONTH[month]
        and not (month == 2 and day == 29 and not _is_leap(year))
        and hour <= 23 and minute <= 59 and second <= 59
        and (hundredths <= 99 or hundredths == 0xFF)
        and -MAX_DEVIATION_MINUTES <= deviation <= MAX_DEVIATION_MINUTES
    ):
        value = PyDateTimeAPI.DateTime_FromDateAndTime(
            year, month, day, hour, minute, second,
            0 if hundredths == 0xFF else hundredths * 10000,
            _timezone(deviation), <PyTypeObject*>_CLOCK_TYPE,
        )
        if status:
            setattr(value, _CLOCK_STATUS, status)
        return value
    return CosemDateTime(
        year, month, day, p[4], hour, minute, second, hundredths, deviation, status
    )


cdef object _date(const unsigned char *p, bint raw):
    value = CosemDate(_be16(p), p[2], p[3], p[4])
    if not raw:
        plain = value.to_date()
        if plain is not None:
            return plain
    return value


cdef object _time(const unsigned char *p, bint raw):
    value = CosemTime(p[0], p[1], p[2], p[3])
    if not raw:
        plain = value.to_time()
        if plain is not None:
            return plain
    return value


cdef object _bit_string(
    const unsigned char *buf, Py_ssize_t offset, Py_ssize_t end, Py_ssize_t *after
):
    cdef Py_ssize_t bit_count, size, start
    start = _read_length(buf, offset, end, &bit_count)
    size = (bit_count + 7) >> 3
    if size > end - start:
        raise FrameError(
            f"bit-string of {bit_count} bits, only {end - start} octets left", offset
        )
    after[0] = start + size
    return BitString(bit_count, PyBytes_FromStringAndSize(<const char*>buf + start, size))


cdef object _utf8(const unsigned char *p, Py_ssize_t length, Py_ssize_t offset):
    try:
        return (<const char*>p)[:length].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError("utf8-string is not valid UTF-8", offset) from exc


# --- the scalar contents shared by tagged and untagged decoding -------------------------

@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _scalar(
    int tag, const unsigned char *buf, Py_ssize_t start, Py_ssize_t end, bint raw,
    Py_ssize_t *after
):
    """Contents of a non-container type `tag` at `start`; NotImplemented for others."""
    cdef Py_ssize_t length, contents
    cdef uint32_t bits32
    cdef uint64_t bits64
    cdef float single
    cdef double double_value
    if tag == 6:
        if 4 > end - start:
            _short(end, start, 4, "double_long_unsigned")
        after[0] = start + 4
        return PyLong_FromUnsignedLongLong(_be32(buf + start))
    if tag == 17 or tag == 22 or tag == 13:
        if 1 > end - start:
            _short(end, start, 1, _TAGS[tag].name.lower())
        after[0] = start + 1
        return PyLong_FromLong(buf[start])
    if tag == 18:
        if 2 > end - start:
            _short(end, start, 2, "long_unsigned")
        after[0] = start + 2
        return PyLong_FromLong(_be16(buf + start))
    if tag == 5:
        if 4 > end - start:
            _short(end, start, 4, "double_long")
        after[0] = start + 4
        return PyLong_FromLong(<int32_t>_be32(buf + start))
    if tag == 16:
        if 2 > end - start:
            _short(end, start, 2, "long")
        after[0] = start + 2
        return PyLong_FromLong(<int16_t>_be16(buf + start))
    if tag == 15:
        if 1 > end - start:
            _short(end, start, 1, "integer")
        after[0] = start + 1
        return PyLong_FromLong(<int8_t>buf[start])
    if tag == 20:
        if 8 > end - start:
            _short(end, start, 8, "long64")
        after[0] = start + 8
        return PyLong_FromLongLong(<int64_t>_be64(buf + start))
    if tag == 21:
        if 8 > end - start:
            _short(end, start, 8, "long64_unsigned")
        after[0] = start + 8
        return PyLong_FromUnsignedLongLong(_be64(buf + start))
    if tag == 23:
        if 4 > end - start:
            _short(end, start, 4, "float32")
        bits32 = _be32(buf + start)
        memcpy(&single, &bits32, 4)
        after[0] = start + 4
        return <double>single
    if tag == 24:
        if 8 > end - start:
            _short(end, start, 8, "float64")
        bits64 = _be64(buf + start)
        memcpy(&double_value, &bits64, 8)
        after[0] = start + 8
        return double_value
    if tag == 9:
        length = _read_sized(buf, start, end, &contents, "octet-string")
        after[0] = contents + length
        return PyBytes_FromStringAndSize(<const char*>buf + contents, length)
    if tag == 3:
        if 1 > end - start:
            _short(end, start, 1, "boolean")
        after[0] = start + 1
        return buf[start] != 0
    if tag == 10:
        length = _read_sized(buf, start, end, &contents, "visible_string")
        after[0] = contents + length
        return (<const char*>buf + contents)[:length].decode("latin-1")
    if tag == 12:
        length = _read_sized(buf, start, end, &contents, "utf8_string")
        after[0] = contents + length
        return _utf8(buf + contents, length, start)
    if tag == 25:
        if 12 > end - start:
            _short(end, start, 12, "date-time")
        after[0] = start + 12
        return _date_time(buf + start, raw)
    if tag == 26:
        if 5 > end - start:
            _short(end, start, 5, "date")
        after[0] = start + 5
        return _date(buf + start, raw)
    if tag == 27:
        if 4 > end - start:
            _short(end, start, 4, "time")
        after[0] = start + 4
        return _time(buf + start, raw)
    if tag == 4:
        return _bit_string(buf, start, end, after)
    if tag == 0:
        after[0] = start
        return None
    if tag == 255:
        after[0] = start
        return DONT_CARE
    return NotImplemented


# --- tagged decoding --------------------------------------------------------------------

@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _decode(
    const unsigned char *buf, Py_ssize_t offset, Py_ssize_t end, int depth, bint typed,
    Py_ssize_t *after
):
    """One tagged Data value at `offset`; stores the offset after it."""
    cdef int tag
    cdef Py_ssize_t count, position, i
    if offset >= end:
        raise FrameError("data type tag expected, input ends", offset)
    tag = buf[offset]
    if tag == 1 or tag == 2:
        if depth >= C_MAX_DEPTH:
            raise FrameError(f"data nested deeper than {C_MAX_DEPTH} levels", offset)
        position = _read_count(
            buf, offset + 1, end, &count, "structure" if tag == 2 else "array"
        )
        if tag == 2:
            elements = PyTuple_New(count)
            for i in range(count):
                element = _decode(buf, position, end, depth + 1, typed, &position)
                Py_INCREF(element)
                PyTuple_SET_ITEM(elements, i, element)
        else:
            elements = PyList_New(count)
            for i in range(count):
                element = _decode(buf, position, end, depth + 1, typed, &position)
                Py_INCREF(element)
                PyList_SET_ITEM(elements, i, element)
        after[0] = position
        return elements
    if tag == 19:
        return _compact_array(buf, offset + 1, end, depth, typed, after)
    value = _scalar(tag, buf, offset + 1, end, typed, after)
    if value is NotImplemented:
        raise FrameError(f"unknown data type tag 0x{tag:02X}", offset)
    if typed and (
        (5 <= tag <= 6) or tag == 10 or tag == 12 or tag == 13 or (15 <= tag <= 18)
        or (20 <= tag <= 24)
    ):
        return Typed(_TAGS[tag], value)
    return value


# --- compact-array ----------------------------------------------------------------------

@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _type_description(
    const unsigned char *buf, Py_ssize_t offset, Py_ssize_t end, int depth,
    Py_ssize_t *min_size, Py_ssize_t *after
):
    """A TypeDescription at `offset`; stores its least contents size (saturated)."""
    cdef int tag
    cdef Py_ssize_t count, position, element_size, i, total
    if depth >= C_MAX_DEPTH:
        raise FrameError(f"type description nested deeper than {C_MAX_DEPTH} levels", offset)
    if offset >= end:
        raise FrameError("type description expected, input ends", offset)
    tag = buf[offset]
    if tag == 1:
        if end - (offset + 1) < 2:  # the 2-octet count must be in the input
            _short(end, offset + 1, 2, "array type description")
        count = _be16(buf + offset + 1)
        element = _type_description(buf, offset + 3, end, depth + 1, &element_size, after)
        if element_size == 0 and count:
            raise FrameError("compact-array of elements that take no octets", offset)
        # Saturate: only "zero or not" and "more than the input" matter.
        min_size[0] = count * element_size if element_size < (1 << 40) else (1 << 40)
        return TypeDescription(_TAGS[1], count, (element,))
    if tag == 2:
        position = _read_count(buf, offset + 1, end, &count, "structure type description")
        members = PyTuple_New(count)
        total = 0
        for i in range(count):
            member = _type_description(buf, position, end, depth + 1, &element_size, &position)
            Py_INCREF(member)
            PyTuple_SET_ITEM(members, i, member)
            total += element_size
            if total > (1 << 40):
                total = 1 << 40
        min_size[0] = total
        after[0] = position
        return TypeDescription(_TAGS[2], count, members)
    if _MIN_SIZE[tag] < 0:
        raise FrameError(f"type 0x{tag:02X} not allowed in a compact-array description", offset)
    min_size[0] = _MIN_SIZE[tag]
    after[0] = offset + 1
    return TypeDescription(_TAGS[tag])


cdef object _decode_untagged(
    object description, const unsigned char *buf, Py_ssize_t offset, Py_ssize_t end,
    bint raw, Py_ssize_t *after
):
    cdef int tag = description.tag
    cdef Py_ssize_t position = offset
    cdef Py_ssize_t i, count
    if tag == 1:
        element_type = description.elements[0]
        count = description.count
        values = PyList_New(count)
        for i in range(count):
            value = _decode_untagged(element_type, buf, position, end, raw, &position)
            Py_INCREF(value)
            PyList_SET_ITEM(values, i, value)
        after[0] = position
        return values
    if tag == 2:
        members = description.elements
        count = len(members)
        values = PyTuple_New(count)
        for i in range(count):
            value = _decode_untagged(members[i], buf, position, end, raw, &position)
            Py_INCREF(value)
            PyTuple_SET_ITEM(values, i, value)
        after[0] = position
        return values
    return _scalar(tag, buf, offset, end, raw, after)


cdef object _compact_array(
    const unsigned char *buf, Py_ssize_t offset, Py_ssize_t end, int depth, bint typed,
    Py_ssize_t *after
):
    cdef Py_ssize_t element_size, position, length, contents_start, contents_end
    description = _type_description(buf, offset, end, depth + 1, &element_size, &position)
    if element_size == 0:
        raise FrameError("compact-array of elements that take no octets", offset)
    contents_start = _read_length(buf, position, end, &length)
    if length > end - contents_start:
        raise FrameError(
            f"compact-array contents of {length} octets, {end - contents_start} left", position
        )
    contents_end = contents_start + length
    elements = []
    position = contents_start
    while position < contents_end:
        elements.append(
            _decode_untagged(description, buf, position, contents_end, typed, &position)
        )
    after[0] = contents_end
    if typed:
        return CompactArray(description, tuple(elements))
    return elements


# --- public decoders --------------------------------------------------------------------

cdef bytes _as_bytes(object data):
    if type(data) is bytes:
        return <bytes>data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"a bytes-like object is required, not {type(data).__name__}")


cdef inline const unsigned char *_pointer(bytes data) noexcept:
    return <const unsigned char*>PyBytes_AS_STRING(data)


cdef object _check_offset(bytes data, Py_ssize_t offset):
    if not 0 <= offset <= PyBytes_GET_SIZE(data):
        raise FrameError(f"offset {offset} outside the {len(data)}-octet input", None)


def decode_from(data, Py_ssize_t offset=0):
    """Decode one A-XDR Data value at `offset`: (value, offset after it)."""
    cdef bytes octets = _as_bytes(data)
    cdef Py_ssize_t after
    _check_offset(octets, offset)
    value = _decode(_pointer(octets), offset, PyBytes_GET_SIZE(octets), 0, False, &after)
    return value, after


def decode(data):
    """Decode one complete A-XDR Data value; the whole input must be that value."""
    cdef bytes octets = _as_bytes(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(octets)
    cdef Py_ssize_t after
    value = _decode(_pointer(octets), 0, end, 0, False, &after)
    if after != end:
        raise FrameError(f"{end - after} octets after the value", after)
    return value


def decode_typed_from(data, Py_ssize_t offset=0):
    """Like decode_from, but keeping every type tag (Typed, CosemDateTime…)."""
    cdef bytes octets = _as_bytes(data)
    cdef Py_ssize_t after
    _check_offset(octets, offset)
    value = _decode(_pointer(octets), offset, PyBytes_GET_SIZE(octets), 0, True, &after)
    return value, after


def decode_typed(data):
    """Like decode, but keeping every type tag: encode(decode_typed(b)) == b."""
    cdef bytes octets = _as_bytes(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(octets)
    cdef Py_ssize_t after
    value = _decode(_pointer(octets), 0, end, 0, True, &after)
    if after != end:
        raise FrameError(f"{end - after} octets after the value", after)
    return value


def decode_date_time(data):
    """Read the 12 octets of a COSEM date-time: ClockDateTime or CosemDateTime."""
    cdef bytes octets = _as_bytes(data)
    if PyBytes_GET_SIZE(octets) != 12:
        raise FrameError(f"a date-time is 12 octets, not {len(octets)}", 0)
    return _date_time(_pointer(octets), False)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _cell(const unsigned char *buf, Py_ssize_t position, Py_ssize_t end, Py_ssize_t *after):
    """One capture-buffer cell: the common scalar tags decoded in C, the rest generically."""
    cdef int tag
    if position < end:
        tag = buf[position]
        if tag == 9 and position + 14 <= end and buf[position + 1] == 12:
            after[0] = position + 14
            return _date_time(buf + position + 2, False)
        if tag == 6 and position + 5 <= end:
            after[0] = position + 5
            return PyLong_FromUnsignedLongLong(_be32(buf + position + 1))
        if (tag == 17 or tag == 22) and position + 2 <= end:
            after[0] = position + 2
            return PyLong_FromLong(buf[position + 1])
        if tag == 0:
            after[0] = position + 1
            return None
        if tag == 18 and position + 3 <= end:
            after[0] = position + 3
            return PyLong_FromLong(_be16(buf + position + 1))
        if tag == 5 and position + 5 <= end:
            after[0] = position + 5
            return PyLong_FromLong(<int32_t>_be32(buf + position + 1))
        if tag == 16 and position + 3 <= end:
            after[0] = position + 3
            return PyLong_FromLong(<int16_t>_be16(buf + position + 1))
    return _decode(buf, position, end, 2, False, after)


@cython.boundscheck(False)
@cython.wraparound(False)
def decode_capture_buffer(data, Py_ssize_t offset=0):
    """Decode a profile-generic buffer (array of structure) into columns.

    Octet-strings of exactly 12 octets are read as COSEM date-times; null-data
    cells give None. Returns CaptureColumns(columns, row_count, end_offset).
    """
    cdef bytes octets = _as_bytes(data)
    cdef const unsigned char *buf = _pointer(octets)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(octets)
    cdef Py_ssize_t row_count, width, position, row, column_index
    cdef list columns = []
    _check_offset(octets, offset)
    if offset >= end or buf[offset] != 1:
        raise FrameError("capture buffer must be an array", offset)
    position = _read_count(buf, offset + 1, end, &row_count, "capture buffer")
    for row in range(row_count):
        if position >= end or buf[position] != 2:
            raise FrameError(f"capture buffer row {row} is not a structure", position)
        position = _read_count(buf, position + 1, end, &width, "capture buffer row")
        if row == 0:
            # Every cell takes an octet: refuse a rows x width that the input
            # cannot hold before allocating the columns.
            if width * row_count > end - position:
                raise FrameError(
                    f"capture buffer of {row_count} rows x {width} cells, "
                    f"only {end - position} octets left",
                    position,
                )
            columns = [PyList_New(row_count) for _ in range(width)]
        elif width != len(columns):
            raise FrameError(
                f"capture buffer row {row} has {width} cells, row 0 has {len(columns)}",
                position,
            )
        for column_index in range(width):
            value = _cell(buf, position, end, &position)
            Py_INCREF(value)
            PyList_SET_ITEM(<list>columns[column_index], row, value)
    return CaptureColumns(columns, row_count, position)


# --- encoding (not the hot path: the reference algorithm, compiled) ----------------------

_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_FIXED = {
    5: (4, struct.Struct(">i")),
    6: (4, struct.Struct(">I")),
    15: (1, struct.Struct(">b")),
    16: (2, _I16),
    18: (2, _U16),
    20: (8, struct.Struct(">q")),
    21: (8, struct.Struct(">Q")),
    23: (4, struct.Struct(">f")),
    24: (8, struct.Struct(">d")),
}
_DATE_TIME = struct.Struct(">HBBBBBBBhB")
_DATE = struct.Struct(">HBBB")
_TIME = struct.Struct(">BBBB")
_INT_RANGES = {
    5: (-(2**31), 2**31 - 1),
    6: (0, 2**32 - 1),
    15: (-128, 127),
    16: (-(2**15), 2**15 - 1),
    18: (0, 2**16 - 1),
    20: (-(2**63), 2**63 - 1),
    21: (0, 2**64 - 1),
    17: (0, 255),
    22: (0, 255),
    13: (0, 255),
}
_KNOWN_TAGS = frozenset(int(tag) for tag in Tag)


cdef object _encode_length(Py_ssize_t length, bytearray out):
    if length < 0x80:
        out.append(length)
    elif length <= 0xFF:
        out += b"\x81" + length.to_bytes(1, "big")
    elif length <= 0xFFFF:
        out += b"\x82" + length.to_bytes(2, "big")
    elif length <= 0xFFFFFF:
        out += b"\x83" + length.to_bytes(3, "big")
    elif length <= 0xFFFFFFFF:
        out += b"\x84" + length.to_bytes(4, "big")
    else:
        raise EncodeError(f"length {length} does not fit the A-XDR length (4 octets)")


cdef object _check_range(object tag, object value):
    if not isinstance(value, int) or isinstance(value, bool):
        raise EncodeError(f"{tag.name.lower()} needs an int, not {type(value).__name__}")
    low, high = _INT_RANGES[tag]
    if not low <= value <= high:
        raise EncodeError(f"{value} outside {tag.name.lower()} range {low}..{high}")
    return value


cdef bytes _pack_fields(object packer, tuple fields, str what):
    try:
        return packer.pack(*fields)
    except struct.error as exc:
        raise EncodeError(f"{what} field out of range: {exc}") from exc


cdef bytes _date_time_octets(object value):
    if isinstance(value, _dt.datetime):
        value = CosemDateTime.from_datetime(value)
    return _pack_fields(
        _DATE_TIME,
        (
            value.year, value.month, value.day_of_month, value.day_of_week, value.hour,
            value.minute, value.second, value.hundredths, value.deviation_minutes,
            value.clock_status,
        ),
        "date-time",
    )


cdef bytes _date_octets(object value):
    if not isinstance(value, CosemDate):
        value = CosemDate(value.year, value.month, value.day, value.isoweekday())
    return _pack_fields(
        _DATE, (value.year, value.month, value.day_of_month, value.day_of_week), "date"
    )


cdef bytes _time_octets(object value):
    if not isinstance(value, CosemTime):
        value = CosemTime(value.hour, value.minute, value.second, value.microsecond // 10000)
    return _pack_fields(_TIME, (value.hour, value.minute, value.second, value.hundredths), "time")


cdef object _encode_text(object tag, object text, bytearray out):
    if not isinstance(text, str):
        raise EncodeError(f"{tag.name.lower()} needs a str, not {type(text).__name__}")
    try:
        octets = text.encode("latin-1" if tag == 10 else "utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{tag.name.lower()} cannot hold {text!r}") from exc
    out.append(tag)
    _encode_length(len(octets), out)
    out += octets


cdef object _encode_sequence(object tag, object elements, bytearray out, int depth):
    if not isinstance(elements, (list, tuple)):
        raise EncodeError(f"{tag.name.lower()} needs a list or tuple")
    if depth >= C_MAX_DEPTH:
        raise EncodeError(f"data nested deeper than {C_MAX_DEPTH} levels")
    out.append(tag)
    _encode_length(len(elements), out)
    for element in elements:
        _encode(element, out, depth + 1, None)


cdef object _encode_typed(object item, bytearray out, int depth):
    tag = item.tag
    value = item.value
    if tag not in _KNOWN_TAGS:
        raise EncodeError(f"unknown data type tag {tag!r}")
    tag = _TAGS[int(tag)]
    fixed = _FIXED.get(tag)
    if fixed is not None and (tag == 23 or tag == 24):
        if not isinstance(value, (float, int)) or isinstance(value, bool):
            raise EncodeError(f"{tag.name.lower()} needs a float, not {type(value).__name__}")
        try:
            out.append(tag)
            out += fixed[1].pack(value)
        except (struct.error, OverflowError) as exc:
            raise EncodeError(f"{value} does not fit {tag.name.lower()}") from exc
        return
    if tag in _INT_RANGES:
        number = _check_range(tag, value)
        out.append(tag)
        if fixed is not None:
            out += fixed[1].pack(number)
        else:
            out.append(number)
        return
    if tag == 10 or tag == 12:
        _encode_text(tag, value, out)
    elif tag == 1 or tag == 2:
        _encode_sequence(tag, value, out, depth)
    else:
        before = len(out)
        _encode(value, out, depth, tag)
        if len(out) == before or out[before] != tag:
            del out[before:]
            raise EncodeError(f"value {value!r} cannot be encoded as {tag.name.lower()}")


cdef object _encode_compact_description(object description, bytearray out, int depth):
    if depth >= C_MAX_DEPTH:
        raise EncodeError(f"type description nested deeper than {C_MAX_DEPTH} levels")
    tag = description.tag
    out.append(tag)
    if tag == 1:
        if len(description.elements) != 1 or not 0 <= description.count <= 0xFFFF:
            raise EncodeError("array type description needs one element type and count 0..65535")
        out += _U16.pack(description.count)
        _encode_compact_description(description.elements[0], out, depth + 1)
    elif tag == 2:
        _encode_length(len(description.elements), out)
        for member in description.elements:
            _encode_compact_description(member, out, depth + 1)
    elif not (0 <= tag <= 255) or _MIN_SIZE[<int>tag] < 0:
        raise EncodeError(f"type {tag!r} not allowed in a compact-array description")


cdef object _encode_untagged(object description, object value, bytearray out):
    tag = description.tag
    if tag == 1 or tag == 2:
        members = (
            description.elements * description.count if tag == 1 else description.elements
        )
        if not isinstance(value, (list, tuple)) or len(value) != len(members):
            raise EncodeError(f"compact-array element {value!r} does not match its description")
        for member, element in zip(members, value):
            _encode_untagged(member, element, out)
        return
    if tag == 0 or tag == 255:
        return
    before = len(out)
    if tag in _INT_RANGES or tag in (23, 24, 10, 12):
        _encode_typed(Typed(tag, value), out, C_MAX_DEPTH)
    else:
        _encode(value, out, C_MAX_DEPTH, tag)
    if len(out) == before or out[before] != tag:
        del out[before:]
        raise EncodeError(f"compact-array element {value!r} is not a {tag.name.lower()}")
    del out[before]


cdef object _encode_compact_array(object value, bytearray out):
    out.append(19)
    _encode_compact_description(value.description, out, 0)
    contents = bytearray()
    for element in value.elements:
        _encode_untagged(value.description, element, contents)
    _encode_length(len(contents), out)
    out += contents


cdef object _encode(object value, bytearray out, int depth, object expected):
    if value is None:
        out.append(0)
    elif isinstance(value, Typed):
        _encode_typed(value, out, depth)
    elif isinstance(value, bool):
        out += b"\x03\x01" if value else b"\x03\x00"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out.append(9)
        _encode_length(len(value), out)
        out += value
    elif isinstance(value, str):
        _encode_text(_TAGS[10] if value.isascii() else _TAGS[12], value, out)
    elif isinstance(value, list):
        _encode_sequence(_TAGS[1], value, out, depth)
    elif isinstance(value, tuple):
        _encode_sequence(_TAGS[2], value, out, depth)
    elif isinstance(value, BitString):
        if len(value.data) != (value.bit_count + 7) >> 3:
            raise EncodeError(f"bit-string of {value.bit_count} bits needs ceil(bits/8) octets")
        out.append(4)
        _encode_length(value.bit_count, out)
        out += value.data
    elif isinstance(value, (CosemDateTime, _dt.datetime)):
        if expected == 9:
            out += b"\x09\x0c" + _date_time_octets(value)
        else:
            out.append(25)
            out += _date_time_octets(value)
    elif isinstance(value, (CosemDate, _dt.date)):
        out.append(26)
        out += _date_octets(value)
    elif isinstance(value, (CosemTime, _dt.time)):
        out.append(27)
        out += _time_octets(value)
    elif isinstance(value, CompactArray):
        _encode_compact_array(value, out)
    elif isinstance(value, DontCare):
        out.append(255)
    elif isinstance(value, (int, float)):
        raise EncodeError(
            f"{type(value).__name__} {value!r} has no obvious COSEM type: wrap it in Typed"
        )
    else:
        raise EncodeError(f"cannot encode {type(value).__name__} as COSEM data")


def encode(value):
    """Encode one COSEM Data value in A-XDR (see fastcodec._axdr_py.encode)."""
    cdef bytearray out = bytearray()
    _encode(value, out, 0, None)
    return bytes(out)
