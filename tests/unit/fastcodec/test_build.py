"""The build: every codec module has a compiled twin, and the selector obeys
FASTCODEC_NO_EXTENSIONS."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

import fastcodec
from tests.conftest import NO_EXTENSIONS, load_twin


@pytest.mark.parametrize("codec", fastcodec.CODEC_MODULES)
def test_selector_uses_the_compiled_twin_unless_told_not_to(codec: str) -> None:
    selector = importlib.import_module(f"fastcodec.{codec}")
    expected = "python" if NO_EXTENSIONS else "cython"
    assert selector.IMPLEMENTATION == expected


def test_package_reports_its_implementation() -> None:
    expected = "python" if NO_EXTENSIONS else "cython"
    assert fastcodec.IMPLEMENTATION == expected


@pytest.mark.parametrize("codec", fastcodec.CODEC_MODULES)
def test_twins_export_the_same_api(codec: str) -> None:
    pure, compiled = load_twin(codec, "python"), load_twin(codec, "cython")
    public = {name for name in pure.__all__}
    assert public <= set(dir(compiled))


@pytest.mark.parametrize(("environment", "expected"), [("1", "python"), ("", "cython")])
def test_implementation_as_a_fresh_interpreter_sees_it(environment: str, expected: str) -> None:
    if NO_EXTENSIONS and expected == "cython":
        pytest.skip("FASTCODEC_NO_EXTENSIONS=1: pure build")
    env = {**os.environ, "FASTCODEC_NO_EXTENSIONS": environment}
    printed = subprocess.run(
        [sys.executable, "-c", "import fastcodec; print(fastcodec.IMPLEMENTATION)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed == expected
