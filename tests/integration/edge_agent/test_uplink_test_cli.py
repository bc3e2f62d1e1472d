"""`voltstack-agent uplink-test` against a real Mosquitto, plain and TLS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import (
    MosquittoServer,
    TlsFiles,
    free_port,
    make_test_pki,
)

pytestmark = pytest.mark.integration

AGENT = Path(sys.executable).parent / "voltstack-agent"


def run_test(
    tmp_path: Path, gateway: str, uplink: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"gateway": {"id": gateway}, "uplink": uplink}))
    return subprocess.run(
        [AGENT, "uplink-test", "--config", str(config), "--timeout-s", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_round_trip_through_the_broker(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    gateway, password = mosquitto.add_gateway()
    result = run_test(
        tmp_path,
        gateway,
        {"broker": f"mqtt://127.0.0.1:{mosquitto.port}", "username": gateway, "password": password},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "round trip" in result.stdout and "ok" in result.stdout


def test_wrong_password_exits_4(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    gateway, _ = mosquitto.add_gateway()
    result = run_test(
        tmp_path,
        gateway,
        {"broker": f"mqtt://127.0.0.1:{mosquitto.port}", "username": gateway, "password": "wrong"},
    )
    assert result.returncode == 4 and "refused the connection" in result.stderr


def test_no_broker_exits_4(tmp_path: Path) -> None:
    result = run_test(tmp_path, "gw-x", {"broker": f"mqtt://127.0.0.1:{free_port()}"})
    assert result.returncode == 4 and "cannot connect" in result.stderr
    assert "Traceback" not in result.stderr


def test_tls_with_the_right_ca(
    tls_broker: tuple[MosquittoServer, TlsFiles], tmp_path: Path
) -> None:
    broker, files = tls_broker
    gateway, password = broker.add_gateway()
    result = run_test(
        tmp_path,
        gateway,
        {
            "broker": f"mqtts://127.0.0.1:{broker.port}",
            "username": gateway,
            "password": password,
            "ca_file": str(files.ca_file),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "server verified" in result.stdout


def test_tls_with_another_ca_is_refused(
    tls_broker: tuple[MosquittoServer, TlsFiles], tmp_path: Path
) -> None:
    broker, _ = tls_broker
    gateway, password = broker.add_gateway()
    other = make_test_pki(tmp_path / "other").ca_file
    result = run_test(
        tmp_path,
        gateway,
        {
            "broker": f"mqtts://127.0.0.1:{broker.port}",
            "username": gateway,
            "password": password,
            "ca_file": str(other),
        },
    )
    assert result.returncode == 4 and "certificate verify failed" in result.stderr
