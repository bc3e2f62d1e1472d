"""Users services: accounts, login, sessions, API tokens, one-time links, audit.

Plain functions with keyword-only arguments; the caller owns the transaction
(`cloud.core.db.unit_of_work`): these functions flush, never commit. Every
privileged action appends its `AuditEntry` in that same transaction, so the
action and its record commit or vanish together. Time comes in as `now`
(default: the clock), which is how tests move through lockouts and expiries.

Secrets: session tokens (``secrets.token_urlsafe(32)``, 256 bits), API tokens
(``vst_<12 hex prefix>_<256-bit secret>``) and invite/reset tokens are
returned once; only their SHA-256 is stored (see `cloud.users.models`).

Login (`authenticate`) does not raise: it returns a `LoginAttempt`, because a
failure must still be *recorded* (failed-login count, lockout) and a unit of
work rolls back when its block raises. The caller commits, then calls
`LoginAttempt.user_or_raise()`. An unknown email costs one argon2
verification of a dummy hash, like a known one, and gets the same error.

Sessions expire when idle for `UserSettings.session_idle` (sliding: each use
moves `last_seen_at`, written at most once per `session_touch_interval` so a
busy console does not write on every request) and at `expires_at` whatever
the activity. A user who is disabled, or a role change that shrinks what a
token may do, ends the credentials at once; roles are read from the user
row on every request, never cached in the session.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Literal, cast

from argon2 import PasswordHasher
from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.core.db import constraint_violation, utc_now
from cloud.core.exceptions import InvalidInput, NaiveTimestamp
from cloud.users import _ownership, passwords
from cloud.users.exceptions import (
    AccountLocked,
    ApiTokenNotFound,
    AuthenticationFailed,
    EmailAlreadyRegistered,
    InvalidApiToken,
    InvalidCredentials,
    InvalidEmail,
    InvalidOneTimeToken,
    InvalidRole,
    InvalidScopes,
    InvalidSession,
    InvalidTokenExpiry,
    LastAdmin,
    SessionNotFound,
    UserDisabled,
    UserNotActive,
    UserNotFound,
)
from cloud.users.mail import EMAIL_PATTERN, enqueue_mail
from cloud.users.models import (
    EMAIL_MAX_LENGTH,
    ApiToken,
    AuditEntry,
    LoginSession,
    OneTimeToken,
    OneTimeTokenPurpose,
    User,
    UserState,
)
from cloud.users.policies import PERMISSIONS, ROLES, Role, permissions_of

__all__ = [
    "API_TOKEN_PATTERN",
    "DEFAULT_SETTINGS",
    "MAX_PAGE",
    "Actor",
    "LoginAttempt",
    "UserPrincipal",
    "UserSettings",
    "accept_invite",
    "authenticate",
    "change_password",
    "create_api_token",
    "create_user",
    "customer_account_numbers",
    "customer_meter_serials",
    "disable_user",
    "enable_user",
    "get_session_principal",
    "get_user",
    "invite_user",
    "list_api_tokens",
    "list_audit",
    "list_sessions",
    "list_users",
    "normalize_email",
    "record_audit",
    "request_password_reset",
    "reset_password",
    "revoke_all_sessions",
    "revoke_api_token",
    "revoke_session",
    "set_role",
    "start_session",
    "update_profile",
    "verify_api_token",
]

logger = logging.getLogger(__name__)

API_TOKEN_PATTERN = re.compile(r"^vst_(?P<prefix>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
_ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_MAX_SESSION_TOKEN_CHARS = 128
MAX_PAGE = 500
_MAX_PAGE = MAX_PAGE


@dataclass(frozen=True)
class UserSettings:
    """The security parameters (docs/users.md explains the defaults)."""

    max_failed_logins: int = 5
    lockout: timedelta = timedelta(minutes=15)
    session_idle: timedelta = timedelta(minutes=30)
    session_lifetime: timedelta = timedelta(hours=12)
    session_touch_interval: timedelta = timedelta(minutes=1)
    invite_validity: timedelta = timedelta(days=7)
    reset_validity: timedelta = timedelta(hours=1)
    max_pending_resets: int = 3
    token_max_lifetime: timedelta = timedelta(days=365)
    token_touch_interval: timedelta = timedelta(minutes=1)


DEFAULT_SETTINGS = UserSettings()


@dataclass(frozen=True)
class Actor:
    """Who does something, for the audit log: from the request's principal.

    Attributes:
        subject: the user's email, ``token:<prefix>``, ``system`` or ``anonymous``.
        user_id: the acting user, if any.
        ip: the client address the request came from.
        request_id: the request id of the structured logs.
    """

    subject: str
    user_id: int | None = None
    ip: str | None = None
    request_id: str | None = None

    @classmethod
    def system(cls) -> Actor:
        """The command line or a background job."""
        return cls("system")

    @classmethod
    def anonymous(cls, *, ip: str | None = None, request_id: str | None = None) -> Actor:
        return cls("anonymous", ip=ip, request_id=request_id)

    @classmethod
    def of_user(cls, user: User, *, ip: str | None = None, request_id: str | None = None) -> Actor:
        return cls(user.email, user.id, ip, request_id)


@dataclass(frozen=True)
class UserPrincipal:
    """An authenticated caller, field for field what `cloud.core.authz.Principal` needs.

    Attributes:
        subject: the user's email.
        roles: the user's role, as read now from its row.
        kind: ``session`` or ``token``.
        user_id: the user.
        scopes: an API token's scopes; None for a session (the role decides).
        credential_id: the session or token id (to revoke "this" session).
    """

    subject: str
    roles: frozenset[str]
    kind: Literal["session", "token"]
    user_id: int
    scopes: frozenset[str] | None
    credential_id: int


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


# --- helpers -----------------------------------------------------------------


def _clock(now: datetime | None) -> datetime:
    if now is None:
        return utc_now()
    if now.tzinfo is None or now.utcoffset() is None:
        raise NaiveTimestamp("now")
    return now


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(item) for item in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def normalize_email(email: str) -> str:
    """The stored form: trimmed, lower-cased (so uniqueness ignores case).

    Raises:
        InvalidEmail: not an address (one @, a dotted domain, ≤ 254 characters).
    """
    normalized = email.strip().lower()
    if len(normalized) > EMAIL_MAX_LENGTH or not EMAIL_PATTERN.fullmatch(normalized):
        raise InvalidEmail(email)
    return normalized


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRole(role, ROLES)
    return role


def _check_display_name(display_name: str) -> str:
    name = display_name.strip()
    if not 1 <= len(name) <= 200 or any(ord(ch) < 32 for ch in name):
        raise InvalidInput("display_name: 1-200 printable characters")
    return name


def _check_link_template(link_template: str) -> None:
    if link_template.count("{token}") != 1:
        raise InvalidInput("link_template must contain {token} exactly once")


def get_user(*, session: Session, user_id: int) -> User:
    """The user with this id.

    Raises:
        UserNotFound: no such user.
    """
    user = session.get(User, user_id)
    if user is None:
        raise UserNotFound(user_id)
    return user


def _user_by_email(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == email)).one_or_none()


def _add_user(session: Session, user: User) -> User:
    if _user_by_email(session, user.email) is not None:
        raise EmailAlreadyRegistered(user.email)
    session.add(user)
    try:
        session.flush()
    except IntegrityError as error:
        # Two admins creating the same address at once: the unique index decides.
        if constraint_violation(error).kind == "unique":
            raise EmailAlreadyRegistered(user.email) from error
        raise
    return user


def _ensure_admin_remains(session: Session, user: User) -> None:
    """Refuse to disable or demote the last active admin."""
    if user.role != Role.ADMIN or user.state != UserState.ACTIVE:
        return
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == Role.ADMIN, User.state == UserState.ACTIVE, User.id != user.id)
    )
    if not others:
        raise LastAdmin(user.id)


# --- the audit log -------------------------------------------------------------


def record_audit(
    *,
    session: Session,
    actor: Actor,
    action: str,
    target: str | None = None,
    details: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append an entry to the audit log (in the caller's transaction).

    Args:
        session: the unit of work's session, the one doing the action.
        actor: who, and from where.
        action: a dotted verb, ``user.create``.
        target: what it was done to, ``user:12``.
        details: JSON-able facts (dates become ISO strings); never secrets.
        at: when (default now).

    Raises:
        InvalidInput: an action that is not a dotted lower-case verb.
    """
    if len(action) > 64 or not _ACTION_PATTERN.fullmatch(action):
        raise InvalidInput(f"audit action {action[:64]!r}: dotted lower-case words")
    entry = AuditEntry(
        at=_clock(at),
        actor_user_id=actor.user_id,
        actor=actor.subject[:320],
        action=action,
        target=target[:200] if target else None,
        details=_jsonable(details) if details is not None else None,
        ip=actor.ip[:45] if actor.ip else None,
        request_id=actor.request_id[:64] if actor.request_id else None,
    )
    session.add(entry)
    session.flush()
    return entry


def list_audit(
    *,
    session: Session,
    actor_user_id: int | None = None,
    action: str | None = None,
    action_prefix: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditEntry]:
    """Audit entries, newest first, filtered and paged.

    Args:
        actor_user_id, action, target: exact matches.
        action_prefix: ``user.`` gives every user action.
        since, until: ``since <= at < until``.
        limit: 1 … 500; offset ≥ 0.

    Raises:
        InvalidInput: limit or offset out of range.
    """
    if not 1 <= limit <= _MAX_PAGE or offset < 0:
        raise InvalidInput(f"limit must be 1-{_MAX_PAGE} and offset ≥ 0")
    query = select(AuditEntry)
    if actor_user_id is not None:
        query = query.where(AuditEntry.actor_user_id == actor_user_id)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if action_prefix is not None:
        escaped = action_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(AuditEntry.action.like(f"{escaped}%", escape="\\"))
    if target is not None:
        query = query.where(AuditEntry.target == target)
    if since is not None:
        query = query.where(AuditEntry.at >= _clock(since))
    if until is not None:
        query = query.where(AuditEntry.at < _clock(until))
    query = query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))


# --- users -------------------------------------------------------------------------


def create_user(
    *,
    session: Session,
    email: str,
    display_name: str,
    role: str,
    password: str,
    actor: Actor,
    hasher: PasswordHasher = passwords.DEFAULT_HASHER,
    now: datetime | None = None,
) -> User:
    """Create an active user with a password.

    Raises:
        InvalidEmail, InvalidRole, InvalidInput: bad fields.
        WeakPassword: the password breaks the policy (names the rule).
        EmailAlreadyRegistered: the address is taken, in any letter case.
    """
    moment = _clock(now)
    address = normalize_email(email)
    name = _check_display_name(display_name)
    _check_role(role)
    passwords.check_password_policy(password, email=address)
    user = _add_user(
        session,
        User(
            email=address,
            display_name=name,
            password_hash=passwords.hash_password(password, hasher=hasher),
            role=role,
            state=UserState.ACTIVE,
            failed_logins=0,
            password_changed_at=moment,
            created_at=moment,
        ),
    )
    record_audit(
        session=session,
        actor=actor,
        action="user.create",
        target=f"user:{user.id}",
        details={"email": address, "role": role},
        at=moment,
    )
    logger.info("created user %d (%s)", user.id, role)
    return user


def list_users(
    *,
    session: Session,
    role: str | None = None,
    state: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[User]:
    """Users ordered by email, optionally of one role or state."""
    if not 1 <= limit <= _MAX_PAGE or offset < 0:
        raise InvalidInput(f"limit must be 1-{_MAX_PAGE} and offset ≥ 0")
    query = select(User)
    if role is not None:
        query = query.where(User.role == _check_role(role))
    if state is not None:
        query = query.where(User.state == state)
    return list(session.scalars(query.order_by(User.email).limit(limit).offset(offset)))


def update_profile(
    *, session: Session, user_id: int, display_name: str, actor: Actor, now: datetime | None = None
) -> User:
    """Change a user's display name.

    Raises:
        UserNotFound, InvalidInput.
    """
    user = get_user(session=session, user_id=user_id)
    name = _check_display_name(display_name)
    if name != user.display_name:
        previous, user.display_name = user.display_name, name
        record_audit(
            session=session,
            actor=actor,
            action="user.update_profile",
            target=f"user:{user.id}",
            details={"display_name": {"from": previous, "to": name}},
            at=now,
        )
    return user


def _new_one_time_token(
    session: Session, user: User, purpose: OneTimeTokenPurpose, validity: timedelta, now: datetime
) -> str:
    token = secrets.token_urlsafe(32)
    session.add(
        OneTimeToken(
            token_hash=_digest(token),
            user_id=user.id,
            purpose=purpose,
            created_at=now,
            expires_at=now + validity,
        )
    )
    session.flush()
    return token


def _use_one_time_token(
    session: Session, row: OneTimeToken, purpose: OneTimeTokenPurpose, now: datetime
) -> None:
    """Mark a token from `_peek_one_time_token` used.

    Single use even against a concurrent request with the same link: only the
    transaction whose UPDATE still finds it unused gets it.
    """
    used = cast(
        CursorResult[Any],
        session.execute(
            update(OneTimeToken)
            .where(OneTimeToken.id == row.id, OneTimeToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ),
    )
    if used.rowcount != 1:
        raise InvalidOneTimeToken(purpose)
    row.used_at = now


def _void_one_time_tokens(
    session: Session, user_id: int, now: datetime, purpose: OneTimeTokenPurpose | None = None
) -> None:
    query = update(OneTimeToken).where(
        OneTimeToken.user_id == user_id, OneTimeToken.used_at.is_(None)
    )
    if purpose is not None:
        query = query.where(OneTimeToken.purpose == purpose)
    session.execute(query.values(used_at=now).execution_options(synchronize_session=False))


def invite_user(
    *,
    session: Session,
    email: str,
    display_name: str,
    role: str,
    actor: Actor,
    link_template: str,
    settings: UserSettings = DEFAULT_SETTINGS,
    now: datetime | None = None,
) -> tuple[User, str]:
    """Create an invited user (no password) and mail them a link to set one.

    Args:
        link_template: the console's accept page, with ``{token}`` in it.

    Returns:
        The user and the invite token (also in the queued mail); only its hash is stored.

    Raises:
        InvalidEmail, InvalidRole, InvalidInput, EmailAlreadyRegistered.
    """
    moment = _clock(now)
    address = normalize_email(email)
    name = _check_display_name(display_name)
    _check_role(role)
    _check_link_template(link_template)
    user = _add_user(
        session,
        User(
            email=address,
            display_name=name,
            password_hash=None,
            role=role,
            state=UserState.INVITED,
            failed_logins=0,
            created_at=moment,
        ),
    )
    token = _new_one_time_token(
        session, user, OneTimeTokenPurpose.INVITE, settings.invite_validity, moment
    )
    days = settings.invite_validity.days or 1
    enqueue_mail(
        session=session,
        to=address,
        subject="Your voltstack console account",
        body=(
            f"Hello {name},\n\n{actor.subject} invited you to the voltstack console "
            f"as {role}.\nChoose your password here (valid {days} day(s), once):\n\n"
            f"{link_template.replace('{token}', token)}\n\n"
            "If you did not expect this, ignore this mail.\n"
        ),
        now=moment,
    )
    record_audit(
        session=session,
        actor=actor,
        action="user.invite",
        target=f"user:{user.id}",
        details={"email": address, "role": role},
        at=moment,
    )
    return user, token


def accept_invite(
    *,
    session: Session,
    token: str,
    password: str,
    ip: str | None = None,
    request_id: str | None = None,
    hasher: PasswordHasher = passwords.DEFAULT_HASHER,
    now: datetime | None = None,
) -> User:
    """Set the invited user's first password and activate it.

    Raises:
        InvalidOneTimeToken: forged, used or expired link.
        WeakPassword: the password breaks the policy (the link stays usable).
    """
    moment = _clock(now)
    row = _peek_one_time_token(session, token, OneTimeTokenPurpose.INVITE, moment)
    user = get_user(session=session, user_id=row.user_id)
    if user.state != UserState.INVITED:
        raise InvalidOneTimeToken(OneTimeTokenPurpose.INVITE)
    passwords.check_password_policy(password, email=user.email)
    _use_one_time_token(session, row, OneTimeTokenPurpose.INVITE, moment)
    user.password_hash = passwords.hash_password(password, hasher=hasher)
    user.password_changed_at = moment
    user.state = UserState.ACTIVE
    record_audit(
        session=session,
        actor=Actor.of_user(user, ip=ip, request_id=request_id),
        action="user.invite_accepted",
        target=f"user:{user.id}",
        at=moment,
    )
    return user


def _peek_one_time_token(
    session: Session, token: str, purpose: OneTimeTokenPurpose, now: datetime
) -> OneTimeToken:
    """The valid, unused token row, without using it (so a weak password can be retried)."""
    if not token or len(token) > _MAX_SESSION_TOKEN_CHARS:
        raise InvalidOneTimeToken(purpose)
    row = session.scalars(
        select(OneTimeToken).where(OneTimeToken.token_hash == _digest(token))
    ).one_or_none()
    if row is None or row.purpose != purpose or row.used_at is not None or now >= row.expires_at:
        raise InvalidOneTimeToken(purpose)
    return row


def disable_user(
    *, session: Session, user_id: int, actor: Actor, now: datetime | None = None
) -> User:
    """Disable a user: no login, every session and API token revoked, links voided.

    Raises:
        UserNotFound: no such user.
        LastAdmin: it is the last active admin.
    """
    moment = _clock(now)
    user = get_user(session=session, user_id=user_id)
    _ensure_admin_remains(session, user)
    previous, user.state = user.state, UserState.DISABLED
    sessions_revoked = _revoke_sessions(session, user.id, moment)
    tokens_revoked = _revoke_tokens(session, user.id, moment)
    _void_one_time_tokens(session, user.id, moment)
    record_audit(
        session=session,
        actor=actor,
        action="user.disable",
        target=f"user:{user.id}",
        details={
            "previous_state": previous,
            "sessions_revoked": sessions_revoked,
            "tokens_revoked": tokens_revoked,
        },
        at=moment,
    )
    logger.info("disabled user %d", user.id)
    return user


def enable_user(
    *, session: Session, user_id: int, actor: Actor, now: datetime | None = None
) -> User:
    """Re-enable a disabled user (back to invited if it never set a password).

    Raises:
        UserNotFound: no such user.
    """
    user = get_user(session=session, user_id=user_id)
    if user.state != UserState.DISABLED:
        return user
    user.state = UserState.ACTIVE if user.password_hash else UserState.INVITED
    user.failed_logins, user.locked_until = 0, None
    record_audit(
        session=session,
        actor=actor,
        action="user.enable",
        target=f"user:{user.id}",
        details={"state": user.state},
        at=now,
    )
    return user


def set_role(
    *, session: Session, user_id: int, role: str, actor: Actor, now: datetime | None = None
) -> User:
    """Give a user another role; API tokens with scopes beyond it are revoked.

    Raises:
        UserNotFound, InvalidRole.
        LastAdmin: it would demote the last active admin.
    """
    moment = _clock(now)
    _check_role(role)
    user = get_user(session=session, user_id=user_id)
    if role == user.role:
        return user
    if role != Role.ADMIN:
        _ensure_admin_remains(session, user)
    previous, user.role = user.role, role
    allowed = permissions_of(role)
    revoked = 0
    for token in _active_tokens(session, user.id, moment):
        if not set(token.scopes) <= allowed:
            token.revoked_at = moment
            revoked += 1
    session.flush()
    record_audit(
        session=session,
        actor=actor,
        action="user.set_role",
        target=f"user:{user.id}",
        details={"from": previous, "to": role, "tokens_revoked": revoked},
        at=moment,
    )
    return user


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
    moment = _clock(now)
    address = email.strip().lower()
    user = _user_by_email(session, address) if len(address) <= EMAIL_MAX_LENGTH else None
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
    moment = _clock(now)
    if user.state != UserState.ACTIVE:
        raise UserNotActive(user.id, user.state)
    token = secrets.token_urlsafe(32)
    login = LoginSession(
        token_hash=_digest(token),
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
    moment = _clock(now)
    if not token or len(token) > _MAX_SESSION_TOKEN_CHARS:
        raise InvalidSession("unknown")
    found = session.execute(
        select(LoginSession, User)
        .join(User, User.id == LoginSession.user_id)
        .where(LoginSession.token_hash == _digest(token))
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
        query = query.where(*_session_active(settings, _clock(now)))
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
    moment = _clock(now)
    login = session.get(LoginSession, session_id)
    if login is None or (owner_id is not None and login.user_id != owner_id):
        raise SessionNotFound(session_id)
    if login.revoked_at is None:
        login.revoked_at = moment
        record_audit(
            session=session,
            actor=actor,
            action="session.revoke",
            target=f"session:{login.id}",
            details={"user_id": login.user_id},
            at=moment,
        )
    return login


def _revoke_sessions(
    session: Session, user_id: int, now: datetime, keep_session_id: int | None = None
) -> int:
    query = update(LoginSession).where(
        LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None)
    )
    if keep_session_id is not None:
        query = query.where(LoginSession.id != keep_session_id)
    result = cast(
        CursorResult[Any],
        session.execute(
            query.values(revoked_at=now).execution_options(synchronize_session="fetch")
        ),
    )
    return int(result.rowcount)


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
    moment = _clock(now)
    user = get_user(session=session, user_id=user_id)
    count = _revoke_sessions(session, user.id, moment, keep_session_id)
    record_audit(
        session=session,
        actor=actor,
        action="session.revoke_all",
        target=f"user:{user.id}",
        details={"revoked": count, "kept_session_id": keep_session_id},
        at=moment,
    )
    return count


# --- passwords -------------------------------------------------------------------------


def change_password(
    *,
    session: Session,
    user_id: int,
    current_password: str,
    new_password: str,
    actor: Actor,
    keep_session_id: int | None = None,
    hasher: PasswordHasher = passwords.DEFAULT_HASHER,
    now: datetime | None = None,
) -> User:
    """Change one's password; every other session is revoked.

    Args:
        keep_session_id: the session making the change stays logged in.

    Raises:
        InvalidCredentials: the current password is wrong.
        WeakPassword: the new one breaks the policy.
        UserNotActive: the user is not active.
    """
    moment = _clock(now)
    user = get_user(session=session, user_id=user_id)
    if user.state != UserState.ACTIVE or user.password_hash is None:
        raise UserNotActive(user.id, user.state)
    if len(current_password) > passwords.MAX_LENGTH or not passwords.verify_password(
        user.password_hash, current_password, hasher=hasher
    ):
        raise InvalidCredentials()
    passwords.check_password_policy(new_password, email=user.email)
    user.password_hash = passwords.hash_password(new_password, hasher=hasher)
    user.password_changed_at = moment
    revoked = _revoke_sessions(session, user.id, moment, keep_session_id)
    _void_one_time_tokens(session, user.id, moment, OneTimeTokenPurpose.PASSWORD_RESET)
    record_audit(
        session=session,
        actor=actor,
        action="user.password_change",
        target=f"user:{user.id}",
        details={"sessions_revoked": revoked},
        at=moment,
    )
    return user


def request_password_reset(
    *,
    session: Session,
    email: str,
    link_template: str,
    ip: str | None = None,
    request_id: str | None = None,
    settings: UserSettings = DEFAULT_SETTINGS,
    now: datetime | None = None,
) -> None:
    """Mail a reset link if the address belongs to an active user.

    Returns nothing and raises nothing about the address, whether it exists
    or not: the answer must not reveal who has an account. At most
    `settings.max_pending_resets` valid links exist at once per user, so the
    form cannot be used to flood someone's mailbox.

    Raises:
        InvalidInput: `link_template` lacks ``{token}`` (a programming error).
    """
    moment = _clock(now)
    _check_link_template(link_template)
    try:
        address = normalize_email(email)
    except InvalidEmail:
        return
    user = _user_by_email(session, address)
    if user is None or user.state != UserState.ACTIVE:
        logger.info("password reset requested for an unknown or inactive address")
        return
    pending = session.scalar(
        select(func.count())
        .select_from(OneTimeToken)
        .where(
            OneTimeToken.user_id == user.id,
            OneTimeToken.purpose == OneTimeTokenPurpose.PASSWORD_RESET,
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > moment,
        )
    )
    if pending and pending >= settings.max_pending_resets:
        logger.warning("password reset for user %d not sent: %d links pending", user.id, pending)
        return
    token = _new_one_time_token(
        session, user, OneTimeTokenPurpose.PASSWORD_RESET, settings.reset_validity, moment
    )
    minutes = int(settings.reset_validity.total_seconds() // 60)
    enqueue_mail(
        session=session,
        to=user.email,
        subject="Reset your voltstack password",
        body=(
            f"Hello {user.display_name},\n\nsomeone (we hope you) asked to reset your "
            f"voltstack password.\nChoose a new one here (valid {minutes} minutes, once):\n\n"
            f"{link_template.replace('{token}', token)}\n\n"
            "If it was not you, ignore this mail: your password stays as it is.\n"
        ),
        now=moment,
    )
    record_audit(
        session=session,
        actor=Actor.anonymous(ip=ip, request_id=request_id),
        action="user.password_reset_requested",
        target=f"user:{user.id}",
        at=moment,
    )


def reset_password(
    *,
    session: Session,
    token: str,
    new_password: str,
    ip: str | None = None,
    request_id: str | None = None,
    hasher: PasswordHasher = passwords.DEFAULT_HASHER,
    now: datetime | None = None,
) -> User:
    """Set a new password from a reset link; unlocks and logs out everywhere.

    Raises:
        InvalidOneTimeToken: forged, used or expired link, or the user is not active.
        WeakPassword: the new password breaks the policy (the link stays usable).
    """
    moment = _clock(now)
    row = _peek_one_time_token(session, token, OneTimeTokenPurpose.PASSWORD_RESET, moment)
    user = get_user(session=session, user_id=row.user_id)
    if user.state != UserState.ACTIVE:
        raise InvalidOneTimeToken(OneTimeTokenPurpose.PASSWORD_RESET)
    passwords.check_password_policy(new_password, email=user.email)
    _use_one_time_token(session, row, OneTimeTokenPurpose.PASSWORD_RESET, moment)
    _void_one_time_tokens(session, user.id, moment, OneTimeTokenPurpose.PASSWORD_RESET)
    user.password_hash = passwords.hash_password(new_password, hasher=hasher)
    user.password_changed_at = moment
    user.failed_logins, user.locked_until = 0, None
    revoked = _revoke_sessions(session, user.id, moment)
    record_audit(
        session=session,
        actor=Actor.of_user(user, ip=ip, request_id=request_id),
        action="user.password_reset",
        target=f"user:{user.id}",
        details={"sessions_revoked": revoked},
        at=moment,
    )
    return user


# --- API tokens --------------------------------------------------------------------------


def _active_tokens(session: Session, user_id: int, now: datetime) -> list[ApiToken]:
    return list(
        session.scalars(
            select(ApiToken).where(
                ApiToken.user_id == user_id,
                ApiToken.revoked_at.is_(None),
                ApiToken.expires_at > now,
            )
        )
    )


def _revoke_tokens(session: Session, user_id: int, now: datetime) -> int:
    result = cast(
        CursorResult[Any],
        session.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session="fetch")
        ),
    )
    return int(result.rowcount)


def _check_scopes(scopes: Iterable[str], role: str) -> frozenset[str]:
    wanted = frozenset(scopes)
    if not wanted:
        raise InvalidScopes("a token needs at least one scope", wanted)
    unknown = wanted - set(PERMISSIONS)
    if unknown:
        raise InvalidScopes(f"unknown scopes: {', '.join(sorted(unknown))}", wanted)
    beyond = wanted - permissions_of(role)
    if beyond:
        raise InvalidScopes(
            f"the owner's role {role!r} does not have: {', '.join(sorted(beyond))}", wanted
        )
    return wanted


def create_api_token(
    *,
    session: Session,
    owner_id: int,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime,
    actor: Actor,
    settings: UserSettings = DEFAULT_SETTINGS,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Issue a bearer token for integrations.

    Args:
        owner_id: the user the token acts as.
        name: what it is for ("SCADA export").
        scopes: permissions, a subset of the owner's role's.
        expires_at: required; in the future, at most `settings.token_max_lifetime` away.

    Returns:
        The token row and the secret ``vst_<prefix>_<secret>``, shown this once.

    Raises:
        UserNotFound, UserNotActive: bad owner.
        InvalidScopes: empty, unknown, or beyond the owner's role.
        InvalidTokenExpiry: past, or too far away.
        InvalidInput: empty or over-long name.
    """
    moment = _clock(now)
    owner = get_user(session=session, user_id=owner_id)
    if owner.state != UserState.ACTIVE:
        raise UserNotActive(owner.id, owner.state)
    label = name.strip()
    if not 1 <= len(label) <= 100:
        raise InvalidInput("name: 1-100 characters")
    granted = _check_scopes(scopes, owner.role)
    expiry = _clock(expires_at)
    if expiry <= moment:
        raise InvalidTokenExpiry("expires_at must be in the future")
    if expiry > moment + settings.token_max_lifetime:
        raise InvalidTokenExpiry(
            f"expires_at may be at most {settings.token_max_lifetime.days} days away"
        )
    prefix = secrets.token_hex(6)
    secret = f"vst_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken(
        prefix=prefix,
        token_hash=_digest(secret),
        name=label,
        user_id=owner.id,
        scopes=sorted(granted),
        created_at=moment,
        expires_at=expiry,
    )
    session.add(token)
    session.flush()
    record_audit(
        session=session,
        actor=actor,
        action="token.create",
        target=f"token:{token.id}",
        details={
            "owner_id": owner.id,
            "name": label,
            "prefix": prefix,
            "scopes": sorted(granted),
            "expires_at": expiry,
        },
        at=moment,
    )
    return token, secret


def verify_api_token(
    *,
    session: Session,
    token: str,
    settings: UserSettings = DEFAULT_SETTINGS,
    now: datetime | None = None,
) -> UserPrincipal:
    """Who holds this bearer token, with its scopes.

    Raises:
        InvalidApiToken: malformed, unknown, forged (hash mismatch), revoked,
            expired, or its owner is not active.
    """
    moment = _clock(now)
    match = API_TOKEN_PATTERN.fullmatch(token)
    if match is None:
        raise InvalidApiToken("malformed")
    found = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.prefix == match["prefix"])
    ).one_or_none()
    if found is None:
        raise InvalidApiToken("unknown")
    row, owner = found
    if not hmac.compare_digest(row.token_hash, _digest(token)):
        raise InvalidApiToken("forged")
    if row.revoked_at is not None:
        raise InvalidApiToken("revoked")
    if moment >= row.expires_at:
        raise InvalidApiToken("expired")
    if owner.state != UserState.ACTIVE:
        raise InvalidApiToken("owner_inactive")
    if row.last_used_at is None or moment - row.last_used_at >= settings.token_touch_interval:
        row.last_used_at = moment
        session.flush()
    return UserPrincipal(
        subject=owner.email,
        roles=frozenset({owner.role}),
        kind="token",
        user_id=owner.id,
        scopes=frozenset(row.scopes),
        credential_id=row.id,
    )


def revoke_api_token(
    *,
    session: Session,
    token_id: int,
    actor: Actor,
    owner_id: int | None = None,
    now: datetime | None = None,
) -> ApiToken:
    """Revoke a token at once.

    Args:
        owner_id: when set (``tokens:self``), the token must be this user's.

    Raises:
        ApiTokenNotFound: no such token, or not the owner's.
    """
    moment = _clock(now)
    token = session.get(ApiToken, token_id)
    if token is None or (owner_id is not None and token.user_id != owner_id):
        raise ApiTokenNotFound(token_id)
    if token.revoked_at is None:
        token.revoked_at = moment
        record_audit(
            session=session,
            actor=actor,
            action="token.revoke",
            target=f"token:{token.id}",
            details={"owner_id": token.user_id, "prefix": token.prefix},
            at=moment,
        )
    return token


def list_api_tokens(
    *,
    session: Session,
    owner_id: int | None = None,
    include_inactive: bool = False,
    now: datetime | None = None,
) -> list[ApiToken]:
    """Tokens (of one owner, or all), newest first; only usable ones unless asked."""
    query = select(ApiToken)
    if owner_id is not None:
        query = query.where(ApiToken.user_id == owner_id)
    if not include_inactive:
        moment = _clock(now)
        query = query.where(ApiToken.revoked_at.is_(None), ApiToken.expires_at > moment)
    return list(session.scalars(query.order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


# --- customers -----------------------------------------------------------------------------


def customer_meter_serials(
    *, session: Session, user_id: int, at: datetime | None = None
) -> frozenset[str]:
    """Serials of the meters linked now (or at `at`) to accounts the user holds.

    What a customer's readings and fleet queries must be filtered by.
    """
    return _ownership.meter_serials(session=session, user_id=user_id, at=_clock(at) if at else None)


def customer_account_numbers(*, session: Session, user_id: int) -> frozenset[str]:
    """Numbers of the accounts the user holds."""
    return _ownership.account_numbers(session=session, user_id=user_id)
