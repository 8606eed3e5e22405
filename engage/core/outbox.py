"""The outbox: every email is a row first, written with the change that caused it.

`enqueue()` adds an OutboxEmail to the caller's transaction. `drain()` sends what is due:
it claims a few rows with one conditional UPDATE (the first statement of its transaction, so
two drains never claim the same row on SQLite or PostgreSQL), sends each over SMTP, and records
the outcome. A failure keeps the email queued with its error and retries it with exponential
backoff; after MAIL_MAX_ATTEMPTS it is marked failed for an admin to retry. If the process dies
mid-send the claim's lease runs out and a later drain sends it again, with the same Message-ID
so mail clients can recognise the duplicate.
"""

from __future__ import annotations

import datetime as dt
import smtplib
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from engage import clock
from engage.extensions import db
from engage.models import OutboxEmail, OutboxStatus

MAX_BACKOFF = dt.timedelta(hours=6)


def enqueue(recipient: str, subject: str, body_text: str, body_html: str | None = None,
            now: dt.datetime | None = None) -> OutboxEmail:
    """Queue an email in the caller's transaction; it is sendable from `now` on."""
    sender = current_app.config["MAIL_DEFAULT_SENDER"]
    domain = sender.rsplit("@", 1)[-1].strip(">") if "@" in sender else "engage.localhost"
    email = OutboxEmail(recipient=recipient, subject=subject[:300], body_text=body_text, body_html=body_html,
                        message_id=make_msgid(idstring="engage", domain=domain), status=OutboxStatus.QUEUED.value,
                        attempts=0, next_attempt_at=now or clock.utcnow())
    db.session.add(email)
    return email


def backoff(attempts: int) -> dt.timedelta:
    """1, 2, 4, 8... minutes after each failed attempt, at most six hours."""
    return min(dt.timedelta(minutes=2 ** max(attempts - 1, 0)), MAX_BACKOFF)


@dataclass
class DrainResult:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{len(self.sent)} sent, {len(self.retrying)} to retry, {len(self.failed)} failed"


def claim(now: dt.datetime, limit: int) -> list[int]:
    """Reserve up to `limit` due emails for this drain and commit the reservation."""
    lease_until = now + dt.timedelta(seconds=current_app.config["OUTBOX_LEASE_SECONDS"])
    due = sa.or_(
        sa.and_(OutboxEmail.status == OutboxStatus.QUEUED.value, OutboxEmail.next_attempt_at <= now),
        sa.and_(OutboxEmail.status == OutboxStatus.SENDING.value, OutboxEmail.next_attempt_at <= now),
    )
    candidates = sa.select(OutboxEmail.id).where(due).order_by(OutboxEmail.id).limit(limit).scalar_subquery()
    db.session.commit()  # start from a fresh transaction: the UPDATE below is its first statement
    ids = db.session.scalars(
        sa.update(OutboxEmail)
        .where(OutboxEmail.id.in_(candidates), due)  # `due` is re-checked on the row if another drain won it
        .values(status=OutboxStatus.SENDING.value, attempts=OutboxEmail.attempts + 1,
                next_attempt_at=lease_until, updated_at=now)
        .returning(OutboxEmail.id)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return sorted(ids)


def build_message(email: OutboxEmail) -> EmailMessage:
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_DEFAULT_SENDER"]
    message["To"] = email.recipient
    message["Subject"] = email.subject
    message["Message-ID"] = email.message_id
    message["Date"] = format_datetime(email.created_at.replace(tzinfo=dt.UTC))
    message.set_content(email.body_text)
    if email.body_html:
        message.add_alternative(email.body_html, subtype="html")
    if email.attachment_path:
        path = Path(current_app.instance_path) / email.attachment_path
        subtype = "vnd.openxmlformats-officedocument.spreadsheetml.sheet" if path.suffix == ".xlsx" else "octet-stream"
        message.add_attachment(path.read_bytes(), maintype="application", subtype=subtype,
                               filename=email.attachment_name or path.name)
    return message


def open_smtp() -> smtplib.SMTP:
    """Connect and log in with the MAIL_* settings, or raise OSError/SMTPException saying why."""
    config = current_app.config
    host, port = config["MAIL_SERVER"], int(config["MAIL_PORT"])
    try:
        smtp = smtplib.SMTP(host, port, timeout=config["MAIL_TIMEOUT_SECONDS"])
    except (OSError, smtplib.SMTPException) as exc:
        raise OSError(f"could not connect to the SMTP server {host}:{port}: {exc}") from exc
    try:
        if config["MAIL_USE_TLS"]:
            smtp.starttls()
        if config["MAIL_USERNAME"]:
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"] or "")
    except (OSError, smtplib.SMTPException):
        smtp.close()
        raise
    return smtp


def drain(now: dt.datetime, limit: int = 50) -> DrainResult:
    """Send the due emails; every outcome is committed per email, so nothing is lost."""
    result = DrainResult()
    ids = claim(now, limit)
    if not ids:
        return result
    max_attempts = current_app.config["MAIL_MAX_ATTEMPTS"]
    smtp, connect_error = None, None
    try:
        smtp = open_smtp()
    except (OSError, smtplib.SMTPException) as exc:
        connect_error = str(exc)
    try:
        for email_id in ids:
            email = db.session.get(OutboxEmail, email_id)
            error = connect_error
            if smtp is not None:
                try:
                    smtp.send_message(build_message(email))
                except (smtplib.SMTPException, OSError, socket.timeout) as exc:
                    error = f"{type(exc).__name__}: {exc}"
            if error is None:
                email.status = OutboxStatus.SENT.value
                email.sent_at = now
                email.last_error = None
                result.sent.append(email.id)
            else:
                email.last_error = error[:2000]
                if email.attempts >= max_attempts:
                    email.status = OutboxStatus.FAILED.value
                    result.failed.append(email.id)
                else:
                    email.status = OutboxStatus.QUEUED.value
                    email.next_attempt_at = now + backoff(email.attempts)
                    result.retrying.append(email.id)
            db.session.commit()
    finally:
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
    return result


def retry(email: OutboxEmail, now: dt.datetime) -> None:
    """An admin asks for a failed email to be tried again now."""
    if email.status != OutboxStatus.FAILED.value:
        raise ValueError("Only failed emails can be retried.")
    email.status = OutboxStatus.QUEUED.value
    email.attempts = 0
    email.next_attempt_at = now
