# CRC-16 checksums of the meter protocols: the compiled twin.
#
# Same API and results as fastcodec/_crc_py.py, which documents the
# algorithms and spec clauses. Strategy: slicing-by-8 (Kounavis and Berry,
# "A Systematic Approach to Building High Performance Software-Based CRC
# Generators", 2005): TABLES[k][b] is the CRC register after byte b followed by
# k zero bytes, so eight input bytes take eight independent lookups instead of
# a chain of eight dependent ones. The tables are C arrays filled once at
# import. The Modbus, HDLC and P1 codecs cimport `crc16_modbus_of`,
# `crc16_x25_of` and `crc16_arc_of` (see _crc_c.pxd): one CRC implementation for the package.
# Any buffer (bytes, bytearray, memoryview) is accepted without a copy.
# cython: language_level=3

cimport cython

cdef unsigned short MODBUS_TABLES[8][256]  # poly 0x8005 reflected: MODBUS and ARC
cdef unsigned short X25_TABLES[8][256]  # poly 0x1021 reflected: X-25


cdef void _fill_reflected(unsigned short tables[8][256], unsigned short poly) noexcept:
    cdef unsigned int byte, bit, k
    cdef unsigned short crc
    for byte in range(256):
        crc = <unsigned short>byte
        for bit in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ poly
            else:
                crc = crc >> 1
        tables[0][byte] = crc
    for k in range(1, 8):
        for byte in range(256):
            crc = tables[k - 1][byte]
            tables[k][byte] = (crc >> 8) ^ tables[0][crc & 0xFF]


_fill_reflected(MODBUS_TABLES, 0xA001)
_fill_reflected(X25_TABLES, 0x8408)


@cython.boundscheck(False)  # the loops stay below `length`
@cython.wraparound(False)
cdef inline unsigned short _reflected(
    const unsigned short tables[8][256], const unsigned char *data, Py_ssize_t length,
    unsigned int crc,
) noexcept nogil:
    cdef Py_ssize_t i = 0
    while i + 8 <= length:
        crc ^= data[i] | (data[i + 1] << 8)
        crc = (
            tables[7][crc & 0xFF] ^ tables[6][crc >> 8]
            ^ tables[5][data[i + 2]] ^ tables[4][data[i + 3]]
            ^ tables[3][data[i + 4]] ^ tables[2][data[i + 5]]
            ^ tables[1][data[i + 6]] ^ tables[0][data[i + 7]]
        )
        i += 8
    while i < length:
        crc = (crc >> 8) ^ tables[0][(crc ^ data[i]) & 0xFF]
        i += 1
    return <unsigned short>crc


cdef unsigned short crc16_modbus_of(const unsigned char *data, Py_ssize_t length) noexcept nogil:
    return _reflected(MODBUS_TABLES, data, length, 0xFFFF)


cdef unsigned short crc16_x25_of(const unsigned char *data, Py_ssize_t length) noexcept nogil:
    return _reflected(X25_TABLES, data, length, 0xFFFF) ^ 0xFFFF


cdef unsigned short crc16_arc_of(const unsigned char *data, Py_ssize_t length) noexcept nogil:
    return _reflected(MODBUS_TABLES, data, length, 0x0000)


cdef inline const unsigned char *_start(const unsigned char[::1] data) noexcept nogil:
    return &data[0] if data.shape[0] else NULL


def crc16_modbus(const unsigned char[::1] data not None):
    """CRC-16/MODBUS of `data` (the RTU frame check, sent low byte first)."""
    return crc16_modbus_of(_start(data), data.shape[0])


def crc16_x25(const unsigned char[::1] data not None):
    """CRC-16/X-25 of `data` (the DLMS HDLC HCS/FCS, sent low byte first)."""
    return crc16_x25_of(_start(data), data.shape[0])


def crc16_arc(const unsigned char[::1] data not None):
    """CRC-16/ARC of `data` (the DSMR P1 telegram CRC, '/' .. '!' inclusive)."""
    return crc16_arc_of(_start(data), data.shape[0])


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
