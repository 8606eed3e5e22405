"""The list import as background jobs: reading and previewing an uploaded file of
LISTS_PREVIEW_JOB_BYTES or more (`preview_stashed`), and saving a confirmed file of
LISTS_JOB_ENTRIES entries or more (`import_stashed`).

The preview job reads the stashed file as the page would (`service.read`) and keeps what the
preview page shows (or the refusal, with its rows) beside the upload (`service.keep_preview`); it
writes nothing to the database, so running it twice only reads the file twice.

The job does what the confirmation does inline for a small file: claim the stashed upload once,
save it as its preview showed it (`expected_digest`) as new list versions, commit, then screen
every company against the lists and commit again. Its summary is the one the page shows inline.

Retried, it saves once: the upload is claimed once, and an attempt that finds its file saved
already (an earlier attempt committed, then its worker died) only finishes what is left (the
screening). What retrying cannot mend (the preview changed, the file is refused, the upload is
gone) fails the job at once with the reason.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from engage import background
from engage.extensions import db
from engage.holdings.jobs import forget_upload, waiting_upload
from engage.lists import screening, service
from engage.models import ListVersion

KIND = "lists_import"
PREVIEW_KIND = "lists_preview"
STASH = service.STASH
STEPS = 2
#: Refused rows a job's summary names (the preview page lists them all).
ROWS_NAMED = 5


def screening_line(result) -> str:
    return (f"Screened {result.companies_checked} companies: {len(result.created)} new risk flag(s), "
            f"{len(result.ended)} ended, {len(result.queued)} new possible match(es) to review.")


def version_lines(shown, saved) -> list[str]:
    return [f"Version {v.id}: {d.summary()}" for d, v in zip(shown.diffs, saved)]


@background.handler(PREVIEW_KIND)
def preview_stashed(job, report) -> background.Outcome:
    """Read a big uploaded list file and keep its preview; the job's result is the preview page."""
    token = job.params["token"]
    data, meta = waiting_upload(token, STASH, done="saved", doing="saved")
    name = meta.get("file_name") or "The file"
    report(0, None, "Reading the file and comparing it with the loaded versions")
    fingerprint = service.preview_fingerprint(data, meta)
    try:
        shown = service.read(data, meta)
    except service.ListError as exc:
        exc = service.for_the_form(exc)
        service.keep_preview(token, fingerprint, exc)
        rows = [f"{str(error)[0].upper()}{str(error)[1:]}." for error in exc.errors[:ROWS_NAMED]]
        more = [f"… and {len(exc.errors) - ROWS_NAMED} more (see why)."] if len(exc.errors) > ROWS_NAMED else []
        return background.Outcome([f"{name} was refused; nothing was saved: {exc.message}."] + rows + more,
                                  ("lists.show_preview", {"token": token}))
    meta["entries"] = shown.entry_count  # a big file's confirmation is a job too
    service.save_upload_meta(token, meta, STASH)
    service.keep_preview(token, fingerprint, shown)
    return background.Outcome([f"{name}: {shown.entry_count:,} entries read and compared with the loaded "
                               f"versions; see what saving them would change, then save."] + shown.lines(),
                              ("lists.show_preview", {"token": token}))


@background.handler(KIND)
def import_stashed(job, report) -> background.Outcome:
    token, digest = job.params["token"], job.params.get("digest") or ""
    claimed = service.claim_upload(token, STASH)
    if claimed is None:
        state, lines = service.upload_state(token)
        if state == "done":  # an earlier attempt saved the file; screen what it left unscreened
            return _finish(job, list(lines), _saved_since(job, job.params.get("sha256") or ""), report)
        if state == "importing":
            raise RuntimeError("the upload is claimed by another confirmation; trying again later")
        raise background.Refused("that import is no longer waiting; upload the file again")
    data, meta = claimed
    report(0, STEPS, "Saving the new list version(s)")
    try:
        shown, saved = service.save(data, meta["file_name"], meta["format"], meta["list_name"], meta["sources"],
                                    meta["mapping"], service.parse_day(meta["retrieved_on"]),
                                    older=bool(job.params.get("older")), expected_digest=digest,
                                    imported_by_id=job.created_by_id)
        db.session.commit()
    except service.ListError as exc:
        db.session.rollback()
        earlier = _saved_since(job, hashlib.sha256(data).hexdigest()) if job.attempts > 1 else []
        if earlier:  # an earlier attempt committed, then its worker died: its own versions changed the preview
            lines = [f"Version {v.id}: saved by an earlier attempt of this job" for v in earlier]
            service.finish_upload(token, lines)
            return _finish(job, lines, earlier, report)
        service.release_upload(token)
        message = service.for_the_form(exc).message.replace(" below", " on the preview")  # no form on the job's page
        raise background.Refused(f"Not saved: {message}; go back to the preview (or upload the file again), "
                                 "check it and confirm again") from exc
    except Exception:
        db.session.rollback()
        service.release_upload(token)
        raise
    lines = version_lines(shown, saved)
    service.finish_upload(token, lines)
    return _finish(job, lines, saved, report)


def _saved_since(job, sha256: str) -> list[ListVersion]:
    """The versions of this very file saved since the job was asked for (by an earlier attempt)."""
    if not sha256:
        return []
    return db.session.scalars(sa.select(ListVersion).where(
        ListVersion.sha256 == sha256, ListVersion.created_at >= job.created_at).order_by(ListVersion.id)).all()


def _finish(job, lines: list[str], saved: list[ListVersion], report) -> background.Outcome:
    """Screen every company against the lists (unless done for these versions already), commit."""
    report(1, STEPS, "Screening every company")
    if saved and any(v.screened_at is None for v in saved):
        result = screening.after_import(saved)
        db.session.commit()
        lines = lines + [screening_line(result)]
    report(STEPS, STEPS, "Done")
    return background.Outcome(lines, ("lists.version", {"version_id": saved[0].id}) if saved else
                              ("lists.index", {}))


background.stored_result(PREVIEW_KIND)(forget_upload)  # the same stash as the holdings import's
background.stored_result(KIND, lasting=True)(forget_upload)  # the list version outlives the upload
