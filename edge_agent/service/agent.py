"""The gateway service: read the meters on schedule, buffer, publish, report.

Threads (each blocking on its own I/O, so one slow part never stalls another):

- one **bus worker** per configured bus: reads its meters when due (aligned
  schedule, edge_agent.domain.schedule), one transaction at a time, and
  appends the readings to the buffer — committed before anything else
  happens to them;
- the **pump**: moves leases and events from the buffer to the MQTT uplink
  and PUBACKs back, and applies the buffer's limits;
- paho-mqtt's network thread (inside MqttUplink).

The main thread supervises: systemd notifications and watchdog, the health
snapshot, commands, and a clean stop on SIGTERM/SIGINT.

Events (JSON on `vs/v1/{gateway}/events`): `gateway_started`,
`meter_comm_lost` (after 3 failed reads in a row) and `meter_comm_restored`,
`buffer_overflow` (readings dropped by the buffer's policy, with counts).
An event is committed to the buffer (`append_event`, stamped with the agent's
clock when it happens, a meter's log entry with the meter's time) before
anything else is done with it, and deleted only on the PUBACK of the message
that carried it: a crash or a lost connection never loses one.
Commands (`cmd/{id}`, JSON `{"action": …}`), answered on `cmd_result/{id}`:
`read_now` (all meters, or `"meters": [serials]`), `status` (the health
snapshot), `restart` (exit with code 75 so systemd restarts the service);
`reread_profile`, `clock_check`, `clock_sync` and `apply_config` are
edge_agent/service/commands.py's (answered later, from a bus thread or their own).
Commands are as durable as events: the command id is committed to the
buffer in paho's thread, before the message is acknowledged to the broker
(a crash before that commit gets the command redelivered); an id seen
before is not run again (its stored answer is sent again); the answer is
committed to the buffer's outbox and deleted on its PUBACK; a command that
was running when the agent died is answered `commands.INTERRUPTED` at the
next start, not run again.

DLMS and optical meters (edge_agent/service/dlms_tasks.py) are bus-worker
tasks like ModbusTask; their load profile is caught up every cycle from the
marks file beside the buffer, and their event logs become `last_gasp`,
`power_restored`, `tamper` events stamped with the meters' own time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edge_agent.adapters.modbus_reader import ModbusMeterReader
from edge_agent.adapters.mqtt_uplink import MqttUplink, UplinkPump
from edge_agent.adapters.sqlite_buffer import (
    BufferFull,
    BufferStoreError,
    PriorCommand,
    SqliteBuffer,
)
from edge_agent.config import (
    AgentConfig,
    BusConfig,
    DlmsSerialBusConfig,
    DlmsTcpBusConfig,
    MeterConfig,
    OpticalBusConfig,
    SerialBusConfig,
    TcpBusConfig,
)
from edge_agent.domain.buffer_policy import DropReport
from edge_agent.domain.readings import Reading
from edge_agent.domain.schedule import jitter_s, next_due_s
from edge_agent.profiles import load_profile
from edge_agent.service import commands
from edge_agent.service.meter_marks import MeterMarks, write_atomically
from firmware_bridge.bus import ModbusBus, ModbusTcpBus, PolledDevice
from firmware_bridge.exceptions import LinkError
from firmware_bridge.links import (
    BytePipe,
    ReconnectingLink,
    SerialLink,
    TcpLink,
    character_time_s,
)
from firmware_bridge.optical import OpticalSettings, open_optical_port

if TYPE_CHECKING:
    # Imported where first needed: they load gurux-dlms (~17 MB), which a
    # gateway with only Modbus meters never needs (docs/performance.md, agent RSS).
    from edge_agent.service.dlms_tasks import DlmsLine

log = logging.getLogger(__name__)

__all__ = ["EXIT_RESTART", "Agent"]

EXIT_RESTART = 75  # EX_TEMPFAIL: systemd's Restart=on-failure starts us again
FAILURES_BEFORE_LOST = 3
# A full disk frees at least this many of the oldest readings at once, so
# that the next few cycles' appends do not each hit the wall again.
FULL_DISK_ROOM_READINGS = 1000
# The uplink pump's pace: every 20 ms while batches or events await their
# PUBACK (acknowledgements come back quickly); otherwise it sleeps until new
# readings, an event or a command wake it, or half a second has passed (a new
# connection, lease timeouts). Polling at 20 ms when idle cost a quarter of
# the agent's CPU (bench agent).
PUMP_BUSY_S = 0.02
PUMP_IDLE_S = 0.5
# `restart` exits once its answer has its PUBACK, or after this long (the
# answer is in the buffer either way: it goes out after the restart).
RESTART_ANSWER_WAIT_S = 5.0
KNOWN_ACTIONS = frozenset({"read_now", "status", "restart", "apply_config"}) | (
    commands.METER_ACTIONS
)
MAX_LOGGED_ID = 40  # a refused id may be huge: log its start only


@dataclass
class CommandStats:
    """What the status JSON reports of the commands since the start."""

    received: int = 0  # messages on cmd/{id}
    run: int = 0  # commands started (a new id, a valid command)
    refused: int = 0  # bad ids, too big, not JSON, unknown actions, bad arguments
    duplicates: int = 0  # ids seen before: answered again, not run
    interrupted: int = 0  # running when the previous process died
    not_recorded: int = 0  # the buffer could not record them: refused, not run
    not_started: int = 0  # queued when the agent stopped: answered, not run
    # paho's thread and the pump both count: `+=` on an attribute is not atomic.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                f.name: getattr(self, f.name)
                for f in dataclasses.fields(self)
                if not f.name.startswith("_")
            }


class MeterTask(Protocol):
    serial: str

    def read(self) -> tuple[list[Reading], str]:
        """Readings, and "" or what failed."""
        ...


@dataclass
class MeterHealth:
    """What the health endpoint reports of one meter."""

    serial: str
    bus: str
    interval_s: int
    reads_ok: int = 0
    reads_failed: int = 0
    consecutive_failures: int = 0
    last_read_at: float | None = None
    last_error: str = ""
    due_at: float = 0.0

    @property
    def state(self) -> str:
        if self.consecutive_failures >= FAILURES_BEFORE_LOST:
            return "lost"
        return "failing" if self.consecutive_failures else "ok"


class ModbusTask:
    """One Modbus meter on a bus."""

    def __init__(
        self, bus: ModbusBus, meter: MeterConfig, clock: Callable[[], float] = time.time
    ) -> None:
        profile = load_profile(meter.profile)
        device = PolledDevice(
            meter.serial,
            meter.unit_id or 1,
            timeout_s=meter.timeout_ms / 1000,
            retries=meter.retries,
        )
        self.serial = meter.serial
        self.reader = ModbusMeterReader(bus, device, profile, clock=clock)

    def read(self) -> tuple[list[Reading], str]:
        result = self.reader.read()
        error = "; ".join(str(failure.error) for failure in result.failures)
        return result.readings, error


@dataclass
class BusWorker:
    """Reads the meters of one bus when they are due (a thread of its own)."""

    name: str
    link: BytePipe
    bus: ModbusBus | DlmsLine
    tasks: dict[str, MeterTask]
    health: dict[str, MeterHealth]
    deliver: Callable[[list[Reading]], object]
    on_state_change: Callable[[MeterHealth, str], None]
    clock: Callable[[], float] = time.time
    speed: float = 1.0  # clock seconds per real second (simulated time, else 1)
    wake: threading.Event = field(default_factory=threading.Event)
    urgent: set[str] = field(default_factory=set)
    urgent_lock: threading.Lock = field(default_factory=threading.Lock)
    # Commands that need the line (reread_profile, clock_*): run between reads.
    # Each with what to do if the bus stops before running it (an answer).
    jobs: deque[tuple[Callable[[], None], Callable[[str], None]]] = field(default_factory=deque)

    def submit(self, job: Callable[[], None], cancel: Callable[[str], None]) -> None:
        """Run `job` on this bus's thread, between two reads (it owns the line);
        `cancel(reason)` instead if the bus stops first."""
        self.jobs.append((job, cancel))
        self.wake.set()

    def _run_jobs(self) -> None:
        while self.jobs:
            job, _ = self.jobs.popleft()
            try:
                job()
            except Exception:  # a command's bug must not end the bus thread
                log.exception("bus %s: command job failed", self.name)

    def cancel_jobs(self, reason: str) -> None:
        """Answer the jobs that will never run (the bus thread has ended)."""
        while self.jobs:
            _, cancel = self.jobs.popleft()
            cancel(reason)

    def read_soon(self, serials: set[str]) -> None:
        """Read these meters now (a read_now command), whatever their schedule."""
        with self.urgent_lock:
            self.urgent |= serials & set(self.tasks)
        self.wake.set()

    def run(self, stop: threading.Event) -> None:
        # A first read right away (a technician sees data at once after a
        # boot), then on the aligned schedule.
        for meter in self.health.values():
            meter.due_at = self.clock()
        while not stop.is_set():
            self._run_jobs()
            due = self._due_meters()
            for serial in due:
                if stop.is_set():
                    break
                try:
                    self._read(serial)
                except Exception:  # a bug of ours must not end the bus thread
                    log.exception("bus %s: handling meter %s failed", self.name, serial)
                    self._reschedule(serial)
            wait = min(m.due_at for m in self.health.values()) - self.clock()
            self.wake.wait(max(0.0, min(wait / self.speed, 1.0)))
            self.wake.clear()

    def _due_meters(self) -> list[str]:
        now = self.clock()
        with self.urgent_lock:
            urgent, self.urgent = self.urgent, set()
        due = sorted(
            (m.due_at, s) for s, m in self.health.items() if m.due_at <= now or s in urgent
        )
        return [serial for _, serial in due]

    def _read(self, serial: str) -> None:
        meter = self.health[serial]
        before = meter.state
        try:
            readings, error = self.tasks[serial].read()
        except LinkError as exc:  # the port itself failed: counted, retried next time
            readings, error = [], str(exc)
        except Exception as exc:  # a reader bug must not end the bus thread
            log.exception("reading meter %s failed", serial)
            readings, error = [], f"internal error: {exc}"
        if readings:
            self.deliver(readings)
        if error and not readings:
            meter.reads_failed += 1
            meter.consecutive_failures += 1
            meter.last_error = error
        else:
            meter.reads_ok += 1
            meter.consecutive_failures = 0
            meter.last_read_at = self.clock()
        self._reschedule(serial)
        if (meter.state == "lost") != (before == "lost"):  # lost, or back from lost
            self.on_state_change(meter, before)

    def _reschedule(self, serial: str) -> None:
        meter = self.health[serial]
        meter.due_at = next_due_s(
            self.clock(), meter.interval_s, jitter_s(serial, meter.interval_s)
        )

    def snapshot(self) -> dict[str, Any]:
        stats = self.bus.statistics
        return {
            "name": self.name,
            "requests": stats.requests,
            "answers": stats.answers,
            "timeouts": stats.timeouts,
            "garbled": stats.garbled,
            "exceptions": stats.exceptions,
            "skipped_breaker_open": stats.skipped_breaker_open,
            "noise_bytes": stats.noise_bytes,
            "utilisation": stats.utilisation,
        }


def open_link(bus_config: BusConfig) -> BytePipe:
    """The bus's port, opened on first use and reopened after a loss
    (ReconnectingLink): a meter that is down at boot does not stop the agent."""
    name = bus_config.name
    if isinstance(bus_config, TcpBusConfig | DlmsTcpBusConfig):
        host, port = bus_config.host, bus_config.port
        return ReconnectingLink(lambda: TcpLink(host, port), character_time_s=0.0, name=name)
    if isinstance(bus_config, OpticalBusConfig):
        optical_port = bus_config.port  # signs on at 300 Bd 7E1 (IEC 62056-21)
        return ReconnectingLink(
            lambda: open_optical_port(optical_port),
            character_time_s=character_time_s(300, 7, "E", 1),
            name=name,
        )
    line = bus_config
    return ReconnectingLink(
        lambda: SerialLink(
            line.port, baudrate=line.baudrate, parity=line.parity, stopbits=line.stopbits
        ),
        character_time_s=character_time_s(line.baudrate, 8, line.parity, line.stopbits),
        name=name,
    )


class Agent:
    """The whole gateway service, built from its configuration (see module doc)."""

    def __init__(self, config: AgentConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path  # apply_config rewrites it
        self.version = package_version("voltstack")
        self.started_at = time.time()
        self.stop_event = threading.Event()
        self._pump_wake = threading.Event()  # set: something for the uplink
        self.exit_code = 0
        self._buffer_lock = threading.Lock()
        config.buffer.path.parent.mkdir(parents=True, exist_ok=True)
        self.buffer = SqliteBuffer(
            config.buffer.path,
            max_readings=config.buffer.max_readings,
            max_age_days=config.buffer.max_age_days,
            synchronous=config.buffer.synchronous,
            max_db_bytes=config.buffer.max_db_bytes,
            max_events=config.buffer.max_events,
        )
        self.uplink = MqttUplink(
            config.uplink,
            config.gateway.id,
            version=self.version,
            status=self._birth_fields,
            on_command=self._on_command,
        )
        self.pump = UplinkPump(self.buffer, self.uplink)
        # Beside the buffer: how far each DLMS meter's profile and event log
        # were taken (edge_agent/service/meter_marks.py says why a file).
        self.marks = MeterMarks(
            config.buffer.path.with_name(f"{config.buffer.path.stem}.marks.json")
        )
        self.command_stats = CommandStats()
        self._restart_after: tuple[str, float] | None = None  # (command id, deadline)
        # Simulated time (config `simulation:`, demos and tests only): the
        # schedule and the agent's own timestamps follow the simulated meters.
        simulation = config.simulation
        self.speed = simulation.speed if simulation else 1.0
        self.clock: Callable[[], float] = (
            (lambda: simulation.simulated_s(time.time())) if simulation else time.time
        )
        self.workers = self._build_workers(config)
        self._bus_stop = threading.Event()
        self._bus_threads: list[threading.Thread] = []
        self._workers_lock = threading.Lock()  # apply_config against stop
        self._threads: list[threading.Thread] = []
        # Commands to run, each already recorded in the buffer: unbounded, as
        # dropping one would leave it unanswered (each is at most 1 MiB, and the
        # broker's ACL lets only the cloud publish them).
        self._commands: deque[tuple[str, dict[str, Any]]] = deque()

    # -- building ----------------------------------------------------------

    def _build_workers(self, config: AgentConfig) -> list[BusWorker]:
        """One worker per bus. Raises (OSError, ValueError, …) when one cannot be built."""
        return [
            self._worker(bus)
            if isinstance(bus, SerialBusConfig | TcpBusConfig)
            else self._dlms_worker(bus)
            for bus in config.buses
        ]

    def _dlms_worker(
        self, bus_config: DlmsTcpBusConfig | DlmsSerialBusConfig | OpticalBusConfig
    ) -> BusWorker:
        """A DLMS or optical line: its link opens on first use, as for Modbus."""
        from edge_agent.service.dlms_tasks import DlmsLine, DlmsTask, OpticalTask, SessionFactory

        link = open_link(bus_config)
        optical: OpticalSettings | None = None
        if isinstance(bus_config, OpticalBusConfig):
            optical = OpticalSettings(
                mode=bus_config.mode,
                baud_switch=bus_config.baud_switch,
                max_baud=bus_config.baudrate,
            )
        line = DlmsLine(link)
        tasks: dict[str, MeterTask] = {}
        for meter in bus_config.meters:
            if optical is not None and optical.mode == "C":
                tasks[meter.serial] = OpticalTask(meter, line, optical, self.clock)
                continue
            interface = "wrapper" if isinstance(bus_config, DlmsTcpBusConfig) else "hdlc"
            tasks[meter.serial] = DlmsTask(
                meter,
                bus_config.name,
                line,
                SessionFactory(line, interface, optical),
                self._deliver,
                self.marks,
                self._meter_event,
            )
        return self._bus_worker(bus_config, link, line, tasks)

    def _worker(self, bus_config: SerialBusConfig | TcpBusConfig) -> BusWorker:
        link = open_link(bus_config)
        bus = ModbusBus(link) if isinstance(bus_config, SerialBusConfig) else ModbusTcpBus(link)
        tasks: dict[str, MeterTask] = {
            m.serial: ModbusTask(bus, m, self.clock) for m in bus_config.meters
        }
        return self._bus_worker(bus_config, link, bus, tasks)

    def _bus_worker(
        self,
        bus_config: BusConfig,
        link: BytePipe,
        bus: ModbusBus | DlmsLine,
        tasks: dict[str, MeterTask],
    ) -> BusWorker:
        health = {
            m.serial: MeterHealth(m.serial, bus_config.name, m.interval_s)
            for m in bus_config.meters
        }
        return BusWorker(
            bus_config.name,
            link,
            bus,
            tasks,
            health,
            self._deliver,
            self._meter_changed,
            clock=self.clock,
            speed=self.speed,
        )

    # -- what the workers call -----------------------------------------------

    def _deliver(self, readings: list[Reading]) -> bool:
        """Commit readings to the buffer; False (reported) when it refused them."""
        try:
            with self._buffer_lock:
                self._append_making_room(readings)
            self._pump_wake.set()
        except BufferStoreError as exc:
            log.error("buffer full, %d readings not stored: %s", len(readings), exc)
            self._event("buffer_full", readings_lost=len(readings), detail=str(exc))
            return False
        return True

    def _append_making_room(self, readings: list[Reading]) -> None:
        """Append; on a full disk drop the oldest readings (the buffer's policy),
        never the new ones, and append again."""
        try:
            self.buffer.append(readings)
            return
        except BufferFull:
            report = self.buffer.make_room(max(len(readings), FULL_DISK_ROOM_READINGS))
        self._report_drops(report)
        self.buffer.append(readings)  # still full (everything in flight): the caller reports

    def _meter_changed(self, meter: MeterHealth, before: str) -> None:
        if meter.state == "lost":
            log.warning(
                "meter %s on %s: communication lost (%s)", meter.serial, meter.bus, meter.last_error
            )
            self._event(
                "meter_comm_lost", meter=meter.serial, bus=meter.bus, error=meter.last_error
            )
        elif meter.state == "ok" and before == "lost":
            log.info("meter %s on %s: communication restored", meter.serial, meter.bus)
            self._event("meter_comm_restored", meter=meter.serial, bus=meter.bus)

    def _event(self, kind: str, **fields: Any) -> bool:
        """An event of the agent's own, stamped now by its clock (simulated or not)."""
        return self._store_event({"event": kind, **fields}, round(self.clock() * 1000))

    def _meter_event(self, event: dict[str, Any]) -> bool:
        """An entry of a meter's event log, stamped with the meter's own time
        (its "at_ms"); True once committed (then the task moves its mark)."""
        return self._store_event(event, int(event["at_ms"]))

    def _store_event(self, event: dict[str, Any], at_ms: int) -> bool:
        """Commit an event to the buffer (the pump sends it); False when refused.

        A full disk drops the oldest readings (the buffer's policy, reported
        as a `buffer_overflow` event after this one) rather than the event.
        """
        stored = self._durably(
            f"{event.get('event')} event", lambda: self.buffer.append_event(event, at_ms)
        )
        return stored is not None

    def _durably(self, what: str, write: Callable[[], Any]) -> Any:
        """Run a buffer write; on a full disk drop the oldest readings and try
        once more. Returns what `write` returned, or None when it failed
        (logged). Wakes the pump: the write queued something to send."""
        try:
            result = write()
            self._pump_wake.set()
            return result
        except BufferFull:
            pass
        except (BufferStoreError, ValueError) as exc:  # ValueError: not JSON (a bug of ours)
            log.error("%s not stored: %s", what, exc)
            return None
        try:  # outside the handler above, so that its own failure is caught here
            report = self.buffer.make_room(FULL_DISK_ROOM_READINGS)
        except BufferStoreError as exc:  # a disk so full that even a DELETE fails
            log.error("%s not stored, no room can be made: %s", what, exc)
            return None
        try:
            result = write()
        except BufferStoreError as exc:  # everything buffered is in flight
            log.error("%s not stored, the buffer is full: %s", what, exc)
            return None
        finally:
            self._report_drops(report)
        self._pump_wake.set()
        return result

    # -- running -----------------------------------------------------------------

    def start(self) -> None:
        self._event("gateway_started", version=self.version)
        self._answer_interrupted_commands()  # before any new command can come in
        self.uplink.start()
        self._start_workers()
        self._spawn("pump", self._pump_loop)
        log.info(
            "agent %s started: %d buses, %d meters",
            self.config.gateway.id,
            len(self.workers),
            sum(len(w.tasks) for w in self.workers),
        )

    def _start_workers(self) -> None:
        self._bus_stop = threading.Event()
        self._bus_threads = []
        for worker in self.workers:
            thread = threading.Thread(
                target=functools.partial(worker.run, self._bus_stop),
                name=f"bus-{worker.name}",
                daemon=True,
            )
            thread.start()
            self._bus_threads.append(thread)

    def _stop_workers(self, timeout_s: float = 30.0, *, until_stopped: bool = False) -> bool:
        """Stop the bus threads (each ends its transaction first) and close their lines.

        Args:
            timeout_s: how long to wait for each thread (per round).
            until_stopped: wait in rounds until every thread has ended (a new
                worker must never share a line with an old one still in a
                transaction, e.g. a long profile catch-up), unless the agent stops.

        Returns:
            True when every bus thread has ended.
        """
        self._bus_stop.set()
        for worker in self.workers:
            worker.wake.set()
        for thread in self._bus_threads:
            thread.join(timeout=timeout_s)
            while thread.is_alive() and until_stopped and not self.stop_event.is_set():
                log.warning("bus thread %s still in a transaction; waiting", thread.name)
                thread.join(timeout=timeout_s)
            if thread.is_alive():
                log.error("bus thread %s did not stop within %g s", thread.name, timeout_s)
        stopped = not any(thread.is_alive() for thread in self._bus_threads)
        for worker in self.workers:
            if stopped:
                worker.cancel_jobs("the meter's bus was restarted before the command ran")
            with contextlib.suppress(LinkError):
                worker.link.close()
        return stopped

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _pump_loop(self) -> None:
        last_limits = 0.0
        while not self.stop_event.is_set():
            self._pump_wake.clear()  # before the pass: a wake during it is kept
            try:
                last_limits = self._pump_pass(last_limits)
            except Exception:  # logged; the watchdog notices if it keeps failing
                log.exception("uplink pump pass failed")
                self.stop_event.wait(1.0)
            state = self.uplink.state
            busy = bool(state.in_flight or state.events_in_flight)
            self._pump_wake.wait(PUMP_BUSY_S if busy else PUMP_IDLE_S)

    def _pump_pass(self, last_limits: float) -> float:
        """One pass: uplink (events and readings), the buffer's limits (every 10 s), commands."""
        with self._buffer_lock:
            self.pump.pump_once()  # events first, then readings
            if time.monotonic() - last_limits > 10:
                last_limits = time.monotonic()
                self._enforce_limits()
        self._run_commands()
        self._restart_when_answered()
        return last_limits

    def _enforce_limits(self) -> None:
        self._report_drops(self.buffer.enforce_limits())

    def _report_drops(self, report: DropReport) -> None:
        if report.total:
            log.warning(
                "buffer limits dropped %d readings (%d by age, %d by size)",
                report.total,
                report.by_age,
                report.by_size,
            )
            self._event(
                "buffer_overflow",
                dropped=report.total,
                by_age=report.by_age,
                by_size=report.by_size,
                by_meter=dict(report.per_meter),
            )

    def stop(self) -> None:
        self.stop_event.set()
        self._pump_wake.set()
        with self._workers_lock:
            self._stop_workers(timeout_s=10)
        for thread in self._threads:
            thread.join(timeout=10)
        self._answer_unstarted_commands()
        self.uplink.stop()
        self.buffer.close()

    def _answer_unstarted_commands(self) -> None:
        """Commands still queued at stop never ran: say so (sent after the
        restart), rather than let the next start call them interrupted."""
        while self._commands:
            command_id, command = self._commands.popleft()
            self.command_stats.add("not_started")
            log.warning(
                "command %s (%s) not run: the agent is stopping", command_id, command["action"]
            )
            self.complete_command(
                command_id,
                {"ok": False, "action": command["action"], "error": commands.NOT_STARTED},
            )

    def healthy(self) -> bool:
        """Every worker thread alive: what the systemd watchdog vouches for."""
        if self._workers_lock.locked():  # apply_config is swapping the bus workers
            return all(thread.is_alive() for thread in self._threads)
        threads = self._threads + self._bus_threads
        return all(thread.is_alive() for thread in threads)

    def run_until_stopped(self, heartbeat: Callable[[], None] = lambda: None) -> int:
        """Block until stop() or a restart command; call `heartbeat` every
        second while every thread is alive (a dead thread stops the watchdog
        pings, and systemd restarts the service)."""
        while not self.stop_event.wait(1.0):
            if self.healthy():
                heartbeat()
            else:
                log.error("a worker thread died: no more watchdog pings")
        return self.exit_code

    # -- commands ------------------------------------------------------------

    def _on_command(self, command_id: str, payload: bytes) -> None:
        """A `cmd/{id}` message (paho's thread): record it, then queue it for the pump.

        Paho acknowledges the message to the broker when this returns, so the
        command id is committed first: a crash before the commit gets the
        command redelivered, a crash after it gets it answered as interrupted.
        """
        self.command_stats.add("received")
        try:
            self._take_command(command_id, payload)
        except Exception:  # a bug of ours must not end the MQTT connection
            log.exception("command %r: handling failed", command_id[:MAX_LOGGED_ID])

    def _take_command(self, command_id: str, payload: bytes) -> None:
        problem = commands.command_id_problem(command_id)
        if problem:  # cannot be a key in the buffer: answered from memory, not run
            self.command_stats.add("refused")
            log.warning("command %r refused: %s", command_id[:MAX_LOGGED_ID], problem)
            self.uplink.publish_command_result(command_id, {"ok": False, "error": problem})
            return
        command, problem = commands.parse_command(payload)
        action = str(command["action"]) if command else ""
        # In a tuple: start_command's None (a new command) is not _durably's None (failed).
        recorded = self._durably(
            f"command {command_id}", lambda: (self.buffer.start_command(command_id, action),)
        )
        if recorded is None:  # not recorded, so not run: running it could run it twice
            self.command_stats.add("not_recorded")
            self.uplink.publish_command_result(
                command_id,
                {
                    "ok": False,
                    "action": action or None,
                    "error": "not run: the agent's buffer could not record the command",
                },
            )
            return
        (known,) = recorded
        if known is not None:
            self._duplicate(known)
        elif command is None:
            self.command_stats.add("refused")
            log.warning("command %s refused: %s", command_id, problem)
            self.complete_command(command_id, {"ok": False, "action": None, "error": problem})
        else:
            self._commands.append((command_id, command))  # run in the pump thread
            self._pump_wake.set()

    def _duplicate(self, known: PriorCommand) -> None:
        self.command_stats.add("duplicates")
        if known.answer is None:
            log.warning(
                "command %s (%s) received again while running", known.command_id, known.action
            )
        elif known.requeued:
            log.warning(
                "command %s (%s) received again: its answer is sent again, the "
                "command is not run again",
                known.command_id,
                known.action,
            )
        else:
            log.info(
                "command %s (%s) received again: its answer is about to be sent",
                known.command_id,
                known.action,
            )

    def _run_commands(self) -> None:
        while self._commands:
            command_id, command = self._commands.popleft()
            action = command["action"]
            outcome = "run" if action in KNOWN_ACTIONS else "refused"
            try:
                result = self._command(command, command_id)
            except (ValueError, TypeError, KeyError) as exc:  # a bad argument
                outcome = "refused"
                result = {"ok": False, "action": action, "error": f"bad command: {exc}"}
            except Exception as exc:  # a bug of ours: answered, never left running
                log.exception("command %s (%s) failed", command_id, action)
                result = {"ok": False, "action": action, "error": f"internal error: {exc}"}
            self.command_stats.add(outcome)
            if result is not None:  # None: answered later, by complete_command
                self.complete_command(command_id, result)

    def complete_command(self, command_id: str, result: dict[str, Any]) -> None:
        """Answer a command (from any thread): commit the answer to the buffer's
        outbox (the pump sends it to cmd_result/{id}, deleted on its PUBACK)."""
        action = str(result.get("action") or "")
        stored = self._durably(
            f"answer to command {command_id}",
            lambda: self.buffer.complete_command(command_id, action, result),
        )
        if stored is None:  # not durable, but the cloud should still hear of it
            self.uplink.publish_command_result(command_id, result)

    def _answer_interrupted_commands(self) -> None:
        """Answer the commands the previous process was running when it died."""
        for command_id, action in self.buffer.running_commands():
            log.warning(
                "command %s (%s) was interrupted by the restart: answered as failed, not run again",
                command_id,
                action,
            )
            self.command_stats.add("interrupted")
            self.complete_command(
                command_id, {"ok": False, "action": action, "error": commands.INTERRUPTED}
            )

    def _restart_when_answered(self) -> None:
        """After `restart`: stop once its answer has its PUBACK (or after a while)."""
        if self._restart_after is None:
            return
        command_id, deadline = self._restart_after
        if time.monotonic() > deadline or not self.buffer.answer_waiting(command_id):
            self._restart_after = None
            self.stop_event.set()

    def find_dlms_task(
        self, serial: str
    ) -> tuple[Callable[[Callable[[], None], Callable[[str], None]], None], Any]:
        """The meter's bus worker's `submit`, and its DLMS task."""
        from edge_agent.service.dlms_tasks import DlmsTask

        for worker in self.workers:
            task = worker.tasks.get(serial)
            if isinstance(task, DlmsTask):
                return worker.submit, task
            if task is not None:
                raise KeyError(f"meter {serial} is not read over DLMS (no clock, no profile)")
        raise KeyError(f"no meter {serial} on this gateway")

    def apply_new_config(self, config: AgentConfig, text: str) -> dict[str, Any]:
        """Write the validated config atomically (the old one kept as `.previous`),
        restart the bus workers on it; on failure restore the old file and workers."""
        if self.config_path is None:
            return {"ok": False, "error": "the agent was started without a config file"}
        path = self.config_path
        previous = path.read_bytes()
        write_atomically(path.with_name(f"{path.name}.previous"), previous)
        write_atomically(path, text.encode("utf-8"))
        with self._workers_lock:
            if self.stop_event.is_set():
                write_atomically(path, previous)
                return {"ok": False, "error": "the agent is stopping"}
            if not self._stop_workers(until_stopped=True):
                write_atomically(path, previous)
                return {"ok": False, "error": "the agent is stopping"}
            try:
                self.workers = self._build_workers(config)
                self._start_workers()
            except Exception as exc:  # e.g. an unreadable password_file: back to the old
                log.error("apply_config: new bus workers failed (%s), rolling back", exc)
                write_atomically(path, previous)
                self._stop_workers()
                self.workers = self._build_workers(self.config)
                self._start_workers()
                return {
                    "ok": False,
                    "error": f"the new configuration failed to start: {exc}; "
                    "rolled back to the previous one",
                    "rolled_back": True,
                }
        self.config = config
        log.info("apply_config: %d buses, %d meters", len(self.workers), self._meter_count())
        return {"ok": True, "buses": len(self.workers), "meters": self._meter_count()}

    def _meter_count(self) -> int:
        return sum(len(worker.tasks) for worker in self.workers)

    def _command(self, command: dict[str, Any], command_id: str = "") -> dict[str, Any] | None:
        action = command["action"]
        if action in commands.METER_ACTIONS:
            return commands.meter_command(self, command_id, command)
        if action == "apply_config":
            return commands.apply_config(self, command_id, command)
        if action == "read_now":
            wanted = set(command.get("meters") or [s for w in self.workers for s in w.tasks])
            for worker in self.workers:
                worker.read_soon(wanted)
            return {"ok": True, "action": action, "meters": sorted(wanted)}
        if action == "status":
            return {"ok": True, "action": action, "status": self.snapshot()}
        if action == "restart":
            self.exit_code = EXIT_RESTART
            self._restart_after = (command_id, time.monotonic() + RESTART_ANSWER_WAIT_S)
            return {"ok": True, "action": action}
        return {"ok": False, "action": action, "error": f"unknown action {action!r}"}

    # -- health ------------------------------------------------------------------

    def _command_snapshot(self) -> dict[str, Any]:
        counts = self.buffer.command_counts()
        return {
            **self.command_stats.snapshot(),
            "remembered": counts.remembered,
            "running": counts.running,
            "answers_waiting": counts.answers_waiting,
        }

    def _birth_fields(self) -> dict[str, Any]:
        return {"buffer_depth": self.buffer.stats().depth}

    def snapshot(self) -> dict[str, Any]:
        """Everything the health endpoint reports (docs/operations.md)."""
        state = self.uplink.state
        stats = self.buffer.stats()
        return {
            "gateway": self.config.gateway.id,
            "version": self.version,
            "running": not self.stop_event.is_set(),
            "uptime_s": time.time() - self.started_at,
            "uplink": {
                "connected": state.connected,
                "connects": state.connects,
                "disconnects": state.disconnects,
                "batches_sent": state.batches_sent,
                "batches_acknowledged": state.batches_acknowledged,
                "readings_acknowledged": state.readings_acknowledged,
                "last_puback_at": state.last_puback_at,
                "last_error": state.last_error,
                "in_flight": len(state.in_flight),
                "events_sent": state.events_sent,
                "events_acknowledged": state.events_acknowledged,
                "events_in_flight": len(state.events_in_flight),
            },
            "buffer": {
                "depth": stats.depth,
                "oldest_age_s": stats.oldest_age_s,
                "in_flight": stats.in_flight,
                "bytes": stats.bytes_on_disk,
                "drops_total": stats.drops_total,
                "events": stats.events,
                "events_dropped": stats.events_dropped,
            },
            "commands": self._command_snapshot(),
            "buses": [worker.snapshot() for worker in self.workers],
            "meters": [
                {
                    "serial": m.serial,
                    "bus": m.bus,
                    "reads_ok": m.reads_ok,
                    "reads_failed": m.reads_failed,
                    "last_read_at": m.last_read_at,
                    "state": m.state,
                }
                for worker in self.workers
                for m in worker.health.values()
            ],
        }
