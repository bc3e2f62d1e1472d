# IEC 62056-21 (optical port, mode C readout and programming mode): the
# compiled twin.
#
# Same API and results as fastcodec/_iec62056_21_py.py, which documents the
# messages (IEC 62056-21:2002 §6.3.1 request, §6.3.2 identification, §6.3.3
# option select, §6.3.4 data message, §6.3.5/§6.3.6 ACK/NAK, §6.3.7
# programming command, §6.4 mode C), the strategy and the invariants. Here the
# BCC, the data-set scanner, the OBIS normalisation and the stream splitter
# run on bytes through C pointers; the rarely used message builders are
# imported from the pure twin (one implementation). Every index is checked against the length
# before it is read, so bounds checks are off in the scanning functions.
# cython: language_level=3

cimport cython
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.object cimport PyObject_GenericSetAttr
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.stdio cimport snprintf

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

_SLASH = 0x2F
_COMMAND_LETTERS = "PWREB"
_MAX_DEVICE_ADDRESS_CHARS = 32  # §6.3.1


def _as_bytes(data) -> bytes:
    # memoryview() refuses str and int, as a typed buffer would.
    return bytes(memoryview(data))


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _block_check(bytes data) noexcept:
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t i
    cdef unsigned char check = 0
    for i in range(PyBytes_GET_SIZE(data)):
        check ^= p[i]
    return check


# --- data sets ---------------------------------------------------------------


cdef inline bint _is_digit(unsigned char byte) noexcept nogil:
    return 48 <= byte <= 57


cdef inline str _text(const unsigned char *data, Py_ssize_t start, Py_ssize_t end):
    return PyUnicode_DecodeLatin1(<const char *>data + start, end - start, NULL)


cdef bint is_decimal(const unsigned char *data, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """True when data[start:end] is [-]digits[.digits] with at least one digit."""
    cdef Py_ssize_t i = start
    cdef int digits = 0
    cdef bint seen_dot = False
    if i < end and data[i] == 45:  # '-'
        i += 1
    while i < end:
        if _is_digit(data[i]):
            digits += 1
        elif data[i] == 46 and not seen_dot:
            seen_dot = True
        else:
            return False
        i += 1
    return digits > 0


cdef int _obis_group(const unsigned char *data, Py_ssize_t start, Py_ssize_t end, bint letters) noexcept nogil:
    """0..255, or -1 when data[start:end] is not an OBIS value group."""
    cdef Py_ssize_t length = end - start
    cdef int value = 0
    cdef Py_ssize_t i
    if letters and length == 1:
        if data[start] == 67:  # 'C'
            return 96
        if data[start] == 70:  # 'F'
            return 97
        if data[start] == 76:  # 'L'
            return 98
        if data[start] == 80:  # 'P'
            return 99
    if length < 1 or length > 3:
        return -1
    for i in range(start, end):
        if not _is_digit(data[i]):
            return -1
        value = value * 10 + data[i] - 48
    return value if value <= 255 else -1


cdef Py_ssize_t _find(const unsigned char *data, Py_ssize_t start, Py_ssize_t end, unsigned char byte) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, end):
        if data[i] == byte:
            return i
    return -1


cdef object obis_text(const unsigned char *data, Py_ssize_t start, Py_ssize_t end, int *parts):
    """The OBIS text of data[start:end] (rules of normalise_obis), or None;
    when `parts` is not NULL it gets B, C and D (the P1 codec needs them)."""
    cdef int medium = 1, channel = 0, billing = -1
    cdef int group_c, group_d, group_e
    cdef Py_ssize_t colon, dash, star, rest = start, rest_end = end, dot1, dot2
    cdef char out[48]
    cdef int written
    colon = _find(data, start, end, 58)  # ':'
    if colon >= 0:
        dash = _find(data, start, colon, 45)  # '-'
        if dash < 0:
            return None
        medium = _obis_group(data, start, dash, False)
        channel = _obis_group(data, dash + 1, colon, False)
        if medium < 0 or channel < 0:
            return None
        rest = colon + 1
    star = _find(data, rest, end, 42)  # '*'
    if star < 0:
        star = _find(data, rest, end, 38)  # '&'
    if star >= 0:
        billing = _obis_group(data, star + 1, end, False)
        if billing < 0:
            return None
        rest_end = star
    dot1 = _find(data, rest, rest_end, 46)
    if dot1 < 0:
        return None
    dot2 = _find(data, dot1 + 1, rest_end, 46)
    group_c = _obis_group(data, rest, dot1, True)
    if dot2 < 0:
        group_d = _obis_group(data, dot1 + 1, rest_end, True)
        group_e = 0
    else:
        if _find(data, dot2 + 1, rest_end, 46) >= 0:
            return None
        group_d = _obis_group(data, dot1 + 1, dot2, True)
        group_e = _obis_group(data, dot2 + 1, rest_end, False)
    if group_c < 0 or group_d < 0 or group_e < 0:
        return None
    if billing >= 0 and billing != 255:
        written = snprintf(out, 48, "%d-%d:%d.%d.%d*%d", medium, channel, group_c, group_d, group_e, billing)
    else:
        written = snprintf(out, 48, "%d-%d:%d.%d.%d", medium, channel, group_c, group_d, group_e)
    if parts != NULL:
        parts[0], parts[1], parts[2] = channel, group_c, group_d
    return PyUnicode_DecodeLatin1(out, written, NULL)


def normalise_obis(str address not None):
    """The OBIS text "A-B:C.D.E" of a data set address, or None (see the pure twin)."""
    cdef bytes encoded
    try:
        encoded = address.encode("latin-1")
    except UnicodeEncodeError:
        return None  # no OBIS character lies outside latin-1
    return obis_text(<const unsigned char *>PyBytes_AS_STRING(encoded), 0, PyBytes_GET_SIZE(encoded), NULL)


# The frozen dataclasses' __init__ goes through object.__setattr__ once per
# field; the compiled twin fills the slots directly (same values, equal results).
cdef object _data_value(const unsigned char *data, Py_ssize_t start, Py_ssize_t star, Py_ssize_t end):
    cdef str text = _text(data, start, star)
    cdef object value = DataValue.__new__(DataValue)
    PyObject_GenericSetAttr(value, "text", text)
    PyObject_GenericSetAttr(value, "unit", _text(data, star + 1, end) if star < end else "")
    PyObject_GenericSetAttr(
        value, "number", float(text) if is_decimal(data, start, star) else None
    )
    return value


cdef object _data_set(const unsigned char *data, Py_ssize_t start, Py_ssize_t end, list values):
    cdef object data_set = DataSet.__new__(DataSet)
    PyObject_GenericSetAttr(data_set, "address", _text(data, start, end))
    PyObject_GenericSetAttr(data_set, "obis", obis_text(data, start, end, NULL))
    PyObject_GenericSetAttr(data_set, "values", tuple(values))
    return data_set


@cython.boundscheck(False)
@cython.wraparound(False)
cdef tuple _parse_sets(bytes raw, Py_ssize_t start, Py_ssize_t end):
    # raw[start:end] is the block; offsets in errors are indexes into raw.
    cdef const unsigned char *data = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef list data_sets = []
    cdef list values = []
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
            values.append(_data_value(data, index + 1, close if star < 0 else star, close))
            index = close + 1
        else:
            scan = index
            while scan < end and data[scan] != 40 and data[scan] != 13 and data[scan] != 10:
                scan += 1
            if scan >= end or data[scan] != 40:
                raise FrameError("data set address without a value", index)
            if address_start >= 0:
                data_sets.append(_data_set(data, address_start, address_end, values))
            address_start = index
            address_end = scan
            values = []
            index = scan
    if address_start >= 0:
        data_sets.append(_data_set(data, address_start, address_end, values))
    return tuple(data_sets)


def parse_data_sets(data):
    """Decode a data block or a programming-mode data field into data sets."""
    cdef bytes raw = _as_bytes(data)
    return _parse_sets(raw, 0, len(raw))


# --- messages of the sign-on sequence -------------------------------------------


_ADDRESS_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz "
_PRINTABLE = "".join(chr(code) for code in range(0x20, 0x7F))
_IDENT_CHARS = _PRINTABLE.replace("/", "").replace("!", "")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# Building messages is not a hot path: the pure twin's builders, imported (one
# implementation of them).
from fastcodec._iec62056_21_py import (  # noqa: E402
    build_command,
    build_data_message,
    build_data_readout,
    build_identification,
    build_option_select,
    build_request,
)


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


def _parse_option_select(raw: bytes) -> OptionSelect:
    if len(raw) != 6 or not raw.endswith(b"\r\n"):
        raise FrameError("option select message is not ACK V Z Y CR LF", 0)
    chars = raw[1:4].decode("latin-1")
    for index, char in enumerate(chars):
        if char not in _IDENT_CHARS:
            raise FrameError("option select character is not printable", 1 + index)
    return OptionSelect(chars[0], chars[1], chars[2])


# --- data readout and programming mode ------------------------------------------


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
    return DataReadout(_parse_sets(raw, 1, end - 3))


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
        return DataReadout(_parse_sets(raw, 1, end - 3))
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


cdef inline bint _is_start(unsigned char byte) noexcept nogil:
    return byte == 0x2F or byte == 0x01 or byte == 0x02 or byte == 0x06 or byte == 0x15


cdef class OpticalSplitter:
    """Cuts the optical port's byte stream into whole messages (see the pure twin)."""

    cdef public Py_ssize_t max_frame_bytes
    cdef public bint meter_side
    cdef public Py_ssize_t skipped_bytes
    cdef public Py_ssize_t dropped_frames
    cdef bytearray _buffer
    cdef Py_ssize_t _scan

    def __init__(self, Py_ssize_t max_frame_bytes=DEFAULT_MAX_FRAME_BYTES, *, bint meter_side=False):
        if max_frame_bytes < 16:
            raise ValueError("max_frame_bytes must be at least 16")
        self.max_frame_bytes = max_frame_bytes
        self.meter_side = meter_side
        self.skipped_bytes = 0
        self.dropped_frames = 0
        self._buffer = bytearray()
        self._scan = 0

    @property
    def buffered_bytes(self):
        """How many bytes wait for the rest of their message."""
        return len(self._buffer)

    def feed(self, data):
        """Add received bytes; return the messages they complete, in order."""
        cdef list messages = []
        self._buffer += memoryview(data)
        while True:
            message = self._next_message()
            if message is None:
                return messages
            messages.append(message)

    cdef void _drop(self, Py_ssize_t count) except *:
        self.skipped_bytes += count
        self.dropped_frames += 1
        del self._buffer[:count]
        self._scan = 0

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef object _next_message(self):
        cdef bytearray buffer = self._buffer
        cdef Py_ssize_t start, end, length
        cdef const unsigned char *p
        cdef unsigned char first
        while True:
            length = len(buffer)
            if self._scan == 0:
                p = <const unsigned char *>PyByteArray_AS_STRING(buffer)
                start = 0
                while start < length and not _is_start(p[start]):
                    start += 1
                self.skipped_bytes += start
                del buffer[:start]
                if len(buffer) == 0:
                    return None
                self._scan = 1
            first = buffer[0]
            if first == NAK or (first == ACK and not self.meter_side):
                del buffer[:1]
                self._scan = 0
                return bytes([first])
            end = self._find_end(first == _SLASH or first == ACK)
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

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef Py_ssize_t _find_end(self, bint line_message):
        # > 0 found, 0 need more bytes, < 0 drop that many bytes. Every index
        # read is below `length`.
        cdef bytearray buffer = self._buffer
        cdef Py_ssize_t length = len(buffer)
        cdef const unsigned char *p = <const unsigned char *>PyByteArray_AS_STRING(buffer)
        cdef Py_ssize_t limit = min(length, self.max_frame_bytes + 1)
        cdef Py_ssize_t index = self._scan
        cdef unsigned char byte
        # The STX of a command message `SOH C D STX …` is not a new message.
        cdef Py_ssize_t command_stx = 3 if p[0] == 0x01 else -1
        while index < limit:
            byte = p[index]
            if (byte == 0x01 or byte == 0x02 or byte == 0x06 or byte == 0x15) and index != command_stx:
                return -index
            if line_message:
                if byte == 0x2F:
                    return -index
                if byte == 0x0A:
                    return index + 1
            elif byte == 0x03 or byte == 0x04:
                if index + 1 >= length:
                    self._scan = index
                    return 0
                return index + 2
            index += 1
        self._scan = limit
        if length > self.max_frame_bytes:
            return -(self.max_frame_bytes + 1)
        return 0
