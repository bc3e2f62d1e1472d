"""Byte pipes to meters: serial ports (local, rfc2217://, socket://) and TCP.

Everything above this module speaks to a `BytePipe`: write bytes, read what
came within a timeout, drop stale input, change the character format (the
IEC 62056-21 baud switch). Implementations here wrap pyserial (which also
opens ser2net-style `rfc2217://host:port` and `socket://host:port` URLs) and
plain TCP sockets; `firmware_bridge.loopback` has an in-memory pair for tests.

Blocking I/O with timeouts, one thread per physical bus: a bus carries one
transaction at a time anyway, and blocking reads give the most precise
timing on small gateways.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import termios
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import serial
import serial.rs485

from firmware_bridge.exceptions import LinkClosed, LinkOpenError

__all__ = ["BytePipe", "ReconnectingLink", "SerialLink", "TcpLink", "character_time_s"]

# The wait of one read on an rfc2217:// or socket:// port: how often a read
# looks at its own deadline (bytes that arrive end the wait at once).
_URL_POLL_S = 0.01


def character_time_s(
    baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1
) -> float:
    """Seconds one character takes on the wire: (start + data + parity + stop) / baud."""
    return (1 + bytesize + (0 if parity == "N" else 1) + stopbits) / baudrate


@runtime_checkable
class BytePipe(Protocol):
    """What the bus and the protocol sessions need from a link."""

    @property
    def character_time_s(self) -> float:
        """Wire time of one character (0 for links without a line rate)."""
        ...

    def write(self, data: bytes) -> None:
        """Send bytes (returns once handed to the OS)."""
        ...

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        """What arrives within `timeout_s` (b"" on silence); returns as soon as
        something arrived."""
        ...

    def discard_input(self) -> int:
        """Drop unread input; return how many bytes were dropped."""
        ...

    def set_format(
        self, baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1
    ) -> None:
        """Change speed and character format (serial links only)."""
        ...

    def close(self) -> None: ...


class SerialLink:
    """A serial port through pyserial: a device path or an rfc2217:// / socket:// URL.

    Args:
        port: "/dev/ttyUSB0", "rfc2217://ser2net:4001", "socket://host:4002".
        baudrate, bytesize, parity, stopbits: the character format.
        rs485: switch the port into the kernel's RS-485 mode (driver enable
            by RTS), for adapters that need it.

    Raises:
        LinkOpenError: the port cannot be opened.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
        rs485: bool = False,
    ) -> None:
        self.port = port
        self._character_time_s = 0.0
        try:
            self._serial = serial.serial_for_url(port, do_not_open=True, timeout=0)
            self._apply_format(baudrate, bytesize, parity, stopbits)
            self._open()
        except (serial.SerialException, ValueError, OSError, termios.error) as exc:
            raise LinkOpenError(f"cannot open {port}: {exc}") from exc
        if rs485:
            self._serial.rs485_mode = serial.rs485.RS485Settings()

    def _open(self) -> None:
        if _is_pseudo_terminal(self.port):
            # A pseudo-terminal (a simulated bus) has no parity bit to carry,
            # and some kernels refuse PARENB on one, now or at a later
            # reconfiguration: open it 8N1; the declared format's character
            # time (set by _apply_format) still drives timing and statistics.
            self._serial.parity, self._serial.bytesize, self._serial.stopbits = "N", 8, 1
        self._serial.open()
        # Local ports have a descriptor to wait on (non-blocking reads after
        # select); rfc2217:// and socket:// handlers use pyserial's timeout,
        # set once: the rfc2217 handler renegotiates every line setting with
        # the server (a round trip) each time the timeout changes.
        self._fd: int | None = None
        if isinstance(self._serial, serial.Serial) and hasattr(self._serial, "fd"):
            self._fd = self._serial.fileno()
            self._serial.timeout = 0
        else:
            self._serial.timeout = _URL_POLL_S

    def _apply_format(self, baudrate: int, bytesize: int, parity: str, stopbits: int) -> None:
        self._serial.baudrate = baudrate
        self._serial.bytesize = bytesize
        self._serial.parity = parity
        self._serial.stopbits = stopbits
        self._character_time_s = character_time_s(baudrate, bytesize, parity, stopbits)

    @property
    def character_time_s(self) -> float:
        return self._character_time_s

    def set_format(
        self, baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1
    ) -> None:
        try:
            if _is_pseudo_terminal(self.port):  # see _open: a pty carries 8N1
                self._apply_format(baudrate, 8, "N", 1)
            else:
                self._apply_format(baudrate, bytesize, parity, stopbits)
            self._character_time_s = character_time_s(baudrate, bytesize, parity, stopbits)
        except (serial.SerialException, ValueError, OSError, termios.error) as exc:
            raise LinkClosed(
                f"{self.port}: cannot set {baudrate} {bytesize}{parity}{stopbits}: {exc}"
            ) from exc

    def write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
        except (serial.SerialException, OSError) as exc:
            raise LinkClosed(f"{self.port}: write failed: {exc}") from exc

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        try:
            if self._fd is not None:
                # Wait with select on the descriptor: changing pyserial's
                # timeout would cost a tcsetattr per read, a byte at a time.
                if not select.select([self._fd], [], [], max(0.0, timeout_s))[0]:
                    return b""
                return bytes(self._serial.read(max_bytes))
            deadline = time.monotonic() + timeout_s
            first = self._serial.read(1)  # waits up to _URL_POLL_S
            while not first and time.monotonic() < deadline:
                first = self._serial.read(1)
            if not first:
                return b""
            waiting = min(self._serial.in_waiting, max(0, max_bytes - 1))
            return bytes(first + (self._serial.read(waiting) if waiting else b""))
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkClosed(f"{self.port}: read failed: {exc}") from exc

    def discard_input(self) -> int:
        try:
            if self._fd is None:  # the handler's timeout stays (see _open)
                waiting = self._serial.in_waiting
                return len(self._serial.read(waiting)) if waiting else 0
            dropped = len(self._serial.read(65536))
        except (serial.SerialException, OSError) as exc:
            raise LinkClosed(f"{self.port}: read failed: {exc}") from exc
        return dropped

    def close(self) -> None:
        with contextlib.suppress(serial.SerialException, OSError):
            self._serial.close()


class TcpLink:
    """A TCP connection (Modbus TCP, DLMS wrapper, a transparent serial server).

    Raises:
        LinkOpenError: the host does not accept the connection.
    """

    character_time_s = 0.0

    def __init__(self, host: str, port: int, *, connect_timeout_s: float = 5.0) -> None:
        self.host, self.port = host, port
        try:
            self._socket = socket.create_connection((host, port), timeout=connect_timeout_s)
        except OSError as exc:
            raise LinkOpenError(f"cannot connect to {host}:{port}: {exc}") from exc
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def set_format(
        self, baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1
    ) -> None:
        """TCP has no character format: nothing to change."""

    def write(self, data: bytes) -> None:
        try:
            self._socket.sendall(data)
        except OSError as exc:
            raise LinkClosed(f"{self.host}:{self.port}: send failed: {exc}") from exc

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        self._socket.settimeout(max(timeout_s, 1e-6))
        try:
            data = self._socket.recv(max_bytes)
        except TimeoutError:
            return b""
        except OSError as exc:
            raise LinkClosed(f"{self.host}:{self.port}: receive failed: {exc}") from exc
        if not data:
            raise LinkClosed(f"{self.host}:{self.port}: the peer closed the connection")
        return data

    def discard_input(self) -> int:
        dropped = 0
        self._socket.setblocking(False)
        try:
            while chunk := self._socket.recv(65536):
                dropped += len(chunk)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            raise LinkClosed(f"{self.host}:{self.port}: receive failed: {exc}") from exc
        finally:
            self._socket.setblocking(True)
        return dropped

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.close()


def _is_pseudo_terminal(port: str) -> bool:
    return os.path.realpath(port).startswith("/dev/pts/")


def sleep_until(deadline: float) -> None:
    """Sleep until time.monotonic() reaches `deadline` (no-op if past)."""
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


class ReconnectingLink:
    """A link that opens when first used and reopens after it was lost.

    A gateway must not stop because a TCP meter was down at boot, nor stay
    deaf after a Modbus TCP gateway closed an idle connection or a USB adapter
    was replugged: each operation opens the link if needed (at most once per
    back-off period, 1 s doubling to 60 s) and a lost link is closed and
    reopened on the next use. Callers see `LinkOpenError`/`LinkClosed` for
    the operations that could not be done, as with any link.

    Args:
        open_link: makes the real link (SerialLink, TcpLink, …).
        character_time_s: the line's character time, known before it opens.
        name: for messages.
    """

    def __init__(
        self, open_link: Callable[[], BytePipe], *, character_time_s: float, name: str
    ) -> None:
        self._open_link, self.name = open_link, name
        self.character_time_s = character_time_s
        self._link: BytePipe | None = None
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self.reopens = 0

    def _current(self) -> BytePipe:
        if self._link is not None:
            return self._link
        now = time.monotonic()
        if now < self._retry_at:
            raise LinkOpenError(
                f"{self.name}: not reopened yet (retry in {self._retry_at - now:.0f} s)"
            )
        try:
            self._link = self._open_link()
        except LinkOpenError:
            self._backoff_s = min(max(1.0, self._backoff_s * 2), 60.0)
            self._retry_at = now + self._backoff_s
            raise
        self._backoff_s = 0.0
        self.reopens += 1
        return self._link

    def _lost(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    def write(self, data: bytes) -> None:
        try:
            self._current().write(data)
        except LinkClosed:
            self._lost()
            raise

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        try:
            return self._current().read(max_bytes, timeout_s)
        except LinkClosed:
            self._lost()
            raise

    def discard_input(self) -> int:
        try:
            return self._current().discard_input()
        except LinkClosed:
            self._lost()
            raise

    def set_format(
        self, baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1
    ) -> None:
        self._current().set_format(baudrate, bytesize, parity, stopbits)
        self.character_time_s = character_time_s(baudrate, bytesize, parity, stopbits)

    def close(self) -> None:
        self._lost()
