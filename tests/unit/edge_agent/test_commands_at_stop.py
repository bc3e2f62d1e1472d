"""Commands still queued when the agent stops never ran: they are answered
so (durably, sent after the restart), not left for the next start to call
them interrupted; and the command counters add up across threads."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from edge_agent.adapters.sqlite_buffer import SqliteBuffer
from edge_agent.config import AgentConfig
from edge_agent.service import commands
from edge_agent.service.agent import Agent, CommandStats


def test_a_queued_command_is_answered_not_started_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    config = AgentConfig.model_validate(
        {
            "gateway": {"id": "gw-stop"},
            "uplink": {"broker": "mqtt://127.0.0.1:1"},
            "buffer": {"path": str(path)},
        }
    )
    agent = Agent(config)  # not started: nothing runs the queue
    agent._on_command("c-queued", json.dumps({"action": "status"}).encode())
    agent.stop()
    assert agent.command_stats.snapshot()["not_started"] == 1
    with SqliteBuffer(path, max_readings=1000, max_age_days=35) as buffer:
        assert buffer.running_commands() == []  # the next start has nothing to call interrupted
        answers = [e for e in buffer.lease_events(10) if e.command_id == "c-queued"]
    assert len(answers) == 1
    assert answers[0].event["ok"] is False
    assert answers[0].event["error"] == commands.NOT_STARTED


def test_counters_from_two_threads_add_up() -> None:
    # Threads switch every microsecond, not every 5 ms: without the counter's
    # lock this loses tens of thousands of the 80,000 counts, every run.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    stats = CommandStats()

    def count() -> None:
        for _ in range(20_000):
            stats.add("refused")

    threads = [threading.Thread(target=count) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert stats.snapshot()["refused"] == 80_000
