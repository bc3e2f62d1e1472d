"""DLMS/COSEM APDUs: xDLMS GET, ACSE association, notifications (selector: compiled or pure twin).

See `fastcodec._apdu_py` for the spec clauses and the invariants, and
`fastcodec._apdu_types` for the values. COSEM Data inside the APDUs stays raw
bytes: `fastcodec.axdr` decodes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastcodec import _select
from fastcodec._apdu_types import (
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    VAA_NAME_LN,
    VAA_NAME_SN,
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
    InitiateError,
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

if TYPE_CHECKING:
    from fastcodec._apdu_py import (
        DEFAULT_CLOCK_CAPTURE_OBJECT,
        Apdu,
        BlockReassembler,
        cosem_date_time,
        encode_apdu,
        encode_range_descriptor,
        parse_apdu,
        parse_range_descriptor,
        profile_range,
    )

    IMPLEMENTATION: str
else:
    _impl, IMPLEMENTATION = _select.load("apdu")
    DEFAULT_CLOCK_CAPTURE_OBJECT = _impl.DEFAULT_CLOCK_CAPTURE_OBJECT
    Apdu = _impl.Apdu
    BlockReassembler = _impl.BlockReassembler
    cosem_date_time = _impl.cosem_date_time
    encode_apdu = _impl.encode_apdu
    encode_range_descriptor = _impl.encode_range_descriptor
    parse_apdu = _impl.parse_apdu
    parse_range_descriptor = _impl.parse_range_descriptor
    profile_range = _impl.profile_range

__all__ = [
    "DEFAULT_CLOCK_CAPTURE_OBJECT",
    "DEFAULT_INVOKE_ID_AND_PRIORITY",
    "IMPLEMENTATION",
    "VAA_NAME_LN",
    "VAA_NAME_SN",
    "Aare",
    "Aarq",
    "AccessSelection",
    "AcseServiceProviderDiagnostic",
    "AcseServiceUserDiagnostic",
    "Apdu",
    "ApplicationContextName",
    "AssociationResult",
    "AttributeWithSelection",
    "AuthenticationMechanism",
    "BlockReassembler",
    "BlockTransferComplete",
    "BlockTransferFailed",
    "CaptureObjectDefinition",
    "ConfirmedService",
    "ConfirmedServiceError",
    "Conformance",
    "CosemAttributeDescriptor",
    "DataAccessResult",
    "DataNotification",
    "DiagnosticSource",
    "ExceptionResponse",
    "ExceptionServiceError",
    "ExceptionStateError",
    "GetRequestNext",
    "GetRequestNormal",
    "GetRequestWithList",
    "GetResponseNormal",
    "GetResponseWithDatablock",
    "GetResponseWithList",
    "InitiateError",
    "InitiateRequest",
    "InitiateResponse",
    "RangeDescriptor",
    "ReleaseRequestReason",
    "ReleaseResponseReason",
    "Rlre",
    "Rlrq",
    "ServiceErrorType",
    "cosem_date_time",
    "describe",
    "encode_apdu",
    "encode_range_descriptor",
    "enum_or_int",
    "make_invoke_id_and_priority",
    "negotiate_conformance",
    "parse_apdu",
    "parse_range_descriptor",
    "profile_range",
]
