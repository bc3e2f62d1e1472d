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

Parallel guesses must not slip past the lockout: the failure count is
bumped by one atomic ``UPDATE … SET failed_logins = failed_logins + 1
RETURNING`` (never read, add, write back around a ~100 ms argon2 check), and
on PostgreSQL the user row is taken ``FOR UPDATE`` before the check, so
concurrent logins of one user queue and each sees the lock the previous one
set. SQLite ignores ``FOR UPDATE`` but serialises writers; there a success
clears the count only if no lockout was set meanwhile (a conditional
``UPDATE``), so a right guess racing wrong ones cannot undo a lockout.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from cloud.users import passwords
from cloud.users._common import (
    DEFAULT_SETTINGS,
    MAX_TOKEN_CHARS,
    UserPrincipal,
    UserSettings,
    clock,
    digest,
    get_user,
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
    user = _user_for_login(session, address) if len(address) <= EMAIL_MAX_LENGTH else None
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
    if not _clear_failures(session, user, moment):
        logger.info("login refused: user %d was locked during the check", user.id)
        assert user.locked_until is not None
        return LoginAttempt(None, AccountLocked(user.locked_until))
    if passwords.needs_rehash(user.password_hash, hasher=hasher):
        # The parameters changed since this hash was made: store a current one.
        user.password_hash = passwords.hash_password(password, hasher=hasher)
        logger.info("rehashed the password of user %d with current parameters", user.id)
    session.flush()
    return LoginAttempt(user)


def _user_for_login(session: Session, address: str) -> User | None:
    # FOR UPDATE (PostgreSQL): concurrent logins of one user wait for this
    # one's commit, then read the count and lock it left. `populate_existing`
    # so a user already in the session is refreshed from the locked row.
    return session.scalars(
        select(User)
        .where(User.email == address)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def _clear_failures(session: Session, user: User, now: datetime) -> bool:
    """Reset the count after a right password, unless a lockout began meanwhile."""
    cleared = session.execute(
        update(User)
        .where(User.id == user.id, or_(User.locked_until.is_(None), User.locked_until <= now))
        .values(failed_logins=0, locked_until=None, last_login_at=now)
        .returning(User.id)
        .execution_options(synchronize_session=False)
    ).first()
    if cleared is None:
        session.refresh(user)
        return False
    for name, value in (("failed_logins", 0), ("locked_until", None), ("last_login_at", now)):
        set_committed_value(user, name, value)
    return True


def _count_failure(
    session: Session, user: User, now: datetime, actor: Actor, settings: UserSettings
) -> None:
    # Atomic in the database: two wrong guesses at once count two.
    count = session.execute(
        update(User)
        .where(User.id == user.id)
        .values(failed_logins=User.failed_logins + 1)
        .returning(User.failed_logins)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    set_committed_value(user, "failed_logins", count)
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
