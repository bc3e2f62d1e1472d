"""The sans-I/O COSEM server (simulators.dlms) and HDLC link, without any I/O."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastcodec import apdu, axdr, hdlc
from fastcodec.apdu import (
    Aare,
    Aarq,
    AcseServiceUserDiagnostic,
    AssociationResult,
    AttributeWithSelection,
    AuthenticationMechanism,
    BlockReassembler,
    BlockTransferComplete,
    Conformance,
    CosemAttributeDescriptor,
    DataAccessResult,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    InitiateRequest,
    Rlre,
    Rlrq,
)
from fastcodec.axdr import Tag, Typed
from fastcodec.hdlc import FrameKind
from simulators.clock import SimClock
from simulators.dlms import (
    LN_CLOCK,
    LN_LOAD_PROFILE,
    SUPPORTED_CONFORMANCE,
    CosemSession,
    DlmsMeter,
)
from simulators.dlms_links import LLC_REQUEST, LLC_RESPONSE, HdlcServer
from simulators.physics import MeterPhysics

START_S = 1_767_225_600.0
NOW_S = START_S + 2 * 86_400 + 6 * 3600
PROPOSED = Conformance(0x001E1D)  # gurux's default proposal
IMPORT_LN = bytes((1, 0, 1, 8, 0, 255))


def make_meter(password: str = "00000000") -> DlmsMeter:
    physics = MeterPhysics(seed=5, epoch_s=START_S)
    return DlmsMeter("00000005", physics, SimClock(start=NOW_S, speed=1e-9), password=password)


def aarq(
    password: str | None = "00000000", conformance: int = PROPOSED, pdu_size: int = 1024
) -> bytes:
    return apdu.encode_apdu(
        Aarq(
            user_information=InitiateRequest(Conformance(conformance), pdu_size),
            mechanism=AuthenticationMechanism.LLS if password is not None else None,
            authentication_value=password.encode() if password is not None else None,
            sender_acse_requirements=b"\x07\x80" if password is not None else None,
        )
    )


def answer(session: CosemSession, request: bytes | object) -> object:
    data = request if isinstance(request, bytes) else apdu.encode_apdu(request)  # type: ignore[arg-type]
    response = session.receive_apdu(data)
    assert response is not None
    return apdu.parse_apdu(response)


def associated(client: int = 1, pdu_size: int = 1024) -> CosemSession:
    session = CosemSession(make_meter(), client)
    aare = answer(session, aarq("00000000" if client == 1 else None, pdu_size=pdu_size))
    assert isinstance(aare, Aare) and aare.result == AssociationResult.ACCEPTED
    return session


GET_IMPORT = GetRequestNormal(CosemAttributeDescriptor(3, IMPORT_LN, 2))
REQUESTS = {
    "get": GET_IMPORT,
    "get-next": GetRequestNext(1),
    "get-with-list": GetRequestWithList((AttributeWithSelection(GET_IMPORT.descriptor),)),
    "rlrq": Rlrq(),
    "aarq": aarq(),
    "malformed": b"\xc0\x01",
    "set": bytes.fromhex("c101c100030100010800ff02000600000001"),
    "unknown-tag": b"\x77\x00",
}
# (state, request) → the type of the answer.
TABLE = {
    ("idle", "get"): ExceptionResponse,
    ("idle", "get-next"): ExceptionResponse,
    ("idle", "get-with-list"): ExceptionResponse,
    ("idle", "rlrq"): Rlre,
    ("idle", "aarq"): Aare,
    ("idle", "malformed"): ExceptionResponse,
    ("idle", "set"): ExceptionResponse,
    ("idle", "unknown-tag"): ExceptionResponse,
    ("associated", "get"): GetResponseNormal,
    ("associated", "get-next"): GetResponseWithDatablock,
    ("associated", "get-with-list"): GetResponseWithList,
    ("associated", "rlrq"): Rlre,
    ("associated", "aarq"): Aare,
    ("associated", "malformed"): ExceptionResponse,
    ("associated", "set"): ExceptionResponse,
    ("associated", "unknown-tag"): ExceptionResponse,
}


@pytest.mark.parametrize(("state", "request_name"), sorted(TABLE))
def test_state_by_request_table(state: str, request_name: str) -> None:
    session = associated() if state == "associated" else CosemSession(make_meter(), 1)
    response = answer(session, REQUESTS[request_name])
    assert type(response) is TABLE[(state, request_name)]
    if request_name == "aarq" and state == "associated":
        assert isinstance(response, Aare)
        assert response.result == AssociationResult.REJECTED_PERMANENT
        assert session.associated  # the first association stays
    if request_name == "get-next" and state == "associated":
        assert isinstance(response, GetResponseWithDatablock)
        assert response.result == DataAccessResult.NO_LONG_GET_IN_PROGRESS


def test_wrong_password_is_rejected_with_authentication_failure() -> None:
    session = CosemSession(make_meter(), 1)
    aare = answer(session, aarq("00000001"))
    assert isinstance(aare, Aare)
    assert aare.result == AssociationResult.REJECTED_PERMANENT
    assert aare.diagnostic == AcseServiceUserDiagnostic.AUTHENTICATION_FAILURE == 13
    assert not session.associated
    assert isinstance(answer(session, GET_IMPORT), ExceptionResponse)


@settings(max_examples=30, deadline=None)
@given(password=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1))
def test_any_password_of_the_meter_is_accepted(password: str) -> None:
    session = CosemSession(make_meter(password), 1)
    aare = answer(session, aarq(password))
    assert isinstance(aare, Aare) and aare.result == AssociationResult.ACCEPTED


def test_the_management_client_must_authenticate() -> None:
    aare = answer(CosemSession(make_meter(), 1), aarq(None))
    assert isinstance(aare, Aare)
    assert aare.diagnostic == AcseServiceUserDiagnostic.AUTHENTICATION_REQUIRED


def test_conformance_is_the_intersection_and_the_pdu_size_ours() -> None:
    session = CosemSession(make_meter(), 1)
    aare = answer(session, aarq(conformance=0xFFFFFF))
    assert isinstance(aare, Aare)
    initiate = aare.user_information
    assert isinstance(initiate, apdu.InitiateResponse)
    assert initiate.negotiated_conformance == SUPPORTED_CONFORMANCE
    assert initiate.server_max_receive_pdu_size == 1024 and initiate.vaa_name == 0x0007
    proposal = Conformance.GET | Conformance.SET
    aare = answer(CosemSession(make_meter(), 1), aarq(conformance=proposal))
    assert aare.user_information.negotiated_conformance == Conformance.GET  # type: ignore[union-attr]


def test_release_twice_then_get_is_refused() -> None:
    session = associated()
    assert isinstance(answer(session, Rlrq()), Rlre)
    assert isinstance(answer(session, Rlrq()), Rlre)
    assert isinstance(answer(session, GET_IMPORT), ExceptionResponse)


def test_objects_answer_with_their_types() -> None:
    session = associated()
    meter = session.meter
    clock = answer(session, GetRequestNormal(CosemAttributeDescriptor(8, LN_CLOCK, 2)))
    assert isinstance(clock, GetResponseNormal) and isinstance(clock.result, bytes)
    moment = axdr.decode_date_time(axdr.decode(clock.result))  # type: ignore[arg-type]
    assert isinstance(moment, dt.datetime) and moment.timestamp() == pytest.approx(NOW_S, abs=0.01)
    value = answer(session, GET_IMPORT)
    truth = meter.presented_values(NOW_S)["1-0:1.8.0"]
    assert axdr.decode_typed(value.result) == Typed(Tag.DOUBLE_LONG_UNSIGNED, round(truth * 1000))  # type: ignore[union-attr]
    scaler_unit = answer(session, GetRequestNormal(CosemAttributeDescriptor(3, IMPORT_LN, 3)))
    assert axdr.decode(scaler_unit.result) == (0, 30)  # type: ignore[union-attr]
    voltage = bytes((1, 0, 32, 7, 0, 255))
    scaler_unit = answer(session, GetRequestNormal(CosemAttributeDescriptor(3, voltage, 3)))
    assert axdr.decode(scaler_unit.result) == (-1, 35)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("descriptor", "result"),
    [
        (CosemAttributeDescriptor(3, bytes((1, 0, 99, 9, 9, 255)), 2), 4),  # object-undefined
        (CosemAttributeDescriptor(1, IMPORT_LN, 2), 9),  # object-class-inconsistent
        (CosemAttributeDescriptor(3, IMPORT_LN, 9), 4),
    ],
)
def test_bad_references_get_a_data_access_result(
    descriptor: CosemAttributeDescriptor, result: int
) -> None:
    response = answer(associated(), GetRequestNormal(descriptor))
    assert isinstance(response, GetResponseNormal) and response.result == result


def test_the_public_client_is_denied_the_registers() -> None:
    response = answer(associated(client=16), GET_IMPORT)
    assert isinstance(response, GetResponseNormal)
    assert response.result == DataAccessResult.READ_WRITE_DENIED


def test_block_transfer_with_a_small_pdu_size() -> None:
    session = associated(pdu_size=64)
    request = GetRequestNormal(CosemAttributeDescriptor(7, LN_LOAD_PROFILE, 2))
    whole = session.meter.get_attribute(7, LN_LOAD_PROFILE, 2)
    assert isinstance(whole, bytes) and len(whole) > 5000
    reassembler = BlockReassembler()
    raw = session.receive_apdu(apdu.encode_apdu(request))
    while True:
        assert raw is not None and len(raw) <= 64
        outcome = reassembler.receive(raw)
        if isinstance(outcome, BlockTransferComplete):
            break
        assert isinstance(outcome, GetRequestNext)
        raw = session.receive_apdu(apdu.encode_apdu(outcome))
    assert outcome.data == whole
    rows = axdr.decode(outcome.data)
    assert isinstance(rows, list) and len(rows) == 2 * 96 + 24 + 1


def test_a_wrong_block_number_aborts_the_transfer() -> None:
    session = associated(pdu_size=64)
    first = answer(session, GetRequestNormal(CosemAttributeDescriptor(7, LN_LOAD_PROFILE, 2)))
    assert isinstance(first, GetResponseWithDatablock) and first.block_number == 1
    wrong = answer(session, GetRequestNext(5))
    assert isinstance(wrong, GetResponseWithDatablock)
    assert wrong.result == DataAccessResult.DATA_BLOCK_NUMBER_INVALID


def test_selective_access_by_range_and_by_entry() -> None:
    session = associated()
    start = dt.datetime.fromtimestamp(START_S + 86_400, dt.UTC)
    selection = apdu.profile_range(start, start + dt.timedelta(hours=2))
    response = answer(
        session, GetRequestNormal(CosemAttributeDescriptor(7, LN_LOAD_PROFILE, 2), selection)
    )
    rows = axdr.decode(response.result)  # type: ignore[union-attr]
    assert isinstance(rows, list) and len(rows) == 9
    expected = session.meter.profile_rows(start.timestamp(), start.timestamp() + 7200)
    assert [row[2] for row in rows] == [row.import_wh for row in expected]
    by_entry = apdu.AccessSelection(
        2, axdr.encode((Typed(Tag.DOUBLE_LONG_UNSIGNED, 2), Typed(Tag.DOUBLE_LONG_UNSIGNED, 4),
                        Typed(Tag.LONG_UNSIGNED, 3), Typed(Tag.LONG_UNSIGNED, 0)))
    )  # fmt: skip
    response = answer(
        session, GetRequestNormal(CosemAttributeDescriptor(7, LN_LOAD_PROFILE, 2), by_entry)
    )
    rows = axdr.decode(response.result)  # type: ignore[union-attr]
    all_rows = session.meter.profile_rows(0, NOW_S)
    assert rows == [(r.import_wh, r.export_wh) for r in all_rows[1:4]]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), associate=st.booleans())
def test_any_bytes_get_an_answer_never_an_exception(data: bytes, associate: bool) -> None:
    session = associated() if associate else CosemSession(make_meter(), 1)
    response = session.receive_apdu(data)
    if response is not None:
        apdu.parse_apdu(response)


@settings(max_examples=200, deadline=None)
@given(
    class_id=st.integers(0, 0xFFFF),
    name=st.binary(min_size=6, max_size=6),
    attribute=st.integers(-128, 127),
    selector=st.none() | st.tuples(st.integers(0, 255), st.binary(max_size=60)),
)
def test_any_get_gets_a_get_response(
    class_id: int, name: bytes, attribute: int, selector: tuple[int, bytes] | None
) -> None:
    selection = apdu.AccessSelection(*selector) if selector else None
    request = GetRequestNormal(
        CosemAttributeDescriptor(class_id, name, attribute & 0xFF), selection
    )
    try:
        encoded = apdu.encode_apdu(request)
    except Exception:
        return  # not a request a client could send
    response = answer(associated(), encoded)
    assert isinstance(response, GetResponseNormal | ExceptionResponse)


# --- the HDLC link, sans-I/O --------------------------------------------------------------


def test_hdlc_link_connects_segments_and_disconnects() -> None:
    meter = make_meter()
    server = HdlcServer([meter], limits=hdlc.HdlcParameters(32, 32))
    address = hdlc.server_address(1, meter.physical_address, 2)

    def send(kind: FrameKind, information: bytes = b"", **fields: int) -> list[hdlc.HdlcFrame]:
        frame = hdlc.build_frame(
            kind, address, 1, information, destination_address_length=2, **fields
        )  # type: ignore[arg-type]
        return [hdlc.parse_frame(raw) for _, raw in server.receive_data(frame, 0.0)]

    (dm,) = send(FrameKind.I, LLC_REQUEST + aarq())
    assert dm.kind is FrameKind.DM
    (ua,) = send(FrameKind.SNRM)
    assert ua.kind is FrameKind.UA
    assert hdlc.parse_parameters(ua.information).max_info_transmit == 32
    # The AARQ in two segments: the first is acknowledged with RR.
    request = LLC_REQUEST + aarq()
    (rr,) = send(FrameKind.I, request[:32], segmented=True)
    assert (rr.kind, rr.receive_sequence) == (FrameKind.RR, 1)
    (first,) = send(FrameKind.I, request[32:], send_sequence=1, receive_sequence=0)
    assert first.kind is FrameKind.I and first.segmented and first.send_sequence == 0
    reassembler = hdlc.Reassembler()
    reassembler.add(first)
    received = hdlc.NEED_DATA
    sequence = 1
    while received is hdlc.NEED_DATA:
        (segment,) = send(FrameKind.RR, receive_sequence=sequence)
        assert segment.send_sequence == sequence
        sequence += 1
        received = reassembler.add(segment)
    assert isinstance(received, bytes) and received.startswith(LLC_RESPONSE)
    aare = apdu.parse_apdu(received[3:])
    assert isinstance(aare, Aare) and aare.result == AssociationResult.ACCEPTED
    (ua,) = send(FrameKind.DISC)
    assert ua.kind is FrameKind.UA
    (dm,) = send(FrameKind.DISC)
    assert dm.kind is FrameKind.DM


def test_hdlc_frames_for_another_address_are_ignored() -> None:
    meter = make_meter()
    server = HdlcServer([meter])
    other = hdlc.build_frame(
        FrameKind.SNRM, hdlc.server_address(1, 99, 2), 16, destination_address_length=2
    )
    assert server.receive_data(other, 0.0) == []
    assert server.receive_data(b"\x7e\x00\xff garbage", 0.0) == []
