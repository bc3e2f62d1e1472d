"""Buffer full: the oldest readings are dropped, the count is reported as an
event and in the metrics, and the agent keeps running.

Two ways to be full, each with a running `voltstack-agent run`, simulated
Modbus TCP meters and the real Mosquitto:

- **the size limit** (`buffer.max_readings`): the buffer holds more than the
  limit when the agent starts (a backlog appended through the agent's own
  `SqliteBuffer`, older than anything the agent reads), the broker is down;
- **a full disk** (`buffer.max_db_bytes`, SQLite's `max_page_count`, refuses
  a write exactly as a full file system does): the buffer is filled until
  an append fails with `BufferFull`, then the agent starts and reads.

Either way: the readings dropped are the oldest (every one older than every
reading kept), a `buffer_overflow` event on `vs/v1/{gateway}/events` counts
them, `voltstack_agent_buffer_dropped_readings_total` on the health endpoint
says the same number, and once the broker is back the agent delivers what it
kept and goes on reading and delivering.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.adapters.sqlite_buffer import BufferFull, SqliteBuffer
from edge_agent.domain.readings import Reading
from edge_agent.profiles import load_profile
from fastcodec import uplink as batch_codec
from simulators.fleet import Fleet, FleetSpec
from simulators.runtime import BackgroundLoop
from tests.servers import MosquittoServer, free_port, start_mosquitto, stop_mosquitto

pytestmark = pytest.mark.integration

AGENT = Path(sys.executable).parent / "voltstack-agent"
GATEWAY = "gw-full"
MODEL = "eastron-sdm120"
FLEET = {
    "seed": 23,
    "timing": False,
    "gateways": [
        {
            "id": GATEWAY,
            "interval_s": 2,
            "tcp": [{"name": "tcp", "meters": [{"model": MODEL, "count": 2}]}],
        }
    ],
}
DROPPED_METRIC = "voltstack_agent_buffer_dropped_readings_total"

Key = tuple[str, str, int]  # meter, OBIS, at_ms


class Subscriber:
    """The cloud's side: a persistent session on the gateway's readings and
    events, created before the outage so that nothing sent after it is missed."""

    def __init__(self, broker: MosquittoServer) -> None:
        self.broker = broker
        self.readings: list[Key] = []
        self.events: list[dict[str, Any]] = []
        self.subscribed = threading.Event()
        self.client: mqtt.Client | None = None

    def connect(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="full-sub", clean_session=False)
        client.username_pw_set(self.broker.admin_username, self.broker.admin_password)
        client.on_connect = lambda c, *_: c.subscribe(
            [(f"vs/v1/{GATEWAY}/readings", 1), (f"vs/v1/{GATEWAY}/events", 1)]
        )
        client.on_subscribe = lambda *_: self.subscribed.set()
        client.on_message = self._on_message
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        self.client = client

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/readings"):
            batch = batch_codec.decode_batch(message.payload)
            self.readings.extend((r.meter, str(r.obis), r.timestamp_ms) for r in batch.readings())
        else:
            self.events.append(json.loads(message.payload))

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def overflow_events(self) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("event") == "buffer_overflow"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("full-fleet")
    with BackgroundLoop() as loop:
        running = loop.run(Fleet.start(FleetSpec.model_validate(FLEET), folder / "sim"))
        yield running
        loop.run(running.stop())


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = start_mosquitto(tmp_path / "broker")  # our own: the tests stop and start it
    yield server
    stop_mosquitto(server)


def write_config(fleet: Fleet, broker: MosquittoServer, folder: Path, **buffer: Any) -> Path:
    gateway = fleet.spec.gateways[0]
    _, password = broker.add_gateway(gateway.id)
    config = fleet.agent_config(gateway)
    config["uplink"].update(
        {"broker": f"mqtt://{broker.host}:{broker.port}", "password": password, "keepalive_s": 5}
    )
    config["buffer"] = {"path": str(folder / "buffer.sqlite"), **buffer}
    config["health"] = {"port": free_port()}
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def old_readings(fleet: Fleet, count: int, before_s: float) -> list[Reading]:
    """`count` readings of the fleet's meters, a minute apart, all taken before
    `before_s` (what an earlier outage left behind)."""
    quantities = load_profile(MODEL).quantities
    serials = sorted(fleet.meters)
    readings: list[Reading] = []
    minute = 0
    while len(readings) < count:
        minute += 1
        at_ms = int((before_s - 3600 - 60 * 10_000 + 60 * minute) * 1000)
        for serial in serials:
            for quantity in quantities:
                readings.append(Reading(serial, quantity.obis, at_ms, float(minute), quantity.unit))
    return readings[:count]


def start_agent(config: Path) -> subprocess.Popen[bytes]:
    log = (config.parent / "agent.log").open("ab")  # kept for a failing test's reader
    try:
        return subprocess.Popen(
            [AGENT, "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    finally:
        log.close()


def stop_agent(agent: subprocess.Popen[bytes]) -> None:
    if agent.poll() is None:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=20)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


def health(config: Path, path: str) -> str:
    port = yaml.safe_load(config.read_text())["health"]["port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return bytes(response.read()).decode()


def dropped_metric(config: Path) -> int | None:
    try:
        text = health(config, "/metrics")
    except OSError:  # not up yet
        return None
    for line in text.splitlines():
        if line.startswith(DROPPED_METRIC + " "):
            return int(float(line.split()[1]))
    raise AssertionError(f"no {DROPPED_METRIC} line in the metrics:\n{text}")


def wait_for(condition: Any, what: str, agent: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert agent.poll() is None, f"the agent stopped while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.2)


def check_oldest_dropped_reported_and_still_delivering(
    *,
    subscriber: Subscriber,
    broker: MosquittoServer,
    config: Path,
    agent: subprocess.Popen[bytes],
    backlog: list[Reading],
) -> None:
    """After the drops, with the broker down: bring it back and check it all."""
    dropped_while_down = dropped_metric(config)
    assert dropped_while_down
    broker.start()
    subscriber.connect()
    backlog_keys = {(r.meter, r.obis, r.at_ms) for r in backlog}
    back_at_ms = int(time.time() * 1000)

    def delivered_all_kept_and_new_readings() -> bool:
        received = set(subscriber.readings)
        dropped = dropped_metric(config) or 0
        kept = len(backlog_keys) - dropped
        fresh = {key for key in received if key[2] > back_at_ms}
        return len(received & backlog_keys) >= kept and {k[0] for k in fresh} == set(
            [r.meter for r in backlog]
        )

    wait_for(delivered_all_kept_and_new_readings, "delivery after the broker came back", agent, 120)
    wait_for(lambda: bool(subscriber.overflow_events()), "buffer_overflow event", agent, 30)

    received = set(subscriber.readings)
    lost = backlog_keys - received
    kept = backlog_keys & received
    total_dropped = dropped_metric(config)
    events = subscriber.overflow_events()
    # The count, three ways: the events, the metrics, what never arrived.
    assert sum(event["dropped"] for event in events) == total_dropped == len(lost) > 0
    by_meter: dict[str, int] = {}
    for event in events:
        assert event["gateway"] == GATEWAY
        assert event["dropped"] == event["by_age"] + event["by_size"]
        for meter, count in event["by_meter"].items():
            by_meter[meter] = by_meter.get(meter, 0) + count
    assert by_meter == {m: sum(1 for k in lost if k[0] == m) for m in {k[0] for k in lost}}
    # The oldest went: every reading dropped is older than every reading kept.
    assert max(key[2] for key in lost) <= min(key[2] for key in kept)
    # The agent kept reading: new readings arrived after the drops, and it runs.
    assert agent.poll() is None


def test_beyond_max_readings_the_oldest_are_dropped_and_reported(
    fleet: Fleet, broker: MosquittoServer, tmp_path: Path
) -> None:
    config = write_config(fleet, broker, tmp_path, max_readings=1000)
    subscriber = Subscriber(broker)
    subscriber.connect()
    assert subscriber.subscribed.wait(10)
    subscriber.disconnect()
    broker.stop()  # readings pile up; the limit drops the oldest
    backlog = old_readings(fleet, 3000, time.time())
    with SqliteBuffer(tmp_path / "buffer.sqlite", max_readings=10**6, max_age_days=35) as buffer:
        buffer.append(backlog)
    agent = start_agent(config)
    try:
        wait_for(lambda: bool(dropped_metric(config)), "drops in the metrics", agent, 60)
        check_oldest_dropped_reported_and_still_delivering(
            subscriber=subscriber, broker=broker, config=config, agent=agent, backlog=backlog
        )
    finally:
        stop_agent(agent)
        subscriber.disconnect()


def test_a_full_disk_drops_the_oldest_to_store_the_newest(
    fleet: Fleet, broker: MosquittoServer, tmp_path: Path
) -> None:
    max_db_bytes = 512 * 1024
    config = write_config(fleet, broker, tmp_path, max_db_bytes=max_db_bytes)
    subscriber = Subscriber(broker)
    subscriber.connect()
    assert subscriber.subscribed.wait(10)
    subscriber.disconnect()
    broker.stop()
    # Fill the "disk" (the database's page cap) until an append is refused.
    backlog: list[Reading] = []
    candidates = old_readings(fleet, 20_000, time.time())
    with SqliteBuffer(
        tmp_path / "buffer.sqlite", max_readings=10**6, max_age_days=35, max_db_bytes=max_db_bytes
    ) as buffer:
        for start in range(0, len(candidates), 100):
            try:
                buffer.append(candidates[start : start + 100])
            except BufferFull:
                break
            backlog += candidates[start : start + 100]
        else:
            pytest.fail("20,000 readings fit under the cap: it caps nothing")
    agent = start_agent(config)
    try:
        # The agent's first reads meet the full disk: it drops the oldest to store them.
        wait_for(lambda: bool(dropped_metric(config)), "drops in the metrics", agent, 60)
        assert "readings not stored" not in (tmp_path / "agent.log").read_text()
        check_oldest_dropped_reported_and_still_delivering(
            subscriber=subscriber, broker=broker, config=config, agent=agent, backlog=backlog
        )
        assert health(config, "/healthz") == "ok\n"
    finally:
        stop_agent(agent)
        subscriber.disconnect()
