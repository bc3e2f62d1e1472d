"""The store-and-forward buffer: readings in SQLite (WAL) until the broker has them.

Guarantees (docs/buffer.md has the reasons and the measurements):

- `append` is one transaction; when it returns the readings are committed
  and, with ``synchronous="FULL"`` (the default), on disk. A reading appended
  again with the same (meter, OBIS, at_ms) replaces the buffered one.
- `lease` hands out a prefix of each lane's pending readings in time order
  (live: taken within `live_window_s`; backlog: older), the two lanes sharing
  the lease (`edge_agent.domain.buffer_policy`), under a per-gateway sequence
  number kept in the database.
- Only `acknowledge` (the broker's PUBACK) deletes delivered readings; only
  `enforce_limits` drops undelivered ones, oldest first, never in flight,
  counted per meter in the database.
- Every operation is a unit of work: it commits as a whole or rolls back.
  Nothing kept in Python must survive a crash: on open, every lease still in
  flight goes back to pending (its message may or may not have arrived; the
  cloud stores by (meter, OBIS, timestamp), so a second copy changes nothing).
- One process owns a buffer at a time (an exclusive `flock` on ``<path>.lock``,
  which the kernel frees when the process dies); within it, the methods may
  be called from several threads (the MQTT client acknowledges from its own).
- Events (meter comm lost, last gasp, buffer overflow, …) have the same
  guarantee as readings: `append_event` commits (and fsyncs) before the agent
  does anything else with one, `lease_events` hands them out in the order
  they happened to be published one per message, and only `acknowledge_event`
  (the PUBACK of that message) deletes one. They are bounded by a count
  (`max_events`): beyond it the oldest pending event is dropped and counted
  (`events_dropped`), never one in flight.
- Every event body carries a stable ``event_id`` (the cloud stores an event
  once per (gateway, event_id)): the one the caller gave (a meter's log entry
  names itself, so a re-read gives the same id), else
  ``"{buffer_id}:{row id}"`` — the row id is never reused and `buffer_id` is
  random, made once with the schema (table `meta`), so a new buffer file
  never repeats an old one's ids.
- Remote commands (docs/agent.md, "Commands survive a crash"): `start_command`
  remembers a command id (committed before the agent runs anything) and
  tells whether it was seen before; `complete_command` commits the answer
  and queues it in the events table (the one outbox: leased, published,
  deleted on its PUBACK, released and resent like an event). A completed
  id is remembered for `command_retention_s` (7 days) and among the newest
  `max_commands` (1,000), so a redelivered command is answered again from
  here instead of running twice; one still running when the agent died is
  listed by `running_commands` for the agent to answer as interrupted.

Errors, one root:

    BufferStoreError        any failure of the buffer (I/O error, …)
    ├── BufferFull          the disk (or `max_db_bytes`) is full: the append
    │                       was rolled back, nothing of it stored, nothing
    │                       damaged; delivering or dropping readings frees room
    ├── BufferLocked        another process has this buffer open
    ├── BufferCorrupt       not a buffer database, damaged, or a newer schema
    └── BufferClosed        used after `close()`

Schema v5 (`_MIGRATIONS`; `schema_version` holds the version): `meters`
(serial ↔ small id), `readings` (one row per reading; ``lease_id`` NULL when
pending), `leases` (in flight: sequence, when), `counters` (the sequence, the
events dropped), `drops` (per-meter drop totals), `events` (one row per
event, its JSON body; ``leased_at_s`` NULL when pending; ``command_id`` set
when the row is a command's answer), `meta` (the buffer's random id),
`commands` (the command ids taken, their answers). SQLite stores no
NaN: a NaN value is kept as NULL and read back as NaN (its payload bits are
not kept).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal

from edge_agent.domain.buffer_policy import (
    DEFAULT_LIVE_WINDOW_S,
    BufferedEvent,
    BufferStats,
    DropReport,
    Lease,
    age_cutoff_ms,
    drop_count,
    live_cutoff_ms,
    share_lease,
)
from edge_agent.domain.readings import Reading

__all__ = [
    "DEFAULT_COMMAND_RETENTION_S",
    "DEFAULT_MAX_COMMANDS",
    "DEFAULT_MAX_EVENTS",
    "SCHEMA_VERSION",
    "BufferClosed",
    "BufferCorrupt",
    "BufferFull",
    "BufferLocked",
    "BufferStats",
    "BufferStoreError",
    "BufferedEvent",
    "CommandCounts",
    "DropReport",
    "Lease",
    "PriorCommand",
    "SqliteBuffer",
]

logger = logging.getLogger(__name__)


class BufferStoreError(Exception):
    """The buffer failed; the database is left as the last commit made it."""


class BufferFull(BufferStoreError):
    """No room on disk (or under `max_db_bytes`): the operation stored nothing."""


class BufferLocked(BufferStoreError):
    """Another process has this buffer open."""


class BufferCorrupt(BufferStoreError):
    """The file is not a buffer this agent can use."""


class BufferClosed(BufferStoreError):
    """The buffer was used after `close()`."""


@dataclass(frozen=True)
class PriorCommand:
    """A command id the buffer already knew (`start_command`).

    `answer` is None while the command runs; else its stored answer, and
    `requeued` tells whether it went back into the outbox (delivered, or
    in flight) or was still pending there.
    """

    command_id: str
    action: str
    answer: dict[str, Any] | None
    requeued: bool = False


@dataclass(frozen=True)
class CommandCounts:
    """The commands table at a glance (the status JSON)."""

    remembered: int  # answered ids kept to refuse a second run
    running: int  # taken, not answered yet
    answers_waiting: int  # answers in the outbox, in flight included


# --- schema ---------------------------------------------------------------------

_V1 = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO counters (name, value) VALUES ('sequence', 0)",
    "CREATE TABLE meters (meter_id INTEGER PRIMARY KEY, serial TEXT NOT NULL UNIQUE)",
    """CREATE TABLE readings (
        reading_id INTEGER PRIMARY KEY,
        meter_id INTEGER NOT NULL,
        obis TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        value REAL,
        unit TEXT NOT NULL,
        quality INTEGER NOT NULL,
        lease_id INTEGER
    )""",
    # Identity: a reading appended twice replaces itself. Time first, so that
    # a batch of readings touches a few neighbouring pages, not one per series.
    "CREATE UNIQUE INDEX readings_identity ON readings (at_ms, meter_id, obis)",
    # Each meter's oldest pending reading (live or backlog?).
    "CREATE INDEX readings_pending_by_meter ON readings (meter_id, at_ms) WHERE lease_id IS NULL",
    # Send and drop order across meters: oldest first.
    """CREATE INDEX readings_pending_by_time ON readings (at_ms, meter_id, obis)
        WHERE lease_id IS NULL""",
    "CREATE INDEX readings_in_flight ON readings (lease_id) WHERE lease_id IS NOT NULL",
    """CREATE TABLE leases (
        lease_id INTEGER PRIMARY KEY,
        sequence INTEGER NOT NULL,
        leased_at_s REAL NOT NULL
    )""",
    """CREATE TABLE drops (
        meter TEXT PRIMARY KEY,
        by_age INTEGER NOT NULL DEFAULT 0,
        by_size INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID""",
)

# v2: leases pick lanes by the reading's own age, not by each meter's oldest
# reading, so the per-meter index is dead weight on every append and lease.
_V2 = ("DROP INDEX IF EXISTS readings_pending_by_meter",)

# v3: events are durable like readings (they lived in the agent's memory).
_V3 = (
    # AUTOINCREMENT: an id is never reused, so a late PUBACK for an event sent
    # twice (its lease timed out) can never delete a newer event under its id.
    """CREATE TABLE events (
        event_id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        body TEXT NOT NULL,
        leased_at_s REAL
    )""",
    # Send and drop order: the order they happened in (the order of append).
    "CREATE INDEX events_pending ON events (event_id) WHERE leased_at_s IS NULL",
    # Lease timeouts, looked for on every lease: a range, not a scan.
    "CREATE INDEX events_in_flight ON events (leased_at_s) WHERE leased_at_s IS NOT NULL",
    "INSERT INTO counters (name, value) VALUES ('events_dropped', 0)",
)

# v4: events carry ids the cloud deduplicates on; an agent's own event is named
# by this buffer's random id and its row id (a meter's entry names itself).
_V4 = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta (name, value) VALUES ('buffer_id', lower(hex(randomblob(8))))",
)

# v5: a command's answer is as durable as an event (it waits in `events`, the
# one outbox, named by its command id), and the commands taken are remembered
# so that a command id redelivered by the broker or re-sent by the cloud never
# runs twice. `answer` NULL: running (or interrupted by a crash).
_V5 = (
    "ALTER TABLE events ADD COLUMN command_id TEXT",
    """CREATE TABLE commands (
        command_id TEXT PRIMARY KEY,
        action TEXT NOT NULL,
        received_at_s REAL NOT NULL,
        answer TEXT,
        answered_at_s REAL
    ) WITHOUT ROWID""",
    # Retention, by age and by count: the newest answered first.
    "CREATE INDEX commands_answered ON commands (answered_at_s) WHERE answer IS NOT NULL",
    # Is a command's answer still waiting in the outbox? (a re-sent id)
    "CREATE INDEX events_commands ON events (command_id) WHERE command_id IS NOT NULL",
)

# Migration i takes the schema from version i to i + 1; never edit a shipped one.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4, _V5)
SCHEMA_VERSION = len(_MIGRATIONS)

_UPSERT = """
    INSERT INTO readings (meter_id, obis, at_ms, value, unit, quality)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (at_ms, meter_id, obis) DO UPDATE SET
        value = excluded.value,
        unit = excluded.unit,
        quality = excluded.quality,
        -- a changed reading in flight goes out again; an unchanged one stays leased
        lease_id = CASE
            WHEN value IS excluded.value AND unit = excluded.unit
                AND quality = excluded.quality THEN lease_id
        END
"""
_PENDING_COLUMNS = "reading_id, meter_id, obis, at_ms, value, unit, quality"
_OLDEST_PENDING = """
    SELECT reading_id, meter_id, at_ms FROM readings INDEXED BY readings_pending_by_time
    WHERE lease_id IS NULL ORDER BY at_ms, meter_id, obis LIMIT ?
"""

_LEASED = """
    SELECT serial, obis, at_ms, value, unit, quality FROM readings JOIN meters USING (meter_id)
    WHERE lease_id = ? ORDER BY at_ms, meter_id, obis
"""

_NAN = math.nan
_WAL_LIMIT_BYTES = 16 * 1024 * 1024
# The agent held at most 10,000 events in memory before they were durable;
# at a few hundred bytes each the cap costs a few MB of disk at most.
DEFAULT_MAX_EVENTS = 10_000
# How long, and how many, completed command ids are remembered: the cloud
# re-sends an unanswered command within minutes, a broker redelivers at the
# next connection; a week covers a gateway offline over a long weekend, and
# 1,000 answers (a few hundred bytes each, a status snapshot a few kB) keep
# the table small whatever the cloud sends.
DEFAULT_COMMAND_RETENTION_S = 7 * 86_400.0
DEFAULT_MAX_COMMANDS = 1000


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or (
        "database or disk is full" in str(exc)
    )


def _translate(exc: sqlite3.Error, doing: str) -> BufferStoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    if _is_full(exc):
        return BufferFull(f"buffer full while {doing}: {exc}")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return BufferCorrupt(f"buffer damaged ({doing}): {exc}")
    return BufferStoreError(f"buffer failed while {doing}: {exc}")


def _event_body(event: Mapping[str, Any], at_ms: int) -> str:
    """The event as stored: its JSON text (ValueError when it cannot be one)."""
    if isinstance(at_ms, bool) or not isinstance(at_ms, int):
        raise ValueError(f"an event's at_ms must be epoch milliseconds (int), not {at_ms!r}")
    if not isinstance(event, Mapping) or not isinstance(event.get("event"), str):
        raise ValueError(f"an event must be a JSON object with an 'event' kind, not {event!r}")
    try:
        return json.dumps(dict(event), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{event['event']} event is not JSON: {exc}") from exc


class _UnitOfWork:
    """One write transaction: rolled back unless `commit()` was called."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self._committed = False

    def __enter__(self) -> _UnitOfWork:
        # IMMEDIATE: take the write lock now, not at the first write, so a
        # busy database fails here (after busy_timeout), before any work.
        self.connection.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._committed:
            self.rollback()

    def commit(self) -> None:
        self.connection.execute("COMMIT")
        self._committed = True

    def rollback(self) -> None:
        # SQLite may already have rolled back by itself (e.g. after SQLITE_FULL).
        if self.connection.in_transaction:
            self.connection.execute("ROLLBACK")


class SqliteBuffer:
    """Durable store-and-forward of readings (see the module docstring).

    Args:
        path: the database file (its folder is created if missing).
        max_readings: the size limit that `enforce_limits` keeps.
        max_age_days: the age limit that `enforce_limits` keeps.
        synchronous: "FULL" (default): every commit is fsynced, nothing
            committed is lost by a power cut; "NORMAL": commits survive a
            crash of the agent but the last ones may be lost by a power cut.
        clock: seconds since the Unix epoch (injectable for tests).
        live_window_s: a meter whose oldest pending reading is younger than
            this is live (`edge_agent.domain.buffer_policy`).
        lease_timeout_s: a lease neither acknowledged nor released for this
            long goes back to pending.
        busy_timeout_s: how long to wait for another connection's write lock.
        max_db_bytes: a cap on the database size (`PRAGMA max_page_count`);
            beyond it `append` raises `BufferFull` as on a full disk.
        max_events: the most events kept; beyond it the oldest pending one
            is dropped (and counted) by `append_event` (command answers
            are not counted: they are bounded by `max_commands`).
        command_retention_s: how long a completed command id is remembered.
        max_commands: the most completed command ids remembered.

    Raises:
        BufferLocked: another process has the buffer open.
        BufferCorrupt: the file is not a usable buffer.
        BufferStoreError: the database cannot be opened.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_readings: int,
        max_age_days: float,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        clock: Callable[[], float] = time.time,
        live_window_s: float = DEFAULT_LIVE_WINDOW_S,
        lease_timeout_s: float = 600.0,
        busy_timeout_s: float = 5.0,
        max_db_bytes: int | None = None,
        max_events: int = DEFAULT_MAX_EVENTS,
        command_retention_s: float = DEFAULT_COMMAND_RETENTION_S,
        max_commands: int = DEFAULT_MAX_COMMANDS,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        if max_readings < 1 or max_age_days <= 0 or max_events < 1:
            raise ValueError("max_readings, max_age_days and max_events must be positive")
        self.max_events = max_events
        if command_retention_s <= 0 or max_commands < 1:
            raise ValueError("command_retention_s and max_commands must be positive")
        self.command_retention_s = command_retention_s
        self.max_commands = max_commands
        self.path = Path(path)
        self.max_readings = max_readings
        self.max_age_days = max_age_days
        self.synchronous = synchronous
        self.live_window_s = live_window_s
        self.lease_timeout_s = lease_timeout_s
        self._clock = clock
        self._lock = threading.RLock()
        # Caches of the meters table, rebuilt on open; never the only copy.
        self._meter_ids: dict[str, int] = {}
        self._serials: dict[int, str] = {}
        self._buffer_id = ""  # read from `meta` on open
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._take_lock()
        try:
            self._connection: sqlite3.Connection | None = self._open(busy_timeout_s, max_db_bytes)
        except BaseException:
            self._lock_file.close()
            raise

    # --- opening --------------------------------------------------------------------

    def _take_lock(self) -> BinaryIO:
        lock_path = self.path.with_name(self.path.name + ".lock")
        handle = open(lock_path, "a+b")  # noqa: SIM115  # held for the buffer's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise BufferLocked(f"{self.path} is open in another process") from exc
            raise BufferStoreError(f"cannot lock {lock_path}: {exc}") from exc
        return handle

    def _open(self, busy_timeout_s: float, max_db_bytes: int | None) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise _translate(exc, f"opening {self.path}") from exc
        try:
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise BufferStoreError(f"{self.path}: the file system refuses WAL mode ({mode})")
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            connection.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT_BYTES}")
            if max_db_bytes is not None:
                page_size = connection.execute("PRAGMA page_size").fetchone()[0]
                connection.execute(f"PRAGMA max_page_count={max(1, max_db_bytes // page_size)}")
            self._migrate(connection)
            self._recover(connection)
            self._load_meters(connection)
            self._buffer_id = str(
                connection.execute("SELECT value FROM meta WHERE name = 'buffer_id'").fetchone()[0]
            )
        except sqlite3.Error as exc:
            connection.close()
            raise _translate(exc, f"opening {self.path}") from exc
        except BaseException:
            connection.close()
            raise
        return connection

    def _migrate(self, connection: sqlite3.Connection) -> None:
        with _UnitOfWork(connection) as uow:
            has_table = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if has_table:
                row = connection.execute("SELECT version FROM schema_version").fetchone()
                version = int(row[0]) if row else 0
            else:
                others = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if others:
                    raise BufferCorrupt(f"{self.path} is a SQLite database but not a buffer")
                version = 0
            if version > SCHEMA_VERSION:
                raise BufferCorrupt(
                    f"{self.path} has buffer schema v{version}; this agent knows up to "
                    f"v{SCHEMA_VERSION}"
                )
            for migration in _MIGRATIONS[version:]:
                for statement in migration:
                    connection.execute(statement)
            if version < SCHEMA_VERSION:
                connection.execute("DELETE FROM schema_version")
                connection.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                logger.info("buffer %s: schema v%d -> v%d", self.path, version, SCHEMA_VERSION)
            uow.commit()

    def _recover(self, connection: sqlite3.Connection) -> None:
        # We hold the lock, so whoever leased these is gone: their PUBACKs can
        # never arrive. Back to pending, to be sent again.
        with _UnitOfWork(connection) as uow:
            returned = connection.execute(
                "UPDATE readings SET lease_id = NULL WHERE lease_id IS NOT NULL"
            ).rowcount
            connection.execute("DELETE FROM leases")
            events = connection.execute(
                "UPDATE events SET leased_at_s = NULL WHERE leased_at_s IS NOT NULL"
            ).rowcount
            uow.commit()
        if returned:
            logger.info("buffer %s: %d readings in flight returned to pending", self.path, returned)
        if events:
            logger.info("buffer %s: %d events in flight returned to pending", self.path, events)

    def _load_meters(self, connection: sqlite3.Connection) -> None:
        self._meter_ids = {
            serial: meter_id
            for meter_id, serial in connection.execute("SELECT meter_id, serial FROM meters")
        }
        self._serials = {meter_id: serial for serial, meter_id in self._meter_ids.items()}

    # --- plumbing -------------------------------------------------------------------

    @contextmanager
    def _unit_of_work(self, doing: str, *, durable: bool = True) -> Iterator[_UnitOfWork]:
        """A write transaction under the lock; `durable=False` skips the fsync.

        Only for what a power cut may undo harmlessly: the commit is still
        atomic, and the next durable commit flushes it with its own (the log
        is written in order).
        """
        with self._lock:
            connection = self._connection
            if connection is None:
                raise BufferClosed(f"buffer {self.path} is closed")
            lazy = not durable and self.synchronous == "FULL"
            try:
                if lazy:
                    connection.execute("PRAGMA synchronous=NORMAL")
                try:
                    with _UnitOfWork(connection) as uow:
                        yield uow
                finally:
                    if lazy:
                        connection.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise _translate(exc, doing) from exc

    def _serial(self, connection: sqlite3.Connection, meter_id: int) -> str:
        serial = self._serials.get(meter_id)
        if serial is None:
            self._load_meters(connection)
            serial = self._serials[meter_id]
        return serial

    # --- the API --------------------------------------------------------------------

    def append(self, readings: Sequence[Reading]) -> None:
        """Store readings durably, in one transaction.

        Args:
            readings: what the agent took; a reading whose (meter, OBIS,
                at_ms) is already buffered replaces it.

        Raises:
            BufferFull: no room; nothing of this call was stored.
            BufferStoreError: any other failure; nothing of this call was stored.
        """
        if not readings:
            return
        with self._unit_of_work(f"appending {len(readings)} readings") as uow:
            connection = uow.connection
            meter_ids = self._meter_ids
            new_ids: dict[str, int] = {}
            for serial in {reading.meter for reading in readings} - meter_ids.keys():
                connection.execute(
                    "INSERT INTO meters (serial) VALUES (?) ON CONFLICT DO NOTHING", (serial,)
                )
                new_ids[serial] = connection.execute(
                    "SELECT meter_id FROM meters WHERE serial = ?", (serial,)
                ).fetchone()[0]
            ids = meter_ids if not new_ids else {**meter_ids, **new_ids}
            connection.executemany(
                _UPSERT,
                [
                    (ids[meter], obis, at_ms, value, unit, quality)
                    for meter, obis, at_ms, value, unit, quality in readings
                ],
            )
            uow.commit()
        # Only committed meters enter the cache (a rolled-back id may be reused).
        for serial, meter_id in new_ids.items():
            self._meter_ids[serial] = meter_id
            self._serials[meter_id] = serial

    def lease(
        self, max_readings: int, *, live_share: float = 0.5, backlog: bool = True
    ) -> Lease | None:
        """Take the next readings to send and mark them in flight.

        Args:
            max_readings: the most readings the message may carry (>= 1).
            live_share: the part of the lease reserved for the live lane
                (0..1); the backlog lane gets what the live lane does not
                use, and back.
            backlog: False to lease from the live lane only (the uplink keeps
                places in flight that the replay may not take).

        Returns:
            The lease (readings in send order: oldest first, a prefix of each
            lane's pending readings), or None when nothing (of the lanes
            asked for) is pending.

        Raises:
            ValueError: `max_readings` < 1 or `live_share` outside 0..1.
            BufferFull: no room to record the lease.
            BufferStoreError: any other failure; nothing was leased.
        """
        share_lease(max_readings, live_share, live_available=0, backlog_available=0)
        now_s = self._clock()
        with self._unit_of_work("leasing readings") as uow:
            connection = uow.connection
            self._expire_leases(connection, now_s)
            selections = self._selections(
                connection, max_readings, live_share, now_s, backlog=backlog
            )
            if not selections:
                return None
            (sequence,) = connection.execute(
                "UPDATE counters SET value = value + 1 WHERE name = 'sequence' RETURNING value"
            ).fetchone()
            # A sequence number is never reused, so it names the lease as well.
            lease_id = sequence
            for condition, parameters, limit in selections:
                connection.execute(
                    "UPDATE readings SET lease_id = ? WHERE reading_id IN"
                    " (SELECT reading_id FROM readings INDEXED BY readings_pending_by_time"
                    f" WHERE lease_id IS NULL{condition} ORDER BY at_ms, meter_id, obis LIMIT ?)",
                    (lease_id, *parameters, limit),
                )
            rows = connection.execute(_LEASED, (lease_id,)).fetchall()
            if not rows:
                return None  # rolled back: the sequence number is not used up
            connection.execute(
                "INSERT INTO leases (lease_id, sequence, leased_at_s) VALUES (?, ?, ?)",
                (lease_id, sequence, now_s),
            )
            uow.commit()
        readings = list(map(Reading._make, rows))
        for index, reading in enumerate(readings):
            if reading.value is None:  # NaN, which SQLite keeps as NULL
                readings[index] = reading._replace(value=_NAN)
        return Lease(lease_id, sequence, tuple(readings))

    def _expire_leases(self, connection: sqlite3.Connection, now_s: float) -> None:
        expired = [
            lease_id
            for (lease_id,) in connection.execute(
                "SELECT lease_id FROM leases WHERE leased_at_s < ?",
                (now_s - self.lease_timeout_s,),
            )
        ]
        for lease_id in expired:
            count = self._return(connection, lease_id)
            logger.warning(
                "buffer: lease %d timed out, %d readings back to pending", lease_id, count
            )

    def _selections(
        self,
        connection: sqlite3.Connection,
        max_readings: int,
        live_share: float,
        now_s: float,
        *,
        backlog: bool,
    ) -> list[tuple[str, tuple[int, ...], int]]:
        """What the lease takes: (extra condition, its parameters, how many) per lane."""
        live_from_ms = live_cutoff_ms(now_s, self.live_window_s)
        oldest = connection.execute(_OLDEST_PENDING, (1,)).fetchone()
        if oldest is None:
            return []
        if oldest[2] >= live_from_ms:
            # No backlog (the steady state): one lane, plain time order.
            return [("", (), max_readings)]
        live = (" AND at_ms >= ?", (live_from_ms,))
        if not backlog:
            return [(*live, max_readings)]
        old = (" AND at_ms < ?", (live_from_ms,))
        # The live lane is short (minutes of readings): count it, and give the
        # backlog lane the rest; the backlog lane is never shorter than its
        # places when it is long, so counting it up to `max_readings` suffices.
        available = [
            connection.execute(
                "SELECT count(*) FROM (SELECT 1 FROM readings INDEXED BY readings_pending_by_time"
                f" WHERE lease_id IS NULL{condition} LIMIT ?)",
                (*parameters, max_readings),
            ).fetchone()[0]
            for condition, parameters in (live, old)
        ]
        n_live, n_backlog = share_lease(
            max_readings, live_share, live_available=available[0], backlog_available=available[1]
        )
        return [(*live, n_live), (*old, n_backlog)]

    def _return(self, connection: sqlite3.Connection, lease_id: int) -> int:
        count = connection.execute(
            "UPDATE readings SET lease_id = NULL WHERE lease_id = ?", (lease_id,)
        ).rowcount
        connection.execute("DELETE FROM leases WHERE lease_id = ?", (lease_id,))
        return int(count)

    def release(self, lease_id: int) -> int:
        """The message of a lease was not delivered: its readings go back to pending.

        Returns:
            How many readings went back (0 for an unknown or finished lease).
        """
        with self._unit_of_work(f"releasing lease {lease_id}") as uow:
            count = self._return(uow.connection, lease_id)
            uow.commit()
        return count

    def release_all(self) -> int:
        """The connection dropped: every lease goes back to pending, in order.

        Returns:
            How many readings went back.
        """
        with self._unit_of_work("releasing every lease") as uow:
            count = uow.connection.execute(
                "UPDATE readings SET lease_id = NULL WHERE lease_id IS NOT NULL"
            ).rowcount
            uow.connection.execute("DELETE FROM leases")
            uow.commit()
        return int(count)

    def acknowledge(self, lease_id: int) -> int:
        """The broker's PUBACK for a lease's message arrived: delete its readings.

        Returns:
            How many readings were deleted (0 when the lease timed out or was
            released meanwhile: its readings will be sent again).
        """
        # Not fsynced: a power cut may undo an acknowledgement, and then the
        # readings go out once more, which the cloud's idempotent store absorbs.
        with self._unit_of_work("acknowledging a lease", durable=False) as uow:
            count = uow.connection.execute(
                "DELETE FROM readings WHERE lease_id = ?", (lease_id,)
            ).rowcount
            uow.connection.execute("DELETE FROM leases WHERE lease_id = ?", (lease_id,))
            uow.commit()
        if not count:
            logger.debug("buffer: PUBACK for lease %d, which holds nothing", lease_id)
        return int(count)

    def enforce_limits(self, now: float | None = None) -> DropReport:
        """Drop what the limits do not allow: too old, then beyond `max_readings`.

        Oldest first across all meters, never a reading in flight; every drop
        is added to the per-meter totals in the same transaction.

        Args:
            now: seconds since the Unix epoch (default: the clock).

        Returns:
            What this call dropped (for the `buffer overflow` event).
        """
        now_s = self._clock() if now is None else now
        age_from_ms = age_cutoff_ms(now_s, self.max_age_days)
        with self._unit_of_work("enforcing the limits") as uow:
            connection = uow.connection
            oldest = connection.execute(_OLDEST_PENDING, (1,)).fetchone()
            if oldest is None:
                return DropReport()
            low, high = connection.execute(
                "SELECT min(reading_id), max(reading_id) FROM readings"
            ).fetchone()
            # Row ids only grow, so the id span bounds the depth: no count needed
            # in the usual case, where nothing is old and the span is small.
            if oldest[2] >= age_from_ms and high - low + 1 <= self.max_readings:
                return DropReport()
            (depth,) = connection.execute("SELECT count(*) FROM readings").fetchone()
            (in_flight,) = connection.execute(
                "SELECT count(*) FROM readings WHERE lease_id IS NOT NULL"
            ).fetchone()
            (too_old,) = connection.execute(
                "SELECT count(*) FROM readings INDEXED BY readings_pending_by_time"
                " WHERE lease_id IS NULL AND at_ms < ?",
                (age_from_ms,),
            ).fetchone()
            count = drop_count(
                older_than_cutoff=too_old,
                depth=depth,
                pending=depth - in_flight,
                max_readings=self.max_readings,
            )
            if not count:
                return DropReport()
            per_meter = self._drop_oldest(connection, count, age_from_ms)
            uow.commit()
        report = DropReport(by_age=too_old, by_size=count - too_old, per_meter=per_meter)
        logger.warning(
            "buffer overflow: dropped %d readings (%d too old, %d beyond %d)",
            report.total,
            report.by_age,
            report.by_size,
            self.max_readings,
        )
        return report

    def make_room(self, count: int) -> DropReport:
        """The disk is full: drop the `count` oldest pending readings (by size).

        The same policy as `enforce_limits` (oldest first across all meters,
        never in flight, counted per meter), for when the file system or
        `max_db_bytes` refuses an append before `max_readings` is reached:
        the agent frees room and appends again, so a full disk drops the
        oldest readings rather than the newest.

        Returns:
            What was dropped (nothing when every reading is in flight).
        """
        if count < 1:
            return DropReport()
        # Not fsynced: the point is to free pages now; a power cut that
        # undoes it only brings back readings the next call drops again.
        with self._unit_of_work("making room", durable=False) as uow:
            per_meter = self._drop_oldest(uow.connection, count, age_from_ms=None)
            uow.commit()
        report = DropReport(by_size=sum(per_meter.values()), per_meter=per_meter)
        if report.total:
            logger.warning("buffer full: dropped the %d oldest readings", report.total)
        return report

    def _drop_oldest(
        self, connection: sqlite3.Connection, count: int, age_from_ms: int | None
    ) -> dict[str, int]:
        """Delete the `count` oldest pending readings and add them to the
        per-meter totals (by age when older than `age_from_ms`)."""
        cutoff = -(2**63) if age_from_ms is None else age_from_ms
        per_meter_rows = connection.execute(
            f"SELECT meter_id, count(*), sum(at_ms < ?) FROM ({_OLDEST_PENDING}) GROUP BY meter_id",
            (cutoff, count),
        ).fetchall()
        connection.execute(
            "DELETE FROM readings WHERE reading_id IN"
            f" (SELECT reading_id FROM ({_OLDEST_PENDING}))",
            (count,),
        )
        per_meter: dict[str, int] = {}
        for meter_id, dropped, old in per_meter_rows:
            serial = self._serial(connection, meter_id)
            per_meter[serial] = dropped
            connection.execute(
                "INSERT INTO drops (meter, by_age, by_size) VALUES (?, ?, ?)"
                " ON CONFLICT (meter) DO UPDATE SET by_age = by_age + excluded.by_age,"
                " by_size = by_size + excluded.by_size",
                (serial, old, dropped - old),
            )
        return per_meter

    def drop_counters(self) -> DropReport:
        """Every reading ever dropped by the limits, per meter (from the database)."""
        with self._unit_of_work("reading the drop counters") as uow:
            rows = uow.connection.execute("SELECT meter, by_age, by_size FROM drops").fetchall()
        return DropReport(
            by_age=sum(row[1] for row in rows),
            by_size=sum(row[2] for row in rows),
            per_meter={meter: by_age + by_size for meter, by_age, by_size in rows},
        )

    # --- events -----------------------------------------------------------------

    def append_event(self, event: Mapping[str, Any], at_ms: int) -> int:
        """Store an event durably (one transaction, fsynced under FULL).

        Beyond `max_events` the oldest pending events are dropped in the same
        transaction and added to the `events_dropped` counter (never one in
        flight: its PUBACK decides).

        Args:
            event: the event's JSON fields, with its kind under "event"
                (the uplink adds "gateway" and "at_ms"), and its "event_id"
                if it has a stable one of its own (a meter's log entry);
                without, it gets ``"{buffer_id}:{row id}"``.
            at_ms: when it happened (epoch ms): the agent's clock, or the
                meter's own time for an entry of a meter's event log.

        Returns:
            The event's id (its place in the send order).

        Raises:
            ValueError: the event is not a JSON object with a kind, or
                `at_ms` is not an integer; nothing was stored.
            BufferFull: no room; nothing was stored.
            BufferStoreError: any other failure; nothing was stored.
        """
        body = _event_body(event, at_ms)
        with self._unit_of_work(f"appending a {event['event']} event") as uow:
            connection = uow.connection
            (event_id,) = connection.execute(
                "INSERT INTO events (at_ms, body) VALUES (?, ?) RETURNING event_id",
                (at_ms, body),
            ).fetchone()
            if "event_id" not in event:
                # The row id is known only now; same transaction, so never without one.
                named = _event_body({**event, "event_id": f"{self._buffer_id}:{event_id}"}, at_ms)
                connection.execute(
                    "UPDATE events SET body = ? WHERE event_id = ?", (named, event_id)
                )
            dropped = self._cap_events(connection)
            uow.commit()
        if dropped:
            logger.warning(
                "buffer: %d oldest events dropped (more than %d buffered)", dropped, self.max_events
            )
        return int(event_id)

    def _cap_events(self, connection: sqlite3.Connection) -> int:
        (count,) = connection.execute(
            "SELECT count(*) FROM events WHERE command_id IS NULL"
        ).fetchone()
        excess = count - self.max_events
        if excess <= 0:
            return 0
        dropped = connection.execute(
            "DELETE FROM events WHERE event_id IN (SELECT event_id FROM events INDEXED BY"
            " events_pending WHERE leased_at_s IS NULL AND command_id IS NULL"
            " ORDER BY event_id LIMIT ?)",
            (excess,),
        ).rowcount
        connection.execute(
            "UPDATE counters SET value = value + ? WHERE name = 'events_dropped'", (dropped,)
        )
        return int(dropped)

    def lease_events(self, max_events: int) -> list[BufferedEvent]:
        """Take the oldest pending events (each for one message) and mark them in flight.

        Leases that were neither acknowledged nor released within
        `lease_timeout_s` go back to pending first.

        Returns:
            Up to `max_events` events in the order they were appended.

        Raises:
            ValueError: `max_events` < 1.
            BufferStoreError: the buffer failed; nothing was leased.
        """
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, not {max_events}")
        now_s = self._clock()
        if not self._events_due(now_s - self.lease_timeout_s):
            return []  # the usual case, every pump pass: no write transaction
        # Not fsynced: a lease of an event carries no sequence number, and a
        # restart returns every lease to pending anyway.
        with self._unit_of_work("leasing events", durable=False) as uow:
            connection = uow.connection
            expired = connection.execute(
                "UPDATE events SET leased_at_s = NULL WHERE leased_at_s < ?",
                (now_s - self.lease_timeout_s,),
            ).rowcount
            rows = connection.execute(
                "UPDATE events SET leased_at_s = ? WHERE event_id IN (SELECT event_id FROM events"
                " INDEXED BY events_pending WHERE leased_at_s IS NULL ORDER BY event_id LIMIT ?)"
                " RETURNING event_id, at_ms, body, command_id",
                (now_s, max_events),
            ).fetchall()
            uow.commit()
        if expired:
            logger.warning("buffer: %d event leases timed out, back to pending", expired)
        # RETURNING gives no order: sort by id, the order of append.
        return [
            BufferedEvent(event_id, at_ms, json.loads(body), command_id)
            for event_id, at_ms, body, command_id in sorted(rows)
        ]

    def _events_due(self, expired_before_s: float) -> bool:
        """Is any event pending, or leased before `expired_before_s`? (a read only)"""
        with self._lock:
            connection = self._connection
            if connection is None:
                raise BufferClosed(f"buffer {self.path} is closed")
            try:
                (due,) = connection.execute(
                    "SELECT EXISTS (SELECT 1 FROM events"
                    " WHERE leased_at_s IS NULL OR leased_at_s < ?)",
                    (expired_before_s,),
                ).fetchone()
            except sqlite3.Error as exc:
                raise _translate(exc, "looking for events to send") from exc
        return bool(due)

    def acknowledge_event(self, event_id: int) -> bool:
        """The broker's PUBACK for an event's message arrived: delete it.

        Returns:
            False when the event is no longer buffered (acknowledged already).
        """
        # Not fsynced, as for readings: a power cut may undo it, and then the
        # event goes out once more (at least once).
        with self._unit_of_work("acknowledging an event", durable=False) as uow:
            count = uow.connection.execute(
                "DELETE FROM events WHERE event_id = ?", (event_id,)
            ).rowcount
            uow.commit()
        return bool(count)

    def release_event(self, event_id: int) -> bool:
        """An event's message was not delivered: back to pending, to be sent again.

        Returns:
            False when the event was not in flight (or is gone).
        """
        with self._unit_of_work("releasing an event", durable=False) as uow:
            count = uow.connection.execute(
                "UPDATE events SET leased_at_s = NULL WHERE event_id = ?"
                " AND leased_at_s IS NOT NULL",
                (event_id,),
            ).rowcount
            uow.commit()
        return bool(count)

    # --- commands ---------------------------------------------------------------

    def start_command(self, command_id: str, action: str) -> PriorCommand | None:
        """Take a command: remember its id, durably, before the agent runs it.

        A command id seen before is not taken again. Its answer, when it has
        one, goes back into the outbox (the cloud asked again: it did not get
        it, or lost it) unless a copy is still pending there, to be sent
        anyway. A copy in flight does not count: its PUBACK may be on its way
        while the asker already had it and lost it; a second copy is harmless
        (answers are keyed by command id).

        Args:
            command_id: the id from `cmd/{id}`.
            action: what it asks for (kept to answer it if it is interrupted).

        Returns:
            None when the command is new (now recorded as running); else
            what is known of it (`PriorCommand`).

        Raises:
            BufferFull: no room; nothing was recorded (do not run it).
            BufferStoreError: any other failure; nothing was recorded.
        """
        now_s = self._clock()
        with self._unit_of_work(f"taking command {command_id!r}") as uow:
            connection = uow.connection
            row = connection.execute(
                "SELECT action, answer FROM commands WHERE command_id = ?", (command_id,)
            ).fetchone()
            if row is None:
                connection.execute(
                    "INSERT INTO commands (command_id, action, received_at_s) VALUES (?, ?, ?)",
                    (command_id, action, now_s),
                )
                uow.commit()
                return None
            known_action, answer = row
            if answer is None:
                return PriorCommand(command_id, known_action, None)
            waiting = connection.execute(
                "SELECT 1 FROM events WHERE command_id = ? AND leased_at_s IS NULL", (command_id,)
            ).fetchone()
            if not waiting:
                self._queue_answer(connection, command_id, answer, now_s)
                uow.commit()
        return PriorCommand(command_id, known_action, json.loads(answer), requeued=not waiting)

    def complete_command(self, command_id: str, action: str, answer: Mapping[str, Any]) -> int:
        """Store a command's answer and queue it for `cmd_result/{id}`, in one
        durable transaction; forget answers beyond the retention limits.

        A command that was never taken (refused before it could be) is
        recorded here, answered.

        Returns:
            The answer's place in the outbox (an event id).

        Raises:
            ValueError: the answer is not a JSON object; nothing was stored.
            BufferFull: no room; nothing was stored.
            BufferStoreError: any other failure; nothing was stored.
        """
        if not isinstance(answer, Mapping):
            raise ValueError(f"a command's answer must be a JSON object, not {answer!r}")
        try:
            body = json.dumps(dict(answer), allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the answer to command {command_id!r} is not JSON: {exc}") from exc
        now_s = self._clock()
        with self._unit_of_work(f"answering command {command_id!r}") as uow:
            connection = uow.connection
            connection.execute(
                "INSERT INTO commands (command_id, action, received_at_s, answer, answered_at_s)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (command_id) DO UPDATE SET"
                " answer = excluded.answer, answered_at_s = excluded.answered_at_s",
                (command_id, action, now_s, body, now_s),
            )
            event_id = self._queue_answer(connection, command_id, body, now_s)
            forgotten = self._forget_old_commands(connection, now_s)
            uow.commit()
        if forgotten:
            logger.debug("buffer: %d old command ids forgotten", forgotten)
        return event_id

    def _queue_answer(
        self, connection: sqlite3.Connection, command_id: str, body: str, now_s: float
    ) -> int:
        (event_id,) = connection.execute(
            "INSERT INTO events (at_ms, body, command_id) VALUES (?, ?, ?) RETURNING event_id",
            (round(now_s * 1000), body, command_id),
        ).fetchone()
        return int(event_id)

    def _forget_old_commands(self, connection: sqlite3.Connection, now_s: float) -> int:
        """Answered commands beyond the retention (age, then count); never a running one."""
        by_age = connection.execute(
            "DELETE FROM commands WHERE answer IS NOT NULL AND answered_at_s < ?",
            (now_s - self.command_retention_s,),
        ).rowcount
        by_count = connection.execute(
            "DELETE FROM commands WHERE answer IS NOT NULL AND command_id NOT IN"
            " (SELECT command_id FROM commands INDEXED BY commands_answered"
            " WHERE answer IS NOT NULL ORDER BY answered_at_s DESC LIMIT ?)",
            (self.max_commands,),
        ).rowcount
        return int(by_age) + int(by_count)

    def running_commands(self) -> list[tuple[str, str]]:
        """The commands taken and not answered, as (id, action), oldest first.

        Called when the agent starts, before it takes a new command: these
        were running when the previous process died.
        """
        with self._unit_of_work("listing running commands") as uow:
            rows = uow.connection.execute(
                "SELECT command_id, action FROM commands WHERE answer IS NULL"
                " ORDER BY received_at_s, command_id"
            ).fetchall()
        return [(str(command_id), str(action)) for command_id, action in rows]

    def answer_waiting(self, command_id: str) -> bool:
        """Is this command's answer still in the outbox (not acknowledged yet)?"""
        with self._unit_of_work("looking for a command's answer") as uow:
            row = uow.connection.execute(
                "SELECT 1 FROM events WHERE command_id = ?", (command_id,)
            ).fetchone()
        return row is not None

    def command_counts(self) -> CommandCounts:
        """Remembered, running and waiting answers, for the status JSON."""
        with self._unit_of_work("counting commands") as uow:
            connection = uow.connection
            (remembered, running) = connection.execute(
                "SELECT count(answer), count(*) - count(answer) FROM commands"
            ).fetchone()
            (waiting,) = connection.execute(
                "SELECT count(*) FROM events WHERE command_id IS NOT NULL"
            ).fetchone()
        return CommandCounts(int(remembered), int(running), int(waiting))

    def stats(self) -> BufferStats:
        """Depth, in flight, oldest age, size on disk and drops, for status and metrics."""
        now_s = self._clock()
        with self._unit_of_work("reading the statistics") as uow:
            connection = uow.connection
            (depth,) = connection.execute("SELECT count(*) FROM readings").fetchone()
            (in_flight, oldest_in_flight) = connection.execute(
                "SELECT count(*), min(at_ms) FROM readings WHERE lease_id IS NOT NULL"
            ).fetchone()
            oldest_pending = connection.execute(_OLDEST_PENDING, (1,)).fetchone()
            (drops_total,) = connection.execute(
                "SELECT coalesce(sum(by_age + by_size), 0) FROM drops"
            ).fetchone()
            (events,) = connection.execute(
                "SELECT count(*) FROM events WHERE command_id IS NULL"
            ).fetchone()
            (events_dropped,) = connection.execute(
                "SELECT value FROM counters WHERE name = 'events_dropped'"
            ).fetchone()
        candidates = [oldest_in_flight, oldest_pending[2] if oldest_pending else None]
        oldest_ms = min((at for at in candidates if at is not None), default=None)
        size = 0
        for suffix in ("", "-wal"):
            with suppress(OSError):
                size += os.path.getsize(f"{self.path}{suffix}")
        return BufferStats(
            depth=int(depth),
            in_flight=int(in_flight),
            oldest_age_s=None if oldest_ms is None else now_s - oldest_ms / 1000,
            bytes_on_disk=size,
            drops_total=int(drops_total),
            events=int(events),
            events_dropped=int(events_dropped),
        )

    def close(self) -> None:
        """Checkpoint the log into the database and let another process open it."""
        with self._lock:
            if self._connection is None:
                return
            try:
                self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                logger.warning("buffer %s: checkpoint on close failed: %s", self.path, exc)
            finally:
                self._connection.close()
                self._connection = None
                self._lock_file.close()

    def __enter__(self) -> SqliteBuffer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
