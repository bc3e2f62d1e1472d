# Modbus RTU codec: the values both twins return and the enums they take.
#
# Defined once, here, and imported by fastcodec/_modbus_py.py and
# fastcodec/_modbus_c.pyx, so that a value decoded by one twin compares equal
# to the same value decoded by the other. Plain Python, standard library only.
#
# Spec references: Modbus Application Protocol V1.1b3 §6 (function codes),
# §7 (exception codes), §6.21 (43/14 Read Device Identification); Modbus over
# serial line V1.02 §2.2 (unit addresses: 0 broadcast, 1..247 units).
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

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
    "WriteMultipleRequest",
    "WriteMultipleResponse",
    "WriteSingleCoilResponse",
    "WriteSingleRegisterResponse",
    "WriteSingleRequest",
]

# Modbus over serial line V1.02 §2.5.1: an RTU ADU is at most 256 bytes
# (unit id 1 + PDU 253 + CRC 2).
MAX_ADU_BYTES = 256


class NeedData(enum.Enum):
    """Type of the `NEED_DATA` sentinel (an enum so that `is` and typing work)."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


# Returned by RtuSplitter.next_frame() when the buffer holds no complete frame yet.
NEED_DATA = NeedData.NEED_DATA


class FunctionCode(enum.IntEnum):
    """The public function codes this codec builds and parses (Application Protocol §6)."""

    READ_COILS = 1
    READ_DISCRETE_INPUTS = 2
    READ_HOLDING_REGISTERS = 3
    READ_INPUT_REGISTERS = 4
    WRITE_SINGLE_COIL = 5
    WRITE_SINGLE_REGISTER = 6
    WRITE_MULTIPLE_COILS = 15
    WRITE_MULTIPLE_REGISTERS = 16
    ENCAPSULATED_INTERFACE = 43


class ExceptionCode(enum.IntEnum):
    """Modbus exception codes (Application Protocol §7)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04
    ACKNOWLEDGE = 0x05
    SERVER_DEVICE_BUSY = 0x06
    MEMORY_PARITY_ERROR = 0x08
    GATEWAY_PATH_UNAVAILABLE = 0x0A
    GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND = 0x0B


class Direction(enum.Enum):
    """Which way a frame travels on the bus."""

    REQUEST = "request"
    RESPONSE = "response"


class Expect(enum.Flag):
    """What an RtuSplitter looks for: a master expects RESPONSES, a slave
    REQUESTS, a bus sniffer BOTH (request and response lengths differ for
    function codes 1..4, 15, 16 and 43)."""

    REQUESTS = 1
    RESPONSES = 2
    BOTH = 3


class DataType(enum.Enum):
    """Numeric types carried in 16-bit registers."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def register_count(self) -> int:
        """How many 16-bit registers one value occupies."""
        return _REGISTER_COUNTS[self.value]


_REGISTER_COUNTS = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "int64": 4,
    "uint64": 4,
    "float32": 2,
    "float64": 4,
}


class RegisterOrder(enum.Enum):
    """Byte order of a multi-register value on the wire, named after where the
    bytes A (most significant) .. D of a 32-bit value land.

    For 64-bit values the same four orders apply to ABCDEFGH: ABCD keeps
    ABCDEFGH, DCBA gives HGFEDCBA, CDAB reverses the words (GHEFCDAB), BADC
    swaps the bytes inside each word (BADCFEHG). A 16-bit value is AB under
    ABCD and CDAB, BA under DCBA and BADC.
    """

    ABCD = "ABCD"
    DCBA = "DCBA"
    CDAB = "CDAB"
    BADC = "BADC"
    # Aliases, the names meter manuals use.
    BIG_ENDIAN = "ABCD"
    LITTLE_ENDIAN = "DCBA"
    WORD_SWAPPED = "CDAB"
    BYTE_SWAPPED = "BADC"


class RegisterField(NamedTuple):
    """One value in a register block, for the bulk decoder.

    The decoded value is raw * 10**decimal_exponent * multiplier; with the
    defaults (0 and 1.0) integers stay ints, otherwise the result is a float.
    """

    register_offset: int
    data_type: DataType
    order: RegisterOrder = RegisterOrder.ABCD
    decimal_exponent: int = 0
    multiplier: float = 1.0


# --- Responses (Application Protocol §6.1..§6.21, §7) ---------------------------


@dataclass(frozen=True, slots=True)
class ReadBitsResponse:
    """Reply to function 1 (coils) or 2 (discrete inputs): one bool per bit,
    LSB of the first byte first. Without a known quantity every bit of the
    last byte is reported, padding included."""

    unit_id: int
    function: int
    bits: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class ReadRegistersResponse:
    """Reply to function 3 (holding) or 4 (input registers). `payload` holds
    the registers as sent, big-endian, 2 bytes each."""

    unit_id: int
    function: int
    payload: bytes

    @property
    def registers(self) -> tuple[int, ...]:
        """The registers as unsigned 16-bit ints."""
        data = self.payload
        return tuple((data[i] << 8) | data[i + 1] for i in range(0, len(data) - 1, 2))


@dataclass(frozen=True, slots=True)
class WriteSingleCoilResponse:
    """Echo of function 5: coil `address` now `value`."""

    unit_id: int
    address: int
    value: bool


@dataclass(frozen=True, slots=True)
class WriteSingleRegisterResponse:
    """Echo of function 6: register `address` now `value`."""

    unit_id: int
    address: int
    value: int


@dataclass(frozen=True, slots=True)
class WriteMultipleResponse:
    """Reply to function 15 (coils) or 16 (registers): `quantity` written from `address`."""

    unit_id: int
    function: int
    address: int
    quantity: int


@dataclass(frozen=True, slots=True)
class DeviceIdentificationResponse:
    """Reply to 43/14 Read Device Identification (Application Protocol §6.21).

    `objects` keeps (object id, raw value) in the order received; the values
    are bytes because the spec allows any octets in extended objects.
    """

    unit_id: int
    read_device_id_code: int
    conformity_level: int
    more_follows: bool
    next_object_id: int
    objects: tuple[tuple[int, bytes], ...]

    def text(self) -> dict[int, str]:
        """The objects as text (ASCII, undecodable bytes replaced)."""
        return {object_id: value.decode("ascii", "replace") for object_id, value in self.objects}


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """A Modbus exception reply (function | 0x80, code): the remote unit refused
    the request. A valid frame, not a codec error (Application Protocol §7)."""

    unit_id: int
    function: int
    exception_code: int

    @property
    def exception_name(self) -> str:
        """The spec's name of the code, or UNKNOWN_0xNN."""
        try:
            return ExceptionCode(self.exception_code).name
        except ValueError:
            return f"UNKNOWN_0x{self.exception_code:02X}"


# --- Requests, as a slave or a sniffer parses them -------------------------------


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Functions 1..4: read `quantity` items from `address`."""

    unit_id: int
    function: int
    address: int
    quantity: int


@dataclass(frozen=True, slots=True)
class WriteSingleRequest:
    """Functions 5 and 6: `value` is the raw 16-bit field (0xFF00/0x0000 for a coil)."""

    unit_id: int
    function: int
    address: int
    value: int


@dataclass(frozen=True, slots=True)
class WriteMultipleRequest:
    """Functions 15 and 16: `payload` is the packed coils or the registers as sent."""

    unit_id: int
    function: int
    address: int
    quantity: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class DeviceIdentificationRequest:
    """Function 43, MEI type 14: read device identification."""

    unit_id: int
    read_device_id_code: int
    object_id: int
