"""Uplink batch format v1, gateway → cloud (selector: compiled or pure twin).

See `fastcodec._uplink_py` and docs/uplink-format.md for the layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastcodec import _select

if TYPE_CHECKING:
    from fastcodec._uplink_py import (
        FORMAT_VERSION,
        MAGIC,
        MAX_DICTIONARY_ENTRIES,
        MAX_GATEWAY_ID_BYTES,
        MAX_READINGS_PER_BATCH,
        MAX_SERIAL_BYTES,
        MAX_UNIT_BYTES,
        Batch,
        QualityFlag,
        Reading,
        batch_from_json,
        batch_to_json,
        decode_batch,
        encode_batch,
    )

    IMPLEMENTATION: str
else:
    _impl, IMPLEMENTATION = _select.load("uplink")
    FORMAT_VERSION = _impl.FORMAT_VERSION
    MAGIC = _impl.MAGIC
    MAX_DICTIONARY_ENTRIES = _impl.MAX_DICTIONARY_ENTRIES
    MAX_GATEWAY_ID_BYTES = _impl.MAX_GATEWAY_ID_BYTES
    MAX_READINGS_PER_BATCH = _impl.MAX_READINGS_PER_BATCH
    MAX_SERIAL_BYTES = _impl.MAX_SERIAL_BYTES
    MAX_UNIT_BYTES = _impl.MAX_UNIT_BYTES
    Batch = _impl.Batch
    QualityFlag = _impl.QualityFlag
    Reading = _impl.Reading
    batch_from_json = _impl.batch_from_json
    batch_to_json = _impl.batch_to_json
    decode_batch = _impl.decode_batch
    encode_batch = _impl.encode_batch

__all__ = [
    "FORMAT_VERSION",
    "IMPLEMENTATION",
    "MAGIC",
    "MAX_DICTIONARY_ENTRIES",
    "MAX_GATEWAY_ID_BYTES",
    "MAX_READINGS_PER_BATCH",
    "MAX_SERIAL_BYTES",
    "MAX_UNIT_BYTES",
    "Batch",
    "QualityFlag",
    "Reading",
    "batch_from_json",
    "batch_to_json",
    "decode_batch",
    "encode_batch",
]
