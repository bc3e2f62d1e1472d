"""Cross-check of the APDU codec with gurux-dlms, the reference DLMS client.

gurux's GXDLMSClient (LN referencing, the IEC 62056-47 wrapper so that no
HDLC framing is involved, low-level security) produces AARQ, GET and RLRQ
APDUs from values hypothesis draws: our parser must read back what gurux was
told. The AARE, GET responses and RLRE we build are fed to the same client,
which must accept them with the values we meant. gurux is GPL-2: only its
public client API is used here.
"""

from __future__ import annotations

import datetime as dt
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastcodec._apdu_types import (
    Aare,
    Aarq,
    AcseServiceUserDiagnostic,
    AssociationResult,
    AuthenticationMechanism,
    Conformance,
    CosemAttributeDescriptor,
    GetRequestNext,
    GetRequestNormal,
    GetResponseNormal,
    GetResponseWithDatablock,
    InitiateRequest,
    InitiateResponse,
    Rlre,
    Rlrq,
)

gurux_dlms = pytest.importorskip("gurux_dlms")
from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData  # noqa: E402
from gurux_dlms.enums import Authentication, InterfaceType  # noqa: E402
from gurux_dlms.objects import (  # noqa: E402
    GXDLMSCaptureObject,
    GXDLMSClock,
    GXDLMSProfileGeneric,
    GXDLMSRegister,
)

pytestmark = pytest.mark.integration

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CLIENT_SAP = 16
SERVER_SAP = 1
WRAPPER_VERSION = 1


def _unwrap(frame: Any) -> bytes:
    """The APDU of one IEC 62056-47 wrapper frame: version, source, destination
    and length (big-endian u16 each), then the APDU."""
    raw = bytes(frame)
    version, source, destination, length = (
        int.from_bytes(raw[index : index + 2], "big") for index in range(0, 8, 2)
    )
    assert (version, source, destination) == (WRAPPER_VERSION, CLIENT_SAP, SERVER_SAP)
    assert length == len(raw) - 8
    return raw[8:]


def _wrap(apdu_bytes: bytes) -> bytes:
    header = (WRAPPER_VERSION, SERVER_SAP, CLIENT_SAP, len(apdu_bytes))
    return b"".join(value.to_bytes(2, "big") for value in header) + apdu_bytes


def _reverse24(value: int) -> int:
    # gurux numbers conformance bits from the least significant end of its
    # int: bit n of the BER bit string is its 1 << n, ours 1 << (23 - n).
    return int(f"{value:024b}"[::-1], 2)


def _client(password: str) -> GXDLMSClient:
    return GXDLMSClient(
        True, CLIENT_SAP, SERVER_SAP, Authentication.LOW, password, InterfaceType.WRAPPER
    )


def _feed(client: GXDLMSClient, apdu_bytes: bytes) -> GXReplyData:
    reply = GXReplyData()
    assert client.getData(GXByteBuffer(_wrap(apdu_bytes)), reply)
    return reply


def _associate(apdu: ModuleType, client: GXDLMSClient, conformance: int, pdu_size: int) -> Aarq:
    (frame,) = client.aarqRequest()
    aarq = apdu.parse_apdu(_unwrap(frame))
    aare = Aare(
        AssociationResult.ACCEPTED,
        AcseServiceUserDiagnostic.NULL,
        user_information=InitiateResponse(Conformance(conformance), pdu_size),
    )
    client.parseAareResponse(_feed(client, apdu.encode_apdu(aare)).data)
    return aarq  # type: ignore[no-any-return]


password_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16
)


@SETTINGS
@given(
    password=password_text,
    proposed_pdu_size=st.integers(64, 0xFFFF),
    conformance=st.integers(0, 0xFFFFFF),
    pdu_size=st.integers(64, 0xFFFF),
)
def test_gurux_aarq_parsed_and_our_aare_accepted(
    apdu: ModuleType, password: str, proposed_pdu_size: int, conformance: int, pdu_size: int
) -> None:
    client = _client(password)
    client.maxReceivePDUSize = proposed_pdu_size
    proposed_conformance = _reverse24(int(client.proposedConformance))
    aarq = _associate(apdu, client, conformance, pdu_size)
    assert aarq.mechanism == AuthenticationMechanism.LLS
    assert aarq.sender_acse_requirements == b"\x07\x80"
    assert aarq.authentication_value == password.encode("ascii")
    assert aarq.user_information == InitiateRequest(proposed_conformance, proposed_pdu_size)
    # Our encoder gives gurux's bytes back.
    again = _client(password)
    again.maxReceivePDUSize = proposed_pdu_size
    assert apdu.encode_apdu(aarq) == _unwrap(again.aarqRequest()[0])
    # gurux took our AARE: it now holds the conformance and PDU size we sent.
    assert _reverse24(int(client.negotiatedConformance)) == conformance
    assert client.maxReceivePDUSize == pdu_size


def test_gurux_refuses_our_rejecting_aare(apdu: ModuleType) -> None:
    client = _client("wrong")
    client.aarqRequest()
    aare = Aare(
        AssociationResult.REJECTED_PERMANENT,
        AcseServiceUserDiagnostic.AUTHENTICATION_FAILURE,
        user_information=InitiateResponse(Conformance.GET, 512),
    )
    reply = _feed(client, apdu.encode_apdu(aare))
    with pytest.raises(Exception, match=r"(?i)authentication"):
        client.parseAareResponse(reply.data)


obis_codes = st.tuples(*[st.integers(0, 255)] * 6)


@SETTINGS
@given(obis=obis_codes, attribute=st.integers(1, 20), value=st.integers(0, 0xFFFFFFFF))
def test_gurux_get_parsed_and_our_response_accepted(
    apdu: ModuleType, obis: tuple[int, ...], attribute: int, value: int
) -> None:
    client = _client("12345678")
    _associate(apdu, client, 0x001E1D, 1024)
    register = GXDLMSRegister(".".join(str(part) for part in obis))
    (frame,) = client.read(register, attribute)
    request = apdu.parse_apdu(_unwrap(frame))
    assert request == GetRequestNormal(
        CosemAttributeDescriptor(3, bytes(obis), attribute),
        invoke_id_and_priority=request.invoke_id_and_priority,
    )
    response = GetResponseNormal(b"\x06" + value.to_bytes(4, "big"), request.invoke_id_and_priority)
    reply = _feed(client, apdu.encode_apdu(response))
    assert reply.value == value
    client.updateValue(register, 2, reply.value)
    assert register.value == value


moments = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31))


@SETTINGS
@given(
    start=moments, span=st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=90))
)
def test_gurux_profile_range_read_parsed(apdu: ModuleType, start: dt.datetime, span: Any) -> None:
    start = start.replace(microsecond=0)
    end = start + span
    client = _client("12345678")
    _associate(apdu, client, 0x001E1D, 1024)
    profile = GXDLMSProfileGeneric("1.0.99.1.0.255")
    profile.captureObjects.append((GXDLMSClock("0.0.1.0.0.255"), GXDLMSCaptureObject(2, 0)))
    (frame,) = client.readRowsByRange(profile, start, end)
    request = apdu.parse_apdu(_unwrap(frame))
    assert request.descriptor == CosemAttributeDescriptor(7, bytes((1, 0, 99, 1, 0, 255)), 2)
    assert request.access_selection.selector == 1
    descriptor = apdu.parse_range_descriptor(request.access_selection.parameters)
    assert descriptor.restricting_object == apdu.DEFAULT_CLOCK_CAPTURE_OBJECT
    assert descriptor.selected_values == ()
    for moment, value in ((start, descriptor.from_value), (end, descriptor.to_value)):
        assert value[:2] == b"\x09\x0c"  # octet-string date-time
        fields = value[2:]
        assert int.from_bytes(fields[:2], "big") == moment.year
        assert tuple(fields[2:4]) == (moment.month, moment.day)
        assert tuple(fields[5:8]) == (moment.hour, moment.minute, moment.second)


@SETTINGS
@given(
    values=st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=60),
    block_size=st.integers(8, 200),
)
def test_our_datablocks_reassembled_by_gurux(
    apdu: ModuleType, values: list[int], block_size: int
) -> None:
    client = _client("12345678")
    _associate(apdu, client, 0x001E1D, 1024)
    register = GXDLMSRegister("1.0.1.8.0.255")
    client.read(register, 2)
    # An array of double-long-unsigned, sent in blocks (Green Book §9.3.5.2).
    data = (
        b"\x01" + bytes((len(values),)) + b"".join(b"\x06" + v.to_bytes(4, "big") for v in values)
    )
    chunks = [data[index : index + block_size] for index in range(0, len(data), block_size)]
    reply = GXReplyData()
    for number, chunk in enumerate(chunks, start=1):
        block = GetResponseWithDatablock(number == len(chunks), number, chunk)
        assert client.getData(GXByteBuffer(_wrap(apdu.encode_apdu(block))), reply)
        if number < len(chunks):
            assert reply.isMoreData()
            frame = client.receiverReady(reply)
            assert apdu.parse_apdu(_unwrap(frame)) == GetRequestNext(number)
    assert list(reply.value) == values


@SETTINGS
@given(password=password_text)
def test_gurux_rlrq_parsed_and_our_rlre_accepted(apdu: ModuleType, password: str) -> None:
    client = _client(password)
    _associate(apdu, client, 0x001E1D, 1024)
    (frame,) = client.releaseRequest()
    assert apdu.parse_apdu(_unwrap(frame)) == Rlrq()
    reply = _feed(client, apdu.encode_apdu(Rlre()))
    assert reply.command == 0x63
