"""Command answers that survive a crash, and commands that never run twice.

The real agent (`voltstack-agent run`) reading simulated DLMS meters, the real
Mosquitto, and the cloud's side as an admin subscriber that keeps every copy
of every answer on `cmd_result/{id}`:

- kill -9 between a command's completion and its answer's PUBACK (the broker
  frozen with SIGSTOP, so the answer goes out and no PUBACK comes, then
  killed so that the copy in its socket dies with it): after the restart the
  answer arrives once, as it was stored, and not again after a further restart;
- kill -9 while a command runs (its meter answers slowly): after the restart
  it is answered `ok: false` "interrupted by agent restart" and not run again;
- the same command id sent again (as a broker redelivers or the cloud
  re-sends), before and after a restart: the stored answer comes again, the
  meter's clock is not set a second time;
- bad messages (not JSON, not UTF-8, not an object, no action, unknown
  action, a bad argument, 2 MiB, an over-long id): each answered with its
  reason, counted in the status, and the agent goes on working.
"""

from __future__ import annotations

import json
import queue
import secrets
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge_agent.service.commands import INTERRUPTED, MAX_COMMAND_BYTES
from simulators.clock import SimClock
from simulators.runtime import BackgroundLoop
from tests.integration.edge_agent.test_agent_dlms import (
    GATEWAY,
    Meters,
    Subscriber,
    agent_config_dict,
    stop_agent,
    write_config,
)
from tests.integration.edge_agent.test_agent_service import start_agent
from tests.servers import MosquittoServer, start_mosquitto, stop_mosquitto

pytestmark = pytest.mark.integration

SLOW_ANSWER_S = 0.3  # a meter this slow keeps a command running for a second or more


class Cloud(Subscriber):
    """The admin subscriber, keeping every copy of every answer."""

    def __init__(self, broker: MosquittoServer) -> None:
        self.copies: list[tuple[str, dict[str, Any]]] = []
        self.probes: set[str] = set()
        self._lock = threading.Lock()
        super().__init__(broker, GATEWAY)
        self.wait_subscribed()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if "/cmd_result/" in message.topic:
            with self._lock:
                command_id = message.topic.split("/cmd_result/", 1)[1]
                self.copies.append((command_id, json.loads(message.payload)))
        elif "/probe/" in message.topic:
            with self._lock:
                self.probes.add(message.topic.rsplit("/", 1)[1])
        super()._on_message(client, userdata, message)

    def wait_subscribed(self) -> None:
        """A message to ourselves: once it is back, the subscription is in place."""
        token = secrets.token_hex(4)
        deadline = time.monotonic() + 30
        while token not in self.probes:
            assert time.monotonic() < deadline, "the subscription never took effect"
            self.client.publish(f"vs/v1/{GATEWAY}/probe/{token}", b"", qos=1)
            time.sleep(0.5)

    def wait_online(self, seconds: float = 60) -> None:
        """The agent's birth message: it subscribed to its commands just before."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if self.status.get(timeout=0.5).get("online"):
                    return
            except queue.Empty:
                continue
        raise AssertionError("the agent never came online")

    def copies_of(self, command_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [answer for cid, answer in self.copies if cid == command_id]

    def send(self, command_id: str, payload: bytes) -> None:
        self.client.publish(f"vs/v1/{GATEWAY}/cmd/{command_id}", payload, qos=1)

    def answer(self, command_id: str, copies: int = 1, seconds: float = 90) -> dict[str, Any]:
        """Wait for the `copies`-th copy of an answer; return it."""
        wait_until(
            lambda: len(self.copies_of(command_id)) >= copies, f"answer {command_id}", seconds
        )
        return self.copies_of(command_id)[copies - 1]

    def ask(self, payload: dict[str, Any]) -> dict[str, Any]:
        command_id = secrets.token_hex(4)
        self.send(command_id, json.dumps(payload).encode())
        return self.answer(command_id)


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def query(buffer_path: Path, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    """Read the agent's buffer directly (read-only, beside the running agent)."""
    connection = sqlite3.connect(f"file:{buffer_path}?mode=ro", uri=True)
    try:
        return connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()


def running_in_buffer(buffer_path: Path, command_id: str) -> bool:
    sql = "SELECT 1 FROM commands WHERE command_id = ? AND answer IS NULL"
    return bool(query(buffer_path, sql, command_id))


def kill(agent: subprocess.Popen[bytes]) -> None:
    agent.send_signal(signal.SIGKILL)
    agent.wait(timeout=10)


@pytest.fixture
def meters() -> Iterator[Meters]:
    with BackgroundLoop() as loop:
        running = Meters(loop, SimClock())  # real time: the agent's clock is the reference
        yield running
        running.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = start_mosquitto(tmp_path / "broker")  # our own: the first test kills it
    yield server
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)
        stop_mosquitto(server)


class Gateway:
    """The agent process of one test, its config and buffer; restartable."""

    def __init__(self, meters: Meters, broker: MosquittoServer, folder: Path, **uplink: Any):
        self.config = agent_config_dict(meters, broker, folder)
        self.config["uplink"].update(uplink)
        self.path = write_config(self.config, folder)
        self.buffer_path = Path(self.config["buffer"]["path"])
        self.process = start_agent(self.path)

    def restart(self) -> None:
        stop_agent(self.process)
        self.process = start_agent(self.path)

    def kill_and_start(self) -> None:
        kill(self.process)
        self.process = start_agent(self.path)

    def alive(self) -> bool:
        return self.process.poll() is None


@pytest.fixture
def gateway_factory() -> Iterator[Callable[..., Gateway]]:
    made: list[Gateway] = []

    def make(meters: Meters, broker: MosquittoServer, folder: Path, **uplink: Any) -> Gateway:
        made.append(Gateway(meters, broker, folder, **uplink))
        return made[-1]

    yield make
    for gateway in made:
        stop_agent(gateway.process)


@pytest.fixture
def online(
    meters: Meters,
    mosquitto: MosquittoServer,
    gateway_factory: Callable[..., Gateway],
    tmp_path: Path,
) -> Iterator[tuple[Gateway, Cloud]]:
    """A running agent on the shared broker, and the cloud side that talks to it."""
    gateway = gateway_factory(meters, mosquitto, tmp_path)
    cloud = Cloud(mosquitto)
    try:
        cloud.wait_online()
        yield gateway, cloud
    finally:
        cloud.close()


def test_an_answer_whose_puback_never_came_arrives_once_after_kill_9(
    meters: Meters,
    broker: MosquittoServer,
    gateway_factory: Callable[..., Gateway],
    tmp_path: Path,
) -> None:
    # A long keep-alive: the agent must not notice the frozen broker by itself.
    gateway = gateway_factory(meters, broker, tmp_path, keepalive_s=300)
    cloud = Cloud(broker)
    cloud.wait_online()
    try:
        assert cloud.ask({"action": "status"})["ok"] is True  # connected, commands flow
        meter = meters.tcp[0].meter
        meter.faults.slow_s = SLOW_ANSWER_S
        command_id = "clock-check-1"
        cloud.send(
            command_id, json.dumps({"action": "clock_check", "meter": meter.serial}).encode()
        )
        wait_until(lambda: running_in_buffer(gateway.buffer_path, command_id), "command taken")
        broker.process.send_signal(signal.SIGSTOP)  # reads nothing, acknowledges nothing
        leased = "SELECT body FROM events WHERE command_id = ? AND leased_at_s IS NOT NULL"
        wait_until(lambda: bool(query(gateway.buffer_path, leased, command_id)), "answer sent")
        kill(gateway.process)  # completed, published, no PUBACK: only the buffer has it
        [(stored,)] = query(
            gateway.buffer_path, "SELECT body FROM events WHERE command_id = ?", command_id
        )
        assert json.loads(stored)["action"] == "clock_check"
        broker.process.kill()  # the copy in its socket dies with it
        broker.process.wait(timeout=10)
        assert cloud.copies_of(command_id) == []
        meter.faults.slow_s = 0.0

        broker.start()
        cloud.close()
        cloud = Cloud(broker)
        gateway.process = start_agent(gateway.path)
        answer = cloud.answer(command_id)
        assert answer == json.loads(stored)  # the same answer, not a new run
        assert answer["ok"] is True and answer["meter"] == meter.serial, answer
        wait_until(
            lambda: not query(gateway.buffer_path, leased, command_id), "answer deleted on PUBACK"
        )

        gateway.restart()  # acknowledged: a further restart sends nothing again
        status = cloud.ask({"action": "status"})  # answers go out in order: a marker
        assert status["ok"] is True
        assert len(cloud.copies_of(command_id)) == 1
        assert gateway.alive()
    finally:
        cloud.close()


def test_a_command_running_when_the_agent_dies_is_answered_as_interrupted(
    meters: Meters, online: tuple[Gateway, Cloud]
) -> None:
    gateway, cloud = online
    assert cloud.ask({"action": "status"})["ok"] is True
    meter = meters.tcp[0].meter
    meter.clock_offset_s = 120.0
    meter.faults.slow_s = SLOW_ANSWER_S
    command_id = "clock-sync-1"
    cloud.send(
        command_id,
        json.dumps({"action": "clock_sync", "meter": meter.serial, "threshold_s": 10}).encode(),
    )
    wait_until(lambda: running_in_buffer(gateway.buffer_path, command_id), "command taken")
    kill(gateway.process)
    offset_at_kill = meter.clock_offset_s
    meter.faults.slow_s = 0.0
    assert cloud.copies_of(command_id) == []

    gateway.process = start_agent(gateway.path)
    answer = cloud.answer(command_id)
    assert answer == {"ok": False, "action": "clock_sync", "error": INTERRUPTED}
    assert "interrupted by agent restart" in answer["error"]
    status = cloud.ask({"action": "status"})["status"]
    assert status["commands"]["interrupted"] == 1
    assert status["commands"]["running"] == 1  # the status command itself
    # Not run again: the meter's clock is where the kill left it.
    assert meter.clock_offset_s == offset_at_kill
    assert len(cloud.copies_of(command_id)) == 1
    # Asked again, the same (failed) answer: the cloud decides, with a new id.
    cloud.send(command_id, b'{"action": "clock_sync", "meter": "x"}')
    assert cloud.answer(command_id, copies=2) == answer
    assert meter.clock_offset_s == offset_at_kill


def test_a_command_id_sent_again_is_answered_again_and_not_run_again(
    meters: Meters, online: tuple[Gateway, Cloud]
) -> None:
    gateway, cloud = online
    meter = meters.tcp[1].meter
    meter.clock_offset_s = 120.0  # two minutes fast
    command_id = "clock-sync-2"
    payload = json.dumps({"action": "clock_sync", "meter": meter.serial, "threshold_s": 10})
    cloud.send(command_id, payload.encode())
    first = cloud.answer(command_id)
    assert first["ok"] is True and first["synced"] is True, first
    assert abs(meter.clock_offset_s) < 5  # set once

    meter.clock_offset_s = 120.0  # drifted again: a second run would set it again
    cloud.send(command_id, payload.encode())  # a redelivery, or the cloud re-sending
    assert cloud.answer(command_id, copies=2) == first
    assert meter.clock_offset_s == 120.0  # not run again

    gateway.restart()  # remembered across a restart (the buffer keeps the ids)
    cloud.send(command_id, payload.encode())
    assert cloud.answer(command_id, copies=3) == first
    assert meter.clock_offset_s == 120.0
    counts = cloud.ask({"action": "status"})["status"]["commands"]
    assert counts["duplicates"] == 1 and counts["remembered"] >= 1, counts

    # A new id is a new command: it runs.
    again = cloud.ask({"action": "clock_sync", "meter": meter.serial, "threshold_s": 10})
    assert again["synced"] is True and abs(meter.clock_offset_s) < 5


def test_bad_commands_are_answered_with_their_reason_counted_and_the_agent_goes_on(
    meters: Meters, online: tuple[Gateway, Cloud]
) -> None:
    gateway, cloud = online
    assert cloud.ask({"action": "status"})["ok"] is True
    huge = json.dumps({"action": "apply_config", "config": "x" * 2 * MAX_COMMAND_BYTES})
    bad: dict[str, tuple[bytes, str]] = {
        "not-json": (b"{action: status", "bad command: not JSON"),
        "not-utf8": (b"\xff\xfe{}", "bad command: not UTF-8"),
        "a-list": (b'["status"]', "bad command: a JSON object is needed, not list"),
        "no-action": (b'{"meter": "x"}', "bad command: 'action' (a string) is required"),
        "unknown": (b'{"action": "format_disk"}', "unknown action 'format_disk'"),
        "bad-arg": (
            json.dumps(
                {"action": "clock_sync", "meter": meters.tcp[0].meter.serial, "threshold_s": -1}
            ).encode(),
            "bad command: 'threshold_s' must be a number of seconds >= 0",
        ),
        "huge": (huge.encode(), f"more than the {MAX_COMMAND_BYTES} a command may have"),
        "x" * 200: (b'{"action": "status"}', "the id has more than 128 characters"),
    }
    for command_id, (payload, _) in bad.items():
        cloud.send(command_id, payload)
    for command_id, (_, reason) in bad.items():
        answer = cloud.answer(command_id)
        assert answer["ok"] is False and reason in answer["error"], (command_id, answer)
    status = cloud.ask({"action": "status"})["status"]
    assert status["running"] is True
    assert status["commands"]["refused"] == len(bad), status["commands"]
    # Still working: a meter command runs, and readings keep coming.
    check = cloud.ask({"action": "clock_check", "meter": meters.tcp[0].meter.serial})
    assert check["ok"] is True, check
    cloud.got = set()
    serial = meters.tcp[0].meter.serial
    cloud.collect_until(lambda got: any(r[0] == serial for r in got), 60)
    assert any(r[0] == serial for r in cloud.got)
    assert gateway.alive()
