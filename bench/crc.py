"""CRC-16 throughput: fastcodec compiled and pure beside pymodbus and gurux-dlms.

Inputs: the 163 bytes a Modbus RTU FC04 reply with 80 registers carries before
its CRC, and a 692-byte HDLC frame body. The peers are the CRCs the peers'
own frame parsers use: pymodbus `FramerRTU.compute_CRC`, gurux-dlms
`_GXFCS16.countFCS16`. Each result is checked against ours before timing.
"""

from __future__ import annotations

import random

from bench._timing import machine_line, seconds_per_call
from fastcodec import _crc_c, _crc_py

GOAL_MB_PER_S = 300.0


def _peers() -> tuple[object, object]:
    from gurux_dlms._GXFCS16 import _GXFCS16
    from pymodbus.framer.rtu import FramerRTU

    return FramerRTU.compute_CRC, _GXFCS16.countFCS16


def run() -> None:
    pymodbus_crc, gurux_fcs = _peers()
    rng = random.Random(62056)
    modbus_body = bytes(rng.randrange(256) for _ in range(163))
    hdlc_body = bytes(rng.randrange(256) for _ in range(692))

    # Same answers first: pymodbus returns the CRC byte-swapped, gurux too.
    def swap(value: int) -> int:
        return ((value & 0xFF) << 8) | (value >> 8)

    assert swap(pymodbus_crc(modbus_body)) == _crc_c.crc16_modbus(modbus_body)  # type: ignore[operator]
    assert swap(gurux_fcs(hdlc_body, 0, len(hdlc_body))) == _crc_c.crc16_x25(hdlc_body)  # type: ignore[operator]

    cases = [
        (
            "CRC-16/MODBUS",
            modbus_body,
            _crc_c.crc16_modbus,
            _crc_py.crc16_modbus,
            "pymodbus",
            lambda: pymodbus_crc(modbus_body),
        ),  # type: ignore[operator]
        (
            "CRC-16/X-25",
            hdlc_body,
            _crc_c.crc16_x25,
            _crc_py.crc16_x25,
            "gurux-dlms",
            lambda: gurux_fcs(hdlc_body, 0, len(hdlc_body)),
        ),  # type: ignore[operator]
    ]
    print(machine_line())
    print(
        f"{'checksum':<14} {'bytes':>5} {'implementation':<16} {'µs/call':>9} {'MB/s':>8} "
        f"{'vs peer':>8}"
    )
    for name, body, compiled, pure, peer_name, peer_call in cases:
        timings = {
            "fastcodec cython": seconds_per_call(lambda: compiled(body)),  # noqa: B023
            "fastcodec python": seconds_per_call(lambda: pure(body)),  # noqa: B023
            peer_name: seconds_per_call(peer_call),
        }
        peer_s = timings[peer_name]
        for implementation, seconds in timings.items():
            mb_per_s = len(body) / seconds / 1e6
            print(
                f"{name:<14} {len(body):>5} {implementation:<16} {seconds * 1e6:>9.2f} "
                f"{mb_per_s:>8.1f} {peer_s / seconds:>7.1f}x"
            )
        compiled_mb_s = len(body) / timings["fastcodec cython"] / 1e6
        print(
            f"{name:<14} goal ≥ {GOAL_MB_PER_S:.0f} MB/s: {compiled_mb_s / GOAL_MB_PER_S:.2f}x "
            f"of the goal"
        )
