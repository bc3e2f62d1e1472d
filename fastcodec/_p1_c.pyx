# DSMR / e-MUCS P1 telegrams: the compiled twin.
#
# Same API and results as fastcodec/_p1_py.py, which documents the telegram
# format (DSMR 5.0.2 P1 companion standard §6.2 telegram and CRC, §6.4/§6.12
# data objects; e-MUCS H 1.7.1; IEC 62056-21:2002 §6.3.2 header), the
# meters' quirks and the invariants. Here the telegram is scanned once
# through a C pointer: the CRC, the line splitting, the number and timestamp
# checks and the OBIS normalisation run on bytes, and Python objects are made
# only for the values returned. The CRC-16/ARC (fastcodec._crc_c) and the
# OBIS scanner (fastcodec._iec62056_21_c, P1 lines are IEC 62056-21 data sets)
# are cimported, not copied. Every index is checked against the length
# before it is read, so bounds checks are off in the scanning functions.
# cython: language_level=3

cimport cython
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject_GenericSetAttr
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memchr

from fastcodec._crc_c cimport crc16_arc_of
from fastcodec._iec62056_21_c cimport is_decimal, obis_text

from datetime import datetime

from fastcodec._p1_types import (
    DEFAULT_MAX_TELEGRAM_BYTES,
    SUMMER_TIME,
    WINTER_TIME,
    Identification,
    ProfileEntry,
    Reading,
    Telegram,
)
from fastcodec.exceptions import EncodeError, FrameError

__all__ = [
    "DEFAULT_MAX_TELEGRAM_BYTES",
    "Identification",
    "ProfileEntry",
    "Reading",
    "Telegram",
    "TelegramSplitter",
    "build_telegram",
    "parse_telegram",
]

cdef enum:
    MAX_COUNT_DIGITS = 4


# The frozen dataclasses' __init__ goes through object.__setattr__ once per
# field, which costs more than the whole scan of a line. The compiled twin
# fills the slots directly (the same values: results compare equal).
cdef object _new_reading(obis, value, unit, timestamp, channel, entries, raw):
    cdef object reading = Reading.__new__(Reading)
    PyObject_GenericSetAttr(reading, "obis", obis)
    PyObject_GenericSetAttr(reading, "value", value)
    PyObject_GenericSetAttr(reading, "unit", unit)
    PyObject_GenericSetAttr(reading, "timestamp", timestamp)
    PyObject_GenericSetAttr(reading, "channel", channel)
    PyObject_GenericSetAttr(reading, "entries", entries)
    PyObject_GenericSetAttr(reading, "raw", raw)
    return reading


cdef object _new_entry(tuple timestamps, value, str unit):
    cdef object entry = ProfileEntry.__new__(ProfileEntry)
    PyObject_GenericSetAttr(entry, "timestamps", timestamps)
    PyObject_GenericSetAttr(entry, "value", value)
    PyObject_GenericSetAttr(entry, "unit", unit)
    return entry


cdef object _new_identification(str manufacturer, str baud_char, str ident, str enhanced):
    cdef object identification = Identification.__new__(Identification)
    PyObject_GenericSetAttr(identification, "manufacturer", manufacturer)
    PyObject_GenericSetAttr(identification, "baud_char", baud_char)
    PyObject_GenericSetAttr(identification, "ident", ident)
    PyObject_GenericSetAttr(identification, "enhanced", enhanced)
    return identification


cdef object _new_telegram(identification, tuple readings, checksum_ok, checksum, bytes trailer):
    cdef object telegram = Telegram.__new__(Telegram)
    PyObject_GenericSetAttr(telegram, "identification", identification)
    PyObject_GenericSetAttr(telegram, "readings", readings)
    PyObject_GenericSetAttr(telegram, "checksum_ok", checksum_ok)
    PyObject_GenericSetAttr(telegram, "checksum", checksum)
    PyObject_GenericSetAttr(telegram, "trailer", trailer)
    return telegram


cdef inline bint _is_digit(unsigned char byte) noexcept nogil:
    return 48 <= byte <= 57


cdef inline bint _is_hex(unsigned char byte) noexcept nogil:
    return (48 <= byte <= 57) or (65 <= byte <= 70) or (97 <= byte <= 102)


cdef inline bint _is_letter(unsigned char byte) noexcept nogil:
    return (65 <= byte <= 90) or (97 <= byte <= 122)


cdef inline str _text(const unsigned char *data, Py_ssize_t start, Py_ssize_t end):
    return PyUnicode_DecodeLatin1(<const char *>data + start, end - start, NULL)


# --- values ------------------------------------------------------------------------


cdef object _number_or_text(const unsigned char *data, Py_ssize_t start, Py_ssize_t end):
    cdef str text = _text(data, start, end)
    if is_decimal(data, start, end):
        return float(text)  # the same correctly rounded conversion as the pure twin
    return text


cdef bint _all_digits(const unsigned char *data, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, end):
        if not _is_digit(data[i]):
            return False
    return True


cdef inline int _two_digits(const unsigned char *data, Py_ssize_t at) noexcept nogil:
    return (data[at] - 48) * 10 + data[at + 1] - 48


cdef object _timestamp(const unsigned char *data, Py_ssize_t start, Py_ssize_t end, bint allow_naive):
    cdef Py_ssize_t length = end - start
    cdef int year
    zone = None
    if length == 13 and (data[start + 12] == 83 or data[start + 12] == 87):  # 'S' / 'W'
        zone = SUMMER_TIME if data[start + 12] == 83 else WINTER_TIME
    elif not (length == 12 and allow_naive):
        return None
    if not _all_digits(data, start, start + 12):
        return None
    year = _two_digits(data, start)
    year += 2000 if year < 70 else 1900
    try:
        return datetime(
            year,
            _two_digits(data, start + 2),
            _two_digits(data, start + 4),
            _two_digits(data, start + 6),
            _two_digits(data, start + 8),
            _two_digits(data, start + 10),
            tzinfo=zone,
        )
    except ValueError:  # month 25, hour 99: the meter's text, not our error
        return None


cdef bint _is_obis_reference(const unsigned char *data, Py_ssize_t start, Py_ssize_t end) except -1:
    cdef int parts[3]
    has_colon = end > start and memchr(data + start, 58, end - start) != NULL  # ':'
    return has_colon and obis_text(data, start, end, parts) is not None


# --- data lines --------------------------------------------------------------------

# A group of a data line: value text at [start, star), unit at [star + 1, end)
# (star == end when there is no unit).
cdef struct Group:
    Py_ssize_t start
    Py_ssize_t star
    Py_ssize_t end


cdef object _entry(const unsigned char *data, Group *groups, Py_ssize_t first, Py_ssize_t size):
    cdef Py_ssize_t k
    cdef Group last = groups[first + size - 1]
    stamps = tuple([_timestamp(data, groups[k].start, groups[k].star, False) for k in range(first, first + size - 1)])
    return _new_entry(
        stamps,
        _number_or_text(data, last.start, last.star),
        _text(data, last.star + 1 if last.star < last.end else last.end, last.end),
    )


cdef inline str _unit(const unsigned char *data, Group group):
    if group.star < group.end:
        return _text(data, group.star + 1, group.end)
    return ""


cdef object _reading(
    const unsigned char *data, Py_ssize_t address_start, Py_ssize_t address_end,
    Group *groups, Py_ssize_t count
):
    cdef int parts[3]
    cdef int channel = 0, group_c = -1, group_d = -1
    cdef Py_ssize_t columns, entry_size, rest, start
    cdef Group first = groups[0]
    cdef Py_ssize_t first_length = first.star - first.start
    parts[0] = 0
    code = obis_text(data, address_start, address_end, parts)
    if code is None:
        code = _text(data, address_start, address_end)
    else:
        channel = parts[0]
        group_c = parts[1]
        group_d = parts[2]
    raw = tuple([(_text(data, groups[k].start, groups[k].star), _unit(data, groups[k])) for k in range(count)])
    timestamp = None
    entries = ()
    if (
        group_c == 24 and group_d == 3 and count >= 7
        and _is_obis_reference(data, groups[4].start, groups[4].star)
    ):
        timestamp = _timestamp(data, first.start, first.star, True)
        value = _number_or_text(data, groups[count - 1].start, groups[count - 1].star)
        unit = _text(data, groups[5].start, groups[5].star)
    elif (
        count >= 2 and first.star == first.end
        and 1 <= first_length <= MAX_COUNT_DIGITS
        and _all_digits(data, first.start, first.star)
        and _is_obis_reference(data, groups[1].start, groups[1].star)
    ):
        columns = 1
        while 1 + columns < count and _is_obis_reference(data, groups[1 + columns].start, groups[1 + columns].star):
            columns += 1
        entry_size = columns + 1
        rest = 1 + columns
        entries = tuple([
            _entry(data, groups, start, entry_size)
            for start in range(rest, count - entry_size + 1, entry_size)
        ])
        value = float(_text(data, first.start, first.star))
        unit = ""
    else:
        timestamp = _timestamp(data, first.start, first.star, False)
        if timestamp is not None and count >= 2:
            value = _number_or_text(data, groups[1].start, groups[1].star)
            unit = _unit(data, groups[1])
        elif timestamp is not None or (group_c == 96 and (group_d == 1 or group_d == 13)) or (
            group_c == 0 and group_d == 0
        ) or (group_c == 42 and group_d == 0):
            value = _text(data, first.start, first.star)
            unit = _unit(data, first)
        else:
            value = _number_or_text(data, first.start, first.star)
            unit = _unit(data, first)
    return _new_reading(code, value, unit, timestamp, channel, entries, raw)


cdef class _GroupBuffer:
    """A growable C array of groups (one data line's values)."""
    cdef Group *items
    cdef Py_ssize_t count
    cdef Py_ssize_t capacity
    cdef Group inline_items[16]

    def __cinit__(self):
        self.items = self.inline_items
        self.count = 0
        self.capacity = 16

    def __dealloc__(self):
        if self.items != self.inline_items:
            PyMem_Free(self.items)

    cdef int append(self, Py_ssize_t start, Py_ssize_t star, Py_ssize_t end) except -1:
        cdef Group *grown
        cdef Py_ssize_t i
        if self.count == self.capacity:
            grown = <Group *>PyMem_Malloc(2 * self.capacity * sizeof(Group))
            if grown == NULL:
                raise MemoryError()
            for i in range(self.count):
                grown[i] = self.items[i]
            if self.items != self.inline_items:
                PyMem_Free(self.items)
            self.items = grown
            self.capacity *= 2
        self.items[self.count].start = start
        self.items[self.count].star = star
        self.items[self.count].end = end
        self.count += 1
        return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef tuple _parse_lines(const unsigned char *data, Py_ssize_t start, Py_ssize_t end):
    cdef list readings = []
    cdef _GroupBuffer groups = _GroupBuffer()
    cdef Py_ssize_t index = start, close, scan, star, address_start = -1, address_end = -1
    cdef unsigned char byte
    while index < end:
        byte = data[index]
        if byte == 13 or byte == 10:
            index += 1
        elif byte == 40:  # '('
            close = -1
            star = -1
            scan = index + 1
            while scan < end:
                byte = data[scan]
                if byte == 41:  # ')'
                    close = scan
                    break
                if byte == 40 or byte == 13 or byte == 10:
                    break
                if byte == 42 and star < 0:
                    star = scan
                scan += 1
            if close < 0:
                raise FrameError("data value without ')'", index)
            if address_start < 0:
                address_start = index
                address_end = index
            groups.append(index + 1, close if star < 0 else star, close)
            index = close + 1
        else:
            scan = index
            while scan < end and data[scan] != 40 and data[scan] != 13 and data[scan] != 10:
                scan += 1
            if scan >= end or data[scan] != 40:
                raise FrameError("data line without a value", index)
            if address_start >= 0:
                readings.append(_reading(data, address_start, address_end, groups.items, groups.count))
            address_start = index
            address_end = scan
            groups.count = 0
            index = scan
    if address_start >= 0:
        readings.append(_reading(data, address_start, address_end, groups.items, groups.count))
    return tuple(readings)


cdef object _identification(const unsigned char *data, Py_ssize_t start, Py_ssize_t end):
    cdef Py_ssize_t i, position
    cdef unsigned char byte
    if end - start < 4:
        raise FrameError("identification shorter than /XXXZ", 1)
    for i in range(3):
        if not _is_letter(data[start + i]):
            raise FrameError("manufacturer id is not three letters", 1 + i)
    for i in range(start, end):
        byte = data[i]
        if byte == 47 or byte == 33 or byte == 13 or byte == 10:
            raise FrameError(f"identification contains {chr(byte)!r}", i)
    position = start + 4
    enhanced = []
    while position + 1 < end and data[position] == 92:  # '\\'
        enhanced.append(_text(data, position + 1, position + 2))
        position += 2
    return _new_identification(
        _text(data, start, start + 3),
        _text(data, start + 3, start + 4),
        _text(data, position, end),
        "".join(enhanced),
    )


def parse_telegram(data):
    """Decode one P1 telegram (see fastcodec._p1_py.parse_telegram)."""
    cdef bytes raw = bytes(memoryview(data))
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t length = PyBytes_GET_SIZE(raw)
    cdef Py_ssize_t header_end, bang, position, header_stop
    cdef const unsigned char *found
    cdef int checksum = 0
    if length == 0 or p[0] != 47:
        raise FrameError("telegram does not start with '/'", 0)
    found = <const unsigned char *>memchr(p, 10, length)
    if found == NULL:
        raise FrameError("identification line without CR LF", length)
    header_end = found - p
    found = <const unsigned char *>memchr(p + header_end, 33, length - header_end)
    if found == NULL:
        raise FrameError("telegram without the end character '!'", length)
    bang = found - p
    header_stop = header_end
    if header_stop > 1 and p[header_stop - 1] == 13:
        header_stop -= 1
    identification = _identification(p, 1, header_stop)
    position = bang + 1
    while position < length and position - bang <= 4 and _is_hex(p[position]):
        checksum = checksum * 16 + (
            p[position] - 48 if p[position] <= 57 else (p[position] | 0x20) - 87
        )
        position += 1
    has_checksum = position > bang + 1
    if position + 1 < length and p[position] == 13 and p[position + 1] == 10:
        position += 2
    elif position < length and p[position] == 10:
        position += 1
    readings = _parse_lines(p, header_end + 1, bang)
    if not has_checksum:
        return _new_telegram(identification, readings, None, None, raw[position:])
    return _new_telegram(
        identification,
        readings,
        crc16_arc_of(p, bang + 1) == checksum,
        checksum,
        raw[position:],
    )


def build_telegram(str ident not None, lines, bint crc=True):
    """A P1 telegram with its CRC (see fastcodec._p1_py.build_telegram)."""
    cdef str text
    cdef Py_UCS4 char
    if len(ident) < 4:
        raise EncodeError("identification shorter than XXXZ")
    for text in (ident, *lines):
        for char in text:
            if char < 0x20 or char > 0x7E or char == 47 or char == 33:
                raise EncodeError(f"telegram text may not contain {char!r}")
    body = "/" + ident + "\r\n\r\n" + "".join([line + "\r\n" for line in lines]) + "!"
    cdef bytes encoded = body.encode("ascii")
    if crc:
        encoded += b"%04X" % crc16_arc_of(<const unsigned char *>PyBytes_AS_STRING(encoded), len(encoded))
    return encoded + b"\r\n"


cdef class TelegramSplitter:
    """Cuts the P1 serial byte stream into whole telegrams (see the pure twin)."""

    cdef public Py_ssize_t max_telegram_bytes
    cdef public Py_ssize_t skipped_bytes
    cdef public Py_ssize_t dropped_telegrams
    cdef bytearray _buffer
    cdef Py_ssize_t _scan

    def __init__(self, Py_ssize_t max_telegram_bytes=DEFAULT_MAX_TELEGRAM_BYTES):
        if max_telegram_bytes < 16:
            raise ValueError("max_telegram_bytes must be at least 16")
        self.max_telegram_bytes = max_telegram_bytes
        self.skipped_bytes = 0
        self.dropped_telegrams = 0
        self._buffer = bytearray()
        self._scan = 0

    @property
    def buffered_bytes(self):
        """How many bytes wait for the rest of their telegram."""
        return len(self._buffer)

    def feed(self, data):
        """Add received bytes; return the telegrams they complete, in order."""
        cdef list telegrams = []
        cdef Py_ssize_t start, end, dropped
        cdef bytearray buffer = self._buffer
        buffer += memoryview(data)
        while True:
            if self._scan == 0:
                start = buffer.find(b"/")
                if start < 0:
                    self.skipped_bytes += len(buffer)
                    del buffer[:]
                    return telegrams
                self.skipped_bytes += start
                del buffer[:start]
                self._scan = 1
            end = self._find_end()
            if end == 0:
                return telegrams
            if end < 0 or end > self.max_telegram_bytes:
                dropped = -end if end < 0 else end
                self.skipped_bytes += dropped
                self.dropped_telegrams += 1
                del buffer[:dropped]
            else:
                telegrams.append(bytes(buffer[:end]))
                del buffer[:end]
            self._scan = 0

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef Py_ssize_t _find_end(self):
        # Every index is below `length`, checked before the read.
        cdef bytearray buffer = self._buffer
        cdef Py_ssize_t length = len(buffer)
        cdef const unsigned char *p = <const unsigned char *>PyByteArray_AS_STRING(buffer)
        cdef Py_ssize_t limit = min(length, self.max_telegram_bytes + 1)
        cdef Py_ssize_t index = self._scan, position
        cdef unsigned char byte
        while index < limit:
            byte = p[index]
            if byte == 47:  # '/'
                return -index
            if byte == 33:  # '!'
                position = index + 1
                while position < length and position - index <= 4 and _is_hex(p[position]):
                    position += 1
                if position >= length or (p[position] == 13 and position + 1 >= length):
                    self._scan = index
                    return 0
                if p[position] == 13:
                    return position + 2 if p[position + 1] == 10 else position
                return position + 1 if p[position] == 10 else position
            index += 1
        self._scan = limit
        if length > self.max_telegram_bytes:
            return -(self.max_telegram_bytes + 1)
        return 0
