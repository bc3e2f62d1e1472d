"""Errors of the ingestion's API; the tree lives in `cloud.core.exceptions`.

::

    CloudError
    └── InvalidInput
        └── InvalidWindow        a statistics window that is inverted or too long
"""

from __future__ import annotations

from cloud.core.exceptions import InvalidInput

__all__ = ["InvalidWindow"]


class InvalidWindow(InvalidInput):
    """A statistics window that is empty, inverted or longer than allowed."""
