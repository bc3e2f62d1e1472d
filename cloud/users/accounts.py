"""User accounts: create and invite, profile, role, disable and enable, passwords,
and what a customer owns.

Every change appends its audit entry in the caller's transaction. Changes
that take rights away end the credentials at once: disabling a user revokes
its sessions, API tokens and pending links; a role change revokes the tokens
whose scopes the new role lacks; a password change or reset logs out
everywhere else. The last active admin can be neither disabled nor demoted.

Invitations and resets go out as single-use links (`one_time_tokens`) in the
mail outbox; a reset request answers nothing about whether the address has an
account, and at most `UserSettings.max_pending_resets` links are valid at once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.core.db import constraint_violation
from cloud.core.exceptions import InvalidInput
from cloud.users import _ownership, one_time_tokens, passwords
from cloud.users._common import (
    DEFAULT_SETTINGS,
    UserSettings,
    check_page,
    clock,
    get_user,
    normalize_email,
    user_by_email,
)
from cloud.users.audit import Actor, record_audit
from cloud.users.exceptions import (
    EmailAlreadyRegistered,
    InvalidCredentials,
    InvalidEmail,
    InvalidOneTimeToken,
    InvalidRole,
    LastAdmin,
    UserNotActive,
)
from cloud.users.mail import enqueue_mail
from cloud.users.models import OneTimeToken, OneTimeTokenPurpose, User, UserState
from cloud.users.policies import ROLES, Role, permissions_of
from cloud.users.sessions import revoke_sessions_of
from cloud.users.tokens import active_tokens_of, revoke_tokens_of

__all__ = [
    "accept_invite",
    "change_password",
    "create_user",
    "customer_account_numbers",
    "customer_meter_serials",
    "disable_user",
    "enable_user",
    "invite_user",
    "list_users",
    "request_password_reset",
    "reset_password",
    "set_role",
    "update_profile",
]

logger = logging.getLogger(__name__)


# --- checks ------------------------------------------------------------------------


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRole(role, ROLES)
    return role


def _check_display_name(display_name: str) -> str:
    name = display_name.strip()
    if not 1 <= len(name) <= 200 or any(ord(ch) < 32 for ch in name):
        raise InvalidInput("display_name: 1-200 printable characters")
    return name


def _check_new_user(email: str, display_name: str, role: str) -> tuple[str, str]:
    """The stored address and display name of a user to create; the role checked."""
    address = normalize_email(email)
    name = _check_display_name(display_name)
    _check_role(role)
    return address, name


def _check_link_template(link_template: str) -> None:
    if link_template.count("{token}") != 1:
        raise InvalidInput("link_template must contain {token} exactly once")


def _add_user(session: Session, user: User) -> User:
    if user_by_email(session, user.email) is not None:
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


def _set_password(user: User, password: str, hasher: PasswordHasher, now: datetime) -> None:
    user.password_hash = passwords.hash_password(password, hasher=hasher)
    user.password_changed_at = now


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
    moment = clock(now)
    address, name = _check_new_user(email, display_name, role)
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
    check_page(limit, offset)
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
    moment = clock(now)
    address, name = _check_new_user(email, display_name, role)
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
    token = one_time_tokens.issue(
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
    moment = clock(now)
    row = one_time_tokens.peek(session, token, OneTimeTokenPurpose.INVITE, moment)
    user = get_user(session=session, user_id=row.user_id)
    if user.state != UserState.INVITED:
        raise InvalidOneTimeToken(OneTimeTokenPurpose.INVITE)
    passwords.check_password_policy(password, email=user.email)
    one_time_tokens.use(session, row, OneTimeTokenPurpose.INVITE, moment)
    _set_password(user, password, hasher, moment)
    user.state = UserState.ACTIVE
    record_audit(
        session=session,
        actor=Actor.of_user(user, ip=ip, request_id=request_id),
        action="user.invite_accepted",
        target=f"user:{user.id}",
        at=moment,
    )
    return user


def disable_user(
    *, session: Session, user_id: int, actor: Actor, now: datetime | None = None
) -> User:
    """Disable a user: no login, every session and API token revoked, links voided.

    Raises:
        UserNotFound: no such user.
        LastAdmin: it is the last active admin.
    """
    moment = clock(now)
    user = get_user(session=session, user_id=user_id)
    _ensure_admin_remains(session, user)
    previous, user.state = user.state, UserState.DISABLED
    sessions_revoked = revoke_sessions_of(session, user.id, moment)
    tokens_revoked = revoke_tokens_of(session, user.id, moment)
    one_time_tokens.void(session, user.id, moment)
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
    moment = clock(now)
    _check_role(role)
    user = get_user(session=session, user_id=user_id)
    if role == user.role:
        return user
    if role != Role.ADMIN:
        _ensure_admin_remains(session, user)
    previous, user.role = user.role, role
    allowed = permissions_of(role)
    revoked = 0
    for token in active_tokens_of(session, user.id, moment):
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
    moment = clock(now)
    user = get_user(session=session, user_id=user_id)
    if user.state != UserState.ACTIVE or user.password_hash is None:
        raise UserNotActive(user.id, user.state)
    if len(current_password) > passwords.MAX_LENGTH or not passwords.verify_password(
        user.password_hash, current_password, hasher=hasher
    ):
        raise InvalidCredentials()
    passwords.check_password_policy(new_password, email=user.email)
    _set_password(user, new_password, hasher, moment)
    revoked = revoke_sessions_of(session, user.id, moment, keep_session_id)
    one_time_tokens.void(session, user.id, moment, OneTimeTokenPurpose.PASSWORD_RESET)
    record_audit(
        session=session,
        actor=actor,
        action="user.password_change",
        target=f"user:{user.id}",
        details={"sessions_revoked": revoked},
        at=moment,
    )
    return user


def _pending_resets(session: Session, user_id: int, now: datetime) -> int:
    pending = session.scalar(
        select(func.count())
        .select_from(OneTimeToken)
        .where(
            OneTimeToken.user_id == user_id,
            OneTimeToken.purpose == OneTimeTokenPurpose.PASSWORD_RESET,
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > now,
        )
    )
    return pending or 0


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
    moment = clock(now)
    _check_link_template(link_template)
    try:
        address = normalize_email(email)
    except InvalidEmail:
        return
    user = user_by_email(session, address)
    if user is None or user.state != UserState.ACTIVE:
        logger.info("password reset requested for an unknown or inactive address")
        return
    pending = _pending_resets(session, user.id, moment)
    if pending and pending >= settings.max_pending_resets:
        logger.warning("password reset for user %d not sent: %d links pending", user.id, pending)
        return
    token = one_time_tokens.issue(
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
    moment = clock(now)
    purpose = OneTimeTokenPurpose.PASSWORD_RESET
    row = one_time_tokens.peek(session, token, purpose, moment)
    user = get_user(session=session, user_id=row.user_id)
    if user.state != UserState.ACTIVE:
        raise InvalidOneTimeToken(purpose)
    passwords.check_password_policy(new_password, email=user.email)
    one_time_tokens.use(session, row, purpose, moment)
    one_time_tokens.void(session, user.id, moment, purpose)
    _set_password(user, new_password, hasher, moment)
    user.failed_logins, user.locked_until = 0, None
    revoked = revoke_sessions_of(session, user.id, moment)
    record_audit(
        session=session,
        actor=Actor.of_user(user, ip=ip, request_id=request_id),
        action="user.password_reset",
        target=f"user:{user.id}",
        details={"sessions_revoked": revoked},
        at=moment,
    )
    return user


# --- customers -----------------------------------------------------------------------------


def customer_meter_serials(
    *, session: Session, user_id: int, at: datetime | None = None
) -> frozenset[str]:
    """Serials of the meters linked now (or at `at`) to accounts the user holds.

    What a customer's readings and fleet queries must be filtered by.
    """
    return _ownership.meter_serials(session=session, user_id=user_id, at=clock(at) if at else None)


def customer_account_numbers(*, session: Session, user_id: int) -> frozenset[str]:
    """Numbers of the accounts the user holds."""
    return _ownership.account_numbers(session=session, user_id=user_id)
