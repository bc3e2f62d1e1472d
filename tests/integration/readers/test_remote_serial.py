"""Meters behind a remote serial server: socket:// URLs (socat as the server).

rfc2217:// URLs go through the same pyserial `serial_for_url` path; they are
not tested here: pyserial's RFC 2217 server side needs modem-control ioctls
that a pseudo-terminal does not have, and no other RFC 2217 server is
packaged for this machine.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

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
