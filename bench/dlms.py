"""`python -m bench dlms`: the cost of taking one load-profile answer off the line,
gurux's path against fastcodec's (the reader's hot path), in the same run.

The answer is real: a simulated meter (`simulators.dlms_links.HdlcServer`, in
memory, no pty) answers a `DlmsSession` after SNRM/UA and AARQ/AARE, and its
HDLC frames for one GET by range (segmented at the negotiated 128 octets, one
frame per RR) are recorded. Then each path takes those frames as it does in
the reader, RR frames built included, until the capture buffer is decoded:

- gurux: `GXDLMSClient.getData` per frame, `receiverReady` between frames, the
  answer's Data taken from `reply.data` and decoded by fastcodec's
  `decode_capture_buffer` (what `DlmsSession.get_raw` + the reader did);
- fastcodec: `FrameSplitter` → `Reassembler` (RR built by `build_frame`) →
  `parse_apdu` → `decode_capture_buffer` (what `firmware_bridge.dlms_link` does).

Both results are checked equal before timing. gurux's sequence state is put
back before each run (it checks N(S)/N(R)). No line time: the I/O is the same
for both paths, this measures what the gateway's CPU spends per answer.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from bench._timing import machine_line, seconds_per_call
from edge_agent.adapters.dlms_reader import LOAD_PROFILE, DlmsSession, LowSecurity
from fastcodec import apdu, axdr, hdlc
from fastcodec.hdlc import FrameKind, HdlcFrame
from simulators.clock import SimClock
from simulators.dlms import DlmsMeter
from simulators.dlms_links import HdlcServer
from simulators.physics import MeterPhysics

START_S = 1_767_225_600.0  # 2026-01-01 00:00 UTC
NOW_S = START_S + 10 * 86_400 + 12 * 3600
PHYSICAL = 17
PASSWORD = "00000000"
CASES = (24, 96)


class _MeterInMemory:
    """A BytePipe to a simulated meter's sans-I/O HDLC server; records its answers."""

    character_time_s = 0.0

    def __init__(self, server: HdlcServer) -> None:
        self._server = server
        self._inbound = bytearray()
        self.answers: list[bytes] = []

    def write(self, data: bytes) -> None:
        for _, frame in self._server.receive_data(data, time.monotonic()):
            self.answers.append(frame)
            self._inbound += frame

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        data = bytes(self._inbound[:max_bytes])
        del self._inbound[:max_bytes]
        return data

    def discard_input(self) -> int:
        dropped = len(self._inbound)
        self._inbound.clear()
        return dropped

    def set_format(
        self, baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1
    ) -> None:
        pass

    def close(self) -> None:
        pass


def _recorded_answer(rows: int) -> tuple[list[bytes], DlmsSession, tuple[int, int]]:
    meter = DlmsMeter(
        "00012345",
        MeterPhysics(seed=12345, epoch_s=START_S, pv_peak_w=3000),
        SimClock(start=NOW_S, speed=1e-9),
        password=PASSWORD,
        physical_address=PHYSICAL,
    )
    pipe = _MeterInMemory(HdlcServer([meter]))
    session = DlmsSession(
        pipe,
        interface="hdlc",
        physical_address=PHYSICAL,
        security=LowSecurity(PASSWORD),
        fast_profile=False,
    )
    session.open()
    settings = session.client.settings
    state = (settings.senderFrame, settings.receiverFrame)
    end = dt.datetime.fromtimestamp(NOW_S, dt.UTC)
    start = end - dt.timedelta(minutes=15 * (rows - 1))
    pipe.answers.clear()
    session.get_by_range(7, LOAD_PROFILE, 2, start, end)
    return list(pipe.answers), session, state


def _gurux_path(
    frames: list[bytes], session: DlmsSession, state: tuple[int, int]
) -> Callable[[], axdr.CaptureColumns]:
    from gurux_dlms import GXByteBuffer, GXReplyData  # type: ignore[import-untyped]

    client = session.client
    settings = client.settings

    def take() -> axdr.CaptureColumns:
        settings.senderFrame, settings.receiverFrame = state
        reply = GXReplyData()
        for frame in frames:
            client.getData(GXByteBuffer(frame), reply)
            if reply.isMoreData():
                client.receiverReady(reply)
        return axdr.decode_capture_buffer(bytes(reply.data.array()))

    return take


def _fastcodec_path(frames: list[bytes]) -> Callable[[], axdr.CaptureColumns]:
    client_address = 1
    server = hdlc.server_address(1, PHYSICAL, 2)

    def take() -> axdr.CaptureColumns:
        splitter, reassembler = hdlc.FrameSplitter(), hdlc.Reassembler()
        receive = 0
        whole: object = hdlc.NEED_DATA
        for data in frames:
            splitter.feed(data)
            frame = splitter.next_frame()
            assert isinstance(frame, HdlcFrame)
            receive = (receive + 1) & 7
            whole = reassembler.add(frame)
            if whole is hdlc.NEED_DATA:
                hdlc.build_frame(
                    FrameKind.RR,
                    server,
                    client_address,
                    receive_sequence=receive,
                    destination_address_length=2,
                    source_address_length=1,
                )
        assert isinstance(whole, bytes)
        answer = apdu.parse_apdu(whole[3:])
        assert isinstance(answer, apdu.GetResponseNormal) and isinstance(answer.result, bytes)
        return axdr.decode_capture_buffer(answer.result)

    return take


def run() -> None:
    print(machine_line())
    print(
        f"fastcodec: apdu {apdu.IMPLEMENTATION}, hdlc {hdlc.IMPLEMENTATION}, axdr "
        f"{axdr.IMPLEMENTATION}"
    )
    for rows in CASES:
        frames, session, state = _recorded_answer(rows)
        gurux, ours = _gurux_path(frames, session, state), _fastcodec_path(frames)
        expected = gurux()
        assert ours() == expected and expected.row_count == rows, "the paths disagree"
        octets = sum(len(f) for f in frames)
        gurux_s, ours_s = seconds_per_call(gurux), seconds_per_call(ours)
        case = f"profile answer {rows} rows, {len(frames)} frames, {octets} B"
        print(f"{case:<44} gurux path      {gurux_s * 1e6:>9.1f} µs/answer")
        print(
            f"{case:<44} fastcodec path  {ours_s * 1e6:>9.1f} µs/answer  "
            f"{gurux_s / ours_s:>6.1f}x faster than gurux's"
        )
