"""What the console's pages show, read in one place (the read side of the console).

Strategy: each page has one function here that gathers its facts from the
fleet and ingestion queries, the users service and the time-series store,
and returns plain frozen dataclasses the templates render — the templates
never touch an ORM object after the session closed, and the router stays a
thin HTTP layer (STYLE.md: "the console reads through separate read
models"). Everything is keyword-only like the services, and bounded: lists
are capped (`MAX_LISTED`), so no page grows without limit with the fleet.

The live-values diff (`changed_values`) is a pure function so the SSE route
can be stateless: it compares two snapshots of `store.latest()` and keeps
what moved.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import LargeBinary, func, select
from sqlalchemy.orm import Session

from cloud.console._payload import PayloadPreview, PayloadView, preview_of, view_of
from cloud.events import queries as events_queries
from cloud.fleet import queries as fleet_queries
from cloud.fleet import service as fleet_service
from cloud.fleet.dead_letter_resolution import (
    DEAD_LETTER_RESOLVE_ACTION,
    dead_letter_audit_target,
)
from cloud.fleet.models import DeviceEvent, Gateway, Meter
from cloud.ingestion import queries as ingestion_queries
from cloud.ingestion.models import DeadLetter, IngestionStatistics
from cloud.metering import service as metering_service
from cloud.timeseries.store import Point, TimeSeriesStore, to_ms
from cloud.users import service as users_service
from cloud.users.models import ApiToken, AuditEntry, LoginSession, User
from cloud.users.visibility import UNRESTRICTED, MeterWindow, customer_window
from fastcodec.exceptions import CodecError
from fastcodec.obis import parse_obis

__all__ = [
    "DEAD_LETTERS_PER_PAGE",
    "DEAD_LETTER_RESOLVE_ACTION",
    "HIGHLIGHTED_EVENTS",
    "MAX_LISTED",
    "PAYLOAD_SHOWN_BYTES",
    "RECENT_EVENTS",
    "REPORTING_INTERVAL",
    "SPARKLINE_WINDOW",
    "CustomerDashboard",
    "DeadLetterDetail",
    "DeadLetterList",
    "DeadLetterRow",
    "DeadLetterState",
    "EventRow",
    "FleetDashboard",
    "GatewayPage",
    "GatewayRow",
    "LiveValue",
    "MeterPage",
    "MeterRow",
    "Sparkline",
    "changed_values",
    "chart_aggregate",
    "customer_dashboard",
    "dead_letter_audit_target",
    "dead_letter_detail",
    "dead_letter_list",
    "dead_letter_payload",
    "fleet_dashboard",
    "gateway_page",
    "live_values",
    "meter_page",
    "recent_events",
]

# A meter "reports" when its newest reading is at most this old: the agents'
# default schedule reads every meter at least every 15 minutes.
REPORTING_INTERVAL = timedelta(minutes=15)
SPARKLINE_WINDOW = timedelta(hours=1)
# The most rows any console list shows; beyond it the page says "first N".
MAX_LISTED = 200
# Events on the dashboard and on a gateway's or meter's page.
RECENT_EVENTS = 20
# Shown highlighted: a meter without power or without contact needs someone.
HIGHLIGHTED_EVENTS = frozenset({"last_gasp", "meter_comm_lost", "tamper", "buffer_full"})


@dataclass(frozen=True)
class LiveValue:
    """One quantity's newest reading, as the meter page and its live stream show it."""

    obis: str
    name: str | None
    value: float
    unit: str | None
    at: datetime
    quality: int | None

    @property
    def at_ms(self) -> int:
        return to_ms(self.at)

    def as_event(self) -> dict[str, object]:
        """The JSON the live stream sends for this value."""
        return {
            "obis": self.obis,
            "name": self.name or self.obis,
            "value": self.value,
            "text": format_value(self.value),
            "unit": self.unit or "",
            "at": self.at.isoformat(),
            "quality": self.quality,
        }


@dataclass(frozen=True)
class Sparkline:
    """Readings accepted per minute over a window, oldest minute first."""

    per_minute: tuple[int, ...]
    start: datetime

    @property
    def total(self) -> int:
        return sum(self.per_minute)

    @property
    def peak(self) -> int:
        return max(self.per_minute, default=0)

    def svg_points(self, width: int = 240, height: int = 48) -> str:
        """The polyline of the sparkline in an SVG of `width` × `height`."""
        count = len(self.per_minute)
        if count == 0:
            return ""
        peak = self.peak or 1
        step = width / max(count - 1, 1)
        return " ".join(
            f"{index * step:.1f},{height - (value / peak) * (height - 2) - 1:.1f}"
            for index, value in enumerate(self.per_minute)
        )


@dataclass(frozen=True)
class GatewayRow:
    id: str
    name: str
    site: str
    online: bool
    last_seen_at: datetime | None
    meter_count: int
    last_reason: str | None


@dataclass(frozen=True)
class MeterRow:
    serial: str
    model: str
    gateway_id: str | None
    installation_point: str | None
    newest_reading_at: datetime | None


@dataclass(frozen=True)
class EventRow:
    """One event as the console lists it."""

    gateway_id: str
    meter_serial: str | None
    kind: str
    severity: str
    occurred_at: datetime
    received_at: datetime
    details: Mapping[str, object]

    @property
    def highlighted(self) -> bool:
        return self.kind in HIGHLIGHTED_EVENTS or self.severity == "critical"

    @property
    def label(self) -> str:
        """The kind in words: ``last_gasp`` → "last gasp"."""
        return self.kind.replace("_", " ")

    @property
    def summary(self) -> str:
        """The details people read first (the meter's own name, an error)."""
        parts = [
            f"{key}: {self.details[key]}"
            for key in ("name", "error", "bus", "dropped", "readings_lost", "version")
            if key in self.details
        ]
        return ", ".join(str(part)[:120] for part in parts)


@dataclass(frozen=True)
class FleetDashboard:
    gateways_online: int
    gateways_offline: int
    meters_installed: int
    meters_reporting: int
    readings: Sparkline
    readings_per_minute: float
    dead_letters_unresolved: int | None
    gateways: tuple[GatewayRow, ...]
    events: tuple[EventRow, ...] | None = None


@dataclass(frozen=True)
class CustomerDashboard:
    meters: tuple[MeterRow, ...]


@dataclass(frozen=True)
class GatewayPage:
    gateway: GatewayRow
    agent_version: str | None
    history: tuple[tuple[datetime, bool, str], ...]
    meters: tuple[MeterRow, ...]
    events: tuple[EventRow, ...] | None = None


@dataclass(frozen=True)
class MeterPage:
    serial: str
    current: MeterRow | None
    installations: tuple[tuple[str, datetime, datetime | None], ...]
    values: tuple[LiveValue, ...]
    events: tuple[EventRow, ...] | None = None

    @property
    def newest_at_ms(self) -> int:
        return max((value.at_ms for value in self.values), default=0)


# --- helpers --------------------------------------------------------------------


def format_value(value: float) -> str:
    """A reading as people read it: up to 3 decimals, no float noise."""
    text = f"{value:,.3f}".rstrip("0").rstrip(".")
    return text if text not in {"-0", ""} else "0"


def chart_aggregate(obis: str) -> str:
    """How a quantity is bucketed on the chart: a cumulative register (OBIS
    group D 8, energy) shows its reading at the end of each bucket, an
    instantaneous one (power, voltage, current) its mean."""
    try:
        code = parse_obis(obis)
    except CodecError:
        return "mean"
    return "last" if code.d == 8 else "mean"


def _gateway_row(overview: fleet_queries.GatewayOverview) -> GatewayRow:
    gateway = overview.gateway
    return GatewayRow(
        id=gateway.id,
        name=gateway.name,
        site=gateway.site,
        online=gateway.online,
        last_seen_at=gateway.last_seen_at,
        meter_count=overview.meter_count,
        last_reason=overview.last_status.reason if overview.last_status else None,
    )


def _newest_reading(
    store: TimeSeriesStore, serial: str, window: MeterWindow = UNRESTRICTED
) -> datetime | None:
    return max(
        (point.at for point in store.latest(serial) if window.allows(point.at)), default=None
    )


def _meter_row(meter: Meter, newest: datetime | None) -> MeterRow:
    return MeterRow(
        serial=meter.serial,
        model=meter.model,
        gateway_id=meter.gateway_id,
        installation_point=meter.installation_point,
        newest_reading_at=newest,
    )


def live_values(points: Iterable[Point]) -> tuple[LiveValue, ...]:
    """`store.latest()` points as live values, sorted by OBIS code."""
    return tuple(
        LiveValue(
            obis=point.obis,
            name=metering_service.obis_name(point.obis),
            value=point.value,
            unit=point.unit,
            at=point.at,
            quality=point.quality,
        )
        for point in sorted(points, key=lambda point: point.obis)
    )


def changed_values(
    previous: Mapping[str, LiveValue], current: Sequence[LiveValue]
) -> list[LiveValue]:
    """The values of `current` that are new or differ from `previous` (by OBIS code)."""
    changed = []
    for value in current:
        before = previous.get(value.obis)
        if before is None or (before.at, before.value, before.unit) != (
            value.at,
            value.value,
            value.unit,
        ):
            changed.append(value)
    return changed


def _event_row(event: DeviceEvent) -> EventRow:
    return EventRow(
        gateway_id=event.gateway_id,
        meter_serial=event.meter_serial,
        kind=event.kind,
        severity=event.severity,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        details=dict(event.details or {}),
    )


def recent_events(
    *,
    session: Session,
    gateway_id: str | None = None,
    meter_serial: str | None = None,
    limit: int = RECENT_EVENTS,
    window: MeterWindow = UNRESTRICTED,
) -> tuple[EventRow, ...]:
    """The newest events (by when they happened) of the fleet, a gateway or a meter
    (only those within `window`: a customer's link periods)."""
    rows = events_queries.list_events(
        session=session,
        limit=limit,
        gateway_id=gateway_id,
        meter_serial=meter_serial,
        within=window.periods,
    )
    return tuple(_event_row(row) for row in rows)


# --- pages ---------------------------------------------------------------------------


def _readings_per_minute(session: Session, now: datetime) -> Sparkline:
    start = (now - SPARKLINE_WINDOW).replace(second=0, microsecond=0)
    rows = session.execute(
        select(IngestionStatistics.bucket_start_at, func.sum(IngestionStatistics.readings_accepted))
        .where(IngestionStatistics.bucket_start_at >= start)
        .group_by(IngestionStatistics.bucket_start_at)
    ).all()
    minutes = int(SPARKLINE_WINDOW.total_seconds() // 60) + 1
    per_minute = [0] * minutes
    for bucket_start, accepted in rows:
        index = int((bucket_start - start).total_seconds() // 60)
        if 0 <= index < minutes:
            per_minute[index] += int(accepted or 0)
    return Sparkline(per_minute=tuple(per_minute), start=start)


@dataclass(frozen=True)
class _FleetTotals:
    gateways_online: int
    gateways_offline: int
    meters_installed: int
    dead_letters_unresolved: int | None


def _fleet_totals(session: Session, *, include_dead_letters: bool) -> _FleetTotals:
    """The dashboard's counters in one SQL statement (scalar subqueries), one
    round trip to the operational database whatever the fleet's size."""
    in_service = Gateway.decommissioned_at.is_(None)
    columns = [
        select(func.count())
        .select_from(Gateway)
        .where(in_service, Gateway.online.is_(True))
        .scalar_subquery(),
        select(func.count())
        .select_from(Gateway)
        .where(in_service, Gateway.online.is_(False))
        .scalar_subquery(),
        select(func.count()).select_from(Meter).where(Meter.removed_at.is_(None)).scalar_subquery(),
    ]
    if include_dead_letters:
        columns.append(
            select(func.count())
            .select_from(DeadLetter)
            .where(DeadLetter.resolved_at.is_(None))
            .scalar_subquery()
        )
    row = session.execute(select(*columns)).one()
    return _FleetTotals(
        gateways_online=int(row[0] or 0),
        gateways_offline=int(row[1] or 0),
        meters_installed=int(row[2] or 0),
        dead_letters_unresolved=int(row[3] or 0) if include_dead_letters else None,
    )


def _installed_among(session: Session, serials: set[str]) -> int:
    """How many of `serials` are installed now (readings of a removed meter
    still sit in the store). One statement without parameters: the installed
    serials, intersected here — binding thousands of serials in an ``IN (…)``
    costs more to compile than the rows cost to read (measured: 7 ms against
    2 ms at 2,000 meters)."""
    if not serials:
        return 0
    installed = session.scalars(select(Meter.serial).where(Meter.removed_at.is_(None)))
    return len(serials.intersection(installed))


def fleet_dashboard(
    *,
    session: Session,
    store: TimeSeriesStore,
    now: datetime,
    include_dead_letters: bool,
    include_events: bool = False,
) -> FleetDashboard:
    """The back office's overview of the whole fleet.

    Cost per request: one statement for the totals, one for the sparkline,
    three for the gateway list, one query to the time-series store for the
    meters reporting and one statement for the meters installed now — seven
    round trips whatever the fleet's size (the last two read a row per meter).

    Args:
        include_dead_letters: count unresolved dead letters (only for roles
            that may read them; None is shown otherwise).
        include_events: list the fleet's newest events (one more statement;
            None otherwise).
    """
    totals = _fleet_totals(session, include_dead_letters=include_dead_letters)
    reporting = _installed_among(session, store.meters_reporting_since(now - REPORTING_INTERVAL))
    sparkline = _readings_per_minute(session, now)
    # The last five complete minutes: the current minute is still filling.
    last_complete = sparkline.per_minute[-6:-1]
    gateways = fleet_queries.list_gateways(session=session, limit=MAX_LISTED)
    return FleetDashboard(
        gateways_online=totals.gateways_online,
        gateways_offline=totals.gateways_offline,
        meters_installed=totals.meters_installed,
        meters_reporting=reporting,
        readings=sparkline,
        readings_per_minute=sum(last_complete) / max(len(last_complete), 1),
        dead_letters_unresolved=totals.dead_letters_unresolved,
        gateways=tuple(
            _gateway_row(overview)
            for overview in fleet_queries.gateway_overviews(session=session, gateways=gateways)
        ),
        events=recent_events(session=session) if include_events else None,
    )


class DashboardCache:
    """The fleet dashboard, computed at most once per `ttl_s` per view.

    Fifty operators with the dashboard open ask for the same fleet-wide
    aggregates; readings arrive every few minutes, so a view up to a few
    seconds old shows nothing less. One per application (app.state), per
    process: nothing another API process would need (DESIGN.md).
    """

    def __init__(self, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self._clock = ttl_s, clock
        self._views: dict[tuple[bool, bool], tuple[float, FleetDashboard]] = {}
        self._lock = threading.Lock()

    def get(
        self,
        *,
        session: Session,
        store: TimeSeriesStore,
        now: datetime,
        include_dead_letters: bool,
        include_events: bool,
    ) -> FleetDashboard:
        key = (include_dead_letters, include_events)
        with self._lock:
            cached = self._views.get(key)
        if cached is not None and self._clock() - cached[0] < self.ttl_s:
            return cached[1]
        view = fleet_dashboard(
            session=session,
            store=store,
            now=now,
            include_dead_letters=include_dead_letters,
            include_events=include_events,
        )
        with self._lock:
            self._views[key] = (self._clock(), view)
        return view


def customer_dashboard(
    *, session: Session, store: TimeSeriesStore, user_id: int
) -> CustomerDashboard:
    """A customer's own meters (linked to its accounts now), with their newest reading
    from while linked to it (never the previous occupant's)."""
    serials = sorted(users_service.customer_meter_serials(session=session, user_id=user_id))
    installed = {
        meter.serial: meter
        for meter in session.scalars(
            select(Meter).where(Meter.serial.in_(serials[:MAX_LISTED]), Meter.removed_at.is_(None))
        )
    }
    rows = []
    for serial in serials[:MAX_LISTED]:
        window = customer_window(session=session, user_id=user_id, serial=serial)
        newest = _newest_reading(store, serial, window)
        meter = installed.get(serial)
        if meter is None:
            rows.append(MeterRow(serial, "", None, None, newest))
        else:
            rows.append(_meter_row(meter, newest))
    return CustomerDashboard(meters=tuple(rows))


def gateway_page(
    *, session: Session, store: TimeSeriesStore, gateway_id: str, include_events: bool = False
) -> GatewayPage:
    """One gateway: state, status history, meters installed now, its newest events.

    Raises:
        GatewayNotFound: no such gateway.
    """
    gateway = fleet_service.get_gateway(session=session, gateway_id=gateway_id)
    (overview,) = fleet_queries.gateway_overviews(session=session, gateways=[gateway])
    history = fleet_queries.status_history(session=session, gateway_id=gateway_id, limit=MAX_LISTED)
    meters = fleet_service.meters_of_gateway(session=session, gateway_id=gateway_id)
    return GatewayPage(
        gateway=_gateway_row(overview),
        agent_version=gateway.agent_version,
        history=tuple((event.at, event.online, event.reason) for event in history),
        meters=tuple(
            _meter_row(meter, _newest_reading(store, meter.serial)) for meter in meters[:MAX_LISTED]
        ),
        events=recent_events(session=session, gateway_id=gateway_id) if include_events else None,
    )


def meter_page(
    *,
    session: Session,
    store: TimeSeriesStore,
    serial: str,
    include_events: bool = False,
    window: MeterWindow = UNRESTRICTED,
) -> MeterPage:
    """One meter: where it is installed (and was), its newest values and events
    (those within `window`: for a customer, from while the meter was its own).

    Raises:
        MeterNotFound: the serial was never installed.
    """
    installations = fleet_queries.installations(session=session, serial=serial)
    current = next((meter for meter in installations if meter.removed_at is None), None)
    values = live_values(point for point in store.latest(serial) if window.allows(point.at))
    newest = max((value.at for value in values), default=None)
    return MeterPage(
        serial=serial,
        current=_meter_row(current, newest) if current else None,
        installations=tuple(
            (meter.gateway_id, meter.installed_at, meter.removed_at) for meter in installations
        ),
        values=values,
        events=(
            recent_events(session=session, meter_serial=serial, window=window)
            if include_events
            else None
        ),
    )


# --- users, tokens, sessions, audit (thin: the users service does the work) ----


def users(*, session: Session) -> list[User]:
    return users_service.list_users(session=session, limit=MAX_LISTED)


def own_tokens(*, session: Session, user_id: int) -> list[ApiToken]:
    return users_service.list_api_tokens(session=session, owner_id=user_id)[:MAX_LISTED]


def own_profile(*, session: Session, user_id: int) -> User:
    """The caller's own user row: the account page shows its email, role and name."""
    return users_service.get_user(session=session, user_id=user_id)


def own_sessions(*, session: Session, user_id: int) -> list[LoginSession]:
    return users_service.list_sessions(session=session, user_id=user_id)[:MAX_LISTED]


def audit_entries(
    *,
    session: Session,
    action_prefix: str | None,
    target: str | None,
    actor_email: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[AuditEntry]:
    """Audit entries matching the filters, newest first (at most `MAX_LISTED`).

    The actor filter takes an email (what people know) and looks its user up;
    an unknown email matches nothing.
    """
    actor_user_id = None
    if actor_email:
        found = session.scalar(select(User.id).where(User.email == actor_email.strip().lower()))
        if found is None:
            return []
        actor_user_id = found
    return users_service.list_audit(
        session=session,
        actor_user_id=actor_user_id,
        action_prefix=action_prefix or None,
        target=target or None,
        since=since,
        until=until,
        limit=MAX_LISTED,
    )


# --- dead letters ------------------------------------------------------------------------
#
# The list reads no payload: one column is the payload's first bytes
# (``substr``, which PostgreSQL's bytea and SQLite's blob both answer), so a
# page of 50 letters of 1 MiB each reads 50 × `PREVIEW_BYTES`. Who resolved a
# letter and why are not columns of the dead-letter store: resolving (console
# or API, both through `cloud.fleet.dead_letter_resolution`) writes them to the
# audit log (`DEAD_LETTER_RESOLVE_ACTION`, target `dead_letter_audit_target`),
# and the pages read them back from there with one statement per page. Only
# letters the API resolved before it audited have a time and no such entry:
# the pages say "not recorded".

DEAD_LETTERS_PER_PAGE = 50
# The list's preview: bytes read per letter, characters shown.
PREVIEW_BYTES = 120
PREVIEW_CHARS = 80
# A letter's page shows at most this much of its payload (the whole stored
# payload, up to 1 MiB, is a download away): a 1 MiB hex dump would be a
# 5 MB page.
PAYLOAD_SHOWN_BYTES = 64 * 1024


class DeadLetterState(StrEnum):
    """The list's filter."""

    OPEN = "open"
    RESOLVED = "resolved"
    ALL = "all"


@dataclass(frozen=True)
class Resolution:
    """When a dead letter was resolved and, if audited, by whom and why."""

    at: datetime
    by: str | None
    note: str | None


@dataclass(frozen=True)
class DeadLetterRow:
    id: int
    received_at: datetime
    gateway_id: str | None
    topic: str
    reason_code: str
    reason: str
    payload_size_bytes: int
    preview: PayloadPreview
    resolution: Resolution | None


@dataclass(frozen=True)
class DeadLetterList:
    rows: tuple[DeadLetterRow, ...]
    state: DeadLetterState
    gateway_id: str | None
    page: int
    has_next: bool
    per_page: int


@dataclass(frozen=True)
class DeadLetterDetail:
    letter: DeadLetterRow
    payload: PayloadView


def _resolutions(session: Session, resolved: Mapping[int, datetime]) -> dict[int, Resolution]:
    """The resolution of each resolved letter, who and why from the audit log's first entry."""
    if not resolved:
        return {}
    targets = {dead_letter_audit_target(letter_id): letter_id for letter_id in resolved}
    entries = session.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.action == DEAD_LETTER_RESOLVE_ACTION,
            AuditEntry.target.in_(sorted(targets)),
        )
        .order_by(AuditEntry.at, AuditEntry.id)
    )
    recorded: dict[int, AuditEntry] = {}
    for entry in entries:
        recorded.setdefault(targets[entry.target or ""], entry)
    found = {}
    for letter_id, at in resolved.items():
        audited = recorded.get(letter_id)
        note = (audited.details or {}).get("note") if audited else None
        found[letter_id] = Resolution(
            at=at,
            by=audited.actor if audited else None,
            note=note if isinstance(note, str) else None,
        )
    return found


def dead_letter_list(
    *,
    session: Session,
    state: DeadLetterState = DeadLetterState.OPEN,
    gateway_id: str | None = None,
    page: int = 1,
    per_page: int = DEAD_LETTERS_PER_PAGE,
) -> DeadLetterList:
    """One page of dead letters, newest first, with a preview of each payload.

    Args:
        state: open (unresolved), resolved or all.
        gateway_id: only this gateway's (exact id).
        page: 1 for the newest `per_page`.
    """
    preview = func.substr(DeadLetter.payload, 1, PREVIEW_BYTES, type_=LargeBinary)
    query = select(
        DeadLetter.id,
        DeadLetter.received_at,
        DeadLetter.gateway_id,
        DeadLetter.topic,
        DeadLetter.reason_code,
        DeadLetter.reason,
        DeadLetter.payload_size_bytes,
        DeadLetter.resolved_at,
        preview,
    )
    if state is DeadLetterState.OPEN:
        query = query.where(DeadLetter.resolved_at.is_(None))
    elif state is DeadLetterState.RESOLVED:
        query = query.where(DeadLetter.resolved_at.is_not(None))
    if gateway_id:
        query = query.where(DeadLetter.gateway_id == gateway_id)
    query = query.order_by(DeadLetter.received_at.desc(), DeadLetter.id.desc())
    found = session.execute(query.limit(per_page + 1).offset((page - 1) * per_page)).all()
    rows = found[:per_page]
    resolutions = _resolutions(
        session, {row.id: row.resolved_at for row in rows if row.resolved_at is not None}
    )
    return DeadLetterList(
        rows=tuple(
            DeadLetterRow(
                id=row.id,
                received_at=row.received_at,
                gateway_id=row.gateway_id,
                topic=row.topic,
                reason_code=row.reason_code,
                reason=row.reason,
                payload_size_bytes=row.payload_size_bytes,
                preview=preview_of(
                    bytes(row[-1] or b""),
                    size_bytes=row.payload_size_bytes,
                    max_chars=PREVIEW_CHARS,
                ),
                resolution=resolutions.get(row.id),
            )
            for row in rows
        ),
        state=state,
        gateway_id=gateway_id,
        page=page,
        has_next=len(found) > per_page,
        per_page=per_page,
    )


def dead_letter_detail(*, session: Session, dead_letter_id: int) -> DeadLetterDetail:
    """One dead letter with its payload readable (JSON indented, text, or a hex dump).

    Raises:
        DeadLetterNotFound: no such id.
    """
    letter = ingestion_queries.get_dead_letter(session=session, dead_letter_id=dead_letter_id)
    payload = bytes(letter.payload)
    resolutions = (
        _resolutions(session, {letter.id: letter.resolved_at}) if letter.resolved_at else {}
    )
    return DeadLetterDetail(
        letter=DeadLetterRow(
            id=letter.id,
            received_at=letter.received_at,
            gateway_id=letter.gateway_id,
            topic=letter.topic,
            reason_code=letter.reason_code,
            reason=letter.reason,
            payload_size_bytes=letter.payload_size_bytes,
            preview=preview_of(
                payload[:PREVIEW_BYTES],
                size_bytes=letter.payload_size_bytes,
                max_chars=PREVIEW_CHARS,
            ),
            resolution=resolutions.get(letter.id),
        ),
        payload=view_of(
            payload, size_bytes=letter.payload_size_bytes, max_bytes=PAYLOAD_SHOWN_BYTES
        ),
    )


def dead_letter_payload(*, session: Session, dead_letter_id: int) -> bytes:
    """A dead letter's stored bytes, for download.

    Raises:
        DeadLetterNotFound: no such id.
    """
    letter = ingestion_queries.get_dead_letter(session=session, dead_letter_id=dead_letter_id)
    return bytes(letter.payload)
