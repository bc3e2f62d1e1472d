"""The DLMS reader (gurux's client, our byte loop, fastcodec's buffers) against simulated meters.

Over the TCP wrapper and over HDLC on a pty: clock, registers with units equal
to the meter's presented values, load profile ranges equal to its rows, the
catch-up after a gateway outage, the event log, and the errors a technician
sees (wrong password, a silent meter).
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Iterator

import pytest

from edge_agent.adapters.dlms_reader import DlmsMeterReader, DlmsSession, session_for
from edge_agent.domain.readings import QualityFlag
from firmware_bridge.exceptions import AssociationRejected, DlmsTimeout
from firmware_bridge.links import SerialLink, TcpLink
from simulators.clock import SimClock
from simulators.dlms import DlmsMeter
from simulators.dlms_links import DlmsTcpMeter, HdlcSerialBus
from simulators.physics import MeterPhysics
from simulators.runtime import BackgroundLoop

pytestmark = pytest.mark.integration

START_S = 1_767_225_600.0  # 2026-01-01 00:00 UTC
NOW_S = START_S + 10 * 86_400 + 12 * 3600 + 7.25  # 2026-01-11 12:00:07.25
PASSWORD = "00000000"
PHYSICAL = 17
REGISTERS = ["1-0:1.8.0", "1-0:2.8.0", "1-0:32.7.0", "1-0:31.7.0", "1-0:1.7.0", "1-0:14.7.0"]


def make_meter(serial: str = "00012345", clock: SimClock | None = None) -> DlmsMeter:
    physics = MeterPhysics(seed=int(serial), epoch_s=START_S, pv_peak_w=3000)
    return DlmsMeter(
        serial,
        physics,
        clock or SimClock(start=NOW_S, speed=1e-9),
        password=PASSWORD,
        physical_address=PHYSICAL,
    )


class SteppedClock(SimClock):
    """A frozen simulated clock that a test moves forward."""

    def __init__(self, start: float) -> None:
        super().__init__(start=start, speed=1e-9)
        self.offset_s = 0.0

    def now(self) -> float:
        return super().now() + self.offset_s


def utc(at_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at_s, dt.UTC)


@pytest.fixture(scope="module")
def loop() -> Iterator[BackgroundLoop]:
    with BackgroundLoop() as background:
        yield background


@pytest.fixture
def tcp_meter(loop: BackgroundLoop) -> Iterator[DlmsTcpMeter]:
    server = DlmsTcpMeter(make_meter())
    loop.run(server.start())
    yield server
    loop.run(server.stop())


@pytest.fixture
def hdlc_bus() -> Iterator[HdlcSerialBus]:
    bus = HdlcSerialBus([make_meter()], timing=False)
    bus.start_sync()
    yield bus
    bus.stop_sync()


@pytest.fixture(params=["wrapper", "hdlc"])
def session_and_meter(
    request: pytest.FixtureRequest, loop: BackgroundLoop
) -> Iterator[tuple[DlmsSession, DlmsMeter]]:
    if request.param == "wrapper":
        server = DlmsTcpMeter(make_meter())
        loop.run(server.start())
        tcp = TcpLink(server.host, server.port)
        session = session_for(tcp, interface="wrapper", password=PASSWORD, name="00012345")
        try:
            with session:
                yield session, server.meter
        finally:
            tcp.close()
            loop.run(server.stop())
    else:
        bus = HdlcSerialBus([make_meter()], timing=False)
        bus.start_sync()
        line = SerialLink(bus.port)
        session = session_for(
            line,
            interface="hdlc",
            physical_address=PHYSICAL,
            password=PASSWORD,
            name="00012345",
        )
        try:
            with session:
                yield session, bus.meters[PHYSICAL]
        finally:
            line.close()
            bus.stop_sync()


def test_clock_registers_profile_and_events(
    session_and_meter: tuple[DlmsSession, DlmsMeter],
) -> None:
    session, meter = session_and_meter
    reader = DlmsMeterReader(meter.serial)
    clock = reader.read_clock(session)
    assert clock.tzinfo is not None
    assert clock.timestamp() == pytest.approx(meter.meter_time(NOW_S), abs=0.02)

    result = reader.read_registers(session, REGISTERS)
    assert result.complete
    truth = meter.presented_values(NOW_S)
    units = {q.obis: q.unit for q in reader.profile.quantities}
    for reading in result.readings:
        assert reading.value == truth[reading.obis], reading.obis
        assert reading.unit == units[reading.obis]
        assert reading.quality == 0 and reading.at_ms == int(clock.timestamp() * 1000)
    assert [r.unit for r in result.readings[:3]] == ["kWh", "kWh", "V"]
    requests = session.requests
    reader.read_registers(session, ["1-0:1.8.0"])
    assert session.requests == requests + 2  # clock and value: the scaler is cached

    start, end = utc(START_S + 10 * 86_400 + 9 * 3600), utc(START_S + 10 * 86_400 + 10.99 * 3600)
    profile = reader.read_load_profile(session, start, end)
    rows = meter.profile_rows(start.timestamp(), end.timestamp())
    assert len(rows) == 8 and profile.complete
    for obis, field in (("1-0:1.8.0", "import_wh"), ("1-0:2.8.0", "export_wh")):
        channel = [r for r in profile.readings if r.obis == obis]
        assert len(channel) == 8
        assert [r.at_ms for r in channel] == [int(row.at_s * 1000) for row in rows]
        assert [r.value for r in channel] == [getattr(row, field) / 1000 for row in rows]
        assert all(r.unit == "kWh" and r.quality == 0 for r in channel)

    assert reader.read_events(session, utc(START_S), clock) == []


def test_profile_catch_up_after_a_gateway_outage_has_no_gap(loop: BackgroundLoop) -> None:
    clock = SteppedClock(NOW_S)
    server = DlmsTcpMeter(make_meter(clock=clock))
    loop.run(server.start())
    reader = DlmsMeterReader("00012345")
    try:
        tcp = TcpLink(server.host, server.port)
        with session_for(tcp, interface="wrapper", password=PASSWORD) as session:
            first = reader.read_load_profile(session, utc(NOW_S - 2 * 3600), utc(NOW_S))
        tcp.close()
        last_at = utc(max(r.at_ms for r in first.readings) / 1000)
        # The gateway is offline for 5 hours; the meter keeps capturing.
        clock.offset_s = 5 * 3600
        later_s = clock.now()
        assert later_s > NOW_S + 5 * 3600 - 1
        tcp = TcpLink(server.host, server.port)
        with session_for(tcp, interface="wrapper", password=PASSWORD) as session:
            missed = reader.catch_up(session, last_at)
        tcp.close()
        stamps = sorted({r.at_ms for r in first.readings} | {r.at_ms for r in missed.readings})
        assert len(stamps) == len({r.at_ms for r in first.readings}) + 20
        assert all(b - a == 900_000 for a, b in itertools.pairwise(stamps))
        truth = server.meter.profile_rows(last_at.timestamp() + 1, later_s)
        assert [r.value for r in missed.readings if r.obis == "1-0:1.8.0"] == [
            row.import_wh / 1000 for row in truth
        ]
    finally:
        loop.run(server.stop())


def test_event_log_after_a_power_cut_and_a_flagged_interval(hdlc_bus: HdlcSerialBus) -> None:
    meter = hdlc_bus.meters[PHYSICAL]
    meter.power_down(NOW_S - 3000)
    meter.power_up(NOW_S - 2000)
    meter.tamper(NOW_S - 1000)
    line = SerialLink(hdlc_bus.port)
    reader = DlmsMeterReader(meter.serial)
    try:
        with session_for(
            line, interface="hdlc", physical_address=PHYSICAL, password=PASSWORD
        ) as session:
            events = reader.read_events(session, utc(NOW_S - 86_400), utc(NOW_S))
            profile = reader.read_load_profile(session, utc(NOW_S - 3600), utc(NOW_S))
    finally:
        line.close()
    assert [(e.code, e.name) for e in events] == [
        (1, "power down"),
        (2, "power up"),
        (40, "terminal cover opened"),
    ]
    assert events[0].at.timestamp() == pytest.approx(NOW_S - 3000, abs=0.01)
    flagged = {r.at_ms for r in profile.readings if r.quality & QualityFlag.INCOMPLETE_PERIOD}
    expected = {
        int(row.at_s * 1000) for row in meter.profile_rows(NOW_S - 3600, NOW_S) if row.status
    }
    assert flagged == expected and flagged
    assert not any(r.quality & QualityFlag.AGENT_TIMESTAMP for r in profile.readings)


def test_a_wrong_password_is_a_clear_error(tcp_meter: DlmsTcpMeter) -> None:
    tcp = TcpLink(tcp_meter.host, tcp_meter.port)
    try:
        refused = pytest.raises(
            AssociationRejected, match=r"(?i)association refused.*authentication"
        )
        with refused, session_for(tcp, interface="wrapper", password="wrong-pw", name="m1"):
            pass
    finally:
        tcp.close()


def test_a_silent_meter_is_a_timeout_not_a_hang(hdlc_bus: HdlcSerialBus) -> None:
    hdlc_bus.meters[PHYSICAL].faults.no_answer = True
    line = SerialLink(hdlc_bus.port)
    started = time.monotonic()
    try:
        silent = pytest.raises(DlmsTimeout, match=r"no .*answer to SNRM")
        with silent, session_for(line, interface="hdlc", physical_address=PHYSICAL, timeout_s=0.3):
            pass
    finally:
        line.close()
    assert time.monotonic() - started < 1.0


def test_hdlc_at_9600_with_line_timing() -> None:
    meter = make_meter()
    bus = HdlcSerialBus([meter], timing=True)
    bus.start_sync()
    line = SerialLink(bus.port)
    try:
        reader = DlmsMeterReader(meter.serial)
        with session_for(
            line, interface="hdlc", physical_address=PHYSICAL, password=PASSWORD
        ) as session:
            result = reader.read_registers(session, ["1-0:1.8.0"])
        assert result.readings[0].value == meter.presented_values(NOW_S)["1-0:1.8.0"]
        assert bus.line.statistics.busy_s > 0.2
    finally:
        line.close()
        bus.stop_sync()


def test_a_slow_meter_is_read_session_after_session(loop: BackgroundLoop) -> None:
    # Answers 1.2 s late, inside the 3 s timeout: the release must be waited
    # for, or its RLRE reaches the next session as the answer to its AARQ.
    server = DlmsTcpMeter(make_meter())
    loop.run(server.start())
    server.meter.faults.slow_s = 1.2
    tcp = TcpLink(server.host, server.port)
    try:
        for _ in range(2):
            with session_for(tcp, interface="wrapper", password=PASSWORD, name="slow") as session:
                clock = DlmsMeterReader("slow").read_clock(session)
                assert clock.timestamp() == pytest.approx(NOW_S, abs=1)
                assert session.late_answers == 0
    finally:
        tcp.close()
        loop.run(server.stop())


def test_a_late_answer_is_not_taken_for_the_next_association(loop: BackgroundLoop) -> None:
    server = DlmsTcpMeter(make_meter())
    loop.run(server.start())
    server.meter.faults.slow_s = 0.6
    tcp = TcpLink(server.host, server.port)
    try:
        impatient = session_for(tcp, interface="wrapper", password=PASSWORD, name="first")
        impatient.open()
        # A client that gave up on the RLRE (another tool on the same port,
        # or a session that ended on its timeout): the RLRE comes later.
        with pytest.raises(DlmsTimeout):
            impatient._transfer(impatient.client.releaseRequest(), "RLRQ", timeout_s=0.2)
        with session_for(tcp, interface="wrapper", password=PASSWORD, name="next") as session:
            assert session.late_answers == 1
            clock = DlmsMeterReader("next").read_clock(session)
            assert clock.timestamp() == pytest.approx(NOW_S, abs=1)
    finally:
        tcp.close()
        loop.run(server.stop())
