"""The agent's local health endpoint: status JSON, Prometheus metrics, a liveness probe.

Strategy: a stdlib `ThreadingHTTPServer` in a daemon thread — a gateway has no
web framework and needs none for three GET routes. The server owns no state:
every request calls the `snapshot` function the service hands in and renders
what it returns, so a scrape never races the poll cycle beyond what the
snapshot itself copies.

Routes:
    GET /status   the snapshot as JSON (what `voltstack-agent status` prints);
    GET /metrics  Prometheus text exposition format 0.0.4 (docs/operations.md
                  lists every metric with its unit);
    GET /healthz  200 "ok" while the snapshot says the agent runs, else 503;
    anything else 404.

Invariants: a failing snapshot or renderer gives the client a 500 with a
one-line JSON error and the log a traceback — never the reverse; request
lines go to this module's logger at DEBUG, never to stderr. The default bind
address is loopback: exposing the endpoint to the site network is an explicit
choice (`host="0.0.0.0"`).

The snapshot shape (every key always present):
    {"gateway": str, "version": str, "running": bool, "uptime_s": float,
     "uplink": {"connected", "connects", "disconnects", "batches_sent",
                "batches_acknowledged", "readings_acknowledged",
                "last_puback_at": epoch s | None, "last_error", "in_flight"},
     "buffer": {"depth", "oldest_age_s": s | None, "in_flight", "bytes", "drops_total",
             "events", "events_dropped"},
     "buses": [{"name", "requests", "answers", "timeouts", "garbled", "exceptions",
                "skipped_breaker_open", "noise_bytes", "utilisation": 0..1}],
     "meters": [{"serial", "bus", "reads_ok", "reads_failed",
                 "last_read_at": epoch s | None, "state": "ok" | "failing" | "lost"}]}
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["METER_STATES", "METRICS_CONTENT_TYPE", "HealthServer", "render_metrics"]

logger = logging.getLogger(__name__)

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METER_STATES = ("ok", "failing", "lost")
_PREFIX = "voltstack_agent_"

Snapshot = Mapping[str, Any]


# --- Prometheus text format 0.0.4 ---------------------------------------------------------------


def _escape_label(value: object) -> str:
    # Exposition format 0.0.4: in label values, backslash, double quote and
    # line feed are escaped as \\, \" and \n.
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    # In HELP lines only backslash and line feed are escaped.
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Exposition:
    """Collects metric families in order and renders them."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, object], float | int | bool | None]],
    ) -> None:
        """Add one family; samples whose value is None (unknown yet) are left out."""
        full = _PREFIX + name
        self._lines.append(f"# HELP {full} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            if labels:
                rendered = ",".join(f'{key}="{_escape_label(val)}"' for key, val in labels.items())
                self._lines.append(f"{full}{{{rendered}}} {_number(value)}")
            else:
                self._lines.append(f"{full} {_number(value)}")

    def single(self, name: str, kind: str, help_text: str, value: float | int | None) -> None:
        self.family(name, kind, help_text, [({}, value)])

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def render_metrics(snapshot: Snapshot) -> str:
    """Render a health snapshot in the Prometheus text exposition format 0.0.4.

    Args:
        snapshot: the agent's health snapshot (see the module doc for its shape).

    Returns:
        The exposition text, one HELP and one TYPE line per family; a sample
        whose value is not known yet (no PUBACK so far, empty buffer age) is
        left out rather than reported as 0.
    """
    out = _Exposition()
    uplink, buffer = snapshot["uplink"], snapshot["buffer"]
    buses, meters = snapshot["buses"], snapshot["meters"]

    out.family(
        "info",
        "gauge",
        "Always 1; the labels name the gateway and the agent version.",
        [({"gateway": snapshot["gateway"], "version": snapshot["version"]}, 1)],
    )
    out.single(
        "running", "gauge", "1 while the agent's poll cycle runs.", int(bool(snapshot["running"]))
    )
    out.single("uptime_seconds", "gauge", "Seconds since the agent started.", snapshot["uptime_s"])

    out.single(
        "uplink_connected",
        "gauge",
        "1 while the MQTT connection to the broker is up.",
        int(bool(uplink["connected"])),
    )
    out.single(
        "uplink_connects_total", "counter", "MQTT connections established.", uplink["connects"]
    )
    out.single(
        "uplink_disconnects_total", "counter", "MQTT connections lost.", uplink["disconnects"]
    )
    out.single(
        "uplink_batches_sent_total",
        "counter",
        "Reading batches published (QoS 1).",
        uplink["batches_sent"],
    )
    out.single(
        "uplink_batches_acknowledged_total",
        "counter",
        "Reading batches the broker acknowledged (PUBACK).",
        uplink["batches_acknowledged"],
    )
    out.single(
        "uplink_readings_acknowledged_total",
        "counter",
        "Readings in acknowledged batches (deleted from the buffer).",
        uplink["readings_acknowledged"],
    )
    out.single(
        "uplink_in_flight_batches",
        "gauge",
        "Batches published and not acknowledged yet.",
        uplink["in_flight"],
    )
    out.single(
        "uplink_last_puback_timestamp_seconds",
        "gauge",
        "Unix time of the last PUBACK (absent until the first one).",
        uplink["last_puback_at"],
    )

    out.single(
        "buffer_readings", "gauge", "Readings waiting in the buffer (depth).", buffer["depth"]
    )
    out.single(
        "buffer_oldest_reading_age_seconds",
        "gauge",
        "Age of the oldest reading in the buffer (absent when it is empty).",
        buffer["oldest_age_s"],
    )
    out.single(
        "buffer_in_flight_readings",
        "gauge",
        "Buffered readings leased to batches in flight.",
        buffer["in_flight"],
    )
    out.single("buffer_size_bytes", "gauge", "Size of the buffer's files on disk.", buffer["bytes"])
    out.single(
        "buffer_dropped_readings_total",
        "counter",
        "Readings dropped, oldest first, because the buffer hit its limits.",
        buffer["drops_total"],
    )
    out.single(
        "buffer_events", "gauge", "Events waiting in the buffer for their PUBACK.", buffer["events"]
    )
    out.single(
        "buffer_dropped_events_total",
        "counter",
        "Events dropped, oldest first, because more than buffer.max_events were waiting.",
        buffer["events_dropped"],
    )

    bus_counters = (
        ("requests", "bus_requests_total", "Requests sent on the bus."),
        ("answers", "bus_answers_total", "Valid answers received on the bus."),
        ("timeouts", "bus_timeouts_total", "Requests that got no answer in time."),
        ("garbled", "bus_garbled_frames_total", "Answers with a bad CRC or framing."),
        ("exceptions", "bus_exception_responses_total", "Modbus exception responses."),
        (
            "skipped_breaker_open",
            "bus_skipped_breaker_open_total",
            "Requests skipped because the device's circuit breaker was open.",
        ),
        ("noise_bytes", "bus_noise_bytes_total", "Bytes received outside any frame."),
    )
    for key, name, help_text in bus_counters:
        out.family(name, "counter", help_text, [({"bus": b["name"]}, b[key]) for b in buses])
    out.family(
        "bus_utilisation_ratio",
        "gauge",
        "Share of the time the line carried characters since the bus was opened (0 to 1).",
        [({"bus": b["name"]}, b["utilisation"]) for b in buses],
    )

    out.family(
        "meter_reads_total",
        "counter",
        "Meter reads by result.",
        [
            sample
            for m in meters
            for sample in (
                ({"meter": m["serial"], "bus": m["bus"], "result": "ok"}, m["reads_ok"]),
                ({"meter": m["serial"], "bus": m["bus"], "result": "failed"}, m["reads_failed"]),
            )
        ],
    )
    out.family(
        "meter_last_read_timestamp_seconds",
        "gauge",
        "Unix time of the meter's last successful read (absent until the first one).",
        [({"meter": m["serial"], "bus": m["bus"]}, m["last_read_at"]) for m in meters],
    )
    out.family(
        "meter_state",
        "gauge",
        "1 for the meter's current state (ok, failing, lost), 0 for the others.",
        [
            ({"meter": m["serial"], "bus": m["bus"], "state": state}, int(m["state"] == state))
            for m in meters
            for state in METER_STATES
        ],
    )
    return out.text()


# --- HTTP ---------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    snapshot: Callable[[], Snapshot]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints tracebacks to stderr; ours go to the log.
        logger.warning("health endpoint: error serving %s", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "voltstack-agent"
    protocol_version = "HTTP/1.0"
    timeout = 10  # a stalled client must not hold a thread forever

    def do_GET(self) -> None:  # http.server names it
        path = urlsplit(self.path).path
        try:
            if path == "/status":
                body = json.dumps(dict(self.server.snapshot()), default=str).encode()
                self._reply(200, "application/json", body)
            elif path == "/metrics":
                self._reply(
                    200, METRICS_CONTENT_TYPE, render_metrics(self.server.snapshot()).encode()
                )
            elif path == "/healthz":
                running = bool(self.server.snapshot()["running"])
                self._reply(
                    200 if running else 503,
                    "text/plain; charset=utf-8",
                    b"ok\n" if running else b"not running\n",
                )
            else:
                self._reply(
                    404,
                    "application/json",
                    json.dumps(
                        {"error": f"no route {path!r}: try /status, /metrics or /healthz"}
                    ).encode(),
                )
        except Exception as exc:
            logger.exception("health endpoint: %s failed", path)
            message = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            self._reply(500, "application/json", json.dumps({"error": message}).encode())

    def _reply(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("health endpoint: %s " + format, self.address_string(), *args)


class HealthServer:
    """The agent's health endpoint in a daemon thread (see the module doc).

    Args:
        snapshot: returns the agent's health snapshot; called once per request,
            from the server's threads, so it must be thread-safe.
        host: the address to bind; loopback by default.
        port: the TCP port; 0 picks a free one (read it back from `port`).
    """

    def __init__(
        self, snapshot: Callable[[], Snapshot], host: str = "127.0.0.1", port: int = 9610
    ) -> None:
        self._snapshot = snapshot
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port once started (the ephemeral one for port 0), else the asked one."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._port

    @property
    def url(self) -> str:
        """The endpoint's base URL, e.g. http://127.0.0.1:9610."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve in a daemon thread.

        Raises:
            OSError: the address cannot be bound (port in use, no such address).
        """
        if self._server is not None:
            return
        server_class = _Server6 if ":" in self._host else _Server
        server = server_class((self._host, self._port), _Handler)
        server.snapshot = self._snapshot
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="voltstack-health",
            daemon=True,
        )
        self._thread.start()
        logger.info("health endpoint on %s", self.url)

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
