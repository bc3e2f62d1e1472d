"""The uplink: readings from the buffer to the broker, deleted only on PUBACK.

The MQTT contract (docs/architecture.md): `vs/v1/{gateway}/readings` carries
uplink batches (fastcodec batch format v1, QoS 1, a per-gateway sequence
number); `events` JSON events (QoS 1); `status` a retained JSON birth message
(online, version, uptime, buffer depth) that the last will turns offline;
`cmd/{id}` arrives from the cloud.

Strategy (paho-mqtt 2, its network loop in one thread of ours):

- **TLS verifies the server, always**: a CA file (or the system's CAs) and
  the host name; a client certificate and key when configured. There is no
  switch to turn verification off.
- **Persistent session** (clean session off, the gateway id as client id) and
  QoS 1: the broker keeps our command subscription across reconnects.
- **Reconnect with exponential back-off and full jitter** (1 s doubling to
  60 s), so ten thousand gateways do not reconnect in the same second after a
  broker restart.
- **Bounded in flight**: at most `max_inflight` batches unacknowledged.
- **PUBACK deletes**: paho reports the PUBACK of each batch; the pump (the
  buffer's owner thread) then acknowledges that lease in the buffer. A lease
  in flight when the connection drops is released and sent again: delivery
  is at least once, and the cloud's idempotent writes make it exactly once in
  storage.
- **Events too**: the agent's events wait in the same buffer (its `events`
  table); the pump leases them in order, one message each, with a window of
  their own (`EVENTS_IN_FLIGHT`, on top of the batches' `max_inflight`, so a
  replay never holds an event back and events never take a batch's place),
  and deletes each on the PUBACK of its message. The (client, mid) of every
  message in flight names either a lease or an event.
- **Command answers are events too**: the agent commits an answer to the
  same outbox (the buffer's `events` table, marked with its command id);
  `publish_event` sends such a row to `cmd_result/{id}` as the answer's
  JSON, and its PUBACK deletes it like any event's. One outbox, one window,
  one recovery path (docs/agent.md, "Commands survive a crash").
"""

from __future__ import annotations

import json
import logging
import queue
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config import UplinkConfig
from edge_agent.domain.buffer_policy import BufferedEvent, Lease, ReadingBuffer
from fastcodec import uplink as batch_codec
from fastcodec.obis import parse_obis

log = logging.getLogger(__name__)

__all__ = [
    "EVENTS_IN_FLIGHT",
    "Acknowledged",
    "MqttUplink",
    "UplinkPump",
    "UplinkState",
    "topics_of",
]

# Event messages unacknowledged at most (beside the batches' window): events
# are few; a handful in flight drains a backlog of thousands in seconds.
EVENTS_IN_FLIGHT = 4


def topics_of(gateway_id: str) -> dict[str, str]:
    prefix = f"vs/v1/{gateway_id}"
    return {
        "readings": f"{prefix}/readings",
        "events": f"{prefix}/events",
        "status": f"{prefix}/status",
        "commands": f"{prefix}/cmd/+",
        "command_results": f"{prefix}/cmd_result",
    }


@dataclass
class UplinkState:
    """What the health endpoint and the birth message report."""

    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    batches_sent: int = 0
    batches_acknowledged: int = 0
    readings_acknowledged: int = 0
    last_puback_at: float | None = None
    last_error: str = ""
    events_sent: int = 0
    events_acknowledged: int = 0
    # (client, mid) → lease id: a mid names a message only within one
    # connection's client (a fresh client per connection starts again at 1).
    in_flight: dict[tuple[object, int], int] = field(default_factory=dict)
    # (client, mid) → event id, the same way.
    events_in_flight: dict[tuple[object, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class Acknowledged:
    """What the broker's PUBACKs since the last look confirmed."""

    leases: list[int]
    events: list[int]


class MqttUplink:
    """One gateway's MQTT connection (see the module doc).

    Args:
        config: broker, credentials, TLS files, keep-alive, in-flight bound.
        gateway_id: this gateway (client id and topic prefix).
        version: the agent's version, for the birth message.
        status: called for the birth message's live fields (buffer depth, …).
        on_command: called (in paho's thread) with (command id, payload bytes).
    """

    def __init__(
        self,
        config: UplinkConfig,
        gateway_id: str,
        *,
        version: str,
        status: Callable[[], dict[str, Any]] = dict,
        on_command: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.config, self.gateway_id, self.version = config, gateway_id, version
        self.topics = topics_of(gateway_id)
        self.state = UplinkState()
        # PUBACKs as (client, mid), from paho's thread to the pump's.
        self.acknowledged: queue.Queue[tuple[object, int]] = queue.Queue()
        self._status, self._on_command = status, on_command
        self._started_at = time.time()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._client = self._make_client()
        self._thread = threading.Thread(target=self._supervise, name="mqtt-uplink", daemon=True)
        self._started = False

    # -- connection -----------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.gateway_id,
            clean_session=False,
            reconnect_on_failure=False,
        )
        if self.config.username:
            client.username_pw_set(self.config.username, self.config.resolved_password())
        if self.config.tls:
            client.tls_set(
                ca_certs=str(self.config.ca_file) if self.config.ca_file else None,
                certfile=str(self.config.cert_file) if self.config.cert_file else None,
                keyfile=str(self.config.key_file) if self.config.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(False)  # the host name must match: always
        # The events' window on top: paho must not hold an event back behind
        # a full window of batches (or a batch behind events).
        client.max_inflight_messages_set(self.config.max_inflight + EVENTS_IN_FLIGHT)
        client.will_set(self.topics["status"], json.dumps({"online": False}), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say offline (retained), disconnect, and stop the network thread."""
        self._stop.set()
        if self.state.connected:
            info = self._client.publish(
                self.topics["status"], json.dumps({"online": False}), qos=1, retain=True
            )
            info.wait_for_publish(timeout_s)
        self._client.disconnect()
        if self._started:
            self._thread.join(timeout_s)

    def _supervise(self) -> None:
        url = urlsplit(self.config.broker)
        host = url.hostname or "localhost"
        port = url.port or (8883 if self.config.tls else 1883)
        delay_s = 1.0
        while not self._stop.is_set():
            # A fresh client per connection: paho would otherwise resend the
            # batches it had in flight, and the pump sends them again from the
            # buffer (released on the reconnect): one copy, not two.
            self._client = self._make_client()
            try:
                self._client.connect(host, port, keepalive=self.config.keepalive_s)
                connected_at = time.monotonic()
                self._client.loop_forever(retry_first_connection=False)
                if time.monotonic() - connected_at > 60:
                    delay_s = 1.0  # a connection that lasted: start the back-off over
            except (OSError, ssl.SSLError, mqtt.WebsocketConnectionError, ValueError) as exc:
                self.state.last_error = f"cannot connect to {host}:{port}: {exc}"
                log.warning("%s", self.state.last_error)
            except Exception as exc:  # a callback's bug must not end the uplink
                self.state.last_error = f"uplink error: {exc}"
                log.exception("uplink connection failed")
            self.state.connected = False
            if self._stop.is_set():
                break
            # Full jitter: anywhere in [0, delay], the delay doubling to 60 s.
            self._stop.wait(random.uniform(0.1, delay_s))
            delay_s = min(delay_s * 2, 60.0)

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        if reason.is_failure:
            self.state.last_error = f"broker refused the connection: {reason}"
            log.error("%s", self.state.last_error)
            client.disconnect()
            return
        self.state.connected = True
        self.state.connects += 1
        log.info("connected to %s as %s", self.config.broker, self.gateway_id)
        client.subscribe(self.topics["commands"], qos=1)
        client.publish(self.topics["status"], json.dumps(self.birth_message()), qos=1, retain=True)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        if self.state.connected:
            self.state.disconnects += 1
            if self._stop.is_set():
                log.info("disconnected from the broker on stop")
            else:
                log.warning("disconnected from the broker: %s", reason)
        self.state.connected = False

    def birth_message(self) -> dict[str, Any]:
        return {
            "online": True,
            "gateway": self.gateway_id,
            "version": self.version,
            "uptime_s": round(time.time() - self._started_at),
            **self._status(),
        }

    # -- publishing -----------------------------------------------------------

    def publish_lease(self, lease: Lease) -> bool:
        """Send a lease as one batch; False when not connected (try later)."""
        if not self.state.connected:
            return False
        payload = encode_lease(self.gateway_id, lease)
        client = self._client
        # No lock of ours around paho's publish: paho calls on_publish holding
        # its own message lock, so a lock taken in both orders deadlocks (it
        # did, at a few thousand batches a second). A PUBACK that arrives
        # before the line below only waits in `acknowledged` until the pump
        # (this thread) resolves it.
        info = client.publish(self.topics["readings"], payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        with self._lock:
            self.state.in_flight[client, info.mid] = lease.lease_id
        self.state.batches_sent += 1
        return True

    def publish_event(self, event: BufferedEvent) -> bool:
        """Send a buffered event as JSON (QoS 1); False when not connected (try later).

        The message is the event's fields with "gateway" and "at_ms" (when it
        happened, as buffered) first; its PUBACK comes back through
        `take_acknowledged`. A command's answer (`event.command_id` set) goes
        to `cmd_result/{id}` exactly as it was stored.
        """
        if not self.state.connected:
            return False
        if event.command_id is not None:
            topic = f"{self.topics['command_results']}/{event.command_id}"
            payload = json.dumps(dict(event.event))
        else:
            fields = {key: value for key, value in event.event.items() if key != "at_ms"}
            topic = self.topics["events"]
            payload = json.dumps({"gateway": self.gateway_id, "at_ms": event.at_ms, **fields})
        client = self._client
        # As in publish_lease: no lock of ours around paho's publish.
        info = client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        with self._lock:
            self.state.events_in_flight[client, info.mid] = event.event_id
        self.state.events_sent += 1
        return True

    def publish_command_result(self, command_id: str, result: dict[str, Any]) -> bool:
        """Send an answer straight away, not from the buffer: only for a command
        the buffer could not even record (then it was not run either)."""
        if not self.state.connected:
            return False
        topic = f"{self.topics['command_results']}/{command_id}"
        return self._client.publish(topic, json.dumps(result), qos=1).rc == 0

    def _on_publish(
        self, client: mqtt.Client, _userdata: Any, mid: int, _reason: Any, _properties: Any
    ) -> None:
        # Paho's thread, inside paho's lock: hand over, take no lock of ours.
        self.acknowledged.put((client, mid))

    def take_acknowledged(self) -> Acknowledged:
        """The leases and events whose messages the broker has acknowledged
        since the last call (the pump's thread; PUBACKs of the status message,
        of command results and of a connection already given up are skipped)."""
        done = Acknowledged([], [])
        while True:
            try:
                key = self.acknowledged.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                lease_id = self.state.in_flight.pop(key, None)
                event_id = self.state.events_in_flight.pop(key, None)
            if lease_id is not None:
                done.leases.append(lease_id)
            if event_id is not None:
                done.events.append(event_id)
        if done.leases or done.events:
            self.state.batches_acknowledged += len(done.leases)
            self.state.events_acknowledged += len(done.events)
            self.state.last_puback_at = time.time()
        return done

    def drop_in_flight(self) -> list[int]:
        """The leases whose PUBACK never came (connection lost): to release."""
        with self._lock:
            leases = list(self.state.in_flight.values())
            self.state.in_flight.clear()
        return leases

    def drop_events_in_flight(self) -> list[int]:
        """The events whose PUBACK never came (connection lost): to release."""
        with self._lock:
            events = list(self.state.events_in_flight.values())
            self.state.events_in_flight.clear()
        return events

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        command_id = message.topic.rsplit("/", 1)[-1]
        if self._on_command is not None:
            self._on_command(command_id, bytes(message.payload))


def encode_lease(gateway_id: str, lease: Lease) -> bytes:
    """The uplink batch for a lease (fastcodec batch format v1)."""
    rows = [
        batch_codec.Reading(r.meter, parse_obis(r.obis), r.at_ms, r.value, r.unit, r.quality)
        for r in lease.readings
    ]
    batch = batch_codec.Batch.from_readings(
        gateway_id, lease.sequence, int(time.time() * 1000), rows
    )
    return batch_codec.encode_batch(batch)


class UplinkPump:
    """Moves leases from the buffer to the uplink, and PUBACKs back (one thread,
    so leases go out in order; the buffer itself is thread-safe).

    The replay throttle: of the `max_inflight` places for unacknowledged
    batches, the last `live_reserve` are for the live lane only (leases with
    ``backlog=False``), so a replay that fills the window still leaves live
    readings a place to go out the moment they are taken; and every lease
    gives `live_share` of its readings to the live lane first
    (docs/buffer.md, "Send order").

    Events go first in each pass, in the order they happened, at most
    `events_in_flight` unacknowledged, in a window of their own: a replay of
    readings cannot hold an event back, nor a backlog of events a batch.

    Args:
        buffer: the store-and-forward buffer.
        uplink: the MQTT connection.
        batch_readings: readings per batch.
        live_share: the part of each lease reserved for the live lane.
        live_reserve: places in flight the backlog may not take (default: a
            quarter of `max_inflight`, at least 1 when there are 2 or more).
        events_in_flight: event messages unacknowledged at most.
    """

    def __init__(
        self,
        buffer: ReadingBuffer,
        uplink: MqttUplink,
        *,
        batch_readings: int = 1000,
        live_share: float = 0.5,
        live_reserve: int | None = None,
        events_in_flight: int = EVENTS_IN_FLIGHT,
    ) -> None:
        if events_in_flight < 1:
            raise ValueError(f"events_in_flight must be at least 1, not {events_in_flight}")
        self.buffer, self.uplink, self.batch_readings = buffer, uplink, batch_readings
        self.events_in_flight = events_in_flight
        self.live_share = live_share
        window = uplink.config.max_inflight
        reserve = max(1, window // 4) if live_reserve is None else live_reserve
        # With one place in flight there is nothing to reserve: the backlog
        # must be able to move at all.
        self.backlog_places = max(1, window - reserve)
        self._connection = 0  # UplinkState.connects when we last looked

    def pump_once(self) -> int:
        """One step: apply PUBACKs, release what a lost connection left in
        flight, send events and batches while their in-flight bounds allow.
        Returns batches sent."""
        self._apply_acknowledgements()
        state = self.uplink.state
        if state.connects != self._connection or not state.connected:
            # A lost connection (or a new one since the last pass): everything
            # unconfirmed goes back to the buffer, in order, to be sent again.
            for lease_id in self.uplink.drop_in_flight():
                self.buffer.release(lease_id)
            for event_id in self.uplink.drop_events_in_flight():
                self.buffer.release_event(event_id)
            self._connection = state.connects
        self.send_events()
        sent = 0
        while self.uplink.state.connected:
            in_flight = len(self.uplink.state.in_flight)
            if in_flight >= self.uplink.config.max_inflight:
                break
            lease = self.buffer.lease(
                self.batch_readings,
                live_share=self.live_share,
                backlog=in_flight < self.backlog_places,
            )
            if lease is None:
                break
            if not self.uplink.publish_lease(lease):
                self.buffer.release(lease.lease_id)
                break
            sent += 1
        return sent

    def send_events(self) -> int:
        """Lease and publish the next events while their window has room.
        Returns events sent."""
        state = self.uplink.state
        room = self.events_in_flight - len(state.events_in_flight)
        if not state.connected or room <= 0:
            return 0
        events = self.buffer.lease_events(room)
        for index, event in enumerate(events):
            if not self.uplink.publish_event(event):
                # Not sent (the connection just went): these go back, in
                # order; those already sent are released on the reconnect.
                for unsent in events[index:]:
                    self.buffer.release_event(unsent.event_id)
                return index
        return len(events)

    def _apply_acknowledgements(self) -> None:
        done = self.uplink.take_acknowledged()
        for lease_id in done.leases:
            self.uplink.state.readings_acknowledged += self.buffer.acknowledge(lease_id)
        for event_id in done.events:
            self.buffer.acknowledge_event(event_id)
