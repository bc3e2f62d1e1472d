"""`voltstack demo`: the main job on one machine — simulated meters to stored readings.

Starts, in this order, each step shown while it runs (docs/demo.md):

1. **broker**: amqtt inside this process, or the `--broker mqtt://…` given;
2. **database**: the operational DB (SQLite in the data folder, or
   `--database postgresql://…`), migrated to the newest schema;
3. **fleet**: the simulated fleet (`voltstack-sim fleet`), which writes one
   agent configuration per gateway; at `--speed N` its clock runs N times
   real time and the configs carry the same clock (`simulation:`);
4. **registration**: the fleet's gateways and meters in the operational DB
   (voltstack.cloud_side; idempotent across restarts);
5. **ingestion**: one `voltstack-cloud ingest` worker into the time-series
   store (SQLite in the data folder, or `--influx http://…`), ready once
   the broker acknowledged its subscriptions — before any agent publishes;
6. **agents**: one `voltstack-agent run` per gateway.

Then it shows, live, what the cloud STORED (the operational DB and the
time-series store, not the broker), until Ctrl-C, SIGTERM or --duration.

Processes: every child runs in its own session (process group), so a
terminal's Ctrl-C reaches only the demo, which stops the children in
reverse order (SIGTERM to each group, SIGKILL after a grace period): no
orphans. The children's ids are in `<data>/run/pids.json` while the demo
runs; an agent that dies (a test's kill -9, a crash) is restarted, as
systemd's Restart= would. Everything lives in the data folder (./var) and
survives a restart: the fleet's epoch, the agents' buffers, both stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import yaml
from rich.console import Console
from rich.live import Live
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

import fastcodec
from voltstack import __version__
from voltstack._secrets import read_secret, write_secret
from voltstack.broker import embedded_broker, free_port, port_is_free

if TYPE_CHECKING:
    from voltstack.cloud_side import CloudWatch, DemoLogin, FleetMeter

BIN = Path(sys.executable).parent
STOP_GRACE_S = 15.0
RESTART_BACKOFF_S = 1.0
INGEST_USER = "voltstack-ingest"
INFLUX_DATABASE = "voltstack"
# A meter is read every interval of simulated time; the bus needs real time
# for a cycle (16 meters at 9600 baud: about 5 s). At --speed N an interval
# is stretched to the first of these that leaves a cycle this much real time.
MIN_REAL_CYCLE_S = 10.0
STRETCHED_INTERVALS_S = (60, 300, 900, 1800, 3600, 86_400)
# The simulated meters share the CPU with their agents, the broker and the
# cloud: a starved relay thread answers late, and a Modbus meter has no memory
# to catch up from, so a missed read would be a missed interval. Real meters
# keep the agent's defaults (500 ms, one retry).
SHARED_MACHINE_MODBUS = {"timeout_ms": 1500, "retries": 2}
STEPS = (
    "broker",
    "database",
    "fleet",
    "registration",
    "logins",
    "ingestion",
    "agents",
    "console",
)


class DemoError(RuntimeError):
    """A part of the demo did not start or stopped: the message says which."""


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived while the demo was starting."""


@dataclass(frozen=True)
class DemoOptions:
    host: str
    mqtt_port: int
    duration_s: float | None
    data_dir: Path
    speed: float = 1.0
    broker_url: str | None = None  # None: the embedded amqtt broker
    influx_url: str | None = None  # None: SQLite in the data folder
    database_url: str | None = None  # None: SQLite in the data folder
    api_port: int = 8000  # the REST API and console; a free one is taken if busy

    @property
    def store_url(self) -> str:
        return self.influx_url or f"sqlite:///{self.data_dir / 'cloud' / 'timeseries.sqlite'}"

    @property
    def operational_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'cloud' / 'voltstack.sqlite'}"


def stretched_interval_s(interval_s: int, speed: float) -> int:
    """The read interval at `speed`: unchanged when a bus cycle fits, else longer."""
    for candidate in (interval_s, *(c for c in STRETCHED_INTERVALS_S if c > interval_s)):
        if candidate / speed >= MIN_REAL_CYCLE_S:
            return candidate
    return max(interval_s, STRETCHED_INTERVALS_S[-1])


def demo_fleet(speed: float) -> dict[str, Any]:
    """The demo fleet (simulators/fleets/demo.yaml) at `speed`, intervals stretched."""
    text = resources.files("simulators.fleets").joinpath("demo.yaml").read_text()
    spec: dict[str, Any] = yaml.safe_load(text)
    spec["speed"] = speed
    for gateway in spec["gateways"]:
        gateway["interval_s"] = stretched_interval_s(gateway.get("interval_s", 60), speed)
    return spec


# --- processes -------------------------------------------------------------------


@dataclass
class Child:
    """A child process in its own process group, and how to start it again."""

    name: str
    command: list[str]
    log_path: Path
    restart: bool
    env: dict[str, str] | None = None  # added to ours (settings, secrets: not in argv)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    died_at: float | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env} if self.env else None,
                start_new_session=True,  # its own group: our Ctrl-C is not its Ctrl-C
            )
        self.died_at = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Supervisor:
    """Starts, watches, restarts and stops the demo's child processes."""

    pid_file: Path
    children: dict[str, Child] = field(default_factory=dict)

    def spawn(
        self,
        name: str,
        command: list[str],
        log_path: Path,
        *,
        restart: bool,
        env: dict[str, str] | None = None,
    ) -> Child:
        child = Child(name, command, log_path, restart, env)
        child.start()
        self.children[name] = child
        self.write_pids()
        return child

    def supervise(self) -> list[str]:
        """Restart dead children that may be restarted; return what died for good."""
        lost = []
        for child in self.children.values():
            if child.alive():
                continue
            if not child.restart:
                lost.append(child.name)
                continue
            now = time.monotonic()
            if child.died_at is None:
                child.died_at = now
            elif now - child.died_at >= RESTART_BACKOFF_S:
                child.restarts += 1
                child.start()
                self.write_pids()
        return lost

    def write_pids(self) -> None:
        pids = {"demo": os.getpid(), **{name: c.pid for name, c in self.children.items()}}
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.pid_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(pids, indent=2))
        temporary.replace(self.pid_file)

    def stop_all(self) -> None:
        """SIGTERM the groups, newest kind first (the agents together, then the
        worker, then the fleet: the agents' last batches still get stored);
        SIGKILL what is left after the grace period."""
        kinds: dict[str, list[Child]] = {}
        for child in self.children.values():
            kinds.setdefault(child.name.split(":")[0], []).append(child)
        for children in reversed(kinds.values()):
            for child in children:
                _signal_group(child, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            for child in children:
                _wait(child, max(0.0, deadline - time.monotonic()))
        for child in self.children.values():
            # Whatever stayed in a group (a helper the child started) goes too.
            _signal_group(child, signal.SIGKILL)
            if child.process is not None and child.process.poll() is None:
                child.process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()


def _signal_group(child: Child, signum: int) -> None:
    if child.pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signum)


def _wait(child: Child, timeout_s: float) -> None:
    if child.process is None:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.process.wait(timeout=timeout_s)


# --- the steps -----------------------------------------------------------------------


class StartupView:
    """One line per step with a spinner, ticked when done (Rich progress)."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/green]"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {
            name: self.progress.add_task(name, total=1, start=False) for name in STEPS
        }

    @contextlib.contextmanager
    def step(self, name: str, doing: str) -> Any:
        task = self.tasks[name]
        self.progress.start_task(task)
        self.progress.update(task, description=f"{name}: {doing}")
        done: list[str] = []
        yield done.append  # the step may say what it became
        self.progress.update(
            task, completed=1, description=f"{name}: {done[-1] if done else doing}"
        )


def _wait_for_configs(sim_dir: Path, fleet: Child, since: float) -> list[Path]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if not fleet.alive():
            raise DemoError(f"the simulated fleet stopped (see {fleet.log_path})")
        configs = _written_configs(sim_dir, since)
        if configs is not None:
            return configs
        time.sleep(0.2)
    raise DemoError(f"the simulated fleet did not start within 90 s (see {fleet.log_path})")


def _written_configs(sim_dir: Path, since: float) -> list[Path] | None:
    """This run's agent configs once the fleet wrote them all, else None.

    The fleet writes fleet.json first, then one config per gateway, neither
    atomically: wait until the manifest parses and every gateway's config is
    this run's and names all of the gateway's meters."""
    manifest = sim_dir / "fleet.json"
    try:
        if manifest.stat().st_mtime < since:
            return None
        meters = json.loads(manifest.read_text())["meters"]
        expected: dict[str, int] = {}
        for meter in meters:
            expected[meter["gateway"]] = expected.get(meter["gateway"], 0) + 1
        paths = []
        for gateway, count in sorted(expected.items()):
            path = sim_dir / "agents" / f"{gateway}.yaml"
            paths.append(path)
            if path.stat().st_mtime < since:
                return None
            config = yaml.safe_load(path.read_text())
            if sum(len(bus["meters"]) for bus in config["buses"]) != count:
                return None
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return None  # not (completely) written yet
    return paths


def _wait_until_ready(url: str, child: Child, stop: asyncio.Event, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stop.is_set():
            raise Stopped
        if not child.alive():
            raise DemoError(f"{child.name} stopped (see {child.log_path})")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.3)
    raise DemoError(f"{child.name} was not ready within {timeout_s:.0f} s (see {child.log_path})")


def _agent_configs(
    fleet_configs: list[Path], options: DemoOptions
) -> dict[str, tuple[Path, dict[str, Any]]]:
    """The fleet's agent configs, with the gateway's broker password file when the
    broker is a real one (the embedded broker takes anonymous loopback clients),
    and Modbus timeouts for one busy machine (see `SHARED_MACHINE_MODBUS`)."""
    configs = {}
    for path in fleet_configs:
        config = yaml.safe_load(path.read_text())
        gateway_id = config["gateway"]["id"]
        for bus in config.get("buses", []):
            if bus["link"] in ("serial", "tcp"):
                for meter in bus["meters"]:
                    meter.update(SHARED_MACHINE_MODBUS)
        if options.broker_url is not None:
            secret = options.data_dir / "secrets" / f"{gateway_id}.password"
            config["uplink"]["password_file"] = str(secret)
        target = options.data_dir / "agents" / f"{gateway_id}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            "# Written by voltstack demo from the fleet's generated configuration.\n"
            + yaml.safe_dump(config, sort_keys=False)
        )
        configs[gateway_id] = (target, config)
    return configs


def _fleet_epoch(sim_dir: Path) -> datetime:
    epoch = json.loads((sim_dir / "fleet.json").read_text())["epoch"]
    return datetime.fromisoformat(epoch).astimezone(UTC)


def _ingest_command(options: DemoOptions, broker_url: str, metrics_port: int) -> list[str]:
    store = store_target(options.store_url)
    command = [
        str(BIN / "voltstack-cloud"),
        "ingest",
        "--broker",
        broker_url,
        "--store",
        store.url,
        "--influx-db",
        store.influx_database,
        "--database",
        options.operational_url,
        "--client-id",
        "voltstack-demo-ingest",
        "--metrics-port",
        str(metrics_port),
    ]
    if store.influx_username is not None:
        command += ["--influx-username", store.influx_username]
    if store.influx_password is not None:
        secret = options.data_dir / "secrets" / "influx.password"
        write_secret(secret, store.influx_password)
        command += ["--influx-password-file", str(secret)]
    if options.broker_url is None:  # amqtt speaks MQTT 3.1.1: no shared subscriptions
        command += ["--mqtt-version", "311", "--share-group", ""]
    else:
        command += ["--username", INGEST_USER, "--password-file", str(_ingest_secret(options))]
    if options.speed > 1:  # the simulated clock runs ahead of the worker's
        run_s = options.duration_s if options.duration_s is not None else 10 * 365 * 86_400
        command += ["--max-ahead-hours", f"{24 + run_s * options.speed / 3600:.0f}"]
    return command


@dataclass(frozen=True)
class StoreTarget:
    """Where the time series go, as the ingestion worker's options say it."""

    url: str  # sqlite:///path or http(s)://host:port, without credentials
    influx_database: str = INFLUX_DATABASE
    influx_username: str | None = None
    influx_password: str | None = None


def store_target(store_url: str) -> StoreTarget:
    """An InfluxDB URL may carry a user and the database as its path:
    http://user:password@host:8086/voltstack (database default: voltstack)."""
    if not store_url.startswith(("http://", "https://")):
        return StoreTarget(store_url)
    parts = urlsplit(store_url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return StoreTarget(
        f"{parts.scheme}://{netloc}",
        unquote(parts.path.strip("/")) or INFLUX_DATABASE,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


def _ingest_secret(options: DemoOptions) -> Path:
    """The ingestion worker's broker password file (a real broker only), made once."""
    secret = options.data_dir / "secrets" / f"{INGEST_USER}.password"
    if not secret.is_file():
        write_secret(secret, secrets.token_urlsafe(24))
    return secret


@dataclass
class Running:
    """What the startup built, for the watch loop and the final table."""

    supervisor: Supervisor
    # gateway id → (the agent config the demo runs it with, its content)
    configs: dict[str, tuple[Path, dict[str, Any]]] = field(default_factory=dict)
    agents: dict[str, Child] = field(default_factory=dict)
    console_url: str | None = None
    watch: CloudWatch | None = None
    logins: list[DemoLogin] = field(default_factory=list)


async def _start(
    options: DemoOptions,
    broker_url: str,
    view: StartupView,
    running: Running,
    stop: asyncio.Event,
) -> None:
    from voltstack import cloud_side  # SQLAlchemy and the stores load only for the demo

    data, logs = options.data_dir, options.data_dir / "logs"
    supervisor = running.supervisor

    async def step(name: str, doing: str, work: Callable[[], str]) -> None:
        if stop.is_set():
            raise Stopped
        with view.step(name, doing) as became:
            try:
                became(await asyncio.to_thread(work))
            except (DemoError, Stopped):
                raise
            except Exception as exc:  # a server refused, a file is unwritable: say so, no traceback
                raise DemoError(f"{name}: {exc}") from exc

    def migrate() -> str:
        cloud_side.migrate(options.operational_url)
        return f"{_redacted(options.operational_url)}, schema up to date"

    await step("database", f"migrating {_redacted(options.operational_url)}", migrate)

    def start_fleet() -> str:
        fleet_file = data / "fleet.yaml"
        fleet_file.write_text(yaml.safe_dump(demo_fleet(options.speed), sort_keys=False))
        started = time.time() - 1
        fleet = supervisor.spawn(
            "fleet",
            [
                str(BIN / "voltstack-sim"),
                "fleet",
                str(fleet_file),
                "--state-dir",
                str(data / "sim"),
                "--broker",
                broker_url,
            ],
            logs / "fleet.log",
            restart=False,
        )
        configs = _wait_for_configs(data / "sim", fleet, started)
        running.configs = _agent_configs(configs, options)
        meters = sum(len(cloud_side.meters_of_agent_config(c)) for _, c in running.configs.values())
        clock = f", clock ×{options.speed:g}" if options.speed != 1 else ""
        return f"{len(configs)} gateways, {meters} meters{clock}"

    await step("fleet", "starting the simulated meters", start_fleet)

    def register() -> str:
        configs = running.configs
        gateways, meters = cloud_side.register_fleet(
            options.operational_url,
            {gw: cloud_side.meters_of_agent_config(c) for gw, (_, c) in configs.items()},
            installed_at=_fleet_epoch(data / "sim"),
            secrets_dir=data / "secrets",
        )
        if options.broker_url is not None:
            _ingest_secret(options)  # before the worker: broker-acl needs it
        return f"{gateways} gateways and {meters} meters new, the rest already registered"

    await step("registration", "registering gateways and meters", register)

    def create_logins() -> str:
        meters = {
            gw: cloud_side.meters_of_agent_config(c) for gw, (_, c) in running.configs.items()
        }
        running.logins = cloud_side.ensure_demo_logins(
            options.operational_url,
            secrets_dir=data / "secrets",
            customer_meter=customer_meter(meters),
            epoch=_fleet_epoch(data / "sim"),
        )
        return f"{len(running.logins)} console users, passwords in {data / 'secrets'}"

    await step("logins", "creating the console's demo users", create_logins)

    def start_ingest() -> str:
        port = free_port(options.host)
        worker = supervisor.spawn(
            "ingest",
            _ingest_command(options, broker_url, port),
            logs / "ingest.log",
            restart=True,
        )
        # A real broker refuses the worker until its account is provisioned
        # (README: voltstack-cloud broker-acl): wait for that as long as it takes.
        timeout_s = 90.0 if options.broker_url is None else float("inf")
        _wait_until_ready(f"http://127.0.0.1:{port}/ready", worker, stop, timeout_s=timeout_s)
        store = store_target(options.store_url)
        running.watch = cloud_side.CloudWatch(
            options.operational_url,
            store.url,
            store.influx_database,
            username=store.influx_username,
            password=store.influx_password,
        )
        return f"one worker into {_redacted(options.store_url)}"

    doing = "starting a worker"
    if options.broker_url is not None:
        doing += (
            f" (waiting for the broker to accept {INGEST_USER}: provision it with "
            "voltstack-cloud broker-acl, see README)"
        )
    await step("ingestion", doing, start_ingest)

    def start_agents() -> str:
        configs = running.configs
        for gateway_id, (path, _) in configs.items():
            running.agents[gateway_id] = supervisor.spawn(
                f"agent:{gateway_id}",
                [str(BIN / "voltstack-agent"), "run", "--config", str(path)],
                logs / f"agent-{gateway_id}.log",
                restart=True,
            )
        return f"{len(configs)} running"

    await step("agents", "starting one per gateway", start_agents)

    def start_console() -> str:
        port = options.api_port
        if not port_is_free(options.host, port):
            port = free_port(options.host)
        api = supervisor.spawn(
            "api",
            [str(BIN / "voltstack-cloud"), "api", "--host", options.host, "--port", str(port)],
            logs / "api.log",
            restart=True,
            env=_api_settings(options),
        )
        _wait_until_ready(f"http://{options.host}:{port}/health/ready", api, stop, timeout_s=90)
        running.console_url = f"http://{options.host}:{port}/console/"
        return f"REST API on http://{options.host}:{port}/, console at {running.console_url}"

    await step("console", "starting the REST API and the console", start_console)


def customer_meter(gateways: dict[str, list[FleetMeter]]) -> str:
    """The meter the demo customer owns: the first DLMS meter (it keeps an event
    log, so the customer sees last gasps too), else the first meter."""
    ordered = [meter for gateway in sorted(gateways) for meter in gateways[gateway]]
    if not ordered:
        raise DemoError("the fleet has no meters")
    return next((m.serial for m in ordered if m.protocol == "dlms"), ordered[0].serial)


def _print_logins(console: Console, running: Running) -> None:
    if not running.logins:
        return
    console.print("console logins (passwords kept in the data folder's secrets/):")
    for login in running.logins:
        owns = f"  — owns meter {login.meter_serial}" if login.meter_serial else ""
        console.print(
            f"  {login.role:<9} {login.email:<28} {login.password}{owns}",
            markup=False,
            highlight=False,
        )


def _api_settings(options: DemoOptions) -> dict[str, str]:
    """`voltstack-cloud api`'s settings (VOLTSTACK_*, cloud/core/config.py)."""
    store = store_target(options.store_url)
    settings = {
        # The API defaults to production (Secure cookies, which a browser
        # never sends back over the demo's plain http): say what this is.
        "VOLTSTACK_ENVIRONMENT": "development",
        "VOLTSTACK_DATABASE_URL": options.operational_url,
        # Signs sessions and CSRF tokens: the demo prints real logins, so not
        # the development placeholder anyone could forge with.
        "VOLTSTACK_SECRET_KEY": _api_secret_key(options),
    }
    if store.url.startswith("sqlite:///"):
        settings["VOLTSTACK_TIMESERIES_STORE"] = "sqlite"
        settings["VOLTSTACK_TIMESERIES_SQLITE_PATH"] = store.url.removeprefix("sqlite:///")
        return settings
    settings["VOLTSTACK_TIMESERIES_STORE"] = "influx"
    settings["VOLTSTACK_INFLUX_URL"] = store.url
    settings["VOLTSTACK_INFLUX_DATABASE"] = store.influx_database
    if store.influx_username is not None:
        settings["VOLTSTACK_INFLUX_USERNAME"] = store.influx_username
    if store.influx_password is not None:
        settings["VOLTSTACK_INFLUX_PASSWORD"] = store.influx_password
    return settings


def _api_secret_key(options: DemoOptions) -> str:
    """The API's secret key, generated once and kept (sessions survive a restart)."""
    path = options.data_dir / "secrets" / "api-secret-key"
    key = read_secret(path)
    if key is None:
        key = secrets.token_urlsafe(48)
        write_secret(path, key)
    return key


def _redacted(url: str) -> str:
    """A URL without its password, for the screen."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://…@{rest.rsplit('@', 1)[1]}"


async def _broker(options: DemoOptions, view: StartupView, stack: contextlib.AsyncExitStack) -> str:
    """The broker's URL: the one given, or the embedded broker's, running until
    `stack` closes."""
    if options.broker_url is not None:
        with view.step("broker", f"using {_redacted(options.broker_url)}"):
            return options.broker_url
    with view.step("broker", "starting the embedded broker (amqtt)") as became:
        url = await stack.enter_async_context(embedded_broker(options.host, options.mqtt_port))
        became(f"embedded at {url}")
    return url


def _table(running: Running, options: DemoOptions) -> Table:
    from voltstack.cloud_side import seconds_ago

    title = "what the cloud stored"
    if options.speed != 1:
        title += f" (simulated time ×{options.speed:g})"
    table = Table(
        "gateway",
        "state",
        "meters stored",
        "readings stored",
        "rejected",
        "dead letters",
        "newest reading (UTC)",
        "age (s)",
        "offline events",
        "agent restarts",
        title=title,
    )
    try:
        rows = running.watch.gateways() if running.watch is not None else []
    except Exception as exc:  # a store or the database is away for a moment: say so, go on
        table.caption = f"[red]cannot read the cloud's stores: {exc}[/red]"
        rows = []
    for row in rows:
        agent = running.agents.get(row.gateway)
        table.add_row(
            row.gateway,
            "[green]online[/green]" if row.online else "[red]offline[/red]",
            f"{row.meters_stored}/{row.meters}",
            str(row.readings_stored),
            str(row.rejected),
            str(row.dead_letters),
            row.newest_reading_at.strftime("%Y-%m-%d %H:%M:%S") if row.newest_reading_at else "—",
            seconds_ago(row.newest_reading_at),
            str(row.went_offline),
            str(agent.restarts if agent else 0),
        )
    return table


async def _watch(
    running: Running, options: DemoOptions, console: Console, stop: asyncio.Event
) -> None:
    loop = asyncio.get_running_loop()
    deadline = None if options.duration_s is None else loop.time() + options.duration_s
    with Live(console=console, refresh_per_second=1, transient=True) as live:
        while not stop.is_set():
            if deadline is not None and loop.time() >= deadline:
                break
            lost = running.supervisor.supervise()
            if lost:
                raise DemoError(f"{', '.join(lost)} stopped (see {options.data_dir / 'logs'})")
            live.update(await asyncio.to_thread(_table, running, options))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def _run(options: DemoOptions, console: Console) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    console.print(
        f"voltstack {__version__} demo — fastcodec {fastcodec.IMPLEMENTATION}, "
        f"data in {options.data_dir}"
    )
    options.data_dir.mkdir(parents=True, exist_ok=True)
    running = Running(Supervisor(options.data_dir / "run" / "pids.json"))
    view = StartupView(console)
    try:
        with view.progress:
            async with contextlib.AsyncExitStack() as stack:
                broker_url = await _broker(options, view, stack)
                try:
                    await _start(options, broker_url, view, running, stop)
                    view.progress.stop()
                    console.print(f"broker {broker_url}; logs in {options.data_dir / 'logs'}")
                    if running.console_url:
                        console.print(f"console: {running.console_url}")
                    _print_logins(console, running)
                    console.print(
                        "press Ctrl-C to stop"
                        if options.duration_s is None
                        else f"running for {options.duration_s:g} s"
                    )
                    await _watch(running, options, console, stop)
                finally:
                    await _finish(running, options, console)
    except Stopped:
        console.print("stopped while starting")


async def _finish(running: Running, options: DemoOptions, console: Console) -> None:
    console.print("stopping")
    await asyncio.to_thread(running.supervisor.stop_all)
    if running.watch is not None:
        console.print(await asyncio.to_thread(_table, running, options))
        running.watch.close()


def run_demo(options: DemoOptions, console: Console) -> None:
    """Run the demo until Ctrl-C, SIGTERM or `options.duration_s` seconds."""
    if options.broker_url is None and not port_is_free(options.host, options.mqtt_port):
        fallback = free_port(options.host)
        console.print(
            f"port {options.mqtt_port} is taken on {options.host}; "
            f"the broker uses {fallback} instead"
        )
        options = DemoOptions(**{**options.__dict__, "mqtt_port": fallback})
    try:
        asyncio.run(_run(options, console))
    except DemoError as exc:  # a part did not start or stopped: say which, no traceback
        console.print(f"[red]the demo stopped: {exc}[/red]")
        raise SystemExit(1) from None
