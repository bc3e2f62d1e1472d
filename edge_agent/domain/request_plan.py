"""Which Modbus requests read a set of quantities fastest.

A request costs more than its registers: 8 request bytes, 5 answer bytes of
header and CRC, the meter's turnaround and two silent intervals. Reading a
few unwanted registers in a gap costs 2 bytes each. The planner merges the
quantities of one register table into blocks, in address order, as long as

- the block stays within the model's registers-per-read limit (≤ 125), and
- the gap is cheaper to read than a separate request would cost, and
- the gap lies inside a range the meter answers (else exception 02).

Greedy in address order is optimal here: merging is decided between
neighbours only, and every merge that passes the tests is cheaper than not
merging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.profiles import DeviceProfile, Quantity, RegisterSpec

__all__ = ["ReadBlock", "plan_reads", "request_overhead_characters"]

REQUEST_BYTES = 8  # unit, function, address, count, CRC
ANSWER_OVERHEAD_BYTES = 5  # unit, function, byte count, CRC
SILENT_INTERVAL_CHARACTERS = 3.5


@dataclass(frozen=True)
class ReadBlock:
    """One read request and the quantities it carries."""

    table: str  # "input" (function 4) or "holding" (function 3)
    first: int
    count: int
    quantities: tuple[Quantity, ...]

    @property
    def function(self) -> int:
        return 4 if self.table == "input" else 3

    def offset_of(self, spec: RegisterSpec) -> int:
        return spec.address - self.first


def request_overhead_characters(turnaround_s: float, character_s: float) -> float:
    """What one more request costs, in characters of line time."""
    turnaround = turnaround_s / character_s if character_s else 0.0
    return REQUEST_BYTES + ANSWER_OVERHEAD_BYTES + 2 * SILENT_INTERVAL_CHARACTERS + turnaround


def plan_reads(
    profile: DeviceProfile,
    quantities: Sequence[Quantity] | None = None,
    *,
    turnaround_s: float | None = None,
    character_s: float = 11 / 9600,
) -> list[ReadBlock]:
    """The fewest, cheapest requests that read `quantities` (default: all).

    Args:
        profile: the model (register map, limits, readable ranges).
        quantities: the ones wanted.
        turnaround_s: the meter's answer delay (default: the profile's).
        character_s: the line's character time (0 for TCP: requests are cheap
            in line time, but round trips are not; gaps are then merged up to
            the overhead of a request's bytes).
    """
    assert profile.modbus is not None, "not a Modbus profile"
    limits = profile.modbus
    wanted = list(profile.quantities if quantities is None else quantities)
    turnaround = limits.turnaround_ms / 1000 if turnaround_s is None else turnaround_s
    gap_limit = int(request_overhead_characters(turnaround, character_s) // 2)
    blocks: list[ReadBlock] = []
    for table in ("input", "holding"):
        in_table = sorted(
            (q for q in wanted if q.location and q.location.table == table),
            key=lambda q: q.location.address if q.location else 0,
        )
        blocks.extend(_merge(profile, table, in_table, gap_limit))
    return blocks


def _merge(
    profile: DeviceProfile, table: str, quantities: list[Quantity], gap_limit: int
) -> list[ReadBlock]:
    assert profile.modbus is not None
    limit = profile.modbus.max_registers_per_read
    blocks: list[ReadBlock] = []
    current: list[Quantity] = []
    first = end = 0
    for quantity in quantities:
        spec = quantity.location
        assert spec is not None
        if current:
            gap = spec.address - end - 1
            span_end = max(end, spec.end_address)
            if (
                span_end - first + 1 <= limit
                and gap <= gap_limit
                and any(r.holds(table, first, span_end) for r in profile.modbus.readable)
            ):
                current.append(quantity)
                end = span_end
                continue
            blocks.append(ReadBlock(table, first, end - first + 1, tuple(current)))
        current, first, end = [quantity], spec.address, spec.end_address
    if current:
        blocks.append(ReadBlock(table, first, end - first + 1, tuple(current)))
    return blocks
