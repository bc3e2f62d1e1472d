"""A virtual serial line (RS-485 or optical) between a master and the devices.

Two pseudo-terminal pairs and a relay thread: the master (the agent, mbpoll,
pymodbus's client) opens `client_port`; the simulated devices (pymodbus's
serial server, our DLMS meters) open `device_port`. The relay moves bytes
between them the way the wire would:

- at line rate: each character takes (1 start + data + parity + stop bits) /
  baud seconds, so 9600 8E1 carries at most 872.7 bytes/s, and a master that
  reads faster than that sees the bytes trickle in as from a real line;
- half duplex: one frame on the wire at a time, as on a two-wire RS-485 bus;
- with the device's turnaround: a response starts no earlier than its
  turnaround after the end of the request that caused it;
- through hooks that a bus uses to model addressing and faults: `request_gate`
  decides whether a request frame reaches the devices (a slave that is absent,
  dead or powered down does not see it), `response_filter` may garble,
  truncate, prefix noise to or delay a response.

A "frame" here is a burst: bytes written together with no gap longer than
`burst_gap_s`; masters and devices write each frame with one call, so a burst
is a frame. `timing=False` turns the line-rate model off for fast tests.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import selectors
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

RequestGate = Callable[[bytes], bool]
ResponseFilter = Callable[[bytes], tuple[bytes, float]]  # (bytes to send, extra delay s)
TurnaroundOf = Callable[[bytes], float]


def bits_per_character(bytesize: int, parity: str, stopbits: int) -> int:
    """Bits on the wire per character: start + data + parity + stop."""
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


@dataclass
class LineStatistics:
    """What crossed the line."""

    request_frames: int = 0
    request_bytes: int = 0
    response_frames: int = 0
    response_bytes: int = 0
    dropped_requests: int = 0
    busy_s: float = 0.0  # time the line carried a character


@dataclass(order=True)
class _Delivery:
    due: float
    sequence: int
    fd: int = field(compare=False)
    data: bytes = field(compare=False)


class _PtyEnd:
    """One pseudo-terminal pair: we keep the master, others open the slave path."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        # Raw mode before anyone opens it: no echo, no line editing, 8 bits.
        tty.setraw(self.slave)
        tty.setraw(self.master)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class VirtualSerialLine:
    """A serial line between one master and the devices on it.

    Args:
        baudrate: line speed.
        bytesize, parity, stopbits: the character format (parity "N", "E", "O").
        timing: model line rate and turnaround (False: deliver at once).
        request_gate, response_filter, turnaround_of: hooks, see the module doc.
        burst_gap_s: silence that ends a burst (real time).
    """

    def __init__(
        self,
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
        timing: bool = True,
        request_gate: RequestGate | None = None,
        response_filter: ResponseFilter | None = None,
        turnaround_of: TurnaroundOf | None = None,
        burst_gap_s: float = 0.002,
    ) -> None:
        self.timing = timing
        self.request_gate = request_gate
        self.response_filter = response_filter
        self.turnaround_of = turnaround_of
        self.burst_gap_s = burst_gap_s
        self.statistics = LineStatistics()
        self._lock = threading.Lock()
        self.set_format(baudrate, bytesize, parity, stopbits)
        self._client = _PtyEnd()
        self._device = _PtyEnd()
        self._deliveries: list[_Delivery] = []
        self._sequence = 0
        self._line_free_at = 0.0
        self._request_end_at = 0.0
        self._pending = {self._client.master: bytearray(), self._device.master: bytearray()}
        self._last_byte_at = {self._client.master: 0.0, self._device.master: 0.0}
        self._first_byte_at = {self._client.master: 0.0, self._device.master: 0.0}
        self._stop = threading.Event()
        self._wakeup_read, self._wakeup_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name="virtual-serial-line", daemon=True)
        self._thread.start()

    # -- public ------------------------------------------------------------

    @property
    def client_port(self) -> str:
        """The device path a master opens (e.g. /dev/pts/7)."""
        return self._client.path

    @property
    def device_port(self) -> str:
        """The device path the simulated devices open."""
        return self._device.path

    def set_format(
        self, baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1
    ) -> None:
        """Change speed or character format (e.g. the IEC 62056-21 baud switch)."""
        with self._lock:
            self.baudrate = baudrate
            self.character_s = bits_per_character(bytesize, parity, stopbits) / baudrate

    @property
    def capacity_bytes_per_s(self) -> float:
        """The line's theoretical throughput at the current format."""
        return 1.0 / self.character_s

    def link(self, path: Path) -> None:
        """Make `path` a symlink to the client port (stable names for configs)."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        path.symlink_to(self.client_port)

    def close(self) -> None:
        self._stop.set()
        os.write(self._wakeup_write, b"x")
        self._thread.join(timeout=5)
        self._client.close()
        self._device.close()
        for fd in (self._wakeup_read, self._wakeup_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> VirtualSerialLine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- relay -------------------------------------------------------------

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._client.master, selectors.EVENT_READ)
        selector.register(self._device.master, selectors.EVENT_READ)
        selector.register(self._wakeup_read, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(self._next_timeout()):
                    if key.fd == self._wakeup_read:
                        os.read(self._wakeup_read, 64)
                        continue
                    self._read(key.fd)
                now = time.monotonic()
                self._end_bursts(now)
                self._deliver_due(now)
        except Exception:  # a relay that dies silently would look like dead meters
            log.exception("virtual serial line failed")
        finally:
            selector.close()

    def _next_timeout(self) -> float:
        deadlines = [d.due for d in self._deliveries[:1]]
        deadlines += [
            self._last_byte_at[fd] + self.burst_gap_s
            for fd, pending in self._pending.items()
            if pending
        ]
        if not deadlines:
            return 0.5
        return max(0.0, min(deadlines) - time.monotonic())

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # EIO: nobody has the other side open (a master closed its port).
            time.sleep(0.01)
            return
        if not self._pending[fd]:
            self._first_byte_at[fd] = time.monotonic()
        self._pending[fd] += data
        self._last_byte_at[fd] = time.monotonic()

    def _end_bursts(self, now: float) -> None:
        for fd, pending in self._pending.items():
            if pending and now - self._last_byte_at[fd] >= self.burst_gap_s:
                frame = bytes(pending)
                pending.clear()
                # The frame went on the wire when its first byte was written,
                # not when we noticed its end.
                if fd == self._client.master:
                    self._on_request(frame, self._first_byte_at[fd])
                else:
                    self._on_response(frame, self._first_byte_at[fd])

    def _on_request(self, frame: bytes, now: float) -> None:
        stats = self.statistics
        stats.request_frames += 1
        stats.request_bytes += len(frame)
        start = max(now, self._line_free_at)
        end = start + len(frame) * self.character_s if self.timing else now
        self._occupy(start, end)
        self._request_end_at = end
        if self.request_gate is not None and not self.request_gate(frame):
            stats.dropped_requests += 1
            return
        # The simulated device gets the frame at once, so its computing time
        # hides behind the request's wire time; its answer is still held
        # until the request's end plus its turnaround (_on_response).
        self._schedule(now, self._device.master, frame)

    def _on_response(self, frame: bytes, now: float) -> None:
        extra_s = 0.0
        if self.response_filter is not None:
            frame, extra_s = self.response_filter(frame)
        if not frame:
            return
        stats = self.statistics
        stats.response_frames += 1
        stats.response_bytes += len(frame)
        if not self.timing:
            self._schedule(now, self._client.master, frame)
            return
        turnaround = self.turnaround_of(frame) if self.turnaround_of else 0.0
        start = max(now, self._request_end_at + turnaround + extra_s, self._line_free_at)
        # Trickle: each byte becomes readable when its last bit has arrived.
        for index in range(len(frame)):
            self._schedule(
                start + (index + 1) * self.character_s,
                self._client.master,
                frame[index : index + 1],
            )
        self._occupy(start, start + len(frame) * self.character_s)

    def _occupy(self, start: float, end: float) -> None:
        self.statistics.busy_s += max(0.0, end - max(start, self._line_free_at))
        self._line_free_at = max(self._line_free_at, end)

    def _schedule(self, due: float, fd: int, data: bytes) -> None:
        self._sequence += 1
        heapq.heappush(self._deliveries, _Delivery(due, self._sequence, fd, data))

    def _deliver_due(self, now: float) -> None:
        batches: dict[int, bytearray] = {}
        while self._deliveries and self._deliveries[0].due <= now:
            delivery = heapq.heappop(self._deliveries)
            batches.setdefault(delivery.fd, bytearray()).extend(delivery.data)
        for fd, data in batches.items():
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                written = 0  # the pty's buffer is full: try again on the next pass
            except OSError as exc:  # nobody listening: the bytes fall off the line
                log.debug("line write dropped %d bytes: %s", len(data), exc)
                continue
            if written < len(data):
                self._schedule(now + 0.001, fd, bytes(data[written:]))
