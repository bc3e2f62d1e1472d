"""The optical port (IEC 62056-21) of a simulated meter, read by a master in the test.

The master is written with fastcodec.iec62056_21: sign-on at 300 Bd,
identification, option select with the baud switch, mode C readout with its
BCC; and mode E entry followed by an HDLC association with gurux's client.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from fastcodec import iec62056_21 as optical
from fastcodec.exceptions import ChecksumError
from simulators.optical import OpticalPort, readout_lines
from tests.integration.simulators.test_dlms_meter import (
    NOW_S,
    GuruxMaster,
    SerialPipe,
    gurux_client,
    make_meter,
)

gurux_dlms = pytest.importorskip("gurux_dlms")
from gurux_dlms.enums import InterfaceType  # noqa: E402
from gurux_dlms.objects import GXDLMSData, GXDLMSRegister  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture
def port() -> Iterator[OpticalPort]:
    probe = OpticalPort(make_meter(), timing=False)
    probe.start_sync()
    yield probe
    probe.stop_sync()


def read_message(pipe: SerialPipe, splitter: optical.OpticalSplitter, timeout_s: float) -> bytes:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        messages = splitter.feed(pipe.read_some())
        if messages:
            return messages[0]
    raise TimeoutError("no message from the meter")


def sign_on(pipe: SerialPipe, timeout_s: float = 3.0) -> optical.Identification:
    pipe.write(optical.build_request())
    raw = read_message(pipe, optical.OpticalSplitter(), timeout_s)
    identification = optical.parse_message(raw)
    assert isinstance(identification, optical.Identification)
    return identification


def check_readout(readout: optical.DataReadout, expected_lines: list[str]) -> None:
    by_obis = {data_set.obis: data_set for data_set in readout.data_sets}
    expected = optical.parse_data_sets("\r\n".join(expected_lines).encode())
    for data_set in expected:
        assert by_obis[data_set.obis].values == data_set.values, data_set.address
    energy = by_obis["1-0:1.8.0"].values[0]
    assert energy.unit == "kWh" and len(energy.text.split(".")[1]) == 3


def test_mode_c_readout_after_the_baud_switch(port: OpticalPort) -> None:
    pipe = SerialPipe(port.port)
    try:
        identification = sign_on(pipe)
        assert identification.manufacturer == "VSM"
        assert identification.baud_char == "5" and identification.baud_rate == 9600
        assert identification.hdlc_mode_e
        pipe.write(optical.build_option_select("5", "0", "0"))
        raw = read_message(pipe, optical.OpticalSplitter(), 3.0)
        readout = optical.parse_message(raw)  # checks the BCC
        assert isinstance(readout, optical.DataReadout)
        check_readout(readout, readout_lines(port.meter, NOW_S))
        power = next(d for d in readout.data_sets if d.obis == "1-0:1.7.0").values[0]
        truth_w = port.meter.physics.state(NOW_S).values["1-0:1.7.0"]
        assert power.unit == "kW" and power.number == pytest.approx(truth_w / 1000, abs=5e-4)
        assert port.session.state == "idle" and port.session.readouts == 1
    finally:
        pipe.close()


def test_the_baud_switch_is_on_the_line_at_300_then_9600() -> None:
    probe = OpticalPort(make_meter(), timing=True)
    probe.start_sync()
    pipe = SerialPipe(probe.port)
    try:
        started = time.monotonic()
        identification = sign_on(pipe)
        # 5 + ~26 characters at 300 Bd 7E1 (10 bits): about a second.
        assert time.monotonic() - started > (5 + len(identification.text) + 3) * 10 / 300 * 0.9
        pipe.write(optical.build_option_select("5", "0", "0"))
        started = time.monotonic()
        raw = read_message(pipe, optical.OpticalSplitter(), 5.0)
        elapsed = time.monotonic() - started
        # 6 characters of option select at 300 Bd, then the readout at 9600 Bd.
        at_9600 = len(raw) * 10 / 9600
        assert 6 * 10 / 300 + at_9600 * 0.9 < elapsed < 6 * 10 / 300 + len(raw) * 10 / 300 / 2
        assert isinstance(optical.parse_message(raw), optical.DataReadout)
    finally:
        pipe.close()
        probe.stop_sync()


def test_a_meter_that_refuses_the_baud_switch_answers_at_300() -> None:
    probe = OpticalPort(make_meter(), timing=True, baud_switch=False)
    probe.start_sync()
    pipe = SerialPipe(probe.port)
    try:
        sign_on(pipe)
        pipe.write(optical.build_option_select("5", "0", "0"))
        # Measure the rate of the first 40 characters only: the whole readout
        # takes ~15 s at 300 Bd.
        received, first_at = b"", None
        deadline = time.monotonic() + 4.0
        while len(received) < 40 and time.monotonic() < deadline:
            chunk = pipe.read_some()
            if chunk:
                first_at = first_at or time.monotonic()
                received += chunk
        assert first_at is not None and len(received) >= 40
        rate = (len(received) - 1) / (time.monotonic() - first_at)
        assert rate < 35  # 300 Bd 7E1 carries 30 characters a second
        assert received[:1] == bytes([optical.STX])
    finally:
        pipe.close()
        probe.stop_sync()


def test_a_garbled_readout_fails_its_bcc(port: OpticalPort) -> None:
    pipe = SerialPipe(port.port)
    try:
        sign_on(pipe)
        port.meter.faults.garble_crc = True
        pipe.write(optical.build_option_select("5", "0", "0"))
        raw = read_message(pipe, optical.OpticalSplitter(), 3.0)
        with pytest.raises(ChecksumError):
            optical.parse_message(raw)
    finally:
        pipe.close()


def test_sign_on_with_another_address_gets_no_answer(port: OpticalPort) -> None:
    pipe = SerialPipe(port.port)
    try:
        pipe.write(optical.build_request("99999999"))
        assert pipe.collect(0.3) == b""
        pipe.write(optical.build_request(port.meter.serial))
        assert pipe.collect(1.0).startswith(b"/VSM5\\2")
    finally:
        pipe.close()


def test_a_break_and_inactivity_return_to_the_start() -> None:
    probe = OpticalPort(make_meter(), timing=False, inactivity_s=0.2)
    probe.start_sync()
    pipe = SerialPipe(probe.port)
    try:
        sign_on(pipe)
        pipe.write(optical.build_command("B0"))
        time.sleep(0.1)
        assert probe.session.state == "idle"
        sign_on(pipe)
        pipe.write(optical.build_option_select("5", "2", "2"))
        pipe.collect(0.5)  # the echo
        assert probe.session.state == "mode_e"
        time.sleep(0.4)
        assert probe.session.state == "idle" and probe.line.baudrate == 300
    finally:
        pipe.close()
        probe.stop_sync()


def test_mode_e_then_an_hdlc_association_with_gurux(port: OpticalPort) -> None:
    pipe = SerialPipe(port.port)
    try:
        identification = sign_on(pipe)
        assert identification.hdlc_mode_e
        pipe.write(optical.build_option_select("5", "2", "2"))
        echo = pipe.collect(1.0)
        assert echo == optical.build_option_select("5", "2", "2")
        time.sleep(0.05)
        assert port.line.baudrate == 9600
        # One meter behind the probe: gurux's 1-byte server address works too.
        master = GuruxMaster(gurux_client(InterfaceType.HDLC, address_size=1), pipe)
        master.connect()
        assert master.read(GXDLMSData("0.0.96.1.0.255"), 2) == port.meter.serial
        register = GXDLMSRegister("1.0.2.8.0.255")
        master.read(register, 3)
        master.read(register, 2)
        truth = port.meter.presented_values(NOW_S)["1-0:2.8.0"]
        assert register.value / 1000 == pytest.approx(truth, abs=1e-9)
        master.close()
        time.sleep(0.15)
        assert port.session.state == "idle" and port.line.baudrate == 300
    finally:
        pipe.close()
