"""InfluxStore specifics on the real influxd (1.6, auth on): credentials, gzip,
4xx without retries, bounded retries, and the influxdb-client (2.x/3.x) write path.

The 2.x path is the one place these tests use a stub server: no InfluxDB 2.x or
3.x is installable here and InfluxDB 1.6 does not serve ``/api/v2/write``
(1.8+ does; ``test_influxd_1_6_has_no_v2_write_api`` checks it), so
`InfluxClientStore` writes to a tiny local HTTP server that records each
request and checks it is what InfluxDB 2.x expects. Everything on the v1 path
runs against the real influxd.
"""

from __future__ import annotations

import gzip
import http.server
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from cloud.timeseries import (
    InfluxClientStore,
    InfluxStore,
    PointsRejected,
    RetryPolicy,
    StoreAuthError,
    StoreUnavailable,
)
from cloud.timeseries.store import to_ms
from fastcodec.obis import parse_obis
from fastcodec.uplink import Batch, Reading
from tests.servers import InfluxServer

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05, max_total_s=3.0)


def one_batch(meter: str = "M", value: float = 1.5) -> Batch:
    code = parse_obis("1-0:1.8.0")
    return Batch.from_readings("gw", 1, 0, [Reading(meter, code, to_ms(T0), value, "kWh", 0)])


@pytest.fixture
def database(influxd: InfluxServer) -> Iterator[str]:
    name = f"tsi_{secrets.token_hex(6)}"
    yield name
    influxd.query(f'DROP DATABASE "{name}"')


def admin_store(influxd: InfluxServer, database: str, **options: object) -> InfluxStore:
    return InfluxStore(
        influxd.url,
        database,
        username=influxd.admin_username,
        password=influxd.admin_password,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("gzip_writes", [True, False], ids=["gzip", "plain"])
def test_writes_arrive_with_and_without_gzip(
    influxd: InfluxServer, database: str, gzip_writes: bool
) -> None:
    store = admin_store(influxd, database, gzip_writes=gzip_writes)
    assert store.write_batch(one_batch()) == 1
    rows = influxd.query('SELECT "value" FROM "reading"', database)
    assert rows["results"][0]["series"][0]["values"] == [[to_ms(T0) * 1_000_000, 1.5]]  # type: ignore[index]
    store.close()


def test_large_batches_are_split_into_several_writes(influxd: InfluxServer, database: str) -> None:
    code = parse_obis("1-0:1.7.0")
    readings = [Reading("M", code, to_ms(T0) + i * 1000, float(i), "W", 0) for i in range(25_000)]
    store = admin_store(influxd, database)
    assert store.write_batch(Batch.from_readings("gw", 1, 0, readings)) == 25_000
    assert store.count() == 25_000
    store.close()


def test_wrong_password_is_an_auth_error_without_retries(
    influxd: InfluxServer, database: str
) -> None:
    store = InfluxStore(
        influxd.url, database, username=influxd.admin_username, password="wrong", retry=FAST_RETRY
    )
    started = time.monotonic()
    with pytest.raises(StoreAuthError) as raised:
        store.write_batch(one_batch())
    assert raised.value.status == 401
    assert time.monotonic() - started < 1.0
    assert store.ping()  # /ping needs no credentials: the server is up
    store.close()


def test_a_token_reaches_the_server_as_a_token_header(influxd: InfluxServer, database: str) -> None:
    # InfluxDB 1.x knows no tokens: it answers 401, which proves the header went out.
    store = InfluxStore(influxd.url, database, token="not-a-1x-credential", retry=FAST_RETRY)
    with pytest.raises(StoreAuthError):
        store.count()
    store.close()


def test_a_bad_point_is_rejected_at_once(influxd: InfluxServer, database: str) -> None:
    influxd.create_database(database)
    # "quality" already holds floats: our integer quality is a field type conflict (400).
    influxd.write(database, f"reading,meter=M,obis=1-0:1.8.0 quality=0.5 {to_ms(T0) * 1_000_000}")
    store = admin_store(influxd, database, retry=FAST_RETRY)
    started = time.monotonic()
    with pytest.raises(PointsRejected) as raised:
        store.write_batch(one_batch())
    assert raised.value.status == 400
    assert "conflict" in str(raised.value)
    assert time.monotonic() - started < 1.0
    # What line protocol cannot carry is refused before anything is sent.
    with pytest.raises(PointsRejected) as refused:
        store.write_batch(one_batch(meter="ends-in\\"))
    assert refused.value.status is None
    store.close()


def test_retries_are_bounded_in_attempts_and_time() -> None:
    with socket_closed() as url:
        store = InfluxStore(url, "db", retry=RetryPolicy(max_attempts=50, max_total_s=0.5))
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            store.write_batch(one_batch())
        assert time.monotonic() - started < 2.0
        assert 1 <= raised.value.attempts < 50
        store.close()


class socket_closed:
    """A URL on a loopback port nobody listens on."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return f"http://127.0.0.1:{probe.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        return None


def test_rollups_live_in_their_own_retention_policies(influxd: InfluxServer, database: str) -> None:
    store = admin_store(influxd, database)
    store.write_batch(one_batch())
    store.downsample(T0 + timedelta(days=1), since=T0)
    policies = influxd.query(f'SHOW RETENTION POLICIES ON "{database}"')
    names = {row[0] for row in policies["results"][0]["series"][0]["values"]}  # type: ignore[index]
    assert {"autogen", "vs_1h", "vs_1d"} <= names
    hourly = influxd.query(f'SELECT "n", "closing" FROM "{database}"."vs_1h"."reading_1h"')
    assert hourly["results"][0]["series"][0]["values"] == [[to_ms(T0) * 1_000_000, 1, 1.5]]  # type: ignore[index]
    store.close()


def test_influxd_1_6_has_no_v2_write_api(influxd: InfluxServer) -> None:
    request = urllib.request.Request(f"{influxd.url}/api/v2/write", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)
    assert raised.value.code == 404
    raised.value.close()


# --- the influxdb-client (2.x/3.x) write path, against a recording stub ------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StubInflux2:
    """Answers POST /api/v2/write with the next status in `statuses` (then 204)."""

    statuses: list[int] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)


@pytest.fixture
def stub() -> Iterator[tuple[StubInflux2, str]]:
    state = StubInflux2()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(Recorded("POST", self.path, dict(self.headers), body))
            status = state.statuses.pop(0) if state.statuses else 204
            payload = b"" if status == 204 else b'{"code":"invalid","message":"stub says no"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def client_store(url: str) -> InfluxClientStore:
    return InfluxClientStore(url, "meters/autogen", org="utility", token="s3cret", retry=FAST_RETRY)


def test_client_path_sends_a_v2_write(stub: tuple[StubInflux2, str]) -> None:
    state, url = stub
    store = client_store(url)
    assert store.write_batch(one_batch()) == 1
    [request] = state.requests
    path, _, query = request.path.partition("?")
    assert path == "/api/v2/write"
    assert sorted(query.split("&")) == ["bucket=meters%2Fautogen", "org=utility", "precision=ns"]
    assert request.headers["Authorization"] == "Token s3cret"
    assert request.headers["Content-Encoding"] == "gzip"
    line = f'reading,meter=M,obis=1-0:1.8.0 quality=0i,unit="kWh",value=1.5 {to_ms(T0) * 10**6}'
    assert gzip.decompress(request.body).rstrip(b"\n") == line.encode()
    store.close()


def test_client_path_retries_5xx_and_429_but_not_400(stub: tuple[StubInflux2, str]) -> None:
    state, url = stub
    store = client_store(url)
    state.statuses[:] = [503, 429]
    assert store.write_batch(one_batch()) == 1
    assert len(state.requests) == 3
    state.requests.clear()
    state.statuses[:] = [400]
    with pytest.raises(PointsRejected) as raised:
        store.write_batch(one_batch())
    assert raised.value.status == 400 and "stub says no" in str(raised.value)
    assert len(state.requests) == 1
    state.requests.clear()
    state.statuses[:] = [500] * 10
    with pytest.raises(StoreUnavailable) as unavailable:
        store.write_batch(one_batch())
    assert unavailable.value.attempts == len(state.requests) == FAST_RETRY.max_attempts
    store.close()
