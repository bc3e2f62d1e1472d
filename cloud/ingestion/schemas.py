"""Read models of the ingestion for the API: counters over a window, dead-letter lists.

A dead letter's full form (with its payload, base64 in JSON) is
`cloud.fleet.schemas.DeadLetterRead`; lists carry `DeadLetterSummary`, without
the payload (up to 1 MiB each), which one fetches by id. `DeadLetterResolve`
is the optional body of a resolve: its note's rules are checked by the
service (`cloud.fleet.dead_letter_resolution`), so the API and the console
refuse the same notes with the same words.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cloud.fleet.schemas import DeadLetterRead, IngestionStatisticsRead

__all__ = [
    "DeadLetterRead",
    "DeadLetterResolve",
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


# A bound on what is parsed at all; the note's real limit (2,000 characters after
# trimming) is the service's, whose refusal names it.
NOTE_BODY_MAX_CHARS = 20_000


class DeadLetterResolve(BaseModel):
    """The body of a resolve: what was done about the letter and why (optional)."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(
        default=None,
        max_length=NOTE_BODY_MAX_CHARS,
        description="What was done (replayed, dismissed, fixed at the gateway) and why; "
        "at most 2,000 characters after trimming, plain text (tabs and line breaks "
        "allowed). Omitted, null or blank: resolved with an empty note.",
        examples=["Replayed after the gateway's clock was fixed."],
    )


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
