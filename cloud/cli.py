"""`voltstack-cloud`: ingestion workers, API server and administration."""

from __future__ import annotations

from importlib.metadata import version as package_version
from pathlib import Path
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


# --- ingest: the ingestion worker ----------------------------------------------


@app.command("broker-acl")
def broker_acl(
    password_file: Annotated[Path, typer.Option(help="Mosquitto password_file to write.")],
    acl_file: Annotated[Path, typer.Option(help="Mosquitto acl_file to write.")],
    url: UrlOption = None,
    service_user: Annotated[
        list[str] | None,
        typer.Option(help="A cloud service account, USER:PASSWORD_FILE (repeatable)."),
    ] = None,
    reload_pid: Annotated[
        int | None, typer.Option(help="Send SIGHUP to this Mosquitto process to reload.")
    ] = None,
) -> None:
    """Write Mosquitto's password and ACL files for the registered gateways."""
    import os
    import signal

    from sqlalchemy.exc import SQLAlchemyError

    from cloud.core.db import make_engine, session_factory
    from cloud.core.exceptions import CloudError
    from cloud.fleet.broker_acl import ServiceAccount, write_broker_files
    from cloud.fleet.service import hash_broker_password

    services = []
    for entry in service_user or []:
        username, _, secret_file = entry.partition(":")
        try:
            secret = Path(secret_file).read_text().strip()
        except OSError as error:
            _fail(error)
        services.append(ServiceAccount(username, hash_broker_password(secret)))
    try:
        engine = make_engine(url)
        with session_factory(engine)() as session:
            count = write_broker_files(
                session=session, password_file=password_file, acl_file=acl_file, services=services
            )
        engine.dispose()
    except (CloudError, SQLAlchemyError, OSError) as error:
        _fail(error)
    typer.echo(f"wrote {password_file} and {acl_file}: {count} gateways, {len(services)} services")
    if reload_pid is not None:
        try:
            os.kill(reload_pid, signal.SIGHUP)
        except OSError as error:
            _fail(error)
        typer.echo(f"asked Mosquitto (pid {reload_pid}) to reload")


@app.command()
def ingest(
    broker: Annotated[
        str, typer.Option(help="The MQTT broker: mqtt://host:1883 or mqtts://host:8883.")
    ],
    store: Annotated[
        str,
        typer.Option(
            help="Time-series store: sqlite:///path/to/file.sqlite or http(s)://influx-host:8086."
        ),
    ],
    database: Annotated[str | None, typer.Option(help=URL_HELP, show_default=False)] = None,
    username: Annotated[str | None, typer.Option(help="Broker username.")] = None,
    password_file: Annotated[
        str | None, typer.Option(help="File holding the broker password.")
    ] = None,
    influx_db: Annotated[str, typer.Option(help="InfluxDB database.")] = "voltstack",
    influx_username: Annotated[str | None, typer.Option(help="InfluxDB 1.x user.")] = None,
    influx_password_file: Annotated[
        str | None, typer.Option(help="File holding the InfluxDB 1.x password.")
    ] = None,
    share_group: Annotated[
        str, typer.Option(help="MQTT 5 shared subscription group; '' subscribes plainly.")
    ] = "ingest",
    client_id: Annotated[
        str | None,
        typer.Option(
            help="Stable per worker: the broker keeps its session under it.", show_default=False
        ),
    ] = None,
    mqtt_version: Annotated[int, typer.Option(help="5, or 311 for an MQTT 3.1.1 broker.")] = 5,
    ca_file: Annotated[str | None, typer.Option(help="CA to verify an mqtts:// broker.")] = None,
    metrics_port: Annotated[
        int, typer.Option(help="/metrics and /ready on 127.0.0.1 (-1: off, 0: any port).")
    ] = 9620,
    max_ahead_hours: Annotated[
        float,
        typer.Option(
            help="Drop readings stamped further ahead of this worker's clock "
            "(a time-compressed demo runs ahead on purpose)."
        ),
    ] = 24.0,
    max_group_messages: Annotated[
        int,
        typer.Option(
            min=1,
            help="Readings messages already waiting that share one store write and "
            "one commit (1: one write per message).",
        ),
    ] = 16,
) -> None:
    """Run an ingestion worker until SIGTERM/SIGINT (docs/ingestion.md)."""
    import logging
    import signal
    import socket
    import threading
    from datetime import timedelta
    from urllib.parse import urlsplit

    from cloud.core.db import make_engine, session_factory
    from cloud.core.exceptions import CloudError
    from cloud.ingestion.validation import ValidationRules
    from cloud.ingestion.worker import IngestionWorker, WorkerConfig
    from cloud.timeseries import InfluxStore, SqliteStore

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    def secret(path: str | None) -> str | None:
        if path is None:
            return None
        try:
            return Path(path).read_text().strip()
        except OSError as error:
            _fail(error)

    url = urlsplit(broker)
    if url.scheme not in {"mqtt", "mqtts"} or not url.hostname:
        _fail(ValueError(f"--broker: mqtt://host:port or mqtts://host:port expected, got {broker}"))
    if mqtt_version not in (5, 311):
        _fail(ValueError("--mqtt-version: 5 or 311"))
    if not 0 < max_ahead_hours <= 24 * 366 * 100:
        _fail(ValueError("--max-ahead-hours: more than 0, at most a century"))
    try:
        if store.startswith("sqlite:///"):
            series = SqliteStore(store.removeprefix("sqlite:///"))
        elif store.startswith(("http://", "https://")):
            series = InfluxStore(
                store,
                influx_db,
                username=influx_username,
                password=secret(influx_password_file),
            )
        else:
            _fail(ValueError(f"--store: sqlite:///path or http(s)://host:port, got {store}"))
        engine = make_engine(database)
    except CloudError as error:
        _fail(error)
    config = WorkerConfig(
        host=url.hostname,
        port=url.port or (8883 if url.scheme == "mqtts" else 1883),
        username=username,
        password=secret(password_file),
        client_id=client_id or f"voltstack-ingest-{socket.gethostname()}",
        share_group=share_group or None,
        mqtt_version=mqtt_version,
        tls=url.scheme == "mqtts",
        ca_file=ca_file,
        metrics_port=None if metrics_port < 0 else metrics_port,
        rules=ValidationRules(max_ahead=timedelta(hours=max_ahead_hours)),
        max_group_messages=max_group_messages,
    )
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    worker = IngestionWorker(config, store=series, sessions=session_factory(engine))
    worker.start()
    if worker.metrics_address:
        typer.echo("metrics on http://{}:{}/metrics".format(*worker.metrics_address))
    try:
        done.wait()
    finally:
        worker.stop()
        series.close()
        engine.dispose()


# --- create-user: the first admin, without a console to invite it ------------------


@app.command("create-user")
def create_user(
    email: Annotated[str, typer.Argument(help="The user's email address (the login).")],
    role: Annotated[str, typer.Option(help="admin, operator, billing, support, …")] = "admin",
    name: Annotated[str, typer.Option(help="Display name.")] = "Administrator",
    database: Annotated[str | None, typer.Option(help=URL_HELP, show_default=False)] = None,
) -> None:
    """Create an active user with a password typed at the prompt (or piped on stdin).

    How the first admin of a new install gets in; everyone else is invited
    from the console or the API (docs/users.md).
    """
    import sys

    from cloud.core.db import make_engine, session_factory, unit_of_work
    from cloud.core.exceptions import CloudError
    from cloud.users import service

    if sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    engine = make_engine(database)
    try:
        with unit_of_work(session_factory(engine)) as session:
            user = service.create_user(
                session=session,
                email=email,
                display_name=name,
                role=role,
                password=password,
                actor=service.Actor.system(),
            )
            typer.echo(f"created user {user.id} {user.email} ({user.role})")
    except CloudError as error:
        _fail(error)
    finally:
        engine.dispose()


# --- api: the REST API server ----------------------------------------------------


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    database: Annotated[str | None, typer.Option(help=URL_HELP, show_default=False)] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Time-series store: sqlite:///path/to/file.sqlite or http(s)://influx-host:8086 "
            "(default: $VOLTSTACK_TIMESERIES_STORE and friends, else the SQLite file).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Serve the REST API with uvicorn (settings from VOLTSTACK_* variables; docs/api.md)."""
    import logging
    import os

    import uvicorn
    from pydantic import ValidationError

    from cloud.core.config import Settings
    from cloud.core.middleware import RequestIdLogFilter

    overrides: dict[str, str] = {}
    if database is not None:
        overrides["VOLTSTACK_DATABASE_URL"] = database
    if store is not None and store.startswith("sqlite:///"):
        overrides["VOLTSTACK_TIMESERIES_STORE"] = "sqlite"
        overrides["VOLTSTACK_TIMESERIES_SQLITE_PATH"] = store.removeprefix("sqlite:///")
    elif store is not None and store.startswith(("http://", "https://")):
        overrides["VOLTSTACK_TIMESERIES_STORE"] = "influx"
        overrides["VOLTSTACK_INFLUX_URL"] = store
    elif store is not None:
        _fail(ValueError(f"--store: sqlite:///path or http(s)://host:port, got {store}"))
    # Through the environment, so that every uvicorn worker process reads the same settings.
    os.environ.update(overrides)
    try:
        Settings()
    except ValidationError as error:
        # The messages only: pydantic's text would echo the input, secrets included.
        reasons = "; ".join(
            f"{'.'.join(map(str, item['loc'])) or 'settings'}: {item['msg']}"
            for item in error.errors()
        )
        _fail(ValueError(reasons))
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
    )
    logging.basicConfig(level=log_level.upper(), handlers=[handler])
    uvicorn.run(
        "cloud.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,  # cloud.access logs one line per request, with its id
    )
