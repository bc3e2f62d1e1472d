"""Validation of uplink messages: pure functions, no I/O, no database.

Strategy: the worker (cloud.ingestion.worker) fetches what the rules need
from the operational database (the gateway row, the meters ever installed on
it) and hands it to these functions with the decoded batch; they answer with
a `Refusal` (the whole message goes to the dead-letter store) or a
`Screening` (which readings to store and which to drop). docs/ingestion.md
states the rules and the reason codes.

Invariants:

- any bytes give a `Batch` or a `Refusal`, never an exception
  (`decode_payload`);
- a batch is refused whole when its sender is wrong (unknown, decommissioned
  or another gateway's id) or when any reading names a meter that was not
  installed on that gateway at the reading's time: a gateway reporting
  foreign meters is misconfigured, and storing part of it would hide that;
- single readings with a timestamp outside the window or a value outside
  the physical range of its quantity are dropped; the rest is stored.

Speed: the screening runs for every reading the cloud receives, so it works
on the batch's columns rather than on reading objects. What depends on the
OBIS code and unit (the range, the SI scale) is looked up once per
(code, unit) pair of the batch; what holds for a whole batch is checked with
one C-level pass over a column (min/max of the timestamps, the sum of the
values is finite only if every value is), and only a batch that fails such a
check is looked at reading by reading.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from cloud.ingestion.models import DeadLetterReason
from fastcodec.exceptions import ChecksumError, CodecError
from fastcodec.uplink import Batch, decode_batch

__all__ = [
    "TOPIC_KINDS",
    "Installation",
    "Refusal",
    "Screening",
    "ValidationRules",
    "check_gateway",
    "decode_payload",
    "meters_not_on_gateway",
    "parse_topic",
    "physical_range",
    "screen_readings",
    "select_readings",
    "value_in_range",
]

TOPIC_KINDS = ("readings", "events", "status")
_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ValidationRules:
    """The configurable limits of the validation.

    Attributes:
        max_payload_bytes: a larger message is refused as ``too_large``
            before it is decoded.
        max_age: readings older than ``now - max_age`` are dropped.
        max_ahead: readings newer than ``now + max_ahead`` are dropped.
    """

    max_payload_bytes: int = 4 * _MIB
    max_age: timedelta = timedelta(days=400)
    max_ahead: timedelta = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a whole message goes to the dead-letter store.

    Attributes:
        reason_code: a `DeadLetterReason` value.
        reason: a sentence for the operator.
    """

    reason_code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Installation:
    """One installation of a meter on the gateway, in ms since the epoch.

    Attributes:
        installed_at_ms: inclusive.
        removed_at_ms: exclusive; None while installed.
    """

    installed_at_ms: int
    removed_at_ms: int | None = None

    def covers(self, timestamp_ms: int) -> bool:
        """True if the meter was installed at `timestamp_ms`."""
        return self.installed_at_ms <= timestamp_ms and (
            self.removed_at_ms is None or timestamp_ms < self.removed_at_ms
        )


@dataclass(frozen=True, slots=True)
class Screening:
    """Which readings of a batch are stored and which are dropped (by index).

    Attributes:
        valid: indices of the readings to store.
        out_of_window: timestamp outside the window.
        out_of_range: value not finite or outside its quantity's range.
    """

    valid: list[int] = field(default_factory=list)
    out_of_window: list[int] = field(default_factory=list)
    out_of_range: list[int] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        """How many readings are dropped."""
        return len(self.out_of_window) + len(self.out_of_range)


def parse_topic(topic: str) -> tuple[str, str] | None:
    """``vs/v1/{gateway}/{kind}`` → (gateway, kind) for the kinds the worker reads.

    Returns:
        None for any other topic (commands, cloud events, a malformed one).
    """
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "vs" or parts[1] != "v1" or not parts[2]:
        return None
    if parts[3] not in TOPIC_KINDS:
        return None
    return parts[2], parts[3]


def decode_payload(payload: bytes, rules: ValidationRules) -> Batch | Refusal:
    """Decode a readings message, or say why it cannot be.

    Returns:
        The batch, or a `Refusal` with ``too_large``, ``bad_checksum`` or
        ``undecodable``.
    """
    if len(payload) > rules.max_payload_bytes:
        return Refusal(
            DeadLetterReason.TOO_LARGE,
            f"{len(payload)} bytes, more than the limit of {rules.max_payload_bytes}",
        )
    try:
        return decode_batch(payload)
    except ChecksumError as error:
        return Refusal(DeadLetterReason.BAD_CHECKSUM, f"CRC mismatch: {error}")
    except CodecError as error:
        return Refusal(DeadLetterReason.UNDECODABLE, f"not an uplink batch: {error}")


def check_gateway(
    *, topic_gateway: str, batch_gateway: str | None, known: bool, decommissioned: bool
) -> Refusal | None:
    """The sender checks: registered, not decommissioned, same id in topic and batch.

    Args:
        topic_gateway: the id in the topic (the broker ACL vouches for it).
        batch_gateway: the id inside the batch (None for JSON messages).
        known: the topic's gateway is registered.
        decommissioned: it is decommissioned.

    Returns:
        A ``unknown_gateway`` refusal, or None when the sender is fine.
    """
    if not known:
        return Refusal(
            DeadLetterReason.UNKNOWN_GATEWAY, f"gateway {topic_gateway!r} not registered"
        )
    if decommissioned:
        return Refusal(
            DeadLetterReason.UNKNOWN_GATEWAY, f"gateway {topic_gateway!r} is decommissioned"
        )
    if batch_gateway is not None and batch_gateway != topic_gateway:
        return Refusal(
            DeadLetterReason.UNKNOWN_GATEWAY,
            f"batch says gateway {batch_gateway!r}, topic says {topic_gateway!r}",
        )
    return None


def meters_not_on_gateway(
    batch: Batch, installations: Mapping[str, Sequence[Installation]]
) -> list[str]:
    """The meters of the batch with a reading taken while not installed on the gateway.

    Args:
        batch: the decoded batch.
        installations: the gateway's installations (past and present) by serial.

    Returns:
        The offending serials, sorted; empty when every reading is fine.
    """
    timestamps_ms = batch.timestamps_ms
    if not len(timestamps_ms):
        return []
    # One installation covering the batch's whole time span clears a meter for all
    # its readings: the usual case, decided without looking at a single reading.
    first_ms, last_ms = min(timestamps_ms), max(timestamps_ms)
    doubtful = {
        index
        for index, serial in enumerate(batch.meters)
        if not any(
            spell.covers(first_ms) and spell.covers(last_ms)
            for spell in installations.get(serial, ())
        )
    }
    if not doubtful:
        return []
    offending: set[str] = set()
    meters = batch.meters
    for meter_index, timestamp_ms in zip(batch.meter_index, timestamps_ms, strict=True):
        if meter_index not in doubtful:
            continue
        serial = meters[meter_index]
        if serial in offending:
            continue
        if not any(spell.covers(timestamp_ms) for spell in installations.get(serial, ())):
            offending.add(serial)
    return sorted(offending)


# --- physical ranges by OBIS ---------------------------------------------------

_PREFIX = {"": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}
_POWER_D = frozenset({2, 3, 4, 5, 6, 7, 14, 15, 16, 24, 25, 26, 27})
_ENERGY_D = frozenset({8, 9, 10, 29})


def physical_range(obis: Sequence[int]) -> tuple[float, float, tuple[str, ...]] | None:
    """The plausible range of an electricity quantity, in its base unit.

    Args:
        obis: the six value groups A..F.

    Returns:
        (low, high, base units the range is in), or None when the code is
        not one we know a range for (only finiteness is checked then).
        Phase quantities (C = 21..80) map to their totals (C = 1..20).
    """
    a, c, d = obis[0], obis[2], obis[3]
    if a != 1 or not 1 <= c <= 80:
        return None
    quantity = c if c <= 20 else (c - 1) % 20 + 1
    if quantity == 12:
        return 0.0, 1000.0, ("V",)
    if quantity == 11:
        return 0.0, 10_000.0, ("A",)
    if quantity == 13:
        return -1.0, 1.0, ("",)
    if quantity == 14:
        return 40.0, 70.0, ("Hz",)
    if 1 <= quantity <= 10 or quantity in (15, 16):
        if d in _ENERGY_D:
            return 0.0, math.inf, ("Wh", "varh", "VAh")
        if d in _POWER_D:
            return -10e6, 10e6, ("W", "var", "VA")
    return None


def _scale(unit: str, bases: tuple[str, ...]) -> float:
    # "kWh" with base "Wh" → 1000; a unit we do not recognise is taken as the base.
    for base in bases:
        if base and unit.endswith(base):
            prefix = unit[: len(unit) - len(base)]
            if prefix in _PREFIX:
                return _PREFIX[prefix]
    return 1.0


def value_in_range(obis: Sequence[int], value: float, unit: str) -> bool:
    """True if the value is finite and within its quantity's physical range.

    Args:
        obis: the six value groups.
        value: the value as sent.
        unit: its unit as sent ("kWh", "V", …); SI prefixes m, k, M, G are
            understood.
    """
    if not math.isfinite(value):
        return False
    known = physical_range(obis)
    if known is None:
        return True
    low, high, bases = known
    scaled = value * _scale(unit, bases)
    return low <= scaled <= high


def _limits(obis: Sequence[int], unit: str) -> tuple[float, float, float]:
    """(scale, low, high): a finite value is in range when low <= value * scale <= high."""
    known = physical_range(obis)
    if known is None:
        return 1.0, -math.inf, math.inf
    low, high, bases = known
    return _scale(unit, bases), low, high


def screen_readings(batch: Batch, *, now_ms: int, rules: ValidationRules) -> Screening:
    """Sort the readings of a batch into stored and dropped.

    Args:
        batch: the decoded batch (sender and meters already checked).
        now_ms: the worker's clock, ms since the epoch.
        rules: the window.

    Returns:
        The screening; a reading out of the window is not range-checked.
    """
    oldest = now_ms - rules.max_age // timedelta(milliseconds=1)
    newest = now_ms + rules.max_ahead // timedelta(milliseconds=1)
    timestamps_ms, values = batch.timestamps_ms, batch.values
    count = len(values)
    if not count:
        return Screening()
    out_of_window: list[int] = []
    if not (oldest <= min(timestamps_ms) and max(timestamps_ms) <= newest):
        out_of_window = [i for i, at in enumerate(timestamps_ms) if not oldest <= at <= newest]
    codes, units = batch.obis_codes, batch.units
    keys = list(zip(batch.obis_index, batch.unit_index, strict=True))
    limits = {key: _limits(codes[key[0]], units[key[1]]) for key in set(keys)}
    # NaN fails every comparison below; ±inf only fails where a range is bounded,
    # so the finiteness of each value is checked too when the batch holds any.
    # (A sum of finite values that overflows only costs the reading-by-reading check.)
    check_finite = not math.isfinite(sum(values))
    isfinite = math.isfinite
    out_of_range = [
        i
        for i, (value, key) in enumerate(zip(values, keys, strict=True))
        if not limits[key][1] <= value * limits[key][0] <= limits[key][2]
        or (check_finite and not isfinite(value))
    ]
    if out_of_window and out_of_range:
        late = set(out_of_window)
        out_of_range = [i for i in out_of_range if i not in late]
    if not out_of_window and not out_of_range:
        return Screening(valid=list(range(count)))
    dropped = set(out_of_window).union(out_of_range)
    valid = [i for i in range(count) if i not in dropped]
    return Screening(valid=valid, out_of_window=out_of_window, out_of_range=out_of_range)


def select_readings(batch: Batch, indices: Iterable[int]) -> Batch:
    """A batch with only the readings at `indices` (same header and dictionaries)."""
    chosen = list(indices)
    return Batch(
        batch.gateway_id,
        batch.sequence,
        batch.created_at_ms,
        batch.meters,
        batch.obis_codes,
        batch.units,
        [batch.meter_index[i] for i in chosen],
        [batch.obis_index[i] for i in chosen],
        [batch.unit_index[i] for i in chosen],
        [batch.timestamps_ms[i] for i in chosen],
        [batch.values[i] for i in chosen],
        [batch.quality[i] for i in chosen],
    )
