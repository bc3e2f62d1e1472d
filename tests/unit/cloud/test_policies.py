"""The role → permission matrix: its shape, the rules it promises, and its doc."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from sqlalchemy.orm import Session

from cloud.users import policies
from cloud.users.policies import MATRIX, PERMISSIONS, ROLES, Grant, allowed, grant_of

DOC = Path(__file__).resolve().parents[3] / "docs" / "users.md"
# What the API frame (cloud/core/authz.py and its routers) already requires.
FRAME_PERMISSIONS = {
    "fleet:read",
    "fleet:write",
    "readings:read",
    "ingestion:read",
    "deadletters:read",
    "deadletters:resolve",
}
READS = {permission for permission in PERMISSIONS if permission.endswith(":read")}


def test_every_role_is_declared_and_grants_only_known_permissions() -> None:
    assert (
        set(MATRIX)
        == set(ROLES)
        == {
            "admin",
            "operator",
            "billing",
            "support",
            "technician",
            "auditor",
            "customer",
        }
    )
    for role, grants in MATRIX.items():
        assert set(grants) <= set(PERMISSIONS), role
        assert set(grants.values()) <= set(Grant), role
    assert FRAME_PERMISSIONS <= set(PERMISSIONS)
    assert len(PERMISSIONS) == len(set(PERMISSIONS))


def test_admin_has_everything_on_everything() -> None:
    assert MATRIX["admin"] == dict.fromkeys(PERMISSIONS, Grant.ALL)


def test_auditor_is_read_only() -> None:
    assert set(MATRIX["auditor"]) == READS | {"audit:read", "console:view", "sessions:self"}
    assert "audit:read" in READS
    assert all(grant is Grant.ALL for grant in MATRIX["auditor"].values())


def test_customer_sees_only_its_own() -> None:
    assert MATRIX["customer"] == {
        "console:view": Grant.ALL,
        "account:read-own": Grant.ALL,
        "sessions:self": Grant.ALL,
        "fleet:read": Grant.OWN,
        "readings:read": Grant.OWN,
        "events:read": Grant.OWN,
    }


def test_only_customers_have_own_grants_and_only_admins_administer() -> None:
    for role, grants in MATRIX.items():
        if role != "customer":
            assert Grant.OWN not in grants.values(), role
    for permission in ("users:admin", "tokens:admin", "deadletters:resolve"):
        holders = {role for role in ROLES if permission in MATRIX[role]}
        assert "admin" in holders and not holders & {"auditor", "customer", "billing"}
    assert {role for role in ROLES if "audit:read" in MATRIX[role]} == {"admin", "auditor"}


@pytest.mark.parametrize("role", ROLES)
def test_every_role_may_see_the_console_and_end_its_own_sessions(role: str) -> None:
    assert allowed([role], "console:view") and allowed([role], "sessions:self")


def test_allowed_and_grant_of() -> None:
    assert allowed(["operator"], "fleet:write")
    assert not allowed(["billing"], "fleet:write")
    assert allowed(["customer"], "readings:read")  # OWN: resource check still due
    assert grant_of(["customer"], "readings:read") is Grant.OWN
    assert grant_of(["customer", "operator"], "readings:read") is Grant.ALL
    assert grant_of(["billing"], "audit:read") is None
    assert not allowed([], "fleet:read")
    assert not allowed(["root"], "fleet:read")
    assert not allowed(["admin"], "fleet:delete")
    assert policies.permissions_of("root") == frozenset()
    assert policies.permissions_of("admin") == frozenset(PERMISSIONS)


class _Principal:
    def __init__(self, roles: set[str], scopes: set[str] | None = None) -> None:
        self.roles = frozenset(roles)
        self.user_id: int | None = 1
        self.scopes = frozenset(scopes) if scopes is not None else None


def test_resource_allowed_without_ownership_needs_no_database() -> None:
    # ALL grants and refusals by role or scope are decided before any look-up:
    # no session is needed, so passing none proves it is not touched.
    session = cast(Session, None)
    operator = _Principal({"operator"})
    assert policies.resource_allowed(operator, "fleet:read", {"gateway_id": "gw"}, session=session)
    assert not policies.resource_allowed(operator, "audit:read", {}, session=session)
    scoped = _Principal({"operator"}, {"fleet:read"})
    assert not policies.resource_allowed(scoped, "readings:read", {}, session=session)
    customer = _Principal({"customer"})
    assert not policies.resource_allowed(customer, "fleet:read", {}, session=session)
    assert not policies.resource_allowed(
        customer,
        "fleet:read",
        {"gateway_id": "gw"},
        session=session,
    )
    anonymous = _Principal(set())
    anonymous.user_id = None
    assert not policies.resource_allowed(anonymous, "fleet:read", {"serial": "x"}, session=session)


def test_the_documented_matrix_is_the_declared_one() -> None:
    text = DOC.read_text(encoding="utf-8")
    start, end = "<!-- matrix:start -->\n", "\n<!-- matrix:end -->"
    assert start in text and end in text, "docs/users.md lost its matrix markers"
    documented = text.split(start, 1)[1].split(end, 1)[0]
    assert documented == policies.matrix_markdown(), (
        "docs/users.md is out of date: paste `python -m cloud.users.policies` between the markers"
    )
