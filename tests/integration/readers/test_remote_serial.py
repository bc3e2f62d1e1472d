"""Meters behind a remote serial server: socket:// URLs (socat as the server) and
rfc2217:// URLs (Debian's ser2net 4, a real RFC 2217 server, as the server).

ser2net's serial side is the simulated bus's pty. A pty refuses PARENB on this
kernel (see firmware_bridge/links.py), so the connector runs 9600n81: the
character format is not what these tests are about; that the line settings a
client sends over RFC 2217 reach the port is (checked in the pty's termios).
A pty has no modem lines either: ser2net cannot set DTR on it and leaves
pyserial's SET-CONTROL unanswered, so the URLs carry pyserial's
`?ign_set_control` (a real port behind ser2net does not need it).
"""

from __future__ import annotations

import os
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.adapters.modbus_reader import ModbusMeterReader
from edge_agent.profiles import load_profile
from firmware_bridge.bus import ModbusBus, PolledDevice
from firmware_bridge.links import SerialLink
from simulators.clock import SimClock
from simulators.modbus import ModbusMeter, ModbusRtuBus
from simulators.physics import MeterPhysics
from simulators.runtime import BackgroundLoop
from tests.servers import free_port

pytestmark = pytest.mark.integration

START_S = 1_767_225_600.0


@pytest.fixture(scope="module")
def bus() -> Iterator[ModbusRtuBus]:
    clock = SimClock(start=START_S + 8 * 3600, speed=1e-9)
    profile = load_profile("eastron-sdm630")
    meter = ModbusMeter(profile, 5, "SDM-5", MeterPhysics(seed=5, epoch_s=START_S), clock)
    with BackgroundLoop() as loop:
        sim = ModbusRtuBus([meter], timing=False)
        loop.run(sim.start())
        yield sim
        loop.run(sim.stop())


def read_energy(port: str, bus: ModbusRtuBus) -> None:
    meter = bus.meters[5]
    link = SerialLink(port, baudrate=9600)
    try:
        device = PolledDevice(meter.serial, 5, timeout_s=1.0, retries=1)
        result = ModbusMeterReader(ModbusBus(link), device, meter.profile).read()
    finally:
        link.close()
    assert result.complete, result.failures
    read = {r.obis: r.value for r in result.readings}
    assert read == meter.presented_values(meter.clock.now())


def listening(port: int) -> bool:
    """Whether a TCP socket listens on 127.0.0.1:port (from /proc, no connection)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return any(
            line.split()[1] == wanted and line.split()[3] == "0A" for line in list(table)[1:]
        )


def test_socket_url_through_socat(bus: ModbusRtuBus) -> None:
    # socat: a transparent serial-to-TCP server, like ser2net's raw mode.
    port = free_port()
    server = subprocess.Popen(
        [
            "socat",
            f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
            f"FILE:{bus.port},raw,echo=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not listening(port):  # not a test connection: socat would fork for it
            assert time.monotonic() < deadline and server.poll() is None, "socat did not start"
            time.sleep(0.05)
        read_energy(f"socket://127.0.0.1:{port}", bus)
    finally:
        server.kill()
        server.wait()


def pty_speed(port: str) -> int:
    """The output speed (a termios B constant) the pty is set to now."""
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        return termios.tcgetattr(fd)[5]
    finally:
        os.close(fd)


@pytest.fixture
def ser2net(bus: ModbusRtuBus, tmp_path: Path) -> Iterator[int]:
    """ser2net in the foreground: RFC 2217 on a loopback port, the bus's pty behind it."""
    port = free_port()
    config = tmp_path / "ser2net.yaml"
    config.write_text(
        "%YAML 1.1\n---\n"
        "connection: &meters\n"
        f"  accepter: telnet(rfc2217),tcp,127.0.0.1,{port}\n"
        f"  connector: serialdev,{bus.port},9600n81,local\n"
        "  options:\n"
        "    kickolduser: true\n"
    )
    log = (tmp_path / "ser2net.log").open("wb")
    server = subprocess.Popen(
        ["ser2net", "-n", "-d", "-u", "-P", str(tmp_path / "ser2net.pid"), "-c", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            assert server.poll() is None, (tmp_path / "ser2net.log").read_text()
            assert time.monotonic() < deadline, "ser2net did not listen within 10 s"
            time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


# pyserial 3.5 (the latest) starts its RFC 2217 reader thread with the deprecated
# Thread.setDaemon and setName; harmless, but filterwarnings=error would fail on them.
PYSERIAL_THREAD_API = pytest.mark.filterwarnings(
    "ignore:set.* is deprecated:DeprecationWarning:serial.rfc2217"
)


def rfc2217_url(port: int) -> str:
    return f"rfc2217://127.0.0.1:{port}?ign_set_control"  # see the module doc: no DTR on a pty


@PYSERIAL_THREAD_API
def test_rfc2217_url_through_ser2net(bus: ModbusRtuBus, ser2net: int) -> None:
    read_energy(rfc2217_url(ser2net), bus)


@PYSERIAL_THREAD_API
def test_a_baud_rate_change_over_rfc2217_reaches_the_port(bus: ModbusRtuBus, ser2net: int) -> None:
    link = SerialLink(rfc2217_url(ser2net), baudrate=9600)
    try:
        deadline = time.monotonic() + 10
        while pty_speed(bus.port) != termios.B9600:
            assert time.monotonic() < deadline, "ser2net did not set 9600 Bd on the port"
            time.sleep(0.05)
        link.set_format(19200)  # RFC 2217 SET-BAUDRATE, applied by ser2net to the port
        while pty_speed(bus.port) != termios.B19200:
            assert time.monotonic() < deadline, "the port did not go to 19200 Bd"
            time.sleep(0.05)
        assert link.character_time_s == pytest.approx(10 / 19200)
    finally:
        link.close()
    read_energy(rfc2217_url(ser2net), bus)  # and the meter still answers
