"""JSON routes of the users domain: login, the caller, sessions, API tokens, users, audit.

Mounted under ``/api/v1`` (`cloud.app.API_ROUTERS`). Every route declares its
permission with `require`, or is `public()` (login, password reset, invite
acceptance: they carry their own proof — a password or a one-time link).
Changes run in one unit of work each, and the service writes the audit entry
in it, with the caller, its address and the request id (`_actor`).

Login answers never say which part was wrong: an unknown email and a wrong
password are the same 401; a lockout is 429 with ``Retry-After``. The
password-reset request is 202 whether or not the address has an account.

The console (cloud/console/) serves the HTML for the same actions; these
routes are for scripts, integrations and the console's own JSON calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import AwareDatetime
from sqlalchemy.orm import Session, sessionmaker

from cloud.console.security import clear_session_cookie, csrf_token_for, set_session_cookie
from cloud.core.authz import Principal, public, require
from cloud.core.db import unit_of_work
from cloud.core.deps import DbSession, JsonBody, Sessions, SettingsDep
from cloud.core.exceptions import InvalidInput
from cloud.core.pagination import Page, PagingDep
from cloud.core.problems import (
    PROBLEM_TYPE_PREFIX,
    ProblemResponses,
    problem_doc,
    problem_response,
    request_id_of,
)
from cloud.users import policies, service
from cloud.users.authorizer import DEFAULT_CONFIG, UserAuthenticated, UsersConfig
from cloud.users.exceptions import AccountLocked, InvalidCredentials, WrongCurrentPassword
from cloud.users.models import ApiToken, LoginSession
from cloud.users.schemas import (
    Accepted,
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenRead,
    AuditEntryRead,
    CustomerMeters,
    InviteAccept,
    LoginAnswer,
    LoginRequest,
    Me,
    OwnSessionRead,
    PasswordChange,
    PasswordResetConfirm,
    PasswordResetRequest,
    RoleChange,
    UserInvite,
    UserRead,
)

__all__ = ["INVITE_PAGE", "RESET_PAGE", "TAGS", "router"]

TAGS = [
    {
        "name": "auth",
        "description": "Log in (a console session cookie and its CSRF token), log out, "
        "password reset by mail, accepting an invitation.",
    },
    {
        "name": "me",
        "description": "The caller: profile, password, own sessions, own API tokens, "
        "and for customers the meters they own.",
    },
    {
        "name": "users",
        "description": "User administration: invite, role, disable and enable; "
        "every API token; the append-only audit log.",
    },
]

# The console pages the mailed links open (relative to Settings.public_url).
INVITE_PAGE = "/console/accept-invite?token={token}"
RESET_PAGE = "/console/reset-password?token={token}"

router = APIRouter(responses=ProblemResponses)

UserId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The user id.")]
SessionId = Annotated[int, Path(ge=1, le=2**62, description="The session id.")]
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The API token id.")]
NO_STORE = {"Cache-Control": "no-store"}

AnswerT = TypeVar("AnswerT")


# --- helpers -------------------------------------------------------------------------


def _config(request: Request) -> UsersConfig:
    config = getattr(request.app.state.authorizer, "config", None)
    return config if isinstance(config, UsersConfig) else DEFAULT_CONFIG


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


_actor = service.Actor.of_request  # who acts, for the audit log


def _user_id(principal: Principal) -> int:
    if principal.user_id is None:
        raise InvalidInput("this route needs a user's credentials")
    return principal.user_id


def _credential_id(principal: Principal) -> int | None:
    return principal.credential_id if isinstance(principal, UserAuthenticated) else None


def _no_content() -> Response:
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _audited(
    request: Request,
    sessions: sessionmaker[Session],
    principal: Principal,
    change: Callable[[Session, service.Actor, datetime], AnswerT],
) -> AnswerT:
    """Run one change in its own unit of work, as the caller, at the configured clock.

    The service writes the audit entry in the same transaction, which commits
    when `change` returns; `change` builds its answer from the rows before
    that, while they are still loaded.
    """
    with unit_of_work(sessions) as session:
        return change(session, _actor(request, principal), _config(request).clock())


def _from_link(
    request: Request, sessions: sessionmaker[Session], confirm: Callable[..., Any], **fields: str
) -> Response:
    """Run a public change that carries its own proof (a single-use link): 204."""
    config = _config(request)
    with unit_of_work(sessions) as session:
        confirm(
            session=session,
            ip=_ip(request),
            request_id=request_id_of(request),
            hasher=config.hasher,
            now=config.clock(),
            **fields,
        )
    return _no_content()


def _tokens(
    request: Request, session: Session, owner_id: int | None, include_inactive: bool
) -> list[ApiTokenRead]:
    rows: list[ApiToken] = service.list_api_tokens(
        session=session,
        owner_id=owner_id,
        include_inactive=include_inactive,
        now=_config(request).clock(),
    )
    return [ApiTokenRead.model_validate(row) for row in rows]


# --- authentication --------------------------------------------------------------------


@router.post(
    "/auth/login",
    tags=["auth"],
    summary="Log in",
    response_model=LoginAnswer,
    dependencies=[public(), JsonBody],
    responses={
        429: problem_doc("Locked out after too many failed logins; see Retry-After"),
    },
)
def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    sessions: Sessions,
    settings: SettingsDep,
) -> Any:
    """Check the email and password and open a console session.

    Sets the session cookie (HttpOnly, SameSite=Lax, Secure in production)
    and answers the session's CSRF token: send it in ``X-CSRF-Token`` with
    every state-changing request that uses the cookie. A wrong email or
    password is one 401; too many failures lock the user out (429).
    """
    config = _config(request)
    now = config.clock()
    with unit_of_work(sessions) as session:
        # One transaction: a failure's count commits as well as a success.
        attempt = service.authenticate(
            session=session,
            email=body.email,
            password=body.password,
            ip=_ip(request),
            request_id=request_id_of(request),
            hasher=config.hasher,
            settings=config.user_settings,
            now=now,
        )
        if attempt.user is not None:
            login_row, token = service.start_session(
                session=session,
                user=attempt.user,
                ip=_ip(request),
                user_agent=request.headers.get("user-agent"),
                request_id=request_id_of(request),
                settings=config.user_settings,
                now=now,
            )
            answer = LoginAnswer(
                user=UserRead.model_validate(attempt.user),
                session_id=login_row.id,
                expires_at=login_row.expires_at,
                csrf_token=csrf_token_for(settings, token),
            )
    try:
        attempt.user_or_raise()
    except AccountLocked as locked:
        wait_s = max(1, math.ceil((locked.locked_until - now).total_seconds()))
        return problem_response(
            request,
            429,
            detail=str(locked),
            type_=PROBLEM_TYPE_PREFIX + "account-locked",
            headers={"Retry-After": str(wait_s)},
        )
    set_session_cookie(response, request, settings, token)
    response.headers.update(NO_STORE)
    return answer


@router.post(
    "/auth/logout",
    tags=["auth"],
    summary="Log out",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
def logout(
    request: Request,
    sessions: Sessions,
    settings: SettingsDep,
    principal: Annotated[Principal, require("sessions:self")],
) -> Response:
    """End the console session of the cookie and clear the cookie.

    An API token is not logged out: revoke it (``DELETE /me/tokens/{id}``).
    """
    if principal.kind != "session" or _credential_id(principal) is None:
        raise InvalidInput("log out ends a console session; revoke an API token instead")
    _audited(
        request,
        sessions,
        principal,
        lambda session, actor, now: service.revoke_session(
            session=session,
            session_id=_credential_id(principal) or 0,
            owner_id=_user_id(principal),
            actor=actor,
            now=now,
        ),
    )
    answer = _no_content()
    clear_session_cookie(answer, request, settings)
    return answer


@router.post(
    "/auth/password-reset",
    tags=["auth"],
    summary="Ask for a password reset link",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    dependencies=[public(), JsonBody],
)
def request_password_reset(
    body: PasswordResetRequest, request: Request, sessions: Sessions, settings: SettingsDep
) -> Accepted:
    """Mail a single-use reset link if the address belongs to an active user.

    The answer is the same whether it does or not.
    """
    with unit_of_work(sessions) as session:
        service.request_password_reset(
            session=session,
            email=body.email,
            link_template=settings.public_url + RESET_PAGE,
            ip=_ip(request),
            request_id=request_id_of(request),
            settings=_config(request).user_settings,
            now=_config(request).clock(),
        )
    return Accepted(detail="if the address has an account, a reset link is on its way")


@router.post(
    "/auth/password-reset/confirm",
    tags=["auth"],
    summary="Set a new password from a reset link",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[public(), JsonBody],
)
def confirm_password_reset(
    body: PasswordResetConfirm, request: Request, sessions: Sessions
) -> Response:
    """Set the password, unlock the user and end every session it had."""
    return _from_link(
        request,
        sessions,
        service.reset_password,
        token=body.token,
        new_password=body.new_password,
    )


@router.post(
    "/auth/invite/accept",
    tags=["auth"],
    summary="Accept an invitation",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[public(), JsonBody],
)
def accept_invite(body: InviteAccept, request: Request, sessions: Sessions) -> Response:
    """Choose the first password of an invited user; then log in."""
    return _from_link(
        request, sessions, service.accept_invite, token=body.token, password=body.password
    )


# --- the caller -------------------------------------------------------------------------


@router.get("/me", tags=["me"], summary="Who am I", response_model=Me)
def me(session: DbSession, principal: Annotated[Principal, require("sessions:self")]) -> Me:
    """The caller's user, credential kind and effective permissions (role ∩ token scopes)."""
    user = service.get_user(session=session, user_id=_user_id(principal))
    granted = set().union(*(policies.permissions_of(role) for role in principal.roles))
    if principal.scopes is not None:
        granted &= principal.scopes
    return Me(
        user=UserRead.model_validate(user),
        kind=principal.kind,
        credential_id=_credential_id(principal),
        permissions=sorted(granted),
    )


@router.post(
    "/me/password",
    tags=["me"],
    summary="Change my password",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[JsonBody],
)
def change_password(
    body: PasswordChange,
    request: Request,
    sessions: Sessions,
    principal: Annotated[Principal, require("sessions:self")],
) -> Response:
    """Change the password; every other session ends (this one stays)."""
    hasher = _config(request).hasher
    try:
        _audited(
            request,
            sessions,
            principal,
            lambda session, actor, now: service.change_password(
                session=session,
                user_id=_user_id(principal),
                current_password=body.current_password,
                new_password=body.new_password,
                actor=actor,
                keep_session_id=_credential_id(principal) if principal.kind == "session" else None,
                hasher=hasher,
                now=now,
            ),
        )
    except InvalidCredentials as error:
        # 401 would tell a client its own credentials failed; it is a wrong field.
        raise WrongCurrentPassword() from error
    return _no_content()


@router.get("/me/sessions", tags=["me"], summary="My sessions", response_model=list[OwnSessionRead])
def my_sessions(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("sessions:self")],
) -> list[OwnSessionRead]:
    """The caller's usable console sessions, newest first; `current` marks this one."""
    config = _config(request)
    rows: list[LoginSession] = service.list_sessions(
        session=session,
        user_id=_user_id(principal),
        settings=config.user_settings,
        now=config.clock(),
    )
    current = _credential_id(principal) if principal.kind == "session" else None
    return [
        OwnSessionRead.model_validate({**_session_fields(row), "current": row.id == current})
        for row in rows
    ]


def _session_fields(row: LoginSession) -> dict[str, Any]:
    return {name: getattr(row, name) for name in OwnSessionRead.model_fields if name != "current"}


@router.delete(
    "/me/sessions/{session_id}",
    tags=["me"],
    summary="End one of my sessions",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
def revoke_my_session(
    session_id: SessionId,
    request: Request,
    sessions: Sessions,
    principal: Annotated[Principal, require("sessions:self")],
) -> Response:
    """Revoke a session of the caller's (another device); someone else's is 404."""
    _audited(
        request,
        sessions,
        principal,
        lambda session, actor, now: service.revoke_session(
            session=session,
            session_id=session_id,
            owner_id=_user_id(principal),
            actor=actor,
            now=now,
        ),
    )
    return _no_content()


@router.get("/me/tokens", tags=["me"], summary="My API tokens", response_model=list[ApiTokenRead])
def my_tokens(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require("tokens:self")],
    include_inactive: Annotated[bool, Query(description="Revoked and expired ones too.")] = False,
) -> list[ApiTokenRead]:
    """The caller's API tokens (never their secrets), newest first."""
    return _tokens(request, session, _user_id(principal), include_inactive)


@router.post(
    "/me/tokens",
    tags=["me"],
    summary="Create an API token",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiTokenCreated,
    dependencies=[JsonBody],
)
def create_my_token(
    body: ApiTokenCreate,
    request: Request,
    response: Response,
    sessions: Sessions,
    principal: Annotated[Principal, require("tokens:self")],
) -> ApiTokenCreated:
    """Issue a bearer token acting as the caller, limited to `scopes` (a subset of
    the caller's permissions), expiring at `expires_at`. **The answer holds the
    secret, shown this once** (only a hash is stored)."""
    if principal.scopes is not None and not set(body.scopes) <= principal.scopes:
        # A token may not mint a token wider than itself.
        raise InvalidInput("scopes: a token can only create tokens within its own scopes")

    def create(session: Session, actor: service.Actor, now: datetime) -> ApiTokenCreated:
        row, secret = service.create_api_token(
            session=session,
            owner_id=_user_id(principal),
            name=body.name,
            scopes=body.scopes,
            expires_at=body.expires_at,
            actor=actor,
            settings=_config(request).user_settings,
            now=now,
        )
        return ApiTokenCreated(token=ApiTokenRead.model_validate(row), secret=secret)

    answer = _audited(request, sessions, principal, create)
    response.headers.update(NO_STORE)
    return answer


@router.delete(
    "/me/tokens/{token_id}",
    tags=["me"],
    summary="Revoke one of my API tokens",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
def revoke_my_token(
    token_id: TokenId,
    request: Request,
    sessions: Sessions,
    principal: Annotated[Principal, require("tokens:self")],
) -> Response:
    """Revoke at once; someone else's token is 404."""
    _audited(
        request,
        sessions,
        principal,
        lambda session, actor, now: service.revoke_api_token(
            session=session, token_id=token_id, owner_id=_user_id(principal), actor=actor, now=now
        ),
    )
    return _no_content()


@router.get(
    "/me/meters",
    tags=["me"],
    summary="My accounts and meters",
    response_model=CustomerMeters,
)
def my_meters(
    session: DbSession, principal: Annotated[Principal, require("account:read-own")]
) -> CustomerMeters:
    """The account numbers the caller holds and the meters linked to them now:
    the serials a customer may use in ``/meters/{serial}/…``."""
    user_id = _user_id(principal)
    return CustomerMeters(
        accounts=sorted(service.customer_account_numbers(session=session, user_id=user_id)),
        meters=sorted(service.customer_meter_serials(session=session, user_id=user_id)),
    )


# --- users administration ------------------------------------------------------------------


@router.get(
    "/users",
    tags=["users"],
    summary="List users",
    response_model=Page[UserRead],
    dependencies=[require("users:read")],
)
def list_users(
    session: DbSession,
    paging: PagingDep,
    role: Annotated[str | None, Query(max_length=32, description="Only this role.")] = None,
    state: Annotated[
        str | None, Query(pattern="^(invited|active|disabled)$", description="Only this state.")
    ] = None,
) -> Page[UserRead]:
    """Users by email."""
    rows = service.list_users(
        session=session,
        role=role,
        state=state,
        limit=paging.fetch(service.MAX_PAGE),
        offset=paging.offset,
    )
    return paging.answer(rows, UserRead.model_validate, service.MAX_PAGE)


@router.post(
    "/users",
    tags=["users"],
    summary="Invite a user",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    dependencies=[JsonBody],
    responses={409: problem_doc("The email address is registered already")},
)
def invite_user(
    body: UserInvite,
    request: Request,
    response: Response,
    sessions: Sessions,
    settings: SettingsDep,
    principal: Annotated[Principal, require("users:admin")],
) -> UserRead:
    """Create an invited user and mail them a single-use link to choose a password."""

    def invite(session: Session, actor: service.Actor, now: datetime) -> UserRead:
        user, _ = service.invite_user(
            session=session,
            email=body.email,
            display_name=body.display_name,
            role=body.role,
            actor=actor,
            link_template=settings.public_url + INVITE_PAGE,
            settings=_config(request).user_settings,
            now=now,
        )
        return UserRead.model_validate(user)

    answer = _audited(request, sessions, principal, invite)
    response.headers["Location"] = str(request.url_for("get_user", user_id=answer.id))
    return answer


@router.get(
    "/users/{user_id}",
    tags=["users"],
    summary="Get a user",
    response_model=UserRead,
    dependencies=[require("users:read")],
)
def get_user(user_id: UserId, session: DbSession) -> UserRead:
    """One user (never its password hash)."""
    return UserRead.model_validate(service.get_user(session=session, user_id=user_id))


@router.put(
    "/users/{user_id}/role",
    tags=["users"],
    summary="Change a user's role",
    response_model=UserRead,
    dependencies=[JsonBody],
    responses={409: problem_doc("It would demote the last active admin")},
)
def set_role(
    user_id: UserId,
    body: RoleChange,
    request: Request,
    sessions: Sessions,
    principal: Annotated[Principal, require("users:admin")],
) -> UserRead:
    """Give the user another role; its API tokens with scopes beyond it are revoked."""
    return _audited(
        request,
        sessions,
        principal,
        lambda session, actor, now: UserRead.model_validate(
            service.set_role(session=session, user_id=user_id, role=body.role, actor=actor, now=now)
        ),
    )


@router.post(
    "/users/{user_id}/disable",
    tags=["users"],
    summary="Disable a user",
    response_model=UserRead,
    responses={409: problem_doc("It is the last active admin")},
)
def disable_user(
    user_id: UserId,
    request: Request,
    sessions: Sessions,
    principal: Annotated[Principal, require("users:admin")],
) -> UserRead:
    """No more logins; every session and API token of the user is revoked at once."""
    return _audited(
        request,
        sessions,
        principal,
        lambda session, actor, now: UserRead.model_validate(
            service.disable_user(session=session, user_id=user_id, actor=actor, now=now)
        ),
    )


@router.post(
    "/users/{user_id}/enable",
    tags=["users"],
    summary="Enable a user",
    response_model=UserRead,
)
def enable_user(
    user_id: UserId,
    request: Request,
    sessions: Sessions,
    principal: Annotated[Principal, require("users:admin")],
) -> UserRead:
    """Re-enable a disabled user (invited again if it never chose a password)."""
    return _audited(
        request,
        sessions,
        principal,
        lambda session, actor, now: UserRead.model_validate(
            service.enable_user(session=session, user_id=user_id, actor=actor, now=now)
        ),
    )


@router.get(
    "/tokens",
    tags=["users"],
    summary="List every API token",
    response_model=list[ApiTokenRead],
    dependencies=[require("tokens:admin")],
)
def list_tokens(
    request: Request,
    session: DbSession,
    user_id: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Only this owner.")
    ] = None,
    include_inactive: Annotated[bool, Query(description="Revoked and expired ones too.")] = False,
) -> list[ApiTokenRead]:
    """API tokens of every user (or one), newest first; never their secrets."""
    return _tokens(request, session, user_id, include_inactive)


@router.delete(
    "/tokens/{token_id}",
    tags=["users"],
    summary="Revoke any API token",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
def revoke_token(
    token_id: TokenId,
    request: Request,
    sessions: Sessions,
    principal: Annotated[Principal, require("tokens:admin")],
) -> Response:
    """Revoke someone's API token at once (a leaked integration secret)."""
    _audited(
        request,
        sessions,
        principal,
        lambda session, actor, now: service.revoke_api_token(
            session=session, token_id=token_id, actor=actor, now=now
        ),
    )
    return _no_content()


# --- the audit log ---------------------------------------------------------------------------


@router.get(
    "/audit",
    tags=["users"],
    summary="Read the audit log",
    response_model=Page[AuditEntryRead],
    dependencies=[require("audit:read")],
)
def audit_log(
    session: DbSession,
    paging: PagingDep,
    actor_user_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    action: Annotated[str | None, Query(max_length=64, description="Exact action.")] = None,
    action_prefix: Annotated[
        str | None, Query(max_length=64, description="e.g. `user.` for every user action.")
    ] = None,
    target: Annotated[str | None, Query(max_length=200, description="e.g. `user:12`.")] = None,
    since: Annotated[AwareDatetime | None, Query(description="Inclusive, ISO 8601.")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Exclusive, ISO 8601.")] = None,
) -> Page[AuditEntryRead]:
    """Privileged actions, newest first: who, what, on what, when, from where."""
    rows = service.list_audit(
        session=session,
        actor_user_id=actor_user_id,
        action=action,
        action_prefix=action_prefix,
        target=target,
        since=since,
        until=until,
        limit=paging.fetch(service.MAX_PAGE),
        offset=paging.offset,
    )
    return paging.answer(rows, AuditEntryRead.model_validate, service.MAX_PAGE)
