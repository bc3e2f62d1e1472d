"""`voltstack-agent`: the gateway daemon and the commissioning commands."""

from __future__ import annotations

from importlib.metadata import version as package_version

import typer

app = typer.Typer(
    help="The voltstack gateway agent: reads meters, buffers readings, publishes them over MQTT.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Commands for running and commissioning a gateway."""


@app.command()
def version() -> None:
    """Print the agent version and which codec build is in use."""
    import fastcodec

    typer.echo(
        f"voltstack-agent {package_version('voltstack')} (fastcodec: {fastcodec.IMPLEMENTATION})"
    )
