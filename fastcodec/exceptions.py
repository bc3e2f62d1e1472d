"""Errors raised by fastcodec.

Every decoder turns any byte string into a value or one of these, never into
IndexError, struct.error, a hang or memory proportional to a length field.
The tree::

    CodecError                  root: anything fastcodec refuses
    ├── FrameError              bytes that are not a valid frame or message;
    │   │                       carries the offset of the offending byte and
    │   │                       the reason
    │   └── ChecksumError       a CRC/FCS/HCS/BCC that does not match; carries
    │                           the expected and the received value
    └── EncodeError             values that cannot be encoded (out of range,
                                wrong type for the target encoding)

A Modbus exception response or a DLMS error result is not a codec error: it is
a valid frame, decoded into a value that says what the remote side refused.
"""

from __future__ import annotations

__all__ = ["ChecksumError", "CodecError", "EncodeError", "FrameError"]


class CodecError(Exception):
    """Root of every error fastcodec raises."""


class FrameError(CodecError):
    """The bytes are not a valid frame.

    Args:
        reason: what is wrong, in words a technician can act on.
        offset: index of the offending byte in the input, when known.
    """

    def __init__(self, reason: str, offset: int | None = None) -> None:
        self.reason = reason
        self.offset = offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{reason}{where}")


class ChecksumError(FrameError):
    """A frame check (CRC, FCS, HCS, BCC) does not match.

    Args:
        what: which check, e.g. "CRC-16/MODBUS" or "HDLC FCS".
        expected: the value computed over the received bytes.
        received: the value the frame carried.
        offset: index of the check in the input, when known.
    """

    def __init__(self, what: str, expected: int, received: int, offset: int | None = None) -> None:
        self.what = what
        self.expected = expected
        self.received = received
        super().__init__(
            f"{what} mismatch: computed 0x{expected:04X}, frame carries 0x{received:04X}", offset
        )


class EncodeError(CodecError):
    """The values cannot be encoded as asked."""
