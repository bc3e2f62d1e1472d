"""Read a meter's IEC 62056-21 mode C data readout at its optical port, as readings.

The handshake (sign-on at 300 Bd, baud switch, readout with its BCC) is
firmware_bridge.optical's; here the readout's data sets become readings:
OBIS normalised by fastcodec (`1.8.0` → `1-0:1.8.0`), the value, and the
unit from the readout converted to the device profile's (kW → W). The
meter's clock lines (0.9.1 time, 0.9.2 date) stamp the readings; without
them the agent's clock does, flagged AGENT_TIMESTAMP.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable

from edge_agent.adapters.modbus_reader import MeterRead
from edge_agent.domain.readings import QualityFlag, Reading
from edge_agent.profiles import DeviceProfile, load_profile
from fastcodec import iec62056_21 as iec
from firmware_bridge.links import BytePipe
from firmware_bridge.optical import OpticalResult, OpticalSettings, OpticalStatistics, sign_on

__all__ = ["OpticalMeterReader", "readings_from_readout"]

_CONVERSIONS = {("kW", "W"): 1000.0, ("kvar", "var"): 1000.0, ("Wh", "kWh"): 1e-3}
_TIME = re.compile(r"^(\d{2}):?(\d{2}):?(\d{2})$")
_DATE = re.compile(r"^(\d{2})-?(\d{2})-?(\d{2})$")
_CLOCK_TIME, _CLOCK_DATE = "1-0:0.9.1", "1-0:0.9.2"


def _meter_clock(readout: iec.DataReadout, zone: dt.tzinfo) -> dt.datetime | None:
    by_obis = {data_set.obis: data_set for data_set in readout.data_sets if data_set.values}
    time_set, date_set = by_obis.get(_CLOCK_TIME), by_obis.get(_CLOCK_DATE)
    if time_set is None or date_set is None:
        return None
    time_match = _TIME.match(time_set.values[0].text)
    date_match = _DATE.match(date_set.values[0].text)
    if time_match is None or date_match is None:
        return None
    year, month, day = (int(g) for g in date_match.groups())
    hour, minute, second = (int(g) for g in time_match.groups())
    try:
        return dt.datetime(2000 + year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        return None


def readings_from_readout(
    meter: str,
    readout: iec.DataReadout,
    profile: DeviceProfile | None = None,
    *,
    meter_timezone: dt.tzinfo = dt.UTC,
    now_ms: int | None = None,
) -> list[Reading]:
    """The numeric data sets of a readout as readings (see the module doc).

    Data sets without a unit (serial number, error register) and the clock
    lines are not readings; a data set with the profile's OBIS code always is.
    """
    units = {q.obis: q.unit for q in profile.quantities} if profile else {}
    clock = _meter_clock(readout, meter_timezone)
    if clock is not None:
        at_ms, quality = int(clock.timestamp() * 1000), 0
    else:
        at_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        quality = int(QualityFlag.AGENT_TIMESTAMP)
    readings = []
    for data_set in readout.data_sets:
        obis = data_set.obis
        if obis is None or not data_set.values or obis in (_CLOCK_TIME, _CLOCK_DATE):
            continue
        value = data_set.values[0]
        if value.number is None or not (value.unit or obis in units):
            continue
        number, unit = value.number, value.unit
        wanted = units.get(obis, unit)
        factor = _CONVERSIONS.get((unit, wanted))
        if factor is not None:
            number = round(number * factor, 9)
            unit = wanted
        readings.append(Reading(meter, obis, at_ms, number, unit, quality))
    return readings


class OpticalMeterReader:
    """Reads one meter at its optical port in protocol mode C.

    Args:
        name: the meter's serial (Reading.meter).
        settings: its optical settings and overrides (baud switch, speed cap).
        profile: its device profile (generic-iec62056-21 by default).
        meter_timezone: the zone of the meter's clock lines.
    """

    def __init__(
        self,
        name: str,
        settings: OpticalSettings | None = None,
        profile: DeviceProfile | None = None,
        meter_timezone: dt.tzinfo = dt.UTC,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.clock = clock  # stamps a readout without clock lines
        self.settings = settings or OpticalSettings(mode="C")
        self.profile = profile or load_profile("generic-iec62056-21")
        self.meter_timezone = meter_timezone
        self.statistics = OpticalStatistics()
        self.last_result: OpticalResult | None = None

    def read(self, pipe: BytePipe) -> MeterRead:
        """Sign on, read the readout, return its readings.

        Raises:
            OpticalTimeout, ReadoutChecksumError, OpticalError, LinkClosed.
        """
        result = sign_on(pipe, self.settings, self.statistics)
        self.last_result = result
        assert result.readout is not None
        readings = readings_from_readout(
            self.name,
            result.readout,
            self.profile,
            meter_timezone=self.meter_timezone,
            now_ms=round(self.clock() * 1000),
        )
        return MeterRead(readings, [])
