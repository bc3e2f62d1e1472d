"""CRC-16/MODBUS and CRC-16/X-25 against published check values and real frames."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from tests.conftest import VECTORS

# The "check" values of the CRC catalogue (CRC of the ASCII string "123456789").
CHECK_INPUT = b"123456789"


def test_crc16_modbus_check_value(crc: ModuleType) -> None:
    assert crc.crc16_modbus(CHECK_INPUT) == 0x4B37


def test_crc16_x25_check_value(crc: ModuleType) -> None:
    assert crc.crc16_x25(CHECK_INPUT) == 0x906E


def test_crc_of_empty_input_is_the_init_value(crc: ModuleType) -> None:
    assert crc.crc16_modbus(b"") == 0xFFFF
    assert crc.crc16_x25(b"") == 0x0000  # init 0xFFFF xor-ed out


@pytest.mark.parametrize("buffer_type", [bytes, bytearray, memoryview])
def test_crc_accepts_any_bytes_like(crc: ModuleType, buffer_type: type) -> None:
    assert crc.crc16_modbus(buffer_type(CHECK_INPUT)) == 0x4B37
    assert crc.crc16_x25(buffer_type(CHECK_INPUT)) == 0x906E


@pytest.mark.parametrize("not_bytes", [5, "123456789", None, [1, 2, 3]])
def test_crc_refuses_what_is_not_bytes(crc: ModuleType, not_bytes: object) -> None:
    with pytest.raises(TypeError):
        crc.crc16_modbus(not_bytes)
    with pytest.raises(TypeError):
        crc.crc16_x25(not_bytes)


def _modbus_frames_with_good_crc() -> list[tuple[str, bytes]]:
    data = json.loads((VECTORS / "modbus_rtu" / "frames.json").read_text())
    frames = []
    for frame in data["frames"]:
        raw = bytes.fromhex(frame["hex"])
        # The glitch cases carry noise around an inner frame; the CRC covers
        # the inner frame only, which the Modbus codec issue takes apart.
        if frame.get("crc_ok") and frame["len"] == len(raw) and "glitch" not in frame["id"]:
            frames.append((frame["id"], raw))
    return frames


@pytest.mark.parametrize(("frame_id", "frame"), _modbus_frames_with_good_crc())
def test_crc16_modbus_matches_real_bus_frames(crc: ModuleType, frame_id: str, frame: bytes) -> None:
    # Modbus over serial line §2.5.1.2: CRC sent low byte first.
    assert crc.crc16_modbus(frame[:-2]) == int.from_bytes(frame[-2:], "little"), frame_id


def _hdlc_frames() -> list[tuple[str, bytes]]:
    data = json.loads((VECTORS / "dlms" / "curated_real_hdlc_frames.json").read_text())
    return [(frame["id"], bytes.fromhex(frame["hex"])) for frame in data["frames"]]


@pytest.mark.parametrize(("frame_id", "frame"), _hdlc_frames())
def test_crc16_x25_matches_real_hdlc_fcs(crc: ModuleType, frame_id: str, frame: bytes) -> None:
    # IEC 62056-46 §6.4.4.10: FCS over the frame between the flags, low byte first.
    body = frame[1:-3]
    assert crc.crc16_x25(body) == int.from_bytes(frame[-3:-1], "little"), frame_id


def test_crc16_arc_check_value(crc: ModuleType) -> None:
    # CRC-16/ARC (the DSMR P1 CRC): the catalogue's check value.
    assert crc.crc16_arc(CHECK_INPUT) == 0xBB3D
    assert crc.crc16_arc(b"") == 0x0000


def _p1_telegrams_with_crc() -> list[tuple[str, bytes, int]]:
    telegrams = []
    for path in sorted((VECTORS / "p1_dsmr_iec62056-21").glob("*.txt")):
        raw = path.read_bytes()  # CRLF line ends, as the meters send them
        end = raw.index(b"!")
        digits = raw[end + 1 : end + 5].split(b"\r")[0]
        if digits:
            telegrams.append((path.name, raw[: end + 1], int(digits, 16)))
    return telegrams


@pytest.mark.parametrize(("name", "covered", "carried"), _p1_telegrams_with_crc())
def test_crc16_arc_matches_real_p1_telegrams(
    crc: ModuleType, name: str, covered: bytes, carried: int
) -> None:
    # DSMR 5.0.2 P1 §6.2: CRC-16 over '/' .. '!' inclusive, given in hex.
    assert crc.crc16_arc(covered) == carried, name


def test_bcc_is_the_xor_of_the_bytes(crc: ModuleType) -> None:
    assert crc.bcc(b"") == 0
    assert crc.bcc(b"\x01\x02\x04") == 0x07
    assert crc.bcc(bytearray(b"\xff\xff")) == 0
    assert crc.bcc(memoryview(CHECK_INPUT)) == 0x31


def _bcc_vectors() -> list[tuple[str, bytes]]:
    data = json.loads((VECTORS / "iec62056-21_modeC" / "bcc_vectors_pwitab.json").read_text())
    return [(vector["text"][:3], bytes.fromhex(vector["hex"])) for vector in data["vectors"]]


@pytest.mark.parametrize(("command", "message"), _bcc_vectors())
def test_bcc_matches_programming_mode_messages(
    crc: ModuleType, command: str, message: bytes
) -> None:
    # IEC 62056-21:2002 §6.3: BCC over the bytes after SOH up to and including ETX.
    assert crc.bcc(message[1:-1]) == message[-1], command


@pytest.mark.parametrize("not_bytes", [5, "123456789", None])
def test_arc_and_bcc_refuse_what_is_not_bytes(crc: ModuleType, not_bytes: object) -> None:
    with pytest.raises(TypeError):
        crc.crc16_arc(not_bytes)
    with pytest.raises(TypeError):
        crc.bcc(not_bytes)
