# Scanners of the IEC 62056-21 data lines, shared with the P1 codec (cimport):
# `from fastcodec._iec62056_21_c cimport obis_text, is_decimal`.

cdef object obis_text(const unsigned char *data, Py_ssize_t start, Py_ssize_t end, int *parts)
cdef bint is_decimal(const unsigned char *data, Py_ssize_t start, Py_ssize_t end) noexcept nogil
