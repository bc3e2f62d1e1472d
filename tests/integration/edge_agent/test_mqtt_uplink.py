"""The uplink on a real Mosquitto: PUBACK deletes, last will, TLS, confinement."""

from __future__ import annotations

import gc
import json
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.adapters.mqtt_uplink import MqttUplink, UplinkPump
from edge_agent.adapters.sqlite_buffer import SqliteBuffer
from edge_agent.config import UplinkConfig
from edge_agent.domain.readings import QualityFlag, Reading
from fastcodec import uplink as batch_codec
from tests.servers import MosquittoServer, TlsFiles, make_test_pki

pytestmark = pytest.mark.integration


def wait_for(
    condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Watcher:
    """An admin subscriber that collects what the gateway publishes."""

    def __init__(
        self,
        broker: MosquittoServer,
        topic: str,
        port: int | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:6]}"
        )
        self.client.username_pw_set(broker.admin_username, broker.admin_password)
        if tls:
            self.client.tls_set(ca_certs=str(tls.ca_file))
        subscribed = queue.Queue[object]()
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.on_subscribe = lambda *_args: subscribed.put(True)
        self.client.connect(broker.host, port or broker.port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        subscribed.get(timeout=5)

    def next(self, timeout_s: float = 10.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def readings(meter: str, count: int, start_ms: int = 1_767_225_600_000) -> list[Reading]:
    return [
        Reading(
            meter,
            "1-0:1.8.0",
            start_ms + i * 60_000,
            1000.0 + i,
            "kWh",
            int(QualityFlag.AGENT_TIMESTAMP),
        )
        for i in range(count)
    ]


@pytest.fixture
def buffer(tmp_path: Path) -> Iterator[SqliteBuffer]:
    with SqliteBuffer(
        tmp_path / "buffer.sqlite", max_readings=100_000, max_age_days=3650
    ) as opened:
        yield opened


def make_uplink(
    broker: MosquittoServer, gateway: str, password: str, **config: object
) -> MqttUplink:
    settings = UplinkConfig.model_validate(
        {
            "broker": f"mqtt://{broker.host}:{broker.port}",
            "username": gateway,
            "password": password,
            "keepalive_s": 5,
            **config,
        }
    )
    return MqttUplink(settings, gateway, version="test", status=lambda: {"buffer_depth": 0})


def test_readings_reach_the_broker_and_leave_the_buffer_only_on_puback(
    mosquitto: MosquittoServer, buffer: SqliteBuffer
) -> None:
    gateway, password = mosquitto.add_gateway()
    watcher = Watcher(mosquitto, f"vs/v1/{gateway}/readings")
    link = make_uplink(mosquitto, gateway, password)
    sent = readings("SDM630-0001", 2500) + readings("EM24-0002", 500)
    buffer.append(sent)
    link.start()
    try:
        wait_for(lambda: link.state.connected, what="connection")
        pump = UplinkPump(buffer, link, batch_readings=1000)
        received: list[batch_codec.Reading] = []
        sequences = []
        deadline = time.monotonic() + 20
        while len(received) < len(sent) and time.monotonic() < deadline:
            pump.pump_once()
            try:
                batch = batch_codec.decode_batch(watcher.next(0.05).payload)
            except queue.Empty:
                continue
            sequences.append(batch.sequence)
            received.extend(batch.readings())
        wait_for(
            lambda: (pump.pump_once() or True) and buffer.stats().depth == 0, what="empty buffer"
        )
        got = {(r.meter, str(r.obis), r.timestamp_ms, r.value, r.unit) for r in received}
        assert got == {(r.meter, r.obis, r.at_ms, r.value, r.unit) for r in sent}
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
        assert link.state.readings_acknowledged == len(sent)
    finally:
        link.stop()
        watcher.close()


def test_birth_message_and_last_will(mosquitto: MosquittoServer) -> None:
    gateway, password = mosquitto.add_gateway()
    watcher = Watcher(mosquitto, f"vs/v1/{gateway}/status")
    link = make_uplink(mosquitto, gateway, password)
    link.start()
    try:
        birth = json.loads(watcher.next().payload)
        assert birth["online"] is True and birth["version"] == "test" and "buffer_depth" in birth
        # The connection dies without a DISCONNECT (a power cut): the broker
        # publishes the last will.
        socket = link._client.socket()
        assert socket is not None
        link._stop.set()
        socket.close()
        assert json.loads(watcher.next().payload) == {"online": False}
    finally:
        link.stop()
        watcher.close()


def test_a_gateway_cannot_publish_under_another_prefix(mosquitto: MosquittoServer) -> None:
    gateway, password = mosquitto.add_gateway()
    watcher = Watcher(mosquitto, "vs/v1/+/readings")
    link = make_uplink(mosquitto, gateway, password)
    link.topics["readings"] = "vs/v1/someone-else/readings"  # a compromised agent
    link.start()
    try:
        wait_for(lambda: link.state.connected, what="connection")
        from edge_agent.domain.buffer_policy import Lease

        lease = Lease(1, 1, tuple(readings("X-1", 3)))
        assert link.publish_lease(lease)
        with pytest.raises(queue.Empty):
            watcher.next(1.0)  # the broker's ACL dropped it
    finally:
        link.stop()
        watcher.close()


def test_tls_works_with_the_right_ca(tls_broker: tuple[MosquittoServer, TlsFiles]) -> None:
    broker, files = tls_broker
    gateway, password = broker.add_gateway()
    settings = UplinkConfig(
        broker=f"mqtts://127.0.0.1:{broker.port}",
        username=gateway,
        password=password,
        ca_file=files.ca_file,
    )
    link = MqttUplink(settings, gateway, version="test")
    link.start()
    try:
        wait_for(lambda: link.state.connected, what="a TLS connection")
    finally:
        link.stop()


# paho-mqtt drops the socket of a failed TLS handshake without closing it
# (the garbage collector does): a ResourceWarning from paho, not from us.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tls_refuses_a_broker_the_ca_did_not_sign(
    tls_broker: tuple[MosquittoServer, TlsFiles], tmp_path: Path
) -> None:
    broker, _ = tls_broker
    other_ca = make_test_pki(tmp_path / "other").ca_file
    gateway, password = broker.add_gateway()
    settings = UplinkConfig(
        broker=f"mqtts://127.0.0.1:{broker.port}",
        username=gateway,
        password=password,
        ca_file=other_ca,
    )
    link = MqttUplink(settings, gateway, version="test")
    link.start()
    try:
        wait_for(lambda: "certificate verify failed" in link.state.last_error, what="a refusal")
        assert link.state.connects == 0
    finally:
        link.stop()
        gc.collect()  # paho's dropped socket is collected here, not in a later test
