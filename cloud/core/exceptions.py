"""The root of every error the cloud raises on purpose.

Each domain package has its own ``exceptions.py`` whose classes derive from
the categories below, so a router maps a whole category to one HTTP status
(``NotFound`` → 404, ``Conflict`` → 409, ``InvalidInput`` → 422,
``DatabaseError`` → 503) without knowing every domain error::

    CloudError
    ├── DatabaseError                      cloud.core: bad URL, server unreachable, migration failed
    ├── InvalidInput
    │   ├── NaiveTimestamp                 cloud.core: a datetime without a time zone
    │   ├── InvalidGatewayId               cloud.fleet
    │   ├── InvalidMeter                   cloud.fleet: protocol, ratios, Modbus unit id
    │   ├── InvalidSequence                cloud.fleet: uplink sequence out of range
    │   └── InvalidResolutionNote          cloud.fleet: a dead letter's resolution note
    ├── NotFound
    │   ├── GatewayNotFound                cloud.fleet
    │   ├── MeterNotFound                  cloud.fleet
    │   └── DeadLetterNotFound             cloud.fleet
    ├── Conflict
    │   ├── GatewayAlreadyExists           cloud.fleet
    │   ├── GatewayDecommissioned          cloud.fleet
    │   ├── GatewayHasMeters               cloud.fleet
    │   └── MeterAlreadyInstalled          cloud.fleet
    ├── Unauthenticated                    cloud.core.authz: no or bad credentials → 401
    │   └── AuthenticationFailed           cloud.users: InvalidCredentials, AccountLocked
    │                                      (→ 429 at login), UserDisabled, InvalidSession,
    │                                      InvalidApiToken
    └── Forbidden                          cloud.core.authz: authenticated, not allowed → 403
        └── CsrfRejected                   cloud.console: a cookie request without its CSRF token

The users domain adds under InvalidInput: WeakPassword, InvalidEmail,
InvalidRole, InvalidScopes, InvalidTokenExpiry, InvalidOneTimeToken,
WrongCurrentPassword, InvalidMail; under NotFound: UserNotFound,
SessionNotFound, ApiTokenNotFound; under Conflict: EmailAlreadyRegistered,
UserNotActive, LastAdmin (the tree in cloud/users/exceptions.py).

Raw driver or SQLAlchemy exceptions are translated at the service boundary
with ``raise … from exc``; they never reach a router or a user.
"""

from __future__ import annotations

__all__ = [
    "CloudError",
    "Conflict",
    "DatabaseError",
    "Forbidden",
    "InvalidInput",
    "NaiveTimestamp",
    "NotFound",
    "Unauthenticated",
]


class CloudError(Exception):
    """Root of the cloud's own errors."""


class DatabaseError(CloudError):
    """The operational database cannot be reached, opened or migrated."""


class InvalidInput(CloudError):
    """The caller passed a value the domain refuses."""


class NotFound(CloudError):
    """The named object does not exist."""


class Conflict(CloudError):
    """The request contradicts the current state (duplicate, wrong state)."""


class NaiveTimestamp(InvalidInput):
    """A datetime without tzinfo: the cloud stores UTC and refuses to guess."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} must be timezone-aware (got a naive datetime)")
        self.what = what


class Unauthenticated(CloudError):
    """The request carries no credentials, or credentials we do not accept (401)."""


class Forbidden(CloudError):
    """The caller is known but lacks the permission for this action (403)."""
