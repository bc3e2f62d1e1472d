"""The buffer survives SIGKILL: nothing committed is lost, nothing in flight stays stuck.

A child process appends (and leases) in a loop and prints what `append` and
`lease` returned; the test kills it at random moments and reopens the file.
SIGKILL tests a crash of the agent; a power cut (what synchronous=FULL is for)
cannot be reproduced without a virtual machine, see docs/buffer.md.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.adapters.sqlite_buffer import SqliteBuffer
from edge_agent.domain.readings import Reading

pytestmark = pytest.mark.integration

NOW_MS = 1_800_000_000_000

# argv: path, meter, mode ("append" | "lease-and-wait"). Prints "C <n>" once n
# readings are committed, "L <sequence> <count>" once a lease is taken.
CHILD = """
import sys, time
from edge_agent.adapters.sqlite_buffer import SqliteBuffer
from edge_agent.domain.readings import Reading

path, meter, mode = sys.argv[1:4]
buffer = SqliteBuffer(path, max_readings=10**7, max_age_days=3650, synchronous="FULL")
committed = 0
print("R", flush=True)
while True:
    first = NOW_MS + committed
    batch = [Reading(meter, "1-0:1.8.0", first + i, float(i), "kWh", 0) for i in range(50)]
    buffer.append(batch)
    committed += len(batch)
    print("C", committed, flush=True)
    if committed % 500 == 0:
        lease = buffer.lease(120)
        print("L", lease.sequence, len(lease.readings), flush=True)
    if mode == "lease-and-wait" and committed >= 200:
        lease = buffer.lease(150)
        print("L", lease.sequence, len(lease.readings), flush=True)
        time.sleep(60)
""".replace("NOW_MS", str(NOW_MS))


def _start(path: Path, meter: str, mode: str = "append") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), meter, mode],
        stdout=subprocess.PIPE,
        text=True,
    )


def _kill(child: subprocess.Popen[str]) -> list[list[str]]:
    child.send_signal(signal.SIGKILL)
    output, _ = child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL
    # A line cut short by the kill is not a report.
    return [line.split() for line in output.splitlines(keepends=True) if line.endswith("\n")]


def _stored(path: Path, meter: str) -> set[int]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(
            "SELECT at_ms FROM readings JOIN meters USING (meter_id) WHERE serial = ?", (meter,)
        ).fetchall()
    finally:
        connection.close()
    return {at_ms for (at_ms,) in rows}


def test_sigkill_never_loses_a_committed_reading(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    rng = random.Random(1)
    started = time.monotonic()
    highest_sequence = 0
    for run in range(10):
        meter = f"RUN{run}"
        child = _start(path, meter)
        assert child.stdout is not None
        assert child.stdout.readline() == "R\n"  # open and recovered
        time.sleep(rng.uniform(0.05, 0.8))
        lines = _kill(child)
        committed = max((int(line[1]) for line in lines if line[0] == "C"), default=0)
        sequences = [int(line[1]) for line in lines if line[0] == "L"]
        assert sequences == sorted(sequences)
        assert all(sequence > highest_sequence for sequence in sequences)  # never reused
        highest_sequence = max([highest_sequence, *sequences])
        stored = _stored(path, meter)
        assert set(range(NOW_MS, NOW_MS + committed)) <= stored, f"run {run} lost readings"
    assert time.monotonic() - started < 20
    # Reopened: every lease of the dead children is pending again, in order.
    with SqliteBuffer(path, max_readings=10**7, max_age_days=3650) as buffer:
        stats = buffer.stats()
        assert stats.in_flight == 0
        lease = buffer.lease(10**6)
        assert lease is not None
        assert lease.sequence > highest_sequence
        assert len(lease.readings) == stats.depth
        for run in range(10):
            times = [r.at_ms for r in lease.readings if r.meter == f"RUN{run}"]
            assert times == sorted(times)


def test_leased_readings_come_back_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    child = _start(path, "M1", "lease-and-wait")
    assert child.stdout is not None
    committed = 0
    while not (line := child.stdout.readline()).startswith("L"):
        assert line, "the child died"
        if line.startswith("C"):
            committed = int(line.split()[1])
    _, sequence, count = line.split()
    assert int(count) == 150
    _kill(child)
    with SqliteBuffer(path, max_readings=10**6, max_age_days=3650) as buffer:
        assert buffer.stats().in_flight == 0
        lease = buffer.lease(10**6)
        assert lease is not None
        assert lease.sequence == int(sequence) + 1
        assert [r.at_ms for r in lease.readings] == list(range(NOW_MS, NOW_MS + committed))


def test_the_sequence_continues_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    sequences = []
    for restart in range(3):
        with SqliteBuffer(path, max_readings=1000, max_age_days=3650) as buffer:
            buffer.append([Reading("M1", "1-0:1.8.0", NOW_MS + restart, 1.0, "kWh")])
            for _ in range(2):
                lease = buffer.lease(1)
                if lease is not None:
                    sequences.append(lease.sequence)
                    buffer.release(lease.lease_id)
            assert buffer.lease(10) is not None  # leased, never acknowledged
    assert sequences == [1, 2, 4, 5, 7, 8]  # 3 and 6 went to the unacknowledged leases


def test_acknowledge_is_the_only_way_out(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    readings = [Reading("M1", "1-0:1.8.0", NOW_MS + i, 1.0, "kWh") for i in range(300)]
    with SqliteBuffer(path, max_readings=1000, max_age_days=3650) as buffer:
        buffer.append(readings)
        first = buffer.lease(100)
        second = buffer.lease(100)
        assert first is not None and second is not None
        buffer.release(second.lease_id)
        buffer.enforce_limits()
    # Reopen (what a crash leads to): leases return, nothing leaves.
    with SqliteBuffer(path, max_readings=1000, max_age_days=3650) as buffer:
        assert buffer.stats().depth == 300
        lease = buffer.lease(1000)
        assert lease is not None
        assert buffer.acknowledge(lease.lease_id) == 300
        assert buffer.stats().depth == 0
