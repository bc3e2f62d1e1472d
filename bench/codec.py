"""`python -m bench codec`: every fastcodec benchmark in one run.

Each `bench/codec_<name>.py` measures one codec, compiled and pure, beside
its peer (pymodbus, gurux-dlms, influxdb-client, json) on the same inputs,
and prints the ratios; this runs them one after the other.
"""

from __future__ import annotations

import importlib

from bench._timing import machine_line

CODEC_BENCHMARKS = [
    "crc",
    "codec_modbus",
    "codec_hdlc",
    "codec_axdr",
    "codec_apdu",
    "codec_p1",
    "codec_uplink",
    "codec_lineprotocol",
]


def run() -> None:
    print(machine_line())
    for name in CODEC_BENCHMARKS:
        print(f"-- {name}")
        importlib.import_module(f"bench.{name}").run()
