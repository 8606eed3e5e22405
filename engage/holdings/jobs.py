"""The holdings import as background jobs: reading and previewing an uploaded file of
HOLDINGS_PREVIEW_JOB_BYTES or more (`preview_stashed`), and importing a confirmed file of
HOLDINGS_JOB_ROWS rows or more (`import_stashed`).

The preview job reads the stashed file as the preview page would (`service.check_file`) and keeps
what the page shows beside the upload (`service.keep_preview`); it writes nothing to the database,
so running it twice (a retry, a worker killed halfway) only reads the file twice.

The job does what the confirmation does inline for a small file: claim the stashed upload once,
import it as its preview showed it (`expected_digest`), commit, and keep the result for a second
click. What retrying cannot mend (the preview changed, the file is refused, the upload is gone)
fails the job at once with the reason; a fault puts the upload back for the retry.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from engage import background
from engage.extensions import db
from engage.holdings import service
from engage.models import Fund
from engage.models.holdings import HoldingImport

KIND = "holdings_import"
PREVIEW_KIND = "holdings_preview"


def waiting_upload(token: str, kind: str = "holdings", done: str = "imported", doing: str = "imported"):
    """The stashed upload a preview job reads, or Refused saying what became of it (the list import's too)."""
    stashed = service.load_upload(token, kind)
    if stashed is None:
        state, lines = service.upload_state(token)
        if state == "done":
            raise background.Refused(f"this file was {done} already: " + "; ".join(lines[:1]))
        if state == "importing":
            raise background.Refused(f"this file is being {doing} (confirmed in another tab)")
        raise background.Refused("that upload is no longer waiting; upload the file again")
    return stashed


@background.handler(PREVIEW_KIND)
def preview_stashed(job, report) -> background.Outcome:
    """Read a big uploaded file and keep its preview; the job's result is the preview page."""
    token = job.params["token"]
    data, meta = waiting_upload(token)
    fund = db.session.get(Fund, meta["fund_id"])
    if fund is None:
        raise background.Refused("that fund no longer exists; upload the file again into another")
    report(0, None, "Reading and checking the file")
    options = service.ReadOptions.from_meta(meta)
    checked = service.check_file(data, meta.get("filename") or "upload", options, fund)
    service.keep_preview(token, data, checked)
    if checked.ok:
        lines = [f"{meta.get('filename') or 'The file'}: {checked.row_count:,} holdings read and checked; "
                 f"see what importing them would do, then confirm."]
    else:
        lines = [f"{meta.get('filename') or 'The file'} was refused; nothing was saved. See why."]
    return background.Outcome(lines, ("holdings.show_preview", {"token": token}))


@background.handler(KIND)
def import_stashed(job, report) -> background.Outcome:
    token, digest = job.params["token"], job.params.get("digest") or ""
    stashed = service.claim_upload(token)
    if stashed is None:
        state, lines = service.upload_state(token)
        if state == "done":  # an earlier attempt committed, then died before recording it
            return background.Outcome(lines, None)
        if state == "importing":
            raise RuntimeError("the upload is claimed by another confirmation; trying again later")
        raise background.Refused("that import is no longer waiting; upload the file again")
    data, meta = stashed
    report(0, meta.get("rows"), "Rows imported")
    try:
        options = service.ReadOptions.from_meta(meta)
        result = service.import_file(data, meta.get("filename") or "upload", options,
                                     fund_id=meta["fund_id"], expected_digest=digest,
                                     progress=lambda done, total: report(done, total, "Rows imported"),
                                     reading=service.kept_reading(token, data, meta))
        db.session.commit()
    except service.ImportBusy as exc:
        db.session.rollback()
        service.release_upload(token)
        raise RuntimeError(str(exc)) from exc  # another import keeps the turn: a retry waits its end
    except service.ImportRefused as exc:  # PreviewChanged too
        db.session.rollback()
        earlier = _committed_by_an_earlier_attempt(job, data, meta) if job.attempts > 1 else None
        if earlier is not None:  # that attempt's worker died after its commit: the preview changed by its own import
            lines = [f"{earlier.fund.name} as of {earlier.as_of.isoformat()}: {earlier.rows} rows → "
                     f"{earlier.positions} positions, saved by an earlier attempt of this job"]
            service.finish_upload(token, lines)
            return background.Outcome(lines, ("holdings.fund", {"fund_id": earlier.fund_id}))
        service.release_upload(token)
        message = exc.message
        raise background.Refused(f"Not imported: {message}; open the import again and check its preview") from exc
    except Exception:
        db.session.rollback()
        service.release_upload(token)
        raise
    lines = result.lines()
    service.finish_upload(token, lines)
    warnings = [line[0].upper() + line[1:] + ". See the dashboard." for line in result.warnings()]
    created = ([f"{len(result.created)} companies were created from the file; review them to merge duplicates."]
               if result.created else [])
    return background.Outcome(lines + warnings + created, ("holdings.fund", {"fund_id": result.fund.id}))


def _committed_by_an_earlier_attempt(job, data: bytes, meta: dict) -> HoldingImport | None:
    """The import of this very file into this fund, committed since the job was asked for: an
    earlier attempt whose worker died between its commit and recording the result."""
    return db.session.scalar(sa.select(HoldingImport).where(
        HoldingImport.fund_id == meta["fund_id"], HoldingImport.sha256 == hashlib.sha256(data).hexdigest(),
        HoldingImport.created_at >= job.created_at).order_by(HoldingImport.id.desc()).limit(1))


def forget_upload(job, _cutoff) -> int:
    """A finished job's stashed upload (the file, its kept preview and reading, the result a second
    click reads), unless a queued or running job still uses the same upload (an import confirmed from
    the preview this job made)."""
    token = (job.params or {}).get("token")
    if not isinstance(token, str) or token in background.busy_tokens():
        return 0
    return service.discard_upload(token)


background.stored_result(PREVIEW_KIND)(forget_upload)
background.stored_result(KIND, lasting=True)(forget_upload)  # the fund's page outlives the upload
