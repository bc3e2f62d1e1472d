# CRC-16 checksums of the meter protocols: the pure-Python reference twin.
#
# Strategy: one 256-entry table per polynomial, built at import, one table
# lookup per byte (the classic reflected table-driven CRC; Sarwate 1988).
# `fastcodec/_crc_c.pyx` implements the same API in Cython and must agree on
# every input (tests/property/test_crc_twins.py).
#
# Parameters, in the Rocksoft/"CRC catalogue" notation:
#   CRC-16/MODBUS  poly 0x8005 reflected (0xA001), init 0xFFFF, xorout 0x0000;
#                  Modbus over serial line V1.02 §2.5.1.2 and Appendix B;
#                  sent low byte first. check("123456789") = 0x4B37.
#   CRC-16/X-25    poly 0x1021 reflected (0x8408), init 0xFFFF, xorout 0xFFFF;
#                  the HCS and FCS of IEC 62056-46 §6.4.4.10 (ISO/IEC 13239);
#                  sent low byte first. check("123456789") = 0x906E.
#   CRC-16/ARC     poly 0x8005 reflected (0xA001), init 0x0000, xorout 0x0000;
#                  the DSMR P1 telegram CRC (DSMR 5.0.2 P1 companion standard
#                  §6.2), over '/' .. '!' inclusive, sent as 4 upper-case hex
#                  digits. check("123456789") = 0xBB3D.
#   BCC            IEC 62056-21:2002 §6.3 (block check character): the XOR of
#                  every byte after the first SOH/STX up to and including the
#                  ETX/EOT. Not a CRC, but it lives with the other checks.
from __future__ import annotations

__all__ = ["bcc", "crc16_arc", "crc16_modbus", "crc16_x25"]


def _reflected_table(poly: int) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_MODBUS_TABLE = _reflected_table(0xA001)
_X25_TABLE = _reflected_table(0x8408)


def _crc16(table: tuple[int, ...], data: bytes | bytearray | memoryview, crc: int) -> int:
    # memoryview() refuses ints and str as the compiled twin does.
    for byte in bytes(memoryview(data)):
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def crc16_arc(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/ARC of `data` (the DSMR P1 telegram CRC).

    Args:
        data: the bytes to check: a P1 telegram from '/' to '!' inclusive.

    Returns:
        The CRC as an int in 0..0xFFFF (sent as 4 upper-case hex digits).
    """
    return _crc16(_MODBUS_TABLE, data, 0x0000)


def bcc(data: bytes | bytearray | memoryview) -> int:
    """IEC 62056-21 block check character: the XOR of the bytes of `data`.

    Args:
        data: the bytes after the first SOH/STX of a message up to and
            including its ETX/EOT.

    Returns:
        The BCC as an int in 0..0xFF.
    """
    check = 0
    for byte in bytes(memoryview(data)):
        check ^= byte
    return check


def crc16_modbus(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS of `data` (the RTU frame check, sent low byte first).

    Args:
        data: the bytes to check, e.g. a Modbus RTU frame without its CRC.

    Returns:
        The CRC as an int in 0..0xFFFF.
    """
    return _crc16(_MODBUS_TABLE, data, 0xFFFF)


def crc16_x25(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X-25 of `data` (the DLMS HDLC HCS/FCS, sent low byte first).

    Args:
        data: the bytes to check, e.g. an HDLC frame from format field to the
            byte before the HCS or FCS.

    Returns:
        The CRC as an int in 0..0xFFFF.
    """
    return _crc16(_X25_TABLE, data, 0xFFFF) ^ 0xFFFF
