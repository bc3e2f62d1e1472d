"""The agent's simulated time (config `simulation:`), and the fleet that writes it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.config import AgentConfig, SimulationConfig
from edge_agent.domain.readings import QualityFlag, Reading
from edge_agent.service.agent import Agent
from simulators.clock import SimClock
from simulators.fleet import Fleet, FleetSpec, GatewaySpec

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def test_simulated_time_equals_real_time_at_the_epoch_and_runs_speed_times_faster() -> None:
    simulation = SimulationConfig(epoch=EPOCH, speed=60)
    start = EPOCH.timestamp()
    assert simulation.simulated_s(start) == start
    assert simulation.simulated_s(start + 10) == start + 600
    assert simulation.simulated_s(start - 1) == start - 60


@pytest.mark.parametrize(
    "section",
    [
        {"epoch": "2026-01-01T00:00:00", "speed": 60},  # naive: which zone?
        {"epoch": "2026-01-01T00:00:00Z", "speed": 0},
        {"epoch": "2026-01-01T00:00:00Z"},
        {"epoch": "2026-01-01T00:00:00Z", "speed": 60, "start": 1},
    ],
)
def test_a_bad_simulation_section_is_refused(section: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SimulationConfig.model_validate(section)


def test_only_the_agents_own_timestamps_move_to_simulated_time() -> None:
    simulation = SimulationConfig(epoch=EPOCH, speed=60)
    real_ms = int(EPOCH.timestamp() * 1000) + 10_000
    agent_stamped = Reading("M1", "1-0:1.8.0", real_ms, 1.0, "kWh", QualityFlag.AGENT_TIMESTAMP)
    meter_stamped = Reading("D1", "1-0:1.8.0", real_ms, 2.0, "kWh", 0)
    moved, kept = Agent._on_simulated_clock([agent_stamped, meter_stamped], simulation)
    assert moved == agent_stamped._replace(at_ms=int(EPOCH.timestamp() * 1000) + 600_000)
    assert kept == meter_stamped  # a DLMS meter's clock already runs simulated


def fleet_and_config(speed: float, tmp_path: Path) -> tuple[Fleet, dict[str, object]]:
    spec = FleetSpec(epoch=EPOCH, speed=speed, gateways=[GatewaySpec(id="gw-1")])
    fleet = Fleet(spec, tmp_path, SimClock(speed=speed))
    return fleet, fleet.agent_config(spec.gateways[0])


def test_a_fleet_at_real_speed_writes_no_simulation_section(tmp_path: Path) -> None:
    assert "simulation" not in fleet_and_config(1.0, tmp_path)[1]


def test_the_fleets_simulation_section_gives_the_agent_the_fleets_clock(tmp_path: Path) -> None:
    fleet, written = fleet_and_config(60.0, tmp_path)
    config = AgentConfig.model_validate(written)
    assert config.simulation is not None and config.simulation.speed == 60
    before = fleet.clock.now()
    agent_now = config.simulation.simulated_s(time.time())
    after = fleet.clock.now()
    # Same clock, whenever asked; the slack covers the fleet reading its two
    # clocks one after the other when it wrote the section (100 ms at × 60).
    assert before - 6.0 <= agent_now <= after + 6.0
