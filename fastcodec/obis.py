"""OBIS codes, IEC 62056-61 (selector: compiled or pure twin).

See `fastcodec._obis_py` for the text forms accepted and the rules applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastcodec import _select

if TYPE_CHECKING:
    from fastcodec._obis_py import (
        MAX_TEXT_CHARS,
        WELL_KNOWN_OBIS,
        Obis,
        ObisInfo,
        describe_obis,
        format_obis,
        obis_from_bytes,
        obis_to_bytes,
        parse_obis,
    )

    IMPLEMENTATION: str
else:
    _impl, IMPLEMENTATION = _select.load("obis")
    MAX_TEXT_CHARS = _impl.MAX_TEXT_CHARS
    WELL_KNOWN_OBIS = _impl.WELL_KNOWN_OBIS
    Obis = _impl.Obis
    ObisInfo = _impl.ObisInfo
    describe_obis = _impl.describe_obis
    format_obis = _impl.format_obis
    obis_from_bytes = _impl.obis_from_bytes
    obis_to_bytes = _impl.obis_to_bytes
    parse_obis = _impl.parse_obis

__all__ = [
    "IMPLEMENTATION",
    "MAX_TEXT_CHARS",
    "WELL_KNOWN_OBIS",
    "Obis",
    "ObisInfo",
    "describe_obis",
    "format_obis",
    "obis_from_bytes",
    "obis_to_bytes",
    "parse_obis",
]
