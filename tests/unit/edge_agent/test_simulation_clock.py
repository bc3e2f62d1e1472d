"""The agent's simulated time (config `simulation:`), and the fleet that writes it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.config import AgentConfig, SimulationConfig
from edge_agent.service.agent import Agent, ModbusTask
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


def test_the_agent_stamps_its_own_readings_on_the_simulated_clock(tmp_path: Path) -> None:
    config = AgentConfig.model_validate(
        {
            "gateway": {"id": "gw-sim"},
            "uplink": {"broker": "mqtt://127.0.0.1:1"},
            "buffer": {"path": str(tmp_path / "buffer.sqlite")},
            "simulation": {"epoch": EPOCH.isoformat(), "speed": 60},
            "buses": [
                {
                    "name": "tcp",
                    "link": "tcp",
                    "host": "127.0.0.1",
                    "port": 1502,
                    "meters": [{"serial": "M1", "profile": "eastron-sdm120", "unit_id": 1}],
                }
            ],
        }
    )
    agent = Agent(config)
    try:
        task = agent.workers[0].tasks["M1"]
        assert isinstance(task, ModbusTask)
        stamped = task.reader.clock()  # what a Modbus reading's at_ms comes from
        expected = config.simulation.simulated_s(time.time()) if config.simulation else 0.0
        assert abs(stamped - expected) < 6.0  # 100 ms of real time at x 60
        assert abs(stamped - time.time()) > 3600  # not the wall clock
    finally:
        agent.buffer.close()


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
