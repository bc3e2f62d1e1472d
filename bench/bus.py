"""`python -m bench bus`: a full read cycle of 32 meters on a 9600-baud bus.

The simulated bus (simulators.modbus) delivers bytes at the line rate of 9600
8E1 (872.7 bytes/s) and each meter answers after its model's turnaround. In
the same run, two pollers read every quantity of every meter once:

- ours: the request planner merges each meter's registers into the fewest
  requests, and the bus leaves only the 3.5-character silence between frames;
- a naive poller: one request per quantity, the way most integrations do it.

Printed: cycle time, bytes on the wire per second against the line's
capacity, values per second, the ratio between the two pollers, and each
cycle against its physical minimum: the same requests and answers back to
back, separated only by what the protocol and the meters impose (each
meter's turnaround and the 3.5-character silence). Goal: our cycle uses at
least 85 % of the line's capacity.
"""

from __future__ import annotations

import time

from bench._timing import machine_line
from edge_agent.adapters.modbus_reader import ModbusMeterReader
from edge_agent.profiles import load_profile
from firmware_bridge.bus import ModbusBus, PolledDevice
from firmware_bridge.links import SerialLink
from simulators.clock import SimClock
from simulators.modbus import ModbusMeter, ModbusRtuBus
from simulators.physics import MeterPhysics
from simulators.runtime import BackgroundLoop

MODELS = ["eastron-sdm630", "eastron-sdm120", "carlo-gavazzi-em24"]
GOAL_UTILISATION = 0.85


def _meters() -> list[ModbusMeter]:
    clock = SimClock()
    meters = []
    for unit in range(1, 33):
        profile = load_profile(MODELS[unit % 3])
        physics = MeterPhysics(seed=unit, phases=profile.phases, epoch_s=time.time() - 3600)
        meters.append(ModbusMeter(profile, unit, f"M{unit:02d}", physics, clock))
    return meters


def _cycle(bus: ModbusBus, readers: list[ModbusMeterReader]) -> tuple[float, int, int]:
    """Read every meter once: (seconds, bytes on the wire, values read)."""
    bytes_before = bus.statistics.bytes_in + bus.statistics.bytes_out
    started = time.monotonic()
    values = 0
    for reader in readers:
        result = reader.read()
        if result.failures:
            raise RuntimeError(f"{reader.device.name}: {result.failures[0].error}")
        values += len(result.readings)
    elapsed = time.monotonic() - started
    return elapsed, bus.statistics.bytes_in + bus.statistics.bytes_out - bytes_before, values


def _physical_minimum_s(readers: list[ModbusMeterReader], character_s: float) -> float:
    """The cycle if the line never idled beyond turnarounds and silences."""
    total = 0.0
    for reader in readers:
        turnaround_s = reader.profile.modbus.turnaround_ms / 1000  # type: ignore[union-attr]
        for block in reader.plan:
            wire_bytes = 8 + 5 + 2 * block.count
            total += wire_bytes * character_s + turnaround_s + 3.5 * character_s
    return total


def _readers(bus: ModbusBus, meters: list[ModbusMeter], *, naive: bool) -> list[ModbusMeterReader]:
    readers = []
    for meter in meters:
        device = PolledDevice(meter.serial, meter.unit_id, timeout_s=0.5, retries=0)
        if naive:  # one reader per quantity: one request each
            readers += [
                ModbusMeterReader(bus, device, meter.profile, [q]) for q in meter.profile.quantities
            ]
        else:
            readers.append(ModbusMeterReader(bus, device, meter.profile))
    return readers


def run() -> None:
    meters = _meters()
    print(machine_line())
    with BackgroundLoop() as loop:
        sim = ModbusRtuBus(meters, baudrate=9600, parity="E", timing=True)
        loop.run(sim.start())
        capacity = sim.line.capacity_bytes_per_s
        try:
            link = SerialLink(sim.port, baudrate=9600, parity="E")
            bus = ModbusBus(link)
            results, minimum = {}, {}
            for name, naive in (("planned (ours)", False), ("one request per value", True)):
                readers = _readers(bus, meters, naive=naive)
                results[name] = _cycle(bus, readers)
                minimum[name] = _physical_minimum_s(readers, link.character_time_s)
        finally:
            link.close()
            loop.run(sim.stop())
    print(f"bus: 32 meters (SDM630, SDM120, EM24), 9600 8E1, capacity {capacity:.1f} bytes/s")
    ours_s = results["planned (ours)"][0]
    for name, (seconds, wire_bytes, values) in results.items():
        rate = wire_bytes / seconds
        print(
            f"{name:<24} cycle {seconds:7.2f} s  {wire_bytes:6d} B  {rate:6.1f} B/s = "
            f"{rate / capacity:5.1%} of capacity  {values / seconds:6.1f} values/s  "
            f"{seconds / ours_s:5.2f}x our cycle time  physical minimum {minimum[name]:6.2f} s "
            f"({minimum[name] / seconds:5.1%} of it reached)"
        )
    utilisation = results["planned (ours)"][1] / ours_s / capacity
    print(
        f"goal ≥ {GOAL_UTILISATION:.0%} of the line's capacity: {utilisation:.1%} "
        f"({'met' if utilisation >= GOAL_UTILISATION else 'NOT met'})"
    )
