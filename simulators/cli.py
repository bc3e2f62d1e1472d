"""`voltstack-sim`: start simulated meters and fleets, switch faults, tell truth."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from datetime import datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from edge_agent.profiles import available_profiles, load_profile
from edge_agent.yamlsource import ConfigFileError

app = typer.Typer(
    help="Simulated Modbus and DLMS meters on virtual buses, optical ports and TCP.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True, soft_wrap=True)


@app.callback()
def main() -> None:
    """Commands for simulated meters and fleets."""


@app.command()
def version() -> None:
    """Print the simulator version."""
    typer.echo(f"voltstack-sim {package_version('voltstack')}")


@app.command()
def models() -> None:
    """List the meter models the simulator (and the agent) know."""
    table = Table("model", "maker", "protocol", "phases", "quantities")
    for profile_id in available_profiles():
        profile = load_profile(profile_id)
        table.add_row(
            profile_id,
            f"{profile.manufacturer} {profile.model}",
            profile.protocol,
            str(profile.phases),
            str(len(profile.quantities)),
        )
    console.print(table)


def _fleet_table(fleet: object) -> Table:
    from simulators.fleet import Fleet

    assert isinstance(fleet, Fleet)
    table = Table("gateway", "bus", "link", "where", "meters", title="simulated fleet")
    groups: dict[tuple[str, str, str, str], list[str]] = {}
    for meter in fleet.meters.values():
        key = (
            meter.gateway,
            meter.bus,
            meter.link,
            meter.port if meter.link == "serial" else "loopback",
        )
        groups.setdefault(key, []).append(meter.serial)
    for (gateway, bus, link, where), serials in groups.items():
        table.add_row(gateway, bus, link, where, f"{len(serials)} ({serials[0]} …)")
    return table


@app.command()
def fleet(
    fleet_file: Annotated[
        Path | None,
        typer.Argument(help="Fleet YAML: gateways × buses × meters (default: the demo fleet)."),
    ] = None,
    state_dir: Annotated[
        Path, typer.Option(help="Where ports, agent configs and fleet.json go.")
    ] = Path("var/sim"),
    speed: Annotated[float | None, typer.Option(help="Simulated seconds per real second.")] = None,
    timing: Annotated[bool | None, typer.Option(help="Model line rate and turnaround.")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    broker: Annotated[
        str | None, typer.Option(help="The broker the generated agent configs point at.")
    ] = None,
) -> None:
    """Run a fleet until Ctrl-C; writes agent configs into STATE_DIR/agents."""
    from simulators.fleet import DEMO_FLEET, Fleet, load_fleet

    try:
        spec = load_fleet(fleet_file or DEMO_FLEET)
    except ConfigFileError as exc:
        errors.print(f"[red]invalid fleet file[/red]\n{exc}")
        raise typer.Exit(2) from None
    overrides = {
        k: v for k, v in (("speed", speed), ("timing", timing), ("broker", broker)) if v is not None
    }
    spec = spec.model_copy(update=overrides)

    async def run() -> None:
        with console.status(
            f"starting {sum(len(g.buses) + len(g.tcp) for g in spec.gateways)} links"
        ):
            running = await Fleet.start(spec, state_dir)
        console.print(_fleet_table(running))
        console.print(
            f"agent configs in {state_dir / 'agents'}; faults via {state_dir / 'control.sock'}"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await asyncio.wait_for(stop.wait(), duration)
        except TimeoutError:
            pass
        finally:
            await running.stop()
        console.print("fleet stopped")

    asyncio.run(run())


@app.command()
def fault(
    serial: Annotated[str, typer.Argument(help="The meter's serial (see fleet.json).")],
    settings: Annotated[
        list[str],
        typer.Argument(help="name=value, e.g. no_answer=true slow_s=0.5; clear=true heals."),
    ],
    state_dir: Annotated[Path, typer.Option(help="The running fleet's state folder.")] = Path(
        "var/sim"
    ),
) -> None:
    """Switch faults on a meter of a running fleet."""
    faults: dict[str, object] = {}
    for setting in settings:
        name, _, text = setting.partition("=")
        try:
            faults[name] = json.loads(text)
        except json.JSONDecodeError:
            faults[name] = text  # e.g. noise=00ff00 (hex)
    answer = _control(state_dir, {"serial": serial, "faults": faults})
    console.print_json(data=answer["faults"])


def _control(state_dir: Path, command: dict[str, object]) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX) as control:
        try:
            control.connect(str(state_dir / "control.sock"))
        except OSError as exc:
            errors.print(f"no running fleet at {state_dir}: {exc}")
            raise typer.Exit(1) from None
        control.sendall(json.dumps(command).encode() + b"\n")
        answer: dict[str, object] = json.loads(control.makefile().readline())
    if not answer["ok"]:
        errors.print(f"refused: {answer['error']}")
        raise typer.Exit(1)
    return answer


@app.command()
def replace(
    serial: Annotated[str, typer.Argument(help="The meter to swap (see fleet.json).")],
    state_dir: Annotated[Path, typer.Option(help="The running fleet's state folder.")] = Path(
        "var/sim"
    ),
) -> None:
    """Swap a meter of a running fleet: new serial, fresh register (agent configs rewritten)."""
    answer = _control(state_dir, {"serial": serial, "replace": True})
    console.print(f"{serial} replaced by {answer['serial']}")


@app.command()
def truth(
    fleet_file: Annotated[Path, typer.Argument(help="The fleet YAML the meters came from.")],
    serial: Annotated[str, typer.Argument(help="The meter's serial.")],
    at: Annotated[
        datetime | None, typer.Option(help="The moment (ISO 8601, UTC if no zone); default now.")
    ] = None,
    state_dir: Annotated[Path, typer.Option(help="Where the fleet ran (for its epoch).")] = Path(
        "var/sim"
    ),
) -> None:
    """Print what a simulated meter held at a moment (its ground truth)."""
    from simulators.fleet import load_fleet, truth_of

    try:
        values = truth_of(load_fleet(fleet_file), serial, at, state_dir)
    except (ConfigFileError, KeyError, ValueError) as exc:
        errors.print(str(exc))
        raise typer.Exit(2) from None
    table = Table("OBIS", "value", title=f"{serial} at {at or 'now'}")
    for obis, value in values.items():
        table.add_row(obis, f"{value:.6g}")
    console.print(table)
