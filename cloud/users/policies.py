"""Who may do what: THE one declared role → permission matrix.

Strategy: the matrix is data (`MATRIX`), read by the authorizer for every
route (``require(permission)``), by the API-token scope check and by the
route × role test; nothing else decides. A role grants a permission either
on everything (`Grant.ALL`) or only on the caller's own objects
(`Grant.OWN`), which `resource_allowed` checks against the route's path
parameters. Deny by default: an unknown permission, an unknown role, or a
path parameter no ownership rule knows is refused.

====================  ===========================================================
role                  permissions
====================  ===========================================================
admin                 every permission
operator              console:view, fleet:read/write, readings:read, events:read,
                      ingestion:read, deadletters:read/resolve, sessions:self, tokens:self
billing               console:view, fleet:read, readings:read, events:read, sessions:self,
                      tokens:self
support               console:view, fleet:read, readings:read, events:read,
                      ingestion:read, users:read, sessions:self
technician            console:view, fleet:read/write, readings:read, events:read,
                      ingestion:read, deadletters:read, sessions:self, tokens:self
auditor (read-only)   console:view, every ``:read``, audit:read, sessions:self
customer              console:view, account:read-own, sessions:self, and fleet:read,
                      readings:read, events:read on its own meters only (`Grant.OWN`)
====================  ===========================================================

docs/users.md carries the full table; a test keeps it equal to `MATRIX`.

Ownership (`Grant.OWN`): every resource parameter must name something the
customer owns — ``serial`` / ``meter_serial`` a meter linked to one of its
accounts now, ``account_number`` one of its accounts — and there must be at
least one: a listing route without an id is refused to an OWN grant, so a
route that forgets to filter by owner cannot leak. ``gateway_id`` (or any
other parameter) is never a customer's. ``obis`` names a quantity, not an
object: it is left out of the check (the serial beside it decides).
Passing this check lets a customer ask about a meter; what of the meter's
history it then sees — only its own link periods, never a previous
occupant's — is `cloud.users.visibility`'s window, which the routes apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Protocol

from sqlalchemy.orm import Session

from cloud.users import _ownership

__all__ = [
    "MATRIX",
    "PERMISSIONS",
    "ROLES",
    "Grant",
    "Permission",
    "PrincipalLike",
    "Role",
    "allowed",
    "grant_of",
    "matrix_markdown",
    "permissions_of",
    "resource_allowed",
]


class Permission(StrEnum):
    """Every permission a route may require."""

    FLEET_READ = "fleet:read"
    FLEET_WRITE = "fleet:write"
    READINGS_READ = "readings:read"
    EVENTS_READ = "events:read"
    INGESTION_READ = "ingestion:read"
    DEADLETTERS_READ = "deadletters:read"
    DEADLETTERS_RESOLVE = "deadletters:resolve"
    USERS_READ = "users:read"
    USERS_ADMIN = "users:admin"
    TOKENS_SELF = "tokens:self"
    TOKENS_ADMIN = "tokens:admin"
    SESSIONS_SELF = "sessions:self"
    AUDIT_READ = "audit:read"
    CONSOLE_VIEW = "console:view"
    ACCOUNT_READ_OWN = "account:read-own"


class Role(StrEnum):
    """The roles a user can have (one per user)."""

    ADMIN = "admin"
    OPERATOR = "operator"
    BILLING = "billing"
    SUPPORT = "support"
    TECHNICIAN = "technician"
    AUDITOR = "auditor"
    CUSTOMER = "customer"


class Grant(StrEnum):
    """How far a permission reaches for a role."""

    ALL = "all"  # on every object
    OWN = "own"  # only on the caller's own objects (resource_allowed checks)


P = Permission
_READS = frozenset(p for p in Permission if p.value.endswith(":read"))


def _all(*permissions: Permission) -> dict[str, Grant]:
    return {permission.value: Grant.ALL for permission in permissions}


MATRIX: Mapping[str, Mapping[str, Grant]] = {
    Role.ADMIN: _all(*Permission),
    Role.OPERATOR: _all(
        P.CONSOLE_VIEW,
        P.FLEET_READ,
        P.FLEET_WRITE,
        P.READINGS_READ,
        P.EVENTS_READ,
        P.INGESTION_READ,
        P.DEADLETTERS_READ,
        P.DEADLETTERS_RESOLVE,
        P.SESSIONS_SELF,
        P.TOKENS_SELF,
    ),
    Role.BILLING: _all(
        P.CONSOLE_VIEW,
        P.FLEET_READ,
        P.READINGS_READ,
        P.EVENTS_READ,
        P.SESSIONS_SELF,
        P.TOKENS_SELF,
    ),
    Role.SUPPORT: _all(
        P.CONSOLE_VIEW,
        P.FLEET_READ,
        P.READINGS_READ,
        P.EVENTS_READ,
        P.INGESTION_READ,
        P.USERS_READ,
        P.SESSIONS_SELF,
    ),
    Role.TECHNICIAN: _all(
        P.CONSOLE_VIEW,
        P.FLEET_READ,
        P.FLEET_WRITE,
        P.READINGS_READ,
        P.EVENTS_READ,
        P.INGESTION_READ,
        P.DEADLETTERS_READ,
        P.SESSIONS_SELF,
        P.TOKENS_SELF,
    ),
    # Read-only: it may look at everything, change nothing but its own sessions.
    Role.AUDITOR: _all(P.CONSOLE_VIEW, P.SESSIONS_SELF, *sorted(_READS)),
    Role.CUSTOMER: {
        **_all(P.CONSOLE_VIEW, P.ACCOUNT_READ_OWN, P.SESSIONS_SELF),
        P.FLEET_READ.value: Grant.OWN,
        P.READINGS_READ.value: Grant.OWN,
        P.EVENTS_READ.value: Grant.OWN,
    },
}

ROLES: tuple[str, ...] = tuple(role.value for role in Role)
PERMISSIONS: tuple[str, ...] = tuple(permission.value for permission in Permission)

# Path parameters an OWN grant knows how to check, and against what.
_METER_PARAMETERS = frozenset({"serial", "meter_serial"})
_ACCOUNT_PARAMETERS = frozenset({"account_number"})
# Path parameters that name a quantity, not an object: they neither grant nor
# refuse ownership (``/meters/{serial}/readings/{obis}`` is decided by the serial).
_NEUTRAL_PARAMETERS = frozenset({"obis"})


class PrincipalLike(Protocol):
    """What the policy needs of `cloud.core.authz.Principal`."""

    @property
    def roles(self) -> frozenset[str]: ...

    @property
    def user_id(self) -> int | None: ...

    @property
    def scopes(self) -> frozenset[str] | None: ...


def permissions_of(role: str) -> frozenset[str]:
    """Every permission `role` has (ALL or OWN); empty for an unknown role."""
    return frozenset(MATRIX.get(role, {}))


def grant_of(roles: Iterable[str], permission: str) -> Grant | None:
    """The widest grant any of `roles` has for `permission`, None if none has it."""
    grants = {MATRIX.get(role, {}).get(permission) for role in roles}
    if Grant.ALL in grants:
        return Grant.ALL
    return Grant.OWN if Grant.OWN in grants else None


def allowed(principal_roles: Iterable[str], permission: str) -> bool:
    """True if any of the roles has `permission`, on all objects or on its own.

    A route protected by an OWN grant must still pass `resource_allowed`.
    """
    return grant_of(principal_roles, permission) is not None


def resource_allowed(
    principal: PrincipalLike,
    permission: str,
    resource_params: Mapping[str, str],
    *,
    session: Session,
) -> bool:
    """May `principal` use `permission` on the object the route's parameters name?

    Args:
        principal: roles, user id and (for API tokens) scopes.
        permission: the route's permission.
        resource_params: the route's path parameters (``{"serial": "SN1"}``).
        session: to look up what a customer owns (only touched for OWN grants).

    Returns:
        True for an ALL grant; for an OWN grant, True only if there is at
        least one parameter and every one names the principal's own object.
        False if an API token's scopes lack the permission.
    """
    if principal.scopes is not None and permission not in principal.scopes:
        return False
    grant = grant_of(principal.roles, permission)
    if grant is Grant.ALL:
        return True
    if grant is None or principal.user_id is None or not resource_params:
        return False
    return _owns_all(principal.user_id, resource_params, session=session)


def _owns_all(user_id: int, resource_params: Mapping[str, str], *, session: Session) -> bool:
    resource_params = {
        name: value for name, value in resource_params.items() if name not in _NEUTRAL_PARAMETERS
    }
    if not resource_params:
        return False
    if not set(resource_params) <= _METER_PARAMETERS | _ACCOUNT_PARAMETERS:
        return False
    serials: frozenset[str] | None = None
    numbers: frozenset[str] | None = None
    for name, value in resource_params.items():
        if name in _METER_PARAMETERS:
            if serials is None:
                serials = _ownership.meter_serials(session=session, user_id=user_id)
            if value not in serials:
                return False
        else:
            if numbers is None:
                numbers = _ownership.account_numbers(session=session, user_id=user_id)
            if value not in numbers:
                return False
    return True


def matrix_markdown() -> str:
    """The matrix as a Markdown table (permissions × roles) for docs/users.md.

    ``✓`` all objects, ``own`` only the caller's own, ``–`` not granted.
    Regenerate with ``python -m cloud.users.policies``; a test compares.
    """
    marks = {Grant.ALL: "✓", Grant.OWN: "own", None: "–"}
    lines = [
        "| permission | " + " | ".join(ROLES) + " |",
        "|---|" + "---|" * len(ROLES),
    ]
    for permission in PERMISSIONS:
        cells = (marks[MATRIX[role].get(permission)] for role in ROLES)
        lines.append(f"| `{permission}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(matrix_markdown())
