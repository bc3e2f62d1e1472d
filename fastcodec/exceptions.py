"""Errors raised by fastcodec.

Every decoder turns any byte string into a value or one of these, never into
IndexError, struct.error or a hang. The tree::

    CodecError                  root: anything fastcodec refuses
    └── FrameError              bytes that are not a valid frame; carries the
                                offset of the offending byte and the reason
"""

from __future__ import annotations

__all__ = ["CodecError", "FrameError"]


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
