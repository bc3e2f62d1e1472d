"""`python -m bench bus`: a full read cycle of 32 meters on a 9600-baud bus.

The simulated bus (simulators.modbus) delivers bytes at the line rate of 9600
8E1 (872.7 bytes/s) and each meter answers after its model's turnaround. It
runs in a process of its own, as meters are devices of their own: our poller
then does not share an interpreter with them. In the same run, two pollers
read every quantity of every meter's profile once:

- ours: the request planner merges each meter's registers into the fewest
  requests, and the bus leaves only the 3.5-character silence between frames;
- a naive poller: one request per quantity, the way most integrations do it.

Printed: cycle time, bytes on the wire per second against the line's
capacity, values per second, the ratio between the two pollers, each cycle
against its physical minimum (the same requests and answers back to back,
separated only by what the protocol and the meters impose: each meter's
turnaround and the 3.5-character silence), and our cycle per model. Goal:
our cycle uses at least 85 % of the line's capacity.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections import defaultdict
from dataclasses import dataclass
from multiprocessing.connection import Connection

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
METERS = 32


@dataclass
class Share:
    """What a set of reads put on the line."""

    seconds: float = 0.0
    wire_bytes: int = 0
    values: int = 0
    minimum_s: float = 0.0
    readers: int = 0

    def add(self, seconds: float, wire_bytes: int, values: int, minimum_s: float) -> None:
        self.seconds += seconds
        self.wire_bytes += wire_bytes
        self.values += values
        self.minimum_s += minimum_s
        self.readers += 1


Cycle = tuple[float, dict[str, Share]]  # wall time, each model's share


def _meters(epoch_s: float) -> list[ModbusMeter]:
    clock = SimClock()
    meters = []
    for unit in range(1, METERS + 1):
        profile = load_profile(MODELS[unit % 3])
        physics = MeterPhysics(seed=unit, phases=profile.phases, epoch_s=epoch_s)
        meters.append(ModbusMeter(profile, unit, f"M{unit:02d}", physics, clock))
    return meters


def _serve_bus(epoch_s: float, parent: Connection) -> None:
    """The simulated bus, in its own process, until the parent says stop."""
    with BackgroundLoop() as loop:
        sim = ModbusRtuBus(_meters(epoch_s), baudrate=9600, parity="E", timing=True)
        loop.run(sim.start())
        try:
            parent.send((sim.port, sim.line.capacity_bytes_per_s))
            parent.recv()  # "stop", or EOF when the parent is gone
        except EOFError:
            pass
        finally:
            loop.run(sim.stop())


def _physical_minimum_s(reader: ModbusMeterReader, character_s: float) -> float:
    """One reader's requests if the line never idled beyond turnarounds and silences."""
    turnaround_s = reader.profile.modbus.turnaround_ms / 1000  # type: ignore[union-attr]
    return sum(
        (8 + 5 + 2 * block.count + 3.5) * character_s + turnaround_s for block in reader.plan
    )


def _cycle(bus: ModbusBus, readers: list[ModbusMeterReader]) -> Cycle:
    """Read every meter once: the cycle's wall time, and what each model put on the line."""
    shares: dict[str, Share] = defaultdict(Share)
    character_s = bus.link.character_time_s
    cycle_started = time.monotonic()
    for reader in readers:
        bytes_before = bus.statistics.bytes_in + bus.statistics.bytes_out
        started = time.monotonic()
        result = reader.read()
        elapsed = time.monotonic() - started
        if result.failures:
            raise RuntimeError(f"{reader.device.name}: {result.failures[0].error}")
        wire = bus.statistics.bytes_in + bus.statistics.bytes_out - bytes_before
        shares[reader.profile.id].add(
            elapsed, wire, len(result.readings), _physical_minimum_s(reader, character_s)
        )
    return time.monotonic() - cycle_started, shares


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


def _total(cycle: Cycle) -> Share:
    """The whole cycle; its time is the wall time, gaps between meters included."""
    wall_s, shares = cycle
    total = Share()
    for share in shares.values():
        total.add(0.0, share.wire_bytes, share.values, share.minimum_s)
    total.seconds = wall_s
    return total


def _measure(port: str, meters: list[ModbusMeter]) -> dict[str, Cycle]:
    link = SerialLink(port, baudrate=9600, parity="E")
    try:
        bus = ModbusBus(link)
        return {
            name: _cycle(bus, _readers(bus, meters, naive=naive))
            for name, naive in (("planned (ours)", False), ("one request per value", True))
        }
    finally:
        link.close()


def run() -> None:
    epoch_s = time.time() - 3600
    print(machine_line())
    context = multiprocessing.get_context("spawn")
    ours_end, bus_end = context.Pipe()
    server = context.Process(target=_serve_bus, args=(epoch_s, bus_end), name="simulated-bus")
    server.start()
    bus_end.close()  # ours is gone from this process: a dead child is EOF, not a hang
    try:
        if not ours_end.poll(60):
            raise RuntimeError("the simulated bus did not start within 60 s")
        port, capacity = ours_end.recv()
        results = _measure(port, _meters(epoch_s))
    finally:
        with contextlib.suppress(OSError):
            ours_end.send("stop")
        server.join(timeout=30)
        if server.is_alive():
            server.terminate()
    _report(results, capacity)


def _report(results: dict[str, Cycle], capacity: float) -> None:
    print(
        f"bus: {METERS} meters (SDM630, SDM120, EM24), 9600 8E1, "
        f"capacity {capacity:.1f} bytes/s; simulated meters in their own process"
    )
    ours_s = _total(results["planned (ours)"]).seconds
    for name, cycle in results.items():
        total = _total(cycle)
        rate = total.wire_bytes / total.seconds
        print(
            f"{name:<24} cycle {total.seconds:7.2f} s  {total.wire_bytes:6d} B  {rate:6.1f} B/s = "
            f"{rate / capacity:5.1%} of capacity  {total.values / total.seconds:6.1f} values/s  "
            f"{total.seconds / ours_s:5.2f}x our cycle time  physical minimum "
            f"{total.minimum_s:6.2f} s ({total.minimum_s / total.seconds:5.1%} of it reached)"
        )
    for model, share in sorted(results["planned (ours)"][1].items()):
        ceiling = share.wire_bytes / share.minimum_s / capacity
        print(
            f"  ours, {model:<20} x{share.readers:<3} {share.values // share.readers:3d} values"
            f"/meter  {share.wire_bytes / share.seconds / capacity:5.1%} of capacity  "
            f"(its physical ceiling {ceiling:5.1%})"
        )
    ours = _total(results["planned (ours)"])
    utilisation = ours.wire_bytes / ours.seconds / capacity
    print(
        f"goal ≥ {GOAL_UTILISATION:.0%} of the line's capacity: {utilisation:.1%} "
        f"({'met' if utilisation >= GOAL_UTILISATION else 'NOT met'}; "
        f"physical ceiling of these requests {ours.wire_bytes / ours.minimum_s / capacity:.1%})"
    )
