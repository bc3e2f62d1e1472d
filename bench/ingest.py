"""Sustained ingestion, MQTT to InfluxDB through our workers, against influxd's own ceiling.

`python -m bench ingest`. Everything runs on this machine, in a temporary
folder: a Mosquitto and an influxd (tests/servers.py), a SQLite operational
database with a registered fleet, and `voltstack-cloud ingest` worker
processes — the production shape: one process per core, a shared MQTT 5
subscription, the InfluxDB store, manual acknowledgement after the write.

The fleet: 1,000 gateways × 64 meters × 10 OBIS codes; one round is one
uplink batch per gateway (640 readings, one 15-minute timestamp), 1,000
messages, 640,000 readings. Rounds, each with its own timestamps, into one
database:

1. warm-up: the round posted directly, so that the 640,000 series exist (a
   fleet's series exist after its first quarter-hour; creating them is a
   one-off cost of influxd, not a rate);
2. ceilings: a round pre-encoded as line protocol (fastcodec) and
   pre-gzipped as the workers send it (level 5), POSTed to /write by as
   many concurrent client processes as we run workers — once with one body
   per uplink batch (640 lines), once with the bodies our workers send
   (`--max-group-messages` batches merged, 10,240 lines): influxd's
   physical limit here; our ratio is against the higher of the two;
3. ours: a round pre-encoded as uplink batches, published QoS 1 by a
   separate process as fast as the broker takes them; measured from the
   first publish to the moment the workers' counters (/metrics) reach the
   round, then cross-checked by an InfluxQL COUNT over the round — once
   with one store write per message (``--max-group-messages 1``, the
   worker before grouping) and once as configured by default.

The machine is shared with other work: the rates are noisy, the ratio less.
"""

from __future__ import annotations

import gzip
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from bench._timing import machine_line
from fastcodec import lineprotocol
from fastcodec.obis import parse_obis
from fastcodec.uplink import Batch, encode_batch

GATEWAYS = int(os.environ.get("BENCH_INGEST_GATEWAYS", "1000"))
METERS_PER_GATEWAY = 64
OBIS_CODES = (
    ("1-0:1.8.0", "kWh"),
    ("1-0:2.8.0", "kWh"),
    ("1-0:3.8.0", "kvarh"),
    ("1-0:4.8.0", "kvarh"),
    ("1-0:1.7.0", "kW"),
    ("1-0:2.7.0", "kW"),
    ("1-0:32.7.0", "V"),
    ("1-0:52.7.0", "V"),
    ("1-0:72.7.0", "V"),
    ("1-0:31.7.0", "A"),
)
# One worker process per core: a worker is one Python process (one GIL), and
# the broker, influxd and the publisher need the rest of the machine too.
WORKERS = int(os.environ.get("BENCH_INGEST_WORKERS", str(os.cpu_count() or 2)))
GOAL_READINGS_PER_S = 50_000
GOAL_SHARE_OF_CEILING = 0.70
GZIP_LEVEL = 5  # what InfluxStore sends
GROUP_MESSAGES = 16  # the worker's default max_group_messages
DATABASE = "bench_ingest"
QUARTER_HOUR_MS = 900_000
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def gateway_ids() -> list[str]:
    return [f"gw-bench-{g:04d}" for g in range(GATEWAYS)]


def meter_serial(gateway_id: str, meter: int) -> str:
    return f"{gateway_id.removeprefix('gw-bench-')}-M{meter:02d}"


def fleet_round(timestamp_ms: int, sequence: int) -> list[Batch]:
    """One batch per gateway: each of its meters, each OBIS code, at `timestamp_ms`."""
    codes = [parse_obis(code) for code, _unit in OBIS_CODES]
    units = sorted({unit for _code, unit in OBIS_CODES})
    unit_of = [units.index(unit) for _code, unit in OBIS_CODES]
    batches = []
    for g, gateway_id in enumerate(gateway_ids()):
        meters = [meter_serial(gateway_id, m) for m in range(METERS_PER_GATEWAY)]
        meter_index, obis_index, unit_index, values = [], [], [], []
        for m in range(METERS_PER_GATEWAY):
            for o in range(len(OBIS_CODES)):
                meter_index.append(m)
                obis_index.append(o)
                unit_index.append(unit_of[o])
                # Inside every quantity's physical range: nothing is screened out.
                values.append(float(100 + (g * 7 + m * 3 + o + sequence) % 120))
        count = len(values)
        batches.append(
            Batch(
                gateway_id,
                sequence,
                timestamp_ms,
                meters,
                codes,
                units,
                meter_index,
                obis_index,
                unit_index,
                [timestamp_ms] * count,
                values,
                [0] * count,
            )
        )
    return batches


def register_fleet(url: str) -> None:
    """Gateways and meters in the operational DB (bulk: the setup is not measured)."""
    from sqlalchemy import insert

    from cloud.core.db import make_engine, session_factory, unit_of_work, upgrade_database
    from cloud.fleet.models import Gateway, Meter
    from cloud.fleet.service import hash_broker_password

    upgrade_database(url)
    engine = make_engine(url)
    # The publisher uses the broker's admin account; the hash is never checked.
    password_hash = hash_broker_password("not-used-by-the-benchmark")
    installed_at = datetime(2020, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    with unit_of_work(session_factory(engine)) as session:
        session.execute(
            insert(Gateway),
            [
                {
                    "id": gateway_id,
                    "name": gateway_id,
                    "site": "bench",
                    "created_at": now,
                    "online": False,
                    "broker_username": gateway_id,
                    "broker_password_hash": password_hash,
                }
                for gateway_id in gateway_ids()
            ],
        )
        session.execute(
            insert(Meter),
            [
                {
                    "serial": meter_serial(gateway_id, m),
                    "model": "eastron-sdm630",
                    "protocol": "modbus",
                    "gateway_id": gateway_id,
                    "installed_at": installed_at,
                }
                for gateway_id in gateway_ids()
                for m in range(METERS_PER_GATEWAY)
            ],
        )
    engine.dispose()


# --- direct writes: warm-up and ceiling --------------------------------------------


def line_bodies(batches: list[Batch], per_body: int = 1) -> list[bytes]:
    """Gzipped line protocol, `per_body` batches per body, as the InfluxDB store sends it."""
    texts = [lineprotocol.encode_readings(batch) for batch in batches]
    return [
        gzip.compress("".join(texts[i : i + per_body]).encode(), compresslevel=GZIP_LEVEL)
        for i in range(0, len(texts), per_body)
    ]


def _post_share(
    host: str, port: int, auth: str, bodies: list[bytes], start: Barrier, results: Any
) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=60)
    headers = {
        "Authorization": auth,
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Encoding": "gzip",
    }
    path = f"/write?db={DATABASE}&precision=ns"
    start.wait()
    started = time.time()
    for body in bodies:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 204:
            raise RuntimeError(f"/write answered {response.status}: {data[:200]!r}")
    results.put((started, time.time()))
    connection.close()


def post_directly(host: str, port: int, auth: str, bodies: list[bytes], clients: int) -> float:
    """POST the bodies from `clients` processes at once; seconds from first to last."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(clients)
    results = context.Queue()
    processes = [
        context.Process(
            target=_post_share,
            args=(host, port, auth, bodies[i::clients], start, results),
            name=f"ceiling-{i}",
        )
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    spans = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
        if process.exitcode:
            raise RuntimeError(f"{process.name} failed ({process.exitcode})")
    return max(end for _, end in spans) - min(begin for begin, _ in spans)


# --- through MQTT and our workers -----------------------------------------------------


def _publish_all(
    host: str, port: int, username: str, password: str, messages: list[tuple[str, bytes]], out: Any
) -> None:
    """In its own process: publish everything QoS 1 as fast as the broker acknowledges."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.username_pw_set(username, password)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect(host, port, keepalive=30)
    client.loop_start()
    if not connected.wait(30):
        raise RuntimeError("the publisher could not connect")
    out.put("connected")
    first = time.time()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(300)
    last = time.time()
    client.disconnect()
    client.loop_stop()
    out.put((first, last))


class Workers:
    """`voltstack-cloud ingest` processes on one shared subscription."""

    def __init__(
        self, folder: Path, broker: Any, influx: Any, ops_url: str, count: int, group: int
    ) -> None:
        from tests.servers import free_port

        (folder / "mqtt-password").write_text(broker.admin_password + "\n")
        (folder / "influx-password").write_text(influx.admin_password + "\n")
        self.ports = [free_port() for _ in range(count)]
        self.processes = []
        executable = Path(sys.executable).with_name("voltstack-cloud")
        for slot, port in enumerate(self.ports):
            command = [
                str(executable),
                "ingest",
                "--broker",
                f"mqtt://{broker.host}:{broker.port}",
                "--username",
                broker.admin_username,
                "--password-file",
                str(folder / "mqtt-password"),
                "--database",
                ops_url,
                "--store",
                influx.url,
                "--influx-db",
                DATABASE,
                "--influx-username",
                influx.admin_username,
                "--influx-password-file",
                str(folder / "influx-password"),
                "--client-id",
                f"bench-ingest-{slot}",
                "--metrics-port",
                str(port),
                "--max-group-messages",
                str(group),
            ]
            with (folder / f"worker-{slot}.log").open("ab") as log:
                self.processes.append(
                    subprocess.Popen(
                        command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT
                    )
                )

    def _get(self, port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, ""
        except OSError:
            return 0, ""

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        for port, process in zip(self.ports, self.processes, strict=True):
            while self._get(port, "/ready")[0] != 200:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker on metrics port {port} not ready")
                time.sleep(0.1)

    def metric(self, name: str) -> float:
        """The sum of an unlabelled counter over the workers."""
        total = 0.0
        for port in self.ports:
            _status, text = self._get(port, "/metrics")
            for line in text.splitlines():
                if line.startswith(f"voltstack_ingest_{name} "):
                    total += float(line.split()[1])
        return total

    def stop(self) -> None:
        from tests.servers import stop

        for process in self.processes:
            stop(process)


def count_points(influx: Any, timestamp_ms: int) -> int:
    """Points of the round stamped `timestamp_ms`.

    On a loaded machine influxd may be busy compacting the rounds just written
    and answer slowly: a long timeout and a few attempts, not the fixtures' 10 s.
    """
    statement = f'SELECT COUNT("value") FROM "reading" WHERE time = {timestamp_ms * 1_000_000}'
    query = urllib.parse.urlencode(
        {
            "u": influx.admin_username,
            "p": influx.admin_password,
            "db": DATABASE,
            "q": statement,
            "epoch": "ns",
        }
    )
    request = urllib.request.Request(f"{influx.url}/query?{query}", method="POST")
    for attempt in range(5):
        try:
            with urllib.request.urlopen(request, timeout=120) as reply:
                answer = json.loads(reply.read())
            break
        except OSError:
            if attempt == 4:
                raise
            time.sleep(2)
    series = answer["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def through_workers(
    folder: Path, broker: Any, influx: Any, ops_url: str, batches: list[Batch], group: int
) -> tuple[float, float, int]:
    """Publish the round and wait for the workers to store it.

    Returns:
        (seconds from first publish to the last reading stored, seconds the
        publishing took, readings counted in influxd for the round).
    """
    expected = sum(len(batch) for batch in batches)
    messages = [(f"vs/v1/{batch.gateway_id}/readings", encode_batch(batch)) for batch in batches]
    workers = Workers(folder, broker, influx, ops_url, WORKERS, group)
    try:
        workers.wait_ready()
        context = multiprocessing.get_context("spawn")
        channel = context.Queue()
        publisher = context.Process(
            target=_publish_all,
            args=(
                broker.host,
                broker.port,
                broker.admin_username,
                broker.admin_password,
                messages,
                channel,
            ),
            name="publisher",
        )
        publisher.start()
        if channel.get(timeout=60) != "connected":
            raise RuntimeError("publisher did not connect")
        deadline = time.monotonic() + 600
        while workers.metric("readings_stored_total") < expected:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not store the round in 10 minutes")
            time.sleep(0.2)  # polling costs the workers CPU: keep it rare
        done = time.time()
        first, last = channel.get(timeout=60)
        publisher.join()
        errors = workers.metric("store_errors_total")
        if errors:
            print(f"note: the workers saw {errors:.0f} store errors (retried)")
    finally:
        workers.stop()
    return done - first, last - first, count_points(influx, batches[0].timestamps_ms[0])


def run() -> None:
    from tests.servers import start_influxd, start_mosquitto, stop

    print(machine_line())
    readings_per_round = GATEWAYS * METERS_PER_GATEWAY * len(OBIS_CODES)
    print(
        f"fleet: {GATEWAYS} gateways x {METERS_PER_GATEWAY} meters x {len(OBIS_CODES)} OBIS = "
        f"{readings_per_round:,} readings per round, one batch of "
        f"{METERS_PER_GATEWAY * len(OBIS_CODES)} readings per gateway; {WORKERS} workers"
    )
    base_ms = (int(time.time() * 1000) - 86_400_000) // QUARTER_HOUR_MS * QUARTER_HOUR_MS
    with tempfile.TemporaryDirectory(prefix="voltstack-bench-ingest-") as name:
        folder = Path(name)
        ops_url = f"sqlite:///{folder / 'ops.sqlite'}"
        register_fleet(ops_url)
        (folder / "influxd").mkdir()
        influx = start_influxd(folder / "influxd")
        # Unbounded queues: a session must never drop a QoS 1 message under load.
        broker = start_mosquitto(folder / "mosquitto", options=("max_queued_messages 0",))
        try:
            influx.create_database(DATABASE)
            auth = (
                "Basic "
                + b64encode(f"{influx.admin_username}:{influx.admin_password}".encode()).decode()
            )
            rounds = iter(range(1, 100))

            def next_round() -> list[Batch]:
                number = next(rounds)
                return fleet_round(base_ms + number * QUARTER_HOUR_MS, number)

            seconds = post_directly(
                influx.host, influx.port, auth, line_bodies(next_round()), WORKERS
            )
            print(f"{'warm-up: creates the series':<44} {readings_per_round / seconds:>9,.0f} /s")

            ceilings = []
            for per_body in (1, GROUP_MESSAGES):
                batches = next_round()
                bodies = line_bodies(batches, per_body)
                seconds = post_directly(influx.host, influx.port, auth, bodies, WORKERS)
                counted = count_points(influx, batches[0].timestamps_ms[0])
                if counted != readings_per_round:
                    raise RuntimeError(f"influxd holds {counted} of {readings_per_round}")
                ceilings.append(readings_per_round / seconds)
                lines = per_body * METERS_PER_GATEWAY * len(OBIS_CODES)
                print(
                    f"{f'influxd ceiling, {lines} lines per POST':<44} {ceilings[-1]:>9,.0f} /s"
                    f"  ({WORKERS} clients, pre-encoded gzipped line protocol)"
                )
            ceiling = max(ceilings)

            rates = []
            for group in (1, GROUP_MESSAGES):
                seconds, publish_s, counted = through_workers(
                    folder, broker, influx, ops_url, next_round(), group
                )
                rates.append(readings_per_round / seconds)
                label = f"ours, MQTT -> workers -> influxd, group {group}"
                print(
                    f"{label:<44} {rates[-1]:>9,.0f} /s"
                    f"  ({rates[-1] / ceiling:.2f}x ceiling; published in {publish_s:.1f} s, "
                    f"stored by {seconds:.1f} s; COUNT {counted:,} of {readings_per_round:,})"
                )
                if counted != readings_per_round:
                    raise RuntimeError(f"influxd holds {counted} of {readings_per_round} readings")
            ours = rates[-1]
            share = ours / ceiling
            print(f"ratio ours / ceiling: {share:.2f}")
            met = "met" if ours >= GOAL_READINGS_PER_S else "NOT met"
            print(f"goal >= {GOAL_READINGS_PER_S:,} readings/s: {ours:,.0f} ({met})")
            met = "met" if share >= GOAL_SHARE_OF_CEILING else "NOT met"
            print(f"goal >= {GOAL_SHARE_OF_CEILING:.0%} of the ceiling: {share:.0%} ({met})")
        finally:
            broker.stop()
            stop(influx.process)


if __name__ == "__main__":
    run()
