"""Shared set-up of the authentication tests: users of every role, their
credentials, a small fleet with readings, and the app served by a real uvicorn.

Not a test module: the matrix, isolation, auth API and schemathesis tests
import it. Everything is put in the way production does it (the users, fleet
and ingestion services, ``store.write_batch``), committed through a
sessionmaker, so the app under test reads it over its own connections.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloud.app import create_app
from cloud.console.security import csrf_token_for
from cloud.core.config import Settings
from cloud.core.db import unit_of_work
from cloud.customers.models import Account, AccountMeter
from cloud.fleet import service as fleet_service
from cloud.timeseries import SqliteStore, TimeSeriesStore
from cloud.timeseries.store import to_ms
from cloud.users import service
from cloud.users.authorizer import UsersAuthorizer, UsersConfig
from fastcodec.obis import parse_obis
from fastcodec.uplink import Batch, Reading
from tests.servers import free_port

SECRET = secrets.token_urlsafe(32)
PASSWORD = "meters hum quietly at dusk"
# Real argon2id, small parameters: these tests log in hundreds of times.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
ENERGY = "1-0:1.8.0"
DAY0 = datetime(2025, 3, 1, tzinfo=UTC)
QUARTER = timedelta(minutes=15)
SYSTEM = service.Actor.system()


def settings_for(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "secret_key": SECRET,
        "database_url": database_url,
        **overrides,
    }
    return Settings(**values)


def build_app(
    settings: Settings,
    engine: Engine,
    store: TimeSeriesStore,
    config: UsersConfig | None = None,
) -> FastAPI:
    authorizer = UsersAuthorizer(settings, config or UsersConfig(hasher=FAST))
    return create_app(settings, authorizer=authorizer, engine=engine, store=store)


def sqlite_store(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[TimeSeriesStore]:
    """The body of a module's ``store`` fixture: an embedded SQLite series file in
    a fresh folder named `name`, closed after (``yield from sqlite_store(...)``)."""
    made = SqliteStore(tmp_path_factory.mktemp(name) / "ts.sqlite")
    yield made
    made.close()


def tag() -> str:
    return secrets.token_hex(4)


def make_user(factory: sessionmaker[Session], role: str, email: str | None = None) -> int:
    with unit_of_work(factory) as session:
        user = service.create_user(
            session=session,
            email=email or f"{role}-{tag()}@example.com",
            display_name=f"A {role}",
            role=role,
            password=PASSWORD,
            actor=SYSTEM,
            hasher=FAST,
        )
        return user.id


def session_token(factory: sessionmaker[Session], user_id: int) -> tuple[int, str]:
    """Open a console session for the user (as the login route would): (id, cookie)."""
    with unit_of_work(factory) as session:
        user = service.get_user(session=session, user_id=user_id)
        login, token = service.start_session(session=session, user=user, ip="192.0.2.1")
        return login.id, token


def api_token(
    factory: sessionmaker[Session], user_id: int, scopes: list[str], days: int = 30
) -> tuple[int, str]:
    with unit_of_work(factory) as session:
        row, secret = service.create_api_token(
            session=session,
            owner_id=user_id,
            name=f"test {tag()}",
            scopes=scopes,
            expires_at=datetime.now(UTC) + timedelta(days=days),
            actor=SYSTEM,
        )
        return row.id, secret


def cookie_headers(settings: Settings, token: str, *, state_changing: bool) -> dict[str, str]:
    headers = {"Cookie": f"vs_session={token}"}
    if state_changing:
        headers["X-CSRF-Token"] = csrf_token_for(settings, token)
    return headers


@dataclass
class Customer:
    """A customer user, its account, and a meter installed and linked to it."""

    user_id: int
    email: str
    account: str
    serial: str
    gateway_id: str
    values: list[float] = field(default_factory=list)


def install_meter(factory: sessionmaker[Session], gateway_id: str, serial: str) -> None:
    with unit_of_work(factory) as session:
        fleet_service.register_meter(
            session=session,
            serial=serial,
            model="eastron-sdm630",
            protocol="modbus",
            gateway_id=gateway_id,
            unit_id=1,
            installed_at=DAY0 - timedelta(days=30),
        )


def register_gateway(factory: sessionmaker[Session], gateway_id: str) -> None:
    with unit_of_work(factory) as session:
        fleet_service.register_gateway(
            session=session, gateway_id=gateway_id, name="GW", site="North"
        )


def link(factory: sessionmaker[Session], user_id: int, account: str, serial: str) -> None:
    with unit_of_work(factory) as session:
        row = Account(number=account, holder_user_id=user_id, created_at=DAY0)
        session.add(row)
        session.flush()
        session.add(
            AccountMeter(account_id=row.id, meter_serial=serial, linked_at=DAY0 - timedelta(days=1))
        )


def make_customer(
    factory: sessionmaker[Session], store: TimeSeriesStore, *, base_kwh: float
) -> Customer:
    """A customer with one meter on its own gateway and a day of energy readings
    whose values (``base_kwh`` + 0.25 per quarter) identify it in a response."""
    name = tag()
    email = f"customer-{name}@example.com"
    user_id = make_user(factory, "customer", email)
    gateway_id, serial, account = f"gw-{name}", f"MTR{name.upper()}", f"ACC-{name}"
    register_gateway(factory, gateway_id)
    install_meter(factory, gateway_id, serial)
    link(factory, user_id, account, serial)
    code = parse_obis(ENERGY)
    readings = [
        Reading(serial, code, to_ms(DAY0 + i * QUARTER), base_kwh + 0.25 * i, "kWh", 0)
        for i in range(96)
    ]
    assert store.write_batch(Batch.from_readings(gateway_id, 1, to_ms(DAY0), readings)) == 96
    return Customer(
        user_id, email, account, serial, gateway_id, [reading.value for reading in readings]
    )


class LiveServer:
    """The app under a real uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextmanager
def live(app: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server
