# Modbus RTU: request builders, parsers, the resynchronising stream splitter
# and register decoders. The compiled twin.
#
# Same API and results as fastcodec/_modbus_py.py, whose header documents the
# strategy, the invariants and the spec clauses:
#   Modbus over serial line V1.02 §2.5.1.1 RTU framing, §2.5.1.2 and
#   Appendix B CRC-16/MODBUS (low byte first), §2.2 unit addresses;
#   Modbus Application Protocol V1.1b3 §6.1..§6.6, §6.11, §6.12, §6.21, §7.
#
# What is compiled: the CRC (fastcodec._crc_c's slicing-by-8, cimported: no
# Python call per frame), frame checks on raw byte pointers, the splitter's length rules
# and resync loop over the bytearray's storage (a cdef class), and the
# register decoders (bytes gathered into a C integer, reinterpreted as float
# or double by memcpy). Every index is checked against a length first, which
# is why bounds checks are off in the functions that only use raw pointers.
# cython: language_level=3

cimport cython

from fastcodec._crc_c cimport crc16_modbus_of
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.math cimport pow
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF


cdef extern from "Python.h":
    int PyObject_GenericSetAttr(object target, object name, object value) except -1
from libc.stdint cimport int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

import struct
from array import array
from collections.abc import Sequence

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

cdef enum:
    ADU_CAPACITY = 256

cdef str CRC_NAME = "CRC-16/MODBUS"
cdef int MAX_UNIT_ID = 247
cdef int MAX_READ_BITS = 2000
cdef int MAX_READ_REGISTERS = 125
cdef int MAX_WRITE_COILS = 1968
cdef int MAX_WRITE_REGISTERS = 123
cdef int MEI_READ_DEVICE_ID = 14
cdef int COIL_ON = 0xFF00
cdef int COIL_OFF = 0x0000
cdef Py_ssize_t DEFAULT_MAX_BUFFER_BYTES = 4096
cdef int MAX_DECIMAL_EXPONENT = 30
cdef Py_ssize_t MAX_ADU = MAX_ADU_BYTES

cdef object _DIRECTION_REQUEST = Direction.REQUEST
cdef object _DIRECTION_RESPONSE = Direction.RESPONSE
cdef object _NEED_DATA = NEED_DATA

# --- CRC-16/MODBUS (serial line Appendix B): fastcodec._crc_c's, cimported -------


cdef inline bint _crc_matches(const unsigned char *frame, Py_ssize_t length) noexcept nogil:
    # length >= 3 guaranteed by the callers.
    return crc16_modbus_of(frame, length - 2) == (frame[length - 2] | (frame[length - 1] << 8))


# --- Builders -----------------------------------------------------------------


cdef long _check_int(object value, long low, long high, str what) except? -1:
    if type(value) is bool or not isinstance(value, int):
        raise EncodeError(f"{what} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise EncodeError(f"{what} {value} is outside {low}..{high}")
    return <long>value


cdef long _check_span_quantity(long start, object quantity, long high, str what) except? -1:
    cdef long count = _check_int(quantity, 1, high, f"quantity of {what}")
    if start + count > 0x10000:
        raise EncodeError(f"address {start} + quantity {count} runs past register 65535")
    return count


cdef bytes _finish_adu(unsigned char *buf, Py_ssize_t length):
    # buf has room for length + 2 bytes.
    cdef uint16_t crc = crc16_modbus_of(buf, length)
    buf[length] = crc & 0xFF
    buf[length + 1] = crc >> 8
    return PyBytes_FromStringAndSize(<char *>buf, length + 2)


cdef inline void _put_u16(unsigned char *buf, uint16_t value) noexcept:
    buf[0] = value >> 8
    buf[1] = value & 0xFF


cdef bytes _build_read(int function, object unit_id, object address, object quantity):
    cdef unsigned char buf[8]
    cdef long unit = _check_int(unit_id, 1, MAX_UNIT_ID, "unit id of a read")
    cdef long limit = MAX_READ_BITS if function <= 2 else MAX_READ_REGISTERS
    cdef long start = _check_int(address, 0, 0xFFFF, "address")
    cdef long count = _check_span_quantity(start, quantity, limit, "items to read")
    buf[0] = <unsigned char>unit
    buf[1] = <unsigned char>function
    _put_u16(buf + 2, <uint16_t>start)
    _put_u16(buf + 4, <uint16_t>count)
    return _finish_adu(buf, 6)


def build_read_coils(unit_id, address, quantity):
    """Function 1, Read Coils (§6.1): unit 1..247, address 0..65535, quantity 1..2000."""
    return _build_read(1, unit_id, address, quantity)


def build_read_discrete_inputs(unit_id, address, quantity):
    """Function 2, Read Discrete Inputs (§6.2); arguments as build_read_coils."""
    return _build_read(2, unit_id, address, quantity)


def build_read_holding_registers(unit_id, address, quantity):
    """Function 3, Read Holding Registers (§6.3): quantity 1..125."""
    return _build_read(3, unit_id, address, quantity)


def build_read_input_registers(unit_id, address, quantity):
    """Function 4, Read Input Registers (§6.4): quantity 1..125."""
    return _build_read(4, unit_id, address, quantity)


cdef bint _check_coil(object value) except -1:
    if type(value) is bool:
        return value is True
    if type(value) is int and value in (0, 1):
        return value == 1
    raise EncodeError(f"a coil value must be a bool (or 0/1), not {value!r}")


cdef bytes _build_write_single(int function, long unit, long start, uint16_t value):
    cdef unsigned char buf[8]
    buf[0] = <unsigned char>unit
    buf[1] = <unsigned char>function
    _put_u16(buf + 2, <uint16_t>start)
    _put_u16(buf + 4, value)
    return _finish_adu(buf, 6)


def build_write_single_coil(unit_id, address, value):
    """Function 5, Write Single Coil (§6.5): True is sent as 0xFF00."""
    cdef long unit = _check_int(unit_id, 0, MAX_UNIT_ID, "unit id")
    cdef long start = _check_int(address, 0, 0xFFFF, "address")
    cdef bint state = _check_coil(value)
    return _build_write_single(5, unit, start, COIL_ON if state else COIL_OFF)


def build_write_single_register(unit_id, address, value):
    """Function 6, Write Single Register (§6.6): value 0..65535."""
    cdef long unit = _check_int(unit_id, 0, MAX_UNIT_ID, "unit id")
    cdef long start = _check_int(address, 0, 0xFFFF, "address")
    cdef long register = _check_int(value, 0, 0xFFFF, "register value")
    return _build_write_single(6, unit, start, <uint16_t>register)


cdef list _as_list(object values):
    if isinstance(values, (str, bytes, bytearray, memoryview)) or not isinstance(values, Sequence):
        raise EncodeError(f"values must be a sequence, not {type(values).__name__}")
    return list(values)


@cython.boundscheck(False)
@cython.wraparound(False)
def build_write_multiple_coils(unit_id, address, values):
    """Function 15, Write Multiple Coils (§6.11): 1..1968 coils, packed LSB first."""
    cdef unsigned char buf[ADU_CAPACITY + 2]
    cdef long unit = _check_int(unit_id, 0, MAX_UNIT_ID, "unit id")
    cdef list states = [_check_coil(value) for value in _as_list(values)]
    cdef long start = _check_int(address, 0, 0xFFFF, "address")
    cdef long count = _check_span_quantity(start, len(states), MAX_WRITE_COILS, "coils to write")
    cdef Py_ssize_t byte_count = (count + 7) // 8
    cdef Py_ssize_t index
    buf[0] = <unsigned char>unit
    buf[1] = 15
    _put_u16(buf + 2, <uint16_t>start)
    _put_u16(buf + 4, <uint16_t>count)
    buf[6] = <unsigned char>byte_count
    for index in range(byte_count):
        buf[7 + index] = 0
    for index in range(count):
        if states[index]:
            buf[7 + (index >> 3)] |= 1 << (index & 7)
    return _finish_adu(buf, 7 + byte_count)


@cython.boundscheck(False)
@cython.wraparound(False)
def build_write_multiple_registers(unit_id, address, values):
    """Function 16, Write Multiple Registers (§6.12): 1..123 values, each 0..65535."""
    cdef unsigned char buf[ADU_CAPACITY + 2]
    cdef long unit = _check_int(unit_id, 0, MAX_UNIT_ID, "unit id")
    cdef list registers = [
        _check_int(value, 0, 0xFFFF, "register value") for value in _as_list(values)
    ]
    cdef long start = _check_int(address, 0, 0xFFFF, "address")
    cdef long count = _check_span_quantity(
        start, len(registers), MAX_WRITE_REGISTERS, "registers to write"
    )
    cdef Py_ssize_t index
    buf[0] = <unsigned char>unit
    buf[1] = 16
    _put_u16(buf + 2, <uint16_t>start)
    _put_u16(buf + 4, <uint16_t>count)
    buf[6] = <unsigned char>(2 * count)
    for index in range(count):
        _put_u16(buf + 7 + 2 * index, <uint16_t><long>registers[index])
    return _finish_adu(buf, 7 + 2 * count)


def build_read_device_identification(unit_id, read_device_id_code=1, object_id=0):
    """Function 43 / MEI 14, Read Device Identification (§6.21)."""
    cdef unsigned char buf[7]
    cdef long unit = _check_int(unit_id, 1, MAX_UNIT_ID, "unit id of a read")
    cdef long code = _check_int(read_device_id_code, 1, 4, "read device id code")
    cdef long first = _check_int(object_id, 0, 0xFF, "object id")
    buf[0] = <unsigned char>unit
    buf[1] = 43
    buf[2] = MEI_READ_DEVICE_ID
    buf[3] = <unsigned char>code
    buf[4] = <unsigned char>first
    return _finish_adu(buf, 5)


# --- Parsers ------------------------------------------------------------------


cdef inline bytes _as_bytes(object data):
    if type(data) is bytes:
        return <bytes>data
    # memoryview() refuses ints and str (bytes(5) would be 5 zero bytes).
    return bytes(memoryview(data))


cdef int _check_frame(const unsigned char *p, Py_ssize_t length) except -1:
    cdef uint16_t expected, received
    if length < 4:
        raise FrameError(f"an RTU frame has at least 4 bytes, got {length}", length)
    if length > MAX_ADU:
        raise FrameError(f"an RTU frame has at most {MAX_ADU_BYTES} bytes, got {length}", 0)
    received = p[length - 2] | (p[length - 1] << 8)
    expected = crc16_modbus_of(p, length - 2)
    if expected != received:
        raise ChecksumError(CRC_NAME, expected, received, length - 2)
    return 0


cdef int _expect_length(Py_ssize_t length, Py_ssize_t expected, str what) except -1:
    if length != expected:
        raise FrameError(f"{what} must be {expected} bytes long, got {length}", 2)
    return 0


def parse_response(frame, quantity=None):
    """Decode one whole RTU response ADU (see fastcodec._modbus_py.parse_response).

    Returns a response value; an exception reply gives an ExceptionResponse.
    Raises ChecksumError on a CRC mismatch, FrameError on a malformed frame.
    """
    cdef bytes data = _as_bytes(frame)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t length = PyBytes_GET_SIZE(data)
    cdef int unit_id, function
    cdef int address, value
    _check_frame(p, length)
    unit_id = p[0]
    if not 1 <= unit_id <= MAX_UNIT_ID:
        raise FrameError(f"unit id {unit_id} cannot answer (responses come from 1..247)", 0)
    function = p[1]
    if function & 0x80:
        _expect_length(length, 5, "an exception response")
        return ExceptionResponse(unit_id, function & 0x7F, p[2])
    if function <= 4:
        return _parse_read_reply(data, p, length, unit_id, function, quantity)
    if function == 5 or function == 6 or function == 15 or function == 16:
        _expect_length(length, 8, f"a function {function} response")
        address = (p[2] << 8) | p[3]
        value = (p[4] << 8) | p[5]
        if function == 5:
            return WriteSingleCoilResponse(unit_id, address, _coil_state(value))
        if function == 6:
            return WriteSingleRegisterResponse(unit_id, address, value)
        return WriteMultipleResponse(unit_id, function, address, value)
    if function == 43:
        return _parse_device_identification(data, p, length, unit_id)
    raise FrameError(f"function code {function} is not supported", 1)


cdef bint _coil_state(int value) except -1:
    if value == COIL_ON:
        return True
    if value == COIL_OFF:
        return False
    raise FrameError(f"coil value 0x{value:04X} is neither 0xFF00 nor 0x0000", 4)


cdef object _object_new = object.__new__
cdef str _UNIT_ID = "unit_id"
cdef str _FUNCTION = "function"
cdef str _PAYLOAD = "payload"


cdef object _registers_response(int unit_id, int function, bytes payload):
    # The hot path's value, built without the frozen dataclass __init__
    # (a Python-level call that costs as much as parsing the frame). Same
    # fields, same object: equal to ReadRegistersResponse(unit_id, function,
    # payload). Keep in step with _modbus_types if that class gains checks.
    response = _object_new(ReadRegistersResponse)
    PyObject_GenericSetAttr(response, _UNIT_ID, unit_id)
    PyObject_GenericSetAttr(response, _FUNCTION, function)
    PyObject_GenericSetAttr(response, _PAYLOAD, payload)
    return response


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _parse_read_reply(
    bytes data, const unsigned char *p, Py_ssize_t length, int unit_id, int function,
    object quantity,
):
    cdef Py_ssize_t byte_count, bit_count, index
    cdef long asked
    if function == 0:
        raise FrameError("function code 0 is not valid", 1)
    byte_count = p[2]
    if length != 5 + byte_count:
        raise FrameError(
            f"byte count {byte_count} does not match a {length}-byte frame "
            f"(expected {length - 5})",
            2,
        )
    if byte_count == 0:
        raise FrameError("a read reply carries at least one byte", 2)
    if function >= 3:
        if byte_count & 1:
            raise FrameError(f"odd byte count {byte_count} in a register reply", 2)
        if quantity is not None and byte_count != 2 * quantity:
            raise FrameError(f"{byte_count // 2} registers received, {quantity} asked", 2)
        return _registers_response(
            unit_id, function, PyBytes_FromStringAndSize(<const char *>p + 3, byte_count)
        )
    bit_count = 8 * byte_count
    if quantity is not None:
        if byte_count != (quantity + 7) // 8:
            raise FrameError(f"{byte_count} bytes of bits received for {quantity} asked", 2)
        bit_count = quantity
    bits = tuple([bool((p[3 + (index >> 3)] >> (index & 7)) & 1) for index in range(bit_count)])
    return ReadBitsResponse(unit_id, function, bits)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _parse_device_identification(
    bytes data, const unsigned char *p, Py_ssize_t length, int unit_id
):
    cdef Py_ssize_t end = length - 2
    cdef Py_ssize_t position = 8
    cdef int more, object_id, object_length, remaining
    if end < 8:
        raise FrameError("a device identification reply has at least 10 bytes", end)
    if p[2] != MEI_READ_DEVICE_ID:
        raise FrameError(f"MEI type {p[2]} is not supported (only 14)", 2)
    more = p[5]
    if more != 0x00 and more != 0xFF:
        raise FrameError(f"more-follows 0x{more:02X} is neither 0x00 nor 0xFF", 5)
    objects = []
    for remaining in range(p[7]):
        if position + 2 > end:
            raise FrameError(
                "device identification object header runs past the frame", position
            )
        object_id = p[position]
        object_length = p[position + 1]
        if position + 2 + object_length > end:
            raise FrameError(f"object 0x{object_id:02X} runs past the frame", position + 1)
        objects.append((object_id, data[position + 2 : position + 2 + object_length]))
        position += 2 + object_length
    if position != end:
        raise FrameError(f"{end - position} bytes after the last object", position)
    return DeviceIdentificationResponse(
        unit_id, p[3], p[4], more == 0xFF, p[6], tuple(objects)
    )


def parse_request(frame):
    """Decode one whole RTU request ADU (see fastcodec._modbus_py.parse_request)."""
    cdef bytes data = _as_bytes(frame)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t length = PyBytes_GET_SIZE(data)
    cdef int unit_id, function, address, value, byte_count
    _check_frame(p, length)
    unit_id = p[0]
    if unit_id > MAX_UNIT_ID:
        raise FrameError(f"unit id {unit_id} is reserved (248..255)", 0)
    function = p[1]
    if 1 <= function <= 6:
        _expect_length(length, 8, f"a function {function} request")
        address = (p[2] << 8) | p[3]
        value = (p[4] << 8) | p[5]
        if function <= 4:
            return ReadRequest(unit_id, function, address, value)
        return WriteSingleRequest(unit_id, function, address, value)
    if function == 15 or function == 16:
        if length < 9:
            raise FrameError(f"a function {function} request has at least 9 bytes", length)
        byte_count = p[6]
        if length != 9 + byte_count:
            raise FrameError(f"byte count {byte_count} does not match the frame length", 6)
        address = (p[2] << 8) | p[3]
        value = (p[4] << 8) | p[5]
        return WriteMultipleRequest(unit_id, function, address, value, data[7 : length - 2])
    if function == 43:
        _expect_length(length, 7, "a device identification request")
        if p[2] != MEI_READ_DEVICE_ID:
            raise FrameError(f"MEI type {p[2]} is not supported (only 14)", 2)
        return DeviceIdentificationRequest(unit_id, p[3], p[4])
    raise FrameError(f"function code {function} is not supported in a request", 1)


# --- Stream splitter ----------------------------------------------------------

cdef enum:
    INVALID = -1  # the head cannot be this kind of frame
    PENDING = 0  # the head may be this kind of frame; more bytes needed


cdef inline Py_ssize_t _sort_key(Py_ssize_t length) noexcept:
    return ADU_CAPACITY + 1 if length == PENDING else length


cdef Py_ssize_t _response_length(const unsigned char *p, Py_ssize_t available) noexcept nogil:
    # p points at the head; available >= 2.
    cdef int function = p[1]
    cdef int byte_count
    if p[0] == 0 or p[0] > 247:
        return INVALID
    if function & 0x80:
        return 5
    if 1 <= function <= 4:
        if available < 3:
            return PENDING
        byte_count = p[2]
        if byte_count == 0 or (function >= 3 and byte_count & 1) or byte_count > 251:
            return INVALID
        return 5 + byte_count
    if function == 5 or function == 6 or function == 15 or function == 16:
        return 8
    if function == 43:
        return _device_identification_length(p, available)
    return INVALID


cdef Py_ssize_t _device_identification_length(
    const unsigned char *p, Py_ssize_t available
) noexcept nogil:
    cdef Py_ssize_t position = 8
    cdef int index
    if available < 3:
        return PENDING
    if p[2] != 14:
        return INVALID
    if available < 8:
        return PENDING
    for index in range(p[7]):
        if position + 2 > available:
            return PENDING
        position += 2 + p[position + 1]
        if position + 2 > ADU_CAPACITY:
            return INVALID
    return position + 2


cdef Py_ssize_t _request_length(const unsigned char *p, Py_ssize_t available) noexcept nogil:
    cdef int function = p[1]
    cdef int byte_count
    if p[0] > 247:
        return INVALID
    if 1 <= function <= 6:
        return 8
    if function == 15 or function == 16:
        if available < 7:
            return PENDING
        byte_count = p[6]
        if byte_count == 0 or byte_count > 246:
            return INVALID
        return 9 + byte_count
    if function == 43:
        if available < 3:
            return PENDING
        return 7 if p[2] == 14 else INVALID
    return INVALID


@cython.final
cdef class RtuSplitter:
    """Cuts the byte stream of an RS-485 bus into Modbus RTU frames (sans-I/O).

    See fastcodec._modbus_py.RtuSplitter: feed(data), then next_frame() until
    NEED_DATA; noise is dropped one byte at a time and counted.
    """

    cdef bytearray _buffer
    cdef Py_ssize_t _head
    cdef Py_ssize_t _idle_at
    cdef Py_ssize_t _max_buffer_bytes
    cdef bint _want_requests
    cdef bint _want_responses
    cdef object _last_direction
    cdef readonly Py_ssize_t discarded_noise_bytes
    cdef readonly Py_ssize_t discarded_overflow_bytes
    cdef readonly Py_ssize_t frames_found

    def __init__(self, expect=Expect.RESPONSES, max_buffer_bytes=DEFAULT_MAX_BUFFER_BYTES):
        if not isinstance(expect, Expect) or not expect:
            raise TypeError("expect must be Expect.RESPONSES, Expect.REQUESTS or Expect.BOTH")
        if type(max_buffer_bytes) is not int or max_buffer_bytes < MAX_ADU_BYTES:
            raise ValueError(f"max_buffer_bytes must be an int >= {MAX_ADU_BYTES}")
        self._want_requests = bool(expect & Expect.REQUESTS)
        self._want_responses = bool(expect & Expect.RESPONSES)
        self._max_buffer_bytes = max_buffer_bytes
        self._buffer = bytearray()
        self._head = 0
        self._idle_at = -1
        self._last_direction = None
        self.discarded_noise_bytes = 0
        self.discarded_overflow_bytes = 0
        self.frames_found = 0

    @property
    def buffered_bytes(self):
        """Bytes received and not yet returned or discarded."""
        return PyByteArray_GET_SIZE(self._buffer) - self._head

    @property
    def last_direction(self):
        """Whether the last frame returned was a request or a response."""
        return self._last_direction

    def feed(self, data):
        """Append bytes read from the bus."""
        cdef Py_ssize_t excess
        self._buffer += data if type(data) is bytes else memoryview(data)
        excess = PyByteArray_GET_SIZE(self._buffer) - self._head - self._max_buffer_bytes
        if excess > 0:
            self._head += excess
            self.discarded_overflow_bytes += excess
            self._compact()

    def line_idle(self):
        """The line went silent (t3.5, read timeout): no frame spans a silence."""
        cdef Py_ssize_t size = PyByteArray_GET_SIZE(self._buffer)
        if size > self._head:
            self._idle_at = size

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def next_frame(self):
        """The next CRC-valid frame in the stream (bytes), or NEED_DATA."""
        cdef const unsigned char *base
        cdef const unsigned char *p
        cdef Py_ssize_t head, available, limit, length, request_length, response_length
        cdef Py_ssize_t first_length, second_length
        cdef bint pending, first_is_request
        cdef int unit_id
        base = <const unsigned char *>PyByteArray_AS_STRING(self._buffer)
        while True:
            head = self._head
            available = PyByteArray_GET_SIZE(self._buffer) - head
            if self._idle_at >= 0 and head >= self._idle_at:
                self._idle_at = -1
            limit = self._idle_at - head if self._idle_at >= 0 else -1
            if available == 0:
                self._compact()
                return _NEED_DATA
            p = base + head
            unit_id = p[0]
            if unit_id > MAX_UNIT_ID or (unit_id == 0 and not self._want_requests):
                self._discard_one()
                continue
            if available == 1:
                if limit > 0:
                    self._discard_one()
                    continue
                self._compact()
                return _NEED_DATA
            request_length = _request_length(p, available) if self._want_requests else INVALID
            response_length = _response_length(p, available) if self._want_responses else INVALID
            # Shorter candidates first (unknown lengths last); a request wins a tie.
            if _sort_key(response_length) < _sort_key(request_length):
                first_length, second_length = response_length, request_length
                first_is_request = False
            else:
                first_length, second_length = request_length, response_length
                first_is_request = True
            pending = False
            length = self._try_candidate(p, first_length, available, limit)
            if length > 0:
                return self._take(head, length, first_is_request)
            pending = length == PENDING
            length = self._try_candidate(p, second_length, available, limit)
            if length > 0:
                return self._take(head, length, not first_is_request)
            if pending or length == PENDING:
                self._compact()
                return _NEED_DATA
            self._discard_one()

    cdef inline Py_ssize_t _try_candidate(
        self, const unsigned char *p, Py_ssize_t length, Py_ssize_t available, Py_ssize_t limit
    ) noexcept:
        # > 0: a complete CRC-valid frame of that length; PENDING: wait; INVALID: not this.
        if length == INVALID or length > ADU_CAPACITY:
            return INVALID
        if limit > 0 and (length == PENDING or length > limit):
            return INVALID  # would span a silence
        if length == PENDING or length > available:
            return PENDING
        if _crc_matches(p, length):
            return length
        return INVALID

    cdef bytes _take(self, Py_ssize_t head, Py_ssize_t length, bint is_request):
        cdef const char *base = PyByteArray_AS_STRING(self._buffer)
        self._head = head + length
        self._last_direction = _DIRECTION_REQUEST if is_request else _DIRECTION_RESPONSE
        self.frames_found += 1
        return PyBytes_FromStringAndSize(base + head, length)

    cdef inline void _discard_one(self) noexcept:
        self._head += 1
        self.discarded_noise_bytes += 1

    cdef int _compact(self) except -1:
        if self._head:
            del self._buffer[: self._head]
            self._idle_at = self._idle_at - self._head if self._idle_at > self._head else -1
            self._head = 0
        return 0


# --- Register decoding --------------------------------------------------------

cdef enum:
    ORDER_ABCD = 0
    ORDER_DCBA = 1
    ORDER_CDAB = 2
    ORDER_BADC = 3

cdef object _ABCD = RegisterOrder.ABCD
cdef object _DCBA = RegisterOrder.DCBA
cdef object _CDAB = RegisterOrder.CDAB
cdef object _BADC = RegisterOrder.BADC

cdef dict _TYPE_CODES = {
    DataType.INT16: 0,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 3,
    DataType.INT64: 4,
    DataType.UINT64: 5,
    DataType.FLOAT32: 6,
    DataType.FLOAT64: 7,
}
cdef Py_ssize_t TYPE_SIZES[8]
TYPE_SIZES[:] = [2, 2, 4, 4, 8, 8, 4, 8]


cdef int _order_code(object order) except -1:
    if order is _ABCD:
        return ORDER_ABCD
    if order is _DCBA:
        return ORDER_DCBA
    if order is _CDAB:
        return ORDER_CDAB
    if order is _BADC:
        return ORDER_BADC
    raise TypeError(f"order must be a RegisterOrder, not {order!r}")


@cython.cdivision(True)
cdef inline uint64_t _gather(const unsigned char *p, Py_ssize_t size, int order) noexcept nogil:
    # The value's bytes, most significant first, whatever the wire order:
    # DCBA and CDAB reverse the words, DCBA and BADC swap the bytes in a word.
    cdef bint reverse_words = order == ORDER_DCBA or order == ORDER_CDAB
    cdef bint swap_bytes = order == ORDER_DCBA or order == ORDER_BADC
    cdef Py_ssize_t words = size >> 1
    cdef Py_ssize_t i, word, byte
    cdef uint64_t value = 0
    for i in range(size):
        word = (words - 1 - (i >> 1)) if reverse_words else (i >> 1)
        byte = (1 - (i & 1)) if swap_bytes else (i & 1)
        value = (value << 8) | p[2 * word + byte]
    return value


@cython.boundscheck(False)
@cython.wraparound(False)
def decode_floats(payload, order=RegisterOrder.ABCD):
    """Decode a run of float32 values (2 registers each); NaN/Inf pass through.

    Raises FrameError when the payload length is not a multiple of 4.
    """
    cdef bytes data = _as_bytes(payload)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t length = PyBytes_GET_SIZE(data)
    cdef int code = _order_code(order)
    cdef Py_ssize_t index, count
    cdef uint32_t raw
    cdef float value
    cdef list result
    cdef object item
    if length & 3:
        raise FrameError(f"float32 run needs a multiple of 4 bytes, got {length}", length)
    count = length >> 2
    result = PyList_New(count)
    for index in range(count):
        if code == ORDER_ABCD:
            raw = (
                (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
            )
        elif code == ORDER_CDAB:
            raw = (
                (<uint32_t>p[2] << 24) | (<uint32_t>p[3] << 16) | (<uint32_t>p[0] << 8) | p[1]
            )
        else:
            raw = <uint32_t>_gather(p, 4, code)
        memcpy(&value, &raw, 4)
        item = <double>value
        Py_INCREF(item)  # PyList_SET_ITEM steals a reference
        PyList_SET_ITEM(result, index, item)
        p += 4
    return result


cdef object _raw_value(const unsigned char *p, int type_code, int order):
    cdef uint64_t raw = _gather(p, TYPE_SIZES[type_code], order)
    cdef float single
    cdef double double_value
    cdef uint32_t raw32
    if type_code == 0:
        return <int16_t><uint16_t>raw
    if type_code == 1:
        return <uint16_t>raw
    if type_code == 2:
        return <int32_t><uint32_t>raw
    if type_code == 3:
        return <uint32_t>raw
    if type_code == 4:
        return <int64_t>raw
    if type_code == 5:
        return raw
    if type_code == 6:
        raw32 = <uint32_t>raw
        memcpy(&single, &raw32, 4)
        return <double>single
    memcpy(&double_value, &raw, 8)
    return double_value


cdef object _scaled(object raw, long decimal_exponent, double multiplier):
    cdef double value
    if decimal_exponent == 0 and multiplier == 1.0:
        return raw
    value = raw  # Python's int -> float conversion, correctly rounded
    if decimal_exponent > 0:
        value *= pow(10.0, <double>decimal_exponent)
    elif decimal_exponent < 0:
        # Divide by 10**n rather than multiply by 0.1**n: 2331 -> 233.1 exactly.
        value /= pow(10.0, <double>-decimal_exponent)
    if multiplier != 1.0:
        value *= multiplier
    return value


def decode_registers(payload, layout):
    """Decode many values from one register block in one call (see the pure twin).

    Raises FrameError when the payload has an odd length or a field lies
    beyond it; TypeError/ValueError for a malformed field.
    """
    cdef bytes data = _as_bytes(payload)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t length = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t start, size
    cdef int type_code, order_code
    cdef long exponent
    cdef double factor
    cdef list values = []
    cdef tuple parts
    if length & 1:
        raise FrameError(f"a register payload has an even length, got {length}", length)
    for field in layout:
        if isinstance(field, tuple) and len(<tuple>field) == 5:
            parts = <tuple>field
        else:
            register_offset, data_type, order, decimal_exponent, multiplier = field
            parts = (register_offset, data_type, order, decimal_exponent, multiplier)
        register_offset = parts[0]
        data_type = parts[1]
        decimal_exponent = parts[3]
        multiplier = parts[4]
        if not isinstance(register_offset, int) or register_offset < 0:
            raise ValueError(f"register_offset must be an int >= 0, not {register_offset!r}")
        type_object = _TYPE_CODES.get(data_type) if isinstance(data_type, DataType) else None
        if type_object is None:
            raise TypeError(f"data_type must be a DataType, not {data_type!r}")
        type_code = type_object
        if not isinstance(decimal_exponent, int) or abs(decimal_exponent) > MAX_DECIMAL_EXPONENT:
            raise ValueError(
                f"decimal_exponent must be an int in -30..30, not {decimal_exponent!r}"
            )
        if type(multiplier) is bool or not isinstance(multiplier, (int, float)):
            raise TypeError(f"multiplier must be a float, not {multiplier!r}")
        order_code = _order_code(parts[2])
        exponent = decimal_exponent
        factor = multiplier
        size = TYPE_SIZES[type_code]
        if register_offset > length:
            start = length + 1  # beyond any payload; avoids C overflow below
        else:
            start = 2 * <Py_ssize_t>register_offset
        if start + size > length:
            raise FrameError(
                f"a {size}-byte value at register {register_offset} lies beyond the "
                f"{length // 2}-register payload",
                min(2 * register_offset, length),
            )
        values.append(_scaled(_raw_value(p + start, type_code, order_code), exponent, factor))
    return values


cdef dict _TYPE_FORMATS = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}
cdef dict _INT_RANGES = {
    DataType.INT16: (-(1 << 15), (1 << 15) - 1),
    DataType.UINT16: (0, (1 << 16) - 1),
    DataType.INT32: (-(1 << 31), (1 << 31) - 1),
    DataType.UINT32: (0, (1 << 32) - 1),
    DataType.INT64: (-(1 << 63), (1 << 63) - 1),
    DataType.UINT64: (0, (1 << 64) - 1),
}
cdef dict _ENDIAN = {
    RegisterOrder.ABCD: (False, ">"),
    RegisterOrder.BADC: (True, ">"),
    RegisterOrder.DCBA: (False, "<"),
    RegisterOrder.CDAB: (True, "<"),
}


cdef bytes _swap_word_bytes(bytes data):
    words = array("H", data)
    words.byteswap()
    return words.tobytes()


def encode_value(value, data_type, order=RegisterOrder.ABCD):
    """Encode one value as register bytes (the inverse of decode_registers).

    Raises EncodeError when the value does not fit the type, TypeError when
    data_type or order is not one of the enums.
    """
    type_format = _TYPE_FORMATS.get(data_type) if isinstance(data_type, DataType) else None
    if type_format is None:
        raise TypeError(f"data_type must be a DataType, not {data_type!r}")
    plan = _ENDIAN.get(order) if isinstance(order, RegisterOrder) else None
    if plan is None:
        raise TypeError(f"order must be a RegisterOrder, not {order!r}")
    swap, endian = plan
    if data_type in _INT_RANGES:
        low, high = _INT_RANGES[data_type]
        if type(value) is bool or not isinstance(value, int):
            raise EncodeError(f"{data_type.value} value must be an int, not {type(value).__name__}")
        if not low <= value <= high:
            raise EncodeError(f"{data_type.value} value {value} is outside {low}..{high}")
        chunk = struct.pack(endian + type_format, value)
    else:
        if type(value) is bool or not isinstance(value, (int, float)):
            raise EncodeError(f"a {data_type.value} value must be a number, not {value!r}")
        try:
            chunk = struct.pack(endian + type_format, float(value))
        except (OverflowError, struct.error) as exc:
            raise EncodeError(f"{value!r} does not fit a {data_type.value}") from exc
    return _swap_word_bytes(chunk) if swap else chunk
