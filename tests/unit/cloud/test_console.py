"""The console's pure parts: the CSRF derivation, redirects after login, the live diff."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloud.console import read_models
from cloud.console.read_models import (
    LiveValue,
    Sparkline,
    changed_values,
    chart_aggregate,
    format_value,
)
from cloud.console.router import _safe_next
from cloud.console.security import csrf_token_for, login_csrf_token
from cloud.core.config import Settings

SECRET = "s" * 40
AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def settings() -> Settings:
    return Settings(environment="test", secret_key=SECRET)


def test_the_csrf_token_is_the_documented_hmac_of_the_session_token() -> None:
    expected = hmac.new(SECRET.encode(), b"vs-csrf:session-token", hashlib.sha256).digest()
    token = csrf_token_for(settings(), "session-token")
    assert token == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
    assert token != csrf_token_for(settings(), "another-session")
    assert token != login_csrf_token(settings(), "session-token")  # separate purposes


@pytest.mark.parametrize(
    ("offered", "landing"),
    [
        ("/console/meters/LGZ1?x=1", "/console/meters/LGZ1?x=1"),
        (None, "/console/"),
        ("https://evil.example/console/", "/console/"),
        ("//evil.example/console/", "/console/"),
        ("/api/v1/gateways", "/console/"),
        ("/console/login?next=/console/", "/console/"),
        ("/console\\@evil.example", "/console/"),
    ],
)
def test_after_login_only_console_pages_are_a_destination(
    offered: str | None, landing: str
) -> None:
    assert _safe_next(offered) == landing


def value(obis: str, reading: float, at: datetime = AT, unit: str = "W") -> LiveValue:
    return LiveValue(obis=obis, name=None, value=reading, unit=unit, at=at, quality=0)


def test_the_live_diff_keeps_new_and_changed_values_only() -> None:
    before = {v.obis: v for v in (value("1-0:1.7.0", 10.0), value("1-0:32.7.0", 230.0, unit="V"))}
    now = [
        value("1-0:1.7.0", 10.0),  # unchanged
        value("1-0:32.7.0", 230.0, AT + timedelta(seconds=2), "V"),  # same value, newer reading
        value("1-0:31.7.0", 4.5, unit="A"),  # new quantity
    ]
    assert [v.obis for v in changed_values(before, now)] == ["1-0:32.7.0", "1-0:31.7.0"]
    assert changed_values({}, []) == []


def test_cumulative_registers_chart_their_last_value_others_their_mean() -> None:
    assert chart_aggregate("1-0:1.8.0") == "last"
    assert chart_aggregate("1-0:1.7.0") == "mean"
    assert chart_aggregate("not an obis code") == "mean"


def test_values_read_like_numbers() -> None:
    assert format_value(4321.5) == "4,321.5"
    assert format_value(12036.0) == "12,036"
    assert format_value(-0.0001) == "0"
    assert format_value(0.125) == "0.125"


def test_the_sparkline_spans_its_box() -> None:
    line = Sparkline(per_minute=(0, 5, 10), start=AT)
    assert line.total == 15 and line.peak == 10
    assert line.svg_points(width=100, height=10) == "0.0,9.0 50.0,5.0 100.0,1.0"
    assert Sparkline(per_minute=(), start=AT).svg_points() == ""


def test_dashboard_cache_computes_once_per_ttl_and_view(monkeypatch: pytest.MonkeyPatch) -> None:
    computed: list[tuple[bool, bool]] = []

    def fleet_dashboard(**kwargs: Any) -> object:
        computed.append((kwargs["include_dead_letters"], kwargs["include_events"]))
        return object()

    monkeypatch.setattr(read_models, "fleet_dashboard", fleet_dashboard)
    now = [100.0]
    cache = read_models.DashboardCache(ttl_s=5.0, clock=lambda: now[0])
    ask = dict(session=None, store=None, now=datetime.now(UTC))
    first = cache.get(**ask, include_dead_letters=True, include_events=True)
    assert cache.get(**ask, include_dead_letters=True, include_events=True) is first
    other = cache.get(**ask, include_dead_letters=False, include_events=False)
    assert other is not first  # another role's view is its own
    now[0] += 5.0
    assert cache.get(**ask, include_dead_letters=True, include_events=True) is not first
    assert computed == [(True, True), (False, False), (True, True)]
