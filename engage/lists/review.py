"""The match review: possible matches an analyst accepts or rejects, once; a decision can be undone.

A candidate is a pair (company, list name, entry key), so a decision outlives the version it
was made on and is never asked again (screening reads it). Deciding is a conditional update
(`WHERE status = 'pending'`): a stale tab or a double click finds the candidate decided already
and changes nothing. Every decision and undo is an AuditEvent with the analyst's note.

Accepting flags the company at once (direct, from the entry in its list's latest version, and
`linked` on its subsidiaries when the entry reaches them). Undoing an acceptance says the match
was an error: the flags it made are deleted (audited), not ended, since they never stood.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from engage import audit, clock
from engage.errors import FieldError
from engage.extensions import db
from engage.formatting import format_datetime
from engage.lists.screening import latest_versions, lock
from engage.models import (
    ACTIVE_STATUSES,
    AuditEvent,
    CandidateStatus,
    Company,
    FlagLink,
    ListedEntity,
    ListVersion,
    MatchCandidate,
    RiskFlag,
    RiskSource,
    User,
)

DECIDED = (CandidateStatus.ACCEPTED.value, CandidateStatus.REJECTED.value)


class ReviewError(FieldError):
    """A decision refused: the candidate is gone or already decided; nothing was written."""


def _with_details(query):
    return query.options(joinedload(MatchCandidate.company), joinedload(MatchCandidate.decided_by),
                         joinedload(MatchCandidate.entity).joinedload(ListedEntity.version))


def pending_query():
    """SQL: the pending candidates, best score first."""
    return _with_details(sa.select(MatchCandidate).where(MatchCandidate.status == CandidateStatus.PENDING.value)
                         .order_by(MatchCandidate.score.desc(), MatchCandidate.id))


def decided_query(status: str | None = None):
    """SQL: the decided candidates (accepted, rejected, or both), latest decision first."""
    statuses = [status] if status in DECIDED else list(DECIDED)
    return _with_details(sa.select(MatchCandidate).where(MatchCandidate.status.in_(statuses))
                         .order_by(MatchCandidate.decided_at.desc(), MatchCandidate.id.desc()))


def pending_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).where(MatchCandidate.status == CandidateStatus.PENDING.value))


def notes_for(candidates: list[MatchCandidate]) -> dict[int, str]:
    """The note of each candidate's latest decision (one query for the page)."""
    ids = [c.id for c in candidates] or [-1]
    notes: dict[int, str] = {}
    for object_id, changes in db.session.execute(
            sa.select(AuditEvent.object_id, AuditEvent.changes)
            .where(AuditEvent.object_type == "MatchCandidate", AuditEvent.object_id.in_(ids),
                   AuditEvent.action.in_(["match_accepted", "match_rejected"]))
            .order_by(AuditEvent.id)):
        notes[object_id] = (changes or {}).get("note") or ""
    return notes


@dataclass
class Decision:
    candidate: MatchCandidate
    #: Flags made (accept) or deleted (undo of an acceptance).
    flags: list[RiskFlag]
    #: Accepted, but the entry is no longer active on its list: no flag was made.
    entry_gone: bool = False


def _candidate(candidate_id: int) -> MatchCandidate:
    candidate = db.session.get(MatchCandidate, candidate_id)
    if candidate is None:
        raise ReviewError("candidate", "This possible match is no longer in the review (a newer list no longer "
                                       "suggests it); nothing was changed.")
    return candidate


def _describe(candidate: MatchCandidate) -> str:
    entry = candidate.entity.name if candidate.entity is not None else candidate.entry_key
    name = candidate.list_name
    return f"{candidate.company.name} ↔ {entry} ({RiskSource(name).label if name in RiskSource.values() else name})"


def _stale(candidate: MatchCandidate) -> ReviewError:
    db.session.refresh(candidate)
    who = candidate.decided_by.name if candidate.decided_by else "someone"
    when = f" on {format_datetime(candidate.decided_at)}" if candidate.decided_at else ""
    if candidate.status == CandidateStatus.PENDING.value:
        return ReviewError("candidate", f"{_describe(candidate)} is pending again (the decision was undone); "
                                        "nothing was changed.")
    return ReviewError("candidate", f"{_describe(candidate)} was already {candidate.status} by {who}{when}; "
                                    "nothing was changed.")


def decide(candidate_id: int, accept: bool, user: User, note: str = "") -> Decision:
    """Accept or reject a pending candidate, in the caller's transaction; refuses one decided already."""
    candidate = _candidate(candidate_id)
    status = CandidateStatus.ACCEPTED.value if accept else CandidateStatus.REJECTED.value
    now = clock.utcnow()
    changed = db.session.execute(
        sa.update(MatchCandidate)
        .where(MatchCandidate.id == candidate_id, MatchCandidate.status == CandidateStatus.PENDING.value)
        .values(status=status, decided_by_id=user.id, decided_at=now, updated_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if changed != 1:
        raise _stale(candidate)
    db.session.refresh(candidate)
    decision = Decision(candidate, [])
    if accept:
        decision.flags, decision.entry_gone = _flag(candidate)
    audit.record(f"match_{status}", f"{status.capitalize()} the match {_describe(candidate)}", obj=candidate,
                 changes={"status": [CandidateStatus.PENDING.value, status], "note": note.strip()[:500],
                          "score": candidate.score, "reason": candidate.reason,
                          "flags": [f.id for f in decision.flags]})
    return decision


def undo(candidate_id: int, seen_status: str, user: User, note: str = "") -> Decision:
    """Put a decided candidate back to pending; an acceptance's flags are deleted (it was an error)."""
    candidate = _candidate(candidate_id)
    if seen_status not in DECIDED:
        raise ReviewError("candidate", "Only an accepted or rejected match can be undone.")
    now = clock.utcnow()
    changed = db.session.execute(
        sa.update(MatchCandidate).where(MatchCandidate.id == candidate_id, MatchCandidate.status == seen_status)
        .values(status=CandidateStatus.PENDING.value, decided_by_id=None, decided_at=None, updated_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if changed != 1:
        raise _stale(candidate)
    db.session.refresh(candidate)
    removed = _flags_of(candidate) if seen_status == CandidateStatus.ACCEPTED.value else []
    for flag in removed:
        db.session.delete(flag)
    audit.record("match_undone", f"Undid the {seen_status} decision on {_describe(candidate)}"
                                 f"{f'; {len(removed)} flag(s) it made deleted' if removed else ''}", obj=candidate,
                 changes={"status": [seen_status, CandidateStatus.PENDING.value], "note": note.strip()[:500],
                          "deleted_flags": [f.id for f in removed]})
    return Decision(candidate, removed)


def reject_flag(flag: RiskFlag, user: User, note: str = "") -> list[RiskFlag]:
    """An analyst removes a flag from the company page: a list's flag is a rejected match, remembered.

    A flag screening made from a list entry would come back at the next screening if it were
    only deleted, so removing it records the pair (company, list, entry key) as rejected, as the
    match review's *Reject* does (undone there), and deletes the flags it made: the company's
    and those linked through it. A linked flag cannot be removed by itself (its parent's flag or
    the parent link says why it is there). A flag with no list entry (an analyst's own, or seeded)
    is simply deleted. Audited either way. Returns the flags deleted.
    """
    if flag.link == FlagLink.LINKED.value:
        via = flag.linked_via.name if flag.linked_via else "its parent"
        raise ReviewError("flag", f"This flag comes through {via}, which the list names: reject that company's "
                                  "match, or change the parent company, to remove it.")
    entry = db.session.get(ListedEntity, flag.entity_id) if flag.entity_id else None
    if entry is None:
        audit.record("flag_removed", f"Removed the {flag.source_label} flag of {flag.company.name}", obj=flag.company,
                     changes={"flag": flag.id, "citation": flag.citation, "note": note.strip()[:500]})
        db.session.delete(flag)
        return [flag]
    list_name = entry.version.name
    lock()  # not while a screening adds the same flag again
    now = clock.utcnow()
    candidate = db.session.scalar(sa.select(MatchCandidate).where(
        MatchCandidate.company_id == flag.company_id, MatchCandidate.list_name == list_name,
        MatchCandidate.entry_key == entry.key))
    if candidate is None:
        candidate = MatchCandidate(company_id=flag.company_id, list_name=list_name, entry_key=entry.key,
                                   entity_id=entry.id, score=flag.match_score or 0, reason=flag.match_reason or "")
        db.session.add(candidate)
    candidate.status, candidate.decided_by_id, candidate.decided_at = CandidateStatus.REJECTED.value, user.id, now
    db.session.flush()
    removed = _flags_of(candidate)
    for item in removed:
        db.session.delete(item)
    audit.record("match_rejected", f"Rejected the match {_describe(candidate)} by removing its flag", obj=candidate,
                 changes={"status": [None, CandidateStatus.REJECTED.value], "note": note.strip()[:500],
                          "score": candidate.score, "reason": candidate.reason, "deleted_flags": [f.id for f in removed]})
    return removed


def _flags_of(candidate: MatchCandidate) -> list[RiskFlag]:
    """The flags an acceptance made: the company's direct flag from the pair's entry, and those linked via it."""
    return list(db.session.scalars(
        sa.select(RiskFlag).join(ListedEntity, ListedEntity.id == RiskFlag.entity_id)
        .join(ListVersion, ListVersion.id == ListedEntity.version_id)
        .where(ListVersion.name == candidate.list_name, ListedEntity.key == candidate.entry_key,
               sa.or_(sa.and_(RiskFlag.company_id == candidate.company_id, RiskFlag.link == FlagLink.DIRECT.value),
                      sa.and_(RiskFlag.linked_via_id == candidate.company_id, RiskFlag.link == FlagLink.LINKED.value)))
        .order_by(RiskFlag.id)))


def _flag(candidate: MatchCandidate) -> tuple[list[RiskFlag], bool]:
    """Flag the company from the pair's entry in its list's latest version (and its subsidiaries, linked)."""
    lock()  # not while a screening adds the same flag
    version = latest_versions().get(candidate.list_name)
    entry = db.session.scalar(sa.select(ListedEntity).where(
        ListedEntity.version_id == (version.id if version else -1), ListedEntity.key == candidate.entry_key))
    if entry is None or entry.status not in ACTIVE_STATUSES:
        return [], True
    existing = {(f.company_id, f.link) for f in db.session.scalars(
        sa.select(RiskFlag).join(ListedEntity, ListedEntity.id == RiskFlag.entity_id)
        .join(ListVersion, ListVersion.id == ListedEntity.version_id)
        .where(ListVersion.name == candidate.list_name, ListedEntity.key == candidate.entry_key,
               RiskFlag.ended_on.is_(None)))}
    made = []

    def add(company_id: int, via: int | None) -> None:
        link = FlagLink.LINKED.value if via else FlagLink.DIRECT.value
        if (company_id, link) in existing or (company_id, FlagLink.DIRECT.value) in existing:
            return
        reason = (candidate.reason if via is None
                  else f"Subsidiary of {candidate.company.name}, whose match an analyst accepted")
        flag = RiskFlag(company_id=company_id, source=entry.source, section=entry.section,
                        effective_date=entry.effective_date, citation=entry.citation, citation_url=entry.citation_url,
                        entity_id=entry.id, version_id=entry.version_id, link=link, linked_via_id=via,
                        match_score=candidate.score if via is None else None, match_reason=reason[:500],
                        note="" if via else f"Matched the {RiskSource(entry.source).label} entry “{entry.name}” (match review).")
        db.session.add(flag)
        existing.add((company_id, link))
        made.append(flag)

    add(candidate.company_id, None)
    # like screening: an entry on the parent links every subsidiary (the entry is active, checked above)
    children: dict[int, list[int]] = defaultdict(list)
    for child, parent in db.session.execute(sa.select(Company.id, Company.parent_id)
                                            .where(Company.parent_id.is_not(None))):
        children[parent].append(child)
    queue, seen = list(children.get(candidate.company_id, [])), {candidate.company_id}
    while queue:
        child = queue.pop(0)
        if child not in seen:
            seen.add(child)
            add(child, candidate.company_id)
            queue += children.get(child, [])
    db.session.flush()
    return made, False
