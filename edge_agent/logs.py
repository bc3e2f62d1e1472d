"""Logging set-up for the daemon and the CLI: one line per event, readable in journald.

Library modules only call `logging.getLogger(__name__)`; this module, called
once from an entry point, is the only place that installs a handler.

Two formats on stderr:
- under systemd, when stderr is the journal (`JOURNAL_STREAM` names stderr's
  device and inode, see systemd.exec(5)): `<6>edge_agent.x: message`. The
  `<N>` prefix is the syslog priority, which journald strips and stores, so
  `journalctl -p warning` works; no timestamp, journald adds its own;
- anywhere else: `2026-03-01 12:00:00.123 INFO edge_agent.x: message`.

One event is one line: journald makes an entry of every line, and a
traceback split over twenty entries loses its priority after the first one
and interleaves with other threads. Line feeds inside a message or a
traceback are written as a literal `\\n` (read it back with
`journalctl -o cat | sed 's/\\\\n/\\n/g'`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

__all__ = ["JournalFormatter", "PlainFormatter", "configure_logging", "stderr_is_journal"]

# syslog(3) priorities for the logging levels (sd-daemon(3) SD_ERR, SD_INFO, …).
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
_DEBUG_PRIORITY = 7


def _priority(levelno: int) -> int:
    for level, priority in _PRIORITIES:
        if levelno >= level:
            return priority
    return _DEBUG_PRIORITY


def _one_line(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\\n")


class JournalFormatter(logging.Formatter):
    """`<priority>logger: message`, one line, no timestamp (journald adds it)."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return f"<{_priority(record.levelno)}>{_one_line(super().format(record))}"


class PlainFormatter(logging.Formatter):
    """`time level logger: message`, one line."""

    default_msec_format = "%s.%03d"

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return _one_line(super().format(record))


def stderr_is_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether `stream` is connected to the journal, as systemd.exec(5) says to check.

    `JOURNAL_STREAM` holds `device:inode` of the journal stream; a child
    process may inherit the variable with stderr redirected elsewhere, so the
    stream's own device and inode must match. A stream without a file
    descriptor cannot be checked and is trusted to be what the variable says.

    Args:
        stream: the stream logs will be written to (stderr).
        environ: the process environment.

    Returns:
        True when log lines should carry `<N>` priority prefixes.
    """
    value = environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    device_text, _, inode_text = value.partition(":")
    try:
        device, inode = int(device_text), int(inode_text)
    except ValueError:
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return True
    return stat.st_dev == device and stat.st_ino == inode


class _VoltstackHandler(logging.StreamHandler[TextIO]):
    """Ours, so that a second configure_logging() replaces rather than doubles it."""


def configure_logging(
    verbose: bool,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    level: int = logging.INFO,
) -> None:
    """Send the root logger's records to stderr in the journald or the plain format.

    Args:
        verbose: log DEBUG records too (frame hex dumps, request lines).
        stream: where to write; sys.stderr by default.
        environ: the environment to look for JOURNAL_STREAM in; os.environ by default.
        level: the threshold when not verbose.
    """
    out = sys.stderr if stream is None else stream
    env = os.environ if environ is None else environ
    handler = _VoltstackHandler(out)
    handler.setFormatter(JournalFormatter() if stderr_is_journal(out, env) else PlainFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _VoltstackHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else level)
