"""Resolving a dead letter with its audit entry: the one path the console and the API share.

Strategy: `resolve_and_audit` checks the note, locks the letter's row
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite has one writer anyway),
marks it resolved with one conditional UPDATE (``… WHERE resolved_at IS
NULL``: on SQLite two requests may both have read it as open, and the write
decides) and, in the caller's transaction, appends the audit entry `DEAD_LETTER_RESOLVE_ACTION`
on target ``dead_letter:<id>`` with the note, reason code, gateway and topic.
The dead-letter table has no "who" or "note" columns: the console reads them
back from that entry (`cloud.console.read_models`), so every way of
resolving must write it, and must write it only once.

A letter that is already resolved is left alone, and nothing is audited:
the outcome says so (`ResolveOutcome.newly_resolved`), and each caller
answers in its own way — the console with a 409 (an operator should learn
that a colleague was first), the REST API with the first resolution (a
script that retries must not fail).

The note rules live here, once: at most `NOTE_MAX_CHARS` after trimming, no
control characters but tab and line breaks; blank is refused where a note
is required (the console's form) and means "no note" where it is optional
(the API).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from cloud.core.db import utc_now
from cloud.fleet.exceptions import DeadLetterNotFound, InvalidResolutionNote
from cloud.ingestion.models import DeadLetter
from cloud.users.audit import Actor, record_audit

__all__ = [
    "DEAD_LETTER_RESOLVE_ACTION",
    "NOTE_MAX_CHARS",
    "ResolveOutcome",
    "check_resolution_note",
    "dead_letter_audit_target",
    "resolve_and_audit",
]

logger = logging.getLogger(__name__)

DEAD_LETTER_RESOLVE_ACTION = "dead_letter.resolve"
NOTE_MAX_CHARS = 2000
# Kept in the audit details: enough to recognise the topic, bounded for hostile ones.
_TOPIC_KEPT_CHARS = 200
# Typed text has tabs and line breaks; any other control character is pasted binary.
_NOTE_CONTROLS_ALLOWED = frozenset("\t\n\r")


@dataclass(frozen=True)
class ResolveOutcome:
    """What `resolve_and_audit` did.

    Attributes:
        letter: the dead letter, resolved (now or before).
        newly_resolved: True if this call resolved it (and audited it); False
            if it was already resolved, which this call left as it was.
    """

    letter: DeadLetter
    newly_resolved: bool


def dead_letter_audit_target(dead_letter_id: int) -> str:
    """The audit log's name of a dead letter, ``dead_letter:12``."""
    return f"dead_letter:{dead_letter_id}"


def check_resolution_note(note: str | None, *, required: bool) -> str:
    """The note trimmed, or a refusal that names the rule it breaks.

    Args:
        note: the note as typed; None when none was given.
        required: True where a resolution must say why (the console's form);
            False where a missing or blank note is recorded as empty (the API).

    Returns:
        The trimmed note; ``""`` for no note where none is required.

    Raises:
        InvalidResolutionNote: blank where required, longer than
            `NOTE_MAX_CHARS`, or holding control characters.
    """
    trimmed = (note or "").strip()
    if not trimmed:
        if required:
            raise InvalidResolutionNote(
                "A note is required: say what was done about this dead letter "
                "(replayed, dismissed, fixed at the gateway) and why."
            )
        return ""
    if len(trimmed) > NOTE_MAX_CHARS:
        raise InvalidResolutionNote(
            f"The note is {len(trimmed)} characters long; at most {NOTE_MAX_CHARS} are kept."
        )
    if any(char < " " and char not in _NOTE_CONTROLS_ALLOWED for char in trimmed):
        raise InvalidResolutionNote("The note contains control characters: type plain text.")
    return trimmed


def resolve_and_audit(
    *,
    session: Session,
    dead_letter_id: int,
    actor: Actor,
    note: str | None,
    note_required: bool,
    at: datetime | None = None,
) -> ResolveOutcome:
    """Resolve a dead letter and audit who and why, in the caller's transaction.

    Args:
        session: the unit of work's session; the caller commits.
        dead_letter_id: the letter.
        actor: who resolves it, from the request's principal.
        note: what was done and why; None when none was given.
        note_required: refuse a missing or blank note (see `check_resolution_note`).
        at: the resolution time (default now, UTC).

    Returns:
        The letter and whether this call resolved it. An already resolved
        letter is returned unchanged, with no second audit entry.

    Raises:
        InvalidResolutionNote: the note breaks a rule (checked before anything is read).
        DeadLetterNotFound: no such dead letter.
    """
    checked = check_resolution_note(note, required=note_required)
    letter = session.get(DeadLetter, dead_letter_id, with_for_update=True)
    if letter is None:
        raise DeadLetterNotFound(dead_letter_id)
    if letter.resolved_at is not None:
        return ResolveOutcome(letter=letter, newly_resolved=False)
    when = at or utc_now()
    # The write itself decides who resolves: SQLite ignores FOR UPDATE, so two
    # requests can both have read the letter as open; only one UPDATE matches.
    claimed = session.execute(
        update(DeadLetter)
        .where(DeadLetter.id == dead_letter_id, DeadLetter.resolved_at.is_(None))
        .values(resolved_at=when)
        .execution_options(synchronize_session=False)
    )
    session.refresh(letter)
    if claimed.rowcount == 0:
        return ResolveOutcome(letter=letter, newly_resolved=False)
    resolved = letter
    record_audit(
        session=session,
        actor=actor,
        action=DEAD_LETTER_RESOLVE_ACTION,
        target=dead_letter_audit_target(dead_letter_id),
        details={
            "note": checked,
            "reason_code": resolved.reason_code,
            "gateway_id": resolved.gateway_id,
            "topic": resolved.topic[:_TOPIC_KEPT_CHARS],
        },
        at=when,
    )
    logger.info("dead letter %s resolved by %s", dead_letter_id, actor.subject)
    return ResolveOutcome(letter=resolved, newly_resolved=True)
