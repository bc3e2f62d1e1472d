"""Chooses the compiled or the pure-Python twin of a codec module.

`FASTCODEC_NO_EXTENSIONS=1` forces the pure twins (for the second test run
and for debugging); otherwise the compiled module is used when it was built,
and the pure twin when it was not (a source checkout without `make`).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

NO_EXTENSIONS = bool(os.environ.get("FASTCODEC_NO_EXTENSIONS"))


def load(name: str) -> tuple[ModuleType, str]:
    """Return the module implementing codec `name` and "cython" or "python"."""
    if not NO_EXTENSIONS:
        try:
            return importlib.import_module(f"fastcodec._{name}_c"), "cython"
        except ImportError:
            pass
    return importlib.import_module(f"fastcodec._{name}_py"), "python"
