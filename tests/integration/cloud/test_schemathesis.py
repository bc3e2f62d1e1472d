"""schemathesis fuzzes every operation of our OpenAPI document against a real uvicorn.

Once authenticated as an admin (every route reachable) and once as a
customer (mostly refusals, which must be documented problem answers too),
both by bearer token. Checks: no 5xx, every status code documented, content
types and bodies conforming to the schema. Bounded by `MAX_EXAMPLES` so the
whole run stays well under a minute. The admin's token is looked up before
each call and re-minted if a fuzzed ``DELETE /tokens/{id}`` happened to
revoke it, so the run keeps its credentials. SQLite: schema conformance does
not depend on the database.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloud.app import create_app
from cloud.core.config import Settings
from cloud.core.db import unit_of_work
from cloud.timeseries import SqliteStore, TimeSeriesStore
from cloud.users import service
from cloud.users.models import ApiToken
from cloud.users.policies import permissions_of
from tests.integration.cloud.auth_world import (
    SYSTEM,
    LiveServer,
    api_token,
    build_app,
    make_customer,
    make_user,
    settings_for,
)

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 5
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The document is the app's, built without starting it (no database needed).
DOCUMENT = create_app(Settings(environment="test", secret_key=secrets.token_urlsafe(32))).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimeSeriesStore]:
    made = SqliteStore(tmp_path_factory.mktemp("fuzz") / "ts.sqlite")
    yield made
    made.close()


class Credentials:
    """Bearer tokens of an admin and a customer; re-minted when revoked."""

    def __init__(self, factory: sessionmaker[Session], store: TimeSeriesStore) -> None:
        self.factory = factory
        self.users = {"admin": make_user(factory, "admin")}
        self.users["customer"] = make_customer(factory, store, base_kwh=10.0).user_id
        self.scopes = {
            "admin": None,
            "customer": ["fleet:read", "readings:read", "sessions:self", "account:read-own"],
        }
        self.tokens: dict[str, tuple[int, str]] = {}

    def header(self, who: str) -> dict[str, str]:
        token = self.tokens.get(who)
        if token is None or not self._usable(token[0]):
            self._restore(who)
            scopes = self.scopes[who] or sorted(permissions_of(who))
            token = api_token(self.factory, self.users[who], list(scopes))
            self.tokens[who] = token
        return {"Authorization": f"Bearer {token[1]}"}

    def _restore(self, who: str) -> None:
        """Undo what a fuzzed admin call did to our own users (disable, demote)."""
        with unit_of_work(self.factory) as session:
            user = service.get_user(session=session, user_id=self.users[who])
            if user.state == "disabled":
                service.enable_user(session=session, user_id=user.id, actor=SYSTEM)
            if user.role != who:
                service.set_role(session=session, user_id=user.id, role=who, actor=SYSTEM)

    def _usable(self, token_id: int) -> bool:
        with self.factory() as session:
            row = session.get(ApiToken, token_id)
            return row is not None and row.revoked_at is None and row.expires_at > datetime.now(UTC)


@pytest.fixture(scope="module")
def credentials(factory: sessionmaker[Session], store: TimeSeriesStore) -> Credentials:
    return Credentials(factory, store)


@pytest.fixture(scope="module")
def server(database_url: str, engine: Engine, store: TimeSeriesStore) -> Iterator[LiveServer]:
    with LiveServer(build_app(settings_for(database_url), engine, store)) as running:
        yield running


@pytest.mark.parametrize("who", ["admin", "customer"])
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_answers_match_the_schema(
    case: Any, who: str, server: LiveServer, credentials: Credentials
) -> None:
    case.call_and_validate(base_url=server.url, headers=credentials.header(who), checks=CHECKS)
