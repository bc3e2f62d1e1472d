# Modbus RTU: request builders, response/request parsers, a resynchronising
# stream splitter and register decoders. The pure-Python reference twin.
#
# Spec clauses implemented:
#   Modbus over serial line V1.02 §2.5.1.1 RTU framing (unit id, PDU, CRC; a
#       frame is at most 256 bytes and ends with a silence of 3.5 characters),
#       §2.5.1.2 and Appendix B: CRC-16/MODBUS, sent low byte first;
#       §2.2: unit 0 is broadcast (requests only, never answered), 1..247 units,
#       248..255 reserved.
#   Modbus Application Protocol V1.1b3 §6.1..§6.4 (FC 1..4 reads; quantity
#       1..2000 bits, 1..125 registers), §6.5/§6.6 (FC 5/6 write single,
#       coil value 0xFF00 or 0x0000), §6.11/§6.12 (FC 15/16 write multiple;
#       1..1968 coils, 1..123 registers), §6.21 (43/14 read device
#       identification), §7 (exception responses: function | 0x80, code).
#
# Strategy:
#   - Builders validate every argument (EncodeError) and return whole ADUs.
#   - Parsers take one whole ADU, check the CRC first (ChecksumError), then
#     the structure (FrameError with the offset of the offending byte), and
#     return the frozen value types of fastcodec/_modbus_types.py. An
#     exception response is a value (ExceptionResponse), not an error.
#   - RtuSplitter (sans-I/O) cuts a byte stream from an RS-485 bus into ADUs.
#     Serial drivers do not report the 3.5-character silences reliably, so it
#     computes each candidate frame's length from its function code (and byte
#     count), and accepts it only when the CRC matches. When the bytes at the
#     head cannot be a frame it drops ONE byte and tries again, so a valid
#     frame after noise is always found. A caller that knows the line went
#     idle (t3.5 timer, read timeout) calls line_idle(): no frame spans a
#     silence, so a head still waiting for bytes is noise. Known lengths:
#     requests FC1..6 8 bytes, FC15/16 9 + byte count, 43/14 7; responses
#     FC1..4 5 + byte count, FC5/6/15/16 8, 43/14 walked object by object,
#     exceptions (function | 0x80) 5. Other function codes (7, 8, 11, 17, 20..24)
#     are not recognised and their frames count as noise. In BOTH mode a
#     request wins a tie, so a FC5/6 echo (byte-identical to its request) is
#     reported as a REQUEST.
#   - Register decoding: every order is reduced to "swap the bytes of each
#     16-bit word, or not" then big- or little-endian struct unpacking
#     (ABCD: -, >; BADC: swap, >; DCBA: -, <; CDAB: swap, <).
#
# Invariants: any byte string gives a value or a CodecError (never IndexError,
# struct.error...); the splitter's buffer never holds more than
# max_buffer_bytes; fastcodec/_modbus_c.pyx returns the same values.
from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from typing import cast

from fastcodec._crc_py import crc16_modbus
from fastcodec._modbus_types import (
    MAX_ADU_BYTES,
    NEED_DATA,
    DataType,
    DeviceIdentificationRequest,
    DeviceIdentificationResponse,
    Direction,
    ExceptionCode,
    ExceptionResponse,
    Expect,
    FunctionCode,
    NeedData,
    ReadBitsResponse,
    ReadRegistersResponse,
    ReadRequest,
    RegisterField,
    RegisterOrder,
    WriteMultipleRequest,
    WriteMultipleResponse,
    WriteSingleCoilResponse,
    WriteSingleRegisterResponse,
    WriteSingleRequest,
)
from fastcodec.exceptions import ChecksumError, EncodeError, FrameError

__all__ = [
    "MAX_ADU_BYTES",
    "NEED_DATA",
    "DataType",
    "DeviceIdentificationRequest",
    "DeviceIdentificationResponse",
    "Direction",
    "ExceptionCode",
    "ExceptionResponse",
    "Expect",
    "FunctionCode",
    "NeedData",
    "ReadBitsResponse",
    "ReadRegistersResponse",
    "ReadRequest",
    "RegisterField",
    "RegisterOrder",
    "RtuSplitter",
    "WriteMultipleRequest",
    "WriteMultipleResponse",
    "WriteSingleCoilResponse",
    "WriteSingleRegisterResponse",
    "WriteSingleRequest",
    "build_read_coils",
    "build_read_device_identification",
    "build_read_discrete_inputs",
    "build_read_holding_registers",
    "build_read_input_registers",
    "build_write_multiple_coils",
    "build_write_multiple_registers",
    "build_write_single_coil",
    "build_write_single_register",
    "decode_floats",
    "decode_registers",
    "encode_value",
    "parse_request",
    "parse_response",
]

CRC_NAME = "CRC-16/MODBUS"
MAX_UNIT_ID = 247
MAX_READ_BITS = 2000  # §6.1, §6.2
MAX_READ_REGISTERS = 125  # §6.3, §6.4
MAX_WRITE_COILS = 1968  # §6.11
MAX_WRITE_REGISTERS = 123  # §6.12
MEI_READ_DEVICE_ID = 14  # §6.21
COIL_ON = 0xFF00
COIL_OFF = 0x0000
DEFAULT_MAX_BUFFER_BYTES = 4096
MAX_DECIMAL_EXPONENT = 30


# --- Builders -----------------------------------------------------------------


def _check_int(value: object, low: int, high: int, what: str) -> int:
    # bool is an int subclass; a True address is a caller bug, not 1.
    if type(value) is bool or not isinstance(value, int):
        raise EncodeError(f"{what} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise EncodeError(f"{what} {value} is outside {low}..{high}")
    return value


def _check_span(address: object, quantity: object, high: int, what: str) -> tuple[int, int]:
    address = _check_int(address, 0, 0xFFFF, "address")
    quantity = _check_int(quantity, 1, high, f"quantity of {what}")
    if address + quantity > 0x10000:
        raise EncodeError(f"address {address} + quantity {quantity} runs past register 65535")
    return address, quantity


def _adu(unit_id: int, pdu: bytes) -> bytes:
    frame = bytes((unit_id,)) + pdu
    return frame + crc16_modbus(frame).to_bytes(2, "little")


def _build_read(function: int, unit_id: object, address: object, quantity: object) -> bytes:
    # A broadcast read would never be answered (serial line §2.2).
    unit = _check_int(unit_id, 1, MAX_UNIT_ID, "unit id of a read")
    limit = MAX_READ_BITS if function <= 2 else MAX_READ_REGISTERS
    start, count = _check_span(address, quantity, limit, "items to read")
    return _adu(unit, struct.pack(">BHH", function, start, count))


def build_read_coils(unit_id: int, address: int, quantity: int) -> bytes:
    """Function 1, Read Coils (Application Protocol §6.1).

    Args:
        unit_id: the slave, 1..247.
        address: first coil, 0..65535 (protocol address, not the 1-based label).
        quantity: coils to read, 1..2000.

    Returns:
        The RTU ADU, CRC included.

    Raises:
        EncodeError: an argument is out of range or not an int.
    """
    return _build_read(1, unit_id, address, quantity)


def build_read_discrete_inputs(unit_id: int, address: int, quantity: int) -> bytes:
    """Function 2, Read Discrete Inputs (§6.2); arguments as build_read_coils."""
    return _build_read(2, unit_id, address, quantity)


def build_read_holding_registers(unit_id: int, address: int, quantity: int) -> bytes:
    """Function 3, Read Holding Registers (§6.3).

    Args:
        unit_id: the slave, 1..247.
        address: first register, 0..65535.
        quantity: registers to read, 1..125.

    Returns:
        The RTU ADU, CRC included.

    Raises:
        EncodeError: an argument is out of range or not an int.
    """
    return _build_read(3, unit_id, address, quantity)


def build_read_input_registers(unit_id: int, address: int, quantity: int) -> bytes:
    """Function 4, Read Input Registers (§6.4); arguments as build_read_holding_registers."""
    return _build_read(4, unit_id, address, quantity)


def build_write_single_coil(unit_id: int, address: int, value: bool) -> bytes:
    """Function 5, Write Single Coil (§6.5).

    Args:
        unit_id: the slave, 1..247, or 0 to broadcast.
        address: the coil, 0..65535.
        value: True (sent as 0xFF00) or False (0x0000); ints 0 and 1 pass too.

    Returns:
        The RTU ADU, CRC included.

    Raises:
        EncodeError: an argument is out of range or of the wrong type.
    """
    unit = _check_int(unit_id, 0, MAX_UNIT_ID, "unit id")
    start = _check_int(address, 0, 0xFFFF, "address")
    state = _check_coil(value)
    return _adu(unit, struct.pack(">BHH", 5, start, COIL_ON if state else COIL_OFF))


def _check_coil(value: object) -> bool:
    if type(value) is bool:
        return value
    if type(value) is int and value in (0, 1):
        return value == 1
    raise EncodeError(f"a coil value must be a bool (or 0/1), not {value!r}")


def build_write_single_register(unit_id: int, address: int, value: int) -> bytes:
    """Function 6, Write Single Register (§6.6).

    Args:
        unit_id: the slave, 1..247, or 0 to broadcast.
        address: the register, 0..65535.
        value: 0..65535 (encode signed values with encode_value first).

    Returns:
        The RTU ADU, CRC included.

    Raises:
        EncodeError: an argument is out of range or not an int.
    """
    unit = _check_int(unit_id, 0, MAX_UNIT_ID, "unit id")
    start = _check_int(address, 0, 0xFFFF, "address")
    register = _check_int(value, 0, 0xFFFF, "register value")
    return _adu(unit, struct.pack(">BHH", 6, start, register))


def build_write_multiple_coils(unit_id: int, address: int, values: Sequence[bool]) -> bytes:
    """Function 15, Write Multiple Coils (§6.11).

    Args:
        unit_id: the slave, 1..247, or 0 to broadcast.
        address: first coil, 0..65535.
        values: 1..1968 coil states (bools, or ints 0/1), first coil first.

    Returns:
        The RTU ADU, CRC included; coils packed LSB first, padded with zeros.

    Raises:
        EncodeError: an argument is out of range or of the wrong type.
    """
    unit = _check_int(unit_id, 0, MAX_UNIT_ID, "unit id")
    states = [_check_coil(value) for value in _as_list(values)]
    start, count = _check_span(address, len(states), MAX_WRITE_COILS, "coils to write")
    packed = bytearray((count + 7) // 8)
    for index, state in enumerate(states):
        if state:
            packed[index >> 3] |= 1 << (index & 7)
    return _adu(unit, struct.pack(">BHHB", 15, start, count, len(packed)) + bytes(packed))


def _as_list(values: object) -> list[object]:
    if isinstance(values, (str, bytes, bytearray, memoryview)) or not isinstance(values, Sequence):
        raise EncodeError(f"values must be a sequence, not {type(values).__name__}")
    return list(values)


def build_write_multiple_registers(unit_id: int, address: int, values: Sequence[int]) -> bytes:
    """Function 16, Write Multiple Registers (§6.12).

    Args:
        unit_id: the slave, 1..247, or 0 to broadcast.
        address: first register, 0..65535.
        values: 1..123 register values, each 0..65535.

    Returns:
        The RTU ADU, CRC included.

    Raises:
        EncodeError: an argument is out of range or of the wrong type.
    """
    unit = _check_int(unit_id, 0, MAX_UNIT_ID, "unit id")
    registers = [_check_int(value, 0, 0xFFFF, "register value") for value in _as_list(values)]
    start, count = _check_span(address, len(registers), MAX_WRITE_REGISTERS, "registers to write")
    body = struct.pack(f">BHHB{count}H", 16, start, count, 2 * count, *registers)
    return _adu(unit, body)


def build_read_device_identification(
    unit_id: int, read_device_id_code: int = 1, object_id: int = 0
) -> bytes:
    """Function 43 / MEI 14, Read Device Identification (§6.21).

    Args:
        unit_id: the slave, 1..247.
        read_device_id_code: 1 basic, 2 regular, 3 extended (stream access),
            4 one specific object.
        object_id: first object to read (0 = VendorName).

    Returns:
        The RTU ADU, CRC included.

    Raises:
        EncodeError: an argument is out of range or not an int.
    """
    unit = _check_int(unit_id, 1, MAX_UNIT_ID, "unit id of a read")
    code = _check_int(read_device_id_code, 1, 4, "read device id code")
    first = _check_int(object_id, 0, 0xFF, "object id")
    return _adu(unit, bytes((43, MEI_READ_DEVICE_ID, code, first)))


# --- Parsers ------------------------------------------------------------------


def _checked_bytes(frame: bytes | bytearray | memoryview) -> bytes:
    # memoryview() refuses ints and str (bytes(5) would be 5 zero bytes).
    data = bytes(memoryview(frame))
    length = len(data)
    if length < 4:
        raise FrameError(f"an RTU frame has at least 4 bytes, got {length}", length)
    if length > MAX_ADU_BYTES:
        raise FrameError(f"an RTU frame has at most {MAX_ADU_BYTES} bytes, got {length}", 0)
    received = data[-2] | (data[-1] << 8)
    expected = crc16_modbus(data[:-2])
    if expected != received:
        raise ChecksumError(CRC_NAME, expected, received, length - 2)
    return data


def _expect_length(data: bytes, expected: int, what: str) -> None:
    if len(data) != expected:
        raise FrameError(f"{what} must be {expected} bytes long, got {len(data)}", 2)


ResponseValue = (
    ReadBitsResponse
    | ReadRegistersResponse
    | WriteSingleCoilResponse
    | WriteSingleRegisterResponse
    | WriteMultipleResponse
    | DeviceIdentificationResponse
    | ExceptionResponse
)
RequestValue = ReadRequest | WriteSingleRequest | WriteMultipleRequest | DeviceIdentificationRequest


def parse_response(
    frame: bytes | bytearray | memoryview, quantity: int | None = None
) -> ResponseValue:
    """Decode one whole RTU response ADU.

    Args:
        frame: unit id, PDU and CRC, e.g. what RtuSplitter.next_frame() returns.
        quantity: the quantity the request asked for, when known: checks the
            byte count of a function 1..4 reply and trims coil padding.

    Returns:
        The decoded reply; an exception reply gives an ExceptionResponse.

    Raises:
        ChecksumError: the CRC does not match.
        FrameError: the frame is malformed or its function is not supported.
    """
    data = _checked_bytes(frame)
    unit_id = data[0]
    if not 1 <= unit_id <= MAX_UNIT_ID:
        raise FrameError(f"unit id {unit_id} cannot answer (responses come from 1..247)", 0)
    function = data[1]
    if function & 0x80:
        _expect_length(data, 5, "an exception response")
        return ExceptionResponse(unit_id, function & 0x7F, data[2])
    if function <= 4:
        return _parse_read_reply(data, unit_id, function, quantity)
    if function in (5, 6, 15, 16):
        _expect_length(data, 8, f"a function {function} response")
        address = (data[2] << 8) | data[3]
        value = (data[4] << 8) | data[5]
        if function == 5:
            return WriteSingleCoilResponse(unit_id, address, _coil_state(value))
        if function == 6:
            return WriteSingleRegisterResponse(unit_id, address, value)
        return WriteMultipleResponse(unit_id, function, address, value)
    if function == 43:
        return _parse_device_identification(data, unit_id)
    raise FrameError(f"function code {function} is not supported", 1)


def _coil_state(value: int) -> bool:
    if value == COIL_ON:
        return True
    if value == COIL_OFF:
        return False
    raise FrameError(f"coil value 0x{value:04X} is neither 0xFF00 nor 0x0000", 4)


def _parse_read_reply(
    data: bytes, unit_id: int, function: int, quantity: int | None
) -> ReadBitsResponse | ReadRegistersResponse:
    if function == 0:
        raise FrameError("function code 0 is not valid", 1)
    byte_count = data[2]
    if len(data) != 5 + byte_count:
        raise FrameError(
            f"byte count {byte_count} does not match a {len(data)}-byte frame "
            f"(expected {len(data) - 5})",
            2,
        )
    if byte_count == 0:
        raise FrameError("a read reply carries at least one byte", 2)
    if function >= 3:
        if byte_count & 1:
            raise FrameError(f"odd byte count {byte_count} in a register reply", 2)
        if quantity is not None and byte_count != 2 * quantity:
            raise FrameError(f"{byte_count // 2} registers received, {quantity} asked", 2)
        return ReadRegistersResponse(unit_id, function, data[3:-2])
    bit_count = 8 * byte_count
    if quantity is not None:
        if byte_count != (quantity + 7) // 8:
            raise FrameError(f"{byte_count} bytes of bits received for {quantity} asked", 2)
        bit_count = quantity
    bits = tuple(bool(data[3 + (index >> 3)] >> (index & 7) & 1) for index in range(bit_count))
    return ReadBitsResponse(unit_id, function, bits)


def _parse_device_identification(data: bytes, unit_id: int) -> DeviceIdentificationResponse:
    end = len(data) - 2
    if end < 8:
        raise FrameError("a device identification reply has at least 10 bytes", end)
    if data[2] != MEI_READ_DEVICE_ID:
        raise FrameError(f"MEI type {data[2]} is not supported (only 14)", 2)
    more = data[5]
    if more not in (0x00, 0xFF):
        raise FrameError(f"more-follows 0x{more:02X} is neither 0x00 nor 0xFF", 5)
    object_count = data[7]
    position = 8
    objects = []
    for _ in range(object_count):
        if position + 2 > end:
            raise FrameError("device identification object header runs past the frame", position)
        object_id, length = data[position], data[position + 1]
        if position + 2 + length > end:
            raise FrameError(f"object 0x{object_id:02X} runs past the frame", position + 1)
        objects.append((object_id, data[position + 2 : position + 2 + length]))
        position += 2 + length
    if position != end:
        raise FrameError(f"{end - position} bytes after the last object", position)
    return DeviceIdentificationResponse(
        unit_id, data[3], data[4], more == 0xFF, data[6], tuple(objects)
    )


def parse_request(frame: bytes | bytearray | memoryview) -> RequestValue:
    """Decode one whole RTU request ADU (as a slave or a bus sniffer sees it).

    Args:
        frame: unit id, PDU and CRC.

    Returns:
        ReadRequest, WriteSingleRequest, WriteMultipleRequest or
        DeviceIdentificationRequest. Quantities are reported as sent, even
        out of the spec's range (the slave answers those with exception 3).

    Raises:
        ChecksumError: the CRC does not match.
        FrameError: the frame is malformed or its function is not supported.
    """
    data = _checked_bytes(frame)
    unit_id = data[0]
    if unit_id > MAX_UNIT_ID:
        raise FrameError(f"unit id {unit_id} is reserved (248..255)", 0)
    function = data[1]
    if 1 <= function <= 6:
        _expect_length(data, 8, f"a function {function} request")
        address = (data[2] << 8) | data[3]
        value = (data[4] << 8) | data[5]
        if function <= 4:
            return ReadRequest(unit_id, function, address, value)
        return WriteSingleRequest(unit_id, function, address, value)
    if function in (15, 16):
        if len(data) < 9:
            raise FrameError(f"a function {function} request has at least 9 bytes", len(data))
        byte_count = data[6]
        if len(data) != 9 + byte_count:
            raise FrameError(f"byte count {byte_count} does not match the frame length", 6)
        address = (data[2] << 8) | data[3]
        quantity = (data[4] << 8) | data[5]
        return WriteMultipleRequest(unit_id, function, address, quantity, data[7:-2])
    if function == 43:
        _expect_length(data, 7, "a device identification request")
        if data[2] != MEI_READ_DEVICE_ID:
            raise FrameError(f"MEI type {data[2]} is not supported (only 14)", 2)
        return DeviceIdentificationRequest(unit_id, data[3], data[4])
    raise FrameError(f"function code {function} is not supported in a request", 1)


# --- Stream splitter ----------------------------------------------------------

_INVALID = -1  # the head cannot be this kind of frame
_PENDING = 0  # the head may be this kind of frame; more bytes needed


def _response_length(buffer: bytearray, head: int, available: int) -> int:
    """Length of the response frame starting at `head`, _PENDING or _INVALID."""
    if not 1 <= buffer[head] <= MAX_UNIT_ID:
        return _INVALID
    function = buffer[head + 1]
    if function & 0x80:
        return 5
    if 1 <= function <= 4:
        if available < 3:
            return _PENDING
        byte_count = buffer[head + 2]
        if byte_count == 0 or (function >= 3 and byte_count & 1) or byte_count > 251:
            return _INVALID
        return 5 + byte_count
    if function in (5, 6, 15, 16):
        return 8
    if function == 43:
        return _device_identification_length(buffer, head, available)
    return _INVALID


def _device_identification_length(buffer: bytearray, head: int, available: int) -> int:
    if available < 3:
        return _PENDING
    if buffer[head + 2] != MEI_READ_DEVICE_ID:
        return _INVALID
    if available < 8:
        return _PENDING
    position = 8
    for _ in range(buffer[head + 7]):
        if position + 2 > available:
            return _PENDING
        position += 2 + buffer[head + position + 1]
        if position + 2 > MAX_ADU_BYTES:
            return _INVALID
    return position + 2


def _request_length(buffer: bytearray, head: int, available: int) -> int:
    """Length of the request frame starting at `head`, _PENDING or _INVALID."""
    if buffer[head] > MAX_UNIT_ID:
        return _INVALID
    function = buffer[head + 1]
    if 1 <= function <= 6:
        return 8
    if function in (15, 16):
        if available < 7:
            return _PENDING
        byte_count = buffer[head + 6]
        if byte_count == 0 or byte_count > 246:
            return _INVALID
        return 9 + byte_count
    if function == 43:
        if available < 3:
            return _PENDING
        return 7 if buffer[head + 2] == MEI_READ_DEVICE_ID else _INVALID
    return _INVALID


class RtuSplitter:
    """Cuts the byte stream of an RS-485 bus into Modbus RTU frames (sans-I/O).

    Feed it what the port reads, then call next_frame() until it returns
    NEED_DATA. Noise (line glitches, truncated frames, replies to someone
    else's garbled request) is dropped one byte at a time and counted, so a
    valid frame after noise is never lost.

    Args:
        expect: RESPONSES on a master, REQUESTS on a slave, BOTH on a sniffer.
        max_buffer_bytes: bound on the unread bytes kept (at least 256); when a
            feed goes beyond it, the oldest bytes are dropped and counted in
            discarded_overflow_bytes.
    """

    def __init__(
        self, expect: Expect = Expect.RESPONSES, max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES
    ) -> None:
        if not isinstance(expect, Expect) or not expect:
            raise TypeError("expect must be Expect.RESPONSES, Expect.REQUESTS or Expect.BOTH")
        if type(max_buffer_bytes) is not int or max_buffer_bytes < MAX_ADU_BYTES:
            raise ValueError(f"max_buffer_bytes must be an int >= {MAX_ADU_BYTES}")
        self._want_requests = bool(expect & Expect.REQUESTS)
        self._want_responses = bool(expect & Expect.RESPONSES)
        self._max_buffer_bytes = max_buffer_bytes
        self._buffer = bytearray()
        self._head = 0
        self._idle_at = -1  # buffer index of the last silence not yet passed
        self._last_direction: Direction | None = None
        self.discarded_noise_bytes = 0
        self.discarded_overflow_bytes = 0
        self.frames_found = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and not yet returned or discarded."""
        return len(self._buffer) - self._head

    @property
    def last_direction(self) -> Direction | None:
        """Whether the last frame returned was a request or a response (in
        BOTH mode a FC5/6 echo, byte-identical to its request, is a REQUEST)."""
        return self._last_direction

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes read from the bus.

        Args:
            data: any number of bytes, cut anywhere.
        """
        self._buffer += memoryview(data)
        excess = len(self._buffer) - self._head - self._max_buffer_bytes
        if excess > 0:
            self._head += excess
            self.discarded_overflow_bytes += excess
            self._compact()

    def line_idle(self) -> None:
        """Tell the splitter the line went silent (t3.5 elapsed, or a read timed
        out): no frame spans a silence, so bytes buffered now that still wait
        for more data are noise (serial line §2.5.1.1)."""
        if len(self._buffer) > self._head:
            self._idle_at = len(self._buffer)

    def next_frame(self) -> bytes | NeedData:
        """The next CRC-valid frame in the stream, or NEED_DATA.

        Returns:
            One whole ADU (unit id, PDU, CRC) as bytes; last_direction tells
            whether it was matched as a request or a response. NEED_DATA when
            the buffered bytes hold no complete frame yet.
        """
        buffer = self._buffer
        while True:
            head = self._head
            available = len(buffer) - head
            if self._idle_at >= 0 and head >= self._idle_at:
                self._idle_at = -1
            limit = self._idle_at - head if self._idle_at >= 0 else -1
            if available == 0:
                self._compact()
                return NEED_DATA
            if not self._unit_possible(buffer[head]):
                self._discard_one()
                continue
            if available == 1:
                if limit > 0:
                    self._discard_one()
                    continue
                self._compact()
                return NEED_DATA
            candidates = []
            if self._want_requests:
                candidates.append((_request_length(buffer, head, available), Direction.REQUEST))
            if self._want_responses:
                candidates.append((_response_length(buffer, head, available), Direction.RESPONSE))
            # Shorter candidates first: a complete, CRC-valid short frame wins.
            candidates.sort(key=lambda candidate: candidate[0] or MAX_ADU_BYTES + 1)
            verdict = _INVALID
            for length, direction in candidates:
                if length == _INVALID or length > MAX_ADU_BYTES:
                    continue
                if limit > 0 and (length == _PENDING or length > limit):
                    continue  # would span a silence
                if length == _PENDING or length > available:
                    verdict = _PENDING
                    continue
                if _crc_ok(buffer, head, length):
                    self._head = head + length
                    self._last_direction = direction
                    self.frames_found += 1
                    return bytes(buffer[head : head + length])
            if verdict == _PENDING:
                self._compact()
                return NEED_DATA
            self._discard_one()

    def _unit_possible(self, unit_id: int) -> bool:
        # Serial line §2.2: requests go to 0..247; only 1..247 answer.
        if unit_id > MAX_UNIT_ID:
            return False
        return self._want_requests or unit_id != 0

    def _discard_one(self) -> None:
        self._head += 1
        self.discarded_noise_bytes += 1

    def _compact(self) -> None:
        if self._head:
            del self._buffer[: self._head]
            self._idle_at = self._idle_at - self._head if self._idle_at > self._head else -1
            self._head = 0


def _crc_ok(buffer: bytearray, head: int, length: int) -> bool:
    end = head + length
    received = buffer[end - 2] | (buffer[end - 1] << 8)
    return crc16_modbus(memoryview(buffer)[head : end - 2]) == received


# --- Register decoding --------------------------------------------------------

_TYPE_FORMATS = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}
# Order -> (swap the bytes of each 16-bit word first, struct byte order).
_ORDER_PLAN = {
    RegisterOrder.ABCD: (False, ">"),
    RegisterOrder.BADC: (True, ">"),
    RegisterOrder.DCBA: (False, "<"),
    RegisterOrder.CDAB: (True, "<"),
}


def _swap_word_bytes(data: bytes) -> bytes:
    words = array("H", data)
    words.byteswap()
    return words.tobytes()


def _checked_payload(payload: bytes | bytearray | memoryview) -> bytes:
    data = bytes(memoryview(payload))
    if len(data) & 1:
        raise FrameError(f"a register payload has an even length, got {len(data)}", len(data))
    return data


def _order_plan(order: object) -> tuple[bool, str]:
    plan = _ORDER_PLAN.get(order) if isinstance(order, RegisterOrder) else None
    if plan is None:
        raise TypeError(f"order must be a RegisterOrder, not {order!r}")
    return plan


def decode_floats(
    payload: bytes | bytearray | memoryview, order: RegisterOrder = RegisterOrder.ABCD
) -> list[float]:
    """Decode a run of float32 values (2 registers each), e.g. a meter's block.

    Args:
        payload: register bytes as received (ReadRegistersResponse.payload).
        order: how the 4 bytes of each value are laid out on the wire.

    Returns:
        One float per 4 bytes; NaN and infinities pass through.

    Raises:
        FrameError: the payload length is not a multiple of 4.
    """
    data = bytes(memoryview(payload))
    swap, endian = _order_plan(order)
    if len(data) & 3:
        raise FrameError(f"float32 run needs a multiple of 4 bytes, got {len(data)}", len(data))
    if swap:
        data = _swap_word_bytes(data)
    return list(struct.unpack(f"{endian}{len(data) // 4}f", data))


def _field_parts(field: object) -> tuple[int, str, tuple[bool, str], int, float]:
    parts = cast("tuple[object, object, object, object, object]", field)
    register_offset, data_type, order, decimal_exponent, multiplier = parts
    if not isinstance(register_offset, int) or register_offset < 0:
        raise ValueError(f"register_offset must be an int >= 0, not {register_offset!r}")
    type_format = _TYPE_FORMATS.get(data_type) if isinstance(data_type, DataType) else None
    if type_format is None:
        raise TypeError(f"data_type must be a DataType, not {data_type!r}")
    if not isinstance(decimal_exponent, int) or abs(decimal_exponent) > MAX_DECIMAL_EXPONENT:
        raise ValueError(f"decimal_exponent must be an int in -30..30, not {decimal_exponent!r}")
    if type(multiplier) is bool or not isinstance(multiplier, (int, float)):
        raise TypeError(f"multiplier must be a float, not {multiplier!r}")
    return register_offset, type_format, _order_plan(order), decimal_exponent, float(multiplier)


def _scaled(raw: float, decimal_exponent: int, multiplier: float) -> int | float:
    if decimal_exponent == 0 and multiplier == 1.0:
        return raw
    value = float(raw)
    if decimal_exponent > 0:
        value *= 10.0**decimal_exponent
    elif decimal_exponent < 0:
        # Divide by 10**n rather than multiply by 0.1**n: 2331 -> 233.1 exactly.
        value /= 10.0**-decimal_exponent
    if multiplier != 1.0:
        value *= multiplier
    return value


def decode_registers(
    payload: bytes | bytearray | memoryview, layout: Sequence[RegisterField]
) -> list[int | float]:
    """Decode many values from one register block in one call.

    Args:
        payload: register bytes as received (ReadRegistersResponse.payload).
        layout: RegisterField (register offset, type, order, decimal exponent,
            multiplier) per value wanted, in the order wanted.

    Returns:
        One value per field: raw * 10**decimal_exponent * multiplier; ints when
        unscaled integer types, floats otherwise (NaN/Inf pass through).

    Raises:
        FrameError: the payload has an odd length, or a field lies beyond it.
        TypeError, ValueError: a field is malformed (a caller bug, not bad data).
    """
    data = _checked_payload(payload)
    values: list[int | float] = []
    for field in layout:
        register_offset, type_format, (swap, endian), decimal_exponent, multiplier = _field_parts(
            field
        )
        size = struct.calcsize(type_format)
        start = 2 * register_offset
        if start + size > len(data):
            raise FrameError(
                f"a {size}-byte value at register {register_offset} lies beyond the "
                f"{len(data) // 2}-register payload",
                min(start, len(data)),
            )
        chunk = data[start : start + size]
        if swap:
            chunk = _swap_word_bytes(chunk)
        raw = struct.unpack(endian + type_format, chunk)[0]
        values.append(_scaled(raw, decimal_exponent, multiplier))
    return values


_INT_RANGES = {
    DataType.INT16: (-(1 << 15), (1 << 15) - 1),
    DataType.UINT16: (0, (1 << 16) - 1),
    DataType.INT32: (-(1 << 31), (1 << 31) - 1),
    DataType.UINT32: (0, (1 << 32) - 1),
    DataType.INT64: (-(1 << 63), (1 << 63) - 1),
    DataType.UINT64: (0, (1 << 64) - 1),
}


def encode_value(
    value: float, data_type: DataType, order: RegisterOrder = RegisterOrder.ABCD
) -> bytes:
    """Encode one value as register bytes (the inverse of decode_registers).

    Args:
        value: an int for the integer types, an int or float for float32/64.
        data_type: the register type.
        order: the byte order on the wire.

    Returns:
        2, 4 or 8 bytes, ready for build_write_multiple_registers once split
        into 16-bit words.

    Raises:
        EncodeError: the value does not fit the type.
        TypeError: data_type or order is not one of the enums.
    """
    type_format = _TYPE_FORMATS.get(data_type)
    if type_format is None:
        raise TypeError(f"data_type must be a DataType, not {data_type!r}")
    swap, endian = _order_plan(order)
    if data_type in _INT_RANGES:
        low, high = _INT_RANGES[data_type]
        number = _check_int(value, low, high, f"{data_type.value} value")
    else:
        if type(value) is bool or not isinstance(value, (int, float)):
            raise EncodeError(f"a {data_type.value} value must be a number, not {value!r}")
        try:
            chunk = struct.pack(endian + type_format, float(value))
        except (OverflowError, struct.error) as exc:
            raise EncodeError(f"{value!r} does not fit a {data_type.value}") from exc
        return _swap_word_bytes(chunk) if swap else chunk
    chunk = struct.pack(endian + type_format, number)
    return _swap_word_bytes(chunk) if swap else chunk
