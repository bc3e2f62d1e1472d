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
