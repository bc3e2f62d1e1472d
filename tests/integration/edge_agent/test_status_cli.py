"""`voltstack-agent status` against a real health endpoint started in the test."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.adapters.health import HealthServer
from tests.unit.edge_agent.test_health import make_snapshot

pytestmark = pytest.mark.integration

AGENT = Path(sys.executable).parent / "voltstack-agent"


@pytest.fixture
def endpoint() -> Iterator[tuple[dict[str, Any], str]]:
    """A running health server; the test edits the snapshot dict it serves."""
    snapshot = make_snapshot()
    now = time.time()
    snapshot["uplink"]["last_puback_at"] = now - 12
    snapshot["meters"][0]["last_read_at"] = now - 30
    with HealthServer(lambda: snapshot, port=0) as server:
        yield snapshot, server.url


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AGENT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def cells(table_text: str, first: str) -> list[str]:
    """The cells of the table row that starts with `first`."""
    for line in table_text.splitlines():
        row = [cell.strip() for cell in line.strip("│ ").split("│")]
        if row[0] == first:
            return row
    raise AssertionError(f"no row {first!r} in:\n{table_text}")


def test_healthy_agent_prints_tables_and_exits_0(endpoint: tuple[dict[str, Any], str]) -> None:
    _, url = endpoint
    result = agent("status", "--url", url)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in (
        "gateway gw-0001",
        "uptime (s)",
        "3600",
        "connected",
        "buffer depth (readings)",
        "120",
        "oldest buffered reading age (s)",
        "buffer size (bytes)",
        "65536",
        "utilisation (%)",
        "12.5",
        "last read age (s)",
        "rs485-1",
        "lost",
    ):
        assert text in out, text
    assert cells(out, "last PUBACK age (s)")[-1] in {"12", "13", "14"}
    m1 = cells(out, "M1")
    assert m1[2:] == ["ok", "90", "2", m1[-1]]
    assert m1[-1] in {"30", "31", "32"}  # last read age (s)
    assert result.stderr == ""


def test_json(endpoint: tuple[dict[str, Any], str]) -> None:
    snapshot, url = endpoint
    result = agent("status", "--url", url + "/", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == snapshot


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s["uplink"].update(connected=False, last_error="connection refused"),
            "the uplink is disconnected (last error: connection refused)",
        ),
        (lambda s: s.update(running=False), "the agent reports it is not running"),
    ],
)
def test_not_running_or_disconnected_exits_1_and_says_which(
    endpoint: tuple[dict[str, Any], str],
    change: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    snapshot, url = endpoint
    change(snapshot)
    result = agent("status", "--url", url)
    assert result.returncode == 1
    assert message in result.stderr
    assert "gateway gw-0001" in result.stdout  # the tables still print


def test_unreachable_endpoint_exits_4_with_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens there any more.
    result = agent("status", "--url", f"http://127.0.0.1:{port}")
    assert result.returncode == 4
    assert result.stderr.startswith(f"error: cannot reach the agent at http://127.0.0.1:{port}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_an_endpoint_error_exits_1() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("snapshot failed")

    with HealthServer(broken, port=0) as server:
        result = agent("status", "--url", server.url)
    assert result.returncode == 1
    assert "answered 500" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_url_is_a_usage_error() -> None:
    result = agent("status", "--url", "ftp://gateway")
    assert result.returncode == 2


@pytest.mark.parametrize(
    "served", [["not", "a", "status"], {"running": True, "uplink": {"connected": True}}]
)
def test_an_unexpected_status_shape_exits_1_without_a_traceback(served: Any) -> None:
    with HealthServer(lambda: served, port=0) as server:
        result = agent("status", "--url", server.url)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
