"""Broker files from the operational database confine each gateway, on a real Mosquitto."""

from __future__ import annotations

import queue
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cloud.core.db import make_engine, session_factory, unit_of_work, upgrade_database
from cloud.fleet import service
from tests.servers import MosquittoServer, start_mosquitto, stop_mosquitto

pytestmark = pytest.mark.integration

CLOUD = Path(sys.executable).parent / "voltstack-cloud"


class Client:
    def __init__(self, broker: MosquittoServer, username: str, password: str) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"t-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set(username, password)
        self.client.on_connect = lambda _c, _u, _f, reason, _p: self.events.put(("connect", reason))
        self.client.on_publish = lambda _c, _u, mid, reason, _p: self.events.put(("puback", reason))
        self.client.on_subscribe = lambda _c, _u, _m, reasons, _p: self.events.put(
            ("suback", reasons)
        )
        self.client.on_message = lambda _c, _u, message: self.events.put(("message", message))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def expect(self, kind: str) -> Any:
        got, value = self.events.get(timeout=10)
        while got != kind:
            got, value = self.events.get(timeout=10)
        return value

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_generated_files_confine_gateways_and_let_the_cloud_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ops.sqlite'}"
    upgrade_database(url)
    engine = make_engine(url)
    with unit_of_work(session_factory(engine)) as session:
        _, password_a = service.register_gateway(
            session=session, gateway_id="gw-a", name="A", site="s"
        )
        service.register_gateway(session=session, gateway_id="gw-b", name="B", site="s")
        _, password_c = service.register_gateway(
            session=session, gateway_id="gw-c", name="C", site="s"
        )
        service.decommission_gateway(session=session, gateway_id="gw-c", at=datetime.now(UTC))
    engine.dispose()
    (tmp_path / "ingest.secret").write_text("ingest-secret\n")
    broker = start_mosquitto(tmp_path / "broker")
    try:
        result = subprocess.run(
            [
                CLOUD,
                "broker-acl",
                "--url",
                url,
                "--password-file",
                str(broker.password_file),
                "--acl-file",
                str(broker.acl_file),
                "--service-user",
                f"ingest:{tmp_path / 'ingest.secret'}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "2 gateways, 1 services" in result.stdout
        assert oct(broker.password_file.stat().st_mode & 0o777) == "0o600"
        broker.reload()

        cloud = Client(broker, "ingest", "ingest-secret")
        assert not cloud.expect("connect").is_failure
        cloud.client.subscribe("$share/ingest/vs/v1/+/readings", qos=1)
        cloud.expect("suback")

        gateway_a = Client(broker, "gw-a", password_a)
        assert not gateway_a.expect("connect").is_failure
        gateway_a.client.publish("vs/v1/gw-a/readings", b"mine", qos=1)
        assert gateway_a.expect("puback").value == 0
        assert cloud.expect("message").payload == b"mine"
        gateway_a.client.publish("vs/v1/gw-b/readings", b"not mine", qos=1)
        assert gateway_a.expect("puback").value == 135  # not authorised
        # Commands: the cloud writes them, each gateway reads only its own.
        gateway_a.client.subscribe("vs/v1/+/cmd/#", qos=1)
        gateway_a.expect("suback")
        cloud.client.publish("vs/v1/gw-b/cmd/1", b"for b", qos=1)
        cloud.client.publish("vs/v1/gw-a/cmd/2", b"for a", qos=1)
        assert gateway_a.expect("message").payload == b"for a"  # b's never arrives first

        retired = Client(broker, "gw-c", password_c)
        assert retired.expect("connect").is_failure  # decommissioned: no account
        for client in (cloud, gateway_a, retired):
            client.close()
    finally:
        stop_mosquitto(broker)


def test_broker_acl_reports_an_unreachable_database(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            CLOUD,
            "broker-acl",
            "--url",
            "postgresql://nobody@127.0.0.1:1/none",
            "--password-file",
            str(tmp_path / "p"),
            "--acl-file",
            str(tmp_path / "a"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and result.stderr.startswith("error:")
    assert "Traceback" not in result.stderr
