"""The operational database on both backends: a SQLite file and the test PostgreSQL.

Every test module gets its own database per backend (a temporary SQLite file,
or ``CREATE DATABASE test_<random>`` on the session's PostgreSQL, dropped
after), migrated with `upgrade_database`. Tests get a `session` that is
rolled back at the end, or commit through `factory` with unique ids.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.db import make_engine, session_factory, upgrade_database

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the module's tests run on."""
    return str(request.param)


@pytest.fixture(scope="module")
def new_database(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], str]]:
    """Make empty databases on the backend; every one is dropped after the module."""
    created: list[str] = []
    if backend == "sqlite":
        folder: Path = tmp_path_factory.mktemp("opsdb")

        def make_sqlite() -> str:
            path = folder / f"ops-{secrets.token_hex(4)}.sqlite"
            return f"sqlite:///{path}"

        yield make_sqlite
        return

    server = request.getfixturevalue("postgres")

    def admin() -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(server.dsn, autocommit=True)

    def make_postgres() -> str:
        name = f"test_{secrets.token_hex(6)}"
        with admin() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"postgresql+psycopg://{server.user}@{server.host}:{server.port}/{name}"

    yield make_postgres
    with admin() as connection:
        for name in created:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def database_url(new_database: Callable[[], str]) -> str:
    """A database migrated to head, shared by the module's tests."""
    url = new_database()
    upgrade_database(url)
    return url


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for tests that commit (use unique ids there)."""
    return session_factory(engine)


@pytest.fixture
def session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is rolled back after the test: nothing is committed."""
    session = factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """`unique("gw")` → ``gw-1a2b3c4d``: ids no other test uses."""
    return lambda prefix: f"{prefix}-{secrets.token_hex(4)}"
