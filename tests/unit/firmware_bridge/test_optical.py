"""The IEC 62056-21 handshake state machine, sans-I/O and over firmware_bridge.loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from fastcodec import iec62056_21 as iec
from firmware_bridge.exceptions import OpticalError, OpticalTimeout, ReadoutChecksumError
from firmware_bridge.loopback import LoopbackPipe, loopback_pair
from firmware_bridge.optical import (
    EchoReceived,
    Identified,
    OpticalHandshake,
    OpticalSettings,
    OpticalStatistics,
    ReadoutReceived,
    choose_baud,
    sign_on,
)

IDENT = iec.build_identification("VSM", "5", "VS-DLMS-1", "2")
LINES = ["C.1.0(00012345)", "1.8.0(0001234.567*kWh)", "1.7.0(0000.456*kW)"]
READOUT = iec.build_data_readout(LINES)
FAST = OpticalSettings(switch_delay_s=0.0, response_timeout_s=0.3, character_timeout_s=0.2)


def test_noise_before_the_identification_is_skipped_and_counted() -> None:
    handshake = OpticalHandshake()
    assert handshake.start() == b"/?!\r\n"
    event = None
    for byte in b"\x00\xff\x7f" + IDENT:  # byte at a time
        event = handshake.receive_data(bytes([byte])) or event
    assert isinstance(event, Identified)
    assert event.option_select == iec.build_option_select("5", "0", "0")
    assert event.line_format == (9600, 7, "E", 1) and handshake.noise_bytes == 3
    assert handshake.state == "readout"
    received = handshake.receive_data(READOUT)
    assert isinstance(received, ReadoutReceived)
    assert received.readout.data_sets[1].obis == "1-0:1.8.0"


def test_a_wrong_bcc_is_a_clear_error() -> None:
    handshake = OpticalHandshake()
    handshake.start()
    handshake.receive_data(IDENT)
    with pytest.raises(ReadoutChecksumError, match="block check"):
        handshake.receive_data(READOUT[:-1] + bytes([READOUT[-1] ^ 0x55]))


def test_mode_e_needs_the_marker_and_waits_for_the_echo() -> None:
    handshake = OpticalHandshake(OpticalSettings(mode="E"))
    handshake.start()
    event = handshake.receive_data(IDENT)
    assert isinstance(event, Identified) and event.line_format == (9600, 8, "N", 1)
    assert event.option_select == iec.build_option_select("5", "2", "2")
    assert isinstance(handshake.receive_data(event.option_select), EchoReceived)
    plain = OpticalHandshake(OpticalSettings(mode="E"))
    plain.start()
    with pytest.raises(OpticalError, match="mode E"):
        plain.receive_data(iec.build_identification("VSM", "5", "X"))


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (OpticalSettings(), ("5", 9600)),
        (OpticalSettings(baud_switch=False), ("0", 300)),
        (OpticalSettings(max_baud=2400), ("3", 2400)),
        (OpticalSettings(max_baud=1000), ("1", 600)),
    ],
)
def test_the_speed_is_the_meters_unless_overridden(
    settings: OpticalSettings, expected: tuple[str, int]
) -> None:
    assert choose_baud(iec.parse_identification(IDENT), settings) == expected


def fake_meter(pipe: LoopbackPipe, answers: Callable[[bytes], bytes | None]) -> threading.Thread:
    def run() -> None:
        deadline = time.monotonic() + 3
        splitter = iec.OpticalSplitter(meter_side=True)
        while time.monotonic() < deadline:
            for message in splitter.feed(pipe.read(256, 0.05)):
                answer = answers(message)
                if answer is None:
                    return
                pipe.write(answer)
                if message.startswith(bytes([iec.ACK])):
                    return  # the readout is out: the meter is back at the start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def mode_c_meter(readout: bytes, noise: bytes = b"") -> Callable[[bytes], bytes | None]:
    def answer(message: bytes) -> bytes | None:
        if message.startswith(b"/?"):
            return noise + IDENT
        if message.startswith(bytes([iec.ACK])):
            return readout if readout else None
        return b""

    return answer


def test_sign_on_over_loopback_reads_the_readout() -> None:
    master, meter = loopback_pair()
    thread = fake_meter(meter, mode_c_meter(READOUT, noise=b"\x00\x00"))
    stats = OpticalStatistics()
    result = sign_on(master, FAST, stats)
    thread.join(3)
    assert result.baud_rate == 9600 and result.readout is not None
    assert [d.address for d in result.readout.data_sets] == ["C.1.0", "1.8.0", "1.7.0"]
    assert (stats.sign_ons, stats.readouts, stats.noise_bytes, stats.failures) == (1, 1, 2, 0)


def test_a_silent_meter_times_out_in_the_identification_stage() -> None:
    master, _meter = loopback_pair()
    stats = OpticalStatistics()
    started = time.monotonic()
    with pytest.raises(OpticalTimeout, match="identification"):
        sign_on(master, FAST, stats)
    assert time.monotonic() - started < 1.5
    assert (stats.timeouts, stats.failures) == (1, 1)


def test_a_readout_that_stops_halfway_times_out() -> None:
    master, meter = loopback_pair()
    thread = fake_meter(meter, mode_c_meter(READOUT[:20]))
    with pytest.raises(OpticalTimeout, match=r"readout.*unfinished"):
        sign_on(master, FAST)
    thread.join(3)


def test_a_wrong_bcc_over_loopback_is_counted() -> None:
    master, meter = loopback_pair()
    thread = fake_meter(meter, mode_c_meter(READOUT[:-1] + b"\x00"))
    stats = OpticalStatistics()
    with pytest.raises(ReadoutChecksumError):
        sign_on(master, FAST, stats)
    thread.join(3)
    assert stats.checksum_errors == 1
