"""A customer cannot reach another customer's data through any route that takes an id.

Two customers, A and B, each with an account, a gateway, a meter and a day
of readings whose values identify them; plus a staff user with a session and
an API token, and a dead letter of B's gateway. For EVERY route of the real
app with a path parameter (found with `route_permissions`, so new routes are
covered as they appear), A — by console session and by API token — asks for
B's ids (serial, account, gateway, user, session, token, dead letter). Each
answer must be 403 or 404, contain none of B's serial, account, email or
reading values, and leave the database as it was (row counts and the
columns a mutation would change). The positive control: A reads its own
meter through the same routes. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.authz import route_permissions
from cloud.core.db import unit_of_work
from cloud.customers.models import Account, AccountMeter
from cloud.events import store_event
from cloud.events.service import EventRecord
from cloud.fleet import service as fleet_service
from cloud.fleet.models import Gateway, Meter
from cloud.ingestion.models import DeadLetter
from cloud.timeseries import TimeSeriesStore
from cloud.timeseries.store import to_ms
from cloud.users.models import ApiToken, AuditEntry, LoginSession, OutboxMail, User
from fastcodec.obis import parse_obis
from fastcodec.uplink import Batch, Reading
from tests.integration.cloud.auth_world import (
    DAY0,
    ENERGY,
    QUARTER,
    Customer,
    LiveServer,
    api_token,
    build_app,
    cookie_headers,
    install_meter,
    make_customer,
    make_user,
    register_gateway,
    session_token,
    settings_for,
    sqlite_store,
    tag,
)

pytestmark = pytest.mark.integration

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
TABLES = (User, LoginSession, ApiToken, AuditEntry, OutboxMail, Account, AccountMeter)
FLEET_TABLES = (Gateway, Meter, DeadLetter)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimeSeriesStore]:
    yield from sqlite_store(tmp_path_factory, "isolation")


@pytest.fixture(scope="module")
def world(factory: sessionmaker[Session], store: TimeSeriesStore) -> dict[str, Any]:
    a = make_customer(factory, store, base_kwh=1111.0)
    b = make_customer(factory, store, base_kwh=7777.0)
    staff = make_user(factory, "operator")
    b_session, _ = session_token(factory, b.user_id)
    staff_token, _ = api_token(factory, staff, ["fleet:read"])
    with unit_of_work(factory) as session:
        letter = fleet_service.add_dead_letter(
            session=session,
            topic=f"vs/v1/{b.gateway_id}/readings",
            payload=b.serial.encode(),
            reason_code="undecodable",
            reason=f"bad frame from {b.serial}",
            gateway_id=b.gateway_id,
        )
        dead_letter_id = letter.id
    return {
        "a": a,
        "b": b,
        "ids": {
            "serial": b.serial,
            "meter_serial": b.serial,
            "account_number": b.account,
            "gateway_id": b.gateway_id,
            "user_id": str(b.user_id),
            "session_id": str(b_session),
            "token_id": str(staff_token),
            "dead_letter_id": str(dead_letter_id),
            "obis": ENERGY,
        },
    }


@pytest.fixture(scope="module")
def server(database_url: str, engine: Engine, store: TimeSeriesStore) -> Iterator[LiveServer]:
    app = build_app(settings_for(database_url), engine, store)
    with LiveServer(app) as running:
        running.app = app  # type: ignore[attr-defined]
        yield running


def snapshot(factory: sessionmaker[Session]) -> dict[str, Any]:
    """Row counts of every table a route could touch, and the columns mutations change."""
    with factory() as session:
        counts = {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (*TABLES, *FLEET_TABLES)
        }
        return {
            "counts": counts,
            "sessions": sorted(session.execute(select(LoginSession.id, LoginSession.revoked_at))),
            "tokens": sorted(session.execute(select(ApiToken.id, ApiToken.revoked_at))),
            "users": sorted(
                session.execute(select(User.id, User.role, User.state, User.password_hash))
            ),
            "meters": sorted(
                session.execute(select(Meter.id, Meter.gateway_id, Meter.removed_at)),
                key=str,
            ),
            "dead_letters": sorted(
                session.execute(select(DeadLetter.id, DeadLetter.resolved_at)), key=str
            ),
            "links": sorted(
                session.execute(select(AccountMeter.id, AccountMeter.unlinked_at)), key=str
            ),
        }


def leaked(text: str, other: Customer) -> list[str]:
    secrets_of_b = [other.serial, other.account, other.email, other.gateway_id]
    found = [value for value in secrets_of_b if value in text]
    numbers = {float(match) for match in re.findall(r"\d+\.\d+", text)}
    found += [str(value) for value in other.values if value in numbers]
    return found


def routes_with_ids(server: LiveServer) -> list[tuple[str, str, list[str]]]:
    table = route_permissions(server.app)  # type: ignore[attr-defined]
    found = []
    for (method, path), _permission in sorted(table.items()):
        names = re.findall(r"{(\w+)(?::\w+)?}", path)
        if names and method != "*":
            found.append((method, path, names))
    return found


@pytest.fixture(scope="module")
def credentials(
    factory: sessionmaker[Session], world: dict[str, Any], server: LiveServer
) -> dict[str, Any]:
    a: Customer = world["a"]
    _, cookie = session_token(factory, a.user_id)
    _, bearer = api_token(
        factory, a.user_id, ["fleet:read", "readings:read", "sessions:self", "account:read-own"]
    )
    return {"cookie": cookie, "bearer": bearer}


def headers_for(
    kind: str, credentials: dict[str, Any], server: LiveServer, method: str
) -> dict[str, str]:
    if kind == "bearer":
        return {"Authorization": f"Bearer {credentials['bearer']}"}
    settings = server.app.state.settings  # type: ignore[attr-defined]
    return cookie_headers(settings, credentials["cookie"], state_changing=method in STATE_CHANGING)


@pytest.mark.parametrize("kind", ["cookie", "bearer"])
def test_another_customers_ids_are_refused_everywhere(
    kind: str,
    server: LiveServer,
    factory: sessionmaker[Session],
    world: dict[str, Any],
    credentials: dict[str, Any],
) -> None:
    other: Customer = world["b"]
    routes = routes_with_ids(server)
    assert len(routes) >= 20, routes
    before = snapshot(factory)
    failures = []
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as client:
        for method, path, names in routes:
            missing = [name for name in names if name not in world["ids"]]
            assert not missing, f"{path}: no id of the other customer for {missing}"
            url = path.format(**{name: world["ids"][name] for name in names})
            body = {} if method in {"POST", "PUT", "PATCH"} else None
            headers = headers_for(kind, credentials, server, method)
            with client.stream(method, url, json=body, headers=headers) as response:
                text = response.read().decode(errors="replace")[:200_000]
            # A problem document echoes the path asked for (`instance`): the
            # caller's own words, not a leak. Everything else must be clean.
            text = text.replace(url, "<requested path>")
            if response.status_code not in {403, 404}:
                failures.append(f"{method} {url}: {response.status_code} {text[:200]}")
            if leaked(text, other):
                failures.append(f"{method} {url}: leaked {leaked(text, other)}")
    assert not failures, "\n".join(failures)
    assert snapshot(factory) == before


def test_own_ids_work_through_the_same_routes(
    server: LiveServer, world: dict[str, Any], credentials: dict[str, Any]
) -> None:
    mine: Customer = world["a"]
    other: Customer = world["b"]
    headers = {"Authorization": f"Bearer {credentials['bearer']}"}
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as client:
        series = client.get(
            f"/api/v1/meters/{mine.serial}/readings/{ENERGY}",
            params={"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z"},
        )
        assert series.status_code == 200, series.text
        assert [point["value"] for point in series.json()["points"]] == mine.values
        owned = client.get("/api/v1/me/meters")
        assert owned.json() == {"accounts": [mine.account], "meters": [mine.serial]}
        latest = client.get(f"/api/v1/meters/{mine.serial}/latest")
        assert latest.status_code == 200 and latest.json()["values"][0]["value"] == mine.values[-1]
        for listing in ("/api/v1/meters", "/api/v1/gateways", "/api/v1/dead-letters"):
            refused = client.get(listing)
            assert refused.status_code == 403, listing
            assert not leaked(refused.text, other)


# --- a meter that changed hands -------------------------------------------------------------

VOLTAGE = "1-0:32.7.0"
# The meter moves from the first tenant to the second at noon of DAY0.
MOVE = DAY0 + timedelta(hours=12)


@dataclass(frozen=True)
class MovedMeter:
    serial: str
    before: list[float]  # energy readings of the previous occupant
    after: list[float]  # the new occupant's
    previous_voltage: float  # a quantity only the previous occupant's time has
    new_token: str
    new_cookie: str
    staff_token: str


def _link(session: Session, user_id: int, serial: str, since: datetime, until: Any) -> None:
    account = Account(number=f"ACC-{tag()}", holder_user_id=user_id, created_at=since)
    session.add(account)
    session.flush()
    session.add(
        AccountMeter(account_id=account.id, meter_serial=serial, linked_at=since, unlinked_at=until)
    )


@pytest.fixture(scope="module")
def moved(factory: sessionmaker[Session], store: TimeSeriesStore) -> MovedMeter:
    name = tag()
    gateway_id, serial = f"gw-{name}", f"MOVED{name.upper()}"
    register_gateway(factory, gateway_id)
    install_meter(factory, gateway_id, serial)
    previous, new = make_user(factory, "customer"), make_user(factory, "customer")
    with unit_of_work(factory) as session:
        _link(session, previous, serial, DAY0 - timedelta(days=1), MOVE)
        _link(session, new, serial, MOVE, None)
        for kind, moment in (("tamper", MOVE - timedelta(hours=1)), ("power_restored", MOVE)):
            event = EventRecord(gateway_id, serial, kind, moment, {"name": f"{kind} of {name}"})
            assert store_event(session=session, event=event, received_at=moment) is True
    readings = [
        Reading(serial, parse_obis(ENERGY), to_ms(DAY0 + i * QUARTER), 3000.0 + i, "kWh", 0)
        for i in range(96)
    ]
    voltage = Reading(serial, parse_obis(VOLTAGE), to_ms(MOVE - QUARTER), 231.625, "V", 0)
    batch = Batch.from_readings(gateway_id, 1, to_ms(DAY0), [*readings, voltage])
    assert store.write_batch(batch) == 97
    staff = make_user(factory, "operator")
    moved_at = 48  # quarters before noon
    return MovedMeter(
        serial=serial,
        before=[r.value for r in readings[:moved_at]],
        after=[r.value for r in readings[moved_at:]],
        previous_voltage=voltage.value,
        new_token=api_token(factory, new, ["readings:read", "events:read"])[1],
        new_cookie=session_token(factory, new)[1],
        staff_token=api_token(factory, staff, ["readings:read", "events:read"])[1],
    )


def test_a_moved_meter_shows_the_new_customer_nothing_of_the_previous_one(
    server: LiveServer, moved: MovedMeter
) -> None:
    headers = {"Authorization": f"Bearer {moved.new_token}"}
    readings = f"/api/v1/meters/{moved.serial}/readings/{ENERGY}"
    whole = {"start": "2020-01-01T00:00:00Z", "end": (DAY0 + timedelta(days=2)).isoformat()}
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as client:
        raw = client.get(readings, params=whole)
        assert raw.status_code == 200, raw.text
        assert [point["value"] for point in raw.json()["points"]] == moved.after
        hourly = client.get(readings, params={**whole, "resolution": "1h", "aggregate": "max"})
        assert hourly.status_code == 200, hourly.text
        starts = [datetime.fromisoformat(p["at"]) for p in hourly.json()["points"]]
        assert len(starts) == 12 and min(starts) == MOVE
        assert max(p["value"] for p in hourly.json()["points"]) == moved.after[-1]
        # Wholly before the move: an empty answer, not a refusal that tells anything.
        before = client.get(
            readings, params={"start": "2020-01-01T00:00:00Z", "end": MOVE.isoformat()}
        )
        assert before.status_code == 200 and before.json()["points"] == []
        latest = client.get(f"/api/v1/meters/{moved.serial}/latest").json()
        assert [(v["obis"], v["value"]) for v in latest["values"]] == [(ENERGY, moved.after[-1])]
        events = client.get(f"/api/v1/meters/{moved.serial}/events").json()
        assert [event["kind"] for event in events["items"]] == ["power_restored"]

    # The console's meter page (values and events) and its live stream.
    cookie = {"Cookie": f"vs_session={moved.new_cookie}"}
    with httpx.Client(base_url=server.url, timeout=30, headers=cookie) as console:
        page = console.get(f"/console/meters/{moved.serial}")
        assert page.status_code == 200, page.text
        assert "231.625" not in page.text and "tamper" not in page.text
        assert "power restored" in page.text
        with console.stream("GET", f"/console/meters/{moved.serial}/live") as stream:
            first = next(line for line in stream.iter_lines() if line.startswith("data:"))
        assert VOLTAGE not in first and str(moved.after[-1]) in first

    # Staff roles still see the meter's whole history.
    staff = {"Authorization": f"Bearer {moved.staff_token}"}
    with httpx.Client(base_url=server.url, timeout=30, headers=staff) as client:
        raw = client.get(readings, params=whole).json()
        assert [point["value"] for point in raw["points"]] == moved.before + moved.after
        latest = client.get(f"/api/v1/meters/{moved.serial}/latest").json()
        assert {v["obis"] for v in latest["values"]} == {ENERGY, VOLTAGE}
        events = client.get(f"/api/v1/meters/{moved.serial}/events").json()
        assert [event["kind"] for event in events["items"]] == ["power_restored", "tamper"]
