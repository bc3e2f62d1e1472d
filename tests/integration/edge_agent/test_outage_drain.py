"""A day-long broker outage, 64 meters at 1-minute intervals: the backlog drains
in time order per meter, and live data keeps flowing during the drain.

The compression (a real day cannot pass in a test), and why it is honest:

- **The day's backlog is appended through the agent's own buffer.** While the
  broker is down the agent's only effect on its buffer is `SqliteBuffer.append`
  of each meter's readings at each minute boundary (nothing is leased while
  disconnected, and the limits drop nothing this far below them). The buffer
  holds rows keyed and ordered by (at_ms, meter, OBIS), so what a day of
  appends leaves behind does not depend on how they were grouped into
  transactions: we append the 1,440 one-minute boundaries of the day before
  the test's agent starts — 64 meters × 14 quantities (the SDM120 profile)
  each, 1,290,240 readings, with the values the simulated meters presented at
  those moments — in one transaction per minute, into the file the agent then
  opens. The agent restarting on a buffer it finds full is the path every
  reboot takes (and the crash tests cover).
- **The live part is real.** The agent (`voltstack-agent run`, its own
  process) reads the 64 simulated Modbus TCP meters on its 1-minute schedule,
  with the broker still down, then the real Mosquitto comes back and the
  agent drains through its real uplink (lease, batch, QoS 1, PUBACK,
  acknowledge) while it keeps reading.
- **A live reading during the drain, on cue.** Whether a 1-minute boundary
  falls inside a drain of some tens of seconds depends on the machine's speed;
  so once the first backlog batch has arrived, the test sends the agent a
  `read_now` command (over the broker, as the cloud would): every meter is
  read at that moment, inside the drain, whatever the machine.

A subscriber (paho, the admin user) records every batch in arrival order and
decodes it with fastcodec.uplink. Checked: every buffered reading arrives;
per meter and OBIS code the backlog arrives in strictly increasing time
order; the first reading each meter took after the `read_now` arrives while
at least half of the backlog is still to come (a generous bound: on an idle
machine it is a few percent in; the old policy — a meter's new readings wait
for its own backlog — put it at the very end).
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.adapters.sqlite_buffer import SqliteBuffer
from edge_agent.domain.buffer_policy import DEFAULT_LIVE_WINDOW_S
from edge_agent.domain.readings import Reading
from edge_agent.profiles import load_profile
from fastcodec import uplink as batch_codec
from simulators.fleet import Fleet, FleetSpec
from simulators.runtime import BackgroundLoop
from tests.servers import MosquittoServer, free_port, start_mosquitto, stop_mosquitto

pytestmark = pytest.mark.integration

AGENT = Path(sys.executable).parent / "voltstack-agent"
GATEWAY = "gw-outage"
METERS = 64
INTERVAL_S = 60
DAY_MINUTES = 24 * 60
MODEL = "eastron-sdm120"
FLEET = {
    "seed": 17,
    "timing": False,
    "gateways": [
        {
            "id": GATEWAY,
            "interval_s": INTERVAL_S,
            "tcp": [{"name": "tcp", "meters": [{"model": MODEL, "count": METERS}]}],
        }
    ],
}
DRAIN_TIMEOUT_S = 900.0  # a loaded 2-core machine; an idle one needs under a minute

Key = tuple[str, str, int]  # meter, OBIS, at_ms


class ArrivalRecorder:
    """The cloud's side: a persistent-session subscriber that keeps every
    batch's payload in arrival order (decoded later, so it never falls behind
    the broker's queue)."""

    CLIENT_ID = "outage-recorder"

    def __init__(self, broker: MosquittoServer) -> None:
        self.broker = broker
        self.payloads: list[bytes] = []
        self.subscribed = threading.Event()
        self.client: mqtt.Client | None = None

    def connect(self) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.CLIENT_ID, clean_session=False
        )
        client.username_pw_set(self.broker.admin_username, self.broker.admin_password)
        client.on_connect = lambda c, *_: c.subscribe(f"vs/v1/{GATEWAY}/readings", qos=1)
        client.on_subscribe = lambda *_: self.subscribed.set()
        client.on_message = lambda _c, _u, message: self.payloads.append(bytes(message.payload))
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        self.client = client

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("outage-fleet")
    with BackgroundLoop() as loop:
        running = loop.run(Fleet.start(FleetSpec.model_validate(FLEET), folder / "sim"))
        yield running
        loop.run(running.stop())


def write_agent_config(fleet: Fleet, broker: MosquittoServer, folder: Path) -> Path:
    gateway = fleet.spec.gateways[0]
    _, password = broker.add_gateway(gateway.id)
    config = fleet.agent_config(gateway)
    config["uplink"].update(
        {"broker": f"mqtt://{broker.host}:{broker.port}", "password": password, "keepalive_s": 10}
    )
    config["buffer"] = {"path": str(folder / "buffer.sqlite")}
    config["health"] = {"port": free_port()}
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def append_a_day_of_readings(fleet: Fleet, buffer_path: Path, agent_starts_at: float) -> set[Key]:
    """What a day of 1-minute reads with the broker down leaves in the buffer.

    The last boundary is older than the live window when the agent starts, so
    the whole day is backlog then, as it is after a real day's outage.
    """
    units = {quantity.obis: quantity.unit for quantity in load_profile(MODEL).quantities}
    newest_s = (math.floor((agent_starts_at - DEFAULT_LIVE_WINDOW_S) / INTERVAL_S) - 1) * INTERVAL_S
    keys: set[Key] = set()
    # NORMAL: these commits need no fsync (the file is closed, checkpointed,
    # before the agent opens it); the rows are the same.
    with SqliteBuffer(
        buffer_path, max_readings=5_000_000, max_age_days=35, synchronous="NORMAL"
    ) as buffer:
        for minute in range(DAY_MINUTES, 0, -1):
            at_s = newest_s - (minute - 1) * INTERVAL_S
            at_ms = int(at_s * 1000)
            readings = [
                Reading(serial, obis, at_ms, value, units[obis])
                for serial in fleet.meters
                for obis, value in fleet.truth(serial, at_s).items()
            ]
            buffer.append(readings)
            keys.update((r.meter, r.obis, r.at_ms) for r in readings)
    return keys


def start_agent(config: Path) -> subprocess.Popen[bytes]:
    log = (config.parent / "agent.log").open("ab")  # kept for a failing test's reader
    try:
        return subprocess.Popen(
            [AGENT, "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    finally:
        log.close()


def agent_status(config: Path) -> dict[str, Any]:
    port = yaml.safe_load(config.read_text())["health"]["port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
        status: dict[str, Any] = json.loads(response.read())
    return status


def wait_for_every_meter_read(config: Path, agent: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert agent.poll() is None, (config.parent / "agent.log").read_text()[-3000:]
        try:
            meters = agent_status(config)["meters"]
        except OSError:  # the health endpoint is not up yet
            meters = []
        if len(meters) == METERS and all(m["reads_ok"] >= 1 for m in meters):
            return
        time.sleep(0.5)
    raise AssertionError("the agent did not read every meter within 120 s")


def send_read_now(broker: MosquittoServer) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="outage-operator")
    client.username_pw_set(broker.admin_username, broker.admin_password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        info = client.publish(
            f"vs/v1/{GATEWAY}/cmd/drain-read-now", json.dumps({"action": "read_now"}), qos=1
        )
        info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


class Arrivals:
    """The recorder's payloads decoded in arrival order, incrementally."""

    def __init__(self, recorder: ArrivalRecorder, backlog: set[Key]) -> None:
        self.recorder, self.backlog = recorder, backlog
        self.decoded = 0
        self.order: list[Key] = []  # first arrival of each reading
        self.seen: set[Key] = set()
        self.backlog_seen = 0

    def update(self) -> None:
        payloads = self.recorder.payloads
        while self.decoded < len(payloads):
            batch = batch_codec.decode_batch(payloads[self.decoded])
            self.decoded += 1
            for reading in batch.readings():
                key = (reading.meter, str(reading.obis), reading.timestamp_ms)
                if key not in self.seen:  # at least once: a resend may repeat one
                    self.seen.add(key)
                    self.order.append(key)
                    self.backlog_seen += key in self.backlog


@pytest.mark.timeout(DRAIN_TIMEOUT_S + 300)
def test_a_day_of_backlog_drains_in_order_while_live_data_flows(
    fleet: Fleet, tmp_path: Path
) -> None:
    broker = start_mosquitto(tmp_path / "broker")  # our own: this test stops and starts it
    recorder = ArrivalRecorder(broker)
    agent: subprocess.Popen[bytes] | None = None
    try:
        config = write_agent_config(fleet, broker, tmp_path)
        # The cloud's session exists before the outage (the broker keeps it).
        recorder.connect()
        assert recorder.subscribed.wait(10)
        recorder.disconnect()
        broker.stop()

        backlog = append_a_day_of_readings(fleet, tmp_path / "buffer.sqlite", time.time())
        assert len(backlog) == DAY_MINUTES * METERS * len(load_profile(MODEL).quantities)

        agent = start_agent(config)
        wait_for_every_meter_read(config, agent)  # live readings pile up behind the day

        broker.start()
        recorder.connect()
        arrivals = Arrivals(recorder, backlog)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while arrivals.backlog_seen == 0:
            assert time.monotonic() < deadline, "the drain never started"
            time.sleep(0.05)
            arrivals.update()
        drain_started = time.monotonic()
        read_now_at_ms = int(time.time() * 1000)
        send_read_now(broker)

        def first_live_after_command() -> dict[str, int]:
            """Per meter: how much backlog had arrived before its first reading
            taken after the read_now."""
            first: dict[str, int] = {}
            backlog_before = 0
            for key in arrivals.order:
                if key in backlog:
                    backlog_before += 1
                elif key[2] >= read_now_at_ms:
                    first.setdefault(key[0], backlog_before)
            return first

        while arrivals.backlog_seen < len(backlog) or len(first_live_after_command()) < METERS:
            assert time.monotonic() < deadline, (
                f"after {DRAIN_TIMEOUT_S} s: {arrivals.backlog_seen} of {len(backlog)} backlog"
                f" readings, live after read_now from {len(first_live_after_command())} meters"
            )
            assert agent.poll() is None, "the agent died during the drain"
            time.sleep(0.5)
            arrivals.update()
            print(
                "DEBUG",
                time.monotonic() - drain_started,
                arrivals.backlog_seen,
                len(arrivals.order),
                flush=True,
            )
        drain_s = time.monotonic() - drain_started

        # 1. None missing.
        assert not backlog - arrivals.seen
        # 2. Per meter and OBIS code, the backlog in strictly increasing time order;
        #    per meter, never a step back in time within the backlog lane.
        last_at: dict[tuple[str, str], int] = {}
        last_meter_at: dict[str, int] = defaultdict(lambda: -1)
        for meter, obis, at_ms in (key for key in arrivals.order if key in backlog):
            assert at_ms > last_at.get((meter, obis), -1), (meter, obis, at_ms)
            assert at_ms >= last_meter_at[meter], (meter, at_ms)
            last_at[meter, obis] = at_ms
            last_meter_at[meter] = at_ms
        # 3. Live readings during the drain: every meter's first reading after
        #    the read_now arrived with at least half of the backlog still to come.
        positions = first_live_after_command()
        worst = max(positions.values())
        print(
            f"\ndrain: {len(backlog)} backlog readings in {drain_s:.1f} s"
            f" ({len(backlog) / drain_s:,.0f} readings/s); first live reading after read_now"
            f" arrived after {min(positions.values()) / len(backlog):.1%}"
            f"-{worst / len(backlog):.1%} of the backlog"
        )
        assert worst <= len(backlog) // 2, f"live data waited for {worst} backlog readings"
        # The agent kept reading on its schedule throughout, and it still runs.
        assert agent.poll() is None
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        recorder.disconnect()
        stop_mosquitto(broker)
