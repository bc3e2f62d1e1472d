"""The ingestion worker on a real Mosquitto, real stores and a SQLite operational DB."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.db import make_engine, session_factory, unit_of_work, upgrade_database
from cloud.fleet import service
from cloud.fleet.models import GatewayStatusEvent
from cloud.ingestion.models import DeadLetter
from cloud.ingestion.validation import ValidationRules
from cloud.ingestion.worker import IngestionWorker, WorkerConfig
from cloud.timeseries import (
    InfluxStore,
    PointsRejected,
    RetryPolicy,
    SqliteStore,
    StoreUnavailable,
)
from cloud.timeseries.store import from_ms
from fastcodec.obis import parse_obis
from fastcodec.uplink import Batch, Reading, decode_batch, encode_batch
from tests.servers import InfluxServer, MosquittoServer, free_port

pytestmark = pytest.mark.integration

START_MS = int((datetime.now(UTC) - timedelta(days=2)).timestamp()) // 60 * 60_000
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# --- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ops_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('ingest-ops') / 'ops.sqlite'}"
    upgrade_database(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def sessions(ops_engine: Engine) -> sessionmaker[Session]:
    return session_factory(ops_engine)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "series.sqlite")
    yield opened
    opened.close()


class FlakyStore:
    """A real store that can be made to fail like a dead server (StoreUnavailable)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = False
        self.refused = 0

    def write_batch(self, batch: Batch) -> int:
        if self.down:
            self.refused += 1
            raise StoreUnavailable("injected outage")
        return int(self.inner.write_batch(batch))

    def ping(self) -> bool:
        return not self.down and bool(self.inner.ping())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class GatewayClient:
    """A gateway's own broker account publishing under its prefix."""

    def __init__(self, broker: MosquittoServer, gateway_id: str, *, will: bool = False) -> None:
        self.gateway_id = gateway_id
        _, password = broker.add_gateway(gateway_id)
        prefix = f"vs/v1/{gateway_id}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gateway_id)
        self.client.username_pw_set(gateway_id, password)
        if will:
            self.client.will_set(f"{prefix}/status", json.dumps({"online": False}), 1, True)
        connected = threading.Event()
        self.client.on_connect = lambda *_args: connected.set()
        self.client.connect(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        assert connected.wait(5), "gateway did not connect"

    def publish(self, kind: str, payload: bytes | str, retain: bool = False) -> None:
        info = self.client.publish(f"vs/v1/{self.gateway_id}/{kind}", payload, 1, retain)
        info.wait_for_publish(5)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Vanish without DISCONNECT (power cut): the broker sends the last will."""
        self.client.loop_stop()
        self.client._sock_close()
        self.client._reset_sockets()


@pytest.fixture
def fleet(
    mosquitto: MosquittoServer, sessions: sessionmaker[Session]
) -> Iterator[Callable[..., GatewayClient]]:
    made: list[GatewayClient] = []

    def make(meters: tuple[str, ...] = ("M1", "M2"), will: bool = False) -> GatewayClient:
        gateway_id = f"gw-{uuid.uuid4().hex[:8]}"
        with unit_of_work(sessions) as session:
            service.register_gateway(session=session, gateway_id=gateway_id, name="t", site="t")
            for serial in meters:
                service.register_meter(
                    session=session,
                    serial=f"{gateway_id}-{serial}",
                    model="eastron-sdm630",
                    protocol="modbus",
                    gateway_id=gateway_id,
                    installed_at=datetime(2020, 1, 1, tzinfo=UTC),
                )
        client = GatewayClient(mosquitto, gateway_id, will=will)
        made.append(client)
        return client

    yield make
    for client in made:
        if client.client.is_connected():
            client.close()


@pytest.fixture
def make_worker(
    mosquitto: MosquittoServer, sessions: sessionmaker[Session]
) -> Iterator[Callable[..., IngestionWorker]]:
    started: list[IngestionWorker] = []
    group = f"t{uuid.uuid4().hex[:8]}"

    def make(store: Any, client_id: str | None = None, **config: Any) -> IngestionWorker:
        settings = WorkerConfig(
            host=mosquitto.host,
            port=mosquitto.port,
            username=mosquitto.admin_username,
            password=mosquitto.admin_password,
            client_id=client_id or f"ingest-{uuid.uuid4().hex[:8]}",
            share_group=group,
            session_expiry_s=60,
            max_in_flight=8,
            retry_initial_s=0.05,
            retry_max_s=0.2,
            **config,
        )
        worker = IngestionWorker(settings, store=store, sessions=sessions)
        worker.start()
        started.append(worker)
        wait_for(lambda: worker.connected, "the worker to connect", 10)
        wait_for(worker.subscribed.is_set, "the broker's SUBACK", 10)
        return worker

    yield make
    for worker in started:
        if not worker._stopping.is_set():
            worker.stop()


def kill(worker: IngestionWorker) -> None:
    """Like SIGKILL: no more acks, no DISCONNECT, the socket just closes."""
    worker._stopping.set()
    assert worker._processor is not None
    worker._processor.join()
    worker._client.loop_stop()
    worker._client._sock_close()
    worker._client._reset_sockets()


def readings(gateway: GatewayClient, batch_no: int, per_meter: int = 10) -> list[Reading]:
    return [
        Reading(
            f"{gateway.gateway_id}-{meter}",
            parse_obis("1-0:1.8.0"),
            START_MS + (batch_no * per_meter + i) * 60_000,
            1000.0 + batch_no * per_meter + i + 0.25,
            "kWh",
            0,
        )
        for meter in ("M1", "M2")
        for i in range(per_meter)
    ]


def payload(gateway: GatewayClient, sequence: int, rows: list[Reading]) -> bytes:
    created_at_ms = int(time.time() * 1000)
    return encode_batch(Batch.from_readings(gateway.gateway_id, sequence, created_at_ms, rows))


def dead_letters(sessions: sessionmaker[Session], gateway_id: str) -> list[DeadLetter]:
    with unit_of_work(sessions) as session:
        return list(
            session.scalars(
                select(DeadLetter)
                .where(DeadLetter.gateway_id == gateway_id)
                .order_by(DeadLetter.id)
            )
        )


def http_get(address: tuple[str, int] | None, path: str) -> tuple[int, str]:
    assert address is not None
    try:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


# --- tests -----------------------------------------------------------------------


def test_batches_are_stored_exactly_and_counted(
    fleet: Callable[..., GatewayClient],
    make_worker: Callable[..., IngestionWorker],
    store: SqliteStore,
    sessions: sessionmaker[Session],
) -> None:
    gateway = fleet()
    worker = make_worker(store, metrics_port=0)
    sent = [readings(gateway, n) for n in range(5)]
    for sequence, rows in enumerate(sent, start=1):
        gateway.publish("readings", payload(gateway, sequence, rows))
    wait_for(lambda: worker.metrics.snapshot()["batches"] == 5, "five batches")

    assert store.count() == 100
    meter = f"{gateway.gateway_id}-M1"
    points = store.query_range(meter, "1-0:1.8.0", from_ms(START_MS), from_ms(START_MS + 10**9))
    expected = [r for rows in sent for r in rows if r.meter == meter]
    assert [(p.at, p.value, p.unit) for p in points] == [
        (from_ms(r.timestamp_ms), r.value, "kWh") for r in expected
    ]
    with unit_of_work(sessions) as session:
        stats = service.ingestion_statistics(
            session=session,
            gateway_id=gateway.gateway_id,
            since=datetime.now(UTC) - timedelta(hours=1),
            until=datetime.now(UTC) + timedelta(hours=1),
        )
        assert sum(s.readings_accepted for s in stats) == 100
        assert sum(s.batches for s in stats) == 5
        assert (
            service.get_gateway(session=session, gateway_id=gateway.gateway_id).last_sequence == 5
        )

    # A batch with an impossible voltage and a reading from 2 years ago: the rest is stored,
    # the dropped readings are dead-lettered as a batch of their own.
    good = readings(gateway, 5)
    bad_value = good[0]._replace(obis=parse_obis("1-0:32.7.0"), value=5000.0, unit="V")
    too_old = good[1]._replace(timestamp_ms=START_MS - 800 * 86_400_000)
    gateway.publish("readings", payload(gateway, 7, [bad_value, too_old, *good[2:]]))
    wait_for(lambda: worker.metrics.snapshot()["batches"] == 6, "the sixth batch")
    assert store.count() == 118
    letters = {letter.reason_code: letter for letter in dead_letters(sessions, gateway.gateway_id)}
    assert set(letters) == {"value_out_of_range", "timestamp_out_of_window"}
    assert list(decode_batch(letters["value_out_of_range"].payload).readings()) == [bad_value]
    assert list(decode_batch(letters["timestamp_out_of_window"].payload).readings()) == [too_old]

    snapshot = worker.metrics.snapshot()
    assert snapshot["readings_stored"] == 118
    assert snapshot["readings_rejected"] == 2
    assert snapshot["sequence_gaps"] == 1  # sequence 6 never came
    assert snapshot["lag_s"] is not None and snapshot["lag_s"] < 30
    status, text = http_get(worker.metrics_address, "/metrics")
    assert status == 200
    assert "voltstack_ingest_batches_total 6" in text
    assert 'voltstack_ingest_dead_letters_total{reason="value_out_of_range"} 1' in text
    assert http_get(worker.metrics_address, "/ready") == (200, "ready\n")
    assert http_get(worker.metrics_address, "/nope")[0] == 404


def test_bad_messages_are_dead_lettered_and_the_stream_goes_on(
    fleet: Callable[..., GatewayClient],
    make_worker: Callable[..., IngestionWorker],
    store: SqliteStore,
    sessions: sessionmaker[Session],
) -> None:
    gateway, other = fleet(), fleet()
    worker = make_worker(store, rules=ValidationRules(max_payload_bytes=4000))
    # M1 of the other gateway does not belong to this one: the whole batch is refused.
    foreign = [r._replace(meter=f"{other.gateway_id}-M1") for r in readings(gateway, 0)[:1]]
    gateway.publish("readings", payload(gateway, 1, readings(gateway, 0)[1:] + foreign))
    valid = payload(gateway, 2, readings(gateway, 1))
    gateway.publish("readings", b"\x00garbage, not a batch")
    gateway.publish("readings", valid[:-10])
    gateway.publish("readings", payload(gateway, 3, readings(gateway, 2, per_meter=200)))
    gateway.publish("readings", b"VSUB\x01" + bytes(40))
    gateway.publish("readings", valid)
    wait_for(lambda: store.count() == 20, "the valid batch")
    wait_for(lambda: len(dead_letters(sessions, gateway.gateway_id)) == 5, "five dead letters")

    letters = dead_letters(sessions, gateway.gateway_id)
    assert [letter.reason_code for letter in letters] == [
        "meter_not_on_gateway",
        "undecodable",
        "bad_checksum",
        "too_large",
        "bad_checksum",
    ]
    assert decode_batch(letters[0].payload).sequence == 1
    assert f"{other.gateway_id}-M1" in letters[0].reason
    assert letters[1].payload == b"\x00garbage, not a batch"
    assert letters[3].payload_size_bytes > 4000
    assert store.count(meter=f"{other.gateway_id}-M1") == 0
    assert worker.metrics.snapshot()["dead_letters_total"] == 5


def test_two_workers_share_the_load_and_a_killed_one_loses_nothing(
    fleet: Callable[..., GatewayClient],
    make_worker: Callable[..., IngestionWorker],
    store: SqliteStore,
) -> None:
    gateway = fleet()
    gate = FlakyStore(store)
    first = make_worker(gate, client_id=f"ingest-a-{uuid.uuid4().hex[:6]}")
    second = make_worker(store)
    sequence = 0

    def send(batches: int) -> None:
        nonlocal sequence
        for _ in range(batches):
            sequence += 1
            gateway.publish("readings", payload(gateway, sequence, readings(gateway, sequence)))

    send(10)
    wait_for(lambda: store.count() == 200, "the first ten batches")
    assert first.metrics.snapshot()["batches"] > 0
    assert second.metrics.snapshot()["batches"] > 0

    # The first worker's store hangs: it holds messages without acking; then it dies.
    gate.down = True
    send(10)
    wait_for(lambda: gate.refused > 0, "the first worker to hold a message")
    kill(first)
    send(4)
    assert store.count() < 24 * 20

    # Restarted under the same client id, it gets its session's messages back.
    make_worker(store, client_id=first.config.client_id)
    wait_for(lambda: store.count() == 24 * 20, "every reading, once")
    time.sleep(0.2)
    assert store.count() == 24 * 20


def test_store_down_nothing_acked_nothing_lost(
    fleet: Callable[..., GatewayClient],
    make_worker: Callable[..., IngestionWorker],
    store: SqliteStore,
) -> None:
    gateway = fleet()
    flaky = FlakyStore(store)
    flaky.down = True
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    worker = make_worker(flaky, client_id=client_id, metrics_port=0)
    for sequence in (1, 2, 3):
        gateway.publish("readings", payload(gateway, sequence, readings(gateway, sequence)))
    wait_for(lambda: worker.metrics.snapshot()["store_errors"] >= 3, "retries")
    assert not worker.ready()
    assert http_get(worker.metrics_address, "/ready")[0] == 503
    assert store.count() == 0
    worker.stop()  # nothing was acknowledged: the broker keeps all three

    again = make_worker(flaky, client_id=client_id)
    wait_for(lambda: again.metrics.snapshot()["store_errors"] >= 1, "retries after restart")
    flaky.down = False  # the store comes back
    wait_for(lambda: store.count() == 60, "all three batches")
    wait_for(again.ready, "ready again")


def test_status_birth_and_last_will_are_recorded(
    fleet: Callable[..., GatewayClient],
    make_worker: Callable[..., IngestionWorker],
    store: SqliteStore,
    sessions: sessionmaker[Session],
) -> None:
    worker = make_worker(store)
    gateway = fleet(will=True)
    birth = {"online": True, "gateway": gateway.gateway_id, "version": "1.2.3", "buffer_depth": 7}
    gateway.publish("status", json.dumps(birth), retain=True)
    gateway.publish(
        "events", json.dumps({"event": "gateway_started", "at_ms": int(time.time() * 1000)})
    )
    gateway.publish("events", b"{not json")
    wait_for(lambda: worker.metrics.snapshot()["status_messages"] == 1, "the birth")
    gateway.drop()
    wait_for(lambda: worker.metrics.snapshot()["status_messages"] == 2, "the last will")

    with unit_of_work(sessions) as session:
        events = list(
            session.scalars(
                select(GatewayStatusEvent)
                .where(GatewayStatusEvent.gateway_id == gateway.gateway_id)
                .order_by(GatewayStatusEvent.at)
            )
        )
        row = service.get_gateway(session=session, gateway_id=gateway.gateway_id)
        assert (row.online, row.agent_version) == (False, "1.2.3")
    assert [(e.online, e.reason) for e in events] == [(True, "birth"), (False, "last will")]
    assert events[0].buffer_depth_readings == 7
    assert worker.metrics.snapshot()["events"] == 1
    assert [d.reason_code for d in dead_letters(sessions, gateway.gateway_id)] == ["undecodable"]


def test_influx_end_to_end_through_an_outage(
    fleet: Callable[..., GatewayClient],
    make_worker: Callable[..., IngestionWorker],
    influxd: InfluxServer,
) -> None:
    gateway = fleet()
    database = f"ingest_{uuid.uuid4().hex[:8]}"
    fast = RetryPolicy(max_attempts=1, max_total_s=0.5)
    dead = InfluxStore(f"http://127.0.0.1:{free_port()}", database, retry=fast, timeout_s=0.5)
    live = InfluxStore(
        influxd.url,
        database,
        username=influxd.admin_username,
        password=influxd.admin_password,
    )
    try:
        client_id = f"ingest-{uuid.uuid4().hex[:8]}"
        worker = make_worker(dead, client_id=client_id)
        for sequence in (1, 2):
            gateway.publish("readings", payload(gateway, sequence, readings(gateway, sequence)))
        wait_for(lambda: worker.metrics.snapshot()["store_errors"] >= 2, "influx refusing")
        assert not worker.ready()
        worker.stop()

        again = make_worker(live, client_id=client_id)
        gateway.publish("readings", payload(gateway, 3, readings(gateway, 3)))
        wait_for(lambda: again.metrics.snapshot()["batches"] == 3, "three batches")
        assert live.count() == 60
        meter = f"{gateway.gateway_id}-M2"
        points = live.query_range(meter, "1-0:1.8.0", from_ms(0), from_ms(START_MS + 10**9))
        assert [p.value for p in points] == [
            r.value for n in (1, 2, 3) for r in readings(gateway, n) if r.meter == meter
        ]
        assert all(math.isfinite(p.value) for p in points)
    finally:
        dead.close()
        live.close()


def test_cli_ingest_runs_until_sigterm(
    fleet: Callable[..., GatewayClient],
    mosquitto: MosquittoServer,
    ops_engine: Engine,
    tmp_path: Path,
) -> None:
    gateway = fleet()
    password_file = tmp_path / "password"
    password_file.write_text(mosquitto.admin_password + "\n")
    series = tmp_path / "cli-series.sqlite"
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from cloud.cli import app; app()",
            "ingest",
            "--broker",
            f"mqtt://{mosquitto.host}:{mosquitto.port}",
            "--username",
            mosquitto.admin_username,
            "--password-file",
            str(password_file),
            "--database",
            ops_engine.url.render_as_string(hide_password=False),
            "--store",
            f"sqlite:///{series}",
            "--share-group",
            f"cli{uuid.uuid4().hex[:6]}",
            "--client-id",
            f"cli-{uuid.uuid4().hex[:6]}",
            "--metrics-port",
            str(port),
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: http_get_quiet(port, "/ready") == 200, "the CLI worker", 20)
        gateway.publish("readings", payload(gateway, 1, readings(gateway, 1)))

        def stored() -> bool:
            _status, text = http_get(("127.0.0.1", port), "/metrics")
            return "voltstack_ingest_readings_stored_total 20" in text

        wait_for(stored, "the batch through the CLI worker")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output.decode(errors="replace")
    opened = SqliteStore(series)
    try:
        assert opened.count() == 20
    finally:
        opened.close()


def http_get_quiet(port: int, path: str) -> int:
    try:
        return http_get(("127.0.0.1", port), path)[0]
    except OSError:
        return 0


class GatedStore:
    """A real store whose writes wait at a gate and are recorded, refusals included.

    The gate holds the worker inside its first write so that the messages published
    meanwhile are already queued when it comes back: they are then handled as one group.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.writing = threading.Event()
        self.attempts: list[tuple[int, int, str]] = []  # (sequence, readings, outcome)

    def write_batch(self, batch: Batch) -> int:
        self.writing.set()
        assert self.gate.wait(30), "the test never opened the gate"
        try:
            written = int(self.inner.write_batch(batch))
        except PointsRejected:
            self.attempts.append((batch.sequence, len(batch), "refused"))
            raise
        self.attempts.append((batch.sequence, len(batch), "stored"))
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_store_refusal_inside_a_group_dead_letters_only_that_message(
    fleet: Callable[..., GatewayClient],
    make_worker: Callable[..., IngestionWorker],
    influxd: InfluxServer,
    sessions: sessionmaker[Session],
) -> None:
    # A serial ending in a backslash is a valid meter serial, but InfluxDB would read the
    # backslash as an escape: the InfluxDB store refuses such a batch for good.
    bad_serial = "M3\\"
    gateway = fleet(meters=("M1", "M2", bad_serial))
    live = InfluxStore(
        influxd.url,
        f"ingest_{uuid.uuid4().hex[:8]}",
        username=influxd.admin_username,
        password=influxd.admin_password,
    )
    store = GatedStore(live)
    try:
        worker = make_worker(store)
        # Other tests' gateways may publish on the shared topics too: count ours.
        topic = f"vs/v1/{gateway.gateway_id}/readings"
        acked: list[int] = []
        ack = worker._ack

        def record_ack(item: Any) -> None:
            if item.topic == topic:
                acked.append(item.mid)
            ack(item)

        worker._ack = record_ack  # type: ignore[method-assign]
        connection = worker._generation  # unchanged at the end: every _ack sent a PUBACK
        poisoned = readings(gateway, 4)[0]._replace(meter=f"{gateway.gateway_id}-{bad_serial}")
        sent = {n: readings(gateway, n) for n in range(1, 8)}
        sent[4] = [*sent[4], poisoned]
        payloads = {n: payload(gateway, n, rows) for n, rows in sent.items()}

        gateway.publish("readings", payloads[1])
        assert store.writing.wait(15), "the first message never reached the store"
        for n in range(2, 8):  # max_in_flight is 8: all six fit in the worker's queue
            gateway.publish("readings", payloads[n])
        wait_for(lambda: worker._queue.qsize() == 6, "six messages queued behind the first")
        store.gate.set()
        wait_for(lambda: worker.metrics.snapshot()["batches"] == 7, "seven batches")
        wait_for(lambda: len(acked) == 7, "seven acknowledgements")

        merged = sum(len(sent[n]) for n in range(2, 8))
        assert store.attempts == [
            (1, 20, "stored"),
            (2, merged, "refused"),  # the group's one write; then message by message:
            (2, 20, "stored"),
            (3, 20, "stored"),
            (4, 21, "refused"),
            (5, 20, "stored"),
            (6, 20, "stored"),
            (7, 20, "stored"),
        ]
        letters = dead_letters(sessions, gateway.gateway_id)
        assert [letter.reason_code for letter in letters] == ["store_rejected"]
        assert letters[0].payload == payloads[4]
        assert "backslash" in letters[0].reason

        good = [n for n in sent if n != 4]
        assert live.count() == 20 * len(good)
        meter = f"{gateway.gateway_id}-M1"
        points = live.query_range(meter, "1-0:1.8.0", from_ms(0), from_ms(START_MS + 10**9))
        assert [p.value for p in points] == [
            r.value for n in good for r in sent[n] if r.meter == meter
        ]
        # Each message acknowledged once, in the order the broker sent them.
        assert len(acked) == 7
        assert acked == sorted(set(acked))
        assert worker._generation == connection and worker.connected
        snapshot = worker.metrics.snapshot()
        assert snapshot["readings_stored"] == 20 * len(good)
        assert snapshot["readings_rejected"] == 21
        assert snapshot["dead_letters"] == {"store_rejected": 1}
        assert snapshot["store_errors"] == 0
        with unit_of_work(sessions) as session:
            stats = service.ingestion_statistics(
                session=session,
                gateway_id=gateway.gateway_id,
                since=datetime.now(UTC) - timedelta(hours=1),
                until=datetime.now(UTC) + timedelta(hours=1),
            )
            assert sum(s.batches for s in stats) == 7
            assert sum(s.readings_accepted for s in stats) == 20 * len(good)
            assert sum(s.readings_rejected for s in stats) == 21
            assert sum(s.sequence_gaps + s.duplicates for s in stats) == 0
            assert (
                service.get_gateway(session=session, gateway_id=gateway.gateway_id).last_sequence
                == 7
            )
    finally:
        live.close()


def test_a_group_checks_meters_against_their_installation_history(
    sessions: sessionmaker[Session], store: SqliteStore
) -> None:
    # M1 moves from gateway A to gateway B at `moved`: readings taken before the move
    # still belong to A, later ones to B. One group holds batches of both gateways.
    a, b = f"gw-{uuid.uuid4().hex[:8]}", f"gw-{uuid.uuid4().hex[:8]}"
    serial = f"{a}-M1"
    moved_ms = START_MS + 30 * 60_000
    with unit_of_work(sessions) as session:
        for gateway_id in (a, b):
            service.register_gateway(session=session, gateway_id=gateway_id, name="t", site="t")
        service.register_meter(
            session=session,
            serial=serial,
            model="eastron-sdm630",
            protocol="modbus",
            gateway_id=a,
            installed_at=datetime(2020, 1, 1, tzinfo=UTC),
        )
        service.move_meter(session=session, serial=serial, gateway_id=b, at=from_ms(moved_ms))

    def batch_of(gateway_id: str, sequence: int, minutes: range) -> bytes:
        rows = [
            Reading(serial, parse_obis("1-0:1.8.0"), START_MS + m * 60_000, 100.0 + m, "kWh", 0)
            for m in minutes
        ]
        return encode_batch(Batch.from_readings(gateway_id, sequence, START_MS, rows))

    messages = {
        "a before the move": (a, batch_of(a, 1, range(0, 30))),
        "b after the move": (b, batch_of(b, 1, range(30, 40))),
        "a across the move": (a, batch_of(a, 2, range(25, 35))),
        "b before the move": (b, batch_of(b, 2, range(20, 25))),
    }
    worker = IngestionWorker(WorkerConfig(host="127.0.0.1"), store=store, sessions=sessions)
    now = datetime.now(UTC)
    worker.handle_group(
        [(f"vs/v1/{gateway_id}/readings", data, now) for gateway_id, data in messages.values()]
    )

    assert store.count() == 30 + 10
    refused = {
        gateway_id: [
            decode_batch(letter.payload).sequence for letter in dead_letters(sessions, gateway_id)
        ]
        for gateway_id in (a, b)
    }
    assert refused == {a: [2], b: [2]}
    assert all(
        letter.reason_code == "meter_not_on_gateway" and serial in letter.reason
        for gateway_id in (a, b)
        for letter in dead_letters(sessions, gateway_id)
    )


def test_a_group_with_an_empty_batch_books_every_batch(
    fleet: Callable[..., GatewayClient], sessions: sessionmaker[Session], store: SqliteStore
) -> None:
    gateway = fleet()
    worker = IngestionWorker(WorkerConfig(host="127.0.0.1"), store=store, sessions=sessions)
    topic = f"vs/v1/{gateway.gateway_id}/readings"
    now = datetime.now(UTC)
    worker.handle_group(
        [
            (topic, payload(gateway, 1, readings(gateway, 1)), now),
            (topic, payload(gateway, 2, []), now),  # an agent with nothing to send yet
            (topic, payload(gateway, 4, readings(gateway, 4)), now),
        ]
    )
    assert store.count() == 40
    assert dead_letters(sessions, gateway.gateway_id) == []
    snapshot = worker.metrics.snapshot()
    assert (snapshot["batches"], snapshot["sequence_gaps"], snapshot["readings_stored"]) == (
        3,
        1,
        40,
    )
    with unit_of_work(sessions) as session:
        assert (
            service.get_gateway(session=session, gateway_id=gateway.gateway_id).last_sequence == 4
        )
