"""Deterministic electrical physics of a simulated meter.

Power follows a daily load shape (household or commercial, weekday and
weekend), split over the phases with an imbalance, with noise; voltages,
currents, power factors and frequency follow from it; energy registers
integrate power exactly. Everything is a pure function of (seed, time): two
runs with the same seed agree, and the ground truth at any past moment can be
recomputed.

Strategy: power is constant within a one-minute bucket (its noise drawn from a
generator seeded by (seed, bucket)); energy at time t is the energy at the
start of t's day plus the prefix sum of that day's buckets, both cached, so a
read costs O(1) after the first read of a day.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

BUCKET_S = 60
BUCKETS_PER_DAY = 86_400 // BUCKET_S
SECONDS_PER_HOUR = 3600.0
DEMAND_PERIOD_S = 3600.0  # the demand registers' sliding window (Eastron's default)
# Per phase: voltage, current, active, apparent power, power factor, reactive power (OBIS C).
_PHASE_CODES = (
    (32, 31, 36, 29, 33, 23),
    (52, 51, 56, 49, 53, 43),
    (72, 71, 76, 69, 73, 63),
)


@dataclass(frozen=True)
class LoadShape:
    """Average active power by hour of day, as a fraction of `peak_w`."""

    name: str
    weekday: tuple[float, ...]
    weekend: tuple[float, ...]
    noise: float  # relative standard deviation per bucket

    def factor(self, epoch_s: float) -> float:
        day = int(epoch_s // 86_400)
        hour = (epoch_s % 86_400) / 3600.0
        # 1970-01-01 was a Thursday: day 0 → weekday index 3 (Monday = 0).
        profile = self.weekend if (day + 3) % 7 >= 5 else self.weekday
        low = int(hour) % 24
        high = (low + 1) % 24
        fraction = hour - int(hour)
        return profile[low] * (1 - fraction) + profile[high] * fraction


# A household: night base load, breakfast and evening peaks; later mornings at weekends.
HOUSEHOLD = LoadShape(
    "household",
    weekday=(0.15, 0.12, 0.11, 0.11, 0.12, 0.18, 0.45, 0.60, 0.40, 0.25, 0.22, 0.25,
             0.30, 0.25, 0.22, 0.25, 0.35, 0.60, 0.90, 1.00, 0.85, 0.60, 0.35, 0.20),
    weekend=(0.18, 0.14, 0.12, 0.11, 0.11, 0.12, 0.18, 0.30, 0.50, 0.60, 0.55, 0.55,
             0.60, 0.50, 0.45, 0.45, 0.50, 0.65, 0.90, 0.95, 0.80, 0.60, 0.40, 0.25),
    noise=0.12,
)  # fmt: skip
# A shop or office: working hours on weekdays, little at weekends.
COMMERCIAL = LoadShape(
    "commercial",
    weekday=(0.20, 0.20, 0.20, 0.20, 0.20, 0.25, 0.45, 0.75, 0.95, 1.00, 1.00, 0.98,
             0.95, 0.98, 1.00, 0.98, 0.95, 0.85, 0.60, 0.40, 0.30, 0.25, 0.22, 0.20),
    weekend=(0.20, 0.20, 0.20, 0.20, 0.20, 0.20, 0.22, 0.25, 0.30, 0.35, 0.35, 0.35,
             0.35, 0.35, 0.35, 0.33, 0.30, 0.28, 0.25, 0.22, 0.20, 0.20, 0.20, 0.20),
    noise=0.06,
)  # fmt: skip
SHAPES = {shape.name: shape for shape in (HOUSEHOLD, COMMERCIAL)}


@dataclass(frozen=True)
class MeterState:
    """What a meter measures at one moment, by OBIS code (profile units)."""

    at_s: float
    values: dict[str, float]


class MeterPhysics:
    """The electrical quantities of one metering point over time.

    Args:
        seed: makes this meter's noise its own and repeatable.
        shape: the load shape.
        phases: 1 or 3.
        peak_w: peak demand of the whole point.
        epoch_s: when the energy registers held `initial_import_kwh` (UTC s).
        initial_import_kwh: import register at `epoch_s`.
        pv_peak_w: rooftop PV peak (midday export when it exceeds the load).
        rollover_kwh: energy registers wrap to 0 here (None: never).
    """

    def __init__(
        self,
        *,
        seed: int,
        shape: LoadShape = HOUSEHOLD,
        phases: int = 3,
        peak_w: float = 6000.0,
        epoch_s: float = 0.0,
        initial_import_kwh: float = 1000.0,
        pv_peak_w: float = 0.0,
        rollover_kwh: float | None = None,
        nominal_voltage_v: float = 230.0,
    ) -> None:
        if phases not in (1, 3):
            raise ValueError("phases must be 1 or 3")
        self.seed = seed
        self.shape = shape
        self.phases = phases
        self.peak_w = peak_w
        self.installed_s = epoch_s  # the registers read their initial values here
        self.epoch_s = epoch_s - epoch_s % 86_400  # whole days: simpler caches
        self._install_offset: list[float] | None = None
        self.initial_import_kwh = initial_import_kwh
        self.pv_peak_w = pv_peak_w
        self.rollover_kwh = rollover_kwh
        self.nominal_voltage_v = nominal_voltage_v
        rng = random.Random(seed)
        # A fixed imbalance per meter: phase shares around 1/3 each.
        raw = [1.0 + rng.uniform(-0.25, 0.25) for _ in range(phases)]
        self.phase_shares = tuple(share / sum(raw) for share in raw)
        self.power_factor_base = rng.uniform(0.90, 0.98)
        self._day_start: dict[int, tuple[float, ...]] = {}
        self._bucket_cache = lru_cache(maxsize=8)(self._day_buckets)
        self._prefix_cache = lru_cache(maxsize=8)(self._day_prefix)

    # -- power ---------------------------------------------------------------

    def _bucket_phase_power_w(self, bucket: int) -> tuple[float, ...]:
        start_s = bucket * BUCKET_S
        noise, cloud = _unit_noise(self.seed, bucket)
        load = self.peak_w * self.shape.factor(start_s)
        load *= max(0.05, 1.0 + noise * self.shape.noise)
        solar = self.pv_peak_w * _solar_factor(start_s) * (0.85 + 0.15 * cloud)
        net = load - solar
        return tuple(net * share for share in self.phase_shares)

    def _day_buckets(self, day: int) -> tuple[tuple[float, ...], ...]:
        first = day * BUCKETS_PER_DAY
        return tuple(self._bucket_phase_power_w(first + i) for i in range(BUCKETS_PER_DAY))

    def phase_power_w(self, at_s: float) -> tuple[float, ...]:
        """Signed active power per phase (negative: export)."""
        bucket = int(at_s // BUCKET_S)
        day, index = divmod(bucket, BUCKETS_PER_DAY)
        return self._bucket_cache(day)[index]

    # -- energy --------------------------------------------------------------

    # Energy slots: import, export, import T1, import T2, export T1, export T2,
    # import per phase, export per phase, reactive import, reactive export.
    def _slot_count(self) -> int:
        return 8 + 2 * self.phases

    def _energy_over(
        self, powers: tuple[tuple[float, ...], ...], first_bucket: int, seconds: float
    ) -> list[float]:
        """Energy (kWh per slot) of consecutive buckets, each lasting `seconds`."""
        totals = [0.0] * self._slot_count()
        tan_phi = math.tan(math.acos(self.power_factor_base))
        hours = seconds / SECONDS_PER_HOUR
        for offset, per_phase in enumerate(powers):
            total_kwh = sum(per_phase) * hours / 1000
            # Tariff 1 (low) 23:00-07:00 UTC, tariff 2 (normal) otherwise.
            hour = ((first_bucket + offset) % BUCKETS_PER_DAY) * BUCKET_S / 3600
            tariff = 0 if hour >= 23 or hour < 7 else 1
            if total_kwh >= 0:
                totals[0] += total_kwh
                totals[2 + tariff] += total_kwh
                totals[-2] += total_kwh * tan_phi
            else:
                totals[1] -= total_kwh
                totals[4 + tariff] -= total_kwh
                totals[-1] -= total_kwh * tan_phi
            for phase, power_w in enumerate(per_phase):
                slot = 6 + phase if power_w >= 0 else 6 + self.phases + phase
                totals[slot] += abs(power_w) * hours / 1000
        return totals

    def _energy_at_day_start(self, day: int) -> tuple[float, ...]:
        first_day = int(self.epoch_s // 86_400)
        if day <= first_day:
            start = [0.0] * self._slot_count()
            # The initial reading splits 40/60 over the two tariffs.
            start[0] = self.initial_import_kwh
            start[2], start[3] = 0.4 * self.initial_import_kwh, 0.6 * self.initial_import_kwh
            for phase, share in enumerate(self.phase_shares):
                start[6 + phase] = share * self.initial_import_kwh
            return tuple(start)
        cached = self._day_start.get(day)
        if cached is not None:
            return cached
        known = max((d for d in self._day_start if d < day), default=first_day)
        energy = list(self._energy_at_day_start(known))
        for d in range(known, day):
            day_energy = self._prefix_cache(d)[-1]
            energy = [a + b for a, b in zip(energy, day_energy, strict=True)]
            self._day_start[d + 1] = tuple(energy)
        return self._day_start[day]

    def _day_prefix(self, day: int) -> tuple[tuple[float, ...], ...]:
        """Energy of the day's first n buckets, for n = 0..BUCKETS_PER_DAY."""
        first = day * BUCKETS_PER_DAY
        running = [0.0] * self._slot_count()
        prefix = [tuple(running)]
        for offset, powers in enumerate(self._bucket_cache(day)):
            step = self._energy_over((powers,), first + offset, BUCKET_S)
            running = [a + b for a, b in zip(running, step, strict=True)]
            prefix.append(tuple(running))
        return tuple(prefix)

    def energy_kwh(self, at_s: float) -> list[float]:
        """Cumulative energies at `at_s`, before rollover; the initial values
        at `installed_s` (caches count from the start of that day)."""
        if self._install_offset is None:
            at_day_start = self._energy_at_day_start(int(self.epoch_s // 86_400))
            at_install = self._energy_since_day_start(self.installed_s)
            self._install_offset = [a - b for a, b in zip(at_install, at_day_start, strict=True)]
        raw = self._energy_since_day_start(max(at_s, self.installed_s))
        return [a - b for a, b in zip(raw, self._install_offset, strict=True)]

    def _energy_since_day_start(self, at_s: float) -> list[float]:
        bucket = int(at_s // BUCKET_S)
        day, index = divmod(bucket, BUCKETS_PER_DAY)
        buckets = self._bucket_cache(day)
        energy = self._energy_at_day_start(day)
        done = self._prefix_cache(day)[index]
        partial = self._energy_over(buckets[index : index + 1], bucket, at_s - bucket * BUCKET_S)
        return [a + b + c for a, b, c in zip(energy, done, partial, strict=True)]

    # -- everything the meter shows ---------------------------------------

    def state(self, at_s: float) -> MeterState:
        """Every quantity at `at_s`, keyed by OBIS code (profile units)."""
        per_phase = self.phase_power_w(at_s)
        bucket = int(at_s // BUCKET_S)
        rng = random.Random((self.seed << 33) ^ bucket ^ 0x5A5A)
        values: dict[str, float] = {}
        apparent_total = reactive_total = current_total = 0.0
        for phase, power_w in enumerate(per_phase):
            voltage = self.nominal_voltage_v * (1 + rng.gauss(0, 0.01))
            power_factor = min(1.0, self.power_factor_base + rng.uniform(-0.02, 0.02))
            apparent = abs(power_w) / power_factor
            # The loads are inductive: the current lags and Q is positive.
            reactive = math.sqrt(max(apparent * apparent - power_w * power_w, 0.0))
            current = apparent / voltage
            apparent_total += apparent
            reactive_total += reactive
            current_total += current
            v_code, i_code, p_code, s_code, pf_code, q_code = _PHASE_CODES[phase]
            values[f"1-0:{v_code}.7.0"] = voltage
            values[f"1-0:{i_code}.7.0"] = current
            values[f"1-0:{p_code}.7.0"] = power_w
            values[f"1-0:{s_code}.7.0"] = apparent
            values[f"1-0:{pf_code}.7.0"] = power_factor
            values[f"1-0:{q_code}.7.0"] = reactive
            if phase == 0:  # angle of the L1 current behind the L1 voltage
                values["1-0:81.7.40"] = math.degrees(math.acos(power_factor))
        total_w = sum(per_phase)
        values["1-0:16.7.0"] = total_w
        values["1-0:1.7.0"] = max(total_w, 0.0)
        values["1-0:2.7.0"] = max(-total_w, 0.0)
        values["1-0:9.7.0"] = apparent_total
        values["1-0:3.7.0"] = reactive_total
        values["1-0:90.7.0"] = current_total
        values["1-0:13.7.0"] = abs(total_w) / apparent_total if apparent_total else 1.0
        values["1-0:14.7.0"] = 50.0 + rng.gauss(0, 0.02)
        energy = self.energy_kwh(at_s)
        self._add_energy(values, energy)
        self._add_demand(values, energy, at_s)
        return MeterState(at_s, values)

    def _add_demand(self, values: dict[str, float], energy: list[float], at_s: float) -> None:
        """Import and export demand: mean power over the last demand period,
        as the meter's sliding-window demand registers show it (W)."""
        before = self.energy_kwh(at_s - DEMAND_PERIOD_S)
        hours = DEMAND_PERIOD_S / SECONDS_PER_HOUR
        values["1-0:1.4.0"] = (energy[0] - before[0]) / hours * 1000
        values["1-0:2.4.0"] = (energy[1] - before[1]) / hours * 1000

    def _add_energy(self, values: dict[str, float], unwrapped: list[float]) -> None:
        energy = [self._wrap(e) for e in unwrapped]
        n = self.phases
        values["1-0:1.8.0"], values["1-0:2.8.0"] = energy[0], energy[1]
        values["1-0:1.8.1"], values["1-0:1.8.2"] = energy[2], energy[3]
        values["1-0:2.8.1"], values["1-0:2.8.2"] = energy[4], energy[5]
        values["1-0:15.8.0"] = self._wrap(energy[0] + energy[1])
        values["1-0:3.8.0"], values["1-0:4.8.0"] = energy[-2], energy[-1]
        for phase, (import_code, export_code) in enumerate(((21, 22), (41, 42), (61, 62))[:n]):
            values[f"1-0:{import_code}.8.0"] = energy[6 + phase]
            values[f"1-0:{export_code}.8.0"] = energy[6 + n + phase]

    def _wrap(self, energy_kwh: float) -> float:
        if self.rollover_kwh is None:
            return energy_kwh
        return energy_kwh % self.rollover_kwh


_MASK64 = (1 << 64) - 1


def _unit_noise(seed: int, bucket: int) -> tuple[float, float]:
    """(≈ N(0, 1), uniform 0..1) for one bucket: splitmix64 of (seed, bucket).

    A hash instead of a seeded `random.Random` per bucket: ten times cheaper,
    which matters when a meter's first read integrates months of buckets.
    """
    state = (seed * 0x9E3779B97F4A7C15 + bucket) & _MASK64
    words = []
    for _ in range(2):
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        words.append(z ^ (z >> 31))
    # Irwin-Hall: four 16-bit uniforms summed approximate a normal variate.
    first = words[0]
    total = sum((first >> shift) & 0xFFFF for shift in (0, 16, 32, 48)) / 65535.0
    return (total - 2.0) * 1.7320508, (words[1] & 0xFFFFFFFF) / 4294967295.0


def _solar_factor(epoch_s: float) -> float:
    """Clear-sky PV output 0..1: a half sine from 06:00 to 18:00 UTC."""
    hour = (epoch_s % 86_400) / 3600
    if not 6 <= hour <= 18:
        return 0.0
    return math.sin(math.pi * (hour - 6) / 12)
