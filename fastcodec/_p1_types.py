"""Values the P1 codec returns, shared by its two twins.

Defined once here so that results of the compiled and the pure twin compare
equal. See `fastcodec._p1_py` for the telegram format and its spec clauses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from fastcodec._iec62056_21_types import Identification

__all__ = [
    "DEFAULT_MAX_TELEGRAM_BYTES",
    "SUMMER_TIME",
    "WINTER_TIME",
    "Identification",
    "ProfileEntry",
    "Reading",
    "Telegram",
]

# DSMR 5.0.2 §6.4 and e-MUCS: a timestamp YYMMDDhhmmssX ends in X = 'S' for
# summer time or 'W' for winter time. The meters of the Netherlands and of
# Belgium (Europe/Amsterdam, Europe/Brussels) keep CEST = UTC+2 in summer and
# CET = UTC+1 in winter, so the letter alone fixes the offset: no time zone
# database is needed. (A Hungarian or Luxembourg meter is in the same zone.)
SUMMER_TIME = timezone(timedelta(hours=2), "CEST")
WINTER_TIME = timezone(timedelta(hours=1), "CET")

# A DSMR 5 telegram with a full text message is about 2.5 kB; the splitter
# drops a candidate telegram longer than this instead of growing without bound.
DEFAULT_MAX_TELEGRAM_BYTES = 16384


@dataclass(frozen=True, slots=True)
class ProfileEntry:
    """One entry of a log or profile line (99.97.0 power failures, 98.1.0 peaks).

    Attributes:
        timestamps: the entry's timestamps in order, None where the text is
            not a valid date (e.g. "632525252525W" in a real e-MUCS meter).
            99.97.0: (end of the failure,); e-MUCS 98.1.0: (start of the
            month, time of the peak).
        value: the entry's value as a float, or its text when not a number.
        unit: the value's unit, e.g. "s", "kW"; "" when none.
    """

    timestamps: tuple[datetime | None, ...]
    value: float | str
    unit: str


@dataclass(frozen=True, slots=True)
class Reading:
    """One data line of a telegram, e.g. `1-0:1.8.1(000004.426*kWh)`.

    Attributes:
        obis: the OBIS code as text "A-B:C.D.E" ("*F" kept when F is not
            255), e.g. "1-0:1.8.1"; the address as written when it is not an
            OBIS code.
        value: a float for a number; the text otherwise (equipment ids and
            text messages, 96.1.x and 96.13.x, stay text even when they are
            all digits: they are hex-encoded strings). For a log line, the
            number of events it counts.
        unit: e.g. "kWh", "kW", "V", "A", "m3", "GJ"; "" when none.
        timestamp: when the value was captured (M-Bus 24.2.x, peak 1.6.0,
            0-0:1.0.0 itself); None when the line carries none. Timestamps with
            S/W are UTC+2/UTC+1 aware; DSMR 2.2/3 hourly gas timestamps carry
            no letter and are returned naive (local time, offset unknown).
        channel: the B group: 0 for the meter itself, 1..4 for M-Bus devices.
        entries: the entries of a log or profile line (see ProfileEntry).
        raw: every `(text*unit)` of the line as (text, unit) pairs.
    """

    obis: str
    value: float | str
    unit: str
    timestamp: datetime | None
    channel: int
    entries: tuple[ProfileEntry, ...]
    raw: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Telegram:
    """A decoded P1 telegram.

    Attributes:
        identification: the header `/XXXZ<ident>`; see Identification.
        readings: the data lines in order.
        checksum_ok: True when the CRC matches, False when it does not, None
            when the telegram carries no CRC (DSMR 2.2/3, some gateways).
        checksum: the CRC the telegram carried, None when it had none.
        trailer: the bytes after the end line `!CRC CR LF` (a gateway's
            trailer, 0xFF padding); not covered by the CRC.
    """

    identification: Identification
    readings: tuple[Reading, ...]
    checksum_ok: bool | None
    checksum: int | None
    trailer: bytes = b""

    def get(self, obis: str) -> Reading | None:
        """The first reading with this OBIS text, e.g. "1-0:1.8.1", or None."""
        for reading in self.readings:
            if reading.obis == obis:
                return reading
        return None

    @property
    def timestamp(self) -> datetime | None:
        """The telegram's own timestamp (0-0:1.0.0), or None."""
        reading = self.get("0-0:1.0.0")
        return reading.timestamp if reading is not None else None

    @property
    def text_message(self) -> str | None:
        """The text message 0-0:96.13.0 decoded from hex, or None.

        DSMR 4+ sends the message as hex-encoded ASCII; text that is not valid
        hex is returned as it was sent.
        """
        reading = self.get("0-0:96.13.0")
        if reading is None:
            return None
        text = str(reading.value)
        try:
            return bytes.fromhex(text).decode("latin-1")
        except ValueError:
            return text
