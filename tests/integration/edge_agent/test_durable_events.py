"""Events are as durable as readings: kill -9, a broker that never sent its
PUBACK, and every event still arrives, stamped with when it happened.

A running `voltstack-agent run`, simulated Modbus TCP meters whose clock runs
a day behind real time at twice its speed (so the agent's simulated clock is
the only one that can have stamped an event), and the real Mosquitto:

- with the broker down, a meter goes silent (`meter_comm_lost`) and the
  buffer's size limit drops readings (`buffer_overflow`); the agent is killed
  (-9) and started again, the broker comes back: every event the killed agent
  had committed arrives, in order, with its original `at_ms`, and leaves the
  buffer on its PUBACK;
- the broker is frozen (SIGSTOP) so that an event goes out and its PUBACK
  never comes, then killed and started again: the agent reconnects and sends
  the event again from its buffer (the first copy died with the broker).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.adapters.sqlite_buffer import SqliteBuffer
from simulators.clock import SimClock
from simulators.fleet import Fleet, FleetSpec
from simulators.runtime import BackgroundLoop
from tests.integration.edge_agent.test_buffer_full import (
    old_readings,
    start_agent,
    stop_agent,
    wait_for,
)
from tests.servers import MosquittoServer, free_port, start_mosquitto, stop_mosquitto

pytestmark = pytest.mark.integration

GATEWAY = "gw-events"
FLEET = {
    "seed": 31,
    "timing": False,
    "gateways": [
        {
            "id": GATEWAY,
            "interval_s": 1,
            "tcp": [{"name": "tcp", "meters": [{"model": "eastron-sdm120", "count": 2}]}],
        }
    ],
}
SIMULATED_LAG_S = 86_400.0  # the meters' (and so the agent's) clock: a day behind
SPEED = 2.0


class EventSubscriber:
    """The cloud's side: a persistent session on the gateway's events."""

    def __init__(self, broker: MosquittoServer, client_id: str) -> None:
        self.broker, self.client_id = broker, client_id
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client: mqtt.Client | None = None

    def connect(self) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False
        )
        client.username_pw_set(self.broker.admin_username, self.broker.admin_password)
        client.on_connect = lambda c, *_: c.subscribe(f"vs/v1/{GATEWAY}/events", qos=1)
        client.on_subscribe = lambda *_: self.subscribed.set()
        client.on_message = self._on_message
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        self.client = client

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.events.append(json.loads(message.payload))

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def subscribe_once(self) -> None:
        """Create the session (and its subscription) on the broker, then leave."""
        self.connect()
        assert self.subscribed.wait(10), "the subscription was not confirmed"
        self.disconnect()

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("events-fleet")
    clock = SimClock(start=time.time() - SIMULATED_LAG_S, speed=SPEED)
    with BackgroundLoop() as loop:
        running = loop.run(
            Fleet.start(FleetSpec.model_validate(FLEET), folder / "sim", clock=clock)
        )
        yield running
        loop.run(running.stop())


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = start_mosquitto(tmp_path / "broker")  # our own: the tests stop and kill it
    yield server
    if server.process.poll() is None:
        stop_mosquitto(server)


@pytest.fixture
def silent_meter(fleet: Fleet) -> Iterator[str]:
    """A meter the test may silence; healed after the test."""
    serial = sorted(fleet.meters)[0]
    yield serial
    fleet.set_fault(serial, clear=True)


def write_config(
    fleet: Fleet, broker: MosquittoServer, folder: Path, *, keepalive_s: int, **buffer: Any
) -> Path:
    gateway = fleet.spec.gateways[0]
    _, password = broker.add_gateway(gateway.id)
    config = fleet.agent_config(gateway)
    assert "simulation" in config  # the agent stamps its events on the simulated clock
    config["uplink"].update(
        {
            "broker": f"mqtt://{broker.host}:{broker.port}",
            "password": password,
            "keepalive_s": keepalive_s,
        }
    )
    config["buffer"] = {"path": str(folder / "buffer.sqlite"), **buffer}
    config["health"] = {"port": free_port()}
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def query(buffer_path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the agent's buffer file directly (read-only, beside the running agent)."""
    connection = sqlite3.connect(f"file:{buffer_path}?mode=ro", uri=True)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def buffered_events(buffer_path: Path) -> list[dict[str, Any]]:
    """The events committed to the buffer, as they must appear on the wire."""
    rows = query(buffer_path, "SELECT at_ms, body FROM events ORDER BY event_id")
    return [{"gateway": GATEWAY, "at_ms": at_ms, **json.loads(body)} for at_ms, body in rows]


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["event"] for event in events]


def status(config: Path) -> dict[str, Any]:
    port = yaml.safe_load(config.read_text())["health"]["port"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
            parsed: dict[str, Any] = json.loads(response.read())
            return parsed
    except OSError:  # not listening yet
        return {}


def has_read(buffer_path: Path, serial: str) -> Callable[[], bool]:
    def check() -> bool:
        sql = f"SELECT 1 FROM readings JOIN meters USING (meter_id) WHERE serial = '{serial}'"
        return bool(query(buffer_path, sql))

    return check


def test_events_of_an_outage_survive_kill_9_and_arrive_with_their_own_time(
    fleet: Fleet, broker: MosquittoServer, silent_meter: str, tmp_path: Path
) -> None:
    buffer_path = tmp_path / "buffer.sqlite"
    config = write_config(fleet, broker, tmp_path, keepalive_s=5, max_readings=1000)
    subscriber = EventSubscriber(broker, "events-outage")
    subscriber.subscribe_once()
    broker.stop()
    # More than the limit already buffered: the first pass drops (buffer_overflow).
    with SqliteBuffer(buffer_path, max_readings=10**6, max_age_days=35) as buffer:
        buffer.append(old_readings(fleet, 3000, fleet.clock.now()))
    started_sim_ms = fleet.clock.now() * 1000
    agent = start_agent(config)
    try:
        wait_for(has_read(buffer_path, silent_meter), "a first reading", agent, 60)
        fleet.set_fault(silent_meter, no_answer=True)  # the meter goes silent
        wanted = {"gateway_started", "buffer_overflow", "meter_comm_lost"}
        wait_for(
            lambda: wanted <= set(kinds(buffered_events(buffer_path))),
            "the outage's events committed",
            agent,
            90,
        )
        killed_sim_ms = fleet.clock.now() * 1000
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        committed = buffered_events(buffer_path)
        fleet.set_fault(silent_meter, clear=True)

        agent = start_agent(config)  # the broker still down: its own start is buffered too
        wait_for(
            lambda: kinds(buffered_events(buffer_path)).count("gateway_started") == 2,
            "the restarted agent's gateway_started committed",
            agent,
            60,
        )
        broker.start()
        back_ms = time.time() * 1000
        subscriber.connect()
        wait_for(
            lambda: all(event in subscriber.received() for event in committed),
            "every committed event delivered",
            agent,
            90,
        )
        received = subscriber.received()
        # In the order they happened (first copies; at least once may repeat one).
        positions = [received.index(event) for event in committed]
        assert positions == sorted(positions)
        # at_ms is when it happened, on the agent's (simulated) clock: not when
        # it was sent, which was after the broker came back, a day later.
        for event in committed:
            assert started_sim_ms - 1000 <= event["at_ms"] <= killed_sim_ms + 1000, event
            assert event["at_ms"] < back_ms - SIMULATED_LAG_S * 1000 / 2, event
        [lost] = [e for e in committed if e["event"] == "meter_comm_lost"]
        assert lost["meter"] == silent_meter and lost["bus"] == f"tcp-{silent_meter.lower()}"
        assert lost["error"]
        overflow = [e for e in committed if e["event"] == "buffer_overflow"]
        assert sum(e["dropped"] for e in overflow) >= 2000
        # Delivered means deleted, on the PUBACK.
        wait_for(lambda: not buffered_events(buffer_path), "the events table empty", agent, 60)
    finally:
        stop_agent(agent)
        subscriber.disconnect()


def test_an_event_whose_puback_never_came_is_sent_again_after_reconnect(
    fleet: Fleet, broker: MosquittoServer, silent_meter: str, tmp_path: Path
) -> None:
    buffer_path = tmp_path / "buffer.sqlite"
    # A long keep-alive: the agent must not notice the frozen broker by itself.
    config = write_config(fleet, broker, tmp_path, keepalive_s=300)
    subscriber = EventSubscriber(broker, "events-puback")
    subscriber.subscribe_once()
    # A clean restart writes the subscriber's session to the broker's disk:
    # it survives the kill below, so the broker queues what the agent resends.
    broker.stop()
    broker.start()
    agent = start_agent(config)
    try:
        wait_for(
            lambda: status(config).get("uplink", {}).get("events_acknowledged", 0) >= 1,
            "gateway_started acknowledged",
            agent,
            60,
        )
        broker.process.send_signal(signal.SIGSTOP)  # reads nothing, answers nothing
        fleet.set_fault(silent_meter, no_answer=True)
        leased = "SELECT at_ms FROM events WHERE leased_at_s IS NOT NULL"
        wait_for(lambda: bool(query(buffer_path, leased)), "the event sent", agent, 90)
        [(at_ms,)] = query(buffer_path, leased)
        [sent] = [e for e in buffered_events(buffer_path) if e["at_ms"] == at_ms]
        assert sent["event"] == "meter_comm_lost" and sent["meter"] == silent_meter
        # The broker dies with the message unread: no copy of it survives there.
        broker.process.kill()
        broker.process.wait(timeout=10)
        assert status(config)["uplink"]["events_acknowledged"] == 1  # no PUBACK came
        broker.start()
        subscriber.connect()
        wait_for(lambda: sent in subscriber.received(), "the event sent again", agent, 90)
        after = status(config)["uplink"]
        assert after["disconnects"] >= 1 and after["events_sent"] >= 3  # started, lost, again
        wait_for(
            lambda: sent not in buffered_events(buffer_path),
            "the event deleted on its PUBACK",
            agent,
            60,
        )
    finally:
        if broker.process.poll() is None:
            broker.process.send_signal(signal.SIGCONT)
        stop_agent(agent)
        subscriber.disconnect()
