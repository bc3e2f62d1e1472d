"""Shared fixtures: the real servers (tests/servers.py) and the codec twins."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

pytest_plugins = ["tests.servers"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Real-world frames and telegrams, beside the project (see its README.md).
VECTORS = PROJECT_ROOT.parent / "shared" / "vectors"
NO_EXTENSIONS = bool(os.environ.get("FASTCODEC_NO_EXTENSIONS"))
if not VECTORS.is_dir():
    pytest.exit(f"{VECTORS} is missing: the tests need shared/vectors beside the project", 4)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test under a `fastcodec` folder is a codec test: the second run
    # (FASTCODEC_NO_EXTENSIONS=1 pytest -m codec) selects them.
    for item in items:
        if "fastcodec" in Path(str(item.path)).parts:
            item.add_marker(pytest.mark.codec)


def load_twin(codec: str, variant: str) -> ModuleType:
    """Import one twin of a codec module; a missing compiled twin fails the test.

    Under FASTCODEC_NO_EXTENSIONS=1 the compiled twin is skipped instead: that
    run tests the pure build.
    """
    if variant == "cython" and NO_EXTENSIONS:
        pytest.skip("FASTCODEC_NO_EXTENSIONS=1: pure build")
    suffix = "c" if variant == "cython" else "py"
    try:
        return importlib.import_module(f"fastcodec._{codec}_{suffix}")
    except ImportError as exc:
        pytest.fail(f"fastcodec._{codec}_{suffix} is not built ({exc}); run `make`")


def twin_fixture(codec: str) -> object:
    """A fixture giving both twins of `fastcodec._<codec>_*`, one test run each."""

    @pytest.fixture(scope="module", params=["python", "cython"], name=codec)
    def fixture(request: pytest.FixtureRequest) -> ModuleType:
        return load_twin(codec, request.param)

    fixture.__doc__ = f"Both twins of fastcodec's {codec} codec."
    return fixture


# One fixture per codec module, named after it: `def test_x(modbus): ...`.
crc = twin_fixture("crc")
modbus = twin_fixture("modbus")
hdlc = twin_fixture("hdlc")
axdr = twin_fixture("axdr")
apdu = twin_fixture("apdu")
iec62056_21 = twin_fixture("iec62056_21")
p1 = twin_fixture("p1")
obis = twin_fixture("obis")
uplink = twin_fixture("uplink")
lineprotocol = twin_fixture("lineprotocol")
