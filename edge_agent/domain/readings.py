"""A reading: what the agent took from a meter, before it is buffered.

(meter serial, OBIS code, timestamp, value, unit, quality flags) — the unit
of everything downstream. Identified by (meter, OBIS, timestamp): storing it
twice must change nothing. Quality bits are the uplink format's
(`fastcodec.uplink.QualityFlag`), so nothing is lost on the way to the cloud.
"""

from __future__ import annotations

from typing import NamedTuple

from fastcodec.uplink import QualityFlag

__all__ = ["QualityFlag", "Reading"]


class Reading(NamedTuple):
    """One value of one quantity of one meter at one moment."""

    meter: str
    obis: str  # A-B:C.D.E
    at_ms: int  # Unix epoch milliseconds, UTC
    value: float
    unit: str
    quality: int = 0  # QualityFlag bits
