"""`voltstack demo`: the main job on embedded defaults.

Starts, on this machine and with nothing installed by hand:

1. the embedded MQTT broker (amqtt, in this process);
2. the simulated demo fleet (`voltstack-sim fleet`): a gateway with 16
   Modbus meters of three models on a 9600-baud virtual RS-485 bus and two
   Modbus TCP meters; it writes one agent configuration per gateway;
3. one gateway agent per configuration (`voltstack-agent run`): reading the
   meters, buffering, publishing uplink batches to the broker;

and shows, live, what reaches the broker. Everything stops cleanly on
Ctrl-C (or after --duration). Its data lives in one folder (./var by
default) and survives a restart: the fleet keeps its epoch, the agents their
buffers. The cloud side (ingestion, stores, console) joins here as it lands
(docs/roadmap.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.live import Live
from rich.table import Table

import fastcodec
from fastcodec import uplink
from voltstack import __version__
from voltstack.broker import embedded_broker, free_port, port_is_free

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class DemoOptions:
    host: str
    mqtt_port: int
    duration_s: float | None
    data_dir: Path


@dataclass
class GatewayView:
    """What the demo has seen of one gateway on the broker."""

    meters: set[str] = field(default_factory=set)
    readings: int = 0
    batches: int = 0
    online: bool | None = None
    last_batch_at: float | None = None


class BrokerWatch:
    """Counts what the gateways publish (the demo's window on the stack)."""

    def __init__(self, host: str, port: int) -> None:
        self.gateways: dict[str, GatewayView] = defaultdict(GatewayView)
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"demo-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_connect = lambda c, *_: c.subscribe("vs/v1/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        parts = message.topic.split("/")
        if len(parts) < 4:
            return
        gateway, kind = parts[2], parts[3]
        with self._lock:
            view = self.gateways[gateway]
            if kind == "readings":
                with contextlib.suppress(fastcodec.CodecError):
                    batch = uplink.decode_batch(message.payload)
                    view.batches += 1
                    view.readings += len(batch)
                    view.meters.update(batch.meters)
                    view.last_batch_at = time.time()
            elif kind == "status":
                view.online = b'"online": true' in message.payload

    def table(self) -> Table:
        table = Table(
            "gateway",
            "state",
            "meters reporting",
            "readings",
            "batches",
            "last batch (s ago)",
            title="what reaches the broker",
        )
        with self._lock:
            for gateway, view in sorted(self.gateways.items()):
                state = {True: "[green]online[/green]", False: "[red]offline[/red]"}.get(
                    view.online, "?"
                )
                age = f"{time.time() - view.last_batch_at:.0f}" if view.last_batch_at else "—"
                table.add_row(
                    gateway,
                    state,
                    str(len(view.meters)),
                    str(view.readings),
                    str(view.batches),
                    age,
                )
        return table

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_configs(sim_dir: Path, fleet: subprocess.Popen[bytes], since: float) -> list[Path]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if fleet.poll() is not None:
            raise RuntimeError(f"the simulated fleet stopped (see {sim_dir.parent / 'logs'})")
        manifest = sim_dir / "fleet.json"
        if manifest.is_file() and manifest.stat().st_mtime >= since:
            return sorted((sim_dir / "agents").glob("*.yaml"))
        time.sleep(0.2)
    raise RuntimeError("the simulated fleet did not start within 60 s")


async def _run(options: DemoOptions, console: Console) -> None:
    data, logs = options.data_dir, options.data_dir / "logs"
    async with embedded_broker(options.host, options.mqtt_port) as broker_url:
        console.print(
            f"voltstack {__version__} demo — broker {broker_url}, fastcodec "
            f"{fastcodec.IMPLEMENTATION}, data in {data}"
        )
        processes: list[subprocess.Popen[bytes]] = []
        watch = None
        try:
            with console.status("starting the simulated fleet"):
                started = time.time() - 1
                fleet = _spawn(
                    [
                        str(BIN / "voltstack-sim"),
                        "fleet",
                        "--state-dir",
                        str(data / "sim"),
                        "--broker",
                        broker_url,
                    ],
                    logs / "fleet.log",
                )
                processes.append(fleet)
                configs = await asyncio.to_thread(_wait_for_configs, data / "sim", fleet, started)
            with console.status(f"starting {len(configs)} gateway agents"):
                for config in configs:
                    processes.append(
                        _spawn(
                            [str(BIN / "voltstack-agent"), "run", "--config", str(config)],
                            logs / f"agent-{config.stem}.log",
                        )
                    )
                watch = await asyncio.to_thread(BrokerWatch, options.host, options.mqtt_port)
            console.print(
                f"logs in {logs}; press Ctrl-C to stop"
                if options.duration_s is None
                else f"running for {options.duration_s:g} s"
            )
            await _watch(watch, options, console)
        finally:
            if watch is not None:
                console.print(watch.table())
                watch.close()
            console.print("stopping")
            await asyncio.to_thread(_stop, processes[::-1])


async def _watch(watch: BrokerWatch, options: DemoOptions, console: Console) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    deadline = None if options.duration_s is None else loop.time() + options.duration_s
    with Live(watch.table(), console=console, refresh_per_second=1, transient=True) as live:
        while not stop.is_set():
            if deadline is not None and loop.time() >= deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            live.update(watch.table())


def run_demo(
    *, host: str, mqtt_port: int, duration_s: float | None, data_dir: Path, console: Console
) -> None:
    """Run the demo until Ctrl-C or for `duration_s` seconds."""
    if not port_is_free(host, mqtt_port):
        fallback = free_port(host)
        console.print(f"port {mqtt_port} is taken on {host}; the broker uses {fallback} instead")
        mqtt_port = fallback
    try:
        asyncio.run(_run(DemoOptions(host, mqtt_port, duration_s, data_dir.resolve()), console))
    except RuntimeError as exc:  # a part did not start: say which, no traceback
        console.print(f"[red]the demo could not start: {exc}[/red]")
        raise SystemExit(1) from None
