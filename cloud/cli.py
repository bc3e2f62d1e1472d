"""`voltstack-cloud`: ingestion workers, API server and administration."""

from __future__ import annotations

from importlib.metadata import version as package_version

import typer

app = typer.Typer(
    help="The voltstack cloud: ingestion workers, API and console, administration.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Commands for running and administering the cloud side."""


@app.command()
def version() -> None:
    """Print the cloud version."""
    typer.echo(f"voltstack-cloud {package_version('voltstack')}")
