"""Every route of the real app × every role (and anonymous) against the declared matrix.

The routes come from `route_permissions(app)` — the API, the console and
whatever a later module adds — so a new route is in this test the moment it
exists; one without `require(...)` or `public()` fails it. The expected answer
comes from `cloud.users.policies` alone:

- a role with an ``all`` grant, or an ``own`` grant on a route whose ids are
  the caller's own (a customer's meter serial): anything but 401/403 (and
  never a 5xx);
- any other role: 403;
- anonymous: 401, or for console pages a redirect to the login page;
- public routes: never 401, never a 5xx.

Requests go to a real uvicorn with a fresh console session per request (a
route may log out or revoke), the CSRF header on state-changing ones (so the
role alone decides), and ids that exist for the customer's own meter and do
not exist otherwise, so that an allowed mutation finds nothing to change.
Policy is about the route table, not the database: SQLite only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.authz import PUBLIC, route_permissions
from cloud.timeseries import TimeSeriesStore
from cloud.users import policies
from cloud.users.policies import ROLES, Grant
from tests.integration.cloud.auth_world import (
    ENERGY,
    Customer,
    LiveServer,
    build_app,
    cookie_headers,
    make_customer,
    make_user,
    session_token,
    settings_for,
    sqlite_store,
)

pytestmark = pytest.mark.integration

ANONYMOUS = "anonymous"
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# Ids that name nothing: an allowed mutation finds nothing to change.
MISSING_ID = "999999"
MISSING_GATEWAY = "gw-matrix-missing"
OWN_PARAMETERS = {"serial", "meter_serial", "account_number"}
NEUTRAL_PARAMETERS = {"obis"}


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimeSeriesStore]:
    yield from sqlite_store(tmp_path_factory, "matrix")


@pytest.fixture(scope="module")
def customer(factory: sessionmaker[Session], store: TimeSeriesStore) -> Customer:
    return make_customer(factory, store, base_kwh=4321.0)


@pytest.fixture(scope="module")
def users(factory: sessionmaker[Session], customer: Customer) -> dict[str, int]:
    made = {role: make_user(factory, role) for role in ROLES if role != "customer"}
    made["customer"] = customer.user_id
    return made


@pytest.fixture(scope="module")
def server(database_url: str, engine: Engine, store: TimeSeriesStore) -> Iterator[LiveServer]:
    app = build_app(settings_for(database_url), engine, store)
    with LiveServer(app) as running:
        running.app = app  # type: ignore[attr-defined]
        yield running


def parameters_of(path: str) -> list[str]:
    return re.findall(r"{(\w+)(?::\w+)?}", path)


def value_for(name: str, customer: Customer) -> str:
    if name in {"serial", "meter_serial"}:
        return customer.serial
    if name == "account_number":
        return customer.account
    if name == "obis":
        return ENERGY
    if name == "gateway_id":
        return MISSING_GATEWAY
    if name.endswith("_id"):
        return MISSING_ID
    raise AssertionError(f"no test value for path parameter {name!r}: add one to this test")


def expected_allowed(role: str, permission: str, parameters: list[str]) -> bool:
    grant = policies.grant_of([role], permission)
    if grant is Grant.ALL:
        return True
    if grant is Grant.OWN:
        identifying = set(parameters) - NEUTRAL_PARAMETERS
        return bool(identifying) and identifying <= OWN_PARAMETERS
    return False


def call(client: httpx.Client, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
    body = {} if method in STATE_CHANGING - {"DELETE"} else None
    # Streamed and closed after the headers: live (SSE) routes never end on their own.
    with client.stream(method, url, json=body, headers=headers) as response:
        return response


def test_every_route_declares_a_permission_or_public(server: LiveServer) -> None:
    table = route_permissions(server.app)  # type: ignore[attr-defined]
    undeclared = sorted(route for route, permission in table.items() if permission is None)
    assert not undeclared, f"routes without require(...) or public(): {undeclared}"
    declared = {permission for permission in table.values()} - {PUBLIC}
    unknown = declared - set(policies.PERMISSIONS)
    assert not unknown, f"permissions the matrix does not declare: {unknown}"


def test_every_route_for_every_role_matches_the_matrix(
    server: LiveServer,
    factory: sessionmaker[Session],
    users: dict[str, int],
    customer: Customer,
) -> None:
    settings = server.app.state.settings  # type: ignore[attr-defined]
    table = route_permissions(server.app)  # type: ignore[attr-defined]
    mismatches: list[str] = []
    checked = 0
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as client:
        for (method, path), permission in sorted(table.items(), key=lambda item: item[0][1]):
            if method == "*" or permission is None:
                continue  # mounted static files; undeclared routes fail the test above
            parameters = parameters_of(path)
            url = path.format(**{name: value_for(name, customer) for name in parameters})
            for who in (*ROLES, ANONYMOUS):
                headers: dict[str, str] = {}
                if who != ANONYMOUS:
                    _, token = session_token(factory, users[who])
                    headers = cookie_headers(
                        settings, token, state_changing=method in STATE_CHANGING
                    )
                response = call(client, method, url, headers)
                checked += 1
                problem = _mismatch(who, method, path, permission, parameters, response)
                if problem:
                    mismatches.append(problem)
    assert checked > len(ROLES) * 30
    assert not mismatches, "\n".join(mismatches)


def _mismatch(
    who: str,
    method: str,
    path: str,
    permission: str,
    parameters: list[str],
    response: httpx.Response,
) -> str | None:
    status = response.status_code
    where = f"{method} {path} as {who} ({permission}): {status}"
    if status >= 500:
        return f"{where} — a server error"
    if permission == PUBLIC:
        return f"{where} — public route refused" if status == 401 else None
    if who == ANONYMOUS:
        to_login = status in {302, 303, 307} and "/login" in response.headers.get("location", "")
        console_page = not path.startswith("/api/")
        if status == 401 or (console_page and to_login):
            return None
        return f"{where} — anonymous expected 401 (or a redirect to the login page)"
    if expected_allowed(who, permission, parameters):
        return f"{where} — allowed by the matrix but refused" if status in {401, 403} else None
    return None if status == 403 else f"{where} — denied by the matrix, expected 403"
