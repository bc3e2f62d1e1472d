"""The console's one-time-link pages over HTTP: invitation links built from
the public URL (never the Host header), and the reset-password page the API's
reset mails link to — CSRF by the page's own nonce cookie, the two passwords
compared, a refused or weak password answered with the form and a 4xx.

The real app on SQLite and PostgreSQL through FastAPI's TestClient; mails are
read from the outbox table, where production's SMTP loop would pick them up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.timeseries import SqliteStore, TimeSeriesStore
from cloud.users.models import OutboxMail
from tests.integration.cloud.auth_world import PASSWORD, build_app, make_user, settings_for, tag

pytestmark = pytest.mark.integration

PUBLIC_URL = "https://console.utility.example"
NEW_PASSWORD = "a brand new passphrase here"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimeSeriesStore]:
    made = SqliteStore(tmp_path_factory.mktemp("console-links") / "ts.sqlite")
    yield made
    made.close()


@pytest.fixture
def app(database_url: str, engine: Engine, store: TimeSeriesStore) -> FastAPI:
    return build_app(settings_for(database_url, public_url=PUBLIC_URL), engine, store)


def mails_to(factory: sessionmaker[Session], address: str) -> list[str]:
    with factory() as session:
        return list(
            session.scalars(
                select(OutboxMail.body)
                .where(OutboxMail.to_address == address)
                .order_by(OutboxMail.id)
            )
        )


def hidden_field(page: httpx.Response, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page.text)
    assert found, page.text
    return found[1]


def console_login(client: TestClient, email: str, password: str = PASSWORD) -> httpx.Response:
    page = client.get("/console/login")
    return client.post(
        "/console/login",
        data={
            "email": email,
            "password": password,
            "csrf_token": hidden_field(page, "csrf_token"),
        },
        follow_redirects=False,
    )


def test_an_invitation_links_to_the_public_url_whatever_the_host_header(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    admin_email, invited = f"admin-{tag()}@example.com", f"invited-{tag()}@example.com"
    make_user(factory, "admin", admin_email)
    with TestClient(app) as admin:
        assert console_login(admin, admin_email).status_code == 303
        users_page = admin.get("/console/users")
        answer = admin.post(
            "/console/users/invite",
            data={
                "email": invited,
                "display_name": "New Person",
                "role": "support",
                "csrf_token": hidden_field(users_page, "csrf_token"),
            },
            headers={"Host": "phisher.example", "X-Forwarded-Host": "phisher.example"},
        )
        assert answer.status_code == 200, answer.text
    (mail,) = mails_to(factory, invited)
    assert f"{PUBLIC_URL}/console/accept-invite?token=" in mail
    assert "phisher" not in mail and "testserver" not in mail


def test_the_reset_link_page_sets_a_new_password_once(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    email = f"billing-{tag()}@example.com"
    make_user(factory, "billing", email)
    with TestClient(app) as client:
        assert client.post("/api/v1/auth/password-reset", json={"email": email}).status_code == 202
        (mail,) = mails_to(factory, email)
        found = re.search(rf"{re.escape(PUBLIC_URL)}(/console/reset-password\?token=\S+)", mail)
        assert found, mail
        page = client.get(found[1])
        assert page.status_code == 200
        assert "Choose a new password" in page.text
        token = hidden_field(page, "token")
        form = {"token": token, "csrf_token": hidden_field(page, "csrf_token")}

        differ = client.post(
            "/console/reset-password",
            data={**form, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD + "!"},
        )
        assert differ.status_code == 422
        assert "The two passwords differ." in differ.text
        weak = client.post(
            "/console/reset-password", data={**form, "password": "short", "password_again": "short"}
        )
        assert weak.status_code == 422  # the link stays usable
        done = client.post(
            "/console/reset-password",
            data={**form, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
            follow_redirects=False,
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/console/login"
        again = client.post(
            "/console/reset-password",
            data={**form, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
        )
        assert again.status_code == 422  # used: a link works once
        assert console_login(client, email).status_code != 303
        assert console_login(client, email, NEW_PASSWORD).status_code == 303


def test_a_reset_post_without_the_pages_nonce_is_refused_and_changes_nothing(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    email = f"support-{tag()}@example.com"
    make_user(factory, "support", email)
    with TestClient(app) as client:
        client.post("/api/v1/auth/password-reset", json={"email": email})
        (mail,) = mails_to(factory, email)
        token = re.search(r"\?token=(\S+)", mail)
        assert token
        forged = client.post(
            "/console/reset-password",
            data={
                "token": token[1],
                "csrf_token": "forged",
                "password": NEW_PASSWORD,
                "password_again": NEW_PASSWORD,
            },
        )
        assert forged.status_code == 403
        assert console_login(client, email).status_code == 303  # old password still works
