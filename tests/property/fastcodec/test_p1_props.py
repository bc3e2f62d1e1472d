"""Property tests: the P1 twins agree, the builder round-trips, the splitter
does not care how the stream is chunked, and hostile bytes give CodecError."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from fastcodec.exceptions import CodecError
from tests.conftest import VECTORS, load_twin

P1_VECTORS = VECTORS / "p1_dsmr_iec62056-21"
REAL_TELEGRAMS = [path.read_bytes() for path in sorted(P1_VECTORS.glob("*.txt"))] + [
    bytes.fromhex(vector["hex"])
    for vector in json.loads((P1_VECTORS / "amshan_test_dlde.json").read_text())["vectors"]
]
SETTINGS = settings(max_examples=200, deadline=None)

units = st.sampled_from(["", "kWh", "kW", "V", "A", "m3", "GJ", "s", "Wh", "kvarh", "Hz"])
decimals = st.builds(
    lambda whole, frac, width: f"{whole:0{width}d}.{frac:03d}",
    st.integers(0, 999999),
    st.integers(0, 999),
    st.integers(1, 9),
)
timestamps = st.builds(
    lambda y, mo, d, h, mi, s, x: f"{y:02d}{mo:02d}{d:02d}{h:02d}{mi:02d}{s:02d}{x}",
    st.integers(0, 99),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 24),
    st.integers(0, 60),
    st.integers(0, 60),
    st.sampled_from("SW"),
)
obis_codes = st.builds(
    lambda a, b, c, d, e: f"{a}-{b}:{c}.{d}.{e}",
    st.integers(0, 1),
    st.integers(0, 4),
    st.sampled_from([0, 1, 2, 14, 21, 24, 31, 32, 96, 98, 99]),
    st.integers(0, 13),
    st.integers(0, 19),
)
values = st.one_of(
    st.tuples(decimals, units).map(
        lambda pair: f"({pair[0]}*{pair[1]})" if pair[1] else f"({pair[0]})"
    ),
    timestamps.map(lambda stamp: f"({stamp})"),
    st.text("0123456789ABCDEF", max_size=20).map(lambda text: f"({text})"),
)
lines = st.one_of(
    st.tuples(obis_codes, st.lists(values, min_size=1, max_size=4)).map(
        lambda pair: pair[0] + "".join(pair[1])
    ),
    st.tuples(
        obis_codes,
        st.integers(0, 12),
        obis_codes,
        st.lists(st.tuples(timestamps, decimals), max_size=4),
    ).map(
        lambda parts: (
            f"{parts[0]}({parts[1]})({parts[2]})"
            + "".join(f"({stamp})({value}*s)" for stamp, value in parts[3])
        )
    ),
)
idents = st.sampled_from(["ISk5\\2MT382-1000", "KFM5KAIFA-METER", "FLU5\\253769484_A", "NWA-WARM"])


def outcome(parse: Callable[[bytes], object], data: bytes) -> object:
    """The value, or the CodecError as (class, reason, offset); anything else fails."""
    try:
        return parse(data)
    except CodecError as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "offset", None))


def twins() -> tuple[ModuleType, ModuleType]:
    return load_twin("p1", "python"), load_twin("p1", "cython")


@SETTINGS
@given(
    ident=idents,
    body=st.lists(lines, max_size=12),
    with_crc=st.booleans(),
    flip=st.integers(0, 10_000),
)
def test_twins_agree_on_generated_telegrams(
    ident: str, body: list[str], with_crc: bool, flip: int
) -> None:
    pure, compiled = twins()
    raw = pure.build_telegram(ident, body, with_crc)
    assert compiled.build_telegram(ident, body, with_crc) == raw
    telegram = pure.parse_telegram(raw)
    assert compiled.parse_telegram(raw) == telegram
    assert telegram.checksum_ok is (True if with_crc else None)
    assert len(telegram.readings) == len(body)
    # Corrupt one byte of the data lines: the CRC must notice, the twins agree.
    damaged = bytearray(raw)
    position = len(ident) + 5 + flip % max(1, len(raw) - len(ident) - 12)
    if position < raw.index(b"!"):
        damaged[position] ^= 0x01
        assert outcome(pure.parse_telegram, bytes(damaged)) == outcome(
            compiled.parse_telegram, bytes(damaged)
        )


@SETTINGS
@given(body=st.lists(st.tuples(obis_codes, decimals, units), min_size=1, max_size=10))
def test_build_parse_round_trip(p1: ModuleType, body: list[tuple[str, str, str]]) -> None:
    text_lines = [
        f"{code}({value}*{unit})" if unit else f"{code}({value})" for code, value, unit in body
    ]
    telegram = p1.parse_telegram(p1.build_telegram("ABC5METER", text_lines))
    assert telegram.checksum_ok is True
    for reading, (code, value, unit) in zip(telegram.readings, body, strict=True):
        assert reading.obis == code
        assert reading.raw[0] == (value, unit)
        if isinstance(reading.value, float):
            assert reading.value == float(value)
        else:
            assert reading.value == value  # a text object (96.1.x, 0.0.x, …)
        assert reading.unit == unit or reading.timestamp is not None


@SETTINGS
@given(data=st.binary(max_size=600))
def test_twins_agree_on_random_bytes(data: bytes) -> None:
    pure, compiled = twins()
    for candidate in (data, b"/" + data, b"/ABC5X\r\n\r\n" + data):
        assert outcome(pure.parse_telegram, candidate) == outcome(
            compiled.parse_telegram, candidate
        )


@SETTINGS
@given(
    index=st.integers(0, len(REAL_TELEGRAMS) - 1),
    edits=st.lists(
        st.tuples(st.integers(0, 2000), st.integers(0, 255), st.sampled_from("rid")), max_size=6
    ),
)
def test_twins_agree_on_mutated_real_telegrams(
    index: int, edits: list[tuple[int, int, str]]
) -> None:
    pure, compiled = twins()
    data = bytearray(REAL_TELEGRAMS[index])
    for position, byte, kind in edits:
        position %= len(data) + 1
        if kind == "r" and position < len(data):
            data[position] = byte
        elif kind == "i":
            data[position:position] = bytes([byte])
        elif position < len(data):
            del data[position]
    assert outcome(pure.parse_telegram, bytes(data)) == outcome(
        compiled.parse_telegram, bytes(data)
    )


def _split(
    p1: ModuleType, stream: bytes, cuts: list[int], limit: int
) -> tuple[list[bytes], int, int]:
    splitter = p1.TelegramSplitter(max_telegram_bytes=limit)
    found: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        found += splitter.feed(stream[start:cut])
        start = max(start, cut)
    return found, splitter.skipped_bytes, splitter.dropped_telegrams


@SETTINGS
@given(
    picks=st.lists(st.integers(0, len(REAL_TELEGRAMS) - 1), max_size=5),
    noise=st.lists(st.binary(max_size=20), min_size=6, max_size=6),
    cuts=st.lists(st.integers(0, 6000), max_size=30),
    limit=st.sampled_from([64, 600, 16384]),
)
def test_splitter_chunking_does_not_matter(
    picks: list[int], noise: list[bytes], cuts: list[int], limit: int
) -> None:
    pure, compiled = twins()
    stream = noise[0] + b"".join(REAL_TELEGRAMS[i] + noise[k + 1] for k, i in enumerate(picks))
    whole = _split(pure, stream, [], limit)
    assert _split(pure, stream, cuts, limit) == whole
    assert _split(compiled, stream, cuts, limit) == whole
    assert _split(compiled, stream, list(range(len(stream))), limit) == whole
    for telegram in whole[0]:
        assert len(telegram) <= limit
        outcome(pure.parse_telegram, telegram)


@SETTINGS
@given(stream=st.binary(max_size=800), cuts=st.lists(st.integers(0, 800), max_size=20))
def test_splitter_on_random_bytes(stream: bytes, cuts: list[int]) -> None:
    pure, compiled = twins()
    stream = stream.replace(b"\x00", b"/").replace(b"\x01", b"!")
    whole = _split(pure, stream, [], 64)
    assert _split(compiled, stream, cuts, 64) == whole
    found, skipped, _ = whole
    held = len(stream) - skipped - sum(len(t) for t in found)
    assert 0 <= held <= 64 + 7
