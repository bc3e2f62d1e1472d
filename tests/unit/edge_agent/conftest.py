"""Fixtures of the agent's unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.adapters.sqlite_buffer import SqliteBuffer
from tests.unit.edge_agent.buffer_world import Clock, open_buffer


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def buffer(tmp_path: Path, clock: Clock) -> Iterator[SqliteBuffer]:
    with open_buffer(tmp_path / "buffer.sqlite", clock) as opened:
        yield opened
