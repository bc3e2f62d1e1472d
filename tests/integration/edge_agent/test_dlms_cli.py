"""`voltstack-agent optical` and `voltstack-agent dlms` against simulated meters (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.dlms_links import DlmsTcpMeter, HdlcSerialBus
from simulators.optical import OpticalPort
from simulators.runtime import BackgroundLoop
from tests.integration.readers.test_dlms_reader import NOW_S, PASSWORD, PHYSICAL, make_meter

pytestmark = pytest.mark.integration

AGENT = Path(sys.executable).parent / "voltstack-agent"


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(scope="module")
def probe() -> Iterator[OpticalPort]:
    port = OpticalPort(make_meter(), timing=False)
    port.start_sync()
    yield port
    port.stop_sync()


@pytest.fixture(scope="module")
def tcp_meter() -> Iterator[DlmsTcpMeter]:
    with BackgroundLoop() as loop:
        server = DlmsTcpMeter(make_meter())
        loop.run(server.start())
        yield server
        loop.run(server.stop())


@pytest.fixture(scope="module")
def hdlc_bus() -> Iterator[HdlcSerialBus]:
    bus = HdlcSerialBus([make_meter()], timing=False)
    bus.start_sync()
    yield bus
    bus.stop_sync()


def test_optical_prints_the_readout_as_a_table(probe: OpticalPort) -> None:
    done = agent("optical", probe.port, "--max-baud", "9600")
    assert done.returncode == 0, done.stderr
    assert "1-0:1.8.0" in done.stdout and "kWh" in done.stdout and "9600" in done.stdout


def test_optical_json_without_the_baud_switch(probe: OpticalPort) -> None:
    done = agent("optical", probe.port, "--no-baud-switch", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["baud_rate"] == 300
    truth = probe.meter.presented_values(NOW_S)
    energy = next(r for r in answer["readings"] if r["obis"] == "1-0:1.8.0")
    assert energy["unit"] == "kWh" and energy["value"] == pytest.approx(
        truth["1-0:1.8.0"], abs=1e-3
    )


def test_optical_on_a_silent_meter_exits_1_with_one_line(probe: OpticalPort) -> None:
    probe.meter.faults.no_answer = True
    try:
        done = agent("optical", probe.port)
    finally:
        probe.meter.faults.clear()
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "identification" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_ports_exit_4() -> None:
    assert agent("optical", "/dev/does-not-exist").returncode == 4
    assert agent("dlms", "/dev/does-not-exist").returncode == 4


def test_dlms_registers_over_tcp_as_json(tcp_meter: DlmsTcpMeter) -> None:
    done = agent(
        "dlms",
        "--host",
        tcp_meter.host,
        "--port",
        str(tcp_meter.port),
        "--password",
        PASSWORD,
        "--obis",
        "1-0:1.8.0",
        "--obis",
        "1-0:32.7.0",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    truth = tcp_meter.meter.presented_values(NOW_S)
    assert {r["obis"]: (r["value"], r["unit"]) for r in answer["readings"]} == {
        "1-0:1.8.0": (truth["1-0:1.8.0"], "kWh"),
        "1-0:32.7.0": (truth["1-0:32.7.0"], "V"),
    }


def test_dlms_profile_and_events_over_hdlc_as_tables(hdlc_bus: HdlcSerialBus) -> None:
    done = agent(
        "dlms",
        hdlc_bus.port,
        "--password",
        PASSWORD,
        "--physical",
        str(PHYSICAL),
        "--profile-from",
        "2026-01-11T09:00",
        "--profile-to",
        "2026-01-11T10:59",
        "--events",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("1-0:2.8.0") == 8 and "event log" in done.stdout


def test_dlms_wrong_password_and_silence_exit_1_with_one_line(
    tcp_meter: DlmsTcpMeter, hdlc_bus: HdlcSerialBus
) -> None:
    done = agent(
        "dlms", "--host", tcp_meter.host, "--port", str(tcp_meter.port), "--password", "nope"
    )
    assert done.returncode == 1 and "association refused" in done.stderr
    assert done.stderr.strip().count("\n") == 0
    meter = hdlc_bus.meters[PHYSICAL]
    meter.faults.no_answer = True
    try:
        done = agent("dlms", hdlc_bus.port, "--password", PASSWORD, "--timeout-ms", "300")
    finally:
        meter.faults.clear()
    assert done.returncode == 1 and "no (complete) answer to SNRM" in done.stderr
    assert "Traceback" not in done.stderr


def test_dlms_bad_arguments_exit_2() -> None:
    assert agent("dlms").returncode == 2
    assert agent("dlms", "/dev/null", "--obis", "1.8").returncode == 2
