"""Letters: generating, editing, sending and downloading; bulk batches; the template editor."""

from __future__ import annotations


import sqlalchemy as sa
from flask import (Blueprint, Response, abort, current_app, flash, jsonify, redirect, render_template, request,
                   send_file, url_for)
from flask_login import current_user
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from engage import background, clock, idempotency
from engage.engagements.queries import engagement_filters, engagement_query
from engage.extensions import db
from engage.formatting import format_date
from engage.forms import ActionForm
from engage.letters import documents, jobs, service
from engage.letters.forms import (
    BatchEmailForm,
    BatchSentForm,
    BulkForm,
    DraftForm,
    EmailForm,
    GenerateForm,
    LanguageForm,
    SendForm,
    TemplateForm,
)
from engage.models import (
    LANGUAGES,
    Engagement,
    Letter,
    LetterBatch,
    LetterTemplate,
    LetterTemplateVersion,
    OutboxEmail,
)
from engage.security import require_role
from engage.validators import whole_number
from engage.web import content_disposition, refuse

bp = Blueprint("letters", __name__, url_prefix="/letters")

PREPARE_CHUNK = 20


def _letter(letter_id: int) -> Letter:
    letter = db.session.scalar(
        sa.select(Letter).where(Letter.id == letter_id)
        .options(selectinload(Letter.engagement).selectinload(Engagement.company),
                 selectinload(Letter.engagement).selectinload(Engagement.campaign))
    )
    if letter is None:
        abort(404)
    return letter


@bp.route("/generate/<int:engagement_id>", methods=["POST"])
@require_role("analyst")
def generate(engagement_id: int):
    engagement = db.get_or_404(Engagement, engagement_id)
    form = GenerateForm(templates=service.template_choices())
    if not form.validate_on_submit():
        flash("Choose a template to generate the letter from.", "error")
        return redirect(url_for("engagements.show", engagement_id=engagement_id, tab="letter") + "#letters")
    template = db.get_or_404(LetterTemplate, form.template_id.data)
    back = url_for("engagements.show", engagement_id=engagement_id, tab="letter") + "#letters"
    try:
        # a double click on "Generate draft" makes one draft, and the second click lands on it
        claimed = idempotency.claim(form.form_token.data, "letter.generate", current_user.id)
    except idempotency.AlreadySubmitted as duplicate:
        db.session.rollback()
        return idempotency.answer_duplicate(duplicate, back)
    note = None
    try:
        contact = service.choose_contact(engagement, form.contact_id.data)
        letter = service.generate(engagement, template, current_user._get_current_object(), contact)
        note = service.language_note(template, contact)
        db.session.flush()
        idempotency.record_result(claimed, url_for("letters.show", letter_id=letter.id))
        db.session.commit()
    except service.LetterError as error:
        db.session.rollback()
        flash(f"No letter generated: {error.message}", "error")
        return redirect(url_for("engagements.show", engagement_id=engagement_id, tab="letter") + "#letters")
    flash("Draft letter generated. Review it, then send it by email or mark it as sent once it has gone out.",
          "success")
    if note:
        flash(note, "info")
    return redirect(url_for("letters.show", letter_id=letter.id))


def _email_form(letter: Letter, formdata=None) -> EmailForm:
    choices = [(c.id, f"{c.name} <{c.email}> ({c.title or c.role_label})")
               for c in service.emailable_contacts(letter.engagement.company_id)]
    form = EmailForm(formdata=formdata, contacts=choices)
    if formdata is None and letter.contact_id in {c for c, _ in choices}:
        form.to.data = [letter.contact_id]
    return form


def _letter_page(letter: Letter, status: int = 200, draft_form=None, send_form=None, email_form=None):
    draft_form = draft_form or DraftForm(obj=letter, formdata=None)
    send_form = send_form or SendForm(formdata=None, sent_on=clock.today())
    email_form = email_form or _email_form(letter)
    emails = db.session.scalars(sa.select(OutboxEmail).where(OutboxEmail.letter_id == letter.id)
                                .order_by(OutboxEmail.id)).all()
    return render_template("letters/show.html", letter=letter, draft_form=draft_form, send_form=send_form,
                           email_form=email_form, emails=emails,
                           email_subject=service.email_subject(letter),
                           addressee_problem=service.addressee_problem(letter, "post"),
                           signatories=documents.signatory_lines(letter, strict=False),
                           total=documents.signatories_total(letter, strict=False),
                           paragraphs=documents.paragraphs(letter.body),
                           paper=documents.paper_label(letter)), status


def _refuse_sent(letter: Letter, consequence: str):
    """A sent letter is final: say so on its page (409) instead of changing it."""
    flash(f"This letter was already sent on {format_date(letter.sent_on)}; {consequence}.", "error")
    return _letter_page(letter, 409)


@bp.route("/<int:letter_id>")
@require_role("viewer")
def show(letter_id: int):
    return _letter_page(_letter(letter_id))


@bp.route("/<int:letter_id>/edit", methods=["POST"])
@require_role("analyst")
def edit(letter_id: int):
    letter = _letter(letter_id)
    form = DraftForm()
    if letter.is_sent:
        return _refuse_sent(letter, "a sent letter cannot be edited")
    if not form.validate_on_submit():
        return _letter_page(letter, 422, draft_form=form)
    try:
        service.update_draft(letter, form.subject.data, form.body.data)
        db.session.commit()
    except service.LetterError as error:
        status = refuse(form, error)
        return _letter_page(_letter(letter_id), status, draft_form=form)
    documents.forget(letter_id)  # the cached PDF and DOCX show the old text
    flash("Draft saved.", "success")
    return redirect(url_for("letters.show", letter_id=letter_id))


@bp.route("/<int:letter_id>/send", methods=["POST"])
@require_role("analyst")
def send(letter_id: int):
    letter = _letter(letter_id)
    form = SendForm()
    if letter.is_sent:
        return _refuse_sent(letter, "it cannot be sent again")
    if not form.validate_on_submit():
        return _letter_page(letter, 422, send_form=form)
    try:
        reminder = service.mark_sent(letter, sent_on=form.sent_on.data, channel=form.channel.data,
                                     actor_id=current_user.id, today=clock.today())
        db.session.commit()
    except service.AlreadySent:
        db.session.rollback()
        return _refuse_sent(_letter(letter_id), "it was not sent again (nothing was recorded twice)")
    except service.LetterError as error:
        status = refuse(form, error)
        return _letter_page(_letter(letter_id), status, send_form=form)
    flash(f"Letter marked as sent. A reply is due by {format_date(reminder.due_on)}.", "success")
    return redirect(url_for("engagements.show", engagement_id=letter.engagement_id) + "#timeline")


@bp.route("/<int:letter_id>/email", methods=["POST"])
@require_role("analyst")
def email(letter_id: int):
    """Send the letter by email (PDF attached) to chosen contacts; it counts as sent when queued."""
    letter = _letter(letter_id)
    form = _email_form(letter, formdata=request.form)
    if letter.is_sent:
        return _refuse_sent(letter, "it was not emailed again")
    if not form.validate_on_submit():
        return _letter_page(letter, 422, email_form=form)
    try:
        queued = service.email_letter(letter, form.to.data or [], form.cc.data or [],
                                      current_user._get_current_object(), clock.today())
        db.session.commit()
    except service.AlreadySent:
        db.session.rollback()
        return _refuse_sent(_letter(letter_id), "it was not emailed again (nothing was sent twice)")
    except service.LetterError as error:
        status = refuse(form, error)
        return _letter_page(_letter(letter_id), status, email_form=form)
    flash(f"Letter queued for {queued.recipient}{' (cc ' + queued.cc + ')' if queued.cc else ''} and recorded as "
          "sent; the outbox status shows below.", "success")
    return redirect(url_for("letters.show", letter_id=letter_id))


MIMETYPES = {"pdf": "application/pdf",
             "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}


def _download(letter_id: int, fmt: str):
    """The letter's PDF or DOCX (cached per version), or its page with the reason it cannot be made."""
    letter = _letter(letter_id)
    try:
        data = documents.document(letter, fmt)
    except documents.DocumentRefused as refusal:
        flash(f"No {fmt.upper()}: {refusal.message}", "error")
        return _letter_page(letter, 422)
    return Response(data, mimetype=MIMETYPES[fmt],
                    headers={"Content-Disposition": content_disposition(f"{documents.file_stem(letter)}.{fmt}")})


@bp.route("/<int:letter_id>.pdf")
@require_role("viewer")
def pdf(letter_id: int):
    return _download(letter_id, "pdf")


@bp.route("/<int:letter_id>.docx")
@require_role("viewer")
def docx(letter_id: int):
    return _download(letter_id, "docx")


@bp.route("/bulk", methods=["POST"])
@require_role("analyst")
def bulk():
    """Generate one template for the selected engagements, or for all that match the list's filters."""
    form = BulkForm(templates=service.template_choices())
    # The list's filters come back as the list's own GET form fields, checked by the same form.
    filters = engagement_filters(request.form)
    back = url_for("engagements.index", **{k: v for k, v in filters.items() if v and k not in ("sort", "dir")})
    if not form.validate_on_submit():
        flash("Choose a template and which engagements to write to.", "error")
        return redirect(back)
    if form.scope.data == "all":
        ids = [row[0] for row in db.session.execute(
            engagement_query(filters, clock.today()).with_only_columns(Engagement.id).limit(service.MAX_BULK + 1))]
    else:
        raw = request.form.getlist("engagement_ids")
        ids = [whole_number(v) for v in raw]
        if None in ids:
            abort(400, "engagement_ids must be engagement numbers.")
    engagements = db.session.scalars(
        sa.select(Engagement).where(Engagement.id.in_(ids))
        .options(selectinload(Engagement.company), selectinload(Engagement.campaign),
                 selectinload(Engagement.owner))
    ).all() if ids else []
    if len(engagements) != len(set(ids)):
        abort(400, "Some of the selected engagements do not exist.")
    template = db.get_or_404(LetterTemplate, form.template_id.data)
    token = form.token.data or None
    earlier = service.batch_for_token(token)
    if earlier is not None:
        return _already_generated(earlier)
    try:
        batch = service.generate_many(list(engagements), template, current_user._get_current_object(), token=token)
        db.session.commit()
    except service.LetterError as error:
        db.session.rollback()
        flash(f"No letters generated: {error.message}", "error")
        return redirect(back)
    except IntegrityError:
        db.session.rollback()
        earlier = service.batch_for_token(token)  # the same form, submitted twice at once: the other won
        if earlier is None:
            raise
        return _already_generated(earlier)
    flash(f"{len(engagements)} draft letters generated.", "success")
    return redirect(url_for("letters.batch", batch_id=batch.id))


def _already_generated(batch: LetterBatch):
    flash(f"These letters were already generated by the same form (batch #{batch.id}); nothing was generated twice.",
          "info")
    return redirect(url_for("letters.batch", batch_id=batch.id))


def _batch(batch_id: int, for_sending: bool = False) -> LetterBatch:
    """The batch with its letters and their companies (for sending: the engagements' campaigns and reminders too)."""
    try:
        return jobs.load_batch(batch_id, for_sending)
    except background.Refused:
        abort(404)


def _ready(item: LetterBatch) -> int:
    return sum(1 for letter in item.letters if all(documents.is_cached(letter, fmt) for fmt in documents.FORMATS))


def _by_job(item: LetterBatch) -> bool:
    """A batch this big is prepared and emailed by a background job (when rendered documents can be kept)."""
    return len(item.letters) >= current_app.config["LETTERS_JOB_LETTERS"] and documents.cache_usable()


def _batch_page(item: LetterBatch, sent_form: BatchSentForm | None = None, status: int = 200):
    if sent_form is None:
        sent_form = BatchSentForm(formdata=None, sent_on=clock.today())
    by_job = _by_job(item)
    context = {"by_job": by_job}
    if by_job:  # the ZIP made by the job for the letters as they are now, or the job making it
        digest = jobs.batch_digest(list(item.letters))
        drafts = [letter for letter in item.letters if not letter.is_sent]
        context.update(zip_ready=jobs.zip_path(item.id, digest).is_file(),
                       prepare_job=background.find(jobs.prepare_key(item.id, digest, current_user.id)),
                       email_job=background.find(jobs.email_key(item.id, drafts, current_user.id)) if drafts else None,
                       prepare_form=ActionForm(formdata=None))
    return render_template("letters/batch.html", batch=item, ready=0 if by_job else _ready(item),
                           email_form=BatchEmailForm(), sent_form=sent_form, **context), status


@bp.route("/batches/<int:batch_id>")
@require_role("viewer")
def batch(batch_id: int):
    return _batch_page(_batch(batch_id))


@bp.route("/batches/<int:batch_id>/sent", methods=["POST"])
@require_role("analyst")
def mark_batch_sent(batch_id: int):
    """Mark every unsent letter of the batch as sent (one date, one channel): all of them, or none with the reasons."""
    item = _batch(batch_id, for_sending=True)
    form = BatchSentForm()
    back = url_for("letters.batch", batch_id=batch_id)
    if not form.validate_on_submit():
        return _batch_page(item, form, 422)
    try:
        claimed = idempotency.claim(form.form_token.data, "letters.mark_batch_sent", current_user.id)
    except idempotency.AlreadySubmitted as duplicate:
        db.session.rollback()
        return idempotency.answer_duplicate(duplicate, back)
    try:
        marked, already = service.mark_batch_sent(list(item.letters), sent_on=form.sent_on.data,
                                                  channel=form.channel.data, actor_id=current_user.id,
                                                  today=clock.today())
        idempotency.record_result(claimed, back)
        db.session.commit()
    except service.LetterError as error:
        status = refuse(form, error)
        return _batch_page(_batch(batch_id), form, status)
    if marked:
        message = (f"{len(marked)} letter{'' if len(marked) == 1 else 's'} marked as sent on "
                   f"{format_date(form.sent_on.data)} by {form.channel.data}; a reply reminder was set for each.")
    else:
        message = "Nothing to mark: every letter of the batch was already sent."
    if marked and already:
        message += (f" {already} letter{'' if already == 1 else 's'} already sent before "
                    f"{'was left as it was' if already == 1 else 'were left as they were'}.")
    flash(message, "success" if marked else "info")
    return redirect(back, code=303)


@bp.route("/batches/<int:batch_id>/email", methods=["POST"])
@require_role("analyst")
def email_batch(batch_id: int):
    """Email every draft of the batch to its company's contact, all queued in one transaction."""
    item = _batch(batch_id)
    form = BatchEmailForm()
    back = url_for("letters.batch", batch_id=batch_id)
    if not form.validate_on_submit():
        flash("The form is damaged; reload the page.", "error")
        return redirect(back)
    try:
        claimed = idempotency.claim(form.form_token.data, "letters.email_batch", current_user.id)
    except idempotency.AlreadySubmitted as duplicate:
        db.session.rollback()
        return idempotency.answer_duplicate(duplicate, back)
    drafts = [letter for letter in item.letters if not letter.is_sent]
    if drafts and _by_job(item):
        # rendering a PDF per draft takes longer than a page: the job worker does it, then queues
        # the emails in one transaction; a second tab emailing the same drafts finds the same job
        job = background.submit(jobs.EMAIL, key=jobs.email_key(batch_id, drafts, current_user.id),
                                label=f"Email {len(drafts)} letters of batch #{batch_id}",
                                params={"batch_id": batch_id}, user_id=current_user.id)
        idempotency.record_result(claimed, url_for("background.show", job_id=job.id))
        db.session.commit()
        return redirect(url_for("background.show", job_id=job.id), code=303)
    try:
        queued, skipped, already = service.email_many(list(item.letters), current_user._get_current_object(),
                                                      clock.today())
        idempotency.record_result(claimed, back)
        db.session.commit()
    except service.LetterError as error:
        db.session.rollback()
        flash(f"No letters emailed: {error.message}", "error")
        return redirect(back)
    flash(jobs.email_summary(queued, skipped, already), "success" if queued else "info")
    return redirect(back)


@bp.route("/batches/<int:batch_id>/prepare-job", methods=["POST"])
@require_role("viewer", write="viewer")
def prepare_batch_job(batch_id: int):
    """A big batch: the job worker renders every letter (PDF and DOCX) and the ZIP; its page shows the
    progress, then links to the ZIP. A double click or a second tab finds the same job."""
    item = _batch(batch_id)
    if not ActionForm().validate_on_submit():
        flash("The form expired; reload the page.", "error")
        return redirect(url_for("letters.batch", batch_id=batch_id))
    digest = jobs.batch_digest(list(item.letters))
    key = jobs.prepare_key(batch_id, digest, current_user.id)
    if not jobs.zip_path(batch_id, digest).is_file():  # a done job whose ZIP was deleted since (cache clean-up): anew
        while (done := background.find(key)) is not None and done.status == "done":
            key = f"{jobs.prepare_key(batch_id, digest, current_user.id)}:after-{done.id}"
    job = background.submit(jobs.PREPARE, key=key,
                            label=f"Prepare the {len(item.letters)} letters of batch #{batch_id} (PDF, DOCX, ZIP)",
                            params={"batch_id": batch_id}, user_id=current_user.id)
    return redirect(url_for("background.show", job_id=job.id), code=303)


@bp.route("/batches/<int:batch_id>/prepare", methods=["POST"])
@require_role("viewer", write="viewer")
def prepare_batch(batch_id: int):
    """Render the next few letters of the batch (PDF and DOCX); the page calls this until done, showing progress."""
    item = _batch(batch_id)
    if not documents.cache_usable():  # nothing prepared can be kept: the ZIP renders every letter itself
        total = len(item.letters)
        return jsonify({"done": total, "total": total, "busy": False, "refused": [],
                        "zip": url_for("letters.batch_zip", batch_id=batch_id)})
    refused = []
    with documents.lock(f"batch-{batch_id}", wait=False) as mine:
        if mine:  # else another request is preparing this batch: report progress, render nothing
            _, refused, _ = documents.render_missing(
                [(letter, fmt) for letter in item.letters for fmt in documents.FORMATS],
                float(current_app.config["DOCUMENT_RENDER_SECONDS"]), limit=PREPARE_CHUNK * len(documents.FORMATS))
    done = _ready(item)
    return jsonify({"done": done, "total": len(item.letters), "busy": not mine,
                    "refused": [{"letter": r.letter.id, "company": r.letter.engagement.company.name,
                                 "format": r.fmt, "message": r.message} for r in refused],
                    "zip": url_for("letters.batch_zip", batch_id=batch_id) if done == len(item.letters) else None})


@bp.route("/batches/<int:batch_id>.zip")
@require_role("viewer")
def batch_zip(batch_id: int):
    item = _batch(batch_id)
    if _by_job(item):
        prepared = jobs.zip_path(batch_id, jobs.batch_digest(list(item.letters)))
        if prepared.is_file():  # made by the job for the letters as they are now
            return send_file(prepared, mimetype="application/zip", as_attachment=True,
                             download_name=f"letters-batch-{batch_id}.zip", max_age=0)
        # rendering it here would take longer than a page (and wait for a job holding the batch)
        flash("This batch's ZIP is made by a background job: press “Prepare the ZIP”, or wait for the job "
              "already preparing it, then download it.", "info")
        return redirect(url_for("letters.batch", batch_id=batch_id), code=303)
    try:
        with documents.lock(f"batch-{batch_id}"):  # after a preparing request, which leaves less to render
            data = documents.batch_zip(item.letters)
    except documents.DocumentRefused as refusal:
        flash(f"No ZIP: {refusal.message}", "error")
        return _batch_page(item, status=422)
    return Response(data, mimetype="application/zip",
                    headers={"Content-Disposition": content_disposition(f"letters-batch-{batch_id}.zip")})


# --- the template editor (admin) ---------------------------------------------------------

def _preview_choices():
    engagements = db.session.scalars(
        sa.select(Engagement).where(Engagement.is_open)
        .options(selectinload(Engagement.company)).order_by(Engagement.id.desc()).limit(50)
    ).all()
    return [("", "Sample data (dated today)")] + [(e.id, e.company.name) for e in engagements]


@bp.route("/templates")
@require_role("admin")
def templates():
    items = db.session.scalars(sa.select(LetterTemplate).order_by(LetterTemplate.active.desc(), LetterTemplate.name))
    return render_template("letters/templates.html", templates=items.all())


@bp.route("/templates/new", methods=["GET", "POST"])
@bp.route("/templates/<int:template_id>", methods=["GET", "POST"])
@require_role("admin")
def edit_template(template_id: int | None = None):
    template = db.get_or_404(LetterTemplate, template_id) if template_id else None
    form = TemplateForm(obj=template, previews=_preview_choices())
    if form.validate_on_submit():
        target = template or LetterTemplate(slug=_new_slug(form.name.data))
        try:
            changed = service.save_template(target, name=form.name.data, kind=form.kind.data,
                                            subject=form.subject.data, body=form.body.data,
                                            active=form.active.data, actor_id=current_user.id)
            if template is None:
                db.session.add(target)
            db.session.commit()
        except service.LetterError as error:
            refuse(form, error)
        else:
            flash(f"Saved as version {target.version}." if changed else "Saved (the text is unchanged).", "success")
            return redirect(url_for("letters.edit_template", template_id=target.id))
    versions = template.versions if template else []
    return render_template("letters/template_form.html", form=form, template=template, versions=versions,
                           language_labels=dict(LANGUAGES)), \
        422 if form.errors else 200


@bp.route("/templates/<int:template_id>/languages/new", methods=["GET", "POST"])
@bp.route("/templates/<int:template_id>/languages/<language>", methods=["GET", "POST"])
@require_role("admin")
def edit_language(template_id: int, language: str | None = None):
    """The template in another language (e.g. zh-Hans), used for contacts who read it."""
    template = db.get_or_404(LetterTemplate, template_id)
    version = next((v for v in template.languages if v.language == language), None) if language else None
    if language and version is None:
        abort(404)
    form = LanguageForm(obj=version)
    if version is not None and request.method == "GET":
        form.language.data = version.language
    if form.validate_on_submit():
        try:
            service.save_language_version(template, form.language.data, subject=form.subject.data,
                                          body=form.body.data, actor_id=current_user.id)
            db.session.commit()
        except service.LetterError as error:
            refuse(form, error)
        else:
            flash(f"{dict(LANGUAGES)[form.language.data]} version of {template.name} saved.", "success")
            return redirect(url_for("letters.edit_template", template_id=template.id))
    return render_template("letters/language_form.html", form=form, template=template, version=version), \
        422 if form.errors else 200


def _new_slug(name: str) -> str:
    base = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")[:40] or "template"
    slug, n = base, 1
    while db.session.scalar(sa.select(LetterTemplate.id).where(LetterTemplate.slug == slug)):
        n += 1
        slug = f"{base}-{n}"
    return slug


@bp.route("/templates/preview", methods=["POST"])
@require_role("admin")
def preview_template():
    """Live preview for the editor: JSON with the rendered subject and body, or the error and line."""
    form = TemplateForm(previews=[])  # neither validated nor drawn: only its subject and body are read
    engagement = None
    chosen = whole_number(request.form.get("preview_engagement"))
    if chosen is not None:
        engagement = db.session.get(Engagement, chosen)
    return jsonify(service.preview(form.subject.data or "", form.body.data or "", engagement,
                                   current_user._get_current_object()))


@bp.route("/templates/<int:template_id>/versions/<int:version>")
@require_role("admin")
def template_version(template_id: int, version: int):
    item = db.session.scalar(sa.select(LetterTemplateVersion).where(
        LetterTemplateVersion.template_id == template_id, LetterTemplateVersion.version == version))
    if item is None:
        abort(404)
    return render_template("letters/template_version.html", version=item, template=item.template)
