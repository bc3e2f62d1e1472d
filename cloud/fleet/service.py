"""Fleet services: register gateways and meters, track status, count ingestion.

Plain functions with keyword-only arguments; the caller owns the transaction
(`cloud.core.db.unit_of_work`): these functions flush, never commit. A
domain error leaves the session needing a rollback, which the unit of work
does. Database constraint violations are translated into the domain errors
of `cloud.fleet.exceptions` at flush time, so a race between two workers
gives the same error as the checks made up front.

Broker passwords: `register_gateway` draws 32 random bytes
(`secrets.token_urlsafe`, 256 bits) and returns the password once; only a
hash is stored, in Mosquitto's own ``$7$`` format — PBKDF2-HMAC-SHA512 with a
12-byte random salt per gateway, `BROKER_HASH_ITERATIONS` rounds, base64
fields: ``$7$<iterations>$<salt>$<hash>``. A Mosquitto password file line is
then ``<broker_username>:<broker_password_hash>``, so the broker can be
provisioned from the database without the plain password ever being kept.
The password is random and long, so the iteration count guards against
nothing a brute force could do anyway; it is kept moderate because the broker
recomputes it on every gateway connect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.core.db import constraint_violation, utc_now
from cloud.core.exceptions import InvalidInput, NaiveTimestamp
from cloud.fleet.exceptions import (
    GatewayAlreadyExists,
    GatewayDecommissioned,
    GatewayHasMeters,
    GatewayNotFound,
    InvalidGatewayId,
    InvalidMeter,
    InvalidSequence,
    MeterAlreadyInstalled,
    MeterNotFound,
)
from cloud.fleet.models import GATEWAY_ID_PATTERN, Gateway, GatewayStatusEvent, Meter, MeterProtocol
from cloud.ingestion.models import COUNTERS, DeadLetter, IngestionStatistics

__all__ = [
    "BROKER_HASH_ITERATIONS",
    "MAX_DEAD_LETTER_PAYLOAD_BYTES",
    "IngestionCount",
    "SequenceCheck",
    "add_dead_letter",
    "advance_sequence",
    "advance_sequences",
    "count_ingestion",
    "count_ingestions",
    "decommission_gateway",
    "gateway_of_meter",
    "get_gateway",
    "hash_broker_password",
    "ingestion_statistics",
    "list_dead_letters",
    "meters_of_gateway",
    "move_meter",
    "record_status",
    "register_gateway",
    "register_meter",
    "remove_meter",
    "rotate_broker_password",
    "verify_broker_password",
]

logger = logging.getLogger(__name__)

BROKER_HASH_ITERATIONS = 10_000
_SALT_BYTES = 12  # what mosquitto_passwd uses
MAX_DEAD_LETTER_PAYLOAD_BYTES = 1024 * 1024
_MAX_SEQUENCE = 2**63 - 1  # BIGINT; the uplink format allows u64
_MAX_SERIAL_LENGTH = 64


# --- helpers -----------------------------------------------------------------


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveTimestamp(what)
    return value


def _flush(session: Session, translate: Any) -> None:
    """Flush; turn an IntegrityError into the domain error `translate` picks."""
    try:
        session.flush()
    except IntegrityError as error:
        domain = translate(constraint_violation(error))
        if domain is None:
            raise
        raise domain from error


def get_gateway(*, session: Session, gateway_id: str) -> Gateway:
    """The gateway with this id.

    Raises:
        GatewayNotFound: no such gateway.
    """
    gateway = session.get(Gateway, gateway_id)
    if gateway is None:
        raise GatewayNotFound(gateway_id)
    return gateway


# --- broker credentials ------------------------------------------------------


def hash_broker_password(
    password: str, *, salt: bytes | None = None, iterations: int = BROKER_HASH_ITERATIONS
) -> str:
    """Hash a broker password in Mosquitto's ``$7$`` (PBKDF2-HMAC-SHA512) format."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    encode = base64.b64encode
    return f"$7${iterations}${encode(salt).decode()}${encode(digest).decode()}"


def verify_broker_password(*, password_hash: str, password: str) -> bool:
    """True if `password` matches a ``$7$`` hash (ours or mosquitto_passwd's)."""
    parts = password_hash.split("$")
    if len(parts) != 5 or parts[:2] != ["", "7"] or not parts[2].isdigit():
        return False
    try:
        salt, expected = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(digest, expected)


def _new_password() -> str:
    return secrets.token_urlsafe(32)


def register_gateway(
    *, session: Session, gateway_id: str, name: str, site: str, now: datetime | None = None
) -> tuple[Gateway, str]:
    """Register a gateway and create its broker credentials.

    Args:
        session: the unit of work's session.
        gateway_id: the MQTT gateway id, also its broker username.
        name: a human name ("Substation 01, panel B").
        site: where it is installed.
        now: creation time (default: now, UTC).

    Returns:
        The gateway and its broker password, shown this once: only its hash is stored.

    Raises:
        InvalidGatewayId: the id cannot be a topic segment.
        GatewayAlreadyExists: the id or its broker username is taken.
    """
    if not GATEWAY_ID_PATTERN.fullmatch(gateway_id):
        raise InvalidGatewayId(gateway_id)
    if session.get(Gateway, gateway_id) is not None:
        raise GatewayAlreadyExists(gateway_id)
    password = _new_password()
    gateway = Gateway(
        id=gateway_id,
        name=name,
        site=site,
        created_at=_aware(now, "now") if now else utc_now(),
        online=False,
        broker_username=gateway_id,
        broker_password_hash=hash_broker_password(password),
    )
    session.add(gateway)
    _flush(
        session,
        lambda violation: GatewayAlreadyExists(gateway_id) if violation.kind == "unique" else None,
    )
    logger.info("registered gateway %s", gateway_id)
    return gateway, password


def rotate_broker_password(*, session: Session, gateway_id: str) -> str:
    """Give the gateway a new broker password; return it (shown once).

    Raises:
        GatewayNotFound: no such gateway.
    """
    gateway = get_gateway(session=session, gateway_id=gateway_id)
    password = _new_password()
    gateway.broker_password_hash = hash_broker_password(password)
    session.flush()
    return password


def decommission_gateway(*, session: Session, gateway_id: str, at: datetime) -> Gateway:
    """Mark a gateway decommissioned (offline, no new meters).

    Raises:
        GatewayNotFound: no such gateway.
        GatewayHasMeters: meters are still installed on it.
    """
    _aware(at, "at")
    gateway = get_gateway(session=session, gateway_id=gateway_id)
    installed = session.scalar(
        select(func.count())
        .select_from(Meter)
        .where(Meter.gateway_id == gateway_id, Meter.removed_at.is_(None))
    )
    if installed:
        raise GatewayHasMeters(gateway_id, int(installed))
    gateway.decommissioned_at = at
    gateway.online = False
    session.flush()
    return gateway


# --- meters ------------------------------------------------------------------


def _ratio(value: Decimal | int | str, field: str) -> Decimal:
    try:
        ratio = Decimal(value)
    except (InvalidOperation, ValueError, TypeError) as error:
        raise InvalidMeter(field, f"not a number: {value!r}") from error
    if not ratio.is_finite() or ratio <= 0:
        raise InvalidMeter(field, f"must be > 0, got {value}")
    if ratio >= Decimal(10) ** 8 or ratio != ratio.quantize(Decimal("0.0001")):
        raise InvalidMeter(field, f"must be < 10^8 with at most 4 decimals, got {value}")
    return ratio


def _check_meter_fields(*, serial: str, protocol: str, unit_id: int | None) -> MeterProtocol:
    if not serial or len(serial) > _MAX_SERIAL_LENGTH or serial != serial.strip():
        raise InvalidMeter("serial", f"1-{_MAX_SERIAL_LENGTH} characters, no outer spaces")
    try:
        known = MeterProtocol(protocol)
    except ValueError as error:
        choices = ", ".join(p.value for p in MeterProtocol)
        raise InvalidMeter("protocol", f"{protocol!r} is not one of {choices}") from error
    if unit_id is not None and not 0 <= unit_id <= 255:
        raise InvalidMeter("unit_id", f"Modbus unit id must be 0-255, got {unit_id}")
    return known


def _meter_violation(serial: str, gateway_id: str) -> Any:
    def translate(violation: Any) -> Exception | None:
        if violation.kind == "unique" and violation.mentions("serial"):
            return MeterAlreadyInstalled(serial, None)
        if violation.kind == "foreign_key":
            return GatewayNotFound(gateway_id)
        if violation.kind == "check":
            return InvalidMeter("meter", f"violates {violation.detail or 'a check'}")
        return None

    return translate


def _installed(session: Session, serial: str) -> Meter | None:
    return session.scalar(select(Meter).where(Meter.serial == serial, Meter.removed_at.is_(None)))


def _usable_gateway(session: Session, gateway_id: str) -> Gateway:
    gateway = get_gateway(session=session, gateway_id=gateway_id)
    if gateway.decommissioned_at is not None:
        raise GatewayDecommissioned(gateway_id)
    return gateway


def register_meter(
    *,
    session: Session,
    serial: str,
    model: str,
    protocol: str,
    gateway_id: str,
    installation_point: str | None = None,
    ct_ratio: Decimal | int | str = 1,
    vt_ratio: Decimal | int | str = 1,
    unit_id: int | None = None,
    installed_at: datetime | None = None,
) -> Meter:
    """Install a meter on a gateway.

    Args:
        session: the unit of work's session.
        serial: the manufacturer serial, as readings carry it.
        model: the device profile id.
        protocol: ``modbus``, ``dlms`` or ``iec62056-21``.
        gateway_id: the gateway it is wired to.
        installation_point: address or feeder/transformer reference.
        ct_ratio: current transformer ratio (> 0, 4 decimals at most).
        vt_ratio: voltage transformer ratio (> 0, 4 decimals at most).
        unit_id: Modbus unit address (0-255), None otherwise.
        installed_at: default now (UTC).

    Returns:
        The new installation row.

    Raises:
        InvalidMeter: a field is out of its domain.
        GatewayNotFound: no such gateway.
        GatewayDecommissioned: the gateway is decommissioned.
        MeterAlreadyInstalled: the serial is installed (here or elsewhere); see `move_meter`.
    """
    known = _check_meter_fields(serial=serial, protocol=protocol, unit_id=unit_id)
    ct, vt = _ratio(ct_ratio, "ct_ratio"), _ratio(vt_ratio, "vt_ratio")
    _usable_gateway(session, gateway_id)
    current = _installed(session, serial)
    if current is not None:
        raise MeterAlreadyInstalled(serial, current.gateway_id)
    meter = Meter(
        serial=serial,
        model=model,
        protocol=known.value,
        gateway_id=gateway_id,
        installation_point=installation_point,
        ct_ratio=ct,
        vt_ratio=vt,
        unit_id=unit_id,
        installed_at=_aware(installed_at, "installed_at") if installed_at else utc_now(),
    )
    session.add(meter)
    _flush(session, _meter_violation(serial, gateway_id))
    return meter


def remove_meter(*, session: Session, serial: str, at: datetime) -> Meter:
    """Close the open installation of `serial` at `at`.

    Raises:
        MeterNotFound: the serial is not installed.
        InvalidMeter: `at` is before the installation.
    """
    _aware(at, "at")
    meter = _installed(session, serial)
    if meter is None:
        raise MeterNotFound(serial)
    if at < meter.installed_at:
        raise InvalidMeter("removed_at", f"{at.isoformat()} is before the installation")
    meter.removed_at = at
    session.flush()
    return meter


_KEEP: Any = object()


def move_meter(
    *,
    session: Session,
    serial: str,
    gateway_id: str,
    at: datetime,
    installation_point: str | None = _KEEP,
    ct_ratio: Decimal | int | str | None = None,
    vt_ratio: Decimal | int | str | None = None,
    unit_id: int | None = _KEEP,
) -> Meter:
    """Move an installed meter to another gateway, keeping the history.

    The open installation is closed at `at` and a new one opens at `at`, with
    the same model and protocol; other fields default to the old values.

    Returns:
        The new installation row.

    Raises:
        MeterNotFound: the serial is not installed.
        GatewayNotFound, GatewayDecommissioned: the target gateway cannot take it.
        InvalidMeter: a new field is out of its domain, or `at` precedes the old installation.
    """
    _aware(at, "at")
    old = _installed(session, serial)
    if old is None:
        raise MeterNotFound(serial)
    _usable_gateway(session, gateway_id)
    remove_meter(session=session, serial=serial, at=at)
    return register_meter(
        session=session,
        serial=serial,
        model=old.model,
        protocol=old.protocol,
        gateway_id=gateway_id,
        installation_point=old.installation_point
        if installation_point is _KEEP
        else installation_point,
        ct_ratio=old.ct_ratio if ct_ratio is None else ct_ratio,
        vt_ratio=old.vt_ratio if vt_ratio is None else vt_ratio,
        unit_id=old.unit_id if unit_id is _KEEP else unit_id,
        installed_at=at,
    )


def meters_of_gateway(
    *, session: Session, gateway_id: str, include_removed: bool = False
) -> list[Meter]:
    """The meters installed on a gateway (and its past ones if `include_removed`), by serial.

    Raises:
        GatewayNotFound: no such gateway.
    """
    get_gateway(session=session, gateway_id=gateway_id)
    query = select(Meter).where(Meter.gateway_id == gateway_id)
    if not include_removed:
        query = query.where(Meter.removed_at.is_(None))
    return list(session.scalars(query.order_by(Meter.serial, Meter.installed_at)))


def gateway_of_meter(*, session: Session, serial: str, at: datetime | None = None) -> str | None:
    """Which gateway the meter was installed on: the ingestion validator's question.

    Args:
        session: a session.
        serial: the meter serial from the reading.
        at: the reading's timestamp; None asks about now. A reading buffered
            before a move still belongs to the old gateway.

    Returns:
        The gateway id, or None if the meter was not installed then.
    """
    query = select(Meter.gateway_id).where(Meter.serial == serial)
    if at is None:
        query = query.where(Meter.removed_at.is_(None))
    else:
        _aware(at, "at")
        query = query.where(
            Meter.installed_at <= at, (Meter.removed_at.is_(None)) | (Meter.removed_at > at)
        )
    return session.scalars(query.order_by(Meter.installed_at.desc()).limit(1)).first()


# --- status and sequence -----------------------------------------------------


def record_status(
    *,
    session: Session,
    gateway_id: str,
    online: bool,
    at: datetime,
    reason: str,
    agent_version: str | None = None,
    buffer_depth_readings: int | None = None,
) -> GatewayStatusEvent | None:
    """Apply a status report; keep an event only when online/offline changes.

    A report older than the gateway's `last_seen_at` is stale (MQTT does not
    order a retained status against a later last will) and changes nothing.

    Args:
        session: the unit of work's session.
        gateway_id: the reporting gateway.
        online: its new state.
        at: when the state was observed (timezone-aware).
        reason: "birth", "last will", "keepalive timeout", …
        agent_version: the agent version it reported, if any.
        buffer_depth_readings: readings waiting in its buffer, if reported.

    Returns:
        The new event on a transition, else None.

    Raises:
        GatewayNotFound: no such gateway.
    """
    _aware(at, "at")
    # Lock the row (PostgreSQL) so two workers cannot both see the old state;
    # SQLite serialises writers, and the no-op UPDATE takes its write lock first.
    session.execute(update(Gateway).where(Gateway.id == gateway_id).values(online=Gateway.online))
    gateway = session.scalar(
        select(Gateway).where(Gateway.id == gateway_id).execution_options(populate_existing=True)
    )
    if gateway is None:
        raise GatewayNotFound(gateway_id)
    if gateway.last_seen_at is not None and at < gateway.last_seen_at:
        logger.debug("stale status for %s at %s ignored", gateway_id, at)
        return None
    gateway.last_seen_at = at
    if agent_version:
        gateway.agent_version = agent_version
    if gateway.online == online:
        session.flush()
        return None
    gateway.online = online
    event = GatewayStatusEvent(
        gateway_id=gateway_id,
        at=at,
        online=online,
        reason=reason[:64],
        agent_version=agent_version,
        buffer_depth_readings=buffer_depth_readings,
    )
    session.add(event)
    session.flush()
    logger.info("gateway %s is %s (%s)", gateway_id, "online" if online else "offline", reason)
    return event


@dataclass(frozen=True)
class SequenceCheck:
    """What one uplink batch sequence number says about delivery.

    Attributes:
        previous: the last sequence accepted before, None for the first batch.
        gap: batches missing between `previous` and this one (0 if none).
        duplicate: this sequence was already seen (or is older): a redelivery
            or an agent that restarted its counter.
    """

    previous: int | None
    gap: int
    duplicate: bool


def advance_sequence(*, session: Session, gateway_id: str, sequence: int) -> SequenceCheck:
    """Compare a batch sequence with the last one seen and move it forward.

    Safe with concurrent workers: the gateway row is locked (PostgreSQL) or
    the write lock taken (SQLite) before the old value is read.

    Raises:
        InvalidSequence: outside 0 … 2**63-1.
        GatewayNotFound: no such gateway.
    """
    if not 0 <= sequence <= _MAX_SEQUENCE:
        raise InvalidSequence(sequence)
    locked = session.execute(
        update(Gateway).where(Gateway.id == gateway_id).values(last_sequence=Gateway.last_sequence)
    )
    if not locked.rowcount:
        raise GatewayNotFound(gateway_id)
    previous = session.scalar(select(Gateway.last_sequence).where(Gateway.id == gateway_id))
    if previous is not None and sequence <= previous:
        return SequenceCheck(previous=previous, gap=0, duplicate=True)
    gap = 0 if previous is None else sequence - previous - 1
    session.execute(update(Gateway).where(Gateway.id == gateway_id).values(last_sequence=sequence))
    return SequenceCheck(previous=previous, gap=gap, duplicate=False)


def advance_sequences(
    *, session: Session, sequences: Sequence[tuple[str, int]]
) -> list[SequenceCheck | None]:
    """`advance_sequence` for many batches at once, as if applied one after the other.

    One statement locks the gateways, one reads their last sequences and one
    (executemany) moves them forward: a group of batches costs three round
    trips instead of three per batch. Several batches of one gateway are
    checked in the order given.

    Args:
        session: the unit of work's session.
        sequences: (gateway id, sequence) per batch, in the order received.

    Returns:
        One check per entry; None for a sequence outside 0 … 2**63-1, which
        is not tracked (`advance_sequence` raises `InvalidSequence` for it).

    Raises:
        GatewayNotFound: a gateway is not registered.
    """
    gateway_ids = sorted({gateway_id for gateway_id, _ in sequences})
    if not gateway_ids:
        return []
    last = _lock_sequences(session, gateway_ids)
    checks: list[SequenceCheck | None] = []
    moved: dict[str, int] = {}
    for gateway_id, sequence in sequences:
        if not 0 <= sequence <= _MAX_SEQUENCE:
            checks.append(None)
            continue
        previous = last[gateway_id]
        if previous is not None and sequence <= previous:
            checks.append(SequenceCheck(previous=previous, gap=0, duplicate=True))
            continue
        gap = 0 if previous is None else sequence - previous - 1
        checks.append(SequenceCheck(previous=previous, gap=gap, duplicate=False))
        last[gateway_id] = moved[gateway_id] = sequence
    if moved:
        session.execute(
            update(Gateway),
            [{"id": gateway_id, "last_sequence": value} for gateway_id, value in moved.items()],
        )
    return checks


def _lock_sequences(session: Session, gateway_ids: list[str]) -> dict[str, int | None]:
    """Lock the gateways' rows and read their last sequences (ids sorted, all must exist)."""
    query = select(Gateway.id, Gateway.last_sequence).where(Gateway.id.in_(gateway_ids))
    if session.get_bind().dialect.name == "postgresql":
        # Row locks taken in id order: two workers locking overlapping groups cannot deadlock.
        rows = session.execute(query.order_by(Gateway.id).with_for_update()).all()
    else:
        # SQLite: take the database write lock before reading (a read lock upgraded
        # later could fail with "database is locked" against another writer).
        session.execute(
            update(Gateway)
            .where(Gateway.id.in_(gateway_ids))
            .values(last_sequence=Gateway.last_sequence)
            .execution_options(synchronize_session=False)
        )
        rows = session.execute(query).all()
    last: dict[str, int | None] = {gateway_id: sequence for gateway_id, sequence in rows}
    missing = [gateway_id for gateway_id in gateway_ids if gateway_id not in last]
    if missing:
        raise GatewayNotFound(missing[0])
    return last


# --- ingestion statistics ----------------------------------------------------


def _minute(at: datetime) -> datetime:
    return _aware(at, "at").replace(second=0, microsecond=0)


@dataclass(frozen=True)
class IngestionCount:
    """Increments of a gateway's counters for the minute of `at` (one batch's, say).

    Attributes:
        gateway_id: the gateway.
        at: when (timezone-aware); counted in its minute.
        readings_accepted, readings_rejected, batches, sequence_gaps,
            duplicates: the increments (not negative).
    """

    gateway_id: str
    at: datetime
    readings_accepted: int = 0
    readings_rejected: int = 0
    batches: int = 0
    sequence_gaps: int = 0
    duplicates: int = 0


def count_ingestion(
    *,
    session: Session,
    gateway_id: str,
    at: datetime,
    readings_accepted: int = 0,
    readings_rejected: int = 0,
    batches: int = 0,
    sequence_gaps: int = 0,
    duplicates: int = 0,
) -> None:
    """Add to the gateway's counters for the minute of `at`, atomically.

    One ``INSERT … ON CONFLICT DO UPDATE SET x = x + excluded.x``: concurrent
    workers (other connections, other machines) never lose an increment.

    Raises:
        InvalidInput: a negative increment or a naive `at`.
        GatewayNotFound: no such gateway.
    """
    count_ingestions(
        session=session,
        counts=[
            IngestionCount(
                gateway_id,
                at,
                readings_accepted=readings_accepted,
                readings_rejected=readings_rejected,
                batches=batches,
                sequence_gaps=sequence_gaps,
                duplicates=duplicates,
            )
        ],
    )


_UPSERT_ROWS = 500  # rows per statement: 7 parameters each, far below SQLite's limit


def count_ingestions(*, session: Session, counts: Sequence[IngestionCount]) -> None:
    """`count_ingestion` for many increments in one statement.

    Increments of the same gateway and minute are added up first (a row may
    appear only once in an upsert), then one multi-row ``INSERT … ON
    CONFLICT DO UPDATE SET x = x + excluded.x`` adds them all, rows in
    (gateway, minute) order so that concurrent workers lock them in the same
    order.

    Raises:
        InvalidInput: a negative increment or a naive `at`.
        GatewayNotFound: a gateway is not registered.
    """
    totals: dict[tuple[str, datetime], list[int]] = {}
    for count in counts:
        increments = [getattr(count, name) for name in COUNTERS]
        for name, value in zip(COUNTERS, increments, strict=True):
            if value < 0:
                raise InvalidInput(f"{name}: increments cannot be negative, got {value}")
        key = (count.gateway_id, _minute(count.at))
        if key in totals:
            totals[key] = [a + b for a, b in zip(totals[key], increments, strict=True)]
        else:
            totals[key] = increments
    rows = [
        {
            "gateway_id": gateway_id,
            "bucket_start_at": bucket,
            **dict(zip(COUNTERS, values, strict=True)),
        }
        for (gateway_id, bucket), values in sorted(totals.items())
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = IngestionStatistics.__table__
    for first in range(0, len(rows), _UPSERT_ROWS):
        chunk = rows[first : first + _UPSERT_ROWS]
        statement = insert(IngestionStatistics).values(chunk)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.gateway_id, table.c.bucket_start_at],
            set_={name: table.c[name] + statement.excluded[name] for name in COUNTERS},
        )
        try:
            session.execute(statement)
        except IntegrityError as error:
            if constraint_violation(error).kind == "foreign_key":
                unknown = sorted({str(row["gateway_id"]) for row in chunk})
                raise GatewayNotFound(", ".join(unknown)) from error
            raise


def ingestion_statistics(
    *, session: Session, gateway_id: str, since: datetime, until: datetime
) -> list[IngestionStatistics]:
    """The gateway's per-minute counters with `since` <= bucket < `until`, oldest first."""
    _aware(since, "since")
    _aware(until, "until")
    return list(
        session.scalars(
            select(IngestionStatistics)
            .where(
                IngestionStatistics.gateway_id == gateway_id,
                IngestionStatistics.bucket_start_at >= _minute(since),
                IngestionStatistics.bucket_start_at < until,
            )
            .order_by(IngestionStatistics.bucket_start_at)
        )
    )


# --- dead letters ------------------------------------------------------------


def add_dead_letter(
    *,
    session: Session,
    topic: str,
    payload: bytes,
    reason_code: str,
    reason: str,
    gateway_id: str | None = None,
    received_at: datetime | None = None,
    max_payload_bytes: int = MAX_DEAD_LETTER_PAYLOAD_BYTES,
) -> DeadLetter:
    """Keep a refused message with why it was refused.

    Args:
        session: the unit of work's session.
        topic: the MQTT topic it came on.
        payload: the bytes as received; beyond `max_payload_bytes` only the
            first bytes are kept (`payload_size_bytes` keeps the real size).
        reason_code: short snake_case code (see `DeadLetterReason`).
        reason: a sentence for the operator.
        gateway_id: the gateway, if known (unknown ids are kept as given).
        received_at: default now (UTC).
        max_payload_bytes: the cap.

    Returns:
        The stored dead letter.

    Raises:
        InvalidInput: a malformed reason code.
    """
    if not reason_code or len(reason_code) > 32 or not reason_code.isidentifier():
        raise InvalidInput(f"reason_code: short snake_case expected, got {reason_code!r}")
    data = bytes(payload)
    letter = DeadLetter(
        received_at=_aware(received_at, "received_at") if received_at else utc_now(),
        topic=topic,
        gateway_id=gateway_id[:64] if gateway_id else None,
        payload=data[:max_payload_bytes],
        payload_size_bytes=len(data),
        reason_code=reason_code.lower(),
        reason=reason,
    )
    session.add(letter)
    session.flush()
    logger.info("dead letter %s from %s: %s", letter.id, topic, reason_code)
    return letter


def list_dead_letters(
    *,
    session: Session,
    limit: int = 100,
    offset: int = 0,
    gateway_id: str | None = None,
    unresolved_only: bool = False,
) -> list[DeadLetter]:
    """Dead letters, newest first."""
    query = select(DeadLetter)
    if gateway_id is not None:
        query = query.where(DeadLetter.gateway_id == gateway_id)
    if unresolved_only:
        query = query.where(DeadLetter.resolved_at.is_(None))
    query = query.order_by(DeadLetter.received_at.desc(), DeadLetter.id.desc())
    return list(session.scalars(query.limit(max(0, limit)).offset(max(0, offset))))
