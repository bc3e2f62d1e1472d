"""`voltstack demo`: broker, cloud stores, simulated fleet and agents on one machine.

The time-compressed run against the simulators' ground truth is
tests/e2e/test_demo_e2e.py; here: the table reads what the cloud stored, the
data folder survives a restart, and Ctrl-C, SIGTERM and a busy port are
handled.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.servers import (
    InfluxServer,
    PostgresServer,
    free_port,
    port_accepts,
    start_mosquitto,
    stop_mosquitto,
)

pytestmark = pytest.mark.integration

VOLTSTACK = Path(sys.executable).parent / "voltstack"
WIDE = {**os.environ, "COLUMNS": "200"}  # Rich tables unabridged in the captured output


GATEWAYS = {"gw-substation-01": 18, "gw-optical-02": 2, "gw-dlms-tcp-03": 3}


def stored_rows(output: str) -> dict[str, tuple[int, int, int]]:
    """Gateway → (meters with stored readings, meters registered, readings stored)
    from the final table of what the cloud stored."""
    table = output.split("what the cloud stored")[-1]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│|]", line) if cell.strip()]
        if cells and cells[0] in GATEWAYS:
            stored, registered = cells[2].split("/")
            rows[cells[0]] = (int(stored), int(registered), int(cells[3]))
    return rows


def run_demo(data: Path, port: int, duration: str = "25s") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VOLTSTACK, "demo", "--mqtt-port", str(port), "--duration", duration, "--data-dir", data],
        capture_output=True,
        text=True,
        timeout=180,
        env=WIDE,
    )


def test_demo_stores_every_simulated_meter_and_keeps_it_across_a_restart(tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "var"
    first = run_demo(data, port)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"mqtt://127.0.0.1:{port}" in first.stdout
    rows = stored_rows(first.stdout)
    # Every meter of every gateway has readings in the store: 16 on RS-485 and
    # 2 on Modbus TCP, 2 optical (mode E), 3 DLMS over TCP.
    assert {gw: row[:2] for gw, row in rows.items()} == {
        gw: (count, count) for gw, count in GATEWAYS.items()
    }
    assert all(row[2] > row[1] for row in rows.values())
    assert not port_accepts(port), "the broker still listens after the demo ended"
    assert "3 gateways and 23 meters new" in first.stdout

    second = run_demo(data, port, "10s")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "0 gateways and 0 meters new" in second.stdout  # registered once, kept
    for gateway, (_, _, readings) in stored_rows(second.stdout).items():
        assert readings >= rows[gateway][2], f"{gateway} lost stored readings in a restart"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_demo_stops_every_child_on_ctrl_c_and_sigterm(tmp_path: Path, signum: int) -> None:
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
        pids = json.loads((tmp_path / "var" / "run" / "pids.json").read_text())
        time.sleep(1)
        demo.send_signal(signum)
        output, _ = demo.communicate(timeout=60)
        output = seen + output
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, output
    assert "stopping" in output
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout == "", "simulators or agents outlived the demo"
    children = [pid for name, pid in pids.items() if name != "demo"]
    # The fleet, the worker, the API, one agent per gateway.
    assert len(children) == 3 + len(GATEWAYS)
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # no process is left in any child's group
    assert not (tmp_path / "var" / "run" / "pids.json").exists()


def test_demo_stopped_while_starting_leaves_nothing_behind(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [VOLTSTACK, "demo", "--mqtt-port", str(free_port()), "--data-dir", tmp_path / "var"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=WIDE,
    )
    try:
        pid_file = tmp_path / "var" / "run" / "pids.json"
        deadline = time.monotonic() + 90
        while not (pid_file.is_file() and "fleet" in pid_file.read_text()):
            assert demo.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        demo.send_signal(signal.SIGTERM)  # the fleet runs, the agents are not started yet
        output, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, output
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout == "", output


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


def test_demo_runs_on_mosquitto_influxdb_and_postgresql(
    tmp_path: Path, influxd: InfluxServer, postgres: PostgresServer
) -> None:
    """--broker/--influx/--database: the README's walkthrough with the real servers.

    Its own Mosquitto (broker-acl rewrites the password and ACL files), a
    fresh PostgreSQL database and InfluxDB database; the broker accepts the
    gateways and the ingestion worker once `voltstack-cloud broker-acl` wrote
    their accounts, as the README tells an operator to do."""
    broker = start_mosquitto(tmp_path / "mosquitto")
    name = f"demo_{secrets.token_hex(4)}"
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database = f"postgresql+psycopg://{postgres.user}@{postgres.host}:{postgres.port}/{name}"
    influx = (
        f"http://{influxd.admin_username}:{influxd.admin_password}@127.0.0.1:{influxd.port}/{name}"
    )
    data = tmp_path / "var"
    demo = subprocess.Popen(
        [
            VOLTSTACK,
            "demo",
            "--broker",
            f"mqtt://127.0.0.1:{broker.port}",
            "--influx",
            influx,
            "--database",
            database,
            "--duration",
            "40s",
            "--data-dir",
            data,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=WIDE,
    )
    try:
        ingest_secret = data / "secrets" / "voltstack-ingest.password"
        deadline = time.monotonic() + 90
        while not ingest_secret.is_file():  # registration done: provision the broker
            if demo.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the demo did not register the fleet:\n{demo.communicate()[0]}")
            time.sleep(0.2)
        provisioned = subprocess.run(
            [
                Path(sys.executable).parent / "voltstack-cloud",
                "broker-acl",
                "--url",
                database,
                "--password-file",
                broker.password_file,
                "--acl-file",
                broker.acl_file,
                "--service-user",
                f"voltstack-ingest:{ingest_secret}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert provisioned.returncode == 0, provisioned.stderr
        broker.reload()
        output, _ = demo.communicate(timeout=180)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
        stop_mosquitto(broker)
    assert demo.returncode == 0, output
    assert influxd.admin_password not in output  # the URL's password is not shown
    rows = stored_rows(output)
    assert {gw: row[:2] for gw, row in rows.items()} == {
        gw: (count, count) for gw, count in GATEWAYS.items()
    }, output
    # What the table showed is in InfluxDB: every meter's energy register.
    answer = influxd.query('SHOW TAG VALUES FROM "reading" WITH KEY = "meter"', database=name)
    meters = {value[1] for value in answer["results"][0]["series"][0]["values"]}  # type: ignore[index]
    assert len(meters) == sum(GATEWAYS.values())
