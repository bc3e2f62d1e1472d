"""The profile GET on fastcodec's path (firmware_bridge.dlms_link) against the simulated meters.

Both paths in the same test, on the same meter: gurux's (`fast_profile=False`)
and ours must give identical readings, equal to the meter's own rows, over HDLC
on a pty and over the TCP wrapper, for 1, 24 and 192 rows (192 rows do not fit
the client's 1024-octet PDU: the meter sends datablocks). After our GET,
gurux's next frames must still be in sequence (a register read and the
release follow). Then the line's troubles: bytes arriving one at a time, a
garbled frame in the middle of a segmented answer (counted, polled again,
recovered), a meter whose every frame is garbled (a clear failure), and the
meter's refusals (data-access-result, exception response) as clear errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from edge_agent.adapters.dlms_reader import (
    DlmsMeterReader,
    DlmsSession,
    MeterRead,
    session_for,
)
from fastcodec import apdu
from firmware_bridge import dlms_link
from firmware_bridge.exceptions import DataAccessError, DlmsTimeout
from firmware_bridge.links import BytePipe, SerialLink, TcpLink
from simulators.dlms import DlmsMeter
from simulators.dlms_links import DlmsTcpMeter, HdlcSerialBus
from simulators.runtime import BackgroundLoop
from tests.integration.readers.conftest import SessionFactory
from tests.integration.readers.pipes import PipeInFront
from tests.integration.readers.test_dlms_reader import (
    NOW_S,
    PASSWORD,
    PHYSICAL,
    REGISTERS,
    make_meter,
    utc,
)

pytestmark = pytest.mark.integration

QUARTER_S = 900
LAST_ROW_S = NOW_S - NOW_S % QUARTER_S  # the meter's last capture, 12:00:00


class OneByteAtATime(PipeInFront):
    """A pipe that hands over what the line carries one byte per read."""

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        return self.pipe.read(1, timeout_s)


class LineNoise(PipeInFront):
    """A pipe on which one burst of noise hits the byte at `offset` once armed:
    the receiving UART delivers a wrong byte, as on a real RS-485 line."""

    def __init__(self, pipe: BytePipe, offset: int) -> None:
        super().__init__(pipe)
        self._offset = offset
        self._received = 0
        self.armed = False
        self.hits = 0

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        data = self.pipe.read(max_bytes, timeout_s)
        if not self.armed or not data:
            return data
        position = self._offset - self._received
        self._received += len(data)
        if 0 <= position < len(data):
            self.hits += 1
            return data[:position] + bytes((data[position] ^ 0x5A,)) + data[position + 1 :]
        return data


def read_profile(
    sessions: SessionFactory,
    meter: DlmsMeter,
    rows: int,
    *,
    fast_profile: bool,
    wrap: Callable[[BytePipe], BytePipe] = lambda p: p,
) -> tuple[MeterRead, DlmsSession, MeterRead]:
    """The last `rows` rows, then a register read on the same session (gurux again)."""
    start = utc(LAST_ROW_S - (rows - 1) * QUARTER_S)
    end = utc(LAST_ROW_S)
    reader = DlmsMeterReader(meter.serial)
    with sessions(fast_profile, wrap) as session:
        profile = reader.read_load_profile(session, start, end)
        registers = reader.read_registers(session, REGISTERS[:2])
    return profile, session, registers


def assert_matches_meter(profile: MeterRead, meter: DlmsMeter, rows: int) -> None:
    assert profile.complete, profile.failures
    truth = meter.profile_rows(LAST_ROW_S - (rows - 1) * QUARTER_S, LAST_ROW_S)
    assert len(truth) == rows
    for obis, field in (("1-0:1.8.0", "import_wh"), ("1-0:2.8.0", "export_wh")):
        channel = [r for r in profile.readings if r.obis == obis]
        assert [r.at_ms for r in channel] == [int(row.at_s * 1000) for row in truth]
        assert [r.value for r in channel] == [getattr(row, field) / 1000 for row in truth]


@pytest.mark.parametrize("rows", [1, 24, 192])
def test_our_path_reads_what_gurux_reads(
    meter_and_sessions: tuple[DlmsMeter, SessionFactory], rows: int
) -> None:
    meter, sessions = meter_and_sessions
    theirs, gurux_session, _ = read_profile(sessions, meter, rows, fast_profile=False)
    ours, session, registers = read_profile(sessions, meter, rows, fast_profile=True)

    assert ours == theirs
    assert_matches_meter(ours, meter, rows)
    assert gurux_session.link_statistics.exchanges == 0
    statistics = session.link_statistics
    assert statistics.fallbacks == 0 and statistics.bad_frames == 0
    # 192 rows (~5.4 kB) exceed the client's 1024-octet PDU: datablocks, GET-Next each.
    assert (statistics.exchanges > 1) == (rows == 192)
    # gurux's frames after ours were in sequence: the registers read back right.
    assert registers.complete
    truth = meter.presented_values(NOW_S)
    assert [r.value for r in registers.readings] == [truth[o] for o in REGISTERS[:2]]


def test_a_byte_at_a_time_line_gives_the_same_rows(
    meter_and_sessions: tuple[DlmsMeter, SessionFactory],
) -> None:
    meter, sessions = meter_and_sessions
    theirs, _, _ = read_profile(sessions, meter, 24, fast_profile=False, wrap=OneByteAtATime)
    ours, session, registers = read_profile(
        sessions, meter, 24, fast_profile=True, wrap=OneByteAtATime
    )
    assert ours == theirs and registers.complete
    assert_matches_meter(ours, meter, 24)
    assert session.link_statistics.fallbacks == 0


@pytest.fixture
def hdlc_bus() -> Iterator[HdlcSerialBus]:
    bus = HdlcSerialBus([make_meter()], timing=False)
    bus.start_sync()
    yield bus
    bus.stop_sync()


def test_a_garbled_frame_in_the_middle_is_counted_and_polled_again(
    hdlc_bus: HdlcSerialBus,
) -> None:
    meter = hdlc_bus.meters[PHYSICAL]
    line = SerialLink(hdlc_bus.port)
    # The 24-row answer comes in frames of 128 octets of information (~140 on
    # the wire): octet 200 after the request lies in the second frame's data.
    noisy = LineNoise(line, offset=200)
    reader = DlmsMeterReader(meter.serial)
    start, end = utc(LAST_ROW_S - 23 * QUARTER_S), utc(LAST_ROW_S)
    try:
        with session_for(
            noisy, interface="hdlc", physical_address=PHYSICAL, password=PASSWORD
        ) as session:
            reader.read_load_profile(session, end, end)  # capture objects, scalers cached
            noisy.armed = True
            profile = reader.read_load_profile(session, start, end)
            noisy.armed = False
            registers = reader.read_registers(session, REGISTERS[:2])
    finally:
        line.close()
    assert noisy.hits == 1
    statistics = session.link_statistics
    assert statistics.bad_frames == 1 and statistics.repolls == 1
    assert_matches_meter(profile, meter, 24)
    assert registers.complete  # the session goes on, in sequence


def test_a_meter_whose_every_frame_is_garbled_fails_clearly(hdlc_bus: HdlcSerialBus) -> None:
    meter = hdlc_bus.meters[PHYSICAL]
    line = SerialLink(hdlc_bus.port)
    reader = DlmsMeterReader(meter.serial)
    try:
        with session_for(
            line,
            interface="hdlc",
            physical_address=PHYSICAL,
            password=PASSWORD,
            timeout_s=0.5,
            name=meter.serial,
        ) as session:
            reader.read_load_profile(session, utc(NOW_S), utc(NOW_S))  # columns cached
            meter.faults.garble_crc = True
            profile = reader.read_load_profile(session, utc(NOW_S - 3600), utc(NOW_S))
            meter.faults.garble_crc = False
    finally:
        line.close()
    assert profile.readings == []
    (failure,) = profile.failures
    assert isinstance(failure.error, DlmsTimeout)
    assert str(failure.error).startswith(f"{meter.serial}: no (complete) answer to GET 1-0:99.1.0")
    assert session.link_statistics.bad_frames >= 2  # the answer and its repeat
    assert session.link_statistics.repolls == 1


def test_a_refused_range_is_a_data_access_error_on_both_paths(
    meter_and_sessions: tuple[DlmsMeter, SessionFactory],
) -> None:
    _, sessions = meter_and_sessions
    for fast_profile in (False, True):
        with sessions(fast_profile) as session:
            with pytest.raises(DataAccessError, match="refused") as refused:
                session.get_by_range(7, "1-0:99.2.0", 2, utc(NOW_S - 3600), utc(NOW_S))
            assert refused.value.result == 4  # object-undefined
            assert session.link_statistics.fallbacks == 0
            assert DlmsMeterReader("x").read_clock(session).tzinfo is not None


def test_an_exception_response_is_a_clear_error(loop: BackgroundLoop) -> None:
    server = DlmsTcpMeter(make_meter())
    loop.run(server.start())
    tcp = TcpLink(server.host, server.port)
    try:
        # No association on this connection: the meter answers with an exception response.
        link = dlms_link.WrapperApduLink(
            tcp, client_wport=1, server_wport=1, timeout_s=3.0, name="00012345"
        )
        request = apdu.GetRequestNormal(
            apdu.CosemAttributeDescriptor(7, bytes((1, 0, 99, 1, 0, 255)), 2),
            apdu.profile_range(utc(NOW_S - 3600), utc(NOW_S)),
        )
        with pytest.raises(DataAccessError, match=r"exception response \(service-not-allowed"):
            dlms_link.get(link, request, "GET 1-0:99.1.0/2 by range")
    finally:
        tcp.close()
        loop.run(server.stop())
