"""The users domain on SQLite and PostgreSQL: accounts, login, sessions, tokens,
one-time links, the append-only audit log, customer ownership and the mail
outbox delivered to a real SMTP server (aiosmtpd on loopback).

Passwords are hashed with real argon2id, with small parameters (`FAST`) so
that dozens of logins stay quick; one test checks the production defaults.
The clock is injected (`now=`), never slept on.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from argon2 import PasswordHasher
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.db import (
    alembic_config,
    current_revision,
    downgrade_database,
    load_models,
    make_engine,
    session_factory,
    unit_of_work,
    upgrade_database,
)
from cloud.core.exceptions import InvalidInput, NaiveTimestamp, Unauthenticated
from cloud.customers.models import Account, AccountMeter
from cloud.users import mail, passwords, policies, service
from cloud.users.exceptions import (
    AccountLocked,
    ApiTokenNotFound,
    AuthenticationFailed,
    EmailAlreadyRegistered,
    InvalidApiToken,
    InvalidCredentials,
    InvalidEmail,
    InvalidMail,
    InvalidOneTimeToken,
    InvalidRole,
    InvalidScopes,
    InvalidSession,
    InvalidTokenExpiry,
    LastAdmin,
    SessionNotFound,
    UserDisabled,
    UserNotActive,
    WeakPassword,
)
from cloud.users.models import ApiToken, AuditEntry, OneTimeToken, OutboxMail, User
from cloud.users.schemas import ApiTokenRead, AuditEntryRead, LoginSessionRead, UserRead
from cloud.users.service import Actor, UserPrincipal
from tests.servers import free_port, make_test_pki

pytestmark = pytest.mark.integration

T0 = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
OTHER_PASSWORD = "a different long phrase"
# Real argon2id, small parameters: the tests log in dozens of times.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
LINK = "https://console.example/accept/{token}"
SYSTEM = Actor.system()
USER_TABLES = {
    "users",
    "login_sessions",
    "api_tokens",
    "one_time_tokens",
    "audit_log",
    "mail_outbox",
    "accounts",
    "account_meters",
}
Unique = Callable[[str], str]


def make_user(
    session: Session,
    unique: Unique,
    role: str = "operator",
    *,
    password: str = PASSWORD,
    email: str | None = None,
) -> User:
    return service.create_user(
        session=session,
        email=email or f"{unique('user')}@example.com",
        display_name="Ada Lovelace",
        role=role,
        password=password,
        actor=SYSTEM,
        hasher=FAST,
        now=T0,
    )


def login(session: Session, email: str, password: str, at: datetime) -> service.LoginAttempt:
    return service.authenticate(
        session=session, email=email, password=password, ip="192.0.2.7", hasher=FAST, now=at
    )


def audit_actions(session: Session, target: str) -> list[str]:
    entries = service.list_audit(session=session, target=target)
    return [entry.action for entry in reversed(entries)]


def token_in(body: str) -> str:
    found = re.search(r"https://console\.example/accept/(\S+)", body)
    assert found, body
    return found[1]


def outbox(session: Session, to: str) -> list[OutboxMail]:
    return list(
        session.scalars(
            select(OutboxMail).where(OutboxMail.to_address == to).order_by(OutboxMail.id)
        )
    )


# --- the migration --------------------------------------------------------------------


def head_revision(url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    return head


def test_migration_0002_up_down_and_up_again(new_database: Callable[[], str]) -> None:
    url = new_database()
    upgrade_database(url, "0002")
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert tables >= USER_TABLES
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = [
                difference
                for difference in compare_metadata(context, load_models())
                if _table_of(difference) in USER_TABLES | {None}
            ]
        assert differences == []
        # compare_metadata ignores CHECK names: compare every name of our tables.
        assert _constraint_names(engine) == _model_constraint_names()
    finally:
        engine.dispose()

    downgrade_database(url, "0001")
    assert current_revision(url) == "0001"
    engine = make_engine(url)
    try:
        remaining = set(inspect(engine).get_table_names())
        assert not remaining & USER_TABLES and "gateways" in remaining
    finally:
        engine.dispose()
    upgrade_database(url)
    assert current_revision(url) == head_revision(url)


def _table_of(difference: Any) -> str | None:
    """The table an Alembic difference is about; None if unknown (then kept)."""
    first = difference[0] if isinstance(difference, list) else difference
    kind, subject = first[0], first[1]
    if kind in {"add_table", "remove_table"}:
        return str(subject.name)
    if kind in {"add_index", "remove_index", "add_constraint", "remove_constraint"}:
        return str(subject.table.name)
    if kind in {"add_fk", "remove_fk"}:
        return str(subject.parent.name)
    if kind in {"add_column", "remove_column"} or kind.startswith("modify_"):
        return str(first[2])
    return None


def _constraint_names(engine: Any) -> set[tuple[str, str, str]]:
    inspector = inspect(engine)
    names: set[tuple[str, str, str]] = set()
    for table in USER_TABLES:
        names |= {(table, "ck", c["name"]) for c in inspector.get_check_constraints(table)}
        names |= {(table, "fk", c["name"]) for c in inspector.get_foreign_keys(table)}
        names |= {
            (table, "ix", c["name"])
            for c in inspector.get_indexes(table)
            if "duplicates_constraint" not in c
        }
        names |= {(table, "uq", c["name"]) for c in inspector.get_unique_constraints(table)}
    return names


def _model_constraint_names() -> set[tuple[str, str, str]]:
    from sqlalchemy import CheckConstraint, ForeignKeyConstraint, UniqueConstraint

    kinds = {CheckConstraint: "ck", ForeignKeyConstraint: "fk", UniqueConstraint: "uq"}
    names: set[tuple[str, str, str]] = set()
    for table in load_models().sorted_tables:
        if table.name not in USER_TABLES:
            continue
        for constraint in table.constraints:
            kind = kinds.get(type(constraint))
            if kind:
                names.add((table.name, kind, str(constraint.name)))
        names |= {(table.name, "ix", str(index.name)) for index in table.indexes}
    return names


def test_metadata_create_all_makes_the_audit_triggers_too(
    new_database: Callable[[], str],
) -> None:
    engine = make_engine(new_database())
    try:
        load_models().create_all(engine)
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO audit_log (at, actor, action) VALUES (:at, 'x', 'a.b')"),
                {"at": T0},
            )
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text("DELETE FROM audit_log"))
    finally:
        engine.dispose()


# --- passwords ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short", "too_short"),
        ("elevenchars", "too_short"),
        ("x" * 1025, "too_long"),
        ("ada@example.com", "contains_email"),
        ("my ADA@EXAMPLE.COM pass", "contains_email"),
        ("Password1234", "common"),
        ("correct horse battery staple", "common"),
    ],
)
def test_password_policy_names_the_rule(password: str, rule: str) -> None:
    with pytest.raises(WeakPassword) as caught:
        passwords.check_password_policy(password, email="ada@example.com")
    assert caught.value.rule == rule
    assert rule in str(caught.value)


def test_password_policy_accepts_long_passphrases() -> None:
    passwords.check_password_policy(PASSWORD, email="ada@example.com")
    passwords.check_password_policy("é" * 12, email=None)
    passwords.check_password_policy("y" * 1024, email="ada@example.com")


def test_default_hasher_is_argon2id_with_rfc9106_parameters() -> None:
    hashed = passwords.hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert passwords.verify_password(hashed, PASSWORD)
    assert not passwords.verify_password(hashed, PASSWORD + "!")
    assert not passwords.verify_password("not a hash", PASSWORD)
    assert not passwords.needs_rehash(hashed)
    assert passwords.needs_rehash(passwords.hash_password(PASSWORD, hasher=FAST))


# --- users ----------------------------------------------------------------------------


def test_create_user_stores_an_argon2_hash_and_audits(session: Session, unique: Unique) -> None:
    admin = make_user(session, unique, "admin")
    email = f"{unique('New.User')}@Example.COM"
    user = service.create_user(
        session=session,
        email=f"  {email} ",
        display_name=" Grace Hopper ",
        role="billing",
        password=PASSWORD,
        actor=Actor.of_user(admin, ip="198.51.100.1", request_id="req-1"),
        hasher=FAST,
        now=T0,
    )
    session.expire_all()
    stored = session.get(User, user.id)
    assert stored is not None
    assert stored.email == email.lower() and stored.display_name == "Grace Hopper"
    assert stored.state == "active" and stored.role == "billing"
    assert stored.password_hash is not None and stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    assert "password_hash" not in UserRead.model_validate(stored).model_dump()
    (entry,) = service.list_audit(session=session, target=f"user:{user.id}")
    assert (entry.action, entry.actor, entry.actor_user_id) == (
        "user.create",
        admin.email,
        admin.id,
    )
    assert (entry.ip, entry.request_id, entry.at) == ("198.51.100.1", "req-1", T0)
    assert entry.details == {"email": email.lower(), "role": "billing"}


def test_email_is_unique_whatever_the_letter_case(session: Session, unique: Unique) -> None:
    email = f"{unique('dup')}@example.com"
    make_user(session, unique, email=email)
    with pytest.raises(EmailAlreadyRegistered):
        make_user(session, unique, email=email.upper())


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"email": "not-an-address"}, InvalidEmail),
        ({"email": "two@@example.com"}, InvalidEmail),
        ({"email": "a@b"}, InvalidEmail),
        ({"email": ("x" * 250) + "@example.com"}, InvalidEmail),
        ({"role": "superuser"}, InvalidRole),
        ({"display_name": "   "}, InvalidInput),
        ({"display_name": "bell\x07"}, InvalidInput),
        ({"password": "short"}, WeakPassword),
        ({"now": datetime(2025, 1, 1)}, NaiveTimestamp),
    ],
)
def test_create_user_refuses_bad_input(
    session: Session, unique: Unique, changes: dict[str, Any], error: type[Exception]
) -> None:
    arguments: dict[str, Any] = {
        "email": f"{unique('u')}@example.com",
        "display_name": "X",
        "role": "operator",
        "password": PASSWORD,
        "now": T0,
        **changes,
    }
    with pytest.raises(error):
        service.create_user(session=session, actor=SYSTEM, hasher=FAST, **arguments)
    assert session.scalar(select(User).where(User.email == arguments["email"])) is None


def test_update_profile_and_list_users(session: Session, unique: Unique) -> None:
    user = make_user(session, unique, "support")
    service.update_profile(
        session=session, user_id=user.id, display_name="Ada King", actor=Actor.of_user(user)
    )
    assert user.display_name == "Ada King"
    assert audit_actions(session, f"user:{user.id}") == ["user.create", "user.update_profile"]
    supports = service.list_users(session=session, role="support")
    assert user in supports and all(u.role == "support" for u in supports)
    with pytest.raises(InvalidRole):
        service.list_users(session=session, role="root")


# --- login, throttling, lockout -------------------------------------------------------


def test_authenticate_counts_failures_locks_and_unlocks_after_the_lockout(
    session: Session, unique: Unique
) -> None:
    user = make_user(session, unique)
    settings = service.DEFAULT_SETTINGS
    for attempt in range(settings.max_failed_logins - 1):
        result = login(session, user.email, "wrong password!!", T0)
        assert isinstance(result.error, InvalidCredentials)
        assert user.failed_logins == attempt + 1
    assert login(session, user.email, PASSWORD, T0).user is user
    assert user.failed_logins == 0 and user.last_login_at == T0

    for _ in range(settings.max_failed_logins):
        assert isinstance(
            login(session, user.email, "wrong password!!", T0).error, InvalidCredentials
        )
    assert user.locked_until == T0 + settings.lockout
    # Locked: even the right password is refused, and saying so is safe.
    locked = login(session, user.email, PASSWORD, T0 + timedelta(minutes=14))
    assert isinstance(locked.error, AccountLocked)
    assert locked.error.locked_until == T0 + settings.lockout
    with pytest.raises(AccountLocked):
        locked.user_or_raise()
    unlocked = login(session, user.email, PASSWORD, T0 + settings.lockout)
    assert unlocked.user_or_raise() is user
    assert user.locked_until is None
    assert audit_actions(session, f"user:{user.id}") == ["user.create", "auth.lockout"]
    (lockout,) = service.list_audit(
        session=session, action="auth.lockout", target=f"user:{user.id}"
    )
    assert lockout.actor == "anonymous" and lockout.ip == "192.0.2.7"


# Slower than FAST on purpose: the guesses below must overlap in the check.
OVERLAPPING = PasswordHasher(time_cost=2, memory_cost=16 * 1024, parallelism=1)


def _guess_at_once(
    factory: sessionmaker[Session], email: str, guesses: int
) -> list[AuthenticationFailed | None]:
    """`guesses` wrong logins in parallel threads, each in its own transaction."""
    start = threading.Barrier(guesses)
    outcomes: list[AuthenticationFailed | None] = []
    lock = threading.Lock()

    def guess() -> None:
        start.wait(timeout=60)
        with unit_of_work(factory) as session:
            attempt = service.authenticate(
                session=session, email=email, password="wrong password!!", hasher=FAST, now=T0
            )
        with lock:
            outcomes.append(attempt.error)

    threads = [threading.Thread(target=guess) for _ in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(outcomes) == guesses
    return outcomes


def test_parallel_wrong_logins_all_count_and_lock_out(
    factory: sessionmaker[Session], unique: Unique, backend: str
) -> None:
    settings = service.DEFAULT_SETTINGS
    emails = []
    for _ in range(2):
        with unit_of_work(factory) as session:
            user = service.create_user(
                session=session,
                email=f"{unique('guessed')}@example.com",
                display_name="Guessed",
                role="operator",
                password=PASSWORD,
                actor=SYSTEM,
                hasher=OVERLAPPING,
                now=T0,
            )
            emails.append(user.email)
    below, beyond = settings.max_failed_logins - 1, settings.max_failed_logins + 3

    outcomes = _guess_at_once(factory, emails[0], below)
    assert all(isinstance(error, InvalidCredentials) for error in outcomes)
    with factory() as session:
        user = session.scalars(select(User).where(User.email == emails[0])).one()
        assert (user.failed_logins, user.locked_until) == (below, None)

    outcomes = _guess_at_once(factory, emails[1], beyond)
    with factory() as session:
        user = session.scalars(select(User).where(User.email == emails[1])).one()
        assert user.locked_until == T0 + settings.lockout
    refused = [type(error) for error in outcomes]
    if backend == "postgresql":
        # The row lock queues the guesses: the first `max` are checked, the rest
        # see the lockout the last of those set.
        assert refused.count(InvalidCredentials) == settings.max_failed_logins
        assert refused.count(AccountLocked) == beyond - settings.max_failed_logins
    # Locked now, even for the right password.
    with unit_of_work(factory) as session:
        attempt = service.authenticate(
            session=session, email=emails[1], password=PASSWORD, hasher=FAST, now=T0
        )
    assert isinstance(attempt.error, AccountLocked)


def test_unknown_email_gets_the_same_answer_and_costs_a_verification(
    session: Session, unique: Unique, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = make_user(session, unique)
    verified: list[str] = []
    real_verify = passwords.verify_password

    def counting_verify(password_hash: str, password: str, **kwargs: Any) -> bool:
        verified.append(password_hash)
        return real_verify(password_hash, password, **kwargs)

    monkeypatch.setattr(passwords, "verify_password", counting_verify)
    unknown = login(session, f"{unique('nobody')}@example.com", PASSWORD, T0)
    wrong = login(session, user.email, "wrong password!!", T0)
    assert isinstance(unknown.error, InvalidCredentials) and isinstance(
        wrong.error, InvalidCredentials
    )
    assert str(unknown.error) == str(wrong.error)
    # One argon2id verification each: the unknown email used the dummy hash.
    assert len(verified) == 2 and all(h.startswith("$argon2id$") for h in verified)
    assert login(session, "", "", T0).error is not None
    assert login(session, "x" * 10_000, "y" * 10_000, T0).error is not None


def test_failed_logins_are_committed_although_the_login_fails(
    factory: sessionmaker[Session], unique: Unique
) -> None:
    with unit_of_work(factory) as session:
        user_id, email = (lambda u: (u.id, u.email))(make_user(session, unique))
    for _ in range(2):
        with unit_of_work(factory) as session:
            attempt = login(session, email, "wrong password!!", T0)
        with pytest.raises(InvalidCredentials):
            attempt.user_or_raise()
    with unit_of_work(factory) as session:
        assert service.get_user(session=session, user_id=user_id).failed_logins == 2


def test_disabled_user_cannot_log_in_and_loses_sessions_and_tokens(
    session: Session, unique: Unique
) -> None:
    admin = make_user(session, unique, "admin")
    user = make_user(session, unique, "technician")
    _login, cookie = service.start_session(session=session, user=user, now=T0)
    _token, secret = service.create_api_token(
        session=session,
        owner_id=user.id,
        name="field laptop",
        scopes={"fleet:read"},
        expires_at=T0 + timedelta(days=30),
        actor=Actor.of_user(user),
        now=T0,
    )
    service.disable_user(session=session, user_id=user.id, actor=Actor.of_user(admin), now=T0)
    assert isinstance(login(session, user.email, PASSWORD, T0).error, UserDisabled)
    assert isinstance(login(session, user.email, "wrong password!!", T0).error, InvalidCredentials)
    with pytest.raises(InvalidSession):
        service.get_session_principal(session=session, token=cookie, now=T0)
    with pytest.raises(InvalidApiToken):
        service.verify_api_token(session=session, token=secret, now=T0)
    with pytest.raises(UserNotActive):
        service.start_session(session=session, user=user, now=T0)
    (entry,) = service.list_audit(session=session, action="user.disable", target=f"user:{user.id}")
    assert entry.details == {"previous_state": "active", "sessions_revoked": 1, "tokens_revoked": 1}

    service.enable_user(session=session, user_id=user.id, actor=Actor.of_user(admin))
    assert login(session, user.email, PASSWORD, T0).user is user
    # Re-enabling does not bring back what disabling revoked.
    with pytest.raises(InvalidApiToken):
        service.verify_api_token(session=session, token=secret, now=T0)


def test_the_last_active_admin_cannot_be_disabled_or_demoted(
    session: Session, unique: Unique
) -> None:
    admin = make_user(session, unique, "admin")
    # Other tests may have committed admins: disable them here (rolled back after).
    for other in service.list_users(session=session, role="admin", state="active", limit=500):
        if other.id != admin.id:
            service.disable_user(session=session, user_id=other.id, actor=SYSTEM, now=T0)
    with pytest.raises(LastAdmin):
        service.disable_user(session=session, user_id=admin.id, actor=SYSTEM, now=T0)
    with pytest.raises(LastAdmin):
        service.set_role(session=session, user_id=admin.id, role="auditor", actor=SYSTEM, now=T0)
    assert admin.state == "active" and admin.role == "admin"
    second = make_user(session, unique, "admin")
    service.set_role(session=session, user_id=admin.id, role="auditor", actor=SYSTEM, now=T0)
    with pytest.raises(LastAdmin):
        service.disable_user(session=session, user_id=second.id, actor=SYSTEM, now=T0)


def test_successful_login_rehashes_when_the_parameters_changed(
    session: Session, unique: Unique
) -> None:
    user = make_user(session, unique)
    old_hash = user.password_hash
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    attempt = service.authenticate(
        session=session, email=user.email, password=PASSWORD, hasher=stronger, now=T0
    )
    assert attempt.user is user
    assert user.password_hash != old_hash and user.password_hash is not None
    assert "m=2048,t=2,p=1" in user.password_hash
    assert not passwords.needs_rehash(user.password_hash, hasher=stronger)
    # A failed login with other parameters changes nothing.
    service.authenticate(session=session, email=user.email, password="nope nope nope", now=T0)
    assert "m=2048,t=2,p=1" in user.password_hash


# --- sessions -------------------------------------------------------------------------


def test_session_token_is_stored_hashed_and_resolves_to_a_principal(
    session: Session, unique: Unique
) -> None:
    user = make_user(session, unique, "auditor")
    row, cookie = service.start_session(
        session=session, user=user, ip="203.0.113.9", user_agent="Firefox", now=T0
    )
    assert len(cookie) >= 43 and cookie not in row.token_hash and len(row.token_hash) == 64
    assert "token_hash" not in LoginSessionRead.model_validate(row).model_dump()
    principal = service.get_session_principal(session=session, token=cookie, now=T0)
    assert principal == UserPrincipal(
        subject=user.email,
        roles=frozenset({"auditor"}),
        kind="session",
        user_id=user.id,
        scopes=None,
        credential_id=row.id,
    )
    (entry,) = service.list_audit(session=session, action="auth.login", actor_user_id=user.id)
    assert entry.target == f"session:{row.id}" and entry.ip == "203.0.113.9"
    for forged in ("", cookie[:-1] + ("A" if cookie[-1] != "A" else "B"), "x" * 10_000):
        with pytest.raises(InvalidSession) as caught:
            service.get_session_principal(session=session, token=forged, now=T0)
        assert caught.value.reason == "unknown"


def test_session_idle_expiry_slides_and_absolute_expiry_holds(
    session: Session, unique: Unique
) -> None:
    settings = service.DEFAULT_SETTINGS
    user = make_user(session, unique)
    row, cookie = service.start_session(session=session, user=user, now=T0)

    def principal_at(at: datetime) -> UserPrincipal:
        return service.get_session_principal(session=session, token=cookie, now=at)

    # Within the touch interval nothing is written.
    principal_at(T0 + timedelta(seconds=30))
    assert row.last_seen_at == T0
    # Regular use keeps it alive past several idle periods…
    moment = T0
    while moment + settings.session_idle < T0 + settings.session_lifetime:
        moment += settings.session_idle - timedelta(minutes=1)
        principal_at(moment)
        assert row.last_seen_at == moment
    # …but never past the absolute expiry.
    with pytest.raises(InvalidSession) as caught:
        principal_at(T0 + settings.session_lifetime)
    assert caught.value.reason == "expired"

    idle_row, idle_cookie = service.start_session(session=session, user=user, now=T0)
    with pytest.raises(InvalidSession) as caught:
        service.get_session_principal(
            session=session, token=idle_cookie, now=T0 + settings.session_idle
        )
    assert caught.value.reason == "idle"
    assert idle_row not in service.list_sessions(
        session=session, user_id=user.id, now=T0 + settings.session_idle
    )


def test_list_revoke_and_revoke_all_sessions(session: Session, unique: Unique) -> None:
    user = make_user(session, unique)
    other = make_user(session, unique)
    rows = [service.start_session(session=session, user=user, now=T0) for _ in range(3)]
    (other_row, _), *_ = [service.start_session(session=session, user=other, now=T0)]
    assert {r.id for r in service.list_sessions(session=session, user_id=user.id, now=T0)} == {
        row.id for row, _ in rows
    }
    # sessions:self: another user's session is "not found", not revocable.
    with pytest.raises(SessionNotFound):
        service.revoke_session(
            session=session, session_id=other_row.id, owner_id=user.id, actor=SYSTEM, now=T0
        )
    with pytest.raises(SessionNotFound):
        service.revoke_session(session=session, session_id=-1, actor=SYSTEM, now=T0)
    first, first_cookie = rows[0]
    service.revoke_session(
        session=session, session_id=first.id, owner_id=user.id, actor=Actor.of_user(user), now=T0
    )
    with pytest.raises(InvalidSession) as caught:
        service.get_session_principal(session=session, token=first_cookie, now=T0)
    assert caught.value.reason == "revoked"
    kept, kept_cookie = rows[1]
    revoked = service.revoke_all_sessions(
        session=session, user_id=user.id, keep_session_id=kept.id, actor=Actor.of_user(user), now=T0
    )
    assert revoked == 1
    assert (
        service.get_session_principal(session=session, token=kept_cookie, now=T0).user_id == user.id
    )
    with pytest.raises(InvalidSession):
        service.get_session_principal(session=session, token=rows[2][1], now=T0)
    assert service.get_session_principal(
        session=session, token=service.start_session(session=session, user=other, now=T0)[1], now=T0
    )
    assert [r.id for r in service.list_sessions(session=session, user_id=user.id, now=T0)] == [
        kept.id
    ]
    assert len(service.list_sessions(session=session, user_id=user.id, include_inactive=True)) == 3
    assert audit_actions(session, f"session:{first.id}")[-1] == "session.revoke"


# --- passwords: change and reset ------------------------------------------------------


def test_change_password_revokes_the_other_sessions(session: Session, unique: Unique) -> None:
    user = make_user(session, unique)
    current, current_cookie = service.start_session(session=session, user=user, now=T0)
    _other, other_cookie = service.start_session(session=session, user=user, now=T0)
    actor = Actor.of_user(user)

    def change(old: str, new: str) -> User:
        return service.change_password(
            session=session,
            user_id=user.id,
            current_password=old,
            new_password=new,
            keep_session_id=current.id,
            actor=actor,
            hasher=FAST,
            now=T0,
        )

    with pytest.raises(InvalidCredentials):
        change("not my password", OTHER_PASSWORD)
    with pytest.raises(WeakPassword) as caught:
        change(PASSWORD, "tooshort")
    assert caught.value.rule == "too_short"
    change(PASSWORD, OTHER_PASSWORD)
    assert user.password_changed_at == T0
    assert service.get_session_principal(session=session, token=current_cookie, now=T0)
    with pytest.raises(InvalidSession):
        service.get_session_principal(session=session, token=other_cookie, now=T0)
    assert isinstance(login(session, user.email, PASSWORD, T0).error, InvalidCredentials)
    assert login(session, user.email, OTHER_PASSWORD, T0).user is user
    (entry,) = service.list_audit(
        session=session, action="user.password_change", actor_user_id=user.id
    )
    assert entry.details == {"sessions_revoked": 1}


def test_password_reset_never_reveals_whether_the_email_exists(
    session: Session, unique: Unique
) -> None:
    nobody = f"{unique('nobody')}@example.com"
    for email in (nobody, "not an email", ""):
        assert (
            service.request_password_reset(session=session, email=email, link_template=LINK, now=T0)
            is None
        )
    assert outbox(session, nobody) == []
    with pytest.raises(InvalidInput):
        service.request_password_reset(
            session=session, email=nobody, link_template="https://no-placeholder", now=T0
        )


def test_password_reset_unlocks_logs_out_and_is_single_use(
    session: Session, unique: Unique
) -> None:
    user = make_user(session, unique)
    _row, cookie = service.start_session(session=session, user=user, now=T0)
    for _ in range(service.DEFAULT_SETTINGS.max_failed_logins):
        login(session, user.email, "wrong password!!", T0)
    assert user.locked_until is not None
    service.request_password_reset(
        session=session, email=user.email.upper(), link_template=LINK, ip="192.0.2.1", now=T0
    )
    (letter,) = outbox(session, user.email)
    assert letter.subject == "Reset your voltstack password"
    token = token_in(letter.body)
    stored = session.scalars(select(OneTimeToken).where(OneTimeToken.user_id == user.id)).one()
    assert token not in stored.token_hash and stored.purpose == "password_reset"

    def reset(password: str, link: str = token, at: datetime = T0) -> User:
        return service.reset_password(
            session=session, token=link, new_password=password, hasher=FAST, now=at
        )

    with pytest.raises(WeakPassword):
        reset(user.email)  # the link stays usable after a refused password
    reset(OTHER_PASSWORD, at=T0 + timedelta(minutes=5))
    assert user.locked_until is None and user.failed_logins == 0
    assert login(session, user.email, OTHER_PASSWORD, T0 + timedelta(minutes=5)).user is user
    with pytest.raises(InvalidSession):
        service.get_session_principal(session=session, token=cookie, now=T0)
    with pytest.raises(InvalidOneTimeToken):
        reset("yet another long phrase")  # reused
    assert audit_actions(session, f"user:{user.id}")[-2:] == [
        "user.password_reset_requested",
        "user.password_reset",
    ]


def test_password_reset_links_expire_are_capped_and_cannot_be_forged(
    session: Session, unique: Unique
) -> None:
    settings = service.DEFAULT_SETTINGS
    user = make_user(session, unique)
    for _ in range(settings.max_pending_resets + 2):
        service.request_password_reset(
            session=session, email=user.email, link_template=LINK, now=T0
        )
    mails = outbox(session, user.email)
    assert len(mails) == settings.max_pending_resets
    token = token_in(mails[0].body)
    for bad in (token[:-2], "", "x" * 1000, token + "x"):
        with pytest.raises(InvalidOneTimeToken):
            service.reset_password(session=session, token=bad, new_password=OTHER_PASSWORD, now=T0)
    with pytest.raises(InvalidOneTimeToken):
        service.reset_password(
            session=session,
            token=token,
            new_password=OTHER_PASSWORD,
            hasher=FAST,
            now=T0 + settings.reset_validity,
        )
    # Once expired, new links may be requested again.
    service.request_password_reset(
        session=session, email=user.email, link_template=LINK, now=T0 + settings.reset_validity
    )
    assert len(outbox(session, user.email)) == settings.max_pending_resets + 1


# --- invitations ----------------------------------------------------------------------


def test_invite_mails_a_link_that_activates_the_user_once(session: Session, unique: Unique) -> None:
    admin = make_user(session, unique, "admin")
    email = f"{unique('invitee')}@example.com"
    user, token = service.invite_user(
        session=session,
        email=email,
        display_name="Katherine Johnson",
        role="support",
        actor=Actor.of_user(admin),
        link_template=LINK,
        now=T0,
    )
    assert user.state == "invited" and user.password_hash is None
    (letter,) = outbox(session, email)
    assert token_in(letter.body) == token and admin.email in letter.body
    # No password yet: a login attempt is just wrong credentials.
    assert isinstance(login(session, email, PASSWORD, T0).error, InvalidCredentials)
    with pytest.raises(EmailAlreadyRegistered):
        service.invite_user(
            session=session,
            email=email.upper(),
            display_name="K",
            role="support",
            actor=SYSTEM,
            link_template=LINK,
            now=T0,
        )

    def accept(password: str, link: str = token, at: datetime = T0) -> User:
        return service.accept_invite(
            session=session, token=link, password=password, hasher=FAST, now=at
        )

    with pytest.raises(WeakPassword):
        accept("password1234")
    with pytest.raises(InvalidOneTimeToken):
        accept(PASSWORD, link=token[::-1])
    accept(PASSWORD, at=T0 + timedelta(days=1))
    assert user.state == "active" and login(session, email, PASSWORD, T0).user is user
    with pytest.raises(InvalidOneTimeToken):
        accept(OTHER_PASSWORD)
    assert audit_actions(session, f"user:{user.id}") == ["user.invite", "user.invite_accepted"]


def test_invite_links_expire_and_are_not_reset_links(session: Session, unique: Unique) -> None:
    settings = service.DEFAULT_SETTINGS
    user, token = service.invite_user(
        session=session,
        email=f"{unique('late')}@example.com",
        display_name="Late",
        role="billing",
        actor=SYSTEM,
        link_template=LINK,
        now=T0,
    )
    with pytest.raises(InvalidOneTimeToken):
        service.reset_password(session=session, token=token, new_password=PASSWORD, now=T0)
    with pytest.raises(InvalidOneTimeToken):
        service.accept_invite(
            session=session, token=token, password=PASSWORD, now=T0 + settings.invite_validity
        )
    assert user.state == "invited"
    with pytest.raises(InvalidInput):
        service.invite_user(
            session=session,
            email=f"{unique('x')}@example.com",
            display_name="X",
            role="billing",
            actor=SYSTEM,
            link_template="https://console.example/accept",
            now=T0,
        )


# --- roles ----------------------------------------------------------------------------


def test_set_role_revokes_tokens_the_new_role_could_not_have(
    session: Session, unique: Unique
) -> None:
    user = make_user(session, unique, "operator")

    def token(scopes: set[str]) -> ApiToken:
        created, _secret = service.create_api_token(
            session=session,
            owner_id=user.id,
            name="integration",
            scopes=scopes,
            expires_at=T0 + timedelta(days=10),
            actor=SYSTEM,
            now=T0,
        )
        return created

    reader, writer = token({"fleet:read"}), token({"fleet:read", "fleet:write"})
    with pytest.raises(InvalidRole):
        service.set_role(session=session, user_id=user.id, role="god", actor=SYSTEM)
    service.set_role(session=session, user_id=user.id, role="billing", actor=SYSTEM, now=T0)
    assert user.role == "billing"
    assert reader.revoked_at is None and writer.revoked_at == T0
    (entry,) = service.list_audit(session=session, action="user.set_role", target=f"user:{user.id}")
    assert entry.details == {"from": "operator", "to": "billing", "tokens_revoked": 1}


# --- API tokens -----------------------------------------------------------------------


def test_api_token_is_shown_once_stored_hashed_and_verifies(
    session: Session, unique: Unique
) -> None:
    user = make_user(session, unique, "technician")
    row, secret = service.create_api_token(
        session=session,
        owner_id=user.id,
        name=" SCADA export ",
        scopes=["readings:read", "fleet:read"],
        expires_at=T0 + timedelta(days=90),
        actor=Actor.of_user(user),
        now=T0,
    )
    assert re.fullmatch(rf"vst_{row.prefix}_[A-Za-z0-9_-]{{43}}", secret)
    assert row.name == "SCADA export" and row.scopes == ["fleet:read", "readings:read"]
    session.expire_all()
    stored = session.execute(select(ApiToken.__table__).where(ApiToken.id == row.id)).one()
    assert all(secret.split("_", 2)[2] not in str(value) for value in stored)
    assert "token_hash" not in ApiTokenRead.model_validate(row).model_dump()
    principal = service.verify_api_token(session=session, token=secret, now=T0 + timedelta(days=1))
    assert principal == UserPrincipal(
        subject=user.email,
        roles=frozenset({"technician"}),
        kind="token",
        user_id=user.id,
        scopes=frozenset({"fleet:read", "readings:read"}),
        credential_id=row.id,
    )
    assert row.last_used_at == T0 + timedelta(days=1)
    (entry,) = service.list_audit(session=session, action="token.create", target=f"token:{row.id}")
    assert secret not in str(entry.details) and entry.details is not None
    assert entry.details["prefix"] == row.prefix
    assert [t.id for t in service.list_api_tokens(session=session, owner_id=user.id, now=T0)] == [
        row.id
    ]


@pytest.mark.parametrize(
    ("scopes", "expires_in", "error"),
    [
        ({"users:admin"}, timedelta(days=1), InvalidScopes),  # beyond the operator role
        ({"fleet:read", "audit:read"}, timedelta(days=1), InvalidScopes),
        ({"fleet:delete"}, timedelta(days=1), InvalidScopes),  # no such permission
        (set(), timedelta(days=1), InvalidScopes),
        ({"fleet:read"}, timedelta(0), InvalidTokenExpiry),
        ({"fleet:read"}, -timedelta(days=1), InvalidTokenExpiry),
        ({"fleet:read"}, timedelta(days=365, seconds=1), InvalidTokenExpiry),
    ],
)
def test_api_token_scopes_and_expiry_are_checked(
    session: Session,
    unique: Unique,
    scopes: set[str],
    expires_in: timedelta,
    error: type[Exception],
) -> None:
    user = make_user(session, unique, "operator")
    with pytest.raises(error):
        service.create_api_token(
            session=session,
            owner_id=user.id,
            name="x",
            scopes=scopes,
            expires_at=T0 + expires_in,
            actor=SYSTEM,
            now=T0,
        )
    assert service.list_api_tokens(session=session, owner_id=user.id, include_inactive=True) == []


def test_api_token_without_timezone_or_name_is_refused(session: Session, unique: Unique) -> None:
    user = make_user(session, unique)
    for name, expires_at, error in (
        ("x", datetime(2026, 1, 1), NaiveTimestamp),
        ("  ", T0 + timedelta(days=1), InvalidInput),
        ("n" * 101, T0 + timedelta(days=1), InvalidInput),
    ):
        with pytest.raises(error):
            service.create_api_token(
                session=session,
                owner_id=user.id,
                name=name,
                scopes={"fleet:read"},
                expires_at=expires_at,
                actor=SYSTEM,
                now=T0,
            )


def test_forged_expired_revoked_and_malformed_tokens_are_refused(
    session: Session, unique: Unique
) -> None:
    user = make_user(session, unique)
    other = make_user(session, unique)
    row, secret = service.create_api_token(
        session=session,
        owner_id=user.id,
        name="ci",
        scopes={"fleet:read"},
        expires_at=T0 + timedelta(days=7),
        actor=SYSTEM,
        now=T0,
    )
    last = secret[-1]
    forged = secret[:-1] + ("A" if last != "A" else "B")
    unknown_prefix = f"vst_{'0' * 12}_{secret.split('_', 2)[2]}"
    cases = {
        forged: "forged",
        unknown_prefix: "unknown",
        "vst_short": "malformed",
        "Bearer " + secret: "malformed",
        "": "malformed",
        secret + "x": "malformed",
    }
    for token, reason in cases.items():
        with pytest.raises(InvalidApiToken) as caught:
            service.verify_api_token(session=session, token=token, now=T0)
        assert caught.value.reason == reason
        assert isinstance(caught.value, Unauthenticated)
    with pytest.raises(InvalidApiToken) as caught:
        service.verify_api_token(session=session, token=secret, now=T0 + timedelta(days=7))
    assert caught.value.reason == "expired"
    with pytest.raises(ApiTokenNotFound):
        service.revoke_api_token(session=session, token_id=row.id, owner_id=other.id, actor=SYSTEM)
    service.revoke_api_token(
        session=session, token_id=row.id, owner_id=user.id, actor=Actor.of_user(user), now=T0
    )
    with pytest.raises(InvalidApiToken) as caught:
        service.verify_api_token(session=session, token=secret, now=T0)
    assert caught.value.reason == "revoked"
    assert service.list_api_tokens(session=session, owner_id=user.id, now=T0) == []
    assert audit_actions(session, f"token:{row.id}") == ["token.create", "token.revoke"]


# --- the audit log --------------------------------------------------------------------


def test_list_audit_filters_and_pages(session: Session, unique: Unique) -> None:
    target = unique("thing")
    actor = Actor("alice@example.com", 4242, "192.0.2.9", "req-9")
    for minute in range(6):
        service.record_audit(
            session=session,
            actor=actor,
            action="user.create" if minute % 2 else "token.revoke",
            target=target,
            details={"n": minute, "at": T0, "roles": frozenset({"b", "a"})},
            at=T0 + timedelta(minutes=minute),
        )
    newest = service.list_audit(session=session, target=target)
    assert [entry.details["n"] for entry in newest if entry.details] == [5, 4, 3, 2, 1, 0]
    assert newest[0].details == {"n": 5, "at": T0.isoformat(), "roles": ["a", "b"]}
    page = service.list_audit(session=session, target=target, limit=2, offset=1)
    assert [e.details["n"] for e in page if e.details] == [4, 3]
    users_only = service.list_audit(session=session, target=target, action_prefix="user.")
    assert [e.details["n"] for e in users_only if e.details] == [5, 3, 1]
    window = service.list_audit(
        session=session,
        target=target,
        since=T0 + timedelta(minutes=1),
        until=T0 + timedelta(minutes=3),
    )
    assert [e.details["n"] for e in window if e.details] == [2, 1]
    assert service.list_audit(session=session, target=target, action_prefix="user%") == []
    read = AuditEntryRead.model_validate(newest[0])
    assert read.actor_user_id == 4242 and read.request_id == "req-9"
    for limit, offset in ((0, 0), (501, 0), (10, -1)):
        with pytest.raises(InvalidInput):
            service.list_audit(session=session, limit=limit, offset=offset)
    for action in ("", "create", "User.Create", "user.", "a" * 30 + "." + "b" * 40):
        with pytest.raises(InvalidInput):
            service.record_audit(session=session, actor=actor, action=action)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET action = 'user.nothing' WHERE id = :id",
        "UPDATE audit_log SET details = NULL",
        "DELETE FROM audit_log WHERE id = :id",
        "DELETE FROM audit_log",
    ],
)
def test_the_database_refuses_to_change_the_audit_log(
    factory: sessionmaker[Session], statement: str
) -> None:
    with unit_of_work(factory) as session:
        entry_id = service.record_audit(session=session, actor=SYSTEM, action="test.kept").id
    with pytest.raises(DBAPIError, match="append-only"), unit_of_work(factory) as session:
        session.execute(text(statement), {"id": entry_id})
    with unit_of_work(factory) as session:
        kept = session.get(AuditEntry, entry_id)
        assert kept is not None and kept.action == "test.kept"


def test_the_database_refuses_to_truncate_the_audit_log(
    factory: sessionmaker[Session], backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    with pytest.raises(DBAPIError, match="append-only"), unit_of_work(factory) as session:
        session.execute(text("TRUNCATE audit_log"))


def test_a_failed_action_leaves_no_audit_entry(
    factory: sessionmaker[Session], unique: Unique
) -> None:
    email = f"{unique('atomic')}@example.com"
    with pytest.raises(EmailAlreadyRegistered), unit_of_work(factory) as session:
        make_user(session, unique, email=email)
        make_user(session, unique, email=email)
    with unit_of_work(factory) as session:
        assert session.scalar(select(User).where(User.email == email)) is None
        created = service.list_audit(session=session, action="user.create", limit=500)
        assert all(entry.details and entry.details.get("email") != email for entry in created)


# --- customers: only their own meters -------------------------------------------------


@dataclass
class Household:
    customer: User
    number: str
    serials: list[str]


@pytest.fixture
def household(session: Session, unique: Unique) -> Household:
    customer = make_user(session, unique, "customer")
    account = Account(number=unique("ACC"), holder_user_id=customer.id, created_at=T0)
    session.add(account)
    session.flush()
    current, moved_out, future = unique("SN"), unique("SN"), unique("SN")
    session.add_all(
        [
            AccountMeter(account_id=account.id, meter_serial=current, linked_at=T0),
            AccountMeter(
                account_id=account.id,
                meter_serial=moved_out,
                linked_at=T0 - timedelta(days=400),
                unlinked_at=T0 - timedelta(days=1),
            ),
            AccountMeter(
                account_id=account.id, meter_serial=future, linked_at=T0 + timedelta(days=30)
            ),
        ]
    )
    session.flush()
    return Household(customer, account.number, [current, moved_out, future])


def test_customer_meter_serials_are_the_current_links(
    session: Session, household: Household, unique: Unique
) -> None:
    current, moved_out, future = household.serials
    user_id = household.customer.id
    assert service.customer_meter_serials(session=session, user_id=user_id, at=T0) == {current}
    assert service.customer_meter_serials(
        session=session, user_id=user_id, at=T0 - timedelta(days=2)
    ) == {moved_out}
    assert service.customer_meter_serials(
        session=session, user_id=user_id, at=T0 + timedelta(days=31)
    ) == {current, future}
    stranger = make_user(session, unique, "customer")
    assert service.customer_meter_serials(session=session, user_id=stranger.id) == frozenset()


def test_customer_resource_rule(session: Session, household: Household, unique: Unique) -> None:
    current, moved_out, _future = household.serials
    neighbour = make_user(session, unique, "customer")
    customer = UserPrincipal(
        household.customer.email, frozenset({"customer"}), "session", household.customer.id, None, 1
    )
    other = UserPrincipal(
        neighbour.email, frozenset({"customer"}), "session", neighbour.id, None, 2
    )

    def may(principal: UserPrincipal, permission: str, **resource: str) -> bool:
        return policies.resource_allowed(principal, permission, resource, session=session)

    assert may(customer, "readings:read", serial=current)
    assert may(customer, "fleet:read", meter_serial=current)
    assert may(customer, "account:read-own", account_number=household.number)
    assert may(customer, "account:read-own")  # self-scoped by its very name
    assert not may(customer, "readings:read", serial=moved_out)  # moved out
    assert not may(other, "readings:read", serial=current)  # id substitution
    assert not may(customer, "fleet:read", gateway_id="gw-1")
    assert not may(customer, "fleet:read", serial=current, gateway_id="gw-1")
    assert not may(customer, "readings:read")  # a listing without an owner filter
    assert not may(customer, "fleet:read", account_number=household.number + "x")
    assert not may(customer, "fleet:write", serial=current)
    assert not may(customer, "audit:read")
    operator = UserPrincipal("op@example.com", frozenset({"operator"}), "session", 7, None, 3)
    assert may(operator, "readings:read", serial=moved_out, gateway_id="gw-1")
    assert not may(operator, "users:admin")
    narrow = UserPrincipal(
        "op@example.com", frozenset({"operator"}), "token", 7, frozenset({"fleet:read"}), 4
    )
    assert may(narrow, "fleet:read", gateway_id="gw-1")
    assert not may(narrow, "readings:read", serial=current)  # outside the token's scopes


# --- mail: the outbox and a real SMTP server ------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps what arrives and refuses chosen recipients."""

    refuse: set[str] = field(default_factory=set)
    messages: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        self.arrived.set()
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


@pytest.fixture
def mail_factory(new_database: Callable[[], str]) -> Iterator[sessionmaker[Session]]:
    """A database of its own: delivery takes every due mail in the outbox."""
    url = new_database()
    upgrade_database(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


def plain_smtp(port: int) -> mail.SmtpSettings:
    return mail.SmtpSettings(
        host="127.0.0.1",
        port=port,
        sender="console@voltstack.example",
        starttls=False,
        timeout_s=10,
    )


def test_invite_mail_is_delivered_over_smtp(
    mail_factory: sessionmaker[Session], smtp_server: tuple[Recorder, int], unique: Unique
) -> None:
    recorder, port = smtp_server
    email = f"{unique('new')}@example.com"
    with unit_of_work(mail_factory) as session:
        _user, token = service.invite_user(
            session=session,
            email=email,
            display_name="Mary Jackson",
            role="operator",
            actor=SYSTEM,
            link_template=LINK,
            now=T0,
        )
    report = mail.deliver_outbox(factory=mail_factory, smtp=plain_smtp(port), now=T0)
    assert report == mail.DeliveryReport(sent=1, failed=0)
    (received,) = recorder.messages
    assert received.mail_from == "console@voltstack.example" and received.rcpt_tos == [email]
    content = received.content.decode()
    assert "Subject: Your voltstack console account" in content and token in content
    with unit_of_work(mail_factory) as session:
        (letter,) = outbox(session, email)
        assert (letter.sent_at, letter.attempts, letter.last_error) == (T0, 1, None)
    # Sent mails are kept, and not sent again.
    assert mail.deliver_outbox(factory=mail_factory, smtp=plain_smtp(port), now=T0) == (
        mail.DeliveryReport()
    )
    assert len(recorder.messages) == 1


def test_a_dead_smtp_port_keeps_the_mail_and_counts_the_attempt(
    mail_factory: sessionmaker[Session], smtp_server: tuple[Recorder, int]
) -> None:
    recorder, port = smtp_server
    with unit_of_work(mail_factory) as session:
        first = mail.enqueue_mail(
            session=session, to="a@example.com", subject="one", body="1", now=T0
        )
        mail.enqueue_mail(session=session, to="b@example.com", subject="two", body="2", now=T0)
        first_id = first.id
    dead = plain_smtp(free_port())  # nobody listens there
    report = mail.deliver_outbox(factory=mail_factory, smtp=dead, now=T0)
    assert report == mail.DeliveryReport(sent=0, failed=1)
    with unit_of_work(mail_factory) as session:
        tried = session.get(OutboxMail, first_id)
        assert tried is not None and tried.sent_at is None and tried.attempts == 1
        assert tried.last_error and "refused" in tried.last_error.lower()
        assert tried.next_attempt_at == T0 + mail.RETRY_BASE
        # The relay was down: the second mail was not tried, so not counted.
        untried = outbox(session, "b@example.com")[0]
        assert (untried.attempts, untried.last_error) == (0, None)
    # Without SMTP settings nothing moves.
    assert mail.deliver_outbox(factory=mail_factory, smtp=None, now=T0) == mail.DeliveryReport()
    # The relay is back: the untried mail goes now, the failed one after its backoff.
    assert mail.deliver_outbox(factory=mail_factory, smtp=plain_smtp(port), now=T0).sent == 1
    later = T0 + mail.RETRY_BASE
    assert mail.deliver_outbox(factory=mail_factory, smtp=plain_smtp(port), now=later).sent == 1
    assert sorted(m.rcpt_tos[0] for m in recorder.messages) == ["a@example.com", "b@example.com"]
    with unit_of_work(mail_factory) as session:
        done = session.get(OutboxMail, first_id)
        assert done is not None and done.sent_at == later and done.attempts == 2
        assert done.last_error is None


def test_a_refused_recipient_does_not_block_the_others(
    mail_factory: sessionmaker[Session], smtp_server: tuple[Recorder, int]
) -> None:
    recorder, port = smtp_server
    recorder.refuse.add("gone@example.com")
    with unit_of_work(mail_factory) as session:
        for to in ("gone@example.com", "here@example.com"):
            mail.enqueue_mail(session=session, to=to, subject="hello", body="hi", now=T0)
    report = mail.deliver_outbox(factory=mail_factory, smtp=plain_smtp(port), now=T0)
    assert report == mail.DeliveryReport(sent=1, failed=1)
    with unit_of_work(mail_factory) as session:
        (gone,) = outbox(session, "gone@example.com")
        assert gone.sent_at is None and gone.attempts == 1
        assert gone.last_error and "550" in gone.last_error
    assert [m.rcpt_tos for m in recorder.messages] == [["here@example.com"]]


def test_retry_backoff_doubles_up_to_an_hour() -> None:
    assert [mail.retry_delay(n) for n in (0, 1, 2, 3)] == [
        timedelta(0),
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
    ]
    assert mail.retry_delay(7) == timedelta(hours=1) == mail.retry_delay(10_000)


@pytest.mark.parametrize(
    ("to", "subject", "body"),
    [
        ("not an address", "s", "b"),
        ("a@example.com\r\nBcc: x@evil.example", "s", "b"),
        ("a@example.com", "line\r\nBcc: x@evil.example", "b"),
        ("a@example.com", "", "b"),
        ("a@example.com", "s", "b" * 100_001),
    ],
)
def test_enqueue_mail_refuses_header_injection_and_junk(
    session: Session, to: str, subject: str, body: str
) -> None:
    with pytest.raises(InvalidMail):
        mail.enqueue_mail(session=session, to=to, subject=subject, body=body, now=T0)


def test_two_deliverers_send_each_mail_once(
    mail_factory: sessionmaker[Session], smtp_server: tuple[Recorder, int]
) -> None:
    recorder, port = smtp_server
    with unit_of_work(mail_factory) as session:
        for n in range(12):
            mail.enqueue_mail(
                session=session, to=f"r{n}@example.com", subject=f"#{n}", body="x", now=T0
            )
    barrier = threading.Barrier(2)
    reports: list[mail.DeliveryReport] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            barrier.wait()
            reports.append(mail.deliver_outbox(factory=mail_factory, smtp=plain_smtp(port), now=T0))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert sum(report.sent for report in reports) == 12
    assert sorted(m.rcpt_tos[0] for m in recorder.messages) == sorted(
        f"r{n}@example.com" for n in range(12)
    )


def test_starttls_and_auth(mail_factory: sessionmaker[Session], tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(pki.cert_file, pki.key_file)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
        assert isinstance(auth, LoginPassword)
        logins.append((auth.login, auth.password))
        return AuthResult(success=auth.password == b"relay-secret")

    recorder = Recorder()
    port = free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        with unit_of_work(mail_factory) as session:
            mail.enqueue_mail(
                session=session, to="tls@example.com", subject="tls", body="x", now=T0
            )
        client_context = ssl.create_default_context(cafile=str(pki.ca_file))
        settings = mail.SmtpSettings(
            host="127.0.0.1",
            port=port,
            sender="console@voltstack.example",
            starttls=True,
            username="console",
            password="wrong",
            ssl_context=client_context,
            timeout_s=10,
        )
        assert mail.deliver_outbox(factory=mail_factory, smtp=settings, now=T0).failed == 1
        assert "password" not in repr(settings) and "wrong" not in repr(settings)
        good = mail.SmtpSettings(**{**settings.__dict__, "password": "relay-secret"})
        later = T0 + mail.RETRY_BASE
        assert mail.deliver_outbox(factory=mail_factory, smtp=good, now=later).sent == 1
    finally:
        controller.stop()
    assert logins == [(b"console", b"wrong"), (b"console", b"relay-secret")]
    assert [m.rcpt_tos for m in recorder.messages] == [["tls@example.com"]]


def test_outbox_loop_delivers_until_stopped(
    mail_factory: sessionmaker[Session], smtp_server: tuple[Recorder, int]
) -> None:
    recorder, port = smtp_server
    with unit_of_work(mail_factory) as session:
        mail.enqueue_mail(session=session, to="loop@example.com", subject="loop", body="x")

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            mail.outbox_loop(factory=mail_factory, smtp=plain_smtp(port), interval_s=0.2, stop=stop)
        )
        await asyncio.to_thread(recorder.arrived.wait, 60)
        stop.set()
        await asyncio.wait_for(task, timeout=60)

    asyncio.run(run())
    assert [m.rcpt_tos for m in recorder.messages] == [["loop@example.com"]]
