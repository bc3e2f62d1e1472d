"""The operational database: engine, sessions, unit of work, migrations.

Strategy: one SQLAlchemy 2 declarative ``Base`` for every domain package;
PostgreSQL (psycopg 3) in production, a SQLite file by default (the embedded
single-machine install). Both run the same Alembic migrations, which live in
``cloud/migrations`` inside the package, so an installed wheel can migrate
without an ini file or a source checkout.

Invariants:

- every timestamp is stored and returned timezone-aware in UTC
  (`UtcDateTime`); a naive datetime is refused before it reaches the driver;
- constraint names follow `NAMING_CONVENTION`, so the migration, both
  databases and Alembic's autogenerate name them the same way (and
  `constraint_violation` can map a violation back to a domain error);
- SQLite connections enforce foreign keys, use WAL (readers do not block the
  writer) and wait up to `SQLITE_BUSY_TIMEOUT_MS` for the write lock instead
  of failing at once, so several workers may share one file.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, exc
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from cloud.core.exceptions import DatabaseError, NaiveTimestamp

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "MIGRATIONS_DIR",
    "MODEL_MODULES",
    "NAMING_CONVENTION",
    "Base",
    "ConstraintViolation",
    "UtcDateTime",
    "alembic_config",
    "constraint_violation",
    "current_revision",
    "database_url",
    "downgrade_database",
    "load_models",
    "make_engine",
    "session_factory",
    "unit_of_work",
    "upgrade_database",
    "utc_now",
]

logger = logging.getLogger(__name__)

DATABASE_URL_ENV = "VOLTSTACK_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///var/voltstack.sqlite"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Every module that declares tables: Alembic's env.py and the schema tests
# import them so that `Base.metadata` is complete.
MODEL_MODULES = (
    "cloud.fleet.models",
    "cloud.ingestion.models",
    "cloud.users.models",
    "cloud.customers.models",
)
SQLITE_BUSY_TIMEOUT_MS = 30_000

# Deterministic constraint names: SQLite and PostgreSQL would otherwise invent
# different ones, and a later migration could not drop them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC on every backend.

    PostgreSQL stores ``timestamptz`` natively; SQLite has no time zones, so
    values are converted to UTC before they are written and tagged UTC when
    read back. Naive datetimes are refused: guessing their zone is how meter
    readings end up an hour off twice a year.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise NaiveTimestamp("a stored timestamp")
        value = value.astimezone(UTC)
        # SQLite compares the stored text: keep one canonical (naive UTC) form.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every cloud table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime()}


def load_models() -> MetaData:
    """Import every model module; return the complete `Base.metadata`."""
    for module in MODEL_MODULES:
        import_module(module)
    return Base.metadata


def database_url(url: str | URL | None = None) -> str:
    """The URL to use: `url`, else ``$VOLTSTACK_DATABASE_URL``, else the SQLite default."""
    if url is not None:
        return url if isinstance(url, str) else url.render_as_string(hide_password=False)
    return os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def _normalise(url: str | URL | None) -> URL:
    text = database_url(url)
    try:
        parsed = make_url(text)
    except exc.ArgumentError as error:
        raise DatabaseError(f"not a database URL: {text!r}") from error
    # psycopg 3 is the driver we ship; SQLAlchemy's default would be psycopg2.
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise DatabaseError(
            f"unsupported database {parsed.get_backend_name()!r} in "
            f"{parsed.render_as_string(hide_password=True)}: use sqlite:/// or postgresql://"
        )
    return parsed


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Persistent once set; a no-op (reports "memory") for in-memory databases.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def make_engine(url: str | URL | None = None, **kwargs: Any) -> Engine:
    """Create an engine for the operational database.

    Args:
        url: a SQLAlchemy URL; ``postgresql://`` means psycopg 3. None reads
            ``$VOLTSTACK_DATABASE_URL``, then falls back to
            ``sqlite:///var/voltstack.sqlite``.
        **kwargs: passed to `sqlalchemy.create_engine`.

    Returns:
        The engine. For a SQLite file, its folder is created if missing.

    Raises:
        DatabaseError: the URL is malformed or names another database.
    """
    parsed = _normalise(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if not sqlite:
        kwargs.setdefault("pool_pre_ping", True)
    try:
        engine = create_engine(parsed, **kwargs)
    except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as error:
        shown = parsed.render_as_string(hide_password=True)
        raise DatabaseError(f"cannot use {shown}: {error}") from error
    if sqlite:
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            try:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DatabaseError(f"cannot create the folder of {database}: {error}") from error
        event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine`; objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit if the block succeeds, roll back if it raises.

    Args:
        factory: from `session_factory`.

    Yields:
        A session; do not commit it yourself.
    """
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# --- integrity errors --------------------------------------------------------

_PG_SQLSTATE_KIND = {
    "23505": "unique",
    "23514": "check",
    "23503": "foreign_key",
    "23502": "not_null",
}
_SQLITE_MESSAGE = re.compile(
    r"(?P<kind>UNIQUE|CHECK|FOREIGN KEY|NOT NULL) constraint failed:?\s*(?P<detail>.*)"
)


@dataclass(frozen=True)
class ConstraintViolation:
    """What an IntegrityError broke, the same way on both databases.

    Attributes:
        kind: ``unique``, ``check``, ``foreign_key``, ``not_null`` or ``other``.
        detail: what the database names: the constraint name (PostgreSQL,
            SQLite CHECK) or ``table.column`` (SQLite UNIQUE / NOT NULL);
            empty for a SQLite foreign key, which names nothing.
    """

    kind: str
    detail: str

    def mentions(self, *words: str) -> bool:
        """True if `detail` contains every word."""
        return all(word in self.detail for word in words)


def constraint_violation(error: exc.IntegrityError) -> ConstraintViolation:
    """Classify an IntegrityError from psycopg 3 or sqlite3."""
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        diag = getattr(orig, "diag", None)
        name = getattr(diag, "constraint_name", None) or ""
        return ConstraintViolation(_PG_SQLSTATE_KIND.get(sqlstate, "other"), name)
    match = _SQLITE_MESSAGE.search(str(orig))
    if match is None:
        return ConstraintViolation("other", str(orig))
    kind = match["kind"].lower().replace(" ", "_")
    return ConstraintViolation(kind, match["detail"].strip())


# --- migrations --------------------------------------------------------------


def alembic_config(url: str | URL | None = None) -> Any:
    """An Alembic `Config` built in code: no alembic.ini needed at run time."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # `%` would be read as interpolation by configparser.
    rendered = _normalise(url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


@contextmanager
def _migrating(url: str | URL | None) -> Iterator[tuple[Any, Engine]]:
    from alembic.util import CommandError

    engine = make_engine(url)
    shown = engine.url.render_as_string(hide_password=True)
    config = alembic_config(engine.url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            yield config, engine
    except CommandError as error:
        raise DatabaseError(f"{shown}: {error}") from error
    except exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        raise DatabaseError(f"{shown}: {reason[0] if reason else type(error).__name__}") from error
    finally:
        engine.dispose()


def upgrade_database(url: str | URL | None = None, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision` (Alembic, in a transaction).

    Raises:
        DatabaseError: bad URL, unreachable server, unknown revision, failed migration.
    """
    from alembic import command

    with _migrating(url) as (config, engine):
        logger.info("upgrading %s to %s", engine.url.render_as_string(True), revision)
        command.upgrade(config, revision)


def downgrade_database(url: str | URL | None, revision: str) -> None:
    """Migrate the database at `url` down to `revision` (``base`` drops everything).

    Raises:
        DatabaseError: as `upgrade_database`.
    """
    from alembic import command

    with _migrating(url) as (config, engine):
        logger.info("downgrading %s to %s", engine.url.render_as_string(True), revision)
        command.downgrade(config, revision)


def current_revision(url: str | URL | None = None) -> str | None:
    """The revision the database is at, None for an empty (unmigrated) one.

    Raises:
        DatabaseError: bad URL or unreachable server.
    """
    from alembic.runtime.migration import MigrationContext

    with _migrating(url) as (config, _engine):
        context = MigrationContext.configure(config.attributes["connection"])
        return context.get_current_revision()
