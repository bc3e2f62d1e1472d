"""The buffer's pure decisions: send order, live/backlog sharing, drops."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.domain.buffer_policy import (
    age_cutoff_ms,
    drop_count,
    live_cutoff_ms,
    order_key,
    select_drops,
    select_lease,
    share_lease,
    split_lanes,
)
from edge_agent.domain.readings import Reading

NOW_S = 1_800_000_000.0
NOW_MS = int(NOW_S * 1000)

_keys = st.tuples(
    st.sampled_from(["A", "B", "C", "D"]),
    st.sampled_from(["1-0:1.8.0", "1-0:2.8.0", "1-0:32.7.0"]),
    # From two days ago to now: both sides of the live window and of an age limit.
    st.integers(min_value=NOW_MS - 2 * 86_400_000, max_value=NOW_MS),
)
pending_readings = st.lists(_keys, max_size=60, unique=True).map(
    lambda keys: [Reading(meter, obis, at_ms, 1.0, "kWh") for meter, obis, at_ms in keys]
)


def _is_prefix_per_meter(chosen: list[Reading], pending: list[Reading]) -> bool:
    for meter in {reading.meter for reading in pending}:
        queue = sorted((r for r in pending if r.meter == meter), key=order_key)
        taken = {r for r in chosen if r.meter == meter}
        if set(queue[: len(taken)]) != taken:
            return False
    return True


def _is_prefix_per_meter_in_each_lane(
    chosen: list[Reading], pending: list[Reading], live_from_ms: int
) -> bool:
    chosen_live, chosen_backlog = split_lanes(chosen, live_from_ms)
    pending_live, pending_backlog = split_lanes(pending, live_from_ms)
    return _is_prefix_per_meter(chosen_live, pending_live) and _is_prefix_per_meter(
        chosen_backlog, pending_backlog
    )


@settings(max_examples=300, deadline=None)
@given(
    pending=pending_readings,
    max_readings=st.integers(min_value=1, max_value=80),
    live_share=st.floats(min_value=0.0, max_value=1.0),
    window_s=st.sampled_from([60.0, 300.0, 86_400.0]),
)
def test_a_lease_never_sends_a_meter_out_of_order_within_a_lane(
    pending: list[Reading], max_readings: int, live_share: float, window_s: float
) -> None:
    live_from_ms = live_cutoff_ms(NOW_S, window_s)
    chosen = select_lease(pending, max_readings, live_share=live_share, live_from_ms=live_from_ms)
    assert len(chosen) == min(max_readings, len(pending))  # the uplink never idles
    assert len(set(chosen)) == len(chosen)
    assert chosen == sorted(chosen, key=order_key)
    assert _is_prefix_per_meter_in_each_lane(chosen, pending, live_from_ms)


@settings(max_examples=300, deadline=None)
@given(
    pending=pending_readings,
    max_readings=st.integers(min_value=1, max_value=80),
    live_share=st.floats(min_value=0.0, max_value=1.0),
)
def test_the_live_lane_gets_its_share_whatever_the_backlog(
    pending: list[Reading], max_readings: int, live_share: float
) -> None:
    live_from_ms = live_cutoff_ms(NOW_S, 300.0)
    live, backlog = split_lanes(pending, live_from_ms)
    chosen = select_lease(pending, max_readings, live_share=live_share, live_from_ms=live_from_ms)
    live_taken = sum(1 for r in chosen if r.at_ms >= live_from_ms)
    backlog_taken = len(chosen) - live_taken
    assert live_taken >= min(len(live), round(max_readings * live_share))
    assert backlog_taken >= min(len(backlog), max_readings - round(max_readings * live_share))


@settings(max_examples=200, deadline=None)
@given(
    pending=pending_readings,
    max_readings=st.integers(min_value=1, max_value=80),
)
def test_a_live_only_lease_takes_no_backlog(pending: list[Reading], max_readings: int) -> None:
    live_from_ms = live_cutoff_ms(NOW_S, 300.0)
    live, _ = split_lanes(pending, live_from_ms)
    chosen = select_lease(
        pending, max_readings, live_share=0.5, live_from_ms=live_from_ms, backlog=False
    )
    assert chosen == live[:max_readings]


def test_a_caught_up_meter_is_not_stuck_behind_a_replay() -> None:
    # Meter A replays a day; meter B is live. Half of every lease is B's.
    backlog = [
        Reading("A", "1-0:1.8.0", NOW_MS - 86_400_000 + i * 1000, 1.0, "kWh") for i in range(100)
    ]
    live = [Reading("B", "1-0:1.8.0", NOW_MS - 10_000 + i * 1000, 1.0, "kWh") for i in range(5)]
    chosen = select_lease(backlog + live, 10, live_share=0.5, live_from_ms=NOW_MS - 300_000)
    assert [r.meter for r in chosen].count("B") == 5
    assert [r for r in chosen if r.meter == "A"] == backlog[:5]
    # With no live share, B waits for the replay to leave room.
    chosen = select_lease(backlog + live, 10, live_share=0.0, live_from_ms=NOW_MS - 300_000)
    assert chosen == backlog[:10]


def test_a_meters_live_readings_do_not_wait_for_its_own_backlog() -> None:
    # After an uplink outage every meter has a backlog: its new readings go in
    # the live lane, beside (not after) its day-old ones.
    old = [Reading("A", "1-0:1.8.0", NOW_MS - 86_400_000 + i, 1.0, "kWh") for i in range(3)]
    new = Reading("A", "1-0:1.8.0", NOW_MS - 1000, 2.0, "kWh")
    assert select_lease([new, *old], 2, live_share=0.5, live_from_ms=NOW_MS - 300_000) == [
        old[0],
        new,
    ]
    assert select_lease([new, *old], 1, live_share=1.0, live_from_ms=NOW_MS - 300_000) == [new]


@settings(max_examples=300, deadline=None)
@given(
    pending=pending_readings,
    in_flight=st.integers(min_value=0, max_value=30),
    max_readings=st.integers(min_value=1, max_value=70),
    max_age_days=st.sampled_from([0.5, 1.0, 3.0]),
)
def test_drops_are_the_oldest_and_respect_the_limits(
    pending: list[Reading], in_flight: int, max_readings: int, max_age_days: float
) -> None:
    age_from_ms = age_cutoff_ms(NOW_S, max_age_days)
    by_age, by_size = select_drops(
        pending, in_flight=in_flight, max_readings=max_readings, age_from_ms=age_from_ms
    )
    dropped = by_age + by_size
    kept = [r for r in pending if r not in set(dropped)]
    # Oldest first: everything dropped comes before everything kept.
    if dropped and kept:
        assert max(map(order_key, dropped)) < min(map(order_key, kept))
    assert all(r.at_ms < age_from_ms for r in by_age)
    assert all(r.at_ms >= age_from_ms for r in kept)  # nothing too old survives
    # The size limit holds unless only in-flight readings are left to exceed it.
    assert len(kept) + in_flight <= max_readings or not kept
    # Nothing dropped that the limits allowed.
    assert not by_size or len(kept) + in_flight == max_readings or not kept


def test_age_limits_compare_seconds_with_seconds() -> None:
    # The peer's bug: milliseconds against seconds, so nothing ever expired.
    cutoff = age_cutoff_ms(NOW_S, 4.0)
    assert cutoff == NOW_MS - 4 * 86_400_000
    readings = [
        Reading("A", "1-0:1.8.0", NOW_MS - days * 86_400_000, 1.0, "kWh") for days in (5, 3)
    ]
    by_age, by_size = select_drops(readings, in_flight=0, max_readings=1000, age_from_ms=cutoff)
    assert by_age == readings[:1]
    assert by_size == []


def test_drop_count_never_touches_in_flight_readings() -> None:
    assert drop_count(older_than_cutoff=0, depth=100, pending=10, max_readings=50) == 10
    assert drop_count(older_than_cutoff=3, depth=40, pending=40, max_readings=50) == 3
    assert drop_count(older_than_cutoff=3, depth=60, pending=60, max_readings=50) == 10


def test_share_lease_is_work_conserving_and_checks_its_arguments() -> None:
    assert share_lease(1000, 0.5, live_available=10, backlog_available=10**6) == (10, 990)
    assert share_lease(1000, 0.5, live_available=10**6, backlog_available=10) == (990, 10)
    assert share_lease(1000, 0.25, live_available=10**6, backlog_available=10**6) == (250, 750)
    with pytest.raises(ValueError, match="live_share"):
        share_lease(10, 1.5, live_available=0, backlog_available=0)
    with pytest.raises(ValueError, match="max_readings"):
        share_lease(0, 0.5, live_available=0, backlog_available=0)
