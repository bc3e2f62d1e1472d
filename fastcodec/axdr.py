"""A-XDR encoding of COSEM data (selector: compiled or pure twin).

See `fastcodec._axdr_py` for the encoding rules and spec clauses, and
`fastcodec._axdr_types` for the value model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastcodec import _select

if TYPE_CHECKING:
    from fastcodec._axdr_py import (
        DONT_CARE,
        MAX_DEPTH,
        BitString,
        CaptureColumns,
        ClockDateTime,
        ClockStatus,
        CompactArray,
        CosemDate,
        CosemDateTime,
        CosemTime,
        Tag,
        Typed,
        TypeDescription,
        decode,
        decode_capture_buffer,
        decode_date_time,
        decode_from,
        decode_typed,
        decode_typed_from,
        encode,
    )

    IMPLEMENTATION: str
else:
    _impl, IMPLEMENTATION = _select.load("axdr")
    DONT_CARE = _impl.DONT_CARE
    MAX_DEPTH = _impl.MAX_DEPTH
    BitString = _impl.BitString
    CaptureColumns = _impl.CaptureColumns
    ClockDateTime = _impl.ClockDateTime
    ClockStatus = _impl.ClockStatus
    CompactArray = _impl.CompactArray
    CosemDate = _impl.CosemDate
    CosemDateTime = _impl.CosemDateTime
    CosemTime = _impl.CosemTime
    Tag = _impl.Tag
    TypeDescription = _impl.TypeDescription
    Typed = _impl.Typed
    decode = _impl.decode
    decode_capture_buffer = _impl.decode_capture_buffer
    decode_date_time = _impl.decode_date_time
    decode_from = _impl.decode_from
    decode_typed = _impl.decode_typed
    decode_typed_from = _impl.decode_typed_from
    encode = _impl.encode

__all__ = [
    "DONT_CARE",
    "IMPLEMENTATION",
    "MAX_DEPTH",
    "BitString",
    "CaptureColumns",
    "ClockDateTime",
    "ClockStatus",
    "CompactArray",
    "CosemDate",
    "CosemDateTime",
    "CosemTime",
    "Tag",
    "TypeDescription",
    "Typed",
    "decode",
    "decode_capture_buffer",
    "decode_date_time",
    "decode_from",
    "decode_typed",
    "decode_typed_from",
    "encode",
]
