"""Read models of metering for the API: latest values and reading series, with units."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel

__all__ = ["LatestValue", "LatestValues", "ReadingPoint", "ReadingSeriesRead"]


class LatestValue(BaseModel):
    """The newest reading of one quantity."""

    obis: str
    name: str | None
    at: AwareDatetime
    value: float
    unit: str | None
    quality: int | None


class LatestValues(BaseModel):
    """The newest reading of every quantity a meter reported, by OBIS code."""

    meter: str
    values: list[LatestValue]


class ReadingPoint(BaseModel):
    """A raw reading (with its unit and quality flags) or a bucket (with its reading count)."""

    at: AwareDatetime
    value: float
    unit: str | None = None
    quality: int | None = None
    count: int | None = None


class ReadingSeriesRead(BaseModel):
    """One quantity of one meter over ``[start, end)``, oldest point first.

    ``unit`` is the unit of every value (for buckets: of the newest raw reading);
    ``aggregate`` is None for raw readings.
    """

    meter: str
    obis: str
    name: str | None
    resolution: str
    aggregate: str | None
    start: AwareDatetime
    end: AwareDatetime
    unit: str | None
    points: list[ReadingPoint]
