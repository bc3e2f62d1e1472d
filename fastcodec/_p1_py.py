# DSMR / e-MUCS P1 telegrams: the pure-Python reference twin.
#
# Spec: DSMR 5.0.2 P1 companion standard §6.2 (telegram format: the
# identification line `/XXXZ<ident>`, an empty line, data lines, the end line
# `!CRC`), §6.2 CRC-16 (poly x^16+x^15+x^2+1, reflected, init 0, over '/' to
# '!' inclusive, sent as 4 upper-case hex digits), §6.4 / §6.12 data objects
# (timestamps YYMMDDhhmmssX, M-Bus values, the power failure event log
# 1-0:99.97.0); Fluvius e-MUCS H 1.7.1 (monthly peak profile 0-0:98.1.0, peak
# demand 1-0:1.6.0); DSMR 2.2/3.0 (no CRC; the hourly gas value on the next
# line). The header is the identification message of IEC 62056-21:2002
# §6.3.2, the data lines the data sets of §6.3.4 (mode D pushes them).
# `fastcodec/_p1_c.pyx` implements the same API in Cython and must agree on
# every input (tests/property/fastcodec/test_p1_props.py).
#
# Strategy: sans-I/O. `TelegramSplitter` cuts the serial byte stream into
# telegrams ('/' .. '!' + up to 4 hex digits + CR LF); `parse_telegram`
# decodes one; `build_telegram` makes one (simulators, tests).
#
# What real meters do, and what we do about it:
# - Warmtelink sends the CRC as 3 hex digits ("!B9F"): 1 to 4 digits are
#   read as one 16-bit value (leading zeros dropped); lower case is accepted.
# - DSMR 2.2/3 telegrams and some gateways end in "!" alone: checksum_ok None.
# - EasyMeter Q3D gateways add a trailer after "!CR LF" (a counter line, a
#   text line, a run of 0xFF padding): kept in Telegram.trailer, outside the
#   CRC; the splitter skips it as garbage before the next '/'.
# - Landis+Gyr E360 captures may lack the final CR LF after the CRC: accepted.
# - The Iskra IE vector carries 0x02 where the meter sends the two characters
#   "\2" (an octal escape in the Python source it comes from), and its CRC was
#   computed over that 0x02: control characters in the identification are
#   kept as they are (only CR, LF, '/' and '!' are refused), so it parses and
#   its CRC checks; its `enhanced` is "" and its ident starts with "\x02".
# - Timestamps: S = summer = UTC+2, W = winter = UTC+1 (the Netherlands and
#   Belgium, Europe/Amsterdam and Europe/Brussels, share these offsets); YY
#   below 70 is 20YY, else 19YY (M-Bus devices send 700101010000W for "no
#   value yet"). Invalid dates give timestamp None, not an error.
#
# Invariants: any bytes give a Telegram or a CodecError (FrameError); text is
# latin-1 (never fails); numbers are checked before float(); the splitter
# holds at most max_telegram_bytes + 7 bytes and its output does not depend
# on how the stream was chunked.
from __future__ import annotations

from collections.abc import Sequence
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

_CR = 0x0D
_LF = 0x0A
_SLASH = 0x2F
_BANG = 0x21
_HEX_DIGITS = b"0123456789ABCDEFabcdef"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_OBIS_LETTERS = {"C": 96, "F": 97, "L": 98, "P": 99}
_PRINTABLE = "".join(chr(code) for code in range(0x20, 0x7F))
# (C, D) of the objects whose value is text even when it is all digits:
# equipment ids 96.1.x (hex-encoded), text messages 96.13.x, device address
# 0.0.x, logical device name 42.0.x.
_TEXT_OBJECTS = frozenset({(96, 1), (96, 13), (0, 0), (42, 0)})
_MAX_COUNT_DIGITS = 4

# CRC-16/ARC table (poly 0x8005 reflected = 0xA001, init 0): DSMR 5.0.2 §6.2.
_CRC_TABLE: list[int] = []
for _byte in range(256):
    _crc = _byte
    for _ in range(8):
        _crc = (_crc >> 1) ^ 0xA001 if _crc & 1 else _crc >> 1
    _CRC_TABLE.append(_crc)


def _crc16_arc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


# --- values ------------------------------------------------------------------------


def _decimal(text: str) -> float | None:
    """float(text) when text is [-]digits[.digits] (no exponent, inf, nan)."""
    start = 1 if text[:1] == "-" else 0
    digits = 0
    seen_dot = False
    for char in text[start:]:
        if "0" <= char <= "9":
            digits += 1
        elif char == "." and not seen_dot:
            seen_dot = True
        else:
            return None
    return float(text) if digits else None


def _all_digits(text: str) -> bool:
    return all("0" <= char <= "9" for char in text)


def _timestamp(text: str, allow_naive: bool) -> datetime | None:
    """YYMMDDhhmmssX (X = S or W) as an aware datetime; None when not one."""
    if len(text) == 13 and text[12] in "SW":
        zone = SUMMER_TIME if text[12] == "S" else WINTER_TIME
    elif len(text) == 12 and allow_naive:
        zone = None
    else:
        return None
    if not _all_digits(text[:12]):
        return None
    year = int(text[0:2])
    year += 2000 if year < 70 else 1900
    try:
        return datetime(
            year,
            int(text[2:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            tzinfo=zone,
        )
    except ValueError:  # month 25, hour 99: the meter's text, not our error
        return None


def _obis_group(text: str, letters: bool) -> int:
    """0..255, or -1 when text is not an OBIS value group."""
    if letters and len(text) == 1 and text in _OBIS_LETTERS:
        return _OBIS_LETTERS[text]
    if not 1 <= len(text) <= 3 or not _all_digits(text):
        return -1
    value = int(text)
    return value if value <= 255 else -1


def _obis(address: str) -> tuple[str, int, int, int] | None:
    """(OBIS text, B, C, D) of an address `[A-B:]C.D[.E][*F|&F]`, or None.

    Same rules as fastcodec._iec62056_21_py.normalise_obis.
    """
    medium, channel = 1, 0
    rest = address
    colon = address.find(":")
    if colon >= 0:
        prefix_a, dash, prefix_b = address[:colon].partition("-")
        medium = _obis_group(prefix_a, False)
        channel = _obis_group(prefix_b, False)
        if not dash or medium < 0 or channel < 0:
            return None
        rest = address[colon + 1 :]
    suffix = ""
    for separator in "*&":
        position = rest.find(separator)
        if position >= 0:
            billing = _obis_group(rest[position + 1 :], False)
            if billing < 0:
                return None
            if billing != 255:
                suffix = f"*{billing}"
            rest = rest[:position]
            break
    parts = rest.split(".")
    if len(parts) not in (2, 3):
        return None
    group_c = _obis_group(parts[0], True)
    group_d = _obis_group(parts[1], True)
    group_e = _obis_group(parts[2], False) if len(parts) == 3 else 0
    if group_c < 0 or group_d < 0 or group_e < 0:
        return None
    text = f"{medium}-{channel}:{group_c}.{group_d}.{group_e}{suffix}"
    return text, channel, group_c, group_d


def _is_obis_reference(text: str) -> bool:
    return ":" in text and _obis(text) is not None


def _number_or_text(text: str) -> float | str:
    number = _decimal(text)
    return text if number is None else number


def _reading(address: str, groups: list[tuple[str, str]]) -> Reading:
    obis = _obis(address)
    code, channel, group_c, group_d = obis if obis is not None else (address, 0, -1, -1)
    first_text, first_unit = groups[0]
    timestamp: datetime | None = None
    entries: tuple[ProfileEntry, ...] = ()
    value: float | str
    if group_c == 24 and group_d == 3 and len(groups) >= 7 and _is_obis_reference(groups[4][0]):
        # DSMR 2.2/3 hourly gas: (time)(status)(period)(count)(OBIS)(unit) and
        # the value on the next line.
        timestamp = _timestamp(first_text, True)
        value = _number_or_text(groups[-1][0])
        unit = groups[5][0]
    elif (
        len(groups) >= 2
        and not first_unit
        and 1 <= len(first_text) <= _MAX_COUNT_DIGITS
        and _all_digits(first_text)
        and _is_obis_reference(groups[1][0])
    ):
        # A log: (count)(OBIS)…(OBIS) then entries of (timestamps…)(value).
        columns = 1
        while 1 + columns < len(groups) and _is_obis_reference(groups[1 + columns][0]):
            columns += 1
        entry_size = columns + 1
        rest = groups[1 + columns :]
        entries = tuple(
            _profile_entry(rest[start : start + entry_size])
            for start in range(0, len(rest) - entry_size + 1, entry_size)
        )
        value = float(first_text)
        unit = ""
    else:
        timestamp = _timestamp(first_text, False)
        if timestamp is not None and len(groups) >= 2:
            # M-Bus 24.2.x, peak 1.6.0: (capture time)(value*unit).
            value = _number_or_text(groups[1][0])
            unit = groups[1][1]
        elif timestamp is not None or (group_c, group_d) in _TEXT_OBJECTS:
            value = first_text
            unit = first_unit
        else:
            value = _number_or_text(first_text)
            unit = first_unit
    return Reading(code, value, unit, timestamp, channel, entries, tuple(groups))


def _profile_entry(chunk: list[tuple[str, str]]) -> ProfileEntry:
    stamps = tuple(_timestamp(text, False) for text, _ in chunk[:-1])
    return ProfileEntry(stamps, _number_or_text(chunk[-1][0]), chunk[-1][1])


# --- data lines --------------------------------------------------------------------


def _parse_lines(text: str, base_offset: int) -> tuple[Reading, ...]:
    readings: list[Reading] = []
    address: str | None = None
    groups: list[tuple[str, str]] = []
    length = len(text)
    index = 0
    while index < length:
        char = text[index]
        if char == "\r" or char == "\n":
            index += 1
        elif char == "(":
            close = text.find(")", index + 1)
            if close < 0:
                raise FrameError("data value without ')'", base_offset + index)
            inner = text[index + 1 : close]
            for forbidden in "(\r\n":
                if forbidden in inner:
                    raise FrameError("data value without ')'", base_offset + index)
            if address is None:
                address = ""
            value_text, _, unit = inner.partition("*")
            groups.append((value_text, unit))
            index = close + 1
        else:
            end = index
            while end < length and text[end] not in "(\r\n":
                end += 1
            if end >= length or text[end] != "(":
                raise FrameError("data line without a value", base_offset + index)
            if address is not None:
                readings.append(_reading(address, groups))
            address = text[index:end]
            groups = []
            index = end
    if address is not None:
        readings.append(_reading(address, groups))
    return tuple(readings)


def _identification(line: str) -> Identification:
    if len(line) < 4:
        raise FrameError("identification shorter than /XXXZ", 1)
    for index in range(3):
        if line[index] not in _LETTERS:
            raise FrameError("manufacturer id is not three letters", 1 + index)
    for index, char in enumerate(line):
        if char in "/!\r\n":
            raise FrameError(f"identification contains {char!r}", 1 + index)
    position = 4
    enhanced = ""
    while position + 1 < len(line) and line[position] == "\\":
        enhanced += line[position + 1]
        position += 2
    return Identification(line[:3], line[3], line[position:], enhanced)


def parse_telegram(data: bytes | bytearray | memoryview) -> Telegram:
    """Decode one P1 telegram `/XXXZ<ident> CR LF CR LF <lines> !CRC CR LF`.

    Args:
        data: one telegram, from '/' (what TelegramSplitter yields); bytes
            after the end line are returned as the trailer.

    Returns:
        The Telegram. A CRC that does not match is not an exception: it gives
        checksum_ok False (the caller decides whether to drop the readings).

    Raises:
        FrameError: no '/' first, no header line, no '!', a malformed line.
    """
    raw = bytes(memoryview(data))
    if raw[:1] != b"/":
        raise FrameError("telegram does not start with '/'", 0)
    header_end = raw.find(b"\n")
    if header_end < 0:
        raise FrameError("identification line without CR LF", len(raw))
    bang = raw.find(b"!", header_end)
    if bang < 0:
        raise FrameError("telegram without the end character '!'", len(raw))
    header = raw[1:header_end]
    if header.endswith(b"\r"):
        header = header[:-1]
    identification = _identification(header.decode("latin-1"))
    position = bang + 1
    while position < len(raw) and position - bang <= 4 and raw[position] in _HEX_DIGITS:
        position += 1
    checksum = int(raw[bang + 1 : position], 16) if position > bang + 1 else None
    if raw[position : position + 2] == b"\r\n":
        position += 2
    elif raw[position : position + 1] == b"\n":
        position += 1
    readings = _parse_lines(raw[header_end + 1 : bang].decode("latin-1"), header_end + 1)
    checksum_ok = None if checksum is None else _crc16_arc(raw[: bang + 1]) == checksum
    return Telegram(identification, readings, checksum_ok, checksum, raw[position:])


def build_telegram(ident: str, lines: Sequence[str], crc: bool = True) -> bytes:
    """A P1 telegram with its CRC (for simulated meters and tests).

    Args:
        ident: the identification without '/', e.g. "ISk5\\\\2MT382-1000".
        lines: the data lines without CR LF, e.g. ["1-0:1.8.1(000004.426*kWh)"].
        crc: append the CRC-16 (DSMR 4+); False gives a DSMR 2.2/3 "!" end.

    Returns:
        The telegram bytes, ending with CR LF.

    Raises:
        EncodeError: a character that is not printable, or a '/' or '!' that
            would end or restart the telegram.
    """
    if len(ident) < 4:
        raise EncodeError("identification shorter than XXXZ")
    for text in (ident, *lines):
        for char in text:
            if char not in _PRINTABLE or char in "/!":
                raise EncodeError(f"telegram text may not contain {char!r}")
    body = "/" + ident + "\r\n\r\n" + "".join(line + "\r\n" for line in lines) + "!"
    encoded = body.encode("ascii")
    if crc:
        encoded += b"%04X" % _crc16_arc(encoded)
    return encoded + b"\r\n"


# --- stream splitter -------------------------------------------------------------


class TelegramSplitter:
    """Cuts the P1 serial byte stream into whole telegrams.

    A telegram runs from '/' to '!', up to 4 hex digits and CR LF. Bytes
    outside telegrams (a gateway's trailer, padding, noise) are skipped and
    counted; a telegram cut short by a new '/' (a meter that restarted) or
    longer than `max_telegram_bytes` is dropped and counted.

    Args:
        max_telegram_bytes: the longest telegram kept (at least 16).
    """

    def __init__(self, max_telegram_bytes: int = DEFAULT_MAX_TELEGRAM_BYTES) -> None:
        if max_telegram_bytes < 16:
            raise ValueError("max_telegram_bytes must be at least 16")
        self.max_telegram_bytes = max_telegram_bytes
        self.skipped_bytes = 0
        self.dropped_telegrams = 0
        self._buffer = bytearray()
        self._scan = 0  # next index to examine; 0: not yet at a '/'

    @property
    def buffered_bytes(self) -> int:
        """How many bytes wait for the rest of their telegram."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return the telegrams they complete, in order.

        Args:
            data: the bytes read from the P1 port.

        Returns:
            Whole telegrams, each ready for `parse_telegram`.
        """
        self._buffer += memoryview(data)
        telegrams: list[bytes] = []
        buffer = self._buffer
        while True:
            if self._scan == 0:
                start = buffer.find(b"/")
                if start < 0:
                    self.skipped_bytes += len(buffer)
                    buffer.clear()
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

    def _find_end(self) -> int:
        """The end of the telegram at the head: > 0 found, 0 need more bytes,
        < 0 drop that many bytes (cut short by a new '/', or too long)."""
        buffer = self._buffer
        length = len(buffer)
        limit = min(length, self.max_telegram_bytes + 1)
        index = self._scan
        while index < limit:
            byte = buffer[index]
            if byte == _SLASH:
                return -index
            if byte == _BANG:
                position = index + 1
                while (
                    position < length and position - index <= 4 and buffer[position] in _HEX_DIGITS
                ):
                    position += 1
                if position >= length or (buffer[position] == _CR and position + 1 >= length):
                    self._scan = index
                    return 0
                if buffer[position] == _CR:
                    return position + 2 if buffer[position + 1] == _LF else position
                return position + 1 if buffer[position] == _LF else position
            index += 1
        self._scan = limit
        if length > self.max_telegram_bytes:
            return -(self.max_telegram_bytes + 1)
        return 0
