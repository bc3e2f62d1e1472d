# DLMS/COSEM application layer APDUs: the compiled twin.
#
# Same API and results as fastcodec/_apdu_py.py, which documents the APDUs,
# the strategy, the invariants and the spec clauses (DLMS UA Green Book
# §9.3-§9.5 and §9.4.2 / ISO/IEC 8650-1, IEC 62056-5-3; Blue Book §4.3.6).
#
# The decoders read through a C pointer into an immutable bytes copy of the
# input with C-typed positions: every index is checked against the current
# container's end by `_need` or a BER/A-XDR length check before it is read,
# so bounds checks are off in those functions. Values are the shared
# dataclasses of fastcodec._apdu_types. The encoders and the range-descriptor
# builders are imported from the pure twin (they build small byte strings
# once per request: one implementation, no copy).
# cython: language_level=3, annotation_typing=False

from __future__ import annotations

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

import datetime as _dt

from fastcodec._apdu_types import (
    Aare,
    Aarq,
    AccessSelection,
    AcseServiceProviderDiagnostic,
    AcseServiceUserDiagnostic,
    ApplicationContextName,
    AssociationResult,
    AttributeWithSelection,
    AuthenticationMechanism,
    BlockTransferComplete,
    BlockTransferFailed,
    CaptureObjectDefinition,
    ConfirmedService,
    ConfirmedServiceError,
    Conformance,
    CosemAttributeDescriptor,
    DataAccessResult,
    DataNotification,
    DiagnosticSource,
    ExceptionResponse,
    ExceptionServiceError,
    ExceptionStateError,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    InitiateRequest,
    InitiateResponse,
    RangeDescriptor,
    ReleaseRequestReason,
    ReleaseResponseReason,
    Rlre,
    Rlrq,
    ServiceErrorType,
    describe,
    enum_or_int,
    make_invoke_id_and_priority,
    negotiate_conformance,
)
from fastcodec.exceptions import EncodeError, FrameError

__all__ = [
    "DEFAULT_CLOCK_CAPTURE_OBJECT",
    "Apdu",
    "BlockReassembler",
    "cosem_date_time",
    "describe",
    "encode_apdu",
    "encode_range_descriptor",
    "make_invoke_id_and_priority",
    "negotiate_conformance",
    "parse_apdu",
    "parse_range_descriptor",
    "profile_range",
]

Apdu = (
    Aarq
    | Aare
    | Rlrq
    | Rlre
    | InitiateRequest
    | InitiateResponse
    | ConfirmedServiceError
    | GetRequestNormal
    | GetRequestNext
    | GetRequestWithList
    | GetResponseNormal
    | GetResponseWithDatablock
    | GetResponseWithList
    | ExceptionResponse
    | DataNotification
)

DEFAULT_CLOCK_CAPTURE_OBJECT = CaptureObjectDefinition(8, bytes((0, 0, 1, 0, 0, 255)), 2, 0)

_DLMS_UA_OID_PREFIX = bytes((0x60, 0x85, 0x74, 0x05, 0x08))
cdef int _CONTEXT_ARC = 1
cdef int _MECHANISM_ARC = 2
cdef Py_ssize_t _MAX_LENGTH_OCTETS = 4
cdef Py_ssize_t _DESCRIPTOR_SIZE = 9
cdef Py_ssize_t _CAPTURE_OBJECT_SIZE = 18

_Buffer = bytes | bytearray | memoryview


# enum_or_int through one dict lookup: Enum.__call__ costs a microsecond.
cdef dict _ENUM_TABLES = {}


cdef object enum_or_int_fast(object enum_type, long value):
    cdef dict table = _ENUM_TABLES.get(enum_type)
    if table is None:
        table = {member.value: member for member in enum_type}
        _ENUM_TABLES[enum_type] = table
    member = table.get(value)
    return value if member is None else member


cdef object _conformance_of(unsigned long value):
    member = Conformance._value2member_map_.get(value)
    return Conformance(value) if member is None else member


# --- readers: pointer + position + end, all C-typed ------------------------------


cdef inline bytes _slice(const unsigned char *p, Py_ssize_t start, Py_ssize_t stop):
    return <bytes>(p + start)[: stop - start]


cdef inline int _need(Py_ssize_t pos, Py_ssize_t count, Py_ssize_t end, str what) except -1:
    if pos + count > end:
        raise FrameError(f"{what}: needs {count} byte(s), {max(end - pos, 0)} left", pos)
    return 0


cdef inline int _expect_end(Py_ssize_t pos, Py_ssize_t end, str what) except -1:
    if pos != end:
        raise FrameError(f"{end - pos} unexpected byte(s) after the {what}", pos)
    return 0


cdef inline int _signed8(unsigned char value) noexcept:
    return <int>value - 0x100 if value & 0x80 else <int>value


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _read_ber_length(
    const unsigned char *p, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t *length_out
) except -1:
    """A BER definite length at `pos`; returns the position after it."""
    cdef unsigned char first
    cdef Py_ssize_t count, i
    cdef unsigned long long length
    _need(pos, 1, end, "BER length")
    first = p[pos]
    pos += 1
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0:
            raise FrameError("BER indefinite length is not allowed", pos - 1)
        if count > _MAX_LENGTH_OCTETS:
            raise FrameError(f"BER length of {count} octets is too long", pos - 1)
        _need(pos, count, end, "BER length")
        length = 0
        for i in range(count):
            length = (length << 8) | p[pos + i]
        pos += count
    if length > <unsigned long long>(end - pos):
        raise FrameError(
            f"BER length {length} runs past the end of its container ({end - pos} bytes left)",
            pos,
        )
    length_out[0] = <Py_ssize_t>length
    return pos


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _read_ber_tag(
    const unsigned char *p, Py_ssize_t pos, Py_ssize_t end, unsigned long long *tag_out
) except -1:
    cdef unsigned long long tag
    cdef unsigned char byte
    cdef int i
    _need(pos, 1, end, "BER tag")
    tag = p[pos]
    pos += 1
    if tag & 0x1F == 0x1F:
        for i in range(4):
            _need(pos, 1, end, "BER tag")
            byte = p[pos]
            pos += 1
            tag = (tag << 8) | byte
            if not byte & 0x80:
                tag_out[0] = tag
                return pos
        raise FrameError("BER tag longer than 5 octets", pos)
    tag_out[0] = tag
    return pos


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _read_axdr_length(
    const unsigned char *p, Py_ssize_t pos, Py_ssize_t end, str what, Py_ssize_t *length_out
) except -1:
    """An A-XDR length (not checked against end); returns the position after it."""
    cdef unsigned char first
    cdef Py_ssize_t count, i
    cdef unsigned long long length = 0
    _need(pos, 1, end, what)
    first = p[pos]
    pos += 1
    if first < 0x80:
        length_out[0] = first
        return pos
    count = first & 0x7F
    if count == 0 or count > _MAX_LENGTH_OCTETS:
        raise FrameError(f"{what}: bad A-XDR length prefix 0x{first:02X}", pos - 1)
    _need(pos, count, end, what)
    for i in range(count):
        length = (length << 8) | p[pos + i]
    length_out[0] = <Py_ssize_t>length
    return pos + count


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline unsigned int _u16(const unsigned char *p, Py_ssize_t pos) noexcept:
    return (<unsigned int>p[pos] << 8) | p[pos + 1]


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline unsigned long _u32(const unsigned char *p, Py_ssize_t pos) noexcept:
    return (
        (<unsigned long>p[pos] << 24)
        | (<unsigned long>p[pos + 1] << 16)
        | (<unsigned long>p[pos + 2] << 8)
        | p[pos + 3]
    )


@cython.boundscheck(False)
@cython.wraparound(False)
cdef long _read_ber_integer(
    const unsigned char *p, Py_ssize_t pos, Py_ssize_t end, str what
) except? -1:
    """A universal INTEGER element (02 len value) filling exactly pos..end."""
    cdef Py_ssize_t length, i
    cdef long value
    _need(pos, 1, end, what)
    if p[pos] != 0x02:
        raise FrameError(f"{what}: expected an INTEGER (0x02), got 0x{p[pos]:02X}", pos)
    pos = _read_ber_length(p, pos + 1, end, &length)
    if not 1 <= length <= _MAX_LENGTH_OCTETS:
        raise FrameError(f"{what}: INTEGER of {length} octets", pos)
    _expect_end(pos + length, end, what)
    value = -1 if p[pos] & 0x80 else 0
    for i in range(length):
        value = value * 256 + p[pos + i]
    return value


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _read_wrapped(
    const unsigned char *p, Py_ssize_t pos, Py_ssize_t end, unsigned char inner_tag, str what
) except -1:
    """Checks a single inner element `inner_tag` fills pos..end; returns its content start."""
    cdef Py_ssize_t length
    _need(pos, 1, end, what)
    if p[pos] != inner_tag:
        raise FrameError(f"{what}: expected tag 0x{inner_tag:02X}, got 0x{p[pos]:02X}", pos)
    pos = _read_ber_length(p, pos + 1, end, &length)
    _expect_end(pos + length, end, what)
    return pos


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _dlms_oid_arc(
    const unsigned char *p, Py_ssize_t start, Py_ssize_t stop, int kind, str what
) except -1:
    if (
        stop - start != 7
        or p[start] != 0x60
        or p[start + 1] != 0x85
        or p[start + 2] != 0x74
        or p[start + 3] != 0x05
        or p[start + 4] != 0x08
        or p[start + 5] != kind
        or p[start + 6] & 0x80
    ):
        oid = _slice(p, start, stop)
        raise FrameError(
            f"{what} {oid.hex()} is not a DLMS UA name 2.16.756.5.8.{kind}.x", start
        )
    return p[start + 6]


# --- xDLMS initiate ----------------------------------------------------------------


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _read_conformance(
    const unsigned char *p, Py_ssize_t *pos_io, Py_ssize_t end
):
    cdef Py_ssize_t pos = pos_io[0]
    _need(pos, 7, end, "conformance block")
    if p[pos] != 0x5F or p[pos + 1] != 0x1F or p[pos + 2] != 0x04:
        raise FrameError("conformance block must start 5F 1F 04", pos)
    cdef unsigned long value = (
        (<unsigned long>p[pos + 4] << 16) | (<unsigned long>p[pos + 5] << 8) | p[pos + 6]
    )
    pos_io[0] = pos + 7
    return _conformance_of(value)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _parse_initiate_request(const unsigned char *p, Py_ssize_t pos, Py_ssize_t end):
    cdef Py_ssize_t length
    cdef object dedicated_key = None
    cdef bint response_allowed = True
    cdef object quality = None
    cdef int version
    cdef object conformance = None
    pos += 1  # tag 0x01
    _need(pos, 1, end, "InitiateRequest dedicated-key")
    if p[pos]:
        pos = _read_axdr_length(p, pos + 1, end, "InitiateRequest dedicated-key", &length)
        _need(pos, length, end, "InitiateRequest dedicated-key")
        dedicated_key = _slice(p, pos, pos + length)
        pos += length
    else:
        pos += 1
    _need(pos, 1, end, "InitiateRequest response-allowed")
    if p[pos]:
        _need(pos + 1, 1, end, "InitiateRequest response-allowed")
        response_allowed = p[pos + 1] != 0
        pos += 2
    else:
        pos += 1
    _need(pos, 1, end, "InitiateRequest quality of service")
    if p[pos]:
        _need(pos + 1, 1, end, "InitiateRequest quality of service")
        quality = _signed8(p[pos + 1])
        pos += 2
    else:
        pos += 1
    _need(pos, 1, end, "InitiateRequest dlms version")
    version = p[pos]
    pos += 1
    conformance = _read_conformance(p, &pos, end)
    _need(pos, 2, end, "InitiateRequest client-max-receive-pdu-size")
    _expect_end(pos + 2, end, "InitiateRequest")
    return InitiateRequest(
        proposed_conformance=conformance,
        client_max_receive_pdu_size=_u16(p, pos),
        proposed_dlms_version=version,
        proposed_quality_of_service=quality,
        response_allowed=response_allowed,
        dedicated_key=dedicated_key,
    )


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _parse_initiate_response(const unsigned char *p, Py_ssize_t pos, Py_ssize_t end):
    cdef object quality = None
    cdef object conformance = None
    cdef int version
    pos += 1
    _need(pos, 1, end, "InitiateResponse quality of service")
    if p[pos]:
        _need(pos + 1, 1, end, "InitiateResponse quality of service")
        quality = _signed8(p[pos + 1])
        pos += 2
    else:
        pos += 1
    _need(pos, 1, end, "InitiateResponse dlms version")
    version = p[pos]
    pos += 1
    conformance = _read_conformance(p, &pos, end)
    _need(pos, 2, end, "InitiateResponse server-max-receive-pdu-size")
    _need(pos + 2, 2, end, "InitiateResponse vaa-name")
    _expect_end(pos + 4, end, "InitiateResponse")
    return InitiateResponse(
        negotiated_conformance=conformance,
        server_max_receive_pdu_size=_u16(p, pos),
        negotiated_dlms_version=version,
        negotiated_quality_of_service=quality,
        vaa_name=_u16(p, pos + 2),
    )


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _parse_confirmed_service_error(
    const unsigned char *p, Py_ssize_t pos, Py_ssize_t end
):
    _need(pos, 4, end, "ConfirmedServiceError")
    _expect_end(pos + 4, end, "ConfirmedServiceError")
    return ConfirmedServiceError(
        service=enum_or_int_fast(ConfirmedService, p[pos + 1]),
        error_type=enum_or_int_fast(ServiceErrorType, p[pos + 2]),
        error_value=p[pos + 3],
    )


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _parse_user_information(const unsigned char *p, Py_ssize_t pos, Py_ssize_t end):
    cdef Py_ssize_t start = _read_wrapped(p, pos, end, 0x04, "user-information")
    cdef unsigned char tag
    if start == end:
        raise FrameError("user-information is empty", pos)
    tag = p[start]
    if tag == 0x01:
        return _parse_initiate_request(p, start, end)
    if tag == 0x08:
        return _parse_initiate_response(p, start, end)
    if tag == 0x0E:
        return _parse_confirmed_service_error(p, start, end)
    return _slice(p, start, end)


# --- ACSE ---------------------------------------------------------------------------


cdef Py_ssize_t _acse_body(const unsigned char *p, Py_ssize_t size, str what, Py_ssize_t *end_out) except -1:
    cdef Py_ssize_t length
    cdef Py_ssize_t pos = _read_ber_length(p, 1, size, &length)
    _expect_end(pos + length, size, what)
    end_out[0] = pos + length
    return pos


cdef Py_ssize_t _next_field(
    const unsigned char *p, Py_ssize_t pos, Py_ssize_t end, int *tag_out, Py_ssize_t *stop_out
) except -1:
    """Reads one ACSE field header at `pos`: returns its content start."""
    cdef unsigned long long tag
    cdef Py_ssize_t length
    cdef Py_ssize_t tag_at = pos
    pos = _read_ber_tag(p, pos, end, &tag)
    pos = _read_ber_length(p, pos, end, &length)
    if tag > 0xFF:
        raise FrameError(f"ACSE field tag 0x{tag:X} is not one of ISO/IEC 8650-1", tag_at)
    tag_out[0] = <int>tag
    stop_out[0] = pos + length
    return pos


@cython.boundscheck(False)
@cython.wraparound(False)
cdef bytes _read_authentication_value(const unsigned char *p, Py_ssize_t start, Py_ssize_t stop):
    cdef Py_ssize_t length, pos
    _need(start, 1, stop, "authentication value")
    pos = _read_ber_length(p, start + 1, stop, &length)
    _expect_end(pos + length, stop, "authentication value")
    return _slice(p, pos, stop)


cdef object _parse_aarq(const unsigned char *p, Py_ssize_t size):
    cdef Py_ssize_t end, start, stop, inner
    cdef int tag
    cdef Py_ssize_t pos = _acse_body(p, size, "AARQ", &end)
    cdef dict values = {}
    while pos < end:
        start = _next_field(p, pos, end, &tag, &stop)
        if tag == 0x80:
            values["protocol_version"] = _slice(p, start, stop)
        elif tag == 0xA1:
            inner = _read_wrapped(p, start, stop, 0x06, "application-context-name")
            values["application_context"] = enum_or_int_fast(
                ApplicationContextName,
                _dlms_oid_arc(p, inner, stop, _CONTEXT_ARC, "application context"),
            )
        elif tag == 0xA6:
            inner = _read_wrapped(p, start, stop, 0x04, "calling-AP-title")
            values["calling_ap_title"] = _slice(p, inner, stop)
        elif tag == 0xA7:
            values["calling_ae_qualifier"] = _slice(p, start, stop)
        elif tag == 0x8A:
            values["sender_acse_requirements"] = _slice(p, start, stop)
        elif tag == 0x8B:
            values["mechanism"] = enum_or_int_fast(
                AuthenticationMechanism,
                _dlms_oid_arc(p, start, stop, _MECHANISM_ARC, "mechanism name"),
            )
        elif tag == 0xAC:
            values["authentication_value"] = _read_authentication_value(p, start, stop)
        elif tag == 0x9D:
            values["implementation_information"] = _slice(p, start, stop)
        elif tag == 0xBE:
            user_information = _parse_user_information(p, start, stop)
            if isinstance(user_information, (InitiateResponse, ConfirmedServiceError)):
                raise FrameError("an AARQ carries an InitiateResponse", start)
            values["user_information"] = user_information
        pos = stop
    return Aarq(**values)


cdef object _parse_aare(const unsigned char *p, Py_ssize_t size):
    cdef Py_ssize_t end, start, stop, inner, length
    cdef int tag
    cdef unsigned char choice
    cdef Py_ssize_t pos = _acse_body(p, size, "AARE", &end)
    cdef Py_ssize_t body_start = pos
    cdef dict values = {}
    while pos < end:
        start = _next_field(p, pos, end, &tag, &stop)
        if tag == 0x80:
            values["protocol_version"] = _slice(p, start, stop)
        elif tag == 0xA1:
            inner = _read_wrapped(p, start, stop, 0x06, "application-context-name")
            values["application_context"] = enum_or_int_fast(
                ApplicationContextName,
                _dlms_oid_arc(p, inner, stop, _CONTEXT_ARC, "application context"),
            )
        elif tag == 0xA2:
            values["result"] = enum_or_int_fast(
                AssociationResult, _read_ber_integer(p, start, stop, "association result")
            )
        elif tag == 0xA3:
            _need(start, 1, stop, "result-source-diagnostic")
            choice = p[start]
            if choice != 0xA1 and choice != 0xA2:
                raise FrameError(
                    f"result-source-diagnostic choice 0x{choice:02X} is unknown", start
                )
            inner = _read_ber_length(p, start + 1, stop, &length)
            _expect_end(inner + length, stop, "result-source-diagnostic")
            diagnostic = _read_ber_integer(p, inner, stop, "result-source-diagnostic")
            values["diagnostic_source"] = DiagnosticSource(choice & 0x0F)
            if choice == 0xA1:
                values["diagnostic"] = enum_or_int_fast(AcseServiceUserDiagnostic, diagnostic)
            else:
                values["diagnostic"] = enum_or_int_fast(AcseServiceProviderDiagnostic, diagnostic)
        elif tag == 0xA4:
            inner = _read_wrapped(p, start, stop, 0x04, "responding-AP-title")
            values["responding_ap_title"] = _slice(p, inner, stop)
        elif tag == 0xA5:
            values["responding_ae_qualifier"] = _slice(p, start, stop)
        elif tag == 0x88:
            values["responder_acse_requirements"] = _slice(p, start, stop)
        elif tag == 0x89:
            values["mechanism"] = enum_or_int_fast(
                AuthenticationMechanism,
                _dlms_oid_arc(p, start, stop, _MECHANISM_ARC, "mechanism name"),
            )
        elif tag == 0xAA:
            values["authentication_value"] = _read_authentication_value(p, start, stop)
        elif tag == 0x9D:
            values["implementation_information"] = _slice(p, start, stop)
        elif tag == 0xBE:
            user_information = _parse_user_information(p, start, stop)
            if isinstance(user_information, InitiateRequest):
                raise FrameError("an AARE carries an InitiateRequest", start)
            values["user_information"] = user_information
        pos = stop
    if "result" not in values or "diagnostic" not in values:
        raise FrameError("AARE without result or result-source-diagnostic", body_start)
    return Aare(**values)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _parse_release(const unsigned char *p, Py_ssize_t size):
    cdef bint is_request = p[0] == 0x62
    cdef str what = "RLRQ" if is_request else "RLRE"
    cdef Py_ssize_t end, start, stop, i
    cdef int tag
    cdef long reason_value
    cdef object reason = None
    cdef object user_information = None
    cdef Py_ssize_t pos = _acse_body(p, size, what, &end)
    while pos < end:
        start = _next_field(p, pos, end, &tag, &stop)
        if tag == 0x80:
            if not 1 <= stop - start <= _MAX_LENGTH_OCTETS:
                raise FrameError(f"{what} reason of {stop - start} octets", start)
            reason_value = -1 if p[start] & 0x80 else 0
            for i in range(start, stop):
                reason_value = reason_value * 256 + p[i]
            reason = reason_value
        elif tag == 0xBE:
            user_information = _parse_user_information(p, start, stop)
            if isinstance(user_information, InitiateRequest) != is_request and not isinstance(
                user_information, bytes
            ):
                raise FrameError(f"{what} user-information of the wrong direction", start)
        pos = stop
    if is_request:
        return Rlrq(
            reason=None if reason is None else enum_or_int_fast(ReleaseRequestReason, reason),
            user_information=user_information,
        )
    return Rlre(
        reason=None if reason is None else enum_or_int_fast(ReleaseResponseReason, reason),
        user_information=user_information,
    )


# --- GET ----------------------------------------------------------------------------


cdef Py_ssize_t _data_end(bytes data, Py_ssize_t pos) except -1:
    """Where the COSEM Data element starting at `pos` ends (fastcodec.axdr finds it)."""
    from fastcodec import axdr

    if pos >= PyBytes_GET_SIZE(data):
        raise FrameError("Data element missing", pos)
    _, end = axdr.decode_from(data, pos)
    return end


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _read_descriptor(const unsigned char *p, Py_ssize_t pos, Py_ssize_t end):
    _need(pos, _DESCRIPTOR_SIZE, end, "cosem-attribute-descriptor")
    return CosemAttributeDescriptor(
        class_id=_u16(p, pos),
        instance_id=_slice(p, pos + 2, pos + 8),
        attribute_id=_signed8(p[pos + 8]),
    )


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _read_access_selection(
    bytes data, const unsigned char *p, Py_ssize_t *pos_io, Py_ssize_t end, bint to_end
):
    cdef Py_ssize_t pos = pos_io[0]
    cdef unsigned char flag
    cdef Py_ssize_t start, stop
    _need(pos, 1, end, "access-selection flag")
    flag = p[pos]
    if flag == 0:
        pos_io[0] = pos + 1
        return None
    if flag != 1:
        raise FrameError(f"access-selection flag 0x{flag:02X} is neither 0 nor 1", pos)
    _need(pos + 1, 2, end, "access-selection")
    start = pos + 2
    stop = end if to_end else _data_end(data, start)
    pos_io[0] = stop
    return AccessSelection(p[pos + 1], _slice(p, start, stop))


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _parse_get_request(bytes data):
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos, count, i
    cdef unsigned char kind, invoke
    cdef object selection = None
    cdef list attributes
    _need(0, 3, end, "GET-Request")
    kind = p[1]
    invoke = p[2]
    if kind == 1:
        descriptor = _read_descriptor(p, 3, end)
        pos = 3 + _DESCRIPTOR_SIZE
        selection = _read_access_selection(data, p, &pos, end, True)
        _expect_end(pos, end, "GET-Request-Normal")
        return GetRequestNormal(descriptor, selection, invoke)
    if kind == 2:
        _need(3, 4, end, "GET-Request-Next block number")
        _expect_end(7, end, "GET-Request-Next")
        return GetRequestNext(_u32(p, 3), invoke)
    if kind == 3:
        pos = _read_axdr_length(p, 3, end, "GET-Request-With-List count", &count)
        if count * (_DESCRIPTOR_SIZE + 1) > end - pos:
            raise FrameError(f"GET-Request-With-List of {count} attributes is truncated", 3)
        attributes = []
        for i in range(count):
            descriptor = _read_descriptor(p, pos, end)
            pos += _DESCRIPTOR_SIZE
            selection = _read_access_selection(data, p, &pos, end, False)
            attributes.append(AttributeWithSelection(descriptor, selection))
        _expect_end(pos, end, "GET-Request-With-List")
        return GetRequestWithList(tuple(attributes), invoke)
    raise FrameError(f"GET-Request type {kind} is unknown", 1)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _read_get_data_result(
    bytes data, const unsigned char *p, Py_ssize_t *pos_io, Py_ssize_t end, bint to_end
):
    cdef Py_ssize_t pos = pos_io[0]
    cdef unsigned char choice
    cdef Py_ssize_t stop
    _need(pos, 2, end, "Get-Data-Result")
    choice = p[pos]
    if choice == 0:
        stop = end if to_end else _data_end(data, pos + 1)
        pos_io[0] = stop
        return _slice(p, pos + 1, stop)
    if choice == 1:
        pos_io[0] = pos + 2
        return enum_or_int_fast(DataAccessResult, p[pos + 1])
    raise FrameError(f"Get-Data-Result choice {choice} is neither data nor result", pos)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _parse_get_response(bytes data):
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos, count, length, i
    cdef unsigned char kind, invoke, choice
    cdef object result = None
    cdef list results
    _need(0, 3, end, "GET-Response")
    kind = p[1]
    invoke = p[2]
    if kind == 1:
        pos = 3
        result = _read_get_data_result(data, p, &pos, end, True)
        _expect_end(pos, end, "GET-Response-Normal")
        return GetResponseNormal(result, invoke)
    if kind == 2:
        _need(3, 7, end, "DataBlock-G")
        choice = p[8]
        if choice == 0:
            pos = _read_axdr_length(p, 9, end, "DataBlock-G raw-data", &length)
            if length != end - pos:
                raise FrameError(
                    f"DataBlock-G raw-data of {length} bytes, {end - pos} bytes follow", 9
                )
            result = _slice(p, pos, end)
        elif choice == 1:
            _expect_end(10, end, "DataBlock-G")
            result = enum_or_int_fast(DataAccessResult, p[9])
        else:
            raise FrameError(f"DataBlock-G result choice {choice} is unknown", 8)
        return GetResponseWithDatablock(p[3] != 0, _u32(p, 4), result, invoke)
    if kind == 3:
        pos = _read_axdr_length(p, 3, end, "GET-Response-With-List count", &count)
        if count * 2 > end - pos:
            raise FrameError(f"GET-Response-With-List of {count} results is truncated", 3)
        results = []
        for i in range(count):
            result = _read_get_data_result(data, p, &pos, end, False)
            results.append(result)
        _expect_end(pos, end, "GET-Response-With-List")
        return GetResponseWithList(tuple(results), invoke)
    raise FrameError(f"GET-Response type {kind} is unknown", 1)


# --- other xDLMS APDUs ----------------------------------------------------------------


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _parse_exception_response(const unsigned char *p, Py_ssize_t end):
    cdef object counter = None
    cdef Py_ssize_t pos = 3
    _need(1, 2, end, "ExceptionResponse")
    if p[2] == 6:  # invocation-counter-error carries the counter
        _need(3, 4, end, "ExceptionResponse invocation counter")
        counter = _u32(p, 3)
        pos = 7
    _expect_end(pos, end, "ExceptionResponse")
    return ExceptionResponse(
        enum_or_int_fast(ExceptionStateError, p[1]),
        enum_or_int_fast(ExceptionServiceError, p[2]),
        counter,
    )


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _parse_data_notification(const unsigned char *p, Py_ssize_t end):
    cdef Py_ssize_t length, pos
    cdef object date_time = None
    _need(1, 4, end, "Data-Notification long-invoke-id-and-priority")
    pos = _read_axdr_length(p, 5, end, "Data-Notification date-time", &length)
    _need(pos, length, end, "Data-Notification date-time")
    if length:
        date_time = _slice(p, pos, pos + length)
    pos += length
    if pos >= end:
        raise FrameError("Data-Notification without a notification body", pos)
    return DataNotification(_u32(p, 1), date_time, _slice(p, pos, end))


def parse_apdu(data):
    """Decode one xDLMS or ACSE APDU (the tag in its first byte says which).

    See fastcodec._apdu_py.parse_apdu.
    """
    cdef bytes raw
    if type(data) is bytes:
        raw = <bytes>data
    else:
        raw = bytes(memoryview(data))
    cdef Py_ssize_t size = PyBytes_GET_SIZE(raw)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef unsigned char tag
    if size == 0:
        raise FrameError("empty APDU", 0)
    tag = p[0]
    if tag == 0xC0:
        return _parse_get_request(raw)
    if tag == 0xC4:
        return _parse_get_response(raw)
    if tag == 0x60:
        return _parse_aarq(p, size)
    if tag == 0x61:
        return _parse_aare(p, size)
    if tag == 0x62 or tag == 0x63:
        return _parse_release(p, size)
    if tag == 0x0F:
        return _parse_data_notification(p, size)
    if tag == 0xD8:
        return _parse_exception_response(p, size)
    if tag == 0x0E:
        return _parse_confirmed_service_error(p, 0, size)
    if tag == 0x01:
        return _parse_initiate_request(p, 0, size)
    if tag == 0x08:
        return _parse_initiate_response(p, 0, size)
    raise FrameError(f"APDU tag 0x{tag:02X} is not supported", 0)


# --- encoding -------------------------------------------------------------------
# Building APDUs is not a hot path (a few per association): the compiled module
# uses the pure twin's encoders, so there is one implementation of them.
from fastcodec._apdu_py import (  # noqa: E402
    cosem_date_time,
    encode_apdu,
    encode_range_descriptor,
    profile_range,
)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _read_capture_object(
    const unsigned char *p, Py_ssize_t pos, Py_ssize_t end, list out
) except -1:
    _need(pos, _CAPTURE_OBJECT_SIZE, end, "capture_object_definition")
    if (
        p[pos] != 0x02
        or p[pos + 1] != 0x04
        or p[pos + 2] != 0x12
        or p[pos + 5] != 0x09
        or p[pos + 6] != 0x06
        or p[pos + 13] != 0x0F
        or p[pos + 15] != 0x12
    ):
        raise FrameError(
            "capture_object_definition is not a structure {long-unsigned, "
            "octet-string(6), integer, long-unsigned}",
            pos,
        )
    out.append(
        CaptureObjectDefinition(
            class_id=_u16(p, pos + 3),
            logical_name=_slice(p, pos + 7, pos + 13),
            attribute_index=_signed8(p[pos + 14]),
            data_index=_u16(p, pos + 16),
        )
    )
    return pos + _CAPTURE_OBJECT_SIZE


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _read_range_value(
    bytes data, const unsigned char *p, Py_ssize_t pos, Py_ssize_t end
) except -1:
    cdef Py_ssize_t length, start, stop
    _need(pos, 1, end, "range value")
    if p[pos] == 0x09:  # octet-string: the usual date-time form, no axdr needed
        start = _read_axdr_length(p, pos + 1, end, "range value", &length)
        _need(start, length, end, "range value")
        return start + length
    stop = _data_end(data, pos)
    if stop > end:
        raise FrameError("range value runs past the descriptor", pos)
    return stop


@cython.boundscheck(False)
@cython.wraparound(False)
def parse_range_descriptor(parameters):
    """Decode the parameters of a selector-1 (range_descriptor) selective access.

    See fastcodec._apdu_py.parse_range_descriptor.
    """
    cdef bytes data = bytes(memoryview(parameters))
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos, stop, count, i
    cdef list restricting = []
    cdef list columns = []
    _need(0, 2, end, "range_descriptor")
    if p[0] != 0x02 or p[1] != 0x04:
        raise FrameError("range_descriptor must be a structure of 4 elements", 0)
    pos = _read_capture_object(p, 2, end, restricting)
    stop = _read_range_value(data, p, pos, end)
    from_value = _slice(p, pos, stop)
    pos = stop
    stop = _read_range_value(data, p, pos, end)
    to_value = _slice(p, pos, stop)
    pos = stop
    _need(pos, 1, end, "selected_values")
    if p[pos] != 0x01:
        raise FrameError("selected_values must be an array", pos)
    pos = _read_axdr_length(p, pos + 1, end, "selected_values count", &count)
    if count * _CAPTURE_OBJECT_SIZE > end - pos:
        raise FrameError(f"selected_values of {count} columns is truncated", pos)
    for i in range(count):
        pos = _read_capture_object(p, pos, end, columns)
    _expect_end(pos, end, "range_descriptor")
    return RangeDescriptor(restricting[0], from_value, to_value, tuple(columns))


# --- block transfer (Green Book §9.3.5.2, GET with datablocks) -------------------


cdef class BlockReassembler:
    """Collects the blocks of a GET-Response-With-Datablock transfer (sans-I/O).

    See fastcodec._apdu_py.BlockReassembler.
    """

    cdef Py_ssize_t _max_size_bytes
    cdef Py_ssize_t _size_bytes
    cdef list _parts
    cdef object _expected_block
    cdef object _invoke
    cdef bint _finished

    def __init__(self, max_size_bytes=16 * 1024 * 1024):
        self._max_size_bytes = max_size_bytes
        self._parts = []
        self._size_bytes = 0
        self._expected_block = None
        self._invoke = None
        self._finished = False

    @property
    def finished(self):
        """True once the transfer completed or failed."""
        return self._finished

    def receive(self, response):
        """Take the next block; see fastcodec._apdu_py.BlockReassembler.receive."""
        cdef bytes data
        cdef Py_ssize_t blocks
        if not isinstance(response, GetResponseWithDatablock):
            parsed = parse_apdu(response)
            if not isinstance(parsed, GetResponseWithDatablock):
                raise FrameError(
                    f"expected a GET-Response-With-Datablock, got {type(parsed).__name__}"
                )
            response = parsed
        if self._finished:
            raise FrameError("block received after the transfer finished")
        if self._expected_block is None:
            self._invoke = response.invoke_id_and_priority
        elif response.block_number != self._expected_block:
            raise FrameError(
                f"block {response.block_number} received, block {self._expected_block} expected"
            )
        if response.invoke_id_and_priority != self._invoke:
            raise FrameError(
                f"block with invoke-id-and-priority 0x{response.invoke_id_and_priority:02X}, "
                f"transfer started with 0x{self._invoke:02X}"
            )
        result = response.result
        if not isinstance(result, bytes):
            self._finished = True
            self._parts.clear()
            return BlockTransferFailed(response.block_number, result)
        self._size_bytes += len(<bytes>result)
        if self._size_bytes > self._max_size_bytes:
            self._finished = True
            self._parts.clear()
            raise FrameError(f"block transfer exceeds {self._max_size_bytes} bytes")
        self._parts.append(result)
        if response.last_block:
            self._finished = True
            data = b"".join(self._parts)
            blocks = len(self._parts)
            self._parts.clear()
            return BlockTransferComplete(data, blocks)
        self._expected_block = (response.block_number + 1) & 0xFFFFFFFF
        return GetRequestNext(response.block_number, response.invoke_id_and_priority)
