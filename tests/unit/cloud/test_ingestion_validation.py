"""The ingestion's validation rules: pure functions, no broker, no database."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.ingestion.validation import (
    Installation,
    Refusal,
    ValidationRules,
    check_gateway,
    decode_payload,
    meters_not_on_gateway,
    parse_topic,
    physical_range,
    screen_readings,
    select_readings,
    value_in_range,
)
from fastcodec.obis import parse_obis
from fastcodec.uplink import Batch, Reading, encode_batch

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000
RULES = ValidationRules()


def reading(
    meter: str = "M1",
    obis: str = "1-0:1.8.0",
    timestamp_ms: int = NOW_MS - 60_000,
    value: float = 1.0,
    unit: str = "kWh",
) -> Reading:
    return Reading(meter, parse_obis(obis), timestamp_ms, value, unit, 0)


def batch(*readings: Reading, gateway: str = "gw-1") -> Batch:
    return Batch.from_readings(gateway, 1, NOW_MS, readings)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("vs/v1/gw-1/readings", ("gw-1", "readings")),
        ("vs/v1/gw-1/events", ("gw-1", "events")),
        ("vs/v1/gw-1/status", ("gw-1", "status")),
        ("vs/v1/gw-1/cmd/7", None),
        ("vs/v1//readings", None),
        ("vs/v2/gw-1/readings", None),
        ("vs/v1/_cloud/events/outage", None),
    ],
)
def test_parse_topic(topic: str, expected: tuple[str, str] | None) -> None:
    assert parse_topic(topic) == expected


def test_decode_payload_gives_the_batch() -> None:
    sent = batch(reading())
    assert decode_payload(encode_batch(sent), RULES) == sent


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", "undecodable"),
        (b"garbage garbage garbage garbage garbage garbage", "undecodable"),
        (encode_batch(batch(reading()))[:-9], "bad_checksum"),
        (b"VSUB\x01" + bytes(60), "bad_checksum"),
        (b"VSUB\x02" + bytes(60), "undecodable"),
    ],
)
def test_decode_payload_refuses_with_a_reason(payload: bytes, code: str) -> None:
    refusal = decode_payload(payload, RULES)
    assert isinstance(refusal, Refusal)
    assert refusal.reason_code == code


def test_oversized_payload_is_refused_before_decoding() -> None:
    payload = encode_batch(batch(*(reading(timestamp_ms=NOW_MS - i) for i in range(100))))
    refusal = decode_payload(payload, ValidationRules(max_payload_bytes=len(payload) - 1))
    assert isinstance(refusal, Refusal) and refusal.reason_code == "too_large"
    assert not isinstance(decode_payload(payload, ValidationRules(len(payload))), Refusal)


def test_check_gateway() -> None:
    ok = {"topic_gateway": "gw-1", "batch_gateway": "gw-1", "known": True}
    assert check_gateway(**ok, decommissioned=False) is None
    assert check_gateway(**{**ok, "batch_gateway": None}, decommissioned=False) is None
    for refusal in (
        check_gateway(**{**ok, "known": False}, decommissioned=False),
        check_gateway(**ok, decommissioned=True),
        check_gateway(**{**ok, "batch_gateway": "gw-2"}, decommissioned=False),
    ):
        assert refusal is not None and refusal.reason_code == "unknown_gateway"


def test_meters_must_be_installed_at_each_readings_time() -> None:
    installed = {
        "M1": [Installation(NOW_MS - 10 * DAY_MS, NOW_MS - 5 * DAY_MS), Installation(NOW_MS)],
        "M2": [Installation(NOW_MS - DAY_MS)],
    }
    inside = batch(reading("M1", timestamp_ms=NOW_MS - 6 * DAY_MS), reading("M2"))
    assert meters_not_on_gateway(inside, installed) == []
    # between its two installations, before it, a stranger
    gap = batch(reading("M1", timestamp_ms=NOW_MS - 5 * DAY_MS), reading("M2"))
    assert meters_not_on_gateway(gap, installed) == ["M1"]
    early = batch(reading("M2", timestamp_ms=NOW_MS - 2 * DAY_MS), reading("X9"))
    assert meters_not_on_gateway(early, installed) == ["M2", "X9"]


@pytest.mark.parametrize(
    ("obis", "value", "unit", "ok"),
    [
        ("1-0:32.7.0", 230.0, "V", True),
        ("1-0:32.7.0", 1200.0, "V", False),
        ("1-0:32.7.0", 0.4, "kV", True),
        ("1-0:32.7.0", -1.0, "V", False),
        ("1-0:31.7.0", 9_999.0, "A", True),
        ("1-0:31.7.0", 11.0, "kA", False),
        ("1-0:1.7.0", 9_000.0, "kW", True),
        ("1-0:1.7.0", 11.0, "MW", False),
        ("1-0:1.7.0", -9e6, "W", True),
        ("1-0:1.8.0", 0.0, "kWh", True),
        ("1-0:1.8.0", -0.1, "kWh", False),
        ("1-0:2.8.0", 1e12, "Wh", True),
        ("1-0:14.7.0", 50.0, "Hz", True),
        ("1-0:14.7.0", 0.0, "Hz", False),
        ("1-0:13.7.0", -0.9, "", True),
        ("1-0:13.7.0", 1.5, "", False),
        ("1-0:33.7.0", 1.01, "", False),
        ("0-0:96.1.0", -1e300, "", True),
        ("1-0:1.8.0", math.nan, "kWh", False),
        ("0-0:96.1.0", math.inf, "", False),
    ],
)
def test_value_in_range(obis: str, value: float, unit: str, ok: bool) -> None:
    assert value_in_range(parse_obis(obis), value, unit) is ok


def test_unknown_obis_has_no_range() -> None:
    assert physical_range(parse_obis("0-0:96.1.0")) is None
    assert physical_range(parse_obis("1-0:0.9.1")) is None


def test_screen_readings_sorts_by_reason() -> None:
    rules = ValidationRules(max_age=timedelta(days=400), max_ahead=timedelta(days=1))
    sent = batch(
        reading(value=10.0),  # 0 ok
        reading(timestamp_ms=NOW_MS - 401 * DAY_MS),  # 1 too old
        reading(timestamp_ms=NOW_MS + 2 * DAY_MS),  # 2 too far ahead
        reading(obis="1-0:32.7.0", value=5000.0, unit="V"),  # 3 out of range
        reading(obis="1-0:32.7.0", value=math.nan, unit="V"),  # 4 NaN
        reading(timestamp_ms=NOW_MS + DAY_MS - 1, value=11.0),  # 5 ok, at the edge
    )
    screening = screen_readings(sent, now_ms=NOW_MS, rules=rules)
    assert screening.valid == [0, 5]
    assert screening.out_of_window == [1, 2]
    assert screening.out_of_range == [3, 4]
    assert screening.rejected == 4
    kept = select_readings(sent, screening.valid)
    assert [r.value for r in kept.readings()] == [10.0, 11.0]
    assert (kept.gateway_id, kept.sequence) == (sent.gateway_id, sent.sequence)


# --- the columnar screening agrees with the rules applied reading by reading ---------

SCREENED_CODES = ("1-0:1.8.0", "1-0:32.7.0", "1-0:13.7.0", "1-0:1.7.0", "0-0:96.1.0", "1-0:14.7.0")
SCREENED_UNITS = ("kWh", "Wh", "MWh", "V", "kV", "mV", "", "kW", "W", "Hz", "x")
screened_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2e7, max_value=2e7),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 40.0, 70.0, 1000.0, 1e6, 1e7, 1.7e308, math.inf]),
    st.sampled_from([-math.inf, math.nan]),
)
screened_readings = st.builds(
    reading,
    meter=st.sampled_from(["M1", "M2", "M3", "X9"]),
    obis=st.sampled_from(SCREENED_CODES),
    timestamp_ms=st.integers(NOW_MS - 402 * DAY_MS, NOW_MS + 2 * DAY_MS),
    value=screened_values,
    unit=st.sampled_from(SCREENED_UNITS),
)


def screen_one_by_one(sent: Batch, rules: ValidationRules) -> tuple[list[int], ...]:
    """The rules as docs/ingestion.md states them, applied to each reading on its own."""
    oldest, newest = NOW_MS - rules.max_age // MS, NOW_MS + rules.max_ahead // MS
    valid, late, wrong = [], [], []
    for i, row in enumerate(sent.readings()):
        if not oldest <= row.timestamp_ms <= newest:
            late.append(i)
        elif not value_in_range(row.obis, row.value, row.unit):
            wrong.append(i)
        else:
            valid.append(i)
    return valid, late, wrong


MS = timedelta(milliseconds=1)


@settings(max_examples=300, deadline=None)
@given(st.lists(screened_readings, min_size=0, max_size=60))
def test_screening_agrees_with_the_rules_reading_by_reading(rows: list[Reading]) -> None:
    sent = batch(*rows)
    screening = screen_readings(sent, now_ms=NOW_MS, rules=RULES)
    valid, late, wrong = screen_one_by_one(sent, RULES)
    assert (screening.valid, screening.out_of_window, screening.out_of_range) == (
        valid,
        late,
        wrong,
    )


def test_screening_of_finite_values_whose_sum_overflows() -> None:
    # 1.7e308 twice overflows the batch's sum: each value is then checked on its own.
    sent = batch(
        reading(obis="0-0:96.1.0", value=1.7e308, unit=""),
        reading(obis="0-0:96.1.0", value=1.7e308, unit=""),
        reading(obis="0-0:96.1.0", value=math.inf, unit=""),
    )
    screening = screen_readings(sent, now_ms=NOW_MS, rules=RULES)
    assert (screening.valid, screening.out_of_range) == ([0, 1], [2])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(screened_readings, min_size=0, max_size=40),
    st.dictionaries(
        st.sampled_from(["M1", "M2", "M3"]),
        st.lists(
            st.tuples(
                st.integers(NOW_MS - 403 * DAY_MS, NOW_MS + 3 * DAY_MS),
                st.none() | st.integers(1, 200 * DAY_MS),
            ),
            max_size=3,
        ),
    ),
)
def test_meter_check_agrees_with_the_installations_reading_by_reading(
    rows: list[Reading], spells: dict[str, list[tuple[int, int | None]]]
) -> None:
    installed = {
        serial: [Installation(start, None if span is None else start + span) for start, span in s]
        for serial, s in spells.items()
    }
    expected = sorted(
        {
            row.meter
            for row in rows
            if not any(spell.covers(row.timestamp_ms) for spell in installed.get(row.meter, ()))
        }
    )
    assert meters_not_on_gateway(batch(*rows), installed) == expected
