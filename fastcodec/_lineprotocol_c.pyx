# InfluxDB line protocol encoder: the compiled twin.
#
# Same API, output and errors as fastcodec/_lineprotocol_py.py, which states
# the escaping rules, what is refused and the readings schema.
# `encode_readings` escapes every dictionary entry once per batch into UTF-8
# pieces, then writes each line into one C buffer sized from the longest
# pieces: memcpy of the pieces, integers by hand, floats with CPython's own
# shortest round-trip formatter (PyOS_double_to_string 'r', the code behind
# float.__repr__, without the ".0" suffix). One str is made at the end.
# cython: language_level=3

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython cimport array
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport fabs, isfinite, nearbyint
from libc.stdint cimport int64_t, uint16_t, uint64_t
from libc.string cimport memcpy

import math

from fastcodec.exceptions import EncodeError
from fastcodec.obis import format_obis

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


cdef extern from "Python.h":
    char *PyOS_double_to_string(
        double value, char format_code, int precision, int flags, int *kind
    ) except NULL


DEFAULT_MEASUREMENT = "reading"
MIN_TIMESTAMP_NS = -(2**63) + 2
MAX_TIMESTAMP_NS = 2**63 - 2
MIN_TIMESTAMP_MS = -(MAX_TIMESTAMP_NS // 1_000_000)
MAX_TIMESTAMP_MS = MAX_TIMESTAMP_NS // 1_000_000
cdef int64_t _MIN_MS = -(9223372036854775806 // 1_000_000)
cdef int64_t _MAX_MS = 9223372036854775806 // 1_000_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Longest float repr ("-2.2250738585072014e-308") and int64 ("-9223372036854775808").
cdef enum:
    _MAX_FLOAT_CHARS = 32
    _MAX_INT64_CHARS = 20


cdef str _checked_name(text, str what):
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


def escape_measurement(name):
    """Escape a measurement name (comma and space)."""
    cdef str text = _checked_name(name, "measurement")
    if text.startswith("#"):
        raise EncodeError(f"measurement {text!r} starts with '#', which marks a comment line")
    return text.replace(",", "\\,").replace(" ", "\\ ")


def escape_tag(text, what="tag"):
    """Escape a tag key or tag value (comma, equals sign and space)."""
    return _checked_name(text, what).replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_field_key(key):
    """Escape a field key (comma, equals sign and space); "time" is refused."""
    if key == "time":
        raise EncodeError("'time' cannot be a field key")
    return escape_tag(key, "field key")


def escape_string_field(str value):
    """A string field value, quoted, with backslash and double quote escaped."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"string field {value!r} is not valid Unicode") from exc
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


cdef str _field_value(key, value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise EncodeError(f"field {key!r}: integer {value} does not fit int64")
        return f"{int(value)}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EncodeError(f"field {key!r}: {value!r} cannot be stored (finite floats only)")
        text = repr(float(value))
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, str):
        return escape_string_field(value)
    raise EncodeError(f"field {key!r}: {type(value).__name__} is not a line protocol type")


cdef str _timestamp_text(timestamp_ns):
    if timestamp_ns is None:
        return ""
    if type(timestamp_ns) is not int or not MIN_TIMESTAMP_NS <= timestamp_ns <= MAX_TIMESTAMP_NS:
        raise EncodeError(f"timestamp {timestamp_ns!r} ns is outside InfluxDB's time range")
    return f" {timestamp_ns}"


def encode_point(measurement, tags, fields, timestamp_ns=None):
    """One point as a line of line protocol (no trailing newline)."""
    cdef list parts = [escape_measurement(measurement)]
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


# --- the batch path ---------------------------------------------------------------


cdef inline char *_put_uint(char *p, uint64_t value) noexcept nogil:
    cdef char digits[_MAX_INT64_CHARS]
    cdef int n = 0
    while True:
        digits[n] = <char>(48 + value % 10)
        value //= 10
        n += 1
        if value == 0:
            break
    while n:
        n -= 1
        p[0] = digits[n]
        p += 1
    return p


cdef inline char *_put_int(char *p, int64_t value) noexcept nogil:
    if value < 0:
        p[0] = b"-"
        return _put_uint(p + 1, <uint64_t>0 - <uint64_t>value)
    return _put_uint(p, <uint64_t>value)


cdef double _POWERS_OF_TEN[16]
_POWERS_OF_TEN[:] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15
]
# Below 2**50 the decimals tried are coarser than half the float's spacing, so
# at most one decimal of that length reads back as the float: the one repr picks.
cdef double _UNIQUE_DECIMAL_LIMIT = 1125899906842624.0


cdef inline char *_put_short_decimal(char *p, double value) noexcept nogil:
    """repr(value) without ".0" for the common meter values (a few decimals),
    or NULL when repr would need more digits or exponent notation."""
    cdef double magnitude = fabs(value), scaled
    cdef int decimals, n, k
    cdef uint64_t digits_value
    cdef char digits[24]
    if not (1e-4 <= magnitude < 1e15):
        return NULL
    for decimals in range(16):
        scaled = nearbyint(magnitude * _POWERS_OF_TEN[decimals])
        if scaled >= _UNIQUE_DECIMAL_LIMIT:
            return NULL
        # Both operands exact, so the division is correctly rounded: equality
        # means the decimal scaled / 10**decimals reads back as this float.
        if scaled / _POWERS_OF_TEN[decimals] == magnitude:
            break
    else:
        return NULL
    digits_value = <uint64_t>scaled
    n = 0
    while digits_value or n <= decimals:
        digits[n] = <char>(48 + digits_value % 10)
        digits_value //= 10
        n += 1
    if value < 0:
        p[0] = b"-"
        p += 1
    for k in range(n - 1, -1, -1):
        p[0] = digits[k]
        p += 1
        if k == decimals and decimals:
            p[0] = b"."
            p += 1
    return p


cdef inline char *_put_float(char *p, double value) except NULL:
    cdef char *end = _put_short_decimal(p, value)
    if end != NULL:
        return end
    cdef char *text = PyOS_double_to_string(value, b"r", 0, 0, NULL)
    cdef Py_ssize_t i = 0
    while text[i]:
        p[i] = text[i]
        i += 1
    PyMem_Free(text)
    return p + i


cdef class _Pieces:
    """UTF-8 pieces of one dictionary, addressable from C."""

    cdef list keep
    cdef const char **starts
    cdef Py_ssize_t *lengths
    cdef Py_ssize_t longest

    def __cinit__(self, list texts):
        cdef Py_ssize_t i, count = len(texts)
        self.keep = [text.encode("utf-8") for text in texts]
        self.starts = <const char **>PyMem_Malloc(max(count, 1) * sizeof(char *))
        self.lengths = <Py_ssize_t *>PyMem_Malloc(max(count, 1) * sizeof(Py_ssize_t))
        if self.starts == NULL or self.lengths == NULL:
            raise MemoryError()
        self.longest = 0
        for i in range(count):
            raw = self.keep[i]
            self.starts[i] = <const char *>(<bytes>raw)
            self.lengths[i] = len(<bytes>raw)
            if self.lengths[i] > self.longest:
                self.longest = self.lengths[i]

    def __dealloc__(self):
        PyMem_Free(self.starts)
        PyMem_Free(self.lengths)


cdef inline char *_put_piece(char *p, _Pieces pieces, Py_ssize_t index) noexcept nogil:
    memcpy(p, pieces.starts[index], pieces.lengths[index])
    return p + pieces.lengths[index]


cdef Py_ssize_t _check_columns(batch) except -1:
    cdef Py_ssize_t count = len(batch.values)
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


cdef array.array _typed(column, str typecode):
    # The Batch keeps its columns as arrays of these types; anything else is copied.
    if isinstance(column, array.array) and (<array.array>column).ob_descr.typecode == ord(typecode):
        return <array.array>column
    return array.array(typecode, column)


def encode_readings(batch, *, measurement=DEFAULT_MEASUREMENT, bint skip_non_finite=False):
    """A batch of readings as line protocol, one line per reading, each ending in "\\n"."""
    cdef str prefix = escape_measurement(measurement)
    cdef Py_ssize_t count = _check_columns(batch)
    cdef _Pieces meter_tags = _Pieces(
        [f"{prefix},meter={escape_tag(m, 'meter serial')}" for m in batch.meters]
    )
    cdef _Pieces obis_tags = _Pieces(
        [f",obis={format_obis(code)} quality=" for code in batch.obis_codes]
    )
    cdef _Pieces unit_fields = _Pieces(
        [f"i,unit={escape_string_field(unit)},value=" for unit in batch.units]
    )
    cdef array.array meter_column = _typed(batch.meter_index, "H")
    cdef array.array obis_column = _typed(batch.obis_index, "H")
    cdef array.array unit_column = _typed(batch.unit_index, "H")
    cdef array.array time_column = _typed(batch.timestamps_ms, "q")
    cdef array.array value_column = _typed(batch.values, "d")
    cdef array.array quality_column = _typed(batch.quality, "H")
    cdef const uint16_t *meter_index = meter_column.data.as_ushorts
    cdef const uint16_t *obis_index = obis_column.data.as_ushorts
    cdef const uint16_t *unit_index = unit_column.data.as_ushorts
    cdef const long long *timestamps_ms = time_column.data.as_longlongs
    cdef const double *values = value_column.data.as_doubles
    cdef const uint16_t *quality = quality_column.data.as_ushorts
    cdef Py_ssize_t line_bound = (
        meter_tags.longest + obis_tags.longest + unit_fields.longest
        + 5 + _MAX_FLOAT_CHARS + 1 + _MAX_INT64_CHARS + 1
    )
    cdef Py_ssize_t i
    cdef char *buffer
    cdef char *p
    cdef double value
    cdef int64_t timestamp_ms
    if count == 0:
        return ""
    buffer = <char *>PyMem_Malloc(count * line_bound)
    if buffer == NULL:
        raise MemoryError()
    try:
        p = buffer
        for i in range(count):
            value = values[i]
            if not isfinite(value):
                if skip_non_finite:
                    continue
                raise EncodeError(
                    f"reading {i}: value {value!r} cannot be stored (finite floats only)"
                )
            timestamp_ms = timestamps_ms[i]
            if not _MIN_MS <= timestamp_ms <= _MAX_MS:
                raise EncodeError(
                    f"reading {i}: timestamp {timestamp_ms} ms is outside InfluxDB's range"
                )
            p = _put_piece(p, meter_tags, meter_index[i])
            p = _put_piece(p, obis_tags, obis_index[i])
            p = _put_uint(p, quality[i])
            p = _put_piece(p, unit_fields, unit_index[i])
            p = _put_float(p, value)
            p[0] = b" "
            p = _put_int(p + 1, timestamp_ms * 1000000)
            p[0] = b"\n"
            p += 1
        return PyUnicode_DecodeUTF8(buffer, p - buffer, NULL)
    finally:
        PyMem_Free(buffer)
