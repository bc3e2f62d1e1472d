"""`voltstack`: the umbrella command (`voltstack demo`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from voltstack import __version__

app = typer.Typer(
    help="voltstack: edge-to-cloud metering. `voltstack demo` runs the whole stack on one machine.",
    no_args_is_help=True,
    add_completion=False,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds in "90", "90s", "10m", "1.5h" or "250ms".

    Raises:
        typer.BadParameter: the text is not such a duration.
    """
    match = _DURATION.match(text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration; write e.g. 90s, 10m or 1h")
    return float(match.group(1)) * _SECONDS_PER_UNIT[match.group(2)]


def _url(option: str, value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is not None and not value.startswith(tuple(f"{s}://" for s in schemes)):
        raise typer.BadParameter(
            f"{value!r}: expected {' or '.join(f'{s}://…' for s in schemes)}", param_hint=option
        )
    return value


@app.command()
def demo(
    host: Annotated[
        str, typer.Option(help="Address the embedded services listen on.")
    ] = "127.0.0.1",
    mqtt_port: Annotated[
        int, typer.Option(help="Port of the embedded MQTT broker; a free one is taken if busy.")
    ] = 1883,
    duration: Annotated[
        str | None,
        typer.Option(help="Stop after this long (e.g. 30s, 10m); default: run until Ctrl-C."),
    ] = None,
    speed: Annotated[
        float,
        typer.Option(
            min=1.0,
            max=3600.0,
            help="Simulated seconds per real second, for meters and agents alike "
            "(--speed 60: an hour a minute).",
        ),
    ] = 1.0,
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo keeps its data (survives a restart).")
    ] = Path("var"),
    api_port: Annotated[
        int, typer.Option(help="Port of the REST API and console; a free one is taken if busy.")
    ] = 8000,
    broker: Annotated[
        str | None,
        typer.Option(help="A real MQTT broker (mqtt://host:1883) instead of the embedded one."),
    ] = None,
    influx: Annotated[
        str | None,
        typer.Option(help="InfluxDB (http://host:8086) instead of the embedded SQLite store."),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            help="Operational database (postgresql://user@host/db) instead of SQLite in DATA_DIR."
        ),
    ] = None,
) -> None:
    """Run the main job on one machine: simulated fleet, agents, broker, cloud stores."""
    from voltstack.demo import DemoOptions, run_demo  # the stack loads only for the demo

    duration_s = parse_duration(duration) if duration is not None else None
    options = DemoOptions(
        host=host,
        mqtt_port=mqtt_port,
        duration_s=duration_s,
        data_dir=data_dir.resolve(),
        speed=speed,
        api_port=api_port,
        broker_url=_url("--broker", broker, ("mqtt",)),
        influx_url=_url("--influx", influx, ("http", "https")),
        database_url=_url("--database", database, ("postgresql", "postgresql+psycopg", "sqlite")),
    )
    run_demo(options, Console())


@app.command()
def version() -> None:
    """Print the voltstack version and which codec build is in use."""
    import fastcodec

    typer.echo(f"voltstack {__version__} (fastcodec: {fastcodec.IMPLEMENTATION})")
