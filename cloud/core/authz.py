"""The authorization hook: one dependency on every route, one authorizer per app.

Strategy: routes never look at users, roles, cookies or tokens. Each route
declares the one permission it needs with `require` (``"fleet:read"``…);
the dependency asks the app's `Authorizer` (``app.state.authorizer``) whether
this request may do it, and gets back the `Principal` or an error
(`Unauthenticated` → 401, `Forbidden` → 403, mapped in `cloud.core.problems`).
Who holds which permission is the users module's business (its authorizer);
this module only carries the contract.

Invariants:

- secure by default: `create_app` installs `DenyAll` unless given an
  authorizer, so a forgotten configuration refuses everything;
- every route is accounted for: `route_permissions(app)` walks the app and
  reads each route's permission from its dependencies, `PUBLIC` for routes
  marked with `public()`, None for a route that declared neither — a test
  can assert there is no None;
- the resource handed to the authorizer is the route's path parameters
  (``{"serial": "LGZ1"}``), so it can decide per gateway, meter or customer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import fastapi.routing
from fastapi import Depends, FastAPI, Request, params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import BaseRoute, Mount, Route

from cloud.core.exceptions import Unauthenticated

__all__ = [
    "ANONYMOUS",
    "PUBLIC",
    "Authorizer",
    "DenyAll",
    "Principal",
    "public",
    "require",
    "route_permissions",
]

# The permission name of routes anyone may call (health, the OpenAPI document).
PUBLIC = "public"
# Set on the dependency callables so `route_permissions` can find them.
_PERMISSION_ATTRIBUTE = "__voltstack_permission__"


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the authorizer established it.

    Attributes:
        subject: a stable name for logs and the audit trail (user name, token id).
        roles: the roles the principal holds.
        kind: ``"session"`` (console cookie), ``"token"`` (API token) or ``"anonymous"``.
        user_id: the user's row id, None for anonymous callers.
        scopes: a token's scopes; None when not restricted by scopes.
    """

    subject: str
    roles: frozenset[str]
    kind: str
    user_id: int | None = None
    scopes: frozenset[str] | None = None


ANONYMOUS = Principal(subject="anonymous", roles=frozenset(), kind="anonymous")


class Authorizer(Protocol):
    """Decides whether a request may use a permission on a resource."""

    def authorize(
        self, request: Request, permission: str, resource: Mapping[str, str]
    ) -> Principal:
        """Return the caller if allowed.

        Args:
            request: the request (headers, cookies, client address).
            permission: what the route needs, e.g. ``"fleet:read"``.
            resource: the route's path parameters, e.g. ``{"serial": "LGZ1"}``.

        Raises:
            Unauthenticated: no or invalid credentials (401).
            Forbidden: valid credentials without the permission (403).
        """
        ...


class DenyAll:
    """The default authorizer: nobody is authenticated, every protected route is 401."""

    def authorize(
        self, request: Request, permission: str, resource: Mapping[str, str]
    ) -> Principal:
        raise Unauthenticated(f"authentication required for {permission}")


def require(permission: str) -> params.Depends:
    """The dependency a route uses to declare and check its permission.

    Use it as ``dependencies=[require("fleet:read")]``, or as a parameter
    default (``principal: Principal = require("fleet:write")``) to get the caller.

    Args:
        permission: ``<domain>:<action>``, e.g. ``"fleet:read"``.

    Returns:
        A FastAPI ``Depends`` that calls ``app.state.authorizer.authorize``.
    """
    if not permission or permission == PUBLIC:
        raise ValueError(f"not a permission name: {permission!r} (use public() for open routes)")

    def authorized(request: Request) -> Principal:
        authorizer: Authorizer = request.app.state.authorizer
        return authorizer.authorize(request, permission, dict(request.path_params))

    authorized.__name__ = f"require_{permission.replace(':', '_')}"
    setattr(authorized, _PERMISSION_ATTRIBUTE, permission)
    dependency: params.Depends = Depends(authorized)
    return dependency


def _anonymous() -> Principal:
    return ANONYMOUS


setattr(_anonymous, _PERMISSION_ATTRIBUTE, PUBLIC)


def public() -> params.Depends:
    """Mark a route as open to anyone (health checks); it gets the anonymous principal."""
    dependency: params.Depends = Depends(_anonymous)
    return dependency


def _permissions_of(dependant: Dependant) -> set[str]:
    found: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        permission = getattr(current.call, _PERMISSION_ATTRIBUTE, None)
        if permission is not None:
            found.add(permission)
        pending.extend(current.dependencies)
    return found


def _route_methods(view: Any, original: BaseRoute) -> list[str]:
    if isinstance(original, APIWebSocketRoute):
        return ["WEBSOCKET"]
    methods = set(getattr(view, "methods", None) or {"*"})
    return sorted(methods - {"HEAD"}) or sorted(methods)


def _flat_routes(app: FastAPI) -> Iterator[tuple[Any, BaseRoute]]:
    """(view, original route) for every route. FastAPI >= 0.16x includes routers
    lazily and exposes the flattened view (full path, merged dependencies) through
    `fastapi.routing.iter_route_contexts`; before, `app.routes` held them flat."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    if iterate is None:
        for route in app.routes:
            yield route, route
        return
    for context in iterate(app.routes):
        yield context, context.original_route


def route_permissions(app: FastAPI) -> dict[tuple[str, str], str | None]:
    """Every route of the app and the permission it declares.

    Returns:
        ``{(method, path): permission}``; `PUBLIC` for public routes and for
        FastAPI's own documentation routes, None for a route that declares
        nothing (a bug the route-policy test catches). Mounted sub-apps
        (static files) appear as ``("*", path)`` with None unless their path is
        listed in ``app.state.public_mounts``.

    Raises:
        ValueError: a route declares two different permissions (ambiguous).
    """
    documentation = {
        app.openapi_url,
        app.docs_url,
        app.redoc_url,
        app.swagger_ui_oauth2_redirect_url,
    }
    public_mounts: set[str] = set(getattr(app.state, "public_mounts", ()))
    table: dict[tuple[str, str], str | None] = {}
    for view, original in _flat_routes(app):
        path = str(getattr(view, "path", None) or getattr(original, "path", repr(original)))
        permission: str | None
        if isinstance(original, APIRoute | APIWebSocketRoute):
            dependant = getattr(view, "dependant", None) or original.dependant
            declared = _permissions_of(dependant)
            if len(declared) > 1:
                raise ValueError(f"{path} declares several permissions: {sorted(declared)}")
            permission = declared.pop() if declared else None
        elif isinstance(original, Route):
            permission = PUBLIC if path in documentation else None
        elif isinstance(original, Mount):
            permission = PUBLIC if path in public_mounts else None
        else:
            permission = None
        for method in _route_methods(view, original):
            table[(method, path)] = permission
    return table
