"""Property tests: the two CRC twins agree, and the CRCs behave like CRCs."""

from __future__ import annotations

from types import ModuleType

from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import load_twin

any_bytes = st.binary(max_size=4096)


@given(any_bytes)
def test_compiled_and_pure_twins_agree(data: bytes) -> None:
    pure, compiled = load_twin("crc", "python"), load_twin("crc", "cython")
    assert compiled.crc16_modbus(data) == pure.crc16_modbus(data)
    assert compiled.crc16_x25(data) == pure.crc16_x25(data)
    assert compiled.crc16_arc(data) == pure.crc16_arc(data)
    assert compiled.bcc(data) == pure.bcc(data)


@given(data=any_bytes)
def test_modbus_frame_with_its_crc_checks_to_zero(crc: ModuleType, data: bytes) -> None:
    # A receiver may run the CRC over the whole frame, CRC included: a good
    # frame leaves residue 0 (Modbus over serial line, Appendix B).
    frame = data + crc.crc16_modbus(data).to_bytes(2, "little")
    assert crc.crc16_modbus(frame) == 0


@given(data=any_bytes)
def test_hdlc_frame_with_its_fcs_leaves_the_good_fcs_residue(crc: ModuleType, data: bytes) -> None:
    # ISO/IEC 13239: over data + FCS the register ends at 0xF0B8, i.e. 0x0F47
    # once the final xor is applied.
    frame = data + crc.crc16_x25(data).to_bytes(2, "little")
    assert crc.crc16_x25(frame) == 0x0F47


@given(
    data=st.binary(min_size=1, max_size=256), position=st.integers(0, 255), flip=st.integers(1, 255)
)
def test_any_single_byte_error_changes_the_crc(
    crc: ModuleType, data: bytes, position: int, flip: int
) -> None:
    position %= len(data)
    damaged = bytearray(data)
    damaged[position] ^= flip
    assert crc.crc16_modbus(bytes(damaged)) != crc.crc16_modbus(data)
    assert crc.crc16_x25(bytes(damaged)) != crc.crc16_x25(data)


@given(data=any_bytes)
def test_arc_message_with_its_crc_checks_to_zero(crc: ModuleType, data: bytes) -> None:
    # CRC-16/ARC has no final xor: appending the CRC low byte first leaves 0.
    frame = data + crc.crc16_arc(data).to_bytes(2, "little")
    assert crc.crc16_arc(frame) == 0


@given(data=any_bytes)
def test_message_with_its_bcc_xors_to_zero(crc: ModuleType, data: bytes) -> None:
    assert crc.bcc(data + bytes([crc.bcc(data)])) == 0
