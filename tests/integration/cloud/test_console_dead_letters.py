"""The console's dead-letter pages over HTTP: the list (newest first, paged,
filtered by state and gateway), one letter's page with its payload readable,
the resolve form (a required note, CSRF, audited with who and why, through
the service the API uses too), who may see and resolve, and hostile
payloads shown escaped and bounded.

The real app on SQLite and PostgreSQL through FastAPI's TestClient, users
logged in through the real login form; dead letters are stored with
`cloud.fleet.service.add_dead_letter`, the function the ingestion worker
calls. The module's database is shared, so every test uses its own gateway
id and filters on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from html import unescape
from typing import Protocol

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.console import _payload
from cloud.console.read_models import (
    DEAD_LETTER_RESOLVE_ACTION,
    DEAD_LETTERS_PER_PAGE,
    PAYLOAD_SHOWN_BYTES,
)
from cloud.core.db import unit_of_work, utc_now
from cloud.fleet import service as fleet_service
from cloud.fleet.service import MAX_DEAD_LETTER_PAYLOAD_BYTES
from cloud.ingestion.models import DeadLetter
from cloud.timeseries import TimeSeriesStore
from cloud.users.models import AuditEntry
from tests.integration.cloud.auth_world import (
    PASSWORD,
    api_token,
    build_app,
    make_user,
    settings_for,
    sqlite_store,
    tag,
)

pytestmark = pytest.mark.integration

SCRIPT = "<script>alert('dead letter')</script>"
NOTE = "Replayed after the gateway's clock was fixed <b>by hand</b>."


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimeSeriesStore]:
    yield from sqlite_store(tmp_path_factory, "console-dead-letters")


@pytest.fixture
def app(database_url: str, engine: Engine, store: TimeSeriesStore) -> FastAPI:
    return build_app(settings_for(database_url), engine, store)


class Answer(Protocol):
    """What the helpers read of a TestClient response (httpx's, whichever build)."""

    @property
    def text(self) -> str: ...

    @property
    def status_code(self) -> int: ...


# --- helpers -------------------------------------------------------------------------------------


def add_letter(
    factory: sessionmaker[Session],
    gateway_id: str,
    payload: bytes,
    *,
    minutes_ago: float = 0,
    reason_code: str = "undecodable",
    reason: str = "not an uplink batch",
    topic: str | None = None,
) -> int:
    with unit_of_work(factory) as session:
        letter = fleet_service.add_dead_letter(
            session=session,
            topic=topic or f"vs/v1/{gateway_id}/readings",
            payload=payload,
            reason_code=reason_code,
            reason=reason,
            gateway_id=gateway_id,
            received_at=utc_now() - timedelta(minutes=minutes_ago),
        )
        return letter.id


def hidden_field(page: Answer, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page.text)
    assert found, page.text
    return found[1]


@contextmanager
def logged_in(
    app: FastAPI, factory: sessionmaker[Session], role: str
) -> Iterator[tuple[TestClient, str]]:
    """A TestClient logged in through the console's login form as a new user of `role`."""
    email = f"{role}-{tag()}@example.com"
    make_user(factory, role, email)
    with TestClient(app) as client:
        form = client.get("/console/login")
        answer = client.post(
            "/console/login",
            data={
                "email": email,
                "password": PASSWORD,
                "csrf_token": hidden_field(form, "csrf_token"),
            },
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        yield client, email


def listed_ids(page: Answer) -> list[int]:
    return [int(found) for found in re.findall(r'data-dead-letter="(\d+)"', page.text)]


def resolve(client: TestClient, letter_id: int, note: str) -> Answer:
    page = client.get(f"/console/dead-letters/{letter_id}")
    return client.post(
        f"/console/dead-letters/{letter_id}/resolve",
        data={"note": note, "csrf_token": hidden_field(page, "csrf_token")},
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


# --- the list ------------------------------------------------------------------------------------


def test_the_list_is_newest_first_and_filters_open_resolved_and_all(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    gateway = f"gw-{tag()}"
    oldest = add_letter(
        factory, gateway, b"\x00\x01\x02", minutes_ago=30, reason_code="bad_checksum"
    )
    middle = add_letter(factory, gateway, b'{"online": "maybe"}', minutes_ago=20)
    newest = add_letter(factory, gateway, b"plain words", minutes_ago=10)
    # Resolved through the REST API (a bearer token): the console shows it, with
    # the token's user, whom the API audits like the console does.
    api_email = f"api-operator-{tag()}@example.com"
    operator = make_user(factory, "operator", api_email)
    _, secret = api_token(factory, operator, ["deadletters:resolve"])
    with logged_in(app, factory, "operator") as (client, _):
        via_api = client.post(
            f"/api/v1/dead-letters/{middle}/resolve",
            json={},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert via_api.status_code == 200, via_api.text

        default = client.get("/console/dead-letters", params={"gateway": gateway})
        assert default.status_code == 200
        assert listed_ids(default) == [newest, oldest]  # open only, newest first
        assert '<option value="open" selected>' in default.text
        assert "bad_checksum" in default.text and "00 01 02" in default.text
        assert "plain words" in default.text

        resolved = client.get(
            "/console/dead-letters", params={"gateway": gateway, "state": "resolved"}
        )
        assert listed_ids(resolved) == [middle]
        assert f"by {api_email}" in resolved.text and "(not recorded)" not in resolved.text
        assert 'data-state="resolved"' in resolved.text

        every = client.get("/console/dead-letters", params={"gateway": gateway, "state": "all"})
        assert listed_ids(every) == [newest, middle, oldest]

        # htmx asks for the table alone.
        partial = client.get(
            "/console/dead-letters",
            params={"gateway": gateway, "state": "all"},
            headers={"HX-Request": "true"},
        )
        assert listed_ids(partial) == [newest, middle, oldest]
        assert "<html" not in partial.text

        nothing = client.get("/console/dead-letters", params={"gateway": f"gw-{tag()}"})
        assert listed_ids(nothing) == [] and "No open dead letter" in nothing.text

        bad = client.get("/console/dead-letters", params={"state": "deleted"})
        assert bad.status_code == 422
        assert "state" in bad.text and "Invalid request" in bad.text


def test_the_list_pages_newest_first(app: FastAPI, factory: sessionmaker[Session]) -> None:
    gateway = f"gw-{tag()}"
    count = DEAD_LETTERS_PER_PAGE + 3
    ids = [add_letter(factory, gateway, b"x%d" % n, minutes_ago=count - n) for n in range(count)]
    with logged_in(app, factory, "technician") as (client, _):
        first = client.get("/console/dead-letters", params={"gateway": gateway})
        assert listed_ids(first) == ids[::-1][:DEAD_LETTERS_PER_PAGE]
        older = re.search(r'<a rel="next" href="([^"]+)"', first.text)
        assert older and 'rel="prev"' not in first.text
        second = client.get(unescape(older[1]))
        assert second.status_code == 200
        assert listed_ids(second) == ids[::-1][DEAD_LETTERS_PER_PAGE:]
        assert 'rel="prev"' in second.text and 'rel="next"' not in second.text
        assert client.get("/console/dead-letters", params={"page": 0}).status_code == 422


# --- one letter ----------------------------------------------------------------------------------


def test_a_letters_page_shows_json_indented_text_and_binary_as_hex(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    gateway = f"gw-{tag()}"
    document = {"online": "yes", "uptime_s": 12, "meters": ["A1", "B2"]}
    as_json = add_letter(factory, gateway, json.dumps(document).encode())
    as_text = add_letter(factory, gateway, "Zählerstand überschritten\nline two".encode())
    binary = bytes(range(256))
    as_binary = add_letter(factory, gateway, binary, reason_code="bad_checksum")
    empty = add_letter(factory, gateway, b"")
    with logged_in(app, factory, "auditor") as (client, _):
        page = client.get(f"/console/dead-letters/{as_json}")
        assert page.status_code == 200
        assert 'data-kind="json"' in page.text
        shown = re.search(r'<pre class="payload" id="payload">(.*?)</pre>', page.text, re.S)
        assert shown and json.loads(unescape(shown[1])) == document
        assert '\n  "uptime_s": 12' in unescape(shown[1])  # indented
        assert "badge warn" in page.text and "open" in page.text
        assert "Resolve dead letter" not in page.text  # an auditor reads, never resolves

        text = client.get(f"/console/dead-letters/{as_text}")
        assert 'data-kind="text"' in text.text
        assert "Zählerstand überschritten\nline two" in text.text

        hexed = client.get(f"/console/dead-letters/{as_binary}")
        assert 'data-kind="hex"' in hexed.text
        assert "00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  |................|" in (
            hexed.text
        )
        assert "00000040  40 41 42 43" in hexed.text
        download = client.get(f"/console/dead-letters/{as_binary}/payload")
        assert download.status_code == 200
        assert download.content == binary
        assert download.headers["content-type"] == "application/octet-stream"
        assert download.headers["content-disposition"].startswith("attachment;")

        assert "The message was empty." in client.get(f"/console/dead-letters/{empty}").text
        missing = client.get("/console/dead-letters/999999999")
        assert missing.status_code == 404 and "Not found" in missing.text


# --- resolving -----------------------------------------------------------------------------------


def test_resolving_with_a_note_is_audited_and_shown(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    gateway = f"gw-{tag()}"
    letter = add_letter(factory, gateway, b"\xde\xad\xbe\xef", reason_code="bad_checksum")
    with logged_in(app, factory, "operator") as (client, email):
        before = client.get(f"/console/dead-letters/{letter}")
        assert "Resolve dead letter" in before.text and 'name="note"' in before.text

        done = resolve(client, letter, f"  {NOTE}  ")
        assert done.status_code == 200, done.text
        assert f"Dead letter {letter} is resolved." in done.text
        assert 'id="dead-letter-state" data-state="resolved"' in done.text
        assert email in done.text
        # The note is escaped on the page, never markup.
        assert "&lt;b&gt;by hand&lt;/b&gt;" in done.text and "<b>by hand</b>" not in done.text
        assert "Resolve dead letter" not in done.text  # no form on a resolved letter

        (entry,) = audit_of(factory, letter)
        assert entry.actor == email
        assert entry.details is not None and entry.details["note"] == NOTE
        assert entry.details["reason_code"] == "bad_checksum"
        assert resolved_at_of(factory, letter) is not None

        listed = client.get(
            "/console/dead-letters", params={"gateway": gateway, "state": "resolved"}
        )
        assert listed_ids(listed) == [letter] and email in listed.text
        assert listed_ids(client.get("/console/dead-letters", params={"gateway": gateway})) == []

        # A second resolution is refused and keeps the first.
        again = resolve(client, letter, "another note")
        assert again.status_code == 409
        assert "already resolved" in again.text
        assert len(audit_of(factory, letter)) == 1


def test_resolving_without_a_note_is_refused_with_the_reason(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    letter = add_letter(factory, f"gw-{tag()}", b"junk")
    with logged_in(app, factory, "admin") as (client, _):
        for note in ("", "   \n\t "):
            refused = resolve(client, letter, note)
            assert refused.status_code == 422
            assert "A note is required" in refused.text
            assert 'role="alert"' in refused.text
            assert 'data-state="open"' in refused.text
        control = resolve(client, letter, "fine\x00")
        assert control.status_code == 422 and "control characters" in control.text
        too_long = resolve(client, letter, "x" * 2001)
        assert too_long.status_code == 422 and "at most 2000" in too_long.text
        # The typed note stays in the field to be corrected.
        assert ">" + "x" * 2001 + "</textarea>" in too_long.text
    assert resolved_at_of(factory, letter) is None
    assert audit_of(factory, letter) == []


def test_resolving_needs_the_forms_csrf_token(app: FastAPI, factory: sessionmaker[Session]) -> None:
    letter = add_letter(factory, f"gw-{tag()}", b"junk")
    with logged_in(app, factory, "operator") as (client, _):
        forged = client.post(
            f"/console/dead-letters/{letter}/resolve",
            data={"note": NOTE, "csrf_token": "forged"},
        )
        assert forged.status_code == 403
        missing = client.post(f"/console/dead-letters/{letter}/resolve", data={"note": NOTE})
        assert missing.status_code == 403
    assert resolved_at_of(factory, letter) is None
    assert audit_of(factory, letter) == []


# --- who may -------------------------------------------------------------------------------------


def test_roles_without_the_permission_get_403_and_no_link(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    letter = add_letter(factory, f"gw-{tag()}", b"junk")
    with logged_in(app, factory, "billing") as (billing, _):
        dashboard = billing.get("/console/")
        assert dashboard.status_code == 200
        assert "/console/dead-letters" not in dashboard.text
        assert 'id="dead-letters"' not in dashboard.text
        for path in ("/console/dead-letters", f"/console/dead-letters/{letter}"):
            refused = billing.get(path)
            assert refused.status_code == 403 and "Not allowed" in refused.text
        assert billing.get(f"/console/dead-letters/{letter}/payload").status_code == 403

    # A technician reads dead letters but may not resolve them.
    with logged_in(app, factory, "technician") as (technician, _):
        page = technician.get(f"/console/dead-letters/{letter}")
        assert page.status_code == 200
        assert "Resolve dead letter" not in page.text
        assert 'href="/console/dead-letters">Dead letters</a>' in page.text  # the navigation
        refused = technician.post(
            f"/console/dead-letters/{letter}/resolve",
            data={"note": NOTE, "csrf_token": hidden_field(page, "csrf_token")},
        )
        assert refused.status_code == 403
    assert resolved_at_of(factory, letter) is None


def test_the_dashboard_counts_open_dead_letters_and_links_the_list(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    add_letter(factory, f"gw-{tag()}", b"junk")
    with factory() as session:
        open_now = session.scalar(
            select(func.count()).select_from(DeadLetter).where(DeadLetter.resolved_at.is_(None))
        )
    with logged_in(app, factory, "operator") as (client, _):
        dashboard = client.get("/console/")
        assert f'id="dead-letters">{open_now}<' in dashboard.text
        assert 'href="/console/dead-letters"' in dashboard.text


# --- hostile payloads ----------------------------------------------------------------------------


def test_hostile_payloads_are_escaped_bounded_and_the_pages_still_work(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    gateway = f"gw-{tag()}"
    script = add_letter(
        factory,
        gateway,
        SCRIPT.encode(),
        topic=f"vs/v1/{gateway}/readings/{SCRIPT}",
        reason=f"refused {SCRIPT}",
    )
    invalid_utf8 = add_letter(factory, gateway, b"\xc3\x28 <script>\xff\xfe" + SCRIPT.encode())
    bidi = add_letter(factory, gateway, "total\u202e0001 kWh".encode())
    huge_size = MAX_DEAD_LETTER_PAYLOAD_BYTES + 4096
    huge = add_letter(
        factory, gateway, (SCRIPT.encode() * (huge_size // len(SCRIPT) + 1))[:huge_size]
    )
    with logged_in(app, factory, "operator") as (client, _):
        listing = client.get("/console/dead-letters", params={"gateway": gateway})
        assert listing.status_code == 200
        assert set(listed_ids(listing)) == {script, invalid_utf8, bidi, huge}
        assert SCRIPT not in listing.text and "<script>alert" not in listing.text
        assert "&lt;script&gt;" in listing.text
        assert len(listing.text) < 100_000  # previews, not payloads

        for letter in (script, invalid_utf8, bidi, huge):
            page = client.get(f"/console/dead-letters/{letter}")
            assert page.status_code == 200
            assert "<script>alert" not in page.text and "<script>\xff" not in page.text
            assert page.text.rstrip().endswith("</html>")
            assert "Resolve dead letter" in page.text

        broken = client.get(f"/console/dead-letters/{invalid_utf8}")
        assert 'data-kind="hex"' in broken.text
        assert (
            "00000000  c3 28 20 3c 73 63 72 69 70 74 3e ff fe 3c 73 63  |.( &lt;script&gt;..&lt;sc|"
            in (broken.text)
        )

        reordering = client.get(f"/console/dead-letters/{bidi}")
        assert "total\\u202e0001 kWh" in reordering.text and "\u202e" not in reordering.text

        big = client.get(f"/console/dead-letters/{huge}")
        assert f"Shown: the first {PAYLOAD_SHOWN_BYTES} of {huge_size} bytes." in big.text
        assert f"(the first {MAX_DEAD_LETTER_PAYLOAD_BYTES} kept)" in big.text
        assert len(big.text) < 3 * PAYLOAD_SHOWN_BYTES
        download = client.get(f"/console/dead-letters/{huge}/payload")
        assert len(download.content) == MAX_DEAD_LETTER_PAYLOAD_BYTES

        # The pages keep working after all that: resolving the script letter.
        assert resolve(client, script, "Dismissed: a probe, not a gateway.").status_code == 200


# --- the payload renderer on any bytes -----------------------------------------------------------


@given(payload=st.binary(max_size=600), cap=st.integers(min_value=1, max_value=700))
def test_any_bytes_give_a_bounded_readable_view(payload: bytes, cap: int) -> None:
    view = _payload.view_of(payload, size_bytes=len(payload), max_bytes=cap)
    assert view.kind in {"json", "text", "hex", "empty"}
    assert view.shown_bytes <= len(payload)
    if view.kind == "hex":
        assert len(view.text.splitlines()) == -(-min(cap, len(payload)) // 16)
    if view.kind == "text":
        assert view.shown_bytes <= cap
    # Nothing invisible or reordering reaches the page.
    assert all(char.isprintable() or char in "\t\n\r" for char in view.text)
    preview = _payload.preview_of(payload[:120], size_bytes=len(payload), max_chars=80)
    assert len(preview.text) <= 80 or preview.kind == "hex"
    assert all(char.isprintable() for char in preview.text)


@given(text=st.text(max_size=300))
def test_any_utf8_text_is_shown_as_text_or_json(text: str) -> None:
    payload = text.encode("utf-8")
    view = _payload.view_of(payload, size_bytes=len(payload), max_bytes=10_000)
    has_binary_controls = any(char < " " and char not in "\t\n\r" for char in text)
    if payload and not has_binary_controls:
        assert view.kind in {"text", "json"}
