"""A pipe in front of another: the base of the tests' line troubles (bytes
one at a time, noise, a meter that changes its mind). A subclass overrides
what it changes; everything else goes straight through."""

from __future__ import annotations

from firmware_bridge.links import BytePipe


class PipeInFront:
    def __init__(self, pipe: BytePipe) -> None:
        self.pipe = pipe
        self.character_time_s = pipe.character_time_s

    def write(self, data: bytes) -> None:
        self.pipe.write(data)

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        return self.pipe.read(max_bytes, timeout_s)

    def discard_input(self) -> int:
        return self.pipe.discard_input()

    def set_format(
        self, baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1
    ) -> None:
        self.pipe.set_format(baudrate, bytesize, parity, stopbits)

    def close(self) -> None:
        self.pipe.close()
