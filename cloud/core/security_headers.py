"""Security headers on every response: CSP, framing, sniffing, referrer, HSTS, caching.

Strategy: one pure ASGI middleware (like the others in `cloud.core.middleware`)
that adds headers to ``http.response.start`` without touching the body, so it
costs a dict update per response and works for streams (SSE) too. A header a
route set itself is kept (``setdefault``), so a page may tighten its policy.

What and why (docs/users.md, "Security headers"):

- ``Content-Security-Policy``: only our own origin — no inline scripts or
  styles, no ``eval``, no plugins, no framing (``frame-ancestors 'none'``),
  forms post only to us. The console ships its scripts as files
  (docs/console.md). FastAPI's ``/docs`` viewer loads Swagger UI from a CDN
  with an inline script; it gets a looser policy for that one page;
- ``X-Frame-Options: DENY`` for browsers without ``frame-ancestors``;
- ``X-Content-Type-Options: nosniff``; ``Referrer-Policy: same-origin`` (our
  URLs carry meter serials and one-time tokens: they never leave the site);
- ``Permissions-Policy``: no camera, microphone, geolocation, payment, USB;
- ``Cross-Origin-Opener-Policy`` / ``-Resource-Policy: same-origin``;
- ``Strict-Transport-Security`` only when the request came over https (behind
  a TLS-terminating proxy: run uvicorn with ``--proxy-headers``) — over plain
  http a browser ignores it, and it must not pin a development host;
- ``Cache-Control: no-store`` on every answer to a request that carries
  credentials (a session cookie or an Authorization header), unless the route
  chose its own caching: nothing personal stays in a shared or browser cache.
  Static files (paths in ``app.state.public_mounts``) keep their caching.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "DOCS_CONTENT_SECURITY_POLICY",
    "SESSION_COOKIE_NAME",
    "SecurityHeadersMiddleware",
]

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
# Swagger UI as FastAPI serves it: scripts and styles from jsDelivr, one inline script.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' https://cdn.jsdelivr.net 'unsafe-inline'",
        "style-src 'self' https://cdn.jsdelivr.net",
        "img-src 'self' data: https://fastapi.tiangolo.com",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
HSTS = "max-age=31536000; includeSubDomains"
# The console's cookie (cloud.console.security.SESSION_COOKIE); named here so
# the core does not import the console.
SESSION_COOKIE_NAME = "vs_session"

_ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": PERMISSIONS_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _carries_credentials(request_headers: Headers) -> bool:
    if "authorization" in request_headers:
        return True
    cookies = request_headers.get("cookie", "")
    return any(part.strip().startswith(SESSION_COOKIE_NAME + "=") for part in cookies.split(";"))


def _under(path: str, prefixes: Any) -> bool:
    return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in prefixes)


class SecurityHeadersMiddleware:
    """Adds the headers of the module docstring to every HTTP response."""

    def __init__(self, app: ASGIApp, *, docs_paths: frozenset[str] = frozenset()) -> None:
        """
        Args:
            docs_paths: the API viewer pages (``/docs``, ``/redoc``) that get
                `DOCS_CONTENT_SECURITY_POLICY`.
        """
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        https = scope.get("scheme") == "https"
        no_store = _carries_credentials(Headers(scope=scope)) and not _under(
            path, self._static_mounts(scope)
        )
        policy = (
            DOCS_CONTENT_SECURITY_POLICY if path in self.docs_paths else CONTENT_SECURITY_POLICY
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _ALWAYS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", policy)
                if https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
                if no_store:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _static_mounts(scope: Scope) -> Any:
        app = scope.get("app")
        state = getattr(app, "state", None)
        return getattr(state, "public_mounts", ()) or ()
