"""Outgoing mail: an outbox table, delivered over SMTP when SMTP is configured.

Strategy: a mail is a row in `mail_outbox`, written in the same transaction
as what caused it (an invite, a reset request), so it is sent if and only if
that commits. `deliver_outbox` — called periodically by the API process, or
by `outbox_loop` — sends what is due:

1. pick due rows (``sent_at IS NULL AND next_attempt_at <= now``);
2. *claim* one in its own short transaction: count the attempt and move
   `next_attempt_at` past the backoff, guarded by the attempt count read in
   step 1, so two processes never send the same attempt (the claim works the
   same on SQLite and PostgreSQL, no row locks needed);
3. send it; then mark it sent, or record the error.

Nothing is ever deleted or given up: a failing mail is retried with
exponential backoff (`RETRY_BASE`, doubled per attempt, at most `RETRY_MAX`)
and its `attempts` and `last_error` are there for the console. A crash
between sending and marking sent means the mail goes out again after the
backoff: at least once, never lost. A connection failure stops the batch
(the rest stay due, no attempt counted for them); a refusal of one mail
(bad recipient) counts against that mail only.

Without SMTP settings mails just wait in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.db import unit_of_work, utc_now
from cloud.users.exceptions import InvalidMail
from cloud.users.models import EMAIL_MAX_LENGTH, OutboxMail

__all__ = [
    "RETRY_BASE",
    "RETRY_MAX",
    "DeliveryReport",
    "SmtpSettings",
    "deliver_outbox",
    "enqueue_mail",
    "outbox_loop",
    "retry_delay",
]

logger = logging.getLogger(__name__)

RETRY_BASE = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=1)
MAX_BODY_CHARS = 100_000
MAX_ERROR_CHARS = 1000
# Deliberately plain: one @, no spaces or angle brackets, a dot in the domain.
EMAIL_PATTERN = re.compile(r"^[^@\s<>,;\"]{1,64}@[^@\s<>,;\"]+\.[^@\s<>,;\".]{2,}$")


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send.

    Attributes:
        host, port: the relay (587 submission with STARTTLS is the usual).
        sender: the From address.
        starttls: upgrade the connection with STARTTLS before anything else.
        username, password: SMTP AUTH after STARTTLS, if given.
        timeout_s: per socket operation.
        ssl_context: for STARTTLS; default verifies against the system CAs.
    """

    host: str
    port: int
    sender: str
    starttls: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    ssl_context: ssl.SSLContext | None = None


@dataclass(frozen=True)
class DeliveryReport:
    """What one `deliver_outbox` call did."""

    sent: int = 0
    failed: int = 0


@dataclass(frozen=True)
class _Claimed:
    id: int
    to_address: str
    subject: str
    body: str


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th attempt before the next one."""
    if attempts <= 0:
        return timedelta(0)
    factor: int = 2 ** min(attempts - 1, 20)
    return min(RETRY_BASE * factor, RETRY_MAX)


def enqueue_mail(
    *, session: Session, to: str, subject: str, body: str, now: datetime | None = None
) -> OutboxMail:
    """Put a plain-text mail in the outbox (in the caller's transaction).

    Raises:
        InvalidMail: bad recipient, a line break in the subject, an oversized body.
    """
    if len(to) > EMAIL_MAX_LENGTH or not EMAIL_PATTERN.fullmatch(to):
        raise InvalidMail(f"not a deliverable address: {to[:80]!r}")
    if not subject or "\r" in subject or "\n" in subject or len(subject) > 998:
        raise InvalidMail("the subject must be one line of 1-998 characters")
    if len(body) > MAX_BODY_CHARS:
        raise InvalidMail(f"the body is longer than {MAX_BODY_CHARS} characters")
    moment = now or utc_now()
    mail = OutboxMail(
        to_address=to,
        subject=subject,
        body=body,
        created_at=moment,
        next_attempt_at=moment,
        attempts=0,
    )
    session.add(mail)
    session.flush()
    logger.info("queued mail %d to %s: %s", mail.id, to, subject)
    return mail


def deliver_outbox(
    *,
    factory: sessionmaker[Session],
    smtp: SmtpSettings | None,
    limit: int = 50,
    now: datetime | None = None,
) -> DeliveryReport:
    """Send the mails that are due; safe to run in several processes at once.

    Args:
        factory: sessions of the operational database (each step commits).
        smtp: where to send; None leaves every mail waiting.
        limit: at most this many mails per call.
        now: the current time (tests inject it).

    Returns:
        How many were sent and how many failed this time.
    """
    if smtp is None:
        return DeliveryReport()
    moment = now or utc_now()
    with unit_of_work(factory) as session:
        due = session.execute(
            select(OutboxMail.id, OutboxMail.attempts)
            .where(OutboxMail.sent_at.is_(None), OutboxMail.next_attempt_at <= moment)
            .order_by(OutboxMail.next_attempt_at, OutboxMail.id)
            .limit(limit)
        ).all()
    sent = failed = 0
    connection: smtplib.SMTP | None = None
    try:
        for mail_id, attempts in due:
            mail = _claim(factory, mail_id, attempts, moment)
            if mail is None:
                continue  # another process claimed it
            try:
                if connection is None:
                    connection = _connect(smtp)
                connection.send_message(_message(mail, smtp.sender))
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as error:
                failed += 1
                _record_failure(factory, mail.id, error)
            except (OSError, smtplib.SMTPException) as error:
                # The relay is down or refused us: the rest would fail the same way.
                failed += 1
                _record_failure(factory, mail.id, error)
                break
            else:
                sent += 1
                _mark_sent(factory, mail.id, moment)
    finally:
        if connection is not None:
            _quit(connection)
    if sent or failed:
        logger.info("outbox: %d sent, %d failed", sent, failed)
    return DeliveryReport(sent=sent, failed=failed)


async def outbox_loop(
    *,
    factory: sessionmaker[Session],
    smtp: SmtpSettings | None,
    interval_s: float = 30.0,
    stop: asyncio.Event,
) -> None:
    """Run `deliver_outbox` every `interval_s` until `stop` is set (in a worker thread).

    An unexpected error is logged and the loop goes on: the next round retries.
    """
    while not stop.is_set():
        try:
            await asyncio.to_thread(deliver_outbox, factory=factory, smtp=smtp)
        except Exception:
            logger.exception("outbox delivery round failed; retrying in %.0f s", interval_s)
        with contextlib.suppress(TimeoutError):  # the interval passed: next round
            await asyncio.wait_for(stop.wait(), timeout=interval_s)


def _claim(
    factory: sessionmaker[Session], mail_id: int, attempts: int, now: datetime
) -> _Claimed | None:
    with unit_of_work(factory) as session:
        claimed = cast(
            CursorResult[Any],
            session.execute(
                update(OutboxMail)
                .where(
                    OutboxMail.id == mail_id,
                    OutboxMail.sent_at.is_(None),
                    OutboxMail.attempts == attempts,
                )
                .values(attempts=attempts + 1, next_attempt_at=now + retry_delay(attempts + 1))
                .execution_options(synchronize_session=False)
            ),
        )
        if claimed.rowcount != 1:
            return None
        mail = session.get(OutboxMail, mail_id)
        assert mail is not None  # we just updated it
        return _Claimed(mail.id, mail.to_address, mail.subject, mail.body)


def _record_failure(factory: sessionmaker[Session], mail_id: int, error: BaseException) -> None:
    reason = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
    logger.warning("mail %d not delivered: %s", mail_id, reason)
    with unit_of_work(factory) as session:
        session.execute(
            update(OutboxMail)
            .where(OutboxMail.id == mail_id)
            .values(last_error=reason)
            .execution_options(synchronize_session=False)
        )


def _mark_sent(factory: sessionmaker[Session], mail_id: int, now: datetime) -> None:
    with unit_of_work(factory) as session:
        session.execute(
            update(OutboxMail)
            .where(OutboxMail.id == mail_id)
            .values(sent_at=now, last_error=None)
            .execution_options(synchronize_session=False)
        )


def _connect(smtp: SmtpSettings) -> smtplib.SMTP:
    connection = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s)
    try:
        connection.ehlo()
        if smtp.starttls:
            connection.starttls(context=smtp.ssl_context or ssl.create_default_context())
            connection.ehlo()
        if smtp.username is not None:
            connection.login(smtp.username, smtp.password or "")
    except BaseException:
        connection.close()
        raise
    return connection


def _quit(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (OSError, smtplib.SMTPException):
        connection.close()


def _message(mail: _Claimed, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to_address
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(utc_now())
    # The sender's domain, not getfqdn(): no DNS look-up per mail.
    domain = sender.rsplit("@", 1)[-1]
    message["Message-ID"] = make_msgid(idstring=f"outbox-{mail.id}", domain=domain)
    message.set_content(mail.body)
    return message
