"""sd_notify against real unix datagram sockets, and the unit file that uses it."""

from __future__ import annotations

import configparser
import ctypes
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.adapters.systemd import SystemdNotifier

PROJECT_ROOT = Path(__file__).resolve().parents[3]
UNIT_FILE = PROJECT_ROOT / "deploy" / "systemd" / "voltstack-agent.service"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket playing systemd's part, and its NOTIFY_SOCKET value."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        yield sock, str(path)


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"voltstack-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        yield sock, "@" + name


def received(sock: socket.socket) -> bytes:
    return sock.recv(4096)


def test_ready_status_watchdog_stopping_datagrams(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, address = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.ready("reading 12 meters on 2 buses")
    assert received(sock) == b"READY=1\nSTATUS=reading 12 meters on 2 buses"
    assert notifier.status("uplink down, buffering 120 readings")
    assert received(sock) == b"STATUS=uplink down, buffering 120 readings"
    assert notifier.watchdog()
    assert received(sock) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert received(sock) == b"STOPPING=1"
    assert notifier.ready()
    assert received(sock) == b"READY=1"


def test_abstract_socket(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, address = abstract_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address})
    assert notifier.ready("up")
    assert received(sock) == b"READY=1\nSTATUS=up"
    assert notifier.watchdog()
    assert received(sock) == b"WATCHDOG=1"


def test_a_newline_in_the_status_cannot_inject_an_assignment(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, address = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address})
    notifier.status("meter M1 lost\nREADY=1")
    assert received(sock) == b"STATUS=meter M1 lost READY=1"


def test_status_text_is_utf8(notify_socket: tuple[socket.socket, str]) -> None:
    sock, address = notify_socket
    SystemdNotifier({"NOTIFY_SOCKET": address}).status("Zähler 12 — ok")
    assert received(sock) == "STATUS=Zähler 12 — ok".encode()


def test_without_notify_socket_everything_is_a_no_op(caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.status("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert notifier.watchdog_interval_s() is None
    assert caplog.records == []


def test_reads_os_environ_by_default(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, address = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert SystemdNotifier().watchdog()
    assert received(sock) == b"WATCHDOG=1"


def test_a_dead_socket_warns_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level("WARNING", logger="edge_agent.adapters.systemd"):
        assert not notifier.watchdog()
        assert not notifier.watchdog()
        assert not notifier.ready("x")
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "gone" in warnings[0].getMessage()


def test_a_non_unix_notify_socket_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert not notifier.watchdog()
    assert "vsock" in caplog.text


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "1500000", "WATCHDOG_PID": str(os.getpid())}, 0.75),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "sixty"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], interval: float | None) -> None:
    assert SystemdNotifier(environ).watchdog_interval_s() == interval


# --- the unit file ------------------------------------------------------------------------------


def read_unit() -> configparser.ConfigParser:
    # Unit files repeat keys (DeviceAllow=, …): keep the last, we check presence.
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT_FILE, encoding="utf-8")
    return parser


def unit_values(key: str) -> list[str]:
    """Every value of a repeated key in [Service], in order."""
    values, section = [], ""
    for raw in UNIT_FILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line.startswith(f"{key}="):
            values.append(line.partition("=")[2])
    return values


def test_unit_file_essentials() -> None:
    unit = read_unit()
    assert set(unit.sections()) >= {"Unit", "Service", "Install"}
    service = unit["Service"]
    expected = {
        "Type": "notify",
        "ExecStart": "/usr/bin/env voltstack-agent run --config /etc/voltstack/agent.yaml",
        "WatchdogSec": "60",
        "Restart": "on-failure",
        "RestartSec": "5",
        "User": "voltstack",
        "Group": "voltstack",
        "SupplementaryGroups": "dialout",
        "StateDirectory": "voltstack-agent",
        "ConfigurationDirectory": "voltstack",
        "LoadCredential": "mqtt-password:/etc/voltstack/mqtt-password",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
        "DevicePolicy": "closed",
    }
    for key, value in expected.items():
        assert service.get(key) == value, key
    assert "TimeoutStopSec" in service
    devices = unit_values("DeviceAllow")
    for group in ("ttyUSB", "ttyACM", "ttyS"):
        assert f"char-{group} rw" in devices
    # Serial ports need no private /dev, and a watchdog needs systemd to hear us.
    assert service.get("PrivateDevices", "no") == "no"
    assert service.get("NotifyAccess", "main") == "main"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_watchdog_ping_interval_fits_the_unit_watchdog() -> None:
    watchdog_s = int(read_unit()["Service"]["WatchdogSec"])
    notifier = SystemdNotifier({"WATCHDOG_USEC": str(watchdog_s * 1_000_000)})
    assert notifier.watchdog_interval_s() == watchdog_s / 2


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks ExecStart's binary: put a voltstack-agent on a PATH it sees.
    unit = tmp_path / UNIT_FILE.name
    unit.write_text(UNIT_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        # This machine is not booted with systemd: its own units may not load.
        if UNIT_FILE.name in line or "Unknown key" in line or "nknown lvalue" in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


MDWE_PROBE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(77)
import mmap
try:  # the probe itself: W+X anonymous memory must be refused now
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    pass
else:
    sys.exit(78)
import sqlite3, ssl, json
import fastcodec
from fastcodec import crc, modbus
import pydantic, yaml, paho.mqtt.client, serial
import edge_agent.config, edge_agent.adapters.sqlite_buffer, edge_agent.adapters.mqtt_uplink
import edge_agent.adapters.health, edge_agent.adapters.systemd, edge_agent.logs
assert fastcodec.IMPLEMENTATION == "cython", fastcodec.IMPLEMENTATION
assert crc.IMPLEMENTATION == "cython" and crc.crc16_modbus(b"123456789") == 0x4B37
db = sqlite3.connect(":memory:")
db.execute("create table t (x)")
db.execute("insert into t values (1)")
ssl.create_default_context()
print("ok", fastcodec.IMPLEMENTATION)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="Linux prctl")
def test_agent_imports_under_memory_deny_write_execute(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes must not break CPython, its Cython modules or pydantic-core.

    Linux ≥ 6.3 offers the same rule per process (PR_SET_MDWE) that systemd
    enforces with seccomp: no memory both writable and executable, no
    executable permission added later. Nothing of ours JITs, so it must work.
    """
    if os.environ.get("FASTCODEC_NO_EXTENSIONS"):
        pytest.skip("FASTCODEC_NO_EXTENSIONS=1: pure build")
    ctypes.CDLL(None)  # the probe needs a libc
    result = subprocess.run(
        [sys.executable, "-c", MDWE_PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
    )
    if result.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok cython"
