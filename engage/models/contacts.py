"""The people at a company that letters are addressed to and replies come from.

Contacts are personal data: they are shown to signed-in users only, every change is audited,
and an admin can erase one (`erased_at` set, name and details blanked; past interactions keep
only "erased contact").
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engage.extensions import db
from engage.models.base import ContactRole, TimestampMixin, enum_check
from engage.models.companies import Company


#: Languages letters are written in (BCP 47 tag, label); a template may have a version per language.
LANGUAGES = [("en", "English"), ("zh-Hans", "Chinese, Simplified (简体中文)"), ("zh-Hant", "Chinese, Traditional (繁體中文)"),
             ("ja", "Japanese (日本語)"), ("ko", "Korean (한국어)"), ("fr", "French"), ("de", "German"), ("es", "Spanish")]
LANGUAGE_LABELS = dict(LANGUAGES)
#: What erasure leaves where a contact's name or address was.
ERASED = "erased contact"
#: Which contact a letter goes to when none is chosen: investor relations first.
ROLE_ORDER = ["investor_relations", "company_secretary", "sustainability", "board_chair", "other"]


class CompanyContact(TimestampMixin, db.Model):
    __tablename__ = "company_contacts"
    __table_args__ = (
        enum_check("role", ContactRole),
        sa.Index("ix_company_contacts_email", "email"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        sa.ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(32), default=ContactRole.INVESTOR_RELATIONS.value)
    #: Job title as the company writes it, e.g. "Secretary to the Board".
    title: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")
    #: Stored lower-cased (addresses are matched case-insensitively when replies come in).
    email: Mapped[str | None] = mapped_column(sa.String(254))
    phone: Mapped[str] = mapped_column(sa.String(60), default="", server_default="")
    #: Postal address when it differs from the company's.
    address: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: BCP 47 language tag letters to this contact are written in, e.g. "en", "zh-Hans".
    language: Mapped[str] = mapped_column(sa.String(16), default="en", server_default="en")
    notes: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: Where the contact was found (annual report page, IR website, a call...).
    source: Mapped[str] = mapped_column(sa.String(500), default="", server_default="")
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    #: Set when an admin erased the contact's personal data.
    erased_at: Mapped[dt.datetime | None]

    company: Mapped[Company] = relationship()

    def __repr__(self) -> str:
        return f"<CompanyContact {self.id} of company {self.company_id}>"

    @property
    def role_label(self) -> str:
        return ContactRole(self.role).label

    @property
    def is_erased(self) -> bool:
        return self.erased_at is not None

    @property
    def display_name(self) -> str:
        return ERASED if self.is_erased else self.name

    @property
    def language_label(self) -> str:
        return LANGUAGE_LABELS.get(self.language, self.language)
