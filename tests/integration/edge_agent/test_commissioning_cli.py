"""The technicians' commands against a simulated 32-meter bus."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.config import load_config
from edge_agent.profiles import load_profile
from simulators.clock import SimClock
from simulators.modbus import ModbusMeter, ModbusRtuBus
from simulators.physics import MeterPhysics
from simulators.runtime import BackgroundLoop

pytestmark = pytest.mark.integration

AGENT = Path(sys.executable).parent / "voltstack-agent"
START_S = 1_767_225_600.0
MODELS = ["eastron-sdm630", "eastron-sdm120", "carlo-gavazzi-em24"]


@pytest.fixture(scope="module")
def bus() -> Iterator[ModbusRtuBus]:
    clock = SimClock(start=START_S + 10 * 3600, speed=1e-9)
    meters = []
    for unit in range(1, 33):
        profile = load_profile(MODELS[unit % 3])
        meters.append(
            ModbusMeter(
                profile,
                unit,
                f"M{unit}",
                MeterPhysics(seed=unit, phases=profile.phases, epoch_s=START_S),
                clock,
            )
        )
    with BackgroundLoop() as loop:
        sim = ModbusRtuBus(meters, timing=False)
        loop.run(sim.start())
        yield sim
        loop.run(sim.stop())


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=120)


def test_scan_finds_all_32_meters_and_their_models(bus: ModbusRtuBus) -> None:
    result = agent("scan", bus.port, "--units", "1-40", "--parity", "N", "--json")
    assert result.returncode == 0, result.stderr
    found = {m["unit_id"]: m["model"] for m in json.loads(result.stdout)}
    assert found == {unit: meter.profile.id for unit, meter in bus.meters.items()}


def test_commission_writes_a_config_the_agent_accepts(bus: ModbusRtuBus, tmp_path: Path) -> None:
    output = tmp_path / "agent.yaml"
    result = agent(
        "commission",
        bus.port,
        "--gateway-id",
        "gw-test",
        "--broker",
        "mqtt://127.0.0.1:1883",
        "--units",
        "1-40",
        "--parity",
        "N",
        "--output",
        str(output),
    )
    assert result.returncode == 0, result.stderr
    config = load_config(output)
    assert len(config.buses[0].meters) == 32
    check = agent("check-config", str(output))
    assert check.returncode == 0 and "32 meters" in check.stdout


def test_commission_dry_run_writes_nothing(bus: ModbusRtuBus, tmp_path: Path) -> None:
    output = tmp_path / "agent.yaml"
    result = agent(
        "commission",
        bus.port,
        "--gateway-id",
        "gw-test",
        "--broker",
        "mqtt://h:1883",
        "--units",
        "1-3",
        "--parity",
        "N",
        "--output",
        str(output),
        "--dry-run",
    )
    assert result.returncode == 0 and "unit_id: 1" in result.stdout
    assert not output.exists()


def test_read_prints_every_quantity_with_units(bus: ModbusRtuBus) -> None:
    meter = bus.meters[2]
    result = agent("read", bus.port, "--unit", "2", "--profile", meter.profile.id, "--json")
    assert result.returncode == 0, result.stderr
    read = {r["obis"]: (r["value"], r["unit"]) for r in json.loads(result.stdout)}
    truth = meter.presented_values(meter.clock.now())
    assert {obis: value for obis, (value, _) in read.items()} == pytest.approx(truth)
    assert read["1-0:1.8.0"][1] == "kWh"


def test_read_as_a_table(bus: ModbusRtuBus) -> None:
    result = agent("read", bus.port, "--unit", "3", "--profile", bus.meters[3].profile.id)
    assert (
        result.returncode == 0 and "energy_import_kwh" in result.stdout and "kWh" in result.stdout
    )


def test_read_with_the_wrong_model_says_what_the_meter_refused(bus: ModbusRtuBus) -> None:
    # Unit 2 is an EM24 (map 0x0000-0x005F); the SDM630 plan also reads 0x015A.
    result = agent("read", bus.port, "--unit", "2", "--profile", "eastron-sdm630")
    assert result.returncode == 1 and "exception 2 (ILLEGAL_DATA_ADDRESS)" in result.stderr


def test_read_of_an_absent_meter_fails_with_exit_1(bus: ModbusRtuBus) -> None:
    result = agent(
        "read", bus.port, "--unit", "99", "--profile", "eastron-sdm630", "--timeout-ms", "50"
    )
    assert result.returncode == 1 and "no answer" in result.stderr
    assert "Traceback" not in result.stderr


def test_scan_of_an_empty_range_fails_with_exit_1(bus: ModbusRtuBus) -> None:
    result = agent("scan", bus.port, "--units", "200-202", "--parity", "N", "--timeout-ms", "30")
    assert result.returncode == 1 and "no meter answered" in result.stderr


def test_a_missing_port_exits_4() -> None:
    result = agent("scan", "/dev/no-such-port", "--units", "1")
    assert result.returncode == 4 and "cannot open" in result.stderr


def test_bad_arguments_exit_2(bus: ModbusRtuBus) -> None:
    assert agent("scan", bus.port, "--units", "0-300").returncode == 2
    assert agent("read", bus.port, "--unit", "1", "--profile", "no-such-model").returncode == 2


def test_check_config_names_key_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text("gateway:\n  id: gw-1\nuplink:\n  broker: mqtt://h:1883\n  keepalive_s: 1\n")
    result = agent("check-config", str(bad))
    assert result.returncode == 3
    assert f"{bad}:5: uplink.keepalive_s" in result.stderr


def test_verbose_shows_frames_as_hex(bus: ModbusRtuBus) -> None:
    result = agent(
        "--verbose", "read", bus.port, "--unit", "1", "--profile", bus.meters[1].profile.id
    )
    assert result.returncode == 0
    assert "→ 01 04 00 00" in result.stderr
