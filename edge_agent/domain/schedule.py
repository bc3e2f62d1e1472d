"""When to read a meter: on wall-clock boundaries, with a small fixed jitter.

A 15-minute meter is read just after :00, :15, :30 and :45 (the boundaries
its interval data belongs to), not 15 minutes after the agent happened to
start. Each meter gets its own jitter (a few seconds, derived from its
serial, so it is stable across restarts) so a bus of 32 meters and a fleet of
gateways do not all start their reads in the same instant.
"""

from __future__ import annotations

import math
import zlib

__all__ = ["jitter_s", "next_due_s"]

MAX_JITTER_S = 5.0


def jitter_s(serial: str, interval_s: float) -> float:
    """The meter's fixed offset after each boundary: at most 2 % of its
    interval and at most 5 s."""
    spread = min(MAX_JITTER_S, interval_s * 0.02)
    return (zlib.crc32(serial.encode()) % 1000) / 1000 * spread


def next_due_s(now_s: float, interval_s: float, jitter: float) -> float:
    """The first boundary-plus-jitter strictly after `now_s` (epoch seconds)."""
    boundary = math.floor((now_s - jitter) / interval_s) * interval_s + jitter
    return boundary + interval_s if boundary <= now_s else boundary
