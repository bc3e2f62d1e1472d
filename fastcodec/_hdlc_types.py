"""Values the DLMS HDLC codec returns, defined once for both twins.

`fastcodec._hdlc_py` and `fastcodec._hdlc_c` both import these, so a frame
decoded by the compiled twin compares equal to the same frame decoded by the
pure twin. See `fastcodec._hdlc_py` for the protocol and its spec clauses.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = [
    "DEFAULT_MAX_INFO_LENGTH",
    "DEFAULT_WINDOW_SIZE",
    "FLAG",
    "MAX_FRAME_LENGTH",
    "NEED_DATA",
    "FrameKind",
    "HdlcFrame",
    "HdlcParameters",
    "NeedData",
    "WrapperFrame",
]

FLAG = 0x7E
"""The opening and closing flag of every HDLC frame (IEC 62056-46 §6.4.4)."""

MAX_FRAME_LENGTH = 0x7FF
"""Largest frame length the 11-bit length sub-field can state (bytes between the flags)."""

DEFAULT_MAX_INFO_LENGTH = 128
"""Maximum information field length when SNRM/UA do not negotiate one (IEC 62056-46)."""

DEFAULT_WINDOW_SIZE = 1
"""Window size when SNRM/UA do not negotiate one (IEC 62056-46)."""


class NeedData(enum.Enum):
    """The type of the `NEED_DATA` sentinel: feed more bytes, then ask again."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData.NEED_DATA
"""Returned by the splitters and the reassembler when more input is needed."""


class FrameKind(enum.Enum):
    """The commands and responses IEC 62056-46 uses, named after their control field."""

    I = "I"  # noqa: E741 - the name the standard gives the information frame
    RR = "RR"
    RNR = "RNR"
    SNRM = "SNRM"
    UA = "UA"
    DISC = "DISC"
    DM = "DM"
    FRMR = "FRMR"
    UI = "UI"


class HdlcFrame(NamedTuple):
    """One decoded HDLC frame (frame format type 3).

    Addresses are the values of the address fields with the extension bits
    removed, 7 bits per byte, most significant byte first; for a 2-byte server
    address that is `upper << 7 | lower`, for a 4-byte one `upper << 14 | lower`
    (see `server_address_parts`).
    """

    segmented: bool
    """The S bit of the frame format field: more segments of this APDU follow."""
    destination_address: int
    destination_address_length: int
    """1, 2 or 4 bytes."""
    source_address: int
    source_address_length: int
    kind: FrameKind
    send_sequence: int | None
    """N(S), 0..7, for I frames; None otherwise."""
    receive_sequence: int | None
    """N(R), 0..7, for I, RR and RNR frames; None otherwise."""
    poll_final: bool
    information: bytes
    """The information field, b"" when the frame has none."""
    frame_length: int
    """The length sub-field: bytes between the flags."""


class HdlcParameters(NamedTuple):
    """The link parameters SNRM proposes and UA confirms (IEC 62056-46 §6.4.4.4.3.2).

    Each side states them from its own point of view: in a UA, `transmit`
    means what the server sends.
    """

    max_info_transmit: int = DEFAULT_MAX_INFO_LENGTH
    max_info_receive: int = DEFAULT_MAX_INFO_LENGTH
    window_transmit: int = DEFAULT_WINDOW_SIZE
    window_receive: int = DEFAULT_WINDOW_SIZE


class WrapperFrame(NamedTuple):
    """One IEC 62056-47 wrapper protocol data unit (DLMS over TCP or UDP)."""

    version: int
    source_wport: int
    destination_wport: int
    apdu: bytes
