"""The outbox: every email is a row first, written with the change that caused it.

`enqueue()` adds an OutboxEmail to the caller's transaction. `drain()` sends what is due:
it claims a few rows with one conditional UPDATE (the first statement of its transaction, so
two drains never claim the same row on SQLite or PostgreSQL), delivers each — over SMTP
(MAIL_BACKEND=smtp, production) or as an .eml file in MAIL_FILE_DIR (MAIL_BACKEND=file,
development: the whole loop can be seen without a mail server) — and records the outcome. A failure keeps the email queued with its error and retries it with exponential
backoff; after MAIL_MAX_ATTEMPTS it is marked failed for an admin to retry. If the process dies
mid-send the claim's lease runs out and a later drain sends it again, with the same Message-ID
so mail clients can recognise the duplicate.
"""

from __future__ import annotations

import datetime as dt
import os
import smtplib
import socket
import tempfile
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from engage import clock
from engage.extensions import db
from engage.formatting import one_line
from engage.models import OutboxEmail, OutboxStatus

MAX_BACKOFF = dt.timedelta(hours=6)


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ATTACHMENT_TYPES = {".xlsx": XLSX_TYPE, ".pdf": "application/pdf",
                    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}


def enqueue(recipient: str, subject: str, body_text: str, body_html: str | None = None,
            now: dt.datetime | None = None, *, cc: str = "", sender: str | None = None,
            reply_to: str | None = None, attachments: list[dict] | None = None,
            engagement_id: int | None = None, letter_id: int | None = None) -> OutboxEmail:
    """Queue an email in the caller's transaction; it is sendable from `now` on.

    `recipient` and `cc` are comma-separated addresses; `attachments` are files under
    instance/ given as {"path", "name", "type"}. The Message-ID is fixed here, so it can be
    stored (on a letter) and matched when the reply names it.
    """
    origin = sender or current_app.config["MAIL_DEFAULT_SENDER"]
    domain = origin.rsplit("@", 1)[-1].strip(">") if "@" in origin else "engage.localhost"
    email = OutboxEmail(recipient=recipient, cc=cc, sender=sender, reply_to=reply_to, subject=one_line(subject, 300),
                        body_text=body_text, body_html=body_html, attachments=list(attachments or []),
                        message_id=make_msgid(idstring="engage", domain=domain), status=OutboxStatus.QUEUED.value,
                        attempts=0, next_attempt_at=now or clock.utcnow(), engagement_id=engagement_id,
                        letter_id=letter_id)
    db.session.add(email)
    return email


def store_attachment(data: bytes, name: str) -> str:
    """Keep a file for an email until it is sent: written under instance/outbox/, returns its relative path."""
    folder = Path(current_app.instance_path) / "outbox"
    folder.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=Path(name).suffix)
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    final = folder / f"{os.urandom(12).hex()}{Path(name).suffix}"
    os.replace(temp, final)
    return str(final.relative_to(current_app.instance_path))


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


class Unsendable(ValueError):
    """The email cannot be sent as written (an address that is not one, a header with a line
    break): retrying cannot help, so it fails at once with this reason."""


def checked_addresses(header: str, value: str | None, *, required: bool = False) -> str:
    """`value` if it is a comma-separated list of addresses (each `a@b` or `Name <a@b>`), else Unsendable."""
    value = value or ""
    if any(ch in value for ch in "\r\n\0"):
        raise Unsendable(f"the {header} header contains a line break")
    addresses = [a.strip() for a in value.split(",") if a.strip()]
    if required and not addresses:
        raise Unsendable(f"no {header} address")
    for item in addresses:
        parsed = getaddresses([item])
        address = parsed[0][1] if len(parsed) == 1 else ""
        if address.count("@") != 1 or not all(address.split("@")) \
                or any(ch.isspace() or ch in '<>()[]",;:\\' for ch in address):
            raise Unsendable(f"{item!r} in {header} is not an email address")
    return ", ".join(addresses)


def build_message(email: OutboxEmail) -> EmailMessage:
    """The message as it goes out; Unsendable if a row cannot be sent as written."""
    message = EmailMessage()
    message["From"] = checked_addresses("From", email.sender or current_app.config["MAIL_DEFAULT_SENDER"],
                                        required=True)
    message["To"] = checked_addresses("To", email.recipient, required=True)
    if email.cc:
        message["Cc"] = checked_addresses("Cc", email.cc)
    if email.reply_to:
        message["Reply-To"] = checked_addresses("Reply-To", email.reply_to)
    message["Subject"] = one_line(email.subject, 300)
    message["Message-ID"] = email.message_id
    message["Date"] = format_datetime(email.created_at.replace(tzinfo=dt.UTC))
    message.set_content(email.body_text)
    if email.body_html:
        message.add_alternative(email.body_html, subtype="html")
    files = list(email.attachments or [])
    if email.attachment_path:
        files.insert(0, {"path": email.attachment_path, "name": email.attachment_name})
    for item in files:
        path = Path(current_app.instance_path) / item["path"]
        maintype, subtype = (item.get("type") or ATTACHMENT_TYPES.get(path.suffix, "application/octet-stream")) \
            .split("/", 1)
        message.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype,
                               filename=item.get("name") or path.name)
    return message


def mail_dir() -> Path:
    """Where the file backend writes its .eml files (MAIL_FILE_DIR, default instance/mail)."""
    return Path(current_app.config.get("MAIL_FILE_DIR") or Path(current_app.instance_path) / "mail")


def eml_path(email: OutboxEmail) -> Path:
    """The file of one email: sorted by time, one per email (a resend overwrites it)."""
    return mail_dir() / f"{email.created_at:%Y%m%d-%H%M%S}-{email.id}.eml"


class FileBackend:
    """MAIL_BACKEND=file: each email is written, whole, to an .eml file instead of sent."""

    def send_message(self, message: EmailMessage, email: OutboxEmail) -> None:
        path = eml_path(email)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".eml")
        with os.fdopen(handle, "wb") as file:
            file.write(message.as_bytes())
        os.replace(temp, path)

    def quit(self) -> None:
        pass

    def close(self) -> None:
        pass


class SmtpBackend:
    """MAIL_BACKEND=smtp: one SMTP connection for the whole drain."""

    def __init__(self, smtp: smtplib.SMTP):
        self.smtp = smtp

    def send_message(self, message: EmailMessage, email: OutboxEmail) -> None:
        self.smtp.send_message(message)

    def quit(self) -> None:
        self.smtp.quit()

    def close(self) -> None:
        self.smtp.close()


def open_backend():
    if current_app.config.get("MAIL_BACKEND", "smtp") == "file":
        return FileBackend()
    return SmtpBackend(open_smtp())


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
        smtp = open_backend()
    except (OSError, smtplib.SMTPException) as exc:
        connect_error = str(exc)
    try:
        for email_id in ids:
            email = db.session.get(OutboxEmail, email_id)
            error = connect_error
            unsendable = None
            if smtp is not None:
                try:
                    smtp.send_message(build_message(email), email)
                except Unsendable as exc:
                    unsendable = f"cannot be sent as written: {exc}"
                except (smtplib.SMTPException, OSError, socket.timeout) as exc:
                    error = f"{type(exc).__name__}: {exc}"
            if unsendable is not None:
                email.status = OutboxStatus.FAILED.value
                email.last_error = unsendable[:2000]
                result.failed.append(email.id)
            elif error is None:
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
    if not (email.recipient or "").strip():
        raise ValueError("This email has no recipient left (its recipient was erased); it cannot be retried.")
    email.status = OutboxStatus.QUEUED.value
    email.attempts = 0
    email.next_attempt_at = now
