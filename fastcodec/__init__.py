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

import importlib
from pathlib import Path

from fastcodec.crc import bcc, crc16_arc, crc16_modbus, crc16_x25
from fastcodec.exceptions import ChecksumError, CodecError, EncodeError, FrameError

# The codec modules with a compiled twin: every `_<name>_py.py` here has a
# `_<name>_c.pyx` beside it and a selector `<name>.py` (docs/development.md).
CODEC_MODULES = tuple(sorted(path.name[1:-6] for path in Path(__file__).parent.glob("_*_py.py")))


def _implementation() -> str:
    selectors = (importlib.import_module(f"fastcodec.{name}") for name in CODEC_MODULES)
    return "cython" if all(s.IMPLEMENTATION == "cython" for s in selectors) else "python"


def __getattr__(name: str) -> str:
    # IMPLEMENTATION loads every codec to find out; computed on first use only,
    # so a gateway agent loads just the codecs it uses (its memory budget).
    if name == "IMPLEMENTATION":
        value = _implementation()
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastcodec' has no attribute {name!r}")


__all__ = [
    "CODEC_MODULES",
    "IMPLEMENTATION",
    "ChecksumError",
    "CodecError",
    "EncodeError",
    "FrameError",
    "bcc",
    "crc16_arc",
    "crc16_modbus",
    "crc16_x25",
]
