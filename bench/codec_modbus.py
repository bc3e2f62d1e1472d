"""Modbus RTU hot path: parse a 165-byte FC04 reply (80 registers = 40 float32)
with its CRC check, and decode the 40 floats.

fastcodec: `parse_response(frame)` then `decode_floats(payload)`, compiled and
pure. pymodbus 3.16 doing the same job: its RTU framer (`FramerRTU.handleFrame`:
length detection, CRC check, PDU decode into registers) then
`ModbusClientMixin.convert_from_registers(registers, FLOAT32)`. Both results
are checked equal before timing. The CRC alone is benchmarked in bench/crc.py.
Goal: the compiled twin at least 30x pymodbus (and at most 2 µs per reply).
"""

from __future__ import annotations

import random
import struct

from bench._timing import machine_line, report, seconds_per_call
from fastcodec import _modbus_c, _modbus_py
from fastcodec.crc import crc16_modbus

GOAL_RATIO = 30.0
GOAL_MICROSECONDS = 2.0
FLOAT_COUNT = 40


def _reply_frame() -> tuple[bytes, list[float]]:
    # What an SDM630-class meter sends for FC04 0x0000 x80: volts, amps,
    # watts... as float32 ABCD.
    rng = random.Random(630)
    values = [struct.unpack(">f", struct.pack(">f", rng.uniform(-5e3, 5e3)))[0] for _ in range(40)]
    body = bytes([5, 4, 4 * FLOAT_COUNT]) + struct.pack(f">{FLOAT_COUNT}f", *values)
    return body + crc16_modbus(body).to_bytes(2, "little"), values


def run() -> None:
    from pymodbus.client.mixin import ModbusClientMixin
    from pymodbus.framer.rtu import FramerRTU
    from pymodbus.pdu import DecodePDU

    frame, values = _reply_frame()
    assert len(frame) == 165
    framer = FramerRTU(DecodePDU(False))
    float32 = ModbusClientMixin.DATATYPE.FLOAT32
    convert = ModbusClientMixin.convert_from_registers

    def with_pymodbus() -> object:
        _, pdu = framer.handleFrame(frame, 0, 0)
        return convert(pdu.registers, float32)

    def with_compiled() -> list[float]:
        return _modbus_c.decode_floats(_modbus_c.parse_response(frame).payload)  # type: ignore[no-any-return]

    def with_pure() -> list[float]:
        return _modbus_py.decode_floats(_modbus_py.parse_response(frame).payload)

    assert with_compiled() == with_pure() == with_pymodbus() == values

    timings = {
        "fastcodec cython": seconds_per_call(with_compiled),
        "fastcodec python": seconds_per_call(with_pure),
        "pymodbus": seconds_per_call(with_pymodbus),
    }
    print(machine_line())
    report("modbus FC04 40 float32 (165 B)", timings, baseline="pymodbus")
    compiled_us = timings["fastcodec cython"] * 1e6
    ratio = timings["pymodbus"] / timings["fastcodec cython"]
    print(
        f"goal: ≥ {GOAL_RATIO:.0f}x pymodbus and ≤ {GOAL_MICROSECONDS:.1f} µs: "
        f"{ratio:.1f}x, {compiled_us:.2f} µs "
        f"({'met' if ratio >= GOAL_RATIO and compiled_us <= GOAL_MICROSECONDS else 'NOT met'})"
    )
