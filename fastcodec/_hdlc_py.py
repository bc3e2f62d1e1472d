# DLMS HDLC (IEC 62056-46) and the IEC 62056-47 wrapper: the pure-Python reference twin.
#
# What it implements
#   IEC 62056-46 §6.4.4 (the MAC sub-layer frame, ISO/IEC 13239 frame format type 3):
#     flag 0x7E | format (2 bytes) | destination address | source address | control
#       | [HCS (2) | information] | FCS (2) | flag 0x7E
#   - format field: 0b1010 (type 3), the S (segmentation) bit, an 11-bit frame length
#     that counts every byte between the flags;
#   - addresses: 1, 2 or 4 bytes, 7 bits per byte, the least significant bit of a
#     byte set on the last byte only (HDLC extended addressing). The client address
#     is one byte; a server address is one byte (upper HDLC address only) or two/four
#     bytes (upper = logical device, lower = physical device, 7 or 14 bits each);
#   - control field: I (N(S), N(R), P/F), RR and RNR (N(R), P/F), SNRM, UA, DISC, DM,
#     FRMR, UI (P/F). REJ, SREJ and other U frames are not used by IEC 62056-46 and
#     are refused;
#   - HCS over format..control, present only when there is an information field; FCS
#     over format..information (HCS included): both CRC-16/X-25 sent low byte first
#     (§6.4.4.10, ISO/IEC 13239 §4.2.5; `fastcodec.crc.crc16_x25`).
#   - SNRM/UA information field: the parameter negotiation group of ISO/IEC 13239
#     §5.5.3.2 as IEC 62056-46 §6.4.4.4.3.2 uses it: format identifier 0x81, group
#     identifier 0x80, group length, then (id, length, value) for 0x05/0x06 maximum
#     information field length transmit/receive and 0x07/0x08 window size
#     transmit/receive, values big endian on 1, 2 or 4 bytes; absent ones take the
#     defaults (128 bytes, window 1).
#   - segmentation (§6.4.4.3, the S bit): an APDU longer than the negotiated maximum
#     information field length travels as I (or UI) frames whose S bit is set on all
#     but the last; the receiver concatenates their information fields.
#   IEC 62056-47 (COSEM transport layers for IPv4 networks), the wrapper sub-layer:
#     version (0x0001) | source wPort | destination wPort | length (each 2 bytes, big
#     endian) | APDU.
#
# Byte stuffing: IEC 62056-46 uses NO transparency mechanism. The length sub-field
# gives the frame length, so a 0x7E or 0x7D inside a frame is plain data. A frame
# that a sender byte-stuffed (0x7D escapes, as RFC 1662 async HDLC does) has more
# bytes than its length field says: it fails the closing flag or FCS check and is
# counted as a bad frame, never "unstuffed" (amshan's reader does unstuff; meters
# that speak IEC 62056-46 do not stuff).
#
# Strategy
#   - parse_frame takes one frame, with or without its two flags, and checks every
#     field; any defect raises FrameError (ChecksumError for HCS/FCS) with the offset
#     of the offending byte in the input.
#   - FrameSplitter (sans-I/O: feed(bytes), next_frame() -> frame | NEED_DATA) finds a
#     flag, reads the length sub-field and waits for exactly that many bytes plus the
#     closing flag. The HCS is checked as soon as the header is in, so garbage with
#     a plausible format byte is dropped early. A rejected candidate is counted in
#     `bad_frames` and the search resumes at the next 0x7E after its opening flag;
#     non-flag bytes dropped are counted in `discarded_bytes`. The closing flag of a
#     frame stays in the buffer: it may be the opening flag of the next frame.
#
# Invariants
#   - Every decision uses bytes already fed, never their absence, so feeding one byte
#     at a time gives the same frames and counters as feeding the whole buffer.
#   - Memory is bounded: the splitter refuses to buffer more than `max_buffer_bytes`;
#     the reassembler refuses an APDU over `max_apdu_bytes`; the wrapper splitter
#     refuses a length field over `max_apdu_bytes`.
#   - Any input gives a value, NEED_DATA or a CodecError, nothing else.
from __future__ import annotations

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
from fastcodec.crc import crc16_x25
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

# Smallest frame between the flags: format (2), two 1-byte addresses, control, FCS (2).
_MIN_FRAME_LENGTH = 7
_FORMAT_TYPE_3 = 0xA0
_SEGMENTATION_BIT = 0x08
_POLL_FINAL_BIT = 0x10

# U frames: control byte with the P/F bit cleared (ISO/IEC 13239 §5.5.3, IEC 62056-46).
_U_FRAME_KINDS = {
    0x83: FrameKind.SNRM,
    0x63: FrameKind.UA,
    0x43: FrameKind.DISC,
    0x0F: FrameKind.DM,
    0x87: FrameKind.FRMR,
    0x03: FrameKind.UI,
}
_U_FRAME_CODES = {kind: code for code, kind in _U_FRAME_KINDS.items()}
# S frames: bits 3..2 of the control byte.
_S_FRAME_KINDS = {0: FrameKind.RR, 1: FrameKind.RNR}
_S_FRAME_CODES = {FrameKind.RR: 0x01, FrameKind.RNR: 0x05}

# Parameter negotiation (ISO/IEC 13239 §5.5.3.2).
_PARAMETER_FORMAT_ID = 0x81
_PARAMETER_GROUP_ID = 0x80
_MAX_INFO_TRANSMIT_ID = 0x05
_MAX_INFO_RECEIVE_ID = 0x06
_WINDOW_TRANSMIT_ID = 0x07
_WINDOW_RECEIVE_ID = 0x08

_ADDRESS_LIMITS = {1: 0x80, 2: 0x4000, 4: 0x10000000}

Buffer = bytes | bytearray | memoryview


# --- control field -------------------------------------------------------------------


def decode_control(control: int) -> tuple[FrameKind, int | None, int | None, bool]:
    """Split a control byte into (kind, N(S), N(R), P/F).

    Args:
        control: the control field, 0..255.

    Returns:
        The frame kind, N(S) (I frames only, else None), N(R) (I, RR and RNR, else
        None) and the poll/final bit.

    Raises:
        FrameError: a control field IEC 62056-46 does not use (REJ, SREJ, other U
            frames) or a value outside 0..255.
    """
    if not 0 <= control <= 0xFF:
        raise FrameError(f"control field 0x{control:X} is not one byte")
    poll_final = bool(control & _POLL_FINAL_BIT)
    if not control & 0x01:
        return FrameKind.I, (control >> 1) & 0x07, control >> 5, poll_final
    if not control & 0x02:
        s_kind = _S_FRAME_KINDS.get((control >> 2) & 0x03)
        if s_kind is None:
            raise FrameError(f"S frame 0x{control:02X} (REJ/SREJ) is not used by IEC 62056-46")
        return s_kind, None, control >> 5, poll_final
    u_kind = _U_FRAME_KINDS.get(control & ~_POLL_FINAL_BIT)
    if u_kind is None:
        raise FrameError(f"U frame 0x{control:02X} is not used by IEC 62056-46")
    return u_kind, None, None, poll_final


def encode_control(
    kind: FrameKind, send_sequence: int = 0, receive_sequence: int = 0, poll_final: bool = True
) -> int:
    """The control byte of a frame.

    Args:
        kind: the command or response.
        send_sequence: N(S), 0..7 (I frames only; ignored otherwise).
        receive_sequence: N(R), 0..7 (I, RR, RNR; ignored otherwise).
        poll_final: the P/F bit.

    Returns:
        The control field, 0..255.

    Raises:
        EncodeError: a sequence number outside 0..7 or an unknown kind.
    """
    pf_bit = _POLL_FINAL_BIT if poll_final else 0
    if kind is FrameKind.I:
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


def _check_sequence(value: int, name: str) -> None:
    if not isinstance(value, int) or not 0 <= value <= 7:
        raise EncodeError(f"{name} must be 0..7, not {value!r}")


# --- addresses -------------------------------------------------------------------------


def encode_address(value: int, length: int = 0) -> bytes:
    """An HDLC address field: 7 bits per byte, the last byte's low bit set.

    Args:
        value: the address without extension bits (for a server,
            `server_address(upper, lower, length)`).
        length: 1, 2 or 4 bytes; 0 picks the shortest that holds `value`.

    Returns:
        The address field bytes.

    Raises:
        EncodeError: the value does not fit in `length` bytes, or `length` is not
            0, 1, 2 or 4.
    """
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
    field[-1] |= 0x01
    return bytes(field)


def server_address(upper: int, lower: int, length: int) -> int:
    """Join a server's upper (logical) and lower (physical) HDLC addresses.

    Args:
        upper: upper HDLC address (logical device), 7 bits (length 1 or 2) or 14 bits.
        lower: lower HDLC address (physical device); must be 0 when `length` is 1.
        length: the address field length, 1, 2 or 4 bytes.

    Returns:
        The address value `HdlcFrame` and `build_frame` use.

    Raises:
        EncodeError: a part does not fit.
    """
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


def server_address_parts(value: int, length: int) -> tuple[int, int]:
    """Split a server address value into (upper, lower) HDLC addresses.

    Args:
        value: the address value as `HdlcFrame` gives it.
        length: its field length in bytes, 1, 2 or 4.

    Returns:
        (upper, lower); lower is 0 for a 1-byte address.

    Raises:
        EncodeError: `length` is not 1, 2 or 4.
    """
    if length == 1:
        return value, 0
    half_bits = {2: 7, 4: 14}.get(length)
    if half_bits is None:
        raise EncodeError(f"HDLC address length must be 1, 2 or 4 bytes, not {length!r}")
    return value >> half_bits, value & ((1 << half_bits) - 1)


# --- frames --------------------------------------------------------------------------


def _read_address(data: Buffer, position: int, limit: int) -> tuple[int, int] | None:
    """Read an address starting at `position`, not reading at or past `limit`.

    Returns (value, length), or None when `limit` is reached before the last byte.
    Raises FrameError for a 3-byte address or one longer than 4 bytes.
    """
    value = 0
    for index in range(4):
        if position + index >= limit:
            return None
        byte = data[position + index]
        value = (value << 7) | (byte >> 1)
        if byte & 0x01:
            if index == 2:
                raise FrameError("HDLC address of 3 bytes (must be 1, 2 or 4)", position)
            return value, index + 1
    raise FrameError("HDLC address longer than 4 bytes", position)


class _Header:
    """Where the parts of a frame are, relative to its format byte."""

    __slots__ = ("destination", "header_length", "source")

    def __init__(self, destination: tuple[int, int], source: tuple[int, int]) -> None:
        self.destination = destination
        self.source = source
        # format (2) + addresses + control (1)
        self.header_length = 2 + destination[1] + source[1] + 1


def _scan_header(data: Buffer, start: int, available_end: int) -> _Header | None:
    """Check the header of the frame whose format byte is at `start`.

    `available_end` is how far `data` has been received. Returns None when more
    bytes are needed to decide; raises FrameError or ChecksumError when the header
    is bad. Checks the HCS when the frame has an information field.
    """
    format_byte = data[start]
    if format_byte & 0xF0 != _FORMAT_TYPE_3:
        raise FrameError(f"format field 0x{format_byte:02X} is not frame format type 3", start)
    if available_end < start + 2:
        return None
    frame_length = ((format_byte & 0x07) << 8) | data[start + 1]
    if frame_length < _MIN_FRAME_LENGTH:
        raise FrameError(f"frame length {frame_length} is below the minimum of 7", start)
    frame_end = start + frame_length
    # Addresses and control must leave room for the FCS.
    header_limit = frame_end - 2
    destination = _read_address(data, start + 2, min(available_end, header_limit))
    if destination is None:
        _refuse_if_short(available_end, header_limit, start)
        return None
    source_start = start + 2 + destination[1]
    source = _read_address(data, source_start, min(available_end, header_limit))
    if source is None:
        _refuse_if_short(available_end, header_limit, start)
        return None
    header = _Header(destination, source)
    control_position = start + header.header_length - 1
    if control_position >= header_limit:
        raise FrameError("frame too short for its control field and FCS", start)
    if frame_length == header.header_length + 2:
        return header  # no information field, hence no HCS
    if frame_length < header.header_length + 5:
        raise FrameError("frame length leaves no room for HCS and information", start + 1)
    hcs_position = start + header.header_length
    if available_end < hcs_position + 2:
        return None
    computed = crc16_x25(memoryview(data)[start:hcs_position])
    received = data[hcs_position] | (data[hcs_position + 1] << 8)
    if computed != received:
        raise ChecksumError("HDLC HCS", computed, received, hcs_position)
    return header


def _refuse_if_short(available_end: int, header_limit: int, start: int) -> None:
    # The address is still open: more bytes may close it, unless the frame's
    # length leaves no room for them.
    if available_end >= header_limit:
        raise FrameError("frame too short for its addresses, control field and FCS", start)


def _finish_frame(data: Buffer, start: int, header: _Header) -> HdlcFrame:
    """Check the FCS of the complete frame at `start` and build its value."""
    format_byte = data[start]
    frame_length = ((format_byte & 0x07) << 8) | data[start + 1]
    fcs_position = start + frame_length - 2
    computed = crc16_x25(memoryview(data)[start:fcs_position])
    received = data[fcs_position] | (data[fcs_position + 1] << 8)
    if computed != received:
        raise ChecksumError("HDLC FCS", computed, received, fcs_position)
    control_position = start + header.header_length - 1
    try:
        kind, send_sequence, receive_sequence, poll_final = decode_control(data[control_position])
    except FrameError as exc:
        raise FrameError(exc.reason, control_position) from None
    if frame_length == header.header_length + 2:
        information = b""
    else:
        information = bytes(data[start + header.header_length + 2 : fcs_position])
    return HdlcFrame(
        bool(format_byte & _SEGMENTATION_BIT),
        header.destination[0],
        header.destination[1],
        header.source[0],
        header.source[1],
        kind,
        send_sequence,
        receive_sequence,
        poll_final,
        information,
        frame_length,
    )


def parse_frame(data: Buffer) -> HdlcFrame:
    """Decode one HDLC frame.

    Args:
        data: exactly one frame, either with its opening and closing 0x7E flags or
            without them (starting at the format field).

    Returns:
        The decoded frame.

    Raises:
        ChecksumError: the HCS or FCS does not match.
        FrameError: anything else: wrong format type, a length field that does not
            match the bytes given, a missing flag, a bad address or control field.
    """
    data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    total = len(data)
    if total == 0:
        raise FrameError("empty input is not an HDLC frame", 0)
    start, end = 0, total
    if data[0] == FLAG:
        if total < 2 or data[total - 1] != FLAG:
            raise FrameError("frame does not end with the 0x7E flag", total - 1)
        start, end = 1, total - 1
    if end - start < _MIN_FRAME_LENGTH:
        raise FrameError(f"{end - start} bytes is below the minimum frame of 7", start)
    if data[start] & 0xF0 != _FORMAT_TYPE_3:
        raise FrameError(f"format field 0x{data[start]:02X} is not frame format type 3", start)
    frame_length = ((data[start] & 0x07) << 8) | data[start + 1]
    if frame_length != end - start:
        raise FrameError(
            f"length field says {frame_length} bytes, the frame has {end - start}", start
        )
    header = _scan_header(data, start, end)
    if header is None:  # pragma: no cover - all bytes are present
        raise FrameError("truncated frame", end)
    return _finish_frame(data, start, header)


def build_frame(
    kind: FrameKind,
    destination_address: int,
    source_address: int,
    information: Buffer = b"",
    *,
    send_sequence: int = 0,
    receive_sequence: int = 0,
    poll_final: bool = True,
    segmented: bool = False,
    destination_address_length: int = 0,
    source_address_length: int = 0,
) -> bytes:
    """Encode one HDLC frame with its flags, HCS (when there is information) and FCS.

    Args:
        kind: the command or response.
        destination_address: address value (see `server_address` for servers).
        source_address: address value.
        information: the information field; b"" for none.
        send_sequence: N(S) of an I frame, 0..7.
        receive_sequence: N(R) of an I, RR or RNR frame, 0..7.
        poll_final: the P/F bit.
        segmented: set the S bit (more segments follow).
        destination_address_length: 1, 2 or 4; 0 for the shortest that fits.
        source_address_length: 1, 2 or 4; 0 for the shortest that fits.

    Returns:
        The frame, 0x7E ... 0x7E.

    Raises:
        EncodeError: an address or sequence number out of range, or a frame longer
            than the 11-bit length field can state.
    """
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
    segmentation = _SEGMENTATION_BIT if segmented else 0
    header[0] = _FORMAT_TYPE_3 | segmentation | (frame_length >> 8)
    header[1] = frame_length & 0xFF
    frame = bytearray((FLAG,))
    frame += header
    if info:
        frame += crc16_x25(header).to_bytes(2, "little")
        frame += info
    frame += crc16_x25(memoryview(frame)[1:]).to_bytes(2, "little")
    frame.append(FLAG)
    return bytes(frame)


# --- streaming splitter ----------------------------------------------------------------


class FrameSplitter:
    """Split a byte stream into HDLC frames (sans-I/O).

    Feed received bytes with `feed`, then call `next_frame` until it returns
    `NEED_DATA`. Frames are delimited by their length field, so a 0x7E inside the
    information field never splits a frame; several flags between frames and one
    flag shared by two frames are both accepted. Bad candidates are skipped and
    counted.

    Args:
        max_buffer_bytes: most bytes held at once; `feed` refuses more. At least
            one maximum frame (2049 bytes with flags).

    Attributes:
        discarded_bytes: bytes dropped that were neither a flag nor part of a
            delivered frame.
        bad_frames: frame candidates (a flag followed by something other than a
            flag) that failed a check and were skipped.
    """

    def __init__(self, max_buffer_bytes: int = 65536) -> None:
        if max_buffer_bytes < MAX_FRAME_LENGTH + 2:
            raise ValueError(f"max_buffer_bytes must be at least {MAX_FRAME_LENGTH + 2}")
        self._buffer = bytearray()
        self._start = 0
        self._max_buffer_bytes = max_buffer_bytes
        self.discarded_bytes = 0
        self.bad_frames = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes fed but not yet delivered or discarded."""
        return len(self._buffer) - self._start

    def feed(self, data: Buffer) -> None:
        """Append received bytes.

        Args:
            data: the bytes, any length (b"" is fine).

        Raises:
            FrameError: the buffer would exceed `max_buffer_bytes`; call
                `next_frame` until NEED_DATA before feeding more. Nothing is
                appended then.
        """
        incoming = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        if self.buffered_bytes + len(incoming) > self._max_buffer_bytes:
            raise FrameError(
                f"splitter buffer would exceed {self._max_buffer_bytes} bytes;"
                " drain it with next_frame()"
            )
        if self._start:
            # Drop what was delivered (O(1) for a bytearray prefix), so the
            # buffer holds only undelivered bytes however the caller drains it.
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += incoming

    def next_frame(self) -> HdlcFrame | NeedData:
        """The next complete, valid frame, or NEED_DATA.

        Returns:
            An `HdlcFrame`, or `NEED_DATA` when the buffered bytes hold no complete
            frame yet.
        """
        buffer = self._buffer
        end = len(buffer)
        position = self._start
        while True:
            if position >= end:
                self._compact(end)
                return NEED_DATA
            if buffer[position] != FLAG:
                flag_position = buffer.find(FLAG, position)
                if flag_position < 0:
                    self.discarded_bytes += end - position
                    self._compact(end)
                    return NEED_DATA
                self.discarded_bytes += flag_position - position
                position = flag_position
            if position + 1 >= end:
                self._compact(position)
                return NEED_DATA
            if buffer[position + 1] == FLAG:  # inter-frame fill flag
                position += 1
                continue
            try:
                header = _scan_header(buffer, position + 1, end)
                if header is None:
                    self._compact(position)
                    return NEED_DATA
                frame_length = ((buffer[position + 1] & 0x07) << 8) | buffer[position + 2]
                closing = position + 1 + frame_length
                if closing >= end:
                    self._compact(position)
                    return NEED_DATA
                if buffer[closing] != FLAG:
                    raise FrameError("no closing flag where the length field ends", closing)
                frame = _finish_frame(buffer, position + 1, header)
            except FrameError:
                self.bad_frames += 1
                next_flag = buffer.find(FLAG, position + 1)
                if next_flag < 0:
                    self.discarded_bytes += end - position - 1
                    self._compact(end)
                    return NEED_DATA
                self.discarded_bytes += next_flag - position - 1
                position = next_flag
                continue
            # Keep the closing flag: it may open the next frame.
            self._start = closing
            return frame

    def _compact(self, position: int) -> None:
        del self._buffer[:position]
        self._start = 0


# --- segmentation ----------------------------------------------------------------------


class Reassembler:
    """Join the information fields of segmented I (or UI) frames (sans-I/O).

    Give it the frames received from the peer in order with `add`; it returns the
    whole information field once the frame without the S bit arrives, and
    `NEED_DATA` before. An I frame repeating the previous N(S) (a retransmission)
    is ignored; a gap in N(S) drops the partial APDU and raises.

    Args:
        max_apdu_bytes: the largest reassembled information field accepted.
    """

    def __init__(self, max_apdu_bytes: int = 65536) -> None:
        self._max_apdu_bytes = max_apdu_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self._kind: FrameKind | None = None
        self._last_send_sequence: int | None = None
        self.duplicates = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of a partial APDU held."""
        return self._size

    def reset(self) -> None:
        """Drop any partial APDU (after a link reset, for instance)."""
        self._parts = []
        self._size = 0
        self._kind = None
        self._last_send_sequence = None

    def add(self, frame: HdlcFrame) -> bytes | NeedData:
        """Take one received frame.

        Args:
            frame: an I or UI frame from the peer.

        Returns:
            The complete information field when `frame` is the last segment, else
            `NEED_DATA`.

        Raises:
            FrameError: not an I or UI frame, a segment out of sequence or of
                another kind than the first, or an APDU over `max_apdu_bytes`; the
                partial APDU is dropped.
        """
        kind = frame.kind
        if kind is not FrameKind.I and kind is not FrameKind.UI:
            raise FrameError(f"{kind.name} frames carry no APDU segments")
        if self._kind is not None:
            if kind is not self._kind:
                self.reset()
                raise FrameError("segment of another frame kind than the first one")
            if kind is FrameKind.I and self._last_send_sequence is not None:
                if frame.send_sequence == self._last_send_sequence:
                    self.duplicates += 1
                    return NEED_DATA
                expected = (self._last_send_sequence + 1) & 0x07
                if frame.send_sequence != expected:
                    self.reset()
                    raise FrameError(
                        f"segment N(S)={frame.send_sequence}, expected {expected}:"
                        " a segment was lost"
                    )
        size = self._size + len(frame.information)
        if size > self._max_apdu_bytes:
            self.reset()
            raise FrameError(f"reassembled APDU exceeds {self._max_apdu_bytes} bytes")
        if not frame.segmented:
            if not self._parts:
                return frame.information
            self._parts.append(frame.information)
            whole = b"".join(self._parts)
            self.reset()
            return whole
        self._parts.append(frame.information)
        self._size = size
        self._kind = kind
        self._last_send_sequence = frame.send_sequence
        return NEED_DATA


def build_segmented_frames(
    information: Buffer,
    max_info_length: int,
    destination_address: int,
    source_address: int,
    *,
    send_sequence: int = 0,
    receive_sequence: int = 0,
    destination_address_length: int = 0,
    source_address_length: int = 0,
    kind: FrameKind = FrameKind.I,
) -> list[bytes]:
    """Split an information field into frames of at most `max_info_length` bytes each.

    Every frame but the last has the S bit set; I frames take N(S) = send_sequence,
    send_sequence + 1, ... (mod 8) and all carry `receive_sequence` and P/F = 1.
    With window size 1 the sender waits for the peer's RR before each next frame.

    Args:
        information: the whole information field (LLC header and APDU).
        max_info_length: the negotiated maximum information field length (the
            peer's receive limit), at least 1.
        destination_address: see `build_frame`.
        source_address: see `build_frame`.
        send_sequence: N(S) of the first frame.
        receive_sequence: N(R) carried by every frame.
        destination_address_length: see `build_frame`.
        source_address_length: see `build_frame`.
        kind: FrameKind.I or FrameKind.UI.

    Returns:
        The frames, each with its flags, in sending order; one frame without
        information when `information` is empty.

    Raises:
        EncodeError: `max_info_length` below 1, a kind other than I or UI, or a
            field out of range.
    """
    if kind is not FrameKind.I and kind is not FrameKind.UI:
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


def parse_parameters(information: Buffer) -> HdlcParameters:
    """Decode the parameter negotiation field of an SNRM or UA frame.

    Args:
        information: the frame's information field; b"" means all defaults.

    Returns:
        The parameters, with the defaults (128 bytes, window 1) for absent ones.
        Unknown parameter identifiers are skipped.

    Raises:
        FrameError: a wrong format or group identifier, a group length that does
            not match, or a parameter value that is not 1 to 4 bytes long.
    """
    data = bytes(memoryview(information))
    if not data:
        return HdlcParameters()
    if len(data) < 3:
        raise FrameError("parameter field shorter than its 3-byte header", len(data))
    if data[0] != _PARAMETER_FORMAT_ID:
        raise FrameError(f"format identifier 0x{data[0]:02X}, expected 0x81", 0)
    if data[1] != _PARAMETER_GROUP_ID:
        raise FrameError(f"group identifier 0x{data[1]:02X}, expected 0x80", 1)
    if data[2] != len(data) - 3:
        raise FrameError(f"group length {data[2]} but {len(data) - 3} bytes follow", 2)
    values = {
        _MAX_INFO_TRANSMIT_ID: DEFAULT_MAX_INFO_LENGTH,
        _MAX_INFO_RECEIVE_ID: DEFAULT_MAX_INFO_LENGTH,
        _WINDOW_TRANSMIT_ID: DEFAULT_WINDOW_SIZE,
        _WINDOW_RECEIVE_ID: DEFAULT_WINDOW_SIZE,
    }
    position = 3
    while position < len(data):
        if position + 2 > len(data):
            raise FrameError("parameter cut after its identifier", position)
        identifier, length = data[position], data[position + 1]
        value_start = position + 2
        if value_start + length > len(data):
            raise FrameError(f"parameter 0x{identifier:02X} runs past the group", position)
        if identifier in values:
            if not 1 <= length <= 4:
                raise FrameError(
                    f"parameter 0x{identifier:02X} value of {length} bytes (1 to 4)", position + 1
                )
            values[identifier] = int.from_bytes(data[value_start : value_start + length], "big")
        position = value_start + length
    return HdlcParameters(
        values[_MAX_INFO_TRANSMIT_ID],
        values[_MAX_INFO_RECEIVE_ID],
        values[_WINDOW_TRANSMIT_ID],
        values[_WINDOW_RECEIVE_ID],
    )


def _parameter(identifier: int, value: int) -> bytes:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise EncodeError(f"HDLC parameter 0x{identifier:02X} must be 0..2**32-1, not {value!r}")
    length = 1 if value < 0x100 else 2 if value < 0x10000 else 4
    return bytes((identifier, length)) + value.to_bytes(length, "big")


def build_parameters(parameters: HdlcParameters) -> bytes:
    """Encode the parameter negotiation field of an SNRM or UA frame.

    All four parameters are written, each value on the fewest of 1, 2 or 4 bytes.

    Args:
        parameters: the values to state.

    Returns:
        The information field: 0x81 0x80, group length, parameters.

    Raises:
        EncodeError: a value outside 0..2**32-1.
    """
    group = (
        _parameter(_MAX_INFO_TRANSMIT_ID, parameters.max_info_transmit)
        + _parameter(_MAX_INFO_RECEIVE_ID, parameters.max_info_receive)
        + _parameter(_WINDOW_TRANSMIT_ID, parameters.window_transmit)
        + _parameter(_WINDOW_RECEIVE_ID, parameters.window_receive)
    )
    return bytes((_PARAMETER_FORMAT_ID, _PARAMETER_GROUP_ID, len(group))) + group


def negotiate_parameters(proposal: HdlcParameters, limits: HdlcParameters) -> HdlcParameters:
    """The parameters a server confirms in its UA to a client's SNRM.

    Each direction takes the smaller of what the sender may send and what the
    receiver accepts (IEC 62056-46 §6.4.4.4.3.2).

    Args:
        proposal: the SNRM's parameters (the client's point of view).
        limits: the server's own limits (its point of view).

    Returns:
        The agreed parameters from the server's point of view, ready for
        `build_parameters` in the UA: `max_info_transmit` is what the server sends.
    """
    return HdlcParameters(
        min(proposal.max_info_receive, limits.max_info_transmit),
        min(proposal.max_info_transmit, limits.max_info_receive),
        min(proposal.window_receive, limits.window_transmit),
        min(proposal.window_transmit, limits.window_receive),
    )


# --- IEC 62056-47 wrapper --------------------------------------------------------------


def _wrapper_header(data: Buffer, offset: int, max_apdu_bytes: int) -> tuple[int, int, int, int]:
    version = (data[offset] << 8) | data[offset + 1]
    if version != WRAPPER_VERSION:
        raise FrameError(f"wrapper version 0x{version:04X}, expected 0x0001", offset)
    source_wport = (data[offset + 2] << 8) | data[offset + 3]
    destination_wport = (data[offset + 4] << 8) | data[offset + 5]
    length = (data[offset + 6] << 8) | data[offset + 7]
    if length > max_apdu_bytes:
        raise FrameError(
            f"wrapper length {length} exceeds the maximum of {max_apdu_bytes}", offset + 6
        )
    return version, source_wport, destination_wport, length


def parse_wrapper(data: Buffer) -> WrapperFrame:
    """Decode one IEC 62056-47 wrapper PDU (header and APDU, nothing more).

    Args:
        data: the 8-byte header and exactly the APDU it announces.

    Returns:
        The decoded wrapper frame.

    Raises:
        FrameError: fewer than 8 bytes, a version other than 0x0001, or a length
            field that does not match the bytes given.
    """
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    if len(view) < WRAPPER_HEADER_LENGTH:
        raise FrameError("wrapper PDU shorter than its 8-byte header", len(view))
    version, source_wport, destination_wport, length = _wrapper_header(view, 0, 0xFFFF)
    if length != len(view) - WRAPPER_HEADER_LENGTH:
        raise FrameError(
            f"wrapper length field says {length}, {len(view) - WRAPPER_HEADER_LENGTH} bytes follow",
            6,
        )
    return WrapperFrame(version, source_wport, destination_wport, bytes(view[8:]))


def build_wrapper(
    apdu: Buffer, source_wport: int, destination_wport: int, version: int = WRAPPER_VERSION
) -> bytes:
    """Encode one IEC 62056-47 wrapper PDU.

    Args:
        apdu: the xDLMS APDU.
        source_wport: the sender's wPort (client SAP or server logical device).
        destination_wport: the receiver's wPort.
        version: the wrapper version, 0x0001.

    Returns:
        Header and APDU.

    Raises:
        EncodeError: a field outside 0..0xFFFF or an APDU over 65535 bytes.
    """
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
    header = (
        version.to_bytes(2, "big")
        + source_wport.to_bytes(2, "big")
        + destination_wport.to_bytes(2, "big")
        + len(payload).to_bytes(2, "big")
    )
    return header + payload


class WrapperSplitter:
    """Split a TCP byte stream into IEC 62056-47 wrapper PDUs (sans-I/O).

    TCP has no frame delimiter to resynchronise on: after a bad header
    (FrameError) the stream is unusable, and every later `next_frame` raises the
    same error; the caller closes the connection.

    Args:
        max_apdu_bytes: the largest APDU accepted (at most 65535).
        max_buffer_bytes: most bytes held at once; `feed` refuses more.
    """

    def __init__(self, max_apdu_bytes: int = 0xFFFF, max_buffer_bytes: int = 262144) -> None:
        if max_buffer_bytes < max_apdu_bytes + WRAPPER_HEADER_LENGTH:
            raise ValueError("max_buffer_bytes must hold at least one maximum wrapper PDU")
        self._buffer = bytearray()
        self._max_apdu_bytes = max_apdu_bytes
        self._max_buffer_bytes = max_buffer_bytes
        self._error: FrameError | None = None
        self._consumed = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes fed but not yet delivered."""
        return len(self._buffer)

    def feed(self, data: Buffer) -> None:
        """Append received bytes.

        Raises:
            FrameError: the buffer would exceed `max_buffer_bytes`.
        """
        incoming = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        if len(self._buffer) + len(incoming) > self._max_buffer_bytes:
            raise FrameError(
                f"wrapper buffer would exceed {self._max_buffer_bytes} bytes;"
                " drain it with next_frame()"
            )
        self._buffer += incoming

    def next_frame(self) -> WrapperFrame | NeedData:
        """The next complete wrapper PDU, or NEED_DATA.

        Raises:
            FrameError: a version other than 0x0001 or a length over
                `max_apdu_bytes`; the offset counts from the start of the stream.
        """
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if len(buffer) < WRAPPER_HEADER_LENGTH:
            return NEED_DATA
        try:
            version, source_wport, destination_wport, length = _wrapper_header(
                buffer, 0, self._max_apdu_bytes
            )
        except FrameError as exc:
            offset = None if exc.offset is None else exc.offset + self._consumed
            self._error = FrameError(exc.reason, offset)
            raise self._error from None
        end = WRAPPER_HEADER_LENGTH + length
        if len(buffer) < end:
            return NEED_DATA
        apdu = bytes(buffer[WRAPPER_HEADER_LENGTH:end])
        del buffer[:end]
        self._consumed += end
        return WrapperFrame(version, source_wport, destination_wport, apdu)
