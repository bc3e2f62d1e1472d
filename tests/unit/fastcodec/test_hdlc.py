"""DLMS HDLC (IEC 62056-46) and the IEC 62056-47 wrapper, on real and synthetic vectors.

Every test runs on both twins through the `hdlc` fixture.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from fastcodec.exceptions import ChecksumError, CodecError, EncodeError, FrameError
from tests.conftest import VECTORS

DLMS = VECTORS / "dlms"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DLMS / name).read_text())
    return data


CURATED = _load("curated_real_hdlc_frames.json")["frames"]
AMSHAN = {v["name"]: v for v in _load("amshan__tests_test_hdlc.json")["vectors"]}
COSEM = {v["name"]: v for v in _load("dlms-cosem__tests_test_hdlc_test_hdlc.json")["vectors"]}
SESSION = _load("synthetic_gurux_loopback_session.json")["frames"]
UDP = {v["name"]: v for v in _load("dlms-cosem__tests_test_udp_message.json")["vectors"]}

# IEC 62056-46 §6.4.4: SNRM from client 16 (0x21) to server logical 1, physical 17
# (2-byte address 0x02 0x23), P=1, no information field, so no HCS.
SNRM_TO_1_17 = bytes.fromhex("7ea00802232193bd647e")
# amshan FRAME_SHORT_INFO (without flags): I frame, HCS 0xA027, info 02 01, FCS 0xDEE7.
FRAME_SHORT_INFO = bytes.fromhex("a00c0102011027a00201e7de")
FRAME_EMPTY_INFO = bytes.fromhex("a00801020110378d")


def _drain(splitter: Any, need_data: object) -> list[Any]:
    frames = []
    while (frame := splitter.next_frame()) is not need_data:
        frames.append(frame)
    return frames


def _check_annotations(hdlc: ModuleType, raw: bytes, notes: dict[str, Any]) -> None:
    frame = hdlc.parse_frame(raw)
    assert frame.segmented is notes["segmented"]
    dest = hdlc.encode_address(frame.destination_address, frame.destination_address_length)
    src = hdlc.encode_address(frame.source_address, frame.source_address_length)
    assert dest.hex() == notes["dest"]
    assert src.hex() == notes["src"]
    control = hdlc.encode_control(
        frame.kind, frame.send_sequence or 0, frame.receive_sequence or 0, frame.poll_final
    )
    assert control == int(notes["control"], 16)
    assert frame.information.hex() == notes.get("info_hex", "")
    assert frame.frame_length == len(raw) - 2


# --- real frames -------------------------------------------------------------------------


@pytest.mark.parametrize("vector", CURATED, ids=[f["id"] for f in CURATED])
def test_curated_real_frames_match_their_annotations(hdlc: ModuleType, vector: dict) -> None:
    _check_annotations(hdlc, bytes.fromhex(vector["hex"]), vector["hdlc"])


def test_aidon_push_is_a_ui_frame_from_a_2_byte_address(hdlc: ModuleType) -> None:
    # IEC 62056-46 §6.4.4: UI (0x13, P/F=1) to 0x41 (client 32) from 0x0883.
    frame = hdlc.parse_frame(bytes.fromhex(CURATED[0]["hex"]))
    assert frame.kind is hdlc.FrameKind.UI
    assert (frame.destination_address, frame.destination_address_length) == (32, 1)
    assert hdlc.server_address_parts(frame.source_address, 2) == (4, 65)
    assert frame.frame_length == 579
    assert frame.information.startswith(bytes.fromhex("e6e7000f"))


def test_aare_comes_from_server_1_physical_17(hdlc: ModuleType) -> None:
    frame = hdlc.parse_frame(bytes.fromhex(COSEM["in_data"]["hex"]))
    assert hdlc.server_address_parts(frame.source_address, frame.source_address_length) == (1, 17)
    assert frame.destination_address == 16
    assert (frame.kind, frame.send_sequence, frame.receive_sequence) == (hdlc.FrameKind.I, 0, 1)
    assert frame.information == bytes.fromhex(COSEM["information_part"]["hex"])


def test_segmented_iframe_carries_the_s_bit(hdlc: ModuleType) -> None:
    # Format 0xA87E: type 3, S=1, length 0x07E = 126 (a 0x7E that is no flag).
    frame = hdlc.parse_frame(bytes.fromhex(COSEM["frame"]["hex"]))
    assert frame.segmented
    assert (frame.send_sequence, frame.receive_sequence, frame.poll_final) == (3, 4, True)
    assert frame.frame_length == 0x7E


@pytest.mark.parametrize(
    "name",
    [n for n, v in COSEM.items() if "hdlc" in v],
    ids=[n for n, v in COSEM.items() if "hdlc" in v],
)
def test_dlms_cosem_frames_match_their_annotations(hdlc: ModuleType, name: str) -> None:
    _check_annotations(hdlc, bytes.fromhex(COSEM[name]["hex"]), COSEM[name]["hdlc"])


def test_dlms_cosem_not_a_frame_is_refused(hdlc: ModuleType) -> None:
    with pytest.raises(FrameError) as caught:
        hdlc.parse_frame(bytes.fromhex(COSEM["inline@line79"]["hex"]))  # 7e 66666666 7e
    assert caught.value.offset is not None


def test_ua_parameters_of_the_real_ua(hdlc: ModuleType) -> None:
    # IEC 62056-46 §6.4.4.4.3.2: 0x81 0x80 len, max info 0x9A both ways, windows 1
    # (the window values on 4 bytes).
    frame = hdlc.parse_frame(bytes.fromhex(COSEM["out_data"]["hex"]))
    assert frame.kind is hdlc.FrameKind.UA
    assert hdlc.parse_parameters(frame.information) == hdlc.HdlcParameters(154, 154, 1, 1)


# --- amshan stream cases -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "information"),
    [
        ("FRAME_EMPTY_INFO", ""),
        ("FRAME_SHORT_INFO", "0201"),
        ("FRAME_WITH_ESCAPE_CHARACTER_IN_INFO", None),
        ("FRAME_WITH_FLAG_SEQUENCE_CHARACTER_IN_INFO", None),
    ],
)
def test_amshan_frames_without_flags_parse(
    hdlc: ModuleType, name: str, information: str | None
) -> None:
    raw = bytes.fromhex(AMSHAN[name]["hex"])
    frame = hdlc.parse_frame(raw)
    expected = raw[8:-2] if information is None else bytes.fromhex(information)
    assert frame.information == expected
    assert hdlc.parse_frame(b"\x7e" + raw + b"\x7e") == frame


def test_byte_stuffed_frame_is_refused_not_unstuffed(hdlc: ModuleType) -> None:
    # IEC 62056-46 has no transparency: the length field (13) rules and 0x7D is data.
    # The sender stuffed 3 bytes, so the frame is 16 bytes long: not a valid frame.
    with pytest.raises(FrameError):
        hdlc.parse_frame(bytes.fromhex(AMSHAN["STUFFED_FRAME_SHORT_INFO"]["hex"]))
    splitter = hdlc.FrameSplitter()
    splitter.feed(bytes.fromhex(AMSHAN["data_feed"]["hex"]))
    assert _drain(splitter, hdlc.NEED_DATA) == []
    assert splitter.bad_frames == 1


@pytest.mark.parametrize(
    ("name", "informations", "bad_frames"),
    [
        ("inline@line25", ["e6e7000f40000000000101020309060100010700ff060000067d02020f00161b"], 0),
        ("inline@line43", ["e6e7000f40000000090c07e4020f06011922ff8000000201060000157e"], 0),
        ("inline@line81", [""], 0),
        ("inline@line95", [], 0),  # too short: the length field waits for a byte more
        ("inline@line105", [], 1),  # 0x7D 0x7E abort: no closing flag at the length
        ("inline@line117", ["0201", ""], 0),  # one flag shared by two frames
        ("inline@line139", ["0201", ""], 0),  # two flags between frames
        ("inline@line162", ["0201", ""], 0),  # six flags between frames
        ("inline@line62", ["0201"], 0),  # garbage before the first flag
        ("inline@line63", ["0201"], 0),
        ("inline@line205", [], 0),  # closing flag not received yet
    ],
)
def test_amshan_stream_cases(
    hdlc: ModuleType, name: str, informations: list[str], bad_frames: int
) -> None:
    splitter = hdlc.FrameSplitter()
    splitter.feed(bytes.fromhex(AMSHAN[name]["hex"]))
    frames = _drain(splitter, hdlc.NEED_DATA)
    assert [f.information.hex() for f in frames] == informations
    assert splitter.bad_frames == bad_frames


def test_garbage_is_counted(hdlc: ModuleType) -> None:
    splitter = hdlc.FrameSplitter()
    splitter.feed(bytes.fromhex(AMSHAN["inline@line63"]["hex"]))
    _drain(splitter, hdlc.NEED_DATA)
    assert splitter.discarded_bytes == 7


def test_too_long_frame_is_discarded(hdlc: ModuleType) -> None:
    splitter = hdlc.FrameSplitter()
    splitter.feed(b"\x7e" + FRAME_SHORT_INFO + bytes(2100))
    assert _drain(splitter, hdlc.NEED_DATA) == []
    assert splitter.bad_frames == 1
    assert splitter.buffered_bytes == 0


# --- the gurux loopback session --------------------------------------------------------------


@pytest.mark.parametrize("step", range(len(SESSION)), ids=[f["step"] for f in SESSION])
def test_gurux_session_frames_match_their_annotations(hdlc: ModuleType, step: int) -> None:
    vector = SESSION[step]
    _check_annotations(hdlc, bytes.fromhex(vector["hex"]), vector["hdlc"])


def test_gurux_session_through_the_splitter_and_reassembler(hdlc: ModuleType) -> None:
    stream = b"".join(bytes.fromhex(f["hex"]) for f in SESSION)
    splitter = hdlc.FrameSplitter()
    splitter.feed(stream)
    frames = _drain(splitter, hdlc.NEED_DATA)
    assert len(frames) == len(SESSION)
    assert (splitter.bad_frames, splitter.discarded_bytes) == (0, 0)
    kinds = [f.kind.name for f in frames]
    assert kinds[:2] == ["SNRM", "UA"]
    assert kinds[-2:] == ["DISC", "UA"]
    assert kinds.count("RR") == 5
    assert hdlc.parse_parameters(frames[1].information) == hdlc.HdlcParameters()

    server_frames = [f for f in frames if f.source_address == 1 and f.kind is hdlc.FrameKind.I]
    reassembler = hdlc.Reassembler()
    apdus = [reassembler.add(f) for f in server_frames]
    complete = [a for a in apdus if a is not hdlc.NEED_DATA]
    # AARE, GET 1.8.0, GET capture objects, the buffer, RLRE.
    assert len(complete) == 5
    buffer_apdu = complete[3]
    assert sum(f.segmented for f in frames) == 5
    # LLC, GET response normal, invoke id, data, array of 24 rows.
    assert buffer_apdu.startswith(bytes.fromhex("e6e700c401c1000118"))
    expected = b"".join(bytes.fromhex(f["hdlc"]["info_hex"]) for f in SESSION[9:21:2])
    assert buffer_apdu == expected
    assert buffer_apdu.count(bytes.fromhex("0204090c07e8")) == 24


def test_rr_frames_acknowledge_each_segment(hdlc: ModuleType) -> None:
    # Control 0x91: RR, N(R)=4, P=1 (ISO/IEC 13239 S frame).
    rr = hdlc.parse_frame(bytes.fromhex(SESSION[10]["hex"]))
    assert (rr.kind, rr.receive_sequence, rr.poll_final) == (hdlc.FrameKind.RR, 4, True)
    assert rr.send_sequence is None and rr.information == b""


# --- control field -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("control", "kind", "ns", "nr", "pf"),
    [
        (0x93, "SNRM", None, None, True),
        (0x73, "UA", None, None, True),
        (0x53, "DISC", None, None, True),
        (0x1F, "DM", None, None, True),
        (0x97, "FRMR", None, None, True),
        (0x13, "UI", None, None, True),
        (0x03, "UI", None, None, False),
        (0x10, "I", 0, 0, True),
        (0x96, "I", 3, 4, True),
        (0xFE, "I", 7, 7, True),
        (0x91, "RR", None, 4, True),
        (0xB5, "RNR", None, 5, True),
        (0x01, "RR", None, 0, False),
    ],
)
def test_control_field(
    hdlc: ModuleType, control: int, kind: str, ns: int | None, nr: int | None, pf: bool
) -> None:
    decoded = hdlc.decode_control(control)
    assert decoded == (hdlc.FrameKind[kind], ns, nr, pf)
    assert hdlc.encode_control(decoded[0], ns or 0, nr or 0, pf) == control


@pytest.mark.parametrize("control", [0x09, 0x0D, 0x2F, 0xE3, 0x23])
def test_control_fields_iec_62056_46_does_not_use(hdlc: ModuleType, control: int) -> None:
    with pytest.raises(FrameError):
        hdlc.decode_control(control)


def test_encode_control_refuses_bad_sequence_numbers(hdlc: ModuleType) -> None:
    with pytest.raises(EncodeError):
        hdlc.encode_control(hdlc.FrameKind.I, 8, 0)
    with pytest.raises(EncodeError):
        hdlc.encode_control(hdlc.FrameKind.RR, 0, -1)


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "length", "field"),
    [
        (16, 1, "21"),
        (1, 1, "03"),
        (145, 2, "0223"),  # upper 1, lower 17
        (577, 2, "0883"),
        ((1 << 14) | 17, 4, "00020023"),  # upper 1, lower 17 on 4 bytes
        (0x7F, 0, "ff"),
        (0x80, 0, "0201"),
    ],
)
def test_address_fields(hdlc: ModuleType, value: int, length: int, field: str) -> None:
    assert hdlc.encode_address(value, length).hex() == field


def test_server_address_parts(hdlc: ModuleType) -> None:
    assert hdlc.server_address(1, 17, 2) == 145
    assert hdlc.server_address_parts(145, 2) == (1, 17)
    assert hdlc.server_address(0x3FFF, 0x3FFE, 4) == (0x3FFF << 14) | 0x3FFE
    assert hdlc.server_address_parts((5 << 14) | 9, 4) == (5, 9)
    assert hdlc.server_address(3, 0, 1) == 3
    for bad in [(128, 0, 2), (1, 1, 1), (1, 2, 3)]:
        with pytest.raises(EncodeError):
            hdlc.server_address(*bad)


@pytest.mark.parametrize(
    ("value", "length"), [(128, 1), (0x4000, 2), (1 << 28, 4), (-1, 0), (1, 3)]
)
def test_encode_address_refuses(hdlc: ModuleType, value: int, length: int) -> None:
    with pytest.raises(EncodeError):
        hdlc.encode_address(value, length)


# --- build -----------------------------------------------------------------------------------


def test_build_snrm_matches_the_real_one(hdlc: ModuleType) -> None:
    built = hdlc.build_frame(
        hdlc.FrameKind.SNRM, hdlc.server_address(1, 17, 2), 16, destination_address_length=2
    )
    assert built == SNRM_TO_1_17


@pytest.mark.parametrize("vector", CURATED, ids=[f["id"] for f in CURATED])
def test_build_reproduces_every_curated_frame(hdlc: ModuleType, vector: dict) -> None:
    raw = bytes.fromhex(vector["hex"])
    frame = hdlc.parse_frame(raw)
    rebuilt = hdlc.build_frame(
        frame.kind,
        frame.destination_address,
        frame.source_address,
        frame.information,
        send_sequence=frame.send_sequence or 0,
        receive_sequence=frame.receive_sequence or 0,
        poll_final=frame.poll_final,
        segmented=frame.segmented,
        destination_address_length=frame.destination_address_length,
        source_address_length=frame.source_address_length,
    )
    assert rebuilt == raw


def test_build_refuses_a_frame_over_the_length_field(hdlc: ModuleType) -> None:
    with pytest.raises(EncodeError):
        hdlc.build_frame(hdlc.FrameKind.I, 1, 16, bytes(2040))


# --- parse errors ----------------------------------------------------------------------------


def _damaged(raw: bytes, index: int, xor: int = 0x01) -> bytes:
    damaged = bytearray(raw)
    damaged[index] ^= xor
    return bytes(damaged)


def test_bad_fcs_is_a_checksum_error_at_the_fcs(hdlc: ModuleType) -> None:
    raw = SNRM_TO_1_17
    with pytest.raises(ChecksumError) as caught:
        hdlc.parse_frame(_damaged(raw, 7))
    assert caught.value.what == "HDLC FCS"
    assert caught.value.offset == 7
    assert caught.value.received == 0x64BD ^ 0x01


def test_bad_hcs_is_a_checksum_error_at_the_hcs(hdlc: ModuleType) -> None:
    raw = bytes.fromhex(CURATED[2]["hex"])  # AARE
    with pytest.raises(ChecksumError) as caught:
        hdlc.parse_frame(_damaged(raw, 6))  # the control byte: HCS fails first
    assert caught.value.what == "HDLC HCS"
    assert caught.value.offset == 7


@pytest.mark.parametrize(
    ("raw", "offset"),
    [
        (b"", 0),
        (b"\x7e", 0),
        (bytes.fromhex("7ea00802232193bd64"), 8),  # no closing flag
        (bytes.fromhex("7eb00802232193bd647e"), 1),  # format type 0xB
        (bytes.fromhex("7ea00902232193bd647e"), 1),  # length 9 for 8 bytes
        (bytes.fromhex("7ea0050223217e"), 1),  # below the 7-byte minimum
        (bytes.fromhex("7ea0080202232193bd7e"), 3),  # 3-byte destination address
        (bytes.fromhex("7ea008020202022193bd647e"), 1),  # length mismatch first
    ],
)
def test_malformed_frames_give_frame_errors_with_offsets(
    hdlc: ModuleType, raw: bytes, offset: int
) -> None:
    with pytest.raises(FrameError) as caught:
        hdlc.parse_frame(raw)
    assert caught.value.offset == offset


def test_five_byte_address_is_refused(hdlc: ModuleType) -> None:
    with pytest.raises(FrameError) as caught:
        hdlc.parse_frame(bytes.fromhex("a00b020202020221930000"))
    assert caught.value.offset == 2


def test_rej_control_is_refused_at_its_offset(hdlc: ModuleType) -> None:
    raw = hdlc.build_frame(hdlc.FrameKind.RR, 1, 16)
    frame = bytearray(raw[1:-3])
    frame[4] = 0x99  # REJ N(R)=4
    from fastcodec.crc import crc16_x25

    frame += crc16_x25(frame).to_bytes(2, "little")
    with pytest.raises(FrameError) as caught:
        hdlc.parse_frame(bytes(frame))
    assert caught.value.offset == 4


def test_parse_accepts_any_bytes_like(hdlc: ModuleType) -> None:
    frame = hdlc.parse_frame(SNRM_TO_1_17)
    assert hdlc.parse_frame(bytearray(SNRM_TO_1_17)) == frame
    assert hdlc.parse_frame(memoryview(SNRM_TO_1_17)) == frame


# --- splitter --------------------------------------------------------------------------------


def test_splitter_byte_at_a_time_gives_the_same_frames(hdlc: ModuleType) -> None:
    stream = b"\x00\x7e\x7e" + b"".join(bytes.fromhex(f["hex"]) for f in CURATED) + b"\x11"
    whole = hdlc.FrameSplitter()
    whole.feed(stream)
    expected = _drain(whole, hdlc.NEED_DATA)
    one = hdlc.FrameSplitter()
    frames = []
    for byte in stream:
        one.feed(bytes((byte,)))
        frames += _drain(one, hdlc.NEED_DATA)
    assert frames == expected
    assert len(frames) == len(CURATED)
    assert (one.discarded_bytes, one.bad_frames) == (whole.discarded_bytes, whole.bad_frames)


def test_splitter_resyncs_after_a_damaged_frame(hdlc: ModuleType) -> None:
    good = bytes.fromhex(CURATED[2]["hex"])
    splitter = hdlc.FrameSplitter()
    splitter.feed(_damaged(good, 30) + good)
    frames = _drain(splitter, hdlc.NEED_DATA)
    assert frames == [hdlc.parse_frame(good)]
    assert splitter.bad_frames == 1


def test_splitter_buffer_is_bounded(hdlc: ModuleType) -> None:
    splitter = hdlc.FrameSplitter(max_buffer_bytes=4096)
    splitter.feed(b"\x7e\xa7\xff" + bytes(4000))
    with pytest.raises(FrameError):
        splitter.feed(bytes(200))
    assert splitter.buffered_bytes == 4003
    assert splitter.next_frame() is hdlc.NEED_DATA  # the zeros cannot make a valid header
    splitter.feed(bytes(200))


def test_splitter_memory_stays_bounded_when_drained_one_frame_per_feed(hdlc: ModuleType) -> None:
    frame = bytes.fromhex(CURATED[2]["hex"])
    splitter = hdlc.FrameSplitter(max_buffer_bytes=4096)
    for _ in range(200):  # 200 x 58 bytes: far over the limit if nothing were dropped
        splitter.feed(frame)
        assert splitter.next_frame() == hdlc.parse_frame(frame)
    assert splitter.buffered_bytes == 1  # the closing flag, which may open the next frame


# --- segmentation ----------------------------------------------------------------------------


def test_segmenter_and_reassembler_round_trip(hdlc: ModuleType) -> None:
    payload = bytes(range(256)) * 3
    frames = hdlc.build_segmented_frames(payload, 128, 16, 1, send_sequence=6, receive_sequence=2)
    assert len(frames) == 6
    parsed = [hdlc.parse_frame(f) for f in frames]
    assert [f.segmented for f in parsed] == [True] * 5 + [False]
    assert [f.send_sequence for f in parsed] == [6, 7, 0, 1, 2, 3]
    assert all(len(f.information) <= 128 for f in parsed)
    reassembler = hdlc.Reassembler()
    results = [reassembler.add(f) for f in parsed]
    assert results[:-1] == [hdlc.NEED_DATA] * 5
    assert results[-1] == payload
    assert reassembler.pending_bytes == 0


def test_reassembler_ignores_a_retransmitted_segment(hdlc: ModuleType) -> None:
    frames = [hdlc.parse_frame(f) for f in hdlc.build_segmented_frames(bytes(300), 128, 16, 1)]
    reassembler = hdlc.Reassembler()
    assert reassembler.add(frames[0]) is hdlc.NEED_DATA
    assert reassembler.add(frames[0]) is hdlc.NEED_DATA
    assert reassembler.add(frames[1]) is hdlc.NEED_DATA
    assert reassembler.add(frames[2]) == bytes(300)
    assert reassembler.duplicates == 1


def test_reassembler_refuses_a_gap_and_starts_over(hdlc: ModuleType) -> None:
    frames = [hdlc.parse_frame(f) for f in hdlc.build_segmented_frames(bytes(300), 128, 16, 1)]
    reassembler = hdlc.Reassembler()
    reassembler.add(frames[0])
    with pytest.raises(FrameError):
        reassembler.add(frames[2])
    assert reassembler.pending_bytes == 0


def test_reassembler_bounds_and_kinds(hdlc: ModuleType) -> None:
    frames = [hdlc.parse_frame(f) for f in hdlc.build_segmented_frames(bytes(300), 128, 16, 1)]
    reassembler = hdlc.Reassembler(max_apdu_bytes=200)
    reassembler.add(frames[0])
    with pytest.raises(FrameError):
        reassembler.add(frames[1])
    with pytest.raises(FrameError):
        reassembler.add(hdlc.parse_frame(hdlc.build_frame(hdlc.FrameKind.RR, 1, 16)))


def test_segmenter_refuses_bad_limits(hdlc: ModuleType) -> None:
    with pytest.raises(EncodeError):
        hdlc.build_segmented_frames(b"abc", 0, 16, 1)
    with pytest.raises(EncodeError):
        hdlc.build_segmented_frames(b"abc", 10, 16, 1, kind=hdlc.FrameKind.RR)


# --- parameter negotiation -------------------------------------------------------------------


def test_parameters_defaults_when_absent(hdlc: ModuleType) -> None:
    assert hdlc.parse_parameters(b"") == hdlc.HdlcParameters(128, 128, 1, 1)
    assert hdlc.parse_parameters(bytes.fromhex("818000")) == hdlc.HdlcParameters()


def test_parameters_partial_and_unknown(hdlc: ModuleType) -> None:
    # Only max info receive (2 bytes) and an unknown parameter 0x09.
    field = bytes.fromhex("818007060203e8090100")
    assert hdlc.parse_parameters(field) == hdlc.HdlcParameters(128, 1000, 1, 1)


def test_parameters_build_round_trip(hdlc: ModuleType) -> None:
    parameters = hdlc.HdlcParameters(1000, 154, 7, 1)
    field = hdlc.build_parameters(parameters)
    assert field == bytes.fromhex("81800d050203e806019a070107080101")
    assert hdlc.parse_parameters(field) == parameters


@pytest.mark.parametrize(
    "field",
    [
        "80",
        "8180",
        "828000",
        "818100",
        "818005",
        "8180030501",
        "81800705050000000000",
        "8180020500",
    ],
)
def test_parameters_refuse_malformed_fields(hdlc: ModuleType, field: str) -> None:
    with pytest.raises(FrameError):
        hdlc.parse_parameters(bytes.fromhex(field))


def test_negotiation_takes_the_smaller_of_each_direction(hdlc: ModuleType) -> None:
    proposal = hdlc.HdlcParameters(
        max_info_transmit=2030, max_info_receive=512, window_transmit=7, window_receive=1
    )
    limits = hdlc.HdlcParameters(
        max_info_transmit=1024, max_info_receive=256, window_transmit=1, window_receive=3
    )
    agreed = hdlc.negotiate_parameters(proposal, limits)
    # The server sends at most what the client receives, and receives at most what it can.
    assert agreed == hdlc.HdlcParameters(512, 256, 1, 3)


# --- IEC 62056-47 wrapper --------------------------------------------------------------------


def test_wrapper_real_udp_message(hdlc: ModuleType) -> None:
    raw = bytes.fromhex(UDP["udp_data"]["hex"])
    wrapper = hdlc.parse_wrapper(raw)
    assert wrapper == hdlc.WrapperFrame(1, 1, 1, bytes.fromhex(UDP["dlms_data"]["hex"]))
    assert hdlc.build_wrapper(wrapper.apdu, 1, 1) == raw
    assert raw.startswith(bytes.fromhex(UDP["udp_header_data"]["hex"]))


def test_wrapper_splitter_on_a_tcp_stream(hdlc: ModuleType) -> None:
    messages = [bytes.fromhex(v["hex"]) for n, v in UDP.items() if n.startswith("inline")]
    stream = b"".join(messages)
    splitter = hdlc.WrapperSplitter()
    frames = []
    for index in range(0, len(stream), 7):
        splitter.feed(stream[index : index + 7])
        frames += _drain(splitter, hdlc.NEED_DATA)
    assert [hdlc.build_wrapper(f.apdu, f.source_wport, f.destination_wport) for f in frames] == (
        messages
    )


def test_wrapper_splitter_refuses_an_oversized_length(hdlc: ModuleType) -> None:
    splitter = hdlc.WrapperSplitter(max_apdu_bytes=1024)
    splitter.feed(bytes.fromhex("0001001000010800"))
    with pytest.raises(FrameError) as caught:
        splitter.next_frame()
    assert caught.value.offset == 6
    with pytest.raises(FrameError):
        splitter.next_frame()


@pytest.mark.parametrize("raw", ["", "00010001", "0002000100010000", "000100010001000201"])
def test_wrapper_parse_refuses(hdlc: ModuleType, raw: str) -> None:
    with pytest.raises(FrameError):
        hdlc.parse_wrapper(bytes.fromhex(raw))


def test_wrapper_build_refuses(hdlc: ModuleType) -> None:
    with pytest.raises(EncodeError):
        hdlc.build_wrapper(b"", 0x10000, 1)
    with pytest.raises(EncodeError):
        hdlc.build_wrapper(bytes(0x10000), 1, 1)


def test_errors_are_codec_errors(hdlc: ModuleType) -> None:
    with pytest.raises(CodecError):
        hdlc.parse_frame(b"\x7e\x7e")
