"""The operational database on SQLite and PostgreSQL: migrations, services, constraints."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, event, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.db import (
    alembic_config,
    constraint_violation,
    current_revision,
    downgrade_database,
    load_models,
    make_engine,
    unit_of_work,
    upgrade_database,
)
from cloud.core.exceptions import InvalidInput, NaiveTimestamp
from cloud.fleet import service
from cloud.fleet.dead_letter_resolution import resolve_and_audit
from cloud.fleet.exceptions import (
    DeadLetterNotFound,
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
from cloud.fleet.models import Gateway, GatewayStatusEvent, Meter
from cloud.fleet.schemas import DeadLetterRead, GatewayRead, MeterRead
from cloud.ingestion.models import DeadLetter, IngestionStatistics
from cloud.users.audit import Actor

pytestmark = pytest.mark.integration

TABLES = {"gateways", "meters", "gateway_status_events", "ingestion_statistics", "dead_letters"}
# The newest migration: later domains add revisions after 0001.
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
T0 = datetime(2025, 3, 30, 0, 59, 30, 123456, tzinfo=UTC)
Unique = Callable[[str], str]


def gateway(session: Session, unique: Unique, **kwargs: object) -> Gateway:
    created, _password = service.register_gateway(
        session=session, gateway_id=unique("gw"), name="Substation", site="North", **kwargs
    )
    return created


# --- migrations ---------------------------------------------------------------


def schema_differences(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, load_models()))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def constraint_names(url: str) -> set[tuple[str, str, str]]:
    """Named constraints and indexes as the database reports them."""
    engine = make_engine(url)
    try:
        inspector = inspect(engine)
        names: set[tuple[str, str, str]] = set()
        for table in load_models().tables:
            names |= {(table, "ck", c["name"]) for c in inspector.get_check_constraints(table)}
            names |= {(table, "fk", c["name"]) for c in inspector.get_foreign_keys(table)}
            names |= {
                (table, "ix", c["name"])
                for c in inspector.get_indexes(table)
                # PostgreSQL also lists the index behind each unique constraint.
                if "duplicates_constraint" not in c
            }
            names |= {(table, "uq", c["name"]) for c in inspector.get_unique_constraints(table)}
        return names
    finally:
        engine.dispose()


def model_constraint_names() -> set[tuple[str, str, str]]:
    from sqlalchemy import CheckConstraint, ForeignKeyConstraint, UniqueConstraint

    kinds = {CheckConstraint: "ck", ForeignKeyConstraint: "fk", UniqueConstraint: "uq"}
    names: set[tuple[str, str, str]] = set()
    for table in load_models().sorted_tables:
        for constraint in table.constraints:
            kind = kinds.get(type(constraint))
            if kind:
                names.add((table.name, kind, str(constraint.name)))
        names |= {(table.name, "ix", str(index.name)) for index in table.indexes}
    return names


def test_migrations_up_match_models_down_and_up_again(new_database: Callable[[], str]) -> None:
    url = new_database()
    assert current_revision(url) is None
    upgrade_database(url)
    assert current_revision(url) == HEAD
    assert TABLES <= table_names(url)
    assert schema_differences(url) == []
    # compare_metadata ignores CHECK constraint names: compare every name.
    assert constraint_names(url) == model_constraint_names()

    downgrade_database(url, "base")
    assert current_revision(url) is None
    assert table_names(url) <= {"alembic_version"}

    upgrade_database(url, "head")
    assert current_revision(url) == HEAD
    assert schema_differences(url) == []


def test_upgrade_is_idempotent(database_url: str) -> None:
    upgrade_database(database_url)
    assert current_revision(database_url) == HEAD


def test_sqlite_connections_enforce_foreign_keys_and_use_wal(engine: Engine, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite pragmas")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


# --- gateways and broker credentials ---------------------------------------------


def test_register_gateway_stores_only_a_verifiable_hash(session: Session, unique: Unique) -> None:
    gateway_id = unique("gw-substation")
    created, password = service.register_gateway(
        session=session, gateway_id=gateway_id, name="Substation 01", site="North"
    )
    session.expire_all()
    stored = session.get(Gateway, gateway_id)
    assert stored is not None and stored is created
    assert len(password) >= 40
    assert stored.broker_username == gateway_id
    assert stored.broker_password_hash.startswith("$7$")
    assert password not in stored.broker_password_hash
    row = session.execute(select(Gateway.__table__).where(Gateway.id == gateway_id)).one()
    assert all(password not in str(value) for value in row)
    assert service.verify_broker_password(
        password_hash=stored.broker_password_hash, password=password
    )
    assert not service.verify_broker_password(
        password_hash=stored.broker_password_hash, password=password + "x"
    )
    assert stored.online is False and stored.last_sequence is None
    assert stored.created_at.tzinfo is UTC
    assert "broker_password_hash" not in GatewayRead.model_validate(stored).model_dump()


def test_two_gateways_get_different_passwords_and_salts(session: Session, unique: Unique) -> None:
    first, first_password = service.register_gateway(
        session=session, gateway_id=unique("gw"), name="a", site="s"
    )
    second, second_password = service.register_gateway(
        session=session, gateway_id=unique("gw"), name="b", site="s"
    )
    assert first_password != second_password
    assert first.broker_password_hash.split("$")[3] != second.broker_password_hash.split("$")[3]


def test_rotate_broker_password(session: Session, unique: Unique) -> None:
    created = gateway(session, unique)
    new_password = service.rotate_broker_password(session=session, gateway_id=created.id)
    assert service.verify_broker_password(
        password_hash=created.broker_password_hash, password=new_password
    )
    with pytest.raises(GatewayNotFound):
        service.rotate_broker_password(session=session, gateway_id="gw-nobody")


def test_mosquitto_passwd_hashes_verify(tmp_path: Path) -> None:
    # The stored hash is Mosquitto's own format: check against the real tool.
    password_file = tmp_path / "passwd"
    password_file.touch()
    subprocess.run(
        ["mosquitto_passwd", "-b", str(password_file), "gw-a", "s3cret"],
        check=True,
        capture_output=True,
    )
    line = password_file.read_text().strip()
    _user, password_hash = line.split(":", 1)
    assert service.verify_broker_password(password_hash=password_hash, password="s3cret")
    assert not service.verify_broker_password(password_hash=password_hash, password="s3cre")


@pytest.mark.parametrize(
    "bad_id", ["", "-gw", "gw/1", "gw+", "gw#", "gw 1", "g" * 65, "gw\n", "é-gw", "$share"]
)
def test_register_gateway_refuses_ids_that_are_not_topic_segments(
    session: Session, bad_id: str
) -> None:
    with pytest.raises(InvalidGatewayId):
        service.register_gateway(session=session, gateway_id=bad_id, name="x", site="y")


def test_register_gateway_twice_is_a_conflict(session: Session, unique: Unique) -> None:
    created = gateway(session, unique)
    with pytest.raises(GatewayAlreadyExists):
        service.register_gateway(session=session, gateway_id=created.id, name="x", site="y")


def test_duplicate_gateway_race_is_translated(
    factory: sessionmaker[Session], unique: Unique
) -> None:
    # Two workers both pass the look-up, the primary key decides: the loser
    # gets GatewayAlreadyExists, not an IntegrityError.
    gateway_id = unique("gw")
    with unit_of_work(factory) as session:
        service.register_gateway(session=session, gateway_id=gateway_id, name="a", site="s")
    with pytest.raises(GatewayAlreadyExists) as caught, unit_of_work(factory) as session:
        session.add(
            Gateway(
                id=gateway_id,
                name="b",
                site="s",
                created_at=T0,
                broker_username=unique("user"),
                broker_password_hash="x",
            )
        )
        service._flush(
            session, lambda v: GatewayAlreadyExists(gateway_id) if v.kind == "unique" else None
        )
    assert isinstance(caught.value.__cause__, IntegrityError)


# --- meters ----------------------------------------------------------------


def test_register_meter_defaults_and_round_trip(session: Session, unique: Unique) -> None:
    gw = gateway(session, unique)
    serial = unique("SN")
    meter = service.register_meter(
        session=session,
        serial=serial,
        model="eastron-sdm630",
        protocol="modbus",
        gateway_id=gw.id,
        installation_point="Feeder 7 / TR-12",
        unit_id=3,
        installed_at=T0,
    )
    session.expire_all()
    stored = session.scalars(select(Meter).where(Meter.serial == serial)).one()
    assert stored.ct_ratio == Decimal(1) and stored.vt_ratio == Decimal(1)
    assert stored.installed_at == T0 and stored.installed_at.tzinfo is UTC
    assert stored.removed_at is None and stored.id == meter.id
    read = MeterRead.model_validate(stored)
    assert read.protocol == "modbus" and read.unit_id == 3


def test_register_meter_with_transformer_ratios(session: Session, unique: Unique) -> None:
    gw = gateway(session, unique)
    meter = service.register_meter(
        session=session,
        serial=unique("SN"),
        model="iskra-mt174",
        protocol="dlms",
        gateway_id=gw.id,
        ct_ratio="200",
        vt_ratio=Decimal("110.5"),
    )
    session.expire_all()
    assert (meter.ct_ratio, meter.vt_ratio) == (Decimal(200), Decimal("110.5"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ct_ratio", 0),
        ("ct_ratio", -5),
        ("ct_ratio", "abc"),
        ("ct_ratio", "NaN"),
        ("vt_ratio", "0.00001"),
        ("vt_ratio", 10**9),
        ("protocol", "mbus"),
        ("unit_id", 256),
        ("serial", ""),
        ("serial", " SN1"),
    ],
)
def test_register_meter_refuses_bad_fields(
    session: Session, unique: Unique, field: str, value: object
) -> None:
    gw = gateway(session, unique)
    arguments: dict[str, object] = {
        "serial": unique("SN"),
        "model": "m",
        "protocol": "modbus",
        "gateway_id": gw.id,
        field: value,
    }
    with pytest.raises(InvalidMeter) as caught:
        service.register_meter(session=session, **arguments)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_register_meter_on_unknown_gateway(session: Session, unique: Unique) -> None:
    with pytest.raises(GatewayNotFound):
        service.register_meter(
            session=session, serial=unique("SN"), model="m", protocol="dlms", gateway_id="gw-none"
        )


def test_register_meter_on_decommissioned_gateway(session: Session, unique: Unique) -> None:
    gw = gateway(session, unique)
    service.decommission_gateway(session=session, gateway_id=gw.id, at=T0)
    assert gw.decommissioned_at == T0 and gw.online is False
    with pytest.raises(GatewayDecommissioned):
        service.register_meter(
            session=session, serial=unique("SN"), model="m", protocol="dlms", gateway_id=gw.id
        )


def test_decommission_refuses_while_meters_are_installed(session: Session, unique: Unique) -> None:
    gw = gateway(session, unique)
    service.register_meter(
        session=session, serial=unique("SN"), model="m", protocol="dlms", gateway_id=gw.id
    )
    with pytest.raises(GatewayHasMeters) as caught:
        service.decommission_gateway(session=session, gateway_id=gw.id, at=T0)
    assert caught.value.count == 1


def test_serial_installed_elsewhere_is_refused(session: Session, unique: Unique) -> None:
    first, second = gateway(session, unique), gateway(session, unique)
    serial = unique("SN")
    service.register_meter(
        session=session, serial=serial, model="m", protocol="dlms", gateway_id=first.id
    )
    with pytest.raises(MeterAlreadyInstalled) as caught:
        service.register_meter(
            session=session, serial=serial, model="m", protocol="dlms", gateway_id=second.id
        )
    assert caught.value.gateway_id == first.id


def test_racing_registrations_of_one_serial_give_the_domain_error(
    factory: sessionmaker[Session], unique: Unique
) -> None:
    # Worker B checks the serial while worker A's installation is not yet
    # committed, so only the partial unique index can stop B: B must still get
    # MeterAlreadyInstalled, translated from the IntegrityError.
    with unit_of_work(factory) as session:
        first, second = gateway(session, unique).id, gateway(session, unique).id
    serial = unique("SN")
    b_checked = threading.Event()
    outcome: list[BaseException | None] = []

    def worker_b() -> None:
        try:
            with unit_of_work(factory) as session:
                event.listen(session, "before_flush", lambda *_: b_checked.set())
                service.register_meter(
                    session=session, serial=serial, model="m", protocol="dlms", gateway_id=second
                )
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)
            b_checked.set()

    with unit_of_work(factory) as session_a:
        service.register_meter(
            session=session_a, serial=serial, model="m", protocol="dlms", gateway_id=first
        )
        thread = threading.Thread(target=worker_b)
        thread.start()
        assert b_checked.wait(timeout=30)
        time.sleep(0.2)  # let B block on A's uncommitted row; A commits on exit
    thread.join(timeout=60)
    assert len(outcome) == 1 and isinstance(outcome[0], MeterAlreadyInstalled)
    assert isinstance(outcome[0].__cause__, IntegrityError)
    with unit_of_work(factory) as session:
        assert service.gateway_of_meter(session=session, serial=serial) == first


def test_move_meter_keeps_history(session: Session, unique: Unique) -> None:
    old_gw, new_gw = gateway(session, unique), gateway(session, unique)
    serial = unique("SN")
    service.register_meter(
        session=session,
        serial=serial,
        model="m",
        protocol="modbus",
        gateway_id=old_gw.id,
        ct_ratio=50,
        unit_id=7,
        installed_at=T0,
    )
    moved_at = T0 + timedelta(days=30)
    new = service.move_meter(
        session=session, serial=serial, gateway_id=new_gw.id, at=moved_at, unit_id=9
    )
    assert (new.gateway_id, new.ct_ratio, new.unit_id, new.installed_at) == (
        new_gw.id,
        Decimal(50),
        9,
        moved_at,
    )
    assert service.meters_of_gateway(session=session, gateway_id=old_gw.id) == []
    history = service.meters_of_gateway(session=session, gateway_id=old_gw.id, include_removed=True)
    assert [m.removed_at for m in history] == [moved_at]
    assert service.meters_of_gateway(session=session, gateway_id=new_gw.id) == [new]

    # The validator's question, now and at a reading's own time.
    assert service.gateway_of_meter(session=session, serial=serial) == new_gw.id
    before = moved_at - timedelta(seconds=1)
    assert service.gateway_of_meter(session=session, serial=serial, at=before) == old_gw.id
    assert service.gateway_of_meter(session=session, serial=serial, at=moved_at) == new_gw.id
    assert service.gateway_of_meter(session=session, serial=serial, at=T0 - timedelta(1)) is None
    assert service.gateway_of_meter(session=session, serial=unique("SN")) is None


def test_remove_meter(session: Session, unique: Unique) -> None:
    gw = gateway(session, unique)
    serial = unique("SN")
    service.register_meter(
        session=session,
        serial=serial,
        model="m",
        protocol="dlms",
        gateway_id=gw.id,
        installed_at=T0,
    )
    with pytest.raises(InvalidMeter):
        service.remove_meter(session=session, serial=serial, at=T0 - timedelta(seconds=1))
    service.remove_meter(session=session, serial=serial, at=T0 + timedelta(hours=1))
    assert service.gateway_of_meter(session=session, serial=serial) is None
    with pytest.raises(MeterNotFound):
        service.remove_meter(session=session, serial=serial, at=T0 + timedelta(hours=2))
    with pytest.raises(MeterNotFound):
        service.move_meter(session=session, serial=serial, gateway_id=gw.id, at=T0)
    # Removed, it may be installed again.
    service.register_meter(
        session=session, serial=serial, model="m", protocol="dlms", gateway_id=gw.id
    )


def test_meters_of_unknown_gateway(session: Session) -> None:
    with pytest.raises(GatewayNotFound):
        service.meters_of_gateway(session=session, gateway_id="gw-none")


# --- the database's own constraints ----------------------------------------------


def raw_violation(session: Session, row: object) -> IntegrityError:
    session.add(row)
    with pytest.raises(IntegrityError) as caught:
        session.flush()
    session.rollback()
    return caught.value


def meter_row(gateway_id: str, serial: str, **kwargs: object) -> Meter:
    values: dict[str, object] = {
        "serial": serial,
        "model": "m",
        "protocol": "dlms",
        "gateway_id": gateway_id,
        "installed_at": T0,
    }
    values.update(kwargs)
    return Meter(**values)


@pytest.fixture
def committed_gateway(factory: sessionmaker[Session], unique: Unique) -> str:
    with unit_of_work(factory) as session:
        return gateway(session, unique).id


def test_database_refuses_bad_ratios(
    session: Session, committed_gateway: str, unique: Unique
) -> None:
    # The service checks first; the database holds the line for everyone else.
    for column in ("ct_ratio", "vt_ratio"):
        error = raw_violation(
            session, meter_row(committed_gateway, unique("SN"), **{column: Decimal(0)})
        )
        violation = constraint_violation(error)
        assert violation.kind == "check"
        assert violation.detail == f"ck_meters_{column}_positive"
        translated = service._meter_violation("SN", committed_gateway)(violation)
        assert isinstance(translated, InvalidMeter)


def test_database_refuses_a_second_open_installation(
    session: Session, committed_gateway: str, unique: Unique
) -> None:
    serial = unique("SN")
    session.add(meter_row(committed_gateway, serial))
    session.flush()
    error = raw_violation(session, meter_row(committed_gateway, serial))
    violation = constraint_violation(error)
    assert violation.kind == "unique" and violation.mentions("serial")
    translated = service._meter_violation(serial, committed_gateway)(violation)
    assert isinstance(translated, MeterAlreadyInstalled)


def test_database_allows_closed_installations_of_one_serial(
    session: Session, committed_gateway: str, unique: Unique
) -> None:
    serial = unique("SN")
    for day in range(3):
        start = T0 + timedelta(days=day)
        session.add(
            meter_row(
                committed_gateway,
                serial,
                installed_at=start,
                removed_at=start + timedelta(hours=1),
            )
        )
    session.add(meter_row(committed_gateway, serial, installed_at=T0 + timedelta(days=5)))
    session.flush()


def test_database_refuses_unknown_gateway(session: Session, unique: Unique) -> None:
    error = raw_violation(session, meter_row("gw-nowhere", unique("SN")))
    violation = constraint_violation(error)
    assert violation.kind == "foreign_key"
    translated = service._meter_violation("SN", "gw-nowhere")(violation)
    assert isinstance(translated, GatewayNotFound)


def test_database_refuses_removal_before_installation(
    session: Session, committed_gateway: str, unique: Unique
) -> None:
    row = meter_row(committed_gateway, unique("SN"), removed_at=T0 - timedelta(seconds=1))
    assert constraint_violation(raw_violation(session, row)).kind == "check"


# --- time zones -------------------------------------------------------------


def test_timestamps_round_trip_as_utc(factory: sessionmaker[Session], unique: Unique) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    local = datetime(2025, 10, 26, 2, 30, 15, 999999, tzinfo=india)
    with unit_of_work(factory) as session:
        gateway_id = gateway(session, unique, now=local).id
    with unit_of_work(factory) as session:
        stored = session.get(Gateway, gateway_id)
        assert stored is not None
        assert stored.created_at == local
        assert stored.created_at.tzinfo is UTC
        assert stored.created_at.hour == 21 and stored.created_at.day == 25
        # Comparisons happen in UTC on both backends.
        found = session.scalar(
            select(Gateway.id).where(Gateway.id == gateway_id, Gateway.created_at == local)
        )
        assert found == gateway_id


def test_naive_timestamps_are_refused(session: Session, unique: Unique) -> None:
    naive = datetime(2025, 1, 1, 12, 0)
    with pytest.raises(NaiveTimestamp):
        gateway(session, unique, now=naive)
    gw = gateway(session, unique)
    with pytest.raises(NaiveTimestamp):
        service.record_status(
            session=session, gateway_id=gw.id, online=True, at=naive, reason="birth"
        )
    # Even past the services, the column type refuses to guess.
    gw.last_seen_at = naive
    with pytest.raises(StatementError) as caught:
        session.flush()
    assert isinstance(caught.value.orig, NaiveTimestamp)


# --- status -------------------------------------------------------------------


def test_record_status_keeps_only_transitions(session: Session, unique: Unique) -> None:
    gw = gateway(session, unique)

    def report(online: bool, minutes: int, reason: str) -> GatewayStatusEvent | None:
        return service.record_status(
            session=session,
            gateway_id=gw.id,
            online=online,
            at=T0 + timedelta(minutes=minutes),
            reason=reason,
            agent_version="1.2.0",
            buffer_depth_readings=12,
        )

    birth = report(True, 0, "birth")
    assert birth is not None and birth.online and birth.buffer_depth_readings == 12
    assert report(True, 1, "status") is None  # still online: no event
    assert gw.last_seen_at == T0 + timedelta(minutes=1)
    will = report(False, 5, "last will")
    assert will is not None and not will.online
    assert report(True, 3, "status") is None  # older than what we know: stale
    assert gw.online is False
    assert report(True, 6, "birth") is not None
    events = session.scalars(
        select(GatewayStatusEvent)
        .where(GatewayStatusEvent.gateway_id == gw.id)
        .order_by(GatewayStatusEvent.at)
    ).all()
    assert [(e.online, e.reason) for e in events] == [
        (True, "birth"),
        (False, "last will"),
        (True, "birth"),
    ]
    assert gw.agent_version == "1.2.0" and gw.online is True


def test_record_status_of_unknown_gateway(session: Session) -> None:
    with pytest.raises(GatewayNotFound):
        service.record_status(
            session=session, gateway_id="gw-none", online=True, at=T0, reason="birth"
        )


# --- sequence numbers -----------------------------------------------------------


def test_advance_sequence_detects_gaps_and_duplicates(session: Session, unique: Unique) -> None:
    gw = gateway(session, unique)

    def check(sequence: int) -> service.SequenceCheck:
        return service.advance_sequence(session=session, gateway_id=gw.id, sequence=sequence)

    assert check(10) == service.SequenceCheck(previous=None, gap=0, duplicate=False)
    assert check(11) == service.SequenceCheck(previous=10, gap=0, duplicate=False)
    assert check(15) == service.SequenceCheck(previous=11, gap=3, duplicate=False)
    assert check(15) == service.SequenceCheck(previous=15, gap=0, duplicate=True)
    assert check(12) == service.SequenceCheck(previous=15, gap=0, duplicate=True)
    assert check(2**63 - 1).gap == 2**63 - 1 - 15 - 1
    session.expire_all()
    assert session.get(Gateway, gw.id).last_sequence == 2**63 - 1  # type: ignore[union-attr]
    for bad in (-1, 2**63):
        with pytest.raises(InvalidSequence):
            check(bad)
    with pytest.raises(GatewayNotFound):
        service.advance_sequence(session=session, gateway_id="gw-none", sequence=1)


# --- ingestion statistics ------------------------------------------------------------


def test_count_ingestion_adds_per_minute(session: Session, unique: Unique) -> None:
    gw = gateway(session, unique)
    service.count_ingestion(
        session=session, gateway_id=gw.id, at=T0, readings_accepted=10, batches=1
    )
    service.count_ingestion(
        session=session,
        gateway_id=gw.id,
        at=T0.replace(second=1),
        readings_accepted=5,
        readings_rejected=2,
        batches=1,
        sequence_gaps=3,
        duplicates=1,
    )
    service.count_ingestion(
        session=session, gateway_id=gw.id, at=T0 + timedelta(minutes=1), batches=1
    )
    rows = service.ingestion_statistics(
        session=session, gateway_id=gw.id, since=T0, until=T0 + timedelta(hours=1)
    )
    assert [
        (
            r.bucket_start_at,
            r.readings_accepted,
            r.readings_rejected,
            r.batches,
            r.sequence_gaps,
            r.duplicates,
        )
        for r in rows
    ] == [
        (T0.replace(second=0, microsecond=0), 15, 2, 2, 3, 1),
        (T0.replace(second=0, microsecond=0) + timedelta(minutes=1), 0, 0, 1, 0, 0),
    ]


def test_count_ingestion_refuses_unknown_gateway_and_negative_counts(
    session: Session, unique: Unique
) -> None:
    with pytest.raises(GatewayNotFound):
        service.count_ingestion(session=session, gateway_id="gw-none", at=T0, batches=1)
    session.rollback()
    gw = gateway(session, unique)
    with pytest.raises(InvalidInput):
        service.count_ingestion(session=session, gateway_id=gw.id, at=T0, readings_accepted=-1)


def test_concurrent_counting_loses_nothing(factory: sessionmaker[Session], unique: Unique) -> None:
    # Several stateless workers, each with its own connection, add to the
    # same row: the sum must be exact.
    with unit_of_work(factory) as session:
        gateway_id = gateway(session, unique).id
    workers, rounds = 4, 25
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                with unit_of_work(factory) as session:
                    service.count_ingestion(
                        session=session,
                        gateway_id=gateway_id,
                        at=T0,
                        readings_accepted=3,
                        batches=1,
                    )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    with unit_of_work(factory) as session:
        row = session.scalars(
            select(IngestionStatistics).where(IngestionStatistics.gateway_id == gateway_id)
        ).one()
        assert (row.batches, row.readings_accepted) == (workers * rounds, 3 * workers * rounds)


# --- dead letters ------------------------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(payload=st.binary(max_size=2048))
def test_dead_letters_keep_payloads_byte_exact(
    factory: sessionmaker[Session], payload: bytes
) -> None:
    with unit_of_work(factory) as session:
        letter_id = service.add_dead_letter(
            session=session,
            topic="vs/v1/gw-unknown/readings",
            payload=payload,
            reason_code="undecodable",
            reason="not an uplink batch",
            gateway_id="gw-unknown",
        ).id
    with unit_of_work(factory) as session:
        stored = session.get(DeadLetter, letter_id)
        assert stored is not None
        assert stored.payload == payload and type(stored.payload) is bytes
        assert stored.payload_size_bytes == len(payload)
        round_trip = DeadLetterRead.model_validate_json(
            DeadLetterRead.model_validate(stored).model_dump_json()
        )
        assert round_trip.payload == payload


def test_dead_letters_list_filter_cap_and_resolve(session: Session, unique: Unique) -> None:
    gateway_id = unique("gw-unknown")
    for minute in range(5):
        service.add_dead_letter(
            session=session,
            topic=f"vs/v1/{gateway_id}/readings",
            payload=bytes([minute]) * 10,
            reason_code="bad_checksum",
            reason=f"CRC mismatch #{minute}",
            gateway_id=gateway_id,
            received_at=T0 + timedelta(minutes=minute),
        )
    big = service.add_dead_letter(
        session=session,
        topic="vs/v1/x/readings",
        payload=b"\x00\xff" * 100,
        reason_code="too_large",
        reason="over the limit",
        max_payload_bytes=16,
    )
    assert big.payload == (b"\x00\xff" * 8) and big.payload_size_bytes == 200
    assert big.gateway_id is None

    page = service.list_dead_letters(session=session, gateway_id=gateway_id, limit=2, offset=1)
    assert [letter.reason for letter in page] == ["CRC mismatch #3", "CRC mismatch #2"]
    every = service.list_dead_letters(session=session, gateway_id=gateway_id)
    assert len(every) == 5
    resolve_and_audit(
        session=session,
        dead_letter_id=every[0].id,
        actor=Actor.system(),
        note=None,
        note_required=False,
        at=T0,
    )
    unresolved = service.list_dead_letters(
        session=session, gateway_id=gateway_id, unresolved_only=True
    )
    assert len(unresolved) == 4
    with pytest.raises(DeadLetterNotFound):
        resolve_and_audit(
            session=session, dead_letter_id=-1, actor=Actor.system(), note=None, note_required=False
        )
    with pytest.raises(InvalidInput):
        service.add_dead_letter(
            session=session, topic="t", payload=b"", reason_code="bad code!", reason="x"
        )


# --- unit of work ------------------------------------------------------------------


def test_unit_of_work_commits_or_rolls_back(factory: sessionmaker[Session], unique: Unique) -> None:
    kept, lost = unique("gw"), unique("gw")
    with unit_of_work(factory) as session:
        service.register_gateway(session=session, gateway_id=kept, name="a", site="s")
    with pytest.raises(MeterNotFound), unit_of_work(factory) as session:
        service.register_gateway(session=session, gateway_id=lost, name="a", site="s")
        service.remove_meter(session=session, serial=unique("SN"), at=T0)
    with unit_of_work(factory) as session:
        assert session.get(Gateway, kept) is not None
        assert session.get(Gateway, lost) is None
        assert session.execute(text("SELECT 1")).scalar() == 1


# --- the command line ---------------------------------------------------------------

CLI = [sys.executable, "-c", "from cloud.cli import app; app()"]


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *arguments], capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_db_upgrade_creates_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'ops.sqlite'}"
    result = run_cli("db", "upgrade", "--url", url)
    assert result.returncode == 0, result.stderr
    assert HEAD in result.stdout
    assert TABLES <= table_names(url)
    assert run_cli("db", "current", "--url", url).stdout.strip() == HEAD
    result = run_cli("db", "downgrade", "base", "--url", url)
    assert result.returncode == 0, result.stderr
    assert run_cli("db", "current", "--url", url).stdout.strip() == "none"


def test_cli_db_upgrade_on_postgresql(database_url: str, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL through the command line")
    result = run_cli("db", "current", "--url", database_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == HEAD


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "mysql://u@localhost/db",
        "postgresql://u:hunter2@127.0.0.1:1/none",
        "sqlite:////proc/voltstack/ops.sqlite",
    ],
)
def test_cli_db_upgrade_with_a_bad_url_fails_in_one_line(url: str) -> None:
    result = run_cli("db", "upgrade", "--url", url)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "hunter2" not in result.stderr
