"""Tables of the users domain: users, login sessions, API tokens, one-time
tokens, the audit log and the mail outbox.

Secrets are never stored: session tokens, API tokens and invite/reset
tokens are 256-bit random values of which only the SHA-256 digest is kept
(hex, 64 characters). A fast hash is right here — unlike passwords, the
input has 256 bits of entropy, so nothing can be guessed from the digest;
passwords get argon2id (`cloud.users.passwords`).

The audit log is append-only, and the database itself holds us to it: a
trigger refuses UPDATE and DELETE on `audit_log` (PostgreSQL and SQLite;
TRUNCATE too on PostgreSQL). The migration creates the triggers; the DDL
below also runs on ``metadata.create_all`` so scratch databases agree.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    event,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.core.db import Base
from cloud.users.policies import ROLES

__all__ = [
    "AUDIT_LOG_TRIGGERS_POSTGRESQL",
    "AUDIT_LOG_TRIGGERS_SQLITE",
    "ApiToken",
    "AuditEntry",
    "LoginSession",
    "OneTimeToken",
    "OneTimeTokenPurpose",
    "OutboxMail",
    "User",
    "UserState",
]

# SQLite only aliases the rowid (and so autoincrements) for INTEGER PRIMARY KEY.
BigIntegerKey = BigInteger().with_variant(Integer(), "sqlite")
SHA256_HEX_LENGTH = 64
EMAIL_MAX_LENGTH = 254  # RFC 5321 path limit


class UserState(StrEnum):
    """Where a user is in its life."""

    INVITED = "invited"  # no password yet: accept_invite sets one
    ACTIVE = "active"
    DISABLED = "disabled"  # cannot log in; sessions and tokens revoked


class OneTimeTokenPurpose(StrEnum):
    INVITE = "invite"
    PASSWORD_RESET = "password_reset"


def _sql_list(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class User(Base):
    """A person who logs in to the console: staff or customer."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN ({_sql_list(ROLES)})", name="role_known"),
        CheckConstraint(
            f"state IN ({_sql_list([state.value for state in UserState])})", name="state_known"
        ),
        CheckConstraint("failed_logins >= 0", name="failed_logins_ge_0"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored lower-cased by the service: unique case-insensitively.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    # argon2id PHC string; None while invited.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    # Consecutive failed logins since the last success or lockout.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    locked_until: Mapped[datetime | None]
    password_changed_at: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    @property
    def active(self) -> bool:
        return self.state == UserState.ACTIVE

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, email={self.email!r}, role={self.role!r})"


class LoginSession(Base):
    """A console login: the cookie carries the token, we keep its SHA-256."""

    __tablename__ = "login_sessions"
    __table_args__ = (Index("ix_login_sessions_user_id_expires_at", "user_id", "expires_at"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    # Sliding idle expiry counts from here (updated at most once a minute).
    last_seen_at: Mapped[datetime]
    # Absolute expiry: no activity extends a session past it.
    expires_at: Mapped[datetime]
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    revoked_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"LoginSession(id={self.id!r}, user_id={self.user_id!r})"


class ApiToken(Base):
    """A bearer token for integrations: ``vst_<prefix>_<secret>``, stored hashed."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Public part of the token, for the look-up (and shown in lists).
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    name: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Permissions (a subset of the owner's role's, checked at creation).
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"ApiToken(id={self.id!r}, prefix={self.prefix!r}, user_id={self.user_id!r})"


class OneTimeToken(Base):
    """An invite or password-reset link: single use, expiring, stored hashed."""

    __tablename__ = "one_time_tokens"
    __table_args__ = (
        CheckConstraint(
            f"purpose IN ({_sql_list([p.value for p in OneTimeTokenPurpose])})",
            name="purpose_known",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class AuditEntry(Base):
    """One privileged action: who, what, on what, when, from where. Append-only."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor_user_id_at", "actor_user_id", "at"),
        Index("ix_audit_log_action_at", "action", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    at: Mapped[datetime]
    # No foreign key: the log outlives whatever it names, and must never be
    # rewritten by an ON DELETE SET NULL.
    actor_user_id: Mapped[int | None] = mapped_column(Integer)
    # "alice@example.com", "token:ab12cd34ef56", "system", "anonymous".
    actor: Mapped[str] = mapped_column(String(320))
    # Dotted verb: "user.create", "token.revoke", "auth.login".
    action: Mapped[str] = mapped_column(String(64))
    # "user:12", "session:40", "token:7"; None for actions without one.
    target: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ip: Mapped[str | None] = mapped_column(String(45))
    request_id: Mapped[str | None] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"AuditEntry(id={self.id!r}, action={self.action!r}, actor={self.actor!r})"


class OutboxMail(Base):
    """A mail waiting for (or done with) SMTP delivery; never deleted by delivery."""

    __tablename__ = "mail_outbox"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_ge_0"),
        Index("ix_mail_outbox_sent_at_next_attempt_at", "sent_at", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    to_address: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    subject: Mapped[str] = mapped_column(String(998))  # RFC 5322 line limit
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    # Not tried before this (backoff after failures; also a lease while sending).
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"OutboxMail(id={self.id!r}, to={self.to_address!r}, sent_at={self.sent_at!r})"


# --- the audit log refuses changes, in the database itself -------------------

AUDIT_LOG_TRIGGERS_POSTGRESQL = (
    """
    CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$
    """,
    """
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()
    """,
    """
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()
    """,
)
AUDIT_LOG_TRIGGERS_SQLITE = (
    """
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END
    """,
)

for _statement in AUDIT_LOG_TRIGGERS_POSTGRESQL:
    event.listen(
        AuditEntry.__table__,
        "after_create",
        DDL(_statement.replace("%", "%%")).execute_if(dialect="postgresql"),
    )
for _statement in AUDIT_LOG_TRIGGERS_SQLITE:
    event.listen(AuditEntry.__table__, "after_create", DDL(_statement).execute_if(dialect="sqlite"))
