"""The optical reader (IEC 62056-21 handshake, mode C, mode E + DLMS) on a simulated probe."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from edge_agent.adapters.dlms_reader import DlmsMeterReader, session_for
from edge_agent.adapters.optical_reader import OpticalMeterReader
from edge_agent.config import MeterConfig
from edge_agent.service.dlms_tasks import DlmsLine, SessionFactory
from fastcodec import iec62056_21 as iec
from firmware_bridge.exceptions import ReadoutChecksumError
from firmware_bridge.links import BytePipe
from firmware_bridge.optical import OpticalSettings, open_optical_port, sign_on
from simulators.optical import OpticalPort, readout_lines
from tests.integration.readers.pipes import PipeInFront
from tests.integration.readers.test_dlms_reader import NOW_S, PASSWORD, make_meter

pytestmark = pytest.mark.integration

FAST = {"switch_delay_s": 0.0}


@pytest.fixture
def probe() -> Iterator[OpticalPort]:
    port = OpticalPort(make_meter(), timing=False)
    port.start_sync()
    yield port
    port.stop_sync()


def expected_readings(meter_lines: list[str]) -> dict[str, tuple[float, str]]:
    values = {}
    for data_set in iec.parse_data_sets("\r\n".join(meter_lines).encode()):
        value = data_set.values[0]
        if data_set.obis and value.number is not None and value.unit:
            number, unit = value.number, value.unit
            if unit == "kW":
                number, unit = round(number * 1000, 9), "W"
            values[data_set.obis] = (number, unit)
    return values


def test_mode_c_readout_after_the_baud_switch(probe: OpticalPort) -> None:
    link = open_optical_port(probe.port)
    try:
        reader = OpticalMeterReader(probe.meter.serial, OpticalSettings(**FAST))
        result = reader.read(link)
    finally:
        link.close()
    assert reader.last_result is not None and reader.last_result.baud_rate == 9600
    expected = expected_readings(readout_lines(probe.meter, NOW_S))
    assert {r.obis: (r.value, r.unit) for r in result.readings} == expected
    assert "1-0:1.7.0" in expected and expected["1-0:1.7.0"][1] == "W"
    # The meter's clock lines stamp the readings.
    meter_ms = int(probe.meter.meter_time(NOW_S)) * 1000
    assert {r.at_ms for r in result.readings} == {meter_ms}
    assert all(r.quality == 0 for r in result.readings)


def test_a_meter_that_refuses_the_switch_is_read_at_300() -> None:
    port = OpticalPort(make_meter(), timing=False, baud_switch=False)
    port.start_sync()
    link = open_optical_port(port.port)
    try:
        reader = OpticalMeterReader("m", OpticalSettings(baud_switch=False, **FAST))
        result = reader.read(link)
        assert reader.last_result is not None and reader.last_result.baud_rate == 300
        assert reader.statistics.stayed_at_300 == 1 and result.readings
        assert link.character_time_s == pytest.approx(10 / 300)
    finally:
        link.close()
        port.stop_sync()


def test_mode_e_then_the_dlms_reader_on_the_same_line(probe: OpticalPort) -> None:
    link = open_optical_port(probe.port)
    try:
        result = sign_on(link, OpticalSettings(mode="E", **FAST))
        assert result.line_format == (9600, 8, "N", 1) and result.readout is None
        reader = DlmsMeterReader(probe.meter.serial)
        with session_for(link, interface="hdlc", password=PASSWORD) as session:
            read = reader.read_registers(session, ["1-0:2.8.0"])
        assert read.readings[0].value == probe.meter.presented_values(NOW_S)["1-0:2.8.0"]
    finally:
        link.close()


class GarbleAfterSelect(PipeInFront):
    """The probe's pipe; the meter garbles what it sends after the option select."""

    def __init__(self, link: BytePipe, probe: OpticalPort) -> None:
        super().__init__(link)
        self.probe = probe

    def write(self, data: bytes) -> None:
        if data.startswith(bytes([iec.ACK])):
            self.probe.meter.faults.garble_crc = True
        self.pipe.write(data)


def test_a_garbled_readout_is_a_clear_bcc_error(probe: OpticalPort) -> None:
    link = GarbleAfterSelect(open_optical_port(probe.port), probe)
    reader = OpticalMeterReader("m", OpticalSettings(**FAST))
    try:
        with pytest.raises(ReadoutChecksumError, match="optical readout: block check"):
            reader.read(link)
    finally:
        link.close()
    assert reader.statistics.checksum_errors == 1


def test_the_handshake_at_line_rate() -> None:
    port = OpticalPort(make_meter(), timing=True)
    port.start_sync()
    link = open_optical_port(port.port)
    try:
        result = OpticalMeterReader("m").read(link)
        assert len(result.readings) >= 15
    finally:
        link.close()
        port.stop_sync()


def test_a_session_left_open_by_a_dead_agent_is_ended_at_once(probe: OpticalPort) -> None:
    # An agent killed inside a mode E session leaves the meter in HDLC at
    # 9600 Bd: it ignores the 300 Bd sign-on until its inactivity timer
    # (120 s here, as on real meters). The next session ends it with a DISC.
    link = open_optical_port(probe.port)
    try:
        sign_on(link, OpticalSettings(mode="E", **FAST))
        dead = session_for(link, interface="hdlc", password=PASSWORD)
        dead.open()  # and never closed: its process died
        settings = OpticalSettings(mode="E", response_timeout_s=0.5, **FAST)
        sessions = SessionFactory(DlmsLine(link), "hdlc", optical=settings)
        meter = MeterConfig(serial=probe.meter.serial, profile="generic-dlms", password=PASSWORD)
        started = time.monotonic()
        with sessions(meter, PASSWORD) as session:
            read = DlmsMeterReader(probe.meter.serial).read_registers(session, ["1-0:2.8.0"])
        assert time.monotonic() - started < 30  # not the meter's 120 s
        assert read.readings[0].value == probe.meter.presented_values(NOW_S)["1-0:2.8.0"]
    finally:
        link.close()
