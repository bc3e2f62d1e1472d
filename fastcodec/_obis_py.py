# OBIS codes (IEC 62056-61 object identification system): the pure-Python twin.
#
# An OBIS code is six value groups A-B:C.D.E*F, each 0..255 (IEC 62056-61 §4;
# DLMS UA 1000-1 "Blue Book" §7). On the wire (DLMS logical_name, A-XDR
# octet-string of size 6) it is the six bytes A B C D E F; in text it appears
# in several forms, all accepted by `parse_obis`:
#
#   1-0:1.8.0          A-B:C.D.E, F = 255 (not used)       canonical form
#   1-0:1.8.0*255      A-B:C.D.E*F (also & before F, the billing-period form
#   1-0:1.8.0.255      of IEC 62056-21 readouts, and . as some tools write)
#   1-0:96.1           A-B:C.D, E = 0 (reduced IEC 62056-21 identifiers)
#   1.8.0              C.D.E: A-B missing, taken from the caller (default 1-0)
#   1.8.0*2            C.D.E*F, A-B from the caller
#   F.F                C.D, E = 0, A-B from the caller
#   1.0.1.8.0.255      A.B.C.D.E.F, the dotted logical-name form of DLMS tools
#   0100010800FF       12 hex digits: the 6-byte logical name in hex
#
# Letters in value groups C and D stand for 96..99 (IEC 62056-61 §5.5 /
# reduced identifiers of IEC 62056-21): C = 96 general service entries,
# F = 97 error registers, L = 98 lists, P = 99 data profiles; e.g. C.1.0 is
# 96.1.0 (meter serial number) and F.F is 97.97.0 (error register).
# Uppercase only. 4 dotted groups ("1.8.0.255") and 5 dotted groups are
# refused: they are ambiguous (is the first group A or C?).
#
# Strategy: one left-to-right scan splits the text into groups (1..3 digits or
# one letter) and separators, remembering where each starts; the separator
# sequence is then matched against the layouts above. Every refusal is a
# FrameError naming the character position, so a technician can see which
# character of a config file or telegram line is wrong. The compiled twin
# (`_obis_c.pyx`) runs the same scan and gives the same results and errors.
#
# Invariants: text longer than MAX_TEXT_CHARS is refused before scanning;
# every group value is 0..255; `format_obis(parse_obis(s))` is the canonical
# form and `parse_obis(format_obis(c)) == c` for every code.
from __future__ import annotations

from collections.abc import Sequence

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

_LETTER_VALUES = {"C": 96, "F": 97, "L": 98, "P": 99}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_SLOT_A, _SLOT_B, _SLOT_C, _SLOT_D, _SLOT_E, _SLOT_F = range(6)
_SLOT_NAMES = "ABCDEF"

# Accepted layouts: the separators between groups, and the value group each
# group fills. A layout without A/B takes them from the caller; without E,
# E = 0; without F, F = 255.
_LAYOUTS: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...] = (
    (("-", ":", ".", "."), (0, 1, 2, 3, 4)),
    (("-", ":", ".", ".", "*.&"), (0, 1, 2, 3, 4, 5)),
    (("-", ":", "."), (0, 1, 2, 3)),
    ((".", "."), (2, 3, 4)),
    ((".", ".", "*&"), (2, 3, 4, 5)),
    ((".",), (2, 3)),
    ((".", ".", ".", ".", "."), (0, 1, 2, 3, 4, 5)),
)


def _scan(text: str) -> tuple[list[tuple[int, bool, int]], list[tuple[str, int]]]:
    """Split `text` into groups (value, is_letter, position) and separators."""
    groups: list[tuple[int, bool, int]] = []
    separators: list[tuple[str, int]] = []
    length = len(text)
    position = 0
    while True:
        if position >= length:
            where = separators[-1][0] if separators else ""
            raise FrameError(f"OBIS code ends where a value group should follow {where!r}", length)
        start = position
        char = text[position]
        if "0" <= char <= "9":
            value = 0
            while position < length and "0" <= text[position] <= "9":
                if position - start == 3:
                    raise FrameError("OBIS value group longer than 3 digits", position)
                value = value * 10 + ord(text[position]) - 48
                position += 1
            if value > 255:
                raise FrameError(f"OBIS value group {value} is out of range 0..255", start)
            groups.append((value, False, start))
        elif char in _LETTER_VALUES:
            groups.append((_LETTER_VALUES[char], True, start))
            position += 1
        else:
            raise FrameError(
                f"unexpected character {char!r} in OBIS code: expected a digit or "
                "one of the letters C, F, L, P",
                position,
            )
        if position == length:
            return groups, separators
        char = text[position]
        if char not in "-:.*&":
            raise FrameError(f"unexpected character {char!r} after an OBIS value group", position)
        separators.append((char, position))
        position += 1


def _match_layout(separators: list[tuple[str, int]], length: int) -> tuple[int, ...]:
    """Return the slots of the layout the separators follow, or refuse."""
    candidates = list(_LAYOUTS)
    for index, (char, position) in enumerate(separators):
        candidates = [
            layout for layout in candidates if index < len(layout[0]) and char in layout[0][index]
        ]
        if not candidates:
            raise FrameError(f"separator {char!r} is not expected here in an OBIS code", position)
    for layout_separators, slots in candidates:
        if len(layout_separators) == len(separators):
            return slots
    raise FrameError("OBIS code is incomplete or ambiguous (e.g. 4 or 5 dotted groups)", length)


def _parse_hex(text: str) -> Obis:
    raw = bytes.fromhex(text)
    return Obis(raw[0], raw[1], raw[2], raw[3], raw[4], raw[5])


def parse_obis(text: str, default_a: int = 1, default_b: int = 0) -> Obis:
    """Parse an OBIS code in any of its common text forms (see the module header).

    Args:
        text: e.g. "1-0:1.8.0", "1-0:1.8.0*255", "1.8.0", "0-0:C.1.0" or
            "0100010800FF".
        default_a: value group A when the text has no "A-B:" prefix.
        default_b: value group B when the text has no "A-B:" prefix.

    Returns:
        The code; F is 255 and E is 0 when the text leaves them out.

    Raises:
        FrameError: the text is not an OBIS code; `offset` is the position of
            the offending character.
        TypeError: `text` is not a str.
        ValueError: a default is outside 0..255.
    """
    if not isinstance(text, str):
        raise TypeError(f"OBIS text must be str, not {type(text).__name__}")
    if not (0 <= default_a <= 255 and 0 <= default_b <= 255):
        raise ValueError("default_a and default_b must be in 0..255")
    length = len(text)
    if length == 0:
        raise FrameError("empty OBIS code", 0)
    if length > MAX_TEXT_CHARS:
        raise FrameError(f"OBIS code text longer than {MAX_TEXT_CHARS} characters", MAX_TEXT_CHARS)
    if length == 12 and all(char in _HEX_DIGITS for char in text):
        return _parse_hex(text)
    groups, separators = _scan(text)
    slots = _match_layout(separators, length)
    values = [default_a, default_b, -1, -1, 0, 255]
    for (value, is_letter, position), slot in zip(groups, slots, strict=True):
        if is_letter and slot not in (_SLOT_C, _SLOT_D):
            raise FrameError(
                f"letter {text[position]!r} is only allowed in value groups C and D, "
                f"not in {_SLOT_NAMES[slot]}",
                position,
            )
        values[slot] = value
    return Obis(values[0], values[1], values[2], values[3], values[4], values[5])


def _checked(code: Sequence[int]) -> tuple[int, int, int, int, int, int]:
    if len(code) != 6:
        raise EncodeError(f"an OBIS code has 6 value groups, not {len(code)}")
    for index, value in enumerate(code):
        if not isinstance(value, int) or not 0 <= value <= 255:
            raise EncodeError(f"OBIS value group {_SLOT_NAMES[index]} = {value!r} is not 0..255")
    return code[0], code[1], code[2], code[3], code[4], code[5]


def format_obis(code: Sequence[int]) -> str:
    """Write an OBIS code in its canonical text form.

    Args:
        code: an `Obis` or any sequence of six ints 0..255.

    Returns:
        "A-B:C.D.E" when F is 255, else "A-B:C.D.E*F" (numbers, no letters).

    Raises:
        EncodeError: not six value groups, or one outside 0..255.
    """
    a, b, c, d, e, f = _checked(code)
    text = f"{a}-{b}:{c}.{d}.{e}"
    return text if f == 255 else f"{text}*{f}"


def obis_to_bytes(code: Sequence[int]) -> bytes:
    """The 6-byte DLMS logical name of an OBIS code (bytes A B C D E F).

    Raises:
        EncodeError: not six value groups, or one outside 0..255.
    """
    return bytes(_checked(code))


def obis_from_bytes(data: bytes | bytearray | memoryview) -> Obis:
    """Decode a 6-byte DLMS logical name (IEC 62056-62 logical_name attribute).

    Raises:
        FrameError: `data` is not exactly 6 bytes long.
    """
    raw = bytes(memoryview(data))
    if len(raw) != 6:
        raise FrameError(f"an OBIS logical name is 6 bytes, not {len(raw)}", min(len(raw), 6))
    return Obis(raw[0], raw[1], raw[2], raw[3], raw[4], raw[5])


def describe_obis(code: Sequence[int]) -> ObisInfo | None:
    """Name and usual unit of a well-known OBIS code, or None for others."""
    try:
        key = Obis(*_checked(code))
    except EncodeError:
        return None
    return WELL_KNOWN_OBIS.get(key)
