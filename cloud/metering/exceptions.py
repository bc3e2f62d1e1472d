"""Errors of the metering domain; the tree lives in `cloud.core.exceptions`.

::

    CloudError
    └── InvalidInput
        ├── InvalidObis          not an OBIS code (IEC 62056-61 text form)
        └── TooManyPoints        a query that would return more points than allowed
"""

from __future__ import annotations

from cloud.core.exceptions import InvalidInput

__all__ = ["InvalidObis", "TooManyPoints"]


class InvalidObis(InvalidInput):
    """The text is not an OBIS code."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r} is not an OBIS code (e.g. 1-0:1.8.0): {reason}")
        self.text = text


class TooManyPoints(InvalidInput):
    """The query asks for more points than one answer may carry."""

    def __init__(self, points: int, limit: int) -> None:
        super().__init__(
            f"the query would return {points} points, more than {limit}: "
            "narrow the time range or use a coarser resolution"
        )
        self.points = points
        self.limit = limit
