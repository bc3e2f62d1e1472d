"""The schema of a device profile: one YAML file per meter model.

A profile says what a model measures (OBIS code, unit, kind) and, for Modbus
models, where each quantity lives in the register map (table, address, type,
word order, scale). The agent's readers and the simulators both read these
files: one source of truth for each model's map.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RegisterType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"
]
# Byte order of the value's bytes as they appear on the wire, A = most
# significant: ABCD big-endian (Modbus' own), CDAB word-swapped (low word
# first, e.g. Carlo Gavazzi), BADC byte-swapped, DCBA little-endian. 16-bit
# values only distinguish AB/BA; 64-bit values apply the same pattern per word.
WordOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
Table = Literal["input", "holding"]
QuantityKind = Literal["instantaneous", "cumulative"]

REGISTERS_PER_TYPE: dict[str, int] = {
    "int16": 1, "uint16": 1, "int32": 2, "uint32": 2,
    "int64": 4, "uint64": 4, "float32": 2, "float64": 4,
}  # fmt: skip

# IEC 62056-61 reduced ID codes as written in profiles: A-B:C.D.E, F implied 255.
_OBIS = re.compile(r"^\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterSpec(_Strict):
    """Where a quantity lives in a Modbus register map."""

    table: Table
    address: int = Field(ge=0, le=0xFFFF)
    type: RegisterType
    order: WordOrder | None = None  # None: the profile's word_order
    scale: float = 1.0  # engineering value = raw value × scale

    @property
    def register_count(self) -> int:
        return REGISTERS_PER_TYPE[self.type]

    @property
    def end_address(self) -> int:
        """The last register the value occupies."""
        return self.address + self.register_count - 1


class Quantity(_Strict):
    """One measured quantity of a meter model."""

    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    obis: str
    unit: str  # "" for dimensionless (power factor)
    kind: QuantityKind
    # `register:` in YAML; `register` itself is taken by pydantic.BaseModel.
    location: RegisterSpec | None = Field(default=None, alias="register")

    @model_validator(mode="after")
    def _obis_is_well_formed(self) -> Quantity:
        if not _OBIS.match(self.obis):
            raise ValueError(f"obis {self.obis!r} is not of the form A-B:C.D.E (e.g. 1-0:1.8.0)")
        return self


class RegisterRange(_Strict):
    """A range of registers the meter answers (unlisted ones read as 0)."""

    table: Table
    first: int = Field(ge=0, le=0xFFFF)
    last: int = Field(ge=0, le=0xFFFF)

    def holds(self, table: str, first: int, last: int) -> bool:
        return table == self.table and self.first <= first and last <= self.last


class SerialSettings(_Strict):
    """The model's factory serial settings."""

    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class IdentifyRule(_Strict):
    """A register read whose value tells this model apart during a bus scan."""

    location: RegisterSpec = Field(alias="register")
    minimum: float
    maximum: float


class ModbusSpec(_Strict):
    """How the model speaks Modbus."""

    serial: SerialSettings = SerialSettings()
    word_order: WordOrder = "ABCD"
    max_registers_per_read: int = Field(default=125, ge=1, le=125)
    turnaround_ms: float = Field(default=20.0, ge=0)
    readable: list[RegisterRange]
    identify: list[IdentifyRule] = []


class DeviceProfile(_Strict):
    """A meter model: what it measures and how to read it."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    manufacturer: str
    model: str
    protocol: Literal["modbus", "dlms", "iec62056-21"]
    phases: Literal[1, 3]
    source: str  # where the map comes from: the maker's document, version
    modbus: ModbusSpec | None = None
    quantities: list[Quantity] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        _require_unique("key", [q.key for q in self.quantities])
        _require_unique("obis", [q.obis for q in self.quantities])
        if self.protocol == "modbus":
            self._check_modbus_map()
        elif self.modbus is not None or any(q.location for q in self.quantities):
            raise ValueError(f"a {self.protocol} profile has no Modbus registers")
        return self

    def _check_modbus_map(self) -> None:
        if self.modbus is None:
            raise ValueError("a modbus profile needs a `modbus:` section")
        taken: dict[tuple[str, int], str] = {}
        for quantity in self.quantities:
            spec = quantity.location
            if spec is None:
                raise ValueError(f"quantity {quantity.key} has no `register:`")
            if not any(
                r.holds(spec.table, spec.address, spec.end_address) for r in self.modbus.readable
            ):
                raise ValueError(f"quantity {quantity.key} lies outside every `readable` range")
            for address in range(spec.address, spec.end_address + 1):
                other = taken.setdefault((spec.table, address), quantity.key)
                if other != quantity.key:
                    raise ValueError(
                        f"quantities {other} and {quantity.key} overlap at "
                        f"{spec.table} register 0x{address:04X}"
                    )

    def word_order_of(self, spec: RegisterSpec) -> WordOrder:
        """The word order of a register: its own, or the profile's default."""
        if spec.order is not None:
            return spec.order
        return self.modbus.word_order if self.modbus else "ABCD"

    def quantity(self, obis: str) -> Quantity:
        """The quantity with this OBIS code.

        Raises:
            KeyError: the model does not measure it.
        """
        for quantity in self.quantities:
            if quantity.obis == obis:
                return quantity
        raise KeyError(f"{self.id} has no quantity {obis}")


def _require_unique(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value!r} appears twice")
        seen.add(value)
