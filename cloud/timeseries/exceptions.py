"""Errors of the time-series stores; the cloud's root is `cloud.core.exceptions`.

Every store error derives from `TimeSeriesError` *and* from the cloud
category a router maps to an HTTP status, so callers can catch either::

    CloudError
    ├── TimeSeriesError                    cloud.timeseries: root of the store's errors
    │   ├── StoreUnavailable    (+ DatabaseError)  unreachable, timeouts, 5xx/429 after the
    │   │                                          bounded retries: retry later
    │   ├── StoreAuthError      (+ DatabaseError)  401/403: wrong user, password or token
    │   ├── StoreQueryError     (+ DatabaseError)  the server refused a query or answered
    │   │                                          something we cannot read
    │   ├── PointsRejected      (+ InvalidInput)   a 4xx on write or a reading line protocol
    │   │                                          cannot carry: not retried, dead-letter it
    │   └── InvalidQuery        (+ InvalidInput)   unknown resolution/aggregate, start > end
    └── InvalidInput
        └── NaiveTimestamp                 cloud.core: a datetime without a time zone

`StoreUnavailable` is the one to retry (later, with the batch still in the
MQTT session or the dead-letter store); `PointsRejected` will fail the same
way every time.
"""

from __future__ import annotations

from cloud.core.exceptions import CloudError, DatabaseError, InvalidInput

__all__ = [
    "InvalidQuery",
    "PointsRejected",
    "StoreAuthError",
    "StoreQueryError",
    "StoreUnavailable",
    "TimeSeriesError",
]


class TimeSeriesError(CloudError):
    """Root of the time-series stores' errors."""


class StoreUnavailable(TimeSeriesError, DatabaseError):
    """The store cannot be reached or keeps failing (after the bounded retries).

    Attributes:
        attempts: how many requests were tried.
    """

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class StoreAuthError(TimeSeriesError, DatabaseError):
    """The store refused our credentials (HTTP 401/403); retrying cannot help."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class StoreQueryError(TimeSeriesError, DatabaseError):
    """The store refused a query or gave an answer we cannot read."""


class PointsRejected(TimeSeriesError, InvalidInput):
    """The store refused the points (HTTP 4xx on write, or the encoder refused a
    reading): not retried; the caller sends the batch to the dead-letter store.

    Attributes:
        status: the HTTP status, or None when refused before sending.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class InvalidQuery(TimeSeriesError, InvalidInput):
    """A query the interface does not define (resolution, aggregate, range)."""
