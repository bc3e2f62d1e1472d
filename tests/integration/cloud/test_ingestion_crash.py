"""Issue 7's crash test: exactly-once storage through a killed worker and an influxd restart.

Strategy: everything real and dedicated to this test — its own Mosquitto and
influxd (tests/servers.py) in temporary folders, a SQLite operational DB with
a registered fleet, and two `voltstack-cloud ingest` worker *processes* on one
MQTT 5 shared subscription writing to influxd. A publisher thread streams
uplink batches (QoS 1) from every gateway while the main thread, in the middle
of the stream, SIGKILLs one worker (and starts it again under the same client
id, as a supervisor would) and then stops influxd and starts it again on the
same folder and port. At the end, InfluxQL COUNTs must equal the number of
distinct (meter, OBIS, timestamp) published — nothing lost, nothing doubled
— sampled series must hold the published values, and no dead letter may
have been written (an outage must never dead-letter good data).

Each phase waits on a condition (batches published, workers ready, points
counted), never on a fixed sleep; the timeouts are generous for a shared
2-core machine.
"""

from __future__ import annotations

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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from cloud.core.db import make_engine, session_factory, unit_of_work, upgrade_database
from cloud.fleet import service
from cloud.ingestion.models import DeadLetter, IngestionStatistics
from fastcodec.obis import parse_obis
from fastcodec.uplink import Batch, Reading, encode_batch
from tests.servers import (
    InfluxServer,
    MosquittoServer,
    free_port,
    start_influxd,
    start_mosquitto,
    stop,
)

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DATABASE = "crash"
GATEWAYS = 6
METERS_PER_GATEWAY = 8
# (OBIS, unit, value of meter m at step n): each inside its quantity's physical range.
QUANTITIES: tuple[tuple[str, str, Callable[[int, int], float]], ...] = (
    ("1-0:1.8.0", "kWh", lambda m, n: 1000.0 * m + 0.25 * n),
    ("1-0:1.7.0", "kW", lambda m, n: 1.5 + m + (n % 7) * 0.125),
    ("1-0:32.7.0", "V", lambda m, n: 229.0 + (m + n) % 5),
    ("1-0:31.7.0", "A", lambda m, n: 4.0 + (m * n) % 11 * 0.5),
)
BATCHES_PER_GATEWAY = 40  # 6 × 40 batches × 32 readings = 7,680 readings
PUBLISH_INTERVAL_S = 0.25  # one batch from every gateway per round: a 10 s stream
START_MS = int((datetime.now(UTC) - timedelta(days=2)).timestamp()) // 60 * 60_000


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.05)


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)
    except OSError:
        return 0


# --- the parts -------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """One `voltstack-cloud ingest` process under a stable client id."""

    client_id: str
    command: list[str]
    log: Path
    metrics_port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=PROJECT_ROOT,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"{self.client_id} died:\n{self.tail()}"
        return http_status(self.metrics_port, "/ready") == 200

    def metric(self, name: str) -> float:
        """One unlabelled sample of the worker's /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith(f"voltstack_ingest_{name} "):
                    return float(line.split()[1])
        raise AssertionError(f"no {name} in the metrics of {self.client_id}")

    def kill_9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        if self.process is not None:
            stop(self.process)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


@dataclass
class Publisher:
    """Streams uplink batches from every gateway, one round per interval, QoS 1."""

    broker: MosquittoServer
    credentials: dict[str, str]  # gateway id → broker password
    sent: dict[tuple[str, str, int], float] = field(default_factory=dict)
    batches_published: int = 0
    error: BaseException | None = None

    def readings(self, gateway_id: str, step: int) -> list[Reading]:
        timestamp_ms = START_MS + step * 60_000
        return [
            Reading(f"{gateway_id}-M{m}", parse_obis(obis), timestamp_ms, value(m, step), unit, 0)
            for m in range(METERS_PER_GATEWAY)
            for obis, unit, value in QUANTITIES
        ]

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by the test, not lost in a thread
            self.error = error

    def _run(self) -> None:
        clients = {gateway: self._connect(gateway, pw) for gateway, pw in self.credentials.items()}
        try:
            for step in range(BATCHES_PER_GATEWAY):
                round_started = time.monotonic()
                pending = []
                for gateway, client in clients.items():
                    rows = self.readings(gateway, step)
                    batch = Batch.from_readings(gateway, step + 1, int(time.time() * 1000), rows)
                    pending.append(
                        client.publish(f"vs/v1/{gateway}/readings", encode_batch(batch), qos=1)
                    )
                    for row, (obis, _unit, _value) in zip(
                        rows, QUANTITIES * METERS_PER_GATEWAY, strict=True
                    ):
                        self.sent[(row.meter, obis, row.timestamp_ms)] = row.value
                for info in pending:  # the broker has it (PUBACK) before we count it
                    info.wait_for_publish(30)
                    assert info.is_published(), "the broker did not acknowledge a batch"
                self.batches_published += len(pending)
                time.sleep(max(0.0, PUBLISH_INTERVAL_S - (time.monotonic() - round_started)))
        finally:
            for client in clients.values():
                client.disconnect()
                client.loop_stop()

    def _connect(self, gateway: str, password: str) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gateway)
        client.username_pw_set(gateway, password)
        connected = threading.Event()
        client.on_connect = lambda *_args: connected.set()
        client.connect(self.broker.host, self.broker.port, keepalive=10)
        client.loop_start()
        assert connected.wait(10), f"{gateway} did not connect"
        return client


# --- fixtures ----------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = start_mosquitto(tmp_path / "mosquitto")
    yield server
    server.stop()


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxServer]:
    folder = tmp_path / "influxd"
    folder.mkdir()
    server = start_influxd(folder)
    yield server
    server.stop()


# --- the test ------------------------------------------------------------------------


def test_kill_9_a_worker_and_restart_influxd_mid_stream_exactly_once(
    broker: MosquittoServer, influx: InfluxServer, tmp_path: Path
) -> None:
    ops_url = f"sqlite:///{tmp_path / 'ops.sqlite'}"
    upgrade_database(ops_url)
    engine = make_engine(ops_url)
    sessions = session_factory(engine)
    credentials = {}
    with unit_of_work(sessions) as session:
        for g in range(GATEWAYS):
            gateway_id = f"gw-{g:02d}-{uuid.uuid4().hex[:6]}"
            _gateway, password = service.register_gateway(
                session=session, gateway_id=gateway_id, name=f"crash {g}", site="test"
            )
            for m in range(METERS_PER_GATEWAY):
                service.register_meter(
                    session=session,
                    serial=f"{gateway_id}-M{m}",
                    model="eastron-sdm630",
                    protocol="modbus",
                    gateway_id=gateway_id,
                    installed_at=datetime(2020, 1, 1, tzinfo=UTC),
                )
            credentials[gateway_id] = password
    for gateway_id, password in credentials.items():
        prefix = f"vs/v1/{gateway_id}"
        broker.add_user(
            gateway_id, password, [f"topic write {prefix}/#", f"topic read {prefix}/cmd/#"]
        )

    (tmp_path / "mqtt-password").write_text(broker.admin_password + "\n")
    (tmp_path / "influx-password").write_text(influx.admin_password + "\n")
    group = f"crash{uuid.uuid4().hex[:6]}"

    def worker(slot: str) -> WorkerProcess:
        port = free_port()
        client_id = f"ingest-{slot}-{group}"
        command = [
            str(Path(sys.executable).with_name("voltstack-cloud")),
            "ingest",
            "--broker",
            f"mqtt://{broker.host}:{broker.port}",
            "--username",
            broker.admin_username,
            "--password-file",
            str(tmp_path / "mqtt-password"),
            "--database",
            ops_url,
            "--store",
            influx.url,
            "--influx-db",
            DATABASE,
            "--influx-username",
            influx.admin_username,
            "--influx-password-file",
            str(tmp_path / "influx-password"),
            "--share-group",
            group,
            "--client-id",
            client_id,
            "--metrics-port",
            str(port),
        ]
        return WorkerProcess(client_id, command, tmp_path / f"worker-{slot}.log", port)

    workers = [worker("a"), worker("b")]
    publisher = Publisher(broker, credentials)
    streaming = threading.Thread(target=publisher.run, name="publisher", daemon=True)
    total_batches = GATEWAYS * BATCHES_PER_GATEWAY

    def published(fraction: float) -> Callable[[], bool]:
        def reached() -> bool:
            assert publisher.error is None, f"publisher failed: {publisher.error!r}"
            return publisher.batches_published >= fraction * total_batches

        return reached

    try:
        for one in workers:
            one.start()
        for one in workers:
            wait_for(one.ready, f"worker {one.client_id} to be ready")
        streaming.start()

        # kill -9 a worker mid-stream; its supervisor restarts it under the same id.
        wait_for(published(0.25), "a quarter of the stream")
        workers[0].kill_9()
        wait_for(published(0.4), "more of the stream while one worker is dead")
        workers[0].start()
        assert publisher.batches_published < total_batches, "the stream ended too early"

        # influxd goes away under both workers, and comes back on the same folder and port.
        wait_for(published(0.55), "more than half of the stream")
        influx.stop()
        wait_for(published(0.7), "more of the stream while influxd is down")
        influx.start()
        assert publisher.batches_published < total_batches, "the stream ended too early"

        streaming.join(timeout=60)
        assert not streaming.is_alive(), "the publisher did not finish"
        assert publisher.error is None, f"publisher failed: {publisher.error!r}"
        expected = len(publisher.sent)
        assert expected == total_batches * METERS_PER_GATEWAY * len(QUANTITIES)

        def total() -> int:
            series = influx.query('SELECT COUNT("value") FROM "reading"', DATABASE)
            found = series["results"][0].get("series")  # type: ignore[index]
            return int(found[0]["values"][0][1]) if found else 0

        try:
            wait_for(lambda: total() >= expected, f"{expected} points in influxd", 45)
        except AssertionError:
            raise AssertionError(
                f"{total()} of {expected} points;\n"
                + "\n".join(f"--- {w.client_id}\n{w.tail()}" for w in workers)
            ) from None
        for one in workers:
            wait_for(one.ready, f"worker {one.client_id} to be ready again")
        # The outage really hit the workers: they retried instead of acknowledging.
        assert sum(one.metric("store_errors_total") for one in workers) > 0
    finally:
        for one in workers:
            one.terminate()

    # Every worker is gone now: nothing can arrive late, the counts are final.
    assert total() == expected
    per_series = influx.query(
        'SELECT COUNT("value") FROM "reading" GROUP BY "meter", "obis"', DATABASE
    )
    counts = {
        (one["tags"]["meter"], one["tags"]["obis"]): one["values"][0][1]
        for one in per_series["results"][0]["series"]  # type: ignore[index]
    }
    assert len(counts) == GATEWAYS * METERS_PER_GATEWAY * len(QUANTITIES)
    assert set(counts.values()) == {BATCHES_PER_GATEWAY}

    # Values and timestamps of a sample of series, every gateway, several quantities.
    for g, gateway_id in enumerate(credentials):
        meter = f"{gateway_id}-M{g % METERS_PER_GATEWAY}"
        obis = QUANTITIES[g % len(QUANTITIES)][0]
        rows = influx.query(
            f'SELECT "value" FROM "reading" WHERE "meter" = \'{meter}\' '
            f"AND \"obis\" = '{obis}' ORDER BY time ASC",
            DATABASE,
        )["results"][0]["series"][0]["values"]  # type: ignore[index]
        stored = [(ns // 1_000_000, value) for ns, value in rows]
        assert stored == sorted(
            (ts, value) for (m, o, ts), value in publisher.sent.items() if (m, o) == (meter, obis)
        )

    with unit_of_work(sessions) as session:
        letters = session.scalars(select(DeadLetter.reason_code)).all()
        batches = session.scalar(select(func.sum(IngestionStatistics.batches)))
    assert letters == [], "an outage must not dead-letter good data"
    # Bookkeeping saw every batch at least once (redeliveries count again).
    assert batches is not None and batches >= total_batches
    engine.dispose()
