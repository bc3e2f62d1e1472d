"""The buffer's events table, on a real SQLite file: append, lease, acknowledge,
release, the cap, crash recovery, and the migration from a v2 buffer."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_agent.adapters.sqlite_buffer import _MIGRATIONS, SCHEMA_VERSION, SqliteBuffer
from edge_agent.domain.readings import Reading
from tests.unit.edge_agent.buffer_world import NOW_MS, NOW_S, Clock, open_buffer


def comm_lost(meter: str) -> dict[str, Any]:
    return {"event": "meter_comm_lost", "meter": meter, "bus": "rs485-1", "error": "timeout"}


def without_id(event: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key != "event_id"}


def test_events_are_leased_in_order_and_deleted_only_on_acknowledge(
    buffer: SqliteBuffer,
) -> None:
    ids = [buffer.append_event(comm_lost(f"M{n}"), NOW_MS + n) for n in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5

    first = buffer.lease_events(3)
    assert [e.event_id for e in first] == ids[:3]
    assert [e.at_ms for e in first] == [NOW_MS, NOW_MS + 1, NOW_MS + 2]
    assert without_id(first[0].event) == comm_lost("M0")
    # In flight: not leased again; the next lease takes the rest, in order.
    rest = buffer.lease_events(10)
    assert [e.event_id for e in rest] == ids[3:]
    assert buffer.lease_events(10) == []

    assert buffer.acknowledge_event(ids[0]) is True
    assert buffer.acknowledge_event(ids[0]) is False  # a second PUBACK deletes nothing
    stats = buffer.stats()
    assert stats.events == 4 and stats.events_dropped == 0


def test_released_events_go_out_again_before_newer_ones(buffer: SqliteBuffer) -> None:
    ids = [buffer.append_event(comm_lost(f"M{n}"), NOW_MS + n) for n in range(3)]
    leased = buffer.lease_events(2)
    newer = buffer.append_event({"event": "gateway_started", "version": "1"}, NOW_MS + 10)
    # The connection dropped before the PUBACKs: both back to pending.
    assert all(buffer.release_event(e.event_id) for e in leased)
    assert buffer.release_event(leased[0].event_id) is False  # not in flight any more
    again = buffer.lease_events(10)
    assert [e.event_id for e in again] == [*ids, newer]
    for event in again:
        buffer.acknowledge_event(event.event_id)
    assert buffer.stats().events == 0


def test_a_lease_older_than_the_timeout_comes_back(tmp_path: Path, clock: Clock) -> None:
    with open_buffer(tmp_path / "b.sqlite", clock, lease_timeout_s=60) as buffer:
        event_id = buffer.append_event(comm_lost("M1"), NOW_MS)
        assert [e.event_id for e in buffer.lease_events(1)] == [event_id]
        clock.now_s += 59
        assert buffer.lease_events(1) == []
        clock.now_s += 2
        assert [e.event_id for e in buffer.lease_events(1)] == [event_id]


def test_the_cap_drops_the_oldest_pending_events_and_counts_them(
    tmp_path: Path, clock: Clock
) -> None:
    with open_buffer(tmp_path / "b.sqlite", clock, max_events=3) as buffer:
        ids = [buffer.append_event(comm_lost(f"M{n}"), NOW_MS + n) for n in range(2)]
        in_flight = buffer.lease_events(1)  # the oldest: never dropped while in flight
        assert [e.event_id for e in in_flight] == ids[:1]
        later = [buffer.append_event(comm_lost(f"M{n}"), NOW_MS + n) for n in range(2, 5)]
        stats = buffer.stats()
        assert stats.events == 3
        assert stats.events_dropped == 2  # M1 (the oldest pending), then M2
        buffer.release_event(ids[0])
        kept = buffer.lease_events(10)
        assert [e.event_id for e in kept] == [ids[0], *later[1:]]
    # The count is in the database: it survives a restart.
    with open_buffer(tmp_path / "b.sqlite", clock, max_events=3) as buffer:
        assert buffer.stats().events_dropped == 2


CRASHING_AGENT = """
import os, sys
from edge_agent.adapters.sqlite_buffer import SqliteBuffer
buffer = SqliteBuffer(sys.argv[1], max_readings=1000, max_age_days=35)
for n in range(3):
    print(buffer.append_event({"event": "tamper", "meter": f"M{n}"}, 1_800_000_000_000 + n))
buffer.lease_events(2)
os._exit(0)  # gone without closing anything, as after kill -9
"""


def test_events_survive_a_crash_and_those_in_flight_come_back(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "b.sqlite"
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_AGENT, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ids = [int(line) for line in child.stdout.split()]
    with open_buffer(path, clock) as reopened:
        events = reopened.lease_events(10)
    assert [e.event_id for e in events] == ids
    assert [e.event["meter"] for e in events] == ["M0", "M1", "M2"]
    assert [e.at_ms for e in events] == [NOW_MS, NOW_MS + 1, NOW_MS + 2]


def test_bad_events_are_refused_with_a_clear_error_and_nothing_stored(
    buffer: SqliteBuffer,
) -> None:
    with pytest.raises(ValueError, match="not JSON"):
        buffer.append_event({"event": "tamper", "detail": object()}, NOW_MS)
    with pytest.raises(ValueError, match="not JSON"):
        buffer.append_event({"event": "tamper", "value": float("nan")}, NOW_MS)
    with pytest.raises(ValueError, match="'event' kind"):
        buffer.append_event({"meter": "M1"}, NOW_MS)
    with pytest.raises(ValueError, match="milliseconds"):
        buffer.append_event(comm_lost("M1"), 1.5e12)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        buffer.lease_events(0)
    assert buffer.stats().events == 0
    # The buffer goes on working.
    buffer.append_event(comm_lost("M1"), NOW_MS)
    assert len(buffer.lease_events(5)) == 1


def make_v2_buffer(path: Path) -> None:
    """A buffer as the previous release left it: schema v2, a reading in flight."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    for migration in _MIGRATIONS[:2]:
        for statement in migration:
            connection.execute(statement)
    connection.execute("INSERT INTO schema_version VALUES (2)")
    connection.execute("INSERT INTO meters (meter_id, serial) VALUES (1, 'M1')")
    connection.execute(
        "INSERT INTO readings (meter_id, obis, at_ms, value, unit, quality, lease_id)"
        " VALUES (1, '1-0:1.8.0', ?, 12.5, 'kWh', 0, 7)",
        (NOW_MS,),
    )
    connection.execute("INSERT INTO leases VALUES (7, 7, ?)", (NOW_S,))
    connection.execute("UPDATE counters SET value = 7 WHERE name = 'sequence'")
    connection.close()


def test_a_v2_buffer_is_migrated_and_keeps_its_readings(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "v2.sqlite"
    make_v2_buffer(path)
    with open_buffer(path, clock) as buffer:
        event_id = buffer.append_event(comm_lost("M1"), NOW_MS)
        lease = buffer.lease(10)
        assert lease is not None
        assert lease.readings == (Reading("M1", "1-0:1.8.0", NOW_MS, 12.5, "kWh", 0),)
        assert lease.sequence == 8  # the sequence continues
        [event] = buffer.lease_events(10)
        assert (event.event_id, without_id(event.event)) == (event_id, comm_lost("M1"))
    connection = sqlite3.connect(path)
    try:
        version = connection.execute("SELECT version FROM schema_version").fetchone()[0]
        body = connection.execute("SELECT body FROM events").fetchone()[0]
    finally:
        connection.close()
    assert version == SCHEMA_VERSION == 5
    assert without_id(json.loads(body)) == comm_lost("M1")


# --- event ids (the cloud stores an event once per gateway and event_id) ----------


def test_every_event_gets_a_stable_id_unless_it_brings_its_own(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "ids.sqlite"
    with open_buffer(path, clock) as buffer:
        own = buffer.append_event(comm_lost("M1"), NOW_MS)
        entry = {"event": "meter_event", "meter": "M1", "code": 7, "event_id": "M1:7:1000:1"}
        buffer.append_event(entry, NOW_MS)
        leased = buffer.lease_events(10)
        assert buffer.release_event(leased[0].event_id)
    [named, brought] = [event.event["event_id"] for event in leased]
    prefix, _, row = named.rpartition(":")
    assert row == str(own) and len(prefix) == 16
    assert brought == "M1:7:1000:1"
    # The same ids after a restart and a second send.
    with open_buffer(path, clock) as reopened:
        again = [event.event["event_id"] for event in reopened.lease_events(10)]
        newer = reopened.append_event(comm_lost("M2"), NOW_MS)
        [third] = reopened.lease_events(10)
    assert again == [named, brought]
    assert third.event["event_id"] == f"{prefix}:{newer}"
    # Another buffer file (a gateway reinstalled) never repeats those ids.
    with open_buffer(tmp_path / "other.sqlite", clock) as other:
        other.append_event(comm_lost("M1"), NOW_MS)
        [fresh] = other.lease_events(10)
    assert fresh.event["event_id"] != named
