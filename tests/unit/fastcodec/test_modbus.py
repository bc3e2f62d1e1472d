"""Modbus RTU codec: builders, parsers, the splitter and the register decoders,
on real bus frames (shared vectors) and on the spec's own examples."""

from __future__ import annotations

import json
import math
import struct
from types import ModuleType

import pytest

from fastcodec.crc import crc16_modbus
from fastcodec.exceptions import ChecksumError, CodecError, EncodeError, FrameError
from tests.conftest import VECTORS


def _vectors() -> dict[str, dict[str, object]]:
    data = json.loads((VECTORS / "modbus_rtu" / "frames.json").read_text())
    return {frame["id"]: frame for frame in data["frames"]}


VECTOR_FRAMES = _vectors()


def _hex(frame_id: str) -> bytes:
    return bytes.fromhex(str(VECTOR_FRAMES[frame_id]["hex"]))


def _adu(body: bytes) -> bytes:
    return body + crc16_modbus(body).to_bytes(2, "little")


# --- Builders: the Application Protocol's own examples (§6.x "Request") --------


@pytest.mark.parametrize(
    ("builder", "arguments", "pdu_hex"),
    [
        ("build_read_coils", (1, 19, 19), "01 0013 0013"),  # §6.1 example
        ("build_read_discrete_inputs", (1, 196, 22), "02 00C4 0016"),  # §6.2
        ("build_read_holding_registers", (1, 107, 3), "03 006B 0003"),  # §6.3
        ("build_read_input_registers", (1, 8, 1), "04 0008 0001"),  # §6.4
        ("build_write_single_coil", (1, 172, True), "05 00AC FF00"),  # §6.5
        ("build_write_single_register", (1, 1, 3), "06 0001 0003"),  # §6.6
        (
            "build_write_multiple_coils",
            (1, 19, [1, 0, 1, 1, 0, 0, 1, 1, 1, 0]),
            "0F 0013 000A 02 CD01",
        ),  # §6.11
        ("build_write_multiple_registers", (1, 1, [0x000A, 0x0102]), "10 0001 0002 04 000A 0102"),
        ("build_read_device_identification", (1, 1, 0), "2B 0E 01 00"),  # §6.21
    ],
)
def test_builders_give_the_spec_examples(
    modbus: ModuleType, builder: str, arguments: tuple[object, ...], pdu_hex: str
) -> None:
    frame = getattr(modbus, builder)(*arguments)
    assert frame == _adu(b"\x01" + bytes.fromhex(pdu_hex))


@pytest.mark.parametrize(
    "frame_id",
    [
        frame_id
        for frame_id, frame in VECTOR_FRAMES.items()
        if frame["dir"] == "request" and frame["crc_ok"]
    ],
)
def test_builders_reproduce_the_requests_seen_on_real_buses(
    modbus: ModuleType, frame_id: str
) -> None:
    captured = _hex(frame_id)
    request = modbus.parse_request(captured)
    builder = {3: modbus.build_read_holding_registers, 4: modbus.build_read_input_registers}
    rebuilt = builder[request.function](request.unit_id, request.address, request.quantity)
    assert rebuilt == captured, frame_id


def test_sdm630_80_register_request_decodes(modbus: ModuleType) -> None:
    request = modbus.parse_request(_hex("sdm630v2_fc04_80reg_req"))
    assert request == modbus.ReadRequest(unit_id=5, function=4, address=0, quantity=80)


@pytest.mark.parametrize(
    ("builder", "arguments"),
    [
        ("build_read_coils", (0, 0, 1)),  # broadcast read: nobody answers
        ("build_read_coils", (248, 0, 1)),
        ("build_read_coils", (1, 0, 2001)),
        ("build_read_coils", (1, 0, 0)),
        ("build_read_holding_registers", (1, 0, 126)),
        ("build_read_input_registers", (1, 65535, 2)),  # runs past 65535
        ("build_read_input_registers", (1, -1, 2)),
        ("build_read_input_registers", (1, 0, 2.0)),
        ("build_read_input_registers", (True, 0, 2)),
        ("build_write_single_coil", (1, 0, 2)),
        ("build_write_single_coil", (1, 0, "on")),
        ("build_write_single_register", (1, 0, 65536)),
        ("build_write_single_register", (1, 0, -1)),
        ("build_write_multiple_registers", (1, 0, [0] * 124)),
        ("build_write_multiple_registers", (1, 0, [])),
        ("build_write_multiple_registers", (1, 0, b"\x00\x01")),
        ("build_write_multiple_registers", (1, 0, 5)),
        ("build_write_multiple_coils", (1, 0, [True] * 1969)),
        ("build_write_multiple_coils", (1, 0, [2])),
        ("build_read_device_identification", (1, 5, 0)),
        ("build_read_device_identification", (1, 1, 256)),
    ],
)
def test_builders_refuse_out_of_range_arguments(
    modbus: ModuleType, builder: str, arguments: tuple[object, ...]
) -> None:
    with pytest.raises(EncodeError):
        getattr(modbus, builder)(*arguments)


def test_broadcast_writes_are_allowed(modbus: ModuleType) -> None:
    # Serial line §2.2: unit 0 is the broadcast address, for writes.
    assert modbus.build_write_single_register(0, 1, 2)[0] == 0
    assert modbus.build_write_multiple_coils(0, 1, [True])[0] == 0


def test_largest_requests_fit_the_spec_limits(modbus: ModuleType) -> None:
    assert len(modbus.build_write_multiple_registers(1, 0, [0xFFFF] * 123)) == 9 + 246
    assert len(modbus.build_write_multiple_coils(1, 0, [True] * 1968)) == 9 + 246
    assert modbus.parse_request(modbus.build_read_coils(247, 63536, 2000)).quantity == 2000


# --- Responses on real frames ---------------------------------------------------


def test_eastron_document_example_is_230_2_volts(modbus: ModuleType) -> None:
    # Eastron protocol PDF p.6: FC04 reply, float32 ABCD 0x43663334.
    response = modbus.parse_response(_hex("eastron_doc_voltage_resp"), quantity=2)
    assert response == modbus.ReadRegistersResponse(1, 4, bytes.fromhex("43663334"))
    assert response.registers == (0x4366, 0x3334)
    assert modbus.decode_floats(response.payload) == [pytest.approx(230.2, abs=1e-4)]


def test_sdm630_28_register_reply_decodes_14_floats(modbus: ModuleType) -> None:
    response = modbus.parse_response(_hex("sdm630v2_fc04_28reg_resp"), quantity=28)
    assert response.unit_id == 5
    assert response.function == 4
    values = modbus.decode_floats(response.payload, modbus.RegisterOrder.BIG_ENDIAN)
    assert len(values) == 14
    assert values[0] == pytest.approx(1750.335, abs=1e-3)
    assert values[1] == pytest.approx(9007.715, abs=1e-3)
    assert values[4:10] == [0.0] * 6
    assert values[10] == pytest.approx(1000.063, abs=1e-3)


def test_carlo_gavazzi_int32_word_swapped_is_233_1_volts(modbus: ModuleType) -> None:
    # ET112: INT32 with the low word first (CDAB), volts x 0.1.
    response = modbus.parse_response(_hex("cg_et112_fc03_resp"))
    field = modbus.RegisterField(0, modbus.DataType.INT32, modbus.RegisterOrder.CDAB, -1)
    assert modbus.decode_registers(response.payload, [field]) == [233.1]
    raw = modbus.RegisterField(0, modbus.DataType.INT32, modbus.RegisterOrder.WORD_SWAPPED)
    assert modbus.decode_registers(response.payload, [raw]) == [2331]


def test_sdm120_clone_truncated_reply_fails_the_crc(modbus: ModuleType) -> None:
    frame = _hex("sdm120_clone_glitch_resp")[1:]  # drop the leading glitch byte
    with pytest.raises(ChecksumError) as caught:
        modbus.parse_response(frame)
    assert caught.value.offset == len(frame) - 2


def test_bus_glitch_frame_whole_is_refused_but_its_inner_frame_parses(modbus: ModuleType) -> None:
    wrapped = _hex("bus_glitch_wrapped_resp")
    with pytest.raises(CodecError):
        modbus.parse_response(wrapped)
    inner = modbus.parse_response(wrapped[1:-1])
    assert modbus.decode_floats(inner.payload) == [pytest.approx(233.41, abs=1e-2)]


SPEC_COIL_BITS = tuple(bool(b"\xcd\x6b\x05"[i >> 3] >> (i & 7) & 1) for i in range(24))


@pytest.mark.parametrize(
    ("body_hex", "type_name", "fields"),
    [
        # §6.1 example reply, coils 20..38 = CD 6B 05 (no quantity: padding kept)
        ("01 01 03 CD6B05", "ReadBitsResponse", (1, 1, SPEC_COIL_BITS)),
        ("01 05 00AC FF00", "WriteSingleCoilResponse", (1, 172, True)),  # §6.5
        ("01 05 00AC 0000", "WriteSingleCoilResponse", (1, 172, False)),
        ("01 06 0001 0003", "WriteSingleRegisterResponse", (1, 1, 3)),  # §6.6
        ("01 0F 0013 000A", "WriteMultipleResponse", (1, 15, 0x13, 10)),  # §6.11
        ("01 10 0001 0002", "WriteMultipleResponse", (1, 16, 1, 2)),  # §6.12
    ],
)
def test_write_echoes_and_bit_replies(
    modbus: ModuleType, body_hex: str, type_name: str, fields: tuple[object, ...]
) -> None:
    response = modbus.parse_response(_adu(bytes.fromhex(body_hex)))
    assert response == getattr(modbus, type_name)(*fields)


def test_coil_reply_is_trimmed_to_the_quantity_asked(modbus: ModuleType) -> None:
    # §6.1: 19 coils from 20; status of 27..20 = CD, 35..28 = 6B, 38..36 = 05.
    response = modbus.parse_response(_adu(bytes.fromhex("01 01 03 CD6B05")), quantity=19)
    assert len(response.bits) == 19
    assert response.bits[:8] == (True, False, True, True, False, False, True, True)
    assert response.bits[16:] == (True, False, True)
    with pytest.raises(FrameError):
        modbus.parse_response(_adu(bytes.fromhex("01 01 03 CD6B05")), quantity=25)


def test_exception_response_is_a_value(modbus: ModuleType) -> None:
    # §7 example: function 0x01 refused with code 02 (illegal data address).
    response = modbus.parse_response(_adu(bytes.fromhex("0A 81 02")))
    assert response == modbus.ExceptionResponse(unit_id=10, function=1, exception_code=2)
    assert response.exception_name == "ILLEGAL_DATA_ADDRESS"
    unknown = modbus.parse_response(_adu(bytes.fromhex("0A 84 7F")))
    assert unknown.exception_name == "UNKNOWN_0x7F"


def test_device_identification_reply(modbus: ModuleType) -> None:
    # §6.21 example: basic objects, conformity 0x01, one message.
    objects = [(0, b"Company identification"), (1, b"Product code XX"), (2, b"V2.11")]
    body = bytes.fromhex("01 2B 0E 01 01 00 00") + bytes([len(objects)])
    for object_id, value in objects:
        body += bytes((object_id, len(value))) + value
    response = modbus.parse_response(_adu(body))
    assert response == modbus.DeviceIdentificationResponse(1, 1, 1, False, 0, tuple(objects))
    assert response.text()[2] == "V2.11"


@pytest.mark.parametrize(
    ("body_hex", "offset"),
    [
        ("01 04 05 43663334", 2),  # odd byte count in a register reply
        ("01 04 06 43663334", 2),  # byte count larger than the frame
        ("01 04 00", 2),  # empty read
        ("00 04 02 0001", 0),  # unit 0 never answers
        ("F8 04 02 0001", 0),  # reserved unit
        ("01 07 00", 1),  # function not supported
        ("01 00 02 0001", 1),
        ("01 05 00AC 1234", 4),  # coil value neither FF00 nor 0000
        ("01 81 02 00", 2),  # exception response too long
        ("01 2B 0D 01 01 00 00 00", 2),  # MEI type 13
        ("01 2B 0E 01 01 07 00 00", 5),  # more-follows neither 00 nor FF
        ("01 2B 0E 01 01 00 00 01 00 05 41", 9),  # object runs past the frame
        ("01 2B 0E 01 01 00 00 00 41", 8),  # trailing byte
    ],
)
def test_malformed_responses_raise_frame_error_with_offset(
    modbus: ModuleType, body_hex: str, offset: int
) -> None:
    with pytest.raises(FrameError) as caught:
        modbus.parse_response(_adu(bytes.fromhex(body_hex)))
    assert not isinstance(caught.value, ChecksumError)
    assert caught.value.offset == offset


@pytest.mark.parametrize("frame", [b"", b"\x01", b"\x01\x04\x00", bytes(300)])
def test_short_or_oversized_input_is_a_frame_error(modbus: ModuleType, frame: bytes) -> None:
    with pytest.raises(FrameError):
        modbus.parse_response(frame)
    with pytest.raises(FrameError):
        modbus.parse_request(frame)


@pytest.mark.parametrize("not_bytes", [5, "0104", None, [1, 4]])
def test_parsers_refuse_what_is_not_bytes(modbus: ModuleType, not_bytes: object) -> None:
    with pytest.raises(TypeError):
        modbus.parse_response(not_bytes)
    with pytest.raises(TypeError):
        modbus.RtuSplitter().feed(not_bytes)


@pytest.mark.parametrize("buffer_type", [bytes, bytearray, memoryview])
def test_parsers_accept_any_bytes_like(modbus: ModuleType, buffer_type: type) -> None:
    frame = buffer_type(_hex("eastron_doc_voltage_resp"))
    assert modbus.parse_response(frame).payload == bytes.fromhex("43663334")
    assert modbus.decode_floats(buffer_type(bytes.fromhex("43663334")))[0] == pytest.approx(230.2)


def test_requests_parse_back(modbus: ModuleType) -> None:
    assert modbus.parse_request(modbus.build_write_single_coil(3, 7, True)) == (
        modbus.WriteSingleRequest(3, 5, 7, 0xFF00)
    )
    assert modbus.parse_request(modbus.build_write_multiple_registers(3, 7, [1, 2])) == (
        modbus.WriteMultipleRequest(3, 16, 7, 2, bytes.fromhex("00010002"))
    )
    assert modbus.parse_request(modbus.build_read_device_identification(3, 4, 5)) == (
        modbus.DeviceIdentificationRequest(3, 4, 5)
    )
    with pytest.raises(FrameError):
        modbus.parse_request(_adu(bytes.fromhex("01 83 02")))


# --- Splitter -------------------------------------------------------------------


def _drain(splitter: object) -> list[bytes]:
    # Both twins share NEED_DATA (fastcodec._modbus_types).
    from fastcodec._modbus_types import NEED_DATA

    frames = []
    while (frame := splitter.next_frame()) is not NEED_DATA:  # type: ignore[attr-defined]
        frames.append(frame)
    return frames


def test_glitch_bytes_around_a_valid_reply_are_dropped_and_counted(modbus: ModuleType) -> None:
    # 0x00 before and after a valid FC04 reply (driver enable/release on an
    # undriven bus): pymodbus 3.16 drops the whole reply here, we keep it.
    splitter = modbus.RtuSplitter(modbus.Expect.RESPONSES)
    splitter.feed(_hex("bus_glitch_wrapped_resp"))
    assert _drain(splitter) == [bytes.fromhex("01040443696978106e")]
    assert splitter.last_direction is modbus.Direction.RESPONSE
    assert splitter.discarded_noise_bytes == 2
    assert splitter.buffered_bytes == 0
    assert splitter.frames_found == 1


@pytest.mark.parametrize("expect", ["REQUESTS", "RESPONSES", "BOTH"])
def test_glitch_case_byte_at_a_time(modbus: ModuleType, expect: str) -> None:
    splitter = modbus.RtuSplitter(getattr(modbus.Expect, expect))
    frames = []
    for byte in _hex("bus_glitch_wrapped_resp"):
        splitter.feed(bytes([byte]))
        frames += _drain(splitter)
    splitter.line_idle()
    frames += _drain(splitter)
    expected = [] if expect == "REQUESTS" else [bytes.fromhex("01040443696978106e")]
    assert frames == expected
    assert splitter.buffered_bytes == 0
    assert splitter.discarded_noise_bytes == 11 - 9 * len(expected)


def test_truncated_reply_waits_then_is_noise_after_silence(modbus: ModuleType) -> None:
    splitter = modbus.RtuSplitter()
    splitter.feed(_hex("sdm120_clone_glitch_resp"))
    assert splitter.next_frame() is modbus.NEED_DATA
    splitter.line_idle()
    assert splitter.next_frame() is modbus.NEED_DATA
    assert splitter.discarded_noise_bytes == 9
    # The next poll's reply comes through cleanly.
    good = _hex("eastron_doc_voltage_resp")
    splitter.feed(good)
    assert splitter.next_frame() == good


def test_truncated_reply_followed_by_a_good_one_without_silence(modbus: ModuleType) -> None:
    splitter = modbus.RtuSplitter()
    good = _hex("eastron_doc_voltage_resp")
    splitter.feed(_hex("sdm120_clone_glitch_resp") + good)
    assert _drain(splitter) == [good]
    assert splitter.discarded_noise_bytes == 9


def test_sniffer_sees_request_and_reply(modbus: ModuleType) -> None:
    request = _hex("eastron_voltage_req")
    reply = _hex("eastron_doc_voltage_resp")
    splitter = modbus.RtuSplitter(modbus.Expect.BOTH)
    splitter.feed(b"\x00" + request + b"\xff" + reply)
    assert splitter.next_frame() == request
    assert splitter.last_direction is modbus.Direction.REQUEST
    assert splitter.next_frame() == reply
    assert splitter.last_direction is modbus.Direction.RESPONSE
    assert splitter.next_frame() is modbus.NEED_DATA
    assert splitter.discarded_noise_bytes == 2


def test_master_side_sees_every_response_kind(modbus: ModuleType) -> None:
    replies = [
        _adu(bytes.fromhex("01 01 03 CD6B05")),
        _adu(bytes.fromhex("01 05 00AC FF00")),
        _adu(bytes.fromhex("01 10 0001 0002")),
        _adu(bytes.fromhex("0A 81 02")),
        _adu(bytes.fromhex("01 2B 0E 01 01 00 00 01 00 03 41 42 43")),
        _hex("sdm630v2_fc04_28reg_resp"),
    ]
    splitter = modbus.RtuSplitter()
    splitter.feed(b"".join(replies))
    assert _drain(splitter) == replies
    assert splitter.discarded_noise_bytes == 0


def test_slave_side_sees_every_request_kind(modbus: ModuleType) -> None:
    requests = [
        modbus.build_read_coils(1, 0, 10),
        modbus.build_write_multiple_coils(2, 0, [True] * 20),
        modbus.build_write_multiple_registers(0, 5, [1, 2, 3]),
        modbus.build_read_device_identification(3),
        modbus.build_write_single_coil(4, 1, False),
    ]
    splitter = modbus.RtuSplitter(modbus.Expect.REQUESTS)
    for request in requests:
        splitter.feed(b"\xfe" + request)
    assert _drain(splitter) == requests
    assert splitter.discarded_noise_bytes == len(requests)


def test_pure_noise_cannot_grow_the_buffer(modbus: ModuleType) -> None:
    splitter = modbus.RtuSplitter(max_buffer_bytes=512)
    noise = bytes([0x01, 0x03, 0xFA]) * 1000  # claims a 255-byte reply, over and over
    for _ in range(20):
        splitter.feed(noise)
        assert splitter.buffered_bytes <= 512
    splitter.line_idle()
    assert splitter.next_frame() is modbus.NEED_DATA
    assert splitter.buffered_bytes == 0
    assert splitter.discarded_noise_bytes + splitter.discarded_overflow_bytes == 20 * len(noise)


def test_splitter_arguments_are_checked(modbus: ModuleType) -> None:
    with pytest.raises(TypeError):
        modbus.RtuSplitter("responses")
    with pytest.raises(ValueError, match="max_buffer_bytes"):
        modbus.RtuSplitter(modbus.Expect.BOTH, max_buffer_bytes=100)


# --- Register decoding ----------------------------------------------------------

ORDERS_32 = {
    # value 0x11223344 (A=11, B=22, C=33, D=44) on the wire per order
    "ABCD": "11223344",
    "DCBA": "44332211",
    "CDAB": "33441122",
    "BADC": "22114433",
}
ORDERS_64 = {
    "ABCD": "1122334455667788",
    "DCBA": "8877665544332211",
    "CDAB": "7788556633441122",
    "BADC": "2211443366558877",
}


@pytest.mark.parametrize("order", list(ORDERS_32))
def test_every_32_and_64_bit_order(modbus: ModuleType, order: str) -> None:
    register_order = modbus.RegisterOrder(order)
    fields = [modbus.RegisterField(0, modbus.DataType.UINT32, register_order)]
    assert modbus.decode_registers(bytes.fromhex(ORDERS_32[order]), fields) == [0x11223344]
    fields = [modbus.RegisterField(0, modbus.DataType.UINT64, register_order)]
    assert modbus.decode_registers(bytes.fromhex(ORDERS_64[order]), fields) == [0x1122334455667788]
    float_bytes = struct.pack(">f", -1.5).hex()
    wire = bytes.fromhex("".join(float_bytes[2 * "ABCD".index(c) :][:2] for c in order))
    assert modbus.decode_floats(wire, register_order) == [-1.5]
    assert modbus.encode_value(0x11223344, modbus.DataType.UINT32, register_order) == (
        bytes.fromhex(ORDERS_32[order])
    )
    assert modbus.encode_value(0x1122334455667788, modbus.DataType.UINT64, register_order) == (
        bytes.fromhex(ORDERS_64[order])
    )


def test_16_bit_orders_and_signs(modbus: ModuleType) -> None:
    payload = bytes.fromhex("FFFE")
    types = modbus.DataType
    fields = [
        modbus.RegisterField(0, types.INT16),
        modbus.RegisterField(0, types.UINT16),
        modbus.RegisterField(0, types.INT16, modbus.RegisterOrder.CDAB),
        modbus.RegisterField(0, types.UINT16, modbus.RegisterOrder.DCBA),
        modbus.RegisterField(0, types.UINT16, modbus.RegisterOrder.BADC),
    ]
    assert modbus.decode_registers(payload, fields) == [-2, 0xFFFE, -2, 0xFEFF, 0xFEFF]


def test_mixed_layout_with_scales(modbus: ModuleType) -> None:
    types = modbus.DataType
    payload = (
        struct.pack(">h", -1234)
        + struct.pack(">I", 123456)
        + struct.pack(">q", -(2**40))
        + struct.pack(">d", 0.25)
        + struct.pack(">f", 50.0)
    )
    layout = [
        modbus.RegisterField(0, types.INT16, decimal_exponent=-2),  # -12.34
        modbus.RegisterField(1, types.UINT32, decimal_exponent=-3),  # 123.456
        modbus.RegisterField(3, types.INT64),
        modbus.RegisterField(7, types.FLOAT64, multiplier=4.0),
        modbus.RegisterField(11, types.FLOAT32, decimal_exponent=3),
        modbus.RegisterField(1, types.UINT32, multiplier=0.5, decimal_exponent=1),
    ]
    assert modbus.decode_registers(payload, layout) == [
        -12.34,
        123.456,
        -(2**40),
        1.0,
        50000.0,
        617280.0,
    ]


def test_nan_and_infinities_pass_through(modbus: ModuleType) -> None:
    payload = struct.pack(">3f", math.inf, -math.inf, math.nan) + struct.pack(">d", math.nan)
    floats = modbus.decode_floats(payload[:12])
    assert floats[:2] == [math.inf, -math.inf]
    assert math.isnan(floats[2])
    fields = [modbus.RegisterField(6, modbus.DataType.FLOAT64, decimal_exponent=-1)]
    assert math.isnan(modbus.decode_registers(payload, fields)[0])


def test_decoders_refuse_payloads_that_do_not_fit(modbus: ModuleType) -> None:
    with pytest.raises(FrameError):
        modbus.decode_floats(b"\x00\x00\x00")
    with pytest.raises(FrameError):
        modbus.decode_floats(b"\x00\x00\x00\x00\x00\x00")
    with pytest.raises(FrameError):
        modbus.decode_registers(b"\x00\x00\x00", [])
    with pytest.raises(FrameError) as caught:
        modbus.decode_registers(bytes(4), [modbus.RegisterField(1, modbus.DataType.FLOAT32)])
    assert caught.value.offset == 2
    with pytest.raises(FrameError):
        modbus.decode_registers(bytes(4), [modbus.RegisterField(2**70, modbus.DataType.INT16)])


def test_bad_layouts_are_caller_errors(modbus: ModuleType) -> None:
    with pytest.raises(TypeError):
        modbus.decode_registers(bytes(4), [modbus.RegisterField(0, "float32")])
    with pytest.raises(TypeError):
        modbus.decode_floats(bytes(4), "ABCD")
    with pytest.raises(ValueError):
        modbus.decode_registers(bytes(4), [modbus.RegisterField(-1, modbus.DataType.INT16)])
    with pytest.raises(ValueError):
        modbus.decode_registers(
            bytes(4), [modbus.RegisterField(0, modbus.DataType.INT16, decimal_exponent=99)]
        )


@pytest.mark.parametrize(
    ("value", "data_type"),
    [(32768, "INT16"), (-1, "UINT16"), (2**64, "UINT64"), (1e39, "FLOAT32"), ("1", "FLOAT64")],
)
def test_encode_value_refuses_what_does_not_fit(
    modbus: ModuleType, value: object, data_type: str
) -> None:
    with pytest.raises(EncodeError):
        modbus.encode_value(value, getattr(modbus.DataType, data_type))


def test_selector_exposes_the_api() -> None:
    from fastcodec import _modbus_py, modbus

    assert set(_modbus_py.__all__) <= set(modbus.__all__)
    assert modbus.IMPLEMENTATION in {"python", "cython"}
