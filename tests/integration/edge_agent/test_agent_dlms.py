"""`voltstack-agent run` with DLMS and optical meters, on a real Mosquitto.

Simulated meters on every link the service reads: the DLMS TCP wrapper,
HDLC on a shared serial line (a pty), the optical port in mode E (HDLC after
the IEC 62056-21 sign-on) and in mode C (data readout). Simulated time is a
stepped clock the test moves: the agent is killed (-9), the meters' time
runs on for hours, and after the restart the subscriber must receive every
15-minute load-profile interval of the gap, equal to the meters' own rows.
The meters' event logs (power down, power up, terminal cover) arrive as
events with the meters' timestamps.
"""

from __future__ import annotations

import json
import math
import queue
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml

from simulators.clock import SimClock
from simulators.dlms import CAPTURE_PERIOD_S, DlmsMeter
from simulators.dlms_links import DlmsTcpMeter, HdlcSerialBus
from simulators.optical import OpticalPort, readout_lines
from simulators.physics import MeterPhysics
from simulators.runtime import BackgroundLoop
from tests.integration.edge_agent.test_agent_service import Collector, start_agent
from tests.integration.readers.test_optical_reader import expected_readings
from tests.servers import MosquittoServer, free_port

pytestmark = pytest.mark.integration

PASSWORD = "00000000"
GATEWAY = "gw-dlms"
# Two days ago, 7.25 s after a quarter hour: register reads (stamped with the
# meter's clock) never fall on a profile interval.
T0_S = (math.floor(time.time() / CAPTURE_PERIOD_S) - 192) * CAPTURE_PERIOD_S + 7.25
PROFILE_CODES = {"1-0:1.8.0", "1-0:2.8.0"}


class SteppedClock(SimClock):
    """Frozen simulated time that the test moves forward (`advance`)."""

    def __init__(self, start: float) -> None:
        super().__init__(start=start, speed=1e-9)
        self.offset_s = 0.0

    def now(self) -> float:
        return super().now() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


class Subscriber(Collector):
    """The admin subscriber of test_agent_service, also keeping events and command results."""

    def __init__(self, broker: MosquittoServer, gateway: str) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.results: dict[str, dict[str, Any]] = {}
        self.got: set[tuple[str, str, int, float]] = set()
        super().__init__(broker, gateway)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/events"):
            self.events.put(json.loads(message.payload))
        elif "/cmd_result/" in message.topic:
            self.results[message.topic.rsplit("/", 1)[1]] = json.loads(message.payload)
        else:
            super()._on_message(client, userdata, message)

    def collect_until(self, done: Any, seconds: float) -> set[tuple[str, str, int, float]]:
        """Gather readings until `done(readings so far)` or the time is up."""
        deadline = time.monotonic() + seconds
        while not done(self.got) and time.monotonic() < deadline:
            self.got |= self.readings(0.5)
        return self.got

    def wait_event(self, match: Any, seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            if match(event):
                return event
        raise AssertionError("no such event")

    def command(self, gateway: str, payload: dict[str, Any], seconds: float = 60) -> dict[str, Any]:
        command_id = secrets.token_hex(4)
        self.client.publish(f"vs/v1/{gateway}/cmd/{command_id}", json.dumps(payload), qos=1)
        deadline = time.monotonic() + seconds
        while command_id not in self.results and time.monotonic() < deadline:
            time.sleep(0.1)
        assert command_id in self.results, f"no answer to {payload['action']}"
        return self.results[command_id]


def make_meter(serial: str, clock: SimClock, physical_address: int = 17) -> DlmsMeter:
    physics = MeterPhysics(seed=int(serial), epoch_s=T0_S - 3 * 86_400, pv_peak_w=3000)
    return DlmsMeter(serial, physics, clock, password=PASSWORD, physical_address=physical_address)


class Meters:
    """The simulated meters of one gateway, on all their links."""

    def __init__(self, loop: BackgroundLoop, clock: SimClock) -> None:
        self.loop, self.clock = loop, clock
        self.tcp = [DlmsTcpMeter(make_meter(s, clock)) for s in ("10000001", "10000002")]
        for server in self.tcp:
            loop.run(server.start())
        self.hdlc = HdlcSerialBus(
            [make_meter("10000011", clock, 17), make_meter("10000012", clock, 18)], timing=False
        )
        self.hdlc.start_sync()
        self.mode_e = OpticalPort(make_meter("10000021", clock), timing=False)
        self.mode_e.start_sync()
        self.mode_c = OpticalPort(make_meter("10000031", clock), timing=False)
        self.mode_c.start_sync()

    @property
    def profiled(self) -> dict[str, DlmsMeter]:
        """The meters whose load profile the agent reads (all but mode C)."""
        meters = [s.meter for s in self.tcp] + list(self.hdlc.meters.values())
        return {m.serial: m for m in [*meters, self.mode_e.meter]}

    def stop(self) -> None:
        for server in self.tcp:
            self.loop.run(server.stop())
        self.hdlc.stop_sync()
        self.mode_e.stop_sync()
        self.mode_c.stop_sync()


def dlms_entry(meter: DlmsMeter, **extra: Any) -> dict[str, Any]:
    return {
        "serial": meter.serial,
        "profile": "generic-dlms",
        "client_address": 1,
        "password": PASSWORD,
        "interval_s": 1,
        "catch_up_days": 1,
        **extra,
    }


def agent_config_dict(meters: Meters, broker: MosquittoServer, folder: Path) -> dict[str, Any]:
    password = secrets.token_hex(8)
    prefix = f"vs/v1/{GATEWAY}"
    broker.add_user(GATEWAY, password, [f"topic write {prefix}/#", f"topic read {prefix}/cmd/#"])
    buses: list[dict[str, Any]] = [
        {
            "name": f"dlms-tcp-{index}",
            "link": "dlms-tcp",
            "host": server.host,
            "port": server.port,
            "meters": [dlms_entry(server.meter)],
        }
        for index, server in enumerate(meters.tcp)
    ]
    buses.append(
        {
            "name": "hdlc-1",
            "link": "dlms-serial",
            "port": meters.hdlc.port,
            "meters": [
                dlms_entry(m, physical_address=m.physical_address)
                for m in meters.hdlc.meters.values()
            ],
        }
    )
    buses.append(
        {
            "name": "probe-e",
            "link": "optical",
            "port": meters.mode_e.port,
            "mode": "E",
            "meters": [dlms_entry(meters.mode_e.meter, physical_address=17)],
        }
    )
    buses.append(
        {
            "name": "probe-c",
            "link": "optical",
            "port": meters.mode_c.port,
            "mode": "C",
            "meters": [
                {
                    "serial": meters.mode_c.meter.serial,
                    "profile": "generic-iec62056-21",
                    "interval_s": 1,
                }
            ],
        }
    )
    return {
        "gateway": {"id": GATEWAY},
        "uplink": {
            "broker": f"mqtt://{broker.host}:{broker.port}",
            "username": GATEWAY,
            "password": password,
            "keepalive_s": 5,
        },
        "buffer": {"path": str(folder / "buffer.sqlite")},
        "health": {"port": free_port()},
        "buses": buses,
    }


def write_config(config: dict[str, Any], folder: Path) -> Path:
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def profile_truth(meter: DlmsMeter, from_s: float, to_s: float) -> set[tuple[str, str, int, float]]:
    """The meter's own load profile rows as readings (kWh, stamped with the capture time)."""
    return {
        (meter.serial, obis, int(row.at_s * 1000), wh / 1000)
        for row in meter.profile_rows(from_s, to_s)
        for obis, wh in (("1-0:1.8.0", row.import_wh), ("1-0:2.8.0", row.export_wh))
    }


def profile_readings(
    got: set[tuple[str, str, int, float]], serial: str
) -> set[tuple[str, str, int, float]]:
    return {
        r
        for r in got
        if r[0] == serial and r[1] in PROFILE_CODES and r[2] % (CAPTURE_PERIOD_S * 1000) == 0
    }


def stop_agent(agent: subprocess.Popen[bytes]) -> None:
    if agent.poll() is None:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


@pytest.fixture
def loop() -> Iterator[BackgroundLoop]:
    with BackgroundLoop() as background:
        yield background


@pytest.fixture
def meters(loop: BackgroundLoop) -> Iterator[Meters]:
    running = Meters(loop, SteppedClock(T0_S))
    yield running
    running.stop()


@pytest.mark.timeout(900)  # each wait below may take minutes on a loaded machine
def test_profile_gap_of_a_killed_agent_is_filled_from_the_meters_memory(
    meters: Meters, mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    config = write_config(agent_config_dict(meters, mosquitto, tmp_path), tmp_path)
    subscriber = Subscriber(mosquitto, GATEWAY)
    agent = start_agent(config)
    try:
        # 1. First contact: a day of profile (catch_up_days: 1) from every DLMS meter.
        first = {
            serial: profile_truth(meter, T0_S - 86_400, T0_S)
            for serial, meter in meters.profiled.items()
        }
        assert all(len(rows) == 2 * 96 for rows in first.values())
        subscriber.collect_until(
            lambda got: all(profile_readings(got, s) >= rows for s, rows in first.items()), 300
        )
        for serial, rows in first.items():
            assert profile_readings(subscriber.got, serial) == rows, serial

        # 2. Kill -9; the meters' time runs on for six hours and ten minutes.
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        meters.clock.advance(6 * 3600 + 600)
        t1_s = meters.clock.now()
        agent = start_agent(config)

        # 3. Every 15-minute interval of the gap arrives, equal to the meters' rows.
        whole = {
            serial: profile_truth(meter, T0_S - 86_400, t1_s)
            for serial, meter in meters.profiled.items()
        }
        assert all(len(rows) == 2 * (96 + 24) for rows in whole.values())
        subscriber.collect_until(
            lambda got: all(profile_readings(got, s) >= rows for s, rows in whole.items()), 300
        )
        for serial, rows in whole.items():
            assert profile_readings(subscriber.got, serial) == rows, serial

        # The registers carry the meter's clock; the optical readout its clock lines.
        meter_ms = int(t1_s * 1000)
        for serial in meters.profiled:
            assert (serial, "1-0:32.7.0") in {
                (r[0], r[1]) for r in subscriber.got if r[2] == meter_ms
            }
        optical = meters.mode_c.meter
        expected = expected_readings(readout_lines(optical, t1_s))
        stamp = int(optical.meter_time(t1_s)) * 1000
        subscriber.collect_until(
            lambda got: (
                {(r[1], r[3]) for r in got if r[0] == optical.serial and r[2] == stamp}
                >= {(obis, value) for obis, (value, _) in expected.items()}
            ),
            60,
        )
        got = {(r[1], r[3]) for r in subscriber.got if r[0] == optical.serial and r[2] == stamp}
        assert got == {(obis, value) for obis, (value, _) in expected.items()}
    finally:
        stop_agent(agent)
        subscriber.close()


def test_meter_event_logs_and_comm_loss_become_events(
    meters: Meters, mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    config = write_config(agent_config_dict(meters, mosquitto, tmp_path), tmp_path)
    subscriber = Subscriber(mosquitto, GATEWAY)
    agent = start_agent(config)
    meter = meters.tcp[0].meter
    try:
        subscriber.wait_event(lambda e: e["event"] == "gateway_started", 30)
        subscriber.collect_until(lambda got: any(r[0] == meter.serial for r in got), 60)

        # Supply lost: last gasp in the meter's log, the modem's link gone with it.
        meters.clock.advance(60)
        down_s = meters.clock.now()
        meter.faults.powered_down = True
        meter.observe_faults()  # now, not at the watcher's next look
        lost = subscriber.wait_event(
            lambda e: e["event"] == "meter_comm_lost" and e["meter"] == meter.serial, 60
        )
        assert lost["bus"] == "dlms-tcp-0" and lost["error"]
        meters.clock.advance(600)
        up_s = meters.clock.now()
        meter.faults.powered_down = False
        meter.observe_faults()
        meters.clock.advance(120)
        tamper_s = meters.clock.now()
        # In the same log second: the cover twice, and two codes the agent has
        # no name for (both `meter_event`): four events, not one or two.
        for code in (40, 40, 45, 46):
            meter.events.append((tamper_s, code))

        seen: dict[str, dict[str, Any]] = {}
        ids: dict[str, dict[str, Any]] = {}
        wanted = {"meter_comm_restored", "last_gasp", "power_restored", "tamper"}
        deadline = time.monotonic() + 60
        while not (wanted <= seen.keys() and len(ids) >= 6) and time.monotonic() < deadline:
            with_meter = subscriber.wait_event(lambda e: e.get("meter") == meter.serial, 60)
            seen[with_meter["event"]] = with_meter
            if with_meter.get("source") == "event_log":
                ids[with_meter["event_id"]] = with_meter
        assert wanted <= seen.keys()
        # Named by what the meter logged: serial, code, time, repeat within the second.
        tamper_ms = round(tamper_s * 1000)
        assert set(ids) == {
            f"{meter.serial}:1:{round(down_s * 1000)}:1",
            f"{meter.serial}:2:{round(up_s * 1000)}:1",
            f"{meter.serial}:40:{tamper_ms}:1",
            f"{meter.serial}:40:{tamper_ms}:2",
            f"{meter.serial}:45:{tamper_ms}:1",
            f"{meter.serial}:46:{tamper_ms}:1",
        }
        assert ids[f"{meter.serial}:45:{tamper_ms}:1"]["event"] == "meter_event"
        # The agent's own events carry an id too (its buffer's id and row).
        assert lost["event_id"] != seen["meter_comm_restored"]["event_id"]
        # Each carries the meter's own time of the entry (its clock has no drift here).
        assert seen["last_gasp"]["at_ms"] == round(down_s * 1000)
        assert seen["power_restored"]["at_ms"] == round(up_s * 1000)
        assert seen["tamper"]["at_ms"] == round(tamper_s * 1000)
        assert (seen["last_gasp"]["code"], seen["tamper"]["code"]) == (1, 40)
        # Taken once: later cycles do not repeat them.
        repeats = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                event = subscriber.events.get(timeout=0.5)
            except queue.Empty:
                continue
            if event.get("source") == "event_log":
                repeats.append(event)
        assert repeats == []
    finally:
        stop_agent(agent)
        subscriber.close()


def test_unreadable_marks_file_means_a_fresh_catch_up_not_a_crash(tmp_path: Path) -> None:
    from edge_agent.service.meter_marks import Mark, MeterMarks

    path = tmp_path / "buffer.marks.json"
    path.write_bytes(b"\x00{not json")
    marks = MeterMarks(path)  # logged, not raised: the meters catch up from catch_up_days back
    assert marks.get("10000001", "profile") is None
    marks.set("10000001", "profile", Mark(1_700_000_000_000))
    marks.set("10000001", "events", Mark(1_700_000_000_500, 2))
    again = MeterMarks(path)
    assert again.get("10000001", "profile") == Mark(1_700_000_000_000)
    assert again.get("10000001", "events") == Mark(1_700_000_000_500, 2)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed, not left
