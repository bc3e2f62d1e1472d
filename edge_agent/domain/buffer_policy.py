"""The store-and-forward buffer's decisions: what to drop, what to send next.

Pure functions and values, no I/O: `edge_agent.adapters.sqlite_buffer` runs
them against SQLite, the unit tests run them against lists (docs/buffer.md).

Send order (`select_lease`): two lanes. A reading is *live* when it was
taken within the last `live_window_s` (default 5 minutes), *backlog* when it
is older (an uplink outage, or a load profile read back after a meter's link
came back). Each lane is a queue in time order (`at_ms`, then meter, then
OBIS code), and a lease takes a *prefix* of each lane: within a lane, no
reading of a meter is sent before an earlier reading of the same meter that
is still buffered.

A lease of `n` readings gives up to `round(n * live_share)` places to the live
lane and the rest to the backlog lane; a lane that has fewer readings than
its places leaves them to the other (work conserving: the uplink never idles
while either lane waits). So live data flows during any replay — the first
reading a meter takes after the uplink came back goes out in the next lease,
not after a day of its own backlog — and the replay still gets at least
`1 - live_share` of every lease. Across the lanes a meter's readings may
interleave (its newest before its day-old ones); the cloud stores a reading
by (meter, OBIS, timestamp), so the order of arrival across lanes changes
nothing stored. A live reading that waits longer than the window moves to
the backlog lane, behind nothing newer of its meter there: the backlog lane
only ever holds readings older than the window, whose start only moves
forward.

Drop policy (`select_drops`). Readings older than `max_age_days` and, after
those, the oldest readings beyond `max_readings` are dropped, oldest first
across all meters, never a reading in flight. Oldest first because the
newest readings are the ones operations need (outages, load, voltage), the
oldest are the likeliest to be recoverable (a meter keeps its load profile
for weeks and cumulative registers such as 1-0:1.8.0 make a later reading
carry the energy of the lost ones), and dropping from the head of every
queue leaves one contiguous, reportable gap per meter instead of holes.
Both limits are in one unit each: ages in seconds (`now_s`, `max_age_days *
86_400`), converted once to the readings' milliseconds by `age_cutoff_ms`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_agent.domain.readings import Reading

__all__ = [
    "DEFAULT_LIVE_WINDOW_S",
    "SECONDS_PER_DAY",
    "BufferStats",
    "BufferedEvent",
    "DropReport",
    "Lease",
    "ReadingBuffer",
    "age_cutoff_ms",
    "drop_count",
    "live_cutoff_ms",
    "order_key",
    "select_drops",
    "select_lease",
    "share_lease",
    "split_lanes",
]

SECONDS_PER_DAY = 86_400
DEFAULT_LIVE_WINDOW_S = 300.0


@dataclass(frozen=True)
class Lease:
    """Readings handed to the uplink for one message, until PUBACK or release.

    `sequence` is the gateway's batch sequence number for this message (never
    reused, continues across restarts); `readings` are in send order.
    """

    lease_id: int
    sequence: int
    readings: tuple[Reading, ...]


@dataclass(frozen=True)
class DropReport:
    """Readings dropped by the limits: per meter and in total."""

    by_age: int = 0
    by_size: int = 0
    per_meter: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.by_age + self.by_size


@dataclass(frozen=True)
class BufferStats:
    """What the agent reports about its buffer (status message, metrics)."""

    depth: int  # readings buffered, in flight included
    in_flight: int  # readings leased and not yet acknowledged
    oldest_age_s: float | None  # age of the oldest buffered reading; None when empty
    bytes_on_disk: int  # database file plus its write-ahead log
    drops_total: int  # every reading ever dropped by the limits
    events: int = 0  # events buffered, in flight included
    events_dropped: int = 0  # every event ever dropped by the cap on events


@dataclass(frozen=True)
class BufferedEvent:
    """An event held in the buffer until the PUBACK of the message that carried it.

    `event_id` is its place in the send order (never reused); `at_ms` when
    it happened; `event` its JSON fields ("event" names its kind). A command's
    answer waits in the same outbox: then `command_id` names the command and
    `event` is the answer, published on `cmd_result/{command_id}`.
    """

    event_id: int
    at_ms: int
    event: Mapping[str, Any]
    command_id: str | None = None


class ReadingBuffer(Protocol):
    """The port the scheduler and the uplink use (SqliteBuffer, or a fake):
    readings, and the agent's events, which are as durable."""

    def append(self, readings: Sequence[Reading]) -> None: ...

    def lease(
        self, max_readings: int, *, live_share: float = 0.5, backlog: bool = True
    ) -> Lease | None: ...

    def release(self, lease_id: int) -> int: ...

    def acknowledge(self, lease_id: int) -> int: ...

    def enforce_limits(self, now: float | None = None) -> DropReport: ...

    def stats(self) -> BufferStats: ...

    def append_event(self, event: Mapping[str, Any], at_ms: int) -> int: ...

    def lease_events(self, max_events: int) -> list[BufferedEvent]: ...

    def acknowledge_event(self, event_id: int) -> bool: ...

    def release_event(self, event_id: int) -> bool: ...


def order_key(reading: Reading) -> tuple[int, str, str]:
    """Send and drop order across meters: oldest first, ties by meter and OBIS."""
    return (reading.at_ms, reading.meter, reading.obis)


def age_cutoff_ms(now_s: float, max_age_days: float) -> int:
    """Readings with `at_ms` below this are older than `max_age_days`."""
    return math.ceil((now_s - max_age_days * SECONDS_PER_DAY) * 1000)


def live_cutoff_ms(now_s: float, live_window_s: float = DEFAULT_LIVE_WINDOW_S) -> int:
    """Readings with `at_ms` at or above this count as live."""
    return math.ceil((now_s - live_window_s) * 1000)


def drop_count(*, older_than_cutoff: int, depth: int, pending: int, max_readings: int) -> int:
    """How many of the oldest pending readings to drop.

    Args:
        older_than_cutoff: pending readings older than the age limit.
        depth: every buffered reading, in flight included.
        pending: buffered readings not in flight (the only ones that may go).
        max_readings: the size limit.

    Age drops are a prefix of the oldest-first order, and so are size drops
    after them: together they are the `k` oldest pending readings.
    """
    over_size = max(0, depth - older_than_cutoff - max_readings)
    return min(pending, older_than_cutoff + over_size)


def split_lanes(
    readings: Iterable[Reading], live_from_ms: int
) -> tuple[list[Reading], list[Reading]]:
    """Split readings into the two lanes, each in send order: (live, backlog)."""
    ordered = sorted(readings, key=order_key)
    live = [reading for reading in ordered if reading.at_ms >= live_from_ms]
    backlog = [reading for reading in ordered if reading.at_ms < live_from_ms]
    return live, backlog


def share_lease(
    max_readings: int, live_share: float, *, live_available: int, backlog_available: int
) -> tuple[int, int]:
    """How many live and backlog readings one lease takes: (live, backlog).

    Raises:
        ValueError: `max_readings` below 1 or `live_share` outside 0..1.
    """
    if max_readings < 1:
        raise ValueError(f"max_readings must be at least 1, not {max_readings}")
    if not 0.0 <= live_share <= 1.0:
        raise ValueError(f"live_share must be within 0..1, not {live_share}")
    live_places = round(max_readings * live_share)
    live = min(live_available, max(live_places, max_readings - backlog_available))
    backlog = min(backlog_available, max_readings - live)
    return live, backlog


def select_lease(
    pending: Iterable[Reading],
    max_readings: int,
    *,
    live_share: float = 0.5,
    live_from_ms: int,
    backlog: bool = True,
) -> list[Reading]:
    """The readings the next lease carries, in send order (the reference).

    Args:
        pending: buffered readings not in flight, any order.
        max_readings: the most the lease may take (>= 1).
        live_share: the part of the lease reserved for the live lane (0..1).
        live_from_ms: `live_cutoff_ms(now_s, live_window_s)`.
        backlog: False for a lease of the live lane only (the uplink's
            places in flight that the replay may not take).

    Raises:
        ValueError: as `share_lease`.
    """
    live, old = split_lanes(pending, live_from_ms)
    if not backlog:
        old = []
    n_live, n_backlog = share_lease(
        max_readings, live_share, live_available=len(live), backlog_available=len(old)
    )
    return sorted(live[:n_live] + old[:n_backlog], key=order_key)


def select_drops(
    pending: Iterable[Reading],
    *,
    in_flight: int,
    max_readings: int,
    age_from_ms: int,
) -> tuple[list[Reading], list[Reading]]:
    """The readings the limits drop: (by age, by size), oldest first (the reference).

    Args:
        pending: buffered readings not in flight (in-flight ones never go).
        in_flight: how many readings are in flight (they count in the depth).
        max_readings: the size limit.
        age_from_ms: `age_cutoff_ms(now_s, max_age_days)`.
    """
    ordered = sorted(pending, key=order_key)
    too_old = sum(1 for reading in ordered if reading.at_ms < age_from_ms)
    count = drop_count(
        older_than_cutoff=too_old,
        depth=len(ordered) + in_flight,
        pending=len(ordered),
        max_readings=max_readings,
    )
    return ordered[:too_old], ordered[too_old:count]
