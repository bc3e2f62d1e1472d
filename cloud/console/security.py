"""The console's cookie and CSRF contract (docs/console.md, shared with the authorizer).

Strategy: stateless synchronizer tokens. The session cookie `SESSION_COOKIE`
holds the opaque session token the users service issued; the CSRF token of
that session is ``HMAC-SHA256(secret_key, "vs-csrf:" + session token)`` in
URL-safe base64, so any API process can compute and check it without
storing anything, and it dies with the session. Pages put it in a hidden
``csrf_token`` field of every form and in an ``X-CSRF-Token`` header of every
htmx request (``hx-headers`` on ``<body>``); every state-changing console
route checks one of them (`check_csrf`).

Before login there is no session, so the login form uses the signed
double-submit variant: the login page sets a random `LOGIN_NONCE_COOKIE`
(HttpOnly, SameSite=Strict, path of the login page only) and the form
carries ``HMAC(secret_key, "vs-login:" + nonce)``. A cross-site page can
neither read the nonce nor compute the HMAC, so it cannot log a victim in
to an attacker's account (login CSRF).

Comparisons are constant-time (`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from fastapi import Request, Response

from cloud.console.exceptions import CsrfRejected
from cloud.core.config import Settings

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LOGIN_NONCE_COOKIE",
    "SESSION_COOKIE",
    "check_csrf",
    "check_login_csrf",
    "clear_session_cookie",
    "cookie_is_secure",
    "csrf_token_for",
    "login_csrf_token",
    "new_login_nonce",
    "set_session_cookie",
]

SESSION_COOKIE = "vs_session"
LOGIN_NONCE_COOKIE = "vs_login_nonce"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_LOGIN_NONCE_MAX_AGE_S = 3600
_MAX_TOKEN_CHARS = 256


def _mac(settings: Settings, message: str) -> str:
    key = settings.secret_key.get_secret_value().encode()
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_token_for(settings: Settings, session_token: str) -> str:
    """The CSRF token of the session whose cookie holds `session_token`."""
    return _mac(settings, "vs-csrf:" + session_token)


def login_csrf_token(settings: Settings, nonce: str) -> str:
    """The login form's CSRF token for the nonce in `LOGIN_NONCE_COOKIE`."""
    return _mac(settings, "vs-login:" + nonce)


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def _matches(expected: str, offered: str | None) -> bool:
    if not offered or len(offered) > _MAX_TOKEN_CHARS:
        return False
    return hmac.compare_digest(expected.encode(), offered.encode())


async def _offered_token(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        field = form.get(CSRF_FIELD)
        return field if isinstance(field, str) else None
    return None


async def check_csrf(request: Request, settings: Settings) -> None:
    """Refuse a state-changing request without its session's CSRF token.

    Raises:
        CsrfRejected: no session cookie, no token, or the wrong one (403).
    """
    session_token = request.cookies.get(SESSION_COOKIE)
    if not session_token:
        raise CsrfRejected("no session")
    if not _matches(csrf_token_for(settings, session_token), await _offered_token(request)):
        raise CsrfRejected("token missing or wrong")


async def check_login_csrf(request: Request, settings: Settings) -> None:
    """Refuse a login post whose token does not match the login nonce cookie.

    Raises:
        CsrfRejected: no nonce cookie (e.g. cookies blocked) or a wrong token.
    """
    nonce = request.cookies.get(LOGIN_NONCE_COOKIE)
    if not nonce:
        raise CsrfRejected("no login nonce; reload the login page")
    if not _matches(login_csrf_token(settings, nonce), await _offered_token(request)):
        raise CsrfRejected("login token missing or wrong")


def cookie_is_secure(request: Request, settings: Settings) -> bool:
    """Secure cookies always in production; over plain http only in development or test."""
    return settings.environment == "production" or request.url.scheme == "https"


def set_session_cookie(
    response: Response, request: Request, settings: Settings, session_token: str
) -> None:
    """The session cookie: HttpOnly, SameSite=Lax, Path=/, Secure (see `cookie_is_secure`).

    No Max-Age: it is a browser-session cookie; the server enforces the idle
    and absolute expiry of the session itself.
    """
    response.set_cookie(
        SESSION_COOKIE,
        session_token,
        path="/",
        httponly=True,
        samesite="lax",
        secure=cookie_is_secure(request, settings),
    )


def clear_session_cookie(response: Response, request: Request, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=cookie_is_secure(request, settings),
    )


def set_login_nonce(
    response: Response,
    request: Request,
    settings: Settings,
    nonce: str,
    path: str = "/console/login",
) -> None:
    """The nonce cookie of a form posted without a session, scoped to the
    page's own `path` (the login page, or a one-time link's page): a browser
    sends it back only to the page that set it."""
    response.set_cookie(
        LOGIN_NONCE_COOKIE,
        nonce,
        max_age=_LOGIN_NONCE_MAX_AGE_S,
        path=path,
        httponly=True,
        samesite="strict",
        secure=cookie_is_secure(request, settings),
    )
