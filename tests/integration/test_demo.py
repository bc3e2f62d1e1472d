"""`voltstack demo` starts its embedded broker, proves it, and stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import free_port, port_accepts

VOLTSTACK = Path(sys.executable).parent / "voltstack"


def test_demo_runs_for_a_duration_and_exits_zero() -> None:
    port = free_port()
    result = subprocess.run(
        [VOLTSTACK, "demo", "--mqtt-port", str(port), "--duration", "1s"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"mqtt://127.0.0.1:{port}" in result.stdout
    assert "round trip" in result.stdout
    assert not port_accepts(port), "the broker still listens after the demo ended"


def test_demo_stops_cleanly_on_ctrl_c() -> None:
    port = free_port()
    demo = subprocess.Popen(
        [VOLTSTACK, "demo", "--mqtt-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_accepts(port):
            assert demo.poll() is None, demo.stdout.read() if demo.stdout else ""
            assert time.monotonic() < deadline, "the demo's broker did not come up"
            time.sleep(0.1)
        time.sleep(0.5)  # let it finish its round trip
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, output
    assert "stopping" in output


def test_demo_moves_to_a_free_port_when_its_port_is_taken() -> None:
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        result = subprocess.run(
            [VOLTSTACK, "demo", "--mqtt-port", str(taken), "--duration", "0.5s"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"port {taken} is taken" in result.stdout


@pytest.mark.parametrize("bad", ["soon", "10 parsecs", "-5s"])
def test_demo_refuses_a_bad_duration_with_a_usage_error(bad: str) -> None:
    result = subprocess.run([VOLTSTACK, "demo", "--duration", bad], capture_output=True, text=True)
    assert result.returncode == 2
    assert "is not a duration" in result.stderr
