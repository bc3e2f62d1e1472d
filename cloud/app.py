"""The cloud's FastAPI application: `create_app` wires settings, stores, errors and routers.

Strategy: one factory, no module-level app, so tests and workers build as
many apps as they like with their own settings. What the process shares lives
on ``app.state`` (see `cloud.core.deps`): opened in the lifespan — the
operational database's engine and session factory, the time-series store —
or given by the caller (then the caller closes it). The authorizer is set at
creation: the users module's `UsersAuthorizer` unless one is passed — it
refuses every protected route without a valid session or API token, so the
default is as closed as `DenyAll` and every entry point (``voltstack-cloud
api``, the demo, uvicorn's factory) gets working logins without wiring.
The lifespan also runs the mail outbox's delivery loop when SMTP is
configured (``VOLTSTACK_SMTP_HOST``).

Layout of the HTTP space:

- ``/api/v1/…`` JSON, one router per domain package (`API_ROUTERS`; later
  modules add theirs there), every route guarded by `cloud.core.authz.require`;
- ``/health/live`` (the process answers) and ``/health/ready`` (database,
  time-series store and, when configured, the broker are reachable; 503
  naming the failed ones) — public, for load balancers and orchestrators;
- ``/openapi.json``, ``/docs`` — the OpenAPI document and its viewer;
- ``/console/…`` the back-office console, HTML (`CONSOLE_ROUTERS`, docs/console.md).

Errors everywhere are problem+json (`cloud.core.problems`); each request has
an id (`cloud.core.middleware`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import import_module
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from cloud.core.authz import Authorizer, public
from cloud.core.config import Settings
from cloud.core.db import make_engine, session_factory
from cloud.core.middleware import install_middleware
from cloud.core.problems import (
    PROBLEM_TYPE_PREFIX,
    install_problem_handlers,
    problem_doc,
    problem_response,
)
from cloud.timeseries import InfluxStore, SqliteStore, TimeSeriesStore
from cloud.users.authorizer import UsersAuthorizer
from cloud.users.mail import SmtpSettings, outbox_loop

__all__ = [
    "API_PREFIX",
    "API_ROUTERS",
    "CONSOLE_ROUTERS",
    "create_app",
    "open_store",
    "smtp_settings",
]

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# Modules exporting `router` (an APIRouter) and `TAGS` (OpenAPI tag metadata),
# mounted under API_PREFIX in this order.
API_ROUTERS = (
    "cloud.fleet.router",
    "cloud.metering.router",
    "cloud.events.router",
    "cloud.ingestion.router",
    "cloud.users.router",
)
# Modules exporting `install(app)`: HTML user interfaces (routes, static files,
# error pages for their paths), installed after the API and its error handlers.
CONSOLE_ROUTERS = ("cloud.console.router",)
BROKER_CHECK_TIMEOUT_S = 2.0

HEALTH_TAGS = [
    {
        "name": "health",
        "description": "Liveness and readiness for load balancers and orchestrators (public).",
    }
]


def open_store(settings: Settings) -> TimeSeriesStore:
    """The time-series store the settings name.

    Raises:
        StoreUnavailable: the SQLite file cannot be opened.
    """
    if settings.timeseries_store == "sqlite":
        settings.timeseries_sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteStore(settings.timeseries_sqlite_path)
    password, token = settings.influx_password, settings.influx_token
    return InfluxStore(
        settings.influx_url,
        settings.influx_database,
        username=settings.influx_username,
        password=password.get_secret_value() if password else None,
        token=token.get_secret_value() if token else None,
    )


# --- health ------------------------------------------------------------------


class Liveness(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


def _database_ok(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        logger.warning("readiness: database unreachable: %s", str(error).splitlines()[0])
        return False
    return True


def _broker_ok(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=BROKER_CHECK_TIMEOUT_S):
            return True
    except OSError as error:
        logger.warning("readiness: broker %s:%s unreachable: %s", *address, error)
        return False


def _health_router() -> APIRouter:
    router = APIRouter(prefix="/health", tags=["health"])

    @router.get("/live", summary="Liveness", response_model=Liveness, dependencies=[public()])
    def live() -> Liveness:
        """200 while the process serves requests."""
        return Liveness(status="ok")

    @router.get(
        "/ready",
        summary="Readiness",
        response_model=Readiness,
        dependencies=[public()],
        responses={503: problem_doc("A dependency is unreachable; `checks` names it")},
    )
    def ready(request: Request) -> Any:
        """200 when the database, the time-series store and (if configured) the broker
        are reachable; else 503 with ``checks`` saying which one failed."""
        state = request.app.state
        checks = {
            "database": "ok" if _database_ok(state.engine) else "unreachable",
            "timeseries": "ok" if state.store.ping() else "unreachable",
        }
        address = state.settings.broker_address
        if address is not None:
            checks["broker"] = "ok" if _broker_ok(address) else "unreachable"
        failed = sorted(name for name, result in checks.items() if result != "ok")
        if not failed:
            return Readiness(status="ready", checks=checks)
        response: JSONResponse = problem_response(
            request,
            503,
            detail=f"not ready: {', '.join(failed)} unreachable",
            type_=PROBLEM_TYPE_PREFIX + "not-ready",
            checks=checks,
        )
        return response

    return router


# --- the factory ---------------------------------------------------------------


def smtp_settings(settings: Settings) -> SmtpSettings | None:
    """The outbox's relay from ``VOLTSTACK_SMTP_*``; None when no host is set."""
    if not settings.smtp_host:
        return None
    password = settings.smtp_password
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_sender,
        starttls=settings.smtp_starttls,
        username=settings.smtp_username,
        password=password.get_secret_value() if password else None,
    )


def _start_outbox(
    settings: Settings, sessions: Any, stop: asyncio.Event
) -> asyncio.Task[None] | None:
    smtp = smtp_settings(settings)
    if smtp is None:
        logger.info("no VOLTSTACK_SMTP_HOST: mails wait in the outbox")
        return None
    # Every API process runs one: claims make sure no attempt is sent twice.
    return asyncio.create_task(outbox_loop(factory=sessions, smtp=smtp, stop=stop))


def _lifespan(
    settings: Settings, engine: Engine | None, store: TimeSeriesStore | None
) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = engine is None
        app.state.engine = engine or make_engine(settings.database_url)
        app.state.sessions = session_factory(app.state.engine)
        own_store = store is None
        try:
            app.state.store = store or open_store(settings)
        except BaseException:
            if own_engine:
                app.state.engine.dispose()
            raise
        logger.info(
            "API started: database %s, time series %r",
            app.state.engine.url.render_as_string(hide_password=True),
            app.state.store,
        )
        mail_stop = asyncio.Event()
        mail_task = _start_outbox(settings, app.state.sessions, mail_stop)
        try:
            yield
        finally:
            mail_stop.set()
            if mail_task is not None:
                await mail_task
            if own_store:
                app.state.store.close()
            if own_engine:
                app.state.engine.dispose()

    return lifespan


def create_app(
    settings: Settings | None = None,
    *,
    authorizer: Authorizer | None = None,
    engine: Engine | None = None,
    store: TimeSeriesStore | None = None,
) -> FastAPI:
    """Build the API application.

    Args:
        settings: default `Settings()` from the environment.
        authorizer: decides every protected route; default `UsersAuthorizer`
            (sessions and API tokens; 401 without them).
        engine: an operational database engine to use instead of opening
            ``settings.database_url``; the caller disposes it.
        store: a time-series store to use instead of opening the configured
            one; the caller closes it.

    Returns:
        The app; its lifespan opens (and closes) what was not given.
    """
    settings = settings or Settings()
    tags: list[dict[str, Any]] = []
    modules = [import_module(name) for name in API_ROUTERS]
    for module in modules:
        tags.extend(module.TAGS)
    app = FastAPI(
        title="voltstack cloud API",
        version="1",
        description=(
            "Gateways, meters, readings, ingestion statistics and dead letters of the "
            "voltstack metering stack. Errors are RFC 9457 problem+json; lists are paged "
            "with `limit` and `offset` (see `next_offset`). See docs/api.md."
        ),
        openapi_tags=[*tags, *HEALTH_TAGS],
        lifespan=_lifespan(settings, engine, store),
    )
    app.state.settings = settings
    app.state.authorizer = authorizer or UsersAuthorizer(settings)
    install_problem_handlers(app)
    install_middleware(
        app,
        max_body_bytes=settings.max_request_body_bytes,
        docs_paths=frozenset(path for path in (app.docs_url, app.redoc_url) if path),
    )
    for module in modules:
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(_health_router())
    for name in CONSOLE_ROUTERS:
        import_module(name).install(app)
    return app
