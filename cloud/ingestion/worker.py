"""The ingestion worker: MQTT in, time-series store and operational DB out.

Strategy: paho-mqtt's network thread only queues what arrives; one
processing thread takes the messages in order, validates them
(cloud.ingestion.validation), writes the valid readings to the time-series
store, commits the bookkeeping (sequence, per-minute counters, dead letters)
to the operational database, and only then acknowledges the message
(``manual_ack=True``). docs/ingestion.md tells the whole story.

Invariants:

- a QoS 1 message is acknowledged only after its readings are in the store
  and its bookkeeping is committed, or after it was dead-lettered (committed)
  because it can never be stored; a killed worker or a dead store loses
  nothing, the broker redelivers whatever was not acknowledged;
- a transient failure (store or database down) never acknowledges: the
  same message is retried with back-off while the worker reports not ready,
  and the broker holds the rest (at most `max_in_flight` are sent to us
  unacknowledged, so the in-memory queue stays bounded);
- a message received on an earlier connection is never acknowledged on a
  later one (its packet id means nothing there): it is dropped, and the
  broker redelivers it from the persistent session;
- writes are idempotent, so redelivery and two workers seeing the same
  message give exactly-once storage.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.db import unit_of_work, utc_now
from cloud.core.exceptions import DatabaseError
from cloud.fleet.exceptions import GatewayNotFound, InvalidSequence
from cloud.fleet.models import Gateway
from cloud.fleet.service import (
    add_dead_letter,
    advance_sequence,
    count_ingestion,
    meters_of_gateway,
    record_status,
)
from cloud.ingestion.models import DeadLetterReason
from cloud.ingestion.validation import (
    TOPIC_KINDS,
    Installation,
    Refusal,
    ValidationRules,
    check_gateway,
    decode_payload,
    meters_not_on_gateway,
    parse_topic,
    screen_readings,
    select_readings,
)
from cloud.timeseries.exceptions import PointsRejected, StoreUnavailable
from cloud.timeseries.store import TimeSeriesStore, to_ms
from fastcodec.uplink import Batch, encode_batch

__all__ = ["IngestionWorker", "WorkerConfig", "WorkerMetrics"]

logger = logging.getLogger(__name__)

# Failures that another attempt may cure: the message is kept and retried.
# A database that is down or unreachable is transient; an integrity or data
# error is not (retrying would block the stream behind a message forever).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    StoreUnavailable,
    DatabaseError,
    OperationalError,
    InterfaceError,
)
# Extra reason codes of the worker (DeadLetterReason has the validation ones).
STORE_REJECTED = "store_rejected"
INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker connects and behaves.

    Attributes:
        host, port: the broker.
        username, password: the worker's broker credentials.
        client_id: stable per worker slot: the broker keeps the persistent
            session (subscriptions, unacknowledged messages) under it.
        share_group: MQTT 5 shared subscription group (``$share/{group}/…``);
            None subscribes plainly (every worker gets every message).
        mqtt_version: 5, or 311 for brokers without MQTT 5.
        session_expiry_s: how long the broker keeps the session of a
            disconnected worker (MQTT 5).
        keepalive_s: MQTT keepalive.
        max_in_flight: Receive Maximum: unacknowledged messages the broker
            may send us at once (bounds the in-memory queue).
        tls: connect with TLS (``mqtts://``); `ca_file` None uses the system CAs.
        ca_file: the CA to verify the broker with.
        retry_initial_s, retry_max_s: back-off between attempts at a message
            while the store or the database is down.
        rules: the validation limits.
        metrics_host, metrics_port: the /metrics and /ready endpoint; port
            None disables it, 0 picks a free port.
    """

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str = "voltstack-ingest"
    share_group: str | None = "ingest"
    mqtt_version: int = 5
    session_expiry_s: int = 86_400
    keepalive_s: int = 30
    max_in_flight: int = 32
    tls: bool = False
    ca_file: str | None = None
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    rules: ValidationRules = field(default_factory=ValidationRules)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None

    def topics(self) -> list[str]:
        """The subscriptions: shared when a group is set."""
        prefix = f"$share/{self.share_group}/" if self.share_group else ""
        return [f"{prefix}vs/v1/+/{kind}" for kind in TOPIC_KINDS]


class WorkerMetrics:
    """The worker's counters (thread-safe): a snapshot dict and Prometheus text."""

    _COUNTERS = (
        "batches",
        "readings_stored",
        "readings_rejected",
        "store_errors",
        "events",
        "status_messages",
        "sequence_gaps",
        "duplicates",
    )

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._counters = dict.fromkeys(self._COUNTERS, 0)
        self._dead_letters: dict[str, int] = {}
        self._recent: deque[tuple[float, int]] = deque()
        self.lag_s: float | None = None

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] += amount
            if name == "readings_stored":
                self._recent.append((self._clock(), amount))

    def dead_letter(self, reason_code: str) -> None:
        with self._lock:
            self._dead_letters[reason_code] = self._dead_letters.get(reason_code, 0) + 1

    def readings_per_s(self, window_s: float = 60.0) -> float:
        """Readings stored per second over the last `window_s`."""
        with self._lock:
            horizon = self._clock() - window_s
            while self._recent and self._recent[0][0] < horizon:
                self._recent.popleft()
            return sum(n for _, n in self._recent) / window_s

    def snapshot(self) -> dict[str, Any]:
        """The counters as a plain dict (``dead_letters`` by reason code)."""
        rate = self.readings_per_s()
        with self._lock:
            return {
                **self._counters,
                "dead_letters": dict(self._dead_letters),
                "dead_letters_total": sum(self._dead_letters.values()),
                "readings_per_s": rate,
                "lag_s": self.lag_s,
            }


@dataclass
class _Message:
    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_at: datetime


def _text(value: Any, limit: int = 64) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


class IngestionWorker:
    """Consumes uplink messages from the broker into the stores.

    Args:
        config: connection and behaviour.
        store: the time-series store readings go to.
        sessions: the operational database (`cloud.core.db.session_factory`).
        clock: the current time (aware UTC), for the window and bookkeeping.

    `start()` connects (retrying in the background until the broker answers)
    and starts processing; `stop()` disconnects without acknowledging what
    is not done. `handle(topic, payload)` processes one message synchronously
    (what the processing thread calls), raising one of `TRANSIENT_ERRORS`
    when it must be retried.
    """

    def __init__(
        self,
        config: WorkerConfig,
        *,
        store: TimeSeriesStore,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self.store = store
        self.sessions = sessions
        self.clock = clock
        self.metrics = WorkerMetrics()
        self.connected = False
        self._failing = False
        self._lock = threading.Lock()
        self._generation = 0
        self._queue: queue.Queue[_Message] = queue.Queue(maxsize=max(64, 2 * config.max_in_flight))
        self._stopping = threading.Event()
        self._processor: threading.Thread | None = None
        self.subscribed = threading.Event()  # the broker acknowledged our subscriptions
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._client = self._make_client()

    def __enter__(self) -> IngestionWorker:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- MQTT -------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        config = self.config
        v5 = config.mqtt_version == 5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        if config.tls:
            client.tls_set(ca_certs=config.ca_file)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            logger.warning("broker refused the connection: %s", reason)
            return
        with self._lock:
            self._generation += 1
            self.connected = True
        logger.info(
            "connected to %s:%s as %s (session present: %s)",
            self.config.host,
            self.config.port,
            self.config.client_id,
            flags.session_present,
        )
        client.subscribe([(topic, 1) for topic in self.config.topics()])

    def _on_subscribe(self, *_args: Any) -> None:
        self.subscribed.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        with self._lock:
            self._generation += 1
            was_connected, self.connected = self.connected, False
        # Their packet ids die with the connection; the broker resends them.
        dropped = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            dropped += 1
        if was_connected:
            logger.warning("disconnected from the broker (%s); %d queued dropped", reason, dropped)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        item = _Message(
            self._generation, message.mid, message.qos, message.topic, message.payload, self.clock()
        )
        # Bounded by Receive Maximum; blocking here only slows the broker down.
        self._queue.put(item)

    def _ack(self, item: _Message) -> None:
        with self._lock:
            if item.qos > 0 and item.generation == self._generation and self.connected:
                self._client.ack(item.mid, item.qos)

    # --- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Connect (in the background), start processing and the metrics endpoint."""
        config = self.config
        if config.mqtt_version == 5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = config.session_expiry_s
            properties.ReceiveMaximum = config.max_in_flight
            self._client.connect_async(
                config.host,
                config.port,
                config.keepalive_s,
                clean_start=False,
                properties=properties,
            )
        else:
            self._client.connect_async(config.host, config.port, config.keepalive_s)
        self._processor = threading.Thread(
            target=self._process_loop, name=f"ingest-{config.client_id}", daemon=True
        )
        self._processor.start()
        self._client.loop_start()
        if config.metrics_port is not None:
            self._start_http(config.metrics_host, config.metrics_port)

    def stop(self) -> None:
        """Stop: what is not acknowledged stays with the broker for the next run."""
        self._stopping.set()
        if self._processor is not None:
            self._processor.join()
        self._client.disconnect()
        self._client.loop_stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            if self._http_thread is not None:
                self._http_thread.join()
            self._http = None

    def ready(self) -> bool:
        """Subscribed at the broker, processing, the last attempt at the store
        succeeded and it pings."""
        processing = self._processor is not None and self._processor.is_alive()
        return (
            self.connected
            and self.subscribed.is_set()
            and processing
            and not self._failing
            and self.store.ping()
        )

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of the metrics endpoint, if it runs."""
        if self._http is None:
            return None
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    # --- processing ---------------------------------------------------------

    def _process_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._process_next()
            except Exception:  # never let the processing thread die silently
                logger.exception("ingestion processing failed; continuing")
                self._stopping.wait(1.0)

    def _process_next(self) -> None:
        """One message: handled and acknowledged, retried while the store is down."""
        try:
            item = self._queue.get(timeout=0.1)
        except queue.Empty:
            return
        delay = self.config.retry_initial_s
        while not self._stopping.is_set() and item.generation == self._generation:
            try:
                self.handle(item.topic, item.payload, received_at=item.received_at)
            except TRANSIENT_ERRORS as error:
                self._failing = True
                self.metrics.add("store_errors")
                logger.warning("cannot store %s now, retry in %.1f s: %s", item.topic, delay, error)
                self._stopping.wait(delay)
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            self._failing = False
            self._ack(item)
            return

    def handle(self, topic: str, payload: bytes, *, received_at: datetime | None = None) -> None:
        """Process one message to the end (stored, dead-lettered, or ignored).

        Raises:
            StoreUnavailable, DatabaseError, sqlalchemy OperationalError or
                InterfaceError: try again later; nothing was acknowledged.
        """
        received_at = received_at or self.clock()
        parsed = parse_topic(topic)
        if parsed is None:
            logger.debug("ignored message on %s", topic)
            return
        gateway_id, kind = parsed
        try:
            if kind == "readings":
                self._handle_readings(gateway_id, topic, payload, received_at)
            elif kind == "status":
                self._handle_status(gateway_id, topic, payload, received_at)
            else:
                self._handle_event(gateway_id, topic, payload, received_at)
        except TRANSIENT_ERRORS:
            raise
        except Exception as error:  # a bug must not stop the stream: keep the message
            logger.exception("failed to process a message on %s", topic)
            self._dead_letter(
                topic, payload, Refusal(INTERNAL_ERROR, f"worker error: {error!r}"), gateway_id
            )

    def _dead_letter(
        self,
        topic: str,
        payload: bytes,
        refusal: Refusal,
        gateway_id: str | None,
        *,
        session: Session | None = None,
    ) -> None:
        if session is None:
            with unit_of_work(self.sessions) as own:
                self._dead_letter(topic, payload, refusal, gateway_id, session=own)
            return
        add_dead_letter(
            session=session,
            topic=topic,
            payload=payload,
            reason_code=refusal.reason_code,
            reason=refusal.reason,
            gateway_id=gateway_id,
            received_at=self.clock(),
        )
        self.metrics.dead_letter(refusal.reason_code)

    def _handle_readings(
        self, gateway_id: str, topic: str, payload: bytes, received_at: datetime
    ) -> None:
        decoded = decode_payload(payload, self.config.rules)
        if isinstance(decoded, Refusal):
            self._dead_letter(topic, payload, decoded, gateway_id)
            return
        batch = decoded
        with unit_of_work(self.sessions) as session:
            gateway = session.get(Gateway, gateway_id)
            refusal = check_gateway(
                topic_gateway=gateway_id,
                batch_gateway=batch.gateway_id,
                known=gateway is not None,
                decommissioned=gateway is not None and gateway.decommissioned_at is not None,
            )
            installations: dict[str, list[Installation]] = {}
            if refusal is None:
                for meter in meters_of_gateway(
                    session=session, gateway_id=gateway_id, include_removed=True
                ):
                    removed = to_ms(meter.removed_at) if meter.removed_at else None
                    installations.setdefault(meter.serial, []).append(
                        Installation(to_ms(meter.installed_at), removed)
                    )
        if refusal is not None:
            self.metrics.add("readings_rejected", len(batch))
            self._dead_letter(topic, payload, refusal, gateway_id)
            return
        foreign = meters_not_on_gateway(batch, installations)
        if foreign:
            shown = ", ".join(foreign[:10]) + (" …" if len(foreign) > 10 else "")
            refusal = Refusal(
                DeadLetterReason.METER_NOT_ON_GATEWAY,
                f"{len(foreign)} meter(s) not installed on {gateway_id} at their readings' "
                f"time: {shown}; the whole batch is refused",
            )
            self._book(gateway_id, topic, batch, received_at, payload, stored=0, refusal=refusal)
            return

        screening = screen_readings(batch, now_ms=to_ms(received_at), rules=self.config.rules)
        valid = batch if not screening.rejected else select_readings(batch, screening.valid)
        try:
            stored = self.store.write_batch(valid) if len(valid) else 0
        except PointsRejected as error:
            refusal = Refusal(STORE_REJECTED, f"the store refused the batch: {error}")
            self._book(gateway_id, topic, batch, received_at, payload, stored=0, refusal=refusal)
            return
        partial = []
        for code, indices, why in (
            (DeadLetterReason.TIMESTAMP_OUT_OF_WINDOW, screening.out_of_window, "timestamp"),
            (DeadLetterReason.VALUE_OUT_OF_RANGE, screening.out_of_range, "value"),
        ):
            if indices:
                partial.append(
                    (
                        encode_batch(select_readings(batch, indices)),
                        Refusal(
                            code,
                            f"{len(indices)} of {len(batch)} readings dropped ({why}); the payload"
                            " holds only them, the other readings were stored",
                        ),
                    )
                )
        self._book(
            gateway_id,
            topic,
            batch,
            received_at,
            payload,
            stored=stored,
            dropped=screening.rejected,
            partial=tuple(partial),
        )
        self.metrics.add("readings_stored", stored)
        self.metrics.lag_s = max(0.0, (to_ms(self.clock()) - batch.created_at_ms) / 1000)

    def _book(
        self,
        gateway_id: str,
        topic: str,
        batch: Batch,
        received_at: datetime,
        payload: bytes,
        *,
        stored: int,
        dropped: int = 0,
        refusal: Refusal | None = None,
        partial: tuple[tuple[bytes, Refusal], ...] = (),
    ) -> None:
        """Sequence, counters and dead letters of one batch, in one transaction."""
        rejected = len(batch) - stored if refusal else dropped
        gap = duplicate = 0
        with unit_of_work(self.sessions) as session:
            try:
                check = advance_sequence(
                    session=session, gateway_id=gateway_id, sequence=batch.sequence
                )
                gap, duplicate = check.gap, int(check.duplicate)
            except InvalidSequence:
                logger.warning(
                    "gateway %s sent sequence %d: not tracked", gateway_id, batch.sequence
                )
            count_ingestion(
                session=session,
                gateway_id=gateway_id,
                at=received_at,
                readings_accepted=stored,
                readings_rejected=rejected,
                batches=1,
                sequence_gaps=gap,
                duplicates=duplicate,
            )
            if refusal is not None:
                self._dead_letter(topic, payload, refusal, gateway_id, session=session)
            for part, why in partial:
                self._dead_letter(topic, part, why, gateway_id, session=session)
        self.metrics.add("batches")
        self.metrics.add("readings_rejected", rejected)
        self.metrics.add("sequence_gaps", gap)
        self.metrics.add("duplicates", duplicate)

    def _handle_status(
        self, gateway_id: str, topic: str, payload: bytes, received_at: datetime
    ) -> None:
        if not payload:  # a retained status being cleared
            return
        document = _json_object(payload)
        online = document.get("online") if document else None
        if not isinstance(online, bool):
            refusal = Refusal(DeadLetterReason.UNDECODABLE, 'status: JSON with "online" expected')
            self._dead_letter(topic, payload, refusal, gateway_id)
            return
        at_ms = document.get("at_ms") if document else None
        at = received_at
        if isinstance(at_ms, int) and not isinstance(at_ms, bool):
            at = datetime.fromtimestamp(at_ms / 1000, tz=received_at.tzinfo)
        depth = document.get("buffer_depth") if document else None
        try:
            with unit_of_work(self.sessions) as session:
                record_status(
                    session=session,
                    gateway_id=gateway_id,
                    online=online,
                    at=at,
                    reason=_text(document.get("reason") if document else None)
                    or ("birth" if online else "last will"),
                    agent_version=_text(document.get("version") if document else None),
                    buffer_depth_readings=depth
                    if isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0
                    else None,
                )
        except GatewayNotFound:
            refusal = Refusal(DeadLetterReason.UNKNOWN_GATEWAY, f"status of {gateway_id!r}")
            self._dead_letter(topic, payload, refusal, gateway_id)
            return
        self.metrics.add("status_messages")

    def _handle_event(
        self, gateway_id: str, topic: str, payload: bytes, _received_at: datetime
    ) -> None:
        document = _json_object(payload)
        name = document.get("event") if document else None
        if not isinstance(name, str):
            refusal = Refusal(DeadLetterReason.UNDECODABLE, 'event: JSON with "event" expected')
            self._dead_letter(topic, payload, refusal, gateway_id)
            return
        # Kept in the log and counted; storing events is a later issue (docs/ingestion.md).
        logger.info("event %s from %s", name[:64], gateway_id)
        logger.debug("event %s from %s: %s", name[:64], gateway_id, document)
        self.metrics.add("events")

    # --- metrics endpoint -----------------------------------------------------

    def prometheus_text(self) -> str:
        """The counters in the Prometheus text exposition format."""
        snap = self.metrics.snapshot()
        lines = []

        def metric(name: str, kind: str, value: float, labels: str = "") -> None:
            full = f"voltstack_ingest_{name}"
            if not labels or not any(line.startswith(f"# TYPE {full} ") for line in lines):
                lines.append(f"# TYPE {full} {kind}")
            lines.append(f"{full}{labels} {'NaN' if math.isnan(value) else f'{value:g}'}")

        for name in WorkerMetrics._COUNTERS:
            metric(f"{name}_total", "counter", snap[name])
        for code, value in sorted(snap["dead_letters"].items()):
            metric("dead_letters_total", "counter", value, f'{{reason="{code}"}}')
        metric("readings_per_second", "gauge", snap["readings_per_s"])
        lag = snap["lag_s"]
        metric("lag_seconds", "gauge", math.nan if lag is None else lag)
        metric("queue_depth", "gauge", self._queue.qsize())
        metric("connected", "gauge", int(self.connected))
        metric("ready", "gauge", int(self.ready()))
        return "\n".join(lines) + "\n"

    def _start_http(self, host: str, port: int) -> None:
        worker = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    status, body = 200, worker.prometheus_text()
                elif self.path == "/ready":
                    ready = worker.ready()
                    status, body = (200, "ready\n") if ready else (503, "not ready\n")
                else:
                    status, body = 404, "not found\n"
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("metrics: " + format, *args)

        self._http = ThreadingHTTPServer((host, port), Handler)
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, name="ingest-metrics", daemon=True
        )
        self._http_thread.start()


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None
