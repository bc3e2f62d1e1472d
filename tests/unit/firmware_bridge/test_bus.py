"""Bus arbitration on a loopback line with a scripted meter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from fastcodec import modbus
from fastcodec.crc import crc16_modbus
from firmware_bridge.bus import BreakerPolicy, ModbusBus, PolledDevice
from firmware_bridge.exceptions import (
    GarbledResponse,
    MeterUnavailable,
    NoResponse,
    RemoteException,
)
from firmware_bridge.loopback import LoopbackPipe, loopback_pair

Answer = Callable[[bytes], bytes]


def with_crc(frame: bytes) -> bytes:
    return frame + crc16_modbus(frame).to_bytes(2, "little")


def registers_answer(unit: int, values: list[int]) -> bytes:
    payload = b"".join(v.to_bytes(2, "big") for v in values)
    return with_crc(bytes([unit, 4, len(payload)]) + payload)


class ScriptedMeter:
    """Answers each request on the device end with what `answer(request)` says."""

    def __init__(self, pipe: LoopbackPipe, answer: Answer) -> None:
        self.pipe, self.answer = pipe, answer
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            request = self.pipe.read(256, 0.05)
            if request:
                self.requests.append(request)
                if reply := self.answer(request):
                    self.pipe.write(reply)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


@pytest.fixture
def line() -> Iterator[tuple[LoopbackPipe, LoopbackPipe]]:
    master, device = loopback_pair()
    yield master, device


METER = PolledDevice("M1", unit_id=1, timeout_s=0.2, retries=1)
REQUEST = modbus.build_read_input_registers(1, 0, 2)


def serve(
    line: tuple[LoopbackPipe, LoopbackPipe], answer: Answer
) -> tuple[ModbusBus, ScriptedMeter]:
    master, device = line
    policy = BreakerPolicy(failures_to_open=2, first_backoff_s=1.0, max_backoff_s=4.0)
    return ModbusBus(master, breaker_policy=policy), ScriptedMeter(device, answer)


def test_a_good_answer_is_parsed(line: tuple[LoopbackPipe, LoopbackPipe]) -> None:
    bus, meter = serve(line, lambda r: registers_answer(1, [0x4366, 0x3333]))
    try:
        answer = bus.transact(METER, REQUEST)
        assert isinstance(answer, modbus.ReadRegistersResponse)
        assert answer.registers == (0x4366, 0x3333)
        assert bus.statistics.requests == bus.statistics.answers == 1
    finally:
        meter.stop()


def test_glitch_bytes_around_a_valid_answer_do_not_lose_it(
    line: tuple[LoopbackPipe, LoopbackPipe],
) -> None:
    # shared/vectors/modbus_rtu bus_glitch_wrapped_resp: 00 <valid reply> 00.
    glitched = bytes.fromhex("0001040443696978106e00")
    bus, meter = serve(line, lambda r: glitched)
    try:
        answer = bus.transact(METER, REQUEST)
        assert isinstance(answer, modbus.ReadRegistersResponse)
        assert answer.payload == bytes.fromhex("43696978")
        assert bus.statistics.noise_bytes >= 1
    finally:
        meter.stop()


def test_an_echo_of_our_request_is_skipped(line: tuple[LoopbackPipe, LoopbackPipe]) -> None:
    bus, meter = serve(line, lambda r: r + registers_answer(1, [1, 2]))
    try:
        assert bus.transact(METER, REQUEST).registers == (1, 2)  # type: ignore[union-attr]
        assert bus.statistics.echoes == 1
    finally:
        meter.stop()


def test_an_answer_from_another_unit_is_not_taken(line: tuple[LoopbackPipe, LoopbackPipe]) -> None:
    bus, meter = serve(line, lambda r: registers_answer(9, [7, 7]) + registers_answer(1, [1, 2]))
    try:
        assert bus.transact(METER, REQUEST).registers == (1, 2)  # type: ignore[union-attr]
        assert bus.statistics.wrong_unit == 1
    finally:
        meter.stop()


def test_exception_reply_raises_remote_exception(line: tuple[LoopbackPipe, LoopbackPipe]) -> None:
    bus, meter = serve(line, lambda r: with_crc(bytes([1, 0x84, 0x02])))
    try:
        with pytest.raises(RemoteException) as refused:
            bus.transact(METER, REQUEST)
        assert refused.value.exception_code == 2
        assert bus.breaker(METER).consecutive_failures == 0  # alive, just refusing
    finally:
        meter.stop()


def test_silence_is_no_response_after_retries(line: tuple[LoopbackPipe, LoopbackPipe]) -> None:
    bus, meter = serve(line, lambda r: b"")
    try:
        with pytest.raises(NoResponse):
            bus.transact(METER, REQUEST)
        assert len(meter.requests) == 2  # one try and one retry
        assert bus.statistics.timeouts == 2
    finally:
        meter.stop()


def test_garbage_is_a_garbled_response(line: tuple[LoopbackPipe, LoopbackPipe]) -> None:
    bad = bytearray(registers_answer(1, [1, 2]))
    bad[-1] ^= 0xFF
    bus, meter = serve(line, lambda r: bytes(bad))
    try:
        with pytest.raises(GarbledResponse):
            bus.transact(METER, REQUEST)
        assert bus.statistics.garbled == 2
    finally:
        meter.stop()


def test_breaker_opens_then_probes_then_closes(line: tuple[LoopbackPipe, LoopbackPipe]) -> None:
    alive = threading.Event()
    bus, meter = serve(line, lambda r: registers_answer(1, [5, 5]) if alive.is_set() else b"")
    quick = PolledDevice("M1", unit_id=1, timeout_s=0.3, retries=0)
    try:
        for _ in range(2):
            with pytest.raises(NoResponse):
                bus.transact(quick, REQUEST)
        asked = len(meter.requests)
        with pytest.raises(MeterUnavailable):
            bus.transact(quick, REQUEST)
        assert len(meter.requests) == asked  # nothing sent while open
        assert bus.statistics.skipped_breaker_open == 1
        alive.set()
        time.sleep(1.1)  # the back-off passes: one probe decides
        assert bus.transact(quick, REQUEST).registers == (5, 5)  # type: ignore[union-attr]
        assert bus.breaker(quick).state.value == "closed"
    finally:
        meter.stop()


def test_a_failed_probe_doubles_the_backoff(line: tuple[LoopbackPipe, LoopbackPipe]) -> None:
    bus, meter = serve(line, lambda r: b"")
    quick = PolledDevice("M1", unit_id=1, timeout_s=0.3, retries=3)
    try:
        for _ in range(2):
            with pytest.raises(NoResponse):
                bus.transact(quick, REQUEST)
        time.sleep(1.1)
        before = len(meter.requests)
        with pytest.raises(NoResponse):
            bus.transact(quick, REQUEST)
        assert len(meter.requests) == before + 1  # a probe has no retries
        assert bus.breaker(quick).backoff_s == pytest.approx(2.0)
    finally:
        meter.stop()


def test_silent_interval_is_three_and_a_half_characters() -> None:
    master, _ = loopback_pair(character_time_s=11 / 9600)
    assert ModbusBus(master).silent_interval_s == pytest.approx(3.5 * 11 / 9600)
    fast, _ = loopback_pair(character_time_s=11 / 115200)
    assert ModbusBus(fast).silent_interval_s == pytest.approx(0.00175)


def test_a_reply_whose_prefix_looks_like_a_request_is_read_whole(
    line: tuple[LoopbackPipe, LoopbackPipe],
) -> None:
    # Seen on the simulated bus: the first 8 bytes of this 9-byte reply carry a
    # valid CRC of their own (one reply in 256 does); it is still a reply.
    tricky = bytes.fromhex("1604044364ec288400")
    bus, meter = serve(line, lambda r: tricky)
    device = PolledDevice("M22", unit_id=0x16, timeout_s=0.2, retries=0)
    try:
        answer = bus.transact(device, modbus.build_read_input_registers(0x16, 0, 2))
        assert isinstance(answer, modbus.ReadRegistersResponse)
        assert answer.payload == bytes.fromhex("4364ec28")
    finally:
        meter.stop()


def test_an_echo_is_counted_once_and_not_as_noise(line: tuple[LoopbackPipe, LoopbackPipe]) -> None:
    def echo_in_pieces(request: bytes) -> bytes:
        return request + registers_answer(1, [3, 4])

    bus, meter = serve(line, echo_in_pieces)
    try:
        assert bus.transact(METER, REQUEST).registers == (3, 4)  # type: ignore[union-attr]
        assert bus.statistics.echoes == 1 and bus.statistics.noise_bytes == 0
    finally:
        meter.stop()


def test_modbus_tcp_frames_requests_with_mbap_and_reads_answers(
    line: tuple[LoopbackPipe, LoopbackPipe],
) -> None:
    from firmware_bridge.bus import ModbusTcpBus

    def mbap_meter(request: bytes) -> bytes:
        # Modbus Messaging on TCP/IP §3.1: transaction, protocol 0, length, unit, PDU.
        assert request[2:4] == b"\x00\x00" and request[6] == 1 and request[7] == 4
        pdu = bytes([4, 4]) + bytes.fromhex("43663333")
        return request[:4] + (len(pdu) + 1).to_bytes(2, "big") + b"\x01" + pdu

    master, device = line
    bus, meter = ModbusTcpBus(master), ScriptedMeter(device, mbap_meter)
    try:
        answer = bus.transact(METER, REQUEST)
        assert isinstance(answer, modbus.ReadRegistersResponse)
        assert answer.payload == bytes.fromhex("43663333")
        assert meter.requests[0][4:6] == (6).to_bytes(2, "big")  # unit + 5-byte PDU, no CRC
    finally:
        meter.stop()
