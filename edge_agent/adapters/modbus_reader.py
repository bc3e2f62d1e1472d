"""Read a Modbus meter's quantities through a bus, as readings.

The request plan comes from the device profile (edge_agent.domain.
request_plan); frames are built and values decoded by fastcodec; the bus
(firmware_bridge.bus) arbitrates, times and retries. We do not go through
pymodbus's client here: it takes about 60 µs to decode a reply that fastcodec
decodes in about 1 µs, it cannot share one port between meters with their
own timeouts without the caller serialising anyway, and a gateway polls
thousands of replies an hour (docs/readers.md has the measurements).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_agent.domain.readings import QualityFlag, Reading
from edge_agent.domain.request_plan import ReadBlock, plan_reads
from edge_agent.profiles import DeviceProfile, Quantity
from fastcodec import modbus
from firmware_bridge.bus import ModbusBus, PolledDevice
from firmware_bridge.exceptions import BusError, MeterUnavailable, NoResponse

__all__ = ["BlockFailure", "MeterRead", "ModbusMeterReader"]


@dataclass(frozen=True)
class BlockFailure:
    """A request of the plan that failed, and why."""

    block: ReadBlock
    error: BusError


@dataclass(frozen=True)
class MeterRead:
    """The outcome of reading one meter once."""

    readings: list[Reading]
    failures: list[BlockFailure]

    @property
    def complete(self) -> bool:
        return not self.failures


class ModbusMeterReader:
    """Reads one meter: its plan is made once, its frames are built once.

    Args:
        bus: the bus the meter is on.
        device: its address and timing on that bus.
        profile: its model.
        quantities: which quantities to read (default: all of the profile's).
    """

    def __init__(
        self,
        bus: ModbusBus,
        device: PolledDevice,
        profile: DeviceProfile,
        quantities: Sequence[Quantity] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if profile.modbus is None:
            raise ValueError(f"{profile.id} is not a Modbus model")
        self.bus, self.device, self.profile = bus, device, profile
        self.clock = clock  # the agent's: real time, or a simulated fleet's
        character_s = bus.link.character_time_s
        self.plan = plan_reads(profile, quantities, character_s=character_s or 11 / 9600)
        self._requests = [self._request(block) for block in self.plan]
        self._layouts = [self._layout(block) for block in self.plan]

    def _request(self, block: ReadBlock) -> bytes:
        build = (
            modbus.build_read_input_registers
            if block.function == 4
            else modbus.build_read_holding_registers
        )
        return build(self.device.unit_id, block.first, block.count)

    def _layout(self, block: ReadBlock) -> list[modbus.RegisterField]:
        fields = []
        for quantity in block.quantities:
            spec = quantity.location
            assert spec is not None
            order = modbus.RegisterOrder(self.profile.word_order_of(spec))
            fields.append(
                modbus.RegisterField(
                    block.offset_of(spec), modbus.DataType(spec.type), order, 0, spec.scale
                )
            )
        return fields

    def read(self) -> MeterRead:
        """Read every planned block; failed blocks are reported, not raised.

        Modbus meters carry no timestamp: readings get the agent's clock at
        the answer, flagged AGENT_TIMESTAMP.
        """
        readings: list[Reading] = []
        failures: list[BlockFailure] = []
        silent: BusError | None = None
        for block, request, layout in zip(self.plan, self._requests, self._layouts, strict=True):
            if silent is not None:  # a silent meter costs one timeout a cycle, not one a block
                failures.append(BlockFailure(block, silent))
                continue
            try:
                answer = self.bus.transact(self.device, request)
            except (NoResponse, MeterUnavailable) as exc:
                silent = exc
                failures.append(BlockFailure(block, exc))
                continue
            except BusError as exc:
                failures.append(BlockFailure(block, exc))
                continue
            at_ms = round(self.clock() * 1000)
            assert isinstance(answer, modbus.ReadRegistersResponse)
            values = modbus.decode_registers(answer.payload, layout)
            for quantity, value in zip(block.quantities, values, strict=True):
                readings.append(
                    Reading(
                        self.device.name,
                        quantity.obis,
                        at_ms,
                        float(value),
                        quantity.unit,
                        int(QualityFlag.AGENT_TIMESTAMP),
                    )
                )
        return MeterRead(readings, failures)
