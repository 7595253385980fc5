"""The visit pages: record a visit with the protocol's forms, read it, correct it, sign it.

Each page loads its form with the JSON API's schema (``read_form``) and calls the service the
API view calls, so a page and ``POST /api/v1/participants/{id}/visits`` (and the visit's
PATCH, entered-in-error and sign endpoints) refuse, save and audit alike. Input names are the
API body's keys (``drinking.3.standard_drinks``, ``ocds.item_3``, ``labs.1.value``), so each
error lands beside its input.
"""

from __future__ import annotations

from datetime import date

from flask import abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.errors import Conflict, RecordedRefusal, TrialError, ValidationFailed
from trial.extensions import db
from trial.participants.services import get_visible_participant, site_today
from trial.queries.models import DataQuery
from trial.records.registry import get_visible_record, records_of
from trial.records.schemas import ReasonSchema
from trial.records.versions import PreconditionFailed
from trial.records.views import READERS, SITE_STAFF, requested_version
from trial.verification.schemas import VerificationSchema
from trial.verification.services import marks_of
from trial.visits import services
from trial.visits.checks import calendar_period
from trial.visits.models import SIGNATURE_MEANING, Visit
from trial.visits.page_forms import (
    VISIT_LABELS,
    calendar_rows,
    compact,
    day_text,
    in_page_order,
    lab_defaults,
    labels_of,
    posted_rows,
    shown_errors,
    wording,
)
from trial.visits.schedule import build_schedule
from trial.visits.schemas import SignSchema, VisitCreateSchema, VisitPatchSchema, VisitSchema
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form
from trial.worklist.services import build_worklist

bp = PageBlueprint("visits_pages", __name__)

PAGE_SIZE = 50


def _schedule(participant) -> list:
    return build_schedule(participant, records_of(Visit, participant))


@bp.route("/participants/<participant_id>/visits/new", methods=["GET", "POST"])
@allow(*SITE_STAFF)
def new_visit(participant_id):
    """Record a visit with exactly the forms the protocol names for it."""
    participant = get_visible_participant(g.current_user, participant_id)
    schedule = _schedule(participant)
    code = request.form.get("visit_code") or request.args.get("visit_code")
    if not code:
        choices = [s for s in schedule if s.visit_id is None and s.status != "not_expected"]
        return render_template(
            "visits/choose.html",
            title=f"Record a visit for {participant.participant_id}",
            participant=participant,
            choices=choices,
        )
    item = next((s for s in schedule if s.code == code), None)
    if item is None:
        abort(404)
    if item.visit_id is not None:
        flash(f"{item.label} is already recorded: correct it here.", "info")
        return redirect(url_for("visits_pages.visit", visit_id=item.visit_id))
    errors: dict = {}
    status = 200
    rows = calendar_rows(item.calendar_from, item.calendar_to)
    form = MultiDict({"visit_code": code, "status": "completed", **lab_defaults()})
    on = _likely_date(participant, item)
    if on is not None:
        form["visit_date"] = on.isoformat()
        if on != item.target_date and "drinking" in item.forms:
            rows = calendar_rows(*calendar_period(participant, item.code, on))
    if request.method == "POST":
        form = request.form
        rows = posted_rows(form)
        if form.get("action") == "calendar":
            rows, form, errors = _rows_for_typed_date(participant, item, form, rows)
            status = 422 if errors else 200
        else:
            saved = _record(participant, form)
            if isinstance(saved, int):
                return redirect(url_for("visits_pages.visit", visit_id=saved))
            errors, status = saved
    labels = labels_of([(i, shown) for i, _, shown in rows])
    return render_template(
        "visits/new.html",
        title=f"{item.label} for {participant.participant_id}",
        participant=participant,
        item=item,
        rows=rows,
        form=form,
        errors=in_page_order(errors, labels),
        labels=labels,
        **wording(),
    ), status


def _likely_date(participant, item) -> date | None:
    """The date a visit is most likely entered for: its target date, or today when that is
    still to come (a visit is never dated in the future); None before day 0 is known."""
    today = site_today(participant.site)
    if item.target_date is None:
        return today if item.day < 0 else None
    return min(item.target_date, today)


def _rows_for_typed_date(participant, item, form, rows):
    """The calendar days the visit covers if done on the typed date, drinks kept by day."""
    try:
        typed = date.fromisoformat((form.get("visit_date") or "").strip())
    except ValueError:
        return rows, form, {"visit_date": ["Enter the date as year-month-day, e.g. 2026-11-02."]}
    if "drinking" not in item.forms:
        return rows, form, {}
    typed_drinks = {text: form.get(f"drinking.{i}.standard_drinks", "") for i, text, _ in rows}
    first, last = calendar_period(participant, item.code, typed)
    new_rows = calendar_rows(first, last)
    form = form.copy()
    for key in [k for k in form if k.startswith("drinking.")]:
        del form[key]
    for i, text, _ in new_rows:
        form[f"drinking.{i}.standard_drinks"] = typed_drinks.get(text, "")
    return new_rows, form, {}


def _record(participant, form):
    """Record the visit as the API's view does; the new visit's id, or (errors, status)."""
    body_form, back = compact(form)
    try:
        body = read_form(VisitCreateSchema(), body_form, participant_id=participant.participant_id)
        locked = get_visible_participant(g.current_user, participant.participant_id, lock=True)
        visit = services.record_visit(g.current_user, locked, body)
        unusual = len(visit.warnings or [])
        visit_id = visit.id
        db.session.commit()
    except (ValidationFailed, Conflict) as refused:
        db.session.rollback()
        return shown_errors(form_errors(refused), back), refused.status
    flash("The visit is saved.", "success")
    _flash_unusual(unusual)
    return visit_id


def _flash_unusual(count: int) -> None:
    if count:
        flash(
            f"{count} value{'s' if count > 1 else ''} saved but unusual: see the warnings "
            "beside them below (each is a data query for the site to answer).",
            "warning",
        )


def _open_queries(participant) -> dict[tuple[str, str], list[DataQuery]]:
    """The participant's unsettled data queries, by (entity, record id): shown beside the
    values they ask about. An edit check's warning is kept as such a query (``trial.forms.
    edit_checks``), so the visit page shows it beside its field until a monitor settles it."""
    found: dict[tuple[str, str], list[DataQuery]] = {}
    statement = select(DataQuery).where(
        DataQuery.participant_id == participant.id, DataQuery.status != "closed"
    )
    for query in db.session.scalars(statement).unique():
        found.setdefault((query.entity, query.record_id), []).append(query)
    return found


@bp.route("/visits/<int:visit_id>", methods=["GET"])
@allow(*READERS)
def visit(visit_id):
    """One visit with every form's values, its signature and the unusual values."""
    record, participant = get_visible_record(g.current_user, "visit", visit_id)
    return _visit_page(record, participant)


def _visit_page(record, participant, *, errors=None, status=200):
    definition_label = next(
        (s.label for s in _schedule(participant) if s.code == record.visit_code),
        record.visit_code,
    )
    return render_template(
        "visits/visit.html",
        title=f"{definition_label} for {participant.participant_id}",
        visit_label=definition_label,
        participant=participant,
        visit=VisitSchema().dump(record),
        queries=_open_queries(participant),
        verifications=VerificationSchema(many=True).dump(marks_of(g.current_user, record.id)),
        errors=errors or {},
        meaning=SIGNATURE_MEANING,
        day_text=lambda iso: day_text(date.fromisoformat(iso)),
        **wording(),
    ), status


@bp.route("/visits/<int:visit_id>/correct", methods=["GET", "POST"])
@allow(*SITE_STAFF)
def correct_visit(visit_id):
    """Correct a visit's date, status or reasons, with a reason (as PATCH /visits/{id})."""
    record, participant = get_visible_record(g.current_user, "visit", visit_id)
    errors: dict = {}
    status = 200
    form = request.form if request.method == "POST" else MultiDict(_visit_values(record))
    if request.method == "POST":
        try:
            body = read_form(VisitPatchSchema(), request.form, clear=True, visit_id=visit_id)
            expected = requested_version(body)
            reason = body.pop("reason")
            corrected = services.correct_visit(
                g.current_user, visit_id, body, reason, expected_version=expected
            )
            unusual = len(corrected.warnings or [])
            db.session.commit()
            flash("The visit is corrected; its signature, if any, is void.", "success")
            _flash_unusual(unusual)
            return redirect(url_for("visits_pages.visit", visit_id=visit_id))
        except PreconditionFailed as stale:
            db.session.rollback()
            record = get_visible_record(g.current_user, "visit", visit_id)[0]
            form = MultiDict({**_visit_values(record), "reason": request.form.get("reason", "")})
            errors, status = form_errors(stale), 412
        except TrialError as refused:
            db.session.rollback()
            errors, status = form_errors(refused), refused.status
    return render_template(
        "visits/correct.html",
        title=f"Correct visit {visit_id}",
        participant=participant,
        record=record,
        form=form,
        errors=errors,
        labels=VISIT_LABELS,
    ), status


def _visit_values(record: Visit) -> dict:
    return {
        "visit_date": record.visit_date.isoformat() if record.visit_date else "",
        "status": record.status,
        "missed_reason": record.missed_reason or "",
        "out_of_window_reason": record.out_of_window_reason or "",
        "version": str(record.version),
    }


@bp.route("/visits/<int:visit_id>/entered-in-error", methods=["GET", "POST"])
@allow(*SITE_STAFF)
def visit_in_error(visit_id):
    """Mark a visit and its forms entered in error, with a reason (kept, out of outputs)."""
    record, participant = get_visible_record(g.current_user, "visit", visit_id)
    errors: dict = {}
    status = 200
    form = request.form if request.method == "POST" else MultiDict({"version": record.version})
    if request.method == "POST":
        try:
            body = read_form(ReasonSchema(), request.form)
            expected = requested_version(body)
            services.mark_visit_in_error(
                g.current_user, visit_id, body["reason"], expected_version=expected
            )
            db.session.commit()
            flash("The visit and its forms are marked as entered in error.", "success")
            return redirect(
                url_for("participants_pages.participant", participant_id=participant.participant_id)
            )
        except TrialError as refused:
            db.session.rollback()
            errors, status = form_errors(refused), refused.status
            if isinstance(refused, PreconditionFailed):  # shown again at its version now
                record = get_visible_record(g.current_user, "visit", visit_id)[0]
                form = MultiDict({"version": record.version, "reason": form.get("reason", "")})
    return render_template(
        "visits/in_error.html",
        title=f"Mark visit {visit_id} entered in error",
        participant=participant,
        record=record,
        form=form,
        errors=errors,
        labels=VISIT_LABELS,
    ), status


@bp.route("/signatures", methods=["GET"])
@allow(Role.INVESTIGATOR)
def awaiting_signature():
    """Your sites' completed visits awaiting your signature, oldest first, 50 to a page."""
    rows = build_worklist(g.current_user)["awaiting_signature"]
    rows.sort(key=lambda r: (r["visit_date"], r["participant_id"], r["visit_id"]))
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(max(1, request.args.get("page", 1, type=int) or 1), pages)
    return render_template(
        "visits/signatures.html",
        title="Visits awaiting your signature",
        rows=rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
        total=len(rows),
        page=page,
        pages=pages,
        meaning=SIGNATURE_MEANING,
    )


@bp.route("/visits/<int:visit_id>/sign", methods=["POST"])
@allow(Role.INVESTIGATOR)
def sign(visit_id):
    """Sign a visit with your password (a wrong password is refused and kept on record)."""
    record, participant = get_visible_record(g.current_user, "visit", visit_id)
    try:
        body = read_form(SignSchema(), request.form)
        services.sign_visit(g.current_user, visit_id, body["password"])
        db.session.commit()
    except RecordedRefusal as refused:
        db.session.commit()  # the refused attempt stays on record
        return _visit_page(record, participant, errors=form_errors(refused), status=403)
    except TrialError as refused:
        db.session.rollback()
        return _visit_page(record, participant, errors=form_errors(refused), status=refused.status)
    flash(f"Visit {visit_id} is signed: {SIGNATURE_MEANING}.", "success")
    return redirect(url_for("visits_pages.visit", visit_id=visit_id))
