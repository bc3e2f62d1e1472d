"""CRC-16 checksums of the meter protocols (selector: compiled or pure twin).

See `fastcodec._crc_py` for the algorithms and their parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastcodec import _select

if TYPE_CHECKING:
    from fastcodec._crc_py import crc16_modbus, crc16_x25

    IMPLEMENTATION: str
else:
    _impl, IMPLEMENTATION = _select.load("crc")
    crc16_modbus = _impl.crc16_modbus
    crc16_x25 = _impl.crc16_x25

__all__ = ["IMPLEMENTATION", "crc16_modbus", "crc16_x25"]
