"""`UsersAuthorizer`: the real `cloud.core.authz.Authorizer`, backed by the users domain.

Strategy: one decision per request, in this order, each step failing closed:

1. credentials — ``Authorization: Bearer vst_…`` (an API token) wins over the
   ``vs_session`` cookie (a console session); neither is 401. A malformed,
   forged, revoked or expired credential is 401 too, with one message per
   kind (`InvalidApiToken`, `InvalidSession`); the reason goes to the log;
2. CSRF — a *cookie*-authenticated POST/PUT/PATCH/DELETE must carry the
   session's synchronizer token (HMAC of the session token,
   `cloud.console.security.csrf_token_for`) in ``X-CSRF-Token``: 403
   ``csrf-rejected`` otherwise. Bearer requests need none (a browser never
   adds that header on its own). Console form posts (outside ``/api/``, form
   content type, no header) carry the token in their ``csrf_token`` field,
   which the console route checks itself (`check_csrf`): this synchronous
   hook cannot read a form body;
3. permission — `policies.resource_allowed`: the role's grant, the token's
   scopes, and for ``own`` grants (customers) the ownership of every object
   the path parameters name. Refusal is 403 and says nothing about whether
   the object exists.

The look-ups run in one short unit of work on ``app.state.sessions``; it
commits the sliding idle expiry of the session (or the token's last use).
Nothing is cached between requests: a revoked session or a role change takes
effect on the next request, in every API process.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from cloud.console.exceptions import CsrfRejected
from cloud.console.security import CSRF_HEADER, SESSION_COOKIE, csrf_token_for
from cloud.core.authz import Principal
from cloud.core.config import Settings
from cloud.core.db import unit_of_work, utc_now
from cloud.core.exceptions import Forbidden, Unauthenticated
from cloud.users import passwords, policies, service
from cloud.users.exceptions import AuthenticationFailed

__all__ = [
    "DEFAULT_CONFIG",
    "STATE_CHANGING_METHODS",
    "UserAuthenticated",
    "UsersAuthorizer",
    "UsersConfig",
    "bearer_token",
]

logger = logging.getLogger(__name__)

STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_API_PREFIX = "/api/"


@dataclass(frozen=True)
class UsersConfig:
    """What the authorizer and the users routes share besides `Settings`.

    Attributes:
        user_settings: lockout, session idle and absolute expiry, token lifetime.
        hasher: argon2id parameters (tests use small ones: they log in often).
        clock: the current time (tests move it to expire sessions and lockouts).
    """

    user_settings: service.UserSettings = service.DEFAULT_SETTINGS
    hasher: PasswordHasher = passwords.DEFAULT_HASHER
    clock: Callable[[], datetime] = utc_now


DEFAULT_CONFIG = UsersConfig()


@dataclass(frozen=True)
class UserAuthenticated(Principal):
    """A `Principal` that is a user, with the credential it came with.

    Attributes:
        credential_id: the login session's or API token's id (log out "this" session).
        session_token: the cookie's session token (to compute its CSRF token); None for tokens.
    """

    credential_id: int | None = None
    session_token: str | None = None


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, None without one.

    Raises:
        Unauthenticated: an Authorization header of another scheme, or empty.
    """
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("Authorization: Bearer <API token> expected")
    return value.strip()


class UsersAuthorizer:
    """Sessions and API tokens of `cloud.users`, checked against `policies.MATRIX`."""

    def __init__(self, settings: Settings, config: UsersConfig = DEFAULT_CONFIG) -> None:
        """
        Args:
            settings: the secret key (CSRF tokens).
            config: expiries, hasher and clock, shared with the users routes
                (they read it back as ``app.state.authorizer.config``).
        """
        self.settings = settings
        self.config = config

    def authorize(
        self, request: Request, permission: str, resource: Mapping[str, str]
    ) -> Principal:
        token = bearer_token(request)
        cookie = None if token is not None else request.cookies.get(SESSION_COOKIE)
        if token is None and not cookie:
            raise Unauthenticated(f"authentication required for {permission}")
        factory: sessionmaker[Session] = request.app.state.sessions
        try:
            with unit_of_work(factory) as session:
                found = self._identify(session, token=token, cookie=cookie)
                if cookie:
                    self._check_csrf(request, cookie)
                if not policies.resource_allowed(found, permission, resource, session=session):
                    raise Forbidden(f"not allowed: {permission}")
        except AuthenticationFailed as error:
            logger.info(
                "refused %s credential for %s: %s",
                "token" if token is not None else "session",
                permission,
                getattr(error, "reason", type(error).__name__),
            )
            raise
        return UserAuthenticated(
            subject=found.subject,
            roles=found.roles,
            kind=found.kind,
            user_id=found.user_id,
            scopes=found.scopes,
            credential_id=found.credential_id,
            session_token=cookie or None,
        )

    def _identify(
        self, session: Session, *, token: str | None, cookie: str | None
    ) -> service.UserPrincipal:
        now = self.config.clock()
        settings = self.config.user_settings
        if token is not None:
            return service.verify_api_token(
                session=session, token=token, settings=settings, now=now
            )
        assert cookie is not None
        return service.get_session_principal(
            session=session, token=cookie, settings=settings, now=now
        )

    def _check_csrf(self, request: Request, session_token: str) -> None:
        if request.method.upper() not in STATE_CHANGING_METHODS:
            return
        offered = request.headers.get(CSRF_HEADER)
        if offered is None and self._console_form(request):
            return  # the console route checks the form's csrf_token field
        expected = csrf_token_for(self.settings, session_token)
        if not offered or not hmac.compare_digest(expected.encode(), offered.encode()[:256]):
            raise CsrfRejected(f"{CSRF_HEADER} missing or wrong")

    @staticmethod
    def _console_form(request: Request) -> bool:
        content_type = request.headers.get("content-type", "").lower()
        return not request.url.path.startswith(_API_PREFIX) and content_type.startswith(_FORM_TYPES)
