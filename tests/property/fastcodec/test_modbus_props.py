"""Property tests of the Modbus RTU codec: the twins agree on random and
adversarial input, builders and parsers round-trip, the splitter does not care
how the stream is cut, and hostile bytes give values or CodecError only."""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Callable
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from fastcodec.crc import crc16_modbus
from fastcodec.exceptions import CodecError
from tests.conftest import load_twin

FAST = settings(max_examples=200, deadline=None)
HEAVY = settings(max_examples=100, deadline=None)

# Real frames to mutate: a 28-register SDM630 reply, an FC03 request, an
# exception reply, a device identification reply, write echoes.
SEED_FRAMES = [
    bytes.fromhex(
        "05043844dacab9460cbedc442392bf457658ef000000000000000000000000000000000000000000"
        "000000447a040d458350c73fbd8a614127e110142b"
    ),
    bytes.fromhex("010300000002c40b"),
    bytes.fromhex("010404436633341b38"),
]


def _adu(body: bytes) -> bytes:
    return body + crc16_modbus(body).to_bytes(2, "little")


SEED_FRAMES += [
    _adu(bytes.fromhex("0a8102")),
    _adu(bytes.fromhex("01 2b 0e 01 01 00 00 01 00 03 414243")),
    _adu(bytes.fromhex("01 05 00ac ff00")),
    _adu(bytes.fromhex("01 0f 0013 000a 02 cd01")),
    _adu(bytes.fromhex("01 01 03 cd6b05")),
]


REQUEST_SEEDS = [bytes.fromhex("010300000002c40b"), _adu(bytes.fromhex("01 0f 0013 000a 02 cd01"))]
RESPONSE_SEEDS = [frame for frame in SEED_FRAMES if frame not in REQUEST_SEEDS]


def _twins() -> tuple[ModuleType, ModuleType]:
    return load_twin("modbus", "python"), load_twin("modbus", "cython")


def _comparable(value: object) -> object:
    # NaN != NaN: compare floats by their bits.
    if isinstance(value, float):
        return ("float", struct.pack("<d", value)) if math.isnan(value) else value
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    return value


def _outcome(function: Callable[..., object], *arguments: object) -> object:
    try:
        return ("value", _comparable(function(*arguments)))
    except CodecError as exc:
        return ("error", type(exc).__name__, getattr(exc, "offset", None), str(exc))
    except (TypeError, ValueError) as exc:
        return ("caller error", type(exc).__name__)


def _splitter_run(module: ModuleType, expect: str, chunks: list[bytes], idle: bool) -> object:
    splitter = module.RtuSplitter(getattr(module.Expect, expect), max_buffer_bytes=1024)
    frames = []
    for chunk in chunks:
        splitter.feed(chunk)
        while (frame := splitter.next_frame()) is not module.NEED_DATA:
            frames.append((frame, splitter.last_direction))
    if idle:
        splitter.line_idle()
        while (frame := splitter.next_frame()) is not module.NEED_DATA:
            frames.append((frame, splitter.last_direction))
    return (
        frames,
        splitter.discarded_noise_bytes,
        splitter.discarded_overflow_bytes,
        splitter.frames_found,
        splitter.buffered_bytes,
    )


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(SEED_FRAMES)))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "fix_crc"]))
        if kind == "flip" and frame:
            frame[draw(st.integers(0, len(frame) - 1))] ^= draw(st.integers(1, 255))
        elif kind == "cut" and frame:
            del frame[draw(st.integers(0, len(frame) - 1)) :]
        elif kind == "insert":
            frame.insert(draw(st.integers(0, len(frame))), draw(st.integers(0, 255)))
        elif kind == "fix_crc" and len(frame) > 2:
            frame[-2:] = crc16_modbus(bytes(frame[:-2])).to_bytes(2, "little")
    return bytes(frame)


adversarial = st.one_of(st.binary(max_size=300), mutated_frames())


@st.composite
def bus_streams(draw: st.DrawFn) -> bytes:
    # Real frames with noise in between: what an RS-485 port reads.
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        parts.append(draw(st.binary(max_size=6)))
        parts.append(draw(st.one_of(st.sampled_from(SEED_FRAMES), mutated_frames())))
    return b"".join(parts)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    chunks, start = [], 0
    for point in [*points, len(data)]:
        chunks.append(data[start:point])
        start = point
    return chunks


# --- compiled == pure -----------------------------------------------------------


@FAST
@given(frame=adversarial, quantity=st.one_of(st.none(), st.integers(-2, 2100)))
def test_twins_agree_on_parsing(frame: bytes, quantity: int | None) -> None:
    pure, compiled = _twins()
    assert _outcome(compiled.parse_response, frame, quantity) == _outcome(
        pure.parse_response, frame, quantity
    )
    assert _outcome(compiled.parse_request, frame) == _outcome(pure.parse_request, frame)


@HEAVY
@given(
    stream=st.one_of(bus_streams(), st.binary(max_size=1500)),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
    expect=st.sampled_from(["REQUESTS", "RESPONSES", "BOTH"]),
    idle=st.booleans(),
)
def test_twins_agree_on_splitting(stream: bytes, cuts: list[int], expect: str, idle: bool) -> None:
    pure, compiled = _twins()
    chunks = _cut(stream, cuts)
    assert _splitter_run(compiled, expect, chunks, idle) == _splitter_run(
        pure, expect, chunks, idle
    )


register_fields = st.builds(
    lambda offset, type_name, order, exponent, multiplier: (
        offset,
        type_name,
        order,
        exponent,
        multiplier,
    ),
    st.integers(-1, 70),
    st.sampled_from(
        ["INT16", "UINT16", "INT32", "UINT32", "INT64", "UINT64", "FLOAT32", "FLOAT64"]
    ),
    st.sampled_from(["ABCD", "DCBA", "CDAB", "BADC"]),
    st.integers(-31, 31),
    st.one_of(st.just(1.0), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
)


def _layout(module: ModuleType, fields: list[tuple[int, str, str, int, float]]) -> list[object]:
    return [
        module.RegisterField(
            offset, getattr(module.DataType, type_name), module.RegisterOrder(order), exp, mult
        )
        for offset, type_name, order, exp, mult in fields
    ]


@FAST
@given(payload=st.binary(max_size=130), fields=st.lists(register_fields, max_size=10))
def test_twins_agree_on_register_decoding(
    payload: bytes, fields: list[tuple[int, str, str, int, float]]
) -> None:
    pure, compiled = _twins()
    layout = _layout(pure, fields)  # the enums are shared, one layout serves both
    assert _outcome(compiled.decode_registers, payload, layout) == _outcome(
        pure.decode_registers, payload, layout
    )
    for order in pure.RegisterOrder:
        assert _outcome(compiled.decode_floats, payload, order) == _outcome(
            pure.decode_floats, payload, order
        )


builder_arguments = st.one_of(
    st.integers(-2, 70000), st.booleans(), st.none(), st.floats(allow_nan=False)
)


@FAST
@given(
    builder=st.sampled_from(
        [
            "build_read_coils",
            "build_read_discrete_inputs",
            "build_read_holding_registers",
            "build_read_input_registers",
            "build_write_single_coil",
            "build_write_single_register",
            "build_read_device_identification",
        ]
    ),
    arguments=st.tuples(builder_arguments, builder_arguments, builder_arguments),
)
def test_twins_agree_on_building(builder: str, arguments: tuple[object, ...]) -> None:
    pure, compiled = _twins()
    assert _outcome(getattr(compiled, builder), *arguments) == _outcome(
        getattr(pure, builder), *arguments
    )


@FAST
@given(
    unit_id=st.integers(-1, 250),
    address=st.integers(-1, 66000),
    registers=st.lists(st.integers(-1, 66000), max_size=130),
    coils=st.lists(st.one_of(st.booleans(), st.integers(-1, 2)), max_size=2000),
)
def test_twins_agree_on_building_multiple_writes(
    unit_id: int, address: int, registers: list[int], coils: list[object]
) -> None:
    pure, compiled = _twins()
    arguments = (unit_id, address, registers)
    assert _outcome(compiled.build_write_multiple_registers, *arguments) == _outcome(
        pure.build_write_multiple_registers, *arguments
    )
    arguments = (unit_id, address, coils)
    assert _outcome(compiled.build_write_multiple_coils, *arguments) == _outcome(
        pure.build_write_multiple_coils, *arguments
    )


# --- round trips ----------------------------------------------------------------


@FAST
@given(
    unit_id=st.integers(1, 247),
    function=st.sampled_from([1, 2, 3, 4]),
    address=st.integers(0, 65535),
    data=st.data(),
)
def test_read_requests_round_trip(
    modbus: ModuleType, unit_id: int, function: int, address: int, data: st.DataObject
) -> None:
    limit = 2000 if function <= 2 else 125
    quantity = data.draw(st.integers(1, min(limit, 65536 - address)))
    builder = {
        1: modbus.build_read_coils,
        2: modbus.build_read_discrete_inputs,
        3: modbus.build_read_holding_registers,
        4: modbus.build_read_input_registers,
    }[function]
    frame = builder(unit_id, address, quantity)
    assert modbus.parse_request(frame) == modbus.ReadRequest(unit_id, function, address, quantity)


@FAST
@given(
    unit_id=st.integers(0, 247),
    address=st.integers(0, 65535 - 123),
    registers=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=123),
    coils=st.lists(st.booleans(), min_size=1, max_size=1968),
)
def test_write_requests_round_trip(
    modbus: ModuleType, unit_id: int, address: int, registers: list[int], coils: list[bool]
) -> None:
    request = modbus.parse_request(
        modbus.build_write_multiple_registers(unit_id, address, registers)
    )
    assert (request.unit_id, request.address, request.quantity) == (
        unit_id,
        address,
        len(registers),
    )
    assert list(struct.unpack(f">{len(registers)}H", request.payload)) == registers
    coil_address = min(address, 65536 - len(coils))
    request = modbus.parse_request(modbus.build_write_multiple_coils(unit_id, coil_address, coils))
    assert request.quantity == len(coils)
    # A reply carrying the same packed bits decodes to the same coils.
    reply = _adu(bytes([max(unit_id, 1), 1, len(request.payload)]) + request.payload)
    assert list(modbus.parse_response(reply, quantity=len(coils)).bits) == coils


@FAST
@given(
    type_name=st.sampled_from(["INT16", "UINT16", "INT32", "UINT32", "INT64", "UINT64"]),
    order=st.sampled_from(["ABCD", "DCBA", "CDAB", "BADC"]),
    data=st.data(),
)
def test_integers_round_trip(
    modbus: ModuleType, type_name: str, order: str, data: st.DataObject
) -> None:
    data_type = getattr(modbus.DataType, type_name)
    bits = 16 * data_type.register_count
    signed = not type_name.startswith("U")
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    value = data.draw(st.integers(low, high))
    register_order = modbus.RegisterOrder(order)
    payload = b"\x12\x34" + modbus.encode_value(value, data_type, register_order)
    field = modbus.RegisterField(1, data_type, register_order)
    assert modbus.decode_registers(payload, [field]) == [value]


@FAST
@given(
    values=st.lists(st.floats(width=32), max_size=40),
    order=st.sampled_from(["ABCD", "DCBA", "CDAB", "BADC"]),
)
def test_floats_round_trip(modbus: ModuleType, values: list[float], order: str) -> None:
    register_order = modbus.RegisterOrder(order)
    payload = b"".join(
        modbus.encode_value(value, modbus.DataType.FLOAT32, register_order) for value in values
    )
    decoded = modbus.decode_floats(payload, register_order)
    assert _comparable(decoded) == _comparable(values)
    layout = [
        modbus.RegisterField(2 * index, modbus.DataType.FLOAT32, register_order)
        for index in range(len(values))
    ]
    assert _comparable(modbus.decode_registers(payload, layout)) == _comparable(values)


# --- the splitter does not care how the stream is cut ---------------------------


@HEAVY
@given(stream=bus_streams(), expect=st.sampled_from(["REQUESTS", "RESPONSES", "BOTH"]))
def test_byte_at_a_time_gives_the_same_frames(
    modbus: ModuleType, stream: bytes, expect: str
) -> None:
    whole = _splitter_run(modbus, expect, [stream], idle=False)
    by_byte = _splitter_run(modbus, expect, [bytes([b]) for b in stream], idle=False)
    assert by_byte == whole


@HEAVY
@given(
    noise=st.binary(max_size=12),
    frames=st.lists(st.sampled_from(RESPONSE_SEEDS), min_size=1, max_size=4),
)
def test_valid_frames_after_noise_are_never_lost(
    modbus: ModuleType, noise: bytes, frames: list[bytes]
) -> None:
    # Noise, then valid replies back to back, a silence at the end: every
    # reply comes out (noise can only delay them, or, with a 1-in-65536 CRC
    # coincidence, produce an extra frame first).
    splitter = modbus.RtuSplitter(modbus.Expect.RESPONSES)
    splitter.feed(noise + b"".join(frames))
    splitter.line_idle()
    found = []
    while (frame := splitter.next_frame()) is not modbus.NEED_DATA:
        found.append(frame)
    assert found[-len(frames) :] == frames
    assert splitter.buffered_bytes == 0


# --- hostile input: values or CodecError, nothing else -------------------------


@FAST
@given(frame=adversarial, quantity=st.one_of(st.none(), st.integers(0, 2000)))
def test_hostile_frames_give_values_or_codec_errors(
    modbus: ModuleType, frame: bytes, quantity: int | None
) -> None:
    for parse in (
        lambda: modbus.parse_response(frame, quantity),
        lambda: modbus.parse_request(frame),
    ):
        with contextlib.suppress(CodecError):
            parse()


@HEAVY
@given(stream=st.binary(max_size=3000), chunk=st.integers(1, 700))
def test_hostile_streams_stay_bounded(modbus: ModuleType, stream: bytes, chunk: int) -> None:
    splitter = modbus.RtuSplitter(modbus.Expect.BOTH, max_buffer_bytes=256)
    for start in range(0, len(stream), chunk):
        splitter.feed(stream[start : start + chunk])
        assert splitter.buffered_bytes <= 256
        while (frame := splitter.next_frame()) is not modbus.NEED_DATA:
            assert isinstance(frame, bytes)
            assert 5 <= len(frame) <= 256
        assert splitter.buffered_bytes <= 256
