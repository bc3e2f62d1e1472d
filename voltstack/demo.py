"""`voltstack demo`: the main job on embedded defaults.

Today it starts the embedded MQTT broker, proves it with a QoS 1 round trip
through paho-mqtt (the client the agent and the cloud use), and reports which
parts of the stack are present. The simulated fleet, the agents and the cloud
join here as their issues land (docs/roadmap.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from rich.console import Console
from rich.table import Table

import fastcodec
from voltstack import __version__
from voltstack.broker import embedded_broker, free_port, port_is_free


@dataclass(frozen=True)
class DemoOptions:
    host: str
    mqtt_port: int
    duration_s: float | None


def mqtt_round_trip_ms(host: str, port: int, timeout_s: float = 5.0) -> float:
    """Publish a retained QoS 1 message and read it back; return the milliseconds.

    Raises:
        RuntimeError: the broker did not answer within `timeout_s`.
    """
    topic = "vs/v1/_demo/status"
    payload = uuid.uuid4().hex.encode()
    received = threading.Event()

    def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.payload == payload:
            received.set()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"demo-check-{payload.decode()[:8]}"
    )
    client.on_message = on_message
    client.connect(host, port)
    client.loop_start()
    try:
        started = time.perf_counter()
        # Retained, so the order of subscribe and publish does not matter.
        client.subscribe(topic, qos=1)
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(timeout_s)
        if not received.wait(timeout_s):
            raise RuntimeError(f"no answer from the MQTT broker at {host}:{port} in {timeout_s} s")
        return (time.perf_counter() - started) * 1000
    finally:
        client.disconnect()
        client.loop_stop()


def _summary(broker_url: str, round_trip_ms: float) -> Table:
    table = Table(title=f"voltstack {__version__} demo", show_header=True)
    table.add_column("part")
    table.add_column("state")
    table.add_row(
        "MQTT broker (amqtt, embedded)", f"{broker_url}  round trip {round_trip_ms:.1f} ms"
    )
    table.add_row("fastcodec", f"{fastcodec.IMPLEMENTATION} codecs")
    for part in ("simulated fleet", "gateway agents", "cloud ingestion + console"):
        table.add_row(part, "[dim]not yet part of the demo (docs/roadmap.md)[/dim]")
    return table


async def _run(options: DemoOptions, console: Console) -> None:
    async with embedded_broker(options.host, options.mqtt_port) as broker_url:
        with console.status("checking the broker with an MQTT round trip"):
            round_trip_ms = await asyncio.to_thread(
                mqtt_round_trip_ms, options.host, options.mqtt_port
            )
        console.print(_summary(broker_url, round_trip_ms))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        console.print(
            "running; press Ctrl-C to stop"
            if options.duration_s is None
            else f"running for {options.duration_s:g} s"
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), options.duration_s)
        console.print("stopping")


def run_demo(*, host: str, mqtt_port: int, duration_s: float | None, console: Console) -> None:
    """Run the demo until Ctrl-C or for `duration_s` seconds."""
    if not port_is_free(host, mqtt_port):
        fallback = free_port(host)
        console.print(f"port {mqtt_port} is taken on {host}; the broker uses {fallback} instead")
        mqtt_port = fallback
    asyncio.run(_run(DemoOptions(host, mqtt_port, duration_s), console))
