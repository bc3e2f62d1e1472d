"""Property tests: the IEC 62056-21 twins agree, builders round-trip, the
splitter does not care how the stream is chunked, hostile bytes give CodecError."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from fastcodec.exceptions import CodecError
from tests.conftest import VECTORS, load_twin

SETTINGS = settings(max_examples=200, deadline=None)
BCC_MESSAGES = [
    bytes.fromhex(vector["hex"])
    for vector in json.loads(
        (VECTORS / "iec62056-21_modeC" / "bcc_vectors_pwitab.json").read_text()
    )["vectors"]
]

addresses = st.one_of(
    st.builds(
        lambda c, d, e: f"{c}.{d}.{e}",
        st.sampled_from(["0", "1", "2", "32", "C", "F", "P"]),
        st.integers(0, 99),
        st.integers(0, 255),
    ),
    st.builds(lambda a, b: f"1-{a}:1.8.{b}*255", st.integers(0, 9), st.integers(0, 4)),
    st.text("0123456789.-:*&CFLPx", min_size=1, max_size=12),
)
value_texts = st.one_of(
    st.decimals(min_value=-1e6, max_value=1e6, places=3, allow_nan=False).map(str),
    st.text("0123456789-.: ABC", max_size=14),
)
values = st.tuples(value_texts, st.sampled_from(["", "kWh", "kW", "V", "A", "kvarh"])).map(
    lambda pair: f"({pair[0]}*{pair[1]})" if pair[1] else f"({pair[0]})"
)
data_lines = st.tuples(addresses, st.lists(values, min_size=1, max_size=3)).map(
    lambda pair: pair[0] + "".join(pair[1])
)


def outcome(parse: Callable[[bytes], object], data: bytes) -> object:
    """The value, or the CodecError as (class, reason, offset); anything else fails."""
    try:
        return parse(data)
    except CodecError as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "offset", None))


def twins() -> tuple[ModuleType, ModuleType]:
    return load_twin("iec62056_21", "python"), load_twin("iec62056_21", "cython")


@SETTINGS
@given(lines=st.lists(data_lines, max_size=10))
def test_twins_agree_on_generated_readouts(lines: list[str]) -> None:
    pure, compiled = twins()
    raw = pure.build_data_readout(lines)
    assert compiled.build_data_readout(lines) == raw
    readout = pure.parse_data_readout(raw)
    assert compiled.parse_data_readout(raw) == readout
    assert len(readout.data_sets) >= len(lines) or not lines


@SETTINGS
@given(lines=st.lists(data_lines, max_size=10))
def test_readout_round_trip(iec62056_21: ModuleType, lines: list[str]) -> None:
    readout = iec62056_21.parse_message(iec62056_21.build_data_readout(lines))
    rebuilt = [
        data_set.address
        + "".join(
            f"({value.text}*{value.unit})" if value.unit else f"({value.text})"
            for value in data_set.values
        )
        for data_set in readout.data_sets
    ]
    assert "".join(rebuilt) == "".join(lines).replace("*)", ")")


@SETTINGS
@given(
    command=st.sampled_from(["P0", "P1", "P2", "R1", "R5", "W1", "W5", "E2", "B0"]),
    data=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    partial=st.booleans(),
)
def test_command_round_trip(command: str, data: str, partial: bool) -> None:
    pure, compiled = twins()
    raw = pure.build_command(command, data, partial)
    assert compiled.build_command(command, data, partial) == raw
    message = pure.parse_message(raw)
    assert compiled.parse_message(raw) == message
    assert message == pure.CommandMessage(command, data, partial)


@SETTINGS
@given(data=st.binary(max_size=300))
def test_twins_agree_on_random_bytes(data: bytes) -> None:
    pure, compiled = twins()
    for candidate in (data, b"\x02" + data, b"\x01R1\x02" + data, b"/" + data, b"\x06" + data):
        assert outcome(pure.parse_message, candidate) == outcome(compiled.parse_message, candidate)
        assert outcome(pure.parse_data_sets, candidate) == outcome(
            compiled.parse_data_sets, candidate
        )


@SETTINGS
@given(
    lines=st.lists(data_lines, min_size=1, max_size=4),
    edits=st.lists(st.tuples(st.integers(0, 500), st.integers(0, 255)), max_size=4),
)
def test_twins_agree_on_mutated_messages(lines: list[str], edits: list[tuple[int, int]]) -> None:
    pure, compiled = twins()
    for message in [pure.build_data_readout(lines), *BCC_MESSAGES]:
        data = bytearray(message)
        for position, byte in edits:
            data[position % len(data)] = byte
        assert outcome(pure.parse_message, bytes(data)) == outcome(
            compiled.parse_message, bytes(data)
        )


@SETTINGS
@given(text=st.text(max_size=16))
def test_twins_agree_on_obis_normalisation(text: str) -> None:
    pure, compiled = twins()
    assert pure.normalise_obis(text) == compiled.normalise_obis(text)


def _split(
    module: ModuleType, stream: bytes, cuts: list[int], limit: int, meter_side: bool
) -> tuple[list[bytes], int, int]:
    splitter = module.OpticalSplitter(max_frame_bytes=limit, meter_side=meter_side)
    found: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        found += splitter.feed(stream[start:cut])
        start = max(start, cut)
    return found, splitter.skipped_bytes, splitter.dropped_frames


@SETTINGS
@given(
    lines=st.lists(data_lines, max_size=5),
    noise=st.lists(st.binary(max_size=12), min_size=5, max_size=5),
    cuts=st.lists(st.integers(0, 2000), max_size=25),
    limit=st.sampled_from([16, 64, 65536]),
    meter_side=st.booleans(),
)
def test_splitter_chunking_does_not_matter(
    lines: list[str], noise: list[bytes], cuts: list[int], limit: int, meter_side: bool
) -> None:
    pure, compiled = twins()
    parts = [
        b"/ISk5\\2MT174\r\n",
        pure.build_data_readout(lines),
        BCC_MESSAGES[0],
        b"\x06051\r\n",
        BCC_MESSAGES[1],
    ]
    stream = b"".join(part + gap for part, gap in zip(parts, noise, strict=True))
    whole = _split(pure, stream, [], limit, meter_side)
    assert _split(pure, stream, cuts, limit, meter_side) == whole
    assert _split(compiled, stream, cuts, limit, meter_side) == whole
    assert _split(compiled, stream, list(range(len(stream))), limit, meter_side) == whole
    for message in whole[0]:
        assert len(message) <= limit
        outcome(pure.parse_message, message)


@SETTINGS
@given(stream=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=20))
def test_splitter_on_random_bytes(stream: bytes, cuts: list[int]) -> None:
    pure, compiled = twins()
    whole = _split(pure, stream, [], 32, False)
    assert _split(compiled, stream, cuts, 32, False) == whole
    found, skipped, _ = whole
    assert 0 <= len(stream) - skipped - sum(len(m) for m in found) <= 33
