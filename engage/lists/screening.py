"""Screening: companies against the latest version of each list; flags, the match review, notifications.

`screen()` runs in three steps, each with a fixed number of queries whatever the number of
companies and entries:

1. `load()` reads the companies in scope (all; those a fund holds and their parents; or a set of
   companies with their parents and subsidiaries) and the entries of each list's latest version,
   with the flags and match decisions already made;
2. `find_candidates()` asks the matching engine (engage.lists.matching) which company may be which
   entry, with a score and a reason;
3. `decide()` turns the candidates into flags and review questions:

   - a score of FLAG_SCORE or more flags the company (a `direct` flag recording the entry, its
     version, the score and the reason) unless an analyst rejected the pair;
   - a score in the review band queues a pending MatchCandidate, unless the pair (company, list,
     entry key) was decided already: an accepted pair flags, a rejected one is never asked again;
   - an entry flags every descendant of a company it flags directly as `linked`, via that company
     (the issue's rule: an entry on the parent, or one naming it "and its subsidiaries"); the
     reason says which of the two it was;
   - a flag whose entry is revoked (status not in ACTIVE_STATUSES) or missing from the list's
     latest version ends: `ended_on` is that version's retrieved date, `ended_version_id` the
     version; the flag is kept as history. Analysts' own flags (no entry) are never ended here.

A company keeps one current flag per list entry key and link. Flags loaded before entries were
tied to flags (seeded, or made by the old name-equality screening: no entry, no author) with the
entry's list and citation are adopted by the entry rather than duplicated.

Each run is recorded as an AuditEvent `screening` (what it created, ended and queued, and the
highest flag id at its end), which is how "new since the last screening" is told; the lists'
latest versions get `screened_at`. A run that gained or lost flags emails the admins and the
owners of the engagements of the companies concerned, one email each (`notify`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask import current_app, render_template

from engage import audit, clock
from engage.core import outbox
from engage.extensions import db
from engage.formatting import format_date
from engage.lists import matching
from engage.lists.matching import FLAG_SCORE, REVIEW_SCORE, Candidate, CompanyRecord, EntryRecord, match
from engage.models import (
    ACTIVE_STATUSES,
    AuditEvent,
    CandidateStatus,
    Company,
    CompanyAlias,
    Engagement,
    FlagLink,
    Fund,
    Holding,
    ListedEntity,
    ListVersion,
    MatchCandidate,
    RiskFlag,
    RiskSource,
    Role,
    User,
)
from engage.models.lists import latest_versions
from engage.names import entry_names, forms_of

#: The AuditEvent action that records a screening run.
RUN_ACTION = "screening"

__all__ = ["FLAG_SCORE", "REVIEW_SCORE", "ScreenResult", "Change", "screen", "after_import", "latest_versions",
           "new_since_threshold", "covers_subsidiaries", "version_label", "lock"]


def covers_subsidiaries(entry: ListedEntity) -> bool:
    """The entry reaches the named company's subsidiaries: flagged so, or "and its subsidiaries" in a name."""
    return bool(entry.covers_subsidiaries) or any(matching.covers_subsidiaries(n or "")
                                                  for n in [entry.name, *(entry.aliases or [])])


def version_label(version: ListVersion | None) -> str:
    if version is None:
        return "–"
    return f"{version.file_name}, retrieved {format_date(version.retrieved_on)}"


@dataclass
class Change:
    """A flag gained or lost by a screening, as the notification and the CLI tell it."""

    company_id: int
    company: str
    source: str
    link: str
    version: str
    entry: str
    citation: str = ""
    linked_via: str | None = None

    @property
    def list_label(self) -> str:
        return RiskSource(self.source).label


@dataclass
class ScreenResult:
    companies_checked: int = 0
    entries_checked: int = 0
    created: list[RiskFlag] = field(default_factory=list)
    ended: list[RiskFlag] = field(default_factory=list)
    #: Flags made before entries were tied to flags, now tied to their entry.
    adopted: list[RiskFlag] = field(default_factory=list)
    #: Pending review questions added by this run.
    queued: list[MatchCandidate] = field(default_factory=list)
    gained: list[Change] = field(default_factory=list)
    lost: list[Change] = field(default_factory=list)
    emails: int = 0

    @property
    def flags_created(self) -> list[RiskFlag]:
        return self.created


@dataclass
class Loaded:
    """What one screening reads, in a fixed number of queries."""

    companies: dict[int, CompanyRecord]
    company_names: dict[int, str]
    #: child id -> parent id, every company with a parent.
    parents: dict[int, int]
    versions: dict[str, ListVersion]
    #: The latest version's entries, by id and by (list name, key): rows of listed_entities' columns
    #: (read like the model's attributes, `entry.name`), not ORM objects.
    entries: dict[int, sa.Row]
    by_key: dict[tuple[str, str], sa.Row]
    #: Current flags tied to an entry: (company id, list name, key, link) -> flag.
    flags: dict[tuple[int, str, str, str], RiskFlag]
    #: Current flags of companies in scope tied to no entry and made by no analyst, by
    #: (company, source, citation) and by (company, source, effective date).
    legacy: dict[tuple, RiskFlag]
    decisions: dict[tuple[int, str, str], MatchCandidate]


def _ancestors(company_ids, parents: dict[int, int]) -> set[int]:
    found = set()
    for company_id in company_ids:
        parent, seen = parents.get(company_id), {company_id}
        while parent is not None and parent not in seen:
            found.add(parent)
            seen.add(parent)
            parent = parents.get(parent)
    return found


def _descendants(company_ids, parents: dict[int, int]) -> set[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for child, parent in parents.items():
        children[parent].append(child)
    found, queue = set(), list(company_ids)
    while queue:
        for child in children.get(queue.pop(), []):
            if child not in found:
                found.add(child)
                queue.append(child)
    return found


#: What a CompanyRecord is made of (company_records' `rows` and `aliases`), the stored readings included.
COMPANY_COLUMNS = (Company.id, Company.name, Company.isin, Company.lei, Company.ticker, Company.exchange, Company.name_forms)
ALIAS_COLUMNS = (CompanyAlias.company_id, CompanyAlias.alias, CompanyAlias.name_forms)


def company_records(rows, aliases) -> dict[int, CompanyRecord]:
    """Companies as the matching engine takes them, by id: `rows` of COMPANY_COLUMNS, `aliases` of
    ALIAS_COLUMNS ordered by company and alias. The names' stored readings are used where fresh."""
    alias_rows: dict[int, list[tuple[str, str | None]]] = defaultdict(list)
    for company_id, alias, stored in aliases:
        alias_rows[company_id].append((alias, stored))
    records = {}
    for cid, name, isin, lei, ticker, exchange, stored in rows:
        mine = alias_rows.get(cid, ())
        forms = forms_of(stored, [name])
        for alias, alias_stored in mine:
            forms += forms_of(alias_stored, [alias], first=False)
        records[cid] = CompanyRecord(id=cid, names=(name, *(alias for alias, _ in mine)), isin=isin, lei=lei,
                                     ticker=ticker, exchange=exchange, forms=forms)
    return records


def entry_record(entry_id: int, name: str, aliases, identifiers, stored: str | None) -> EntryRecord:
    """A list entry as the matching engine takes it; its stored reading used where fresh."""
    names = entry_names(name, aliases)
    return EntryRecord(id=entry_id, names=names, identifiers=dict(identifiers or {}),
                       forms=forms_of(stored, names, entry=True))


def load(fund: Fund | None = None, companies: Iterable[int] | None = None) -> Loaded:
    """Read what one screening needs; the scope is every company, those `fund` holds, or `companies` (ids).

    A fund's scope adds the held companies' parents (an entry on them reaches the holding); a set of
    companies adds their parents and their subsidiaries (a flag on one of them links its subsidiaries).
    """
    parents = dict(db.session.execute(sa.select(Company.id, Company.parent_id).where(Company.parent_id.is_not(None))).all())
    columns = COMPANY_COLUMNS
    scoped = fund is not None or companies is not None
    if not scoped:
        rows = db.session.execute(sa.select(*columns)).all()
        aliases = db.session.execute(sa.select(*ALIAS_COLUMNS).order_by(CompanyAlias.company_id, CompanyAlias.alias)).all()
    else:
        if fund is not None:
            held = sa.select(Holding.company_id).where(Holding.fund_id == fund.id)
            rows = db.session.execute(sa.select(*columns).where(Company.id.in_(held))).all()
            base = {row[0] for row in rows}
            wanted = _ancestors(base, parents)  # a held company's parents: an entry on them reaches it
        else:
            rows, base = [], set(companies)
            wanted = base | _ancestors(base, parents) | _descendants(base, parents)
        wanted -= {row[0] for row in rows}
        rows += db.session.execute(sa.select(*columns).where(Company.id.in_(sorted(wanted) or [-1]))).all()
        scope = [row[0] for row in rows] or [-1]
        aliases = db.session.execute(sa.select(*ALIAS_COLUMNS)
                                     .where(CompanyAlias.company_id.in_(scope))
                                     .order_by(CompanyAlias.company_id, CompanyAlias.alias)).all()
    records = company_records(rows, aliases)
    versions = latest_versions()
    # Rows, not ORM objects: twenty thousand entries are read, few of them are used.
    entries = {e.id: e for e in db.session.execute(
        sa.select(*ListedEntity.__table__.c).where(ListedEntity.version_id.in_([v.id for v in versions.values()] or [-1])))}
    by_version = {v.id: v for v in versions.values()}
    by_key = {(by_version[e.version_id].name, e.key): e for e in entries.values()}
    flags = {}
    for flag, list_name, key in db.session.execute(
            sa.select(RiskFlag, ListVersion.name, ListedEntity.key)
            .join(ListedEntity, ListedEntity.id == RiskFlag.entity_id)
            .join(ListVersion, ListVersion.id == ListedEntity.version_id)
            .where(RiskFlag.ended_on.is_(None))
            .order_by(RiskFlag.id)):
        flags.setdefault((flag.company_id, list_name, key, flag.link), flag)
    scope_filter = RiskFlag.company_id.in_(list(records)) if scoped else sa.true()
    legacy = {}
    for flag in db.session.scalars(sa.select(RiskFlag).where(
            RiskFlag.ended_on.is_(None), RiskFlag.entity_id.is_(None), RiskFlag.created_by_id.is_(None),
            scope_filter).order_by(RiskFlag.id)):
        legacy.setdefault((flag.company_id, flag.source, flag.citation), flag)
        if flag.effective_date is not None:
            legacy.setdefault((flag.company_id, flag.source, flag.effective_date), flag)
    candidate_scope = MatchCandidate.company_id.in_(list(records)) if scoped else sa.true()
    decisions = {(c.company_id, c.list_name, c.entry_key): c
                 for c in db.session.scalars(sa.select(MatchCandidate).where(candidate_scope))}
    return Loaded(companies=records, company_names={row[0]: row[1] for row in rows}, parents=parents,
                  versions=versions, entries=entries, by_key=by_key, flags=flags, legacy=legacy, decisions=decisions)


def find_candidates(loaded: Loaded) -> list[Candidate]:
    """The matching engine's candidates between the companies in scope and the active entries."""
    entries = [entry_record(e.id, e.name, e.aliases, e.identifiers, e.name_forms)
               for e in loaded.entries.values() if e.status in ACTIVE_STATUSES]
    return match(list(loaded.companies.values()), entries)


def screen(fund: Fund | None = None, *, companies: Iterable[int] | None = None, notify: bool = True,
           record: bool = True) -> ScreenResult:
    """Screen the companies (all, those `fund` holds, or the `companies` ids) against the lists, in the caller's transaction.

    A scoped run decides only for the companies it loaded: review questions and linked flags of
    companies outside the scope are left alone. A flag whose entry left the list ends in any run
    (the entry is gone for every company).

    `record=False` (seeding) records the run only when it changed something, so loading the
    reference data again leaves no trace.
    """
    if fund is not None and companies is not None:
        raise ValueError("screen a fund or a set of companies, not both")
    lock()
    loaded = load(fund, companies)
    return decide(loaded, find_candidates(loaded), fund=fund, notify=notify, record=record)


#: The PostgreSQL advisory lock key of screening runs (any fixed 64-bit number): "engageSC".
SCREEN_LOCK_KEY = 0x656E6761_67655343


def lock() -> None:
    """One screening (or match decision) at a time: two reading the same flags would both add the missing ones.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: an update that changes nothing takes
    the database's write lock now, before anything is read.
    """
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(SCREEN_LOCK_KEY)))
    elif connection.dialect.name == "sqlite":
        connection.execute(sa.update(ListVersion).where(sa.false()).values(id=ListVersion.id))


def after_import(versions: list[ListVersion]) -> ScreenResult:
    """Screen every company after list versions were imported, and notify; called by the list import."""
    db.session.flush()
    result = screen(notify=True)
    for version in versions:  # screened now, even when a newer file of the same list came in the same batch
        version.screened_at = clock.utcnow()
    return result


def _note(entry: ListedEntity) -> str:
    return f"Matched the {RiskSource(entry.source).label} entry “{entry.name}”."


class _Decider:
    """One screening's decisions over what `load` read; every change goes to the session."""

    def __init__(self, loaded: Loaded, result: ScreenResult, today: dt.date):
        self.loaded = loaded
        self.result = result
        self.today = today
        self.list_names = {v.id: name for name, v in loaded.versions.items()}

    def list_of(self, entry: ListedEntity) -> str:
        return self.list_names[entry.version_id]

    def end_gone_entries(self) -> None:
        """End current flags whose entry is revoked or left its list's latest version."""
        for (company_id, list_name, key, link), flag in list(self.loaded.flags.items()):
            version = self.loaded.versions.get(list_name)
            if version is None:
                continue
            entry = self.loaded.by_key.get((list_name, key))
            if entry is None or entry.status not in ACTIVE_STATUSES:
                self.end(flag, (company_id, list_name, key, link), version, version.retrieved_on or self.today)

    def end(self, flag: RiskFlag, key, version: ListVersion | None, on: dt.date) -> None:
        flag.ended_on = on
        flag.ended_version_id = version.id if version else None
        self.loaded.flags.pop(key, None)
        self.result.ended.append(flag)

    def flag(self, company_id: int, entry: ListedEntity, score: int | None, reason: str,
             via: int | None = None) -> RiskFlag | None:
        """Make sure the company has a current flag from `entry` (direct, or linked via `via`)."""
        list_name = self.list_of(entry)
        link = FlagLink.LINKED.value if via is not None else FlagLink.DIRECT.value
        key = (company_id, list_name, entry.key, link)
        if key in self.loaded.flags:
            return None
        legacy = None
        if via is None:  # the same citation, else the same date (older files wrote citations their own way)
            legacy = self.loaded.legacy.get((company_id, entry.source, entry.citation)) or (
                self.loaded.legacy.get((company_id, entry.source, entry.effective_date)) if entry.effective_date else None)
        if legacy is not None:
            for stale in ((company_id, legacy.source, legacy.citation), (company_id, legacy.source, legacy.effective_date)):
                if self.loaded.legacy.get(stale) is legacy:
                    del self.loaded.legacy[stale]
            legacy.entity_id, legacy.version_id = entry.id, entry.version_id
            legacy.match_score, legacy.match_reason = score, reason[:500]
            self.loaded.flags[key] = legacy
            self.result.adopted.append(legacy)
            return None
        flag = RiskFlag(company_id=company_id, source=entry.source, section=entry.section,
                        effective_date=entry.effective_date, citation=entry.citation, citation_url=entry.citation_url,
                        entity_id=entry.id, version_id=entry.version_id, link=link, linked_via_id=via,
                        match_score=score, match_reason=reason[:500], note=_note(entry) if via is None else "")
        db.session.add(flag)
        self.loaded.flags[key] = flag
        self.result.created.append(flag)
        return flag

    def decide(self, candidates: list[Candidate]) -> None:
        best: dict[tuple[int, str, str], Candidate] = {}
        for candidate in candidates:
            entry = self.loaded.entries.get(candidate.entry_id)
            if (entry is None or entry.status not in ACTIVE_STATUSES or candidate.company_id not in self.loaded.companies
                    or candidate.score < REVIEW_SCORE):
                continue
            pair = (candidate.company_id, self.list_of(entry), entry.key)
            if pair not in best or candidate.score > best[pair].score:
                best[pair] = candidate
        for pair, candidate in best.items():
            entry = self.loaded.entries[candidate.entry_id]
            decision = self.loaded.decisions.get(pair)
            status = decision.status if decision is not None else None
            if status == CandidateStatus.REJECTED.value:
                continue
            if candidate.score >= FLAG_SCORE or status == CandidateStatus.ACCEPTED.value:
                self.flag(candidate.company_id, entry, candidate.score, candidate.reason)
                if status == CandidateStatus.PENDING.value:  # no longer a question
                    db.session.delete(decision)
                    del self.loaded.decisions[pair]
                continue
            if decision is None:
                decision = MatchCandidate(company_id=candidate.company_id, list_name=pair[1], entry_key=pair[2],
                                          entity_id=entry.id, score=candidate.score, reason=candidate.reason[:500],
                                          status=CandidateStatus.PENDING.value)
                db.session.add(decision)
                self.loaded.decisions[pair] = decision
                self.result.queued.append(decision)
            elif (decision.entity_id, decision.score, decision.reason) != (entry.id, candidate.score, candidate.reason[:500]):
                decision.entity_id, decision.score, decision.reason = entry.id, candidate.score, candidate.reason[:500]
        for pair, decision in list(self.loaded.decisions.items()):
            if decision.status == CandidateStatus.PENDING.value and pair not in best:
                db.session.delete(decision)  # the match no longer stands (entry gone, company changed)
                del self.loaded.decisions[pair]
            elif decision.status == CandidateStatus.ACCEPTED.value and pair[0] in self.loaded.companies:
                entry = self.loaded.by_key.get(pair[1:])
                if entry is not None and entry.status in ACTIVE_STATUSES:  # an analyst said so: it stands
                    self.flag(pair[0], entry, decision.score, decision.reason)

    def link_subsidiaries(self) -> None:
        """Linked flags on every descendant of a company an active entry flags directly.

        Linked flags are shown apart and never counted as exposure, so an entry on the parent links
        its subsidiaries whether or not it names them ("and its subsidiaries" is said in the reason).
        """
        children: dict[int, list[int]] = defaultdict(list)
        for child, parent in self.loaded.parents.items():
            children[parent].append(child)
        wanted: dict[tuple[int, str, str], tuple[ListedEntity, int]] = {}
        direct = [(key, flag) for key, flag in self.loaded.flags.items() if key[3] == FlagLink.DIRECT.value]
        for (company_id, list_name, key, _link), _flag in sorted(direct, key=lambda item: item[1].company_id):
            entry = self.loaded.by_key.get((list_name, key))
            if entry is None or entry.status not in ACTIVE_STATUSES:
                continue
            queue, seen = [(child, company_id) for child in children.get(company_id, [])], {company_id}
            while queue:  # breadth first: the nearest listed ancestor is the one a subsidiary is linked via
                child, via = queue.pop(0)
                if child in seen:
                    continue
                seen.add(child)
                if child in self.loaded.companies:
                    wanted.setdefault((child, list_name, key), (entry, via))
                queue += [(grandchild, via) for grandchild in children.get(child, [])]
        for (company_id, list_name, key), (entry, via) in wanted.items():
            if (company_id, list_name, key, FlagLink.DIRECT.value) in self.loaded.flags:
                continue  # named itself: the direct flag says it
            self.flag(company_id, entry, None, f"Subsidiary of {self.loaded.company_names.get(via, via)}, which the entry "
                      f"names{' with its subsidiaries' if covers_subsidiaries(entry) else ''}", via=via)
        for key, flag in list(self.loaded.flags.items()):
            company_id, list_name, entry_key, link = key
            if (link == FlagLink.LINKED.value and company_id in self.loaded.companies
                    and ((company_id, list_name, entry_key) not in wanted
                         or (company_id, list_name, entry_key, FlagLink.DIRECT.value) in self.loaded.flags)):
                self.end(flag, key, self.loaded.versions.get(list_name), self.today)  # the parent is no longer flagged or no longer the parent


def decide(loaded: Loaded, candidates: list[Candidate], *, fund: Fund | None = None, notify: bool = True,
           record: bool = True) -> ScreenResult:
    """Turn the matching engine's candidates into flags, review questions and ended flags; record the run."""
    result = ScreenResult(companies_checked=len(loaded.companies), entries_checked=len(loaded.entries))
    decider = _Decider(loaded, result, clock.today())
    decider.end_gone_entries()
    decider.decide(candidates)
    decider.link_subsidiaries()
    db.session.flush()
    now = clock.utcnow()
    _describe(result, loaded)
    if not (record or result.created or result.ended or result.adopted or result.queued):
        return result
    for version in loaded.versions.values():
        version.screened_at = now
    last_flag_id = db.session.scalar(sa.select(sa.func.max(RiskFlag.id))) or 0
    audit.record(RUN_ACTION, f"Screened {result.companies_checked} companies{f' held by {fund.name}' if fund else ''}: "
                             f"{len(result.created)} flag(s) gained, {len(result.ended)} ended, {len(result.queued)} to review",
                 changes={"fund_id": fund.id if fund else None, "created": [f.id for f in result.created],
                          "ended": [f.id for f in result.ended], "queued": len(result.queued),
                          "last_flag_id": last_flag_id})
    if notify and (result.gained or result.lost):
        result.emails = notify_changes(result.gained, result.lost, now)
    return result


def _describe(result: ScreenResult, loaded: Loaded) -> None:
    """The changes in words, for the CLI and the emails (one query for names outside the scope)."""
    names = dict(loaded.company_names)
    missing = {f.company_id for f in result.created + result.ended} | {f.linked_via_id for f in result.created + result.ended
                                                                      if f.linked_via_id}
    missing -= set(names)
    if missing:
        names.update(db.session.execute(sa.select(Company.id, Company.name).where(Company.id.in_(missing))).all())
    versions = {v.id: v for v in loaded.versions.values()}
    for flags, target, version_of in ((result.created, result.gained, lambda f: f.version_id),
                                      (result.ended, result.lost, lambda f: f.ended_version_id)):
        for flag in flags:
            entry = loaded.entries.get(flag.entity_id)
            target.append(Change(company_id=flag.company_id, company=names.get(flag.company_id, str(flag.company_id)),
                                 source=flag.source, link=flag.link, version=version_label(versions.get(version_of(flag))),
                                 entry=entry.name if entry is not None else flag.citation, citation=flag.citation,
                                 linked_via=names.get(flag.linked_via_id) if flag.linked_via_id else None))
    for items in (result.gained, result.lost):
        items.sort(key=lambda c: (c.company.lower(), c.source, c.link))


def notify_changes(gained: list[Change], lost: list[Change], now: dt.datetime) -> int:
    """One email per recipient: the admins get every change, an engagement's owner those of its company."""
    company_ids = {c.company_id for c in gained + lost}
    owners: dict[int, set[int]] = defaultdict(set)
    for owner_id, company_id in db.session.execute(
            sa.select(Engagement.owner_id, Engagement.company_id)
            .where(Engagement.company_id.in_(company_ids), Engagement.owner_id.is_not(None)).distinct()):
        owners[owner_id].add(company_id)
    users = db.session.scalars(sa.select(User).where(
        User.active.is_(True), sa.or_(User.role == Role.ADMIN.value, User.id.in_(list(owners) or [-1])))
        .order_by(User.id)).all()
    base = current_app.config["ENGAGE_BASE_URL"].rstrip("/")
    sent = 0
    for user in users:
        everything = user.role == Role.ADMIN.value
        mine = owners.get(user.id, set())
        user_gained = [c for c in gained if everything or c.company_id in mine]
        user_lost = [c for c in lost if everything or c.company_id in mine]
        if not (user_gained or user_lost):
            continue
        subject = f"Engage: screening — {len(user_gained)} flag(s) gained, {len(user_lost)} ended"
        outbox.enqueue(user.email, subject, render_template("lists/screening_email.txt", user=user, gained=user_gained,
                                                         lost=user_lost, base=base), now=now)
        sent += 1
    return sent


def new_since_threshold() -> int | None:
    """Flags with an id above this are "new since the last screening": made at or after the latest run.

    The threshold is the highest flag id when the run before the latest one ended (0 when there
    was one run only); None when no screening ever ran.
    """
    runs = db.session.scalars(sa.select(AuditEvent.changes).where(AuditEvent.action == RUN_ACTION)
                              .order_by(AuditEvent.id.desc()).limit(2)).all()
    if not runs:
        return None
    return int((runs[1] or {}).get("last_flag_id") or 0) if len(runs) > 1 else 0


def new_since_last_screening(fund: Fund | None = None) -> list[RiskFlag]:
    """Current flags from list entries made since the run before the latest (see new_since_threshold)."""
    threshold = new_since_threshold()
    if threshold is None:
        return []
    query = (sa.select(RiskFlag).where(RiskFlag.id > threshold, RiskFlag.entity_id.is_not(None), RiskFlag.ended_on.is_(None))
             .order_by(RiskFlag.id))
    if fund is not None:
        query = query.where(RiskFlag.company_id.in_(sa.select(Holding.company_id).where(Holding.fund_id == fund.id)))
    return list(db.session.scalars(query))
