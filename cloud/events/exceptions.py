"""Errors of the events' API; the tree lives in `cloud.core.exceptions`.

::

    CloudError
    └── InvalidInput
        └── InvalidEventWindow     `since` after `until`
"""

from __future__ import annotations

from cloud.core.exceptions import InvalidInput

__all__ = ["InvalidEventWindow"]


class InvalidEventWindow(InvalidInput):
    """An events filter whose `since` is after its `until`."""
