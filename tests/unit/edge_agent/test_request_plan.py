"""The request planner merges registers into the fewest cheap requests."""

from __future__ import annotations

from edge_agent.domain.request_plan import plan_reads, request_overhead_characters
from edge_agent.profiles import load_profile

CHARACTER_9600_8E1 = 11 / 9600


def test_sdm630_whole_map_with_its_10ms_turnaround() -> None:
    blocks = plan_reads(load_profile("eastron-sdm630"), character_s=CHARACTER_9600_8E1)
    assert [(b.table, b.first, b.count) for b in blocks] == [
        ("input", 0x0000, 80),  # per phase, totals, frequency, energy: the model's limit
        ("input", 0x0156, 16),  # total and per-phase energy
    ]
    assert sum(len(b.quantities) for b in blocks) == 35


def test_a_gap_dearer_than_a_request_is_not_read() -> None:
    profile = load_profile("eastron-sdm630")
    wanted = [q for q in profile.quantities if q.key != "current_sum_a"]
    blocks = plan_reads(profile, wanted, character_s=CHARACTER_9600_8E1)
    # The 16-register gap 0x0024-0x0033 costs 37 ms to read; a request 33 ms.
    assert [(b.first, b.count) for b in blocks] == [(0x0000, 36), (0x0034, 28), (0x0156, 16)]
    # With the sum of currents (0x0030) wanted, the gaps left are 12 and 2
    # registers, cheaper than a request: one block.
    assert plan_reads(profile, character_s=CHARACTER_9600_8E1)[0].count == 80


def test_a_slow_meter_gets_fewer_longer_requests() -> None:
    # With a 40 ms turnaround a request costs more than reading 16 idle registers.
    profile = load_profile("eastron-sdm630")
    wanted = [q for q in profile.quantities if q.key != "current_sum_a"]
    blocks = plan_reads(profile, wanted, turnaround_s=0.040, character_s=CHARACTER_9600_8E1)
    assert [(b.first, b.count) for b in blocks] == [(0x0000, 80), (0x0156, 16)]
    em24 = plan_reads(
        load_profile("carlo-gavazzi-em24"), turnaround_s=0.040, character_s=CHARACTER_9600_8E1
    )
    assert [(b.first, b.count) for b in em24] == [(0x0000, 0x005E)]


def test_limit_of_the_model_splits_blocks() -> None:
    profile = load_profile("eastron-sdm630")
    for block in plan_reads(profile, character_s=CHARACTER_9600_8E1):
        assert block.count <= profile.modbus.max_registers_per_read  # type: ignore[union-attr]


def test_a_small_gap_is_read_a_large_one_is_not() -> None:
    profile = load_profile("eastron-sdm630")
    voltage, frequency = profile.quantity("1-0:32.7.0"), profile.quantity("1-0:14.7.0")
    # 0x0000 and 0x0046: a 68-register gap, far more than a request costs.
    far = plan_reads(profile, [voltage, frequency], character_s=CHARACTER_9600_8E1)
    assert len(far) == 2
    near = plan_reads(
        profile,
        [profile.quantity("1-0:1.8.0"), profile.quantity("1-0:3.8.0")],
        character_s=CHARACTER_9600_8E1,
    )  # 0x0048 and 0x004C: gap of 2
    assert [(b.first, b.count) for b in near] == [(0x0048, 6)]


def test_gap_allowance_follows_the_cost_of_a_request() -> None:
    # 15 ms turnaround at 9600 8E1 ≈ 13 characters; + 8 + 5 + 7 ≈ 33: 16 registers.
    assert request_overhead_characters(0.015, CHARACTER_9600_8E1) // 2 == 16


def test_gaps_outside_the_readable_map_are_never_read() -> None:
    profile = load_profile("eastron-sdm630")
    # 0x004E ends the first readable stretch used; 0x015A is far: never merged.
    blocks = plan_reads(
        profile,
        [profile.quantity("1-0:4.8.0"), profile.quantity("1-0:21.8.0")],
        turnaround_s=10.0,
        character_s=CHARACTER_9600_8E1,
    )
    assert all(b.count <= 80 for b in blocks)
