"""The Modbus reader against simulated meters on a virtual RS-485 bus."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from edge_agent.adapters.modbus_reader import ModbusMeterReader
from edge_agent.profiles import load_profile
from firmware_bridge.bus import BreakerPolicy, ModbusBus, PolledDevice
from firmware_bridge.exceptions import NoResponse
from firmware_bridge.links import SerialLink
from simulators.clock import SimClock
from simulators.modbus import ModbusMeter, ModbusRtuBus
from simulators.physics import MeterPhysics
from simulators.runtime import BackgroundLoop

pytestmark = pytest.mark.integration

START_S = 1_767_225_600.0
MODELS = ["eastron-sdm630", "eastron-sdm120", "carlo-gavazzi-em24"]


def sim_meters(count: int, clock: SimClock) -> list[ModbusMeter]:
    meters = []
    for unit in range(1, count + 1):
        profile = load_profile(MODELS[unit % 3])
        physics = MeterPhysics(seed=unit, phases=profile.phases, epoch_s=START_S)
        meters.append(ModbusMeter(profile, unit, f"M{unit:03d}", physics, clock))
    return meters


@pytest.fixture(scope="module")
def loop() -> Iterator[BackgroundLoop]:
    with BackgroundLoop() as background:
        yield background


def run_bus(loop: BackgroundLoop, meters: list[ModbusMeter], timing: bool) -> ModbusRtuBus:
    bus = ModbusRtuBus(meters, baudrate=9600, parity="E", timing=timing)
    loop.run(bus.start())
    return bus


def readers(
    bus_link: SerialLink, meters: list[ModbusMeter], **bus_options: object
) -> tuple[ModbusBus, list[ModbusMeterReader]]:
    bus = ModbusBus(bus_link, **bus_options)  # type: ignore[arg-type]
    return bus, [
        ModbusMeterReader(
            bus, PolledDevice(m.serial, m.unit_id, timeout_s=0.3, retries=1), m.profile
        )
        for m in meters
    ]


def test_32_meters_of_mixed_models_read_correctly(loop: BackgroundLoop) -> None:
    clock = SimClock(start=START_S + 15 * 3600, speed=1e-9)  # frozen: reads equal truth
    meters = sim_meters(32, clock)
    sim_bus = run_bus(loop, meters, timing=False)
    link = SerialLink(sim_bus.port, baudrate=9600)
    try:
        _, meter_readers = readers(link, meters)
        for meter, reader in zip(meters, meter_readers, strict=True):
            result = reader.read()
            assert result.complete, result.failures
            truth = meter.presented_values(clock.now())
            read = {r.obis: r.value for r in result.readings}
            assert read == pytest.approx(truth, rel=1e-12), meter.serial
            assert {r.unit for r in result.readings} <= {
                "V",
                "A",
                "W",
                "VA",
                "",
                "Hz",
                "var",
                "°",
                "kWh",
                "kvarh",
            }
    finally:
        link.close()
        loop.run(sim_bus.stop())


def _reads_per_second(meter_readers: list[ModbusMeterReader], seconds: float) -> dict[str, float]:
    done = dict.fromkeys((r.device.name for r in meter_readers), 0)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        for reader in meter_readers:
            if reader.read().complete:
                done[reader.device.name] += 1
    elapsed = time.monotonic() - started
    return {name: count / elapsed for name, count in done.items()}


def test_a_dead_meter_costs_its_neighbours_almost_nothing(loop: BackgroundLoop) -> None:
    # At line rate (9600 8E1, turnarounds on): four meters, then one goes dead.
    meters = sim_meters(4, SimClock(start=START_S))
    sim_bus = run_bus(loop, meters, timing=True)
    link = SerialLink(sim_bus.port, baudrate=9600, parity="N")
    try:
        bus, meter_readers = readers(link, meters, breaker_policy=BreakerPolicy(first_backoff_s=30))
        healthy = meter_readers[1:]
        baseline = _reads_per_second(meter_readers, 4.0)
        meters[0].faults.no_answer = True
        # Noticing costs two timeouts (the breaker's threshold); then steady state.
        _reads_per_second(meter_readers, 0.1)
        _reads_per_second(meter_readers, 0.1)
        with_dead = _reads_per_second(meter_readers, 4.0)
        for reader in healthy:
            name = reader.device.name
            # Equal share of the bus before; the dead one's share goes to them.
            assert with_dead[name] >= 0.9 * baseline[name], (name, baseline, with_dead)
        assert with_dead[meters[0].serial] == 0
        assert bus.statistics.skipped_breaker_open > 0
    finally:
        link.close()
        loop.run(sim_bus.stop())


def test_a_revived_meter_is_read_again_after_its_backoff(loop: BackgroundLoop) -> None:
    meters = sim_meters(2, SimClock(start=START_S))
    sim_bus = run_bus(loop, meters, timing=False)
    link = SerialLink(sim_bus.port, baudrate=9600)
    try:
        policy = BreakerPolicy(failures_to_open=1, first_backoff_s=0.5, max_backoff_s=1.0)
        _, meter_readers = readers(link, meters, breaker_policy=policy)
        meters[0].faults.powered_down = True
        failed = meter_readers[0].read()
        assert failed.failures and isinstance(failed.failures[0].error, NoResponse)
        meters[0].faults.powered_down = False
        time.sleep(0.6)
        assert meter_readers[0].read().complete
    finally:
        link.close()
        loop.run(sim_bus.stop())
