"""Find the Modbus meters on a bus and tell their models apart.

For each serial setting and unit id, the scan sends the identification reads
of the known device profiles (`identify:` rules) — reads shared by several
profiles are sent once — and a unit whose answers satisfy every rule of a
profile is reported as that model. A unit that answers but matches no profile
is still reported ("unknown"), so a technician sees every device on the bus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from edge_agent.profiles import DeviceProfile, RegisterSpec, available_profiles, load_profile
from fastcodec import modbus
from firmware_bridge.bus import ModbusBus, PolledDevice
from firmware_bridge.exceptions import BusError, RemoteException
from firmware_bridge.links import SerialLink

__all__ = ["FoundMeter", "SerialSetting", "scan_bus"]


@dataclass(frozen=True)
class SerialSetting:
    baudrate: int
    parity: str
    stopbits: int = 1

    def __str__(self) -> str:
        return f"{self.baudrate} 8{self.parity}{self.stopbits}"


@dataclass(frozen=True)
class FoundMeter:
    """A unit that answered."""

    unit_id: int
    setting: SerialSetting
    profile_id: str | None  # None: answered, but matches no known model
    voltage_v: float | None


def _modbus_profiles() -> list[DeviceProfile]:
    profiles = [load_profile(p) for p in available_profiles()]
    return [p for p in profiles if p.protocol == "modbus" and p.modbus and p.modbus.identify]


def _read_value(
    bus: ModbusBus, device: PolledDevice, spec: RegisterSpec, order: str
) -> float | None:
    build = (
        modbus.build_read_input_registers
        if spec.table == "input"
        else modbus.build_read_holding_registers
    )
    try:
        answer = bus.transact(device, build(device.unit_id, spec.address, spec.register_count))
    except RemoteException:
        return None  # alive, but this register is not there: not this model
    assert isinstance(answer, modbus.ReadRegistersResponse)
    field = modbus.RegisterField(
        0, modbus.DataType(spec.type), modbus.RegisterOrder(order), 0, spec.scale
    )
    return float(modbus.decode_registers(answer.payload, [field])[0])


def identify(
    bus: ModbusBus, device: PolledDevice, profiles: Sequence[DeviceProfile]
) -> tuple[str | None, float | None]:
    """The model of a unit, and its L1 voltage when known.

    Raises:
        BusError: the unit does not answer (or stops answering).
    """
    cache: dict[tuple[str, int, str, str, float], float | None] = {}
    matches: list[tuple[str, float | None]] = []
    for profile in profiles:
        assert profile.modbus is not None
        voltage: float | None = None
        for rule in profile.modbus.identify:
            spec = rule.location
            order = profile.word_order_of(spec)
            key = (spec.table, spec.address, spec.type, order, spec.scale)
            if key not in cache:
                cache[key] = _read_value(bus, device, spec, order)
            value = cache[key]
            if value is None or not rule.minimum <= value <= rule.maximum:
                break
            voltage = voltage if voltage is not None else value
        else:
            matches.append((profile.id, voltage))
    return matches[0] if matches else (None, None)


def scan_bus(
    port: str,
    *,
    settings: Iterable[SerialSetting],
    unit_ids: Iterable[int],
    timeout_s: float = 0.1,
    progress: Callable[[SerialSetting, int], None] | None = None,
) -> list[FoundMeter]:
    """Probe every unit id at every setting; return what answered.

    The first probe of a unit is the first identification read of the first
    profile; silence there moves on at once (one timeout per absent unit).

    Raises:
        LinkOpenError: the port cannot be opened.
    """
    profiles = _modbus_profiles()
    units = list(unit_ids)
    found: list[FoundMeter] = []
    for setting in settings:
        link = SerialLink(
            port, baudrate=setting.baudrate, parity=setting.parity, stopbits=setting.stopbits
        )
        try:
            # No breaker here: every unit is asked exactly once per setting.
            bus = ModbusBus(link)
            for unit in units:
                if progress:
                    progress(setting, unit)
                device = PolledDevice(f"unit {unit}", unit, timeout_s=timeout_s, retries=0)
                try:
                    model, voltage = identify(bus, device, profiles)
                except BusError:
                    bus.breaker(device).succeeded()  # forget: this was a probe
                    continue
                found.append(FoundMeter(unit, setting, model, voltage))
        finally:
            link.close()
        if found:
            break  # a bus runs at one setting: stop at the first that finds meters
    return found
