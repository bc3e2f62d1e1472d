# The IEC 62056-21 optical handshake, master side, over a BytePipe.
#
# Spec: IEC 62056-21:2002 §6.3 (messages), §6.4.4 protocol mode C (sign-on,
# option select with baud switch, data readout), Annex E protocol mode E
# (HDLC after the option select `ACK 2 Z 2`), §6.3.14 baud characters,
# §5.3.1 timing (tr 200..1500 ms reaction, ta 1500 ms between characters).
#
# Strategy: `OpticalHandshake` is sans-I/O: `start()` gives the request,
# `receive_data(data)` takes what came and returns the next event (or None:
# need more bytes), `timed_out()` turns silence into the stage's error. Its
# states: identification → (mode C) readout → done, (mode E) echo → done.
# `sign_on(pipe, settings)` runs it over a pipe: 300 Bd 7E1 for the sign-on,
# the option select, then the agreed format (mode C: the new baud 7E1, mode E:
# 8N1) — it owns every wait, each with a timeout, so it never hangs.
#
# Per-meter overrides (`OpticalSettings`): `baud_switch=False` stays at 300 Bd
# (meters that announce a speed but refuse the switch), `max_baud` caps the
# speed (long probe cables, slow USB heads), `device_address` addresses one
# meter of several on a bus-type optical head.
#
# Invariants: any bytes give an event, None or an OpticalError (a garbled
# message is counted and skipped, a readout with a bad BCC raises
# ReadoutChecksumError); the readout is bounded by `max_readout_bytes`.
"""IEC 62056-21 optical handshake (sign-on, baud switch, mode C readout, mode E entry)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from fastcodec import iec62056_21 as iec
from fastcodec.exceptions import ChecksumError, CodecError
from firmware_bridge.exceptions import OpticalError, OpticalTimeout, ReadoutChecksumError
from firmware_bridge.links import BytePipe, SerialLink

log = logging.getLogger(__name__)

__all__ = [
    "SIGN_ON_FORMAT",
    "EchoReceived",
    "Identified",
    "OpticalHandshake",
    "OpticalResult",
    "OpticalSettings",
    "OpticalStatistics",
    "ReadoutReceived",
    "choose_baud",
    "open_optical_port",
    "sign_on",
]

SIGN_ON_FORMAT = (300, 7, "E", 1)
_SIGN_ON_CHARACTER_S = 10 / 300  # start + 7 data + parity + stop at 300 Bd


@dataclass(frozen=True)
class OpticalSettings:
    """How to sign on to one meter (its own overrides, never a neighbour's).

    Attributes:
        mode: "C" data readout, "E" HDLC (DLMS) after the handshake.
        baud_switch: False: stay at 300 Bd whatever the meter announces.
        max_baud: the highest speed to switch to (None: the meter's own).
        device_address: sign on to this meter only ("" any meter).
        response_timeout_s: silence allowed before the first byte of an answer
            (tr is 200..1500 ms, §5.3.1).
        character_timeout_s: silence allowed between characters (ta, 1500 ms).
        readout_timeout_s: the longest a whole readout may take.
        switch_delay_s: wait after writing the option select before switching
            the port: the 6 characters take 200 ms at 300 Bd, and the meter
            answers 200..300 ms after it at the new speed.
        max_readout_bytes: a longer readout is refused.
    """

    mode: Literal["C", "E"] = "C"
    baud_switch: bool = True
    max_baud: int | None = None
    device_address: str = ""
    response_timeout_s: float = 2.0
    character_timeout_s: float = 1.5
    readout_timeout_s: float = 120.0
    switch_delay_s: float = 0.25
    max_readout_bytes: int = iec.DEFAULT_MAX_FRAME_BYTES


@dataclass
class OpticalStatistics:
    """What the handshakes of one optical port did (counters only grow)."""

    sign_ons: int = 0
    readouts: int = 0
    mode_e_entries: int = 0
    timeouts: int = 0
    checksum_errors: int = 0
    garbled_messages: int = 0
    noise_bytes: int = 0
    stayed_at_300: int = 0  # baud switch refused by the override or the meter
    failures: int = 0


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identified:
    """The meter identified itself; send `option_select`, then switch to `line_format`."""

    identification: iec.Identification
    option_select: bytes
    baud_rate: int
    line_format: tuple[int, int, str, int]


@dataclass(frozen=True)
class ReadoutReceived:
    """Mode C: the whole data readout, its BCC checked."""

    readout: iec.DataReadout
    raw: bytes


@dataclass(frozen=True)
class EchoReceived:
    """Mode E: the meter echoed the option select; the line now carries HDLC."""


Event = Identified | ReadoutReceived | EchoReceived


def choose_baud(identification: iec.Identification, settings: OpticalSettings) -> tuple[str, int]:
    """The baud character and rate to ask for: the meter's, unless overridden or capped."""
    announced = iec.BAUD_RATES_MODE_C.get(identification.baud_char)
    if not settings.baud_switch or announced is None:
        return "0", 300
    cap = min(announced, settings.max_baud or announced)
    char, rate = "0", 300
    for candidate, candidate_rate in iec.BAUD_RATES_MODE_C.items():
        if rate < candidate_rate <= cap:
            char, rate = candidate, candidate_rate
    return char, rate


class OpticalHandshake:
    """The master's side of one sign-on (sans-I/O, see the module header).

    Args:
        settings: the meter's settings and overrides.
    """

    def __init__(self, settings: OpticalSettings | None = None) -> None:
        self.settings = settings or OpticalSettings()
        self.state = "idle"  # idle → identification → readout | echo → done
        self.identified: Identified | None = None
        self.garbled_messages = 0
        self._splitter = iec.OpticalSplitter(self.settings.max_readout_bytes)

    @property
    def noise_bytes(self) -> int:
        """Bytes outside any message (line noise, a neighbour's echo)."""
        return self._splitter.skipped_bytes

    @property
    def buffered_bytes(self) -> int:
        return self._splitter.buffered_bytes

    def start(self) -> bytes:
        """The request `/?<address>!CR LF` to send at 300 Bd 7E1."""
        self.state = "identification"
        self._splitter = iec.OpticalSplitter(self.settings.max_readout_bytes)
        return iec.build_request(self.settings.device_address)

    def receive_data(self, data: bytes) -> Event | None:
        """Bytes from the meter; the next event, or None while more are needed.

        Raises:
            OpticalError: the meter cannot be read this way (no mode E, refused).
            ReadoutChecksumError: the readout's BCC is wrong.
        """
        if self.state in ("idle", "done"):
            return None
        for raw in self._splitter.feed(data):
            event = self._on_message(raw)
            if event is not None:
                # Anything after the event belongs to the next stage (HDLC in
                # mode E): keep it out of this splitter.
                return event
        return None

    def timed_out(self) -> OpticalTimeout:
        """The error for silence in the current stage (raise it)."""
        stage = {"identification": "identification", "echo": "option select"}.get(
            self.state, "readout"
        )
        heard = (
            f" ({self.buffered_bytes} bytes of an unfinished message)"
            if self.buffered_bytes
            else ""
        )
        return OpticalTimeout(stage, f"no answer from the meter within the timeout{heard}")

    def _on_message(self, raw: bytes) -> Event | None:
        if self.state == "readout":
            try:
                message = iec.parse_message(raw)
            except ChecksumError as exc:
                self.state = "done"
                raise ReadoutChecksumError(
                    "readout", f"block check character wrong: {exc}"
                ) from exc
            except CodecError:
                self.garbled_messages += 1
                return None
            if isinstance(message, iec.DataReadout):
                self.state = "done"
                return ReadoutReceived(message, raw)
            if isinstance(message, iec.Nak):
                self.state = "done"
                raise OpticalError("readout", "the meter refused the option select (NAK)")
            return None
        if self.state == "echo":
            if raw.startswith(bytes([iec.NAK])):
                self.state = "done"
                raise OpticalError("option select", "the meter refused protocol mode E (NAK)")
            self.state = "done"
            return EchoReceived()
        if self.state == "identification":
            try:
                message = iec.parse_message(raw)
            except CodecError:
                self.garbled_messages += 1
                return None
            if not isinstance(message, iec.Identification):
                return None  # our own request echoed by the head, a stray message
            return self._on_identification(message)
        return None

    def _on_identification(self, identification: iec.Identification) -> Identified:
        if identification.mode != "C":
            self.state = "done"
            raise OpticalError(
                "identification",
                f"the meter speaks protocol mode {identification.mode} "
                f"(baud character {identification.baud_char!r}); only modes C and E are read",
            )
        char, rate = choose_baud(identification, self.settings)
        if self.settings.mode == "E":
            if not identification.hdlc_mode_e:
                self.state = "done"
                raise OpticalError(
                    "identification",
                    f"{identification.text!r} does not announce HDLC protocol mode E",
                )
            option_select = iec.build_option_select(char, "2", "2")
            line_format = (rate, 8, "N", 1)
            self.state = "echo"
            # The echo is an ACK message ending at LF: read it as the meter reads ours.
            self._splitter = iec.OpticalSplitter(64, meter_side=True)
        else:
            option_select = iec.build_option_select(char, "0", "0")
            line_format = (rate, 7, "E", 1)
            self.state = "readout"
        self.identified = Identified(identification, option_select, rate, line_format)
        return self.identified


@dataclass(frozen=True)
class OpticalResult:
    """The outcome of a sign-on: who answered, at what speed, and (mode C) the readout."""

    identification: iec.Identification
    baud_rate: int
    line_format: tuple[int, int, str, int]
    readout: iec.DataReadout | None = None
    raw_readout: bytes = b""
    statistics: OpticalStatistics = field(default_factory=OpticalStatistics)


def _await_event(
    pipe: BytePipe,
    handshake: OpticalHandshake,
    first_byte_timeout_s: float,
    settings: OpticalSettings,
    overall_s: float,
) -> Event:
    """Read until the handshake gives an event; every wait is bounded."""
    started = time.monotonic()
    deadline = started + first_byte_timeout_s
    while True:
        now = time.monotonic()
        remaining = min(deadline, started + overall_s) - now
        if remaining <= 0:
            raise handshake.timed_out()
        data = pipe.read(4096, remaining)
        if not data:
            continue
        log.debug("optical <- %s", data.hex(" "))
        event = handshake.receive_data(data)
        if event is not None:
            return event
        deadline = time.monotonic() + settings.character_timeout_s


def sign_on(
    pipe: BytePipe,
    settings: OpticalSettings | None = None,
    statistics: OpticalStatistics | None = None,
) -> OpticalResult:
    """Sign on to the meter at the optical port; read it (mode C) or enter mode E.

    Mode C returns the parsed data readout and leaves the port at 300 Bd 7E1
    (the meter is back there too). Mode E returns with the port at the agreed
    speed 8N1, ready for HDLC (the caller's DLMS session).

    Args:
        pipe: the optical head's port.
        settings: the meter's settings and overrides.
        statistics: counters to update (one per port).

    Returns:
        The identification, the agreed speed and format, and the readout.

    Raises:
        OpticalTimeout: the meter was silent in a stage.
        ReadoutChecksumError: the readout's BCC is wrong.
        OpticalError: the meter cannot be read as asked.
        LinkClosed: the port went away.
    """
    settings = settings or OpticalSettings()
    stats = statistics if statistics is not None else OpticalStatistics()
    handshake = OpticalHandshake(settings)
    stats.sign_ons += 1
    try:
        pipe.set_format(*SIGN_ON_FORMAT)
        pipe.discard_input()
        request = handshake.start()
        log.debug("optical -> %s", request.hex(" "))
        pipe.write(request)
        request_wire_s = len(request) * _SIGN_ON_CHARACTER_S
        identified = _await_event(
            pipe,
            handshake,
            request_wire_s + settings.response_timeout_s,
            settings,
            request_wire_s + settings.response_timeout_s + 5.0,
        )
        assert isinstance(identified, Identified)
        if identified.baud_rate == 300:
            stats.stayed_at_300 += 1
        log.debug(
            "optical: %s, switching to %d Bd (%s)",
            identified.identification.text,
            identified.baud_rate,
            settings.mode,
        )
        pipe.write(identified.option_select)
        select_wire_s = len(identified.option_select) * _SIGN_ON_CHARACTER_S
        if settings.mode == "E":
            _await_event(
                pipe,
                handshake,
                select_wire_s + settings.response_timeout_s,
                settings,
                select_wire_s + settings.response_timeout_s + 2.0,
            )
            pipe.set_format(*identified.line_format)
            stats.mode_e_entries += 1
            return OpticalResult(
                identified.identification,
                identified.baud_rate,
                identified.line_format,
                statistics=stats,
            )
        # §6.4.4: the meter answers 200..300 ms after the option select at the
        # new speed; switch once the select has left the wire.
        time.sleep(max(settings.switch_delay_s, 0.0))
        pipe.set_format(*identified.line_format)
        received = _await_event(
            pipe,
            handshake,
            settings.response_timeout_s,
            settings,
            settings.readout_timeout_s,
        )
        assert isinstance(received, ReadoutReceived)
        pipe.set_format(*SIGN_ON_FORMAT)
        stats.readouts += 1
        return OpticalResult(
            identified.identification,
            identified.baud_rate,
            identified.line_format,
            received.readout,
            received.raw,
            stats,
        )
    except OpticalError as exc:
        stats.failures += 1
        if isinstance(exc, OpticalTimeout):
            stats.timeouts += 1
        if isinstance(exc, ReadoutChecksumError):
            stats.checksum_errors += 1
        _back_to_sign_on(pipe)
        raise
    finally:
        stats.noise_bytes += handshake.noise_bytes
        stats.garbled_messages += handshake.garbled_messages


def _back_to_sign_on(pipe: BytePipe) -> None:
    """After a failure: the port back at 300 Bd 7E1 (the meter returns there on its own)."""
    try:
        pipe.set_format(*SIGN_ON_FORMAT)
    except Exception:  # the original error is the one to report
        log.debug("optical: cannot restore 300 Bd 7E1", exc_info=True)


def open_optical_port(port: str) -> BytePipe:
    """Open an optical head's port at 300 Bd 7E1, ready for `sign_on`.

    Raises:
        LinkOpenError: the port cannot be opened.
    """
    return SerialLink(port, baudrate=300, bytesize=7, parity="E", stopbits=1)
