# The value model of the A-XDR / COSEM data codec, shared by both twins.
#
# Both `fastcodec._axdr_py` and `fastcodec._axdr_c` return these types, so
# results compare equal across twins. What each COSEM type (IEC 62056-6-2,
# DLMS UA Blue Book §4.1.5 table "Common data types") becomes:
#
# | tag | COSEM type            | decode()                        | decode_typed()              |
# |-----|-----------------------|---------------------------------|-----------------------------|
# |   0 | null-data             | None                            | None                        |
# |   1 | array                 | list                            | list (of typed values)      |
# |   2 | structure             | tuple                           | tuple (of typed values)     |
# |   3 | boolean               | bool                            | bool                        |
# |   4 | bit-string            | BitString                       | BitString                   |
# |5,6,15,16,17,18,20,21 | integers | int                        | Typed(tag, int)             |
# |  22 | enum                  | int (0..255)                    | Typed(Tag.ENUM, int)        |
# |  13 | bcd                   | int: the raw octet (two BCD     | Typed(Tag.BCD, int)         |
# |     |                       | nibbles, not converted; 0..255) |                             |
# |  9  | octet-string          | bytes                           | bytes                       |
# | 10  | visible-string        | str (latin-1: never fails)      | Typed(tag, str)             |
# | 12  | utf8-string           | str (bad UTF-8 is a FrameError) | Typed(tag, str)             |
# | 23,24 | float32/float64     | float                           | Typed(tag, float)           |
# | 19  | compact-array         | list of plain values            | CompactArray                |
# | 25  | date-time             | ClockDateTime if fully          | CosemDateTime (raw fields)  |
# |     |                       | specified, else CosemDateTime   |                             |
# | 26  | date                  | datetime.date or CosemDate      | CosemDate                   |
# | 27  | time                  | datetime.time or CosemTime      | CosemTime                   |
# | 255 | don't-care            | DONT_CARE                       | DONT_CARE                   |
#
# `encode()` takes the decode_typed() forms, plus plain None, bool, bytes,
# list (array), tuple (structure), str (visible-string when ASCII, else
# utf8-string) and datetime/date/time. Plain int and float are refused: their
# width is not obvious, wrap them in Typed.
#
# Date and time (Blue Book §4.1.6.1): the 12 octets of a date-time are
# year (uint16, 0xFFFF not specified), month (1..12, 0xFD daylight saving
# end, 0xFE daylight saving begin, 0xFF), day of month (1..31, 0xFD second
# last day, 0xFE last day, 0xFF), day of week (1 = Monday .. 7, 0xFF), hour,
# minute, second, hundredths (0xFF each = not specified), deviation (int16
# minutes, 0x8000 not specified) and clock status (bits below, 0xFF not
# specified).
#
# Deviation sign: we follow the Blue Book's definition "deviation in minutes
# of local time to UTC" as the DLMS world reads it, deviation = UTC - local
# time, so CET (UTC+01:00) is sent as -60 and UTC offset = -deviation. This is
# what gurux-dlms does by default (its `useUtc2NormalTime` switch flips it for
# meters configured the other way) and what the vectors show: Swedish and
# Norwegian meters (dlms-cosem test_parsers, Kaifa SE list) send 0xFFC4 = -60.
#
# A date-time becomes a `ClockDateTime` (a `datetime` subclass, timezone-aware,
# with `clock_status`) when year, month, day, hour, minute, second and
# deviation are all specified and valid; an unspecified day of week or
# hundredths does not prevent it (hundredths 0xFF reads as 0). Anything else
# (wildcards, DST/last-day markers, out-of-range fields) becomes a
# `CosemDateTime` holding the raw fields: never an error.
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from enum import Enum, IntEnum, IntFlag
from typing import NamedTuple

__all__ = [
    "DEVIATION_NOT_SPECIFIED",
    "DONT_CARE",
    "NOT_SPECIFIED",
    "YEAR_NOT_SPECIFIED",
    "BitString",
    "CaptureColumns",
    "ClockDateTime",
    "ClockStatus",
    "CompactArray",
    "CosemDate",
    "CosemDateTime",
    "CosemTime",
    "DontCare",
    "Tag",
    "TypeDescription",
    "Typed",
]

NOT_SPECIFIED = 0xFF
YEAR_NOT_SPECIFIED = 0xFFFF
DEVIATION_NOT_SPECIFIED = -0x8000  # 0x8000 read as int16
# Deviations we turn into a datetime.timezone: UTC-14:00..UTC+14:00, which
# covers every zone in use (the Blue Book's -720..720 is too narrow for Kiribati).
MAX_DEVIATION_MINUTES = 840


class Tag(IntEnum):
    """COSEM data type tags (Blue Book §4.1.5, the `Data` CHOICE)."""

    NULL_DATA = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5  # int32
    DOUBLE_LONG_UNSIGNED = 6  # uint32
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    BCD = 13
    INTEGER = 15  # int8
    LONG = 16  # int16
    UNSIGNED = 17  # uint8
    LONG_UNSIGNED = 18  # uint16
    COMPACT_ARRAY = 19
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27
    DONT_CARE = 255


class ClockStatus(IntFlag):
    """Clock status bits of a date-time (Blue Book §4.1.6.1); 0xFF = not specified."""

    INVALID_VALUE = 0x01
    DOUBTFUL_VALUE = 0x02
    DIFFERENT_CLOCK_BASE = 0x04
    INVALID_CLOCK_STATUS = 0x08
    DAYLIGHT_SAVING_ACTIVE = 0x80


class DontCare(Enum):
    """The don't-care value (tag 255), used in selective access filters."""

    DONT_CARE = "don't-care"


DONT_CARE = DontCare.DONT_CARE


@dataclass(frozen=True, slots=True)
class Typed:
    """A value with its COSEM type tag, for the types a Python value cannot tell.

    Args:
        tag: the COSEM type, e.g. Tag.DOUBLE_LONG_UNSIGNED.
        value: int for the integer types, enum and bcd; float for float32/64;
            str for the strings; bytes for octet-string; a list or tuple of
            values for array/structure.
    """

    tag: Tag
    value: object


@dataclass(frozen=True, slots=True)
class BitString:
    """A bit-string: `bit_count` bits, first bit in the high bit of data[0].

    The bits past `bit_count` in the last octet are kept as received.
    """

    bit_count: int
    data: bytes

    def bits(self) -> list[bool]:
        """The bits, first bit first."""
        return [bool(self.data[i >> 3] & (0x80 >> (i & 7))) for i in range(self.bit_count)]


@dataclass(frozen=True, slots=True)
class TypeDescription:
    """The type of a compact-array's elements (Blue Book §4.1.5, TypeDescription).

    A simple type has only `tag`; an array has `count` elements of type
    `elements[0]`; a structure has the member types in `elements`.
    """

    tag: Tag
    count: int = 0
    elements: tuple[TypeDescription, ...] = ()


@dataclass(frozen=True, slots=True)
class CompactArray:
    """A compact-array: its element type and the elements as raw values.

    The elements are the decode_typed() forms without Typed wrappers (the
    description gives the type): int, float, str, bytes, bool, BitString,
    CosemDateTime/CosemDate/CosemTime, list for arrays, tuple for structures.
    """

    description: TypeDescription
    elements: tuple[object, ...]


class ClockDateTime(_dt.datetime):
    """A fully specified COSEM date-time: an aware datetime plus its clock status.

    It is a `datetime` (compares, sorts and formats as one); `clock_status`
    holds the status octet (ClockStatus bits, 0xFF not specified).
    """

    clock_status: int = 0


@dataclass(frozen=True, slots=True)
class CosemDateTime:
    """The 12 raw fields of a COSEM date-time (Blue Book §4.1.6.1)."""

    year: int
    month: int
    day_of_month: int
    day_of_week: int
    hour: int
    minute: int
    second: int
    hundredths: int
    deviation_minutes: int  # UTC - local time; DEVIATION_NOT_SPECIFIED when absent
    clock_status: int

    def to_datetime(self) -> ClockDateTime | None:
        """The aware datetime this value names, or None if it has wildcards."""
        return datetime_from_fields(
            self.year,
            self.month,
            self.day_of_month,
            self.hour,
            self.minute,
            self.second,
            self.hundredths,
            self.deviation_minutes,
            self.clock_status,
        )

    @classmethod
    def from_datetime(cls, value: _dt.datetime, clock_status: int | None = None) -> CosemDateTime:
        """The raw fields of `value`: naive datetimes get an unspecified deviation.

        Args:
            value: the datetime; a ClockDateTime brings its clock status.
            clock_status: overrides the status (default: the ClockDateTime's, else 0).
        """
        offset = value.utcoffset()
        if offset is None:
            deviation = DEVIATION_NOT_SPECIFIED
        else:
            deviation = -int(offset.total_seconds() // 60)
        if clock_status is None:
            clock_status = getattr(value, "clock_status", 0)
        return cls(
            value.year,
            value.month,
            value.day,
            value.isoweekday(),
            value.hour,
            value.minute,
            value.second,
            value.microsecond // 10000,
            deviation,
            clock_status,
        )


@dataclass(frozen=True, slots=True)
class CosemDate:
    """The 5 raw fields of a COSEM date (Blue Book §4.1.6.1)."""

    year: int
    month: int
    day_of_month: int
    day_of_week: int

    def to_date(self) -> _dt.date | None:
        """The date this value names, or None if it has wildcards."""
        if self.year == YEAR_NOT_SPECIFIED or not (1 <= self.month <= 12):
            return None
        try:
            return _dt.date(self.year, self.month, self.day_of_month)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class CosemTime:
    """The 4 raw fields of a COSEM time (Blue Book §4.1.6.1)."""

    hour: int
    minute: int
    second: int
    hundredths: int

    def to_time(self) -> _dt.time | None:
        """The time this value names, or None if it has wildcards."""
        if self.hour > 23 or self.minute > 59 or self.second > 59:
            return None
        if self.hundredths == NOT_SPECIFIED:
            return _dt.time(self.hour, self.minute, self.second)
        if self.hundredths > 99:
            return None
        return _dt.time(self.hour, self.minute, self.second, self.hundredths * 10000)


class CaptureColumns(NamedTuple):
    """A profile-generic capture buffer, column by column.

    Attributes:
        columns: one list per capture object, `row_count` cells each.
        row_count: the number of rows (entries).
        end_offset: the offset just past the buffer in the input.
    """

    columns: list[list[object]]
    row_count: int
    end_offset: int


_TIMEZONES: dict[int, _dt.timezone] = {}


def timezone_for_deviation(deviation_minutes: int) -> _dt.timezone:
    """The fixed-offset timezone of a COSEM deviation (UTC offset = -deviation)."""
    zone = _TIMEZONES.get(deviation_minutes)
    if zone is None:
        zone = _dt.timezone(_dt.timedelta(minutes=-deviation_minutes))
        _TIMEZONES[deviation_minutes] = zone
    return zone


_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def datetime_from_fields(
    year: int,
    month: int,
    day: int,
    hour: int,
    minute: int,
    second: int,
    hundredths: int,
    deviation_minutes: int,
    clock_status: int,
) -> ClockDateTime | None:
    """A ClockDateTime from raw date-time fields, or None if any is unspecified or invalid."""
    if (
        not (1 <= year <= 9999)
        or not (1 <= month <= 12)
        or not (1 <= day <= _DAYS_IN_MONTH[month])
        or hour > 23
        or minute > 59
        or second > 59
        or (hundredths > 99 and hundredths != NOT_SPECIFIED)
        or not (-MAX_DEVIATION_MINUTES <= deviation_minutes <= MAX_DEVIATION_MINUTES)
    ):
        return None
    if month == 2 and day == 29 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        return None
    microsecond = 0 if hundredths == NOT_SPECIFIED else hundredths * 10000
    value = ClockDateTime(
        year,
        month,
        day,
        hour,
        minute,
        second,
        microsecond,
        tzinfo=timezone_for_deviation(deviation_minutes),
    )
    if clock_status:
        value.clock_status = clock_status
    return value
