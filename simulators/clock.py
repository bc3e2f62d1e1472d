"""Simulated time: a clock that may run faster than real time.

Every simulated meter reads the time from one `SimClock`, so a test can run a
day of load in minutes (`speed=60`) and still ask what any meter held at any
simulated moment.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class SimClock:
    """Simulated UTC time: `start` at creation, advancing `speed` × real time.

    Args:
        start: the simulated time at creation (epoch seconds, UTC); default now.
        speed: simulated seconds per real second.
    """

    def __init__(self, start: float | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._start = time.time() if start is None else start
        self._real_start = time.monotonic()
        self.speed = speed

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self._start + (time.monotonic() - self._real_start) * self.speed

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def real_seconds(self, simulated_seconds: float) -> float:
        """How long `simulated_seconds` take in real time."""
        return simulated_seconds / self.speed
