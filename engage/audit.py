"""The audit trail, written in the same transaction as the change it describes.

Mapper hooks turn every insert, update and delete of a domain object (orphans and
cascades included) into an `AuditEvent` row, written in one statement when the flush ends; logins and other non-data events are recorded with `record()`.
The actor is the logged-in user in a request, or what a CLI command or job declares
with `acting_as()`.

The rows of one change share a `group_id`, so the audit page shows one scoring, not a score
and nine criterion scores: one id per request (a request is one user action, even when it
commits twice, e.g. an idempotency claim then the change), one per transaction outside requests,
or one for a whole `grouped()` block (a CLI import that commits in batches).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import sqlalchemy as sa
from flask import has_request_context, request
from flask_login import current_user
from sqlalchemy.orm import Session

from engage import clock, dbutil
from engage.extensions import db
from engage.models import AuditEvent, OutboxEmail

REDACTED_FIELDS = {"password_hash", "calendar_token"}
#: Bookkeeping columns whose change is implied by every update, or recorded by its own event
#: (sign-out and sessions_ended for the session token, login_failed/login_backoff for the counters;
#: name_forms is the matching's reading of the name, which the name's change says; an engagement's
#: next_follow_up_on and last_contact_on follow its reminders and interactions, audited themselves;
#: a company's latest_score and score_change follow its scores, the same way).
IGNORED_FIELDS = {"updated_at", "created_at", "version", "last_login_at", "session_token", "failed_logins",
                  "failed_since", "locked_until", "device_failed_logins", "device_failed_since",
                  "device_locked_until", "name_forms", "next_follow_up_on", "last_contact_on",
                  "latest_score", "score_change"}


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    label: str


_actor: ContextVar[Actor | None] = ContextVar("engage_audit_actor", default=None)
_group: ContextVar[str | None] = ContextVar("engage_audit_group", default=None)

#: Where a request keeps its group id: on the WSGI environ, which lives exactly as long as the request
#: (`g` belongs to the app context, which tests and CLI commands keep across requests).
_REQUEST_GROUP_KEY = "engage.audit_group"
_SESSION_GROUP_KEY = "audit_group"


def _new_group_id() -> str:
    return uuid.uuid4().hex


@contextmanager
def grouped():
    """Record every change in the block under one group id (across commits), e.g. a batch import.

    Nested blocks join the outer group.
    """
    if _group.get() is not None:
        yield _group.get()
        return
    token = _group.set(_new_group_id())
    try:
        yield _group.get()
    finally:
        _group.reset(token)


def current_group_id(session: Session | None = None) -> str:
    """The group id of a row recorded now: the `grouped()` block's, the request's, or the transaction's."""
    declared = _group.get()
    if declared is not None:
        return declared
    if has_request_context():
        return request.environ.setdefault(_REQUEST_GROUP_KEY, _new_group_id())
    info = (session if session is not None else db.session).info
    return info.setdefault(_SESSION_GROUP_KEY, _new_group_id())


@contextmanager
def acting_as(label: str, user_id: int | None = None):
    """Attribute changes in the block to `label` (e.g. "cli", "scheduler")."""
    token = _actor.set(Actor(user_id, label))
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor() -> Actor:
    declared = _actor.get()
    if declared is not None:
        return declared
    if has_request_context():
        if current_user and current_user.is_authenticated:
            return Actor(current_user.id, current_user.email)
        return Actor(None, "anonymous")
    return Actor(None, "system")


def _ip() -> str | None:
    return request.remote_addr if has_request_context() else None


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _jsonable(value):
    if type(value) in _PLAIN:  # most values: one set lookup instead of three isinstance calls
        return value
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        return value
    return str(value)


def record(action: str, summary: str = "", obj=None, changes: dict | None = None, actor: Actor | None = None):
    """Add a non-data event (login, logout, failed login...) to the current transaction."""
    who = actor or current_actor()
    event = AuditEvent(
        actor_id=who.user_id,
        actor_label=who.label,
        action=action,
        object_type=type(obj).__name__ if obj is not None else None,
        object_id=getattr(obj, "id", None) if obj is not None else None,
        summary=summary[:500],
        changes=changes or {},
        ip_address=_ip(),
        created_at=clock.utcnow(),
        group_id=current_group_id(),
    )
    db.session.add(event)
    return event


def record_inserted(model, rows) -> None:
    """The "create" events the mapper hook writes, for rows a bulk INSERT wrote (`rows`: mappings of
    every column's name to its value, the id included), written through the driver (dbutil.write_rows).

    Each event's `changes` is the JSON text the JSON column would write for the mapper hook's
    snapshot (`json.dumps` of it), put together from each key's encoding once and each value's
    (`_changes_text`); the first row's is checked against the column's own serialisation, and a
    database configured with another JSON serializer gets that serializer's text for every row."""
    if not rows:
        return
    who = current_actor()
    now, ip, group = clock.utcnow(), _ip(), current_group_id()
    columns = [(attr.key, attr.columns[0].name) for attr in sa.inspect(model).column_attrs
               if attr.key not in IGNORED_FIELDS]
    by_key = dict(columns)
    labels = [by_key[k] for k in _LABELS if k in by_key]
    parts = [(json.dumps(key) + ": ", None if key in REDACTED_FIELDS else column) for key, column in columns]
    redacted = json.dumps("(redacted)")
    serializer = getattr(db.session.get_bind().dialect, "_json_serializer", None)

    def snapshot(row) -> dict:
        return {key: "(redacted)" if key in REDACTED_FIELDS else _jsonable(row[column]) for key, column in columns}

    def changes_text(row) -> str:
        return "{" + ", ".join([prefix + (redacted if column is None else _json_value(row[column]))
                                for prefix, column in parts]) + "}"

    if serializer is not None or changes_text(rows[0]) != json.dumps(snapshot(rows[0])):
        dumps = serializer or json.dumps
        changes_text = lambda row: dumps(snapshot(row))  # noqa: E731 (the column's own serialisation)
    kind = model.__name__

    def events():  # made as the COPY asks for them, while the server writes the ones before (dbutil.write_rows)
        for row in rows:
            label = next((row[c] for c in labels if isinstance(row[c], str) and row[c]), "")
            yield row["id"], f"create {kind} {label[:200]}".strip()[:500], changes_text(row)

    dbutil.write_rows(AuditEvent.__table__, ("object_id", "summary", "changes"), events(), encoded=("changes",),
                      constants={"created_at": now, "actor_id": who.user_id, "actor_label": who.label,
                                 "action": "create", "object_type": kind, "ip_address": ip, "group_id": group})


_encode_text = json.encoder.encode_basestring_ascii  # what json.dumps writes for a str (ensure_ascii)


def _json_value(value) -> str:
    """json.dumps(_jsonable(value)), quicker for the usual str, None and int."""
    kind = type(value)
    if kind is str:
        return _encode_text(value)
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    return json.dumps(_jsonable(value))


def _audited(obj) -> bool:
    return isinstance(obj, db.Model) and not isinstance(obj, (AuditEvent, OutboxEmail))


def _snapshot(obj) -> dict:
    mapper = sa.inspect(obj).mapper
    values = {}
    for attr in mapper.column_attrs:
        if attr.key in IGNORED_FIELDS:
            continue
        value = getattr(obj, attr.key, None)
        values[attr.key] = "(redacted)" if attr.key in REDACTED_FIELDS else _jsonable(value)
    return values


def _diff(obj) -> dict:
    state = sa.inspect(obj)
    changes = {}
    for attr in state.mapper.column_attrs:
        if attr.key in IGNORED_FIELDS:
            continue
        history = state.attrs[attr.key].history
        if not history.has_changes():
            continue
        before = history.deleted[0] if history.deleted else None
        after = history.added[0] if history.added else None
        if before == after:
            continue
        if attr.key in REDACTED_FIELDS:
            changes[attr.key] = ["(redacted)", "(changed)"]
        else:
            changes[attr.key] = [_jsonable(before), _jsonable(after)]
    for rel in state.mapper.relationships:
        if rel.secondary is None:
            continue
        history = state.attrs[rel.key].history
        if history.added or history.deleted:
            changes[rel.key] = {
                "added": [str(getattr(o, "name", o)) for o in history.added],
                "removed": [str(getattr(o, "name", o)) for o in history.deleted],
            }
    return changes


_LABELS = ("name", "email", "subject", "title", "reason", "slug")


def _label(obj) -> str:
    for attr in _LABELS:
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value:
            return value[:200]
    return ""


def _queue(action: str, target, changes: dict) -> None:
    """Remember one audit row on the flushing session; `_write_queued` inserts them together."""
    session = sa.orm.object_session(target)
    if session is None:
        return
    who = current_actor()
    session.info.setdefault("audit_rows", []).append(
        {
            "created_at": clock.utcnow(),
            "actor_id": who.user_id,
            "actor_label": who.label,
            "action": action,
            "object_type": type(target).__name__,
            "object_id": getattr(target, "id", None),
            "summary": f"{action} {type(target).__name__} {_label(target)}".strip()[:500],
            "changes": changes,
            "ip_address": _ip(),
            "group_id": current_group_id(session),
        }
    )


def _after_insert(_mapper, _connection, target) -> None:
    if _audited(target):
        _queue("create", target, _snapshot(target))


def _after_update(_mapper, _connection, target) -> None:
    if not _audited(target):
        return
    changes = _diff(target)
    if changes:
        action = "role_change" if type(target).__name__ == "User" and "role" in changes else "update"
        _queue(action, target, changes)


def _after_delete(_mapper, _connection, target) -> None:
    """Fires for explicit deletes and for orphans and cascades the flush removes."""
    if _audited(target):
        _queue("delete", target, _snapshot(target))


def _write_queued(session: Session, _flush_context) -> None:
    rows = session.info.pop("audit_rows", None)
    if rows:
        session.connection().execute(sa.insert(AuditEvent.__table__), rows)


def _discard_queued(session: Session, *_args) -> None:
    session.info.pop("audit_rows", None)


def _end_transaction_group(session: Session, transaction) -> None:
    """Outside requests a transaction is one change: when it ends (commit, rollback or close), the
    next one starts a new group. A savepoint's end is not the transaction's."""
    if transaction.parent is None:
        session.info.pop(_SESSION_GROUP_KEY, None)


def _keep_old_value(target, value, oldvalue, initiator):
    return value


def register(session_class=Session) -> None:
    """Hook the audit trail into every session and every mapped column.

    `active_history` makes SQLAlchemy load a column's old value before it is overwritten,
    so an update after a commit (which expires attributes) still records "before".
    """
    if not sa.event.contains(session_class, "after_flush", _write_queued):
        sa.event.listen(session_class, "after_flush", _write_queued)
        sa.event.listen(session_class, "after_soft_rollback", _discard_queued)
    if not sa.event.contains(session_class, "after_transaction_end", _end_transaction_group):
        sa.event.listen(session_class, "after_transaction_end", _end_transaction_group)
    for name, handler in (("after_insert", _after_insert), ("after_update", _after_update),
                          ("after_delete", _after_delete)):
        if not sa.event.contains(db.Model, name, handler):
            sa.event.listen(db.Model, name, handler, propagate=True)
    for mapper in db.Model.registry.mappers:
        for attr in mapper.column_attrs:
            instrumented = getattr(mapper.class_, attr.key)
            if not sa.event.contains(instrumented, "set", _keep_old_value):
                sa.event.listen(instrumented, "set", _keep_old_value, active_history=True, retval=True)
