"""Read and write models of the users domain for the API and console.

Built from ORM rows, never the other way. No schema carries a password
hash or a token hash; `ApiTokenCreated` carries the secret exactly once, in
the answer to its creation.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = [
    "Accepted",
    "ApiTokenCreate",
    "ApiTokenCreated",
    "ApiTokenRead",
    "AuditEntryRead",
    "CustomerMeters",
    "InviteAccept",
    "LoginAnswer",
    "LoginRequest",
    "LoginSessionRead",
    "Me",
    "OutboxMailRead",
    "OwnSessionRead",
    "PasswordChange",
    "PasswordResetConfirm",
    "PasswordResetRequest",
    "RoleChange",
    "UserCreate",
    "UserInvite",
    "UserRead",
]


class _ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class _StrictBody(BaseModel):
    """A body whose unknown fields are an error (and whose secrets are not stripped)."""

    model_config = ConfigDict(extra="forbid")


# Long enough for any passphrase, short enough that argon2 never hashes megabytes.
Password = Annotated[str, Field(min_length=1, max_length=1024)]
# A single-use link's token (`cloud.users.one_time_tokens`).
LinkToken = Annotated[str, Field(min_length=1, max_length=128)]


class _WriteModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class UserRead(_ReadModel):
    id: int
    email: str
    display_name: str
    role: str
    state: str
    locked_until: AwareDatetime | None
    password_changed_at: AwareDatetime | None
    last_login_at: AwareDatetime | None
    created_at: AwareDatetime


class LoginSessionRead(_ReadModel):
    id: int
    user_id: int
    created_at: AwareDatetime
    last_seen_at: AwareDatetime
    expires_at: AwareDatetime
    ip: str | None
    user_agent: str | None
    revoked_at: AwareDatetime | None


class ApiTokenRead(_ReadModel):
    id: int
    prefix: str
    name: str
    user_id: int
    scopes: list[str]
    created_at: AwareDatetime
    expires_at: AwareDatetime
    revoked_at: AwareDatetime | None
    last_used_at: AwareDatetime | None


class ApiTokenCreated(_ReadModel):
    """The answer to a token creation: the only time the secret is shown."""

    token: ApiTokenRead
    secret: str


class AuditEntryRead(_ReadModel):
    id: int
    at: AwareDatetime
    actor_user_id: int | None
    actor: str
    action: str
    target: str | None
    details: dict[str, Any] | None
    ip: str | None
    request_id: str | None


class OutboxMailRead(_ReadModel):
    id: int
    to_address: str
    subject: str
    created_at: AwareDatetime
    next_attempt_at: AwareDatetime
    sent_at: AwareDatetime | None
    attempts: int
    last_error: str | None


# Limits here only bound the request size; the service applies the real rules
# (password policy, email syntax, role names) and says which one failed.


class UserInvite(_WriteModel):
    email: str = Field(min_length=3, max_length=254)
    display_name: str = Field(min_length=1, max_length=200)
    role: str = Field(min_length=1, max_length=32)


class UserCreate(UserInvite):
    password: Password


class PasswordChange(_StrictBody):
    current_password: Password
    new_password: Password


class ApiTokenCreate(_WriteModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=32)
    expires_at: AwareDatetime


# --- authentication and the caller (cloud/users/router.py) ---------------------------


class LoginRequest(_StrictBody):
    email: str = Field(min_length=1, max_length=320)
    password: Password


class LoginAnswer(_ReadModel):
    """A console session was opened: the cookie is set; send `csrf_token` back
    in ``X-CSRF-Token`` on every state-changing request made with the cookie."""

    user: UserRead
    session_id: int
    expires_at: AwareDatetime
    csrf_token: str


class Me(_ReadModel):
    """The caller: its user, how it authenticated, what it may do."""

    user: UserRead
    kind: str
    credential_id: int | None
    permissions: list[str]


class OwnSessionRead(LoginSessionRead):
    current: bool


class CustomerMeters(_ReadModel):
    """What a customer owns now: its account numbers and the meters linked to them."""

    accounts: list[str]
    meters: list[str]


class PasswordResetRequest(_StrictBody):
    email: str = Field(min_length=1, max_length=320)


class PasswordResetConfirm(_StrictBody):
    token: LinkToken
    new_password: Password


class InviteAccept(_StrictBody):
    token: LinkToken
    password: Password


class RoleChange(_WriteModel):
    role: str = Field(min_length=1, max_length=32)


class Accepted(_ReadModel):
    """The request was taken; what happens next is said in `detail`."""

    detail: str
