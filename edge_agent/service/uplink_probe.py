"""`voltstack-agent uplink-test`: prove the uplink works before going live.

Connects exactly as the agent will (the same TLS settings, with the server
always verified, the same credentials), subscribes to a one-off topic under
the gateway's own command prefix (`cmd/_probe/<id>`, which the agent's `cmd/+`
subscription does not match) (which its broker ACL lets it read), writes
a message there and waits for it to come back: a round trip through the
broker's ACL in both directions.
"""

from __future__ import annotations

import queue
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config import UplinkConfig

__all__ = ["ProbeResult", "probe_uplink"]


@dataclass
class ProbeResult:
    ok: bool = False
    error: str = ""
    steps: list[tuple[str, str]] = field(default_factory=list)


def probe_uplink(config: UplinkConfig, gateway_id: str, *, timeout_s: float = 10.0) -> ProbeResult:
    """Connect, subscribe, publish, receive; every step reported.

    Never raises for network, TLS or authentication failures: they are the
    result (`ok` False, `error` says which step and why).
    """
    result = ProbeResult()
    url = urlsplit(config.broker)
    host, port = url.hostname or "localhost", url.port or (8883 if config.tls else 1883)
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{gateway_id}-uplink-test",
        clean_session=True,
        reconnect_on_failure=False,
    )
    if config.username:
        client.username_pw_set(config.username, config.resolved_password())
    if config.tls:
        client.tls_set(
            ca_certs=str(config.ca_file) if config.ca_file else None,
            certfile=str(config.cert_file) if config.cert_file else None,
            keyfile=str(config.key_file) if config.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    client.on_connect = lambda _c, _u, _f, reason, _p: events.put(("connect", reason))
    client.on_subscribe = lambda _c, _u, _m, reasons, _p: events.put(("subscribe", reasons))
    client.on_message = lambda _c, _u, message: events.put(("message", message.payload))
    # Two levels below cmd/: the running agent's `cmd/+` does not see it; the
    # gateway's ACL (read cmd/#) still lets it through.
    topic = f"vs/v1/{gateway_id}/cmd/_probe/{uuid.uuid4().hex[:8]}"
    nonce = uuid.uuid4().bytes
    started = time.monotonic()
    try:
        client.connect(host, port, keepalive=config.keepalive_s)
    except (OSError, ssl.SSLError) as exc:
        result.error = f"cannot connect to {host}:{port}: {exc}"
        result.steps.append(("connect", result.error))
        return result
    client.loop_start()
    try:
        kind, reason = _next(events, timeout_s)
        if kind != "connect" or reason.is_failure:
            result.error = f"the broker refused the connection: {reason}"
            result.steps.append(("connect", result.error))
            return result
        tls = " over TLS (server verified)" if config.tls else " (no TLS)"
        result.steps.append(("connect", f"ok{tls}, {(time.monotonic() - started) * 1000:.0f} ms"))
        client.subscribe(topic, qos=1)
        kind, reasons = _next(events, timeout_s)
        if kind != "subscribe" or any(getattr(r, "is_failure", False) for r in reasons):
            result.error = f"subscription to {topic} refused: {reasons}"
            result.steps.append(("subscribe", result.error))
            return result
        result.steps.append(("subscribe", "ok"))
        sent_at = time.monotonic()
        client.publish(topic, nonce, qos=1)
        kind, payload = _next(events, timeout_s)
        if kind != "message" or payload != nonce:
            result.error = "the test message did not come back (check the broker's ACL)"
            result.steps.append(("round trip", result.error))
            return result
        result.steps.append(("round trip", f"ok, {(time.monotonic() - sent_at) * 1000:.1f} ms"))
        result.ok = True
        return result
    except queue.Empty:
        result.error = f"no answer from the broker within {timeout_s:g} s"
        result.steps.append(("wait", result.error))
        return result
    finally:
        client.disconnect()
        client.loop_stop()


def _next(events: queue.Queue[tuple[str, Any]], timeout_s: float) -> tuple[str, Any]:
    return events.get(timeout=timeout_s)
