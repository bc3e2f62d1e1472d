"""InfluxDB line protocol encoder: the reference's escaping examples, types, refusals,
and the readings schema of docs/timeseries-schema.md."""

from __future__ import annotations

import math
from array import array
from types import ModuleType

import pytest

from fastcodec._obis_types import Obis
from fastcodec._uplink_types import Batch, Reading
from fastcodec.exceptions import EncodeError

T = 1465839830100400200  # the timestamp of the InfluxDB reference examples


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "line"),
    [
        # InfluxDB v1 line protocol reference, "Special characters" examples.
        (
            "weather",
            {"location": "us,midwest"},
            {"temperature": 82},
            r"weather,location=us\,midwest temperature=82i",
        ),
        (
            "weather",
            {"location": "us-midwest"},
            {"temp=rature": 82},
            r"weather,location=us-midwest temp\=rature=82i",
        ),
        (
            "weather",
            {"location place": "us-midwest"},
            {"temperature": 82},
            r"weather,location\ place=us-midwest temperature=82i",
        ),
        (
            "wea,ther",
            {"location": "us-midwest"},
            {"temperature": 82},
            r"wea\,ther,location=us-midwest temperature=82i",
        ),
        (
            "wea ther",
            {"location": "us-midwest"},
            {"temperature": 82},
            r"wea\ ther,location=us-midwest temperature=82i",
        ),
        (
            "weather",
            {"location": "us-midwest"},
            {"temperature": 'too"hot"'},
            r'weather,location=us-midwest temperature="too\"hot\""',
        ),
        (
            "weather",
            {"location": "us-midwest"},
            {"temperature_str": "too hot/cold"},
            r'weather,location=us-midwest temperature_str="too hot/cold"',
        ),
        (
            "weather",
            {"location": "us-midwest"},
            {"temperature_str": "too hot\\cold"},
            r'weather,location=us-midwest temperature_str="too hot\\cold"',
        ),
        # An equals sign in a measurement needs no escape; a backslash inside
        # a tag value is kept literally.
        ("a=b", {"k": "x\\y"}, {"v": 1.5}, r"a=b,k=x\y v=1.5"),
        ("m", {"k": "a\\,b"}, {"v": 1.0}, r"m,k=a\\,b v=1"),
    ],
)
def test_escaping_follows_the_reference_examples(
    lineprotocol: ModuleType,
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, object],
    line: str,
) -> None:
    assert lineprotocol.encode_point(measurement, tags, fields) == line
    assert lineprotocol.encode_point(measurement, tags, fields, T) == f"{line} {T}"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (82, "82i"),
        (-(2**63), "-9223372036854775808i"),
        (2**63 - 1, "9223372036854775807i"),
        (True, "true"),
        (False, "false"),
        (1.5, "1.5"),
        (2.0, "2"),  # a float without a decimal point is still a float
        (-0.0, "-0"),
        (0.1, "0.1"),
        (1e16, "1e+16"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (1 / 3, "0.3333333333333333"),
        ("", '""'),
        ("a\nb", '"a\nb"'),
    ],
)
def test_field_values_by_type(lineprotocol: ModuleType, value: object, text: str) -> None:
    assert lineprotocol.encode_point("m", {}, {"v": value}) == f"m v={text}"


def test_floats_read_back_exactly(lineprotocol: ModuleType) -> None:
    for value in (0.1 + 0.2, 1234.567, 1e-5, 123456789.123, 2.5e-7):
        text = lineprotocol.encode_point("m", {}, {"v": value}).split("=", 1)[1]
        assert float(text) == value


def test_tags_and_fields_are_sorted_by_key(lineprotocol: ModuleType) -> None:
    line = lineprotocol.encode_point("m", {"z": "1", "a": "2"}, {"y": 1.0, "b": "s"}, 5)
    assert line == 'm,a=2,z=1 b="s",y=1 5'


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "timestamp_ns", "message"),
    [
        ("", {}, {"v": 1}, None, "measurement"),
        ("#m", {}, {"v": 1}, None, "comment"),
        ("m\n", {}, {"v": 1}, None, "line break"),
        ("m\\", {}, {"v": 1}, None, "backslash"),
        ("m", {"k\r": "v"}, {"v": 1}, None, "line break"),
        ("m", {"k": "v\n"}, {"v": 1}, None, "line break"),
        ("m", {"k": ""}, {"v": 1}, None, "empty"),
        ("m", {"k": "ends\\"}, {"v": 1}, None, "backslash"),
        ("m", {"k": "\udc00"}, {"v": 1}, None, "Unicode"),
        ("m", {"k": 5}, {"v": 1}, None, "str"),
        ("m", {}, {}, None, "at least one field"),
        ("m", {}, {"time": 1}, None, "time"),
        ("m", {}, {"v": math.nan}, None, "finite"),
        ("m", {}, {"v": math.inf}, None, "finite"),
        ("m", {}, {"v": 2**63}, None, "int64"),
        ("m", {}, {"v": None}, None, "NoneType"),
        ("m", {}, {"v": b"x"}, None, "bytes"),
        ("m", {}, {"v": "\ud800"}, None, "Unicode"),
        ("m", {}, {"v": 1}, 2**63, "time range"),
        ("m", {}, {"v": 1}, 1.5, "time range"),
    ],
)
def test_what_line_protocol_cannot_carry_is_an_encode_error(
    lineprotocol: ModuleType,
    measurement: str,
    tags: dict[str, object],
    fields: dict[str, object],
    timestamp_ns: object,
    message: str,
) -> None:
    with pytest.raises(EncodeError, match=message):
        lineprotocol.encode_point(measurement, tags, fields, timestamp_ns)


ENERGY_IMPORT = Obis(1, 0, 1, 8, 0)


def _batch(readings: list[Reading]) -> Batch:
    return Batch.from_readings("gw-1", 1, 1_700_000_060_000, readings)


def test_readings_schema_line(lineprotocol: ModuleType) -> None:
    batch = _batch(
        [
            Reading("LGZ 123,4=5", ENERGY_IMPORT, 1_700_000_000_000, 1234.5, "kWh", 0),
            Reading("LGZ 123,4=5", Obis(1, 0, 1, 8, 0, 101), 1_700_000_000_123, 7.0, 'k"W\\h', 9),
        ]
    )
    assert lineprotocol.encode_readings(batch) == (
        r'reading,meter=LGZ\ 123\,4\=5,obis=1-0:1.8.0 quality=0i,unit="kWh",value=1234.5'
        " 1700000000000000000\n"
        r'reading,meter=LGZ\ 123\,4\=5,obis=1-0:1.8.0*101 quality=9i,unit="k\"W\\h",value=7'
        " 1700000000123000000\n"
    )


def test_readings_lines_equal_the_points_written_one_by_one(lineprotocol: ModuleType) -> None:
    readings = [
        Reading(
            f"M{i % 3} é", Obis(1, 0, i % 4 + 1, 8, 0), 1_600_000_000_000 + i, i * 0.37, "kWh", i
        )
        for i in range(40)
    ]
    expected = "".join(
        lineprotocol.encode_point(
            "energy",
            {"meter": r.meter, "obis": str(r.obis)},
            {"value": r.value, "unit": r.unit, "quality": r.quality},
            r.timestamp_ms * 1_000_000,
        )
        + "\n"
        for r in readings
    )
    assert lineprotocol.encode_readings(_batch(readings), measurement="energy") == expected


def test_empty_batch_gives_no_lines(lineprotocol: ModuleType) -> None:
    assert lineprotocol.encode_readings(_batch([])) == ""


def test_non_finite_values_are_refused_or_skipped(lineprotocol: ModuleType) -> None:
    readings = [
        Reading("m", ENERGY_IMPORT, 0, 1.0, "kWh", 0),
        Reading("m", ENERGY_IMPORT, 1, math.nan, "kWh", 0),
        Reading("m", ENERGY_IMPORT, 2, -math.inf, "kWh", 0),
        Reading("m", ENERGY_IMPORT, 3, 2.0, "kWh", 0),
    ]
    with pytest.raises(EncodeError, match="reading 1"):
        lineprotocol.encode_readings(_batch(readings))
    lines = lineprotocol.encode_readings(_batch(readings), skip_non_finite=True).splitlines()
    assert [line.split()[-1] for line in lines] == ["0", "3000000"]


@pytest.mark.parametrize("serial", ["ends\\", "two\nlines"])
def test_serials_line_protocol_cannot_carry_are_refused(
    lineprotocol: ModuleType, serial: str
) -> None:
    with pytest.raises(EncodeError, match="meter serial"):
        lineprotocol.encode_readings(_batch([Reading(serial, ENERGY_IMPORT, 0, 1.0, "", 0)]))


def test_timestamps_outside_influxdb_range_are_refused(lineprotocol: ModuleType) -> None:
    edge = lineprotocol.MAX_TIMESTAMP_MS
    ok = lineprotocol.encode_readings(_batch([Reading("m", ENERGY_IMPORT, edge, 1.0, "", 0)]))
    assert ok.endswith(f" {edge * 1_000_000}\n")
    for bad in (edge + 1, lineprotocol.MIN_TIMESTAMP_MS - 1):
        with pytest.raises(EncodeError, match="range"):
            lineprotocol.encode_readings(_batch([Reading("m", ENERGY_IMPORT, bad, 1.0, "", 0)]))


def test_inconsistent_columns_are_refused(lineprotocol: ModuleType) -> None:
    batch = _batch([Reading("m", ENERGY_IMPORT, 0, 1.0, "", 0)])
    batch.meter_index = array("H", [3])
    with pytest.raises(EncodeError, match="meter_index"):
        lineprotocol.encode_readings(batch)
    batch.meter_index = array("H", [0, 0])
    with pytest.raises(EncodeError, match="length"):
        lineprotocol.encode_readings(batch)


def test_escape_helpers(lineprotocol: ModuleType) -> None:
    assert lineprotocol.escape_measurement("a b,c=d") == r"a\ b\,c=d"
    assert lineprotocol.escape_tag("a b,c=d") == r"a\ b\,c\=d"
    assert lineprotocol.escape_field_key("a b,c=d") == r"a\ b\,c\=d"
    assert lineprotocol.escape_string_field('say "hi" \\o/') == r'"say \"hi\" \\o/"'
