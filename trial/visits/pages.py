"""The visit pages: record a visit with the protocol's forms, read it, correct it, sign it.

Each page loads its form with the JSON API's schema (``read_form``) and calls the service the
API view calls, so a page and ``POST /api/v1/participants/{id}/visits`` (and the visit's
PATCH, entered-in-error and sign endpoints) refuse, save and audit alike. Input names are the
API body's keys (``drinking.3.standard_drinks``, ``ocds.item_3``, ``labs.1.value``), so each
error lands beside its input.
"""

from __future__ import annotations

from datetime import date, timedelta

from flask import abort, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from trial.auth.policy import allow
from trial.auth.roles import Role
from trial.errors import Conflict, RecordedRefusal, TrialError, ValidationFailed
from trial.extensions import db
from trial.forms.edit_checks.schemas import EditCheckWarningSchema
from trial.forms.models import CIWA_ITEMS, LAB_UNITS, OCDS_ITEM_MAX, OCDS_ITEMS, VITALS_RANGES
from trial.participants.services import get_visible_participant, site_today
from trial.queries.models import DataQuery
from trial.records.schemas import ReasonSchema
from trial.records.services import PreconditionFailed, get_visible_record, records_of
from trial.records.views import READERS, SITE_STAFF, requested_version
from trial.visits import services
from trial.visits.checks import calendar_period
from trial.visits.models import SIGNATURE_MEANING, Visit
from trial.visits.schedule import build_schedule
from trial.visits.schemas import SignSchema, VisitCreateSchema, VisitPatchSchema, VisitSchema
from trial.web.blueprint import PageBlueprint
from trial.web.forms import read_form
from trial.worklist.services import build_worklist

bp = PageBlueprint("visits_pages", __name__)

PAGE_SIZE = 50
FORM_NAMES = {
    "drinking": "Drinking calendar (Timeline Followback)",
    "ocds": "Craving (OCDS)",
    "ciwa": "Withdrawal (CIWA-Ar)",
    "vitals": "Vital signs",
    "labs": "Laboratory tests",
}
# The OCDS items in brief (Anton et al., 1995); the paper form holds the full wording.
OCDS_WORDING = dict(
    zip(
        OCDS_ITEMS,
        (
            "Time taken up by thoughts, ideas, impulses or images about drinking, when not "
            "drinking",
            "How often these thoughts occur",
            "How much these thoughts interfere with social or work life",
            "How much distress these thoughts cause",
            "Effort made to resist these thoughts or turn attention away from them",
            "How successful in stopping or diverting these thoughts",
            "Drinks each day",
            "Days each week with drinking",
            "How much drinking interferes with work",
            "How much drinking interferes with social life",
            "How anxious or upset if kept from drinking when wanting a drink",
            "Effort made to resist drinking",
            "Strength of the drive to drink",
            "Control over drinking",
        ),
        strict=True,
    )
)
CIWA_WORDING = {
    "nausea_vomiting": "Nausea and vomiting",
    "tremor": "Tremor",
    "paroxysmal_sweats": "Paroxysmal sweats",
    "anxiety": "Anxiety",
    "agitation": "Agitation",
    "tactile_disturbances": "Tactile disturbances",
    "auditory_disturbances": "Auditory disturbances",
    "visual_disturbances": "Visual disturbances",
    "headache": "Headache, fullness in head",
    "orientation": "Orientation and clouding of sensorium",
}
VITALS_WORDING = {
    "systolic_bp": ("Systolic blood pressure", "mmHg"),
    "diastolic_bp": ("Diastolic blood pressure", "mmHg"),
    "heart_rate": ("Heart rate", "beats per minute"),
    "weight_kg": ("Weight", "kg"),
}
LAB_WORDING = {
    "GGT": "Gamma-glutamyl transferase (GGT)",
    "ALT": "Alanine aminotransferase (ALT)",
    "AST": "Aspartate aminotransferase (AST)",
    "bilirubin": "Total bilirubin",
    "CDT": "Carbohydrate-deficient transferrin (%CDT)",
}
LAB_INPUTS = (
    ("test", "test"),
    ("value", "result"),
    ("unit", "unit"),
    ("upper_limit_normal", "upper limit of normal"),
)
VISIT_LABELS = {
    "visit_code": "Visit",
    "visit_date": "Visit date",
    "status": "Visit status",
    "missed_reason": "Reason the visit was missed",
    "out_of_window_reason": "Reason the visit is outside its window",
    "reason": "Reason for the change",
    "password": "Password",
    "version": "Version",
}


def day_text(day: date) -> str:
    """A date as people read it: Mon 2 Nov 2026."""
    return f"{day:%a} {day.day} {day:%b %Y}"


def _schedule(participant) -> list:
    return build_schedule(participant, records_of(Visit, participant))


def _labels(rows: list[tuple[int, str]]) -> dict[str, str]:
    """Each input's label in page order, for the error summary (``rows``: the calendar's
    index and date as read)."""
    labels = {**VISIT_LABELS, "drinking": FORM_NAMES["drinking"]}
    for index, shown in rows:
        labels[f"drinking.{index}.date"] = f"Calendar day {shown}"
        labels[f"drinking.{index}.standard_drinks"] = f"Standard drinks on {shown}"
    labels["ocds"] = FORM_NAMES["ocds"]
    labels.update({f"ocds.{k}": f"OCDS item {k[5:]}: {v}" for k, v in OCDS_WORDING.items()})
    labels["ciwa"] = FORM_NAMES["ciwa"]
    labels.update({f"ciwa.{k}": f"CIWA-Ar: {v}" for k, v in CIWA_WORDING.items()})
    labels["vitals"] = FORM_NAMES["vitals"]
    labels.update({f"vitals.{k}": f"{v[0]} ({v[1]})" for k, v in VITALS_WORDING.items()})
    labels["labs"] = FORM_NAMES["labs"]
    for index, test in enumerate(LAB_UNITS):
        for key, text in LAB_INPUTS:
            labels[f"labs.{index}.{key}"] = f"{test} {text}"
    return labels


def _calendar_rows(first: date | None, last: date | None) -> list[tuple[int, str, str]]:
    """(index, ISO date, date as read) for each day from first to last."""
    if first is None or last is None:
        return []
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [(i, d.isoformat(), day_text(d)) for i, d in enumerate(days)]


def _posted_rows(form: MultiDict) -> list[tuple[int, str, str]]:
    """The calendar rows a form posted, as they were shown (their dates in hidden inputs)."""
    rows = []
    for key in form:
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "drinking" and parts[2] == "date":
            if parts[1].isdigit():
                text = form.get(key, "")
                try:
                    shown = day_text(date.fromisoformat(text))
                except ValueError:
                    shown = text
                rows.append((int(parts[1]), text, shown))
    return sorted(rows)


def _compact(form: MultiDict) -> tuple[MultiDict, dict[str, dict[int, int]]]:
    """The form as the API body's lists: a calendar day with no drinks typed, and a test with
    neither result nor limit typed, are not sent; rows are renumbered in order, and the map
    turns each sent index back into the row shown (so an error lands on its input)."""
    keep = {"drinking": ("standard_drinks",), "labs": ("value", "upper_limit_normal")}
    rows: dict[str, dict[int, dict[str, list[str]]]] = {name: {} for name in keep}
    out = MultiDict()
    for key, values in form.lists():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] in keep and parts[1].isdigit():
            rows[parts[0]].setdefault(int(parts[1]), {})[parts[2]] = values
        else:
            for value in values:
                out.add(key, value)
    back: dict[str, dict[int, int]] = {}
    for name, found in rows.items():
        back[name] = {}
        for shown in sorted(found):
            fields = found[shown]
            if not any(v.strip() for k in keep[name] for v in fields.get(k, [])):
                continue
            sent = len(back[name])
            back[name][sent] = shown
            for field, values in fields.items():
                for value in values:
                    out.add(f"{name}.{sent}.{field}", value)
    return out, back


def _shown_errors(errors: dict, back: dict[str, dict[int, int]]) -> dict:
    """Errors named by the sent body's indexes, renamed to the inputs shown."""
    shown = {}
    for key, messages in errors.items():
        parts = key.split(".")
        if len(parts) >= 2 and parts[0] in back and parts[1].isdigit():
            parts[1] = str(back[parts[0]].get(int(parts[1]), parts[1]))
        shown.setdefault(".".join(parts), []).extend(messages)
    return shown


def _refusal_errors(exc: TrialError) -> dict:
    """A refusal's field errors, with its message first when no field carries it."""
    return {"_schema": [exc.message], **(exc.errors or {})}


def _lab_defaults() -> dict:
    defaults = {}
    for index, (test, units) in enumerate(LAB_UNITS.items()):
        defaults[f"labs.{index}.test"] = test
        if len(units) == 1:
            defaults[f"labs.{index}.unit"] = units[0]
    return defaults


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
    rows = _calendar_rows(item.calendar_from, item.calendar_to)
    form = MultiDict({"visit_code": code, "status": "completed", **_lab_defaults()})
    on = _likely_date(participant, item)
    if on is not None:
        form["visit_date"] = on.isoformat()
        if on != item.target_date and "drinking" in item.forms:
            rows = _calendar_rows(*calendar_period(participant, item.code, on))
    if request.method == "POST":
        form = request.form
        rows = _posted_rows(form)
        if form.get("action") == "calendar":
            rows, form, errors = _rows_for_typed_date(participant, item, form, rows)
            status = 422 if errors else 200
        else:
            saved = _record(participant, form)
            if isinstance(saved, int):
                return redirect(url_for("visits_pages.visit", visit_id=saved))
            errors, status = saved
    labels = _labels([(i, shown) for i, _, shown in rows])
    return render_template(
        "visits/new.html",
        title=f"{item.label} for {participant.participant_id}",
        participant=participant,
        item=item,
        rows=rows,
        form=form,
        errors=_in_page_order(errors, labels),
        labels=labels,
        **_wording(),
    ), status


def _likely_date(participant, item) -> date | None:
    """The date a visit is most likely entered for: its target date, or today when that is
    still to come (a visit is never dated in the future); None before day 0 is known."""
    today = site_today(participant.site)
    if item.target_date is None:
        return today if item.day < 0 else None
    return min(item.target_date, today)


def _in_page_order(errors: dict, labels: dict) -> dict:
    """The errors in the order of their inputs on the page (a refusal's message first)."""
    order = {name: n for n, name in enumerate(["_schema", *labels])}
    return dict(sorted(errors.items(), key=lambda kv: order.get(kv[0], len(order))))


def _wording() -> dict:
    return {
        "form_names": FORM_NAMES,
        "ocds_wording": OCDS_WORDING,
        "ocds_max": OCDS_ITEM_MAX,
        "ciwa_wording": CIWA_WORDING,
        "ciwa_max": CIWA_ITEMS,
        "vitals_wording": VITALS_WORDING,
        "vitals_ranges": VITALS_RANGES,
        "lab_wording": LAB_WORDING,
        "lab_units": LAB_UNITS,
        "lab_unit_options": {t: [(u, u) for u in units] for t, units in LAB_UNITS.items()},
    }


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
    new_rows = _calendar_rows(first, last)
    form = form.copy()
    for key in [k for k in form if k.startswith("drinking.")]:
        del form[key]
    for i, text, _ in new_rows:
        form[f"drinking.{i}.standard_drinks"] = typed_drinks.get(text, "")
    return new_rows, form, {}


def _record(participant, form):
    """Record the visit as the API's view does; the new visit's id, or (errors, status)."""
    body_form, back = _compact(form)
    try:
        body = read_form(VisitCreateSchema(), body_form, participant_id=participant.participant_id)
        locked = get_visible_participant(g.current_user, participant.participant_id, lock=True)
        visit = services.record_visit(g.current_user, locked, body)
        warnings = EditCheckWarningSchema(many=True).dump(visit.warnings or [])
        visit_id = visit.id
        db.session.commit()
    except ValidationFailed as refused:
        db.session.rollback()
        return _shown_errors(refused.errors, back), 422
    except Conflict as refused:
        db.session.rollback()
        return _shown_errors(_refusal_errors(refused), back), refused.status
    session[f"visit_warnings_{visit_id}"] = warnings
    flash("The visit is saved.", "success")
    if warnings:
        flash(
            f"{len(warnings)} value{'s' if len(warnings) > 1 else ''} saved but unusual: "
            "see the warnings below (each raised a data query for the site).",
            "warning",
        )
    return visit_id


def _open_queries(participant) -> dict[tuple[str, str], list[DataQuery]]:
    """The participant's unsettled data queries, by (entity, record id): shown beside the
    visit's values they ask about."""
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
    warnings = session.pop(f"visit_warnings_{record.id}", None) or []
    by_field: dict[str, list[str]] = {}
    for warning in warnings:
        by_field.setdefault(warning.get("field") or "", []).append(warning.get("message"))
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
        warnings=by_field,
        queries=_open_queries(participant),
        errors=errors or {},
        meaning=SIGNATURE_MEANING,
        day_text=lambda iso: day_text(date.fromisoformat(iso)),
        **_wording(),
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
            body = read_form(VisitPatchSchema(), request.form, visit_id=visit_id)
            expected = requested_version(body)
            reason = body.pop("reason")
            corrected = services.correct_visit(
                g.current_user, visit_id, body, reason, expected_version=expected
            )
            warnings = EditCheckWarningSchema(many=True).dump(corrected.warnings or [])
            db.session.commit()
            session[f"visit_warnings_{visit_id}"] = warnings
            flash("The visit is corrected; its signature, if any, is void.", "success")
            return redirect(url_for("visits_pages.visit", visit_id=visit_id))
        except PreconditionFailed as stale:
            db.session.rollback()
            record = get_visible_record(g.current_user, "visit", visit_id)[0]
            form = MultiDict({**_visit_values(record), "reason": request.form.get("reason", "")})
            errors, status = {"_schema": [stale.message]}, 412
        except (ValidationFailed, Conflict) as refused:
            db.session.rollback()
            errors = refused.errors or _refusal_errors(refused)
            if refused.errors and refused.status != 422:
                errors = _refusal_errors(refused)
            status = refused.status
        except TrialError as refused:  # nothing to change (422 no_change)
            db.session.rollback()
            errors, status = _refusal_errors(refused), refused.status
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
    values = {
        "visit_date": record.visit_date.isoformat() if record.visit_date else "",
        "status": record.status,
        "missed_reason": record.missed_reason or "",
        "out_of_window_reason": record.out_of_window_reason or "",
        "version": str(record.version),
    }
    return values


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
            errors = refused.errors if refused.status == 422 and refused.errors else None
            errors = errors or _refusal_errors(refused)
            status = refused.status
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
        return _visit_page(record, participant, errors=refused.errors, status=refused.status)
    except TrialError as refused:
        db.session.rollback()
        return _visit_page(
            record, participant, errors=refused.errors or _refusal_errors(refused),
            status=refused.status,
        )  # fmt: skip
    flash(f"Visit {visit_id} is signed: {SIGNATURE_MEANING}.", "success")
    if request.form.get("next") == "signatures":
        return redirect(url_for("visits_pages.awaiting_signature"))
    return redirect(url_for("visits_pages.visit", visit_id=visit_id))
