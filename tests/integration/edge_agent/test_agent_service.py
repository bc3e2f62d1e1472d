"""`voltstack-agent run` against simulated meters and a real Mosquitto.

The agent reads a simulated bus and TCP meters, publishes uplink batches
whose values equal the simulators' ground truth, marks itself offline by its
last will when killed, and delivers after a restart everything it had
committed to its buffer before the kill — with the broker going down and up.
"""

from __future__ import annotations

import json
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from fastcodec import uplink as batch_codec
from simulators.clock import SimClock
from simulators.fleet import Fleet, FleetSpec
from simulators.runtime import BackgroundLoop
from tests.servers import MosquittoServer, free_port, start_mosquitto, stop_mosquitto

pytestmark = pytest.mark.integration

AGENT = Path(sys.executable).parent / "voltstack-agent"
FLEET = {
    "seed": 11,
    "timing": False,
    "gateways": [
        {
            "id": "gw-e2e",
            "interval_s": 1,
            "buses": [
                {
                    "name": "rs485-1",
                    "parity": "N",
                    "meters": [
                        {"model": "eastron-sdm630", "count": 2, "first_unit": 1},
                        {
                            "model": "carlo-gavazzi-em24",
                            "count": 2,
                            "first_unit": 3,
                            "shape": "commercial",
                        },
                    ],
                }
            ],
            "tcp": [
                {
                    "name": "tcp",
                    "meters": [{"model": "eastron-sdm120", "count": 2, "first_unit": 1}],
                }
            ],
        }
    ],
}


class Collector:
    """An admin subscriber collecting the gateway's batches and status."""

    def __init__(self, broker: MosquittoServer, gateway: str) -> None:
        self.batches: queue.Queue[batch_codec.Batch] = queue.Queue()
        self.status: queue.Queue[dict[str, Any]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"e2e-{uuid.uuid4().hex[:6]}",
            clean_session=False,
        )
        self.client.username_pw_set(broker.admin_username, broker.admin_password)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(f"vs/v1/{gateway}/#", qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/readings"):
            self.batches.put(batch_codec.decode_batch(message.payload))
        elif message.topic.endswith("/status"):
            self.status.put(json.loads(message.payload))

    def readings(self, seconds: float) -> set[tuple[str, str, int, float]]:
        got: set[tuple[str, str, int, float]] = set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                batch = self.batches.get(timeout=0.1)
            except queue.Empty:
                continue
            got |= {(r.meter, str(r.obis), r.timestamp_ms, r.value) for r in batch.readings()}
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("agent-fleet")
    with BackgroundLoop() as loop:
        # Frozen simulated time: every read of a meter gives its ground truth.
        running = loop.run(
            Fleet.start(FleetSpec.model_validate(FLEET), folder / "sim", clock=SimClock(speed=1e-9))
        )
        yield running
        loop.run(running.stop())


def agent_config(fleet: Fleet, broker: MosquittoServer, folder: Path) -> Path:
    gateway = fleet.spec.gateways[0]
    _, password = broker.add_gateway(gateway.id)
    config = fleet.agent_config(gateway)
    config["uplink"].update(
        {"broker": f"mqtt://{broker.host}:{broker.port}", "password": password, "keepalive_s": 5}
    )
    config["buffer"] = {"path": str(folder / "buffer.sqlite")}
    config["health"] = {"port": free_port()}
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_agent(config: Path) -> subprocess.Popen[bytes]:
    log = (config.parent / "agent.log").open("ab")  # kept for a failing test's reader
    try:
        return subprocess.Popen(
            [AGENT, "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    finally:
        log.close()


def buffered(buffer_path: Path) -> set[tuple[str, str, int]]:
    """What a killed agent had committed: read its buffer file directly."""
    connection = sqlite3.connect(f"file:{buffer_path}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT m.serial, r.obis, r.at_ms FROM readings r JOIN meters m USING (meter_id)"
        ).fetchall()
    finally:
        connection.close()
    return {(str(m), str(o), int(t)) for m, o, t in rows}


def test_agent_reads_publishes_dies_and_loses_nothing(fleet: Fleet, tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "broker")  # our own: this test stops and starts it
    config = agent_config(fleet, broker, tmp_path)
    collector = Collector(broker, "gw-e2e")
    agent = start_agent(config)
    try:
        # 1. Live readings equal the ground truth, every meter, every quantity.
        live: set[tuple[str, str, int, float]] = set()
        deadline = time.monotonic() + 30
        while {r[0] for r in live} != set(fleet.meters) and time.monotonic() < deadline:
            live |= collector.readings(1.0)
        assert {r[0] for r in live} == set(fleet.meters), "not every meter reported"
        for meter in fleet.meters.values():
            truth = fleet.truth(meter.serial)
            got = {obis: value for serial, obis, _, value in live if serial == meter.serial}
            assert got == truth, meter.serial

        # 2. Kill -9 twenty times at random moments, the broker down for every
        #    other one: what the agent had committed arrives after its restart.
        committed: set[tuple[str, str, int]] = set()
        received = {(s, o, t) for s, o, t, _ in live}
        moments = random.Random(2026)
        for cycle in range(20):
            if cycle % 2 == 1:
                broker.stop()  # readings pile up in the buffer
            time.sleep(moments.uniform(0.2, 1.5))
            agent.send_signal(signal.SIGKILL)
            agent.wait(timeout=10)
            committed |= buffered(tmp_path / "buffer.sqlite")
            if cycle % 2 == 1:
                broker.start()  # same port, same users
            agent = start_agent(config)
            received |= {(s, o, t) for s, o, t, _ in collector.readings(1.0)}
        deadline = time.monotonic() + 60  # the backlog drains (slower on a loaded machine)
        while not committed <= received and time.monotonic() < deadline:
            received |= {(s, o, t) for s, o, t, _ in collector.readings(1.0)}
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
        received |= {(s, o, t) for s, o, t, _ in collector.readings(1.0)}
        missing = committed - received
        assert not missing, (
            f"{len(missing)} committed readings never arrived, e.g. {sorted(missing)[:3]}"
        )
        assert buffered(tmp_path / "buffer.sqlite") <= received
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        collector.close()
        stop_mosquitto(broker)


def test_killed_agent_is_marked_offline_by_its_last_will(
    fleet: Fleet, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    config = agent_config(fleet, mosquitto, tmp_path)
    collector = Collector(mosquitto, "gw-e2e")
    agent = start_agent(config)
    try:
        assert collector.status.get(timeout=10)["online"] is True
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        assert collector.status.get(timeout=15) == {"online": False}
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        collector.close()


def test_agent_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text("gateway: {id: gw-1}\nuplink: {broker: 'ftp://nope'}\n")
    result = subprocess.run(
        [AGENT, "run", "--config", str(bad)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 3 and f"{bad}:2" in result.stderr


def test_agent_starts_with_a_tcp_meter_down_and_reads_the_others(
    fleet: Fleet, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    config_path = agent_config(fleet, mosquitto, tmp_path)
    config = yaml.safe_load(config_path.read_text())
    dead_port = free_port()
    tcp_bus = next(bus for bus in config["buses"] if bus["link"] == "tcp")
    tcp_bus["port"] = dead_port  # nothing listens there
    config_path.write_text(yaml.safe_dump(config))
    collector = Collector(mosquitto, "gw-e2e")
    agent = start_agent(config_path)
    try:
        dead_meter = tcp_bus["meters"][0]["serial"]
        others = set(fleet.meters) - {dead_meter}
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while not others <= seen and time.monotonic() < deadline:
            seen |= {r[0] for r in collector.readings(1.0)}
        assert others <= seen and dead_meter not in seen
        assert agent.poll() is None, "the agent stopped because one meter was down"
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
        collector.close()
