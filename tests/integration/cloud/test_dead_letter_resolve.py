"""Resolving a dead letter through the REST API is audited like the console's.

``POST /api/v1/dead-letters/{id}/resolve`` with an API token: the token's
user is the audit entry's actor, the optional note goes with it, and the
console's letter page shows both. No note (no body, ``{}``, null, blank) is
an empty note; a second resolve answers the first resolution with no second
entry (the console says 409 instead); a note that breaks a rule is a 422
problem naming it, and nothing changes. Also: the console and the API on
the same letter, and the partial index of open letters on both databases.

The real app with the real users authorizer, on SQLite and PostgreSQL,
through FastAPI's TestClient; letters are stored with
`cloud.fleet.service.add_dead_letter`, as the ingestion worker does.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import escape
from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.db import Base, make_engine, session_factory, unit_of_work, utc_now
from cloud.fleet import dead_letter_resolution
from cloud.fleet import service as fleet_service
from cloud.fleet.dead_letter_resolution import (
    DEAD_LETTER_RESOLVE_ACTION,
    NOTE_MAX_CHARS,
    check_resolution_note,
    resolve_and_audit,
)
from cloud.fleet.exceptions import InvalidResolutionNote
from cloud.ingestion.models import DeadLetter
from cloud.timeseries import TimeSeriesStore
from cloud.users.audit import Actor
from cloud.users.models import AuditEntry
from tests.integration.cloud.auth_world import (
    api_token,
    build_app,
    make_user,
    session_token,
    settings_for,
    sqlite_store,
    tag,
)

pytestmark = pytest.mark.integration

NOTE = "Replayed after the gateway's clock was fixed <b>by hand</b>."
SCOPES = ["deadletters:read", "deadletters:resolve"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimeSeriesStore]:
    yield from sqlite_store(tmp_path_factory, "dead-letter-resolve")


@pytest.fixture(scope="module")
def app(database_url: str, engine: Engine, store: TimeSeriesStore) -> FastAPI:
    return build_app(settings_for(database_url), engine, store)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


# --- helpers -------------------------------------------------------------------------------------


class Operator:
    """An operator user with an API token that may read and resolve dead letters."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.email = f"operator-{tag()}@example.com"
        self.user_id = make_user(factory, "operator", self.email)
        _, secret = api_token(factory, self.user_id, SCOPES)
        self.headers = {"Authorization": f"Bearer {secret}"}


def add_letter(factory: sessionmaker[Session], reason_code: str = "bad_checksum") -> int:
    gateway_id = f"gw-{tag()}"
    with unit_of_work(factory) as session:
        letter = fleet_service.add_dead_letter(
            session=session,
            topic=f"vs/v1/{gateway_id}/readings",
            payload=b"\xde\xad\xbe\xef",
            reason_code=reason_code,
            reason="CRC mismatch",
            gateway_id=gateway_id,
            received_at=utc_now() - timedelta(minutes=5),
        )
        return letter.id


def resolve(
    client: TestClient, letter_id: int, operator: Operator, **body: object
) -> httpx.Response:
    return client.post(
        f"/api/v1/dead-letters/{letter_id}/resolve", headers=operator.headers, **body
    )


def audit_of(factory: sessionmaker[Session], letter_id: int) -> list[AuditEntry]:
    with factory() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == DEAD_LETTER_RESOLVE_ACTION,
                    AuditEntry.target == f"dead_letter:{letter_id}",
                )
            )
        )


def resolved_at_of(factory: sessionmaker[Session], letter_id: int) -> object:
    with factory() as session:
        return session.scalar(select(DeadLetter.resolved_at).where(DeadLetter.id == letter_id))


def console_page(client: TestClient, factory: sessionmaker[Session], letter_id: int) -> str:
    """The letter's console page, as a fresh operator logged in with a session cookie."""
    viewer = make_user(factory, "operator")
    _, cookie = session_token(factory, viewer)
    page = client.get(
        f"/console/dead-letters/{letter_id}", headers={"Cookie": f"vs_session={cookie}"}
    )
    assert page.status_code == 200, page.text
    return page.text


def state_of(page: str) -> str:
    found = re.search(r'<dd id="dead-letter-state"[^>]*>(.*?)</dd>', page, re.S)
    assert found, page
    return found[1]


def assert_problem(answer: httpx.Response, status: int, type_suffix: str) -> dict[str, object]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = answer.json()
    assert body["type"] == f"urn:voltstack:problem:{type_suffix}"
    assert body["request_id"] == answer.headers["x-request-id"]
    return body


# --- a note, who, and the console ---------------------------------------------------------------


def test_a_resolve_with_a_note_is_audited_as_the_tokens_user_and_shown_on_the_console(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    operator = Operator(factory)
    letter = add_letter(factory)

    answer = resolve(client, letter, operator, json={"note": f"  {NOTE}\n"})

    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == letter and answer.json()["resolved_at"] is not None
    (entry,) = audit_of(factory, letter)
    assert entry.actor == operator.email and entry.actor_user_id == operator.user_id
    assert entry.details == {
        "note": NOTE,  # trimmed
        "reason_code": "bad_checksum",
        "gateway_id": answer.json()["gateway_id"],
        "topic": answer.json()["topic"],
    }
    assert entry.request_id == answer.headers["x-request-id"]
    assert entry.at == resolved_at_of(factory, letter)

    page = console_page(client, factory, letter)
    assert 'data-state="resolved"' in page
    assert operator.email in state_of(page) and "not recorded" not in page
    assert f'id="resolution-note">{escape(NOTE)}</dd>' in page
    assert "<b>by hand</b>" not in page


@pytest.mark.parametrize(
    "body",
    [{}, {"json": {}}, {"json": {"note": None}}, {"json": {"note": " \n\t "}}],
    ids=["no-body", "empty-object", "null-note", "blank-note"],
)
def test_a_resolve_without_a_note_is_audited_with_an_empty_note(
    client: TestClient, factory: sessionmaker[Session], body: dict[str, object]
) -> None:
    operator = Operator(factory)
    letter = add_letter(factory)

    answer = resolve(client, letter, operator, **body)

    assert answer.status_code == 200, answer.text
    (entry,) = audit_of(factory, letter)
    assert entry.actor == operator.email
    assert entry.details is not None and entry.details["note"] == ""
    page = console_page(client, factory, letter)
    assert operator.email in state_of(page)
    assert 'id="resolution-note"' not in page  # an empty note shows no "Note" row


def test_a_second_resolve_answers_the_first_resolution_and_audits_nothing(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    first, second = Operator(factory), Operator(factory)
    letter = add_letter(factory)
    done = resolve(client, letter, first, json={"note": NOTE})
    assert done.status_code == 200

    for operator, body in ((first, {}), (second, {"json": {"note": "a later note"}})):
        again = resolve(client, letter, operator, **body)
        assert again.status_code == 200, again.text
        assert again.json() == done.json()

    (entry,) = audit_of(factory, letter)
    assert entry.actor == first.email and entry.details is not None
    assert entry.details["note"] == NOTE


# --- refused notes and bodies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("note", "rule"),
    [
        ("fine\x00", "control characters"),
        ("bell\x07 rang", "control characters"),
        ("x" * (NOTE_MAX_CHARS + 1), f"at most {NOTE_MAX_CHARS}"),
    ],
    ids=["nul", "bell", "too-long"],
)
def test_a_note_that_breaks_a_rule_is_a_422_naming_it_and_nothing_changes(
    client: TestClient, factory: sessionmaker[Session], note: str, rule: str
) -> None:
    operator = Operator(factory)
    letter = add_letter(factory)

    refused = resolve(client, letter, operator, json={"note": note})

    problem = assert_problem(refused, 422, "invalid-resolution-note")
    assert rule in str(problem["detail"])
    assert resolved_at_of(factory, letter) is None
    assert audit_of(factory, letter) == []
    # The letter can still be resolved once the note is fixed.
    assert resolve(client, letter, operator, json={"note": "fixed"}).status_code == 200


def test_malformed_bodies_and_unknown_letters_are_refused_with_problems(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    operator = Operator(factory)
    letter = add_letter(factory)

    typo = resolve(client, letter, operator, json={"notes": NOTE})
    assert_problem(typo, 422, "validation-error")
    not_text = resolve(client, letter, operator, json={"note": 12})
    assert_problem(not_text, 422, "validation-error")
    huge = resolve(client, letter, operator, json={"note": "x" * 20_001})
    assert_problem(huge, 422, "validation-error")
    form = resolve(client, letter, operator, data={"note": NOTE})
    assert form.status_code == 415 and form.headers["content-type"] == "application/problem+json"
    assert "application/json" in form.json()["detail"]
    missing = resolve(client, 999_999_999, operator, json={"note": NOTE})
    assert_problem(missing, 404, "dead-letter-not-found")

    assert resolved_at_of(factory, letter) is None
    assert audit_of(factory, letter) == []


# --- the console and the API on one letter -------------------------------------------------------


def test_the_console_refuses_with_409_what_the_api_resolved_first(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    operator = Operator(factory)
    letter = add_letter(factory)
    assert resolve(client, letter, operator, json={"note": NOTE}).status_code == 200

    viewer = make_user(factory, "operator")
    _, cookie = session_token(factory, viewer)
    page = client.get(f"/console/dead-letters/{letter}", headers={"Cookie": f"vs_session={cookie}"})
    csrf = re.search(r'name="csrf_token" value="([^"]*)"', page.text)
    assert csrf, page.text
    console = client.post(
        f"/console/dead-letters/{letter}/resolve",
        data={"note": "me too", "csrf_token": csrf[1]},
        headers={"Cookie": f"vs_session={cookie}"},
    )
    assert console.status_code == 409 and "already resolved" in console.text
    assert [entry.actor for entry in audit_of(factory, letter)] == [operator.email]


# --- the note rules and the index ----------------------------------------------------------------


@given(note=st.one_of(st.none(), st.text(max_size=2100)))
def test_an_accepted_note_is_trimmed_bounded_and_plain(note: str | None) -> None:
    for required in (False, True):
        try:
            checked = check_resolution_note(note, required=required)
        except InvalidResolutionNote as refusal:
            assert str(refusal)  # says why
            continue
        assert checked == (note or "").strip()
        assert len(checked) <= NOTE_MAX_CHARS
        assert all(char >= " " or char in "\t\n\r" for char in checked)
        assert checked or not required


def test_open_letters_have_a_partial_index_on_both_databases(engine: Engine, backend: str) -> None:
    (index,) = [
        found
        for found in inspect(engine).get_indexes("dead_letters")
        if found["name"] == "ix_dead_letters_open_received_at_id"
    ]
    assert index["column_names"] == ["received_at", "id"]
    where = index.get("dialect_options", {}).get(f"{backend}_where")
    assert where is not None
    assert re.sub(r"[()\s]", "", str(where)).lower() == "resolved_atisnull"


def test_two_resolves_at_once_give_one_resolution_and_one_audit_entry(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Embedded SQLite ignores FOR UPDATE: both requests read the letter as open
    # (the barrier holds each one after its read), and the write must decide.
    path = tmp_path_factory.mktemp("race") / "operations.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    factory = session_factory(engine)
    letter_id = add_letter(factory)
    both_read = threading.Barrier(2)

    def now_once_both_have_read() -> datetime:
        both_read.wait(10)
        return utc_now()

    monkeypatch.setattr(dead_letter_resolution, "utc_now", now_once_both_have_read)
    outcomes: list[bool] = []

    def request(who: str) -> None:
        with unit_of_work(factory) as session:
            outcome = resolve_and_audit(
                session=session,
                dead_letter_id=letter_id,
                actor=Actor(subject=who),
                note=who,
                note_required=True,
            )
            outcomes.append(outcome.newly_resolved)

    threads = [threading.Thread(target=request, args=(who,)) for who in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == [False, True]
    assert len(audit_of(factory, letter_id)) == 1
    engine.dispose()
