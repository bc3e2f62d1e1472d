"""Simulated Modbus meters on pymodbus's server: RTU on a virtual bus, and TCP.

Each meter is a pymodbus `SimDevice` whose registers come from the model's
device profile (edge_agent/profiles, the same files the agent reads) and whose
values come from its physics at the moment of each read. Reads outside the
model's readable ranges get exception 02 from pymodbus; faults are switched
on a meter's `faults` while it runs.

On RTU, all meters of a bus share one pymodbus serial server behind a
`VirtualSerialLine`: the line delivers a request only when its unit id belongs
to a meter that answers (a multi-drop bus: absent or dead slaves stay silent),
applies the meter's turnaround, and puts faults on the wire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.profiles import DeviceProfile, RegisterSpec
from fastcodec import modbus
from simulators.clock import SimClock
from simulators.faults import MeterFaults
from simulators.line import VirtualSerialLine
from simulators.physics import MeterPhysics

log = logging.getLogger(__name__)

_READ_FUNCTIONS = {3: "holding", 4: "input"}
_BIT_FUNCTIONS = {1, 2, 5, 15}
_INTEGER_BITS = {"int16": 16, "uint16": 16, "int32": 32, "uint32": 32, "int64": 64, "uint64": 64}


def encode_register_value(value: float, spec: RegisterSpec, order: str) -> list[int]:
    """The 16-bit registers a meter presents for `value` (fastcodec encodes).

    Integers are scaled (raw = round(value / scale)) and clamped to their
    type's range, like a meter's firmware saturating a counter.
    """
    raw: float | int = value / spec.scale
    bits = _INTEGER_BITS.get(spec.type)
    if bits is not None:
        low, high = (
            (0, 2**bits - 1)
            if spec.type.startswith("u")
            else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        )
        raw = min(high, max(low, round(raw)))
    chunk = modbus.encode_value(raw, modbus.DataType(spec.type), modbus.RegisterOrder(order))
    return [int.from_bytes(chunk[i : i + 2], "big") for i in range(0, len(chunk), 2)]


def decode_register_value(words: Sequence[int], spec: RegisterSpec, order: str) -> float:
    """What a reader makes of the registers (fastcodec decodes): the presented value."""
    payload = b"".join(word.to_bytes(2, "big") for word in words)
    field = modbus.RegisterField(
        0, modbus.DataType(spec.type), modbus.RegisterOrder(order), 0, spec.scale
    )
    return float(modbus.decode_registers(payload, [field])[0])


@dataclass
class ModbusMeter:
    """One simulated Modbus meter.

    Args:
        profile: the model (register map, turnaround, limits).
        unit_id: its Modbus address, 1..247.
        serial: its serial number (what the ground truth calls it).
        physics: where its values come from.
        clock: simulated time.
    """

    profile: DeviceProfile
    unit_id: int
    serial: str
    physics: MeterPhysics
    clock: SimClock
    faults: MeterFaults = field(default_factory=MeterFaults)
    reads: int = 0

    def __post_init__(self) -> None:
        if self.profile.protocol != "modbus" or self.profile.modbus is None:
            raise ValueError(f"{self.profile.id} is not a Modbus model")
        if not 1 <= self.unit_id <= 247:
            raise ValueError(f"unit id {self.unit_id} is outside 1..247")

    @property
    def turnaround_s(self) -> float:
        assert self.profile.modbus is not None
        return self.profile.modbus.turnaround_ms / 1000

    def presented_values(self, at_s: float) -> dict[str, float]:
        """Ground truth: each quantity as the meter's registers held it at `at_s`."""
        state = self.physics.state(at_s).values
        presented = {}
        for quantity in self.profile.quantities:
            assert quantity.location is not None
            order = self.profile.word_order_of(quantity.location)
            words = encode_register_value(state[quantity.obis], quantity.location, order)
            presented[quantity.obis] = decode_register_value(words, quantity.location, order)
        return presented

    def device(self) -> SimDevice:
        """The pymodbus device: the readable ranges, filled at each read."""
        assert self.profile.modbus is not None
        blocks: dict[str, list[SimData]] = {"input": [], "holding": []}
        for readable in self.profile.modbus.readable:
            blocks[readable.table].append(
                SimData(
                    readable.first,
                    count=readable.last - readable.first + 1,
                    values=0,
                    datatype=DataType.REGISTERS,
                )
            )
        for table in blocks.values():
            if not table:  # pymodbus wants every block; this one refuses all reads
                table.append(SimData(0, count=1, datatype=DataType.INVALID))
        # Meters have no coils: a one-bit block whose reads the action refuses.
        bits = [SimData(0, count=1, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(
            self.unit_id,
            simdata=(bits, list(bits), blocks["holding"], blocks["input"]),
            action=self._on_request,
        )

    async def _on_request(
        self,
        function_code: int,
        block_start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        assert self.profile.modbus is not None
        if function_code in _BIT_FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION
        if self.faults.slow_s:
            await asyncio.sleep(self.faults.slow_s)
        if self.faults.exception_code is not None:
            return ExcCodes(self.faults.exception_code)
        if values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # metering registers are read-only
        if count > self.profile.modbus.max_registers_per_read:
            return ExcCodes.ILLEGAL_VALUE
        table = _READ_FUNCTIONS.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        self.reads += 1
        self._fill(table, block_start, address, count, registers)
        return None

    def _fill(
        self, table: str, block_start: int, first: int, count: int, registers: list[int]
    ) -> None:
        state = self.physics.state(self.clock.now()).values
        last = first + count - 1
        for quantity in self.profile.quantities:
            spec = quantity.location
            assert spec is not None
            if spec.table != table or spec.end_address < first or spec.address > last:
                continue
            words = encode_register_value(
                state[quantity.obis], spec, self.profile.word_order_of(spec)
            )
            offset = spec.address - block_start
            registers[offset : offset + len(words)] = words


class ModbusRtuBus:
    """Several Modbus meters on one virtual RS-485 bus.

    Args:
        meters: the slaves on the bus (unit ids must differ).
        baudrate, parity, stopbits: the bus settings (every meter uses them).
        timing: model line rate and turnaround (False for fast unit tests).
    """

    def __init__(
        self,
        meters: Sequence[ModbusMeter],
        *,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        timing: bool = True,
    ) -> None:
        units = [meter.unit_id for meter in meters]
        if len(set(units)) != len(units):
            raise ValueError(f"unit ids on one bus must differ: {sorted(units)}")
        self.meters = {meter.unit_id: meter for meter in meters}
        self.baudrate, self.parity, self.stopbits = baudrate, parity, stopbits
        self.line = VirtualSerialLine(
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            timing=timing,
            request_gate=self._reaches_a_meter,
            response_filter=self._on_the_wire,
            turnaround_of=self._turnaround_s,
        )
        self._server: ModbusSerialServer | None = None

    @property
    def port(self) -> str:
        """The serial device a master opens."""
        return self.line.client_port

    async def start(self) -> None:
        # A pty carries no parity bit (and some kernels refuse PARENB on one):
        # the server's end opens as 8N1; the line models the configured
        # format's character time.
        self._server = ModbusSerialServer(
            [meter.device() for meter in self.meters.values()],
            framer=FramerType.RTU,
            port=self.line.device_port,
            baudrate=self.baudrate,
            parity="N",
            stopbits=1,
            ignore_missing_devices=True,
        )
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
        self.line.close()

    def _meter_of(self, frame: bytes) -> ModbusMeter | None:
        return self.meters.get(frame[0]) if frame else None

    def _reaches_a_meter(self, request: bytes) -> bool:
        meter = self._meter_of(request)
        return meter is not None and meter.faults.answers

    def _on_the_wire(self, answer: bytes) -> tuple[bytes, float]:
        meter = self._meter_of(answer)
        if meter is None:
            return answer, 0.0
        return meter.faults.apply_to_answer(answer), 0.0

    def _turnaround_s(self, answer: bytes) -> float:
        meter = self._meter_of(answer)
        return meter.turnaround_s if meter else 0.0


class ModbusTcpMeters:
    """Modbus meters behind one TCP port (a meter with Ethernet, or a gateway).

    Faults that make sense on TCP apply: no answer, powered down, slow answer,
    exception codes. (No CRC on TCP: the MBAP header has a length instead.)
    """

    def __init__(
        self, meters: Sequence[ModbusMeter], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.meters = {meter.unit_id: meter for meter in meters}
        self.host, self.port = host, port
        self._server: ModbusTcpServer | None = None

    async def start(self) -> None:
        self._server = ModbusTcpServer(
            [meter.device() for meter in self.meters.values()],
            address=(self.host, self.port),
            ignore_missing_devices=True,
            trace_packet=self._trace,
        )
        await self._server.serve_forever(background=True)
        if self.port == 0:
            sockets = self._server.transport.sockets  # type: ignore[union-attr]
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    def _trace(self, sending: bool, packet: bytes) -> bytes:
        # MBAP: transaction (2), protocol (2), length (2), unit id (1), PDU.
        if len(packet) < 7:
            return packet
        meter = self.meters.get(packet[6])
        if meter is None:
            return packet
        if not meter.faults.answers:
            return b"" if sending else packet
        return packet
