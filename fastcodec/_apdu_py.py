# DLMS/COSEM application layer APDUs: the pure-Python reference twin.
#
# What it implements (DLMS UA 1000-2 "Green Book" Ed. 10, restated in
# IEC 62056-5-3):
#   §9.4.2 / ISO/IEC 8650-1  ACSE APDUs in BER: AARQ (0x60), AARE (0x61),
#                            RLRQ (0x62), RLRE (0x63), with the xDLMS
#                            InitiateRequest (0x01) / InitiateResponse (0x08) /
#                            ConfirmedServiceError (0x0E) in user-information.
#   §9.3.4-§9.3.5, §9.5      xDLMS GET service, logical-name referencing, in
#                            A-XDR: GET-Request normal/next/with-list
#                            (C0 01/02/03), GET-Response normal/with-datablock/
#                            with-list (C4 01/02/03); ExceptionResponse (D8);
#                            Data-Notification (0F).
#   Blue Book (DLMS UA 1000-1) §4.3.6  range_descriptor of the profile
#                            generic selective access (selector 1).
#
# Strategy: one function per APDU, each reading with an explicit position and
# end over an immutable `bytes` copy of the input; values are the frozen
# dataclasses of `fastcodec._apdu_types` (shared with `_apdu_c.pyx`, which
# must agree on every input). COSEM Data is never decoded here: values carry
# the raw A-XDR bytes, and where the end of a Data element must be known
# (GET with-list) `fastcodec.axdr.decode_from` finds it.
#
# Invariants (hostile input):
#   - every read is preceded by a check against the current container's end,
#     so any byte string gives a value or a FrameError, nothing else;
#   - a BER or A-XDR length is checked against the bytes left before anything
#     is sliced or allocated; lengths over 4 octets are refused;
#   - the ACSE structures are parsed by fixed code, two levels deep at most
#     (no recursion); unknown optional ACSE fields are skipped by their length;
#   - a decoded APDU must fill its input exactly: trailing bytes are an error.
from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator

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

# The clock's time attribute as the profile generic's first capture object
# (Blue Book §4.3.6: class 8, 0.0.1.0.0.255, attribute 2, data index 0).
DEFAULT_CLOCK_CAPTURE_OBJECT = CaptureObjectDefinition(8, bytes((0, 0, 1, 0, 0, 255)), 2, 0)

# joint-iso-ccitt(2) country(16) country-name(756) identified-organization(5)
# DLMS-UA(8): application-context(1) / authentication-mechanism-name(2).
_DLMS_UA_OID_PREFIX = bytes((0x60, 0x85, 0x74, 0x05, 0x08))
_CONTEXT_ARC = 1
_MECHANISM_ARC = 2
# A BER or A-XDR length beyond 4 octets cannot describe anything we accept.
_MAX_LENGTH_OCTETS = 4
# cosem-attribute-descriptor: class id (2) + instance id (6) + attribute id (1).
_DESCRIPTOR_SIZE = 9

_Buffer = bytes | bytearray | memoryview


def _need(data: bytes, pos: int, count: int, end: int, what: str) -> None:
    if pos + count > end:
        raise FrameError(f"{what}: needs {count} byte(s), {max(end - pos, 0)} left", pos)


def _read_ber_length(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A BER definite length at `pos`: (length, position after it), checked against `end`."""
    _need(data, pos, 1, end, "BER length")
    first = data[pos]
    pos += 1
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0:
            raise FrameError("BER indefinite length is not allowed", pos - 1)
        if count > _MAX_LENGTH_OCTETS:
            raise FrameError(f"BER length of {count} octets is too long", pos - 1)
        _need(data, pos, count, end, "BER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if length > end - pos:
        raise FrameError(
            f"BER length {length} runs past the end of its container ({end - pos} bytes left)",
            pos,
        )
    return length, pos


def _read_ber_tag(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A BER identifier at `pos` (multi-octet tags folded into one int)."""
    _need(data, pos, 1, end, "BER tag")
    tag = data[pos]
    pos += 1
    if tag & 0x1F == 0x1F:
        for _ in range(_MAX_LENGTH_OCTETS):
            _need(data, pos, 1, end, "BER tag")
            byte = data[pos]
            pos += 1
            tag = (tag << 8) | byte
            if not byte & 0x80:
                return tag, pos
        raise FrameError("BER tag longer than 5 octets", pos)
    return tag, pos


def _read_axdr_length(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """An A-XDR length/quantity (one octet, or 0x8N then N octets), not checked against end."""
    _need(data, pos, 1, end, what)
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0 or count > _MAX_LENGTH_OCTETS:
        raise FrameError(f"{what}: bad A-XDR length prefix 0x{first:02X}", pos - 1)
    _need(data, pos, count, end, what)
    return int.from_bytes(data[pos : pos + count], "big"), pos + count


def _read_u16(data: bytes, pos: int, end: int, what: str) -> int:
    _need(data, pos, 2, end, what)
    return (data[pos] << 8) | data[pos + 1]


def _read_u32(data: bytes, pos: int, end: int, what: str) -> int:
    _need(data, pos, 4, end, what)
    return int.from_bytes(data[pos : pos + 4], "big")


def _expect_end(pos: int, end: int, what: str) -> None:
    if pos != end:
        raise FrameError(f"{end - pos} unexpected byte(s) after the {what}", pos)


def _signed8(value: int) -> int:
    return value - 0x100 if value & 0x80 else value


def _read_ber_integer(data: bytes, pos: int, end: int, what: str) -> int:
    """A universal INTEGER element (02 len value) filling exactly pos..end."""
    _need(data, pos, 1, end, what)
    if data[pos] != 0x02:
        raise FrameError(f"{what}: expected an INTEGER (0x02), got 0x{data[pos]:02X}", pos)
    length, pos = _read_ber_length(data, pos + 1, end)
    if not 1 <= length <= _MAX_LENGTH_OCTETS:
        raise FrameError(f"{what}: INTEGER of {length} octets", pos)
    _expect_end(pos + length, end, what)
    return int.from_bytes(data[pos:end], "big", signed=True)


def _read_wrapped(data: bytes, pos: int, end: int, inner_tag: int, what: str) -> bytes:
    """The content of a single inner element with `inner_tag` filling exactly pos..end."""
    _need(data, pos, 1, end, what)
    if data[pos] != inner_tag:
        raise FrameError(f"{what}: expected tag 0x{inner_tag:02X}, got 0x{data[pos]:02X}", pos)
    length, pos = _read_ber_length(data, pos + 1, end)
    _expect_end(pos + length, end, what)
    return data[pos:end]


def _dlms_oid_arc(oid: bytes, kind: int, what: str, pos: int) -> int:
    if len(oid) != 7 or oid[:5] != _DLMS_UA_OID_PREFIX or oid[5] != kind or oid[6] & 0x80:
        raise FrameError(f"{what} {oid.hex()} is not a DLMS UA name 2.16.756.5.8.{kind}.x", pos)
    return oid[6]


# --- xDLMS initiate (A-XDR inside the ACSE user-information) -----------------


def _read_conformance(data: bytes, pos: int, end: int) -> tuple[Conformance, int]:
    # [APPLICATION 31] IMPLICIT BIT STRING (SIZE(24)): 5F 1F 04 <unused bits> + 3 octets.
    _need(data, pos, 7, end, "conformance block")
    if data[pos] != 0x5F or data[pos + 1] != 0x1F or data[pos + 2] != 0x04:
        raise FrameError("conformance block must start 5F 1F 04", pos)
    value = int.from_bytes(data[pos + 4 : pos + 7], "big")
    return Conformance(value), pos + 7


def _read_optional_int8(data: bytes, pos: int, end: int, what: str) -> tuple[int | None, int]:
    _need(data, pos, 1, end, what)
    flag = data[pos]
    if flag == 0:
        return None, pos + 1
    _need(data, pos + 1, 1, end, what)
    return _signed8(data[pos + 1]), pos + 2


def _parse_initiate_request(data: bytes, pos: int, end: int) -> InitiateRequest:
    pos += 1  # tag 0x01
    _need(data, pos, 1, end, "InitiateRequest dedicated-key")
    dedicated_key = None
    if data[pos]:
        length, pos = _read_axdr_length(data, pos + 1, end, "InitiateRequest dedicated-key")
        _need(data, pos, length, end, "InitiateRequest dedicated-key")
        dedicated_key = data[pos : pos + length]
        pos += length
    else:
        pos += 1
    _need(data, pos, 1, end, "InitiateRequest response-allowed")
    response_allowed = True
    if data[pos]:
        _need(data, pos + 1, 1, end, "InitiateRequest response-allowed")
        response_allowed = data[pos + 1] != 0
        pos += 2
    else:
        pos += 1
    quality, pos = _read_optional_int8(data, pos, end, "InitiateRequest quality of service")
    _need(data, pos, 1, end, "InitiateRequest dlms version")
    version = data[pos]
    conformance, pos = _read_conformance(data, pos + 1, end)
    max_pdu = _read_u16(data, pos, end, "InitiateRequest client-max-receive-pdu-size")
    _expect_end(pos + 2, end, "InitiateRequest")
    return InitiateRequest(
        proposed_conformance=conformance,
        client_max_receive_pdu_size=max_pdu,
        proposed_dlms_version=version,
        proposed_quality_of_service=quality,
        response_allowed=response_allowed,
        dedicated_key=dedicated_key,
    )


def _parse_initiate_response(data: bytes, pos: int, end: int) -> InitiateResponse:
    quality, pos = _read_optional_int8(data, pos + 1, end, "InitiateResponse quality of service")
    _need(data, pos, 1, end, "InitiateResponse dlms version")
    version = data[pos]
    conformance, pos = _read_conformance(data, pos + 1, end)
    max_pdu = _read_u16(data, pos, end, "InitiateResponse server-max-receive-pdu-size")
    vaa_name = _read_u16(data, pos + 2, end, "InitiateResponse vaa-name")
    _expect_end(pos + 4, end, "InitiateResponse")
    return InitiateResponse(
        negotiated_conformance=conformance,
        server_max_receive_pdu_size=max_pdu,
        negotiated_dlms_version=version,
        negotiated_quality_of_service=quality,
        vaa_name=vaa_name,
    )


def _parse_confirmed_service_error(data: bytes, pos: int, end: int) -> ConfirmedServiceError:
    _need(data, pos, 4, end, "ConfirmedServiceError")
    _expect_end(pos + 4, end, "ConfirmedServiceError")
    return ConfirmedServiceError(
        service=enum_or_int(ConfirmedService, data[pos + 1]),
        error_type=enum_or_int(ServiceErrorType, data[pos + 2]),
        error_value=data[pos + 3],
    )


def _parse_user_information(
    data: bytes, pos: int, end: int
) -> InitiateRequest | InitiateResponse | ConfirmedServiceError | bytes:
    # user-information [30] holds an OCTET STRING (04) with one xDLMS APDU;
    # ciphered variants (glo-/ded-initiate, 0x21/0x28/0x41/0x48...) stay raw.
    content = _read_wrapped(data, pos, end, 0x04, "user-information")
    if not content:
        raise FrameError("user-information is empty", pos)
    inner_start = end - len(content)
    tag = content[0]
    if tag == 0x01:
        return _parse_initiate_request(data, inner_start, end)
    if tag == 0x08:
        return _parse_initiate_response(data, inner_start, end)
    if tag == 0x0E:
        return _parse_confirmed_service_error(data, inner_start, end)
    return content


# --- ACSE -------------------------------------------------------------------------


def _acse_fields(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """The (tag, content start, content end) of each element of an ACSE APDU body, in turn."""
    while pos < end:
        tag_at = pos
        tag, pos = _read_ber_tag(data, pos, end)
        length, pos = _read_ber_length(data, pos, end)
        if tag > 0xFF:
            raise FrameError(f"ACSE field tag 0x{tag:X} is not one of ISO/IEC 8650-1", tag_at)
        yield tag, pos, pos + length
        pos += length


def _acse_body(data: bytes, what: str) -> tuple[int, int]:
    length, pos = _read_ber_length(data, 1, len(data))
    _expect_end(pos + length, len(data), what)
    return pos, pos + length


def _parse_aarq(data: bytes) -> Aarq:
    pos, end = _acse_body(data, "AARQ")
    values: dict[str, object] = {}
    for tag, start, stop in _acse_fields(data, pos, end):
        if tag == 0x80:
            values["protocol_version"] = data[start:stop]
        elif tag == 0xA1:
            oid = _read_wrapped(data, start, stop, 0x06, "application-context-name")
            arc = _dlms_oid_arc(oid, _CONTEXT_ARC, "application context", stop - len(oid))
            values["application_context"] = enum_or_int(ApplicationContextName, arc)
        elif tag == 0xA6:
            values["calling_ap_title"] = _read_wrapped(data, start, stop, 0x04, "calling-AP-title")
        elif tag == 0xA7:
            values["calling_ae_qualifier"] = data[start:stop]
        elif tag == 0x8A:
            values["sender_acse_requirements"] = data[start:stop]
        elif tag == 0x8B:
            arc = _dlms_oid_arc(data[start:stop], _MECHANISM_ARC, "mechanism name", start)
            values["mechanism"] = enum_or_int(AuthenticationMechanism, arc)
        elif tag == 0xAC:
            values["authentication_value"] = _read_authentication_value(data, start, stop)
        elif tag == 0x9D:
            values["implementation_information"] = data[start:stop]
        elif tag == 0xBE:
            user_information = _parse_user_information(data, start, stop)
            if isinstance(user_information, (InitiateResponse, ConfirmedServiceError)):
                raise FrameError("an AARQ carries an InitiateResponse", start)
            values["user_information"] = user_information
        # Other fields (called-AP-title, invocation identifiers...) are legal
        # but unused by DLMS: skipped.
    return Aarq(**values)  # type: ignore[arg-type]


def _read_authentication_value(data: bytes, start: int, stop: int) -> bytes:
    # Authentication-value CHOICE: charstring [0] GraphicString (0x80, the LLS
    # password / HLS challenge), bitstring [1], external [2], other [3].
    _need(data, start, 1, stop, "authentication value")
    length, pos = _read_ber_length(data, start + 1, stop)
    _expect_end(pos + length, stop, "authentication value")
    return data[pos:stop]


def _parse_result_source_diagnostic(data: bytes, start: int, stop: int) -> tuple[int, int]:
    _need(data, start, 1, stop, "result-source-diagnostic")
    choice = data[start]
    if choice not in (0xA1, 0xA2):
        raise FrameError(f"result-source-diagnostic choice 0x{choice:02X} is unknown", start)
    length, pos = _read_ber_length(data, start + 1, stop)
    _expect_end(pos + length, stop, "result-source-diagnostic")
    value = _read_ber_integer(data, pos, stop, "result-source-diagnostic")
    return choice & 0x0F, value


def _parse_aare(data: bytes) -> Aare:
    pos, end = _acse_body(data, "AARE")
    values: dict[str, object] = {}
    for tag, start, stop in _acse_fields(data, pos, end):
        if tag == 0x80:
            values["protocol_version"] = data[start:stop]
        elif tag == 0xA1:
            oid = _read_wrapped(data, start, stop, 0x06, "application-context-name")
            arc = _dlms_oid_arc(oid, _CONTEXT_ARC, "application context", stop - len(oid))
            values["application_context"] = enum_or_int(ApplicationContextName, arc)
        elif tag == 0xA2:
            result = _read_ber_integer(data, start, stop, "association result")
            values["result"] = enum_or_int(AssociationResult, result)
        elif tag == 0xA3:
            source, diagnostic = _parse_result_source_diagnostic(data, start, stop)
            values["diagnostic_source"] = DiagnosticSource(source)
            diagnostic_type: type[AcseServiceUserDiagnostic] | type[AcseServiceProviderDiagnostic]
            if source == DiagnosticSource.ACSE_SERVICE_USER:
                diagnostic_type = AcseServiceUserDiagnostic
            else:
                diagnostic_type = AcseServiceProviderDiagnostic
            values["diagnostic"] = enum_or_int(diagnostic_type, diagnostic)
        elif tag == 0xA4:
            title = _read_wrapped(data, start, stop, 0x04, "responding-AP-title")
            values["responding_ap_title"] = title
        elif tag == 0xA5:
            values["responding_ae_qualifier"] = data[start:stop]
        elif tag == 0x88:
            values["responder_acse_requirements"] = data[start:stop]
        elif tag == 0x89:
            arc = _dlms_oid_arc(data[start:stop], _MECHANISM_ARC, "mechanism name", start)
            values["mechanism"] = enum_or_int(AuthenticationMechanism, arc)
        elif tag == 0xAA:
            values["authentication_value"] = _read_authentication_value(data, start, stop)
        elif tag == 0x9D:
            values["implementation_information"] = data[start:stop]
        elif tag == 0xBE:
            user_information = _parse_user_information(data, start, stop)
            if isinstance(user_information, InitiateRequest):
                raise FrameError("an AARE carries an InitiateRequest", start)
            values["user_information"] = user_information
    if "result" not in values or "diagnostic" not in values:
        raise FrameError("AARE without result or result-source-diagnostic", pos)
    return Aare(**values)  # type: ignore[arg-type]


def _parse_release(data: bytes) -> Rlrq | Rlre:
    is_request = data[0] == 0x62
    what = "RLRQ" if is_request else "RLRE"
    pos, end = _acse_body(data, what)
    reason: int | None = None
    user_information: object = None
    for tag, start, stop in _acse_fields(data, pos, end):
        if tag == 0x80:
            if not 1 <= stop - start <= _MAX_LENGTH_OCTETS:
                raise FrameError(f"{what} reason of {stop - start} octets", start)
            reason = int.from_bytes(data[start:stop], "big", signed=True)
        elif tag == 0xBE:
            user_information = _parse_user_information(data, start, stop)
            if isinstance(user_information, InitiateRequest) != is_request and not isinstance(
                user_information, bytes
            ):
                raise FrameError(f"{what} user-information of the wrong direction", start)
    if is_request:
        return Rlrq(
            reason=None if reason is None else enum_or_int(ReleaseRequestReason, reason),
            user_information=user_information,  # type: ignore[arg-type]
        )
    return Rlre(
        reason=None if reason is None else enum_or_int(ReleaseResponseReason, reason),
        user_information=user_information,  # type: ignore[arg-type]
    )


# --- GET (A-XDR) ----------------------------------------------------------------


def _data_end(data: bytes, pos: int) -> int:
    """Where the COSEM Data element starting at `pos` ends (fastcodec.axdr finds it)."""
    from fastcodec import axdr

    if pos >= len(data):
        raise FrameError("Data element missing", pos)
    _, end = axdr.decode_from(data, pos)
    return int(end)


def _read_descriptor(data: bytes, pos: int, end: int) -> CosemAttributeDescriptor:
    _need(data, pos, _DESCRIPTOR_SIZE, end, "cosem-attribute-descriptor")
    return CosemAttributeDescriptor(
        class_id=(data[pos] << 8) | data[pos + 1],
        instance_id=data[pos + 2 : pos + 8],
        attribute_id=_signed8(data[pos + 8]),
    )


def _read_access_selection(
    data: bytes, pos: int, end: int, to_end: bool
) -> tuple[AccessSelection | None, int]:
    _need(data, pos, 1, end, "access-selection flag")
    flag = data[pos]
    if flag == 0:
        return None, pos + 1
    if flag != 1:
        raise FrameError(f"access-selection flag 0x{flag:02X} is neither 0 nor 1", pos)
    _need(data, pos + 1, 2, end, "access-selection")
    selector = data[pos + 1]
    start = pos + 2
    stop = end if to_end else _data_end(data, start)
    return AccessSelection(selector, data[start:stop]), stop


def _parse_get_request(data: bytes) -> GetRequestNormal | GetRequestNext | GetRequestWithList:
    end = len(data)
    _need(data, 0, 3, end, "GET-Request")
    kind = data[1]
    invoke = data[2]
    if kind == 1:
        descriptor = _read_descriptor(data, 3, end)
        selection, pos = _read_access_selection(data, 3 + _DESCRIPTOR_SIZE, end, to_end=True)
        _expect_end(pos, end, "GET-Request-Normal")
        return GetRequestNormal(descriptor, selection, invoke)
    if kind == 2:
        block_number = _read_u32(data, 3, end, "GET-Request-Next block number")
        _expect_end(7, end, "GET-Request-Next")
        return GetRequestNext(block_number, invoke)
    if kind == 3:
        count, pos = _read_axdr_length(data, 3, end, "GET-Request-With-List count")
        if count * (_DESCRIPTOR_SIZE + 1) > end - pos:
            raise FrameError(f"GET-Request-With-List of {count} attributes is truncated", 3)
        attributes = []
        for _ in range(count):
            descriptor = _read_descriptor(data, pos, end)
            selection, pos = _read_access_selection(data, pos + _DESCRIPTOR_SIZE, end, to_end=False)
            attributes.append(AttributeWithSelection(descriptor, selection))
        _expect_end(pos, end, "GET-Request-With-List")
        return GetRequestWithList(tuple(attributes), invoke)
    raise FrameError(f"GET-Request type {kind} is unknown", 1)


def _read_get_data_result(
    data: bytes, pos: int, end: int, to_end: bool
) -> tuple[bytes | DataAccessResult | int, int]:
    _need(data, pos, 2, end, "Get-Data-Result")
    choice = data[pos]
    if choice == 0:
        stop = end if to_end else _data_end(data, pos + 1)
        return data[pos + 1 : stop], stop
    if choice == 1:
        return enum_or_int(DataAccessResult, data[pos + 1]), pos + 2
    raise FrameError(f"Get-Data-Result choice {choice} is neither data nor result", pos)


def _parse_get_response(
    data: bytes,
) -> GetResponseNormal | GetResponseWithDatablock | GetResponseWithList:
    end = len(data)
    _need(data, 0, 3, end, "GET-Response")
    kind = data[1]
    invoke = data[2]
    if kind == 1:
        result, pos = _read_get_data_result(data, 3, end, to_end=True)
        _expect_end(pos, end, "GET-Response-Normal")
        return GetResponseNormal(result, invoke)
    if kind == 2:
        _need(data, 3, 7, end, "DataBlock-G")
        last_block = data[3] != 0
        block_number = int.from_bytes(data[4:8], "big")
        choice = data[8]
        block_result: bytes | DataAccessResult | int
        if choice == 0:
            length, pos = _read_axdr_length(data, 9, end, "DataBlock-G raw-data")
            if length != end - pos:
                raise FrameError(
                    f"DataBlock-G raw-data of {length} bytes, {end - pos} bytes follow", 9
                )
            block_result = data[pos:end]
        elif choice == 1:
            _expect_end(10, end, "DataBlock-G")
            block_result = enum_or_int(DataAccessResult, data[9])
        else:
            raise FrameError(f"DataBlock-G result choice {choice} is unknown", 8)
        return GetResponseWithDatablock(last_block, block_number, block_result, invoke)
    if kind == 3:
        count, pos = _read_axdr_length(data, 3, end, "GET-Response-With-List count")
        if count * 2 > end - pos:
            raise FrameError(f"GET-Response-With-List of {count} results is truncated", 3)
        results = []
        for _ in range(count):
            item, pos = _read_get_data_result(data, pos, end, to_end=False)
            results.append(item)
        _expect_end(pos, end, "GET-Response-With-List")
        return GetResponseWithList(tuple(results), invoke)
    raise FrameError(f"GET-Response type {kind} is unknown", 1)


# --- other xDLMS APDUs ------------------------------------------------------------


def _parse_exception_response(data: bytes) -> ExceptionResponse:
    end = len(data)
    _need(data, 1, 2, end, "ExceptionResponse")
    service_error = data[2]
    counter = None
    pos = 3
    if service_error == ExceptionServiceError.INVOCATION_COUNTER_ERROR:
        counter = _read_u32(data, 3, end, "ExceptionResponse invocation counter")
        pos = 7
    _expect_end(pos, end, "ExceptionResponse")
    return ExceptionResponse(
        enum_or_int(ExceptionStateError, data[1]),
        enum_or_int(ExceptionServiceError, service_error),
        counter,
    )


def _parse_data_notification(data: bytes) -> DataNotification:
    end = len(data)
    invoke = _read_u32(data, 1, end, "Data-Notification long-invoke-id-and-priority")
    length, pos = _read_axdr_length(data, 5, end, "Data-Notification date-time")
    _need(data, pos, length, end, "Data-Notification date-time")
    date_time = data[pos : pos + length] if length else None
    pos += length
    if pos >= end:
        raise FrameError("Data-Notification without a notification body", pos)
    return DataNotification(invoke, date_time, data[pos:end])


def parse_apdu(data: _Buffer) -> Apdu:
    """Decode one xDLMS or ACSE APDU (the tag in its first byte says which).

    Args:
        data: exactly one APDU: the HDLC information field after the LLC
            bytes, or the wrapper payload after its 8-byte header.

    Returns:
        The typed value: Aarq, Aare, Rlrq, Rlre, InitiateRequest,
        InitiateResponse, ConfirmedServiceError, GetRequestNormal/Next/
        WithList, GetResponseNormal/WithDatablock/WithList,
        ExceptionResponse or DataNotification. COSEM Data inside stays raw
        bytes (decode them with `fastcodec.axdr`).

    Raises:
        FrameError: an unknown tag, a truncated or malformed APDU, or bytes
            left over after it.
    """
    raw = bytes(memoryview(data))
    if not raw:
        raise FrameError("empty APDU", 0)
    tag = raw[0]
    if tag == 0xC0:
        return _parse_get_request(raw)
    if tag == 0xC4:
        return _parse_get_response(raw)
    if tag == 0x60:
        return _parse_aarq(raw)
    if tag == 0x61:
        return _parse_aare(raw)
    if tag in (0x62, 0x63):
        return _parse_release(raw)
    if tag == 0x0F:
        return _parse_data_notification(raw)
    if tag == 0xD8:
        return _parse_exception_response(raw)
    if tag == 0x0E:
        return _parse_confirmed_service_error(raw, 0, len(raw))
    if tag == 0x01:
        return _parse_initiate_request(raw, 0, len(raw))
    if tag == 0x08:
        return _parse_initiate_response(raw, 0, len(raw))
    raise FrameError(f"APDU tag 0x{tag:02X} is not supported", 0)


# --- encoding ---------------------------------------------------------------------


def _check_range(value: int, low: int, high: int, what: str) -> int:
    if not isinstance(value, int) or not low <= value <= high:
        raise EncodeError(f"{what} {value!r} is outside {low}..{high}")
    return int(value)


def _ber_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _axdr_length(length: int) -> bytes:
    return _ber_length(length)  # same form: one octet, or 0x8N and N octets


def _ber_element(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _ber_length(len(content)) + content


def _ber_integer(value: int, what: str) -> bytes:
    _check_range(value, -(1 << 31), (1 << 31) - 1, what)
    size = 1
    while not -(1 << (8 * size - 1)) <= value < 1 << (8 * size - 1):
        size += 1
    return value.to_bytes(size, "big", signed=True)


def _dlms_oid(kind: int, arc: int, what: str) -> bytes:
    return _DLMS_UA_OID_PREFIX + bytes((kind, _check_range(arc, 0, 127, what)))


def _octets(value: object, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise EncodeError(f"{what} must be bytes, not {type(value).__name__}")
    return bytes(value)


def _conformance(value: int) -> bytes:
    return b"\x5f\x1f\x04\x00" + _check_range(value, 0, 0xFFFFFF, "conformance").to_bytes(3, "big")


def _optional_int8(value: int | None, what: str) -> bytes:
    if value is None:
        return b"\x00"
    return bytes((1, _check_range(value, -128, 127, what) & 0xFF))


def _encode_initiate_request(value: InitiateRequest) -> bytes:
    parts = [b"\x01"]
    if value.dedicated_key is None:
        parts.append(b"\x00")
    else:
        key = _octets(value.dedicated_key, "dedicated key")
        parts.append(b"\x01" + _axdr_length(len(key)) + key)
    parts.append(b"\x00" if value.response_allowed else b"\x01\x00")
    parts.append(_optional_int8(value.proposed_quality_of_service, "quality of service"))
    parts.append(bytes((_check_range(value.proposed_dlms_version, 0, 255, "dlms version"),)))
    parts.append(_conformance(value.proposed_conformance))
    size = _check_range(value.client_max_receive_pdu_size, 0, 0xFFFF, "max receive pdu size")
    parts.append(size.to_bytes(2, "big"))
    return b"".join(parts)


def _encode_initiate_response(value: InitiateResponse) -> bytes:
    return b"".join(
        (
            b"\x08",
            _optional_int8(value.negotiated_quality_of_service, "quality of service"),
            bytes((_check_range(value.negotiated_dlms_version, 0, 255, "dlms version"),)),
            _conformance(value.negotiated_conformance),
            _check_range(value.server_max_receive_pdu_size, 0, 0xFFFF, "max pdu size").to_bytes(
                2, "big"
            ),
            _check_range(value.vaa_name, 0, 0xFFFF, "vaa-name").to_bytes(2, "big"),
        )
    )


def _encode_confirmed_service_error(value: ConfirmedServiceError) -> bytes:
    return bytes(
        (
            0x0E,
            _check_range(value.service, 0, 255, "confirmed service"),
            _check_range(value.error_type, 0, 255, "service error type"),
            _check_range(value.error_value, 0, 255, "service error value"),
        )
    )


def _encode_user_information(value: object) -> bytes:
    if isinstance(value, InitiateRequest):
        inner = _encode_initiate_request(value)
    elif isinstance(value, InitiateResponse):
        inner = _encode_initiate_response(value)
    elif isinstance(value, ConfirmedServiceError):
        inner = _encode_confirmed_service_error(value)
    else:
        inner = _octets(value, "user-information")
    return _ber_element(0xBE, _ber_element(0x04, inner))


def _encode_aarq(value: Aarq) -> bytes:
    parts = []
    if value.protocol_version is not None:
        parts.append(_ber_element(0x80, _octets(value.protocol_version, "protocol version")))
    context = _dlms_oid(_CONTEXT_ARC, value.application_context, "application context")
    parts.append(_ber_element(0xA1, _ber_element(0x06, context)))
    if value.calling_ap_title is not None:
        title = _octets(value.calling_ap_title, "calling AP title")
        parts.append(_ber_element(0xA6, _ber_element(0x04, title)))
    if value.calling_ae_qualifier is not None:
        parts.append(_ber_element(0xA7, _octets(value.calling_ae_qualifier, "AE qualifier")))
    if value.sender_acse_requirements is not None:
        requirements = _octets(value.sender_acse_requirements, "acse requirements")
        parts.append(_ber_element(0x8A, requirements))
    if value.mechanism is not None:
        parts.append(_ber_element(0x8B, _dlms_oid(_MECHANISM_ARC, value.mechanism, "mechanism")))
    if value.authentication_value is not None:
        secret = _octets(value.authentication_value, "authentication value")
        parts.append(_ber_element(0xAC, _ber_element(0x80, secret)))
    if value.implementation_information is not None:
        information = _octets(value.implementation_information, "implementation information")
        parts.append(_ber_element(0x9D, information))
    if value.user_information is not None:
        parts.append(_encode_user_information(value.user_information))
    return _ber_element(0x60, b"".join(parts))


def _encode_aare(value: Aare) -> bytes:
    parts = []
    if value.protocol_version is not None:
        parts.append(_ber_element(0x80, _octets(value.protocol_version, "protocol version")))
    context = _dlms_oid(_CONTEXT_ARC, value.application_context, "application context")
    parts.append(_ber_element(0xA1, _ber_element(0x06, context)))
    result = _ber_integer(value.result, "association result")
    parts.append(_ber_element(0xA2, _ber_element(0x02, result)))
    source = _check_range(value.diagnostic_source, 1, 2, "diagnostic source")
    diagnostic = _ber_element(0x02, _ber_integer(value.diagnostic, "diagnostic"))
    parts.append(_ber_element(0xA3, _ber_element(0xA0 | source, diagnostic)))
    if value.responding_ap_title is not None:
        title = _octets(value.responding_ap_title, "responding AP title")
        parts.append(_ber_element(0xA4, _ber_element(0x04, title)))
    if value.responding_ae_qualifier is not None:
        parts.append(_ber_element(0xA5, _octets(value.responding_ae_qualifier, "AE qualifier")))
    if value.responder_acse_requirements is not None:
        requirements = _octets(value.responder_acse_requirements, "acse requirements")
        parts.append(_ber_element(0x88, requirements))
    if value.mechanism is not None:
        parts.append(_ber_element(0x89, _dlms_oid(_MECHANISM_ARC, value.mechanism, "mechanism")))
    if value.authentication_value is not None:
        secret = _octets(value.authentication_value, "authentication value")
        parts.append(_ber_element(0xAA, _ber_element(0x80, secret)))
    if value.implementation_information is not None:
        information = _octets(value.implementation_information, "implementation information")
        parts.append(_ber_element(0x9D, information))
    if value.user_information is not None:
        parts.append(_encode_user_information(value.user_information))
    return _ber_element(0x61, b"".join(parts))


def _encode_release(value: Rlrq | Rlre) -> bytes:
    parts = []
    if value.reason is not None:
        parts.append(_ber_element(0x80, _ber_integer(value.reason, "release reason")))
    if value.user_information is not None:
        parts.append(_encode_user_information(value.user_information))
    return _ber_element(0x62 if isinstance(value, Rlrq) else 0x63, b"".join(parts))


def _invoke(value: int) -> bytes:
    return bytes((_check_range(value, 0, 255, "invoke-id-and-priority"),))


def _encode_descriptor(descriptor: CosemAttributeDescriptor) -> bytes:
    instance = _octets(descriptor.instance_id, "instance id")
    if len(instance) != 6:
        raise EncodeError(f"instance id must be 6 octets (an OBIS code), not {len(instance)}")
    class_id = _check_range(descriptor.class_id, 0, 0xFFFF, "class id")
    attribute = _check_range(descriptor.attribute_id, -128, 127, "attribute id")
    return class_id.to_bytes(2, "big") + instance + bytes((attribute & 0xFF,))


def _encode_access_selection(selection: AccessSelection | None) -> bytes:
    if selection is None:
        return b"\x00"
    parameters = _octets(selection.parameters, "access parameters")
    if not parameters:
        raise EncodeError("access parameters must hold one Data element")
    return bytes((1, _check_range(selection.selector, 0, 255, "access selector"))) + parameters


def _encode_get_data_result(result: object) -> bytes:
    if isinstance(result, (bytes, bytearray, memoryview)):
        if not len(result):
            raise EncodeError("a Get-Data-Result data must hold one Data element")
        return b"\x00" + bytes(result)
    if isinstance(result, int):
        return bytes((1, _check_range(result, 0, 255, "data-access-result")))
    raise EncodeError(f"a Get-Data-Result is bytes or int, not {type(result).__name__}")


def _encode_get(value: object) -> bytes:
    if isinstance(value, GetRequestNormal):
        return (
            b"\xc0\x01"
            + _invoke(value.invoke_id_and_priority)
            + _encode_descriptor(value.descriptor)
            + _encode_access_selection(value.access_selection)
        )
    if isinstance(value, GetRequestNext):
        block = _check_range(value.block_number, 0, 0xFFFFFFFF, "block number")
        return b"\xc0\x02" + _invoke(value.invoke_id_and_priority) + block.to_bytes(4, "big")
    if isinstance(value, GetRequestWithList):
        parts = [b"\xc0\x03", _invoke(value.invoke_id_and_priority)]
        parts.append(_axdr_length(len(value.attributes)))
        for item in value.attributes:
            parts.append(_encode_descriptor(item.descriptor))
            parts.append(_encode_access_selection(item.access_selection))
        return b"".join(parts)
    if isinstance(value, GetResponseNormal):
        return (
            b"\xc4\x01"
            + _invoke(value.invoke_id_and_priority)
            + _encode_get_data_result(value.result)
        )
    if isinstance(value, GetResponseWithDatablock):
        block = _check_range(value.block_number, 0, 0xFFFFFFFF, "block number")
        head = (
            b"\xc4\x02"
            + _invoke(value.invoke_id_and_priority)
            + (b"\x01" if value.last_block else b"\x00")
            + block.to_bytes(4, "big")
        )
        if isinstance(value.result, (bytes, bytearray, memoryview)):
            return head + b"\x00" + _axdr_length(len(value.result)) + bytes(value.result)
        return head + _encode_get_data_result(value.result)
    if isinstance(value, GetResponseWithList):
        parts = [b"\xc4\x03", _invoke(value.invoke_id_and_priority)]
        parts.append(_axdr_length(len(value.results)))
        parts.extend(_encode_get_data_result(result) for result in value.results)
        return b"".join(parts)
    raise EncodeError(f"{type(value).__name__} is not an APDU")


def encode_apdu(value: Apdu) -> bytes:
    """Encode an APDU value (the dataclasses `parse_apdu` returns) to bytes.

    Args:
        value: any APDU value; Data parts are given as their raw A-XDR bytes.

    Returns:
        The APDU, ready for the HDLC information field or the wrapper.

    Raises:
        EncodeError: a field out of range or of the wrong type.
    """
    if isinstance(value, Aarq):
        return _encode_aarq(value)
    if isinstance(value, Aare):
        return _encode_aare(value)
    if isinstance(value, (Rlrq, Rlre)):
        return _encode_release(value)
    if isinstance(value, InitiateRequest):
        return _encode_initiate_request(value)
    if isinstance(value, InitiateResponse):
        return _encode_initiate_response(value)
    if isinstance(value, ConfirmedServiceError):
        return _encode_confirmed_service_error(value)
    if isinstance(value, ExceptionResponse):
        head = bytes(
            (
                0xD8,
                _check_range(value.state_error, 0, 255, "state error"),
                _check_range(value.service_error, 0, 255, "service error"),
            )
        )
        if value.service_error != ExceptionServiceError.INVOCATION_COUNTER_ERROR:
            if value.invocation_counter is not None:
                raise EncodeError("only an invocation-counter-error carries a counter")
            return head
        if value.invocation_counter is None:
            raise EncodeError("an invocation-counter-error needs the invocation counter")
        counter = _check_range(value.invocation_counter, 0, 0xFFFFFFFF, "invocation counter")
        return head + counter.to_bytes(4, "big")
    if isinstance(value, DataNotification):
        invoke = _check_range(value.long_invoke_id_and_priority, 0, 0xFFFFFFFF, "invoke id")
        stamp = b"" if value.date_time is None else _octets(value.date_time, "date-time")
        body = _octets(value.body, "notification body")
        if not body:
            raise EncodeError("a notification body must hold one Data element")
        return b"\x0f" + invoke.to_bytes(4, "big") + _axdr_length(len(stamp)) + stamp + body
    return _encode_get(value)


# --- selective access by range (Blue Book §4.3.6) --------------------------------


def cosem_date_time(moment: _dt.datetime) -> bytes:
    """The 12 octets of a COSEM date-time (Blue Book §4.1.6.1) for `moment`.

    A naive datetime gets deviation "not specified" (0x8000) and clock status
    0xFF; an aware one its UTC offset, sent as deviation = -offset in minutes
    (the DLMS convention: UTC+01:00 is sent as -60) and clock status 0.

    Args:
        moment: the date and time.

    Returns:
        year (u16), month, day, day of week (Monday = 1), hour, minute,
        second, hundredths, deviation (i16), clock status.
    """
    offset = moment.utcoffset()
    if offset is None:
        deviation, status = 0x8000, 0xFF
    else:
        deviation = (-int(offset.total_seconds() // 60)) & 0xFFFF
        status = 0x00
    return (
        moment.year.to_bytes(2, "big")
        + bytes(
            (
                moment.month,
                moment.day,
                moment.isoweekday(),
                moment.hour,
                moment.minute,
                moment.second,
                moment.microsecond // 10000,
            )
        )
        + deviation.to_bytes(2, "big")
        + bytes((status,))
    )


def _encode_capture_object(definition: CaptureObjectDefinition) -> bytes:
    name = _octets(definition.logical_name, "logical name")
    if len(name) != 6:
        raise EncodeError(f"logical name must be 6 octets, not {len(name)}")
    return (
        b"\x02\x04\x12"
        + _check_range(definition.class_id, 0, 0xFFFF, "class id").to_bytes(2, "big")
        + b"\x09\x06"
        + name
        + b"\x0f"
        + bytes((_check_range(definition.attribute_index, -128, 127, "attribute index") & 0xFF,))
        + b"\x12"
        + _check_range(definition.data_index, 0, 0xFFFF, "data index").to_bytes(2, "big")
    )


def encode_range_descriptor(descriptor: RangeDescriptor) -> AccessSelection:
    """The selective access (selector 1) for a profile generic range_descriptor.

    Args:
        descriptor: restricting object, from/to values as raw Data bytes and
            the selected columns (empty = all).

    Returns:
        An AccessSelection to put in a GetRequestNormal.

    Raises:
        EncodeError: a field out of range, or an empty from/to value.
    """
    if not descriptor.from_value or not descriptor.to_value:
        raise EncodeError("range from/to values must each hold one Data element")
    parts = [b"\x02\x04", _encode_capture_object(descriptor.restricting_object)]
    parts.append(_octets(descriptor.from_value, "from value"))
    parts.append(_octets(descriptor.to_value, "to value"))
    parts.append(b"\x01" + _axdr_length(len(descriptor.selected_values)))
    parts.extend(_encode_capture_object(column) for column in descriptor.selected_values)
    return AccessSelection(1, b"".join(parts))


def profile_range(
    from_moment: _dt.datetime,
    to_moment: _dt.datetime,
    clock: CaptureObjectDefinition = DEFAULT_CLOCK_CAPTURE_OBJECT,
    selected_values: tuple[CaptureObjectDefinition, ...] = (),
) -> AccessSelection:
    """The selective access to read a profile's rows between two date-times.

    Args:
        from_moment: first capture time wanted (inclusive).
        to_moment: last capture time wanted (inclusive).
        clock: the capture object that holds the capture time (the clock).
        selected_values: columns to return; empty = all.

    Returns:
        AccessSelection(1, range_descriptor Data bytes), the dates sent as
        12-octet octet-strings.
    """
    return encode_range_descriptor(
        RangeDescriptor(
            clock,
            b"\x09\x0c" + cosem_date_time(from_moment),
            b"\x09\x0c" + cosem_date_time(to_moment),
            selected_values,
        )
    )


def _read_capture_object(data: bytes, pos: int, end: int) -> tuple[CaptureObjectDefinition, int]:
    _need(data, pos, 18, end, "capture_object_definition")
    if (
        data[pos : pos + 3] != b"\x02\x04\x12"
        or data[pos + 5 : pos + 7] != b"\x09\x06"
        or data[pos + 13] != 0x0F
        or data[pos + 15] != 0x12
    ):
        raise FrameError(
            "capture_object_definition is not a structure {long-unsigned, "
            "octet-string(6), integer, long-unsigned}",
            pos,
        )
    definition = CaptureObjectDefinition(
        class_id=(data[pos + 3] << 8) | data[pos + 4],
        logical_name=data[pos + 7 : pos + 13],
        attribute_index=_signed8(data[pos + 14]),
        data_index=(data[pos + 16] << 8) | data[pos + 17],
    )
    return definition, pos + 18


def _read_range_value(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    _need(data, pos, 1, end, "range value")
    if data[pos] == 0x09:  # octet-string: the usual date-time form, no axdr needed
        length, start = _read_axdr_length(data, pos + 1, end, "range value")
        _need(data, start, length, end, "range value")
        stop = start + length
    else:
        stop = _data_end(data, pos)
        if stop > end:
            raise FrameError("range value runs past the descriptor", pos)
    return data[pos:stop], stop


def parse_range_descriptor(parameters: _Buffer) -> RangeDescriptor:
    """Decode the parameters of a selector-1 (range_descriptor) selective access.

    Args:
        parameters: AccessSelection.parameters of a GET request with selector 1.

    Returns:
        The RangeDescriptor; from/to values stay raw Data bytes.

    Raises:
        FrameError: the bytes are not a range_descriptor structure.
    """
    data = bytes(memoryview(parameters))
    end = len(data)
    _need(data, 0, 2, end, "range_descriptor")
    if data[0] != 0x02 or data[1] != 0x04:
        raise FrameError("range_descriptor must be a structure of 4 elements", 0)
    restricting, pos = _read_capture_object(data, 2, end)
    from_value, pos = _read_range_value(data, pos, end)
    to_value, pos = _read_range_value(data, pos, end)
    _need(data, pos, 1, end, "selected_values")
    if data[pos] != 0x01:
        raise FrameError("selected_values must be an array", pos)
    count, pos = _read_axdr_length(data, pos + 1, end, "selected_values count")
    if count * 18 > end - pos:
        raise FrameError(f"selected_values of {count} columns is truncated", pos)
    columns = []
    for _ in range(count):
        column, pos = _read_capture_object(data, pos, end)
        columns.append(column)
    _expect_end(pos, end, "range_descriptor")
    return RangeDescriptor(restricting, from_value, to_value, tuple(columns))


# --- block transfer (Green Book §9.3.5.2, GET with datablocks) -------------------


class BlockReassembler:
    """Collects the blocks of a GET-Response-With-Datablock transfer (sans-I/O).

    Feed each response the server sends to `receive`; it answers with the
    GetRequestNext to send, or, after the last block, BlockTransferComplete
    with the whole Data encoding, or BlockTransferFailed when the server
    answered with a data-access-result.

    Args:
        max_size_bytes: refuse transfers growing beyond this many bytes.
    """

    def __init__(self, max_size_bytes: int = 16 * 1024 * 1024) -> None:
        self._max_size_bytes = max_size_bytes
        self._parts: list[bytes] = []
        self._size_bytes = 0
        self._expected_block: int | None = None
        self._invoke: int | None = None
        self._finished = False

    @property
    def finished(self) -> bool:
        """True once the transfer completed or failed."""
        return self._finished

    def receive(
        self, response: GetResponseWithDatablock | _Buffer
    ) -> GetRequestNext | BlockTransferComplete | BlockTransferFailed:
        """Take the next block.

        Args:
            response: a GetResponseWithDatablock, or the APDU bytes of one.

        Returns:
            The GetRequestNext to send next; or the outcome once the last
            block (or an error result) arrived.

        Raises:
            FrameError: not a with-datablock response, a block number that is
                not the previous one plus one, another invoke-id, a transfer
                over the size limit, or a block after the end.
        """
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
        self._size_bytes += len(result)
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
