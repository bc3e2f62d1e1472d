"""The links of the simulated DLMS meters: HDLC on a serial line, the TCP wrapper.

What it implements:

- IEC 62056-46 (HDLC, the meter's side, window size 1): SNRM → UA with the
  negotiated parameters (fastcodec's `negotiate_parameters`: each direction
  the smaller of what the sender may send and the receiver accepts), I frames
  with N(S)/N(R) checked and kept, the LLC header E6 E6 00 / E6 E7 00, RR
  acknowledging each segment of a segmented request, a segmented answer sent
  one frame per RR of the client, DISC → UA (DM when not connected), DM to
  an I frame when not connected. Frames for another address are ignored
  (several meters share an RS-485 line). A 1-byte server address names the
  logical device only: use it with one meter per line; 2- and 4-byte
  addresses carry the meter's physical address and are answered in the
  length the client used.
- IEC 62056-47, the wrapper over TCP: an asyncio server, one association per
  connection, wPort 1 (the logical device), the client's wPort as its client
  address.

Strategy: `HdlcServer` (a line's frames in, frames out) and `HdlcMeterLink`
(one meter's data link state) are sans-I/O: bytes and an explicit monotonic
`now` in, frames out. `HdlcSerialBus` is their I/O: a thread that opens the
device side of a `VirtualSerialLine` with pyserial (8N1: a pty carries no
parity) and relays. The COSEM association above them is
`simulators.dlms.CosemSession`.

Inactivity: a link with no traffic for `inactivity_s` real seconds drops back
to disconnected (the HDLC connection and the association go), checked by the
I/O loops without raising anything.

Faults (simulators/faults.py), on the wire: `no_answer` and `powered_down`
make the meter deaf and silent (a power-down also drops its link and logs a
power-down event, a power-up a power-up event); `garble_crc` spoils the FCS,
`truncate_bytes` cuts each frame, `noise` precedes it, `slow_s` delays it.
Over TCP (no checksum, no framing to spoil) only silence and delay apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

import serial

from fastcodec import hdlc
from fastcodec.exceptions import CodecError
from fastcodec.hdlc import FrameKind, HdlcFrame, HdlcParameters
from simulators.dlms import CosemSession, DlmsMeter
from simulators.line import VirtualSerialLine

log = logging.getLogger(__name__)

__all__ = [
    "LLC_REQUEST",
    "LLC_RESPONSE",
    "DlmsTcpMeter",
    "HdlcMeterLink",
    "HdlcSerialBus",
    "HdlcServer",
    "SerialDriver",
    "apply_faults",
]

LLC_REQUEST = b"\xe6\xe6\x00"
LLC_RESPONSE = b"\xe6\xe7\x00"
DEFAULT_LIMITS = HdlcParameters(max_info_transmit=512, max_info_receive=512)
DEFAULT_INACTIVITY_S = 120.0


class HdlcMeterLink:
    """One meter's HDLC data link (sans-I/O).

    Args:
        meter: the meter behind this link.
        limits: the meter's own maximum information lengths (window 1 only).
        inactivity_s: real seconds without a frame before the link drops.
    """

    def __init__(
        self,
        meter: DlmsMeter,
        *,
        limits: HdlcParameters = DEFAULT_LIMITS,
        inactivity_s: float = DEFAULT_INACTIVITY_S,
    ) -> None:
        self.meter = meter
        self.limits = limits._replace(window_transmit=1, window_receive=1)
        self.inactivity_s = inactivity_s
        self.connected = False
        self.session: CosemSession | None = None
        self.parameters = HdlcParameters()
        self.client_address = 0
        self.address_length = 2
        self._send_sequence = 0  # V(S)
        self._receive_sequence = 0  # V(R)
        self._reassembler = hdlc.Reassembler()
        self._pending: list[bytes] = []  # segments of an answer not yet sent
        self._last_sent: bytes = b""
        self.last_activity = 0.0
        self.drops = 0

    def addressed(self, frame: HdlcFrame, single_meter: bool) -> bool:
        """True when the frame is for this meter."""
        length = frame.destination_address_length
        if length == 1:
            return single_meter and frame.destination_address == self.meter.logical_address
        upper, lower = hdlc.server_address_parts(frame.destination_address, length)
        return upper == self.meter.logical_address and lower == self.meter.physical_address

    def _our_address(self) -> int:
        lower = 0 if self.address_length == 1 else self.meter.physical_address
        return hdlc.server_address(self.meter.logical_address, lower, self.address_length)

    def _frame(self, kind: FrameKind, information: bytes = b"", **fields: int) -> bytes:
        return hdlc.build_frame(
            kind,
            self.client_address,
            self._our_address(),
            information,
            destination_address_length=1,
            source_address_length=self.address_length,
            **fields,  # type: ignore[arg-type]
        )

    def disconnect(self) -> None:
        """Back to the normal disconnected mode; the association goes too."""
        self.connected = False
        self.session = None
        self._pending = []
        self._reassembler.reset()

    def check_timeout(self, now: float) -> bool:
        """Drop a connection idle for `inactivity_s`; True when it did."""
        if self.connected and now - self.last_activity > self.inactivity_s:
            log.info("meter %s: HDLC inactivity timeout", self.meter.serial)
            self.disconnect()
            self.drops += 1
            return True
        return False

    def receive_frame(self, frame: HdlcFrame, now: float) -> list[bytes]:
        """Take one frame addressed to this meter; return the frames to send."""
        self.last_activity = now
        kind = frame.kind
        if kind is FrameKind.SNRM:
            return [self._on_snrm(frame)]
        if frame.source_address != self.client_address or not self.connected:
            if kind is FrameKind.DISC or kind is FrameKind.I or kind is FrameKind.RR:
                self.client_address = frame.source_address
                self.address_length = frame.destination_address_length
                return [self._frame(FrameKind.DM)]
            return []
        if kind is FrameKind.DISC:
            self.disconnect()
            return [self._frame(FrameKind.UA)]
        if kind is FrameKind.I:
            return self._on_information(frame)
        if kind is FrameKind.RR:
            return self._on_receive_ready(frame)
        return []  # UI, RNR, UA, DM, FRMR from a client: nothing to do

    def _on_snrm(self, frame: HdlcFrame) -> bytes:
        self.disconnect()
        self.client_address = frame.source_address
        self.address_length = frame.destination_address_length
        try:
            proposal = hdlc.parse_parameters(frame.information)
        except CodecError:
            proposal = HdlcParameters()
        self.parameters = hdlc.negotiate_parameters(proposal, self.limits)
        self._send_sequence = self._receive_sequence = 0
        self.connected = True
        self.session = CosemSession(self.meter, frame.source_address)
        return self._frame(FrameKind.UA, hdlc.build_parameters(self.parameters))

    def _on_information(self, frame: HdlcFrame) -> list[bytes]:
        if frame.send_sequence != self._receive_sequence:
            # A repeat of the last request (our answer was lost): answer again.
            if frame.send_sequence == (self._receive_sequence - 1) & 7 and self._last_sent:
                return [self._last_sent]
            return []
        self._receive_sequence = (self._receive_sequence + 1) & 7
        self._pending = []
        try:
            whole = self._reassembler.add(frame)
        except CodecError:
            return []
        if whole is hdlc.NEED_DATA:
            return [self._frame(FrameKind.RR, receive_sequence=self._receive_sequence)]
        assert isinstance(whole, bytes)
        request = whole[3:] if whole.startswith(LLC_REQUEST) else whole
        assert self.session is not None
        answer = self.session.receive_apdu(request)
        if answer is None:
            return []
        frames = hdlc.build_segmented_frames(
            LLC_RESPONSE + answer,
            self.parameters.max_info_transmit,
            self.client_address,
            self._our_address(),
            send_sequence=self._send_sequence,
            receive_sequence=self._receive_sequence,
            destination_address_length=1,
            source_address_length=self.address_length,
        )
        self._pending = frames[1:]
        return [self._send(frames[0])]

    def _send(self, frame: bytes) -> bytes:
        self._send_sequence = (self._send_sequence + 1) & 7
        self._last_sent = frame
        return frame

    def _on_receive_ready(self, frame: HdlcFrame) -> list[bytes]:
        if frame.receive_sequence != self._send_sequence and self._last_sent:
            return [self._last_sent]  # the client missed our last frame
        if self._pending:
            return [self._send(self._pending.pop(0))]
        return [self._frame(FrameKind.RR, receive_sequence=self._receive_sequence)]


class HdlcServer:
    """The meters on one line, sans-I/O: bytes in, (meter, frame) out.

    Args:
        meters: the meters sharing the line (physical addresses must differ).
        limits, inactivity_s: see `HdlcMeterLink`.
    """

    def __init__(
        self,
        meters: Sequence[DlmsMeter],
        *,
        limits: HdlcParameters = DEFAULT_LIMITS,
        inactivity_s: float = DEFAULT_INACTIVITY_S,
    ) -> None:
        addresses = [meter.physical_address for meter in meters]
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"physical addresses on one line must differ: {sorted(addresses)}")
        self.links = [HdlcMeterLink(m, limits=limits, inactivity_s=inactivity_s) for m in meters]
        self.splitter = hdlc.FrameSplitter()

    def reset(self) -> None:
        """Forget partial input and drop every connection (a baud switch, a break)."""
        self.splitter = hdlc.FrameSplitter()
        for link in self.links:
            link.disconnect()

    def receive_data(self, data: bytes, now: float) -> list[tuple[DlmsMeter, bytes]]:
        """Feed bytes read from the line; return each meter's frames to send."""
        out: list[tuple[DlmsMeter, bytes]] = []
        self._observe(now)
        try:
            self.splitter.feed(data)
        except CodecError:
            self.splitter = hdlc.FrameSplitter()
            return out
        while True:
            frame = self.splitter.next_frame()
            if frame is hdlc.NEED_DATA:
                return out
            assert isinstance(frame, HdlcFrame)
            for link in self.links:
                if not link.addressed(frame, len(self.links) == 1):
                    continue
                if not link.meter.faults.answers:
                    continue  # deaf: a dead receiver or no supply
                out.extend((link.meter, f) for f in link.receive_frame(frame, now))

    def poll(self, now: float) -> None:
        """Power changes and inactivity timeouts; call every few tenths of a second."""
        self._observe(now)
        for link in self.links:
            link.check_timeout(now)

    def _observe(self, now: float) -> None:
        for link in self.links:
            if link.meter.observe_faults() and link.meter.is_down:
                link.disconnect()


def apply_faults(meter: DlmsMeter, frame: bytes) -> bytes:
    """An answer as the meter's faults put it on the wire.

    An HDLC frame ends with its flag: a garbled checksum is its FCS (the byte
    before the flag), not the flag itself.
    """
    faults = meter.faults
    if faults.garble_crc and len(frame) > 3 and frame[0] == frame[-1] == hdlc.FLAG:
        frame = frame[:-2] + bytes((frame[-2] ^ 0xFF, hdlc.FLAG))
    elif faults.garble_crc and frame:
        frame = frame[:-1] + bytes((frame[-1] ^ 0xFF,))
    if faults.truncate_bytes:
        frame = frame[: max(0, len(frame) - faults.truncate_bytes)]
    return faults.noise + frame


class SerialDriver:
    """A thread that serves the device side of a `VirtualSerialLine`.

    Args:
        line: the line; its device port is opened 8N1 with pyserial.
        on_data: bytes read, monotonic now → (meter, bytes to write) pairs.
        on_poll: called every `poll_s` with monotonic now.
    """

    def __init__(
        self,
        line: VirtualSerialLine,
        on_data: Callable[[bytes, float], list[tuple[DlmsMeter | None, bytes]]],
        on_poll: Callable[[float], None],
        *,
        poll_s: float = 0.05,
        name: str = "dlms-serial",
    ) -> None:
        self.line = line
        self._on_data = on_data
        self._on_poll = on_poll
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._port = serial.Serial(line.device_port, 9600, timeout=poll_s)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def write(self, meter: DlmsMeter | None, data: bytes) -> None:
        """Put an answer on the line as the meter's faults shape it."""
        if meter is not None:
            if not meter.faults.answers:
                return
            if meter.faults.slow_s:
                time.sleep(meter.faults.slow_s)
            data = apply_faults(meter, data)
        if data:
            self._port.write(data)
            self._port.flush()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data = self._port.read(1)
                    if data:
                        data += self._port.read(self._port.in_waiting)
                except (serial.SerialException, OSError, TypeError):
                    if self._stop.is_set():
                        return
                    time.sleep(self._poll_s)
                    continue
                now = time.monotonic()
                if data:
                    for meter, answer in self._on_data(data, now):
                        self.write(meter, answer)
                self._on_poll(now)
        except Exception:  # a driver that dies silently would look like dead meters
            log.exception("DLMS serial driver failed")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self._port.close()


class HdlcSerialBus:
    """DLMS meters speaking HDLC on one virtual serial line (RS-485 or a probe).

    Args:
        meters: the meters (physical addresses must differ).
        baudrate, bytesize, parity, stopbits: the line format the line models.
        timing: model line rate (False for fast tests).
        limits, inactivity_s: see `HdlcMeterLink`.
    """

    def __init__(
        self,
        meters: Sequence[DlmsMeter],
        *,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        timing: bool = True,
        limits: HdlcParameters = DEFAULT_LIMITS,
        inactivity_s: float = DEFAULT_INACTIVITY_S,
    ) -> None:
        self.meters = {meter.physical_address: meter for meter in meters}
        self.server = HdlcServer(meters, limits=limits, inactivity_s=inactivity_s)
        self.line = VirtualSerialLine(
            baudrate=baudrate, parity=parity, stopbits=stopbits, timing=timing
        )
        self._driver: SerialDriver | None = None

    @property
    def port(self) -> str:
        """The serial device a master opens."""
        return self.line.client_port

    async def start(self) -> None:
        self.start_sync()

    def start_sync(self) -> None:
        self._driver = SerialDriver(
            self.line,
            self.server.receive_data,  # type: ignore[arg-type]
            self.server.poll,
            name="dlms-hdlc-bus",
        )

    async def stop(self) -> None:
        self.stop_sync()

    def stop_sync(self) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None
        self.line.close()


class DlmsTcpMeter:
    """A DLMS meter on the IEC 62056-47 wrapper over TCP (one loopback port).

    Args:
        meter: the meter.
        host, port: where to listen (port 0: any free port, read `port` after start).
        inactivity_s: real seconds without a request before the connection closes.
        max_receive_pdu_size: the server's max receive PDU size.
    """

    def __init__(
        self,
        meter: DlmsMeter,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        inactivity_s: float = DEFAULT_INACTIVITY_S,
        max_receive_pdu_size: int = 1024,
    ) -> None:
        self.meter = meter
        self.host, self.port = host, port
        self.inactivity_s = inactivity_s
        self.max_receive_pdu_size = max_receive_pdu_size
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.connections = 0
        self.timeouts = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._watcher = asyncio.create_task(self._watch_power())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _watch_power(self) -> None:
        while True:
            self.meter.observe_faults()
            if self.meter.is_down:
                for writer in list(self._writers):
                    writer.close()  # no supply: the modem's TCP connection goes too
            await asyncio.sleep(0.1)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        splitter = hdlc.WrapperSplitter()
        session: CosemSession | None = None
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(4096), self.inactivity_s)
                except TimeoutError:
                    self.timeouts += 1
                    return
                if not data:
                    return
                splitter.feed(data)
                while (frame := splitter.next_frame()) is not hdlc.NEED_DATA:
                    assert isinstance(frame, hdlc.WrapperFrame)
                    self.meter.observe_faults()
                    faults = self.meter.faults
                    if not faults.answers or frame.destination_wport != 1:
                        continue
                    if session is None or session.client_address != frame.source_wport:
                        session = CosemSession(
                            self.meter,
                            frame.source_wport,
                            max_receive_pdu_size=self.max_receive_pdu_size,
                        )
                    answer = session.receive_apdu(frame.apdu)
                    if answer is None:
                        continue
                    if faults.slow_s:
                        await asyncio.sleep(faults.slow_s)
                    writer.write(hdlc.build_wrapper(answer, 1, frame.source_wport))
                    await writer.drain()
        except (CodecError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
