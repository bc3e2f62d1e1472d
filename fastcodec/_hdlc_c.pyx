# DLMS HDLC (IEC 62056-46) and the IEC 62056-47 wrapper: the compiled twin.
#
# Same API and results as fastcodec/_hdlc_py.py, which documents the frame
# format, the strategy, the invariants and the spec clauses (IEC 62056-46 §6.4.4,
# HCS/FCS §6.4.4.10, parameter negotiation §6.4.4.4.3.2; IEC 62056-47 wrapper).
#
# The hot paths (parse_frame, FrameSplitter.next_frame) work on a C pointer into
# the caller's bytes or the splitter's bytearray: every index is checked against
# the lengths first, so bounds checks are off there. CRC-16/X-25 (HCS, FCS) is
# fastcodec._crc_c's slicing-by-8 (cimported, no Python call): on a 692-byte
# frame the FCS is most of the work. The rarer paths (build, parameters,
# wrapper, reassembly) are the pure twin's logic, typed where it pays.
# cython: language_level=3

cimport cython

from fastcodec._crc_c cimport crc16_x25_of
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

from fastcodec._hdlc_types import (
    DEFAULT_MAX_INFO_LENGTH,
    DEFAULT_WINDOW_SIZE,
    FLAG,
    MAX_FRAME_LENGTH,
    NEED_DATA,
    FrameKind,
    HdlcFrame,
    HdlcParameters,
    NeedData,
    WrapperFrame,
)
from fastcodec.exceptions import ChecksumError, EncodeError, FrameError

__all__ = [
    "DEFAULT_MAX_INFO_LENGTH",
    "DEFAULT_WINDOW_SIZE",
    "FLAG",
    "MAX_FRAME_LENGTH",
    "NEED_DATA",
    "WRAPPER_HEADER_LENGTH",
    "WRAPPER_VERSION",
    "FrameKind",
    "FrameSplitter",
    "HdlcFrame",
    "HdlcParameters",
    "NeedData",
    "Reassembler",
    "WrapperFrame",
    "WrapperSplitter",
    "build_frame",
    "build_parameters",
    "build_segmented_frames",
    "build_wrapper",
    "decode_control",
    "encode_address",
    "encode_control",
    "negotiate_parameters",
    "parse_frame",
    "parse_parameters",
    "parse_wrapper",
    "server_address",
    "server_address_parts",
]

WRAPPER_VERSION = 0x0001
WRAPPER_HEADER_LENGTH = 8

cdef enum:
    C_FLAG = 0x7E
    C_MIN_FRAME_LENGTH = 7
    C_FORMAT_TYPE_3 = 0xA0
    C_SEGMENTATION_BIT = 0x08
    C_POLL_FINAL_BIT = 0x10

# CRC-16/X-25 (HCS, FCS): fastcodec._crc_c's slicing-by-8, cimported.


def _crc16_x25(data):
    """CRC-16/X-25 of `data` (bytes); for tests against fastcodec.crc."""
    cdef bytes raw = bytes(data)
    return crc16_x25_of(<const unsigned char *>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))


# Frame kinds as module-level C references (no attribute lookup per frame).
cdef object KIND_I = FrameKind.I
cdef object KIND_RR = FrameKind.RR
cdef object KIND_RNR = FrameKind.RNR
cdef object KIND_SNRM = FrameKind.SNRM
cdef object KIND_UA = FrameKind.UA
cdef object KIND_DISC = FrameKind.DISC
cdef object KIND_DM = FrameKind.DM
cdef object KIND_FRMR = FrameKind.FRMR
cdef object KIND_UI = FrameKind.UI
cdef object _NEED_DATA = NEED_DATA
cdef object _tuple_new = tuple.__new__
cdef object _HdlcFrame = HdlcFrame
cdef object _WrapperFrame = WrapperFrame

_U_FRAME_CODES = {
    FrameKind.SNRM: 0x83,
    FrameKind.UA: 0x63,
    FrameKind.DISC: 0x43,
    FrameKind.DM: 0x0F,
    FrameKind.FRMR: 0x87,
    FrameKind.UI: 0x03,
}
_S_FRAME_CODES = {FrameKind.RR: 0x01, FrameKind.RNR: 0x05}
_ADDRESS_LIMITS = {1: 0x80, 2: 0x4000, 4: 0x10000000}


# --- control field -------------------------------------------------------------------


cdef object _u_kind(int code):
    if code == 0x83:
        return KIND_SNRM
    if code == 0x63:
        return KIND_UA
    if code == 0x43:
        return KIND_DISC
    if code == 0x0F:
        return KIND_DM
    if code == 0x87:
        return KIND_FRMR
    if code == 0x03:
        return KIND_UI
    return None


cdef tuple _decode_control(int control, object offset):
    cdef bint poll_final = (control & C_POLL_FINAL_BIT) != 0
    cdef int s_type
    if not control & 0x01:
        return KIND_I, (control >> 1) & 0x07, control >> 5, poll_final
    if not control & 0x02:
        s_type = (control >> 2) & 0x03
        if s_type == 0:
            return KIND_RR, None, control >> 5, poll_final
        if s_type == 1:
            return KIND_RNR, None, control >> 5, poll_final
        raise FrameError(
            f"S frame 0x{control:02X} (REJ/SREJ) is not used by IEC 62056-46", offset
        )
    kind = _u_kind(control & ~C_POLL_FINAL_BIT)
    if kind is None:
        raise FrameError(f"U frame 0x{control:02X} is not used by IEC 62056-46", offset)
    return kind, None, None, poll_final


def decode_control(control):
    """Split a control byte into (kind, N(S), N(R), P/F); see the pure twin."""
    if not 0 <= control <= 0xFF:
        raise FrameError(f"control field 0x{control:X} is not one byte")
    return _decode_control(control, None)


def _check_sequence(value, name):
    if not isinstance(value, int) or not 0 <= value <= 7:
        raise EncodeError(f"{name} must be 0..7, not {value!r}")


def encode_control(kind, send_sequence=0, receive_sequence=0, poll_final=True):
    """The control byte of a frame; see the pure twin."""
    pf_bit = C_POLL_FINAL_BIT if poll_final else 0
    if kind is KIND_I:
        _check_sequence(send_sequence, "N(S)")
        _check_sequence(receive_sequence, "N(R)")
        return (receive_sequence << 5) | pf_bit | (send_sequence << 1)
    s_code = _S_FRAME_CODES.get(kind)
    if s_code is not None:
        _check_sequence(receive_sequence, "N(R)")
        return (receive_sequence << 5) | pf_bit | s_code
    u_code = _U_FRAME_CODES.get(kind)
    if u_code is None:
        raise EncodeError(f"unknown frame kind {kind!r}")
    return u_code | pf_bit


# --- addresses -------------------------------------------------------------------------


def encode_address(value, length=0):
    """An HDLC address field, 7 bits per byte; see the pure twin."""
    if not isinstance(value, int) or value < 0:
        raise EncodeError(f"HDLC address must be a non-negative int, not {value!r}")
    if length == 0:
        length = next((size for size, limit in _ADDRESS_LIMITS.items() if value < limit), 0)
        if length == 0:
            raise EncodeError(f"HDLC address {value} does not fit in 4 bytes (28 bits)")
    limit = _ADDRESS_LIMITS.get(length)
    if limit is None:
        raise EncodeError(f"HDLC address length must be 1, 2 or 4 bytes, not {length!r}")
    if value >= limit:
        raise EncodeError(f"HDLC address {value} does not fit in {length} byte(s)")
    field = bytearray(length)
    for index in range(length):
        field[length - 1 - index] = ((value >> (7 * index)) & 0x7F) << 1
    field[length - 1] |= 0x01
    return bytes(field)


def server_address(upper, lower, length):
    """Join a server's upper and lower HDLC addresses; see the pure twin."""
    half_bits = {1: 7, 2: 7, 4: 14}.get(length)
    if half_bits is None:
        raise EncodeError(f"HDLC address length must be 1, 2 or 4 bytes, not {length!r}")
    limit = 1 << half_bits
    if length == 1:
        if lower != 0 or not 0 <= upper < limit:
            raise EncodeError("a 1-byte server address holds a 7-bit upper address only")
        return upper
    if not (0 <= upper < limit and 0 <= lower < limit):
        raise EncodeError(f"upper and lower HDLC addresses must be < {limit} for {length} bytes")
    return (upper << half_bits) | lower


def server_address_parts(value, length):
    """Split a server address value into (upper, lower); see the pure twin."""
    if length == 1:
        return value, 0
    half_bits = {2: 7, 4: 14}.get(length)
    if half_bits is None:
        raise EncodeError(f"HDLC address length must be 1, 2 or 4 bytes, not {length!r}")
    return value >> half_bits, value & ((1 << half_bits) - 1)


# --- frames --------------------------------------------------------------------------


cdef struct Header:
    Py_ssize_t frame_length
    Py_ssize_t header_length
    long destination
    int destination_length
    long source
    int source_length


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _read_address(
    const unsigned char *data, Py_ssize_t position, Py_ssize_t limit, long *value, int *length
) except -1:
    # Returns 1 with the address read, 0 when `limit` comes first.
    cdef long result = 0
    cdef int index
    cdef unsigned char byte
    for index in range(4):
        if position + index >= limit:
            return 0
        byte = data[position + index]
        result = (result << 7) | (byte >> 1)
        if byte & 0x01:
            if index == 2:
                raise FrameError("HDLC address of 3 bytes (must be 1, 2 or 4)", position)
            value[0] = result
            length[0] = index + 1
            return 1
    raise FrameError("HDLC address longer than 4 bytes", position)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _scan_header(
    const unsigned char *data, Py_ssize_t start, Py_ssize_t available_end, Header *header
) except -1:
    # Same checks and order as _hdlc_py._scan_header. `data[start]` must exist.
    # Returns 1 when the header is good, 0 when more bytes are needed.
    cdef unsigned char format_byte = data[start]
    cdef Py_ssize_t frame_length, header_limit, read_limit, hcs_position
    cdef unsigned short computed, received
    if format_byte & 0xF0 != C_FORMAT_TYPE_3:
        raise FrameError(f"format field 0x{format_byte:02X} is not frame format type 3", start)
    if available_end < start + 2:
        return 0
    frame_length = ((format_byte & 0x07) << 8) | data[start + 1]
    if frame_length < C_MIN_FRAME_LENGTH:
        raise FrameError(f"frame length {frame_length} is below the minimum of 7", start)
    header.frame_length = frame_length
    header_limit = start + frame_length - 2
    read_limit = available_end if available_end < header_limit else header_limit
    if not _read_address(
        data, start + 2, read_limit, &header.destination, &header.destination_length
    ):
        return _need_or_short(available_end, header_limit, start)
    if not _read_address(
        data,
        start + 2 + header.destination_length,
        read_limit,
        &header.source,
        &header.source_length,
    ):
        return _need_or_short(available_end, header_limit, start)
    header.header_length = 3 + header.destination_length + header.source_length
    if start + header.header_length - 1 >= header_limit:
        raise FrameError("frame too short for its control field and FCS", start)
    if frame_length == header.header_length + 2:
        return 1
    if frame_length < header.header_length + 5:
        raise FrameError("frame length leaves no room for HCS and information", start + 1)
    hcs_position = start + header.header_length
    if available_end < hcs_position + 2:
        return 0
    computed = crc16_x25_of(data + start, header.header_length)
    received = data[hcs_position] | (data[hcs_position + 1] << 8)
    if computed != received:
        raise ChecksumError("HDLC HCS", computed, received, hcs_position)
    return 1


cdef int _need_or_short(
    Py_ssize_t available_end, Py_ssize_t header_limit, Py_ssize_t start
) except -1:
    if available_end < header_limit:
        return 0
    raise FrameError("frame too short for its addresses, control field and FCS", start)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _finish_frame(const unsigned char *data, Py_ssize_t start, Header *header):
    cdef Py_ssize_t frame_length = header.frame_length
    cdef Py_ssize_t fcs_position = start + frame_length - 2
    cdef Py_ssize_t control_position = start + header.header_length - 1
    cdef Py_ssize_t info_start
    cdef unsigned short computed = crc16_x25_of(data + start, frame_length - 2)
    cdef unsigned short received = data[fcs_position] | (data[fcs_position + 1] << 8)
    cdef int control
    cdef bint poll_final
    cdef object kind, send_sequence, receive_sequence, information
    if computed != received:
        raise ChecksumError("HDLC FCS", computed, received, fcs_position)
    control = data[control_position]
    poll_final = (control & C_POLL_FINAL_BIT) != 0
    if not control & 0x01:
        kind = KIND_I
        send_sequence = (control >> 1) & 0x07
        receive_sequence = control >> 5
    else:
        kind, send_sequence, receive_sequence, poll_final = _decode_control(
            control, control_position
        )
    if frame_length == header.header_length + 2:
        information = b""
    else:
        info_start = start + header.header_length + 2
        information = PyBytes_FromStringAndSize(
            <const char *>(data + info_start), fcs_position - info_start
        )
    return _tuple_new(
        _HdlcFrame,
        (
            (data[start] & C_SEGMENTATION_BIT) != 0,
            header.destination,
            header.destination_length,
            header.source,
            header.source_length,
            kind,
            send_sequence,
            receive_sequence,
            poll_final,
            information,
            frame_length,
        ),
    )


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _parse_pointer(const unsigned char *data, Py_ssize_t total):
    cdef Py_ssize_t start = 0, end = total, frame_length
    cdef Header header
    if total == 0:
        raise FrameError("empty input is not an HDLC frame", 0)
    if data[0] == C_FLAG:
        if total < 2 or data[total - 1] != C_FLAG:
            raise FrameError("frame does not end with the 0x7E flag", total - 1)
        start = 1
        end = total - 1
    if end - start < C_MIN_FRAME_LENGTH:
        raise FrameError(f"{end - start} bytes is below the minimum frame of 7", start)
    if data[start] & 0xF0 != C_FORMAT_TYPE_3:
        raise FrameError(f"format field 0x{data[start]:02X} is not frame format type 3", start)
    frame_length = ((data[start] & 0x07) << 8) | data[start + 1]
    if frame_length != end - start:
        raise FrameError(
            f"length field says {frame_length} bytes, the frame has {end - start}", start
        )
    if not _scan_header(data, start, end, &header):
        raise FrameError("truncated frame", end)
    return _finish_frame(data, start, &header)


def parse_frame(data):
    """Decode one HDLC frame, with or without its flags; see the pure twin.

    Raises:
        ChecksumError: the HCS or FCS does not match.
        FrameError: any other defect, with the offset of the offending byte.
    """
    cdef const unsigned char[::1] view
    if type(data) is bytes:
        return _parse_pointer(
            <const unsigned char *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)
        )
    view = memoryview(data).cast("B")
    if view.shape[0] == 0:
        return _parse_pointer(<const unsigned char *>b"", 0)
    return _parse_pointer(&view[0], view.shape[0])


def build_frame(
    kind,
    destination_address,
    source_address,
    information=b"",
    *,
    send_sequence=0,
    receive_sequence=0,
    poll_final=True,
    segmented=False,
    destination_address_length=0,
    source_address_length=0,
):
    """Encode one HDLC frame with flags, HCS and FCS; see the pure twin."""
    cdef bytearray frame
    cdef Py_ssize_t header_length
    header = bytearray(2)
    header += encode_address(destination_address, destination_address_length)
    header += encode_address(source_address, source_address_length)
    header.append(encode_control(kind, send_sequence, receive_sequence, poll_final))
    info = bytes(memoryview(information))
    frame_length = len(header) + 2 + (len(info) + 2 if info else 0)
    if frame_length > MAX_FRAME_LENGTH:
        raise EncodeError(
            f"frame of {frame_length} bytes exceeds the {MAX_FRAME_LENGTH}-byte length field;"
            " segment the information field"
        )
    header[0] = C_FORMAT_TYPE_3 | (C_SEGMENTATION_BIT if segmented else 0) | (frame_length >> 8)
    header[1] = frame_length & 0xFF
    header_length = len(header)
    frame = bytearray(b"\x7e")
    frame += header
    if info:
        frame += crc16_x25_of(
            <const unsigned char *>PyByteArray_AS_STRING(header), header_length
        ).to_bytes(2, "little")
        frame += info
    frame += crc16_x25_of(
        <const unsigned char *>PyByteArray_AS_STRING(frame) + 1, PyByteArray_GET_SIZE(frame) - 1
    ).to_bytes(2, "little")
    frame.append(C_FLAG)
    return bytes(frame)


# --- streaming splitter ----------------------------------------------------------------


cdef class FrameSplitter:
    """Split a byte stream into HDLC frames (sans-I/O); see the pure twin."""

    cdef bytearray _buffer
    cdef Py_ssize_t _start
    cdef Py_ssize_t _max_buffer_bytes
    cdef public object discarded_bytes
    cdef public object bad_frames

    def __init__(self, max_buffer_bytes=65536):
        if max_buffer_bytes < MAX_FRAME_LENGTH + 2:
            raise ValueError(f"max_buffer_bytes must be at least {MAX_FRAME_LENGTH + 2}")
        self._buffer = bytearray()
        self._start = 0
        self._max_buffer_bytes = max_buffer_bytes
        self.discarded_bytes = 0
        self.bad_frames = 0

    @property
    def buffered_bytes(self):
        """Bytes fed but not yet delivered or discarded."""
        return PyByteArray_GET_SIZE(self._buffer) - self._start

    def feed(self, data):
        """Append received bytes; FrameError when over `max_buffer_bytes`."""
        incoming = data if type(data) is bytes else memoryview(data).cast("B")
        if (
            PyByteArray_GET_SIZE(self._buffer) - self._start + len(incoming)
            > self._max_buffer_bytes
        ):
            raise FrameError(
                f"splitter buffer would exceed {self._max_buffer_bytes} bytes;"
                " drain it with next_frame()"
            )
        if self._start:
            # Drop what was delivered, as the pure twin does.
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += incoming

    cdef inline void _compact(self, Py_ssize_t position):
        if position:
            del self._buffer[:position]
        self._start = 0

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def next_frame(self):
        """The next complete, valid frame, or NEED_DATA."""
        cdef Py_ssize_t end = PyByteArray_GET_SIZE(self._buffer)
        cdef Py_ssize_t position = self._start
        cdef Py_ssize_t closing, next_flag
        cdef const unsigned char *data
        cdef Header header
        cdef int status
        data = <const unsigned char *>PyByteArray_AS_STRING(self._buffer)
        while True:
            if position >= end:
                self._compact(end)
                return _NEED_DATA
            if data[position] != C_FLAG:
                next_flag = _find_flag(data, position, end)
                if next_flag < 0:
                    self.discarded_bytes += end - position
                    self._compact(end)
                    return _NEED_DATA
                self.discarded_bytes += next_flag - position
                position = next_flag
            if position + 1 >= end:
                self._compact(position)
                return _NEED_DATA
            if data[position + 1] == C_FLAG:
                position += 1
                continue
            try:
                status = _scan_header(data, position + 1, end, &header)
                if not status:
                    self._compact(position)
                    return _NEED_DATA
                closing = position + 1 + header.frame_length
                if closing >= end:
                    self._compact(position)
                    return _NEED_DATA
                if data[closing] != C_FLAG:
                    raise FrameError("no closing flag where the length field ends", closing)
                frame = _finish_frame(data, position + 1, &header)
            except FrameError:
                self.bad_frames += 1
                next_flag = _find_flag(data, position + 1, end)
                if next_flag < 0:
                    self.discarded_bytes += end - position - 1
                    self._compact(end)
                    return _NEED_DATA
                self.discarded_bytes += next_flag - position - 1
                position = next_flag
                continue
            self._start = closing
            return frame


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Py_ssize_t _find_flag(
    const unsigned char *data, Py_ssize_t position, Py_ssize_t end
) noexcept:
    while position < end:
        if data[position] == C_FLAG:
            return position
        position += 1
    return -1


# --- segmentation ----------------------------------------------------------------------


cdef class Reassembler:
    """Join the information fields of segmented I or UI frames; see the pure twin."""

    cdef Py_ssize_t _max_apdu_bytes
    cdef list _parts
    cdef Py_ssize_t _size
    cdef object _kind
    cdef object _last_send_sequence
    cdef public object duplicates

    def __init__(self, max_apdu_bytes=65536):
        self._max_apdu_bytes = max_apdu_bytes
        self._parts = []
        self._size = 0
        self._kind = None
        self._last_send_sequence = None
        self.duplicates = 0

    @property
    def pending_bytes(self):
        """Bytes of a partial APDU held."""
        return self._size

    def reset(self):
        """Drop any partial APDU."""
        self._parts = []
        self._size = 0
        self._kind = None
        self._last_send_sequence = None

    def add(self, frame):
        """Take one received frame; the whole information field or NEED_DATA."""
        kind = frame.kind
        if kind is not KIND_I and kind is not KIND_UI:
            raise FrameError(f"{kind.name} frames carry no APDU segments")
        if self._kind is not None:
            if kind is not self._kind:
                self.reset()
                raise FrameError("segment of another frame kind than the first one")
            if kind is KIND_I and self._last_send_sequence is not None:
                if frame.send_sequence == self._last_send_sequence:
                    self.duplicates += 1
                    return _NEED_DATA
                expected = (self._last_send_sequence + 1) & 0x07
                if frame.send_sequence != expected:
                    self.reset()
                    raise FrameError(
                        f"segment N(S)={frame.send_sequence}, expected {expected}:"
                        " a segment was lost"
                    )
        information = frame.information
        size = self._size + len(information)
        if size > self._max_apdu_bytes:
            self.reset()
            raise FrameError(f"reassembled APDU exceeds {self._max_apdu_bytes} bytes")
        if not frame.segmented:
            if not self._parts:
                return information
            self._parts.append(information)
            whole = b"".join(self._parts)
            self.reset()
            return whole
        self._parts.append(information)
        self._size = size
        self._kind = kind
        self._last_send_sequence = frame.send_sequence
        return _NEED_DATA


def build_segmented_frames(
    information,
    max_info_length,
    destination_address,
    source_address,
    *,
    send_sequence=0,
    receive_sequence=0,
    destination_address_length=0,
    source_address_length=0,
    kind=FrameKind.I,
):
    """Split an information field into I (or UI) frames; see the pure twin."""
    if kind is not KIND_I and kind is not KIND_UI:
        raise EncodeError("only I and UI frames can be segmented")
    if not isinstance(max_info_length, int) or max_info_length < 1:
        raise EncodeError(f"max_info_length must be at least 1, not {max_info_length!r}")
    _check_sequence(send_sequence, "N(S)")
    payload = bytes(memoryview(information))
    chunks = [payload[i : i + max_info_length] for i in range(0, len(payload), max_info_length)]
    if not chunks:
        chunks = [b""]
    last = len(chunks) - 1
    return [
        build_frame(
            kind,
            destination_address,
            source_address,
            chunk,
            send_sequence=(send_sequence + index) & 0x07,
            receive_sequence=receive_sequence,
            segmented=index != last,
            destination_address_length=destination_address_length,
            source_address_length=source_address_length,
        )
        for index, chunk in enumerate(chunks)
    ]


# --- SNRM/UA parameter negotiation -----------------------------------------------------


def parse_parameters(information):
    """Decode the SNRM/UA parameter negotiation field; see the pure twin."""
    cdef bytes data = bytes(memoryview(information))
    cdef Py_ssize_t total = len(data), position, value_start
    cdef int identifier, length
    if not total:
        return HdlcParameters()
    if total < 3:
        raise FrameError("parameter field shorter than its 3-byte header", total)
    if data[0] != 0x81:
        raise FrameError(f"format identifier 0x{data[0]:02X}, expected 0x81", 0)
    if data[1] != 0x80:
        raise FrameError(f"group identifier 0x{data[1]:02X}, expected 0x80", 1)
    if data[2] != total - 3:
        raise FrameError(f"group length {data[2]} but {total - 3} bytes follow", 2)
    values = [DEFAULT_MAX_INFO_LENGTH, DEFAULT_MAX_INFO_LENGTH, DEFAULT_WINDOW_SIZE,
              DEFAULT_WINDOW_SIZE]
    position = 3
    while position < total:
        if position + 2 > total:
            raise FrameError("parameter cut after its identifier", position)
        identifier = data[position]
        length = data[position + 1]
        value_start = position + 2
        if value_start + length > total:
            raise FrameError(f"parameter 0x{identifier:02X} runs past the group", position)
        if 0x05 <= identifier <= 0x08:
            if not 1 <= length <= 4:
                raise FrameError(
                    f"parameter 0x{identifier:02X} value of {length} bytes (1 to 4)", position + 1
                )
            values[identifier - 0x05] = int.from_bytes(
                data[value_start : value_start + length], "big"
            )
        position = value_start + length
    return HdlcParameters(values[0], values[1], values[2], values[3])


def _parameter(identifier, value):
    if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise EncodeError(f"HDLC parameter 0x{identifier:02X} must be 0..2**32-1, not {value!r}")
    length = 1 if value < 0x100 else 2 if value < 0x10000 else 4
    return bytes((identifier, length)) + value.to_bytes(length, "big")


def build_parameters(parameters):
    """Encode the SNRM/UA parameter negotiation field; see the pure twin."""
    group = (
        _parameter(0x05, parameters.max_info_transmit)
        + _parameter(0x06, parameters.max_info_receive)
        + _parameter(0x07, parameters.window_transmit)
        + _parameter(0x08, parameters.window_receive)
    )
    return bytes((0x81, 0x80, len(group))) + group


def negotiate_parameters(proposal, limits):
    """The parameters a server confirms in its UA; see the pure twin."""
    return HdlcParameters(
        min(proposal.max_info_receive, limits.max_info_transmit),
        min(proposal.max_info_transmit, limits.max_info_receive),
        min(proposal.window_receive, limits.window_transmit),
        min(proposal.window_transmit, limits.window_receive),
    )


# --- IEC 62056-47 wrapper --------------------------------------------------------------


cdef tuple _wrapper_header(const unsigned char *data, Py_ssize_t max_apdu_bytes):
    # `data` holds at least the 8 header bytes.
    cdef unsigned int version = (data[0] << 8) | data[1]
    cdef unsigned int length = (data[6] << 8) | data[7]
    if version != 0x0001:
        raise FrameError(f"wrapper version 0x{version:04X}, expected 0x0001", 0)
    if length > max_apdu_bytes:
        raise FrameError(f"wrapper length {length} exceeds the maximum of {max_apdu_bytes}", 6)
    return version, (data[2] << 8) | data[3], (data[4] << 8) | data[5], length


def parse_wrapper(data):
    """Decode one IEC 62056-47 wrapper PDU; see the pure twin."""
    cdef bytes raw = data if type(data) is bytes else bytes(memoryview(data).cast("B"))
    cdef Py_ssize_t total = PyBytes_GET_SIZE(raw)
    if total < 8:
        raise FrameError("wrapper PDU shorter than its 8-byte header", total)
    version, source_wport, destination_wport, length = _wrapper_header(
        <const unsigned char *>PyBytes_AS_STRING(raw), 0xFFFF
    )
    if length != total - 8:
        raise FrameError(f"wrapper length field says {length}, {total - 8} bytes follow", 6)
    return _tuple_new(_WrapperFrame, (version, source_wport, destination_wport, raw[8:]))


def build_wrapper(apdu, source_wport, destination_wport, version=0x0001):
    """Encode one IEC 62056-47 wrapper PDU; see the pure twin."""
    payload = bytes(memoryview(apdu))
    for name, value in (
        ("version", version),
        ("source_wport", source_wport),
        ("destination_wport", destination_wport),
    ):
        if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise EncodeError(f"wrapper {name} must be 0..0xFFFF, not {value!r}")
    if len(payload) > 0xFFFF:
        raise EncodeError(f"APDU of {len(payload)} bytes exceeds the 16-bit wrapper length")
    return (
        version.to_bytes(2, "big")
        + source_wport.to_bytes(2, "big")
        + destination_wport.to_bytes(2, "big")
        + len(payload).to_bytes(2, "big")
        + payload
    )


cdef class WrapperSplitter:
    """Split a TCP byte stream into IEC 62056-47 wrapper PDUs; see the pure twin."""

    cdef bytearray _buffer
    cdef Py_ssize_t _max_apdu_bytes
    cdef Py_ssize_t _max_buffer_bytes
    cdef object _error
    cdef Py_ssize_t _consumed

    def __init__(self, max_apdu_bytes=0xFFFF, max_buffer_bytes=262144):
        if max_buffer_bytes < max_apdu_bytes + 8:
            raise ValueError("max_buffer_bytes must hold at least one maximum wrapper PDU")
        self._buffer = bytearray()
        self._max_apdu_bytes = max_apdu_bytes
        self._max_buffer_bytes = max_buffer_bytes
        self._error = None
        self._consumed = 0

    @property
    def buffered_bytes(self):
        """Bytes fed but not yet delivered."""
        return PyByteArray_GET_SIZE(self._buffer)

    def feed(self, data):
        """Append received bytes; FrameError when over `max_buffer_bytes`."""
        incoming = data if type(data) is bytes else memoryview(data).cast("B")
        if PyByteArray_GET_SIZE(self._buffer) + len(incoming) > self._max_buffer_bytes:
            raise FrameError(
                f"wrapper buffer would exceed {self._max_buffer_bytes} bytes;"
                " drain it with next_frame()"
            )
        self._buffer += incoming

    def next_frame(self):
        """The next complete wrapper PDU, or NEED_DATA."""
        cdef Py_ssize_t end
        if self._error is not None:
            raise self._error
        if PyByteArray_GET_SIZE(self._buffer) < 8:
            return _NEED_DATA
        try:
            version, source_wport, destination_wport, length = _wrapper_header(
                <const unsigned char *>PyByteArray_AS_STRING(self._buffer), self._max_apdu_bytes
            )
        except FrameError as exc:
            self._error = FrameError(exc.reason, exc.offset + self._consumed)
            raise self._error from None
        end = 8 + length
        if PyByteArray_GET_SIZE(self._buffer) < end:
            return _NEED_DATA
        apdu = bytes(self._buffer[8:end])
        del self._buffer[:end]
        self._consumed += end
        return _tuple_new(_WrapperFrame, (version, source_wport, destination_wport, apdu))
