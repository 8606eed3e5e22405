"""A big letter batch's bulk work as background jobs (a batch of LETTERS_JOB_LETTERS letters or more).

- `letters_prepare`: render every letter of the batch as PDF and DOCX into the document cache,
  reporting progress, then write the batch's ZIP beside them (`zip_path`), which the ZIP link
  then serves as it is. Retried, it renders only what is not cached yet and writes the ZIP again
  (one file per batch and content): nothing is duplicated.
- `letters_email`: render the drafts' final PDFs (the same cache, with progress), then queue one
  email per draft and mark it sent, all in one transaction (`service.email_many`). Retried, it
  emails once: a draft is marked sent in the transaction that queues its email, and a retry only
  emails the letters still drafts. The outbox is drained by the scheduler, as for one letter.

A letter that cannot be rendered (too long, over its time or memory budget) fails the job at once
with the letters and the reasons; other faults are retried.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from engage import background, clock
from engage.extensions import db
from engage.letters import documents, service
from engage.models import BackgroundJob, Engagement, JobStatus, Letter, LetterBatch, User

PREPARE = "letters_prepare"
EMAIL = "letters_email"
#: Letters rendered between two progress reports.
CHUNK = 20


def batch_digest(letters: list[Letter]) -> str:
    """Names the content of a batch's documents: any letter edited (or sent: the DRAFT mark goes) is another digest."""
    versions = ",".join(f"{letter.id}-{documents._version(letter)}" for letter in sorted(letters, key=lambda x: x.id))
    return hashlib.sha256(versions.encode()).hexdigest()[:24]


def zip_path(batch_id: int, digest: str) -> Path:
    return documents.cache_dir() / f"batch-{batch_id}-{digest}.zip"


def prepare_key(batch_id: int, digest: str, user_id: int) -> str:
    """One job per user, batch and content: a double click or a second tab finds it (a job's page is
    its asker's); another user's job renders nothing twice (the documents are cached)."""
    return f"{PREPARE}:{batch_id}:{digest}:{user_id}"


def email_key(batch_id: int, drafts: list[Letter], user_id: int) -> str:
    """One job per user, batch and set of drafts. Two users emailing the same drafts at once email each
    letter once: a letter is claimed as sent by a conditional update (service.mark_sent)."""
    ids = ",".join(str(letter.id) for letter in sorted(drafts, key=lambda x: x.id))
    return f"{EMAIL}:{batch_id}:{hashlib.sha256(ids.encode()).hexdigest()[:24]}:{user_id}"


def load_batch(batch_id: int, for_sending: bool = False) -> LetterBatch:
    engagements = selectinload(LetterBatch.letters).selectinload(Letter.engagement)
    options = [engagements.selectinload(Engagement.company), selectinload(LetterBatch.template)]
    if for_sending:
        options += [engagements.selectinload(Engagement.campaign), engagements.selectinload(Engagement.reminders)]
    batch = db.session.scalar(sa.select(LetterBatch).where(LetterBatch.id == batch_id).options(*options))
    if batch is None:
        raise background.Refused(f"letter batch #{batch_id} no longer exists")
    return batch


def refusal_text(refused: list[documents.DocumentRefused]) -> str:
    """"2 letters cannot be made: letter 12 to Acme Ltd (PDF and DOCX): the reason; ..." (the first five)."""
    by_letter: dict[int, list[documents.DocumentRefused]] = {}
    for refusal in refused:
        by_letter.setdefault(refusal.letter.id, []).append(refusal)
    parts = [f"letter {rs[0].letter.id} to {rs[0].letter.engagement.company.name} "
             f"({' and '.join(r.fmt.upper() for r in rs)}): {rs[0].message}" for rs in list(by_letter.values())[:5]]
    n = len(by_letter)
    more = f" (the first 5 of {n})" if n > 5 else ""
    return f"{n} letter{'' if n == 1 else 's'} cannot be made{more}: " + "; ".join(parts)


def render_all(letters: list[Letter], formats: tuple[str, ...], report, message: str, final: bool = False) -> None:
    """Render what is not cached of `letters` in `formats`, CHUNK letters at a time, reporting progress;
    Refused naming the letters that cannot be made (the others stay cached for the next try)."""
    refused: list[documents.DocumentRefused] = []
    total = len(letters)
    report(0, total, message)
    for start in range(0, total, CHUNK):
        chunk = letters[start:start + CHUNK]
        _, refusals, pending = documents.render_missing([(letter, fmt) for letter in chunk for fmt in formats],
                                                        final=final)
        refused += refusals
        if pending:  # only a total budget leaves some pending, and none is given
            raise RuntimeError(f"{len(pending)} document(s) were left unrendered")
        report(min(start + CHUNK, total), total, message)
    if refused:
        raise background.Refused(refusal_text(refused))


@background.handler(PREPARE)
def prepare(job, report) -> background.Outcome:
    batch = load_batch(job.params["batch_id"])
    letters = list(batch.letters)
    with documents.lock(f"batch-{batch.id}"):
        render_all(letters, documents.FORMATS, report, "Letters rendered as PDF and DOCX")
        digest = batch_digest(letters)
        path = zip_path(batch.id, digest)
        if not path.is_file():
            documents.write_batch_zip(letters, path)  # every document is cached now: copied, not rendered
            for older in documents.cache_dir().glob(f"batch-{batch.id}-*.zip"):
                if older != path:
                    older.unlink(missing_ok=True)
    size = path.stat().st_size / 1_000_000
    return background.Outcome(
        [f"{len(letters)} letters of batch #{batch.id} prepared as PDF and DOCX; the ZIP ({size:.1f} MB) is ready."],
        ("letters.batch_zip", {"batch_id": batch.id}))


def email_summary(queued: list, skipped: list[Letter], already: int) -> str:
    message = f"{len(queued)} letter{'' if len(queued) == 1 else 's'} queued by email and recorded as sent."
    if skipped:
        message += (f" {len(skipped)} skipped for lack of a contact with an email address: "
                    + "; ".join(letter.engagement.company.name for letter in skipped[:10]) + ".")
    if already:
        message += f" {already} already sent before."
    return message


@background.handler(EMAIL)
def email(job, report) -> background.Outcome:
    batch = load_batch(job.params["batch_id"], for_sending=True)
    sender = db.session.get(User, job.created_by_id) if job.created_by_id else None
    if sender is None or not sender.can_edit:
        raise background.Refused("the user who asked for these emails can no longer send letters")
    letters = list(batch.letters)
    drafts = [letter for letter in letters if not letter.is_sent]
    # the PDFs first, with progress (the cache keeps them), so the transaction below renders nothing
    render_all(drafts, ("pdf",), report, "Letter PDFs rendered", final=True)
    report(len(drafts), len(drafts), "Queuing the emails")
    try:
        queued, skipped, already = service.email_many(letters, sender, clock.today())
        db.session.commit()
    except service.AlreadySent as exc:  # another request or job sent some of them meanwhile: rolled back
        db.session.rollback()
        raise RuntimeError("some of these letters were sent meanwhile by another request; "
                           "trying again with the drafts left") from exc
    except service.LetterError as error:
        db.session.rollback()
        raise background.Refused(f"No letters emailed: {error.message}") from error
    return background.Outcome([email_summary(queued, skipped, already)],
                              ("letters.batch", {"batch_id": batch.id}))


@background.stored_result(PREPARE)
def forget_zip(job, cutoff) -> int:
    """The ZIP a finished prepare job wrote, unless it was written again since `cutoff` (a later job of
    the same batch and content) or such a job is queued or running. The batch page prepares it again."""
    _kind, batch_id, digest, _user = job.key.split(":", 3)
    if db.session.scalar(sa.select(sa.func.count(BackgroundJob.id)).where(
            BackgroundJob.kind == PREPARE, BackgroundJob.key.startswith(f"{PREPARE}:{batch_id}:{digest}:", autoescape=True),
            BackgroundJob.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))):
        return 0
    path = zip_path(int(batch_id), digest)
    try:
        if path.is_symlink() or path.lstat().st_mtime >= cutoff.replace(tzinfo=dt.UTC).timestamp():
            return 0
        path.unlink()
    except FileNotFoundError:
        return 0
    return 1
