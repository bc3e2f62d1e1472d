"""OBIS code values shared by both twins of `fastcodec.obis`.

Defined once here so that a code parsed by the compiled twin compares equal to
one parsed by the pure twin (and to one decoded from an uplink batch).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["WELL_KNOWN_OBIS", "Obis", "ObisInfo"]


class Obis(NamedTuple):
    """An OBIS code (IEC 62056-61 §4): six value groups A-B:C.D.E*F, each 0..255.

    A is the medium (1 = electricity, 0 = abstract), B the channel, C the
    quantity, D the processing, E the tariff or further classification, F the
    billing period (255 = not used).
    """

    a: int
    b: int
    c: int
    d: int
    e: int
    f: int = 255

    def __str__(self) -> str:
        # The canonical text, as fastcodec.obis.format_obis writes it.
        text = f"{self.a}-{self.b}:{self.c}.{self.d}.{self.e}"
        return text if self.f == 255 else f"{text}*{self.f}"


class ObisInfo(NamedTuple):
    """What a well-known OBIS code means: a name for people and its usual unit."""

    name: str
    unit: str


def _code(a: int, b: int, c: int, d: int, e: int, f: int = 255) -> Obis:
    return Obis(a, b, c, d, e, f)


def _well_known() -> dict[Obis, ObisInfo]:
    table: dict[Obis, ObisInfo] = {
        _code(0, 0, 1, 0, 0): ObisInfo("Clock", ""),
        _code(0, 0, 96, 1, 0): ObisInfo("Meter serial number", ""),
        _code(0, 0, 96, 1, 1): ObisInfo("Equipment identifier (DSMR)", ""),
        _code(0, 0, 96, 14, 0): ObisInfo("Current tariff (DSMR)", ""),
        _code(0, 0, 97, 97, 0): ObisInfo("Error register", ""),
        _code(0, 0, 99, 98, 0): ObisInfo("Standard event log", ""),
        _code(1, 0, 1, 8, 0): ObisInfo("Active energy import, total", "kWh"),
        _code(1, 0, 2, 8, 0): ObisInfo("Active energy export, total", "kWh"),
        _code(1, 0, 3, 8, 0): ObisInfo("Reactive energy import, total", "kvarh"),
        _code(1, 0, 4, 8, 0): ObisInfo("Reactive energy export, total", "kvarh"),
        _code(1, 0, 1, 7, 0): ObisInfo("Active power import (+P)", "kW"),
        _code(1, 0, 2, 7, 0): ObisInfo("Active power export (-P)", "kW"),
        _code(1, 0, 13, 7, 0): ObisInfo("Power factor", ""),
        _code(1, 0, 14, 7, 0): ObisInfo("Supply frequency", "Hz"),
        _code(1, 0, 99, 1, 0): ObisInfo("Load profile 1", ""),
        _code(1, 0, 99, 2, 0): ObisInfo("Load profile 2", ""),
        _code(1, 0, 99, 97, 0): ObisInfo("Power failure event log", ""),
    }
    for tariff in (1, 2, 3, 4):
        table[_code(1, 0, 1, 8, tariff)] = ObisInfo(f"Active energy import, tariff {tariff}", "kWh")
        table[_code(1, 0, 2, 8, tariff)] = ObisInfo(f"Active energy export, tariff {tariff}", "kWh")
    # Per phase: C = 21/41/61 +P, 22/42/62 -P, 31/51/71 current, 32/52/72
    # voltage, 33/53/73 power factor (IEC 62056-61 Table 5 / DLMS UA Blue Book).
    for phase, offset in (("L1", 20), ("L2", 40), ("L3", 60)):
        table[_code(1, 0, offset + 1, 7, 0)] = ObisInfo(f"Active power import {phase}", "kW")
        table[_code(1, 0, offset + 2, 7, 0)] = ObisInfo(f"Active power export {phase}", "kW")
        table[_code(1, 0, offset + 11, 7, 0)] = ObisInfo(f"Current {phase}", "A")
        table[_code(1, 0, offset + 12, 7, 0)] = ObisInfo(f"Voltage {phase}", "V")
        table[_code(1, 0, offset + 13, 7, 0)] = ObisInfo(f"Power factor {phase}", "")
    return table


# Well-known codes for the CLI and the console; not a limit on what the codec accepts.
WELL_KNOWN_OBIS: dict[Obis, ObisInfo] = _well_known()
