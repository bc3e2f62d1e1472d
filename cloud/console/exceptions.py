"""Errors of the console (a refused resolution note is the fleet's
`InvalidResolutionNote`, shared with the API). ::

CloudError
├── Conflict                      → 409
│   └── DeadLetterAlreadyResolved someone resolved it first; the first resolution stays
└── Forbidden                     → 403 (a friendly page on console routes)
    └── CsrfRejected              a state-changing request without the right CSRF token
"""

from __future__ import annotations

from datetime import datetime

from cloud.core.exceptions import Conflict, Forbidden

__all__ = ["CsrfRejected", "DeadLetterAlreadyResolved"]


class CsrfRejected(Forbidden):
    """A form or htmx request whose CSRF token is missing or does not match the session."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the form has expired or was not sent by this console ({reason})")
        self.reason = reason


class DeadLetterAlreadyResolved(Conflict):
    """The dead letter was resolved before this request (by another operator or the API)."""

    def __init__(self, dead_letter_id: int, resolved_at: datetime) -> None:
        super().__init__(
            f"dead letter {dead_letter_id} was already resolved at "
            f"{resolved_at:%Y-%m-%d %H:%M:%S} UTC; its first resolution stays"
        )
        self.dead_letter_id = dead_letter_id
        self.resolved_at = resolved_at
