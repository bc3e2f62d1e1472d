"""Errors of the console. ::

CloudError
└── Forbidden                     → 403 (a friendly page on console routes)
    └── CsrfRejected              a state-changing request without the right CSRF token
"""

from __future__ import annotations

from cloud.core.exceptions import Forbidden

__all__ = ["CsrfRejected"]


class CsrfRejected(Forbidden):
    """A form or htmx request whose CSRF token is missing or does not match the session."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the form has expired or was not sent by this console ({reason})")
        self.reason = reason
