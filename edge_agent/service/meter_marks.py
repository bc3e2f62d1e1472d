"""How far the agent has taken each DLMS meter's logs: a small state file beside the buffer.

Per meter and log (`profile`, `events`) one mark: the capture time (epoch ms)
of the newest entry the agent has committed to its buffer (profile rows as
readings, log entries as events), and for the event log how many entries
carry exactly that time (two events in one second are both taken, and
neither twice).

Why a file of its own and not a table in the buffer's database: the marks
need no atomicity with the readings. The agent commits the readings first and
moves the mark after; a crash in between makes it read those rows again, and
the buffer's upsert on (meter, OBIS, timestamp) stores them once (an event
log entry is buffered, and sent, a second time: at least once). So a plain
JSON file, written atomically (temp file, fsync, rename, fsync of the folder),
is enough, and the buffer's schema (shared with the uplink) stays as it is.
A lost or unreadable file only means a catch-up from `catch_up_days` back,
again stored once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

__all__ = ["Mark", "MeterMarks", "write_atomically"]

LogName = Literal["profile", "events"]


@dataclass(frozen=True)
class Mark:
    """The newest entry taken of one log: its time, and how many entries share it."""

    at_ms: int
    count_at: int = 1


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` by `data` so that a crash leaves the old or the new file, whole."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself must survive a power cut
    finally:
        os.close(directory)


class MeterMarks:
    """The marks of every meter, loaded at start, saved at each change (thread-safe).

    Args:
        path: the state file (the agent puts it beside its buffer).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._marks: dict[str, dict[str, Mark]] = self._load()

    def _load(self) -> dict[str, dict[str, Mark]]:
        try:
            raw = json.loads(self.path.read_bytes())
            return {
                meter: {
                    name: Mark(int(m["at_ms"]), int(m.get("count_at", 1)))
                    for name, m in logs.items()
                }
                for meter, logs in raw.items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # Not fatal: the meters are caught up from catch_up_days back, stored once.
            log.warning("meter marks %s unreadable, starting afresh: %s", self.path, exc)
            return {}

    def get(self, meter: str, name: LogName) -> Mark | None:
        with self._lock:
            return self._marks.get(meter, {}).get(name)

    def set(self, meter: str, name: LogName, mark: Mark) -> None:
        """Move a mark and save the file (after the entries it covers are committed)."""
        with self._lock:
            self._marks.setdefault(meter, {})[name] = mark
            data = {
                serial: {
                    log_name: {"at_ms": m.at_ms, "count_at": m.count_at}
                    for log_name, m in logs.items()
                }
                for serial, logs in self._marks.items()
            }
            write_atomically(self.path, json.dumps(data, indent=1, sort_keys=True).encode())
