"""Reads fall on wall-clock boundaries, each meter with its own fixed jitter."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.domain.schedule import MAX_JITTER_S, jitter_s, next_due_s

QUARTER_HOUR = 900.0
NOON = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC


def test_a_quarter_hour_meter_reads_just_after_the_quarter_hour() -> None:
    jitter = jitter_s("SDM630-0001", QUARTER_HOUR)
    assert 0 <= jitter <= MAX_JITTER_S
    assert next_due_s(NOON + 10, QUARTER_HOUR, jitter) == NOON + 900 + jitter
    assert next_due_s(NOON - 0.5, QUARTER_HOUR, jitter) == NOON + jitter


def test_jitter_is_stable_per_meter_and_spreads_meters() -> None:
    assert jitter_s("A", 60) == jitter_s("A", 60)
    spread = {round(jitter_s(f"M{i:03d}", 900), 3) for i in range(32)}
    assert len(spread) > 20
    assert all(j <= 60 * 0.02 for j in (jitter_s(f"M{i}", 60) for i in range(50)))


@given(
    now=st.floats(1e9, 2e9),
    interval=st.sampled_from([1.0, 60.0, 300.0, 900.0, 3600.0]),
    serial=st.text(min_size=1, max_size=12),
)
@settings(max_examples=200, deadline=None)
def test_next_due_is_the_next_boundary_plus_jitter(
    now: float, interval: float, serial: str
) -> None:
    jitter = jitter_s(serial, interval)
    due = next_due_s(now, interval, jitter)
    assert now < due <= now + interval + 1e-6
    assert abs(((due - jitter) / interval) - round((due - jitter) / interval)) < 1e-6
