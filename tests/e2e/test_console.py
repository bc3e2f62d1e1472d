"""The console in a real browser (Debian's Chromium through Playwright) on a real server.

The app runs under uvicorn on a free loopback port against a temporary
SQLite operational DB and a `SqliteStore`; users, gateways, meters and
customer accounts are created through the services. Live values come the
whole way: a gateway publishes an uplink batch to the real Mosquitto of
tests/servers.py, an in-process `IngestionWorker` stores it, and the meter
page's Server-Sent Events stream shows it.

Authorization is the real one: `cloud.users.authorizer.UsersAuthorizer`
reads the ``vs_session`` cookie the console's login form sets and decides
with `cloud.users.policies` (the contract of docs/console.md).

Screenshots land in test-artifacts/screenshots/ (the README walkthrough uses them).
"""

from __future__ import annotations

import math
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import uvicorn
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloud.app import create_app
from cloud.core.config import Settings
from cloud.core.db import make_engine, session_factory, unit_of_work, upgrade_database
from cloud.customers.models import Account, AccountMeter
from cloud.fleet import service as fleet_service
from cloud.ingestion.worker import IngestionWorker, WorkerConfig
from cloud.timeseries import SqliteStore
from cloud.users import service as users_service
from cloud.users.authorizer import UsersAuthorizer
from fastcodec.obis import parse_obis
from fastcodec.uplink import Batch, Reading, encode_batch
from tests.servers import MosquittoServer, free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "meter readings at dawn 42"
GATEWAY = "gw-e2e-north"
METER = "LGZ-E2E-0001"
SECOND_METER = "LGZ-E2E-0002"
OTHER_CUSTOMERS_METER = "LGZ-E2E-0003"
POWER = "1-0:1.7.0"
ENERGY = "1-0:1.8.0"
VOLTAGE = "1-0:32.7.0"
TIMEOUT_MS = 20_000

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


@dataclass
class Console:
    """The running console and what was put in it."""

    base_url: str
    sessions: sessionmaker[Session]
    store: SqliteStore
    emails: dict[str, str]


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- the world: database, store, users, fleet ---------------------------------------


def _seed_readings(store: SqliteStore, serial: str, now: datetime) -> None:
    """A day of 15-minute readings: power, a rising energy register, voltage."""
    start_ms = int((now - timedelta(hours=24)).timestamp()) // 900 * 900_000
    rows = []
    energy_kwh = 12_000.0
    for step in range(96):
        at_ms = start_ms + step * 900_000
        power_w = 1500 + 900 * math.sin(step / 96 * 2 * math.pi)
        energy_kwh += power_w / 4000
        rows += [
            Reading(serial, parse_obis(POWER), at_ms, round(power_w, 1), "W", 0),
            Reading(serial, parse_obis(ENERGY), at_ms, round(energy_kwh, 3), "kWh", 0),
            Reading(serial, parse_obis(VOLTAGE), at_ms, 230.0 + step % 5, "V", 0),
        ]
    # And one reading a minute ago: the meter counts as reporting.
    rows.append(
        Reading(serial, parse_obis(POWER), int(now.timestamp() * 1000) - 60_000, 1441.1, "W", 0)
    )
    store.write_batch(Batch.from_readings("seed", 0, int(now.timestamp() * 1000), rows))


def _seed_operational_data(sessions: sessionmaker[Session]) -> dict[str, str]:
    emails = {
        "admin": "ada.admin@example.net",
        "operator": "otto.operator@example.net",
        "customer": "carla.customer@example.net",
        "other_customer": "olaf.other@example.net",
    }
    installed = datetime(2024, 1, 1, tzinfo=UTC)
    with unit_of_work(sessions) as session:
        system = users_service.Actor.system()
        users = {
            key: users_service.create_user(
                session=session,
                email=email,
                display_name=key.replace("_", " ").title(),
                role="customer" if "customer" in key else key,
                password=PASSWORD,
                actor=system,
            )
            for key, email in emails.items()
        }
        fleet_service.register_gateway(
            session=session, gateway_id=GATEWAY, name="North substation", site="Nordhafen"
        )
        for serial, point in (
            (METER, "feeder 1"),
            (SECOND_METER, "feeder 2"),
            (OTHER_CUSTOMERS_METER, "feeder 3"),
        ):
            fleet_service.register_meter(
                session=session,
                serial=serial,
                model="eastron-sdm630",
                protocol="modbus",
                gateway_id=GATEWAY,
                installation_point=point,
                unit_id=1 + len(point),
                installed_at=installed,
            )
        for number, holder, serials in (
            ("ACC-1001", users["customer"], (METER, SECOND_METER)),
            ("ACC-2002", users["other_customer"], (OTHER_CUSTOMERS_METER,)),
        ):
            account = Account(number=number, holder_user_id=holder.id, created_at=installed)
            session.add(account)
            session.flush()
            for serial in serials:
                session.add(
                    AccountMeter(account_id=account.id, meter_serial=serial, linked_at=installed)
                )
        # The last half hour of ingestion: 12 readings a minute — and the next
        # five minutes too, so that the dashboard's "last five complete minutes"
        # still read 12 when the page is opened a few minutes after this seeding
        # (a slow, shared machine).
        now = datetime.now(UTC)
        for minutes_ago in range(-5, 31):
            fleet_service.count_ingestion(
                session=session,
                gateway_id=GATEWAY,
                at=now - timedelta(minutes=minutes_ago),
                readings_accepted=12,
                batches=1,
            )
    return emails


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('console-ops') / 'ops.sqlite'}"
    upgrade_database(url)
    made = make_engine(url)
    yield made
    made.dispose()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path_factory.mktemp("console-series") / "series.sqlite")
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def console(engine: Engine, store: SqliteStore) -> Iterator[Console]:
    """The app under uvicorn on a free loopback port, with seeded data."""
    sessions = session_factory(engine)
    emails = _seed_operational_data(sessions)
    _seed_readings(store, METER, datetime.now(UTC))
    settings = Settings(
        environment="test",
        secret_key="e2e-" + uuid.uuid4().hex + uuid.uuid4().hex,
        database_url=str(engine.url),
    )
    app = create_app(settings, authorizer=UsersAuthorizer(settings), engine=engine, store=store)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, name="console-uvicorn", daemon=True)
    thread.start()
    wait_for(lambda: server.started, "uvicorn to start")
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    yield Console(f"http://127.0.0.1:{port}", sessions, store, emails)
    server.should_exit = True
    thread.join(timeout=30)
    assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser, console: Console) -> Iterator[BrowserContext]:
    made = browser.new_context(base_url=console.base_url, viewport={"width": 1280, "height": 860})
    made.set_default_timeout(TIMEOUT_MS)
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def log_in(page: Page, email: str, next_path: str = "/console/") -> None:
    page.goto(f"/console/login?next={next_path}")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/console/(?!login)"))


# --- the tests ----------------------------------------------------------------------


def test_log_in_through_the_form_and_see_the_fleet(page: Page, console: Console) -> None:
    page.goto("/console/")
    # Not logged in: sent to the login page, which remembers where we wanted to go.
    expect(page).to_have_url(re.compile(r"/console/login\?next=%2Fconsole%2F$"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    screenshot(page, "login")

    page.get_by_label("Email address").fill(console.emails["operator"])
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong email or password", ignore_case=True)

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/console/$"))
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    expect(page.locator("#gateways-offline")).to_have_text("1")  # registered, never seen
    expect(page.locator("#meters-reporting")).to_have_text("1 / 3")
    expect(page.locator("#ingestion-rate")).to_have_text("12.0")
    expect(page.get_by_role("img", name=re.compile("Readings accepted per minute"))).to_be_visible()
    expect(page.locator("#dead-letters")).to_have_text("0")
    expect(page.get_by_role("link", name=GATEWAY)).to_be_visible()
    # The operator's navigation has no audit log or user administration.
    navigation = page.get_by_role("navigation", name="Main")
    expect(navigation.get_by_role("link", name="Audit log")).to_have_count(0)
    expect(navigation.get_by_role("link", name="Users")).to_have_count(0)

    cookie = next(c for c in page.context.cookies() if c["name"] == "vs_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["secure"] is False  # plain http in the test environment only
    screenshot(page, "dashboard")

    page.get_by_role("link", name=GATEWAY).click()
    expect(page.get_by_role("heading", name=f"Gateway {GATEWAY}")).to_be_visible()
    expect(page.get_by_role("link", name=METER)).to_be_visible()

    # The operator may read dead letters: the navigation leads to their list.
    navigation.get_by_role("link", name="Dead letters").click()
    expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()
    expect(page.locator("#dead-letters-summary")).to_have_text("No open dead letter.")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.goto("/console/")
    expect(page).to_have_url(re.compile(r"/console/login"))  # the session was revoked


def test_keyboard_only_login(page: Page, console: Console) -> None:
    page.goto("/console/login")
    # The email field has focus on arrival; the rest is Tab and Enter.
    expect(page.get_by_label("Email address")).to_be_focused()
    page.keyboard.type(console.emails["operator"])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()

    # First Tab on a page reaches the skip link; Enter moves focus to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Every further stop is visible: the focused element draws an outline.
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in {"none", ""}


class Gateway:
    """The gateway's own broker account, publishing uplink batches under its prefix."""

    def __init__(self, broker: MosquittoServer, gateway_id: str) -> None:
        self.gateway_id = gateway_id
        _, password = broker.add_gateway(gateway_id)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gateway_id)
        self.client.username_pw_set(gateway_id, password)
        connected = threading.Event()
        self.client.on_connect = lambda *_args: connected.set()
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        assert connected.wait(10), "the gateway did not connect"
        self.sequence = 0

    def publish(self, readings: list[Reading]) -> None:
        self.sequence += 1
        batch = Batch.from_readings(
            self.gateway_id, self.sequence, int(time.time() * 1000), readings
        )
        info = self.client.publish(f"vs/v1/{self.gateway_id}/readings", encode_batch(batch), 1)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def ingestion(
    mosquitto: MosquittoServer, console: Console, store: SqliteStore
) -> Iterator[IngestionWorker]:
    worker = IngestionWorker(
        WorkerConfig(
            host=mosquitto.host,
            port=mosquitto.port,
            username=mosquitto.admin_username,
            password=mosquitto.admin_password,
            client_id=f"console-ingest-{uuid.uuid4().hex[:8]}",
            share_group=f"console{uuid.uuid4().hex[:8]}",
            session_expiry_s=60,
        ),
        store=store,
        sessions=console.sessions,
    )
    worker.start()
    wait_for(lambda: worker.connected, "the worker to connect")
    wait_for(worker.subscribed.is_set, "the broker's SUBACK")
    yield worker
    worker.stop()


def _value_cell(page: Page, obis: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-obis="{obis}"] [data-field="value"]')


def test_meter_page_shows_live_values_from_the_broker_and_a_chart(
    page: Page, console: Console, mosquitto: MosquittoServer, ingestion: IngestionWorker
) -> None:
    log_in(page, console.emails["operator"])
    page.goto(f"/console/meters/{METER}")
    expect(page.get_by_role("heading", name=f"Meter {METER}")).to_be_visible()
    # The latest values, with their units, rendered by the server.
    power_row = page.locator(f'tr[data-obis="{POWER}"]')
    expect(power_row.locator('[data-field="unit"]')).to_have_text("W")
    expect(page.locator(f'tr[data-obis="{ENERGY}"] [data-field="unit"]')).to_have_text("kWh")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")

    # The chart: the first quantity's last 24 h at 15 minutes, drawn on a canvas.
    chart = page.locator("#chart")
    expect(chart.locator("canvas")).to_have_count(1)
    wait_for(lambda: int(chart.get_attribute("data-points") or 0) >= 90, "the chart's points")
    expect(page.locator("#chart-caption")).to_contain_text("15-minute")
    drawn = page.evaluate(
        """() => {
            const canvas = document.querySelector('#chart canvas');
            const pixels = canvas.getContext('2d')
                .getImageData(0, 0, canvas.width, canvas.height).data;
            let inked = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked++;
            return inked;
        }"""
    )
    assert drawn > 500, "the chart's canvas is blank"
    expect(chart.locator(".u-axis")).to_have_count(2)  # a time axis and a value axis
    expect(chart).to_contain_text("W")  # the unit on the value axis and the legend
    page.get_by_label("Quantity").select_option(VOLTAGE)
    expect(page.locator("#chart-caption")).to_contain_text("in V")
    screenshot(page, "meter-desktop")

    # A reading published by the gateway to the real broker reaches the page live.
    gateway = Gateway(mosquitto, GATEWAY)
    try:
        now_ms = int(time.time() * 1000)
        gateway.publish([Reading(METER, parse_obis(POWER), now_ms, 4321.5, "W", 0)])
        expect(_value_cell(page, POWER)).to_have_text("4,321.5", timeout=30_000)
        # A quantity the page did not have yet appears as a new row.
        gateway.publish([Reading(METER, parse_obis("1-0:31.7.0"), now_ms + 1000, 6.25, "A", 0)])
        expect(_value_cell(page, "1-0:31.7.0")).to_have_text("6.25", timeout=30_000)
        expect(page.locator('tr[data-obis="1-0:31.7.0"] th')).to_have_text("Current L1")
    finally:
        gateway.close()
    assert console.store.latest(METER, POWER)[0].value == 4321.5

    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_role("button", name="Menu")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    page.get_by_role("button", name="Menu").click()
    # The values table scrolls inside its region instead of widening the page.
    # (the chart redraws at the new width a moment after the resize)
    wait_for(
        lambda: page.evaluate("document.documentElement.scrollWidth") <= 390,
        "the page to fit a 390px phone",
    )
    wait_for(
        lambda: page.evaluate(
            "document.querySelector('#chart canvas').getBoundingClientRect().width"
            " <= document.getElementById('chart').clientWidth"
        ),
        "the chart to redraw at the phone's width",
    )
    screenshot(page, "meter-phone")


def test_roles_are_refused_pages_they_may_not_see(browser: Browser, console: Console) -> None:
    operator = browser.new_context(base_url=console.base_url)
    customer = browser.new_context(base_url=console.base_url)
    try:
        page = operator.new_page()
        log_in(page, console.emails["operator"])
        answer = page.goto("/console/audit")
        assert answer is not None and answer.status == 403
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()

        page = customer.new_page()
        log_in(page, console.emails["customer"])
        # A customer's dashboard lists its own meters, and only those.
        expect(page.get_by_role("heading", name="My meters")).to_be_visible()
        expect(page.get_by_role("link", name=METER)).to_be_visible()
        expect(page.get_by_role("link", name=SECOND_METER)).to_be_visible()
        expect(page.get_by_role("link", name=OTHER_CUSTOMERS_METER)).to_have_count(0)
        answer = page.goto(f"/console/meters/{METER}")
        assert answer is not None and answer.status == 200
        for refused in (
            f"/console/meters/{OTHER_CUSTOMERS_METER}",
            f"/console/meters/{OTHER_CUSTOMERS_METER}/live",
            f"/api/v1/meters/{OTHER_CUSTOMERS_METER}/readings/{POWER}",
            f"/console/gateways/{GATEWAY}",
            "/console/meters",
            "/console/users",
        ):
            answer = page.goto(refused) if refused.startswith("/console/") else None
            status = page.request.get(refused).status if answer is None else answer.status
            assert status == 403, f"{refused} answered {status} to another customer"
    finally:
        operator.close()
        customer.close()


def test_state_changes_need_the_csrf_token(page: Page, console: Console) -> None:
    log_in(page, console.emails["operator"])
    page.goto("/console/account/tokens")
    token = page.locator('input[name="csrf_token"]').first.input_value()
    form = {"name": "meter export", "scopes": "readings:read", "expires_in_days": "30"}

    forged = page.request.post("/console/account/tokens", form=form)
    assert forged.status == 403
    wrong = page.request.post(
        "/console/account/tokens", form=form, headers={"X-CSRF-Token": "x" + token[1:]}
    )
    assert wrong.status == 403
    accepted = page.request.post("/console/account/tokens", form={**form, "csrf_token": token})
    assert accepted.status == 200
    assert "vst_" in accepted.text()
    assert accepted.headers["cache-control"] == "no-store"

    # Through the page: create one, see the secret once, revoke it.
    page.reload()
    page.get_by_label("What it is for").fill("billing export")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_label("Token", exact=True)).to_have_value(re.compile(r"^vst_[0-9a-f]{12}_"))
    page.goto("/console/account/tokens")
    expect(page.get_by_label("Token", exact=True)).to_have_count(0)  # shown once only
    page.get_by_role("button", name="Revoke billing export").click()
    expect(page.get_by_role("status")).to_contain_text("revoked")


def test_admin_manages_users_and_reads_the_audit_log(page: Page, console: Console) -> None:
    log_in(page, console.emails["admin"])
    page.goto("/console/users")
    page.get_by_label("Email address").fill("nina.new@example.net")
    page.get_by_label("Name", exact=True).fill("Nina New")
    page.get_by_label("Role", exact=True).select_option("technician")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_role("status")).to_contain_text("Invited nina.new@example.net")
    row = page.get_by_role("row").filter(has_text="nina.new@example.net")
    expect(row).to_contain_text("invited")
    row.get_by_label("Role of nina.new@example.net").select_option("auditor")
    row.get_by_role("button", name="Set role").click()
    expect(page.get_by_role("status")).to_contain_text("is now auditor")
    page.get_by_role("button", name="Disable nina.new@example.net").click()
    expect(page.get_by_role("status")).to_contain_text("is disabled")

    # The last admin cannot disable itself: a clear refusal, nothing changed.
    page.get_by_role("button", name=f"Disable {console.emails['admin']}").click()
    expect(page.get_by_role("alert")).to_be_visible()

    page.goto("/console/audit")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    page.get_by_label("Action starts with").fill("user.")
    page.get_by_role("button", name="Filter").click()
    table = page.locator("#audit-table")
    expect(table).to_contain_text("user.invite")
    expect(table).to_contain_text("user.set_role")
    expect(table).to_contain_text("user.disable")
    expect(table).not_to_contain_text("auth.login")
    screenshot(page, "audit")


def _submit_and_status(page: Page, button: str, path: str) -> int:
    """Click a form's button; the status of the page the form posted to."""
    with page.expect_response(lambda answer: answer.url.endswith(path)) as answered:
        page.get_by_role("button", name=button).click()
    return answered.value.status


def test_own_account_changes_display_name_and_password(browser: Browser, console: Console) -> None:
    email = "pia.password@example.net"
    new_password = "four lamps over the harbour"
    with unit_of_work(console.sessions) as session:
        user_id = users_service.create_user(
            session=session,
            email=email,
            display_name="Pia Password",
            role="technician",
            password=PASSWORD,
            actor=users_service.Actor.system(),
        ).id
    here = browser.new_context(base_url=console.base_url)
    elsewhere = browser.new_context(base_url=console.base_url)
    try:
        other_page = elsewhere.new_page()
        log_in(other_page, email)
        page = here.new_page()
        log_in(page, email)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="My account").click()
        expect(page.get_by_role("heading", name="My account", exact=True)).to_be_visible()
        expect(page.locator("#account-email")).to_have_text(email)
        expect(page.locator("#account-role")).to_have_text("technician")
        expect(page.get_by_label("Current password")).to_have_attribute(
            "autocomplete", "current-password"
        )
        expect(page.get_by_label("New password", exact=True)).to_have_attribute(
            "autocomplete", "new-password"
        )

        # The display name: saved, shown back, audited.
        page.get_by_label("Display name").fill("Pia P. Renamed")
        assert _submit_and_status(page, "Save name", "/console/account/profile") == 200
        expect(page.get_by_role("status")).to_contain_text("Pia P. Renamed")
        expect(page.get_by_label("Display name")).to_have_value("Pia P. Renamed")

        # A wrong current password: the form again, a 422 that says why.
        page.get_by_label("Current password").fill("not my password at all")
        page.get_by_label("New password", exact=True).fill(new_password)
        page.get_by_label("New password again").fill(new_password)
        assert _submit_and_status(page, "Change password", "/console/account/password") == 422
        expect(page.get_by_role("alert")).to_contain_text("current password is wrong")
        # Two different new passwords.
        page.get_by_label("Current password").fill(PASSWORD)
        page.get_by_label("New password", exact=True).fill(new_password)
        page.get_by_label("New password again").fill(new_password + "!")
        assert _submit_and_status(page, "Change password", "/console/account/password") == 422
        expect(page.get_by_role("alert")).to_contain_text("differ")
        # A weak one (the browser's minlength stops it in the form: post it directly).
        token = page.locator('input[name="csrf_token"]').first.input_value()
        weak = page.request.post(
            "/console/account/password",
            form={
                "csrf_token": token,
                "current_password": PASSWORD,
                "new_password": "short",
                "new_password_again": "short",
            },
        )
        assert weak.status == 422
        assert "too_short" in weak.text()
        # Without the CSRF token: refused, nothing changed.
        forged = page.request.post(
            "/console/account/password",
            form={
                "current_password": PASSWORD,
                "new_password": new_password,
                "new_password_again": new_password,
            },
        )
        assert forged.status == 403

        page.get_by_label("Current password").fill(PASSWORD)
        page.get_by_label("New password", exact=True).fill(new_password)
        page.get_by_label("New password again").fill(new_password)
        assert _submit_and_status(page, "Change password", "/console/account/password") == 200
        expect(page.get_by_role("status")).to_contain_text("Your password is changed")
        # This session stays; the other browser's session was ended.
        expect(page.get_by_role("cell").filter(has_text="this one")).to_have_count(1)
        other_page.goto("/console/")
        expect(other_page).to_have_url(re.compile(r"/console/login"))

        with console.sessions() as session:
            actions = [
                entry.action
                for entry in users_service.list_audit(session=session, target=f"user:{user_id}")
            ]
        assert "user.update_profile" in actions
        assert actions.count("user.password_change") == 1

        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(re.compile(r"/console/login"))
        page.get_by_label("Email address").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_contain_text("wrong email or password")
        page.get_by_label("Password").fill(new_password)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(re.compile(r"/console/$"))
        page.goto("/console/account")
        expect(page.get_by_label("Display name")).to_have_value("Pia P. Renamed")
    finally:
        here.close()
        elsewhere.close()
