# OBIS codes (IEC 62056-61): the compiled twin.
#
# Same API, results and errors as fastcodec/_obis_py.py, which documents the
# text forms, the letter groups and the layout rules. The scan runs over the
# str's code points into fixed C arrays (the text is at most MAX_TEXT_CHARS
# long, so at most 33 groups and 32 separators), then matches the separator
# sequence against the same layout table.
# cython: language_level=3

from fastcodec._obis_types import WELL_KNOWN_OBIS, Obis, ObisInfo
from fastcodec.exceptions import EncodeError, FrameError

__all__ = [
    "MAX_TEXT_CHARS",
    "WELL_KNOWN_OBIS",
    "Obis",
    "ObisInfo",
    "describe_obis",
    "format_obis",
    "obis_from_bytes",
    "obis_to_bytes",
    "parse_obis",
]

MAX_TEXT_CHARS = 64
cdef enum:
    _MAX_CHARS = 64
    _MAX_GROUPS = 33

_SLOT_NAMES = "ABCDEF"

# (separators, slots): each separator entry lists the characters allowed there.
_LAYOUTS = (
    (("-", ":", ".", "."), (0, 1, 2, 3, 4)),
    (("-", ":", ".", ".", "*.&"), (0, 1, 2, 3, 4, 5)),
    (("-", ":", "."), (0, 1, 2, 3)),
    ((".", "."), (2, 3, 4)),
    ((".", ".", "*&"), (2, 3, 4, 5)),
    ((".",), (2, 3)),
    ((".", ".", ".", ".", "."), (0, 1, 2, 3, 4, 5)),
)


cdef inline int _letter_value(Py_UCS4 char) noexcept:
    if char == u"C":
        return 96
    if char == u"F":
        return 97
    if char == u"L":
        return 98
    if char == u"P":
        return 99
    return -1


cdef inline bint _is_hex(Py_UCS4 char) noexcept:
    return (u"0" <= char <= u"9") or (u"a" <= char <= u"f") or (u"A" <= char <= u"F")


cdef tuple _match_layout(list separator_chars, list separator_positions, Py_ssize_t length):
    cdef list candidates = list(_LAYOUTS)
    cdef Py_ssize_t index
    for index in range(len(separator_chars)):
        char = separator_chars[index]
        candidates = [
            layout for layout in candidates
            if index < len(layout[0]) and char in layout[0][index]
        ]
        if not candidates:
            raise FrameError(
                f"separator {char!r} is not expected here in an OBIS code",
                separator_positions[index],
            )
    for layout_separators, slots in candidates:
        if len(layout_separators) == len(separator_chars):
            return slots
    raise FrameError("OBIS code is incomplete or ambiguous (e.g. 4 or 5 dotted groups)", length)


def parse_obis(str text not None, int default_a=1, int default_b=0):
    """Parse an OBIS code in any of its common text forms (see _obis_py)."""
    cdef Py_ssize_t length = len(text)
    cdef Py_ssize_t position = 0, start, index
    cdef Py_ssize_t group_count = 0
    cdef int value, letter
    cdef int group_values[_MAX_GROUPS]
    cdef bint group_is_letter[_MAX_GROUPS]
    cdef int group_positions[_MAX_GROUPS]
    cdef Py_UCS4 char
    cdef list separator_chars = []
    cdef list separator_positions = []
    cdef int values[6]
    if not (0 <= default_a <= 255 and 0 <= default_b <= 255):
        raise ValueError("default_a and default_b must be in 0..255")
    if length == 0:
        raise FrameError("empty OBIS code", 0)
    if length > _MAX_CHARS:
        raise FrameError(f"OBIS code text longer than {MAX_TEXT_CHARS} characters", MAX_TEXT_CHARS)
    if length == 12:
        for index in range(12):
            if not _is_hex(text[index]):
                break
        else:
            raw = bytes.fromhex(text)
            return Obis(raw[0], raw[1], raw[2], raw[3], raw[4], raw[5])
    while True:
        if position >= length:
            where = separator_chars[-1] if separator_chars else ""
            raise FrameError(f"OBIS code ends where a value group should follow {where!r}", length)
        start = position
        char = text[position]
        if u"0" <= char <= u"9":
            value = 0
            while position < length and u"0" <= text[position] <= u"9":
                if position - start == 3:
                    raise FrameError("OBIS value group longer than 3 digits", position)
                value = value * 10 + <int>text[position] - 48
                position += 1
            if value > 255:
                raise FrameError(f"OBIS value group {value} is out of range 0..255", start)
            letter = 0
        else:
            value = _letter_value(char)
            if value < 0:
                raise FrameError(
                    f"unexpected character {char!r} in OBIS code: expected a digit or "
                    "one of the letters C, F, L, P",
                    position,
                )
            letter = 1
            position += 1
        # At most 64 characters, two per group: group_count stays below 33.
        group_values[group_count] = value
        group_is_letter[group_count] = letter
        group_positions[group_count] = <int>start
        group_count += 1
        if position == length:
            break
        char = text[position]
        if char not in u"-:.*&":
            raise FrameError(f"unexpected character {char!r} after an OBIS value group", position)
        separator_chars.append(char)
        separator_positions.append(position)
        position += 1
    slots = _match_layout(separator_chars, separator_positions, length)
    values[0] = default_a
    values[1] = default_b
    values[2] = -1
    values[3] = -1
    values[4] = 0
    values[5] = 255
    for index in range(group_count):
        slot = slots[index]
        if group_is_letter[index] and slot not in (2, 3):
            raise FrameError(
                f"letter {text[group_positions[index]]!r} is only allowed in value groups "
                f"C and D, not in {_SLOT_NAMES[slot]}",
                group_positions[index],
            )
        values[slot] = group_values[index]
    return Obis(values[0], values[1], values[2], values[3], values[4], values[5])


cdef tuple _checked(code):
    if len(code) != 6:
        raise EncodeError(f"an OBIS code has 6 value groups, not {len(code)}")
    for index, value in enumerate(code):
        if not isinstance(value, int) or not 0 <= value <= 255:
            raise EncodeError(f"OBIS value group {_SLOT_NAMES[index]} = {value!r} is not 0..255")
    return (code[0], code[1], code[2], code[3], code[4], code[5])


def format_obis(code):
    """Write an OBIS code in its canonical text form ("A-B:C.D.E" or "A-B:C.D.E*F")."""
    a, b, c, d, e, f = _checked(code)
    text = f"{a}-{b}:{c}.{d}.{e}"
    return text if f == 255 else f"{text}*{f}"


def obis_to_bytes(code):
    """The 6-byte DLMS logical name of an OBIS code (bytes A B C D E F)."""
    return bytes(_checked(code))


def obis_from_bytes(data):
    """Decode a 6-byte DLMS logical name."""
    cdef bytes raw = bytes(memoryview(data))
    if len(raw) != 6:
        raise FrameError(f"an OBIS logical name is 6 bytes, not {len(raw)}", min(len(raw), 6))
    return Obis(raw[0], raw[1], raw[2], raw[3], raw[4], raw[5])


def describe_obis(code):
    """Name and usual unit of a well-known OBIS code, or None for others."""
    try:
        key = Obis(*_checked(code))
    except EncodeError:
        return None
    return WELL_KNOWN_OBIS.get(key)
