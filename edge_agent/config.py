"""The agent's configuration: one YAML file, validated before anything starts.

`load_config(path)` returns an `AgentConfig` or raises `ConfigFileError`
naming the file, key and line of every mistake (the agent refuses to start on
one). Secrets may come from files (`password_file:`, e.g. a systemd
credential) instead of the YAML itself. The full reference is
docs/agent-config.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from edge_agent.profiles import available_profiles
from edge_agent.yamlsource import ConfigFileError, load_yaml_file

__all__ = [
    "AgentConfig",
    "BufferConfig",
    "BusConfig",
    "ConfigFileError",
    "DlmsSerialBusConfig",
    "DlmsTcpBusConfig",
    "GatewayConfig",
    "HealthConfig",
    "MeterConfig",
    "OpticalBusConfig",
    "SerialBusConfig",
    "SimulationConfig",
    "TcpBusConfig",
    "UplinkConfig",
    "load_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayConfig(_Strict):
    """Who this gateway is."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    site: str = ""


class UplinkConfig(_Strict):
    """The MQTT broker and this gateway's credentials."""

    broker: str  # mqtt://host:1883 or mqtts://host:8883
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    max_inflight: int = Field(default=20, ge=1, le=1000)

    @model_validator(mode="after")
    def _check(self) -> UplinkConfig:
        url = urlsplit(self.broker)
        if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
            raise ValueError(
                f"broker {self.broker!r} must look like mqtt://host:1883 or mqtts://host:8883"
            )
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        return self

    @property
    def tls(self) -> bool:
        return urlsplit(self.broker).scheme == "mqtts"

    def resolved_password(self) -> str | None:
        """The password, read from its file when it lives in one."""
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").strip()
        return self.password


class BufferConfig(_Strict):
    """The store-and-forward buffer on the gateway's disk."""

    path: Path = Path("/var/lib/voltstack-agent/buffer.sqlite")
    max_readings: int = Field(default=5_000_000, ge=1000)
    max_age_days: float = Field(default=35.0, gt=0)
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # A cap on the database file below the disk's size; when the cap (or the
    # disk) is reached the oldest readings make room (docs/buffer.md).
    max_db_bytes: int | None = Field(default=None, ge=65_536)
    # Events wait in the same file; beyond this the oldest pending one is dropped.
    max_events: int = Field(default=10_000, ge=100)


class HealthConfig(_Strict):
    """The local health endpoint (status JSON, Prometheus metrics)."""

    enabled: bool = True
    host: str = "127.0.0.1"  # loopback only unless a site opens it on purpose
    port: int = Field(default=9610, ge=0, le=65535)


class MeterConfig(_Strict):
    """One meter on a bus."""

    serial: str = Field(min_length=1, max_length=64)
    profile: str
    unit_id: int | None = Field(default=None, ge=1, le=247)  # Modbus
    # DLMS: the association (client 1 = management with the LLS password,
    # 16 = public) and the server's HDLC addresses.
    client_address: int = Field(default=1, ge=1, le=0x7F)
    server_address: int = Field(default=1, ge=0, le=0x3FFF)  # logical device
    physical_address: int | None = Field(default=None, ge=16, le=0x3FFD)  # HDLC
    password: str | None = None
    password_file: Path | None = None
    interval_s: int = Field(default=900, ge=1, le=86_400)
    turnaround_ms: float | None = Field(default=None, ge=0)  # overrides the profile
    timeout_ms: float = Field(default=500, gt=0)
    retries: int = Field(default=1, ge=0, le=5)
    # DLMS: how far back the load profile is caught up (first contact, and
    # after an outage of the gateway or the meter); the simulated meters keep 40 days.
    catch_up_days: float = Field(default=10.0, gt=0, le=400)
    read_events: bool = True  # DLMS: the standard event log each cycle

    @model_validator(mode="after")
    def _known_profile(self) -> MeterConfig:
        if self.profile not in available_profiles():
            raise ValueError(
                f"profile {self.profile!r} is not one of: {', '.join(available_profiles())}"
            )
        return self


class _SerialLine(_Strict):
    """A serial port's settings (local, rfc2217:// or socket://)."""

    port: str
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1


class SerialBusConfig(_SerialLine):
    """Modbus RTU meters on an RS-485 bus."""

    name: str
    link: Literal["serial"]
    meters: list[MeterConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_units(self) -> SerialBusConfig:
        units = [meter.unit_id for meter in self.meters]
        if None in units:
            raise ValueError("every meter on a Modbus bus needs a unit_id")
        if len(set(units)) != len(units):
            raise ValueError("two meters on one bus share a unit_id")
        return self


class TcpBusConfig(_Strict):
    """Meters behind one Modbus TCP address."""

    name: str
    link: Literal["tcp"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    meters: list[MeterConfig] = Field(min_length=1)


class DlmsTcpBusConfig(_Strict):
    """A DLMS meter over TCP (IEC 62056-47 wrapper)."""

    name: str
    link: Literal["dlms-tcp"]
    host: str
    port: int = Field(default=4059, ge=1, le=65535)
    meters: list[MeterConfig] = Field(min_length=1, max_length=1)


class DlmsSerialBusConfig(_SerialLine):
    """DLMS meters speaking HDLC on one RS-485 line (IEC 62056-46), one at a time."""

    name: str
    link: Literal["dlms-serial"]
    meters: list[MeterConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_addresses(self) -> DlmsSerialBusConfig:
        addresses = [meter.physical_address for meter in self.meters]
        if len(self.meters) > 1 and None in addresses:
            raise ValueError("every meter on a shared HDLC line needs a physical_address")
        if len(set(addresses)) != len(addresses):
            raise ValueError("two meters on one line share a physical_address")
        return self


class OpticalBusConfig(_Strict):
    """A meter read at its optical port (IEC 62056-21), one probe each."""

    name: str
    link: Literal["optical"]
    port: str
    baudrate: int = 9600  # after the switch; sign-on is always 300 baud 7E1
    mode: Literal["C", "E"] = "C"  # C: data readout; E: DLMS over HDLC
    baud_switch: bool = True  # False for meters that stay at 300 baud
    meters: list[MeterConfig] = Field(min_length=1, max_length=1)


BusConfig = Annotated[
    SerialBusConfig | TcpBusConfig | DlmsTcpBusConfig | DlmsSerialBusConfig | OpticalBusConfig,
    Field(discriminator="link"),
]


class SimulationConfig(_Strict):
    """Simulated time, for demos and tests against simulated meters only.

    The agent's clock (its schedule and the timestamps it gives readings)
    runs `speed` times faster than real time from `epoch`, the real moment at
    which both clocks showed the same time: simulated = epoch + (real − epoch)
    × speed. `voltstack-sim fleet` writes this section for its own clock, so a
    day of 15-minute data takes 24 minutes (docs/demo.md, "Simulated time").
    Never set it on a gateway in the field.
    """

    epoch: AwareDatetime
    speed: float = Field(gt=0, le=10_000)

    def simulated_s(self, real_s: float) -> float:
        """The simulated epoch seconds at real epoch seconds `real_s`."""
        start = self.epoch.timestamp()
        return start + (real_s - start) * self.speed


class AgentConfig(_Strict):
    """The whole agent configuration file."""

    gateway: GatewayConfig
    uplink: UplinkConfig
    buffer: BufferConfig = BufferConfig()
    health: HealthConfig = HealthConfig()
    buses: list[BusConfig] = Field(default_factory=list)
    simulation: SimulationConfig | None = None  # demos and tests only

    @model_validator(mode="after")
    def _unique_names(self) -> AgentConfig:
        names = [bus.name for bus in self.buses]
        if len(set(names)) != len(names):
            raise ValueError("bus names must be unique")
        serials = [meter.serial for bus in self.buses for meter in bus.meters]
        if len(set(serials)) != len(serials):
            raise ValueError("a meter serial appears twice")
        return self


def load_config(path: Path) -> AgentConfig:
    """Read and validate the agent's YAML configuration.

    Raises:
        ConfigFileError: unreadable, not YAML, or invalid; names key and line.
    """
    return load_yaml_file(AgentConfig, path)
