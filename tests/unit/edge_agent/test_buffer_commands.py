"""The buffer's commands, on a real SQLite file: a command id is taken once, its
answer waits in the events outbox until its PUBACK, a redelivered id gets the
stored answer again, running commands survive a reopen (to be answered as
interrupted), the retention limits, and the migration from a v4 buffer."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edge_agent.adapters.sqlite_buffer import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    CommandCounts,
    PriorCommand,
    SqliteBuffer,
)
from edge_agent.domain.readings import Reading
from tests.unit.edge_agent.buffer_world import NOW_MS, NOW_S, Clock, open_buffer

SYNCED = {"ok": True, "action": "clock_sync", "meter": "M1", "synced": True, "offset_s": 120.1}


def test_a_command_is_taken_once_and_its_answer_waits_for_its_puback(
    buffer: SqliteBuffer,
) -> None:
    assert buffer.start_command("c1", "clock_sync") is None  # new: recorded as running
    again = buffer.start_command("c1", "clock_sync")
    assert again == PriorCommand("c1", "clock_sync", None)  # still running: not run twice
    assert buffer.running_commands() == [("c1", "clock_sync")]

    event_id = buffer.complete_command("c1", "clock_sync", SYNCED)
    assert buffer.running_commands() == []
    # The answer is pending: it goes out anyway, asking again queues no second copy.
    pending = buffer.start_command("c1", "clock_sync")
    assert pending == PriorCommand("c1", "clock_sync", SYNCED, requeued=False)
    [answer] = buffer.lease_events(10)
    assert (answer.event_id, answer.command_id, dict(answer.event)) == (event_id, "c1", SYNCED)
    assert buffer.answer_waiting("c1")
    assert buffer.command_counts() == CommandCounts(remembered=1, running=0, answers_waiting=1)
    # In flight: the asker may have had it and lost it; a second copy goes out.
    in_flight = buffer.start_command("c1", "clock_sync")
    assert in_flight == PriorCommand("c1", "clock_sync", SYNCED, requeued=True)
    [second] = buffer.lease_events(10)
    assert (second.command_id, dict(second.event)) == ("c1", SYNCED)
    assert buffer.acknowledge_event(second.event_id)

    assert buffer.acknowledge_event(event_id)
    assert not buffer.answer_waiting("c1")
    # Delivered, then asked again (the cloud lost it): the same answer goes out again.
    resent = buffer.start_command("c1", "clock_sync")
    assert resent == PriorCommand("c1", "clock_sync", SYNCED, requeued=True)
    [copy] = buffer.lease_events(10)
    assert (copy.command_id, dict(copy.event)) == ("c1", SYNCED)
    assert copy.event_id > event_id  # a new row: ids are never reused


def test_answers_and_events_share_the_outbox_in_order(buffer: SqliteBuffer) -> None:
    buffer.append_event({"event": "meter_comm_lost", "meter": "M1"}, NOW_MS)
    buffer.start_command("c1", "status")
    buffer.complete_command("c1", "status", {"ok": True, "action": "status"})
    buffer.append_event({"event": "meter_comm_restored", "meter": "M1"}, NOW_MS + 1)
    leased = buffer.lease_events(10)
    assert [(e.command_id, e.event.get("event")) for e in leased] == [
        (None, "meter_comm_lost"),
        ("c1", None),
        (None, "meter_comm_restored"),
    ]
    # A lost connection: released like events, sent again.
    assert buffer.release_event(leased[1].event_id)
    [again] = buffer.lease_events(10)
    assert again.command_id == "c1"
    assert buffer.stats().events == 2  # answers are not events


def test_running_commands_and_waiting_answers_survive_a_reopen(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "buffer.sqlite"
    with open_buffer(path, clock) as buffer:
        buffer.start_command("done", "status")
        buffer.complete_command("done", "status", {"ok": True, "action": "status"})
        buffer.lease_events(10)  # in flight when the agent dies
        buffer.start_command("busy", "apply_config")
    with open_buffer(path, clock) as buffer:  # the agent restarted
        assert buffer.running_commands() == [("busy", "apply_config")]
        [answer] = buffer.lease_events(10)  # back to pending by the recovery
        assert answer.command_id == "done"
        failed = {"ok": False, "action": "apply_config", "error": "interrupted"}
        buffer.complete_command("busy", "apply_config", failed)
        assert buffer.running_commands() == []
        assert buffer.start_command("busy", "apply_config") == PriorCommand(
            "busy", "apply_config", failed
        )


def test_completed_ids_are_forgotten_by_age_and_by_count(tmp_path: Path, clock: Clock) -> None:
    with open_buffer(
        tmp_path / "buffer.sqlite", clock, command_retention_s=3600, max_commands=3
    ) as buffer:
        buffer.start_command("running", "apply_config")  # never forgotten while it runs
        for n in range(5):
            clock.now_s += 1
            buffer.complete_command(f"c{n}", "status", {"ok": True, "n": n})
        assert buffer.command_counts().remembered == 3
        assert buffer.start_command("c0", "status") is None  # forgotten: taken as new
        assert buffer.start_command("c4", "status") is not None  # the newest are kept
        clock.now_s += 3601
        buffer.complete_command("late", "status", {"ok": True})
        counts = buffer.command_counts()
        assert (counts.remembered, counts.running) == (1, 2)  # "late"; "running" and "c0"
        assert ("running", "apply_config") in buffer.running_commands()


def test_answers_are_not_dropped_by_the_cap_on_events(tmp_path: Path, clock: Clock) -> None:
    with open_buffer(tmp_path / "buffer.sqlite", clock, max_events=2) as buffer:
        buffer.complete_command("c1", "status", {"ok": True})
        for n in range(4):
            buffer.append_event({"event": "meter_comm_lost", "meter": f"M{n}"}, NOW_MS + n)
        leased = buffer.lease_events(10)
        assert [e.command_id for e in leased] == ["c1", None, None]
        assert buffer.stats().events_dropped == 2


def test_an_answer_that_is_not_json_is_refused_and_nothing_stored(buffer: SqliteBuffer) -> None:
    buffer.start_command("c1", "status")
    with pytest.raises(ValueError, match="not JSON"):
        buffer.complete_command("c1", "status", {"value": float("nan")})
    with pytest.raises(ValueError, match="JSON object"):
        buffer.complete_command("c1", "status", ["not", "an", "object"])  # type: ignore[arg-type]
    assert buffer.running_commands() == [("c1", "status")]
    assert buffer.lease_events(10) == []


def make_v4_buffer(path: Path) -> None:
    """A buffer as the previous release left it: schema v4, an event and a reading in flight."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    for migration in _MIGRATIONS[:4]:
        for statement in migration:
            connection.execute(statement)
    connection.execute("INSERT INTO schema_version VALUES (4)")
    connection.execute("INSERT INTO meters (meter_id, serial) VALUES (1, 'M1')")
    connection.execute(
        "INSERT INTO readings (meter_id, obis, at_ms, value, unit, quality, lease_id)"
        " VALUES (1, '1-0:1.8.0', ?, 12.5, 'kWh', 0, 3)",
        (NOW_MS,),
    )
    connection.execute("INSERT INTO leases VALUES (3, 3, ?)", (NOW_S,))
    connection.execute("UPDATE counters SET value = 3 WHERE name = 'sequence'")
    body = {"event": "gateway_started", "version": "0.9", "event_id": "abc:1"}
    connection.execute(
        "INSERT INTO events (at_ms, body, leased_at_s) VALUES (?, ?, ?)",
        (NOW_MS, json.dumps(body), NOW_S),
    )
    connection.close()


def test_a_v4_buffer_is_migrated_and_keeps_its_readings_and_events(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "v4.sqlite"
    make_v4_buffer(path)
    with open_buffer(path, clock) as buffer:
        lease = buffer.lease(10)
        assert lease is not None and lease.sequence == 4
        assert lease.readings == (Reading("M1", "1-0:1.8.0", NOW_MS, 12.5, "kWh", 0),)
        [event] = buffer.lease_events(10)
        assert event.command_id is None and event.event["event_id"] == "abc:1"
        assert buffer.start_command("c1", "status") is None
        buffer.complete_command("c1", "status", {"ok": True, "action": "status"})
        [answer] = buffer.lease_events(10)
        assert answer.command_id == "c1" and answer.event_id > event.event_id
    connection = sqlite3.connect(path)
    try:
        version = connection.execute("SELECT version FROM schema_version").fetchone()[0]
    finally:
        connection.close()
    assert version == SCHEMA_VERSION == 5
