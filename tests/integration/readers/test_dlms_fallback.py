"""The fast profile path's hand-over to gurux, against simulated meters that answer oddly.

`firmware_bridge.dlms_link.get` returns `Unhandled` for an answer it does not
decode, and `DlmsSession.get_by_range` then asks again through gurux (logged,
counted in `link_statistics.fallbacks`). The simulated meter's
`faults.profile_answer` makes it answer profile GETs that way:

- "normal-priority": the invoke-id-and-priority comes back with the priority
  bit cleared (a meter without priority management). Valid DLMS that gurux
  reads; our path sees another invoke-id-and-priority and hands over. The rows
  must be the meter's own, the same as the fast path reads from a healthy
  meter, and the association must go on in sequence (a second profile read
  and a register read on the same session).
- "garbled": a GET-Response of a choice that does not exist. Neither path
  reads it: a clear `DataAccessError` in the `ProfileFailure`, counted, and
  the session's next read works once the meter answers properly again.

- "service-error": a ConfirmedServiceError is the meter's refusal: a
  `DataAccessError` at once, not a hand-over.

Over HDLC on a pty (sequence numbers handed between gurux and our path) and
over the IEC 62056-47 TCP wrapper, with 24 rows (one APDU) and 192 rows
(datablocks: the hand-over happens on the first block, or, when the meter
changes its mind, on the second). Last, the fault switched on a running
fleet's meter with `voltstack-sim fault` (and an unknown variant refused).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.adapters.dlms_reader import DlmsMeterReader, session_for
from firmware_bridge.dlms_link import LLC_REQUEST
from firmware_bridge.exceptions import DataAccessError
from firmware_bridge.links import BytePipe, TcpLink
from simulators.clock import SimClock
from simulators.dlms import DlmsMeter
from simulators.faults import PROFILE_ANSWERS, MeterFaults
from simulators.fleet import Fleet, load_fleet
from simulators.runtime import BackgroundLoop
from tests.integration.readers.conftest import SessionFactory
from tests.integration.readers.pipes import PipeInFront
from tests.integration.readers.test_dlms_fast_profile import (
    LAST_ROW_S,
    QUARTER_S,
    assert_matches_meter,
)
from tests.integration.readers.test_dlms_reader import (
    NOW_S,
    REGISTERS,
    utc,
)

pytestmark = pytest.mark.integration

READER_LOG = "edge_agent.adapters.dlms_reader"
SIM = Path(sys.executable).parent / "voltstack-sim"
DLMS_FLEET_YAML = """\
seed: 11
timing: false
gateways:
  - id: gw-dlms
    dlms_tcp:
      - name: wrapper
        meters:
          - {model: generic-dlms, count: 1, first_unit: 17}
"""
GET_NEXT = b"\xc0\x02"  # GET-Request-Next (Green Book §9.5)


@pytest.mark.parametrize("rows", [24, 192])
def test_a_meter_without_priority_management_is_read_through_gurux(
    meter_and_sessions: tuple[DlmsMeter, SessionFactory],
    rows: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    meter, sessions = meter_and_sessions
    start, end = utc(LAST_ROW_S - (rows - 1) * QUARTER_S), utc(LAST_ROW_S)
    with sessions() as healthy:
        fast = DlmsMeterReader(meter.serial).read_load_profile(healthy, start, end)
    assert healthy.link_statistics.fallbacks == 0

    meter.faults.profile_answer = "normal-priority"
    reader = DlmsMeterReader(meter.serial)
    with caplog.at_level(logging.WARNING, logger=READER_LOG), sessions() as session:
        first = reader.read_load_profile(session, start, end)
        again = reader.read_load_profile(session, start, end)  # the association goes on
        registers = reader.read_registers(session, REGISTERS[:2])

    assert first == fast and again == fast
    assert_matches_meter(first, meter, rows)
    statistics = session.link_statistics
    assert statistics.fallbacks == 2 and statistics.undecoded_answers == 0
    assert statistics.bad_frames == 0 and statistics.repolls == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == READER_LOG]
    assert len(warnings) == 2
    assert all("asking through gurux" in w and "invoke-id 0x41, asked 0xC1" in w for w in warnings)
    assert registers.complete  # gurux's frames after the hand-over stay in sequence
    truth = meter.presented_values(NOW_S)
    assert [r.value for r in registers.readings] == [truth[o] for o in REGISTERS[:2]]


def test_the_event_log_is_read_through_gurux_too(
    meter_and_sessions: tuple[DlmsMeter, SessionFactory],
) -> None:
    meter, sessions = meter_and_sessions
    meter.tamper(NOW_S - 600)
    window = (utc(NOW_S - 86_400), utc(NOW_S))
    with sessions() as healthy:
        expected = DlmsMeterReader(meter.serial).read_events(healthy, *window)
    meter.faults.profile_answer = "normal-priority"
    with sessions() as session:
        events = DlmsMeterReader(meter.serial).read_events(session, *window)
    assert events == expected
    assert [(e.at.timestamp(), e.code) for e in events][-1] == (NOW_S - 600, 40)
    assert session.link_statistics.fallbacks == 1


@pytest.mark.parametrize("rows", [24, 192])
def test_a_garbled_answer_is_a_clear_error_and_the_next_read_works(
    meter_and_sessions: tuple[DlmsMeter, SessionFactory], rows: int
) -> None:
    meter, sessions = meter_and_sessions
    start, end = utc(LAST_ROW_S - (rows - 1) * QUARTER_S), utc(LAST_ROW_S)
    reader = DlmsMeterReader(meter.serial)
    with sessions() as session:
        reader.read_load_profile(session, end, end)  # capture objects and scalers cached
        meter.faults.profile_answer = "garbled"
        garbled = reader.read_load_profile(session, start, end)
        meter.faults.profile_answer = ""
        healed = reader.read_load_profile(session, start, end)
        registers = reader.read_registers(session, REGISTERS[:2])

    assert garbled.readings == []
    (failure,) = garbled.failures
    assert failure.obis == "1-0:99.1.0"
    assert isinstance(failure.error, DataAccessError)
    message = str(failure.error)
    assert message.startswith(f"{meter.serial}: unreadable answer to GET 1-0:99.1.0/2 by range")
    statistics = session.link_statistics
    # Our path could not decode it (counted), gurux was asked and could not either.
    assert statistics.undecoded_answers == 1 and statistics.fallbacks == 1
    assert_matches_meter(healed, meter, rows)
    assert registers.complete


def test_a_confirmed_service_error_is_the_meters_refusal_on_both_paths(
    meter_and_sessions: tuple[DlmsMeter, SessionFactory],
) -> None:
    meter, sessions = meter_and_sessions
    meter.faults.profile_answer = "service-error"
    start, end = utc(LAST_ROW_S - 3600), utc(LAST_ROW_S)
    for fast_profile in (True, False):
        with sessions(fast_profile) as session:
            with pytest.raises(DataAccessError) as refused:
                session.get_by_range(7, "1-0:99.1.0", 2, start, end)
            assert DlmsMeterReader(meter.serial).read_clock(session).tzinfo is not None
        if fast_profile:
            # The meter's verdict, named: not asked a second time through gurux.
            assert str(refused.value) == (
                f"{meter.serial}: GET 1-0:99.1.0/2 by range refused:"
                " confirmed-service-error (read, access 1)"
            )
            assert session.link_statistics.fallbacks == 0
            assert session.link_statistics.exchanges == 1
        else:
            assert "ServiceError Read" in str(refused.value)  # gurux's words for it


class SwitchOnGetNext(PipeInFront):
    """A pipe that calls `switch` once, just before the first GET-Request-Next
    (C0 02) goes out: the meter's answers change in the middle of a block transfer."""

    def __init__(self, pipe: BytePipe, switch: Callable[[], None]) -> None:
        super().__init__(pipe)
        self._switch: Callable[[], None] | None = switch

    def write(self, data: bytes) -> None:
        # HDLC: after the LLC header; wrapper: after the 8-octet header.
        if self._switch and (LLC_REQUEST + GET_NEXT in data or data[8:10] == GET_NEXT):
            self._switch()
            self._switch = None
        self.pipe.write(data)


def test_a_hand_over_in_the_middle_of_a_block_transfer(
    meter_and_sessions: tuple[DlmsMeter, SessionFactory],
) -> None:
    meter, sessions = meter_and_sessions
    rows = 192  # datablocks with the client's 1024-octet PDU

    def clear_the_priority_bit() -> None:
        meter.faults.profile_answer = "normal-priority"

    start, end = utc(LAST_ROW_S - (rows - 1) * QUARTER_S), utc(LAST_ROW_S)
    reader = DlmsMeterReader(meter.serial)
    with sessions(wrap=lambda pipe: SwitchOnGetNext(pipe, clear_the_priority_bit)) as session:
        profile = reader.read_load_profile(session, start, end)
        registers = reader.read_registers(session, REGISTERS[:2])
    assert meter.faults.profile_answer == "normal-priority"  # it did switch
    assert_matches_meter(profile, meter, rows)
    assert session.link_statistics.fallbacks == 1
    assert session.link_statistics.exchanges == 2  # block 1, then block 2 refused
    assert registers.complete


def test_the_fault_takes_known_variants_only() -> None:
    faults = MeterFaults()
    for variant in PROFILE_ANSWERS:
        faults.profile_answer = variant
    with pytest.raises(ValueError, match="profile_answer 'gbt' is none of"):
        faults.profile_answer = "gbt"
    faults.clear()
    assert faults.profile_answer == ""


def sim_fault(fleet: Fleet, serial: str, *settings: str) -> subprocess.CompletedProcess[str]:
    command = [SIM, "fault", serial, *settings, "--state-dir", str(fleet.state_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_the_fault_command_switches_a_fleet_meter_to_the_variant(
    tmp_path: Path, loop: BackgroundLoop
) -> None:
    (tmp_path / "fleet.yaml").write_text(DLMS_FLEET_YAML)
    spec = load_fleet(tmp_path / "fleet.yaml")
    fleet = loop.run(Fleet.start(spec, tmp_path / "state", clock=SimClock(speed=1e-9)), 120)
    try:
        (placed,) = fleet.meters.values()
        meter = placed.device
        assert isinstance(meter, DlmsMeter)
        refused = sim_fault(fleet, placed.serial, "profile_answer=gbt")
        assert refused.returncode == 1 and "profile_answer 'gbt' is none of" in refused.stderr
        switched = sim_fault(fleet, placed.serial, "profile_answer=normal-priority")
        assert switched.returncode == 0, switched.stderr
        assert '"profile_answer": "normal-priority"' in switched.stdout

        last_row_s = meter.clock.now() // QUARTER_S * QUARTER_S
        host, port = placed.port.rsplit(":", 1)
        tcp = TcpLink(host, int(port))
        try:
            with session_for(tcp, interface="wrapper", password=meter.password) as session:
                profile = DlmsMeterReader(placed.serial).read_load_profile(
                    session, utc(last_row_s - 7 * QUARTER_S), utc(last_row_s)
                )
        finally:
            tcp.close()
        assert profile.complete and session.link_statistics.fallbacks == 1
        truth = meter.profile_rows(last_row_s - 7 * QUARTER_S, last_row_s)
        assert len(truth) == 8
        imported = [r for r in profile.readings if r.obis == "1-0:1.8.0"]
        assert [(r.at_ms, r.value) for r in imported] == [
            (int(row.at_s * 1000), row.import_wh / 1000) for row in truth
        ]
        assert sim_fault(fleet, placed.serial, "clear=true").returncode == 0
        assert meter.faults.profile_answer == ""
    finally:
        loop.run(fleet.stop())
