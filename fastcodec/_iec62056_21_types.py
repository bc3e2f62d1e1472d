"""Values the IEC 62056-21 codec returns, shared by its two twins (and by P1).

Defined once here so that results of the compiled and the pure twin compare
equal. See `fastcodec._iec62056_21_py` for the protocol and its spec clauses.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ACK",
    "BAUD_RATES_MODE_B",
    "BAUD_RATES_MODE_C",
    "EOT",
    "ETX",
    "NAK",
    "SOH",
    "STX",
    "Ack",
    "CommandMessage",
    "DataMessage",
    "DataReadout",
    "DataSet",
    "DataValue",
    "ErrorMessage",
    "Identification",
    "Message",
    "Nak",
    "OptionSelect",
    "SignOnRequest",
]

# IEC 62056-21:2002 §6.3: the control characters of the messages (ISO 1745).
SOH = 0x01
STX = 0x02
ETX = 0x03
EOT = 0x04
ACK = 0x06
NAK = 0x15

# §6.3.14 (message elements): the baud rate character Z of the identification and option select
# messages. Mode C (and E) use '0'..'6'; mode B uses 'A'..'F'. '7'..'9' and
# 'G'..'I' are reserved (no rate known). Any other character means mode A:
# 300 Bd, no baud rate switch.
BAUD_RATES_MODE_C = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600, "6": 19200}
BAUD_RATES_MODE_B = {"A": 600, "B": 1200, "C": 2400, "D": 4800, "E": 9600, "F": 19200}


@dataclass(frozen=True, slots=True)
class Identification:
    """The meter's identification message `/XXXZ<ident>CR LF` (§6.3.2).

    Attributes:
        manufacturer: the three-letter manufacturer id, e.g. "ISk"; a lower-case
            third letter says the meter answers within 20 ms (§6.3.2 note).
        baud_char: the baud rate character Z, e.g. "5".
        ident: the rest of the line after any `\\W` markers, e.g. "MT382-1000".
        enhanced: the characters W of the `\\W` enhanced-capability markers
            right after Z, e.g. "2" (HDLC, protocol mode E); "" when none.
    """

    manufacturer: str
    baud_char: str
    ident: str
    enhanced: str = ""

    @property
    def supports_20ms(self) -> bool:
        """True when the third letter of the manufacturer id is lower case."""
        return self.manufacturer[2:3].islower()

    @property
    def mode(self) -> str:
        """The protocol mode the baud character implies: "A", "B" or "C"."""
        if self.baud_char in "0123456789":
            return "C"
        if self.baud_char in "ABCDEFGHI":
            return "B"
        return "A"

    @property
    def baud_rate(self) -> int | None:
        """The baud rate Z announces; 300 in mode A; None for reserved chars."""
        if self.mode == "A":
            return 300
        return BAUD_RATES_MODE_C.get(self.baud_char) or BAUD_RATES_MODE_B.get(self.baud_char)

    @property
    def hdlc_mode_e(self) -> bool:
        """True when the meter announces HDLC protocol mode E (`\\2`)."""
        return "2" in self.enhanced

    @property
    def text(self) -> str:
        """The line as sent, without '/' and CR LF."""
        markers = "".join("\\" + marker for marker in self.enhanced)
        return f"{self.manufacturer}{self.baud_char}{markers}{self.ident}"


@dataclass(frozen=True, slots=True)
class SignOnRequest:
    """The request message `/?<device address>!CR LF` (§6.3.1)."""

    device_address: str


@dataclass(frozen=True, slots=True)
class OptionSelect:
    """The acknowledgement/option select message `ACK V Z Y CR LF` (§6.3.3).

    Attributes:
        protocol_char: V: "0" normal, "1" secondary, "2" HDLC (mode E).
        baud_char: Z: the baud rate to switch to (see `BAUD_RATES_MODE_C`).
        mode_char: Y: "0" data readout, "1" programming mode, "2" binary (HDLC).
    """

    protocol_char: str
    baud_char: str
    mode_char: str


@dataclass(frozen=True, slots=True)
class DataValue:
    """One `(value*unit)` of a data set.

    Attributes:
        text: the value as written, e.g. "0012345.6".
        unit: the unit as written, e.g. "kWh"; "" when there is none.
        number: the value as a float when it is a plain decimal number
            (optional '-', digits, optional '.' and digits), else None.
    """

    text: str
    unit: str
    number: float | None


@dataclass(frozen=True, slots=True)
class DataSet:
    """One data set `address(value*unit)(value*unit)…` (§6.3.4 data message: data block structure).

    Attributes:
        address: the address as written, e.g. "1.8.0", "1-0:1.8.0*255", "F.F";
            "" when the data set has none (a password, a read reply).
        obis: the address as OBIS text "A-B:C.D.E" ("*F" added when F is
            given and is not 255); None when the address is not an OBIS code.
            The letters C, F, L, P of group C or D stand for 96..99, a missing
            E is 0, and a missing "A-B:" prefix is taken as "1-0"
            (electricity, channel 0: mode C readouts omit it).
        values: the values in order; lines that start with '(' continue the
            data set of the line before.
    """

    address: str
    obis: str | None
    values: tuple[DataValue, ...]


@dataclass(frozen=True, slots=True)
class DataReadout:
    """A mode C data readout `STX block ! CR LF ETX BCC` (§6.3.4, §6.4 mode C)."""

    data_sets: tuple[DataSet, ...]


@dataclass(frozen=True, slots=True)
class CommandMessage:
    """A programming-mode command `SOH C D [STX data] ETX|EOT BCC` (§6.3.7).

    Attributes:
        command: C and D, e.g. "P1", "R1", "W1", "B0".
        data: the data set text between STX and ETX, e.g. "1.8.0()"; "" when
            the message has none (B0).
        partial: True when the message ends with EOT (a partial block follows).
    """

    command: str
    data: str
    partial: bool = False


@dataclass(frozen=True, slots=True)
class DataMessage:
    """A programming-mode data message `STX data ETX|EOT BCC` (§6.3, programming mode)."""

    data: str
    partial: bool = False


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """An error message `STX [address](ERxx) ETX BCC` (§6.3, programming mode).

    A valid reply, not a codec error: the meter refused the command.
    """

    code: str
    address: str = ""


@dataclass(frozen=True, slots=True)
class Ack:
    """The single-byte acknowledgement ACK (§6.3.5)."""


@dataclass(frozen=True, slots=True)
class Nak:
    """The single-byte repeat request NAK (§6.3.6)."""


Message = (
    SignOnRequest
    | Identification
    | OptionSelect
    | DataReadout
    | CommandMessage
    | DataMessage
    | ErrorMessage
    | Ack
    | Nak
)
