"""The ingestion worker: MQTT in, time-series store and operational DB out.

Strategy: paho-mqtt's network thread only queues what arrives; one
processing thread takes the messages in order — the readings messages that
are already waiting as one group (up to `max_group_messages`) — validates
them (cloud.ingestion.validation; the group's gateways and meters in one
query), writes the group's valid readings to the time-series store in one
write, commits the group's bookkeeping (sequences, per-minute counters, dead
letters) to the operational database in one transaction, and only then
acknowledges its messages, in order (``manual_ack=True``). Grouping is what
makes a worker fast: one HTTP write and one commit per group instead of per
message. docs/ingestion.md tells the whole story.

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
  message give exactly-once storage;
- a group is all or nothing until its commit: a transient failure retries
  the whole group (nothing acknowledged); a store refusal (4xx) of the
  group's write is narrowed down by writing message by message, so one bad
  message never dead-letters its neighbours; any other error processes the
  group's messages one by one.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.db import unit_of_work, utc_now
from cloud.core.exceptions import DatabaseError
from cloud.fleet.exceptions import GatewayNotFound
from cloud.fleet.models import Gateway, Meter
from cloud.fleet.service import (
    IngestionCount,
    add_dead_letter,
    advance_sequences,
    count_ingestions,
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
from cloud.timeseries.store import TimeSeriesStore, from_ms, to_ms
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
# Batch dictionaries are indexed by uint16: a merged batch holds at most this many entries.
_MAX_DICTIONARY = 65_535


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
        max_group_messages: readings messages already waiting that are
            processed together (one store write, one commit); 1 disables
            grouping. Keep it below `max_in_flight` so the broker refills the
            queue while a group is written.
        max_group_bytes: and at most this many payload bytes per group.
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
    max_group_messages: int = 16
    max_group_bytes: int = 4 * 1024 * 1024
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


@dataclass
class _Plan:
    """What one readings message comes to: decided before anything is written.

    `batch` is None when the message was refused before it could be booked
    (undecodable, or a sender that is not a usable gateway); `valid` holds
    the readings to store; `refusal` dead-letters the whole message;
    `partial` the readings dropped by the screening.
    """

    topic: str
    gateway_id: str
    payload: bytes
    received_at: datetime
    batch: Batch | None = None
    valid: Batch | None = None
    refusal: Refusal | None = None
    rejected_unbooked: int = 0
    dropped: int = 0
    partial: tuple[tuple[bytes, Refusal], ...] = ()
    stored: int = 0


@dataclass(frozen=True)
class _Fleet:
    """The group's gateways (id → decommissioned) and their meters' installations."""

    decommissioned: dict[str, bool]
    installations: dict[str, dict[str, list[Installation]]]


def _is_readings(topic: str) -> bool:
    parsed = parse_topic(topic)
    return parsed is not None and parsed[1] == "readings"


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
        # Taken from the queue but not part of the last group (processing thread only).
        self._held: _Message | None = None
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

    def _next_group(self) -> list[_Message]:
        """The next message, and the readings messages waiting behind it (same connection)."""
        if self._held is None:
            try:
                self._held = self._queue.get(timeout=0.1)
            except queue.Empty:
                return []
        group, self._held = [self._held], None
        if not _is_readings(group[0].topic):
            return group
        size = len(group[0].payload)
        while len(group) < self.config.max_group_messages:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            size += len(item.payload)
            if (
                item.generation != group[0].generation
                or not _is_readings(item.topic)
                or size > self.config.max_group_bytes
            ):
                self._held = item  # first of the next group
                break
            group.append(item)
        return group

    def _process_next(self) -> None:
        """One group: handled and acknowledged, retried while the store is down."""
        group = self._next_group()
        if not group:
            return
        delay = self.config.retry_initial_s
        while not self._stopping.is_set() and group[0].generation == self._generation:
            try:
                if len(group) == 1:
                    self.handle(group[0].topic, group[0].payload, received_at=group[0].received_at)
                else:
                    self.handle_group([(m.topic, m.payload, m.received_at) for m in group])
            except TRANSIENT_ERRORS as error:
                self._failing = True
                self.metrics.add("store_errors")
                logger.warning(
                    "cannot store %s (%d message(s)) now, retry in %.1f s: %s",
                    group[0].topic,
                    len(group),
                    delay,
                    error,
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            self._failing = False
            for item in group:
                self._ack(item)
            return

    def handle_group(self, messages: Sequence[tuple[str, bytes, datetime]]) -> None:
        """Process readings messages together: one store write, one commit.

        Args:
            messages: (topic, payload, received_at) of ``vs/v1/{gw}/readings`` messages.

        Raises:
            As `handle`: nothing of the group is committed then, retry it whole.
        """
        parsed = [(topic, parse_topic(topic), payload, at) for topic, payload, at in messages]
        readings = [
            (topic, found[0], payload, at)
            for topic, found, payload, at in parsed
            if found is not None and found[1] == "readings"
        ]
        if len(readings) != len(messages):
            raise ValueError("handle_group takes readings messages only")
        try:
            self._handle_readings(readings)
        except TRANSIENT_ERRORS:
            raise
        except Exception:  # a bug must not cost the group's good messages
            logger.exception("a group of %d messages failed; one by one", len(messages))
            for topic, payload, received_at in messages:
                self.handle(topic, payload, received_at=received_at)

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
                self._handle_readings([(topic, gateway_id, payload, received_at)])
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

    def _handle_readings(self, messages: Sequence[tuple[str, str, bytes, datetime]]) -> None:
        """(topic, gateway id, payload, received_at) of readings messages, to the end."""
        plans = []
        for topic, gateway_id, payload, received_at in messages:
            plan = _Plan(topic, gateway_id, payload, received_at)
            decoded = decode_payload(payload, self.config.rules)
            if isinstance(decoded, Refusal):
                plan.refusal = decoded
            else:
                plan.batch = decoded
            plans.append(plan)
        fleet = self._fleet([plan for plan in plans if plan.batch is not None])
        for plan in plans:
            if plan.batch is not None:
                self._screen(plan, fleet)
        self._write(plans)
        self._commit(plans)

    def _fleet(self, plans: list[_Plan]) -> _Fleet:
        """The gateways of the plans and what their batches' meters need, in few reads.

        A meter whose one installation covers the group's whole time span gets
        that span as its installation, from a query that returns serials only
        (the usual case: loading and converting every meter's dates was a fifth
        of a worker's time); the others — moved, removed, unknown — get their
        full installation history, from a second query, only when there are any.
        """
        if not plans:
            return _Fleet({}, {})
        gateway_ids = {plan.gateway_id for plan in plans}
        spans = [
            (min(plan.batch.timestamps_ms), max(plan.batch.timestamps_ms))
            for plan in plans
            if plan.batch is not None and len(plan.batch)
        ]
        # Without a single reading no meter needs checking (an impossible span then).
        first_ms = min((first for first, _ in spans), default=0)
        last_ms = max((last for _, last in spans), default=-1)
        span = Installation(first_ms, last_ms + 1)
        with unit_of_work(self.sessions) as session:
            decommissioned = {
                gateway_id: at is not None
                for gateway_id, at in session.execute(
                    select(Gateway.id, Gateway.decommissioned_at).where(Gateway.id.in_(gateway_ids))
                )
            }
            installations: dict[str, dict[str, list[Installation]]] = {
                gateway_id: {} for gateway_id in decommissioned
            }
            # Installed at the first reading's time and still at the last one's (to_ms
            # floors: removed_at >= last + 1 ms is what Installation.covers means).
            for gateway_id, serial in session.execute(
                select(Meter.gateway_id, Meter.serial).where(
                    Meter.gateway_id.in_(gateway_ids),
                    Meter.installed_at <= from_ms(first_ms),
                    Meter.removed_at.is_(None) | (Meter.removed_at >= from_ms(last_ms + 1)),
                )
            ):
                installations[gateway_id][serial] = [span]
            doubtful = {
                serial
                for plan in plans
                if plan.batch is not None and plan.gateway_id in installations
                for serial in plan.batch.meters
                if serial not in installations[plan.gateway_id]
            }
            if doubtful:
                self._add_histories(session, installations, doubtful)
        return _Fleet(decommissioned, installations)

    @staticmethod
    def _add_histories(
        session: Session,
        installations: dict[str, dict[str, list[Installation]]],
        serials: set[str],
    ) -> None:
        """Every installation (past ones too) of `serials` on the gateways."""
        for gateway_id, serial, installed_at, removed_at in session.execute(
            select(Meter.gateway_id, Meter.serial, Meter.installed_at, Meter.removed_at)
            .where(Meter.gateway_id.in_(list(installations)), Meter.serial.in_(serials))
            .order_by(Meter.serial, Meter.installed_at)
        ):
            # Added to the span where a serial is cleared on one gateway and doubtful on
            # another: the span stays true, the history adds nothing wrong.
            removed = to_ms(removed_at) if removed_at else None
            spells = installations[gateway_id].setdefault(serial, [])
            spells.append(Installation(to_ms(installed_at), removed))

    def _screen(self, plan: _Plan, fleet: _Fleet) -> None:
        """Sender, meters, then each reading: fills in the plan."""
        batch, gateway_id = plan.batch, plan.gateway_id
        assert batch is not None
        known = gateway_id in fleet.decommissioned
        refusal = check_gateway(
            topic_gateway=gateway_id,
            batch_gateway=batch.gateway_id,
            known=known,
            decommissioned=known and fleet.decommissioned[gateway_id],
        )
        if refusal is not None:  # not booked: there is no gateway row to book on
            plan.refusal, plan.batch, plan.rejected_unbooked = refusal, None, len(batch)
            return
        foreign = meters_not_on_gateway(batch, fleet.installations.get(gateway_id, {}))
        if foreign:
            shown = ", ".join(foreign[:10]) + (" …" if len(foreign) > 10 else "")
            plan.refusal = Refusal(
                DeadLetterReason.METER_NOT_ON_GATEWAY,
                f"{len(foreign)} meter(s) not installed on {gateway_id} at their readings' "
                f"time: {shown}; the whole batch is refused",
            )
            return
        screening = screen_readings(batch, now_ms=to_ms(plan.received_at), rules=self.config.rules)
        plan.valid = batch if not screening.rejected else select_readings(batch, screening.valid)
        plan.dropped = screening.rejected
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
        plan.partial = tuple(partial)

    def _write(self, plans: list[_Plan]) -> None:
        """The valid readings of every plan, in as few store writes as the format allows."""
        pending = [p for p in plans if p.refusal is None and p.valid is not None and len(p.valid)]
        if len(pending) > 1:
            try:
                for merged in _merge([p.valid for p in pending if p.valid is not None]):
                    self.store.write_batch(merged)
            except PointsRejected as error:
                # Someone's points are refused: find whose, without refusing the others.
                logger.warning("store refused a group of %d: one by one (%s)", len(pending), error)
            else:
                for plan in pending:
                    plan.stored = len(plan.valid) if plan.valid is not None else 0
                return
        for plan in pending:
            assert plan.valid is not None
            try:
                plan.stored = self.store.write_batch(plan.valid)
            except PointsRejected as error:
                plan.refusal = Refusal(STORE_REJECTED, f"the store refused the batch: {error}")
                plan.stored, plan.partial = 0, ()  # the whole payload is kept instead

    def _commit(self, plans: list[_Plan]) -> None:
        """Sequences, counters and dead letters of the plans, in one transaction."""
        counts = {"batches": 0, "readings_rejected": 0, "sequence_gaps": 0, "duplicates": 0}
        letters: list[str] = []
        lag_from_ms: int | None = None
        booked = [plan for plan in plans if plan.batch is not None]
        with unit_of_work(self.sessions) as session:
            for plan, (gap, duplicate, rejected) in zip(
                booked, self._book(session, booked), strict=True
            ):
                assert plan.batch is not None
                counts["batches"] += 1
                counts["readings_rejected"] += rejected
                counts["sequence_gaps"] += gap
                counts["duplicates"] += duplicate
                lag_from_ms = plan.batch.created_at_ms
            for plan in plans:
                counts["readings_rejected"] += plan.rejected_unbooked
                refusals = [(plan.payload, plan.refusal)] if plan.refusal else []
                for payload, refusal in [*refusals, *plan.partial]:
                    self._add_dead_letter(session, plan.topic, payload, refusal, plan.gateway_id)
                    letters.append(refusal.reason_code)
        for name, amount in counts.items():
            self.metrics.add(name, amount)
        for code in letters:
            self.metrics.dead_letter(code)
        stored = sum(plan.stored for plan in plans)
        if stored:
            self.metrics.add("readings_stored", stored)
        if lag_from_ms is not None:
            self.metrics.lag_s = max(0.0, (to_ms(self.clock()) - lag_from_ms) / 1000)

    def _book(self, session: Session, plans: list[_Plan]) -> list[tuple[int, int, int]]:
        """Sequences and per-minute counters of the batches, one statement each (a
        statement per batch was a third of a worker's time): (gap, duplicate, rejected)
        per plan."""
        if not plans:
            return []
        sequences: list[tuple[str, int]] = []
        for plan in plans:
            assert plan.batch is not None
            sequences.append((plan.gateway_id, plan.batch.sequence))
        checks = advance_sequences(session=session, sequences=sequences)
        booked: list[tuple[int, int, int]] = []
        counts: list[IngestionCount] = []
        for plan, check in zip(plans, checks, strict=True):
            assert plan.batch is not None
            rejected = len(plan.batch) - plan.stored if plan.refusal else plan.dropped
            gap = duplicate = 0
            if check is None:
                logger.warning(
                    "gateway %s sent sequence %d: not tracked", plan.gateway_id, plan.batch.sequence
                )
            else:
                gap, duplicate = check.gap, int(check.duplicate)
            booked.append((gap, duplicate, rejected))
            counts.append(
                IngestionCount(
                    plan.gateway_id,
                    plan.received_at,
                    readings_accepted=plan.stored,
                    readings_rejected=rejected,
                    batches=1,
                    sequence_gaps=gap,
                    duplicates=duplicate,
                )
            )
        count_ingestions(session=session, counts=counts)
        return booked

    def _add_dead_letter(
        self, session: Session, topic: str, payload: bytes, refusal: Refusal, gateway_id: str
    ) -> None:
        add_dead_letter(
            session=session,
            topic=topic,
            payload=payload,
            reason_code=refusal.reason_code,
            reason=refusal.reason,
            gateway_id=gateway_id,
            received_at=self.clock(),
        )

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
        self, gateway_id: str, topic: str, payload: bytes, received_at: datetime
    ) -> None:
        # Stored once (committed before we return, so before the ack) or
        # dead-lettered with its reason: cloud.events.service, docs/events.md.
        from cloud.events.service import ingest_event

        outcome = ingest_event(
            sessions=self.sessions,
            gateway_id=gateway_id,
            payload=payload,
            received_at=received_at,
            rules=self.config.rules,
        )
        if isinstance(outcome, Refusal):
            self._dead_letter(topic, payload, outcome, gateway_id)
            return
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


def _merge(batches: list[Batch]) -> list[Batch]:
    """Concatenate batches for few store writes: each result's dictionaries fit uint16."""
    merged: list[Batch] = []
    current: list[Batch] = []
    entries = 0
    for batch in batches:
        size = len(batch.meters) + len(batch.obis_codes) + len(batch.units)
        if current and entries + size > _MAX_DICTIONARY:
            merged.append(_concatenate(current))
            current, entries = [], 0
        current.append(batch)
        entries += size
    if current:
        merged.append(_concatenate(current))
    return merged


def _concatenate(batches: list[Batch]) -> Batch:
    """One batch holding every reading of `batches` (header of the first: only the
    readings matter to a store)."""
    if len(batches) == 1:
        return batches[0]
    meters: list[str] = []
    codes: dict[Any, int] = {}
    units: dict[str, int] = {}
    meter_index, obis_index, unit_index = array("H"), array("H"), array("H")
    timestamps_ms, values, quality = array("q"), array("d"), array("H")
    for batch in batches:
        offset = len(meters)
        meters.extend(batch.meters)
        code_map = [codes.setdefault(code, len(codes)) for code in batch.obis_codes]
        unit_map = [units.setdefault(unit, len(units)) for unit in batch.units]
        meter_index.extend([offset + i for i in batch.meter_index] if offset else batch.meter_index)
        # Gateways of one fleet send the same dictionaries: then no index needs remapping.
        if code_map == list(range(len(code_map))):
            obis_index.extend(batch.obis_index)
        else:
            obis_index.extend([code_map[i] for i in batch.obis_index])
        if unit_map == list(range(len(unit_map))):
            unit_index.extend(batch.unit_index)
        else:
            unit_index.extend([unit_map[i] for i in batch.unit_index])
        timestamps_ms.extend(batch.timestamps_ms)
        values.extend(batch.values)
        quality.extend(batch.quality)
    first = batches[0]
    return Batch(
        first.gateway_id,
        first.sequence,
        first.created_at_ms,
        meters,
        list(codes),
        list(units),
        meter_index,
        obis_index,
        unit_index,
        timestamps_ms,
        values,
        quality,
    )
