"""An in-memory byte pipe pair: a public test utility (like pymodbus's NullModem).

`a, b = loopback_pair()`: what `a` writes, `b` reads, and the reverse. With
`character_time_s` set, reads see bytes no sooner than a real line would
deliver them. Thread-safe: a test can run a fake meter on `b` in a thread.
"""

from __future__ import annotations

import threading
import time

__all__ = ["LoopbackPipe", "loopback_pair"]


class _Channel:
    def __init__(self) -> None:
        self.data = bytearray()
        self.ready_at: list[float] = []
        self.condition = threading.Condition()


class LoopbackPipe:
    """One end of a loopback pair (see `loopback_pair`)."""

    def __init__(self, incoming: _Channel, outgoing: _Channel, character_time_s: float) -> None:
        self._in, self._out = incoming, outgoing
        self.character_time_s = character_time_s
        self.closed = False

    def write(self, data: bytes) -> None:
        with self._out.condition:
            now = time.monotonic()
            start = max(now, self._out.ready_at[-1] if self._out.ready_at else now)
            for index in range(len(data)):
                self._out.ready_at.append(start + (index + 1) * self.character_time_s)
            self._out.data += data
            self._out.condition.notify_all()

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        with self._in.condition:
            while True:
                now = time.monotonic()
                ready = sum(1 for at in self._in.ready_at[:max_bytes] if at <= now)
                if ready:
                    chunk = bytes(self._in.data[:ready])
                    del self._in.data[:ready]
                    del self._in.ready_at[:ready]
                    return chunk
                if now >= deadline:
                    return b""
                wait = deadline - now
                if self._in.ready_at:
                    wait = min(wait, max(0.0, self._in.ready_at[0] - now))
                self._in.condition.wait(wait)

    def discard_input(self) -> int:
        with self._in.condition:
            dropped = len(self._in.data)
            self._in.data.clear()
            self._in.ready_at.clear()
            return dropped

    def set_format(
        self, baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1
    ) -> None:
        if self.character_time_s:
            self.character_time_s = (1 + bytesize + (parity != "N") + stopbits) / baudrate

    def close(self) -> None:
        self.closed = True


def loopback_pair(character_time_s: float = 0.0) -> tuple[LoopbackPipe, LoopbackPipe]:
    """Two connected pipes: a master's end and a device's end."""
    a_to_b, b_to_a = _Channel(), _Channel()
    return (
        LoopbackPipe(b_to_a, a_to_b, character_time_s),
        LoopbackPipe(a_to_b, b_to_a, character_time_s),
    )
