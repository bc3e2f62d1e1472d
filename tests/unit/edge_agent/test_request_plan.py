"""The request planner merges registers into the fewest cheap requests."""

from __future__ import annotations

from edge_agent.domain.request_plan import plan_reads, request_overhead_characters
from edge_agent.profiles import load_profile

CHARACTER_9600_8E1 = 11 / 9600


def test_sdm630_whole_map_takes_two_requests() -> None:
    blocks = plan_reads(load_profile("eastron-sdm630"), character_s=CHARACTER_9600_8E1)
    assert [(b.table, b.first, b.count) for b in blocks] == [
        ("input", 0x0000, 80),  # 0x0000-0x004F: V, I, P, VA, PF ... energy (gaps merged)
        ("input", 0x015A, 12),  # per-phase energy
    ]
    assert sum(len(b.quantities) for b in blocks) == 29


def test_em24_whole_map_takes_one_request() -> None:
    blocks = plan_reads(load_profile("carlo-gavazzi-em24"), character_s=CHARACTER_9600_8E1)
    assert [(b.first, b.count) for b in blocks] == [(0x0000, 0x005E)]


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
