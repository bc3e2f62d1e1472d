"""One RS-485 bus, one transaction at a time: arbitration, timing, breakers, statistics.

Field reality this answers (from the peers' trackers): one dead meter must not
block its neighbours for timeout × retries on every cycle; the second meter on
a port keeps its own settings; frames need the silent interval between them,
and some meters want more before they listen.

- **Arbitration**: a lock per bus; callers from any thread queue on it.
- **Silence**: before each request the line has been quiet for 3.5
  characters (Modbus over serial line §2.5.1.1; 1.75 ms above 19200 baud),
  or longer where a meter asks for it.
- **Timeouts and retries** per meter; the response deadline counts from the
  end of the request's transmission, not from the write call.
- **Circuit breaker** per meter: after `failures_to_open` failed
  transactions the meter is not asked again until its back-off has passed
  (doubling up to `max_backoff_s`); then one probe with no retries decides.
  A dead meter costs the bus one short probe per back-off period, and a
  revived one is back within one period.
- **Statistics**: requests, answers, timeouts, garbled answers, exceptions,
  echoes, answers from the wrong unit, noise bytes, line utilisation.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from fastcodec import modbus
from fastcodec.crc import crc16_modbus
from firmware_bridge.exceptions import (
    GarbledResponse,
    MeterUnavailable,
    NoResponse,
    RemoteException,
)
from firmware_bridge.links import BytePipe, sleep_until

log = logging.getLogger(__name__)

__all__ = [
    "BreakerPolicy",
    "BusStatistics",
    "CircuitBreaker",
    "ModbusBus",
    "ModbusTcpBus",
    "PolledDevice",
]


@dataclass(frozen=True)
class PolledDevice:
    """How to talk to one meter on a bus (its own settings, never a neighbour's)."""

    name: str  # the serial number, for messages and statistics
    unit_id: int
    timeout_s: float = 0.5
    retries: int = 1
    silence_s: float = 0.0  # extra line silence before its requests


@dataclass(frozen=True)
class BreakerPolicy:
    failures_to_open: int = 2
    first_backoff_s: float = 5.0
    max_backoff_s: float = 60.0


class BreakerState(Enum):
    CLOSED = "closed"  # healthy: asked normally
    OPEN = "open"  # failing: not asked until its back-off has passed
    HALF_OPEN = "half-open"  # back-off over: one probe decides


@dataclass
class CircuitBreaker:
    """The health of one meter as the bus sees it."""

    policy: BreakerPolicy
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    backoff_s: float = 0.0
    retry_at: float = 0.0

    def allows(self, now: float) -> bool:
        if self.state is BreakerState.OPEN and now >= self.retry_at:
            self.state = BreakerState.HALF_OPEN
        return self.state is not BreakerState.OPEN

    def succeeded(self) -> None:
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.backoff_s = 0.0

    def failed(self, now: float) -> None:
        self.consecutive_failures += 1
        probing = self.state is BreakerState.HALF_OPEN
        if probing or self.consecutive_failures >= self.policy.failures_to_open:
            self.backoff_s = (
                min(self.backoff_s * 2, self.policy.max_backoff_s)
                if probing
                else self.policy.first_backoff_s
            )
            self.state = BreakerState.OPEN
            self.retry_at = now + self.backoff_s


@dataclass
class BusStatistics:
    """What the bus did since it was opened."""

    requests: int = 0
    answers: int = 0
    timeouts: int = 0
    garbled: int = 0
    exceptions: int = 0
    echoes: int = 0
    wrong_unit: int = 0
    skipped_breaker_open: int = 0
    noise_bytes: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    busy_s: float = 0.0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def utilisation(self) -> float:
        """Share of the time since opening that the line carried characters."""
        elapsed = time.monotonic() - self.started_at
        return self.busy_s / elapsed if elapsed > 0 else 0.0


class ModbusBus:
    """A Modbus RTU bus on one link (see the module doc).

    Args:
        link: the port.
        breaker_policy: when to stop asking a failing meter.
    """

    def __init__(self, link: BytePipe, *, breaker_policy: BreakerPolicy | None = None) -> None:
        self.link = link
        self.statistics = BusStatistics()
        self._policy = breaker_policy or BreakerPolicy()
        self._breakers: dict[int, CircuitBreaker] = {}
        self._lock = threading.Lock()
        self._quiet_since = 0.0

    @property
    def silent_interval_s(self) -> float:
        """t3.5: 3.5 characters, at least 1.75 ms (serial line §2.5.1.1)."""
        character = self.link.character_time_s
        return 0.0 if character == 0 else max(3.5 * character, 0.00175)

    def breaker(self, device: PolledDevice) -> CircuitBreaker:
        return self._breakers.setdefault(device.unit_id, CircuitBreaker(self._policy))

    def transact(
        self, device: PolledDevice, request: bytes
    ) -> modbus.ReadRegistersResponse | object:
        """Send one request to one meter and return its parsed answer.

        Raises:
            MeterUnavailable: its breaker is open; nothing was sent.
            NoResponse: silence on every try.
            GarbledResponse: bytes came, but no valid answer from it.
            RemoteException: it answered with a Modbus exception.
            LinkClosed: the port went away.
        """
        with self._lock:
            breaker = self.breaker(device)
            now = time.monotonic()
            if not breaker.allows(now):
                self.statistics.skipped_breaker_open += 1
                raise MeterUnavailable(
                    device.name,
                    f"not asked for {breaker.retry_at - now:.0f} s more "
                    f"after {breaker.consecutive_failures} failures",
                )
            tries = 1 if breaker.state is BreakerState.HALF_OPEN else 1 + device.retries
            failure: NoResponse | GarbledResponse | None = None
            for _ in range(tries):
                try:
                    answer = self._attempt(device, request)
                except (NoResponse, GarbledResponse) as exc:
                    failure = exc
                    continue
                breaker.succeeded()  # an exception reply proves the meter is alive
                if isinstance(answer, modbus.ExceptionResponse):
                    self.statistics.exceptions += 1
                    raise RemoteException(
                        device.name,
                        f"exception {answer.exception_code} ({answer.exception_name})",
                        answer.exception_code,
                    )
                return answer
            breaker.failed(time.monotonic())
            assert failure is not None
            raise failure

    def _attempt(self, device: PolledDevice, request: bytes) -> object:
        """One request on the wire and the wait for its answer: the loop both
        framings share; `_wire_request` and `_reply_reader` say how each frames."""
        stats, character = self.statistics, self.link.character_time_s
        sleep_until(self._quiet_since + self.silent_interval_s + device.silence_s)
        stats.noise_bytes += self.link.discard_input()
        wire = self._wire_request(request)
        self.link.write(wire)
        log.debug("%s → %s", device.name, wire.hex(" "))
        stats.requests += 1
        stats.bytes_out += len(wire)
        stats.busy_s += len(wire) * character
        deadline = time.monotonic() + len(wire) * character + device.timeout_s
        reply = self._reply_reader(device, request)
        received = 0
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                chunk = self.link.read(512, remaining)
                if not chunk:
                    continue
                log.debug("%s ← %s", device.name, chunk.hex(" "))
                received += len(chunk)
                stats.bytes_in += len(chunk)
                stats.busy_s += len(chunk) * character
                answer = reply.feed(chunk)
                if answer is not None:
                    stats.answers += 1
                    return answer
        finally:
            reply.close()
            self._quiet_since = time.monotonic()
        if received:
            stats.garbled += 1
            raise GarbledResponse(
                device.name,
                f"{received} bytes but no valid answer within {device.timeout_s * 1000:.0f} ms",
            )
        stats.timeouts += 1
        raise NoResponse(device.name, f"no answer within {device.timeout_s * 1000:.0f} ms")

    def _wire_request(self, request: bytes) -> bytes:
        return request

    def _reply_reader(self, device: PolledDevice, request: bytes) -> _ReplyReader:
        return _RtuReply(self.statistics, device, request)


class _ReplyReader(Protocol):
    def feed(self, chunk: bytes) -> object | None:
        """Take bytes; return the parsed answer once it is complete."""

    def close(self) -> None:
        """Book what was seen (echoes, noise) in the bus statistics."""


class _RtuReply:
    """An RTU answer: our own echo stripped, noise skipped, answers from other
    units or to earlier requests counted and passed over."""

    def __init__(self, stats: BusStatistics, device: PolledDevice, request: bytes) -> None:
        self._stats, self._device, self._request = stats, device, request
        # Responses only: in BOTH mode one 9-byte reply in 256 has a CRC-valid
        # 8-byte prefix that reads as a request. Our own echo is known exactly.
        self._splitter = modbus.RtuSplitter(modbus.Expect.RESPONSES)
        self._echo = _EchoFilter(request)

    def feed(self, chunk: bytes) -> object | None:
        self._splitter.feed(self._echo.strip(chunk))
        while not isinstance(frame := self._splitter.next_frame(), modbus.NeedData):
            if frame[0] != self._device.unit_id:
                self._stats.wrong_unit += 1
                continue
            if frame[1] & 0x7F != self._request[1]:
                continue  # a late answer to an earlier request
            return modbus.parse_response(frame)
        return None

    def close(self) -> None:
        self._stats.echoes += self._echo.seen
        self._stats.noise_bytes += self._splitter.discarded_noise_bytes


class _EchoFilter:
    """Drops our own request when the adapter echoes it (two-wire RS-485
    adapters without echo suppression hear themselves)."""

    def __init__(self, request: bytes) -> None:
        self._request = request
        self._matched = 0  # bytes of the request matched so far; -1: no echo
        self.seen = 0

    def strip(self, chunk: bytes) -> bytes:
        if self._matched < 0 or self._matched == len(self._request):
            return chunk
        expected = self._request[self._matched : self._matched + len(chunk)]
        if chunk[: len(expected)] != expected:
            held, self._matched = self._request[: self._matched], -1
            return held + chunk  # not an echo after all: give back what we held
        self._matched += len(expected)
        if self._matched == len(self._request):
            self.seen = 1
        return chunk[len(expected) :]


class ModbusTcpBus(ModbusBus):
    """Modbus TCP (MBAP framing) to one address: the same arbitration, breakers
    and statistics as a serial bus; no CRC and no silent interval on TCP.

    Requests come as RTU frames (what the readers build, so one reader serves
    both); on the wire each becomes an MBAP header (transaction id, protocol
    0, length, unit id) and the PDU (Modbus Messaging on TCP/IP V1.0b §3.1).
    Answers are turned back into RTU form for fastcodec's parser.
    """

    def __init__(self, link: BytePipe, *, breaker_policy: BreakerPolicy | None = None) -> None:
        super().__init__(link, breaker_policy=breaker_policy)
        self._transaction = 0

    def _wire_request(self, request: bytes) -> bytes:
        self._transaction = (self._transaction + 1) & 0xFFFF
        unit, pdu = request[0], request[1:-2]
        header = (
            self._transaction.to_bytes(2, "big")
            + b"\x00\x00"
            + (len(pdu) + 1).to_bytes(2, "big")
            + bytes([unit])
        )
        return header + pdu

    def _reply_reader(self, device: PolledDevice, request: bytes) -> _ReplyReader:
        return _MbapReply(self.statistics, unit=request[0], transaction=self._transaction)


class _MbapReply:
    """An MBAP answer, turned back into RTU form for fastcodec's parser."""

    def __init__(self, stats: BusStatistics, *, unit: int, transaction: int) -> None:
        self._stats, self._unit, self._transaction = stats, unit, transaction
        self._received = bytearray()

    def feed(self, chunk: bytes) -> object | None:
        received = self._received
        received += chunk
        while len(received) >= 7:
            length = int.from_bytes(received[4:6], "big")
            if received[2:4] != b"\x00\x00" or not 2 <= length <= 254:
                raise GarbledResponse(
                    f"unit {self._unit}", f"not an MBAP header: {received[:7].hex(' ')}"
                )
            if len(received) < 6 + length:
                return None
            frame, transaction = (
                bytes(received[6 : 6 + length]),
                int.from_bytes(received[:2], "big"),
            )
            del received[: 6 + length]
            if transaction != self._transaction or frame[0] != self._unit:
                self._stats.wrong_unit += 1
                continue  # a late answer to an earlier request
            rtu = frame + crc16_modbus(frame).to_bytes(2, "little")
            return modbus.parse_response(rtu)
        return None

    def close(self) -> None:
        pass
