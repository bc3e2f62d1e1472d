"""Property tests: the A-XDR twins agree, typed values round-trip, and any
input gives a value or a CodecError."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from fastcodec._axdr_types import (
    DONT_CARE,
    BitString,
    CompactArray,
    CosemDate,
    CosemDateTime,
    CosemTime,
    Tag,
    Typed,
    TypeDescription,
)
from fastcodec.exceptions import CodecError, FrameError
from tests.conftest import VECTORS, load_twin

SETTINGS = settings(max_examples=300, deadline=None)

INT_RANGES = {
    Tag.DOUBLE_LONG: (-(2**31), 2**31 - 1),
    Tag.DOUBLE_LONG_UNSIGNED: (0, 2**32 - 1),
    Tag.INTEGER: (-128, 127),
    Tag.LONG: (-(2**15), 2**15 - 1),
    Tag.UNSIGNED: (0, 255),
    Tag.LONG_UNSIGNED: (0, 2**16 - 1),
    Tag.LONG64: (-(2**63), 2**63 - 1),
    Tag.LONG64_UNSIGNED: (0, 2**64 - 1),
    Tag.ENUM: (0, 255),
    Tag.BCD: (0, 255),
}


def _typed_int(tag: Tag) -> st.SearchStrategy[Typed]:
    low, high = INT_RANGES[tag]
    edges = st.sampled_from([low, high, 0 if low <= 0 else low, high // 2])
    return st.one_of(edges, st.integers(low, high)).map(lambda number: Typed(tag, number))


octet = st.integers(0, 255)
date_times = st.builds(
    CosemDateTime,
    st.integers(0, 0xFFFF),
    octet,
    octet,
    octet,
    octet,
    octet,
    octet,
    octet,
    st.integers(-0x8000, 0x7FFF),
    octet,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    *[_typed_int(tag) for tag in INT_RANGES],
    st.floats(width=32, allow_nan=False).map(lambda number: Typed(Tag.FLOAT32, number)),
    st.floats(allow_nan=False).map(lambda number: Typed(Tag.FLOAT64, number)),
    st.binary(max_size=300),
    st.text(st.characters(max_codepoint=255), max_size=20).map(
        lambda text: Typed(Tag.VISIBLE_STRING, text)
    ),
    st.text(max_size=20).map(lambda text: Typed(Tag.UTF8_STRING, text)),
    st.integers(0, 40).flatmap(
        lambda bits: st.binary(min_size=(bits + 7) // 8, max_size=(bits + 7) // 8).map(
            lambda data: BitString(bits, data)
        )
    ),
    date_times,
    st.builds(CosemDate, st.integers(0, 0xFFFF), octet, octet, octet),
    st.builds(CosemTime, octet, octet, octet, octet),
    st.just(DONT_CARE),
)
typed_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.lists(children, max_size=5).map(tuple)
    ),
    max_leaves=25,
)


def _compact_arrays() -> st.SearchStrategy[CompactArray]:
    member_tags = [Tag.UNSIGNED, Tag.LONG, Tag.DOUBLE_LONG_UNSIGNED, Tag.OCTET_STRING]
    member_values: dict[Tag, st.SearchStrategy[object]] = {
        Tag.UNSIGNED: st.integers(0, 255),
        Tag.LONG: st.integers(-(2**15), 2**15 - 1),
        Tag.DOUBLE_LONG_UNSIGNED: st.integers(0, 2**32 - 1),
        Tag.OCTET_STRING: st.binary(max_size=8),
    }

    def build(tags: list[Tag]) -> st.SearchStrategy[CompactArray]:
        description = TypeDescription(
            Tag.STRUCTURE, len(tags), tuple(TypeDescription(tag) for tag in tags)
        )
        element = st.tuples(*[member_values[tag] for tag in tags])
        return st.lists(element, max_size=6).map(
            lambda rows: CompactArray(description, tuple(rows))
        )

    return st.lists(st.sampled_from(member_tags), min_size=1, max_size=4).flatmap(build)


def _real_values() -> list[bytes]:
    values = []
    for name in (
        "amshan__tests_test_aidon.json",
        "amshan__tests_test_kaifa.json",
        "amshan__tests_test_kamstrup.json",
        "dlms-cosem__tests_test_parsers.json",
    ):
        for vector in json.loads((VECTORS / "dlms" / name).read_text())["vectors"]:
            if name.endswith("parsers.json") or vector["name"].startswith("NOTIFICATION_BODY"):
                values.append(bytes.fromhex(vector["hex"]))
    return values


REAL_VALUES = _real_values()


@st.composite
def mutated_real_values(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(REAL_VALUES)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            data[position] = draw(octet)
        elif action == "cut":
            del data[position:]
            if not data:
                data.append(draw(octet))
        else:
            data.insert(position, draw(octet))
    return bytes(data)


# Tag-heavy random input: mostly valid tags and short lengths, so the decoder
# gets past the first octet.
adversarial = st.lists(
    st.one_of(
        st.sampled_from([0, 1, 2, 3, 4, 5, 6, 9, 10, 12, 13, 15, 16, 17, 18, 19, 20, 25, 26, 0x81]),
        octet,
    ),
    max_size=64,
).map(bytes)
any_input = st.one_of(st.binary(max_size=200), adversarial, mutated_real_values())


def _outcome(function: Callable[..., object], *args: object) -> object:
    try:
        return ("value", function(*args))
    except CodecError as exc:
        return (type(exc).__name__, getattr(exc, "offset", None))


@SETTINGS
@given(data=any_input, offset=st.integers(0, 8))
def test_compiled_and_pure_twins_agree(data: bytes, offset: int) -> None:
    pure, compiled = load_twin("axdr", "python"), load_twin("axdr", "cython")
    offset = min(offset, len(data))
    for name in ("decode_from", "decode_typed_from", "decode_capture_buffer"):
        expected = _outcome(getattr(pure, name), data, offset)
        assert _outcome(getattr(compiled, name), data, offset) == expected, name
    for name in ("decode", "decode_typed"):
        assert _outcome(getattr(compiled, name), data) == _outcome(getattr(pure, name), data)


@SETTINGS
@given(data=any_input)
def test_any_input_gives_a_value_or_a_codec_error(axdr: ModuleType, data: bytes) -> None:
    for function in (axdr.decode, axdr.decode_typed, axdr.decode_capture_buffer):
        with contextlib.suppress(CodecError):
            function(data)


@SETTINGS
@given(value=st.one_of(typed_values, _compact_arrays()))
def test_encode_then_decode_typed_round_trips(axdr: ModuleType, value: object) -> None:
    octets = axdr.encode(value)
    assert axdr.decode_typed(octets) == value
    assert axdr.encode(axdr.decode_typed(octets)) == octets


@SETTINGS
@given(value=typed_values)
def test_twins_encode_alike(value: object) -> None:
    pure, compiled = load_twin("axdr", "python"), load_twin("axdr", "cython")
    assert compiled.encode(value) == pure.encode(value)


@SETTINGS
@given(value=typed_values)
def test_every_truncation_is_a_frame_error(axdr: ModuleType, value: object) -> None:
    # The input arrives in pieces (HDLC segments, GET blocks): any prefix is
    # an incomplete value, never a crash and never a wrong value.
    octets = axdr.encode(value)
    for cut in range(len(octets)):
        try:
            axdr.decode(octets[:cut])
        except FrameError:
            continue
        raise AssertionError(f"prefix of {cut} octets decoded")


aware_datetimes = st.datetimes(
    min_value=dt.datetime(1900, 1, 1),
    max_value=dt.datetime(2200, 1, 1),
    timezones=st.integers(-14 * 60, 14 * 60).map(
        lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
    ),
).map(lambda value: value.replace(microsecond=value.microsecond // 10000 * 10000))


@SETTINGS
@given(value=aware_datetimes, status=st.sampled_from([0, 0x01, 0x02, 0x80, 0x81]))
def test_datetimes_round_trip_with_their_clock_status(
    axdr: ModuleType, value: dt.datetime, status: int
) -> None:
    raw = CosemDateTime.from_datetime(value, clock_status=status)
    decoded = axdr.decode(axdr.encode(raw))
    assert decoded == value
    assert decoded.utcoffset() == value.utcoffset()
    assert decoded.clock_status == status
    assert axdr.encode(decoded) == axdr.encode(raw)


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.none(), aware_datetimes),
            st.integers(0, 255),
            st.integers(0, 2**32 - 1),
            st.one_of(st.none(), st.integers(0, 2**32 - 1)),
        ),
        max_size=30,
    )
)
def test_capture_buffer_columns_match_the_rows(
    axdr: ModuleType, rows: list[tuple[dt.datetime | None, int, int, int | None]]
) -> None:
    def cell(value: object, tag: Tag) -> object:
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            return Typed(Tag.OCTET_STRING, CosemDateTime.from_datetime(value))
        return Typed(tag, value)

    encoded = axdr.encode(
        [
            (
                cell(clock, Tag.OCTET_STRING),
                cell(status, Tag.UNSIGNED),
                cell(energy, Tag.DOUBLE_LONG_UNSIGNED),
                cell(other, Tag.DOUBLE_LONG_UNSIGNED),
            )
            for clock, status, energy, other in rows
        ]
    )
    buffer = axdr.decode_capture_buffer(encoded)
    assert buffer.row_count == len(rows)
    assert buffer.end_offset == len(encoded)
    if rows:
        assert buffer.columns == [list(column) for column in zip(*rows, strict=True)]
