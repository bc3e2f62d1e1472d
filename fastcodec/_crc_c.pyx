# CRC-16 checksums of the meter protocols: the compiled twin.
#
# Same API and results as fastcodec/_crc_py.py, which documents the
# algorithms and spec clauses. The tables are C arrays filled once at import;
# the loop runs without the GIL's object machinery, one lookup per byte.
# Any buffer (bytes, bytearray, memoryview) is accepted without a copy.
# cython: language_level=3

cimport cython

cdef unsigned short MODBUS_TABLE[256]
cdef unsigned short X25_TABLE[256]


cdef void _fill_reflected(unsigned short *table, unsigned short poly) noexcept:
    cdef unsigned int byte, bit
    cdef unsigned short crc
    for byte in range(256):
        crc = <unsigned short>byte
        for bit in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ poly
            else:
                crc = crc >> 1
        table[byte] = crc


_fill_reflected(MODBUS_TABLE, 0xA001)
_fill_reflected(X25_TABLE, 0x8408)


cdef inline unsigned short _crc16(
    const unsigned short *table, const unsigned char[::1] data, unsigned short crc
) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(data.shape[0]):
        crc = (crc >> 8) ^ table[(crc ^ data[i]) & 0xFF]
    return crc


def crc16_modbus(const unsigned char[::1] data not None):
    """CRC-16/MODBUS of `data` (the RTU frame check, sent low byte first)."""
    return _crc16(MODBUS_TABLE, data, 0xFFFF)


def crc16_x25(const unsigned char[::1] data not None):
    """CRC-16/X-25 of `data` (the DLMS HDLC HCS/FCS, sent low byte first)."""
    return _crc16(X25_TABLE, data, 0xFFFF) ^ 0xFFFF


def crc16_arc(const unsigned char[::1] data not None):
    """CRC-16/ARC of `data` (the DSMR P1 telegram CRC, '/' .. '!' inclusive)."""
    return _crc16(MODBUS_TABLE, data, 0x0000)


@cython.boundscheck(False)  # i runs over range(data.shape[0]) only
@cython.wraparound(False)
def bcc(const unsigned char[::1] data not None):
    """IEC 62056-21 block check character: the XOR of the bytes of `data`."""
    cdef Py_ssize_t i
    cdef unsigned char check = 0
    with nogil:
        for i in range(data.shape[0]):
            check ^= data[i]
    return check
