"""The health endpoint: routes, Prometheus exposition, errors, over real loopback HTTP."""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edge_agent.adapters.health import METRICS_CONTENT_TYPE, HealthServer, render_metrics


def make_snapshot(**overrides: Any) -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "gateway": "gw-0001",
        "version": "0.1.0",
        "running": True,
        "uptime_s": 3600.5,
        "uplink": {
            "connected": True,
            "connects": 2,
            "disconnects": 1,
            "batches_sent": 40,
            "batches_acknowledged": 39,
            "readings_acknowledged": 3900,
            "last_puback_at": 1_767_225_600.25,
            "last_error": "",
            "in_flight": 1,
        },
        "buffer": {
            "depth": 120,
            "oldest_age_s": 42.5,
            "in_flight": 100,
            "bytes": 65536,
            "drops_total": 3,
            "events": 2,
            "events_dropped": 1,
        },
        "buses": [
            {
                "name": "rs485-1",
                "requests": 500,
                "answers": 480,
                "timeouts": 15,
                "garbled": 4,
                "exceptions": 1,
                "skipped_breaker_open": 7,
                "noise_bytes": 12,
                "utilisation": 0.125,
            }
        ],
        "meters": [
            {
                "serial": "M1",
                "bus": "rs485-1",
                "reads_ok": 90,
                "reads_failed": 2,
                "last_read_at": 1_767_225_590.0,
                "state": "ok",
            },
            {
                "serial": "M2",
                "bus": "rs485-1",
                "reads_ok": 0,
                "reads_failed": 12,
                "last_read_at": None,
                "state": "lost",
            },
        ],
    }
    snapshot.update(overrides)
    return snapshot


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[], dict[str, Any]]], HealthServer]]:
    servers: list[HealthServer] = []

    def start(snapshot: Callable[[], dict[str, Any]]) -> HealthServer:
        server = HealthServer(snapshot, port=0)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


# A sample line of the 0.0.4 text format: name, optional labels, value.
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(
    rf"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{{{LABEL}(?:,{LABEL})*\}})? "
    r"(?P<value>-?[0-9.e+-]+|NaN|\+Inf|-Inf)$"
)


def check_exposition(text: str) -> dict[str, str]:
    """Validate the text format line by line; return each family's type."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helps, f"two HELP lines for {name}"
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in {"counter", "gauge"}
            assert name in helps, f"TYPE before HELP for {name}"
            assert name not in types
            types[name] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a valid sample line: {line!r}"
            assert match["name"] in types, f"sample before its TYPE: {line!r}"
            float(match["value"])
    for name, kind in types.items():
        assert name.startswith("voltstack_agent_")
        assert name.endswith("_total") == (kind == "counter"), name
    return types


def test_status_returns_the_snapshot_as_json(serve: Any) -> None:
    snapshot = make_snapshot()
    server = serve(lambda: snapshot)
    assert server.port > 0
    code, content_type, body = get(f"{server.url}/status")
    assert (code, content_type) == (200, "application/json")
    assert json.loads(body) == snapshot


def test_metrics_exposition(serve: Any) -> None:
    server = serve(make_snapshot)
    code, content_type, body = get(f"{server.url}/metrics")
    assert (code, content_type) == (200, METRICS_CONTENT_TYPE)
    types = check_exposition(body)
    assert types["voltstack_agent_bus_utilisation_ratio"] == "gauge"
    assert types["voltstack_agent_meter_reads_total"] == "counter"
    lines = set(body.splitlines())
    for expected in (
        'voltstack_agent_info{gateway="gw-0001",version="0.1.0"} 1',
        "voltstack_agent_running 1",
        "voltstack_agent_uptime_seconds 3600.5",
        "voltstack_agent_uplink_connected 1",
        "voltstack_agent_uplink_connects_total 2",
        "voltstack_agent_uplink_batches_acknowledged_total 39",
        "voltstack_agent_uplink_last_puback_timestamp_seconds 1767225600.25",
        "voltstack_agent_uplink_in_flight_batches 1",
        "voltstack_agent_buffer_readings 120",
        "voltstack_agent_buffer_oldest_reading_age_seconds 42.5",
        "voltstack_agent_buffer_size_bytes 65536",
        "voltstack_agent_buffer_dropped_readings_total 3",
        "voltstack_agent_buffer_events 2",
        "voltstack_agent_buffer_dropped_events_total 1",
        'voltstack_agent_bus_requests_total{bus="rs485-1"} 500',
        'voltstack_agent_bus_timeouts_total{bus="rs485-1"} 15',
        'voltstack_agent_bus_skipped_breaker_open_total{bus="rs485-1"} 7',
        'voltstack_agent_bus_utilisation_ratio{bus="rs485-1"} 0.125',
        'voltstack_agent_meter_reads_total{meter="M1",bus="rs485-1",result="ok"} 90',
        'voltstack_agent_meter_reads_total{meter="M1",bus="rs485-1",result="failed"} 2',
        'voltstack_agent_meter_reads_total{meter="M2",bus="rs485-1",result="failed"} 12',
        'voltstack_agent_meter_last_read_timestamp_seconds{meter="M1",bus="rs485-1"} 1767225590.0',
        'voltstack_agent_meter_state{meter="M2",bus="rs485-1",state="lost"} 1',
        'voltstack_agent_meter_state{meter="M2",bus="rs485-1",state="ok"} 0',
    ):
        assert expected in lines, expected
    # M2 was never read: no timestamp rather than a misleading 0.
    assert 'meter_last_read_timestamp_seconds{meter="M2"' not in body


def test_unknown_values_are_left_out_not_zero() -> None:
    snapshot = make_snapshot()
    snapshot["uplink"]["last_puback_at"] = None
    snapshot["buffer"]["oldest_age_s"] = None
    text = render_metrics(snapshot)
    check_exposition(text)
    assert "# TYPE voltstack_agent_uplink_last_puback_timestamp_seconds gauge" in text
    assert "\nvoltstack_agent_uplink_last_puback_timestamp_seconds " not in text
    assert "\nvoltstack_agent_buffer_oldest_reading_age_seconds " not in text


def test_label_values_are_escaped() -> None:
    snapshot = make_snapshot(buses=[], gateway='gw "north"')
    snapshot["meters"] = [dict(snapshot["meters"][0], serial='a\\b"c\nd', bus="x")]
    text = render_metrics(snapshot)
    check_exposition(text)
    assert 'voltstack_agent_info{gateway="gw \\"north\\"",version="0.1.0"} 1' in text
    assert 'meter_reads_total{meter="a\\\\b\\"c\\nd",bus="x",result="ok"} 90' in text
    # No family of buses, yet HELP and TYPE still there: the scrape keeps its shape.
    assert "# TYPE voltstack_agent_bus_requests_total counter" in text


def test_special_float_values() -> None:
    snapshot = make_snapshot()
    snapshot["buses"][0]["utilisation"] = float("nan")
    snapshot["uptime_s"] = float("inf")
    text = render_metrics(snapshot)
    check_exposition(text)
    assert 'voltstack_agent_bus_utilisation_ratio{bus="rs485-1"} NaN' in text
    assert "voltstack_agent_uptime_seconds +Inf" in text


def test_healthz_follows_running(serve: Any) -> None:
    state = {"running": True}
    server = serve(lambda: make_snapshot(running=state["running"]))
    assert get(f"{server.url}/healthz")[::2] == (200, "ok\n")
    state["running"] = False
    assert get(f"{server.url}/healthz")[::2] == (503, "not running\n")


def test_unknown_route_is_404_and_query_strings_are_ignored(serve: Any) -> None:
    server = serve(make_snapshot)
    code, _, body = get(f"{server.url}/nope")
    assert code == 404
    assert "/status" in json.loads(body)["error"]
    assert get(f"{server.url}/status?pretty=1")[0] == 200


def test_failing_snapshot_gives_a_one_line_500_and_a_logged_traceback(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("buffer locked\nsecond line")

    server = serve(broken)
    with caplog.at_level(logging.ERROR, logger="edge_agent.adapters.health"):
        code, content_type, body = get(f"{server.url}/metrics")
    assert (code, content_type) == (500, "application/json")
    assert "\n" not in body
    assert "Traceback" not in body
    assert json.loads(body) == {"error": "RuntimeError: buffer locked second line"}
    assert any(r.exc_info and "/metrics" in r.getMessage() for r in caplog.records)


def test_malformed_snapshot_is_a_500_too(serve: Any) -> None:
    server = serve(lambda: {"running": True})
    code, _, body = get(f"{server.url}/metrics")
    assert code == 500
    assert json.loads(body)["error"].startswith("KeyError")


def test_requests_are_logged_at_debug_not_on_stderr(
    serve: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    server = serve(make_snapshot)
    with caplog.at_level(logging.DEBUG, logger="edge_agent.adapters.health"):
        get(f"{server.url}/status")
        get(f"{server.url}/missing")
    messages = [r for r in caplog.records if "GET /status" in r.getMessage()]
    assert messages
    assert messages[0].levelno == logging.DEBUG
    assert capfd.readouterr().err == ""


def test_start_stop_lifecycle() -> None:
    server = HealthServer(make_snapshot, port=0)
    assert server.port == 0
    with server:
        port = server.port
        assert port > 0
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    server.stop()  # twice is fine
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_port_in_use_raises_on_start() -> None:
    with HealthServer(make_snapshot, port=0) as first:
        second = HealthServer(make_snapshot, port=first.port)
        with pytest.raises(OSError):
            second.start()
