"""Property tests for the HDLC codec: twins agree, round trips hold, hostile input is refused."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fastcodec._crc_py import crc16_x25
from fastcodec.exceptions import CodecError
from tests.conftest import VECTORS, load_twin

SETTINGS = settings(max_examples=200, deadline=None)

_DLMS = VECTORS / "dlms"
REAL_FRAMES = [
    bytes.fromhex(f["hex"])
    for f in json.loads((_DLMS / "curated_real_hdlc_frames.json").read_text())["frames"]
] + [
    bytes.fromhex(f["hex"])
    for f in json.loads((_DLMS / "synthetic_gurux_loopback_session.json").read_text())["frames"]
]


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """The value, or the error's type, reason and offset: what twins must agree on."""
    try:
        return "value", call()
    except CodecError as exc:
        return type(exc).__name__, (str(exc), getattr(exc, "offset", None))


def _drain(splitter: Any, need_data: object) -> list[Any]:
    frames = []
    while (frame := splitter.next_frame()) is not need_data:
        frames.append(frame)
    return frames


@st.composite
def mutated_real_frames(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(REAL_FRAMES)))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "flag"]))
        position = draw(st.integers(0, max(len(frame) - 1, 0)))
        if action == "flip" and frame:
            frame[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del frame[position:]
        elif action == "insert":
            frame[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif action == "flag" and frame:
            frame[position] = 0x7E
    return bytes(frame)


hostile_bytes = st.one_of(
    st.binary(max_size=300),
    mutated_real_frames(),
    st.lists(st.sampled_from([b"\x7e", b"\xa0", b"\xa8", b"\x07", b"\x21", b"\x03", b"\x93"])).map(
        b"".join
    ),
)

streams = st.lists(
    st.one_of(st.sampled_from(REAL_FRAMES), mutated_real_frames(), st.binary(max_size=20)),
    max_size=8,
).map(b"".join)


def _split_points(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# --- twins agree -------------------------------------------------------------------------------


@SETTINGS
@given(data=hostile_bytes)
def test_twins_agree_on_parse_frame(data: bytes) -> None:
    pure, compiled = load_twin("hdlc", "python"), load_twin("hdlc", "cython")
    assert _outcome(lambda: compiled.parse_frame(data)) == _outcome(lambda: pure.parse_frame(data))


@SETTINGS
@given(data=st.binary(max_size=2100))
def test_compiled_slicing_by_8_crc_matches_the_reference(data: bytes) -> None:
    # The compiled twin inlines its own CRC-16/X-25 for the HCS and FCS.
    compiled = load_twin("hdlc", "cython")
    assert compiled._crc16_x25(data) == crc16_x25(data)


@SETTINGS
@given(data=hostile_bytes)
def test_twins_agree_on_parameters_and_wrapper(data: bytes) -> None:
    pure, compiled = load_twin("hdlc", "python"), load_twin("hdlc", "cython")
    assert _outcome(lambda: compiled.parse_parameters(data)) == _outcome(
        lambda: pure.parse_parameters(data)
    )
    assert _outcome(lambda: compiled.parse_wrapper(data)) == _outcome(
        lambda: pure.parse_wrapper(data)
    )


@SETTINGS
@given(stream=streams, cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_twins_agree_on_the_splitter(stream: bytes, cuts: list[int]) -> None:
    results = []
    for variant in ("python", "cython"):
        twin = load_twin("hdlc", variant)
        splitter = twin.FrameSplitter()
        frames = []
        for chunk in _split_points(stream, cuts):
            splitter.feed(chunk)
            frames += _drain(splitter, twin.NEED_DATA)
        results.append((frames, splitter.discarded_bytes, splitter.bad_frames))
    assert results[0] == results[1]


# --- streaming: chunking does not matter -------------------------------------------------------


@SETTINGS
@given(stream=streams)
def test_byte_at_a_time_gives_the_same_frames(hdlc: ModuleType, stream: bytes) -> None:
    whole = hdlc.FrameSplitter()
    whole.feed(stream)
    expected = _drain(whole, hdlc.NEED_DATA)
    single = hdlc.FrameSplitter()
    frames = []
    for byte in stream:
        single.feed(bytes((byte,)))
        frames += _drain(single, hdlc.NEED_DATA)
    assert frames == expected
    assert (single.discarded_bytes, single.bad_frames) == (whole.discarded_bytes, whole.bad_frames)
    assert single.buffered_bytes == whole.buffered_bytes


@SETTINGS
@given(
    frames=st.lists(st.sampled_from(REAL_FRAMES), min_size=1, max_size=6),
    garbage=st.lists(st.binary(max_size=12), min_size=7, max_size=7),
)
def test_real_frames_survive_garbage_between_them(
    hdlc: ModuleType, frames: list[bytes], garbage: list[bytes]
) -> None:
    # Garbage without 0x7E cannot open a frame candidate, so every frame is found.
    cleaned = [g.replace(b"\x7e", b"") for g in garbage]
    stream = b"".join(g + f for g, f in zip(cleaned, frames, strict=False)) + cleaned[-1]
    splitter = hdlc.FrameSplitter()
    splitter.feed(stream)
    found = _drain(splitter, hdlc.NEED_DATA)
    assert found == [hdlc.parse_frame(f) for f in frames]


# --- round trips --------------------------------------------------------------------------------

address_lengths = st.sampled_from([1, 2, 4])


@st.composite
def addresses(draw: st.DrawFn) -> tuple[int, int]:
    length = draw(address_lengths)
    limit = {1: 0x80, 2: 0x4000, 4: 0x10000000}[length]
    return draw(st.integers(0, limit - 1)), length


@SETTINGS
@given(
    kind_name=st.sampled_from(["I", "RR", "RNR", "SNRM", "UA", "DISC", "DM", "FRMR", "UI"]),
    destination=addresses(),
    source=addresses(),
    information=st.binary(max_size=600),
    send_sequence=st.integers(0, 7),
    receive_sequence=st.integers(0, 7),
    poll_final=st.booleans(),
    segmented=st.booleans(),
)
def test_build_then_parse_round_trips(
    hdlc: ModuleType,
    kind_name: str,
    destination: tuple[int, int],
    source: tuple[int, int],
    information: bytes,
    send_sequence: int,
    receive_sequence: int,
    poll_final: bool,
    segmented: bool,
) -> None:
    kind = hdlc.FrameKind[kind_name]
    raw = hdlc.build_frame(
        kind,
        destination[0],
        source[0],
        information,
        send_sequence=send_sequence,
        receive_sequence=receive_sequence,
        poll_final=poll_final,
        segmented=segmented,
        destination_address_length=destination[1],
        source_address_length=source[1],
    )
    frame = hdlc.parse_frame(raw)
    assert frame.kind is kind
    assert (frame.destination_address, frame.destination_address_length) == destination
    assert (frame.source_address, frame.source_address_length) == source
    assert frame.information == information
    assert frame.poll_final is poll_final and frame.segmented is segmented
    assert frame.frame_length == len(raw) - 2
    if kind_name == "I":
        assert frame.send_sequence == send_sequence
    if kind_name in ("I", "RR", "RNR"):
        assert frame.receive_sequence == receive_sequence
    splitter = hdlc.FrameSplitter()
    splitter.feed(raw + raw)
    assert _drain(splitter, hdlc.NEED_DATA) == [frame, frame]


@SETTINGS
@given(
    payload=st.binary(max_size=3000),
    max_info_length=st.integers(1, 300),
    send_sequence=st.integers(0, 7),
)
def test_segment_then_reassemble_round_trips(
    hdlc: ModuleType, payload: bytes, max_info_length: int, send_sequence: int
) -> None:
    frames = hdlc.build_segmented_frames(
        payload, max_info_length, 16, 145, send_sequence=send_sequence, source_address_length=2
    )
    reassembler = hdlc.Reassembler()
    results = [reassembler.add(hdlc.parse_frame(f)) for f in frames]
    assert results[-1] == payload
    assert all(r is hdlc.NEED_DATA for r in results[:-1])


@SETTINGS
@given(
    values=st.tuples(*[st.integers(0, 0xFFFFFFFF)] * 4),
)
def test_parameters_round_trip(hdlc: ModuleType, values: tuple[int, int, int, int]) -> None:
    parameters = hdlc.HdlcParameters(*values)
    assert hdlc.parse_parameters(hdlc.build_parameters(parameters)) == parameters


@SETTINGS
@given(
    apdus=st.lists(st.binary(max_size=300), max_size=6),
    ports=st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
)
def test_wrapper_round_trips_through_the_splitter(
    hdlc: ModuleType, apdus: list[bytes], ports: tuple[int, int], cuts: list[int]
) -> None:
    wpdus = [hdlc.build_wrapper(apdu, *ports) for apdu in apdus]
    assert [hdlc.parse_wrapper(w).apdu for w in wpdus] == apdus
    splitter = hdlc.WrapperSplitter()
    frames = []
    for chunk in _split_points(b"".join(wpdus), cuts):
        splitter.feed(chunk)
        frames += _drain(splitter, hdlc.NEED_DATA)
    assert frames == [hdlc.WrapperFrame(1, ports[0], ports[1], apdu) for apdu in apdus]


# --- bounded fuzz: nothing but CodecError --------------------------------------------------------


@SETTINGS
@given(data=hostile_bytes)
def test_fuzz_raises_only_codec_errors(hdlc: ModuleType, data: bytes) -> None:
    for call in (
        lambda: hdlc.parse_frame(data),
        lambda: hdlc.parse_parameters(data),
        lambda: hdlc.parse_wrapper(data),
    ):
        _outcome(call)
    splitter = hdlc.FrameSplitter()
    splitter.feed(data)
    frames = _drain(splitter, hdlc.NEED_DATA)
    assert splitter.buffered_bytes <= len(data)
    reassembler = hdlc.Reassembler(max_apdu_bytes=1000)
    for frame in frames:
        _outcome(lambda frame=frame: reassembler.add(frame))
    wrapper = hdlc.WrapperSplitter(max_apdu_bytes=100)
    wrapper.feed(data)
    _outcome(lambda: _drain(wrapper, hdlc.NEED_DATA))
