"""Read models of the ingestion for the API: counters over a window, dead-letter lists.

A dead letter's full form (with its payload, base64 in JSON) is
`cloud.fleet.schemas.DeadLetterRead`; lists carry `DeadLetterSummary`, without
the payload (up to 1 MiB each), which one fetches by id.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict

from cloud.fleet.schemas import DeadLetterRead, IngestionStatisticsRead

__all__ = [
    "DeadLetterRead",
    "DeadLetterSummary",
    "IngestionCounters",
    "IngestionStatisticsWindow",
]


class DeadLetterSummary(BaseModel):
    """A dead letter in a list: everything but the payload."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    received_at: AwareDatetime
    topic: str
    gateway_id: str | None
    payload_size_bytes: int
    reason_code: str
    reason: str
    resolved_at: AwareDatetime | None


class IngestionCounters(BaseModel):
    """Sums of the per-minute counters."""

    readings_accepted: int = 0
    readings_rejected: int = 0
    batches: int = 0
    sequence_gaps: int = 0
    duplicates: int = 0


class IngestionStatisticsWindow(BaseModel):
    """Per-gateway, per-minute ingestion counters in ``[since, until)``, one page of them,
    and the totals over the whole window (every page)."""

    since: AwareDatetime
    until: AwareDatetime
    gateway_id: str | None
    totals: IngestionCounters
    items: list[IngestionStatisticsRead]
    limit: int
    offset: int
    next_offset: int | None
