"""Simulated Modbus meters on a virtual RS-485 bus, read by real masters."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import pytest
import serial
from pymodbus.client import ModbusSerialClient

from edge_agent.profiles import load_profile
from fastcodec import crc16_modbus
from simulators.clock import SimClock
from simulators.modbus import ModbusMeter, ModbusRtuBus, decode_register_value
from simulators.physics import MeterPhysics
from simulators.runtime import BackgroundLoop

pytestmark = pytest.mark.integration

START_S = 1_767_225_600.0  # 2026-01-01 00:00 UTC: a fixed, repeatable moment
MODELS = ["eastron-sdm630", "eastron-sdm120", "carlo-gavazzi-em24"]


def frozen_clock() -> SimClock:
    # Time all but stands still, so ground truth and reads see the same values.
    return SimClock(start=START_S + 12 * 3600, speed=1e-9)


def make_meter(model: str, unit_id: int, clock: SimClock) -> ModbusMeter:
    profile = load_profile(model)
    physics = MeterPhysics(seed=unit_id, phases=profile.phases, epoch_s=START_S, pv_peak_w=2000)
    return ModbusMeter(profile, unit_id, f"{model}-{unit_id:04d}", physics, clock)


@pytest.fixture(scope="module")
def loop() -> Iterator[BackgroundLoop]:
    with BackgroundLoop() as background:
        yield background


@pytest.fixture
def bus(loop: BackgroundLoop) -> Iterator[ModbusRtuBus]:
    clock = frozen_clock()
    meters = [make_meter(model, unit, clock) for unit, model in enumerate(MODELS, start=1)]
    rtu_bus = ModbusRtuBus(meters, baudrate=9600, parity="E")
    loop.run(rtu_bus.start())
    yield rtu_bus
    loop.run(rtu_bus.stop())


def request(unit: int, function: int, address: int, count: int) -> bytes:
    frame = bytes([unit, function]) + address.to_bytes(2, "big") + count.to_bytes(2, "big")
    return frame + crc16_modbus(frame).to_bytes(2, "little")


# The bus models 9600 8E1 timing; masters open the pty as 8N1 because a pty
# has no parity bit to carry (and this sandbox's kernel refuses PARENB on one).
def transact(port: str, frame: bytes, listen_s: float = 0.6) -> tuple[bytes, float | None]:
    """Send one frame, collect what comes back; return it and the first byte's delay."""
    with serial.Serial(port, 9600, timeout=0) as line:
        sent = time.monotonic()
        line.write(frame)
        received, first_at, last_at = b"", None, 0.0
        while time.monotonic() - sent < listen_s:
            chunk = line.read(512)
            now = time.monotonic()
            if chunk:
                first_at = first_at if first_at is not None else now - sent
                last_at = now
                received += chunk
            elif first_at is not None and now - last_at > 0.05:
                break  # 50 ms of silence after an answer: it is complete
            time.sleep(0.002)
    return received, first_at


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16_modbus(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def test_mbpoll_reads_the_sdm630_voltages(bus: ModbusRtuBus) -> None:
    # mbpoll is Debian's Modbus master (libmodbus): a peer we did not write.
    result = subprocess.run(
        [
            "mbpoll",
            "-m",
            "rtu",
            "-b",
            "9600",
            "-P",
            "none",
            "-a",
            "1",
            "-t",
            "3:float",
            "-B",
            "-0",
            "-r",
            "0",
            "-c",
            "3",
            "-1",
            "-o",
            "2",
            bus.port,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    read = [float(v) for v in re.findall(r"^\[\d+\]:\s+(\S+)", result.stdout, re.MULTILINE)]
    truth = bus.meters[1].presented_values(bus.meters[1].clock.now())
    expected = [truth["1-0:32.7.0"], truth["1-0:52.7.0"], truth["1-0:72.7.0"]]
    assert read == pytest.approx(expected, abs=1e-3)  # mbpoll prints 6 digits
    assert all(200 < v < 260 for v in read)


@pytest.mark.parametrize("unit", [1, 2, 3])
def test_pymodbus_client_reads_every_quantity_of_each_model(bus: ModbusRtuBus, unit: int) -> None:
    meter = bus.meters[unit]
    client = ModbusSerialClient(bus.port, baudrate=9600, timeout=2, retries=1)
    assert client.connect()
    try:
        truth = meter.presented_values(meter.clock.now())
        for quantity in meter.profile.quantities:
            spec = quantity.location
            assert spec is not None
            reply = client.read_input_registers(
                spec.address, count=spec.register_count, device_id=unit
            )
            assert not reply.isError(), f"{quantity.key}: {reply}"
            value = decode_register_value(reply.registers, spec, meter.profile.word_order_of(spec))
            assert value == pytest.approx(truth[quantity.obis], rel=1e-6, abs=1e-9), quantity.key
    finally:
        client.close()


def test_only_the_addressed_meter_answers(bus: ModbusRtuBus) -> None:
    answer, _ = transact(bus.port, request(2, 4, 0, 2))
    assert answer[:2] == bytes([2, 4]) and crc_ok(answer)
    silence, first_at = transact(bus.port, request(17, 4, 0, 2), listen_s=0.3)
    assert silence == b"" and first_at is None
    assert bus.line.statistics.dropped_requests == 1


def test_unmapped_address_gives_exception_02(bus: ModbusRtuBus) -> None:
    answer, _ = transact(bus.port, request(3, 4, 0x0100, 2))  # EM24 maps 0x0000-0x005F
    assert answer[:3] == bytes([3, 0x84, 0x02]) and crc_ok(answer)


def test_read_beyond_the_models_limit_gives_exception_03(bus: ModbusRtuBus) -> None:
    answer, _ = transact(bus.port, request(1, 4, 0, 100))  # SDM630 reads 80 at most
    assert answer[:3] == bytes([1, 0x84, 0x03]) and crc_ok(answer)


def test_holding_registers_are_not_the_input_registers(bus: ModbusRtuBus) -> None:
    answer, _ = transact(bus.port, request(1, 3, 0, 2))  # no holding map in the profile
    assert answer[:3] == bytes([1, 0x83, 0x02])


def test_fault_no_answer(bus: ModbusRtuBus) -> None:
    bus.meters[1].faults.no_answer = True
    answer, _ = transact(bus.port, request(1, 4, 0, 2), listen_s=0.3)
    assert answer == b""
    bus.meters[1].faults.clear()
    assert crc_ok(transact(bus.port, request(1, 4, 0, 2))[0])


def test_fault_garbled_crc(bus: ModbusRtuBus) -> None:
    bus.meters[2].faults.garble_crc = True
    answer, _ = transact(bus.port, request(2, 4, 0, 2))
    assert len(answer) == 9 and answer[:2] == bytes([2, 4]) and not crc_ok(answer)


def test_fault_truncated_frame(bus: ModbusRtuBus) -> None:
    bus.meters[2].faults.truncate_bytes = 3
    answer, _ = transact(bus.port, request(2, 4, 0, 2))
    assert len(answer) == 6


def test_fault_noise_between_frames(bus: ModbusRtuBus) -> None:
    bus.meters[2].faults.noise = b"\x00\xff\x00"
    answer, _ = transact(bus.port, request(2, 4, 0, 2))
    assert answer[:3] == b"\x00\xff\x00" and crc_ok(answer[3:])


def test_fault_exception_code(bus: ModbusRtuBus) -> None:
    bus.meters[1].faults.exception_code = 6  # device busy
    answer, _ = transact(bus.port, request(1, 4, 0, 2))
    assert answer[:3] == bytes([1, 0x84, 0x06]) and crc_ok(answer)


def test_fault_slow_answer(bus: ModbusRtuBus) -> None:
    _, normal = transact(bus.port, request(2, 4, 0, 2))
    bus.meters[2].faults.slow_s = 0.3
    answer, slow = transact(bus.port, request(2, 4, 0, 2), listen_s=1.0)
    assert crc_ok(answer)
    # The meter takes 0.3 s to answer; its turnaround runs concurrently.
    assert normal is not None and slow is not None
    assert slow >= 0.3 and slow > normal + 0.2


def test_fault_power_down_and_up(bus: ModbusRtuBus) -> None:
    bus.meters[3].faults.powered_down = True
    assert transact(bus.port, request(3, 4, 0, 2), listen_s=0.3)[0] == b""
    bus.meters[3].faults.powered_down = False
    assert crc_ok(transact(bus.port, request(3, 4, 0, 2))[0])


def test_answer_starts_after_the_models_turnaround(bus: ModbusRtuBus) -> None:
    # 8 request bytes on the wire, then the SDM120's 15 ms turnaround.
    _, first_at = transact(bus.port, request(2, 4, 0, 2))
    character_s = 11 / 9600
    assert first_at is not None and first_at >= 8 * character_s + 0.015 + character_s


def test_bus_delivers_at_the_line_rate(bus: ModbusRtuBus) -> None:
    # 9600 baud 8E1 = 11 bits a character: 872.7 bytes/s. The line never
    # delivers faster; we take the best of three to tolerate a loaded machine.
    capacity = 9600 / 11
    rates = []
    for _ in range(3):
        with serial.Serial(bus.port, 9600, timeout=0) as line:
            line.write(request(1, 4, 0, 80))  # 165-byte answer
            received, first_at, last_at = b"", None, None
            deadline = time.monotonic() + 1.5
            while len(received) < 165 and time.monotonic() < deadline:
                chunk = line.read(512)
                if chunk:
                    now = time.monotonic()
                    first_at = first_at or now
                    last_at = now
                    received += chunk
                time.sleep(0.001)
        assert len(received) == 165 and first_at is not None and last_at is not None
        rates.append((len(received) - 1) / (last_at - first_at))
    # Within 10 % either way: a late first byte (a busy reader) makes a
    # transfer look a little faster than the wire, a busy relay slower.
    best = min(rates, key=lambda rate: abs(rate - capacity))
    assert capacity * 0.9 <= best <= capacity * 1.1, f"measured {rates} B/s of {capacity:.0f}"
