"""The optical port of a simulated DLMS meter (IEC 62056-21), the meter's side.

What it implements (IEC 62056-21:2002):

- §6.3.1/§6.3.2: the meter listens at 300 Bd 7E1; a request `/?!CR LF` (or
  `/?<address>!CR LF` with its device address, the serial number) gets the
  identification `/XXXZ\\2<ident>CR LF`: manufacturer (3 letters), the baud
  character Z of its top speed ('5' = 9600 Bd) and, when it speaks HDLC, the
  mode E marker `\\2` (Annex E);
- §6.4.4 protocol mode C: the option select `ACK 0 Z 0 CR LF` switches both
  sides to Z's baud rate and the meter sends its data readout
  `STX lines ! CR LF ETX BCC` (fastcodec builds it): serial (C.1.0), clock
  (0.9.1 time, 0.9.2 date, from the meter's own, drifting clock), energies
  in kWh with 3 decimals, powers in kW with 3 decimals, voltages (1 decimal),
  currents and frequency (2 decimals), error register F.F; then the meter is
  back at 300 Bd, waiting for a request;
- Annex E protocol mode E: `ACK 2 Z 2 CR LF` is echoed at 300 Bd, then the
  line runs at Z's rate, 8N1, and carries an HDLC DLMS session
  (simulators.dlms_links.HdlcServer, the meter alone on the line: 1-, 2- or
  4-byte server addresses); DISC or HDLC inactivity returns to 300 Bd 7E1;
- a break `SOH B 0 ETX BCC` or `inactivity_s` of silence after the
  identification returns to the start.

`baud_switch=False` models a meter that announces its top speed but refuses
to switch: whatever Z the master acknowledges, it answers at 300 Bd (a real
master then reads garbage at its new speed; on the virtual line the readout
simply comes at 300 Bd).

The line's speed is a model (`VirtualSerialLine.set_format`), applied just
before each answer: the answer trickles at the rate it is sent with; the pty
itself carries 8-bit bytes whatever the format.

Strategy: `OpticalSession` is sans-I/O (bytes and a monotonic now in,
`Transmission`s out: bytes and the line format to send them with);
`OpticalPort` runs it on a `VirtualSerialLine` through the DLMS serial driver.
Ground truth: `readout_values(at_s)` is what a mode C readout shows.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from fastcodec import iec62056_21 as optical
from fastcodec.exceptions import CodecError
from simulators.dlms import DlmsMeter
from simulators.dlms_links import DEFAULT_LIMITS, HdlcServer, SerialDriver
from simulators.line import VirtualSerialLine

log = logging.getLogger(__name__)

__all__ = ["SIGN_ON_FORMAT", "OpticalPort", "OpticalSession", "Transmission", "readout_lines"]

SIGN_ON_FORMAT = (300, 7, "E", 1)
DEFAULT_INACTIVITY_S = 5.0

# (OBIS as the readout writes it, OBIS of the quantity, unit, decimals, factor from profile units)
_READOUT_ITEMS = (
    ("1.8.0", "1-0:1.8.0", "kWh", 3, 1.0),
    ("1.8.1", "1-0:1.8.1", "kWh", 3, 1.0),
    ("1.8.2", "1-0:1.8.2", "kWh", 3, 1.0),
    ("2.8.0", "1-0:2.8.0", "kWh", 3, 1.0),
    ("2.8.1", "1-0:2.8.1", "kWh", 3, 1.0),
    ("2.8.2", "1-0:2.8.2", "kWh", 3, 1.0),
    ("1.7.0", "1-0:1.7.0", "kW", 3, 0.001),
    ("2.7.0", "1-0:2.7.0", "kW", 3, 0.001),
    ("32.7.0", "1-0:32.7.0", "V", 1, 1.0),
    ("52.7.0", "1-0:52.7.0", "V", 1, 1.0),
    ("72.7.0", "1-0:72.7.0", "V", 1, 1.0),
    ("31.7.0", "1-0:31.7.0", "A", 2, 1.0),
    ("51.7.0", "1-0:51.7.0", "A", 2, 1.0),
    ("71.7.0", "1-0:71.7.0", "A", 2, 1.0),
    ("14.7.0", "1-0:14.7.0", "Hz", 2, 1.0),
)


def _formatted(value: float, decimals: int) -> str:
    width = (7 if decimals >= 3 else 4) + decimals
    return f"{value:0{width}.{decimals}f}"


def readout_lines(meter: DlmsMeter, at_s: float) -> list[str]:
    """The data lines of a mode C readout at simulated time `at_s`."""
    state = meter.physics.state(at_s).values
    clock = dt.datetime.fromtimestamp(meter.meter_time(at_s), dt.UTC)
    lines = [
        f"C.1.0({meter.serial})",
        f"0.9.1({clock:%H:%M:%S})",
        f"0.9.2({clock:%y-%m-%d})",
    ]
    for code, obis, unit, decimals, factor in _READOUT_ITEMS:
        if obis in state:
            lines.append(f"{code}({_formatted(state[obis] * factor, decimals)}*{unit})")
    lines.append("F.F(00000000)")
    return lines


@dataclass(frozen=True)
class Transmission:
    """Bytes to put on the line, at this format (baud, bytesize, parity, stopbits)."""

    data: bytes
    line_format: tuple[int, int, str, int]


class OpticalSession:
    """The optical port's protocol state (sans-I/O, see the module doc).

    Args:
        meter: the meter behind the port.
        baud_char: the top speed announced ('5' = 9600 Bd).
        mode_e: announce and accept HDLC protocol mode E.
        baud_switch: False: stay at 300 Bd whatever the master asks.
        inactivity_s: silence (real seconds) that returns the port to 300 Bd.
    """

    def __init__(
        self,
        meter: DlmsMeter,
        *,
        baud_char: str = "5",
        mode_e: bool = True,
        baud_switch: bool = True,
        inactivity_s: float = DEFAULT_INACTIVITY_S,
        hdlc_inactivity_s: float = 120.0,
    ) -> None:
        self.meter = meter
        self.baud_char = baud_char
        self.mode_e = mode_e
        self.baud_switch = baud_switch
        self.inactivity_s = inactivity_s
        self.state = "idle"  # idle → identified → (readout → idle) | mode_e
        self.line_format = SIGN_ON_FORMAT
        self.hdlc = HdlcServer([meter], limits=DEFAULT_LIMITS, inactivity_s=hdlc_inactivity_s)
        self._splitter = optical.OpticalSplitter(meter_side=True)
        self._last_activity = 0.0
        self._was_connected = False
        self.readouts = 0

    @property
    def identification(self) -> bytes:
        return optical.build_identification(
            self.meter.manufacturer,
            self.baud_char,
            f"VS-DLMS-{self.meter.serial}",
            "2" if self.mode_e else "",
        )

    def _switched_format(
        self, baud_char: str, bytesize: int, parity: str
    ) -> tuple[int, int, str, int]:
        baud = optical.BAUD_RATES_MODE_C.get(baud_char)
        top = optical.BAUD_RATES_MODE_C.get(self.baud_char, 300)
        if not self.baud_switch or baud is None or baud > top:
            baud = 300
        return (baud, bytesize, parity, 1)

    def reset(self) -> None:
        """Back to the start: 300 Bd 7E1, waiting for a request."""
        self.state = "idle"
        self.line_format = SIGN_ON_FORMAT
        self._splitter = optical.OpticalSplitter(meter_side=True)
        self.hdlc.reset()
        self._was_connected = False

    def poll(self, now: float) -> bool:
        """Timeouts and power; True when the port went back to 300 Bd."""
        self.meter.observe_faults()
        if self.state == "mode_e":
            self.hdlc.poll(now)
            if not self.hdlc.links[0].connected and self._was_connected:
                self.reset()
                return True
        if self.state != "idle" and now - self._last_activity > self.inactivity_s:
            self.reset()
            return True
        return False

    def receive_data(self, data: bytes, now: float) -> list[Transmission]:
        """Bytes from the master; returns what the meter sends."""
        self.meter.observe_faults()
        if not self.meter.faults.answers:
            self.reset()
            return []
        self._last_activity = now
        if self.state == "mode_e":
            frames = self.hdlc.receive_data(data, now)
            self._was_connected = self._was_connected or self.hdlc.links[0].connected
            return [Transmission(frame, self.line_format) for _, frame in frames]
        out: list[Transmission] = []
        for raw in self._splitter.feed(data):
            try:
                message = optical.parse_message(raw)
            except CodecError as exc:
                log.debug("optical port: bad message %r: %s", raw[:40], exc)
                continue
            out.extend(self._on_message(message, now))
            if self.state == "mode_e":
                break  # what follows the option select is HDLC
        return out

    def _on_message(self, message: object, now: float) -> list[Transmission]:
        if isinstance(message, optical.SignOnRequest):
            if message.device_address not in ("", self.meter.serial):
                return []
            self.reset()
            self.state = "identified"
            return [Transmission(self.identification, SIGN_ON_FORMAT)]
        if isinstance(message, optical.CommandMessage) and message.command.startswith("B"):
            self.reset()
            return []
        if isinstance(message, optical.OptionSelect) and self.state == "identified":
            return self._on_option_select(message)
        return []

    def _on_option_select(self, select: optical.OptionSelect) -> list[Transmission]:
        if select.protocol_char == "2" and self.mode_e:
            echo = optical.build_option_select(select.baud_char, select.mode_char, "2")
            self.state = "mode_e"
            self.hdlc.reset()
            self.line_format = self._switched_format(select.baud_char, 8, "N")
            return [Transmission(echo, SIGN_ON_FORMAT)]
        if select.protocol_char == "0" and select.mode_char == "0":
            line_format = self._switched_format(select.baud_char, 7, "E")
            at_s = self.meter.clock.now()
            readout = optical.build_data_readout(readout_lines(self.meter, at_s))
            self.readouts += 1
            self.reset()
            return [Transmission(readout, line_format)]
        self.reset()  # programming mode and the rest: not supported
        return [Transmission(bytes([optical.NAK]), SIGN_ON_FORMAT)]


class OpticalPort:
    """A meter's optical port on its own `VirtualSerialLine` (a probe on the meter).

    Args:
        meter: the DLMS meter.
        timing: model line rate (False for fast tests).
        Others: see `OpticalSession`.
    """

    def __init__(
        self,
        meter: DlmsMeter,
        *,
        timing: bool = True,
        baud_char: str = "5",
        mode_e: bool = True,
        baud_switch: bool = True,
        inactivity_s: float = DEFAULT_INACTIVITY_S,
        hdlc_inactivity_s: float = 120.0,
    ) -> None:
        self.meter = meter
        self.session = OpticalSession(
            meter,
            baud_char=baud_char,
            mode_e=mode_e,
            baud_switch=baud_switch,
            inactivity_s=inactivity_s,
            hdlc_inactivity_s=hdlc_inactivity_s,
        )
        self.line = VirtualSerialLine(
            baudrate=300, bytesize=7, parity="E", stopbits=1, timing=timing
        )
        self._driver: SerialDriver | None = None
        self._format = SIGN_ON_FORMAT
        self._restore_at: float | None = None

    @property
    def port(self) -> str:
        """The serial device the probe's master opens."""
        return self.line.client_port

    async def start(self) -> None:
        self.start_sync()

    def start_sync(self) -> None:
        self._driver = SerialDriver(self.line, self._on_data, self._on_poll, name="optical-port")

    async def stop(self) -> None:
        self.stop_sync()

    def stop_sync(self) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None
        self.line.close()

    def _set_format(self, line_format: tuple[int, int, str, int]) -> None:
        if line_format != self._format:
            self._format = line_format
            self.line.set_format(*line_format)

    def _on_data(self, data: bytes, now: float) -> list[tuple[DlmsMeter | None, bytes]]:
        out: list[tuple[DlmsMeter | None, bytes]] = []
        for transmission in self.session.receive_data(data, now):
            self._set_format(transmission.line_format)
            out.append((self.meter, transmission.data))
            # The line takes the burst a moment after it is written: go to the
            # session's (new) format only once it has gone.
            on_the_wire_s = (
                len(transmission.data) * self.line.character_s if self.line.timing else 0
            )
            self._restore_at = now + on_the_wire_s + 0.02
        return out

    def _on_poll(self, now: float) -> None:
        self.session.poll(now)
        if self._restore_at is not None and now >= self._restore_at:
            self._restore_at = None
            self._set_format(self.session.line_format)
        elif self._restore_at is None:
            self._set_format(self.session.line_format)
