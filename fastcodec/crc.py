"""CRC-16 checksums and the IEC 62056-21 BCC (selector: compiled or pure twin).

See `fastcodec._crc_py` for the algorithms and their parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastcodec import _select

if TYPE_CHECKING:
    from fastcodec._crc_py import bcc, crc16_arc, crc16_modbus, crc16_x25

    IMPLEMENTATION: str
else:
    _impl, IMPLEMENTATION = _select.load("crc")
    bcc = _impl.bcc
    crc16_arc = _impl.crc16_arc
    crc16_modbus = _impl.crc16_modbus
    crc16_x25 = _impl.crc16_x25

__all__ = ["IMPLEMENTATION", "bcc", "crc16_arc", "crc16_modbus", "crc16_x25"]
