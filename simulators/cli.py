"""`voltstack-sim`: start simulated meters and fleets."""

from __future__ import annotations

from importlib.metadata import version as package_version

import typer

app = typer.Typer(
    help="Simulated Modbus and DLMS meters on virtual buses, optical ports and TCP.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Commands for simulated meters and fleets."""


@app.command()
def version() -> None:
    """Print the simulator version."""
    typer.echo(f"voltstack-sim {package_version('voltstack')}")
