# The value model of the DLMS/COSEM APDU codec, shared by both twins.
#
# `fastcodec._apdu_py` and `fastcodec._apdu_c` build and return these types,
# so results compare equal across twins. They follow the ASN.1 of the DLMS UA
# Green Book (DLMS UA 1000-2 Ed. 10) §9.5 "xDLMS ASN.1" and §9.4.2 (ACSE
# APDUs, from ISO/IEC 8650-1) as IEC 62056-5-3 restates them.
#
# Conventions:
# - Where an APDU carries COSEM `Data` (a GET result, a data-block's raw
#   data, selective-access parameters, a notification body) the value holds
#   the raw A-XDR bytes, never a decoded value: `fastcodec.axdr` decodes them.
# - A DLMS error answer (a data-access-result, a rejected association, an
#   exception-response) is a value, not an exception.
# - Enumerated fields hold the enum member when the value is known and the
#   plain int otherwise (`enum_or_int`): an unknown diagnostic from a meter is
#   reported, not refused. IntEnum members compare equal to their ints.
# - The conformance block is an IntFlag whose value is the 24-bit BER bit
#   string read big-endian: named bit 0 (reserved-zero) is 0x800000 and bit 23
#   (action) is 0x000001, so the bytes 00 1E 1D read as 0x001E1D.
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import TypeVar

__all__ = [
    "DEFAULT_INVOKE_ID_AND_PRIORITY",
    "VAA_NAME_LN",
    "VAA_NAME_SN",
    "Aare",
    "Aarq",
    "AccessSelection",
    "AcseServiceProviderDiagnostic",
    "AcseServiceUserDiagnostic",
    "ApplicationContextName",
    "AssociationResult",
    "AttributeWithSelection",
    "AuthenticationMechanism",
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
    "describe",
    "enum_or_int",
    "make_invoke_id_and_priority",
    "negotiate_conformance",
]

# invoke-id 1, confirmed service class, high priority (Green Book §9.5,
# Invoke-Id-And-Priority: bit 7 priority, bit 6 service class, bits 0-3 id).
DEFAULT_INVOKE_ID_AND_PRIORITY = 0xC1
# The vaa-name of an InitiateResponse: 0x0007 with LN referencing, 0xFA00 with SN.
VAA_NAME_LN = 0x0007
VAA_NAME_SN = 0xFA00

_E = TypeVar("_E", bound=IntEnum)


def enum_or_int(enum_type: type[_E], value: int) -> _E | int:
    """The member of `enum_type` with this value, or the plain int when unknown."""
    try:
        return enum_type(value)
    except ValueError:
        return value


class Conformance(IntFlag):
    """The xDLMS conformance block (Green Book §9.4.6.1, named bits 0..23)."""

    NONE = 0
    RESERVED_ZERO = 1 << 23
    GENERAL_PROTECTION = 1 << 22
    GENERAL_BLOCK_TRANSFER = 1 << 21
    READ = 1 << 20
    WRITE = 1 << 19
    UNCONFIRMED_WRITE = 1 << 18
    DELTA_VALUE_ENCODING = 1 << 17
    RESERVED_SEVEN = 1 << 16
    ATTRIBUTE_0_SUPPORTED_WITH_SET = 1 << 15
    PRIORITY_MGMT_SUPPORTED = 1 << 14
    ATTRIBUTE_0_SUPPORTED_WITH_GET = 1 << 13
    BLOCK_TRANSFER_WITH_GET_OR_READ = 1 << 12
    BLOCK_TRANSFER_WITH_SET_OR_WRITE = 1 << 11
    BLOCK_TRANSFER_WITH_ACTION = 1 << 10
    MULTIPLE_REFERENCES = 1 << 9
    INFORMATION_REPORT = 1 << 8
    DATA_NOTIFICATION = 1 << 7
    ACCESS = 1 << 6
    PARAMETERIZED_ACCESS = 1 << 5
    GET = 1 << 4
    SET = 1 << 3
    SELECTIVE_ACCESS = 1 << 2
    EVENT_NOTIFICATION = 1 << 1
    ACTION = 1 << 0


class ApplicationContextName(IntEnum):
    """Last arc of the DLMS application context names 2.16.756.5.8.1.x."""

    LOGICAL_NAME = 1
    SHORT_NAME = 2
    LOGICAL_NAME_WITH_CIPHERING = 3
    SHORT_NAME_WITH_CIPHERING = 4


class AuthenticationMechanism(IntEnum):
    """Last arc of the DLMS mechanism names 2.16.756.5.8.2.x (Green Book §9.2.2.2)."""

    LOWEST = 0
    LLS = 1
    HLS = 2  # manufacturer specific
    HLS_MD5 = 3
    HLS_SHA1 = 4
    HLS_GMAC = 5
    HLS_SHA256 = 6
    HLS_ECDSA = 7


class AssociationResult(IntEnum):
    """AARE result (ISO/IEC 8650-1 Associate-result)."""

    ACCEPTED = 0
    REJECTED_PERMANENT = 1
    REJECTED_TRANSIENT = 2


class DiagnosticSource(IntEnum):
    """Which choice of Associate-source-diagnostic the AARE carries."""

    ACSE_SERVICE_USER = 1
    ACSE_SERVICE_PROVIDER = 2


class AcseServiceUserDiagnostic(IntEnum):
    """Associate-source-diagnostic, acse-service-user choice."""

    NULL = 0
    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    CALLING_AP_TITLE_NOT_RECOGNIZED = 3
    CALLING_AP_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 4
    CALLING_AE_QUALIFIER_NOT_RECOGNIZED = 5
    CALLING_AE_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 6
    CALLED_AP_TITLE_NOT_RECOGNIZED = 7
    CALLED_AP_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 8
    CALLED_AE_QUALIFIER_NOT_RECOGNIZED = 9
    CALLED_AE_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 10
    AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED = 11
    AUTHENTICATION_MECHANISM_NAME_REQUIRED = 12
    AUTHENTICATION_FAILURE = 13
    AUTHENTICATION_REQUIRED = 14


class AcseServiceProviderDiagnostic(IntEnum):
    """Associate-source-diagnostic, acse-service-provider choice."""

    NULL = 0
    NO_REASON_GIVEN = 1
    NO_COMMON_ACSE_VERSION = 2


class ReleaseRequestReason(IntEnum):
    """RLRQ reason (ISO/IEC 8650-1 Release-request-reason)."""

    NORMAL = 0
    URGENT = 1
    USER_DEFINED = 30


class ReleaseResponseReason(IntEnum):
    """RLRE reason (ISO/IEC 8650-1 Release-response-reason)."""

    NORMAL = 0
    NOT_FINISHED = 1
    USER_DEFINED = 30


class DataAccessResult(IntEnum):
    """Data-Access-Result (Green Book §9.5)."""

    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_GET_ABORTED = 15
    NO_LONG_GET_IN_PROGRESS = 16
    LONG_SET_ABORTED = 17
    NO_LONG_SET_IN_PROGRESS = 18
    DATA_BLOCK_NUMBER_INVALID = 19
    OTHER_REASON = 250


class ConfirmedService(IntEnum):
    """The service a ConfirmedServiceError is about (Green Book §9.5)."""

    INITIATE_ERROR = 1
    GET_STATUS = 2
    GET_NAME_LIST = 3
    GET_VARIABLE_ATTRIBUTE = 4
    READ = 5
    WRITE = 6
    GET_DATA_SET_ATTRIBUTE = 7
    GET_TI_ATTRIBUTE = 8
    CHANGE_SCOPE = 9
    START = 10
    STOP = 11
    RESUME = 12
    MAKE_USABLE = 13
    INITIATE_LOAD = 14
    LOAD_SEGMENT = 15
    TERMINATE_LOAD = 16
    INITIATE_UP_LOAD = 17
    UP_LOAD_SEGMENT = 18
    TERMINATE_UP_LOAD = 19


class ServiceErrorType(IntEnum):
    """The ServiceError choice of a ConfirmedServiceError (Green Book §9.5)."""

    APPLICATION_REFERENCE = 0
    HARDWARE_RESOURCE = 1
    VDE_STATE_ERROR = 2
    SERVICE = 3
    DEFINITION = 4
    ACCESS = 5
    INITIATE = 6
    LOAD_DATA_SET = 7
    CHANGE_SCOPE = 8
    TASK = 9
    OTHER = 10


class InitiateError(IntEnum):
    """ServiceError `initiate` values: why an InitiateRequest was refused."""

    OTHER = 0
    DLMS_VERSION_TOO_LOW = 1
    INCOMPATIBLE_CONFORMANCE = 2
    PDU_SIZE_TOO_SHORT = 3
    REFUSED_BY_THE_VDE_HANDLER = 4


class ExceptionStateError(IntEnum):
    """ExceptionResponse state-error (Green Book §9.5)."""

    SERVICE_NOT_ALLOWED = 1
    SERVICE_UNKNOWN = 2


class ExceptionServiceError(IntEnum):
    """ExceptionResponse service-error choice (Green Book §9.5)."""

    OPERATION_NOT_POSSIBLE = 1
    SERVICE_NOT_SUPPORTED = 2
    OTHER_REASON = 3
    PDU_TOO_LONG = 4
    DECIPHERING_ERROR = 5
    INVOCATION_COUNTER_ERROR = 6


# --- xDLMS initiate (carried in the ACSE user-information) -------------------


@dataclass(frozen=True, slots=True)
class InitiateRequest:
    """xDLMS InitiateRequest (tag 0x01), the AARQ user-information.

    `response_allowed` True is sent as the DEFAULT (absent), False explicitly.
    """

    proposed_conformance: Conformance
    client_max_receive_pdu_size: int
    proposed_dlms_version: int = 6
    proposed_quality_of_service: int | None = None
    response_allowed: bool = True
    dedicated_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class InitiateResponse:
    """xDLMS InitiateResponse (tag 0x08), the AARE user-information."""

    negotiated_conformance: Conformance
    server_max_receive_pdu_size: int
    negotiated_dlms_version: int = 6
    negotiated_quality_of_service: int | None = None
    vaa_name: int = VAA_NAME_LN


@dataclass(frozen=True, slots=True)
class ConfirmedServiceError:
    """xDLMS ConfirmedServiceError (tag 0x0E): service, error choice and value."""

    service: ConfirmedService | int
    error_type: ServiceErrorType | int
    error_value: int


# --- ACSE ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Aarq:
    """A-ASSOCIATE request (AARQ, BER [APPLICATION 0], tag 0x60).

    Args:
        application_context: last arc of the context name (1 = LN, no ciphering).
        user_information: the InitiateRequest, or the raw bytes of a ciphered
            one (glo-/ded-initiate-request), or None when absent.
        calling_ap_title: the client system title (ciphered contexts).
        mechanism: the authentication mechanism; None means none was named.
        authentication_value: the LLS password or HLS challenge (CtoS).
        sender_acse_requirements: the raw bit string content (unused-bits
            count, then the bits): b"\x07\x80" asks for the authentication
            functional unit; None when absent.
        protocol_version: the raw protocol-version bit string content (b"\x07\x80"
            = version1), None when absent.
        calling_ae_qualifier: raw content of [7], e.g. a certificate.
        implementation_information: raw content of [29].
    """

    application_context: ApplicationContextName | int = ApplicationContextName.LOGICAL_NAME
    user_information: InitiateRequest | bytes | None = None
    calling_ap_title: bytes | None = None
    mechanism: AuthenticationMechanism | int | None = None
    authentication_value: bytes | None = None
    sender_acse_requirements: bytes | None = None
    protocol_version: bytes | None = None
    calling_ae_qualifier: bytes | None = None
    implementation_information: bytes | None = None


@dataclass(frozen=True, slots=True)
class Aare:
    """A-ASSOCIATE response (AARE, BER [APPLICATION 1], tag 0x61).

    Args:
        result: accepted, rejected-permanent or rejected-transient.
        diagnostic_source: acse-service-user or acse-service-provider.
        diagnostic: AcseServiceUserDiagnostic or AcseServiceProviderDiagnostic
            value, per `diagnostic_source`.
        user_information: InitiateResponse, ConfirmedServiceError, the raw
            bytes of a ciphered response, or None.
        responding_ap_title: the server system title (ciphered contexts).
        mechanism, authentication_value: the HLS mechanism and StoC challenge.
        responder_acse_requirements: raw bit string content, None when absent.
    """

    result: AssociationResult | int
    diagnostic: int
    diagnostic_source: DiagnosticSource | int = DiagnosticSource.ACSE_SERVICE_USER
    application_context: ApplicationContextName | int = ApplicationContextName.LOGICAL_NAME
    user_information: InitiateResponse | ConfirmedServiceError | bytes | None = None
    responding_ap_title: bytes | None = None
    mechanism: AuthenticationMechanism | int | None = None
    authentication_value: bytes | None = None
    responder_acse_requirements: bytes | None = None
    protocol_version: bytes | None = None
    responding_ae_qualifier: bytes | None = None
    implementation_information: bytes | None = None


@dataclass(frozen=True, slots=True)
class Rlrq:
    """A-RELEASE request (RLRQ, tag 0x62); reason None when absent."""

    reason: ReleaseRequestReason | int | None = ReleaseRequestReason.NORMAL
    user_information: InitiateRequest | bytes | None = None


@dataclass(frozen=True, slots=True)
class Rlre:
    """A-RELEASE response (RLRE, tag 0x63); reason None when absent."""

    reason: ReleaseResponseReason | int | None = ReleaseResponseReason.NORMAL
    user_information: InitiateResponse | ConfirmedServiceError | bytes | None = None


# --- GET service (logical name referencing) -----------------------------------


@dataclass(frozen=True, slots=True)
class CosemAttributeDescriptor:
    """Cosem-Attribute-Descriptor: interface class, logical name (6 octets), attribute."""

    class_id: int
    instance_id: bytes
    attribute_id: int


@dataclass(frozen=True, slots=True)
class AccessSelection:
    """Selective-Access-Descriptor: the selector and its parameters as raw Data bytes."""

    selector: int
    parameters: bytes


@dataclass(frozen=True, slots=True)
class AttributeWithSelection:
    """One entry of a GET-Request-With-List."""

    descriptor: CosemAttributeDescriptor
    access_selection: AccessSelection | None = None


@dataclass(frozen=True, slots=True)
class GetRequestNormal:
    """GET-Request-Normal (C0 01)."""

    descriptor: CosemAttributeDescriptor
    access_selection: AccessSelection | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY


@dataclass(frozen=True, slots=True)
class GetRequestNext:
    """GET-Request-Next (C0 02): asks for the block after `block_number`."""

    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY


@dataclass(frozen=True, slots=True)
class GetRequestWithList:
    """GET-Request-With-List (C0 03)."""

    attributes: tuple[AttributeWithSelection, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY


@dataclass(frozen=True, slots=True)
class GetResponseNormal:
    """GET-Response-Normal (C4 01).

    `result` is the raw Data bytes (bytes) or a data-access-result (int/enum).
    """

    result: bytes | DataAccessResult | int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY


@dataclass(frozen=True, slots=True)
class GetResponseWithDatablock:
    """GET-Response-With-Datablock (C4 02).

    `result` is the block's raw-data (bytes: a slice of the Data encoding) or a
    data-access-result (int/enum).
    """

    last_block: bool
    block_number: int
    result: bytes | DataAccessResult | int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY


@dataclass(frozen=True, slots=True)
class GetResponseWithList:
    """GET-Response-With-List (C4 03): one Data (bytes) or error (int) per attribute."""

    results: tuple[bytes | DataAccessResult | int, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY


# --- other APDUs ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """ExceptionResponse (D8); `invocation_counter` only with invocation-counter-error."""

    state_error: ExceptionStateError | int
    service_error: ExceptionServiceError | int
    invocation_counter: int | None = None


@dataclass(frozen=True, slots=True)
class DataNotification:
    """Data-Notification (0F): the body is the raw Data bytes."""

    long_invoke_id_and_priority: int
    date_time: bytes | None
    body: bytes


# --- selective access by range (Blue Book §4.3.6, profile generic) --------------


@dataclass(frozen=True, slots=True)
class CaptureObjectDefinition:
    """capture_object_definition: class id, logical name, attribute and data index."""

    class_id: int
    logical_name: bytes
    attribute_index: int
    data_index: int = 0


@dataclass(frozen=True, slots=True)
class RangeDescriptor:
    """range_descriptor (access selector 1): from/to values as raw Data bytes."""

    restricting_object: CaptureObjectDefinition
    from_value: bytes
    to_value: bytes
    selected_values: tuple[CaptureObjectDefinition, ...] = ()


# --- block transfer reassembly outcomes ---------------------------------------


@dataclass(frozen=True, slots=True)
class BlockTransferComplete:
    """All blocks arrived: `data` is the complete Data encoding."""

    data: bytes
    blocks: int


@dataclass(frozen=True, slots=True)
class BlockTransferFailed:
    """The server answered a block with a data-access-result instead of data."""

    block_number: int
    result: DataAccessResult | int


# --- helpers on these values, shared by both twins -----------------------------


def make_invoke_id_and_priority(
    invoke_id: int, *, confirmed: bool = True, high_priority: bool = True
) -> int:
    """The Invoke-Id-And-Priority octet (Green Book §9.5).

    Args:
        invoke_id: 0..15.
        confirmed: service class bit (bit 6).
        high_priority: priority bit (bit 7).

    Returns:
        The octet as an int, e.g. 0xC1 for id 1, confirmed, high priority.

    Raises:
        ValueError: invoke_id outside 0..15.
    """
    if not 0 <= invoke_id <= 15:
        raise ValueError(f"invoke id {invoke_id} is outside 0..15")
    return (0x80 if high_priority else 0) | (0x40 if confirmed else 0) | invoke_id


def negotiate_conformance(proposed: int, supported: int) -> Conformance:
    """The negotiated conformance block: what the client proposed and the server supports.

    Args:
        proposed: the client's proposed-conformance (AARQ InitiateRequest).
        supported: the server's capabilities.

    Returns:
        Their intersection, as the server puts it in its InitiateResponse.
    """
    return Conformance(proposed & supported & 0xFFFFFF)


def describe(value: object) -> object:
    """A JSON-serialisable view of a decoded APDU (for the CLI and logs).

    Dataclasses become dicts with a "type" key, bytes become hex strings,
    enum members their names, the conformance block the list of its bit names.

    Args:
        value: anything `parse_apdu` returns, or a part of it.

    Returns:
        Nested dicts, lists, str, int, bool and None.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, Conformance):
        return [flag.name for flag in Conformance if flag and flag in value]
    if isinstance(value, IntEnum):
        return value.name
    if isinstance(value, (tuple, list)):
        return [describe(item) for item in value]
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is not None:
        described: dict[str, object] = {"type": type(value).__name__}
        for name in fields:
            described[name] = describe(getattr(value, name))
        return described
    return value
