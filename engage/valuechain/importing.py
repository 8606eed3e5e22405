"""The map import on the web, around service.preview and service.save: the upload's checks, the
digest naming what a preview showed (a confirmation of a stale preview is refused and shown again,
never applied), the engagement a result belongs to, and the result's lines.

Between the preview and the confirmation the file waits in the holdings import's stash (under the
kind routes.KIND): claimed once, so a double-clicked confirmation imports once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import PurePosixPath

import sqlalchemy as sa

from engage import clock
from engage.errors import FieldError
from engage.formatting import counted
from engage.extensions import db
from engage.holdings.service import (  # noqa: F401 - the stash, for the routes
    StashUnsafe,
    claim_upload,
    discard_upload,
    finish_upload,
    load_upload,
    release_upload,
    stash_upload,
    upload_state,
)
from engage.models import Company, Engagement, User, ValueChainMap
from engage.valuechain.service import Preview, Saved, ValueChainError

#: Largest map file taken on the web (the command line reads up to cli.MAX_FILE_BYTES).
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: File names a map may have (the content decides how it is read; this refuses a .docx or .png early).
EXTENSIONS = ("csv", "txt", "tsv", "xlsx", "pdf")


def check_upload(data: bytes, file_name: str, disclosed_on: dt.date | None = None) -> None:
    """Refuse a file too large, or not a map by its name, before reading it (ValueChainError); a
    disclosure date in the future (FieldError, as save would at the confirmation)."""
    if disclosed_on is not None and disclosed_on > clock.today():
        raise FieldError("disclosed_on", "the disclosure date is in the future")
    suffix = PurePosixPath(file_name.lower()).suffix.lstrip(".")
    if suffix and suffix not in EXTENSIONS:
        raise ValueChainError(f"{file_name}: a .{suffix} file is not a map; upload the map as CSV, XLSX or PDF")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueChainError(f"{file_name}: {len(data) / 1024 / 1024:.1f} MB, larger than the "
                              f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB limit for a map on the web; split it, or import "
                              f"it with `flask valuechain import`")


def digest(shown: Preview) -> str:
    """What the preview showed: the file, the map it is compared with, each row's resolution and flags."""
    rows = [[r.item.row, r.item.name, r.item.kind, r.item.tier, r.resolution, r.company_id,
             r.possible[0] if r.possible else None, [str(f) for f in r.flags], r.region_reason] for r in shown.rows]
    payload = {"sha256": shown.sha256, "mapping": shown.mapping, "previous": shown.diff.previous_number,
               "diff": shown.diff.as_json(), "rows": rows}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def check_not_identical(shown: Preview) -> None:
    """Refuse at the preview what save would refuse at the confirmation: the company's latest map again."""
    latest = latest_map_of(shown.company)
    if latest is not None and latest.sha256 == shown.sha256 and (latest.mapping or {}) == shown.mapping:
        raise ValueChainError(f"{shown.file_name}: this file is identical to map {latest.number} of "
                              f"{shown.company.name} ({latest.file_name}); nothing to import")


def latest_number(company: Company) -> int | None:
    return db.session.scalar(sa.select(sa.func.max(ValueChainMap.number)).where(ValueChainMap.company_id == company.id))


def latest_map_of(company: Company) -> ValueChainMap | None:
    return db.session.scalar(sa.select(ValueChainMap).where(ValueChainMap.company_id == company.id)
                             .order_by(ValueChainMap.number.desc()).limit(1))


def day(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def importer_name(vc_map: ValueChainMap) -> str:
    user = db.session.get(User, vc_map.imported_by_id) if vc_map.imported_by_id else None
    return user.name if user is not None else "the command line"


def engagement_for(company: Company, engagement_id: int | None) -> Engagement | None:
    """The engagement the import was started from (if it is this company's), else the company's latest open one."""
    if engagement_id is not None:
        engagement = db.session.get(Engagement, engagement_id)
        if engagement is not None and engagement.company_id == company.id:
            return engagement
    return db.session.scalar(sa.select(Engagement).where(Engagement.company_id == company.id,
                                                         Engagement.closed_on.is_(None))
                             .order_by(Engagement.id.desc()).limit(1))


def flagged_first(shown: Preview) -> list:
    return sorted(shown.rows, key=lambda r: (not r.flagged, r.item.row))


def counts(shown: Preview) -> dict[str, int]:
    rows = shown.rows
    return {"rows": len(rows), "existing": sum(r.resolution == "existing" for r in rows),
            "possible": sum(r.resolution == "possible" for r in rows),
            "new": sum(r.resolution != "existing" for r in rows), "flagged": len(shown.flagged),
            "listed": sum(bool(r.flags) for r in rows), "region": sum(bool(r.region_reason) for r in rows)}


def finish(token: str, lines: list[str], meta: dict) -> None:
    """The import committed: keep its result lines with whose import it was (user and company)."""
    finish_upload(token, {"user": meta.get("user"), "company": meta.get("company"), "lines": lines})


def state_for(token: str, user_id: int, company_id: int) -> tuple[str, list[str]]:
    """upload_state of a token that cannot be claimed, as this user sees it under this company's URL:
    the result of an import is told only to its importer, under its company; another's (or another
    feature's) finished import reads as gone, so a token tried under another URL tells nothing of it."""
    state, result = upload_state(token)
    if state != "done":
        return state, result
    if isinstance(result, dict) and result.get("user") == user_id and result.get("company") == company_id:
        return state, list(result.get("lines") or [])
    return "gone", []


def summary(saved: Saved) -> list[str]:
    """The result of a confirmed import, as flash lines (kept for a second click to report)."""
    shown, number = saved.preview, saved.map.number
    figures = counts(shown)
    lines = [f"Map {number} of {shown.company.name} imported from {shown.file_name}: "
             f"{counted(figures['rows'], 'relationship')}, {figures['existing']} resolved to existing companies, "
             f"{counted(len(saved.created), 'new company', 'new companies')}; {figures['flagged']} flagged "
             f"({figures['listed']} on a list, {figures['region']} in the Uyghur Region). {shown.diff.summary()}."]
    if saved.screening is not None:
        result = saved.screening
        lines.append(f"Screened {counted(result.companies_checked, 'company', 'companies')}: "
                     f"{counted(len(result.created), 'new risk flag')}, "
                     f"{counted(len(result.queued), 'new possible match', 'new possible matches')} to review.")
    return lines
