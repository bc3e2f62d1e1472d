"""sd_notify(3) without libsystemd: readiness, status text and the watchdog.

Strategy: systemd passes a unix datagram socket in `NOTIFY_SOCKET` to a
`Type=notify` service — a filesystem path, or an abstract socket when it
starts with "@" (the "@" stands for the leading NUL byte). Each notification
is one datagram of newline-separated `KEY=value` assignments (sd_notify(3),
"Well-known assignments"). We open a socket per datagram, as libsystemd
does: notifications come every few seconds at most, and no descriptor stays
open to leak.

Watchdog: with `WatchdogSec=` systemd sets `WATCHDOG_USEC` (and
`WATCHDOG_PID`, the process it expects the pings from); the service must
send `WATCHDOG=1` more often than that. sd_watchdog_enabled(3) advises half
the interval, and to ignore the variables when `WATCHDOG_PID` names another
process (they were inherited, not meant for us).

Invariants: without `NOTIFY_SOCKET` every method is a no-op (a developer's
shell, a container); a failure to notify is logged once as a warning and
never raised into the service — a missed notification is for systemd to
judge (it restarts us on a missed watchdog), not a reason to crash.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["SystemdNotifier"]

logger = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends sd_notify datagrams to systemd (see the module doc).

    Args:
        environ: where to read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID;
            `os.environ` by default (tests pass their own).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._env = dict(env)
        self._address = self._parse_address(env.get("NOTIFY_SOCKET", ""))
        self._warned = False

    @staticmethod
    def _parse_address(value: str) -> str | None:
        if not value:
            return None
        if value.startswith("@"):
            return "\0" + value[1:]
        if value.startswith("/"):
            return value
        # vsock: and other transports of newer systemd versions: not ours.
        logger.warning("NOTIFY_SOCKET=%r is not a unix socket path: not notifying systemd", value)
        return None

    @property
    def enabled(self) -> bool:
        """True when systemd asked for notifications (NOTIFY_SOCKET is usable)."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send one datagram made of `KEY=value` assignments.

        Args:
            assignments: e.g. "READY=1", "STATUS=reading 12 meters".

        Returns:
            True when the datagram was sent, False when notifications are off
            or sending failed (logged once as a warning).
        """
        if self._address is None or not assignments:
            return False
        data = "\n".join(assignments).encode("utf-8", errors="replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(data, self._address)
        except (OSError, ValueError) as exc:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "cannot notify systemd at %s: %s (further failures are not logged)",
                    self._address.replace("\0", "@"),
                    exc,
                )
            return False
        return True

    @staticmethod
    def _status(text: str) -> str:
        # A newline would end the assignment and start a bogus one.
        return "STATUS=" + " ".join(text.splitlines())

    def ready(self, status: str = "") -> bool:
        """Tell systemd that start-up is done (`READY=1`), with an optional status line."""
        return self.notify("READY=1", self._status(status)) if status else self.notify("READY=1")

    def status(self, text: str) -> bool:
        """Set the one-line status `systemctl status` shows."""
        return self.notify(self._status(text))

    def watchdog(self) -> bool:
        """Ping the watchdog (`WATCHDOG=1`); call every `watchdog_interval_s()` seconds."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        """Tell systemd the service is shutting down (`STOPPING=1`)."""
        if status:
            return self.notify("STOPPING=1", self._status(status))
        return self.notify("STOPPING=1")

    def watchdog_interval_s(self) -> float | None:
        """How often to ping the watchdog: half of WATCHDOG_USEC, in seconds.

        Returns:
            None when the watchdog is off: no WATCHDOG_USEC, a value that is
            not a positive integer, or WATCHDOG_PID naming another process.
        """
        usec_text = self._env.get("WATCHDOG_USEC", "")
        if not usec_text:
            return None
        pid_text = self._env.get("WATCHDOG_PID", "")
        if pid_text:
            try:
                pid = int(pid_text)
            except ValueError:
                logger.warning("WATCHDOG_PID=%r is not a process id: watchdog off", pid_text)
                return None
            if pid != os.getpid():
                return None
        try:
            usec = int(usec_text)
        except ValueError:
            usec = 0
        if usec <= 0:
            logger.warning("WATCHDOG_USEC=%r is not a positive integer: watchdog off", usec_text)
            return None
        return usec / 2 / 1_000_000
