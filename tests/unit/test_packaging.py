"""The distribution: the gateway install stays small, the commands exist."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Never on a gateway (DESIGN.md): the web stack, the ORM, the InfluxDB client.
CLOUD_ONLY = {"fastapi", "sqlalchemy", "influxdb-client", "uvicorn", "alembic"}


def requirement_closure(name: str, extras: frozenset[str]) -> set[str]:
    """Every distribution that `pip install name[extras]` would bring, by the
    installed distributions' own metadata."""
    seen: set[str] = set()
    pending = [(name, extras)]
    visited: set[tuple[str, frozenset[str]]] = set()
    while pending:
        current, current_extras = pending.pop()
        if (current, current_extras) in visited:
            continue
        visited.add((current, current_extras))
        seen.add(canonicalize_name(current))
        try:
            requirements = distribution(current).requires or []
        except PackageNotFoundError:
            continue
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker and not any(
                requirement.marker.evaluate({"extra": extra}) for extra in current_extras | {""}
            ):
                continue
            pending.append((requirement.name, frozenset(requirement.extras)))
    return seen


def test_edge_install_brings_no_cloud_stack() -> None:
    edge = requirement_closure("voltstack", frozenset({"edge"}))
    assert {"paho-mqtt", "pymodbus", "pyserial", "gurux-dlms"} <= edge
    assert not edge & CLOUD_ONLY


def test_cloud_install_brings_the_cloud_stack() -> None:
    # The same walk finds them where they belong: the check above can fail.
    assert CLOUD_ONLY <= requirement_closure("voltstack", frozenset({"cloud"}))


def test_licence_is_gpl2_or_later() -> None:
    metadata = distribution("voltstack").metadata
    assert metadata["License-Expression"] == "GPL-2.0-or-later"


SCRIPTS = ["voltstack", "voltstack-agent", "voltstack-cloud", "voltstack-sim"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_script_teaches_with_help(script: str) -> None:
    executable = Path(sys.executable).parent / script
    result = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_script_version(script: str) -> None:
    executable = Path(sys.executable).parent / script
    result = subprocess.run([executable, "version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert distribution("voltstack").version in result.stdout


def test_unknown_command_exits_with_usage_error() -> None:
    executable = Path(sys.executable).parent / "voltstack-agent"
    result = subprocess.run([executable, "no-such-command"], capture_output=True, text=True)
    assert result.returncode == 2  # Click's usage-error code: scripts can tell it apart
