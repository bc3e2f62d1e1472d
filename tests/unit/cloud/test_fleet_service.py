"""Fleet and database helpers that need no database server."""

from __future__ import annotations

import importlib
import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from cloud.cli import app
from cloud.core import db
from cloud.core.exceptions import (
    CloudError,
    Conflict,
    DatabaseError,
    InvalidInput,
    NaiveTimestamp,
    NotFound,
)
from cloud.fleet import exceptions as fleet_errors
from cloud.fleet import service
from cloud.fleet.models import GATEWAY_ID_PATTERN, Gateway
from cloud.fleet.schemas import DeadLetterRead, GatewayRead

# A line of a Mosquitto 2.0.11 password file: `mosquitto_passwd -b passwd u secret`.
MOSQUITTO_LINE = (
    "u:$7$101$CaOhMPqXou5KOL8w$Tm/IGpT6XudPW/+QoSwEpSQ/040uY4XUgennUvNsW1UAUg+Cq9w65RsCXnxe"
    "3azx818I3+swiBGPIa8XPDcXvg=="
)


@pytest.mark.parametrize(
    "module",
    [
        "cloud.core.db",
        "cloud.core.exceptions",
        "cloud.fleet.exceptions",
        "cloud.fleet.models",
        "cloud.fleet.schemas",
        "cloud.fleet.service",
        "cloud.ingestion.models",
    ],
)
def test_public_api_names_exist(module: str) -> None:
    loaded = importlib.import_module(module)
    assert loaded.__all__
    for name in loaded.__all__:
        assert hasattr(loaded, name), name


# --- broker passwords -------------------------------------------------------------


def test_verifies_a_hash_made_by_mosquitto_passwd() -> None:
    _user, password_hash = MOSQUITTO_LINE.split(":", 1)
    assert service.verify_broker_password(password_hash=password_hash, password="secret")
    assert not service.verify_broker_password(password_hash=password_hash, password="Secret")


def test_our_hash_has_mosquittos_shape() -> None:
    password_hash = service.hash_broker_password("pw", salt=b"0123456789ab", iterations=101)
    prefix, iterations, salt, digest = password_hash.split("$")[1:]
    assert (prefix, iterations, salt) == ("7", "101", "MDEyMzQ1Njc4OWFi")
    assert len(digest) == 88  # 64 bytes of SHA-512, base64
    assert service.verify_broker_password(password_hash=password_hash, password="pw")
    # A fresh salt each time.
    assert service.hash_broker_password("pw") != service.hash_broker_password("pw")


@pytest.mark.parametrize(
    "bad_hash",
    ["", "secret", "$6$abc$def", "$7$x$AAAA$AAAA", "$7$10$!!!$AAAA", "$7$10$AAAA", "$7$$$$"],
)
def test_malformed_hashes_never_verify(bad_hash: str) -> None:
    assert not service.verify_broker_password(password_hash=bad_hash, password="secret")


# --- gateway ids ---------------------------------------------------------------------


@pytest.mark.parametrize("good", ["gw-substation-01", "A", "gw_1.2", "0" * 64])
def test_gateway_id_pattern_accepts(good: str) -> None:
    assert GATEWAY_ID_PATTERN.fullmatch(good)


@pytest.mark.parametrize("bad", ["", "-a", ".a", "a/b", "a+", "a#", "a b", "0" * 65, "a\n"])
def test_gateway_id_pattern_refuses(bad: str) -> None:
    assert not GATEWAY_ID_PATTERN.fullmatch(bad)


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "category"),
    [
        (fleet_errors.InvalidGatewayId("x/y"), InvalidInput),
        (fleet_errors.InvalidMeter("ct_ratio", "must be > 0"), InvalidInput),
        (fleet_errors.InvalidSequence(-1), InvalidInput),
        (NaiveTimestamp("at"), InvalidInput),
        (fleet_errors.GatewayNotFound("gw"), NotFound),
        (fleet_errors.MeterNotFound("SN"), NotFound),
        (fleet_errors.DeadLetterNotFound(1), NotFound),
        (fleet_errors.GatewayAlreadyExists("gw"), Conflict),
        (fleet_errors.GatewayDecommissioned("gw"), Conflict),
        (fleet_errors.GatewayHasMeters("gw", 2), Conflict),
        (fleet_errors.MeterAlreadyInstalled("SN", "gw"), Conflict),
        (DatabaseError("down"), CloudError),
    ],
)
def test_errors_sit_under_one_root(error: CloudError, category: type[CloudError]) -> None:
    assert isinstance(error, category) and isinstance(error, CloudError)
    assert str(error) and "\n" not in str(error)


def test_every_fleet_error_is_in_the_drawn_tree() -> None:
    import cloud.core.exceptions as root

    for name in fleet_errors.__all__:
        assert name in root.__doc__  # type: ignore[operator]
        assert name in fleet_errors.__doc__  # type: ignore[operator]


# --- URLs and engines ----------------------------------------------------------------


def test_database_url_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(db.DATABASE_URL_ENV, raising=False)
    assert db.database_url() == "sqlite:///var/voltstack.sqlite"
    monkeypatch.setenv(db.DATABASE_URL_ENV, "postgresql://ops@db/voltstack")
    assert db.database_url() == "postgresql://ops@db/voltstack"
    assert db.database_url("sqlite:///x.sqlite") == "sqlite:///x.sqlite"


@pytest.mark.parametrize("url", ["postgresql://u@h/d", "postgres://u@h/d"])
def test_plain_postgresql_urls_use_psycopg3(url: str) -> None:
    engine = db.make_engine(url)  # no connection is made until used
    try:
        assert engine.url.drivername == "postgresql+psycopg"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url", ["nonsense", "mysql://u@h/d", "oracle://u@h/d", "postgresql+psycopg2://u@h/d"]
)
def test_bad_urls_are_database_errors(url: str) -> None:
    with pytest.raises(DatabaseError):
        db.make_engine(url)


def test_migrations_ship_inside_the_package() -> None:
    assert (db.MIGRATIONS_DIR / "env.py").is_file()
    assert (db.MIGRATIONS_DIR / "script.py.mako").is_file()
    assert list((db.MIGRATIONS_DIR / "versions").glob("0001_*.py"))
    # configparser must not read a %-escaped password as interpolation.
    config = db.alembic_config("postgresql://ops:p%25w@db/voltstack")
    assert config.get_main_option("sqlalchemy.url") == "postgresql+psycopg://ops:p%25w@db/voltstack"


# --- UTC timestamps ------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()])
def test_utc_datetime_binds_in_utc_and_reads_aware(dialect: object) -> None:
    column_type = db.UtcDateTime()
    paris = timezone(timedelta(hours=2))
    bound = column_type.process_bind_param(datetime(2025, 6, 1, 14, 0, tzinfo=paris), dialect)
    assert bound is not None and bound.replace(tzinfo=UTC) == datetime(2025, 6, 1, 12, tzinfo=UTC)
    read = column_type.process_result_value(datetime(2025, 6, 1, 12, 0), dialect)
    assert read == datetime(2025, 6, 1, 12, tzinfo=UTC) and read.tzinfo is UTC
    assert column_type.process_bind_param(None, dialect) is None
    with pytest.raises(NaiveTimestamp):
        column_type.process_bind_param(datetime(2025, 6, 1), dialect)


# --- integrity errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "kind", "detail"),
    [
        (
            "CHECK constraint failed: ck_meters_ct_ratio_positive",
            "check",
            "ck_meters_ct_ratio_positive",
        ),
        ("UNIQUE constraint failed: meters.serial", "unique", "meters.serial"),
        ("FOREIGN KEY constraint failed", "foreign_key", ""),
        ("NOT NULL constraint failed: meters.model", "not_null", "meters.model"),
        ("something else", "other", "something else"),
    ],
)
def test_sqlite_violations_are_classified(message: str, kind: str, detail: str) -> None:
    error = IntegrityError("INSERT …", {}, sqlite3.IntegrityError(message))
    assert db.constraint_violation(error) == db.ConstraintViolation(kind, detail)


# --- read models ------------------------------------------------------------------------


def test_gateway_read_model_has_no_password_hash() -> None:
    gateway = Gateway(
        id="gw-1",
        name="n",
        site="s",
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        online=False,
        broker_username="gw-1",
        broker_password_hash="$7$1$AAAA$AAAA",
    )
    dumped = GatewayRead.model_validate(gateway).model_dump_json()
    assert "$7$" not in dumped and "password" not in dumped


def test_dead_letter_json_carries_base64() -> None:
    read = DeadLetterRead(
        id=1,
        received_at=datetime(2025, 1, 1, tzinfo=UTC),
        topic="t",
        gateway_id=None,
        payload=b"\xff\x00",
        payload_size_bytes=2,
        reason_code="undecodable",
        reason="r",
        resolved_at=None,
    )
    assert '"payload":"_wA="' in read.model_dump_json()  # URL-safe alphabet
    assert DeadLetterRead.model_validate_json(read.model_dump_json()).payload == b"\xff\x00"


# --- command line ----------------------------------------------------------------------


def test_db_command_group_is_listed() -> None:
    result = CliRunner().invoke(app, ["db", "--help"])
    assert result.exit_code == 0
    for command in ("upgrade", "current", "downgrade"):
        assert command in result.output
