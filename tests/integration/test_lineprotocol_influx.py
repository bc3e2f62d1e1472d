"""The line protocol encoder against a real influxd (1.x, started by the `influxd`
fixture): hostile serials and units read back identical through InfluxQL, and
writing the same (meter, OBIS, timestamp) twice leaves one point."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastcodec import lineprotocol
from fastcodec._obis_types import Obis
from fastcodec._uplink_types import Batch, Reading
from tests.servers import InfluxServer

pytestmark = pytest.mark.integration

DATABASE = "lineprotocol_test"
_measurements = itertools.count()

# What a meter serial or unit might hold when a device or a config file is
# hostile: every character line protocol escapes, backslashes, quotes, unicode.
hostile_text = st.text(
    alphabet=st.one_of(
        st.sampled_from([*",= \\\"'#\t=,\\ ", "é", "☃", "电", "😀"]),
        st.characters(codec="utf-8", exclude_characters="\n\r"),
    ),
    min_size=1,
    max_size=16,
)
# The encoder refuses a trailing backslash (InfluxDB 1.x would read it as an escape).
serials = hostile_text.filter(lambda text: not text.endswith("\\"))
units = st.one_of(hostile_text, st.just(""), st.just("a\nb"))
obis_codes = st.builds(Obis, *[st.integers(0, 255)] * 6)
values = st.floats(allow_nan=False, allow_infinity=False)


@pytest.fixture(scope="module")
def database(influxd: InfluxServer) -> Iterator[InfluxServer]:
    influxd.create_database(DATABASE)
    yield influxd
    influxd.query(f'DROP DATABASE "{DATABASE}"')


def _rows(server: InfluxServer, measurement: str) -> list[tuple[Any, ...]]:
    result = server.query(
        f'SELECT "meter", "obis", "quality", "unit", "value" FROM "{measurement}"', DATABASE
    )
    statement = result["results"][0]  # type: ignore[index]
    assert "error" not in statement, statement
    if "series" not in statement:
        return []
    # InfluxDB's JSON writes large integral floats as integer digits
    # (49917579214504730): read them back as the float64 they denote.
    return [(*row[:-1], float(row[-1])) for row in statement["series"][0]["values"]]


def _expected(readings: list[Reading]) -> list[tuple[Any, ...]]:
    # The last write of a (meter, OBIS, timestamp) wins: that is the identity.
    latest = {(r.meter, str(r.obis), r.timestamp_ms): r for r in readings}
    return sorted(
        (r.timestamp_ms * 1_000_000, r.meter, str(r.obis), r.quality, r.unit, r.value)
        for r in latest.values()
    )


@st.composite
def readings(draw: st.DrawFn) -> list[Reading]:
    meters = draw(st.lists(serials, min_size=1, max_size=4, unique=True))
    codes = draw(st.lists(obis_codes, min_size=1, max_size=3, unique=True))
    return draw(
        st.lists(
            st.builds(
                Reading,
                st.sampled_from(meters),
                st.sampled_from(codes),
                st.integers(1_500_000_000_000, 1_500_000_000_020),
                values,
                units,
                st.integers(0, 0xFFFF),
            ),
            min_size=1,
            max_size=12,
        )
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(readings())
def test_hostile_readings_read_back_identical(
    database: InfluxServer, readings: list[Reading]
) -> None:
    measurement = f"reading_{next(_measurements)}"
    batch = Batch.from_readings("gw-it", 1, 1_500_000_000_000, readings)
    database.write(DATABASE, lineprotocol.encode_readings(batch, measurement=measurement))
    rows = sorted(_rows(database, measurement))
    assert rows == _expected(readings)


def test_writing_the_same_reading_twice_leaves_one_point(database: InfluxServer) -> None:
    measurement = f"reading_{next(_measurements)}"
    code = Obis(1, 0, 1, 8, 0)
    first = [
        Reading(f"M {i},=x", code, 1_600_000_000_000 + i, float(i), "kWh", 0) for i in range(5)
    ]
    again = [reading._replace(value=reading.value + 0.5) for reading in first]
    for batch_readings in (first, first, again):
        batch = Batch.from_readings("gw-it", 1, 0, batch_readings)
        database.write(DATABASE, lineprotocol.encode_readings(batch, measurement=measurement))
    rows = sorted(_rows(database, measurement))
    assert len(rows) == 5
    assert rows == _expected(first + again)
