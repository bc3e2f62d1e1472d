"""A whole simulated fleet from one YAML file: gateways × buses × meters.

`voltstack-sim fleet FLEET.yaml` starts every meter, prints where each is
reachable, and writes into its state folder what the rest of the stack needs
to wire up without hand work:

- `fleet.json`: every gateway, bus, port and meter (serial, model, unit id,
  link: "serial" | "tcp" for Modbus, "dlms-tcp" | "optical" for DLMS);
- `agents/<gateway>.yaml`: an agent configuration per gateway that reads
  exactly these meters (validated by `voltstack-agent check-config`);
- `ports/<gateway>-<bus>`: stable symlinks to the buses' serial devices;
- `control.sock`: a unix socket taking JSON lines that switch faults on meters
  while the fleet runs (`voltstack-sim fault`).

Values are deterministic: a meter's physics is seeded by the fleet's seed and
its serial, so `truth(serial, at)` recomputes what any meter held at any
moment without asking the running fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.profiles import available_profiles, load_profile
from edge_agent.yamlsource import load_yaml_file
from simulators.clock import SimClock
from simulators.dlms import MANAGEMENT_CLIENT, DlmsMeter
from simulators.dlms_links import DlmsTcpMeter
from simulators.faults import MeterFaults
from simulators.modbus import ModbusMeter, ModbusRtuBus, ModbusTcpMeters
from simulators.optical import OpticalPort
from simulators.physics import SHAPES, MeterPhysics

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeterGroup(_Strict):
    """`count` meters of one model with consecutive unit ids."""

    model: str
    count: int = Field(default=1, ge=1, le=247)
    first_unit: int = Field(default=1, ge=1, le=247)
    shape: Literal["household", "commercial"] = "household"
    peak_w: float | None = Field(default=None, gt=0)
    pv_peak_w: float = Field(default=0.0, ge=0)
    rollover_kwh: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> MeterGroup:
        if self.model not in available_profiles():
            raise ValueError(
                f"model {self.model!r} is not one of: {', '.join(available_profiles())}"
            )
        if load_profile(self.model).protocol != "modbus":
            raise ValueError(f"model {self.model!r} is not a Modbus model")
        if self.first_unit + self.count - 1 > 247:
            raise ValueError("unit ids run past 247")
        return self


class DlmsGroup(_Strict):
    """`count` DLMS meters of one model with consecutive physical HDLC addresses."""

    model: str = "generic-dlms"
    count: int = Field(default=1, ge=1, le=100)
    first_unit: int = Field(default=17, ge=16, le=0x3FFD)  # the lower HDLC address
    shape: Literal["household", "commercial"] = "household"
    peak_w: float | None = Field(default=None, gt=0)
    pv_peak_w: float = Field(default=0.0, ge=0)
    rollover_kwh: float | None = Field(default=None, gt=0)
    password: str = Field(default="00000000", min_length=1, max_length=32)
    clock_drift_s_per_day: float = 0.0
    # Optical port only: HDLC protocol mode E, and whether it takes the baud switch.
    mode_e: bool = True
    baud_switch: bool = True

    @model_validator(mode="after")
    def _check(self) -> DlmsGroup:
        if self.model not in available_profiles() or load_profile(self.model).protocol != "dlms":
            raise ValueError(f"model {self.model!r} is not a DLMS model (e.g. generic-dlms)")
        if self.first_unit + self.count - 1 > 0x3FFD:
            raise ValueError("physical addresses run past 0x3FFD")
        return self


class DlmsTcpSpec(_Strict):
    """DLMS meters on the IEC 62056-47 wrapper over TCP, each on its own loopback port."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    meters: list[DlmsGroup] = Field(min_length=1)


class OpticalSpec(_Strict):
    """DLMS meters read at their optical port (IEC 62056-21), one probe line each."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    baud_char: Literal["1", "2", "3", "4", "5", "6"] = "5"
    meters: list[DlmsGroup] = Field(min_length=1)


class BusSpec(_Strict):
    """A virtual RS-485 bus."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    meters: list[MeterGroup] = Field(min_length=1)


class TcpSpec(_Strict):
    """Modbus TCP meters, each on its own loopback port."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    meters: list[MeterGroup] = Field(min_length=1)


class GatewaySpec(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    interval_s: int = Field(default=60, ge=1)
    buses: list[BusSpec] = []
    tcp: list[TcpSpec] = []
    dlms_tcp: list[DlmsTcpSpec] = []
    optical: list[OpticalSpec] = []


class FleetSpec(_Strict):
    """The fleet file."""

    seed: int = 1
    # When the energy registers held their initial readings. Default: the
    # first start of the fleet in its state folder (kept in fleet.json), so a
    # restarted fleet continues its counters and a first read integrates only
    # the days the fleet has existed.
    epoch: datetime | None = None
    speed: float = Field(default=1.0, gt=0)
    timing: bool = True
    broker: str = "mqtt://127.0.0.1:1883"
    gateways: list[GatewaySpec] = Field(min_length=1)


DEMO_FLEET = Path(__file__).parent / "fleets" / "demo.yaml"


def load_fleet(path: Path) -> FleetSpec:
    """Read and validate a fleet file (errors name file, key and line)."""
    return load_yaml_file(FleetSpec, path)


@dataclass
class SimulatedMeter:
    """A meter of the fleet and where it is."""

    gateway: str
    bus: str
    link: Literal["serial", "tcp", "dlms-tcp", "optical"]
    device: ModbusMeter | DlmsMeter
    port: str  # serial device path or host:port

    @property
    def serial(self) -> str:
        return self.device.serial


def meter_serial(model: str, gateway_index: int, bus_index: int, unit: int) -> str:
    """A stable serial per position: what the meter's nameplate would say."""
    prefix = "".join(part[0] for part in model.split("-")).upper()
    return f"{prefix}{gateway_index:02d}{bus_index:02d}{unit:04d}"


def fleet_epoch(spec: FleetSpec, state_dir: Path) -> datetime:
    """The fleet's epoch: from the spec, else from an earlier run, else today 00:00 UTC."""
    if spec.epoch is not None:
        return spec.epoch
    manifest = state_dir / "fleet.json"
    if manifest.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return datetime.fromisoformat(json.loads(manifest.read_text())["epoch"])
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today


def meter_physics(spec: FleetSpec, group: MeterGroup | DlmsGroup, serial: str) -> MeterPhysics:
    assert spec.epoch is not None, "resolve the epoch first (fleet_epoch)"
    profile = load_profile(group.model)
    seed = spec.seed * 1_000_003 + zlib.crc32(serial.encode())
    peak_w = group.peak_w or (9000.0 if profile.phases == 3 else 4000.0)
    if group.shape == "commercial":
        peak_w *= 3
    initial_kwh = 500.0 + (seed % 20_000)
    return MeterPhysics(
        seed=seed,
        shape=SHAPES[group.shape],
        phases=profile.phases,
        peak_w=peak_w,
        epoch_s=spec.epoch.timestamp(),
        initial_import_kwh=initial_kwh,
        pv_peak_w=group.pv_peak_w,
        rollover_kwh=group.rollover_kwh,
    )


@dataclass
class Fleet:
    """A running fleet (see the module doc). Create with `Fleet.start`."""

    spec: FleetSpec
    state_dir: Path
    clock: SimClock
    meters: dict[str, SimulatedMeter] = field(default_factory=dict)
    buses: list[ModbusRtuBus] = field(default_factory=list)
    tcp_servers: list[ModbusTcpMeters] = field(default_factory=list)
    dlms_servers: list[DlmsTcpMeter] = field(default_factory=list)
    optical_ports: list[OpticalPort] = field(default_factory=list)
    _control: asyncio.AbstractServer | None = None

    @classmethod
    async def start(
        cls, spec: FleetSpec, state_dir: Path, *, clock: SimClock | None = None
    ) -> Fleet:
        state_dir = state_dir.resolve()  # absolute: agent configs are read from anywhere
        state_dir.mkdir(parents=True, exist_ok=True)
        spec = spec.model_copy(update={"epoch": fleet_epoch(spec, state_dir)})
        fleet = cls(spec, state_dir, clock or SimClock(speed=spec.speed))
        for folder in ("agents", "ports"):
            (state_dir / folder).mkdir(parents=True, exist_ok=True)
        try:
            for gateway_index, gateway in enumerate(spec.gateways, start=1):
                await fleet._start_gateway(gateway_index, gateway)
            await fleet._start_control()
        except BaseException:
            await fleet.stop()
            raise
        fleet._write_manifest()
        return fleet

    def _meter(
        self, gateway_index: int, bus_index: int, group: MeterGroup, unit: int
    ) -> ModbusMeter:
        serial = meter_serial(group.model, gateway_index, bus_index, unit)
        return ModbusMeter(
            load_profile(group.model),
            unit,
            serial,
            meter_physics(self.spec, group, serial),
            self.clock,
        )

    def _dlms_meter(
        self, gateway_index: int, link_index: int, group: DlmsGroup, unit: int
    ) -> DlmsMeter:
        serial = meter_serial(group.model, gateway_index, link_index, unit)
        meter = dlms_meter(self.spec, group, serial, unit, self.clock)
        return meter

    async def _start_dlms(self, gateway_index: int, gateway: GatewaySpec) -> None:
        link_index = len(gateway.buses) + len(gateway.tcp)
        for dlms_spec in gateway.dlms_tcp:
            link_index += 1
            for group in dlms_spec.meters:
                for unit in range(group.first_unit, group.first_unit + group.count):
                    meter = self._dlms_meter(gateway_index, link_index, group, unit)
                    server = DlmsTcpMeter(meter)
                    self.dlms_servers.append(server)
                    await server.start()
                    self.meters[meter.serial] = SimulatedMeter(
                        gateway.id,
                        dlms_spec.name,
                        "dlms-tcp",
                        meter,
                        f"{server.host}:{server.port}",
                    )
        for optical_spec in gateway.optical:
            link_index += 1
            for group in optical_spec.meters:
                for unit in range(group.first_unit, group.first_unit + group.count):
                    meter = self._dlms_meter(gateway_index, link_index, group, unit)
                    probe = OpticalPort(
                        meter,
                        timing=self.spec.timing,
                        baud_char=optical_spec.baud_char,
                        mode_e=group.mode_e,
                        baud_switch=group.baud_switch,
                    )
                    self.optical_ports.append(probe)
                    await probe.start()
                    link = (
                        self.state_dir
                        / "ports"
                        / f"{gateway.id}-{optical_spec.name}-{meter.serial.lower()}"
                    )
                    probe.line.link(link)
                    self.meters[meter.serial] = SimulatedMeter(
                        gateway.id, optical_spec.name, "optical", meter, str(link)
                    )

    async def _start_gateway(self, gateway_index: int, gateway: GatewaySpec) -> None:
        for bus_index, bus_spec in enumerate(gateway.buses, start=1):
            devices = [
                self._meter(gateway_index, bus_index, group, unit)
                for group in bus_spec.meters
                for unit in range(group.first_unit, group.first_unit + group.count)
            ]
            bus = ModbusRtuBus(
                devices,
                baudrate=bus_spec.baudrate,
                parity=bus_spec.parity,
                stopbits=bus_spec.stopbits,
                timing=self.spec.timing,
            )
            self.buses.append(bus)
            await bus.start()
            link = self.state_dir / "ports" / f"{gateway.id}-{bus_spec.name}"
            bus.line.link(link)
            for device in devices:
                self.meters[device.serial] = SimulatedMeter(
                    gateway.id, bus_spec.name, "serial", device, str(link)
                )
        for tcp_index, tcp_spec in enumerate(gateway.tcp, start=len(gateway.buses) + 1):
            for group in tcp_spec.meters:
                for unit in range(group.first_unit, group.first_unit + group.count):
                    device = self._meter(gateway_index, tcp_index, group, unit)
                    server = ModbusTcpMeters([device])
                    self.tcp_servers.append(server)
                    await server.start()
                    self.meters[device.serial] = SimulatedMeter(
                        gateway.id, tcp_spec.name, "tcp", device, f"{server.host}:{server.port}"
                    )
        await self._start_dlms(gateway_index, gateway)

    async def stop(self) -> None:
        if self._control is not None:
            self._control.close()
            await self._control.wait_closed()
            self._control = None
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / "control.sock").unlink()
        for server in self.tcp_servers:
            await server.stop()
        for bus in self.buses:
            await bus.stop()
        for dlms_server in self.dlms_servers:
            await dlms_server.stop()
        for probe in self.optical_ports:
            await asyncio.to_thread(probe.stop_sync)
        self.tcp_servers.clear()
        self.buses.clear()
        self.dlms_servers.clear()
        self.optical_ports.clear()

    # -- what the rest of the stack reads ---------------------------------

    def manifest(self) -> dict[str, Any]:
        return {
            "epoch": self.spec.epoch.isoformat() if self.spec.epoch else None,
            "seed": self.spec.seed,
            "meters": [
                {
                    "serial": m.serial,
                    "gateway": m.gateway,
                    "bus": m.bus,
                    "link": m.link,
                    "port": m.port,
                    "model": m.device.profile.id,
                    "unit_id": m.device.unit_id,
                }
                for m in self.meters.values()
            ],
        }

    def agent_config(self, gateway: GatewaySpec) -> dict[str, Any]:
        """The agent configuration that reads this gateway's simulated meters."""
        buses: list[dict[str, Any]] = []
        for bus_spec in gateway.buses:
            meters = [
                m
                for m in self.meters.values()
                if m.gateway == gateway.id and m.bus == bus_spec.name
            ]
            buses.append(
                {
                    "name": bus_spec.name,
                    "link": "serial",
                    "port": meters[0].port,
                    "baudrate": bus_spec.baudrate,
                    "parity": bus_spec.parity,
                    "stopbits": bus_spec.stopbits,
                    "meters": [self._meter_entry(m, gateway) for m in meters],
                }
            )
        for tcp_spec in gateway.tcp:
            for m in self.meters.values():
                if m.gateway == gateway.id and m.bus == tcp_spec.name:
                    host, port = m.port.rsplit(":", 1)
                    buses.append(
                        {
                            "name": f"{tcp_spec.name}-{m.serial.lower()}",
                            "link": "tcp",
                            "host": host,
                            "port": int(port),
                            "meters": [self._meter_entry(m, gateway)],
                        }
                    )
        buses.extend(self._dlms_buses(gateway))
        config: dict[str, Any] = {
            "gateway": {"id": gateway.id, "site": "simulated"},
            "uplink": {"broker": self.spec.broker, "username": gateway.id},
            # Ephemeral: several simulated gateways' agents share one machine.
            "health": {"port": 0},
            "buffer": {"path": str(self.state_dir / "agents" / f"{gateway.id}.buffer.sqlite")},
            "buses": buses,
        }
        if self.clock.speed != 1:
            config["simulation"] = self._simulation_section()
        return config

    def _simulation_section(self) -> dict[str, Any]:
        """The agent's `simulation:` section: our clock as (epoch, speed), where
        epoch is the real moment at which the simulated clock equals real time
        (for any clock running `speed` times real time, sim = E + (real − E) × speed)."""
        speed = self.clock.speed
        real_s, simulated_s = time.time(), self.clock.now()
        epoch_s = (speed * real_s - simulated_s) / (speed - 1)
        return {"epoch": datetime.fromtimestamp(epoch_s, UTC).isoformat(), "speed": speed}

    def _dlms_buses(self, gateway: GatewaySpec) -> list[dict[str, Any]]:
        """One bus per DLMS meter: a TCP connection or an optical probe each."""
        buses: list[dict[str, Any]] = []
        for m in self.meters.values():
            if m.gateway != gateway.id or not isinstance(m.device, DlmsMeter):
                continue
            name = f"{m.bus}-{m.serial.lower()}"
            if m.link == "dlms-tcp":
                host, port = m.port.rsplit(":", 1)
                buses.append(
                    {
                        "name": name,
                        "link": "dlms-tcp",
                        "host": host,
                        "port": int(port),
                        "meters": [self._dlms_entry(m, gateway, "generic-dlms")],
                    }
                )
                continue
            spec = next(o for o in gateway.optical if o.name == m.bus)
            group = self._group_of(m.serial)
            buses.append(
                {
                    "name": name,
                    "link": "optical",
                    "port": m.port,
                    "baudrate": {"1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600}.get(
                        spec.baud_char, 19200
                    ),
                    "mode": "E" if group.mode_e else "C",
                    "baud_switch": group.baud_switch,
                    "meters": [
                        self._dlms_entry(
                            m, gateway, "generic-dlms" if group.mode_e else "generic-iec62056-21"
                        )
                    ],
                }
            )
        return buses

    def _group_of(self, serial: str) -> DlmsGroup:
        group = _serials(self.spec)[serial][2]
        assert isinstance(group, DlmsGroup)
        return group

    @staticmethod
    def _dlms_entry(meter: SimulatedMeter, gateway: GatewaySpec, profile: str) -> dict[str, Any]:
        device = meter.device
        assert isinstance(device, DlmsMeter)
        entry: dict[str, Any] = {"serial": meter.serial, "profile": profile}
        if profile == "generic-dlms":
            entry.update(
                {
                    "client_address": MANAGEMENT_CLIENT,
                    "server_address": device.logical_address,
                    "password": device.password,
                }
            )
            if meter.link == "optical":
                entry["physical_address"] = device.physical_address
        entry["interval_s"] = gateway.interval_s
        return entry

    @staticmethod
    def _meter_entry(meter: SimulatedMeter, gateway: GatewaySpec) -> dict[str, Any]:
        return {
            "serial": meter.serial,
            "profile": meter.device.profile.id,
            "unit_id": meter.device.unit_id,
            "interval_s": gateway.interval_s,
        }

    def _write_manifest(self) -> None:
        (self.state_dir / "fleet.json").write_text(json.dumps(self.manifest(), indent=2))
        for gateway in self.spec.gateways:
            path = self.state_dir / "agents" / f"{gateway.id}.yaml"
            path.write_text(
                "# Written by voltstack-sim: reads the simulated meters.\n"
                + yaml.safe_dump(self.agent_config(gateway), sort_keys=False)
            )

    # -- ground truth and faults --------------------------------------------

    def truth(self, serial: str, at_s: float | None = None) -> dict[str, float]:
        """What meter `serial` presented at `at_s` (default: now), by OBIS code."""
        device = self.meters[serial].device
        return device.presented_values(self.clock.now() if at_s is None else at_s)

    def set_fault(self, serial: str, **faults: Any) -> MeterFaults:
        """Switch faults on a meter, e.g. `set_fault(s, no_answer=True)`; `clear=True` heals it."""
        target = self.meters[serial].device.faults
        if faults.pop("clear", False):
            target.clear()
        for name, value in faults.items():
            if not hasattr(target, name):
                raise KeyError(f"no fault {name!r}; faults: {', '.join(MeterFaults().__dict__)}")
            setattr(
                target,
                name,
                bytes.fromhex(value) if name == "noise" and isinstance(value, str) else value,
            )
        return target

    async def _start_control(self) -> None:
        path = self.state_dir / "control.sock"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._control = await asyncio.start_unix_server(self._on_control, path=str(path))

    async def _on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write((json.dumps(self._control_command(line)) + "\n").encode())
                await writer.drain()
        finally:
            writer.close()

    def replace_meter(self, serial: str) -> str:
        """A technician swaps the meter: same place and address, a new serial,
        a fresh energy register. Returns the new serial; fleet.json and the
        agent configs are rewritten (the agent must be reconfigured, as in
        the field). Its ground truth comes from `truth`, not `truth_of`."""
        placed = self.meters.pop(serial)
        device = placed.device
        new_serial = _replacement_serial(serial, set(self.meters))
        now = self.clock.now()
        device.serial = new_serial
        device.physics = MeterPhysics(
            seed=self.spec.seed * 1_000_003 + zlib.crc32(new_serial.encode()),
            shape=device.physics.shape,
            phases=device.physics.phases,
            peak_w=device.physics.peak_w,
            epoch_s=now,
            initial_import_kwh=0.0,
            pv_peak_w=device.physics.pv_peak_w,
            rollover_kwh=device.physics.rollover_kwh,
        )
        if isinstance(device, DlmsMeter):  # a new meter: its own clock, profile and log
            device.installed_s = device.physics.epoch_s
            device.events.clear()
            device.outages.clear()
        device.faults.clear()
        self.meters[new_serial] = placed
        self._write_manifest()
        return new_serial

    def _control_command(self, line: bytes) -> dict[str, Any]:
        try:
            command = json.loads(line)
            if command.get("replace"):
                return {"ok": True, "serial": self.replace_meter(command["serial"])}
            faults = self.set_fault(command["serial"], **command.get("faults", {}))
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}
        state = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in faults.__dict__.items()}
        return {"ok": True, "serial": command["serial"], "faults": state}


def _replacement_serial(serial: str, taken: set[str]) -> str:
    base = serial.split("-R")[0]
    number = 1
    while f"{base}-R{number}" in taken or f"{base}-R{number}" == serial:
        number += 1
    return f"{base}-R{number}"


def dlms_meter(
    spec: FleetSpec, group: DlmsGroup, serial: str, unit: int, clock: SimClock
) -> DlmsMeter:
    """A fleet's DLMS meter (its physics seeded like every fleet meter)."""
    meter = DlmsMeter(
        serial,
        meter_physics(spec, group, serial),
        clock,
        password=group.password,
        physical_address=unit,
        profile=load_profile(group.model),
    )
    meter.faults.clock_drift_s_per_day = group.clock_drift_s_per_day
    return meter


def _serials(spec: FleetSpec) -> dict[str, tuple[int, int, MeterGroup | DlmsGroup, int]]:
    """Every meter's serial → (gateway index, link index, group, unit)."""
    found = {}
    for gateway_index, gateway in enumerate(spec.gateways, start=1):
        links: list[list[MeterGroup] | list[DlmsGroup]] = [bus.meters for bus in gateway.buses]
        links += [tcp.meters for tcp in gateway.tcp]
        links += [dlms.meters for dlms in gateway.dlms_tcp]
        links += [probe.meters for probe in gateway.optical]
        for link_index, groups in enumerate(links, start=1):
            for group in groups:
                for unit in range(group.first_unit, group.first_unit + group.count):
                    serial = meter_serial(group.model, gateway_index, link_index, unit)
                    found[serial] = (gateway_index, link_index, group, unit)
    return found


def truth_of(
    spec: FleetSpec, serial: str, at: datetime | None = None, state_dir: Path | None = None
) -> dict[str, float]:
    """Ground truth without a running fleet: the physics is a function of the seed.

    Args:
        state_dir: where the fleet ran, for its epoch when the spec sets none.

    Raises:
        KeyError: no meter with that serial in the fleet.
        ValueError: the epoch is unknown (no `epoch:` and no state folder).
    """
    if spec.epoch is None:
        if state_dir is None or not (state_dir / "fleet.json").is_file():
            raise ValueError("the fleet sets no epoch: give the state folder it ran in")
        spec = spec.model_copy(update={"epoch": fleet_epoch(spec, state_dir)})
    try:
        _, _, group, unit = _serials(spec)[serial]
    except KeyError:
        raise KeyError(f"no meter {serial!r} in this fleet") from None
    when = at or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if isinstance(group, DlmsGroup):
        meter = dlms_meter(spec, group, serial, unit, SimClock(start=when.timestamp()))
        return meter.presented_values(when.timestamp())
    device = ModbusMeter(
        load_profile(group.model),
        unit,
        serial,
        meter_physics(spec, group, serial),
        SimClock(start=when.timestamp()),
    )
    return device.presented_values(when.timestamp())
