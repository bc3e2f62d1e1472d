"""API tokens for integrations: issue, verify, list, revoke.

A token is ``vst_<12 hex prefix>_<256-bit secret>``, returned once; the row
keeps the prefix (to find it and to show it) and the SHA-256 of the whole
token, compared in constant time. Scopes are a subset of the owner's role's
permissions when issued; a role change that shrinks them revokes the token
(`cloud.users.accounts.set_role`), a disabled owner makes it unusable.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.core.exceptions import InvalidInput
from cloud.users._common import (
    DEFAULT_SETTINGS,
    UserPrincipal,
    UserSettings,
    clock,
    digest,
    get_user,
)
from cloud.users._revocation import revoke_all_of_user, revoke_one
from cloud.users.audit import Actor, record_audit
from cloud.users.exceptions import (
    ApiTokenNotFound,
    InvalidApiToken,
    InvalidScopes,
    InvalidTokenExpiry,
    UserNotActive,
)
from cloud.users.models import ApiToken, User, UserState
from cloud.users.policies import PERMISSIONS, permissions_of

__all__ = [
    "API_TOKEN_PATTERN",
    "active_tokens_of",
    "create_api_token",
    "list_api_tokens",
    "revoke_api_token",
    "revoke_tokens_of",
    "verify_api_token",
]

API_TOKEN_PATTERN = re.compile(r"^vst_(?P<prefix>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")


def active_tokens_of(session: Session, user_id: int, now: datetime) -> list[ApiToken]:
    """The user's tokens that are neither revoked nor expired at `now`."""
    return list(
        session.scalars(
            select(ApiToken).where(
                ApiToken.user_id == user_id,
                ApiToken.revoked_at.is_(None),
                ApiToken.expires_at > now,
            )
        )
    )


def revoke_tokens_of(session: Session, user_id: int, now: datetime) -> int:
    """Revoke every token of the user, unaudited; how many."""
    return revoke_all_of_user(session, ApiToken, user_id, now)


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


def _check_expiry(expires_at: datetime, now: datetime, settings: UserSettings) -> datetime:
    expiry = clock(expires_at)
    if expiry <= now:
        raise InvalidTokenExpiry("expires_at must be in the future")
    if expiry > now + settings.token_max_lifetime:
        raise InvalidTokenExpiry(
            f"expires_at may be at most {settings.token_max_lifetime.days} days away"
        )
    return expiry


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
    moment = clock(now)
    owner = get_user(session=session, user_id=owner_id)
    if owner.state != UserState.ACTIVE:
        raise UserNotActive(owner.id, owner.state)
    label = name.strip()
    if not 1 <= len(label) <= 100:
        raise InvalidInput("name: 1-100 characters")
    granted = _check_scopes(scopes, owner.role)
    expiry = _check_expiry(expires_at, moment, settings)
    prefix = secrets.token_hex(6)
    secret = f"vst_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken(
        prefix=prefix,
        token_hash=digest(secret),
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
    moment = clock(now)
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
    if not hmac.compare_digest(row.token_hash, digest(token)):
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
    moment = clock(now)
    token = session.get(ApiToken, token_id)
    if token is None or (owner_id is not None and token.user_id != owner_id):
        raise ApiTokenNotFound(token_id)
    revoke_one(
        session,
        token,
        actor=actor,
        action="token.revoke",
        target=f"token:{token.id}",
        details={"owner_id": token.user_id, "prefix": token.prefix},
        now=moment,
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
        moment = clock(now)
        query = query.where(ApiToken.revoked_at.is_(None), ApiToken.expires_at > moment)
    return list(session.scalars(query.order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))
