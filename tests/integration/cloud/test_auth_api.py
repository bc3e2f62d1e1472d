"""Authentication over HTTP: login, cookies, expiry, tokens, CSRF, lockout, bad input, headers.

The real app (`UsersAuthorizer`, the users routes) on SQLite and PostgreSQL
through FastAPI's TestClient. Time is a `Clock` the app's `UsersConfig`
reads, so session expiry and lockouts are reached by moving it, not by
waiting. Mails (invites, reset links) are read from the outbox table, where
production's SMTP loop would pick them up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.console.security import csrf_token_for
from cloud.core.security_headers import CONTENT_SECURITY_POLICY
from cloud.timeseries import TimeSeriesStore
from cloud.users import service
from cloud.users.authorizer import UsersConfig
from cloud.users.models import AuditEntry, LoginSession, OutboxMail
from tests.integration.cloud.auth_world import (
    FAST,
    PASSWORD,
    api_token,
    build_app,
    make_user,
    settings_for,
    sqlite_store,
    tag,
)

pytestmark = pytest.mark.integration

NEW_PASSWORD = "a brand new passphrase here"


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimeSeriesStore]:
    yield from sqlite_store(tmp_path_factory, "auth-api")


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))


@pytest.fixture
def app(database_url: str, engine: Engine, store: TimeSeriesStore, clock: Clock) -> FastAPI:
    settings = settings_for(database_url, max_request_body_bytes=4096)
    return build_app(settings, engine, store, UsersConfig(hasher=FAST, clock=clock))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as made:
        yield made


def email_of(role: str) -> str:
    return f"{role}-{tag()}@example.com"


def log_in(client: TestClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def csrf(response: httpx.Response) -> dict[str, str]:
    return {"X-CSRF-Token": response.json()["csrf_token"]}


def assert_problem(response: httpx.Response, status: int, type_: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    if type_ is not None:
        assert body["type"] == f"urn:voltstack:problem:{type_}"
    return body


def mails_to(factory: sessionmaker[Session], address: str) -> list[str]:
    with factory() as session:
        return list(
            session.scalars(
                select(OutboxMail.body)
                .where(OutboxMail.to_address == address)
                .order_by(OutboxMail.id)
            )
        )


def link_token(body: str) -> str:
    found = re.search(r"\?token=(\S+)", body)
    assert found, body
    return found[1]


# --- login and logout -------------------------------------------------------------------


def test_login_sets_a_hardened_cookie_and_logout_ends_the_session(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    email = email_of("operator")
    make_user(factory, "operator", email)
    response = log_in(client, email.upper())  # addresses compare case-insensitively
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("vs_session=")
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/" in cookie
    assert response.headers["cache-control"] == "no-store"
    token = client.cookies["vs_session"]
    assert response.json()["csrf_token"] == csrf_token_for(client.app.state.settings, token)
    me = client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["user"]["email"] == email and me.json()["kind"] == "session"
    assert "fleet:write" in me.json()["permissions"]
    with factory() as session:
        entry = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "auth.login")
            .order_by(AuditEntry.id.desc())
        ).first()
        assert entry is not None and entry.actor == email
        assert entry.ip and entry.request_id == response.headers["x-request-id"]
    out = client.post("/api/v1/auth/logout", headers=csrf(response))
    assert out.status_code == 204
    assert 'vs_session=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    client.cookies.set("vs_session", token)  # a copied cookie is dead too
    assert_problem(client.get("/api/v1/me"), 401, "invalid-session")


def test_secure_cookie_and_hsts_over_https(app: FastAPI, factory: sessionmaker[Session]) -> None:
    email = email_of("billing")
    make_user(factory, "billing", email)
    with TestClient(app, base_url="https://testserver") as client:
        response = log_in(client, email)
        assert "Secure" in response.headers["set-cookie"]
        assert response.headers["strict-transport-security"].startswith("max-age=")
    with TestClient(app) as plain:
        assert "strict-transport-security" not in plain.get("/health/live").headers


def test_wrong_password_and_unknown_email_get_the_same_401(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    email = email_of("support")
    make_user(factory, "support", email)
    wrong = assert_problem(log_in(client, email, "not the password at all"), 401)
    unknown = assert_problem(log_in(client, email_of("nobody")), 401)
    assert wrong["detail"] == unknown["detail"] == "wrong email or password"
    assert wrong["type"] == unknown["type"]
    assert "set-cookie" not in client.post("/api/v1/auth/login", json={}).headers


def test_lockout_is_429_with_retry_after_then_lifts(
    client: TestClient, factory: sessionmaker[Session], clock: Clock
) -> None:
    email = email_of("technician")
    make_user(factory, "technician", email)
    for _ in range(service.DEFAULT_SETTINGS.max_failed_logins):
        assert log_in(client, email, "wrong wrong wrong wrong").status_code == 401
    locked = assert_problem(log_in(client, email), 429, "account-locked")
    assert "too many failed logins" in locked["detail"]
    wait_s = int(locked_retry := log_in(client, email).headers["retry-after"])
    assert 0 < wait_s <= service.DEFAULT_SETTINGS.lockout.total_seconds(), locked_retry
    clock.now += service.DEFAULT_SETTINGS.lockout + timedelta(seconds=1)
    assert log_in(client, email).status_code == 200


# --- sessions -----------------------------------------------------------------------------


def test_session_idle_and_absolute_expiry(
    client: TestClient, factory: sessionmaker[Session], clock: Clock
) -> None:
    settings = service.DEFAULT_SETTINGS
    email = email_of("auditor")
    make_user(factory, "auditor", email)
    assert log_in(client, email).status_code == 200
    # Sliding: a request every 20 minutes keeps it alive past the 30-minute idle limit…
    for _ in range(4):
        clock.now += timedelta(minutes=20)
        assert client.get("/api/v1/me").status_code == 200
    # …until idle for longer than the limit.
    clock.now += settings.session_idle + timedelta(seconds=1)
    assert_problem(client.get("/api/v1/me"), 401, "invalid-session")
    assert log_in(client, email).status_code == 200
    started = clock.now
    while clock.now < started + settings.session_lifetime - timedelta(minutes=20):
        clock.now += timedelta(minutes=20)
        assert client.get("/api/v1/me").status_code == 200
    clock.now = started + settings.session_lifetime
    assert_problem(client.get("/api/v1/me"), 401, "invalid-session")


def test_sessions_are_listed_and_a_revoked_one_is_refused(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    email = email_of("operator")
    make_user(factory, "operator", email)
    with TestClient(app) as laptop, TestClient(app) as phone:
        first = log_in(laptop, email)
        log_in(phone, email)
        listed = laptop.get("/api/v1/me/sessions").json()
        assert len(listed) == 2 and sum(item["current"] for item in listed) == 1
        phone_id = next(item["id"] for item in listed if not item["current"])
        assert (
            laptop.delete(f"/api/v1/me/sessions/{phone_id}", headers=csrf(first)).status_code == 204
        )
        assert_problem(phone.get("/api/v1/me"), 401, "invalid-session")
        assert laptop.get("/api/v1/me").status_code == 200
    forged = TestClient(app)
    forged.cookies.set("vs_session", "x" * 43)
    assert_problem(forged.get("/api/v1/me"), 401, "invalid-session")


# --- CSRF ----------------------------------------------------------------------------------


def test_cookie_requests_that_change_state_need_the_csrf_token(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    email = email_of("operator")
    make_user(factory, "operator", email)
    login = log_in(client, email)
    body = {"name": "ci", "scopes": ["fleet:read"], "expires_at": "2099-01-01T00:00:00Z"}
    assert_problem(client.post("/api/v1/me/tokens", json=body), 403, "csrf-rejected")
    wrong = {"X-CSRF-Token": csrf_token_for(client.app.state.settings, "another session")}
    assert_problem(client.post("/api/v1/me/tokens", json=body, headers=wrong), 403, "csrf-rejected")
    # A form post to the API is no way around it either.
    form = client.post("/api/v1/auth/logout", data={"csrf_token": login.json()["csrf_token"]})
    assert_problem(form, 403, "csrf-rejected")
    assert client.get("/api/v1/me/tokens").status_code == 200  # reads need none
    with factory() as session:
        active = service.list_api_tokens(session=session, owner_id=login.json()["user"]["id"])
    assert active == []  # nothing was created by the refused requests


def test_bearer_tokens_need_no_csrf_and_are_limited_by_scopes(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    user = make_user(factory, "operator")
    _, secret = api_token(factory, user, ["fleet:read", "tokens:self"])
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {secret}"
        assert client.get("/api/v1/gateways").status_code == 200
        assert client.get("/api/v1/me").status_code == 403  # sessions:self not in scopes
        assert_problem(client.get("/api/v1/ingestion/statistics"), 403, "forbidden")
        created = client.post(
            "/api/v1/me/tokens",
            json={"name": "child", "scopes": ["fleet:read"], "expires_at": "2099-01-01T00:00:00Z"},
        )
        # No CSRF header and still accepted: 422 only because 2099 is beyond the maximum.
        assert_problem(created, 422, "invalid-token-expiry")
        wider = client.post(
            "/api/v1/me/tokens",
            json={"name": "wider", "scopes": ["fleet:write"], "expires_at": "2030-01-01T00:00:00Z"},
        )
        assert_problem(wider, 422)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer vst_000000000000_" + "A" * 43,  # well-formed, unknown
        "Bearer not-a-token",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
    ],
)
def test_bad_authorization_headers_are_401(client: TestClient, header: str) -> None:
    response = client.get("/api/v1/gateways", headers={"Authorization": header})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_forged_expired_and_revoked_tokens_are_401(
    app: FastAPI, factory: sessionmaker[Session], clock: Clock
) -> None:
    user = make_user(factory, "technician")
    token_id, secret = api_token(factory, user, ["fleet:read"], days=1)
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    with TestClient(app) as client:
        ok = client.get("/api/v1/gateways", headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200
        bad = client.get("/api/v1/gateways", headers={"Authorization": f"Bearer {forged}"})
        assert_problem(bad, 401, "invalid-api-token")
        clock.now += timedelta(days=2)
        expired = client.get("/api/v1/gateways", headers={"Authorization": f"Bearer {secret}"})
        assert_problem(expired, 401, "invalid-api-token")
    admin_email = email_of("admin")
    make_user(factory, "admin", admin_email)
    clock.now -= timedelta(days=2)
    with TestClient(app) as admin:
        login = log_in(admin, admin_email)
        assert admin.delete(f"/api/v1/tokens/{token_id}", headers=csrf(login)).status_code == 204
        revoked = admin.get("/api/v1/gateways", headers={"Authorization": f"Bearer {secret}"})
        assert_problem(revoked, 401, "invalid-api-token")


# --- users administration, invites, resets ------------------------------------------------------


def test_invite_accept_role_change_disable_and_audit(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    admin_email, invited = email_of("admin"), email_of("invited")
    make_user(factory, "admin", admin_email)
    with TestClient(app) as admin:
        login = log_in(admin, admin_email)
        created = admin.post(
            "/api/v1/users",
            json={"email": invited, "display_name": "New Person", "role": "support"},
            headers=csrf(login),
        )
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        assert created.json()["state"] == "invited"
        token = link_token(mails_to(factory, invited)[-1])
        with TestClient(app) as newcomer:
            accepted = newcomer.post(
                "/api/v1/auth/invite/accept", json={"token": token, "password": NEW_PASSWORD}
            )
            assert accepted.status_code == 204
            again = newcomer.post(
                "/api/v1/auth/invite/accept", json={"token": token, "password": NEW_PASSWORD}
            )
            assert_problem(again, 422, "invalid-one-time-token")
            assert log_in(newcomer, invited, NEW_PASSWORD).status_code == 200
            assert newcomer.get("/api/v1/users").status_code == 200  # support: users:read
            role = admin.put(
                f"/api/v1/users/{user_id}/role", json={"role": "billing"}, headers=csrf(login)
            )
            assert role.json()["role"] == "billing"
            assert_problem(newcomer.get("/api/v1/users"), 403, "forbidden")  # at once
            disabled = admin.post(f"/api/v1/users/{user_id}/disable", headers=csrf(login))
            assert disabled.json()["state"] == "disabled"
            assert_problem(newcomer.get("/api/v1/me"), 401)
        audit = admin.get("/api/v1/audit", params={"target": f"user:{user_id}"}).json()["items"]
        actions = [entry["action"] for entry in reversed(audit)]
        assert actions == ["user.invite", "user.invite_accepted", "user.set_role", "user.disable"]
        assert all(entry["request_id"] and entry["ip"] for entry in audit)


def test_password_reset_never_says_whether_the_address_exists(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    email = email_of("billing")
    make_user(factory, "billing", email)
    known = client.post("/api/v1/auth/password-reset", json={"email": email})
    unknown = client.post("/api/v1/auth/password-reset", json={"email": email_of("ghost")})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    (mail,) = mails_to(factory, email)
    assert mail.count("http://127.0.0.1:8000/console/reset-password?token=") == 1
    token = link_token(mail)
    weak = client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "short"}
    )
    assert_problem(weak, 422, "weak-password")
    done = client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert done.status_code == 204
    assert log_in(client, email).status_code == 401
    assert log_in(client, email, NEW_PASSWORD).status_code == 200


def test_password_change_keeps_this_session_and_ends_the_others(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    email = email_of("technician")
    make_user(factory, "technician", email)
    with TestClient(app) as here, TestClient(app) as elsewhere:
        login = log_in(here, email)
        log_in(elsewhere, email)
        wrong = here.post(
            "/api/v1/me/password",
            json={"current_password": "not it at all", "new_password": NEW_PASSWORD},
            headers=csrf(login),
        )
        assert_problem(wrong, 422, "wrong-current-password")
        assert here.get("/api/v1/me").status_code == 200  # a wrong field, not a logout
        changed = here.post(
            "/api/v1/me/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=csrf(login),
        )
        assert changed.status_code == 204
        assert here.get("/api/v1/me").status_code == 200
        assert_problem(elsewhere.get("/api/v1/me"), 401)
    with factory() as session:
        user_id = login.json()["user"]["id"]
        live = session.scalars(
            select(LoginSession).where(
                LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None)
            )
        ).all()
        assert [row.id for row in live] == [login.json()["session_id"]]


# --- bad input and headers --------------------------------------------------------------------


def test_malformed_oversized_and_mistyped_bodies_are_clear_4xx(client: TestClient) -> None:
    malformed = client.post(
        "/api/v1/auth/login",
        content=b'{"email": "a@example.com", "password": ',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(malformed, 422, "validation-error")
    oversized = client.post(
        "/api/v1/auth/login", json={"email": "a@example.com", "password": "x" * 5000}
    )
    assert_problem(oversized, 413)
    mistyped = client.post(
        "/api/v1/auth/login",
        content=b"email=a@example.com&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(mistyped, 415)
    extra = client.post(
        "/api/v1/auth/login", json={"email": "a@example.com", "password": "x", "admin": True}
    )
    assert_problem(extra, 422, "validation-error")
    assert client.get("/health/live").status_code == 200  # and the service goes on


def test_security_headers_on_every_answer(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    email = email_of("operator")
    make_user(factory, "operator", email)
    anonymous = client.get("/health/live")
    refused = client.get("/api/v1/gateways")
    log_in(client, email)
    authenticated = client.get("/api/v1/gateways")
    for response in (anonymous, refused, authenticated):
        headers = response.headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "'unsafe-inline'" not in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert "camera=()" in headers["permissions-policy"]
    assert authenticated.headers["cache-control"] == "no-store"
    assert "cache-control" not in anonymous.headers
    docs = client.get("/docs")
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]
