"""`voltstack-cloud`: ingestion workers, API server and administration."""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Annotated, NoReturn

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


# --- db: the operational database's migrations -------------------------------

db_app = typer.Typer(
    help="Migrate the operational database (SQLite or PostgreSQL).",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")

URL_HELP = (
    "SQLAlchemy URL, e.g. sqlite:///var/voltstack.sqlite or postgresql://user@host/db "
    "(default: $VOLTSTACK_DATABASE_URL, else sqlite:///var/voltstack.sqlite)."
)
UrlOption = Annotated[str | None, typer.Option("--url", help=URL_HELP, show_default=False)]


def _fail(error: Exception) -> NoReturn:
    # One line, no traceback: the operator needs the reason, not our stack.
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(
    url: UrlOption = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the schema up to REVISION (default: the newest)."""
    from cloud.core.db import current_revision, upgrade_database
    from cloud.core.exceptions import CloudError

    try:
        upgrade_database(url, revision)
        typer.echo(f"database at revision {current_revision(url)}")
    except CloudError as error:
        _fail(error)


@db_app.command("current")
def db_current(url: UrlOption = None) -> None:
    """Print the database's revision ("none" for an empty database)."""
    from cloud.core.db import current_revision
    from cloud.core.exceptions import CloudError

    try:
        typer.echo(current_revision(url) or "none")
    except CloudError as error:
        _fail(error)


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision; 'base' drops every table.")],
    url: UrlOption = None,
) -> None:
    """Migrate the schema down to REVISION."""
    from cloud.core.db import current_revision, downgrade_database
    from cloud.core.exceptions import CloudError

    try:
        downgrade_database(url, revision)
        typer.echo(f"database at revision {current_revision(url) or 'none'}")
    except CloudError as error:
        _fail(error)
