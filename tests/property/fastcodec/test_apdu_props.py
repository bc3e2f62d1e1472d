"""Property tests: the APDU twins agree, values round-trip, hostile bytes give CodecError only."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from fastcodec._apdu_types import (
    Aare,
    Aarq,
    AccessSelection,
    ApplicationContextName,
    AttributeWithSelection,
    AuthenticationMechanism,
    BlockTransferComplete,
    ConfirmedServiceError,
    Conformance,
    CosemAttributeDescriptor,
    DataNotification,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    InitiateRequest,
    InitiateResponse,
    Rlre,
    Rlrq,
)
from fastcodec.exceptions import CodecError
from tests.conftest import VECTORS, load_twin

SETTINGS = settings(max_examples=300, deadline=None)
FEW = settings(max_examples=100, deadline=None)


def _real_apdus() -> list[bytes]:
    apdus = []
    for name in (
        "dlms-cosem__tests_test_asce_test_aarq.json",
        "dlms-cosem__tests_test_asce_test_aare.json",
        "dlms-cosem__tests_test_xdlms_test_get.json",
        "dlms-cosem__tests_test_xdlms_test_data_notification.json",
    ):
        data = json.loads((VECTORS / "dlms" / name).read_text())
        apdus.extend(bytes.fromhex(vector["hex"]) for vector in data["vectors"])
    return apdus


REAL_APDUS = _real_apdus()
TAGS = [0x01, 0x08, 0x0E, 0x0F, 0x60, 0x61, 0x62, 0x63, 0xC0, 0xC4, 0xD8]


def _outcome(module: ModuleType, raw: bytes) -> object:
    try:
        return ("value", module.parse_apdu(raw))
    except CodecError as error:
        return ("error", type(error), str(error))


def _agree(raw: bytes) -> None:
    pure, compiled = load_twin("apdu", "python"), load_twin("apdu", "cython")
    assert _outcome(compiled, raw) == _outcome(pure, raw)


# Random bytes behind a known tag reach the decoders' insides.
tagged_bytes = st.builds(
    lambda tag, sub, rest: bytes((tag, sub)) + rest,
    st.sampled_from(TAGS),
    st.integers(0, 255),
    st.binary(max_size=80),
)


@st.composite
def mutated_real_apdu(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(REAL_APDUS))[:200])
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        position = draw(st.integers(0, max(len(raw) - 1, 0)))
        if action == "flip" and raw:
            raw[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del raw[position:]
        else:
            raw[position:position] = draw(st.binary(min_size=1, max_size=4))
    return bytes(raw)


@SETTINGS
@given(st.one_of(st.binary(max_size=64), tagged_bytes))
def test_twins_agree_on_random_bytes(raw: bytes) -> None:
    _agree(raw)


@SETTINGS
@given(mutated_real_apdu())
def test_twins_agree_on_mutated_real_apdus(raw: bytes) -> None:
    _agree(raw)


@SETTINGS
@given(st.one_of(st.binary(max_size=64), tagged_bytes, mutated_real_apdu()))
def test_hostile_bytes_give_a_value_or_codec_error(apdu: ModuleType, raw: bytes) -> None:
    # Anything but a CodecError fails the test.
    with contextlib.suppress(CodecError):
        apdu.parse_apdu(raw)


# --- values -------------------------------------------------------------------------

u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
short_octets = st.binary(min_size=1, max_size=40)
conformance = st.integers(0, 0xFFFFFF).map(Conformance)
descriptor = st.builds(
    CosemAttributeDescriptor, u16, st.binary(min_size=6, max_size=6), st.integers(-128, 127)
)
# Data that fastcodec.axdr can delimit: unsigned, long-unsigned, octet-string.
simple_data = st.one_of(
    u8.map(lambda value: bytes((0x11, value))),
    u16.map(lambda value: b"\x12" + value.to_bytes(2, "big")),
    st.binary(max_size=20).map(lambda value: bytes((0x09, len(value))) + value),
)
selection = st.one_of(st.none(), st.builds(AccessSelection, u8, simple_data))
get_result = st.one_of(simple_data, u8)
initiate_request = st.builds(
    InitiateRequest,
    conformance,
    u16,
    u8,
    st.one_of(st.none(), st.integers(-128, 127)),
    st.booleans(),
    st.one_of(st.none(), st.binary(max_size=32)),
)
initiate_response = st.builds(
    InitiateResponse, conformance, u16, u8, st.one_of(st.none(), st.integers(-128, 127)), u16
)
service_error = st.builds(ConfirmedServiceError, u8, u8, u8)
context = st.sampled_from(list(ApplicationContextName))
mechanism = st.one_of(st.none(), st.sampled_from(list(AuthenticationMechanism)))
optional_octets = st.one_of(st.none(), short_octets)
ciphered_user_information = short_octets.filter(lambda raw: raw[0] not in (0x01, 0x08, 0x0E))

apdu_values = st.one_of(
    st.builds(GetRequestNormal, descriptor, selection, u8),
    st.builds(GetRequestNext, u32, u8),
    st.builds(
        GetRequestWithList,
        st.lists(st.builds(AttributeWithSelection, descriptor, selection), max_size=5).map(tuple),
        u8,
    ),
    st.builds(GetResponseNormal, get_result, u8),
    st.builds(
        GetResponseWithDatablock, st.booleans(), u32, st.one_of(st.binary(max_size=300), u8), u8
    ),
    st.builds(GetResponseWithList, st.lists(get_result, max_size=6).map(tuple), u8),
    st.builds(
        Aarq,
        context,
        st.one_of(st.none(), initiate_request, ciphered_user_information),
        optional_octets,
        mechanism,
        optional_octets,
        st.one_of(st.none(), st.just(b"\x07\x80")),
        st.one_of(st.none(), st.just(b"\x07\x80")),
        optional_octets,
        optional_octets,
    ),
    st.builds(
        Aare,
        st.integers(0, 2),
        st.integers(0, 14),
        st.integers(1, 2),
        context,
        st.one_of(st.none(), initiate_response, service_error, ciphered_user_information),
        optional_octets,
        mechanism,
        optional_octets,
        st.one_of(st.none(), st.just(b"\x07\x80")),
        optional_octets,
        optional_octets,
        optional_octets,
    ),
    st.builds(
        Rlrq,
        st.one_of(st.none(), st.sampled_from([0, 1, 30])),
        st.one_of(st.none(), initiate_request),
    ),
    st.builds(
        Rlre,
        st.one_of(st.none(), st.sampled_from([0, 1, 30])),
        st.one_of(st.none(), initiate_response),
    ),
    st.builds(ExceptionResponse, st.integers(1, 2), st.integers(1, 5)),
    st.builds(ExceptionResponse, st.integers(1, 2), st.just(6), u32),
    st.builds(
        DataNotification,
        u32,
        st.one_of(st.none(), st.binary(min_size=12, max_size=12)),
        simple_data,
    ),
    initiate_request,
    initiate_response,
    service_error,
)


@SETTINGS
@given(apdu_values)
def test_encode_then_parse_gives_the_value_back(apdu: ModuleType, value: object) -> None:
    raw = apdu.encode_apdu(value)
    assert apdu.parse_apdu(raw) == value
    assert apdu.encode_apdu(apdu.parse_apdu(raw)) == raw


@SETTINGS
@given(apdu_values)
def test_twins_encode_the_same_bytes(value: object) -> None:
    pure, compiled = load_twin("apdu", "python"), load_twin("apdu", "cython")
    assert compiled.encode_apdu(value) == pure.encode_apdu(value)


@FEW
@given(data=st.binary(min_size=1, max_size=2000), block_size=st.integers(1, 700))
def test_blocks_of_any_size_reassemble_to_the_data(
    apdu: ModuleType, data: bytes, block_size: int
) -> None:
    # Feeding the blocks one at a time gives the same Data as the whole buffer.
    chunks = [data[index : index + block_size] for index in range(0, len(data), block_size)]
    reassembler = apdu.BlockReassembler()
    answer: object = None
    for number, chunk in enumerate(chunks, start=1):
        block = GetResponseWithDatablock(number == len(chunks), number, chunk)
        answer = reassembler.receive(apdu.encode_apdu(block))
        if number < len(chunks):
            assert answer == GetRequestNext(number)
    assert answer == BlockTransferComplete(data, len(chunks))


def _range_outcome(module: ModuleType, raw: bytes) -> object:
    try:
        return ("value", module.parse_range_descriptor(raw))
    except CodecError as error:
        return ("error", type(error), str(error))


@SETTINGS
@given(
    parameters=st.sampled_from(
        [
            load_twin("apdu", "python")
            .profile_range(
                dt.datetime(2024, 3, 1),
                dt.datetime(2024, 3, 2),
                selected_values=(load_twin("apdu", "python").DEFAULT_CLOCK_CAPTURE_OBJECT,),
            )
            .parameters
        ]
    ),
    flips=st.lists(st.tuples(st.integers(0, 80), st.integers(1, 255)), max_size=3),
    cut=st.integers(0, 90),
)
def test_twins_agree_on_mutated_range_descriptors(
    parameters: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    raw = bytearray(parameters)
    for position, flip in flips:
        raw[position % len(raw)] ^= flip
    raw = raw[:cut]
    pure, compiled = load_twin("apdu", "python"), load_twin("apdu", "cython")
    assert _range_outcome(compiled, bytes(raw)) == _range_outcome(pure, bytes(raw))
