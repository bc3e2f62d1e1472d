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
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo keeps its data (survives a restart).")
    ] = Path("var"),
) -> None:
    """Run the main job on embedded defaults: nothing to install or configure."""
    from voltstack.demo import run_demo  # the broker stack loads only for the demo

    duration_s = parse_duration(duration) if duration is not None else None
    run_demo(
        host=host, mqtt_port=mqtt_port, duration_s=duration_s, data_dir=data_dir, console=Console()
    )


@app.command()
def version() -> None:
    """Print the voltstack version and which codec build is in use."""
    import fastcodec

    typer.echo(f"voltstack {__version__} (fastcodec: {fastcodec.IMPLEMENTATION})")
