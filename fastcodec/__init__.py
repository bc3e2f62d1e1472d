"""fastcodec: sans-I/O codecs of voltstack (bytes in, values out).

Each codec is a Cython module with a pure-Python twin of the same API; the
selector modules (`fastcodec.crc`, …) pick the compiled one when it was built.
`IMPLEMENTATION` is "cython" only when every codec module is compiled, so a
half-built tree shows as "python". Set `FASTCODEC_NO_EXTENSIONS=1` to force the
pure twins.

This package imports nothing but the standard library: both the gateway and
the cloud depend on it.
"""

from __future__ import annotations

from fastcodec import crc
from fastcodec.crc import crc16_modbus, crc16_x25
from fastcodec.exceptions import CodecError, FrameError

# The codec modules that have a compiled twin; the tests check each of them.
CODEC_MODULES = ("crc",)

IMPLEMENTATION = "cython" if crc.IMPLEMENTATION == "cython" else "python"

__all__ = [
    "CODEC_MODULES",
    "IMPLEMENTATION",
    "CodecError",
    "FrameError",
    "crc16_modbus",
    "crc16_x25",
]
