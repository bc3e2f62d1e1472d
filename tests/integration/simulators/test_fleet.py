"""A fleet from YAML: it starts fast, wires the agent, tells the truth, takes faults."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from edge_agent.config import load_config
from simulators.clock import SimClock
from simulators.fleet import Fleet, load_fleet, truth_of
from simulators.modbus import decode_register_value
from simulators.runtime import BackgroundLoop

pytestmark = pytest.mark.integration

SIM = Path(sys.executable).parent / "voltstack-sim"
FLEET_YAML = """\
seed: 7
timing: false
gateways:
  - id: gw-a
    buses:
      - name: bus-1
        meters:
          - {model: eastron-sdm630, count: 12, first_unit: 1}
          - {model: eastron-sdm120, count: 10, first_unit: 13}
          - {model: carlo-gavazzi-em24, count: 10, first_unit: 23, shape: commercial}
    tcp:
      - name: tcp
        meters:
          - {model: eastron-sdm630, count: 100, first_unit: 1}
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("fleet")
    (folder / "fleet.yaml").write_text(FLEET_YAML)
    spec = load_fleet(folder / "fleet.yaml")
    with BackgroundLoop() as loop:
        started = time.monotonic()
        # Frozen time: reads and ground truth see the same moment.
        running = loop.run(Fleet.start(spec, folder / "state", clock=SimClock(speed=1e-9)), 120)
        running.start_seconds = time.monotonic() - started  # type: ignore[attr-defined]
        yield running
        loop.run(running.stop())


def test_132_meters_start_in_seconds(fleet: Fleet) -> None:
    assert len(fleet.meters) == 132
    assert fleet.start_seconds < 30  # type: ignore[attr-defined]


def test_manifest_and_agent_config_describe_the_fleet(fleet: Fleet) -> None:
    manifest = json.loads((fleet.state_dir / "fleet.json").read_text())
    assert len(manifest["meters"]) == 132
    config = load_config(fleet.state_dir / "agents" / "gw-a.yaml")  # the agent accepts it
    serials = {meter.serial for bus in config.buses for meter in bus.meters}
    assert serials == set(fleet.meters)


def test_every_meter_on_the_32_meter_bus_answers_with_its_truth(fleet: Fleet) -> None:
    bus_meters = [m for m in fleet.meters.values() if m.link == "serial"]
    assert len(bus_meters) == 32
    client = ModbusSerialClient(bus_meters[0].port, baudrate=9600, timeout=1, retries=1)
    assert client.connect()
    try:
        for meter in bus_meters:
            quantity = meter.device.profile.quantity("1-0:1.8.0")
            spec = quantity.location
            assert spec is not None
            reply = client.read_input_registers(
                spec.address, count=spec.register_count, device_id=meter.device.unit_id
            )
            assert not reply.isError(), f"{meter.serial}: {reply}"
            read = decode_register_value(
                reply.registers, spec, meter.device.profile.word_order_of(spec)
            )
            assert read == fleet.truth(meter.serial)["1-0:1.8.0"]
    finally:
        client.close()


def test_tcp_meters_answer(fleet: Fleet) -> None:
    for meter in [m for m in fleet.meters.values() if m.link == "tcp"][::25]:
        host, port = meter.port.rsplit(":", 1)
        client = ModbusTcpClient(host, port=int(port), timeout=2)
        assert client.connect()
        try:
            reply = client.read_input_registers(0x48, count=2, device_id=meter.device.unit_id)
            assert not reply.isError()
        finally:
            client.close()


def test_truth_is_recomputable_without_the_running_fleet(fleet: Fleet) -> None:
    serial = next(iter(fleet.meters))
    at = fleet.clock.now_datetime()
    assert truth_of(fleet.spec, serial, at, fleet.state_dir) == fleet.truth(serial, at.timestamp())
    spec_without_epoch = fleet.spec.model_copy(update={"epoch": None})
    assert truth_of(spec_without_epoch, serial, at, fleet.state_dir) == fleet.truth(
        serial, at.timestamp()
    )


def test_fault_switched_through_the_control_socket_is_on_the_wire(fleet: Fleet) -> None:
    meter = next(m for m in fleet.meters.values() if m.link == "serial")
    result = subprocess.run(
        [SIM, "fault", meter.serial, "no_answer=true", "--state-dir", str(fleet.state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    client = ModbusSerialClient(meter.port, baudrate=9600, timeout=0.3, retries=0)
    assert client.connect()
    try:
        with pytest.raises(ModbusIOException):  # silence: no answer at all
            client.read_input_registers(0, count=2, device_id=meter.device.unit_id)
        fleet.set_fault(meter.serial, clear=True)
        assert not client.read_input_registers(0, count=2, device_id=meter.device.unit_id).isError()
    finally:
        client.close()


def test_fault_command_refuses_an_unknown_meter(fleet: Fleet) -> None:
    result = subprocess.run(
        [SIM, "fault", "NO-SUCH-METER", "no_answer=true", "--state-dir", str(fleet.state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and "refused" in result.stderr


def test_an_invalid_fleet_file_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text(FLEET_YAML.replace("eastron-sdm120", "eastron-sdm999"))
    result = subprocess.run([SIM, "fleet", str(bad)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert (
        f"{bad}:9: gateways[0].buses[0].meters[1]" in result.stderr
        and "eastron-sdm999" in result.stderr
    )


def test_truth_command_prints_the_registers(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("epoch: 2026-03-01T00:00:00Z\n" + FLEET_YAML)
    result = subprocess.run(
        [SIM, "truth", str(path), "ES01010001", "--at", "2026-03-01T12:00:00"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    expected = truth_of(load_fleet(path), "ES01010001", datetime(2026, 3, 1, 12, tzinfo=UTC))
    assert "1-0:1.8.0" in result.stdout and f"{expected['1-0:1.8.0']:.6g}" in result.stdout


def test_truth_command_without_an_epoch_needs_the_state_folder(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET_YAML)
    result = subprocess.run(
        [SIM, "truth", str(path), "ES01010001", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "give the state folder" in result.stderr


def test_tcp_meter_faults(fleet: Fleet) -> None:
    meter = next(m for m in fleet.meters.values() if m.link == "tcp")
    host, port = meter.port.rsplit(":", 1)
    client = ModbusTcpClient(host, port=int(port), timeout=0.5, retries=0)
    assert client.connect()
    try:
        fleet.set_fault(meter.serial, exception_code=4)
        reply = client.read_input_registers(0, count=2, device_id=meter.device.unit_id)
        assert reply.isError() and reply.exception_code == 4
        fleet.set_fault(meter.serial, clear=True, powered_down=True)
        with pytest.raises(ModbusIOException):
            client.read_input_registers(0, count=2, device_id=meter.device.unit_id)
    finally:
        fleet.set_fault(meter.serial, clear=True)
        client.close()


def test_a_replaced_meter_has_a_new_serial_and_a_fresh_register(fleet: Fleet) -> None:
    meter = [m for m in fleet.meters.values() if m.link == "serial"][-1]
    old_serial, unit = meter.serial, meter.device.unit_id
    before = fleet.truth(old_serial)["1-0:1.8.0"]
    result = subprocess.run(
        [SIM, "replace", old_serial, "--state-dir", str(fleet.state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    new_serial = result.stdout.split()[-1]
    assert new_serial != old_serial and old_serial not in fleet.meters
    # On the wire: the same unit id now shows a register near zero.
    client = ModbusSerialClient(meter.port, baudrate=9600, timeout=1, retries=1)
    assert client.connect()
    try:
        spec = meter.device.profile.quantity("1-0:1.8.0").location
        assert spec is not None
        reply = client.read_input_registers(spec.address, count=spec.register_count, device_id=unit)
        read = decode_register_value(
            reply.registers, spec, meter.device.profile.word_order_of(spec)
        )
    finally:
        client.close()
    assert read < 1.0 < before
    assert read == fleet.truth(new_serial)["1-0:1.8.0"]
    manifest = json.loads((fleet.state_dir / "fleet.json").read_text())
    assert new_serial in {m["serial"] for m in manifest["meters"]}
    config = load_config(fleet.state_dir / "agents" / "gw-a.yaml")
    assert new_serial in {m.serial for bus in config.buses for m in bus.meters}
