"""Gateway and meter events: parsed, stored once, refused with a reason, read back.

- `parse_event` on good and hostile payloads (pure, no database);
- `store_event` on SQLite and PostgreSQL: the same (gateway, meter, kind,
  occurred_at) twice leaves one row, with and without a meter; unknown,
  decommissioned gateways and foreign meters are refused;
- the ingestion worker on the real Mosquitto stores what a gateway publishes,
  once even when the gateway sends it twice, dead-letters malformed events
  with their reason and keeps going;
- the API (``/api/v1/events``, ``/api/v1/meters/{serial}/events``) filters,
  pages, answers 4xx to bad filters and keeps customers to their own meters;
- the console shows them: highlighted on the dashboard, on the gateway's and
  the meter's page with the meter's time; an offline gateway says so.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.db import unit_of_work
from cloud.events import list_events, parse_event, store_event
from cloud.events.exceptions import InvalidEventWindow
from cloud.events.service import MAX_EVENT_BYTES, EventRecord
from cloud.fleet import service as fleet_service
from cloud.fleet.models import DeviceEvent
from cloud.ingestion.models import DeadLetter
from cloud.ingestion.validation import Refusal, ValidationRules
from cloud.ingestion.worker import IngestionWorker, WorkerConfig
from cloud.timeseries import SqliteStore, TimeSeriesStore
from cloud.timeseries.store import to_ms
from tests.integration.cloud.auth_world import (
    Customer,
    LiveServer,
    api_token,
    build_app,
    cookie_headers,
    make_customer,
    make_user,
    session_token,
    settings_for,
    sqlite_store,
)
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)
RULES = ValidationRules()
Unique = Callable[[str], str]


def at_ms(moment: datetime) -> int:
    return to_ms(moment)


def event_json(gateway_id: str, kind: str, moment: datetime, **fields: Any) -> bytes:
    return json.dumps(
        {"event": kind, "gateway": gateway_id, "at_ms": at_ms(moment), **fields}
    ).encode()


# --- parsing (pure) -------------------------------------------------------------------------


def test_an_agents_event_parses_into_its_columns_and_details() -> None:
    moment = NOW - timedelta(minutes=3, milliseconds=250)
    payload = event_json(
        "gw-1", "last_gasp", moment, meter="DL0001", bus="tcp-1", code=1, name="Power down"
    )
    event = parse_event(payload, gateway_id="gw-1", now=NOW, rules=RULES)
    assert event == EventRecord(
        "gw-1", "DL0001", "last_gasp", moment, {"bus": "tcp-1", "code": 1, "name": "Power down"}
    )
    assert event.severity == "critical"
    started = parse_event(
        event_json("gw-1", "gateway_started", NOW, version="1.0"),
        gateway_id="gw-1",
        now=NOW,
        rules=RULES,
    )
    assert isinstance(started, EventRecord)
    assert (started.meter_serial, started.severity, started.details) == (
        None,
        "info",
        {"version": "1.0"},
    )


@pytest.mark.parametrize(
    ("payload", "reason_code", "words"),
    [
        (b"{not json", "undecodable", "not JSON"),
        (b"[1, 2]", "undecodable", "object"),
        (b"", "undecodable", "not JSON"),
        (b'{"at_ms": 1740916800000}', "undecodable", '"event"'),
        (b'{"event": "Last Gasp!", "at_ms": 1740916800000}', "undecodable", "snake_case"),
        (b'{"event": 7, "at_ms": 1740916800000}', "undecodable", '"event"'),
        (b'{"event": "last_gasp"}', "undecodable", "at_ms"),
        (b'{"event": "last_gasp", "at_ms": "yesterday"}', "undecodable", "at_ms"),
        (b'{"event": "last_gasp", "at_ms": true}', "undecodable", "at_ms"),
        (b'{"event": "last_gasp", "at_ms": 1740916800000, "x": NaN}', "undecodable", "NaN"),
        (b'{"event": "last_gasp", "at_ms": 1740916800000, "meter": 12}', "undecodable", "meter"),
        (b'{"event": "last_gasp", "at_ms": 1740916800000, "meter": ""}', "undecodable", "meter"),
        (b'{"event": "a", "at_ms": 1740916800000, "gateway": "gw-2"}', "unknown_gateway", "gw-2"),
        (b'{"event": "last_gasp", "at_ms": 1}', "timestamp_out_of_window", "window"),
        (b'{"event": "last_gasp", "at_ms": 99999999999999999999}', "timestamp_out_of_window", ""),
        (b"[" * 100_000, "too_large", "limit"),
        (b"[" * 10_000, "undecodable", "not JSON"),
    ],
)
def test_a_malformed_event_is_refused_with_its_reason(
    payload: bytes, reason_code: str, words: str
) -> None:
    refusal = parse_event(payload, gateway_id="gw-1", now=NOW, rules=RULES)
    assert isinstance(refusal, Refusal)
    assert refusal.reason_code == reason_code
    assert words in refusal.reason


def test_an_event_just_under_the_size_limit_is_taken() -> None:
    padding = "x" * (MAX_EVENT_BYTES - 200)
    payload = event_json("gw-1", "meter_event", NOW, name=padding)
    assert len(payload) <= MAX_EVENT_BYTES
    assert isinstance(parse_event(payload, gateway_id="gw-1", now=NOW, rules=RULES), EventRecord)


# --- storing, on both backends ----------------------------------------------------------------


def make_gateway(factory: sessionmaker[Session], gateway_id: str, *serials: str) -> None:
    with unit_of_work(factory) as session:
        fleet_service.register_gateway(session=session, gateway_id=gateway_id, name="t", site="t")
        for serial in serials:
            fleet_service.register_meter(
                session=session,
                serial=serial,
                model="generic-dlms",
                protocol="dlms",
                gateway_id=gateway_id,
                installed_at=datetime(2020, 1, 1, tzinfo=UTC),
            )


def record(gateway_id: str, serial: str | None, kind: str, moment: datetime) -> EventRecord:
    return EventRecord(gateway_id, serial, kind, moment, {"source": "test"})


def rows_of(session: Session, gateway_id: str) -> list[DeviceEvent]:
    query = select(DeviceEvent).where(DeviceEvent.gateway_id == gateway_id)
    return list(session.scalars(query.order_by(DeviceEvent.id)))


def test_the_same_event_twice_is_stored_once(
    factory: sessionmaker[Session], session: Session, unique: Unique
) -> None:
    gateway_id, serial = unique("gw"), unique("DL")
    make_gateway(factory, gateway_id, serial)
    moment = NOW - timedelta(hours=1, microseconds=123_000)
    gasp = record(gateway_id, serial, "last_gasp", moment)
    first_received = NOW - timedelta(minutes=59)
    assert store_event(session=session, event=gasp, received_at=first_received) is True
    assert store_event(session=session, event=gasp, received_at=NOW) is False
    # Without a meter too: NULLs must not make two "different" rows.
    started = record(gateway_id, None, "gateway_started", moment)
    assert store_event(session=session, event=started, received_at=NOW) is True
    assert store_event(session=session, event=started, received_at=NOW) is False
    # Another kind, another meter time: other events.
    restored = record(gateway_id, serial, "power_restored", moment)
    assert store_event(session=session, event=restored, received_at=NOW) is True
    later = record(gateway_id, serial, "last_gasp", moment + timedelta(milliseconds=1))
    assert store_event(session=session, event=later, received_at=NOW) is True

    rows = rows_of(session, gateway_id)
    assert [(r.meter_serial, r.kind, r.occurred_at) for r in rows] == [
        (serial, "last_gasp", moment),
        (None, "gateway_started", moment),
        (serial, "power_restored", moment),
        (serial, "last_gasp", moment + timedelta(milliseconds=1)),
    ]
    assert rows[0].received_at == first_received  # the redelivery kept the first
    assert (rows[0].severity, rows[0].details) == ("critical", {"source": "test"})


def test_events_with_ids_are_kept_apart_by_id_and_stored_once_each(
    factory: sessionmaker[Session], session: Session, unique: Unique
) -> None:
    gateway_id, serial, other = unique("gw"), unique("DL"), unique("gw")
    make_gateway(factory, gateway_id, serial)
    make_gateway(factory, other)
    # Two codes of one meter's log in one second: one kind, one time, two events.
    second = NOW - timedelta(hours=2)
    payloads = [
        event_json(
            gateway_id,
            "meter_event",
            second,
            meter=serial,
            code=code,
            event_id=f"{serial}:{code}:{at_ms(second)}:1",
        )
        for code in (45, 46)
    ]
    events = [parse_event(p, gateway_id=gateway_id, now=NOW, rules=RULES) for p in payloads]
    assert all(isinstance(event, EventRecord) for event in events)
    for event in events:
        assert store_event(session=session, event=event, received_at=NOW) is True
    # Delivered again (the agent lost the PUBACK, or re-read the log): stored once.
    for event in events:
        assert store_event(session=session, event=event, received_at=NOW) is False
    rows = rows_of(session, gateway_id)
    assert [(r.event_id, r.details["code"]) for r in rows] == [
        (f"{serial}:45:{at_ms(second)}:1", 45),
        (f"{serial}:46:{at_ms(second)}:1", 46),
    ]
    assert "event_id" not in rows[0].details
    # The same id from another gateway is another event.
    started = event_json(other, "gateway_started", second, event_id=rows[0].event_id)
    record_of_other = parse_event(started, gateway_id=other, now=NOW, rules=RULES)
    assert isinstance(record_of_other, EventRecord)
    assert store_event(session=session, event=record_of_other, received_at=NOW) is True


@pytest.mark.parametrize("event_id", ["", "a b", "x" * 129, 7, "é"])
def test_a_bad_event_id_is_refused_with_its_reason(event_id: Any) -> None:
    payload = event_json("gw-1", "tamper", NOW, event_id=event_id)
    refusal = parse_event(payload, gateway_id="gw-1", now=NOW, rules=RULES)
    assert isinstance(refusal, Refusal)
    assert (refusal.reason_code, '"event_id"' in refusal.reason) == ("undecodable", True)


def test_events_of_unknown_decommissioned_or_foreign_senders_are_refused(
    factory: sessionmaker[Session], session: Session, unique: Unique
) -> None:
    gateway_id, other, serial = unique("gw"), unique("gw"), unique("DL")
    retired = unique("gw")
    make_gateway(factory, gateway_id, serial)
    make_gateway(factory, other)
    make_gateway(factory, retired)
    with unit_of_work(factory) as setup:
        fleet_service.decommission_gateway(session=setup, gateway_id=retired, at=NOW)
    cases = {
        unique("gw-nobody"): (None, "unknown_gateway"),
        retired: (None, "unknown_gateway"),
        other: (serial, "meter_not_on_gateway"),  # the serial is on gateway_id, not on other
    }
    for sender, (meter, reason_code) in cases.items():
        outcome = store_event(
            session=session, event=record(sender, meter, "tamper", NOW), received_at=NOW
        )
        assert isinstance(outcome, Refusal), sender
        assert outcome.reason_code == reason_code
    count = session.scalar(
        select(func.count()).select_from(DeviceEvent).where(DeviceEvent.gateway_id.in_(cases))
    )
    assert count == 0


def test_list_events_filters_and_orders_newest_first(
    factory: sessionmaker[Session], session: Session, unique: Unique
) -> None:
    gateway_id, a, b = unique("gw"), unique("DL"), unique("DL")
    make_gateway(factory, gateway_id, a, b)
    for minutes, serial, kind in [
        (50, a, "meter_comm_lost"),
        (40, a, "meter_comm_restored"),
        (30, b, "last_gasp"),
        (20, None, "gateway_started"),
        (10, b, "power_restored"),
    ]:
        event = record(gateway_id, serial, kind, NOW - timedelta(minutes=minutes))
        assert store_event(session=session, event=event, received_at=NOW) is True

    def kinds(**filters: Any) -> list[str]:
        return [
            e.kind for e in list_events(session=session, limit=50, gateway_id=gateway_id, **filters)
        ]

    assert kinds() == [
        "power_restored",
        "gateway_started",
        "last_gasp",
        "meter_comm_restored",
        "meter_comm_lost",
    ]
    assert kinds(meter_serial=b) == ["power_restored", "last_gasp"]
    assert kinds(kinds=["last_gasp", "meter_comm_lost"]) == ["last_gasp", "meter_comm_lost"]
    assert kinds(severities=["warning"]) == ["meter_comm_lost"]
    window = {"since": NOW - timedelta(minutes=40), "until": NOW - timedelta(minutes=20)}
    assert kinds(**window) == ["last_gasp", "meter_comm_restored"]  # since in, until out
    assert [
        e.kind for e in list_events(session=session, limit=2, offset=1, gateway_id=gateway_id)
    ] == [
        "gateway_started",
        "last_gasp",
    ]
    with pytest.raises(InvalidEventWindow):
        list_events(session=session, limit=5, since=NOW, until=NOW - timedelta(seconds=1))


# --- the ingestion worker on the real broker ----------------------------------------------------


class Gateway:
    """A gateway's own broker account publishing its events, QoS 1."""

    def __init__(self, broker: MosquittoServer, gateway_id: str) -> None:
        self.gateway_id = gateway_id
        _, password = broker.add_gateway(gateway_id)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gateway_id)
        self.client.username_pw_set(gateway_id, password)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()

    def publish(self, payload: bytes) -> None:
        info = self.client.publish(f"vs/v1/{self.gateway_id}/events", payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def worker(
    mosquitto: MosquittoServer, factory: sessionmaker[Session], tmp_path: Any
) -> Iterator[IngestionWorker]:
    store = SqliteStore(tmp_path / "series.sqlite")
    config = WorkerConfig(
        host=mosquitto.host,
        port=mosquitto.port,
        username=mosquitto.admin_username,
        password=mosquitto.admin_password,
        client_id=f"ingest-{uuid.uuid4().hex[:8]}",
        share_group=f"t{uuid.uuid4().hex[:8]}",
        session_expiry_s=60,
        retry_initial_s=0.05,
        retry_max_s=0.2,
    )
    running = IngestionWorker(config, store=store, sessions=factory)
    running.start()
    try:
        wait_for(running.subscribed.is_set, "the worker's subscriptions")
        yield running
    finally:
        running.stop()
        store.close()


def rows_of_factory(factory: sessionmaker[Session], gateway_id: str) -> list[Any]:
    with factory() as session:
        return list(rows_of(session, gateway_id))


def dead_letters_of(factory: sessionmaker[Session], gateway_id: str) -> int:
    with factory() as session:
        query = select(func.count()).select_from(DeadLetter)
        return session.scalar(query.where(DeadLetter.gateway_id == gateway_id)) or 0


def test_the_worker_stores_events_once_and_dead_letters_bad_ones(
    mosquitto: MosquittoServer,
    worker: IngestionWorker,
    factory: sessionmaker[Session],
    unique: Unique,
) -> None:
    gateway_id, serial = unique("gw"), unique("DL")
    make_gateway(factory, gateway_id, serial)
    gateway = Gateway(mosquitto, gateway_id)
    now = datetime.now(UTC).replace(microsecond=0)
    gasp = event_json(gateway_id, "last_gasp", now - timedelta(minutes=5), meter=serial, code=1)
    try:
        gateway.publish(gasp)
        gateway.publish(gasp)  # at least once: the agent resent it after a lost PUBACK
        gateway.publish(b"{not json")
        gateway.publish(event_json(gateway_id, "tamper", now, meter="SOMEONE-ELSES"))
        gateway.publish(event_json(gateway_id, "gateway_started", now, version="9.9"))
        # Counted in this gateway's rows, not the worker's totals: retained
        # status messages of earlier tests' gateways reach it too.
        wait_for(lambda: len(rows_of_factory(factory, gateway_id)) == 2, "two events stored")
        wait_for(lambda: dead_letters_of(factory, gateway_id) == 2, "two dead letters")
    finally:
        gateway.close()
    with factory() as session:
        rows = rows_of(session, gateway_id)
        letters = list(
            session.scalars(
                select(DeadLetter)
                .where(DeadLetter.gateway_id == gateway_id)
                .order_by(DeadLetter.id)
            )
        )
    assert [(r.meter_serial, r.kind, r.occurred_at) for r in rows] == [
        (serial, "last_gasp", now - timedelta(minutes=5)),
        (None, "gateway_started", now),
    ]
    assert rows[0].details == {"code": 1}
    assert [(d.reason_code, d.topic) for d in letters] == [
        ("undecodable", f"vs/v1/{gateway_id}/events"),
        ("meter_not_on_gateway", f"vs/v1/{gateway_id}/events"),
    ]
    assert letters[0].payload == b"{not json"  # kept byte for byte
    assert "SOMEONE-ELSES" in letters[1].reason
    assert worker.ready()  # still consuming


# --- the API and the console --------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimeSeriesStore]:
    yield from sqlite_store(tmp_path_factory, "events")


@pytest.fixture(scope="module")
def world(factory: sessionmaker[Session], store: TimeSeriesStore) -> dict[str, Any]:
    """Two customers with a meter each; events of both; an admin."""
    mine = make_customer(factory, store, base_kwh=100.0)
    theirs = make_customer(factory, store, base_kwh=900.0)
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    with unit_of_work(factory) as session:
        for customer, offset in ((mine, 0), (theirs, 1)):
            for kind, minutes in (("last_gasp", 0), ("power_restored", 7)):
                event = EventRecord(
                    customer.gateway_id,
                    customer.serial,
                    kind,
                    moment + timedelta(minutes=minutes + offset),
                    {"name": "Power down" if kind == "last_gasp" else "Power up"},
                )
                assert store_event(session=session, event=event, received_at=moment) is True
        started = EventRecord(
            mine.gateway_id, None, "gateway_started", moment - timedelta(minutes=1), {}
        )
        assert store_event(session=session, event=started, received_at=moment) is True
    return {"mine": mine, "theirs": theirs, "moment": moment, "admin": make_user(factory, "admin")}


@pytest.fixture(scope="module")
def server(database_url: str, engine: Engine, store: TimeSeriesStore) -> Iterator[LiveServer]:
    app = build_app(settings_for(database_url), engine, store)
    with LiveServer(app) as running:
        running.app = app  # type: ignore[attr-defined]
        yield running


def bearer(factory: sessionmaker[Session], user_id: int, scopes: list[str]) -> dict[str, str]:
    _, secret = api_token(factory, user_id, scopes)
    return {"Authorization": f"Bearer {secret}"}


def test_the_api_lists_filters_and_pages_events(
    server: LiveServer, factory: sessionmaker[Session], world: dict[str, Any]
) -> None:
    mine: Customer = world["mine"]
    headers = bearer(factory, world["admin"], ["events:read"])
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        page = client.get("/api/v1/events", params={"gateway_id": mine.gateway_id})
        assert page.status_code == 200, page.text
        body = page.json()
        assert [e["kind"] for e in body["items"]] == [
            "power_restored",
            "last_gasp",
            "gateway_started",
        ]
        gasp = body["items"][1]
        assert gasp["meter_serial"] == mine.serial and gasp["severity"] == "critical"
        assert datetime.fromisoformat(gasp["occurred_at"]) == world["moment"]
        assert gasp["details"] == {"name": "Power down"}

        first = client.get("/api/v1/events", params={"gateway_id": mine.gateway_id, "limit": 2})
        assert first.json()["next_offset"] == 2
        rest = client.get(
            "/api/v1/events", params={"gateway_id": mine.gateway_id, "limit": 2, "offset": 2}
        )
        assert [e["kind"] for e in rest.json()["items"]] == ["gateway_started"]
        assert rest.json()["next_offset"] is None

        gasps = client.get("/api/v1/events", params=[("kind", "last_gasp"), ("kind", "tamper")])
        assert {e["meter_serial"] for e in gasps.json()["items"]} >= {mine.serial}
        assert {e["kind"] for e in gasps.json()["items"]} == {"last_gasp"}
        since = (world["moment"] + timedelta(minutes=1)).isoformat()
        later = client.get("/api/v1/events", params={"meter": mine.serial, "since": since})
        assert [e["kind"] for e in later.json()["items"]] == ["power_restored"]

        meter = client.get(f"/api/v1/meters/{mine.serial}/events")
        assert [e["kind"] for e in meter.json()["items"]] == ["power_restored", "last_gasp"]

        inverted = client.get(
            "/api/v1/events",
            params={"since": "2025-03-02T00:00:00Z", "until": "2025-03-01T00:00:00Z"},
        )
        assert inverted.status_code == 422
        assert "since" in inverted.json()["detail"]
        naive = client.get("/api/v1/events", params={"since": "2025-03-02T00:00:00"})
        assert naive.status_code == 422
        assert client.get("/api/v1/events", params={"severity": "dire"}).status_code == 422
        assert client.get("/api/v1/meters/NEVER-INSTALLED/events").status_code == 404


def test_a_customer_reads_the_events_of_its_own_meter_only(
    server: LiveServer, factory: sessionmaker[Session], world: dict[str, Any]
) -> None:
    mine: Customer = world["mine"]
    theirs: Customer = world["theirs"]
    headers = bearer(factory, mine.user_id, ["events:read"])
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        own = client.get(f"/api/v1/meters/{mine.serial}/events")
        assert own.status_code == 200
        assert {e["meter_serial"] for e in own.json()["items"]} == {mine.serial}
        other = client.get(f"/api/v1/meters/{theirs.serial}/events")
        assert other.status_code == 403
        assert theirs.serial not in other.text.replace(f"/meters/{theirs.serial}/", "")
        listing = client.get("/api/v1/events", params={"meter": theirs.serial})
        assert listing.status_code == 403


def console(server: LiveServer, factory: sessionmaker[Session], user_id: int) -> httpx.Client:
    _, token = session_token(factory, user_id)
    settings = server.app.state.settings  # type: ignore[attr-defined]
    return httpx.Client(
        base_url=server.url,
        headers=cookie_headers(settings, token, state_changing=False),
        timeout=30,
    )


def event_rows(html: str) -> list[str]:
    return re.findall(r'<tr class="event[^"]*" data-kind="[^"]+"', html)


def test_the_console_shows_events_highlighted_and_an_offline_gateway(
    server: LiveServer, factory: sessionmaker[Session], world: dict[str, Any]
) -> None:
    mine: Customer = world["mine"]
    shown_time = world["moment"].strftime("%Y-%m-%d %H:%M:%S UTC")
    with console(server, factory, world["admin"]) as client:
        dashboard = client.get("/console/")
        assert dashboard.status_code == 200
        assert "Recent events" in dashboard.text
        assert '<tr class="event event-alert" data-kind="last_gasp"' in dashboard.text
        assert '<tr class="event" data-kind="power_restored"' in dashboard.text
        assert "need attention" in dashboard.text

        meter = client.get(f"/console/meters/{mine.serial}")
        assert meter.status_code == 200
        section = meter.text.split('id="events"', 1)[1]
        assert len(event_rows(section)) == 2
        assert shown_time in section  # the meter's time of the power cut
        assert "Power down" in section

        gateway = client.get(f"/console/gateways/{mine.gateway_id}")
        # Registered, never reported a status: offline, and the page says so.
        assert 'id="offline-notice"' in gateway.text
        assert 'data-online="false"' in gateway.text
        assert len(event_rows(gateway.text.split('id="events"', 1)[1])) == 3

    with console(server, factory, mine.user_id) as client:
        own = client.get(f"/console/meters/{mine.serial}")
        assert own.status_code == 200
        assert len(event_rows(own.text.split('id="events"', 1)[1])) == 2
        assert f"/console/gateways/{mine.gateway_id}" not in own.text  # no fleet link
        assert client.get(f"/console/meters/{world['theirs'].serial}").status_code == 403
