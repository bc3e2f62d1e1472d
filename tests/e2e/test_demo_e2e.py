"""The whole stack, time-compressed, against the simulators' ground truth.

`voltstack demo --speed 60` runs the simulated fleet, its agents, the
embedded broker, an ingestion worker and both SQLite stores; halfway through
the test kills one agent with SIGKILL. Afterwards, from the cloud's stores
alone:

- every simulated meter's energy registers reached the time-series store
  with the values the simulator's physics says the meter presented at the
  stored timestamp (within the time the read took: the agent stamps a
  Modbus reading at the answer, the meter sampled it at the request);
- the killed agent's gateway went offline in the operational DB (the broker
  published its last will) within the MQTT keep-alive window, came back
  online after the demo restarted it, and no 15-minute interval of any of
  its meters lacks a stored reading, no batch sequence number is missing;
- nothing was rejected or dead-lettered;
- a DLMS meter powered down in the simulator (its control socket, as
  `voltstack-sim fault SERIAL powered_down=true` does) and powered up again
  gives a `last_gasp` event from its gateway on the broker, stamped with the
  meter's time of the power cut.

And in the console, as a person sees it: the test logs in over HTTP with the
admin login the demo printed (its password from the data folder's
``secrets/``), like the login form does (nonce cookie, CSRF field), and reads
the pages while the demo runs: the killed gateway's page shows it offline
(the last will) within the keep-alive window of the kill, and the powered-down
meter's page lists its last gasp at the meter's own time of the power cut —
the event the ingestion worker stored.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from cloud.core.db import make_engine, session_factory
from cloud.fleet.models import GatewayStatusEvent
from cloud.ingestion.models import DeadLetter, IngestionStatistics
from cloud.timeseries import SqliteStore
from cloud.timeseries.store import from_ms
from simulators.fleet import load_fleet, truth_of
from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(280)]

VOLTSTACK = Path(sys.executable).parent / "voltstack"
SPEED = 60.0
RUN_S = 100
VICTIM = "gw-substation-01"  # Modbus meters keep no history: the hardest gap to avoid
DLMS_GATEWAY = "gw-dlms-tcp-03"
KEEPALIVE_WINDOW_S = 1.5 * 30  # the broker's limit for the agents' default keep-alive
# The agent stamps a Modbus reading when the answer is in; the simulated
# meter sampled its registers when the request arrived. Real seconds of
# slack for that (a loaded 2-core machine), in simulated time × SPEED.
READ_SLACK_S = 3.0 * SPEED
ENERGY_REGISTERS = ("1-0:1.8.0", "1-0:2.8.0")


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class Demo:
    """The demo process and its data folder."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.mqtt_port = free_port()
        self.output = data.parent / "demo.out"
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    VOLTSTACK,
                    "demo",
                    "--mqtt-port",
                    str(self.mqtt_port),
                    "--duration",
                    f"{RUN_S}s",
                    "--speed",
                    str(SPEED),
                    "--data-dir",
                    str(data),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "COLUMNS": "200"},
            )
        self.engine = None

    def pids(self) -> dict[str, int | None]:
        try:
            return json.loads((self.data / "run" / "pids.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def sessions(self) -> Any:
        if self.engine is None:
            self.engine = make_engine(f"sqlite:///{self.data / 'cloud' / 'voltstack.sqlite'}")
        return session_factory(self.engine)()

    def status_events(self, gateway: str) -> list[GatewayStatusEvent]:
        with self.sessions() as session:
            query = select(GatewayStatusEvent).where(GatewayStatusEvent.gateway_id == gateway)
            return list(session.scalars(query.order_by(GatewayStatusEvent.id)))

    def readings_accepted(self, gateway: str) -> int:
        with self.sessions() as session:
            query = select(func.sum(IngestionStatistics.readings_accepted)).where(
                IngestionStatistics.gateway_id == gateway
            )
            return int(session.scalar(query) or 0)

    def fault(self, serial: str, **faults: object) -> None:
        """Switch a fault on a simulated meter through the fleet's control socket."""
        with socket.socket(socket.AF_UNIX) as control:
            control.connect(str(self.data / "sim" / "control.sock"))
            control.sendall(json.dumps({"serial": serial, "faults": faults}).encode() + b"\n")
            answer = json.loads(control.makefile().readline())
        assert answer["ok"], answer

    def finish(self) -> str:
        try:
            self.process.wait(timeout=RUN_S + 120)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.engine is not None:
                self.engine.dispose()
        return self.output.read_text(errors="replace")


class Console:
    """The demo's console over HTTP, logged in with the login the demo printed."""

    def __init__(self, url: str, email: str, password: str) -> None:
        self.client = httpx.Client(base_url=url.rstrip("/").removesuffix("/console"), timeout=30)
        form = self.client.get("/console/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token, form.text[:500]
        answer = self.client.post(
            "/console/login",
            data={
                "email": email,
                "password": password,
                "csrf_token": token[1],
                "next": "/console/",
            },
        )
        assert answer.status_code == 303, answer.text[:500]
        assert "vs_session" in self.client.cookies

    def page(self, path: str) -> str:
        answer = self.client.get(f"/console{path}")
        assert answer.status_code == 200, f"{path}: {answer.status_code}"
        return answer.text

    def offline_since(self, gateway: str, after: datetime) -> datetime | None:
        """When the gateway's page shows it went offline by its last will, at or
        after `after` (a row of the page's status history); None before."""
        rows = re.findall(
            r'<tr class="status-change" data-online="false"><td><time datetime="([^"]+)">'
            r"(.*?)</tr>",
            self.page(f"/gateways/{gateway}"),
            flags=re.S,
        )
        times = [datetime.fromisoformat(at) for at, rest in rows if "last will" in rest]
        return min((at for at in times if at >= after), default=None)

    def last_gasps(self, serial: str) -> list[datetime]:
        """The last gasps the meter's page lists, at the times it shows."""
        events = self.page(f"/meters/{serial}").split('id="events"', 1)
        if len(events) < 2:
            return []
        rows = re.findall(r'data-kind="last_gasp"[^>]*>\s*<td><time datetime="([^"]+)"', events[1])
        return [datetime.fromisoformat(at) for at in rows]

    def close(self) -> None:
        self.client.close()


def console_of(demo: Demo) -> Console | None:
    """Logged in once the demo printed its console URL (it is up then)."""
    found = re.search(r"console: (http://\S+)", demo.output.read_text(errors="replace"))
    if not found:
        return None
    password = (demo.data / "secrets" / "console-admin.password").read_text().strip()
    return Console(found[1], "admin@demo.example.net", password)


class EventListener:
    """Collects the gateways' JSON events from the demo's broker."""

    def __init__(self, port: int) -> None:
        self.events: list[dict[str, Any]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-events")
        self.client.on_connect = lambda c, *_: c.subscribe("vs/v1/+/events", qos=1)
        self.client.on_message = lambda _c, _u, m: self.events.append(json.loads(m.payload))
        self.client.connect("127.0.0.1", port)  # OSError while the broker is not up
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect_events(port: int) -> EventListener | None:
    try:
        return EventListener(port)
    except OSError:
        return None  # the broker is not up yet


def dlms_serial(data: Path) -> str:
    return next(m["serial"] for m in fleet_meters(data) if m["gateway"] == DLMS_GATEWAY)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One time-compressed demo run, one agent killed, one meter powered down."""
    data = tmp_path_factory.mktemp("e2e") / "var"
    demo = Demo(data)
    listener: EventListener | None = None
    console: Console | None = None
    try:
        listener = wait_for(lambda: connect_events(demo.mqtt_port), 90, "the demo's broker")
        victim_key = f"agent:{VICTIM}"
        pids = wait_for(lambda: demo.pids().get(victim_key) and demo.pids(), 120, "the agents")
        wait_for(lambda: demo.readings_accepted(VICTIM) > 0, 60, f"readings of {VICTIM}")
        wait_for(lambda: demo.readings_accepted(DLMS_GATEWAY) > 0, 60, "DLMS readings")
        console = wait_for(lambda: console_of(demo), 60, "the console and its admin login")
        powered_down = dlms_serial(data)
        demo.fault(powered_down, powered_down=True)
        down_since = time.monotonic()
        time.sleep(10)  # the kill lands in steady state, a cycle after the first
        killed_at = datetime.now(UTC)
        os.kill(pids[victim_key], signal.SIGKILL)
        shown_offline = wait_for(
            lambda: console.offline_since(VICTIM, killed_at),  # type: ignore[union-attr]
            KEEPALIVE_WINDOW_S + 15,
            f"{VICTIM} offline in the console after the kill",
        )
        offline = wait_for(
            lambda: [e for e in demo.status_events(VICTIM) if not e.online and e.at >= killed_at],
            15,
            f"{VICTIM} offline after the kill",
        )[0]
        wait_for(
            lambda: demo.pids().get(victim_key) not in (None, pids[victim_key]),
            30,
            "the agent's restart",
        )
        back_online = wait_for(
            lambda: [e for e in demo.status_events(VICTIM) if e.online and e.at > offline.at],
            60,
            f"{VICTIM} online again",
        )[0]
        # Down for more than one read interval (15 simulated minutes = 15 s).
        time.sleep(max(0.0, 20 - (time.monotonic() - down_since)))
        demo.fault(powered_down, powered_down=False)
        last_gasps = wait_for(
            lambda: [
                e
                for e in listener.events  # type: ignore[union-attr]
                if e.get("event") == "last_gasp" and e.get("meter") == powered_down
            ],
            45,
            f"the last gasp of {powered_down}",
        )
        gasps_shown = wait_for(
            lambda: console.last_gasps(powered_down),  # type: ignore[union-attr]
            30,
            f"the last gasp of {powered_down} on its console page",
        )
    finally:
        if listener is not None:
            listener.close()
        if console is not None:
            console.close()
        output = demo.finish()
    return {
        "data": data,
        "output": output,
        "returncode": demo.process.returncode,
        "victim": VICTIM,
        "killed_at": killed_at,
        "offline": offline,
        "shown_offline": shown_offline,
        "gasps_shown": gasps_shown,
        "back_online": back_online,
        "powered_down": powered_down,
        "last_gasps": last_gasps,
        "events": list(listener.events) if listener else [],
    }


def fleet_meters(data: Path) -> list[dict[str, Any]]:
    meters: list[dict[str, Any]] = json.loads((data / "sim" / "fleet.json").read_text())["meters"]
    return meters


def intervals(data: Path) -> dict[str, int]:
    """Gateway → its read interval in simulated seconds (from the demo's fleet file)."""
    spec = yaml.safe_load((data / "fleet.yaml").read_text())
    return {gateway["id"]: gateway["interval_s"] for gateway in spec["gateways"]}


def stored(data: Path, serial: str, obis: str) -> list[tuple[datetime, float]]:
    store = SqliteStore(data / "cloud" / "timeseries.sqlite")
    try:
        start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
        return [(p.at, p.value) for p in store.query_range(serial, obis, start, end, "raw")]
    finally:
        store.close()


def test_the_demo_ran_and_stopped_cleanly(run: dict[str, Any]) -> None:
    assert run["returncode"] == 0, run["output"]
    assert "what the cloud stored" in run["output"]
    assert not (run["data"] / "run" / "pids.json").exists()
    leftovers = subprocess.run(
        ["pgrep", "-f", str(run["data"])], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout == "", "a child of the demo outlived it"


def test_every_meter_stored_what_the_simulator_presented(run: dict[str, Any]) -> None:
    data = run["data"]
    spec = load_fleet(data / "fleet.yaml")
    slack = timedelta(seconds=READ_SLACK_S)
    checked = 0
    for meter in fleet_meters(data):
        serial = meter["serial"]
        registers = [
            obis for obis in ENERGY_REGISTERS if obis in truth_of(spec, serial, None, data / "sim")
        ]
        assert registers, f"{serial}: no energy register in its ground truth"
        for obis in registers:
            points = stored(data, serial, obis)
            assert len(points) >= 3, f"{serial} {obis}: {len(points)} readings stored"
            for at, value in points:
                # Energy registers only grow: the value the meter presented at
                # the sampling moment lies between the truth before and after.
                low = truth_of(spec, serial, at - slack, data / "sim")[obis]
                high = truth_of(spec, serial, at + timedelta(seconds=SPEED), data / "sim")[obis]
                assert low <= value <= high, (
                    f"{serial} {obis} at {at.isoformat()}: stored {value}, "
                    f"the meter presented {low} … {high}"
                )
                checked += 1
    assert checked > 0


def test_a_killed_agent_goes_offline_within_the_keepalive_window(run: dict[str, Any]) -> None:
    offline, back = run["offline"], run["back_online"]
    assert (offline.at - run["killed_at"]).total_seconds() <= KEEPALIVE_WINDOW_S
    assert offline.reason == "last will"
    assert back.at > offline.at


def test_the_console_showed_the_killed_gateway_offline_in_time(run: dict[str, Any]) -> None:
    shown = run["shown_offline"]
    assert (shown - run["killed_at"]).total_seconds() <= KEEPALIVE_WINDOW_S
    assert shown == run["offline"].at  # what the page shows is what the cloud stored


def test_the_console_shows_the_powered_down_meters_last_gasp(run: dict[str, Any]) -> None:
    # The meter's own time of the power cut, as its event log and the broker said.
    broker_times = {from_ms(e["at_ms"]) for e in run["last_gasps"]}
    assert set(run["gasps_shown"]) <= broker_times
    assert run["gasps_shown"]


def test_the_restarted_agent_leaves_no_gap(run: dict[str, Any]) -> None:
    data, victim = run["data"], run["victim"]
    interval = timedelta(seconds=intervals(data)[victim])
    for meter in fleet_meters(data):
        if meter["gateway"] != victim:
            continue
        times = [at for at, _ in stored(data, meter["serial"], "1-0:1.8.0")]
        assert times, meter["serial"]
        # Every interval from the first read to the last one before the end
        # holds a reading: the gateway's downtime fell inside one interval and
        # it read again at once after its restart.
        window = times[0].timestamp() // interval.total_seconds() * interval.total_seconds()
        first = datetime.fromtimestamp(window, UTC) + interval
        last = times[-1] - interval
        missing = []
        boundary = first
        while boundary < last:
            if not any(boundary <= at < boundary + interval for at in times):
                missing.append(boundary.isoformat())
            boundary += interval
        assert not missing, f"{meter['serial']}: no reading in the intervals from {missing}"


def test_nothing_was_lost_rejected_or_dead_lettered(run: dict[str, Any]) -> None:
    engine = make_engine(f"sqlite:///{run['data'] / 'cloud' / 'voltstack.sqlite'}")
    try:
        with session_factory(engine)() as session:
            gaps, rejected = session.execute(
                select(
                    func.sum(IngestionStatistics.sequence_gaps),
                    func.sum(IngestionStatistics.readings_rejected),
                )
            ).one()
            dead = session.scalar(select(func.count()).select_from(DeadLetter))
    finally:
        engine.dispose()
    assert (gaps, rejected, dead) == (0, 0, 0)


def test_a_powered_down_meter_sends_its_last_gasp(run: dict[str, Any]) -> None:
    gasp = run["last_gasps"][0]
    assert gasp["gateway"] == DLMS_GATEWAY
    restored = [
        e
        for e in run["events"]
        if e.get("event") == "power_restored" and e.get("meter") == run["powered_down"]
    ]
    assert restored, "the power came back, the meter logged it, the agent did not send it"
    assert restored[0]["at_ms"] > gasp["at_ms"]  # the meter's clock: down before up
