"""Errors of the users domain.

The categories come from `cloud.core.exceptions`; `AuthenticationFailed`
is a `cloud.core.exceptions.Unauthenticated` (→ 401): the caller is not who
it claims, or its credential no longer works. Its messages never say
whether an email address is registered. ::

    CloudError
    ├── InvalidInput                       → 422
    │   ├── WeakPassword                   which rule failed: .rule
    │   ├── InvalidEmail
    │   ├── InvalidRole
    │   ├── InvalidScopes                  unknown, or beyond the owner's role
    │   ├── InvalidTokenExpiry             missing, past, or beyond the maximum
    │   ├── InvalidOneTimeToken            invite / reset link forged, used or expired
    │   ├── WrongCurrentPassword           a password change with the wrong current one
    │   └── InvalidMail                    outbox: bad recipient or header
    ├── NotFound                           → 404
    │   ├── UserNotFound
    │   ├── SessionNotFound
    │   └── ApiTokenNotFound
    ├── Conflict                           → 409
    │   ├── EmailAlreadyRegistered
    │   ├── UserNotActive                  the user is invited or disabled
    │   └── LastAdmin                      would leave no active admin
    └── Unauthenticated                    → 401
        └── AuthenticationFailed
            ├── InvalidCredentials         wrong email or password (same message for both)
            ├── AccountLocked              too many failures: .locked_until
            ├── UserDisabled               right password, disabled user
            ├── InvalidSession             unknown, forged, revoked or expired session
            └── InvalidApiToken            malformed, forged, revoked or expired token
"""

from __future__ import annotations

from datetime import datetime

from cloud.core.exceptions import Conflict, InvalidInput, NotFound, Unauthenticated

__all__ = [
    "AccountLocked",
    "ApiTokenNotFound",
    "AuthenticationFailed",
    "EmailAlreadyRegistered",
    "InvalidApiToken",
    "InvalidCredentials",
    "InvalidEmail",
    "InvalidMail",
    "InvalidOneTimeToken",
    "InvalidRole",
    "InvalidScopes",
    "InvalidSession",
    "InvalidTokenExpiry",
    "LastAdmin",
    "SessionNotFound",
    "UserDisabled",
    "UserNotActive",
    "UserNotFound",
    "WeakPassword",
    "WrongCurrentPassword",
]


class WeakPassword(InvalidInput):
    """The password breaks a rule of the password policy.

    Attributes:
        rule: ``too_short``, ``too_long``, ``contains_email`` or ``common``.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"password refused ({rule}): {message}")
        self.rule = rule


class InvalidEmail(InvalidInput):
    """Not an email address we can send to."""

    def __init__(self, email: str) -> None:
        super().__init__(f"not a valid email address: {email[:80]!r}")
        self.email = email


class InvalidRole(InvalidInput):
    """A role that the policy matrix does not declare."""

    def __init__(self, role: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown role {role[:40]!r}: one of {', '.join(known)}")
        self.role = role


class InvalidScopes(InvalidInput):
    """Token scopes that are unknown or exceed what the owner's role may do."""

    def __init__(self, message: str, scopes: frozenset[str]) -> None:
        super().__init__(message)
        self.scopes = scopes


class InvalidTokenExpiry(InvalidInput):
    """An API token needs an expiry in the future, within the maximum lifetime."""


class InvalidOneTimeToken(InvalidInput):
    """An invite or password-reset token that is forged, already used or expired.

    One message for every case: the link holder learns nothing about why.
    """

    def __init__(self, purpose: str) -> None:
        super().__init__(f"this {purpose.replace('_', ' ')} link is invalid or has expired")
        self.purpose = purpose


class WrongCurrentPassword(InvalidInput):
    """A password change whose `current_password` is wrong (a field error, not a 401:
    the caller's own credentials are fine)."""

    def __init__(self) -> None:
        super().__init__("current_password is wrong")


class InvalidMail(InvalidInput):
    """An outgoing mail with a bad recipient or a header that would break the message."""


class UserNotFound(NotFound):
    """No user with this id."""

    def __init__(self, user_id: int) -> None:
        super().__init__(f"user {user_id} does not exist")
        self.user_id = user_id


class SessionNotFound(NotFound):
    """No such session (or not one of the caller's own)."""

    def __init__(self, session_id: int) -> None:
        super().__init__(f"session {session_id} does not exist")
        self.session_id = session_id


class ApiTokenNotFound(NotFound):
    """No such API token (or not one of the caller's own)."""

    def __init__(self, token_id: int) -> None:
        super().__init__(f"API token {token_id} does not exist")
        self.token_id = token_id


class EmailAlreadyRegistered(Conflict):
    """Another user has this email address (compared case-insensitively)."""

    def __init__(self, email: str) -> None:
        super().__init__(f"a user with email {email!r} already exists")
        self.email = email


class UserNotActive(Conflict):
    """The action needs an active user; this one is invited or disabled."""

    def __init__(self, user_id: int, state: str) -> None:
        super().__init__(f"user {user_id} is {state}")
        self.user_id = user_id
        self.state = state


class LastAdmin(Conflict):
    """Disabling or demoting this user would leave no active admin."""

    def __init__(self, user_id: int) -> None:
        super().__init__(f"user {user_id} is the last active admin")
        self.user_id = user_id


class AuthenticationFailed(Unauthenticated):
    """The caller could not be authenticated (HTTP 401)."""


class InvalidCredentials(AuthenticationFailed):
    """Wrong email or password; the message is the same for an unknown email."""

    def __init__(self) -> None:
        super().__init__("wrong email or password")


class AccountLocked(AuthenticationFailed):
    """Too many failed logins: refused until `locked_until`, even with the right password."""

    def __init__(self, locked_until: datetime) -> None:
        super().__init__(
            f"too many failed logins: try again after {locked_until.isoformat(timespec='seconds')}"
        )
        self.locked_until = locked_until


class UserDisabled(AuthenticationFailed):
    """The user is disabled (told only to someone who knows the password)."""

    def __init__(self) -> None:
        super().__init__("this user is disabled")


class InvalidSession(AuthenticationFailed):
    """The session cookie is unknown, forged, revoked or expired.

    Attributes:
        reason: for logs only (``unknown``, ``revoked``, ``idle``, ``expired``,
            ``user_inactive``); the message is the same for all.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("the session is invalid or has expired: log in again")
        self.reason = reason


class InvalidApiToken(AuthenticationFailed):
    """The bearer token is malformed, unknown, forged, revoked or expired.

    Attributes:
        reason: for logs only; the message is the same for all.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("the API token is invalid, revoked or expired")
        self.reason = reason
