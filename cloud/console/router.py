"""The back-office console: server-rendered pages (Jinja2 + htmx) under ``/console``.

Strategy: every page is an ordinary route guarded by the one authorization
dependency (`cloud.core.authz.require`) with the permission the page needs,
so the route × role test covers the console like the API. Pages read through
`cloud.console.read_models`; forms change data through the users service in
one unit of work each. Work that blocks (argon2 on login, the stores) runs
in the thread pool, never on the event loop.

- Login and logout live here: the login form checks the password with
  `cloud.users.service.authenticate`, opens a session with `start_session`
  and sets the `vs_session` cookie; the authorizer reads that cookie on
  every later request. The cookie and CSRF contract is in
  `cloud.console.security` and docs/console.md.
- Live values: ``GET /console/meters/{serial}/live`` is a Server-Sent Events
  stream that polls `store.latest()` every `LIVE_POLL_INTERVAL_S` and sends
  only what changed. It keeps no state outside the open request, so any API
  process can serve it (docs/console.md says why SSE and polling).
- My account (``/console/account``): the caller's profile, password and
  sessions, all under ``sessions:self`` (every role holds it). A wrong
  current password becomes a 422 on the page, never the 401 that would
  redirect to the login page.
- Dead letters (``/console/dead-letters``): a paged list and one letter's
  page with its payload made readable (`cloud.console._payload`: hostile
  bytes become escaped text, indented JSON or a hex dump, bounded). The
  resolve form calls the service the REST API calls too
  (`cloud.fleet.dead_letter_resolution.resolve_and_audit`), which records
  who and the note in the audit log in the same transaction; here the note
  is required and a letter resolved first by someone else is a 409.
- Errors on console paths are pages, not problem+json (`install`): a 401
  redirects to the login page, a 403 is a "not allowed" page with status
  403, a 404 a "not found" page.

The routes are left out of the OpenAPI document: they answer HTML.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from argon2 import PasswordHasher
from fastapi import APIRouter, FastAPI, Form, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.console import read_models
from cloud.console.exceptions import CsrfRejected, DeadLetterAlreadyResolved
from cloud.console.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    LOGIN_NONCE_COOKIE,
    SESSION_COOKIE,
    check_csrf,
    check_login_csrf,
    clear_session_cookie,
    csrf_token_for,
    login_csrf_token,
    new_login_nonce,
    set_login_nonce,
    set_session_cookie,
)
from cloud.core.authz import Principal, public, require
from cloud.core.config import Settings
from cloud.core.db import unit_of_work, utc_now
from cloud.core.deps import DbSession, Sessions, SettingsDep, Store
from cloud.core.exceptions import CloudError, Forbidden, InvalidInput, Unauthenticated
from cloud.core.problems import request_id_of, status_of
from cloud.fleet import dead_letter_resolution
from cloud.fleet import queries as fleet_queries
from cloud.ingestion.models import DeadLetter
from cloud.timeseries import StoreUnavailable
from cloud.timeseries.store import TimeSeriesStore
from cloud.users import passwords, policies
from cloud.users import service as users_service
from cloud.users.authorizer import DEFAULT_CONFIG, UsersConfig
from cloud.users.exceptions import AuthenticationFailed, InvalidCredentials, InvalidSession
from cloud.users.router import INVITE_PAGE
from cloud.users.visibility import MeterWindow, meter_window

__all__ = ["CONSOLE_PREFIX", "LIVE_POLL_INTERVAL_S", "install", "router"]

logger = logging.getLogger(__name__)

CONSOLE_PREFIX = "/console"
STATIC_PATH = CONSOLE_PREFIX + "/static"
LIVE_POLL_INTERVAL_S = 2.0
# A long-lived stream asks the authorizer again this often, so a revoked or
# expired session stops receiving values.
LIVE_REAUTHORIZE_S = 30.0
LIVE_KEEPALIVE_S = 15.0
TOKEN_MAX_DAYS = 365

_HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=_HERE / "templates")
router = APIRouter(prefix=CONSOLE_PREFIX, include_in_schema=False)

# The navigation: (label, path, permission a role needs on every object).
NAVIGATION = (
    ("Dashboard", "/", "console:view"),
    ("Meters", "/meters", "fleet:read"),
    ("Dead letters", "/dead-letters", "deadletters:read"),
    ("Users", "/users", "users:read"),
    ("Audit log", "/audit", "audit:read"),
    ("API tokens", "/account/tokens", "tokens:self"),
    ("My account", "/account", "sessions:self"),
)


# --- rendering --------------------------------------------------------------------


def _format_time(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["when"] = _format_time
templates.env.filters["num"] = read_models.format_value


def _may(principal: Principal | None, permission: str) -> bool:
    """True if the principal holds `permission` on every object (not only its own)."""
    if principal is None:
        return False
    if principal.scopes is not None and permission not in principal.scopes:
        return False
    return policies.grant_of(principal.roles, permission) is policies.Grant.ALL


def _may_on_own(principal: Principal, permission: str) -> bool:
    """True if the principal holds `permission` at all (on every object or its own):
    for a page whose route already checked that its object is the caller's."""
    if principal.scopes is not None and permission not in principal.scopes:
        return False
    return policies.grant_of(principal.roles, permission) is not None


def _url(request: Request, path: str) -> str:
    return str(request.scope.get("root_path", "")) + CONSOLE_PREFIX + path


def _render(
    request: Request,
    name: str,
    principal: Principal | None,
    settings: Settings,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    session_token = request.cookies.get(SESSION_COOKIE)
    csrf = csrf_token_for(settings, session_token) if session_token else ""
    navigation = [
        (label, _url(request, path))
        for label, path, permission in NAVIGATION
        if _may(principal, permission)
    ]
    response = templates.TemplateResponse(
        request,
        name,
        {
            "principal": principal,
            "role": next(iter(sorted(principal.roles)), "") if principal else "",
            "navigation": navigation,
            "current_path": request.url.path,
            "csrf_token": csrf,
            "csrf_field": CSRF_FIELD,
            "csrf_header_json": json.dumps({CSRF_HEADER: csrf}) if csrf else "",
            "url": lambda path: _url(request, path),
            "static": lambda path: str(request.scope.get("root_path", "")) + STATIC_PATH + path,
            "may": lambda permission: _may(principal, permission),
            "request_id": request_id_of(request),
            **context,
        },
        status_code=status_code,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


_actor = users_service.Actor.of_request  # who acts, for the audit log


def _is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: never an open redirect to another site."""
    if not target:
        return CONSOLE_PREFIX + "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(CONSOLE_PREFIX):
        return CONSOLE_PREFIX + "/"
    if parts.path.startswith(CONSOLE_PREFIX + "/login") or "\\" in target:
        return CONSOLE_PREFIX + "/"
    return target


def _see_other(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


# --- login and logout ---------------------------------------------------------------


def _login_page(
    request: Request,
    settings: Settings,
    *,
    next_path: str,
    email: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    nonce = request.cookies.get(LOGIN_NONCE_COOKIE) or new_login_nonce()
    response = _render(
        request,
        "login.html",
        None,
        settings,
        status_code,
        login_csrf=login_csrf_token(settings, nonce),
        next_path=next_path,
        email=email,
        error=error,
    )
    set_login_nonce(response, request, settings, nonce)
    return response


@router.get("/login", dependencies=[public()])
def login_page(
    request: Request, settings: SettingsDep, next: Annotated[str | None, Query()] = None
) -> HTMLResponse:
    return _login_page(request, settings, next_path=_safe_next(next))


def _log_in(
    sessions: sessionmaker[Session], email: str, password: str, request: Request
) -> tuple[str | None, AuthenticationFailed | None]:
    ip = request.client.host if request.client else None
    with unit_of_work(sessions) as session:
        attempt = users_service.authenticate(
            session=session,
            email=email,
            password=password,
            ip=ip,
            request_id=request_id_of(request),
        )
        if attempt.user is None:
            # Commit anyway: the failed-login count and a lockout must stick.
            return None, attempt.error
        _, token = users_service.start_session(
            session=session,
            user=attempt.user,
            ip=ip,
            user_agent=request.headers.get("user-agent"),
            request_id=request_id_of(request),
        )
    return token, None


@router.post("/login", dependencies=[public()])
async def log_in(
    request: Request,
    settings: SettingsDep,
    sessions: Sessions,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=4096)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    next_path = _safe_next(next)
    try:
        await check_login_csrf(request, settings)
    except CsrfRejected as error:
        return _login_page(
            request, settings, next_path=next_path, email=email, error=str(error), status_code=403
        )
    if not email.strip() or not password:
        return _login_page(
            request,
            settings,
            next_path=next_path,
            email=email,
            error="Enter your email address and your password.",
            status_code=422,
        )
    token, failure = await run_in_threadpool(_log_in, sessions, email, password, request)
    if token is None:
        return _login_page(
            request,
            settings,
            next_path=next_path,
            email=email,
            error=str(failure) if failure else "Login refused.",
            status_code=401,
        )
    response = _see_other(next_path)
    set_session_cookie(response, request, settings, token)
    response.delete_cookie(LOGIN_NONCE_COOKIE, path=CONSOLE_PREFIX + "/")
    return response


def _end_session(sessions: sessionmaker[Session], token: str, actor: users_service.Actor) -> None:
    with unit_of_work(sessions) as session:
        try:
            current = users_service.get_session_principal(session=session, token=token)
        except InvalidSession:
            return  # already over: nothing to revoke
        users_service.revoke_session(
            session=session,
            session_id=current.credential_id,
            actor=actor,
            owner_id=current.user_id,
        )


@router.post("/logout")
async def log_out(
    request: Request,
    settings: SettingsDep,
    sessions: Sessions,
    principal: Annotated[Principal, require("console:view")],
) -> Response:
    await check_csrf(request, settings)
    token = request.cookies.get(SESSION_COOKIE, "")
    await run_in_threadpool(_end_session, sessions, token, _actor(request, principal))
    response = _see_other(CONSOLE_PREFIX + "/login")
    clear_session_cookie(response, request, settings)
    return response


# --- one-time links: accepting an invitation, resetting a password ------------------------
#
# Both pages are public (the link's token is the proof), CSRF-protected with
# the login nonce like the login form, and answer a refused token or a weak
# password with the form again and a 4xx that says why.


@dataclass(frozen=True)
class PasswordLink:
    """One of the two one-time-link pages (password_link.html)."""

    path: str
    title: str
    hint: str
    button: str


INVITE_LINK = PasswordLink(
    "/accept-invite",
    "Choose your password",
    "At least 12 characters; a long phrase is easiest to remember.",
    "Set password",
)
RESET_LINK = PasswordLink(
    "/reset-password",
    "Choose a new password",
    "At least 12 characters; a long phrase is easiest to remember. "
    "Setting it logs you out everywhere.",
    "Set the new password",
)


def _password_link_page(
    request: Request,
    settings: Settings,
    link: PasswordLink,
    token: str,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    nonce = request.cookies.get(LOGIN_NONCE_COOKIE) or new_login_nonce()
    response = _render(
        request,
        "password_link.html",
        None,
        settings,
        status_code,
        link=link,
        token=token,
        login_csrf=login_csrf_token(settings, nonce),
        error=error,
    )
    # Scoped to this page: the login page's nonce cookie never reaches it.
    set_login_nonce(response, request, settings, nonce, path=CONSOLE_PREFIX + link.path)
    return response


async def _password_link_submit(
    request: Request,
    settings: Settings,
    sessions: sessionmaker[Session],
    link: PasswordLink,
    token: str,
    password: str,
    password_again: str,
    use_token: Callable[[Session, str, str | None], object],
) -> Response:
    await check_login_csrf(request, settings)
    if password != password_again:
        return _password_link_page(request, settings, link, token, "The two passwords differ.", 422)

    def work() -> None:
        with unit_of_work(sessions) as session:
            use_token(
                session, request.client.host if request.client else None, request_id_of(request)
            )

    try:
        await run_in_threadpool(work)
    except CloudError as error:
        if status_of(error) >= 500:
            raise
        return _password_link_page(request, settings, link, token, str(error), status_of(error))
    return _see_other(CONSOLE_PREFIX + "/login")


@router.get(INVITE_LINK.path, dependencies=[public()])
def accept_invite_page(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str, Query(max_length=128)] = "",
) -> HTMLResponse:
    return _password_link_page(request, settings, INVITE_LINK, token)


@router.post(INVITE_LINK.path, dependencies=[public()])
async def accept_invite(
    request: Request,
    settings: SettingsDep,
    sessions: Sessions,
    token: Annotated[str, Form(max_length=128)] = "",
    password: Annotated[str, Form(max_length=4096)] = "",
    password_again: Annotated[str, Form(max_length=4096)] = "",
) -> Response:
    def accept(session: Session, ip: str | None, request_id: str | None) -> object:
        return users_service.accept_invite(
            session=session, token=token, password=password, ip=ip, request_id=request_id
        )

    return await _password_link_submit(
        request, settings, sessions, INVITE_LINK, token, password, password_again, accept
    )


@router.get(RESET_LINK.path, dependencies=[public()])
def reset_password_page(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str, Query(max_length=128)] = "",
) -> HTMLResponse:
    return _password_link_page(request, settings, RESET_LINK, token)


@router.post(RESET_LINK.path, dependencies=[public()])
async def reset_password(
    request: Request,
    settings: SettingsDep,
    sessions: Sessions,
    token: Annotated[str, Form(max_length=128)] = "",
    password: Annotated[str, Form(max_length=4096)] = "",
    password_again: Annotated[str, Form(max_length=4096)] = "",
) -> Response:
    def reset(session: Session, ip: str | None, request_id: str | None) -> object:
        return users_service.reset_password(
            session=session, token=token, new_password=password, ip=ip, request_id=request_id
        )

    return await _password_link_submit(
        request, settings, sessions, RESET_LINK, token, password, password_again, reset
    )


# --- dashboard, gateways, meters -----------------------------------------------------------


def _dashboard_cache(request: Request) -> read_models.DashboardCache:
    state = request.app.state
    if not hasattr(state, "console_dashboard_cache"):
        state.console_dashboard_cache = read_models.DashboardCache()
    cache: read_models.DashboardCache = state.console_dashboard_cache
    return cache


@router.get("/")
def dashboard(
    request: Request,
    settings: SettingsDep,
    session: DbSession,
    store: Store,
    principal: Annotated[Principal, require("console:view")],
) -> HTMLResponse:
    if _may(principal, "fleet:read"):
        view = _dashboard_cache(request).get(
            session=session,
            store=store,
            now=utc_now(),
            include_dead_letters=_may(principal, "deadletters:read"),
            include_events=_may(principal, "events:read"),
        )
        return _render(
            request,
            "dashboard.html",
            principal,
            settings,
            dashboard=view,
            reporting_minutes=int(read_models.REPORTING_INTERVAL.total_seconds() // 60),
            show_ingestion=_may(principal, "ingestion:read"),
        )
    meters = (
        read_models.customer_dashboard(session=session, store=store, user_id=principal.user_id)
        if principal.user_id is not None
        else read_models.CustomerDashboard(meters=())
    )
    return _render(request, "customer_dashboard.html", principal, settings, dashboard=meters)


GatewayId = Annotated[str, PathParam(min_length=1, max_length=64)]
Serial = Annotated[str, PathParam(min_length=1, max_length=64)]


@router.get("/gateways/{gateway_id}")
def gateway(
    request: Request,
    gateway_id: GatewayId,
    settings: SettingsDep,
    session: DbSession,
    store: Store,
    principal: Annotated[Principal, require("fleet:read")],
) -> HTMLResponse:
    view = read_models.gateway_page(
        session=session,
        store=store,
        gateway_id=gateway_id,
        include_events=_may(principal, "events:read"),
    )
    return _render(request, "gateway.html", principal, settings, page=view)


@router.get("/meters")
def meters(
    request: Request,
    settings: SettingsDep,
    session: DbSession,
    principal: Annotated[Principal, require("fleet:read")],
) -> HTMLResponse:
    rows = fleet_queries.list_meters(session=session, limit=read_models.MAX_LISTED)
    return _render(
        request, "meters.html", principal, settings, meters=rows, limit=read_models.MAX_LISTED
    )


@router.get("/meters/{serial}")
def meter(
    request: Request,
    serial: Serial,
    settings: SettingsDep,
    session: DbSession,
    store: Store,
    principal: Annotated[Principal, require("readings:read")],
) -> HTMLResponse:
    # The route checked the serial is the caller's (readings:read); events:read
    # follows the same ownership rule, so any grant of it shows this meter's —
    # and, for a customer, only from while the meter was linked to it.
    view = read_models.meter_page(
        session=session,
        store=store,
        serial=serial,
        include_events=_may_on_own(principal, "events:read"),
        window=meter_window(
            session=session, principal=principal, permission="readings:read", serial=serial
        ),
    )
    quantities = [
        (
            value.obis,
            value.name or value.obis,
            value.unit or "",
            read_models.chart_aggregate(value.obis),
        )
        for value in view.values
    ]
    return _render(
        request,
        "meter.html",
        principal,
        settings,
        page=view,
        quantities=quantities,
        live_src=_url(request, f"/meters/{quote(serial, safe='')}/live?after={view.newest_at_ms}"),
        readings_api=str(request.scope.get("root_path", ""))
        + f"/api/v1/meters/{quote(serial, safe='')}/readings/",
        show_fleet=_may(principal, "fleet:read"),
    )


def _sse(event: str, data: Any, event_id: int | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.insert(0, f"id: {event_id}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'))}")
    return "\n".join(lines) + "\n\n"


async def _live_events(
    request: Request,
    store: TimeSeriesStore,
    serial: str,
    after_ms: int,
    still_allowed: Callable[[], Awaitable[bool]],
    window: MeterWindow,
) -> AsyncIterator[str]:
    """Changes of a meter's newest values, as SSE, until the client goes or loses access.

    The first poll sends what is newer than `after_ms` (what the page or the
    last event already showed); later polls send what changed since the one
    before. The event id is the newest reading's time in ms, so a browser
    that reconnects (``Last-Event-ID``) gets only what it missed.
    """
    yield f"retry: {int(LIVE_POLL_INTERVAL_S * 2500)}\n\n"
    previous: dict[str, read_models.LiveValue] | None = None
    last_sent = last_check = time.monotonic()
    while not await request.is_disconnected():
        try:
            points = await run_in_threadpool(store.latest, serial)
            values = read_models.live_values(p for p in points if window.allows(p.at))
        except StoreUnavailable as error:
            logger.warning("live values of %s: store unavailable: %s", serial, error)
            values = None
        if values is not None:
            if previous is None:
                changed = [value for value in values if value.at_ms > after_ms]
            else:
                changed = read_models.changed_values(previous, values)
            previous = {value.obis: value for value in values}
            if changed:
                newest = max(value.at_ms for value in values)
                yield _sse("values", [value.as_event() for value in changed], newest)
                last_sent = time.monotonic()
        now = time.monotonic()
        if now - last_sent >= LIVE_KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = now
        if now - last_check >= LIVE_REAUTHORIZE_S:
            last_check = now
            if not await still_allowed():
                yield _sse("end", "your session ended: reload the page to log in again")
                return
        await asyncio.sleep(LIVE_POLL_INTERVAL_S)


@router.get("/meters/{serial}/live")
def live_values(
    request: Request,
    serial: Serial,
    sessions: Sessions,
    store: Store,
    principal: Annotated[Principal, require("readings:read")],
    after: Annotated[int, Query(ge=0)] = 0,
) -> StreamingResponse:
    """Server-Sent Events: ``values`` events with the quantities that changed."""
    with sessions() as session:
        fleet_queries.installations(session=session, serial=serial)  # 404 for a typo
        # Values from before the meter was the customer's are never streamed.
        window = meter_window(
            session=session, principal=principal, permission="readings:read", serial=serial
        )
    last_event_id = request.headers.get("last-event-id", "")
    after_ms = int(last_event_id) if last_event_id.isdigit() else after

    async def still_allowed() -> bool:
        # The stream outlives the request's authorization: ask again, so a
        # revoked session or a customer who moved out stops receiving values.
        authorizer = request.app.state.authorizer
        try:
            await run_in_threadpool(
                authorizer.authorize, request, "readings:read", {"serial": serial}
            )
        except CloudError:
            return False
        return True

    return StreamingResponse(
        _live_events(request, store, serial, after_ms, still_allowed, window),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# --- users administration --------------------------------------------------------------------


def _users_page(
    request: Request,
    principal: Principal,
    settings: Settings,
    session: Session,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return _render(
        request,
        "users.html",
        principal,
        settings,
        status_code,
        users=read_models.users(session=session),
        roles=policies.ROLES,
        notice=notice,
        error=error,
    )


@router.get("/users")
def users(
    request: Request,
    settings: SettingsDep,
    session: DbSession,
    principal: Annotated[Principal, require("users:read")],
) -> HTMLResponse:
    return _users_page(request, principal, settings, session)


async def _change(
    request: Request,
    settings: Settings,
    sessions: sessionmaker[Session],
    work: Callable[[Session], str],
) -> tuple[str | None, str | None, int]:
    """Run a change in one unit of work; (notice, error, status) for the page.

    Domain refusals (4xx) become a message on the page; server failures
    propagate to the error page.
    """
    await check_csrf(request, settings)

    def run() -> str:
        with unit_of_work(sessions) as session:
            return work(session)

    try:
        return await run_in_threadpool(run), None, 200
    except CloudError as error:
        if status_of(error) >= 500 or isinstance(error, Unauthenticated | Forbidden):
            raise
        return None, str(error), status_of(error)


async def _users_change(
    request: Request,
    settings: Settings,
    sessions: sessionmaker[Session],
    principal: Principal,
    work: Callable[[Session], str],
) -> HTMLResponse:
    notice, error, status_code = await _change(request, settings, sessions, work)
    with sessions() as session:
        return _users_page(
            request,
            principal,
            settings,
            session,
            notice=notice,
            error=error,
            status_code=status_code,
        )


@router.post("/users/invite")
async def invite_user(
    request: Request,
    settings: SettingsDep,
    sessions: Sessions,
    principal: Annotated[Principal, require("users:admin")],
    email: Annotated[str, Form(max_length=320)] = "",
    display_name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=32)] = "",
) -> HTMLResponse:
    # The public URL, never the request's Host header: a forged Host would
    # have the mail carry a link to the forger's site (a phishing link).
    link = settings.public_url + INVITE_PAGE

    def work(session: Session) -> str:
        user, _ = users_service.invite_user(
            session=session,
            email=email,
            display_name=display_name,
            role=role,
            actor=_actor(request, principal),
            link_template=link,
        )
        return f"Invited {user.email} as {user.role}: the invitation is in the mail outbox."

    return await _users_change(request, settings, sessions, principal, work)


UserId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


@router.post("/users/{user_id}/role")
async def set_role(
    request: Request,
    user_id: UserId,
    settings: SettingsDep,
    sessions: Sessions,
    principal: Annotated[Principal, require("users:admin")],
    role: Annotated[str, Form(max_length=32)] = "",
) -> HTMLResponse:
    def work(session: Session) -> str:
        user = users_service.set_role(
            session=session, user_id=user_id, role=role, actor=_actor(request, principal)
        )
        return f"{user.email} is now {user.role}."

    return await _users_change(request, settings, sessions, principal, work)


@router.post("/users/{user_id}/disable")
async def disable_user(
    request: Request,
    user_id: UserId,
    settings: SettingsDep,
    sessions: Sessions,
    principal: Annotated[Principal, require("users:admin")],
) -> HTMLResponse:
    def work(session: Session) -> str:
        user = users_service.disable_user(
            session=session, user_id=user_id, actor=_actor(request, principal)
        )
        return f"{user.email} is disabled; its sessions and API tokens are revoked."

    return await _users_change(request, settings, sessions, principal, work)


@router.post("/users/{user_id}/enable")
async def enable_user(
    request: Request,
    user_id: UserId,
    settings: SettingsDep,
    sessions: Sessions,
    principal: Annotated[Principal, require("users:admin")],
) -> HTMLResponse:
    def work(session: Session) -> str:
        user = users_service.enable_user(
            session=session, user_id=user_id, actor=_actor(request, principal)
        )
        return f"{user.email} is {user.state} again."

    return await _users_change(request, settings, sessions, principal, work)


# --- own sessions and API tokens --------------------------------------------------------------


def _current_session_id(session: Session, request: Request) -> int | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return users_service.get_session_principal(session=session, token=token).credential_id
    except InvalidSession:
        return None


def _account_page(
    request: Request,
    principal: Principal,
    settings: Settings,
    session: Session,
    *,
    section: str = "sessions",
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
    display_name: str | None = None,
) -> HTMLResponse:
    """The caller's account: profile, password, sessions.

    `section` names the form the notice or error belongs to (``profile``,
    ``password`` or ``sessions``), so the message shows next to that form;
    `display_name` keeps what was typed when the profile form was refused.
    """
    owner = _own_user_id(principal)
    user = read_models.own_profile(session=session, user_id=owner)
    return _render(
        request,
        "account.html",
        principal,
        settings,
        status_code,
        user=user,
        display_name=user.display_name if display_name is None else display_name,
        sessions=read_models.own_sessions(session=session, user_id=owner),
        current_session_id=_current_session_id(session, request),
        password_min_length=passwords.MIN_LENGTH,
        section=section,
        notice=notice,
        error=error,
    )


def _own_user_id(principal: Principal) -> int:
    if principal.user_id is None:
        raise Forbidden("this page is for signed-in users")
    return principal.user_id


@router.get("/account")
def account(
    request: Request,
    settings: SettingsDep,
    session: DbSession,
    principal: Annotated[Principal, require("sessions:self")],
) -> HTMLResponse:
    return _account_page(request, principal, settings, session)


async def _account_change(
    request: Request,
    settings: Settings,
    sessions: sessionmaker[Session],
    principal: Principal,
    section: str,
    work: Callable[[Session], str],
    display_name: str | None = None,
) -> HTMLResponse:
    notice, error, status_code = await _change(request, settings, sessions, work)
    with sessions() as session:
        return _account_page(
            request,
            principal,
            settings,
            session,
            section=section,
            notice=notice,
            error=error,
            status_code=status_code,
            # A refused name stays in the field to be corrected; an accepted one is read back.
            display_name=display_name if error else None,
        )


@router.post("/account/profile")
async def update_profile(
    request: Request,
    settings: SettingsDep,
    sessions: Sessions,
    principal: Annotated[Principal, require("sessions:self")],
    display_name: Annotated[str, Form(max_length=1000)] = "",
) -> HTMLResponse:
    owner = _own_user_id(principal)

    def work(session: Session) -> str:
        user = users_service.update_profile(
            session=session,
            user_id=owner,
            display_name=display_name,
            actor=_actor(request, principal),
        )
        return f"Your name is now “{user.display_name}”."

    return await _account_change(
        request, settings, sessions, principal, "profile", work, display_name=display_name
    )


def _password_hasher(request: Request) -> PasswordHasher:
    """The argon2 parameters the authorizer was configured with (the API uses the same)."""
    config = getattr(request.app.state.authorizer, "config", None)
    return (config if isinstance(config, UsersConfig) else DEFAULT_CONFIG).hasher


@router.post("/account/password")
async def change_password(
    request: Request,
    settings: SettingsDep,
    sessions: Sessions,
    principal: Annotated[Principal, require("sessions:self")],
    current_password: Annotated[str, Form(max_length=4096)] = "",
    new_password: Annotated[str, Form(max_length=4096)] = "",
    new_password_again: Annotated[str, Form(max_length=4096)] = "",
) -> HTMLResponse:
    owner = _own_user_id(principal)
    hasher = _password_hasher(request)

    def work(session: Session) -> str:
        # Checked inside the change, after the CSRF check, so that a forged
        # post learns nothing about the form.
        if new_password != new_password_again:
            raise InvalidInput("The two new passwords differ: type the same one twice.")
        try:
            users_service.change_password(
                session=session,
                user_id=owner,
                current_password=current_password,
                new_password=new_password,
                actor=_actor(request, principal),
                # This browser stays logged in; every other session ends.
                keep_session_id=_current_session_id(session, request),
                hasher=hasher,
            )
        except InvalidCredentials as wrong:
            # A wrong field, not a failed login: never the 401 redirect to the login page.
            raise InvalidInput("The current password is wrong.") from wrong
        return "Your password is changed. Your other sessions are ended; this one stays."

    return await _account_change(request, settings, sessions, principal, "password", work)


SessionId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]


@router.post("/account/sessions/{session_id}/revoke")
async def revoke_session(
    request: Request,
    session_id: SessionId,
    settings: SettingsDep,
    sessions: Sessions,
    principal: Annotated[Principal, require("sessions:self")],
) -> HTMLResponse:
    owner = _own_user_id(principal)

    def work(session: Session) -> str:
        users_service.revoke_session(
            session=session, session_id=session_id, actor=_actor(request, principal), owner_id=owner
        )
        return "The session is ended."

    return await _account_change(request, settings, sessions, principal, "sessions", work)


def _tokens_page(
    request: Request,
    principal: Principal,
    settings: Settings,
    session: Session,
    *,
    secret: str | None = None,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    owner = _own_user_id(principal)
    scopes = sorted(
        permission
        for permission in policies.PERMISSIONS
        if any(permission in policies.permissions_of(role) for role in principal.roles)
    )
    return _render(
        request,
        "tokens.html",
        principal,
        settings,
        status_code,
        tokens=read_models.own_tokens(session=session, user_id=owner),
        scopes=scopes,
        secret=secret,
        notice=notice,
        error=error,
        max_days=TOKEN_MAX_DAYS,
    )


@router.get("/account/tokens")
def tokens(
    request: Request,
    settings: SettingsDep,
    session: DbSession,
    principal: Annotated[Principal, require("tokens:self")],
) -> HTMLResponse:
    return _tokens_page(request, principal, settings, session)


@router.post("/account/tokens")
async def create_token(
    request: Request,
    settings: SettingsDep,
    sessions: Sessions,
    principal: Annotated[Principal, require("tokens:self")],
    name: Annotated[str, Form(max_length=100)] = "",
    scopes: Annotated[list[str] | None, Form()] = None,
    expires_in_days: Annotated[int, Form(ge=1, le=TOKEN_MAX_DAYS)] = 90,
) -> HTMLResponse:
    owner = _own_user_id(principal)
    created: list[str] = []

    def work(session: Session) -> str:
        token, secret = users_service.create_api_token(
            session=session,
            owner_id=owner,
            name=name,
            scopes=scopes or [],
            expires_at=utc_now() + timedelta(days=expires_in_days),
            actor=_actor(request, principal),
        )
        created.append(secret)
        return f"Token “{token.name}” created."

    notice, error, status_code = await _change(request, settings, sessions, work)
    with sessions() as session:
        response = _tokens_page(
            request,
            principal,
            settings,
            session,
            secret=created[0] if created else None,
            notice=notice,
            error=error,
            status_code=status_code,
        )
    return response


TokenId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


@router.post("/account/tokens/{token_id}/revoke")
async def revoke_token(
    request: Request,
    token_id: TokenId,
    settings: SettingsDep,
    sessions: Sessions,
    principal: Annotated[Principal, require("tokens:self")],
) -> HTMLResponse:
    owner = _own_user_id(principal)

    def work(session: Session) -> str:
        token = users_service.revoke_api_token(
            session=session, token_id=token_id, actor=_actor(request, principal), owner_id=owner
        )
        return f"Token “{token.name}” revoked."

    notice, error, status_code = await _change(request, settings, sessions, work)
    with sessions() as session:
        return _tokens_page(
            request,
            principal,
            settings,
            session,
            notice=notice,
            error=error,
            status_code=status_code,
        )


# --- dead letters -------------------------------------------------------------------------------

DeadLetterId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]
# What the form accepts (a longer post is a 422 page); the note's own limit is
# `dead_letter_resolution.NOTE_MAX_CHARS`.
NOTE_FORM_MAX_CHARS = 20_000


def _resolve_with_note(
    session: Session, dead_letter_id: int, note: str, actor: users_service.Actor
) -> DeadLetter:
    """Resolve and audit through the service the API shares; the console requires a
    note, and tells an operator who comes second (409) rather than answering as if
    they had resolved it."""
    outcome = dead_letter_resolution.resolve_and_audit(
        session=session, dead_letter_id=dead_letter_id, actor=actor, note=note, note_required=True
    )
    if not outcome.newly_resolved:
        resolved_at = outcome.letter.resolved_at
        assert resolved_at is not None  # not newly resolved means resolved before
        raise DeadLetterAlreadyResolved(dead_letter_id, resolved_at)
    return outcome.letter


@router.get("/dead-letters")
def dead_letters(
    request: Request,
    settings: SettingsDep,
    session: DbSession,
    principal: Annotated[Principal, require("deadletters:read")],
    state: Annotated[read_models.DeadLetterState, Query()] = read_models.DeadLetterState.OPEN,
    gateway: Annotated[str, Query(max_length=64)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    """Dead letters newest first, `DEAD_LETTERS_PER_PAGE` a page, open ones by default."""
    listing = read_models.dead_letter_list(
        session=session, state=state, gateway_id=gateway.strip() or None, page=page
    )
    name = "_dead_letters_table.html" if _is_htmx(request) else "dead_letters.html"
    return _render(request, name, principal, settings, listing=listing)


def _dead_letter_page(
    request: Request,
    principal: Principal,
    settings: Settings,
    session: Session,
    dead_letter_id: int,
    *,
    note: str = "",
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    detail = read_models.dead_letter_detail(session=session, dead_letter_id=dead_letter_id)
    return _render(
        request,
        "dead_letter.html",
        principal,
        settings,
        status_code,
        page=detail,
        note=note,
        note_max_chars=dead_letter_resolution.NOTE_MAX_CHARS,
        audit_target=read_models.dead_letter_audit_target(dead_letter_id),
        notice=notice,
        error=error,
    )


@router.get("/dead-letters/{dead_letter_id}")
def dead_letter(
    request: Request,
    dead_letter_id: DeadLetterId,
    settings: SettingsDep,
    session: DbSession,
    principal: Annotated[Principal, require("deadletters:read")],
) -> HTMLResponse:
    return _dead_letter_page(request, principal, settings, session, dead_letter_id)


@router.get("/dead-letters/{dead_letter_id}/payload")
def dead_letter_payload(
    dead_letter_id: DeadLetterId,
    session: DbSession,
    principal: Annotated[Principal, require("deadletters:read")],
) -> Response:
    """The stored bytes as a download: never rendered by the browser."""
    payload = read_models.dead_letter_payload(session=session, dead_letter_id=dead_letter_id)
    return Response(
        payload,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="dead-letter-{dead_letter_id}.bin"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/dead-letters/{dead_letter_id}/resolve")
async def resolve_dead_letter(
    request: Request,
    dead_letter_id: DeadLetterId,
    settings: SettingsDep,
    sessions: Sessions,
    principal: Annotated[Principal, require("deadletters:resolve")],
    note: Annotated[str, Form(max_length=NOTE_FORM_MAX_CHARS)] = "",
) -> HTMLResponse:
    actor = _actor(request, principal)

    def work(session: Session) -> str:
        _resolve_with_note(session, dead_letter_id, note, actor)
        return f"Dead letter {dead_letter_id} is resolved."

    notice, error, status_code = await _change(request, settings, sessions, work)
    with sessions() as session:
        return _dead_letter_page(
            request,
            principal,
            settings,
            session,
            dead_letter_id,
            # A refused note stays in the field to be corrected.
            note=note if error else "",
            notice=notice,
            error=error,
            status_code=status_code,
        )


# --- the audit log ------------------------------------------------------------------------------


def _day_start(text: str | None, what: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as error:
        raise RequestValidationError(
            [{"loc": ("query", what), "msg": "a date YYYY-MM-DD", "type": "value_error"}]
        ) from error


@router.get("/audit")
def audit(
    request: Request,
    settings: SettingsDep,
    session: DbSession,
    principal: Annotated[Principal, require("audit:read")],
    action: Annotated[str, Query(max_length=64)] = "",
    actor: Annotated[str, Query(max_length=320)] = "",
    target: Annotated[str, Query(max_length=200)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
) -> HTMLResponse:
    """The audit log, newest first; `since`/`until` are UTC days, `until` inclusive."""
    until_day = _day_start(until, "until")
    entries = read_models.audit_entries(
        session=session,
        action_prefix=action.strip() or None,
        target=target.strip() or None,
        actor_email=actor.strip() or None,
        since=_day_start(since, "since"),
        until=until_day + timedelta(days=1) if until_day else None,
    )
    filters = {"action": action, "actor": actor, "target": target, "since": since, "until": until}
    name = "_audit_table.html" if _is_htmx(request) else "audit.html"
    return _render(
        request,
        name,
        principal,
        settings,
        entries=entries,
        filters=filters,
        limit=read_models.MAX_LISTED,
    )


# --- errors as pages, and mounting --------------------------------------------------------------

_TITLES = {
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    409: "Conflict",
    413: "Too large",
    422: "Invalid request",
    503: "Temporarily unavailable",
}


def _is_console_page(request: Request) -> bool:
    path = request.url.path
    return (path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")) and not (
        path.startswith(STATIC_PATH + "/")
    )


def _error_page(request: Request, status_code: int, detail: str | None) -> Response:
    if status_code == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET" or request.url.path.endswith("/live"):
            # After login, land on a page, not on a stream or a form's target.
            target = CONSOLE_PREFIX + "/"
        location = f"{CONSOLE_PREFIX}/login?next={quote(target, safe='')}"
        response: Response
        if _is_htmx(request):
            response = Response(status_code=401, headers={"HX-Redirect": location})
        else:
            response = _see_other(location)
        if request.cookies.get(SESSION_COOKIE):
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    settings: Settings = request.app.state.settings
    shown = detail if status_code < 500 else None
    return _render(
        request,
        "error.html",
        None,
        settings,
        status_code,
        status=status_code,
        title=_TITLES.get(status_code, "Something went wrong"),
        detail=shown,
    )


def _wrap(
    original: Callable[[Request, Exception], Any],
    status_and_detail: Callable[[Exception], tuple[int, str | None]],
) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, error: Exception) -> Response:
        if not _is_console_page(request):
            result = original(request, error)
            return await result if asyncio.iscoroutine(result) else result
        status_code, detail = status_and_detail(error)
        if status_code >= 500:
            logger.error(
                "request_id=%s console %s %s failed: %s",
                request_id_of(request),
                request.method,
                request.url.path,
                error,
            )
        return _error_page(request, status_code, detail)

    return handler


def _cloud_status(error: Exception) -> tuple[int, str | None]:
    assert isinstance(error, CloudError)
    return status_of(error), str(error)


def _http_status(error: Exception) -> tuple[int, str | None]:
    assert isinstance(error, StarletteHTTPException)
    return error.status_code, error.detail if isinstance(error.detail, str) else None


def _validation_status(error: Exception) -> tuple[int, str | None]:
    assert isinstance(error, RequestValidationError)
    parts = [
        f"{'.'.join(str(part) for part in item.get('loc', ())[1:])}: {item.get('msg', '')}"
        for item in error.errors()[:3]
    ]
    return 422, "; ".join(parts) or "the request is invalid"


def install(app: FastAPI) -> None:
    """Mount the console on `app`: its routes, its static files, its error pages.

    Call after `cloud.core.problems.install_problem_handlers`: the console
    wraps those handlers and answers with pages only for console paths.
    """
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=_HERE / "static"), name="console-static")
    app.state.public_mounts = {*getattr(app.state, "public_mounts", ()), STATIC_PATH}
    for kind, status in (
        (CloudError, _cloud_status),
        (StarletteHTTPException, _http_status),
        (RequestValidationError, _validation_status),
    ):
        original = app.exception_handlers.get(kind)
        if original is None:
            raise RuntimeError(f"install the problem handlers before the console ({kind})")
        app.add_exception_handler(kind, _wrap(original, status))
