"""`voltstack demo`: broker, simulated fleet and agents on one machine, stopped cleanly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import free_port, port_accepts

pytestmark = pytest.mark.integration

VOLTSTACK = Path(sys.executable).parent / "voltstack"
WIDE = {**os.environ, "COLUMNS": "200"}  # Rich tables unabridged in the captured output


def gateway_row(output: str) -> tuple[int, int]:
    """(meters reporting, readings) of the demo gateway in the final table."""
    row = next(line for line in output.splitlines() if "gw-substation-01" in line)
    cells = [cell.strip() for cell in re.split(r"[│|]", row) if cell.strip()]
    return int(cells[2]), int(cells[3])


def test_demo_reads_every_simulated_meter_and_exits_zero(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [
            VOLTSTACK,
            "demo",
            "--mqtt-port",
            str(port),
            "--duration",
            "20s",
            "--data-dir",
            str(tmp_path / "var"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=WIDE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"mqtt://127.0.0.1:{port}" in result.stdout
    meters, readings = gateway_row(result.stdout)
    assert meters == 18 and readings > 18  # 16 on the bus, 2 on TCP: every one reports
    assert not port_accepts(port), "the broker still listens after the demo ended"
    assert (tmp_path / "var" / "sim" / "fleet.json").is_file()  # its data stays for a restart


def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [VOLTSTACK, "demo", "--mqtt-port", str(port), "--data-dir", str(tmp_path / "var")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=WIDE,
    )
    try:
        assert demo.stdout is not None
        seen = ""
        deadline = time.monotonic() + 90
        while "press Ctrl-C" not in seen:  # its signal handlers are in place from here
            assert demo.poll() is None and time.monotonic() < deadline, seen
            seen += demo.stdout.readline()
        time.sleep(1)
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=60)
        output = seen + output
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, output
    assert "stopping" in output
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout == "", "simulators or agents outlived the demo"


def test_demo_moves_to_a_free_port_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        result = subprocess.run(
            [
                VOLTSTACK,
                "demo",
                "--mqtt-port",
                str(taken),
                "--duration",
                "3s",
                "--data-dir",
                str(tmp_path / "var"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=WIDE,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"port {taken} is taken" in result.stdout


@pytest.mark.parametrize("bad", ["soon", "10 parsecs", "-5s"])
def test_demo_refuses_a_bad_duration_with_a_usage_error(bad: str) -> None:
    result = subprocess.run([VOLTSTACK, "demo", "--duration", bad], capture_output=True, text=True)
    assert result.returncode == 2
    assert "is not a duration" in result.stderr
