"""Public lists as published: each imported file is a kept version; its entries; the match review.

A list (the US Entity List, a CBP WRO file, a team's own list...) is known by its `name`: the
RiskSource value for the published lists, a name the team chose for its own. Each import of a
file is a `ListVersion` (file name, retrieved date, SHA-256, entry count, its diff against the
version before) and its entries are stored with it, so an older version reads as it was loaded.
Screening reads the latest version of each list. Entries carry a `key` stable across versions
(the publisher's entity number, or the normalised name) which is how the diff pairs them and how
a match decision is remembered.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage import names
from engage.extensions import db
from engage.models.base import CandidateStatus, RiskSource, TimestampMixin, enum_check
from engage.models.companies import normalize_name

#: Entry statuses that keep a flag standing; any other status (Revoked, Inactive...) ends it.
ACTIVE_STATUSES = ("active", "partially active", "modified")


class ListVersion(TimestampMixin, db.Model):
    """One imported file of one list, kept with its entries."""

    __tablename__ = "list_versions"
    __table_args__ = (
        enum_check("source", RiskSource),
        sa.Index("ix_list_versions_name_id", "name", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The list: a RiskSource value, or the name of a team's own list.
    name: Mapped[str] = mapped_column(sa.String(80))
    source: Mapped[str] = mapped_column(sa.String(32))
    #: The layout it was read in: csl-csv, csl-json, cbp-wro, uflpa-html, ftm, nbim, csv.
    format: Mapped[str] = mapped_column(sa.String(16))
    file_name: Mapped[str] = mapped_column(sa.String(255))
    #: The day the file was downloaded from its publisher (given by the importer, else the import day).
    retrieved_on: Mapped[dt.date]
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    entry_count: Mapped[int] = mapped_column(default=0)
    #: Consolidated Screening List `source` values the version was filtered to (empty: not a CSL file).
    sources: Mapped[list] = mapped_column(sa.JSON, default=list)
    #: The column mapping used for a team's CSV ({"name": "Company", ...}).
    mapping: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    previous_id: Mapped[int | None] = mapped_column(sa.ForeignKey("list_versions.id", ondelete="SET NULL"))
    added_count: Mapped[int] = mapped_column(default=0)
    removed_count: Mapped[int] = mapped_column(default=0)
    changed_count: Mapped[int] = mapped_column(default=0)
    #: The changes against `previous` ({"added": [...], "removed": [...], "changed": [...]}).
    diff: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    imported_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    #: When the screening that follows the import ran.
    screened_at: Mapped[dt.datetime | None]

    previous: Mapped[ListVersion | None] = relationship(remote_side=[id])
    entries: Mapped[list[ListedEntity]] = relationship(
        back_populates="version", cascade="all, delete-orphan", passive_deletes=True, order_by="ListedEntity.name"
    )

    @property
    def source_label(self) -> str:
        return RiskSource(self.source).label


class ListedEntity(TimestampMixin, db.Model):
    """An entry of one list version."""

    __tablename__ = "listed_entities"
    __table_args__ = (
        enum_check("source", RiskSource),
        sa.UniqueConstraint("version_id", "key"),
        sa.Index("ix_listed_entities_normalized_name", "normalized_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("list_versions.id", ondelete="CASCADE"), index=True)
    #: Stable across versions: the publisher's entity number, else the normalised name.
    key: Mapped[str] = mapped_column(sa.String(200))
    #: Which list (a RiskSource value).
    source: Mapped[str] = mapped_column(sa.String(32))
    name: Mapped[str] = mapped_column(sa.String(300))
    normalized_name: Mapped[str] = mapped_column(sa.String(300))
    #: Other names the entity is listed under.
    aliases: Mapped[list] = mapped_column(sa.JSON, default=list)
    #: Identifiers the publisher gives ({"isin": [...], "lei": [...]}).
    identifiers: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    country: Mapped[str | None] = mapped_column(sa.String(2))
    address: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: Statutory section (UFLPA) or list subdivision.
    section: Mapped[str | None] = mapped_column(sa.String(40))
    #: What the publisher calls the entry: WRO or Finding, exclusion or observation, a CSL source.
    kind: Mapped[str] = mapped_column(sa.String(80), default="", server_default="")
    #: The publisher's status, lower case ("active", "revoked"...); see ACTIVE_STATUSES.
    status: Mapped[str] = mapped_column(sa.String(40), default="active", server_default="active")
    #: The entry names "... and its subsidiaries": it reaches the named company's subsidiaries.
    covers_subsidiaries: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    effective_date: Mapped[dt.date | None]
    citation: Mapped[str] = mapped_column(sa.String(500))
    citation_url: Mapped[str | None] = mapped_column(sa.String(500))
    note: Mapped[str] = mapped_column(sa.Text, default="")
    #: The name and aliases as the list matching reads them (engage.names.stored_forms), kept fresh on every write.
    name_forms: Mapped[str | None] = mapped_column(sa.Text)

    version: Mapped[ListVersion] = relationship(back_populates="entries")

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def names(self) -> set[str]:
        """Every normalised name this entry can match."""
        return {normalize_name(n) for n in [self.name, *(self.aliases or [])] if normalize_name(n)}


@sa.event.listens_for(ListedEntity, "before_insert", propagate=True)
@sa.event.listens_for(ListedEntity, "before_update", propagate=True)
def _keep_name_forms(_mapper, _connection, target: ListedEntity) -> None:
    """Read the names again when they changed (or the reading did): what the matching will load."""
    stored = names.refreshed(target.name_forms, names.entry_names(target.name, target.aliases), entry=True)
    if stored != target.name_forms:
        target.name_forms = stored


def latest_version_ids():
    """SQL: the id of each list's latest version (screening reads these)."""
    return sa.select(sa.func.max(ListVersion.id)).group_by(ListVersion.name)


def latest_versions(names: list[str] | None = None) -> dict[str, ListVersion]:
    """Each list's latest version (of `names`, when given), by list name; one query."""
    query = sa.select(ListVersion).where(ListVersion.id.in_(latest_version_ids()))
    if names is not None:
        query = query.where(ListVersion.name.in_(names or [""]))
    return {v.name: v for v in db.session.scalars(query)}


class MatchCandidate(TimestampMixin, db.Model):
    """A company and a list entry that may be the same: queued for review, or decided.

    The pair is (company, list name, entry key), so a decision outlives the version it was made
    on: the same pair is never asked again, and a decision can be undone (back to pending).
    """

    __tablename__ = "match_candidates"
    __table_args__ = (
        enum_check("status", CandidateStatus),
        sa.UniqueConstraint("company_id", "list_name", "entry_key"),
        sa.Index("ix_match_candidates_status_score", "status", "score"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(sa.ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    list_name: Mapped[str] = mapped_column(sa.String(80))
    entry_key: Mapped[str] = mapped_column(sa.String(200))
    #: The entry as last seen (its latest version); kept when a newer version drops it.
    entity_id: Mapped[int | None] = mapped_column(sa.ForeignKey("listed_entities.id", ondelete="SET NULL"), index=True)
    #: 0-100, and why: which identifier, which name form, which alias.
    score: Mapped[int] = mapped_column(default=0)
    reason: Mapped[str] = mapped_column(sa.String(500), default="")
    status: Mapped[str] = mapped_column(sa.String(16), default=CandidateStatus.PENDING.value)
    decided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[dt.datetime | None]

    company = relationship("Company")
    entity: Mapped[ListedEntity | None] = relationship()
    decided_by = relationship("User")
