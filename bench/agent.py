"""The gateway agent: its footprint with 64 meters, and its drain rate to a broker.

(a) **Footprint.** `voltstack-agent run` as its own process, with a generated
config: 64 simulated Eastron SDM120 meters on Modbus TCP (`voltstack-sim
fleet`, another process, not counted) read at 1-minute intervals, and a
local Mosquitto (tests/servers.py starts it). After a first minute to settle,
for `BENCH_AGENT_SECONDS` (default 180 — whole minutes: at 1-minute intervals
a shorter window says little):

- RSS from /proc/PID/status: `VmHWM` (the peak since start) and the median
  of `VmRSS` sampled every second (steady); goal <= 50 MB;
- CPU share of one core from /proc/PID/stat (utime + stime) over the window;
  goal <= 2 %.

(b) **Drain rate.** A buffer pre-filled with 200,000 readings of a day-old
backlog (64 meters x 14 quantities), drained by the agent itself (the
`Agent` class, in this process, no buses: its pump thread does SqliteBuffer
lease -> encode_batch -> paho publish QoS 1 -> PUBACK -> acknowledge, as in
production) to the local Mosquitto; readings/s from the first connection to
the last acknowledgement. Beside it the ceiling: a bare paho-mqtt QoS 1
publish loop of the same payloads (the same sizes, the same in-flight
window) to the same broker, messages/s and readings/s. Goal >= 20,000
readings/s.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench._timing import machine_line
from edge_agent.adapters.mqtt_uplink import encode_lease
from edge_agent.adapters.sqlite_buffer import SqliteBuffer
from edge_agent.config import AgentConfig
from edge_agent.domain.buffer_policy import Lease
from edge_agent.domain.readings import Reading
from edge_agent.profiles import load_profile
from edge_agent.service.agent import Agent
from tests.servers import MosquittoServer, free_port, start_mosquitto, stop_mosquitto

BIN = Path(sys.executable).parent
METERS = 64
MODEL = "eastron-sdm120"
INTERVAL_S = 60
GOAL_RSS_MB = 50.0
GOAL_CPU_SHARE = 0.02
DRAIN_READINGS = 200_000
BATCH = 1000  # the agent's UplinkPump default
MAX_INFLIGHT = 20  # the agent's default uplink window
GOAL_DRAIN_READINGS_PER_S = 20_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --- (a) footprint -----------------------------------------------------------------


def _fleet_file(folder: Path, broker: MosquittoServer) -> Path:
    spec = {
        "seed": 3,
        "timing": False,
        "broker": f"mqtt://{broker.host}:{broker.port}",
        "gateways": [
            {
                "id": "gw-bench",
                "interval_s": INTERVAL_S,
                "tcp": [{"name": "tcp", "meters": [{"model": MODEL, "count": METERS}]}],
            }
        ],
    }
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@contextmanager
def _process(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(condition: Any, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench agent: no {what} within {timeout_s} s")
        time.sleep(0.5)


def _status_kib(pid: int) -> dict[str, int]:
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces: fields start after its ')'.
        fields = stat.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def _health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
        status: dict[str, Any] = json.loads(response.read())
    return status


def _every_meter_read(port: int) -> bool:
    try:
        meters = _health(port)["meters"]
    except OSError:
        return False
    return len(meters) == METERS and all(m["reads_ok"] >= 1 for m in meters)


def footprint(folder: Path, broker: MosquittoServer, window_s: float) -> bool:
    _, password = broker.add_gateway("gw-bench")
    sim_dir = folder / "sim"
    with _process(
        [
            str(BIN / "voltstack-sim"),
            "fleet",
            str(_fleet_file(folder, broker)),
            "--state-dir",
            str(sim_dir),
        ],
        folder / "sim.log",
    ) as simulators:
        agent_yaml = sim_dir / "agents" / "gw-bench.yaml"
        _wait_for(lambda: agent_yaml.exists() or simulators.poll() is not None, "fleet", 120)
        if simulators.poll() is not None:
            raise RuntimeError(f"the simulators stopped: see {folder / 'sim.log'}")
        config = yaml.safe_load(agent_yaml.read_text())
        health_port = free_port()
        config["uplink"]["password"] = password
        config["buffer"] = {"path": str(folder / "footprint.sqlite")}
        config["health"] = {"port": health_port}
        config_path = folder / "agent.yaml"
        config_path.write_text(yaml.safe_dump(config))
        with _process(
            [str(BIN / "voltstack-agent"), "run", "--config", str(config_path)],
            folder / "agent.log",
        ) as agent:
            _wait_for(lambda: _every_meter_read(health_port), "first read of every meter", 120)
            time.sleep(INTERVAL_S)  # a first minute to settle
            before = _health(health_port)["uplink"]["readings_acknowledged"]
            rss_kib: list[int] = []
            cpu_start, started = _cpu_seconds(agent.pid), time.monotonic()
            while time.monotonic() - started < window_s:
                rss_kib.append(_status_kib(agent.pid)["VmRSS"])
                time.sleep(1.0)
            cpu_s, elapsed = _cpu_seconds(agent.pid) - cpu_start, time.monotonic() - started
            peak_kib = _status_kib(agent.pid)["VmHWM"]
            delivered = _health(health_port)["uplink"]["readings_acknowledged"] - before
    steady_mb, peak_mb = statistics.median(rss_kib) / 1024, peak_kib / 1024
    share = cpu_s / elapsed
    quantities = len(load_profile(MODEL).quantities)
    print(
        f"agent footprint   {METERS} meters x {quantities} quantities every {INTERVAL_S} s,"
        f" window {elapsed:.0f} s, {delivered:,} readings delivered"
        f" (expected ~{int(METERS * quantities * elapsed / INTERVAL_S):,})"
    )
    print(
        f"agent RSS         peak {peak_mb:.1f} MB, steady {steady_mb:.1f} MB"
        f"   goal <= {GOAL_RSS_MB:.0f} MB: {_met(peak_mb <= GOAL_RSS_MB)}"
    )
    print(
        f"agent CPU         {share:.2%} of one core ({cpu_s:.2f} s in {elapsed:.0f} s)"
        f"   goal <= {GOAL_CPU_SHARE:.0%}: {_met(share <= GOAL_CPU_SHARE)}"
    )
    return peak_mb <= GOAL_RSS_MB and share <= GOAL_CPU_SHARE


# --- (b) drain rate ----------------------------------------------------------------


def _backlog() -> list[Reading]:
    """A day-old backlog: 64 meters x 14 quantities per minute, oldest first."""
    quantities = load_profile(MODEL).quantities
    start_ms = int((time.time() - 86_400) * 1000)
    readings: list[Reading] = []
    minute = 0
    while len(readings) < DRAIN_READINGS:
        at_ms = start_ms + minute * 60_000
        for meter in range(METERS):
            for quantity in quantities:
                readings.append(
                    Reading(f"SDM{meter:05d}", quantity.obis, at_ms, 230.0 + minute, quantity.unit)
                )
        minute += 1
    return readings[:DRAIN_READINGS]


def agent_drain(folder: Path, broker: MosquittoServer, readings: list[Reading]) -> float:
    """Readings/s of the agent's own pump, from connection to the last PUBACK."""
    _, password = broker.add_gateway("gw-drain")
    buffer_path = folder / "drain.sqlite"
    with SqliteBuffer(buffer_path, max_readings=5_000_000, max_age_days=35) as buffer:
        for first in range(0, len(readings), 10_000):
            buffer.append(readings[first : first + 10_000])
    config = AgentConfig.model_validate(
        {
            "gateway": {"id": "gw-drain"},
            "uplink": {
                "broker": f"mqtt://{broker.host}:{broker.port}",
                "username": "gw-drain",
                "password": password,
                "max_inflight": MAX_INFLIGHT,
            },
            "buffer": {"path": str(buffer_path)},
            "health": {"enabled": False},
        }
    )
    agent = Agent(config)
    try:
        agent.start()
        state = agent.uplink.state
        _wait_for(lambda: state.connected, "connection to the broker", 30)
        started = time.perf_counter()
        while state.readings_acknowledged < len(readings):
            if time.perf_counter() - started > 600:
                raise RuntimeError("bench agent: the drain did not finish in 600 s")
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
    finally:
        agent.stop()
    return len(readings) / elapsed


def _payloads(readings: list[Reading]) -> list[bytes]:
    return [
        encode_lease("gw-drain", Lease(n, n, tuple(readings[first : first + BATCH])))
        for n, first in enumerate(range(0, len(readings), BATCH), start=1)
    ]


def bare_paho(broker: MosquittoServer, payloads: list[bytes]) -> float:
    """Messages/s of a bare QoS 1 publish loop, the same window, PUBACKs awaited."""
    done = threading.Event()
    acknowledged = 0

    def on_publish(*_: Any) -> None:
        nonlocal acknowledged
        acknowledged += 1
        if acknowledged == len(payloads):
            done.set()

    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare")
    client.username_pw_set(broker.admin_username, broker.admin_password)
    client.max_inflight_messages_set(MAX_INFLIGHT)
    client.max_queued_messages_set(0)  # unbounded: paho holds what the window does not take
    client.on_publish = on_publish
    client.on_connect = lambda *_: connected.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        if not connected.wait(30):
            raise RuntimeError("bench agent: the bare client did not connect")
        started = time.perf_counter()
        for payload in payloads:
            client.publish("vs/v1/gw-drain/readings", payload, qos=1)
        if not done.wait(600):
            raise RuntimeError("bench agent: the bare loop's PUBACKs did not all come")
        elapsed = time.perf_counter() - started
    finally:
        client.disconnect()
        client.loop_stop()
    return len(payloads) / elapsed


def drain(folder: Path, broker: MosquittoServer) -> bool:
    readings = _backlog()
    payloads = _payloads(readings)
    size = statistics.mean(len(p) for p in payloads)
    ceiling_msgs = bare_paho(broker, payloads)
    ceiling = ceiling_msgs * BATCH
    rate = agent_drain(folder, broker, readings)
    print(
        f"drain ceiling     bare paho QoS 1 loop, {len(payloads)} messages of {size:,.0f} B"
        f" ({BATCH} readings), window {MAX_INFLIGHT}: {ceiling_msgs:,.0f} messages/s"
        f" = {ceiling:,.0f} readings/s"
    )
    print(
        f"drain agent       {len(readings):,} buffered readings -> Mosquitto:"
        f" {rate:,.0f} readings/s   {rate / ceiling:.2f}x the bare paho ceiling"
    )
    print(
        f"                  goal >= {GOAL_DRAIN_READINGS_PER_S:,} readings/s:"
        f" {_met(rate >= GOAL_DRAIN_READINGS_PER_S)} ({rate / GOAL_DRAIN_READINGS_PER_S:.2f}x)"
    )
    return rate >= GOAL_DRAIN_READINGS_PER_S


def run() -> None:
    window_s = float(os.environ.get("BENCH_AGENT_SECONDS", "180"))
    print(machine_line())
    print("(a shared machine: other work runs beside this one; numbers as measured)")
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        folder = Path(tmp)
        broker = start_mosquitto(folder / "broker")
        try:
            drain(folder, broker)
            footprint(folder, broker, window_s)
        finally:
            stop_mosquitto(broker)


if __name__ == "__main__":
    run()
