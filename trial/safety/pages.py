"""The adverse-event pages: a participant's AEs, report one, read one, correct it, mark it
entered in error, and term suggestions as you type.

Each form is loaded with the API's own schema (``trial.web.forms``) and handed to the same
service as the matching JSON endpoint (``trial.safety.views``), so a page and the API refuse,
code and audit alike; the roles are the API's. Nothing here reads an arm.
"""

from __future__ import annotations

from flask import flash, g, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from trial.auth.policy import allow
from trial.errors import Conflict, ValidationFailed
from trial.extensions import db
from trial.participants.services import get_visible_participant
from trial.records.services import NothingToChange
from trial.records.versions import PreconditionFailed
from trial.safety import services
from trial.safety.expedited import DUE_RULE, expedited_report
from trial.safety.models import (
    ACTIONS_TAKEN,
    OUTCOMES,
    RELATEDNESS,
    SERIOUSNESS_CRITERIA,
    ExpeditedReport,
)
from trial.safety.schemas import (
    TERM_QUERY_MAX,
    AdverseEventCorrectionSchema,
    AdverseEventCreateSchema,
    AdverseEventSchema,
    EnteredInErrorSchema,
)
from trial.safety.search import search_terms
from trial.safety.views import READERS, SITE_STAFF
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form

bp = PageBlueprint("safety_pages", __name__)

SUGGESTIONS = 10
LABELS = {
    "term": "Term",
    "onset_date": "Onset date",
    "end_date": "End date",
    "grade": "Grade",
    "serious": "Serious",
    "seriousness_criteria": "Seriousness criteria",
    "awareness_date": "Date the site became aware",
    "relatedness": "Relatedness",
    "action_taken": "Action taken",
    "outcome": "Outcome",
    "reason": "Reason",
}
_NAMES = {
    # CTCAE grades
    1: "Mild",
    2: "Moderate",
    3: "Severe",
    4: "Life-threatening",
    5: "Death related to the event",
    # relatedness to the study drug
    "not_related": "Not related",
    "unlikely": "Unlikely related",
    "possible": "Possibly related",
    "probable": "Probably related",
    "definite": "Definitely related",
    # action taken with the study drug
    "none": "None: dose not changed",
    "dose_reduced": "Dose reduced",
    "drug_interrupted": "Study drug interrupted",
    "drug_withdrawn": "Study drug withdrawn",
    "not_applicable": "Not applicable",
    # outcome
    "recovered": "Recovered or resolved",
    "recovering": "Recovering or resolving",
    "not_recovered": "Not recovered or not resolved",
    "recovered_with_sequelae": "Recovered with sequelae",
    "fatal": "Fatal",
    "unknown": "Unknown",
    # seriousness criteria (ICH E2A)
    "death": "Death",
    "life_threatening": "Life-threatening",
    "hospitalisation": "Hospitalisation, or a longer stay in hospital",
    "disability": "Persistent or significant disability",
    "congenital_anomaly": "Congenital anomaly or birth defect",
    "other_important": "Other important medical event",
}


def _choices(values) -> list[tuple]:
    return [(v, _NAMES.get(v) or str(v).replace("_", " ").capitalize()) for v in values]


# Every option is one of the schema's allowed values; the schema still judges what is sent.
OPTIONS = {
    "grade": [(grade, f"{grade} – {name}") for grade, name in _choices(range(1, 6))],
    "relatedness": _choices(RELATEDNESS),
    "action_taken": _choices(ACTIONS_TAKEN),
    "outcome": _choices(OUTCOMES),
    "seriousness_criteria": _choices(SERIOUSNESS_CRITERIA),
}
REFUSED_IN_FORM = (ValidationFailed, NothingToChange, Conflict, PreconditionFailed)


def _render_form(template: str, status: int, field_labels=LABELS, **context):
    return render_template(template, labels=field_labels, options=OPTIONS, **context), status


@bp.route("/participants/<participant_id>/adverse-events", methods=["GET"])
@allow(*READERS)
def adverse_events(participant_id):
    """A participant's adverse events by onset (entered-in-error ones on request)."""
    participant = get_visible_participant(g.current_user, participant_id)
    include_errors = request.args.get("include_entered_in_error") == "true"
    rows = services.adverse_events_of(g.current_user, participant_id, include_errors=include_errors)
    return render_template(
        "safety/list.html",
        title=f"Adverse events of {participant.participant_id}",
        participant=participant,
        events=AdverseEventSchema(many=True).dump(services.present(rows)),
        include_errors=include_errors,
        names=_NAMES,
    )


@bp.route("/participants/<participant_id>/adverse-events/new", methods=["GET", "POST"])
@allow(*SITE_STAFF)
def new_adverse_event(participant_id):
    """Report an adverse event: coded to MedDRA on save; a serious one opens its expedited
    report (as POST /api/v1/participants/{id}/adverse-events)."""
    participant = get_visible_participant(g.current_user, participant_id)
    errors: dict[str, list[str]] = {}
    status = 200
    if request.method == "POST":
        try:
            body = read_form(
                AdverseEventCreateSchema(), request.form, participant_id=participant_id
            )
            record, participant = services.report_adverse_event(
                g.current_user, participant_id, body
            )
            shown = services.present_one(record, participant)
            db.session.commit()
            flash(_saved_message("saved", shown), "success")
            return redirect(url_for("safety_pages.adverse_event", record_id=record.id))
        except REFUSED_IN_FORM as refused:
            db.session.rollback()
            errors, status = form_errors(refused, LABELS), refused.status
    return _render_form(
        "safety/new.html",
        status,
        title=f"Report an adverse event for {participant.participant_id}",
        participant=participant,
        form=request.form if request.method == "POST" else MultiDict(),
        errors=errors,
    )


def _saved_message(what: str, shown: dict) -> str:
    if shown["coded"]:
        coded = f"coded as {shown['preferred_term']} ({shown['system_organ_class']})"
    else:
        coded = "Uncoded: the data manager will code the term"
    return f"Adverse event {what}: “{shown['term']}”, {coded}."


@bp.route("/meddra/suggestions", methods=["GET"])
@allow(*SITE_STAFF)
def term_suggestions():
    """Dictionary terms for the Term input as you type (the search of GET
    /api/v1/meddra/terms); JSON for the page's script, authenticated by the session."""
    query = (request.args.get("q") or "").strip()
    if not query or len(query) > TERM_QUERY_MAX:
        return jsonify([])
    return jsonify(
        [
            {
                "term": match["preferred_term"],
                "label": f"{match['preferred_term']} – {match['system_organ_class']}"
                + (f" (from “{match['matched_term']}”)" if match["matched_term"] else ""),
            }
            for match in search_terms(query, SUGGESTIONS)
        ]
    )


@bp.route("/adverse-events/<int:record_id>", methods=["GET"])
@allow(*READERS)
def adverse_event(record_id):
    """One adverse event as the API shows it, with its expedited report's clock if any."""
    record, participant = services.get_adverse_event(g.current_user, record_id)
    report_id = db.session.scalar(
        select(ExpeditedReport.id).where(ExpeditedReport.adverse_event_id == record.id)
    )
    return render_template(
        "safety/adverse_event.html",
        title=f"Adverse event {record.id}",
        participant=participant,
        event=AdverseEventSchema().dump(services.present_one(record, participant)),
        report=expedited_report(g.current_user, report_id) if report_id else None,
        due_rule=DUE_RULE,
        names=_NAMES,
    )


# The inputs holding one value each: every field of the API's body but the two below.
_TEXT_FIELDS = tuple(
    name
    for name in AdverseEventCreateSchema().load_fields
    if name not in ("serious", "seriousness_criteria")
)


def _current_form(event: dict) -> MultiDict:
    """The record's values as the correction form's inputs hold them."""
    items = [(key, "" if event[key] is None else str(event[key])) for key in _TEXT_FIELDS]
    items.append(("serious", "true" if event["serious"] else "false"))
    items += [("seriousness_criteria", c) for c in event["seriousness_criteria"]]
    items.append(("version", str(event["version"])))
    return MultiDict(items)


@bp.route("/adverse-events/<int:record_id>/correct", methods=["GET", "POST"])
@allow(*SITE_STAFF)
def correct_adverse_event(record_id):
    """Correct an adverse event with a reason (as PATCH /api/v1/adverse-events/{id}): the
    whole record is checked again, every changed field audited with old and new value."""
    record, participant = services.get_adverse_event(g.current_user, record_id)
    event = AdverseEventSchema().dump(services.present_one(record, participant))
    errors: dict[str, list[str]] = {}
    status = 200
    if request.method == "POST":
        try:
            schema = AdverseEventCorrectionSchema()
            body = read_form(schema, request.form, clear=True, record_id=record_id)
            expected = body.pop("version", None)
            record, participant = services.correct_adverse_event(
                g.current_user, record_id, body, expected_version=expected
            )
            shown = services.present_one(record, participant)
            db.session.commit()
            flash(_saved_message("corrected", shown), "success")
            return redirect(url_for("safety_pages.adverse_event", record_id=record_id))
        except REFUSED_IN_FORM as refused:
            db.session.rollback()
            errors, status = form_errors(refused, LABELS), refused.status
    return _render_form(
        "safety/correct.html",
        status,
        field_labels={**LABELS, "reason": "Reason for the change"},
        title=f"Correct adverse event {record_id}",
        participant=participant,
        event=event,
        form=request.form if request.method == "POST" else _current_form(event),
        errors=errors,
    )


@bp.route("/adverse-events/<int:record_id>/entered-in-error", methods=["GET", "POST"])
@allow(*SITE_STAFF)
def adverse_event_in_error(record_id):
    """Mark an adverse event entered in error, with a reason (kept and audited, left out of
    every list; an open expedited report is withdrawn)."""
    record, participant = services.get_adverse_event(g.current_user, record_id)
    event = AdverseEventSchema().dump(services.present_one(record, participant))
    errors: dict[str, list[str]] = {}
    status = 200
    if request.method == "POST":
        try:
            body = read_form(EnteredInErrorSchema(), request.form)
            services.withdraw_adverse_event(
                g.current_user, record_id, body["reason"], expected_version=body.get("version")
            )
            db.session.commit()
            flash(f"Adverse event {record_id} is marked entered in error.", "success")
            return redirect(url_for("safety_pages.adverse_event", record_id=record_id))
        except REFUSED_IN_FORM as refused:
            db.session.rollback()
            errors, status = form_errors(refused, LABELS), refused.status
    return _render_form(
        "safety/in_error.html",
        status,
        title=f"Mark adverse event {record_id} entered in error",
        participant=participant,
        event=event,
        form=request.form if request.method == "POST" else MultiDict(),
        errors=errors,
    )
