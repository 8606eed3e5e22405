"""Reminders: the campaign rules, notification exactly once, and the analyst's own actions.

A tick (`tick(now)`, the scheduler's `reminders-tick` job, which `flask reminders run` runs too)
does three things:
1. applies the rules: an engagement whose reply is overdue after the campaign's number of
   follow-up letters gets one "consider escalation" reminder (a partial unique index keeps it
   to one, whoever runs the rules at the same moment);
2. notifies: claims the due, not yet notified reminders with one conditional UPDATE and, in
   the same transaction, queues one email per owner listing them. A reminder is claimed by
   exactly one tick; if the tick dies before committing, the claim rolls back with the email;
3. drains the outbox.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask import current_app, render_template
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from engage.dbutil import insert_ignoring_conflicts
from engage.errors import FieldError
from engage.extensions import db
from engage.formatting import format_date
from engage.models import (
    Campaign,
    Company,
    Engagement,
    Interaction,
    InteractionKind,
    Letter,
    LetterKind,
    LetterStatus,
    Reminder,
    ReminderCount,
    ReminderKind,
    ReminderStatus,
    Role,
    User,
    reminder_pending,
)
from engage.core import outbox


#: Reminders listed in one email; the rest are counted and waiting on the Reminders page.
EMAIL_LIST_LIMIT = 100


class ReminderError(FieldError):
    """A refused reminder action."""


@dataclass
class TickResult:
    escalations_suggested: int = 0
    reminders_notified: int = 0
    emails_queued: int = 0
    skipped_unowned: int = 0
    drain: outbox.DrainResult = field(default_factory=outbox.DrainResult)

    def lines(self) -> list[str]:
        return [
            f"rules: {self.escalations_suggested} 'consider escalation' reminder(s) created",
            f"notify: {self.reminders_notified} reminder(s) in {self.emails_queued} email(s)"
            + (f"; {self.skipped_unowned} due reminder(s) have no active owner" if self.skipped_unowned else ""),
            f"outbox: {self.drain}",
        ]


def tick(now: dt.datetime) -> TickResult:
    result = TickResult()
    result.escalations_suggested = apply_rules(now.date())
    result.reminders_notified, result.emails_queued, result.skipped_unowned = notify(now)
    result.drain = outbox.drain(now)
    return result


def apply_rules(today: dt.date) -> int:
    """Suggest escalation where the reply is overdue after the campaign's number of follow-ups."""
    open_escalation = sa.orm.aliased(Reminder)
    overdue = (
        sa.select(Engagement.id, Campaign.follow_ups_before_escalation)
        .join(Campaign, Campaign.id == Engagement.campaign_id)
        .join(Reminder, Reminder.engagement_id == Engagement.id)
        .where(Engagement.is_open, Reminder.kind == ReminderKind.REPLY.value,
               Reminder.status != ReminderStatus.DONE.value, Reminder.due_on < today,
               # one waiting escalation reminder per engagement (uq_reminders_open_escalation): an
               # engagement that has one gets no other, so it is not looked at again every tick
               ~sa.exists().where(open_escalation.engagement_id == Engagement.id,
                                  open_escalation.kind == ReminderKind.ESCALATION.value,
                                  open_escalation.status != ReminderStatus.DONE.value))
        .distinct()
    )
    candidates = dict(db.session.execute(overdue).all())
    if not candidates:
        return 0
    ids = list(candidates)
    last_reply = dict(db.session.execute(
        sa.select(Interaction.engagement_id, sa.func.max(Interaction.occurred_on))
        .where(Interaction.engagement_id.in_(ids), Interaction.kind == InteractionKind.RESPONSE.value)
        .group_by(Interaction.engagement_id)
    ).all())
    follow_ups: dict[int, int] = defaultdict(int)
    for engagement_id, sent_on in db.session.execute(
        sa.select(Letter.engagement_id, Letter.sent_on)
        .where(Letter.engagement_id.in_(ids), Letter.kind == LetterKind.FOLLOW_UP.value,
               Letter.status == LetterStatus.SENT.value)
    ):
        if sent_on > last_reply.get(engagement_id, dt.date.min):
            follow_ups[engagement_id] += 1
    now = dt.datetime.combine(today, dt.time())
    rows = [
        {"engagement_id": engagement_id, "due_on": today, "kind": ReminderKind.ESCALATION.value,
         "status": ReminderStatus.OPEN.value, "created_at": now, "updated_at": now,
         "reason": f"No reply after {follow_ups[engagement_id]} follow-up letter(s): consider escalating"}
        for engagement_id, threshold in candidates.items()
        if follow_ups[engagement_id] >= threshold
    ]
    created = len(insert_ignoring_conflicts(Reminder, rows))
    db.session.commit()
    return created


def notify(now: dt.datetime) -> tuple[int, int, int]:
    """Claim the due reminders of active owners and queue one email per owner, atomically."""
    today = now.date()
    due = _due_condition(today)
    if due is None:
        return 0, 0, 0
    waiting = (Reminder.notified_at.is_(None), Reminder.status != ReminderStatus.DONE.value, Engagement.is_open, due)
    pending = (
        sa.select(Reminder.id)
        .join(Engagement, Engagement.id == Reminder.engagement_id)
        .join(User, User.id == Engagement.owner_id)
        .where(*waiting, User.active.is_(True))
    )
    unowned = db.session.scalar(
        sa.select(sa.func.count(Reminder.id))
        .join(Engagement, Engagement.id == Reminder.engagement_id)
        .outerjoin(User, User.id == Engagement.owner_id)
        .where(*waiting, sa.or_(User.id.is_(None), User.active.is_(False)))
    )
    db.session.commit()  # the claim below must open its own transaction
    claimed = _claim(pending, now)
    if not claimed:
        db.session.commit()
        return 0, 0, unowned
    by_owner = _by_owner(claimed)
    owners = {u.id: u for u in db.session.scalars(sa.select(User).where(User.id.in_(list(by_owner))))}
    base = current_app.config["ENGAGE_BASE_URL"].rstrip("/")
    for owner_id, items in by_owner.items():
        _email_owner(owners[owner_id], items, today=today, base=base, now=now)
    db.session.commit()
    return len(claimed), len(by_owner), unowned


def _due_condition(today: dt.date):
    """Reminders due today or within their campaign's warning days; None when there is no campaign."""
    campaigns = db.session.execute(sa.select(Campaign.id, Campaign.warn_days_before)).all()
    if not campaigns:
        return None
    # The latest due date any campaign warns of, beside the per-campaign terms: a range on due_on
    # that the (notified_at, due_on) index serves, so a tick with nothing new reads only the
    # waiting reminders due by then (an OR of campaigns alone read every un-notified reminder).
    latest = today + dt.timedelta(days=max(warn for _, warn in campaigns))
    return sa.and_(Reminder.due_on <= latest, sa.or_(*(
        sa.and_(Engagement.campaign_id == campaign_id, Reminder.due_on <= today + dt.timedelta(days=warn))
        for campaign_id, warn in campaigns
    )))


def _claim(pending: sa.Select, now: dt.datetime) -> list:
    """Mark the pending reminders notified in one conditional UPDATE; a concurrent tick claims none twice."""
    return db.session.execute(
        sa.update(Reminder)
        .where(Reminder.id.in_(pending.scalar_subquery()), Reminder.notified_at.is_(None),
               Reminder.status != ReminderStatus.DONE.value)
        .values(notified_at=now)
        .returning(Reminder.id, Reminder.engagement_id, Reminder.due_on, Reminder.reason)
        .execution_options(synchronize_session=False)
    ).all()


def _by_owner(claimed: list) -> dict[int, list[dict]]:
    """The claimed reminders per owner, earliest due first, each with its company's name."""
    # Plain rows, not ORM objects: a first tick over a large book claims tens of thousands.
    engagements = {
        row.id: row for row in db.session.execute(
            sa.select(Engagement.id, Engagement.owner_id, Company.name.label("company"))
            .join(Company, Company.id == Engagement.company_id)
            .where(Engagement.is_open, Engagement.owner_id.is_not(None)))
    }
    by_owner: dict[int, list[dict]] = defaultdict(list)
    for reminder_id, engagement_id, due_on, reason in sorted(claimed, key=lambda r: (r.due_on, r.id)):
        engagement = engagements[engagement_id]
        by_owner[engagement.owner_id].append({"id": reminder_id, "engagement_id": engagement_id, "due_on": due_on,
                                              "reason": reason, "company": engagement.company})
    return by_owner


def _email_owner(owner: User, items: list[dict], *, today: dt.date, base: str, now: dt.datetime) -> None:
    """Queue one email listing the owner's reminders (the first EMAIL_LIST_LIMIT, then how many more)."""
    overdue = sum(1 for r in items if r["due_on"] < today)
    context = {"owner": owner, "reminders": items[:EMAIL_LIST_LIMIT], "more": max(0, len(items) - EMAIL_LIST_LIMIT),
               "base": base, "today": today}
    subject = f"Engage: {len(items)} follow-up{'s' if len(items) != 1 else ''} due" + \
        (f" ({overdue} overdue)" if overdue else "")
    outbox.enqueue(owner.email, subject, render_template("reminders/email.txt", **context),
                   render_template("reminders/email.html", **context), now=now)


def add_manual(engagement: Engagement, *, due_on: dt.date, reason: str, today: dt.date,
               actor_id: int | None) -> Reminder:
    if due_on is None or due_on < today:
        raise ReminderError("due_on", "A new reminder cannot be due in the past.")
    if not reason.strip():
        raise ReminderError("reason", "Say what the reminder is for.")
    if not engagement.is_open:
        raise ReminderError("due_on", "The engagement is closed.")
    reminder = Reminder(engagement=engagement, due_on=due_on, reason=reason.strip()[:300],
                        kind=ReminderKind.MANUAL.value, status=ReminderStatus.OPEN.value, created_by_id=actor_id)
    db.session.add(reminder)
    return reminder


def snooze(reminder: Reminder, until: dt.date | None, today: dt.date) -> None:
    """Move the due date later, after today and after the current due date; the owner is notified again."""
    if reminder.status == ReminderStatus.DONE.value:
        raise ReminderError("until", "This reminder is already done.")
    if until is None or until <= today:
        raise ReminderError("until", "Snooze to a date after today.")
    if until <= reminder.due_on:
        raise ReminderError("until", f"Snooze to a date after the current due date "
                                     f"({format_date(reminder.due_on)}): snoozing never brings a reminder "
                                     "forward.")
    reminder.due_on = until
    reminder.status = ReminderStatus.SNOOZED.value
    reminder.notified_at = None


def complete(reminder: Reminder) -> None:
    if reminder.status == ReminderStatus.DONE.value:
        raise ReminderError("status", "This reminder is already done.")
    reminder.status = ReminderStatus.DONE.value


# --- the reminders page: groups, counts, bulk actions ---------------------------------------

#: The page's groups, in order: overdue, due today, in the next 7 days, later.
GROUPS = ("overdue", "today", "week", "later")
#: Reminders one bulk action may change (the page lists at most PAGE_SIZE per group).
BULK_LIMIT = 500


def pending_reminders() -> sa.Select:
    """Reminders still waiting (open or snoozed) on open engagements: what the page and its counts cover."""
    return (sa.select(Reminder).join(Engagement, Engagement.id == Reminder.engagement_id)
            .where(reminder_pending(), Engagement.is_open))


def group_condition(key: str, today: dt.date, due_on=Reminder.due_on):
    """The due dates of one group of the page (`GROUPS`), on the column `due_on`."""
    week = today + dt.timedelta(days=7)
    return {
        "overdue": due_on < today,
        "today": due_on == today,
        "week": sa.and_(due_on > today, due_on <= week),
        "later": due_on > week,
    }[key]


def group_of(due_on: dt.date, today: dt.date) -> str:
    """The group (`GROUPS`) of a reminder due on `due_on`: `group_condition` in Python."""
    if due_on < today:
        return "overdue"
    if due_on == today:
        return "today"
    return "week" if due_on <= today + dt.timedelta(days=7) else "later"


def counts(today: dt.date, user_id: int | None) -> dict[str, dict[str, int]]:
    """How many waiting reminders each group holds, for the user ("mine") and the team, in one query.

    "Mine" are the reminders of the engagements the user owns; "team" all of them, whoever owns
    (or nobody owns) the engagement. Every count on the page says which of the two it is. Summed
    from the stored cells per owner and due date (`ReminderCount`, kept by the triggers of
    engage.reminders.stored in the transaction that writes a reminder or an engagement): a few
    hundred rows, however many reminders wait; `counts_by_owner` counts the same from the rows.
    """
    mine = ReminderCount.owner_key == user_id if user_id is not None else sa.false()
    columns = []
    for key in GROUPS:
        condition = group_condition(key, today, ReminderCount.due_on)
        columns += [sa.func.coalesce(sa.func.sum(ReminderCount.waiting).filter(sa.and_(condition, mine)), 0),
                    sa.func.coalesce(sa.func.sum(ReminderCount.waiting).filter(condition), 0)]
    row = db.session.execute(sa.select(*columns)).one()
    return {"mine": {key: int(row[2 * i]) for i, key in enumerate(GROUPS)},
            "team": {key: int(row[2 * i + 1]) for i, key in enumerate(GROUPS)}}


def counts_by_owner(today: dt.date) -> dict[int | None, dict[str, int]]:
    """`counts` for every owner at once (None: engagements nobody owns), in one grouped query.

    The dashboard stores these (engage.main.figures) and picks the user's own ("mine") and their
    sum ("team") when it draws the page; an owner without waiting reminders is absent.
    """
    columns = [sa.func.count().filter(group_condition(key, today)) for key in GROUPS]
    rows = db.session.execute(pending_reminders().with_only_columns(Engagement.owner_id, *columns)
                              .group_by(Engagement.owner_id)).all()
    return {row[0]: {key: row[1 + i] for i, key in enumerate(GROUPS)} for row in rows}


def snooze_floor(due_on: dt.date, today: dt.date) -> dt.date | None:
    """The earliest date a reminder due on `due_on` may be snoozed to (None: no later date exists)."""
    base = max(due_on, today)
    return None if base >= dt.date.max else base + dt.timedelta(days=1)


def snooze_suggestion(due_on: dt.date, today: dt.date) -> dt.date | None:
    """The date the snooze field suggests: a week after the due date (or after today, when overdue)."""
    base = max(due_on, today)
    return base + dt.timedelta(days=7) if base <= dt.date.max - dt.timedelta(days=7) else snooze_floor(due_on, today)


def assignees() -> list[User]:
    """Who may be given engagements (and so their reminders): active analysts and admins."""
    editors = [role.value for role in Role if role.rank >= Role.ANALYST.rank]
    return list(db.session.scalars(
        sa.select(User).where(User.active.is_(True), User.role.in_(editors)).order_by(User.name)))


class BulkAction:
    DONE = "done"
    SNOOZE = "snooze"
    REASSIGN = "reassign"


@dataclass
class BulkResult:
    action: str
    reminders: list[Reminder]
    engagements_moved: int = 0
    assignee: User | None = None

    def message(self, until: dt.date | None = None) -> str:
        n = len(self.reminders)
        what = f"{n} reminder{'' if n == 1 else 's'}"
        if self.action == BulkAction.DONE:
            return f"{what} marked done."
        if self.action == BulkAction.SNOOZE:
            return f"{what} snoozed until {format_date(until)}."
        moved = self.engagements_moved
        return (f"{what}: {moved} engagement{'' if moved == 1 else 's'} given to {self.assignee.name}"
                + (" (the others were already theirs)." if moved < len({r.engagement_id for r in self.reminders})
                   else "."))


def _label(reminder: Reminder) -> str:
    return f"{reminder.engagement.company.name} ({reminder.reason[:60]}, due {format_date(reminder.due_on)})"


def _refuse(field_name: str, problems: list[str]) -> None:
    shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
    raise ReminderError(field_name, f"Nothing was changed: {shown}.")


def bulk(ids: list[int], action: str, *, today: dt.date, until: dt.date | None = None,
         assignee_id: int | None = None) -> BulkResult:
    """Mark done, snooze or reassign the ticked reminders, all of them or none.

    Every reminder is checked before anything changes: one that no longer exists, was done
    meanwhile (by someone else, or an exit plan that changed), sits on a closed engagement or
    cannot take the snooze date refuses the whole action, naming it. Reassigning gives the
    reminders' engagements to another active analyst or admin: a reminder is followed up by its
    engagement's owner (that is what "Mine" means everywhere). The rows are locked while checked
    (FOR UPDATE on PostgreSQL), so a concurrent change waits or is seen. Callers commit.
    """
    ids = sorted(set(ids))
    if not ids:
        raise ReminderError("reminder_ids", "Tick at least one reminder.")
    if len(ids) > BULK_LIMIT:
        raise ReminderError("reminder_ids", f"At most {BULK_LIMIT} reminders at once.")
    if action not in (BulkAction.DONE, BulkAction.SNOOZE, BulkAction.REASSIGN):
        raise ReminderError("action", "Choose what to do with the ticked reminders.")
    assignee = None
    if action == BulkAction.SNOOZE:
        if until is None:
            raise ReminderError("until", "Give the date to snooze the ticked reminders to.")
        if until <= today:
            raise ReminderError("until", "Snooze to a date after today.")
    if action == BulkAction.REASSIGN:
        assignee = db.session.get(User, assignee_id) if assignee_id is not None else None
        if assignee is None:
            raise ReminderError("assignee_id", "Choose who takes the ticked reminders' engagements.")
        if not assignee.active:
            raise ReminderError("assignee_id", f"{assignee.name} is deactivated: choose an active analyst or admin.")
        if not assignee.can_edit:
            raise ReminderError("assignee_id", f"{assignee.name} is a viewer and cannot own engagements: "
                                               "choose an analyst or admin.")
    reminders = list(db.session.scalars(
        sa.select(Reminder).where(Reminder.id.in_(ids)).order_by(Reminder.id)
        .options(selectinload(Reminder.engagement).selectinload(Engagement.company))
        .with_for_update(of=Reminder)
        .execution_options(populate_existing=True)))
    problems = [f"reminder #{missing} no longer exists"
                for missing in sorted(set(ids) - {r.id for r in reminders})]
    for reminder in reminders:
        if reminder.status == ReminderStatus.DONE.value:
            problems.append(f"{_label(reminder)} was done meanwhile")
        elif not reminder.engagement.is_open:
            problems.append(f"{_label(reminder)} belongs to a closed engagement")
        elif action == BulkAction.SNOOZE and until <= reminder.due_on:
            problems.append(f"{_label(reminder)} cannot be snoozed to a date before or on its due date")
    if problems:
        _refuse("reminder_ids", problems)
    result = BulkResult(action, reminders, assignee=assignee)
    for reminder in reminders:
        if action == BulkAction.DONE:
            complete(reminder)
        elif action == BulkAction.SNOOZE:
            snooze(reminder, until, today)
    if action == BulkAction.REASSIGN:
        engagements = {r.engagement_id: r.engagement for r in reminders}
        for engagement in engagements.values():
            if engagement.owner_id != assignee.id:
                engagement.owner = assignee
                result.engagements_moved += 1
    try:
        db.session.flush()
    except StaleDataError as stale:  # an engagement was saved by someone else since it was read
        raise ReminderError("reminder_ids", "Nothing was changed: an engagement of the ticked reminders was "
                                            "changed by someone else meanwhile; reload the page and try again.") from stale
    return result
