# The compiled CRCs for the other compiled codecs (cimport, no Python call):
# `from fastcodec._crc_c cimport crc16_modbus_of, crc16_x25_of, crc16_arc_of`.

cdef unsigned short crc16_modbus_of(const unsigned char *data, Py_ssize_t length) noexcept nogil
cdef unsigned short crc16_x25_of(const unsigned char *data, Py_ssize_t length) noexcept nogil
cdef unsigned short crc16_arc_of(const unsigned char *data, Py_ssize_t length) noexcept nogil
