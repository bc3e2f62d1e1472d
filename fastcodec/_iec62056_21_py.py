# IEC 62056-21 (optical port, mode C readout and programming mode): the
# pure-Python reference twin.
#
# Spec: IEC 62056-21:2002 §6.3 message definitions — §6.3.1 request
# `/?addr!CR LF`, §6.3.2 identification `/XXXZ<ident>CR LF`, §6.3.3
# acknowledgement/option select `ACK V Z Y CR LF`, §6.3.4 data message
# `STX block ! CR LF ETX BCC`, §6.3.5/§6.3.6 ACK/NAK, §6.3.7 programming
# command `SOH C D STX data ETX BCC`, the programming-mode data, error
# `(ERxx)` and break `SOH B0 ETX BCC` messages; §6.3.14 message elements
# (baud rate characters); §6.4 protocol mode C.
# `fastcodec/_iec62056_21_c.pyx` implements the same API in Cython and must
# agree on every input (tests/property/fastcodec/test_iec62056_21_props.py).
#
# Strategy: sans-I/O. `OpticalSplitter` cuts the optical port's byte stream
# into messages (bytes); `parse_message` tells them apart by their first byte
# and decodes them; `build_*` make the messages a client (and a simulated
# meter) sends. The BCC is the XOR of the bytes after the first SOH/STX up to
# and including ETX/EOT; a mismatch raises ChecksumError.
#
# Invariants:
# - any bytes give a value or a CodecError (FrameError, ChecksumError): text
#   is decoded as latin-1 (never fails), numbers are checked before float();
# - the splitter keeps at most `max_frame_bytes` + 1 bytes of one candidate
#   message; a longer one is dropped and counted, and it resynchronises on the
#   next start byte ('/', SOH, STX, ACK, NAK). Its decisions depend only on
#   the bytes, never on how they were chunked: feeding one byte at a time gives
#   the same messages as feeding the whole buffer;
# - data sets: `address(value*unit)(value*unit)…`; several data sets may
#   share a line, a line starting with '(' continues the previous data set.
#   The address is kept as written, and normalised to OBIS text where it is
#   one (see DataSet.obis for the rules).
from __future__ import annotations

from collections.abc import Sequence

from fastcodec._iec62056_21_types import (
    ACK,
    BAUD_RATES_MODE_B,
    BAUD_RATES_MODE_C,
    EOT,
    ETX,
    NAK,
    SOH,
    STX,
    Ack,
    CommandMessage,
    DataMessage,
    DataReadout,
    DataSet,
    DataValue,
    ErrorMessage,
    Identification,
    Message,
    Nak,
    OptionSelect,
    SignOnRequest,
)
from fastcodec.exceptions import ChecksumError, EncodeError, FrameError

__all__ = [
    "ACK",
    "BAUD_RATES_MODE_B",
    "BAUD_RATES_MODE_C",
    "DEFAULT_MAX_FRAME_BYTES",
    "EOT",
    "ETX",
    "NAK",
    "SOH",
    "STX",
    "Ack",
    "CommandMessage",
    "DataMessage",
    "DataReadout",
    "DataSet",
    "DataValue",
    "ErrorMessage",
    "Identification",
    "Message",
    "Nak",
    "OpticalSplitter",
    "OptionSelect",
    "SignOnRequest",
    "build_command",
    "build_data_message",
    "build_data_readout",
    "build_identification",
    "build_option_select",
    "build_request",
    "normalise_obis",
    "parse_data_readout",
    "parse_data_sets",
    "parse_identification",
    "parse_message",
]

# A mode C readout with a load profile can reach tens of kB; the splitter
# refuses a candidate message longer than this.
DEFAULT_MAX_FRAME_BYTES = 65536

_CR = 0x0D
_LF = 0x0A
_SLASH = 0x2F
_OBIS_LETTERS = {"C": 96, "F": 97, "L": 98, "P": 99}
_COMMAND_LETTERS = "PWREB"
_MAX_DEVICE_ADDRESS_CHARS = 32  # §6.3.1


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    # memoryview() refuses str and int, as the compiled twin's buffer does.
    return bytes(memoryview(data))


def _block_check(data: bytes) -> int:
    check = 0
    for byte in data:
        check ^= byte
    return check


# --- data sets ---------------------------------------------------------------


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


def _obis_group(text: str, letters: bool) -> int | None:
    if letters and len(text) == 1 and text in _OBIS_LETTERS:
        return _OBIS_LETTERS[text]
    if not 1 <= len(text) <= 3:
        return None
    value = 0
    for char in text:
        if not "0" <= char <= "9":  # str.isdigit() accepts '²', int() does not
            return None
        value = value * 10 + ord(char) - 48
    return value if value <= 255 else None


def normalise_obis(address: str) -> str | None:
    """The OBIS text "A-B:C.D.E" of a data set address, or None.

    Accepts `[A-B:]C.D[.E][*F|&F]` with decimal groups 0..255; C and D may be
    the letters C, F, L, P (96..99, IEC 62056-61 mode C short codes). A missing
    E is 0, a missing "A-B:" is "1-0" (mode C readouts omit the medium and
    channel of an electricity meter), F is kept as "*F" unless it is 255.

    Args:
        address: the address as written, e.g. "1.8.0", "1-0:1.8.0*255", "F.F".

    Returns:
        e.g. "1-0:1.8.0", or None when the address is not an OBIS code.
    """
    prefix = "1-0"
    rest = address
    colon = address.find(":")
    if colon >= 0:
        medium, dash, channel = address[:colon].partition("-")
        medium_value = _obis_group(medium, False)
        channel_value = _obis_group(channel, False)
        if not dash or medium_value is None or channel_value is None:
            return None
        prefix = f"{medium_value}-{channel_value}"
        rest = address[colon + 1 :]
    suffix = ""
    for separator in "*&":
        position = rest.find(separator)
        if position >= 0:
            billing = _obis_group(rest[position + 1 :], False)
            if billing is None:
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
    if group_c is None or group_d is None or group_e is None:
        return None
    return f"{prefix}:{group_c}.{group_d}.{group_e}{suffix}"


def _data_value(inner: str) -> DataValue:
    text, _, unit = inner.partition("*")
    return DataValue(text, unit, _decimal(text))


def _parse_data_sets(text: str, base_offset: int) -> tuple[DataSet, ...]:
    data_sets: list[DataSet] = []
    address: str | None = None
    values: list[DataValue] = []
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
            values.append(_data_value(inner))
            index = close + 1
        else:
            end = index
            while end < length and text[end] not in "(\r\n":
                end += 1
            if end >= length or text[end] != "(":
                raise FrameError("data set address without a value", base_offset + index)
            if address is not None:
                data_sets.append(DataSet(address, normalise_obis(address), tuple(values)))
            address = text[index:end]
            values = []
            index = end
    if address is not None:
        data_sets.append(DataSet(address, normalise_obis(address), tuple(values)))
    return tuple(data_sets)


def parse_data_sets(data: bytes | bytearray | memoryview) -> tuple[DataSet, ...]:
    """Decode a data block or a programming-mode data field into data sets.

    Args:
        data: e.g. b"1.8.0(0012345.6*kWh)\\r\\n0.9.1(123456)" or b"(1234567)".

    Returns:
        The data sets in order (see DataSet).

    Raises:
        FrameError: a value without ')', or an address without a value.
    """
    return _parse_data_sets(_as_bytes(data).decode("latin-1"), 0)


# --- messages of the sign-on sequence -------------------------------------------


def _check_chars(text: str, allowed: str, what: str) -> bytes:
    for char in text:
        if char not in allowed:
            raise EncodeError(f"{what} may not contain {char!r}")
    return text.encode("ascii")


_ADDRESS_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz "
_PRINTABLE = "".join(chr(code) for code in range(0x20, 0x7F))
_IDENT_CHARS = _PRINTABLE.replace("/", "").replace("!", "")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def build_request(device_address: str = "") -> bytes:
    """The request message `/?<device address>!CR LF` (§6.3.1).

    Args:
        device_address: up to 32 of 0-9, A-Z, a-z and space; "" asks any meter.

    Returns:
        The message bytes.

    Raises:
        EncodeError: the address is too long or has another character.
    """
    if len(device_address) > _MAX_DEVICE_ADDRESS_CHARS:
        raise EncodeError("device address longer than 32 characters")
    return b"/?" + _check_chars(device_address, _ADDRESS_CHARS, "device address") + b"!\r\n"


def _parse_request(raw: bytes) -> SignOnRequest:
    if not raw.endswith(b"!\r\n") or len(raw) < 5:
        raise FrameError("request message does not end with '!' CR LF", len(raw))
    address = raw[2:-3].decode("latin-1")
    if len(address) > _MAX_DEVICE_ADDRESS_CHARS:
        raise FrameError("device address longer than 32 characters", 2)
    for index, char in enumerate(address):
        if char not in _ADDRESS_CHARS:
            raise FrameError("device address has a character outside 0-9 A-Z a-z space", 2 + index)
    return SignOnRequest(address)


def build_identification(
    manufacturer: str, baud_char: str, ident: str, enhanced: str = ""
) -> bytes:
    """The identification message `/XXXZ\\W<ident>CR LF` a meter sends (§6.3.2).

    Args:
        manufacturer: three letters, e.g. "ISk".
        baud_char: the baud rate character, e.g. "5".
        ident: printable text without '/' and '!'.
        enhanced: the enhanced-capability characters, each sent as `\\W`.

    Returns:
        The message bytes.

    Raises:
        EncodeError: a part does not fit the message.
    """
    if len(manufacturer) != 3 or len(baud_char) != 1:
        raise EncodeError("manufacturer must be 3 letters and baud_char 1 character")
    _check_chars(manufacturer, _LETTERS, "manufacturer id")
    _check_chars(baud_char + enhanced, _IDENT_CHARS.replace("\\", ""), "baud or enhanced char")
    markers = "".join("\\" + marker for marker in enhanced)
    text = manufacturer + baud_char + markers + ident
    return b"/" + _check_chars(text, _IDENT_CHARS, "identification") + b"\r\n"


def _parse_identification(raw: bytes) -> Identification:
    if not raw.endswith(b"\r\n"):
        raise FrameError("identification message does not end with CR LF", len(raw))
    line = raw[1:-2].decode("latin-1")
    return _identification_from_line(line, 1)


def _identification_from_line(line: str, base_offset: int) -> Identification:
    # Shared with P1 (the telegram header is an identification line). Control
    # characters other than CR LF are tolerated: see the Iskra IE vector.
    if len(line) < 4:
        raise FrameError("identification shorter than /XXXZ", base_offset)
    for index in range(3):
        if line[index] not in _LETTERS:
            raise FrameError("manufacturer id is not three letters", base_offset + index)
    for index, char in enumerate(line):
        if char in "/!\r\n":
            raise FrameError(f"identification contains {char!r}", base_offset + index)
    position = 4
    enhanced = ""
    while position + 1 < len(line) and line[position] == "\\":
        enhanced += line[position + 1]
        position += 2
    return Identification(line[:3], line[3], line[position:], enhanced)


def parse_identification(data: bytes | bytearray | memoryview) -> Identification:
    """Decode the identification message `/XXXZ<ident>CR LF` (§6.3.2).

    Args:
        data: the message, '/' to CR LF.

    Returns:
        The Identification (manufacturer, baud character, `\\W` markers, ident).

    Raises:
        FrameError: not an identification message.
    """
    raw = _as_bytes(data)
    if raw[:1] != b"/":
        raise FrameError("identification message does not start with '/'", 0)
    return _parse_identification(raw)


def build_option_select(baud_char: str, mode_char: str = "0", protocol_char: str = "0") -> bytes:
    """The acknowledgement/option select message `ACK V Z Y CR LF` (§6.3.3).

    Args:
        baud_char: Z, the baud rate to switch to, e.g. "5" for 9600 Bd.
        mode_char: Y: "0" data readout, "1" programming mode, "2" HDLC.
        protocol_char: V: "0" normal, "1" secondary, "2" HDLC (mode E).

    Returns:
        The message bytes.

    Raises:
        EncodeError: a character is not a single printable one.
    """
    chars = protocol_char + baud_char + mode_char
    if len(protocol_char) != 1 or len(baud_char) != 1 or len(mode_char) != 1:
        raise EncodeError("protocol, baud and mode characters must be one character each")
    return bytes([ACK]) + _check_chars(chars, _IDENT_CHARS, "option select") + b"\r\n"


def _parse_option_select(raw: bytes) -> OptionSelect:
    if len(raw) != 6 or not raw.endswith(b"\r\n"):
        raise FrameError("option select message is not ACK V Z Y CR LF", 0)
    chars = raw[1:4].decode("latin-1")
    for index, char in enumerate(chars):
        if char not in _IDENT_CHARS:
            raise FrameError("option select character is not printable", 1 + index)
    return OptionSelect(chars[0], chars[1], chars[2])


# --- data readout and programming mode ------------------------------------------


def _check_text(text: str, allow_line_ends: bool, what: str) -> bytes:
    for char in text:
        if char not in _PRINTABLE and not (allow_line_ends and char in "\r\n"):
            raise EncodeError(f"{what} may not contain {char!r}")
    return text.encode("ascii")


def _with_bcc(start: int, body: bytes) -> bytes:
    return bytes([start]) + body + bytes([_block_check(body)])


def build_data_readout(lines: Sequence[str]) -> bytes:
    """A mode C data readout `STX lines ! CR LF ETX BCC` (§6.3.4).

    Args:
        lines: the data lines without CR LF, e.g. ["1.8.0(0012345.6*kWh)"].

    Returns:
        The message bytes, BCC included.

    Raises:
        EncodeError: a line has a '!' or a character that is not printable.
    """
    for line in lines:
        if "!" in line:
            raise EncodeError("a data line may not contain '!' (it ends the data block)")
    block = b"".join(_check_text(line, False, "data line") + b"\r\n" for line in lines)
    return _with_bcc(STX, block + b"!\r\n" + bytes([ETX]))


def build_command(command: str, data: str = "", partial: bool = False) -> bytes:
    """A programming command `SOH C D STX data ETX BCC` (§6.3.7).

    Args:
        command: C and D, e.g. "P1" (password), "R1" (read), "W1" (write),
            "E2" (execute), "B0" (break: sent without STX and data).
        data: the data set, e.g. "(00000000)" or "1.8.0()".
        partial: end with EOT instead of ETX (a partial block follows).

    Returns:
        The message bytes, BCC included.

    Raises:
        EncodeError: an unknown command or a character that may not be sent.
    """
    if len(command) != 2 or command[0] not in _COMMAND_LETTERS or not "0" <= command[1] <= "9":
        raise EncodeError(f"unknown command {command!r}: expected P, W, R, E or B and a digit")
    end = bytes([EOT if partial else ETX])
    head = command.encode("ascii")
    if command[0] == "B" and not data:
        return _with_bcc(SOH, head + end)
    return _with_bcc(SOH, head + bytes([STX]) + _check_text(data, False, "command data") + end)


def build_data_message(data: str, partial: bool = False) -> bytes:
    """A programming-mode data (or error) message `STX data ETX BCC` (§6.3).

    Args:
        data: the data sets, e.g. "1.8.0(0012345.6*kWh)", or "(ER01)".
        partial: end with EOT instead of ETX (a partial block follows).

    Returns:
        The message bytes, BCC included.

    Raises:
        EncodeError: a character that may not be sent.
    """
    body = _check_text(data, True, "data") + bytes([EOT if partial else ETX])
    return _with_bcc(STX, body)


def _block_end(raw: bytes, start: int) -> int:
    """Index of the ETX/EOT that ends the block; checks the BCC after it."""
    end = start
    length = len(raw)
    while end < length and raw[end] != ETX and raw[end] != EOT:
        end += 1
    if end >= length:
        raise FrameError("message without ETX or EOT", length)
    if end + 2 != length:
        raise FrameError("message does not end with one BCC after ETX/EOT", end + 1)
    expected = _block_check(raw[1 : end + 1])
    if expected != raw[end + 1]:
        raise ChecksumError("IEC 62056-21 BCC", expected, raw[end + 1], end + 1)
    return end


def _parse_data_readout(raw: bytes) -> DataReadout:
    end = _block_end(raw, 1)
    if raw[end] != ETX or not raw[1:end].endswith(b"!\r\n"):
        raise FrameError("data readout does not end with '!' CR LF ETX", end)
    return DataReadout(_parse_data_sets(raw[1 : end - 3].decode("latin-1"), 1))


def parse_data_readout(data: bytes | bytearray | memoryview) -> DataReadout:
    """Decode a mode C data readout `STX block ! CR LF ETX BCC` (§6.3.4).

    Args:
        data: the message, STX to BCC.

    Returns:
        The DataReadout with its data sets.

    Raises:
        ChecksumError: the BCC does not match.
        FrameError: the message is not a data readout.
    """
    raw = _as_bytes(data)
    if raw[:1] != bytes([STX]):
        raise FrameError("data readout does not start with STX", 0)
    return _parse_data_readout(raw)


def _parse_command(raw: bytes) -> CommandMessage:
    if len(raw) < 5:
        raise FrameError("command message shorter than SOH C D ETX BCC", len(raw))
    command = raw[1:3].decode("latin-1")
    if command[0] not in _COMMAND_LETTERS or not "0" <= command[1] <= "9":
        raise FrameError("unknown command", 1)
    end = _block_end(raw, 3)
    if end == 3:
        return CommandMessage(command, "", raw[end] == EOT)
    if raw[3] != STX:
        raise FrameError("command without STX before its data", 3)
    return CommandMessage(command, raw[4:end].decode("latin-1"), raw[end] == EOT)


def _parse_stx_message(raw: bytes) -> DataReadout | DataMessage | ErrorMessage:
    end = _block_end(raw, 1)
    body = raw[1:end]
    if raw[end] == ETX and body.endswith(b"!\r\n"):
        return DataReadout(_parse_data_sets(body[:-3].decode("latin-1"), 1))
    text = body.decode("latin-1")
    if text.endswith(")"):
        open_index = text.rfind("(")
        code = text[open_index + 1 : -1]
        address = text[:open_index]
        clean_address = open_index >= 0 and "(" not in address and ")" not in address
        if clean_address and code.startswith("ER") and "*" not in code:
            return ErrorMessage(code, address)
    return DataMessage(text, raw[end] == EOT)


def parse_message(data: bytes | bytearray | memoryview) -> Message:
    """Decode one message of the optical port (what OpticalSplitter yields).

    Args:
        data: one whole message: `/?…!CR LF`, `/XXXZ…CR LF`, `ACK V Z Y CR LF`,
            `STX … ETX BCC`, `SOH … ETX BCC`, or a single ACK or NAK.

    Returns:
        SignOnRequest, Identification, OptionSelect, DataReadout (a data
        message ending "! CR LF"), DataMessage, ErrorMessage (`(ERxx)`),
        CommandMessage, Ack or Nak.

    Raises:
        ChecksumError: the BCC does not match.
        FrameError: the bytes are not one of these messages.
    """
    raw = _as_bytes(data)
    if not raw:
        raise FrameError("empty message", 0)
    first = raw[0]
    if first == _SLASH:
        if raw[1:2] == b"?":
            return _parse_request(raw)
        return _parse_identification(raw)
    if first == STX:
        return _parse_stx_message(raw)
    if first == SOH:
        return _parse_command(raw)
    if first == ACK:
        return Ack() if len(raw) == 1 else _parse_option_select(raw)
    if first == NAK and len(raw) == 1:
        return Nak()
    raise FrameError("not an IEC 62056-21 message", 0)


# --- stream splitter ---------------------------------------------------------------


class OpticalSplitter:
    """Cuts the optical port's byte stream into whole messages.

    A message starts with '/' (request, identification: ends at LF), SOH or
    STX (ends one BCC byte after ETX/EOT), or is a single ACK or NAK. With
    `meter_side=True` (a simulated meter reading what the client sends) an
    ACK starts an option select message that ends at LF. Bytes outside
    messages are skipped and counted; a message cut short by a new start
    byte (or longer than `max_frame_bytes`) is dropped and counted.

    Args:
        max_frame_bytes: the longest message kept (at least 16).
        meter_side: read the client's messages instead of the meter's.
    """

    def __init__(
        self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, *, meter_side: bool = False
    ) -> None:
        if max_frame_bytes < 16:
            raise ValueError("max_frame_bytes must be at least 16")
        self.max_frame_bytes = max_frame_bytes
        self.meter_side = meter_side
        self.skipped_bytes = 0
        self.dropped_frames = 0
        self._buffer = bytearray()
        self._scan = 0  # next index to examine; 0: the head is not a start byte yet

    @property
    def buffered_bytes(self) -> int:
        """How many bytes wait for the rest of their message."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return the messages they complete, in order.

        Args:
            data: the bytes read from the port.

        Returns:
            Whole messages, each ready for `parse_message`.
        """
        self._buffer += memoryview(data)
        messages: list[bytes] = []
        while True:
            message = self._next_message()
            if message is None:
                return messages
            messages.append(message)

    def _drop(self, count: int) -> None:
        self.skipped_bytes += count
        self.dropped_frames += 1
        del self._buffer[:count]
        self._scan = 0

    def _next_message(self) -> bytes | None:
        # A loop, not recursion: a run of start bytes restarts many times.
        buffer = self._buffer
        while True:
            if self._scan == 0:
                start = 0
                while start < len(buffer) and buffer[start] not in (_SLASH, SOH, STX, ACK, NAK):
                    start += 1
                self.skipped_bytes += start
                del buffer[:start]
                if not buffer:
                    return None
                self._scan = 1
            first = buffer[0]
            if first == NAK or (first == ACK and not self.meter_side):
                del buffer[:1]
                self._scan = 0
                return bytes([first])
            end = self._find_end(buffer, first in (_SLASH, ACK))
            if end == 0:
                return None
            if end < 0:
                self._drop(-end)
            elif end > self.max_frame_bytes:
                self._drop(end)
            else:
                message = bytes(buffer[:end])
                del buffer[:end]
                self._scan = 0
                return message

    def _find_end(self, buffer: bytearray, line_message: bool) -> int:
        """The end of the message at the head: > 0 found, 0 need more bytes,
        < 0 drop that many bytes (cut short by a new start byte, or too long)."""
        limit = min(len(buffer), self.max_frame_bytes + 1)
        # The STX of a command message `SOH C D STX …` is not a new message.
        command_stx = 3 if buffer[0] == SOH else -1
        index = self._scan
        while index < limit:
            byte = buffer[index]
            if byte in (SOH, STX, ACK, NAK) and index != command_stx:
                return -index
            if line_message:
                if byte == _SLASH:
                    return -index
                if byte == _LF:
                    return index + 1
            elif byte in (ETX, EOT):
                if index + 1 >= len(buffer):
                    self._scan = index
                    return 0
                return index + 2
            index += 1
        self._scan = limit
        if len(buffer) > self.max_frame_bytes:
            return -(self.max_frame_bytes + 1)
        return 0
