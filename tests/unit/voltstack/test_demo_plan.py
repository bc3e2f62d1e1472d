"""What `voltstack demo` derives before it starts anything."""

from __future__ import annotations

import pytest
import typer

from voltstack.cli import parse_duration
from voltstack.demo import MIN_REAL_CYCLE_S, demo_fleet, stretched_interval_s


@pytest.mark.parametrize(
    ("interval_s", "speed", "expected"),
    [(60, 1, 60), (900, 1, 900), (60, 6, 60), (60, 10, 300), (60, 60, 900), (60, 600, 86_400)],
)
def test_intervals_stretch_only_when_a_bus_cycle_would_not_fit(
    interval_s: int, speed: float, expected: int
) -> None:
    stretched = stretched_interval_s(interval_s, speed)
    assert stretched == expected
    assert stretched == interval_s or stretched / speed >= MIN_REAL_CYCLE_S or stretched == 86_400


def test_the_demo_fleet_at_speed_carries_the_speed_and_stretched_intervals() -> None:
    spec = demo_fleet(60)
    assert spec["speed"] == 60
    assert {gateway["interval_s"] for gateway in spec["gateways"]} == {900}
    assert demo_fleet(1)["gateways"][0]["interval_s"] == 60


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("10m", 600), ("250ms", 0.25)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_bad_duration_is_a_usage_error() -> None:
    with pytest.raises(typer.BadParameter, match="is not a duration"):
        parse_duration("soon")
