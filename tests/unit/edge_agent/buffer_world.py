"""A buffer on a test clock, for the buffer's unit tests (events, commands);
the `clock` and `buffer` fixtures are in conftest.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_agent.adapters.sqlite_buffer import SqliteBuffer

NOW_S = 1_800_000_000.0
NOW_MS = int(NOW_S * 1000)


class Clock:
    def __init__(self) -> None:
        self.now_s = NOW_S

    def __call__(self) -> float:
        return self.now_s


def open_buffer(path: Path, clock: Clock, **options: Any) -> SqliteBuffer:
    return SqliteBuffer(path, max_readings=1000, max_age_days=35, clock=clock, **options)
