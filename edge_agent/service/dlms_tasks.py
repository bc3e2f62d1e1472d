"""DLMS and optical meters as bus-worker tasks, beside the service's ModbusTask.

A bus worker (edge_agent.service.agent.BusWorker) runs one transaction at a
time on its line; each task here is one meter on such a line:

- `DlmsTask`: a DLMS/COSEM meter over the TCP wrapper (`link: dlms-tcp`),
  HDLC on an RS-485 line (`link: dlms-serial`, several meters by physical
  address) or the optical port in protocol mode E (`link: optical`,
  `mode: E`: the IEC 62056-21 sign-on, then HDLC). One association per
  cycle: the profile's registers stamped with the meter's clock, the load
  profile caught up from the newest capture time already buffered (the
  `MeterMarks` file) to the meter's clock, at most `catch_up_days` back and
  one day per request, and the event log since the last entry seen.
- `OpticalTask`: a meter read by its IEC 62056-21 mode C data readout,
  stamped with the readout's clock lines.

Catch-up order is what makes it lossless: a day of profile rows is committed
to the buffer first and the mark moved after (a crash between reads the day
again; the buffer stores it once). Because every cycle catches up, the same
code fills an outage of the gateway (first cycle after a start) and an outage
of the meter or its line (first cycle after it answers again).

Meter events (codes of the standard event log, simulators/dlms.py) become
`last_gasp` (1, power down), `power_restored` (2), `tamper` (40) and
`meter_event` (any other code), stamped with the meter's time (`at_ms`). The
event mark moves once the event is committed to the buffer, as the profile
mark does: from then on the buffer owns it (it survives a crash and is
deleted only on the PUBACK of its message), so the meter's log is never read
again for it. A crash between that commit and the mark's write reads the
entry again: the event is sent twice, never lost — and stored once, because
every entry carries an ``event_id`` made of what the meter logged (serial,
code, time, repeat of that code within the second), the same on every read,
which the cloud deduplicates on. An event the buffer refuses
leaves the mark where it was, and the next cycle reads it again. On first
contact the agent starts from the meter's clock (old history is not news).

The sessions also serve the remote commands (edge_agent.service.commands):
`with_session` runs a function inside one association, on the bus thread.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from edge_agent.adapters.dlms_reader import (
    DlmsMeterReader,
    DlmsSession,
    MeterEvent,
    session_for,
)
from edge_agent.adapters.optical_reader import OpticalMeterReader
from edge_agent.config import MeterConfig
from edge_agent.domain.readings import Reading
from edge_agent.profiles import load_profile
from edge_agent.service.meter_marks import Mark, MeterMarks
from firmware_bridge.bus import BusStatistics
from firmware_bridge.exceptions import DlmsError, DlmsTimeout, LinkError, OpticalTimeout
from firmware_bridge.links import BytePipe
from firmware_bridge.optical import OpticalSettings, sign_on

log = logging.getLogger(__name__)

__all__ = [
    "EVENT_KINDS",
    "DlmsLine",
    "DlmsTask",
    "OpticalTask",
    "ReadingStore",
    "SessionFactory",
    "dlms_password",
]

T = TypeVar("T")
EVENT_KINDS = {1: "last_gasp", 2: "power_restored", 40: "tamper"}
CATCH_UP_STEP = dt.timedelta(days=1)  # one GET by range: bounded answer, progress kept per day
_DLMS_DEFAULT_TIMEOUT_S = 3.0  # a DLMS answer may be a 1 kB block: longer than a Modbus reply

ReadingStore = Callable[[list[Reading]], bool]  # True once committed to the buffer
EventSink = Callable[[dict[str, Any]], bool]  # True once committed to the buffer


class DlmsLine:
    """One physical line of DLMS/optical meters: its pipe and the worker's statistics.

    The bus worker reports `statistics` as it does a Modbus bus's (requests,
    answers, timeouts; utilisation is the share of time inside sessions).
    """

    def __init__(self, link: BytePipe) -> None:
        self.link = link
        self.statistics = BusStatistics()

    def account(self, session: DlmsSession | None, started: float, error: Exception | None) -> None:
        stats = self.statistics
        if session is not None:
            stats.requests += session.requests
            stats.answers += session.requests - (1 if error is not None else 0)
        if isinstance(error, DlmsTimeout | OpticalTimeout):
            stats.timeouts += 1
        elif isinstance(error, DlmsError):
            stats.exceptions += 1
        stats.busy_s += time.monotonic() - started


def dlms_password(meter: MeterConfig) -> str | None:
    """The LLS password, from the file when it lives in one (a systemd credential)."""
    if meter.password_file is not None:
        try:
            return meter.password_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise OSError(
                f"meter {meter.serial}: cannot read password_file {meter.password_file}: {exc}"
            ) from exc
    return meter.password


class SessionFactory:
    """Makes the (not yet opened) session for one meter on its line.

    Args:
        line: the line.
        interface: "wrapper" (TCP) or "hdlc" (serial line, optical mode E).
        optical: sign on with these settings first (mode E), or None.
    """

    def __init__(
        self, line: DlmsLine, interface: str, optical: OpticalSettings | None = None
    ) -> None:
        self.line, self.interface, self.optical = line, interface, optical
        self._mode_e_format: tuple[int, int, str, int] | None = None  # the last agreed

    def __call__(self, meter: MeterConfig, password: str | None) -> DlmsSession:
        if self.optical is not None:  # the port ends at the agreed speed, 8N1
            self._enter_mode_e(self.optical, lambda: self._session(meter, password))
        return self._session(meter, password)

    def _session(self, meter: MeterConfig, password: str | None) -> DlmsSession:
        timeout_s = (
            meter.timeout_ms / 1000
            if "timeout_ms" in meter.model_fields_set
            else _DLMS_DEFAULT_TIMEOUT_S
        )
        return session_for(
            self.line.link,
            interface="hdlc" if self.interface == "hdlc" else "wrapper",
            client_address=meter.client_address,
            server_address=meter.server_address,
            physical_address=meter.physical_address,
            password=password,
            timeout_s=timeout_s,
            name=meter.serial,
        )

    def _enter_mode_e(self, optical: OpticalSettings, session: Callable[[], DlmsSession]) -> None:
        try:
            result = sign_on(self.line.link, optical)
        except OpticalTimeout:
            # Silence at 300 Bd: a session left open (an agent killed in it)
            # keeps the meter in HDLC until its inactivity timer, minutes
            # (120 s is usual). End it with a DISC at the mode E speed and
            # sign on again.
            if not self._end_session_left_open(optical, session()):
                raise
            result = sign_on(self.line.link, optical)
        self._mode_e_format = result.line_format

    def _end_session_left_open(self, optical: OpticalSettings, stale: DlmsSession) -> bool:
        # After a restart the agreed speed is unknown: the cap, or mode E's usual 9600 Bd.
        line_format = self._mode_e_format or (optical.max_baud or 9600, 8, "N", 1)
        self.line.link.set_format(*line_format)
        ended = stale.end_session_left_open()
        if ended:
            log.warning(
                "meter %s: ended a DLMS session left open on the optical port (DISC at %d Bd)",
                stale.name,
                line_format[0],
            )
        return ended


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _utc(at_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC)


class DlmsTask:
    """One DLMS meter (see the module doc).

    Args:
        meter: its configuration.
        bus: the bus's name (events).
        line: its line.
        sessions: makes its sessions.
        store: commits readings to the buffer; False when it could not.
        marks: the catch-up marks.
        emit: commits an event to the buffer; False when it could not.
    """

    def __init__(
        self,
        meter: MeterConfig,
        bus: str,
        line: DlmsLine,
        sessions: Callable[[MeterConfig, str | None], DlmsSession],
        store: ReadingStore,
        marks: MeterMarks,
        emit: EventSink,
    ) -> None:
        self.serial = meter.serial
        self.meter, self.bus, self.line = meter, bus, line
        # Read now: a missing credential file stops the start (apply_config rolls back).
        self.password = dlms_password(meter)
        self.sessions, self.store, self.marks, self.emit = sessions, store, marks, emit
        self.reader = DlmsMeterReader(meter.serial, load_profile(meter.profile))
        self.codes = [quantity.obis for quantity in self.reader.profile.quantities]
        self.catch_up_window = dt.timedelta(days=meter.catch_up_days)

    # -- sessions ---------------------------------------------------------------

    def with_session(self, work: Callable[[DlmsSession], T]) -> T:
        """Run `work` inside one association (opened and released here).

        Raises:
            LinkError: the line, the sign-on or the association failed (DlmsError, …).
        """
        started, session, error = time.monotonic(), None, None
        try:
            session = self.sessions(self.meter, self.password)
            try:
                session.open()
                return work(session)
            finally:
                session.close()
        except LinkError as exc:
            error = exc
            raise
        finally:
            self.line.account(session, started, error)

    # -- the cycle ----------------------------------------------------------------

    def read(self) -> tuple[list[Reading], str]:
        """Registers, profile catch-up and events; the registers' readings and what failed."""
        return self.with_session(self._cycle)

    def _cycle(self, session: DlmsSession) -> tuple[list[Reading], str]:
        registers = self.reader.read_registers(session, self.codes)
        errors = [f"{f.obis}: {f.error}" for f in registers.failures]
        if any(isinstance(f.error, DlmsTimeout) for f in registers.failures):
            return registers.readings, "; ".join(errors)  # a silent meter: the rest would wait too
        try:
            meter_now = self.reader.read_clock(session)
            errors += self._catch_up(session, meter_now)
            if self.meter.read_events:
                self._read_events(session, meter_now)
        except DlmsError as exc:
            errors.append(str(exc))
        return registers.readings, "; ".join(errors)

    def _catch_up(self, session: DlmsSession, meter_now: dt.datetime) -> list[str]:
        """Buffer the profile rows after the mark, a day per request; what failed."""
        mark = self.marks.get(self.serial, "profile")
        start = meter_now - self.catch_up_window
        if mark is not None:
            start = max(start, _utc(mark.at_ms) + dt.timedelta(seconds=1))
        while start <= meter_now:
            end = min(start + CATCH_UP_STEP, meter_now)
            result = self.reader.read_load_profile(session, start, end)
            if result.failures:
                return [f"{f.obis}: {f.error}" for f in result.failures]
            if result.readings:
                if not self.store(result.readings):
                    return ["load profile: the buffer refused the rows"]
                newest = max(reading.at_ms for reading in result.readings)
                self.marks.set(self.serial, "profile", Mark(newest))
                log.info(
                    "meter %s: %d profile intervals buffered up to %s",
                    self.serial,
                    len({reading.at_ms for reading in result.readings}),
                    _utc(newest).isoformat(),
                )
            start = end + dt.timedelta(seconds=1)
        return []

    def reread_profile(
        self, session: DlmsSession, start: dt.datetime, end: dt.datetime
    ) -> tuple[int, int]:
        """Read [start, end] again and buffer it (the mark stays): (intervals, readings).

        Raises:
            DlmsError: a range could not be read.
            RuntimeError: the buffer refused the rows.
        """
        intervals: set[int] = set()
        readings = 0
        while start <= end:
            chunk_end = min(start + CATCH_UP_STEP, end)
            result = self.reader.read_load_profile(session, start, chunk_end)
            if result.failures:
                raise result.failures[0].error
            if result.readings and not self.store(result.readings):
                raise RuntimeError("the buffer refused the rows")
            intervals |= {reading.at_ms for reading in result.readings}
            readings += len(result.readings)
            start = chunk_end + dt.timedelta(seconds=1)
        return len(intervals), readings

    def _read_events(self, session: DlmsSession, meter_now: dt.datetime) -> None:
        mark = self.marks.get(self.serial, "events")
        if mark is None:  # first contact: history is not news
            self.marks.set(self.serial, "events", Mark(_ms(meter_now), 0))
            return
        start = max(_utc(mark.at_ms), meter_now - self.catch_up_window)
        # Range bounds travel with whole seconds: an entry logged at 12:00:07.25
        # is outside [.., 12:00:07]; one second more takes it (the marks skip repeats).
        end = meter_now + dt.timedelta(seconds=1)
        entries = sorted(self.reader.read_events(session, start, end), key=lambda e: _ms(e.at))
        occurrences: dict[int, int] = {}
        repeats: dict[tuple[int, int], int] = {}
        for entry in entries:
            at_ms = _ms(entry.at)
            nth = occurrences[at_ms] = occurrences.get(at_ms, 0) + 1
            # Counted before the skip, so a re-read numbers an entry the same way.
            repeat = repeats[at_ms, entry.code] = repeats.get((at_ms, entry.code), 0) + 1
            if at_ms < mark.at_ms or (at_ms == mark.at_ms and nth <= mark.count_at):
                continue  # taken in an earlier cycle
            if not self._buffer_event(entry, Mark(at_ms, nth), repeat):
                return  # the mark stays before it: the next cycle reads it again

    def _buffer_event(self, entry: MeterEvent, mark: Mark, repeat: int) -> bool:
        """Commit the entry's event, then move the mark past it; False when refused.

        `repeat` numbers entries of one code within one log second (1, 2 …):
        with the serial, code and time it names the entry whenever it is read
        again, so the cloud keeps two codes of one second apart and a re-read once.
        """
        kind = EVENT_KINDS.get(entry.code, "meter_event")
        log.warning("meter %s: %s at %s (event log)", self.serial, entry.name, entry.at)
        event = {
            "event": kind,
            "meter": self.serial,
            "bus": self.bus,
            "at_ms": mark.at_ms,  # the meter's own time
            "code": entry.code,
            "name": entry.name,
            "source": "event_log",
            "event_id": f"{self.serial}:{entry.code}:{mark.at_ms}:{repeat}",
        }
        if not self.emit(event):
            return False
        # After the commit: the buffer owns the event now (docs/agent.md).
        self.marks.set(self.serial, "events", mark)
        return True


class OpticalTask:
    """One meter read by its IEC 62056-21 mode C data readout (see the module doc)."""

    def __init__(
        self,
        meter: MeterConfig,
        line: DlmsLine,
        settings: OpticalSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.serial = meter.serial
        self.line = line
        self.reader = OpticalMeterReader(
            meter.serial, settings, load_profile(meter.profile), clock=clock
        )

    def read(self) -> tuple[list[Reading], str]:
        started, error = time.monotonic(), None
        try:
            result = self.reader.read(self.line.link)
        except LinkError as exc:
            error = exc
            raise
        finally:
            self.line.statistics.requests += 1
            if error is None:
                self.line.statistics.answers += 1
            elif isinstance(error, OpticalTimeout):
                self.line.statistics.timeouts += 1
            self.line.statistics.busy_s += time.monotonic() - started
        return result.readings, ""
