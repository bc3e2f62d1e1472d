# A-XDR encoding of COSEM data: the pure-Python reference twin.
#
# Spec: IEC 62056-6-2 / DLMS UA Blue Book §4.1.5 (the `Data` CHOICE: common
# data types and their tags), §4.1.6.1 (date and time formats); A-XDR rules of
# IEC 61334-6 as applied by the DLMS UA Green Book §9.5: a tag octet, then
# fixed-size big-endian contents, or a length and contents for the strings,
# or an element count and the elements for array and structure. Lengths and
# counts use the variable-length form: 0x00..0x7F in one octet, else 0x8N
# followed by N (1..4) octets big-endian.
#
# Strategy: one recursive descent over an immutable `bytes`, offsets passed
# along, no copies but the final value slices. The value model (what each
# tag becomes, Typed wrappers, date-time sign convention) is documented in
# fastcodec/_axdr_types.py. `decode_capture_buffer` reads a profile-generic
# buffer (array of structure) straight into columns, and reads the 12-octet
# octet-strings meters send for the clock as date-times.
#
# Invariants (the compiled twin fastcodec/_axdr_c.pyx keeps the same):
# - any input gives a value or a CodecError; every length and count is checked
#   against the remaining input before anything is allocated for it (each
#   element takes at least one octet, so count <= remaining octets);
# - nesting deeper than MAX_DEPTH arrays/structures is a FrameError;
# - compact-array element types that take no octets are refused, so a short
#   input cannot make a long list;
# - FrameError.offset is the offset of the offending octet in the input.
from __future__ import annotations

import datetime as _dt
import struct
from collections.abc import Iterable
from typing import Any

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
    Typed,
    TypeDescription,
    datetime_from_fields,
)
from fastcodec.exceptions import EncodeError, FrameError

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

# Arrays/structures nested deeper than this are refused (a meter's deepest
# real value, a profile buffer of structures of scaler-units, is 3).
MAX_DEPTH = 16

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_DATE_TIME = struct.Struct(">HBBBBBBBhB")
_DATE = struct.Struct(">HBBB")
_TIME = struct.Struct(">BBBB")

# Fixed-size scalar tags: (contents size, struct).
_FIXED: dict[int, tuple[int, struct.Struct]] = {
    Tag.DOUBLE_LONG: (4, _I32),
    Tag.DOUBLE_LONG_UNSIGNED: (4, _U32),
    Tag.INTEGER: (1, _I8),
    Tag.LONG: (2, _I16),
    Tag.LONG_UNSIGNED: (2, _U16),
    Tag.LONG64: (8, _I64),
    Tag.LONG64_UNSIGNED: (8, _U64),
    Tag.FLOAT32: (4, _F32),
    Tag.FLOAT64: (8, _F64),
}
_ONE_OCTET_INTS = (Tag.UNSIGNED, Tag.ENUM, Tag.BCD)
_INT_RANGES: dict[int, tuple[int, int]] = {
    Tag.DOUBLE_LONG: (-(2**31), 2**31 - 1),
    Tag.DOUBLE_LONG_UNSIGNED: (0, 2**32 - 1),
    Tag.INTEGER: (-128, 127),
    Tag.LONG: (-(2**15), 2**15 - 1),
    Tag.LONG_UNSIGNED: (0, 2**16 - 1),
    Tag.LONG64: (-(2**63), 2**63 - 1),
    Tag.LONG64_UNSIGNED: (0, 2**64 - 1),
    Tag.UNSIGNED: (0, 255),
    Tag.ENUM: (0, 255),
    Tag.BCD: (0, 255),
}
_KNOWN_TAGS = frozenset(int(tag) for tag in Tag)
# Contents size of each type inside a compact-array (variable ones: their
# length octet, the least they take).
_MIN_SIZE = {
    Tag.NULL_DATA: 0,
    Tag.BOOLEAN: 1,
    Tag.BIT_STRING: 1,
    Tag.OCTET_STRING: 1,
    Tag.VISIBLE_STRING: 1,
    Tag.UTF8_STRING: 1,
    Tag.BCD: 1,
    Tag.UNSIGNED: 1,
    Tag.ENUM: 1,
    Tag.DATE_TIME: 12,
    Tag.DATE: 5,
    Tag.TIME: 4,
    Tag.DONT_CARE: 0,
    **{tag: size for tag, (size, _) in _FIXED.items()},
}

_Bytes = bytes | bytearray | memoryview


# --- decoding -----------------------------------------------------------------


def _need(end: int, offset: int, size: int, what: str) -> None:
    if size > end - offset:
        raise FrameError(f"{what} needs {size} octets, {end - offset} left", offset)


def _read_length(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """An A-XDR length or count at `offset`: (value, offset after it)."""
    if offset >= end:
        raise FrameError("length expected, input ends", offset)
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    size = first & 0x7F
    if size == 0 or size > 4:
        raise FrameError(f"length form 0x{first:02X} not supported (1..4 length octets)", offset)
    _need(end, offset + 1, size, "length")
    return int.from_bytes(data[offset + 1 : offset + 1 + size], "big"), offset + 1 + size


def _read_count(data: bytes, offset: int, end: int, what: str) -> tuple[int, int]:
    count, after = _read_length(data, offset, end)
    # Every element takes at least one octet: a larger count cannot be true.
    if count > end - after:
        raise FrameError(f"{what} of {count} elements, only {end - after} octets left", offset)
    return count, after


def _read_sized(data: bytes, offset: int, end: int, what: str) -> tuple[bytes, int]:
    length, start = _read_length(data, offset, end)
    if length > end - start:
        raise FrameError(f"{what} of {length} octets, only {end - start} left", offset)
    return data[start : start + length], start + length


def _date_time(data: bytes, offset: int, raw: bool) -> object:
    fields = _DATE_TIME.unpack_from(data, offset)
    if not raw:
        year, month, day, _, hour, minute, second, hundredths, deviation, status = fields
        value = datetime_from_fields(
            year, month, day, hour, minute, second, hundredths, deviation, status
        )
        if value is not None:
            return value
    return CosemDateTime(*fields)


def _date(data: bytes, offset: int, raw: bool) -> object:
    value = CosemDate(*_DATE.unpack_from(data, offset))
    if not raw:
        plain = value.to_date()
        if plain is not None:
            return plain
    return value


def _time(data: bytes, offset: int, raw: bool) -> object:
    value = CosemTime(*_TIME.unpack_from(data, offset))
    if not raw:
        plain = value.to_time()
        if plain is not None:
            return plain
    return value


def _bit_string(data: bytes, offset: int, end: int) -> tuple[BitString, int]:
    bit_count, start = _read_length(data, offset, end)
    size = (bit_count + 7) >> 3
    if size > end - start:
        raise FrameError(f"bit-string of {bit_count} bits, only {end - start} octets left", offset)
    return BitString(bit_count, data[start : start + size]), start + size


def _utf8(octets: bytes, offset: int) -> str:
    try:
        return octets.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError("utf8-string is not valid UTF-8", offset) from exc


def _decode(data: bytes, offset: int, end: int, depth: int, typed: bool) -> tuple[object, int]:
    """One tagged Data value at `offset`: (value, offset after it)."""
    if offset >= end:
        raise FrameError("data type tag expected, input ends", offset)
    tag = data[offset]
    start = offset + 1
    fixed = _FIXED.get(tag)
    if fixed is not None:
        size, unpacker = fixed
        _need(end, start, size, Tag(tag).name.lower())
        number = unpacker.unpack_from(data, start)[0]
        return (Typed(Tag(tag), number) if typed else number), start + size
    if tag in _ONE_OCTET_INTS:
        _need(end, start, 1, Tag(tag).name.lower())
        return (Typed(Tag(tag), data[start]) if typed else data[start]), start + 1
    if tag == Tag.OCTET_STRING:
        return _read_sized(data, start, end, "octet-string")
    if tag == Tag.STRUCTURE or tag == Tag.ARRAY:
        if depth >= MAX_DEPTH:
            raise FrameError(f"data nested deeper than {MAX_DEPTH} levels", offset)
        count, position = _read_count(data, start, end, Tag(tag).name.lower())
        elements = []
        for _ in range(count):
            element, position = _decode(data, position, end, depth + 1, typed)
            elements.append(element)
        return (tuple(elements) if tag == Tag.STRUCTURE else elements), position
    if tag == Tag.NULL_DATA:
        return None, start
    if tag == Tag.BOOLEAN:
        _need(end, start, 1, "boolean")
        return data[start] != 0, start + 1
    if tag == Tag.VISIBLE_STRING or tag == Tag.UTF8_STRING:
        octets, after = _read_sized(data, start, end, Tag(tag).name.lower())
        text = octets.decode("latin-1") if tag == Tag.VISIBLE_STRING else _utf8(octets, start)
        return (Typed(Tag(tag), text) if typed else text), after
    if tag == Tag.DATE_TIME:
        _need(end, start, 12, "date-time")
        return _date_time(data, start, typed), start + 12
    if tag == Tag.DATE:
        _need(end, start, 5, "date")
        return _date(data, start, typed), start + 5
    if tag == Tag.TIME:
        _need(end, start, 4, "time")
        return _time(data, start, typed), start + 4
    if tag == Tag.BIT_STRING:
        return _bit_string(data, start, end)
    if tag == Tag.COMPACT_ARRAY:
        return _compact_array(data, start, end, depth, typed)
    if tag == Tag.DONT_CARE:
        return DONT_CARE, start
    raise FrameError(f"unknown data type tag 0x{tag:02X}", offset)


# --- compact-array ------------------------------------------------------------


def _type_description(
    data: bytes, offset: int, end: int, depth: int
) -> tuple[TypeDescription, int, int]:
    """A TypeDescription at `offset`: (description, least contents size, offset after)."""
    if depth >= MAX_DEPTH:
        raise FrameError(f"type description nested deeper than {MAX_DEPTH} levels", offset)
    if offset >= end:
        raise FrameError("type description expected, input ends", offset)
    tag = data[offset]
    if tag == Tag.ARRAY:
        _need(end, offset + 1, 2, "array type description")
        count = _U16.unpack_from(data, offset + 1)[0]
        element, element_size, after = _type_description(data, offset + 3, end, depth + 1)
        if element_size == 0 and count:
            raise FrameError("compact-array of elements that take no octets", offset)
        return TypeDescription(Tag.ARRAY, count, (element,)), count * element_size, after
    if tag == Tag.STRUCTURE:
        count, position = _read_count(data, offset + 1, end, "structure type description")
        members = []
        total = 0
        for _ in range(count):
            member, member_size, position = _type_description(data, position, end, depth + 1)
            members.append(member)
            total += member_size
        return TypeDescription(Tag.STRUCTURE, count, tuple(members)), total, position
    size = _MIN_SIZE.get(tag) if tag in _KNOWN_TAGS else None
    if size is None:
        raise FrameError(f"type 0x{tag:02X} not allowed in a compact-array description", offset)
    return TypeDescription(Tag(tag)), size, offset + 1


def _decode_untagged(
    description: TypeDescription, data: bytes, offset: int, end: int, raw: bool
) -> tuple[object, int]:
    """One compact-array element of type `description`, its tag left out."""
    tag = description.tag
    if tag == Tag.ARRAY or tag == Tag.STRUCTURE:
        members = (
            description.elements * description.count if tag == Tag.ARRAY else description.elements
        )
        values = []
        for member in members:
            value, offset = _decode_untagged(member, data, offset, end, raw)
            values.append(value)
        return (values if tag == Tag.ARRAY else tuple(values)), offset
    fixed = _FIXED.get(tag)
    if fixed is not None:
        size, unpacker = fixed
        _need(end, offset, size, tag.name.lower())
        return unpacker.unpack_from(data, offset)[0], offset + size
    if tag in _ONE_OCTET_INTS:
        _need(end, offset, 1, tag.name.lower())
        return data[offset], offset + 1
    if tag == Tag.BOOLEAN:
        _need(end, offset, 1, "boolean")
        return data[offset] != 0, offset + 1
    if tag == Tag.OCTET_STRING:
        return _read_sized(data, offset, end, "octet-string")
    if tag == Tag.VISIBLE_STRING:
        octets, after = _read_sized(data, offset, end, "visible-string")
        return octets.decode("latin-1"), after
    if tag == Tag.UTF8_STRING:
        octets, after = _read_sized(data, offset, end, "utf8-string")
        return _utf8(octets, offset), after
    if tag == Tag.BIT_STRING:
        return _bit_string(data, offset, end)
    if tag == Tag.DATE_TIME:
        _need(end, offset, 12, "date-time")
        return _date_time(data, offset, raw), offset + 12
    if tag == Tag.DATE:
        _need(end, offset, 5, "date")
        return _date(data, offset, raw), offset + 5
    if tag == Tag.TIME:
        _need(end, offset, 4, "time")
        return _time(data, offset, raw), offset + 4
    if tag == Tag.NULL_DATA:
        return None, offset
    return DONT_CARE, offset  # the description parser lets nothing else through


def _compact_array(
    data: bytes, offset: int, end: int, depth: int, typed: bool
) -> tuple[object, int]:
    description, element_size, position = _type_description(data, offset, end, depth + 1)
    if element_size == 0:
        raise FrameError("compact-array of elements that take no octets", offset)
    length, contents_start = _read_length(data, position, end)
    if length > end - contents_start:
        raise FrameError(
            f"compact-array contents of {length} octets, {end - contents_start} left", position
        )
    contents_end = contents_start + length
    elements = []
    position = contents_start
    while position < contents_end:
        element, position = _decode_untagged(description, data, position, contents_end, typed)
        elements.append(element)
    if typed:
        return CompactArray(description, tuple(elements)), contents_end
    return elements, contents_end


def _as_bytes(data: _Bytes) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"a bytes-like object is required, not {type(data).__name__}")


def _check_offset(data: bytes, offset: int) -> None:
    if not 0 <= offset <= len(data):
        raise FrameError(f"offset {offset} outside the {len(data)}-octet input", None)


def decode_from(data: _Bytes, offset: int = 0) -> tuple[object, int]:
    """Decode one A-XDR Data value starting at `offset`.

    Args:
        data: the input, e.g. a GET response's contents.
        offset: where the value's tag octet is.

    Returns:
        (value, offset just past it); values as described in fastcodec._axdr_types.

    Raises:
        FrameError: the value is truncated, malformed, or nested too deep.
    """
    data = _as_bytes(data)
    _check_offset(data, offset)
    return _decode(data, offset, len(data), 0, False)


def decode(data: _Bytes) -> object:
    """Decode one complete A-XDR Data value; the whole input must be that value.

    Raises:
        FrameError: malformed value, or octets left after it.
    """
    data = _as_bytes(data)
    value, end = _decode(data, 0, len(data), 0, False)
    if end != len(data):
        raise FrameError(f"{len(data) - end} octets after the value", end)
    return value


def decode_typed_from(data: _Bytes, offset: int = 0) -> tuple[object, int]:
    """Like decode_from, but keeping every type tag (Typed, CosemDateTime…).

    `encode()` of the result gives back the same octets for canonical input.
    """
    data = _as_bytes(data)
    _check_offset(data, offset)
    return _decode(data, offset, len(data), 0, True)


def decode_typed(data: _Bytes) -> object:
    """Like decode, but keeping every type tag: encode(decode_typed(b)) == b.

    Raises:
        FrameError: malformed value, or octets left after it.
    """
    data = _as_bytes(data)
    value, end = _decode(data, 0, len(data), 0, True)
    if end != len(data):
        raise FrameError(f"{len(data) - end} octets after the value", end)
    return value


def decode_date_time(data: _Bytes) -> ClockDateTime | CosemDateTime:
    """Read the 12 octets of a COSEM date-time (e.g. an octet-string clock value).

    Returns:
        A ClockDateTime when fully specified, else a CosemDateTime.

    Raises:
        FrameError: the input is not 12 octets long.
    """
    data = _as_bytes(data)
    if len(data) != 12:
        raise FrameError(f"a date-time is 12 octets, not {len(data)}", 0)
    value = _date_time(data, 0, False)
    assert isinstance(value, ClockDateTime | CosemDateTime)
    return value


def decode_capture_buffer(data: _Bytes, offset: int = 0) -> CaptureColumns:
    """Decode a profile-generic buffer (array of structure) into columns.

    Octet-strings of exactly 12 octets are read as COSEM date-times (meters
    send the clock column that way); a null-data cell (a compressed clock or
    value) gives None.

    Args:
        data: the input; octets after the buffer are left alone.
        offset: where the array tag is.

    Returns:
        CaptureColumns(columns, row_count, end_offset).

    Raises:
        FrameError: not an array of structures of equal width, or malformed.
    """
    data = _as_bytes(data)
    _check_offset(data, offset)
    end = len(data)
    if offset >= end or data[offset] != Tag.ARRAY:
        raise FrameError("capture buffer must be an array", offset)
    row_count, position = _read_count(data, offset + 1, end, "capture buffer")
    columns: list[list[object]] = []
    for row in range(row_count):
        if position >= end or data[position] != Tag.STRUCTURE:
            raise FrameError(f"capture buffer row {row} is not a structure", position)
        width, position = _read_count(data, position + 1, end, "capture buffer row")
        if row == 0:
            # Every cell takes an octet: refuse a rows x width that the input
            # cannot hold (the compiled twin preallocates the columns).
            if width * row_count > end - position:
                raise FrameError(
                    f"capture buffer of {row_count} rows x {width} cells, "
                    f"only {end - position} octets left",
                    position,
                )
            columns = [[] for _ in range(width)]
        elif width != len(columns):
            raise FrameError(
                f"capture buffer row {row} has {width} cells, row 0 has {len(columns)}", position
            )
        for column in columns:
            if position + 14 <= end and data[position] == 9 and data[position + 1] == 12:
                column.append(_date_time(data, position + 2, False))
                position += 14
            else:
                value, position = _decode(data, position, end, 2, False)
                column.append(value)
    return CaptureColumns(columns, row_count, position)


# --- encoding -----------------------------------------------------------------


def _encode_length(length: int, out: bytearray) -> None:
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


def _check_range(tag: Tag, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise EncodeError(f"{tag.name.lower()} needs an int, not {type(value).__name__}")
    low, high = _INT_RANGES[tag]
    if not low <= value <= high:
        raise EncodeError(f"{value} outside {tag.name.lower()} range {low}..{high}")
    return value


def _pack_fields(packer: struct.Struct, fields: Iterable[int], what: str) -> bytes:
    try:
        return packer.pack(*fields)
    except struct.error as exc:
        raise EncodeError(f"{what} field out of range: {exc}") from exc


def _date_time_octets(value: CosemDateTime | _dt.datetime) -> bytes:
    if isinstance(value, _dt.datetime):
        value = CosemDateTime.from_datetime(value)
    return _pack_fields(
        _DATE_TIME,
        (
            value.year,
            value.month,
            value.day_of_month,
            value.day_of_week,
            value.hour,
            value.minute,
            value.second,
            value.hundredths,
            value.deviation_minutes,
            value.clock_status,
        ),
        "date-time",
    )


def _date_octets(value: CosemDate | _dt.date) -> bytes:
    if not isinstance(value, CosemDate):
        value = CosemDate(value.year, value.month, value.day, value.isoweekday())
    fields = (value.year, value.month, value.day_of_month, value.day_of_week)
    return _pack_fields(_DATE, fields, "date")


def _time_octets(value: CosemTime | _dt.time) -> bytes:
    if not isinstance(value, CosemTime):
        value = CosemTime(value.hour, value.minute, value.second, value.microsecond // 10000)
    fields = (value.hour, value.minute, value.second, value.hundredths)
    return _pack_fields(_TIME, fields, "time")


def _encode_text(tag: Tag, text: object, out: bytearray) -> None:
    if not isinstance(text, str):
        raise EncodeError(f"{tag.name.lower()} needs a str, not {type(text).__name__}")
    try:
        octets = text.encode("latin-1" if tag == Tag.VISIBLE_STRING else "utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{tag.name.lower()} cannot hold {text!r}") from exc
    out.append(tag)
    _encode_length(len(octets), out)
    out += octets


def _encode_sequence(tag: Tag, elements: object, out: bytearray, depth: int) -> None:
    if not isinstance(elements, list | tuple):
        raise EncodeError(f"{tag.name.lower()} needs a list or tuple")
    if depth >= MAX_DEPTH:
        raise EncodeError(f"data nested deeper than {MAX_DEPTH} levels")
    out.append(tag)
    _encode_length(len(elements), out)
    for element in elements:
        _encode(element, out, depth + 1)


def _encode_typed(item: Typed, out: bytearray, depth: int) -> None:
    tag = item.tag
    value = item.value
    if tag not in _KNOWN_TAGS:
        raise EncodeError(f"unknown data type tag {tag!r}")
    tag = Tag(tag)
    fixed = _FIXED.get(tag)
    if fixed is not None and tag in (Tag.FLOAT32, Tag.FLOAT64):
        if not isinstance(value, float | int) or isinstance(value, bool):
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
    if tag == Tag.VISIBLE_STRING or tag == Tag.UTF8_STRING:
        _encode_text(tag, value, out)
    elif tag == Tag.ARRAY or tag == Tag.STRUCTURE:
        _encode_sequence(tag, value, out, depth)
    else:
        # Self-describing payloads (bytes, bool, BitString, dates...) with
        # a tag that must agree with them.
        before = len(out)
        _encode(value, out, depth, tag)
        if len(out) == before or out[before] != tag:
            del out[before:]
            raise EncodeError(f"value {value!r} cannot be encoded as {tag.name.lower()}")


def _encode_compact_description(description: TypeDescription, out: bytearray, depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise EncodeError(f"type description nested deeper than {MAX_DEPTH} levels")
    tag = description.tag
    out.append(tag)
    if tag == Tag.ARRAY:
        if len(description.elements) != 1 or not 0 <= description.count <= 0xFFFF:
            raise EncodeError("array type description needs one element type and count 0..65535")
        out += _U16.pack(description.count)
        _encode_compact_description(description.elements[0], out, depth + 1)
    elif tag == Tag.STRUCTURE:
        _encode_length(len(description.elements), out)
        for member in description.elements:
            _encode_compact_description(member, out, depth + 1)
    elif tag not in _MIN_SIZE:
        raise EncodeError(f"type {tag!r} not allowed in a compact-array description")


def _encode_untagged(description: TypeDescription, value: object, out: bytearray) -> None:
    tag = description.tag
    if tag == Tag.ARRAY or tag == Tag.STRUCTURE:
        members = (
            description.elements * description.count if tag == Tag.ARRAY else description.elements
        )
        if not isinstance(value, list | tuple) or len(value) != len(members):
            raise EncodeError(f"compact-array element {value!r} does not match its description")
        for member, element in zip(members, value, strict=True):
            _encode_untagged(member, element, out)
        return
    if tag == Tag.NULL_DATA or tag == Tag.DONT_CARE:
        return
    before = len(out)
    if tag in _INT_RANGES or tag in (Tag.FLOAT32, Tag.FLOAT64, Tag.VISIBLE_STRING, Tag.UTF8_STRING):
        _encode_typed(Typed(tag, value), out, MAX_DEPTH)
    else:
        _encode(value, out, MAX_DEPTH, tag)
    if len(out) == before or out[before] != tag:
        del out[before:]
        raise EncodeError(f"compact-array element {value!r} is not a {tag.name.lower()}")
    del out[before]  # contents only: the description gives the type


def _encode_compact_array(value: CompactArray, out: bytearray) -> None:
    out.append(Tag.COMPACT_ARRAY)
    _encode_compact_description(value.description, out, 0)
    contents = bytearray()
    for element in value.elements:
        _encode_untagged(value.description, element, contents)
    _encode_length(len(contents), out)
    out += contents


def _encode(value: Any, out: bytearray, depth: int, expected: Tag | None = None) -> None:
    """Append the A-XDR encoding of `value`; `expected` is a Typed wrapper's tag."""
    if value is None:
        out.append(Tag.NULL_DATA)
    elif isinstance(value, Typed):
        _encode_typed(value, out, depth)
    elif isinstance(value, bool):
        out += b"\x03\x01" if value else b"\x03\x00"
    elif isinstance(value, bytes | bytearray | memoryview):
        out.append(Tag.OCTET_STRING)
        _encode_length(len(value), out)
        out += value
    elif isinstance(value, str):
        _encode_text(Tag.VISIBLE_STRING if value.isascii() else Tag.UTF8_STRING, value, out)
    elif isinstance(value, list):
        _encode_sequence(Tag.ARRAY, value, out, depth)
    elif isinstance(value, tuple):
        _encode_sequence(Tag.STRUCTURE, value, out, depth)
    elif isinstance(value, BitString):
        if len(value.data) != (value.bit_count + 7) >> 3:
            raise EncodeError(f"bit-string of {value.bit_count} bits needs ceil(bits/8) octets")
        out.append(Tag.BIT_STRING)
        _encode_length(value.bit_count, out)
        out += value.data
    elif isinstance(value, CosemDateTime | _dt.datetime):
        if expected == Tag.OCTET_STRING:  # a clock sent as a 12-octet octet-string
            out += b"\x09\x0c" + _date_time_octets(value)
        else:
            out.append(Tag.DATE_TIME)
            out += _date_time_octets(value)
    elif isinstance(value, CosemDate | _dt.date):
        out.append(Tag.DATE)
        out += _date_octets(value)
    elif isinstance(value, CosemTime | _dt.time):
        out.append(Tag.TIME)
        out += _time_octets(value)
    elif isinstance(value, CompactArray):
        _encode_compact_array(value, out)
    elif isinstance(value, DontCare):
        out.append(Tag.DONT_CARE)
    elif isinstance(value, int | float):
        raise EncodeError(
            f"{type(value).__name__} {value!r} has no obvious COSEM type: wrap it in Typed"
        )
    else:
        raise EncodeError(f"cannot encode {type(value).__name__} as COSEM data")


def encode(value: object) -> bytes:
    """Encode one COSEM Data value in A-XDR.

    Args:
        value: a decode_typed() value, or None, bool, bytes, str, list (array),
            tuple (structure), datetime/date/time, BitString, CompactArray,
            DONT_CARE; ints and floats wrapped in Typed(tag, number).

    Returns:
        The tagged A-XDR octets.

    Raises:
        EncodeError: a value out of its type's range, or of no COSEM type.
    """
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)
