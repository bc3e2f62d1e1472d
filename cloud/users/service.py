"""Users services: accounts, login, sessions, API tokens, one-time links, audit.

The functions routes call, gathered from the modules that hold them so that
callers import one name, ``cloud.users.service``:

- `cloud.users.accounts`: create, invite, profile, role, disable/enable,
  password change and reset, what a customer owns;
- `cloud.users.sessions`: login (`authenticate`, lockout) and console sessions;
- `cloud.users.tokens`: scoped API tokens;
- `cloud.users.one_time_tokens`: the single-use links of invites and resets;
- `cloud.users.audit`: the append-only audit log and its `Actor`;
- `cloud.users._common`: settings, the principal, the clock, page bounds.

Plain functions with keyword-only arguments; the caller owns the transaction
(`cloud.core.db.unit_of_work`): these functions flush, never commit. Every
privileged action appends its `AuditEntry` in that same transaction, so the
action and its record commit or vanish together. Time comes in as `now`
(default: the clock), which is how tests move through lockouts and expiries.

Secrets: session tokens (``secrets.token_urlsafe(32)``, 256 bits), API tokens
(``vst_<12 hex prefix>_<256-bit secret>``) and invite/reset tokens are
returned once; only their SHA-256 is stored (see `cloud.users.models`).
"""

from __future__ import annotations

from cloud.users._common import (
    DEFAULT_SETTINGS,
    MAX_PAGE,
    UserPrincipal,
    UserSettings,
    get_user,
    normalize_email,
)
from cloud.users.accounts import (
    accept_invite,
    change_password,
    create_user,
    customer_account_numbers,
    customer_meter_serials,
    disable_user,
    enable_user,
    invite_user,
    list_users,
    request_password_reset,
    reset_password,
    set_role,
    update_profile,
)
from cloud.users.audit import Actor, list_audit, record_audit
from cloud.users.sessions import (
    LoginAttempt,
    authenticate,
    get_session_principal,
    list_sessions,
    revoke_all_sessions,
    revoke_session,
    start_session,
)
from cloud.users.tokens import (
    API_TOKEN_PATTERN,
    create_api_token,
    list_api_tokens,
    revoke_api_token,
    verify_api_token,
)

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
