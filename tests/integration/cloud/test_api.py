"""The REST API on real stores: both operational databases (SQLite file, the
PostgreSQL fixture) × both time-series stores (SqliteStore, InfluxStore on the
real influxd), through FastAPI's TestClient; plus one real uvicorn server
(`voltstack-cloud api`) spoken to over HTTP.

Data gets in the way production puts it there: gateways and meters through
`cloud.fleet.service` or the API, readings through `store.write_batch` of a
fastcodec uplink `Batch`, counters and dead letters through the services the
ingestion worker uses. The authorizer here (`RecordingAuthorizer`) allows
everything and records the permission each route asked for; the real one is
the users module's.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloud.app import create_app
from cloud.core.authz import PUBLIC, Principal, route_permissions
from cloud.core.config import Settings
from cloud.core.db import unit_of_work, upgrade_database
from cloud.fleet import service
from cloud.timeseries import InfluxStore, SqliteStore, TimeSeriesStore
from cloud.timeseries.store import to_ms
from fastcodec.obis import parse_obis
from fastcodec.uplink import Batch, Reading
from tests.servers import InfluxServer, MosquittoServer, free_port

pytestmark = pytest.mark.integration

ENERGY, POWER, VOLTAGE = "1-0:1.8.0", "1-0:1.7.0", "1-0:32.7.0"
DAY0 = datetime(2024, 3, 1, tzinfo=UTC)
QUARTER = timedelta(minutes=15)
SECRET = secrets.token_urlsafe(32)
MAX_POINTS = 1000

# Every route of the issue-7 API and the permission it must declare.
EXPECTED_PERMISSIONS = {
    ("GET", "/api/v1/gateways"): "fleet:read",
    ("POST", "/api/v1/gateways"): "fleet:write",
    ("GET", "/api/v1/gateways/{gateway_id}"): "fleet:read",
    ("GET", "/api/v1/gateways/{gateway_id}/status-history"): "fleet:read",
    ("POST", "/api/v1/gateways/{gateway_id}/meters"): "fleet:write",
    ("GET", "/api/v1/meters"): "fleet:read",
    ("GET", "/api/v1/meters/{serial}"): "fleet:read",
    ("POST", "/api/v1/meters/{serial}/move"): "fleet:write",
    ("POST", "/api/v1/meters/{serial}/remove"): "fleet:write",
    ("GET", "/api/v1/meters/{serial}/latest"): "readings:read",
    ("GET", "/api/v1/meters/{serial}/readings/{obis}"): "readings:read",
    ("GET", "/api/v1/ingestion/statistics"): "ingestion:read",
    ("GET", "/api/v1/dead-letters"): "deadletters:read",
    ("GET", "/api/v1/dead-letters/{dead_letter_id}"): "deadletters:read",
    ("POST", "/api/v1/dead-letters/{dead_letter_id}/resolve"): "deadletters:resolve",
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
}


class RecordingAuthorizer:
    """Allows every request; remembers (permission, resource) of each."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict[str, str]]] = []

    def authorize(
        self, request: Request, permission: str, resource: Mapping[str, str]
    ) -> Principal:
        self.asked.append((permission, dict(resource)))
        return Principal(subject="test", roles=frozenset({"admin"}), kind="token", user_id=1)


def api_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "secret_key": SECRET,
        "max_points_per_query": MAX_POINTS,
        **overrides,
    }
    return Settings(**values)


# --- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite-store", "influx-store"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TimeSeriesStore]:
    """A fresh time-series store of each kind for the module."""
    if request.param == "sqlite-store":
        made: TimeSeriesStore = SqliteStore(tmp_path_factory.mktemp("api-ts") / "ts.sqlite")
        yield made
        made.close()
        return
    server: InfluxServer = request.getfixturevalue("influxd")
    database = f"api_{secrets.token_hex(6)}"
    made = InfluxStore(
        server.url, database, username=server.admin_username, password=server.admin_password
    )
    yield made
    made.close()
    server.query(f'DROP DATABASE "{database}"')


@pytest.fixture(scope="module")
def authorizer() -> RecordingAuthorizer:
    return RecordingAuthorizer()


@pytest.fixture(scope="module")
def app(
    database_url: str, engine: Engine, store: TimeSeriesStore, authorizer: RecordingAuthorizer
) -> FastAPI:
    return create_app(
        api_settings(database_url=database_url), authorizer=authorizer, engine=engine, store=store
    )


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.fixture
def gateway(factory: sessionmaker[Session], unique: Callable[[str], str]) -> str:
    """A registered gateway (committed)."""
    gateway_id = unique("gw")
    with unit_of_work(factory) as session:
        service.register_gateway(session=session, gateway_id=gateway_id, name="GW", site="North")
    return gateway_id


def install(factory: sessionmaker[Session], gateway_id: str, serial: str) -> None:
    with unit_of_work(factory) as session:
        service.register_meter(
            session=session,
            serial=serial,
            model="eastron-sdm630",
            protocol="modbus",
            gateway_id=gateway_id,
            unit_id=1,
            installed_at=DAY0 - timedelta(days=30),
        )


@pytest.fixture
def meter(factory: sessionmaker[Session], gateway: str, unique: Callable[[str], str]) -> str:
    """A meter installed on `gateway` since before DAY0."""
    serial = unique("MTR")
    install(factory, gateway, serial)
    return serial


def write(store: TimeSeriesStore, readings: list[Reading]) -> None:
    assert store.write_batch(Batch.from_readings("gw-test", 1, to_ms(DAY0), readings)) == len(
        readings
    )


def energy_day(serial: str, start_kwh: float = 1000.0) -> list[Reading]:
    """A day of 15-minute energy register readings, +0.25 kWh per quarter."""
    code = parse_obis(ENERGY)
    return [
        Reading(serial, code, to_ms(DAY0 + i * QUARTER), start_kwh + 0.25 * i, "kWh", 0)
        for i in range(96)
    ]


def assert_problem(response: httpx.Response, status: int, type_suffix: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["instance"] == response.request.url.path
    assert body["request_id"] == response.headers["x-request-id"]
    assert set(body) >= {"type", "title", "status", "detail", "instance", "request_id"}
    if type_suffix is not None:
        assert body["type"] == f"urn:voltstack:problem:{type_suffix}"
    return body


# --- gateways --------------------------------------------------------------------


def test_register_a_gateway_shows_its_broker_password_once(
    client: TestClient, factory: sessionmaker[Session], unique: Callable[[str], str]
) -> None:
    gateway_id = unique("gw")
    response = client.post(
        "/api/v1/gateways", json={"id": gateway_id, "name": "Substation 1", "site": "North"}
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["location"].endswith(f"/api/v1/gateways/{gateway_id}")
    body = response.json()
    password = body["broker_password"]
    assert body["gateway"]["id"] == gateway_id and body["gateway"]["online"] is False
    with factory() as session:
        stored = service.get_gateway(session=session, gateway_id=gateway_id)
        assert service.verify_broker_password(
            password_hash=stored.broker_password_hash, password=password
        )
    shown = client.get(f"/api/v1/gateways/{gateway_id}")
    assert shown.status_code == 200
    assert password not in shown.text and "password" not in shown.text
    again = client.post("/api/v1/gateways", json={"id": gateway_id, "name": "x", "site": "y"})
    assert_problem(again, 409, "gateway-already-exists")
    bad = client.post("/api/v1/gateways", json={"id": "bad/id", "name": "x", "site": "y"})
    assert_problem(bad, 422, "invalid-gateway-id")


def test_gateway_list_shows_state_last_status_and_meter_count(
    client: TestClient, factory: sessionmaker[Session], gateway: str, meter: str
) -> None:
    with unit_of_work(factory) as session:
        service.record_status(
            session=session, gateway_id=gateway, online=True, at=DAY0, reason="birth"
        )
    online = client.get("/api/v1/gateways", params={"online": "true", "limit": 500}).json()
    mine = [item for item in online["items"] if item["id"] == gateway]
    assert len(mine) == 1
    assert mine[0]["meter_count"] == 1
    assert mine[0]["last_status"]["reason"] == "birth"
    assert mine[0]["last_status"]["at"] == "2024-03-01T00:00:00Z"
    offline = client.get("/api/v1/gateways", params={"online": "false", "limit": 500}).json()
    assert gateway not in [item["id"] for item in offline["items"]]
    detail = client.get(f"/api/v1/gateways/{gateway}").json()
    assert [m["serial"] for m in detail["meters"]] == [meter]
    assert detail["online"] is True


def test_gateway_list_pages_with_limit_and_next_offset(
    client: TestClient, factory: sessionmaker[Session], unique: Callable[[str], str]
) -> None:
    prefix = unique("page")
    for number in range(3):
        with unit_of_work(factory) as session:
            service.register_gateway(
                session=session, gateway_id=f"{prefix}-{number}", name="n", site="s"
            )
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = client.get("/api/v1/gateways", params={"limit": 2, "offset": offset}).json()
        assert len(page["items"]) <= 2 and page["limit"] == 2
        seen.extend(item["id"] for item in page["items"])
        offset = page["next_offset"]
    assert [gw for gw in seen if gw.startswith(prefix)] == [f"{prefix}-{n}" for n in range(3)]
    assert len(seen) == len(set(seen))
    too_many = client.get("/api/v1/gateways", params={"limit": 501})
    assert_problem(too_many, 422, "validation-error")


def test_status_history_newest_first(
    client: TestClient, factory: sessionmaker[Session], gateway: str
) -> None:
    for minutes, online, reason in (
        (0, True, "birth"),
        (5, False, "last will"),
        (9, True, "birth"),
    ):
        with unit_of_work(factory) as session:
            service.record_status(
                session=session,
                gateway_id=gateway,
                online=online,
                at=DAY0 + timedelta(minutes=minutes),
                reason=reason,
            )
    url = f"/api/v1/gateways/{gateway}/status-history"
    history = client.get(url).json()
    assert [(e["online"], e["reason"]) for e in history["items"]] == [
        (True, "birth"),
        (False, "last will"),
        (True, "birth"),
    ]
    first = client.get(url, params={"limit": 1}).json()
    assert first["next_offset"] == 1 and first["items"][0]["at"] == "2024-03-01T00:09:00Z"
    window = client.get(
        url, params={"since": "2024-03-01T00:01:00+00:00", "until": "2024-03-01T00:09:00Z"}
    ).json()
    assert [e["reason"] for e in window["items"]] == ["last will"]
    naive = client.get(url, params={"since": "2024-03-01T00:01:00"})
    assert_problem(naive, 422, "validation-error")


# --- meters ----------------------------------------------------------------------


def test_register_move_and_remove_a_meter(
    client: TestClient,
    factory: sessionmaker[Session],
    gateway: str,
    unique: Callable[[str], str],
) -> None:
    other = unique("gw")
    with unit_of_work(factory) as session:
        service.register_gateway(session=session, gateway_id=other, name="B", site="South")
    serial = unique("MTR")
    created = client.post(
        f"/api/v1/gateways/{gateway}/meters",
        json={
            "serial": serial,
            "model": "eastron-sdm630",
            "protocol": "modbus",
            "unit_id": 7,
            "ct_ratio": "200",
            "installation_point": "Feeder 3, panel B",
            "installed_at": "2024-01-01T00:00:00+01:00",
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["installed_at"] == "2023-12-31T23:00:00Z"
    assert created.json()["ct_ratio"] in ("200", "200.0000")
    twice = client.post(
        f"/api/v1/gateways/{other}/meters",
        json={"serial": serial, "model": "m", "protocol": "modbus"},
    )
    assert_problem(twice, 409, "meter-already-installed")
    moved = client.post(
        f"/api/v1/meters/{serial}/move",
        json={"gateway_id": other, "at": "2024-02-01T00:00:00Z", "unit_id": 9},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["gateway_id"] == other and moved.json()["unit_id"] == 9
    assert moved.json()["installation_point"] == "Feeder 3, panel B"  # kept
    detail = client.get(f"/api/v1/meters/{serial}").json()
    assert detail["current"]["gateway_id"] == other
    assert [i["gateway_id"] for i in detail["installations"]] == [gateway, other]
    assert detail["installations"][0]["removed_at"] == "2024-02-01T00:00:00Z"
    removed = client.post(f"/api/v1/meters/{serial}/remove", json={"at": "2024-03-01T00:00:00Z"})
    assert removed.status_code == 200 and removed.json()["removed_at"] == "2024-03-01T00:00:00Z"
    assert client.get(f"/api/v1/meters/{serial}").json()["current"] is None
    again = client.post(f"/api/v1/meters/{serial}/remove")
    assert_problem(again, 404, "meter-not-found")
    bad = client.post(
        f"/api/v1/gateways/{gateway}/meters",
        json={"serial": unique("M"), "model": "m", "protocol": "zigbee"},
    )
    assert_problem(bad, 422, "validation-error")
    unknown_field = client.post(
        f"/api/v1/gateways/{gateway}/meters",
        json={"serial": unique("M"), "model": "m", "protocol": "dlms", "ct_ration": 2},
    )
    assert "ct_ration" in assert_problem(unknown_field, 422)["detail"]


def test_list_meters_filtered_by_gateway(
    client: TestClient, factory: sessionmaker[Session], gateway: str, unique: Callable[[str], str]
) -> None:
    serials = sorted(unique("MTR") for _ in range(3))
    for serial in serials:
        install(factory, gateway, serial)
    page = client.get("/api/v1/meters", params={"gateway_id": gateway}).json()
    assert [m["serial"] for m in page["items"]] == serials
    assert all(m["gateway_id"] == gateway for m in page["items"])
    assert page["next_offset"] is None


# --- readings ------------------------------------------------------------------


def test_latest_values_of_every_obis_with_units(
    client: TestClient, store: TimeSeriesStore, meter: str
) -> None:
    later = DAY0 + timedelta(hours=1)
    write(
        store,
        [
            Reading(meter, parse_obis(ENERGY), to_ms(DAY0), 10.0, "kWh", 0),
            Reading(meter, parse_obis(ENERGY), to_ms(later), 12.5, "kWh", 0),
            Reading(meter, parse_obis(VOLTAGE), to_ms(later), 231.4, "V", 4),
        ],
    )
    body = client.get(f"/api/v1/meters/{meter}/latest").json()
    assert body["meter"] == meter
    assert [(v["obis"], v["value"], v["unit"], v["quality"], v["at"]) for v in body["values"]] == [
        (ENERGY, 12.5, "kWh", 0, "2024-03-01T01:00:00Z"),
        (VOLTAGE, 231.4, "V", 4, "2024-03-01T01:00:00Z"),
    ]
    assert body["values"][0]["name"] == "Active energy import, total"


def test_readings_raw_and_in_buckets_with_units(
    client: TestClient, store: TimeSeriesStore, meter: str
) -> None:
    write(store, energy_day(meter))
    url = f"/api/v1/meters/{meter}/readings/{ENERGY}"
    day = {"start": "2024-03-01T00:00:00Z", "end": "2024-03-02T00:00:00Z"}
    raw = client.get(url, params=day).json()
    assert raw["unit"] == "kWh" and raw["resolution"] == "raw" and raw["aggregate"] is None
    assert len(raw["points"]) == 96
    assert raw["points"][1] == {
        "at": "2024-03-01T00:15:00Z",
        "value": 1000.25,
        "unit": "kWh",
        "quality": 0,
        "count": None,
    }
    hourly = client.get(url, params={**day, "resolution": "1h", "aggregate": "delta"}).json()
    assert hourly["unit"] == "kWh" and hourly["aggregate"] == "delta"
    assert len(hourly["points"]) == 24
    # The first hour of a series with nothing before it: last minus first reading.
    assert [p["value"] for p in hourly["points"]] == [0.75] + [1.0] * 23
    assert sum(p["value"] for p in hourly["points"]) == pytest.approx(23.75)
    assert all(p["count"] == 4 for p in hourly["points"])
    daily = client.get(url, params={**day, "resolution": "1d", "aggregate": "max"}).json()
    assert [(p["at"], p["value"]) for p in daily["points"]] == [("2024-03-01T00:00:00Z", 1023.75)]
    # Another time zone names the same instants.
    shifted = client.get(
        url,
        params={
            "start": "2024-03-01T02:00:00+02:00",
            "end": "2024-03-01T03:00:00+02:00",
            "resolution": "15m",
            "aggregate": "last",
        },
    ).json()
    assert [p["value"] for p in shifted["points"]] == [1000.0, 1000.25, 1000.5, 1000.75]
    short = client.get(url.replace(ENERGY, "1.8.0"), params=day).json()
    assert short["obis"] == ENERGY and len(short["points"]) == 96


def test_readings_refuse_bad_parameters(client: TestClient, meter: str) -> None:
    url = f"/api/v1/meters/{meter}/readings"
    day = {"start": "2024-03-01T00:00:00Z", "end": "2024-03-02T00:00:00Z"}
    assert (
        "OBIS"
        in assert_problem(client.get(f"{url}/not-obis", params=day), 422, "invalid-obis")["detail"]
    )
    backwards = client.get(f"{url}/{ENERGY}", params={"start": day["end"], "end": day["start"]})
    assert_problem(backwards, 422, "invalid-query")
    empty = client.get(f"{url}/{ENERGY}", params={"start": day["start"], "end": day["start"]})
    assert_problem(empty, 422, "invalid-query")
    resolution = client.get(f"{url}/{ENERGY}", params={**day, "resolution": "5m"})
    body = assert_problem(resolution, 422, "validation-error")
    assert body["errors"][0]["loc"] == ["query", "resolution"]
    aggregate = client.get(f"{url}/{ENERGY}", params={**day, "aggregate": "median"})
    assert_problem(aggregate, 422, "validation-error")
    naive = client.get(f"{url}/{ENERGY}", params={"start": "2024-03-01T00:00:00"})
    assert_problem(naive, 422, "validation-error")
    garbage_time = client.get(f"{url}/{ENERGY}", params={"start": "yesterday"})
    assert_problem(garbage_time, 422, "validation-error")
    month = {"start": "2024-03-01T00:00:00Z", "end": "2024-03-31T00:00:00Z"}
    too_many = client.get(f"{url}/{ENERGY}", params={**month, "resolution": "15m"})
    assert str(MAX_POINTS) in assert_problem(too_many, 422, "too-many-points")["detail"]
    hourly_month = client.get(f"{url}/{ENERGY}", params={**month, "resolution": "1h"})
    assert hourly_month.status_code == 200


def test_raw_readings_are_bounded_by_count(
    client: TestClient, store: TimeSeriesStore, meter: str
) -> None:
    code = parse_obis(POWER)
    write(
        store,
        [
            Reading(meter, code, to_ms(DAY0 + i * timedelta(seconds=10)), 100.0 + i, "W", 0)
            for i in range(MAX_POINTS + 1)
        ],
    )
    url = f"/api/v1/meters/{meter}/readings/{POWER}"
    whole = {"start": "2024-03-01T00:00:00Z", "end": "2024-03-02T00:00:00Z"}
    assert_problem(client.get(url, params=whole), 422, "too-many-points")
    part = client.get(url, params={"start": whole["start"], "end": "2024-03-01T01:00:00Z"})
    assert part.status_code == 200 and len(part.json()["points"]) == 360
    assert part.json()["unit"] == "W"


# --- ingestion statistics and dead letters ---------------------------------------


def test_ingestion_statistics_per_gateway_and_minute(
    client: TestClient, factory: sessionmaker[Session], gateway: str
) -> None:
    for minute, accepted in ((0, 100), (0, 20), (1, 50), (90, 7)):
        with unit_of_work(factory) as session:
            service.count_ingestion(
                session=session,
                gateway_id=gateway,
                at=DAY0 + timedelta(minutes=minute, seconds=5),
                readings_accepted=accepted,
                batches=1,
                sequence_gaps=1 if minute == 1 else 0,
            )
    url = "/api/v1/ingestion/statistics"
    window = {"gateway_id": gateway, "since": "2024-03-01T00:00:00Z", "until": "2024-03-01T01:00Z"}
    body = client.get(url, params=window).json()
    assert [(row["bucket_start_at"], row["readings_accepted"]) for row in body["items"]] == [
        ("2024-03-01T00:00:00Z", 120),
        ("2024-03-01T00:01:00Z", 50),
    ]
    assert body["totals"] == {
        "readings_accepted": 170,
        "readings_rejected": 0,
        "batches": 3,
        "sequence_gaps": 1,
        "duplicates": 0,
    }
    paged = client.get(url, params={**window, "limit": 1}).json()
    assert len(paged["items"]) == 1 and paged["next_offset"] == 1
    assert paged["totals"]["readings_accepted"] == 170  # the whole window, not the page
    long = client.get(url, params={**window, "since": "2024-01-01T00:00:00Z"})
    assert_problem(long, 422, "invalid-window")


def test_dead_letters_list_get_and_resolve(
    client: TestClient,
    factory: sessionmaker[Session],
    authorizer: RecordingAuthorizer,
    unique: Callable[[str], str],
) -> None:
    gateway_id = unique("gw-dl")  # dead letters keep unknown gateway ids too
    payloads = [b"\x00garbage\xff" * 3, b"VSB1 truncated", b'{"online": "maybe"}']
    ids = []
    for number, (payload, code) in enumerate(
        zip(payloads, ("undecodable", "bad_checksum", "undecodable"), strict=True)
    ):
        with unit_of_work(factory) as session:
            letter = service.add_dead_letter(
                session=session,
                topic=f"vs/v1/{gateway_id}/readings",
                payload=payload,
                reason_code=code,
                reason=f"test {number}",
                gateway_id=gateway_id,
                received_at=DAY0 + timedelta(minutes=number),
            )
            ids.append(letter.id)
    listed = client.get("/api/v1/dead-letters", params={"gateway_id": gateway_id}).json()
    assert [item["id"] for item in listed["items"]] == ids[::-1]  # newest first
    assert "payload" not in listed["items"][0]
    assert listed["items"][0]["payload_size_bytes"] == len(payloads[2])
    by_reason = client.get(
        "/api/v1/dead-letters", params={"gateway_id": gateway_id, "reason_code": "undecodable"}
    ).json()
    assert [item["id"] for item in by_reason["items"]] == [ids[2], ids[0]]
    one = client.get(f"/api/v1/dead-letters/{ids[0]}").json()
    assert base64.urlsafe_b64decode(one["payload"]) == payloads[0]
    assert one["reason_code"] == "undecodable" and one["resolved_at"] is None
    resolved = client.post(f"/api/v1/dead-letters/{ids[0]}/resolve")
    assert resolved.status_code == 200 and resolved.json()["resolved_at"] is not None
    assert authorizer.asked[-1] == ("deadletters:resolve", {"dead_letter_id": str(ids[0])})
    again = client.post(f"/api/v1/dead-letters/{ids[0]}/resolve").json()
    assert again["resolved_at"] == resolved.json()["resolved_at"]
    open_only = client.get(
        "/api/v1/dead-letters", params={"gateway_id": gateway_id, "unresolved_only": "true"}
    ).json()
    assert [item["id"] for item in open_only["items"]] == [ids[2], ids[1]]
    window = client.get(
        "/api/v1/dead-letters",
        params={
            "gateway_id": gateway_id,
            "since": "2024-03-01T00:01:00Z",
            "until": "2024-03-01T00:02:00Z",
        },
    ).json()
    assert [item["id"] for item in window["items"]] == [ids[1]]


# --- errors, request ids, limits -------------------------------------------------


def test_unknown_ids_are_404_problems(client: TestClient, gateway: str) -> None:
    missing = {
        "/api/v1/gateways/no-such-gw": "gateway-not-found",
        "/api/v1/gateways/no-such-gw/status-history": "gateway-not-found",
        "/api/v1/meters/NO-SUCH-METER": "meter-not-found",
        "/api/v1/meters/NO-SUCH-METER/latest": "meter-not-found",
        f"/api/v1/meters/NO-SUCH-METER/readings/{ENERGY}": "meter-not-found",
        "/api/v1/dead-letters/999999999": "dead-letter-not-found",
    }
    for path, problem in missing.items():
        body = assert_problem(client.get(path), 404, problem)
        assert body["detail"]
    move = client.post("/api/v1/meters/NO-SUCH-METER/move", json={"gateway_id": gateway})
    assert_problem(move, 404, "meter-not-found")
    meter_on_nothing = client.post(
        "/api/v1/gateways/no-such-gw/meters", json={"serial": "X", "model": "m", "protocol": "dlms"}
    )
    assert_problem(meter_on_nothing, 404, "gateway-not-found")
    no_route = client.get("/api/v1/nothing-here")
    assert_problem(no_route, 404)
    wrong_method = client.delete("/api/v1/gateways")
    assert_problem(wrong_method, 405)
    assert "GET" in wrong_method.headers["allow"]
    bad_id = client.get("/api/v1/dead-letters/not-a-number")
    assert_problem(bad_id, 422, "validation-error")


def test_request_ids_are_echoed_or_made(client: TestClient) -> None:
    given = client.get("/health/live", headers={"X-Request-ID": "lb-7f3a.42"})
    assert given.headers["x-request-id"] == "lb-7f3a.42"
    made = client.get("/health/live")
    assert len(made.headers["x-request-id"]) == 32
    hostile = client.get(
        "/api/v1/gateways/nope", headers={"X-Request-ID": 'a b"c<script>' + "x" * 200}
    )
    body = assert_problem(hostile, 404)
    assert body["request_id"] != hostile.request.headers["x-request-id"]
    assert len(body["request_id"]) == 32


def test_oversized_bodies_are_413_declared_or_chunked(client: TestClient, app: FastAPI) -> None:
    limit = app.state.settings.max_request_body_bytes
    declared = client.post(
        "/api/v1/gateways",
        content=b"{" + b" " * limit + b"}",
        headers={"content-type": "application/json"},
    )
    assert "larger than" in assert_problem(declared, 413)["detail"]

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    chunked = client.post(
        "/api/v1/gateways", content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert_problem(chunked, 413)


def test_wrong_content_type_is_415(client: TestClient, gateway: str) -> None:
    form = client.post(
        "/api/v1/gateways",
        content=b"id=x&name=y&site=z",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert "application/json" in assert_problem(form, 415)["detail"]
    text = client.post(
        f"/api/v1/gateways/{gateway}/meters", content=b"{}", headers={"content-type": "text/plain"}
    )
    assert_problem(text, 415)
    not_json = client.post(
        "/api/v1/gateways", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(not_json, 422, "validation-error")


def test_unexpected_errors_are_500_without_details(
    database_url: str, engine: Engine, store: TimeSeriesStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(
        api_settings(database_url=database_url),
        authorizer=RecordingAuthorizer(),
        engine=engine,
        store=store,
    )

    def explode() -> None:
        raise RuntimeError("secret detail: password=hunter2 at db01.internal")

    app.add_api_route("/api/v1/explode", explode, summary="Explode", tags=["test"])
    with TestClient(app) as client, caplog.at_level(logging.ERROR):
        response = client.get("/api/v1/explode", headers={"X-Request-ID": "boom-1"})
    body = assert_problem(response, 500)
    assert body["request_id"] == "boom-1"
    assert "hunter2" not in response.text and "db01" not in response.text
    logged = [r for r in caplog.records if "boom-1" in r.getMessage()]
    assert logged and logged[0].exc_info is not None


# --- authorization hook ------------------------------------------------------------


def test_every_route_declares_its_permission(app: FastAPI) -> None:
    table = route_permissions(app)
    undeclared = [route for route, permission in table.items() if permission is None]
    assert undeclared == []
    api = {
        route: permission for route, permission in table.items() if route in EXPECTED_PERMISSIONS
    }
    assert api == EXPECTED_PERMISSIONS
    assert table[("GET", "/openapi.json")] == PUBLIC


def test_a_route_without_permission_is_detected(app: FastAPI) -> None:
    bare = create_app(api_settings(), authorizer=RecordingAuthorizer())
    bare.add_api_route("/api/v1/forgotten", lambda: {}, summary="Forgotten")
    assert route_permissions(bare)[("GET", "/api/v1/forgotten")] is None


def test_deny_all_by_default_gives_401_everywhere_but_health(
    database_url: str, engine: Engine, store: TimeSeriesStore, meter: str
) -> None:
    app = create_app(api_settings(database_url=database_url), engine=engine, store=store)
    values = {"gateway_id": "gw", "serial": meter, "obis": ENERGY, "dead_letter_id": "1"}
    with TestClient(app) as client:
        for (method, path), permission in route_permissions(app).items():
            if (method, path) not in EXPECTED_PERMISSIONS:
                continue  # later modules' routes have their own tests (test_authz_matrix.py)
            url = path.format(**values)
            response = client.request(method, url, json={} if method == "POST" else None)
            if permission == PUBLIC:
                assert response.status_code == 200, (method, path)
                continue
            body = assert_problem(response, 401, "unauthenticated")
            assert permission in body["detail"]
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_openapi_is_valid_and_every_operation_has_summary_and_tag(client: TestClient) -> None:
    import schemathesis

    document = client.get("/openapi.json").json()
    schemathesis.openapi.from_dict(document).validate()
    declared_tags = {tag["name"] for tag in document["tags"]}
    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    ours = [(path, method) for path, method, _ in operations if path.startswith("/api/v1/")]
    issue_7 = {(method.upper(), path) for path, method in ours} & set(EXPECTED_PERMISSIONS)
    assert len(issue_7) == len(EXPECTED_PERMISSIONS) - 2  # all but the two health routes
    for path, method, operation in operations:
        assert operation.get("summary"), (method, path)
        assert operation.get("tags") and set(operation["tags"]) <= declared_tags, (method, path)
    readings = document["paths"]["/api/v1/meters/{serial}/readings/{obis}"]["get"]
    names = {parameter["name"] for parameter in readings["parameters"]}
    assert names == {"serial", "obis", "start", "end", "resolution", "aggregate"}
    problem = readings["responses"]["404"]["content"]
    assert "application/problem+json" in problem


# --- readiness -------------------------------------------------------------------


def test_ready_when_database_store_and_broker_answer(
    database_url: str, engine: Engine, store: TimeSeriesStore, mosquitto: MosquittoServer
) -> None:
    settings = api_settings(
        database_url=database_url, broker_url=f"mqtt://{mosquitto.host}:{mosquitto.port}"
    )
    with TestClient(create_app(settings, engine=engine, store=store)) as client:
        ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": "ok", "timeseries": "ok", "broker": "ok"},
    }


def test_not_ready_names_what_is_unreachable(database_url: str, engine: Engine) -> None:
    settings = api_settings(
        database_url=database_url,
        timeseries_store="influx",
        influx_url=f"http://127.0.0.1:{free_port()}",
        broker_url=f"mqtt://127.0.0.1:{free_port()}",
    )
    with TestClient(create_app(settings, engine=engine)) as client:
        response = client.get("/health/ready")
        live = client.get("/health/live")
    body = assert_problem(response, 503, "not-ready")
    assert body["checks"] == {
        "database": "ok",
        "timeseries": "unreachable",
        "broker": "unreachable",
    }
    assert "timeseries" in body["detail"] and "broker" in body["detail"]
    assert live.status_code == 200


# --- settings ---------------------------------------------------------------------


def test_placeholder_secret_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOLTSTACK_ENVIRONMENT", "production")
    monkeypatch.delenv("VOLTSTACK_SECRET_KEY", raising=False)
    with pytest.raises(ValueError, match="VOLTSTACK_SECRET_KEY"):
        Settings()
    monkeypatch.setenv("VOLTSTACK_SECRET_KEY", SECRET)
    assert Settings().secret_key.get_secret_value() == SECRET
    assert SECRET not in repr(Settings())
    monkeypatch.setenv("VOLTSTACK_ENVIRONMENT", "development")
    monkeypatch.delenv("VOLTSTACK_SECRET_KEY")
    assert Settings().environment == "development"


def test_settings_without_an_environment_are_production_and_refuse_the_placeholder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An install that configured nothing must not start with a forgeable key.
    monkeypatch.delenv("VOLTSTACK_ENVIRONMENT", raising=False)
    monkeypatch.delenv("VOLTSTACK_SECRET_KEY", raising=False)
    with pytest.raises(ValueError, match="VOLTSTACK_SECRET_KEY"):
        Settings()
    monkeypatch.setenv("VOLTSTACK_SECRET_KEY", SECRET)
    assert Settings().environment == "production"


# --- a real server -----------------------------------------------------------------


def _wait_for(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the API server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {timeout_s} s")


def test_real_uvicorn_server_over_http(tmp_path: Path, influxd: InfluxServer) -> None:
    database = f"sqlite:///{tmp_path / 'ops.sqlite'}"
    upgrade_database(database)
    port = free_port()
    env = {
        **os.environ,
        "VOLTSTACK_ENVIRONMENT": "production",
        "VOLTSTACK_SECRET_KEY": SECRET,
        "VOLTSTACK_INFLUX_DATABASE": f"api_{secrets.token_hex(6)}",
        "VOLTSTACK_INFLUX_USERNAME": influxd.admin_username,
        "VOLTSTACK_INFLUX_PASSWORD": influxd.admin_password,
        "VOLTSTACK_MAX_REQUEST_BODY_BYTES": "4096",
    }
    command = [
        str(Path(sys.executable).parent / "voltstack-cloud"), "api",
        "--host", "127.0.0.1", "--port", str(port), "--database", database, "--store", influxd.url,
    ]  # fmt: skip
    log = tmp_path / "api.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/health/live", process)
        ready = httpx.get(f"{base}/health/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        denied = httpx.get(f"{base}/api/v1/gateways", headers={"X-Request-ID": "real-1"})
        assert denied.status_code == 401
        assert denied.headers["content-type"] == "application/problem+json"
        assert denied.json()["request_id"] == "real-1" == denied.headers["x-request-id"]
        # A chunked body over the limit, written by hand on a raw socket.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(
                b"POST /api/v1/gateways HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b" " * 2048
            try:
                for _ in range(4):
                    raw.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                raw.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server may answer and close before the end
            answer = raw.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        influxd.query(f'DROP DATABASE "{env["VOLTSTACK_INFLUX_DATABASE"]}"')
    logged = log.read_text(errors="replace")
    assert "request_id=real-1" in logged and "status=401" in logged
