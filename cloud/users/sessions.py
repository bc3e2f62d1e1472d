"""Login and console sessions: authenticate, open, resolve, list, revoke.

Login (`authenticate`) does not raise: it returns a `LoginAttempt`, because a
failure must still be *recorded* (failed-login count, lockout) and a unit of
work rolls back when its block raises. The caller commits, then calls
`LoginAttempt.user_or_raise()`. An unknown email costs one argon2
verification of a dummy hash, like a known one, and gets the same error.

Sessions expire when idle for `UserSettings.session_idle` (sliding: each use
moves `last_seen_at`, written at most once per `session_touch_interval` so a
busy console does not write on every request) and at `expires_at` whatever
the activity. A disabled user's sessions end at once; roles are read from
the user row on every request, never cached in the session.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.users import passwords
from cloud.users._common import (
    DEFAULT_SETTINGS,
    MAX_TOKEN_CHARS,
    UserPrincipal,
    UserSettings,
    clock,
    digest,
    get_user,
    user_by_email,
)
from cloud.users._revocation import revoke_all_of_user, revoke_one
from cloud.users.audit import Actor, record_audit
from cloud.users.exceptions import (
    AccountLocked,
    AuthenticationFailed,
    InvalidCredentials,
    InvalidSession,
    SessionNotFound,
    UserDisabled,
    UserNotActive,
)
from cloud.users.models import EMAIL_MAX_LENGTH, LoginSession, User, UserState

__all__ = [
    "LoginAttempt",
    "authenticate",
    "get_session_principal",
    "list_sessions",
    "revoke_all_sessions",
    "revoke_session",
    "revoke_sessions_of",
    "start_session",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoginAttempt:
    """The outcome of `authenticate`: a user, or the error to raise after commit."""

    user: User | None
    error: AuthenticationFailed | None = None

    def user_or_raise(self) -> User:
        """The authenticated user.

        Raises:
            AuthenticationFailed: InvalidCredentials, AccountLocked or UserDisabled.
        """
        if self.error is not None:
            raise self.error
        assert self.user is not None
        return self.user


# --- login ---------------------------------------------------------------------------


def authenticate(
    *,
    session: Session,
    email: str,
    password: str,
    ip: str | None = None,
    request_id: str | None = None,
    hasher: PasswordHasher = passwords.DEFAULT_HASHER,
    settings: UserSettings = DEFAULT_SETTINGS,
    now: datetime | None = None,
) -> LoginAttempt:
    """Check an email and password, counting failures and locking out.

    After `settings.max_failed_logins` consecutive failures the user is
    locked for `settings.lockout`: even the right password is refused until
    then. Commit the session whatever the outcome (the count must stick),
    then call `LoginAttempt.user_or_raise`.

    Returns:
        The user, or the error: InvalidCredentials (unknown email, wrong
        password, invited user — one message), AccountLocked, UserDisabled.
    """
    moment = clock(now)
    address = email.strip().lower()
    user = user_by_email(session, address) if len(address) <= EMAIL_MAX_LENGTH else None
    if user is None or user.password_hash is None:
        passwords.dummy_verify(password, hasher=hasher)
        logger.info("login refused: unknown email or no password yet")
        return LoginAttempt(None, InvalidCredentials())
    if user.locked_until is not None and moment < user.locked_until:
        passwords.dummy_verify(password, hasher=hasher)
        logger.info("login refused: user %d is locked", user.id)
        return LoginAttempt(None, AccountLocked(user.locked_until))
    if len(password) > passwords.MAX_LENGTH or not passwords.verify_password(
        user.password_hash, password, hasher=hasher
    ):
        actor = Actor.anonymous(ip=ip, request_id=request_id)
        _count_failure(session, user, moment, actor, settings)
        return LoginAttempt(None, InvalidCredentials())
    if user.state == UserState.DISABLED:
        logger.info("login refused: user %d is disabled", user.id)
        return LoginAttempt(None, UserDisabled())
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, moment
    if passwords.needs_rehash(user.password_hash, hasher=hasher):
        # The parameters changed since this hash was made: store a current one.
        user.password_hash = passwords.hash_password(password, hasher=hasher)
        logger.info("rehashed the password of user %d with current parameters", user.id)
    session.flush()
    return LoginAttempt(user)


def _count_failure(
    session: Session, user: User, now: datetime, actor: Actor, settings: UserSettings
) -> None:
    user.failed_logins += 1
    logger.info("login refused: wrong password for user %d (%d)", user.id, user.failed_logins)
    if user.failed_logins >= settings.max_failed_logins:
        user.failed_logins = 0
        user.locked_until = now + settings.lockout
        record_audit(
            session=session,
            actor=actor,
            action="auth.lockout",
            target=f"user:{user.id}",
            details={"locked_until": user.locked_until},
            at=now,
        )
        logger.warning("user %d locked until %s after failed logins", user.id, user.locked_until)
    session.flush()


# --- sessions --------------------------------------------------------------------------


def start_session(
    *,
    session: Session,
    user: User,
    ip: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
    settings: UserSettings = DEFAULT_SETTINGS,
    now: datetime | None = None,
) -> tuple[LoginSession, str]:
    """Open a console session for an authenticated user.

    Returns:
        The session row and its token (for the cookie), shown once.

    Raises:
        UserNotActive: the user is invited or disabled.
    """
    moment = clock(now)
    if user.state != UserState.ACTIVE:
        raise UserNotActive(user.id, user.state)
    token = secrets.token_urlsafe(32)
    login = LoginSession(
        token_hash=digest(token),
        user_id=user.id,
        created_at=moment,
        last_seen_at=moment,
        expires_at=moment + settings.session_lifetime,
        ip=ip[:45] if ip else None,
        user_agent=user_agent[:512] if user_agent else None,
    )
    session.add(login)
    session.flush()
    record_audit(
        session=session,
        actor=Actor.of_user(user, ip=ip, request_id=request_id),
        action="auth.login",
        target=f"session:{login.id}",
        details={"user_agent": login.user_agent},
        at=moment,
    )
    return login, token


def get_session_principal(
    *,
    session: Session,
    token: str,
    settings: UserSettings = DEFAULT_SETTINGS,
    now: datetime | None = None,
) -> UserPrincipal:
    """Who holds this session cookie; slides the idle expiry.

    Raises:
        InvalidSession: unknown or forged token, revoked, idle too long,
            past its absolute expiry, or its user is no longer active.
    """
    moment = clock(now)
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidSession("unknown")
    found = session.execute(
        select(LoginSession, User)
        .join(User, User.id == LoginSession.user_id)
        .where(LoginSession.token_hash == digest(token))
    ).one_or_none()
    if found is None:
        raise InvalidSession("unknown")
    login, user = found
    if login.revoked_at is not None:
        raise InvalidSession("revoked")
    if moment >= login.expires_at:
        raise InvalidSession("expired")
    if moment >= login.last_seen_at + settings.session_idle:
        raise InvalidSession("idle")
    if user.state != UserState.ACTIVE:
        raise InvalidSession("user_inactive")
    if moment - login.last_seen_at >= settings.session_touch_interval:
        login.last_seen_at = moment
        session.flush()
    return UserPrincipal(
        subject=user.email,
        roles=frozenset({user.role}),
        kind="session",
        user_id=user.id,
        scopes=None,
        credential_id=login.id,
    )


def _session_active(settings: UserSettings, now: datetime) -> Any:
    return (
        LoginSession.revoked_at.is_(None),
        LoginSession.expires_at > now,
        LoginSession.last_seen_at > now - settings.session_idle,
    )


def list_sessions(
    *,
    session: Session,
    user_id: int,
    include_inactive: bool = False,
    settings: UserSettings = DEFAULT_SETTINGS,
    now: datetime | None = None,
) -> list[LoginSession]:
    """A user's sessions, newest first; only usable ones unless `include_inactive`."""
    query = select(LoginSession).where(LoginSession.user_id == user_id)
    if not include_inactive:
        query = query.where(*_session_active(settings, clock(now)))
    return list(session.scalars(query.order_by(LoginSession.created_at.desc())))


def revoke_session(
    *,
    session: Session,
    session_id: int,
    actor: Actor,
    owner_id: int | None = None,
    now: datetime | None = None,
) -> LoginSession:
    """End one session (log out, or revoke it from the session list).

    Args:
        owner_id: when set (``sessions:self``), the session must be this user's.

    Raises:
        SessionNotFound: no such session, or not the owner's.
    """
    moment = clock(now)
    login = session.get(LoginSession, session_id)
    if login is None or (owner_id is not None and login.user_id != owner_id):
        raise SessionNotFound(session_id)
    revoke_one(
        session,
        login,
        actor=actor,
        action="session.revoke",
        target=f"session:{login.id}",
        details={"user_id": login.user_id},
        now=moment,
    )
    return login


def revoke_sessions_of(
    session: Session, user_id: int, now: datetime, keep_session_id: int | None = None
) -> int:
    """Revoke every session of the user but `keep_session_id`, unaudited; how many."""
    return revoke_all_of_user(session, LoginSession, user_id, now, keep_session_id)


def revoke_all_sessions(
    *,
    session: Session,
    user_id: int,
    actor: Actor,
    keep_session_id: int | None = None,
    now: datetime | None = None,
) -> int:
    """End every session of a user ("log out everywhere"), maybe keeping the current one.

    Returns:
        How many sessions were revoked.

    Raises:
        UserNotFound: no such user.
    """
    moment = clock(now)
    user = get_user(session=session, user_id=user_id)
    count = revoke_sessions_of(session, user.id, moment, keep_session_id)
    record_audit(
        session=session,
        actor=actor,
        action="session.revoke_all",
        target=f"user:{user.id}",
        details={"revoked": count, "kept_session_id": keep_session_id},
        at=moment,
    )
    return count
