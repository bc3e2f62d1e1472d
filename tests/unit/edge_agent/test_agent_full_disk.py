"""A disk so full that even making room fails: the agent reports it and
goes on; no exception reaches a bus thread (which would end it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_agent.adapters.sqlite_buffer import BufferFull, BufferStoreError
from edge_agent.config import AgentConfig
from edge_agent.domain.readings import Reading
from edge_agent.service.agent import Agent
from fastcodec.obis import parse_obis


class HopelesslyFullBuffer:
    """The buffer on a disk where every write fails, DELETEs included."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[str] = []

    def append(self, readings: Any) -> None:
        self.calls.append("append")
        raise BufferFull("database or disk is full")

    def append_event(self, event: Any, at_ms: int) -> None:
        self.calls.append("append_event")
        raise BufferFull("database or disk is full")

    def make_room(self, count: int) -> Any:
        self.calls.append("make_room")
        raise BufferStoreError("cannot delete: database or disk is full")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_reading_and_event_refused_without_an_exception(tmp_path: Path) -> None:
    config = AgentConfig.model_validate(
        {
            "gateway": {"id": "gw-full-disk"},
            "uplink": {"broker": "mqtt://127.0.0.1:1"},
            "buffer": {"path": str(tmp_path / "buffer.sqlite")},
        }
    )
    agent = Agent(config)
    full = HopelesslyFullBuffer(agent.buffer)
    agent.buffer = full  # type: ignore[assignment]
    try:
        reading = Reading("M1", parse_obis("1-0:1.8.0"), 1_767_225_600_000, 1.0, "kWh", 0)
        assert agent._deliver([reading]) is False  # and the buffer_full event it tries
        assert agent._event("meter_comm_lost", meter="M1") is False
        assert agent._meter_event({"event": "last_gasp", "at_ms": 1_767_225_600_000}) is False
        assert full.calls.count("make_room") >= 3
    finally:
        full.real.close()
