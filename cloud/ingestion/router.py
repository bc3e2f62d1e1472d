"""REST routes of the ingestion: per-minute statistics and the dead-letter store.

Mounted under ``/api/v1``. Statistics are read over a bounded window (at most
`MAX_STATISTICS_WINDOW`), paged, with the totals of the whole window; dead
letters are listed without their payload and fetched one by one with it.
Resolving goes through `cloud.fleet.dead_letter_resolution`, the service the
console uses too, so the caller and the note are audited either way; unlike
the console (409), a second resolve here answers the first resolution, so
scripts may retry. Domain errors become problem+json in `cloud.core.problems`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import AwareDatetime

from cloud.core.authz import Principal, require
from cloud.core.db import unit_of_work, utc_now
from cloud.core.deps import DbSession, JsonBody, Sessions
from cloud.core.pagination import Page, PagingDep
from cloud.core.problems import ProblemResponses
from cloud.fleet import dead_letter_resolution
from cloud.fleet.schemas import IngestionStatisticsRead
from cloud.ingestion import queries
from cloud.ingestion.exceptions import InvalidWindow
from cloud.ingestion.schemas import (
    DeadLetterRead,
    DeadLetterResolve,
    DeadLetterSummary,
    IngestionCounters,
    IngestionStatisticsWindow,
)
from cloud.users.audit import Actor

__all__ = ["DEFAULT_STATISTICS_WINDOW", "MAX_STATISTICS_WINDOW", "TAGS", "router"]

TAGS = [
    {
        "name": "ingestion",
        "description": "What the ingestion workers did, per gateway and minute: readings "
        "accepted and rejected, batches, sequence gaps, duplicates.",
    },
    {
        "name": "dead letters",
        "description": "Messages the ingestion refused, kept byte for byte with the reason; "
        "an operator inspects them and marks them resolved.",
    },
]

DEFAULT_STATISTICS_WINDOW = timedelta(hours=1)
MAX_STATISTICS_WINDOW = timedelta(days=7)

router = APIRouter(responses=ProblemResponses)

OptionalTime = Annotated[
    AwareDatetime | None, Query(description="ISO 8601 with a time zone, e.g. 2024-03-01T00:00Z.")
]


@router.get(
    "/ingestion/statistics",
    tags=["ingestion"],
    summary="Ingestion counters per gateway and minute",
    response_model=IngestionStatisticsWindow,
    dependencies=[require("ingestion:read")],
)
def ingestion_statistics(
    session: DbSession,
    paging: PagingDep,
    gateway_id: Annotated[
        str | None, Query(max_length=64, description="Only this gateway.")
    ] = None,
    since: OptionalTime = None,
    until: OptionalTime = None,
) -> IngestionStatisticsWindow:
    """Per-minute counters with ``since <= minute < until`` (default: the last hour;
    at most 7 days), oldest first, and their totals over the whole window."""
    until = until or utc_now()
    since = since or until - DEFAULT_STATISTICS_WINDOW
    if since >= until:
        raise InvalidWindow("since must be before until")
    if until - since > MAX_STATISTICS_WINDOW:
        raise InvalidWindow(f"the window is longer than {MAX_STATISTICS_WINDOW.days} days")
    rows = queries.list_statistics(
        session=session,
        since=since,
        until=until,
        gateway_id=gateway_id,
        limit=paging.fetch(),
        offset=paging.offset,
    )
    items, next_offset = paging.page(rows)
    totals = queries.ingestion_totals(
        session=session, since=since, until=until, gateway_id=gateway_id
    )
    return IngestionStatisticsWindow(
        since=since,
        until=until,
        gateway_id=gateway_id,
        totals=IngestionCounters(**totals),
        items=[IngestionStatisticsRead.model_validate(row) for row in items],
        limit=paging.limit,
        offset=paging.offset,
        next_offset=next_offset,
    )


@router.get(
    "/dead-letters",
    tags=["dead letters"],
    summary="List dead letters",
    response_model=Page[DeadLetterSummary],
    dependencies=[require("deadletters:read")],
)
def list_dead_letters(
    session: DbSession,
    paging: PagingDep,
    gateway_id: Annotated[str | None, Query(max_length=64)] = None,
    reason_code: Annotated[
        str | None, Query(max_length=32, description="e.g. bad_checksum, unknown_gateway.")
    ] = None,
    unresolved_only: Annotated[bool, Query()] = False,
    since: OptionalTime = None,
    until: OptionalTime = None,
) -> Page[DeadLetterSummary]:
    """Dead letters matching every filter, newest first, without their payload."""
    rows = queries.list_dead_letters(
        session=session,
        limit=paging.fetch(),
        offset=paging.offset,
        gateway_id=gateway_id,
        reason_code=reason_code,
        unresolved_only=unresolved_only,
        since=since,
        until=until,
    )
    return paging.answer(rows, DeadLetterSummary.model_validate)


DeadLetterId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The dead letter's id.")]


@router.get(
    "/dead-letters/{dead_letter_id}",
    tags=["dead letters"],
    summary="Get a dead letter with its payload",
    response_model=DeadLetterRead,
    dependencies=[require("deadletters:read")],
)
def get_dead_letter(dead_letter_id: DeadLetterId, session: DbSession) -> DeadLetterRead:
    """One dead letter; ``payload`` is the raw message (URL-safe base64), or its first
    MiB when it was larger (``payload_size_bytes`` is the size received)."""
    letter = queries.get_dead_letter(session=session, dead_letter_id=dead_letter_id)
    return DeadLetterRead.model_validate(letter)


_actor = Actor.of_request  # who acts, for the audit log


@router.post(
    "/dead-letters/{dead_letter_id}/resolve",
    tags=["dead letters"],
    summary="Mark a dead letter resolved",
    response_model=DeadLetterRead,
    dependencies=[JsonBody],
)
def resolve_dead_letter(
    dead_letter_id: DeadLetterId,
    request: Request,
    sessions: Sessions,
    principal: Annotated[Principal, require("deadletters:resolve")],
    body: DeadLetterResolve | None = None,
) -> DeadLetterRead:
    """Mark it handled (replayed or dismissed), with an optional ``note`` saying what was
    done and why; the caller and the note go to the audit log (``dead_letter.resolve``).
    Resolving again answers 200 with the first resolution and changes nothing, so a
    script may retry. A note that breaks a rule (over 2,000 characters, control
    characters) is a 422 that names the rule."""
    with unit_of_work(sessions) as session:
        outcome = dead_letter_resolution.resolve_and_audit(
            session=session,
            dead_letter_id=dead_letter_id,
            actor=_actor(request, principal),
            note=body.note if body else None,
            note_required=False,
        )
        return DeadLetterRead.model_validate(outcome.letter)
