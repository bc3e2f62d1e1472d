"""The demo's back office: it registers the simulated fleet and watches what was stored.

`voltstack demo` plays the operator who, in production, registers gateways
and meters through the console or the API before they report. It does so
through the cloud's own service functions (cloud.fleet.service), in one
unit of work, so every rule of the operational database holds: a gateway
already registered is left as it is and a meter already installed stays
installed — a restarted demo changes nothing (idempotent).

It is also the live table's window on the cloud: it reads back what the
ingestion worker STORED (the operational DB's gateway state and ingestion
counters, the time-series store's latest points), never what merely passed
through the broker.

Broker credentials: a gateway's broker password is shown only once, at
registration; the demo keeps it in `<data>/secrets/<gateway>.password`
(mode 0600) for the agent's `password_file`. When the file is lost the
password is rotated. The embedded broker ignores them (anonymous, loopback).

Console logins (`ensure_demo_logins`): an admin, an operator and a customer
who holds one account with one meter, created through the users service the
first time; each password is generated once and kept in
`<data>/secrets/console-<role>.password` (0600), so a restart shows the same
logins. A lost file gets a new password for that user.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from cloud.core.db import make_engine, session_factory, unit_of_work, upgrade_database
from cloud.customers.models import Account, AccountMeter
from cloud.fleet.exceptions import MeterAlreadyInstalled
from cloud.fleet.models import Gateway, GatewayStatusEvent, Meter
from cloud.fleet.service import register_gateway, register_meter, rotate_broker_password
from cloud.ingestion.models import DeadLetter, IngestionStatistics
from cloud.timeseries import InfluxStore, SqliteStore
from cloud.timeseries.store import TimeSeriesStore
from cloud.users import passwords
from cloud.users import service as users_service
from cloud.users.models import User
from voltstack._secrets import read_secret, write_secret

log = logging.getLogger(__name__)

ENERGY_IMPORT = "1-0:1.8.0"


@dataclass(frozen=True)
class FleetMeter:
    """A meter as the generated agent configuration names it."""

    serial: str
    model: str
    protocol: str  # the operational DB's MeterProtocol value
    unit_id: int | None


def meters_of_agent_config(config: dict[str, Any]) -> list[FleetMeter]:
    """The meters an agent configuration (a YAML mapping) reads, with their protocol."""
    meters = []
    for bus in config.get("buses", []):
        for meter in bus["meters"]:
            if bus["link"] in ("serial", "tcp"):
                protocol = "modbus"
            elif meter["profile"] == "generic-iec62056-21":
                protocol = "iec62056-21"
            else:
                protocol = "dlms"
            meters.append(
                FleetMeter(meter["serial"], meter["profile"], protocol, meter.get("unit_id"))
            )
    return meters


def migrate(database_url: str) -> None:
    """Create or upgrade the operational database's schema (Alembic, idempotent)."""
    upgrade_database(database_url)


def register_fleet(
    database_url: str,
    gateways: dict[str, list[FleetMeter]],
    *,
    installed_at: datetime,
    secrets_dir: Path,
) -> tuple[int, int]:
    """Register the gateways and install their meters, skipping what is there.

    Args:
        database_url: the operational database.
        gateways: gateway id → its meters.
        installed_at: when the meters were installed (the fleet's epoch: every
            simulated reading is younger, so none is refused as foreign).
        secrets_dir: where gateway broker passwords are kept (0600).

    Returns:
        (gateways registered now, meters installed now).
    """
    engine = make_engine(database_url)
    new_gateways = new_meters = 0
    try:
        with unit_of_work(session_factory(engine)) as session:
            for gateway_id, meters in gateways.items():
                secret_file = secrets_dir / f"{gateway_id}.password"
                if session.get(Gateway, gateway_id) is None:
                    _, password = register_gateway(
                        session=session,
                        gateway_id=gateway_id,
                        name=f"simulated {gateway_id}",
                        site="voltstack demo",
                        now=installed_at,
                    )
                    write_secret(secret_file, password)
                    new_gateways += 1
                elif not secret_file.is_file():
                    write_secret(
                        secret_file, rotate_broker_password(session=session, gateway_id=gateway_id)
                    )
                for meter in meters:
                    try:
                        with session.begin_nested():
                            register_meter(
                                session=session,
                                serial=meter.serial,
                                model=meter.model,
                                protocol=meter.protocol,
                                gateway_id=gateway_id,
                                unit_id=meter.unit_id,
                                installed_at=installed_at,
                            )
                        new_meters += 1
                    except MeterAlreadyInstalled:
                        pass  # a restart: installed by an earlier run
    finally:
        engine.dispose()
    return new_gateways, new_meters


# The demo's console users: (role, email, display name). Addresses under
# example.net (RFC 2606): never anyone's real mailbox.
DEMO_USERS = (
    ("admin", "admin@demo.example.net", "Demo administrator"),
    ("operator", "operator@demo.example.net", "Demo operator"),
    ("customer", "customer@demo.example.net", "Demo customer"),
)
DEMO_ACCOUNT = "DEMO-0001"


@dataclass(frozen=True)
class DemoLogin:
    """A console login the demo prints."""

    role: str
    email: str
    password: str
    password_file: Path
    meter_serial: str | None = None  # the customer's own meter


def _password_for(
    session: Any, email: str, display_name: str, role: str, secret_file: Path, epoch: datetime
) -> str:
    """The user's password: created with the user, or from its file, or a new one."""
    user = session.scalar(select(User).where(User.email == email))
    known = read_secret(secret_file)
    if user is not None and known is not None:
        return known
    password = secrets.token_urlsafe(18)
    if user is None:
        users_service.create_user(
            session=session,
            email=email,
            display_name=display_name,
            role=role,
            password=password,
            actor=users_service.Actor.system(),
            now=epoch,
        )
    else:  # the file was lost: the only copy of the password went with it
        user.password_hash = passwords.hash_password(password)
        user.password_changed_at = epoch
        log.info("demo user %s: password file lost, a new password is set", email)
    write_secret(secret_file, password)
    return password


def _link_demo_meter(session: Any, user_email: str, serial: str, linked_at: datetime) -> None:
    """The customer's account holds `serial` (once: a restart adds nothing)."""
    account = session.scalar(select(Account).where(Account.number == DEMO_ACCOUNT))
    if account is None:
        holder = session.scalar(select(User.id).where(User.email == user_email))
        account = Account(number=DEMO_ACCOUNT, holder_user_id=holder, created_at=linked_at)
        session.add(account)
        session.flush()
    linked = session.scalar(
        select(AccountMeter.id).where(
            AccountMeter.account_id == account.id,
            AccountMeter.meter_serial == serial,
            AccountMeter.unlinked_at.is_(None),
        )
    )
    if linked is None:
        session.add(AccountMeter(account_id=account.id, meter_serial=serial, linked_at=linked_at))


def ensure_demo_logins(
    database_url: str, *, secrets_dir: Path, customer_meter: str, epoch: datetime
) -> list[DemoLogin]:
    """Create the demo's console users and the customer's account, once.

    Args:
        database_url: the operational database (migrated).
        secrets_dir: where each password is kept (``console-<role>.password``).
        customer_meter: the serial the customer's account holds.
        epoch: the moment the users and the account link are dated (the
            fleet's epoch: the meter is the customer's for all its readings).

    Returns:
        The logins, in `DEMO_USERS` order.
    """
    engine = make_engine(database_url)
    logins = []
    try:
        with unit_of_work(session_factory(engine)) as session:
            for role, email, name in DEMO_USERS:
                secret_file = secrets_dir / f"console-{role}.password"
                password = _password_for(session, email, name, role, secret_file, epoch)
                meter = customer_meter if role == "customer" else None
                if meter is not None:
                    _link_demo_meter(session, email, meter, epoch)
                logins.append(DemoLogin(role, email, password, secret_file, meter))
    finally:
        engine.dispose()
    return logins


def open_store(
    store_url: str,
    influx_database: str,
    *,
    username: str | None = None,
    password: str | None = None,
) -> TimeSeriesStore:
    """The time-series store behind a URL: sqlite:///path or http(s)://influx-host:8086."""
    if store_url.startswith("sqlite:///"):
        return SqliteStore(store_url.removeprefix("sqlite:///"))
    return InfluxStore(store_url, influx_database, username=username, password=password)


@dataclass
class GatewayStored:
    """One row of the live table: what the cloud holds about a gateway."""

    gateway: str
    online: bool
    meters: int
    meters_stored: int
    readings_stored: int
    rejected: int
    dead_letters: int
    newest_reading_at: datetime | None
    went_offline: int


class CloudWatch:
    """Reads the operational DB and the time-series store for the live table."""

    def __init__(
        self,
        database_url: str,
        store_url: str,
        influx_database: str,
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.engine = make_engine(database_url)
        self.sessions = session_factory(self.engine)
        self.store = open_store(store_url, influx_database, username=username, password=password)

    def gateways(self) -> list[GatewayStored]:
        with self.sessions() as session:
            gateways = list(session.scalars(select(Gateway).order_by(Gateway.id)))
            meters = _grouped(session.execute(select(Meter.gateway_id, Meter.serial)))
            stored = dict(
                session.execute(
                    select(
                        IngestionStatistics.gateway_id,
                        func.sum(IngestionStatistics.readings_accepted),
                    ).group_by(IngestionStatistics.gateway_id)
                ).all()
            )
            rejected = dict(
                session.execute(
                    select(
                        IngestionStatistics.gateway_id,
                        func.sum(IngestionStatistics.readings_rejected),
                    ).group_by(IngestionStatistics.gateway_id)
                ).all()
            )
            dead = dict(
                session.execute(
                    select(DeadLetter.gateway_id, func.count()).group_by(DeadLetter.gateway_id)
                ).all()
            )
            offline = dict(
                session.execute(
                    select(GatewayStatusEvent.gateway_id, func.count())
                    .where(GatewayStatusEvent.online.is_(False))
                    .group_by(GatewayStatusEvent.gateway_id)
                ).all()
            )
        rows = []
        for gateway in gateways:
            serials = meters.get(gateway.id, [])
            newest = self._newest(serials)
            rows.append(
                GatewayStored(
                    gateway=gateway.id,
                    online=gateway.online,
                    meters=len(serials),
                    meters_stored=sum(1 for at in newest if at is not None),
                    readings_stored=int(stored.get(gateway.id) or 0),
                    rejected=int(rejected.get(gateway.id) or 0),
                    dead_letters=int(dead.get(gateway.id) or 0),
                    newest_reading_at=max((at for at in newest if at), default=None),
                    went_offline=int(offline.get(gateway.id) or 0),
                )
            )
        return rows

    def _newest(self, serials: Iterable[str]) -> list[datetime | None]:
        newest = []
        for serial in serials:
            points = self.store.latest(serial, ENERGY_IMPORT) or self.store.latest(serial)
            newest.append(max((p.at for p in points), default=None))
        return newest

    def close(self) -> None:
        self.store.close()
        self.engine.dispose()


def _grouped(rows: Iterable[Any]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for gateway_id, serial in rows:
        grouped.setdefault(gateway_id, []).append(serial)
    return grouped


def seconds_ago(moment: datetime | None) -> str:
    """'12' (seconds) or '—' for the table; negative ages (simulated time ahead) show as '+N'."""
    if moment is None:
        return "—"
    age = time.time() - moment.astimezone(UTC).timestamp()
    return f"{age:.0f}" if age >= 0 else f"+{-age:.0f}"
