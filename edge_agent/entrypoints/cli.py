"""`voltstack-agent`: the gateway daemon and the technicians' commissioning commands.

Exit codes scripts can trust (docs/commissioning.md):
0 done; 1 the meters did not answer as asked (nothing found, a read failed);
2 usage error; 3 invalid configuration or profile; 4 the port or broker
cannot be reached.
"""

from __future__ import annotations

import functools
import json
import logging
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from edge_agent.profiles import ConfigFileError, available_profiles, load_profile

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

app = typer.Typer(
    help="The voltstack gateway agent: reads meters, buffers readings, publishes them.\n\n"
    "Commissioning a gateway: `ports` to find the serial ports, `scan` to find the meters on a "
    "bus, `read` to check one, `commission` to write the agent's configuration, "
    "`check-config` to validate it.",
    no_args_is_help=True,
    add_completion=False,
)


# Rich is imported when a command first prints: `run`, the daemon, prints
# nothing of it, and a gateway keeps the 4 MB it costs (docs/performance.md).
@functools.cache
def _out() -> Console:
    from rich.console import Console

    return Console()


@functools.cache
def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def _table(*columns: str, **options: Any) -> Table:
    from rich.table import Table

    return Table(*columns, **options)


EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_LINK = 1, 2, 3, 4


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log every frame as hex.")
    ] = False,
) -> None:
    """Commands for running and commissioning a gateway."""
    from edge_agent.logs import configure_logging

    # Commissioning commands stay quiet but for warnings; `run` logs INFO.
    configure_logging(verbose, level=logging.WARNING)


@app.command()
def version() -> None:
    """Print the agent version and which codec build is in use."""
    import fastcodec

    typer.echo(
        f"voltstack-agent {package_version('voltstack')} (fastcodec: {fastcodec.IMPLEMENTATION})"
    )


@app.command()
def ports() -> None:
    """List the serial ports of this machine (USB RS-485 adapters, built-in UARTs)."""
    from serial.tools import list_ports

    found = sorted(list_ports.comports(), key=lambda p: p.device)
    if not found:
        _err().print("no serial ports found (is the adapter plugged in? `dmesg | tail` tells)")
        raise typer.Exit(EXIT_FAILED)
    table = _table("port", "description", "hardware id")
    for port in found:
        table.add_row(port.device, port.description or "", port.hwid or "")
    _out().print(table)


def _parse_units(text: str) -> list[int]:
    units: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise typer.BadParameter(f"{part!r} is not a unit id or range like 1-32") from None
        if not 1 <= low <= high <= 247:
            raise typer.BadParameter(f"{part!r}: unit ids run from 1 to 247")
        units.extend(range(low, high + 1))
    return units


def _settings(bauds: str, parities: str) -> list[Any]:
    from edge_agent.service.scan import SerialSetting

    try:
        baud_list = [int(b) for b in bauds.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{bauds!r}: give baud rates like 9600,19200") from None
    parity_list = [p.strip().upper() for p in parities.split(",")]
    if not set(parity_list) <= {"N", "E", "O"}:
        raise typer.BadParameter(f"{parities!r}: parity is N, E or O")
    return [SerialSetting(b, p) for b in baud_list for p in parity_list]


def _scan(port: str, units: str, baud: str, parity: str, timeout_ms: float) -> list[Any]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from edge_agent.service.scan import scan_bus
    from firmware_bridge.exceptions import LinkOpenError

    unit_ids, settings = _parse_units(units), _settings(baud, parity)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_err(), transient=True) as progress:
        task = progress.add_task("scanning", total=len(unit_ids) * len(settings))

        def advance(setting: Any, unit: int) -> None:
            progress.update(task, advance=1, description=f"{setting} unit {unit:3d}")

        try:
            return scan_bus(
                port,
                settings=settings,
                unit_ids=unit_ids,
                timeout_s=timeout_ms / 1000,
                progress=advance,
            )
        except LinkOpenError as exc:
            _err().print(f"error: {exc}")
            raise typer.Exit(EXIT_LINK) from None


PortArgument = Annotated[
    str, typer.Argument(help="Serial port: /dev/ttyUSB0, rfc2217://host:port, socket://host:port.")
]
UnitsOption = Annotated[str, typer.Option(help="Unit ids to try: 1-247, or 1-10,20.")]
BaudOption = Annotated[str, typer.Option(help="Baud rates to try, comma separated.")]
ParityOption = Annotated[str, typer.Option(help="Parities to try: N, E, O, comma separated.")]
TimeoutOption = Annotated[float, typer.Option(help="How long to wait for each unit, in ms.")]


@app.command()
def scan(
    port: PortArgument,
    units: UnitsOption = "1-247",
    baud: BaudOption = "9600",
    parity: ParityOption = "N,E",
    timeout_ms: TimeoutOption = 100.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Find the Modbus meters on a bus: unit ids × baud rates × parities."""
    found = _scan(port, units, baud, parity, timeout_ms)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "unit_id": m.unit_id,
                        "baudrate": m.setting.baudrate,
                        "parity": m.setting.parity,
                        "model": m.profile_id,
                        "voltage_v": m.voltage_v,
                    }
                    for m in found
                ],
                indent=2,
            )
        )
    else:
        table = _table(
            "unit", "serial setting", "model", "L1 voltage (V)", title=f"meters on {port}"
        )
        for meter in found:
            voltage = f"{meter.voltage_v:.1f}" if meter.voltage_v is not None else "—"
            table.add_row(
                str(meter.unit_id), str(meter.setting), meter.profile_id or "unknown", voltage
            )
        _out().print(table)
    if not found:
        _err().print("no meter answered: check wiring (A/B), termination, baud rate and parity")
        raise typer.Exit(EXIT_FAILED)


@app.command()
def read(
    port: PortArgument,
    unit: Annotated[int, typer.Option(help="The meter's unit id.", min=1, max=247)],
    profile: Annotated[str, typer.Option(help=f"Its model: {', '.join(available_profiles())}.")],
    baud: Annotated[int, typer.Option(help="Baud rate.")] = 9600,
    parity: Annotated[str, typer.Option(help="Parity: N, E or O.")] = "N",
    timeout_ms: TimeoutOption = 500.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Read every quantity of one Modbus meter once."""
    from edge_agent.adapters.modbus_reader import ModbusMeterReader
    from firmware_bridge.bus import ModbusBus, PolledDevice
    from firmware_bridge.exceptions import LinkOpenError
    from firmware_bridge.links import SerialLink

    try:
        model = load_profile(profile)
    except KeyError as exc:
        _err().print(f"error: {exc.args[0]}")
        raise typer.Exit(EXIT_USAGE) from None
    try:
        link = SerialLink(port, baudrate=baud, parity=parity.upper())
    except LinkOpenError as exc:
        _err().print(f"error: {exc}")
        raise typer.Exit(EXIT_LINK) from None
    try:
        device = PolledDevice(f"unit {unit}", unit, timeout_s=timeout_ms / 1000, retries=1)
        result = ModbusMeterReader(ModbusBus(link), device, model).read()
    finally:
        link.close()
    keys = {q.obis: q.key for q in model.quantities}
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {"key": keys[r.obis], "obis": r.obis, "value": r.value, "unit": r.unit}
                    for r in result.readings
                ],
                indent=2,
            )
        )
    else:
        table = _table(
            "quantity",
            "OBIS",
            "value",
            "unit",
            title=f"{model.manufacturer} {model.model}, unit {unit}",
        )
        for reading in result.readings:
            table.add_row(keys[reading.obis], reading.obis, f"{reading.value:.6g}", reading.unit)
        _out().print(table)
    for failure in result.failures:
        _err().print(f"registers {failure.block.first:#06x}+{failure.block.count}: {failure.error}")
    if result.failures:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def commission(
    port: PortArgument,
    gateway_id: Annotated[str, typer.Option(help="This gateway's id (its MQTT identity).")],
    broker: Annotated[
        str, typer.Option(help="mqtts://broker:8883 (or mqtt:// on a trusted network).")
    ],
    output: Annotated[Path, typer.Option(help="Where to write the agent configuration.")] = Path(
        "/etc/voltstack/agent.yaml"
    ),
    units: UnitsOption = "1-247",
    baud: BaudOption = "9600",
    parity: ParityOption = "N,E",
    timeout_ms: TimeoutOption = 100.0,
    interval_s: Annotated[int, typer.Option(help="Read interval of every meter, seconds.")] = 900,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the configuration, write nothing.")
    ] = False,
) -> None:
    """Scan the bus and write a validated agent configuration for what was found."""
    from edge_agent.config import AgentConfig

    found = [m for m in _scan(port, units, baud, parity, timeout_ms) if m.profile_id]
    if not found:
        _err().print("no known meter answered: nothing to commission")
        raise typer.Exit(EXIT_FAILED)
    setting = found[0].setting
    config: dict[str, Any] = {
        "gateway": {"id": gateway_id},
        "uplink": {"broker": broker, "username": gateway_id},
        "buses": [
            {
                "name": "rs485-1",
                "link": "serial",
                "port": port,
                "baudrate": setting.baudrate,
                "parity": setting.parity,
                "stopbits": setting.stopbits,
                "meters": [
                    {
                        "serial": f"{gateway_id}-unit{m.unit_id:03d}",
                        "profile": m.profile_id,
                        "unit_id": m.unit_id,
                        "interval_s": interval_s,
                    }
                    for m in found
                ],
            }
        ],
    }
    try:
        AgentConfig.model_validate(config)
    except ValueError as exc:
        _err().print(f"error: the configuration would be invalid: {exc}")
        raise typer.Exit(EXIT_CONFIG) from None
    text = (
        "# Written by voltstack-agent commission. Replace the serials with the\n"
        "# nameplate serials before going live.\n" + yaml.safe_dump(config, sort_keys=False)
    )
    if dry_run:
        typer.echo(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    _out().print(f"wrote {output}: {len(found)} meters on {port} at {setting}")


@app.command()
def run(
    config: Annotated[Path, typer.Option(help="The agent's YAML configuration.")] = Path(
        "/etc/voltstack/agent.yaml"
    ),
) -> None:
    """Run the gateway service (what systemd starts): read, buffer, publish."""
    import signal

    from edge_agent.adapters.health import HealthServer
    from edge_agent.adapters.systemd import SystemdNotifier
    from edge_agent.config import load_config
    from edge_agent.service.agent import Agent
    from firmware_bridge.exceptions import LinkError

    try:
        loaded = load_config(config)
    except ConfigFileError as exc:
        _err().print(f"invalid configuration, not starting:\n{exc}")
        raise typer.Exit(EXIT_CONFIG) from None
    try:
        agent = Agent(loaded, config_path=config)
    except (LinkError, OSError) as exc:
        _err().print(f"cannot start: {exc}")
        raise typer.Exit(EXIT_LINK) from None
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)  # a service tells journald what it does
    notifier = SystemdNotifier()
    health = None
    if loaded.health.enabled:
        health = HealthServer(agent.snapshot, host=loaded.health.host, port=loaded.health.port)
        try:
            health.start()
        except OSError as exc:
            agent.stop()
            _err().print(
                f"cannot serve the health endpoint on {loaded.health.host}:"
                f"{loaded.health.port}: {exc}"
            )
            raise typer.Exit(EXIT_LINK) from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop_event.set())
    agent.start()
    notifier.ready(f"reading {sum(len(w.tasks) for w in agent.workers)} meters")

    def heartbeat() -> None:
        notifier.watchdog()
        depth = agent.buffer.stats().depth
        online = "online" if agent.uplink.state.connected else "offline"
        notifier.status(f"{online}, {depth} readings buffered")

    code = agent.run_until_stopped(heartbeat)
    notifier.stopping()
    agent.stop()
    if health is not None:
        health.stop()
    raise typer.Exit(code)


@app.command("uplink-test")
def uplink_test(
    config: Annotated[Path, typer.Option(help="The agent's YAML configuration.")] = Path(
        "/etc/voltstack/agent.yaml"
    ),
    timeout_s: Annotated[
        float, typer.Option(help="How long to wait for each step, seconds.")
    ] = 10.0,
) -> None:
    """Connect to the broker with the configured TLS and credentials, publish
    a test message under this gateway's prefix and receive it back."""
    from edge_agent.config import load_config
    from edge_agent.service.uplink_probe import probe_uplink

    try:
        loaded = load_config(config)
    except ConfigFileError as exc:
        _err().print(f"invalid configuration:\n{exc}")
        raise typer.Exit(EXIT_CONFIG) from None
    result = probe_uplink(loaded.uplink, loaded.gateway.id, timeout_s=timeout_s)
    table = _table(
        "step", "result", title=f"uplink of {loaded.gateway.id} to {loaded.uplink.broker}"
    )
    for step, outcome in result.steps:
        table.add_row(step, outcome)
    _out().print(table)
    if not result.ok:
        _err().print(f"uplink test failed: {result.error}")
        raise typer.Exit(EXIT_LINK)


@app.command("check-config")
def check_config(
    config: Annotated[Path, typer.Argument(help="The agent's YAML configuration.")] = Path(
        "/etc/voltstack/agent.yaml"
    ),
) -> None:
    """Validate the agent's configuration; name the key and line of every mistake."""
    from edge_agent.config import load_config

    try:
        loaded = load_config(config)
    except ConfigFileError as exc:
        _err().print(f"invalid configuration:\n{exc}")
        raise typer.Exit(EXIT_CONFIG) from None
    meters = sum(len(bus.meters) for bus in loaded.buses)
    _out().print(
        f"{config}: valid — gateway {loaded.gateway.id}, {len(loaded.buses)} buses, {meters} meters"
    )


def _quality_names(quality: int) -> str:
    from edge_agent.domain.readings import QualityFlag

    return ",".join(flag.name or "" for flag in QualityFlag if quality & flag) or "—"


def _iso_time(at_ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC).isoformat()


@app.command()
def optical(
    port: PortArgument,
    baud_switch: Annotated[
        bool,
        typer.Option(
            "--baud-switch/--no-baud-switch",
            help="Switch to the meter's speed after the sign-on (off: stay at 300 Bd).",
        ),
    ] = True,
    max_baud: Annotated[
        int | None, typer.Option(help="Switch to this speed at most (e.g. 9600).", min=300)
    ] = None,
    address: Annotated[str, typer.Option(help="Sign on to this device address only.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Read a meter's IEC 62056-21 mode C data readout at its optical port."""
    from edge_agent.adapters.optical_reader import OpticalMeterReader
    from firmware_bridge.exceptions import LinkError, LinkOpenError
    from firmware_bridge.optical import OpticalSettings, open_optical_port

    settings = OpticalSettings(
        mode="C", baud_switch=baud_switch, max_baud=max_baud, device_address=address
    )
    try:
        link = open_optical_port(port)
    except LinkOpenError as exc:
        _err().print(f"error: {exc}")
        raise typer.Exit(EXIT_LINK) from None
    reader = OpticalMeterReader(address or port, settings)
    try:
        result = reader.read(link)
    except LinkError as exc:
        _err().print(f"error: {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        link.close()
    identified = reader.last_result
    assert identified is not None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "identification": identified.identification.text,
                    "baud_rate": identified.baud_rate,
                    "readings": [
                        {
                            "obis": r.obis,
                            "value": r.value,
                            "unit": r.unit,
                            "at": _iso_time(r.at_ms),
                            "quality": _quality_names(r.quality),
                        }
                        for r in result.readings
                    ],
                },
                indent=2,
            )
        )
        return
    table = _table(
        "OBIS",
        "value",
        "unit",
        title=f"{identified.identification.text} at {identified.baud_rate} Bd",
    )
    for reading in result.readings:
        table.add_row(reading.obis, f"{reading.value:.6g}", reading.unit)
    _out().print(table)


def _parse_when(text: str | None, name: str) -> Any:
    import datetime as dt

    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: give a time like 2026-03-01T12:00", param_hint=name
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@app.command()
def dlms(
    port: Annotated[
        str | None,
        typer.Argument(help="Serial port of an HDLC line (omit with --host).", show_default=False),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Meter host (DLMS TCP wrapper).")] = None,
    tcp_port: Annotated[int, typer.Option("--port", help="Meter TCP port.")] = 4059,
    password: Annotated[str | None, typer.Option(help="LLS password (low authentication).")] = None,
    client: Annotated[int, typer.Option(help="Client address: 1 management, 16 public.")] = 1,
    server: Annotated[int, typer.Option(help="Logical device (server) address.")] = 1,
    physical: Annotated[int, typer.Option(help="HDLC physical address of the meter.")] = 17,
    baud: Annotated[int, typer.Option(help="Baud rate of the HDLC line.")] = 9600,
    obis: Annotated[
        list[str] | None, typer.Option(help="Register to read (repeat); default: all.")
    ] = None,
    profile_from: Annotated[
        str | None, typer.Option(help="Load profile from this time (ISO 8601, UTC if bare).")
    ] = None,
    profile_to: Annotated[str | None, typer.Option(help="Load profile up to this time.")] = None,
    events: Annotated[bool, typer.Option("--events", help="Read the event log.")] = False,
    timeout_ms: TimeoutOption = 3000.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Read a DLMS/COSEM meter: registers, a load profile range, or the event log."""
    import datetime as dt

    from edge_agent.adapters.dlms_reader import DlmsMeterReader, register_codes, session_for
    from firmware_bridge.exceptions import LinkError, LinkOpenError
    from firmware_bridge.links import BytePipe, SerialLink, TcpLink

    if (port is None) == (host is None):
        raise typer.BadParameter("give a serial PORT or --host, not both", param_hint="PORT")
    try:
        codes = register_codes(obis or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--obis") from None
    start, end = (
        _parse_when(profile_from, "--profile-from"),
        _parse_when(profile_to, "--profile-to"),
    )
    if (start is None) != (end is None):
        raise typer.BadParameter(
            "give both --profile-from and --profile-to", param_hint="--profile-to"
        )
    name = port or f"{host}:{tcp_port}"
    link: BytePipe
    try:
        link = SerialLink(port, baudrate=baud) if port else TcpLink(str(host), tcp_port)
    except LinkOpenError as exc:
        _err().print(f"error: {exc}")
        raise typer.Exit(EXIT_LINK) from None
    reader = DlmsMeterReader(name)
    readings: list[Any] = []
    failures: list[Any] = []
    meter_events: list[Any] = []
    try:
        with session_for(
            link,
            interface="hdlc" if port else "wrapper",
            client_address=client,
            server_address=server,
            physical_address=physical if port else None,
            password=password,
            timeout_s=timeout_ms / 1000,
            name=name,
        ) as session:
            clock = reader.read_clock(session)
            if start is not None:
                result = reader.read_load_profile(session, start, end)
                readings, failures = result.readings, result.failures
            if events:
                since = start or clock - dt.timedelta(days=366)
                meter_events = reader.read_events(session, since, end or clock)
            if codes or (start is None and not events):
                result = (
                    reader.read_registers(session, codes)
                    if codes
                    else reader.read_all_registers(session)
                )
                readings, failures = readings + result.readings, failures + result.failures
    except LinkError as exc:
        _err().print(f"error: {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        link.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "meter_clock": clock.isoformat(),
                    "readings": [
                        {
                            "obis": r.obis,
                            "at": _iso_time(r.at_ms),
                            "value": r.value,
                            "unit": r.unit,
                            "quality": _quality_names(r.quality),
                        }
                        for r in readings
                    ],
                    "events": [
                        {"at": e.at.isoformat(), "code": e.code, "name": e.name}
                        for e in meter_events
                    ],
                },
                indent=2,
            )
        )
    else:
        if readings:
            table = _table("time", "OBIS", "value", "unit", "flags", title=f"{name}, clock {clock}")
            for r in readings:
                table.add_row(
                    _iso_time(r.at_ms), r.obis, f"{r.value:.6g}", r.unit, _quality_names(r.quality)
                )
            _out().print(table)
        if events:
            table = _table("time", "code", "event", title=f"{name}: event log")
            for event in meter_events:
                table.add_row(event.at.isoformat(), str(event.code), event.name)
            _out().print(table)
    for failure in failures:
        _err().print(f"{failure.obis}: {failure.error}")
    if failures:
        raise typer.Exit(EXIT_FAILED)


def _age_s(at: float | None, now: float) -> str:
    return "—" if at is None else f"{max(0.0, now - at):.0f}"


def _status_tables(snapshot: dict[str, Any], now: float) -> list[Table]:
    uplink, buffer = snapshot["uplink"], snapshot["buffer"]
    oldest = buffer["oldest_age_s"]
    summary = _table("", "value", title=f"gateway {snapshot['gateway']}", show_header=False)
    for label, value in (
        ("version", snapshot["version"]),
        ("running", "yes" if snapshot["running"] else "NO"),
        ("uptime (s)", f"{snapshot['uptime_s']:.0f}"),
        ("uplink", "connected" if uplink["connected"] else "DISCONNECTED"),
        ("uplink connects / disconnects", f"{uplink['connects']} / {uplink['disconnects']}"),
        (
            "batches sent / acknowledged",
            f"{uplink['batches_sent']} / {uplink['batches_acknowledged']}",
        ),
        ("batches in flight", str(uplink["in_flight"])),
        ("readings acknowledged (readings)", str(uplink["readings_acknowledged"])),
        ("last PUBACK age (s)", _age_s(uplink["last_puback_at"], now)),
        ("last uplink error", uplink["last_error"] or "—"),
        ("buffer depth (readings)", str(buffer["depth"])),
        ("buffer in flight (readings)", str(buffer["in_flight"])),
        ("oldest buffered reading age (s)", "—" if oldest is None else f"{oldest:.0f}"),
        ("buffer size (bytes)", str(buffer["bytes"])),
        ("readings dropped (readings)", str(buffer["drops_total"])),
    ):
        summary.add_row(label, str(value))
    buses = _table(
        "bus",
        "requests",
        "answers",
        "timeouts",
        "garbled",
        "exceptions",
        "skipped (breaker open)",
        "utilisation (%)",
        title="buses",
    )
    for column in buses.columns[1:]:
        column.justify = "right"
    for bus in snapshot["buses"]:
        buses.add_row(
            bus["name"],
            *(
                str(bus[key])
                for key in (
                    "requests",
                    "answers",
                    "timeouts",
                    "garbled",
                    "exceptions",
                    "skipped_breaker_open",
                )
            ),
            f"{100 * bus['utilisation']:.1f}",
        )
    meters = _table(
        "meter", "bus", "state", "reads ok", "reads failed", "last read age (s)", title="meters"
    )
    for column in meters.columns[3:]:
        column.justify = "right"
    for meter in snapshot["meters"]:
        meters.add_row(
            meter["serial"],
            meter["bus"],
            meter["state"],
            str(meter["reads_ok"]),
            str(meter["reads_failed"]),
            _age_s(meter["last_read_at"], now),
        )
    return [summary, buses, meters]


@app.command()
def status(
    url: Annotated[
        str, typer.Option(help="The agent's health endpoint (see docs/operations.md).")
    ] = "http://127.0.0.1:9610",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show the running agent's state: uplink, buffer, buses and meters.

    Exits 0 when the agent runs with its uplink connected, 1 when it reports
    not running or a disconnected uplink, 4 when its endpoint cannot be reached.
    """
    import time
    import urllib.error
    import urllib.request

    endpoint = url.rstrip("/") + "/status"
    if not endpoint.startswith(("http://", "https://")):
        raise typer.BadParameter(
            f"{url!r}: give a URL like http://127.0.0.1:9610", param_hint="--url"
        )
    try:
        with urllib.request.urlopen(endpoint, timeout=5) as response:
            snapshot = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        _err().print(f"error: {endpoint} answered {exc.code} {exc.reason}")
        raise typer.Exit(EXIT_FAILED) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        _err().print(f"error: cannot reach the agent at {endpoint}: {reason} (is it running?)")
        raise typer.Exit(EXIT_LINK) from None
    except ValueError as exc:
        _err().print(f"error: {endpoint} did not answer with status JSON: {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("uplink"), dict):
        _err().print(f"error: {endpoint} did not answer with the agent's status JSON")
        raise typer.Exit(EXIT_FAILED)
    if as_json:
        typer.echo(json.dumps(snapshot, indent=2))
    else:
        try:
            tables = _status_tables(snapshot, time.time())
        except (KeyError, TypeError, ValueError) as exc:
            _err().print(f"error: {endpoint} answered an unexpected status shape ({exc!r})")
            raise typer.Exit(EXIT_FAILED) from None
        for table in tables:
            _out().print(table)
    problems = []
    if not snapshot.get("running"):
        problems.append("the agent reports it is not running")
    if not snapshot.get("uplink", {}).get("connected"):
        last_error = snapshot.get("uplink", {}).get("last_error")
        problems.append(
            "the uplink is disconnected" + (f" (last error: {last_error})" if last_error else "")
        )
    if problems:
        _err().print("; ".join(problems))
        raise typer.Exit(EXIT_FAILED)
