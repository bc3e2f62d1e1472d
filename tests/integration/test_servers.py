"""The fixtures' real servers work, and do what later tests rely on them for."""

from __future__ import annotations

import queue
import secrets
import time
import uuid

import paho.mqtt.client as mqtt
import psycopg
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.servers import InfluxServer, MosquittoServer, PostgresServer

pytestmark = pytest.mark.integration


def connect(
    broker: MosquittoServer,
    username: str,
    password: str,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"test-{uuid.uuid4().hex[:10]}",
        protocol=protocol,
    )
    client.username_pw_set(username, password)
    connected: queue.Queue[ReasonCode] = queue.Queue()
    client.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
    client.connect(broker.host, broker.port)
    client.loop_start()
    reason = connected.get(timeout=5)
    if reason.is_failure:
        close(client)
        raise AssertionError(f"connect refused: {reason}")
    return client


def subscribe(client: mqtt.Client, topic: str) -> queue.Queue[mqtt.MQTTMessage]:
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed: queue.Queue[object] = queue.Queue()
    client.on_message = lambda _c, _u, message: received.put(message)
    client.on_subscribe = lambda _c, _u, _mid, reasons, _p: subscribed.put(reasons)
    client.subscribe(topic, qos=1)
    subscribed.get(timeout=5)
    return received


def close(*clients: mqtt.Client) -> None:
    for client in clients:
        client.disconnect()
        client.loop_stop()


def test_mosquitto_qos1_round_trip(mosquitto: MosquittoServer) -> None:
    topic = f"vs/v1/test-{uuid.uuid4().hex[:8]}/readings"
    subscriber = connect(mosquitto, mosquitto.admin_username, mosquitto.admin_password)
    publisher = connect(mosquitto, mosquitto.admin_username, mosquitto.admin_password)
    try:
        received = subscribe(subscriber, topic)
        payload = secrets.token_bytes(64)
        info = publisher.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=5)
        assert info.is_published()  # PUBACK received
        message = received.get(timeout=5)
        assert (message.topic, message.payload, message.qos) == (topic, payload, 1)
    finally:
        close(subscriber, publisher)


def test_mosquitto_refuses_a_wrong_password(mosquitto: MosquittoServer) -> None:
    with pytest.raises(AssertionError, match="connect refused"):
        connect(mosquitto, mosquitto.admin_username, "not-the-password")


def test_mosquitto_acl_confines_a_gateway_to_its_prefix(mosquitto: MosquittoServer) -> None:
    gateway = f"gw-{uuid.uuid4().hex[:8]}"
    password = secrets.token_hex(8)
    mosquitto.add_user(gateway, password, [f"topic write vs/v1/{gateway}/#"])
    watcher = connect(mosquitto, mosquitto.admin_username, mosquitto.admin_password)
    client = connect(mosquitto, gateway, password, MQTTProtocolVersion.MQTTv5)
    acks: queue.Queue[tuple[int, ReasonCode]] = queue.Queue()
    client.on_publish = lambda _c, _u, mid, reason, _p: acks.put((mid, reason))
    try:
        # Readings only: other tests leave retained status messages on this broker.
        received = subscribe(watcher, "vs/v1/+/readings")
        own = client.publish(f"vs/v1/{gateway}/readings", b"mine", qos=1)
        foreign = client.publish("vs/v1/someone-else/readings", b"not mine", qos=1)
        reasons = dict(acks.get(timeout=5) for _ in range(2))
        # MQTT 5 PUBACK reason codes: 0 success, 135 (0x87) not authorised.
        assert reasons[own.mid].value == 0
        assert reasons[foreign.mid].value == 135
        assert received.get(timeout=5).payload == b"mine"
        time.sleep(0.2)
        assert received.empty(), "the broker delivered a message outside the gateway's prefix"
    finally:
        close(client, watcher)


def test_influxd_write_and_read_back(influxd: InfluxServer) -> None:
    database = f"test_{uuid.uuid4().hex[:8]}"
    influxd.create_database(database)
    influxd.write(
        database,
        "energy,meter=SDM630-0001,obis=1-0:1.8.0 value=1234.5 1700000000000000000\n"
        "energy,meter=SDM630-0001,obis=1-0:1.8.0 value=1234.75 1700000900000000000\n",
    )
    result = influxd.query("SELECT value FROM energy ORDER BY time", database)
    series = result["results"][0]["series"][0]  # type: ignore[index]
    assert series["values"] == [[1700000000000000000, 1234.5], [1700000900000000000, 1234.75]]


def test_influxd_requires_credentials(influxd: InfluxServer) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{influxd.url}/query?q=SHOW+DATABASES", timeout=5)
    refused.value.close()
    assert refused.value.code == 401


def test_postgres_table_round_trip(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.dsn) as connection:
        connection.execute("CREATE TEMP TABLE meters (serial text PRIMARY KEY, ct_ratio int)")
        connection.execute("INSERT INTO meters VALUES ('SDM630-0001', 200), ('EM24-0002', 1)")
        rows = connection.execute("SELECT serial, ct_ratio FROM meters ORDER BY serial").fetchall()
    assert rows == [("EM24-0002", 1), ("SDM630-0001", 200)]


def test_postgres_through_sqlalchemy(postgres: PostgresServer) -> None:
    engine = sa.create_engine(postgres.url)
    metadata = sa.MetaData()
    table = sa.Table(
        f"gateways_{uuid.uuid4().hex[:8]}",
        metadata,
        sa.Column("gateway_id", sa.Text, primary_key=True),
        sa.Column("online", sa.Boolean, nullable=False),
    )
    try:
        metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(table.insert(), [{"gateway_id": "gw-1", "online": True}])
        with engine.connect() as connection:
            assert connection.execute(sa.select(table)).all() == [("gw-1", True)]
    finally:
        metadata.drop_all(engine)
        engine.dispose()
