"""Gateway and meter events into the operational database (`device_events`).

Strategy: the ingestion worker hands every ``vs/v1/{gw}/events`` message to
`ingest_event`. `parse_event` is pure: it turns the JSON into an
`EventRecord` or a `Refusal` (the message goes to the dead-letter store with
its reason, as for readings). `store_event` checks the sender against the
fleet and inserts with ``ON CONFLICT DO NOTHING``: agents deliver at least
once, and the unique index on (gateway, event_id) — for events of older
agents, without an ``event_id``, the partial ones on (gateway, meter, kind,
occurred_at) — make a redelivery leave the one row there is (the first
`received_at` stays), while two events that share a kind and a second (two
codes of one meter's log) stay two. docs/events.md has the contract.

Invariants:

- any bytes give an `EventRecord` or a `Refusal`, never an exception;
- an event is stored only for a registered gateway that is not
  decommissioned, under the topic's gateway id (the broker's ACL vouches
  for it), about a meter that was installed on that gateway at some time;
- the whole message is committed (stored, or found stored already) before
  `ingest_event` returns, so the worker acknowledges after the commit.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.db import unit_of_work
from cloud.fleet.models import DeviceEvent, EventSeverity, Gateway, Meter
from cloud.ingestion.models import DeadLetterReason
from cloud.ingestion.validation import Refusal, ValidationRules, check_gateway
from cloud.timeseries.store import from_ms, to_ms

__all__ = [
    "MAX_EVENT_BYTES",
    "SEVERITY_OF",
    "EventRecord",
    "ingest_event",
    "parse_event",
    "severity_of",
    "store_event",
]

logger = logging.getLogger(__name__)

# An event is a few hundred bytes of JSON; more is a misbehaving sender.
MAX_EVENT_BYTES = 16 * 1024
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Fields with their own column; every other field goes to `details`.
_COLUMNS = frozenset({"event", "gateway", "meter", "at_ms", "event_id"})
# The agent's name for an event (docs/agent.md): printable, no spaces, bounded.
EVENT_ID_PATTERN = re.compile(r"^[!-~]{1,128}$")
# The agents' events (docs/agent.md); any other kind is `info`.
SEVERITY_OF: dict[str, EventSeverity] = {
    "last_gasp": EventSeverity.CRITICAL,
    "tamper": EventSeverity.CRITICAL,
    "buffer_full": EventSeverity.CRITICAL,
    "meter_comm_lost": EventSeverity.WARNING,
    "buffer_overflow": EventSeverity.WARNING,
    "power_restored": EventSeverity.INFO,
    "meter_comm_restored": EventSeverity.INFO,
    "gateway_started": EventSeverity.INFO,
    "meter_event": EventSeverity.INFO,
}


@dataclass(frozen=True)
class EventRecord:
    """One event as it is stored (before the fleet checks)."""

    gateway_id: str
    meter_serial: str | None
    kind: str
    occurred_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    # The agent's stable name for it; None from agents before event ids.
    event_id: str | None = None

    @property
    def severity(self) -> EventSeverity:
        return severity_of(self.kind)


def severity_of(kind: str) -> EventSeverity:
    """How urgent an event of `kind` is (`SEVERITY_OF`, else info)."""
    return SEVERITY_OF.get(kind, EventSeverity.INFO)


def _undecodable(reason: str) -> Refusal:
    return Refusal(DeadLetterReason.UNDECODABLE, f"event: {reason}")


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; PostgreSQL's json type refuses them too.
    raise ValueError(f"{name} is not a JSON value")


def _document(payload: bytes) -> dict[str, Any] | Refusal:
    try:
        document = json.loads(payload, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        return _undecodable(f"not JSON: {str(error)[:120]}")
    if not isinstance(document, dict):
        return _undecodable("a JSON object expected")
    return document


def _occurred_at(at_ms: Any, now: datetime, rules: ValidationRules) -> datetime | Refusal:
    if not isinstance(at_ms, int) or isinstance(at_ms, bool):
        return _undecodable('"at_ms" (integer ms since the epoch) expected')
    now_ms = to_ms(now)
    oldest = now_ms - rules.max_age // timedelta(milliseconds=1)
    newest = now_ms + rules.max_ahead // timedelta(milliseconds=1)
    if not oldest <= at_ms <= newest:
        return Refusal(
            DeadLetterReason.TIMESTAMP_OUT_OF_WINDOW,
            f"event at_ms {at_ms} outside the window {oldest} … {newest}",
        )
    return from_ms(at_ms)


def parse_event(
    payload: bytes, *, gateway_id: str, now: datetime, rules: ValidationRules
) -> EventRecord | Refusal:
    """An events message as a record, or why it cannot be stored.

    Args:
        payload: the message as received.
        gateway_id: the topic's gateway.
        now: the worker's clock (aware), for the time window.
        rules: the window (`max_age`, `max_ahead`) readings use too.

    Returns:
        The record, or a `Refusal`: ``too_large``, ``undecodable`` (not a
        JSON object, no snake_case ``event``, no integer ``at_ms``, a bad
        ``meter``, an ``event_id`` that is not 1 to 128 printable ASCII
        characters), ``unknown_gateway`` (``gateway`` differs from the topic)
        or ``timestamp_out_of_window``.
    """
    if len(payload) > MAX_EVENT_BYTES:
        return Refusal(
            DeadLetterReason.TOO_LARGE, f"event of {len(payload)} bytes, limit {MAX_EVENT_BYTES}"
        )
    document = _document(payload)
    if isinstance(document, Refusal):
        return document
    kind = document.get("event")
    if not isinstance(kind, str) or not KIND_PATTERN.match(kind):
        return _undecodable('"event" (a snake_case name) expected')
    meter = document.get("meter")
    if meter is not None and not (isinstance(meter, str) and 1 <= len(meter) <= 64):
        return _undecodable('"meter" must be a serial of 1 to 64 characters')
    event_id = document.get("event_id")
    if event_id is not None and not (
        isinstance(event_id, str) and EVENT_ID_PATTERN.match(event_id)
    ):
        return _undecodable('"event_id" must be 1 to 128 printable ASCII characters')
    sender = document.get("gateway")
    if sender is not None and sender != gateway_id:
        return Refusal(
            DeadLetterReason.UNKNOWN_GATEWAY,
            f"event says gateway {str(sender)[:64]!r}, topic says {gateway_id!r}",
        )
    occurred_at = _occurred_at(document.get("at_ms"), now, rules)
    if isinstance(occurred_at, Refusal):
        return occurred_at
    details = {key: value for key, value in document.items() if key not in _COLUMNS}
    return EventRecord(gateway_id, meter, kind, occurred_at, details, event_id)


def _fleet_refusal(session: Session, event: EventRecord) -> Refusal | None:
    decommissioned_at = session.execute(
        select(Gateway.decommissioned_at).where(Gateway.id == event.gateway_id)
    ).first()
    refusal = check_gateway(
        topic_gateway=event.gateway_id,
        batch_gateway=None,
        known=decommissioned_at is not None,
        decommissioned=decommissioned_at is not None and decommissioned_at[0] is not None,
    )
    if refusal is not None or event.meter_serial is None:
        return refusal
    installed = session.scalar(
        select(Meter.id)
        .where(Meter.gateway_id == event.gateway_id, Meter.serial == event.meter_serial)
        .limit(1)
    )
    if installed is None:
        return Refusal(
            DeadLetterReason.METER_NOT_ON_GATEWAY,
            f"event about meter {event.meter_serial!r}, never installed on {event.gateway_id!r}",
        )
    return None


def store_event(*, session: Session, event: EventRecord, received_at: datetime) -> bool | Refusal:
    """Store the event once.

    Returns:
        True if stored now, False if it was stored already (a redelivery), a
        `Refusal` (unknown or decommissioned gateway, foreign meter) if it
        must not be stored.
    """
    refusal = _fleet_refusal(session, event)
    if refusal is not None:
        return refusal
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(DeviceEvent)
        .values(
            gateway_id=event.gateway_id,
            meter_serial=event.meter_serial,
            kind=event.kind,
            event_id=event.event_id,
            severity=event.severity.value,
            occurred_at=event.occurred_at,
            received_at=received_at,
            details=event.details,
        )
        # No conflict target: any of the partial unique indexes may be the one hit.
        .on_conflict_do_nothing()
        .returning(DeviceEvent.id)
    )
    return session.execute(statement).first() is not None


def ingest_event(
    *,
    sessions: sessionmaker[Session],
    gateway_id: str,
    payload: bytes,
    received_at: datetime,
    rules: ValidationRules,
) -> bool | Refusal:
    """Parse and store one events message in one transaction (committed on return).

    Returns:
        As `store_event`; a `Refusal` from `parse_event` too.

    Raises:
        sqlalchemy OperationalError / InterfaceError, DatabaseError: the
            database is away; nothing was stored, try again.
    """
    event = parse_event(payload, gateway_id=gateway_id, now=received_at, rules=rules)
    if isinstance(event, Refusal):
        return event
    with unit_of_work(sessions) as session:
        outcome = store_event(session=session, event=event, received_at=received_at)
        if isinstance(outcome, Refusal):
            return outcome
    logger.info(
        "event %s from %s%s%s",
        event.kind,
        gateway_id,
        f" about {event.meter_serial}" if event.meter_serial else "",
        "" if outcome else " (stored already)",
    )
    return outcome
