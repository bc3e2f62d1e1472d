"""The simulated meters' physics: deterministic, consistent, realistic."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.physics import BUCKET_S, COMMERCIAL, HOUSEHOLD, MeterPhysics

MONDAY = 1_767_571_200.0  # 2026-01-05 00:00 UTC
SATURDAY = MONDAY + 5 * 86_400


def test_same_seed_same_values_other_seed_other_values() -> None:
    a, b, c = (MeterPhysics(seed=s, epoch_s=MONDAY) for s in (1, 1, 2))
    at = MONDAY + 3 * 86_400 + 12_345
    assert a.state(at).values == b.state(at).values
    assert a.state(at).values != c.state(at).values


# One meter for the property test: its caches make each example cheap.
PV_METER = MeterPhysics(seed=3, epoch_s=MONDAY, pv_peak_w=5000)


@given(offset_s=st.floats(0, 3 * 86_400), step_s=st.floats(0, 86_400))
@settings(max_examples=100, deadline=None)
def test_energy_registers_never_go_backwards(offset_s: float, step_s: float) -> None:
    meter = PV_METER
    before = meter.energy_kwh(MONDAY + offset_s)
    after = meter.energy_kwh(MONDAY + offset_s + step_s)
    assert all(b >= a - 1e-9 for a, b in zip(before, after, strict=True))


def test_energy_integrates_power_over_an_hour() -> None:
    meter = MeterPhysics(seed=5, epoch_s=MONDAY)
    start = MONDAY + 86_400 + 10 * 3600
    integrated_kwh = sum(
        max(sum(meter.phase_power_w(start + i * BUCKET_S)), 0) * BUCKET_S / 3_600_000
        for i in range(3600 // BUCKET_S)
    )
    delta = meter.energy_kwh(start + 3600)[0] - meter.energy_kwh(start)[0]
    assert delta == pytest.approx(integrated_kwh, rel=1e-9)


def test_tariff_registers_add_up_to_the_total() -> None:
    meter = MeterPhysics(seed=8, epoch_s=MONDAY, pv_peak_w=4000)
    values = meter.state(MONDAY + 2.5 * 86_400).values
    assert values["1-0:1.8.1"] + values["1-0:1.8.2"] == pytest.approx(values["1-0:1.8.0"])
    assert values["1-0:2.8.1"] + values["1-0:2.8.2"] == pytest.approx(values["1-0:2.8.0"])


def test_phase_powers_add_up_and_phases_are_imbalanced() -> None:
    meter = MeterPhysics(seed=9, epoch_s=MONDAY)
    values = meter.state(MONDAY + 19 * 3600).values
    phases = [values["1-0:36.7.0"], values["1-0:56.7.0"], values["1-0:76.7.0"]]
    assert sum(phases) == pytest.approx(values["1-0:16.7.0"])
    assert len({round(p) for p in phases}) == 3


def test_household_peaks_in_the_evening_commercial_at_midday() -> None:
    def mean_power(shape: object, hour: int) -> float:
        meters = [MeterPhysics(seed=s, shape=shape, epoch_s=MONDAY) for s in range(20)]  # type: ignore[arg-type]
        return sum(sum(m.phase_power_w(MONDAY + hour * 3600)) for m in meters) / len(meters)

    assert mean_power(HOUSEHOLD, 19) > 2 * mean_power(HOUSEHOLD, 11)
    assert mean_power(COMMERCIAL, 11) > 2 * mean_power(COMMERCIAL, 19)


def test_commercial_load_drops_at_the_weekend() -> None:
    meters = [MeterPhysics(seed=s, shape=COMMERCIAL, epoch_s=MONDAY) for s in range(10)]
    weekday = sum(sum(m.phase_power_w(MONDAY + 11 * 3600)) for m in meters)
    weekend = sum(sum(m.phase_power_w(SATURDAY + 11 * 3600)) for m in meters)
    assert weekend < 0.5 * weekday


def test_pv_exports_at_midday() -> None:
    meter = MeterPhysics(seed=4, epoch_s=MONDAY, peak_w=2000, pv_peak_w=8000)
    assert sum(meter.phase_power_w(MONDAY + 12 * 3600)) < 0
    assert meter.energy_kwh(MONDAY + 86_400)[1] > 0  # the export register moved


def test_counter_rolls_over() -> None:
    meter = MeterPhysics(seed=2, epoch_s=MONDAY, initial_import_kwh=99_990, rollover_kwh=100_000)
    assert meter.state(MONDAY).values["1-0:1.8.0"] == pytest.approx(99_990)
    later = meter.state(MONDAY + 3 * 86_400).values["1-0:1.8.0"]
    assert 0 <= later < 1_000  # wrapped past 99 999.9


def test_single_phase_meter_has_one_phase() -> None:
    values = MeterPhysics(seed=1, phases=1, epoch_s=MONDAY).state(MONDAY + 3600).values
    assert "1-0:32.7.0" in values and "1-0:52.7.0" not in values


def test_a_meter_installed_mid_day_starts_at_its_initial_reading() -> None:
    installed = MONDAY + 13.5 * 3600
    meter = MeterPhysics(seed=6, epoch_s=installed, initial_import_kwh=0.0)
    assert meter.energy_kwh(installed)[0] == pytest.approx(0.0, abs=1e-12)
    assert meter.energy_kwh(installed - 3600)[0] == pytest.approx(0.0, abs=1e-12)
    assert 0 < meter.energy_kwh(installed + 3600)[0] < 20


def test_reactive_power_closes_the_power_triangle_per_phase() -> None:
    values = MeterPhysics(seed=12, epoch_s=MONDAY).state(MONDAY + 19 * 3600).values
    for p, q, s in ((36, 23, 29), (56, 43, 49), (76, 63, 69)):
        active, reactive, apparent = (values[f"1-0:{c}.7.0"] for c in (p, q, s))
        assert reactive > 0  # lagging: the loads are inductive
        assert active**2 + reactive**2 == pytest.approx(apparent**2)
    assert values["1-0:3.7.0"] == pytest.approx(
        values["1-0:23.7.0"] + values["1-0:43.7.0"] + values["1-0:63.7.0"]
    )
    assert values["1-0:90.7.0"] == pytest.approx(
        values["1-0:31.7.0"] + values["1-0:51.7.0"] + values["1-0:71.7.0"]
    )
    assert math.cos(math.radians(values["1-0:81.7.40"])) == pytest.approx(values["1-0:33.7.0"])


def test_demand_is_the_mean_power_of_the_last_hour() -> None:
    meter = MeterPhysics(seed=13, epoch_s=MONDAY, pv_peak_w=5000)
    at = MONDAY + 1.5 * 86_400 + 12 * 3600  # midday: both import and export moved
    values = meter.state(at).values
    hour_ago, now = meter.energy_kwh(at - 3600), meter.energy_kwh(at)
    assert values["1-0:1.4.0"] == pytest.approx((now[0] - hour_ago[0]) * 1000)
    assert values["1-0:2.4.0"] == pytest.approx((now[1] - hour_ago[1]) * 1000)
    mean_w = sum(sum(meter.phase_power_w(at - 3600 + (i + 0.5) * 60)) for i in range(60)) / 60
    assert values["1-0:1.4.0"] - values["1-0:2.4.0"] == pytest.approx(mean_w, rel=1e-6)
