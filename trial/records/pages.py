"""Correct any captured record with a reason, or mark it entered in error: generic pages.

For every record type the JSON API serves through ``add_record_endpoints`` (the visit forms,
dosing, dispositions, deviations, eligibility answers): the form shows the record's current
values, loads with the same PATCH schema (or ``ReasonSchema``) and calls the same operation,
``correct_any_record`` or ``mark_any_record_in_error``, with the version the page was read
at (a hidden ``version`` input), so a form left open while the record changed is refused
(412) as a stale ``If-Match`` is. Other pages link here by ``entity=<Model.ENTITY>``.
"""

from __future__ import annotations

import importlib
from datetime import date

import marshmallow as ma
from flask import abort, flash, g, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from trial.auth.policy import allow
from trial.errors import Conflict, TrialError, ValidationFailed
from trial.extensions import db
from trial.forms.edit_checks.schemas import EditCheckWarningSchema
from trial.records.registry import REVALIDATIONS, get_visible_record
from trial.records.schemas import CHANGE_REASON, VERSION, ReasonSchema
from trial.records.services import correct_any_record, mark_any_record_in_error
from trial.records.versions import PreconditionFailed
from trial.records.views import SITE_STAFF, requested_version
from trial.visits.page_forms import CIWA_WORDING, OCDS_WORDING, VITALS_WORDING
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form

bp = PageBlueprint("records_pages", __name__)

# entity -> (what a person calls it, the PATCH schema its API endpoint loads).
RECORD_PAGES = {
    "drinking_day": ("drinking calendar day", "trial.forms.schemas:DrinkingDayPatchSchema"),
    "ocds": ("craving questionnaire (OCDS)", "trial.forms.schemas:OcdsPatchSchema"),
    "ciwa": ("withdrawal assessment (CIWA-Ar)", "trial.forms.schemas:CiwaPatchSchema"),
    "vitals": ("vital signs", "trial.forms.schemas:VitalsPatchSchema"),
    "lab_result": ("laboratory result", "trial.forms.schemas:LabPatchSchema"),
    "blinding_assessment": ("blinding assessment", "trial.forms.schemas:BlindingPatchSchema"),
    "dosing": ("study drug record", "trial.dosing.schemas:DosingPatchSchema"),
    "disposition": ("disposition", "trial.conduct.schemas:DispositionPatchSchema"),
    "protocol_deviation": ("protocol deviation", "trial.conduct.schemas:DeviationPatchSchema"),
    "eligibility_answer": (
        "eligibility answer",
        "trial.conduct.schemas:EligibilityAnswerPatchSchema",
    ),
}
# Record types with operations of their own: their pages, by endpoint.
OWN_PAGES = {
    "visit": ("visits_pages.correct_visit", "visits_pages.visit_in_error", "visit_id"),
}
FIELD_LABELS = {
    "date": "Date",
    "standard_drinks": "Standard drinks",
    "test": "Test",
    "value": "Result",
    "unit": "Unit",
    "upper_limit_normal": "Upper limit of normal",
    "tablets_per_day": "Tablets per day",
    "change_reason": "Reason for the dose change",
    "tablets_returned": "Tablets returned",
    "status": "Disposition",
    "disposition_reason": "Reason for the disposition",
    "category": "Category",
    "respondent": "Who answered",
    "guess": "Guess of the arm",
    "confidence": "How sure",
    "description": "Description",
    "criterion": "Criterion",
    "met": "Criterion met",
    "reason": "Reason for the change",
    "version": "Version",
}


# A stored choice as people read it, where its code does not read well with spaces.
CHOICE_WORDING = {"dont_know": "don't know"}


def _labels() -> dict[str, str]:
    labels = dict(FIELD_LABELS)
    labels.update({k: f"Item {k[5:]}: {v}" for k, v in OCDS_WORDING.items()})
    labels.update(CIWA_WORDING)
    labels.update({k: f"{text} ({unit})" for k, (text, unit) in VITALS_WORDING.items()})
    return labels


def _patch_schema(entity: str) -> type[ma.Schema]:
    module, name = RECORD_PAGES[entity][1].split(":")
    return getattr(importlib.import_module(module), name)


def _known(entity: str, page: int):
    """The entity's label and PATCH schema; a record type with pages of its own is sent
    there, and one that is not a record type is a page not found."""
    if entity in OWN_PAGES:
        endpoints = OWN_PAGES[entity]
        return redirect(url_for(endpoints[page], **{endpoints[2]: request.view_args["record_id"]}))
    if entity not in RECORD_PAGES or entity not in REVALIDATIONS:
        abort(404)
    return None


def _fields(schema: ma.Schema) -> list[dict]:
    """The inputs of a correction: every correctable field, as the PATCH body names it."""
    labels = _labels()
    shown = []
    for name, field in schema.load_fields.items():
        if name in (CHANGE_REASON, VERSION):
            continue
        key = field.data_key or name
        # A fixed list (OneOf) or one the protocol sets (an arm guess): offered as choices.
        one_of = next(
            (
                getattr(v, "choices", None) or v.options
                for v in field.validators
                if isinstance(v, ma.validate.OneOf) or hasattr(v, "options")
            ),
            None,
        )
        span = next((v for v in field.validators if isinstance(v, ma.validate.Range)), None)
        kind = "text"
        if isinstance(field, ma.fields.Date):
            kind = "date"
        elif isinstance(field, ma.fields.Boolean):
            kind = "boolean"
        elif one_of is not None:
            kind = "choice"
        elif isinstance(field, ma.fields.Number):
            kind = "decimal" if isinstance(field, ma.fields.Float) else "number"
        elif key in ("description", "change_reason", "disposition_reason"):
            kind = "long"
        hint = None
        if span is not None and span.min is not None and span.max is not None:
            hint = f"From {span.min:g} to {span.max:g}."
        shown.append(
            {
                "name": key,
                "attribute": field.attribute or name,
                "label": labels.get(key, key.replace("_", " ").capitalize()),
                "kind": kind,
                "choices": [(c, CHOICE_WORDING.get(c, str(c).replace("_", " "))) for c in one_of]
                if one_of
                else [],
                "hint": hint,
                # A choice that may be empty offers "none" (posted blank, which clears it).
                "blank": "None" if field.allow_none else None,
            }
        )
    return shown


def _text(value) -> str:
    """A stored value as its input shows it (and posts it back unchanged)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _current(record, fields: list[dict]) -> MultiDict:
    values = {f["name"]: _text(getattr(record, f["attribute"])) for f in fields}
    return MultiDict({**values, VERSION: str(record.version)})


def _back(record, participant) -> str:
    """Where a change returns: the record's visit, or the participant's page."""
    visit_id = getattr(record, "visit_id", None)
    if visit_id is not None:
        return url_for("visits_pages.visit", visit_id=visit_id)
    return url_for("participants_pages.participant", participant_id=participant.participant_id)


def _flash_warnings(record) -> None:
    for warning in EditCheckWarningSchema(many=True).dump(getattr(record, "warnings", None) or []):
        flash(f"Saved, but unusual: {warning['message']} (a data query was raised).", "warning")


@bp.route("/records/<entity>/<int:record_id>/correct", methods=["GET", "POST"])
@allow(*SITE_STAFF)
def correct(entity, record_id):
    """Correct a record's values with a reason (as ``PATCH`` on the record's endpoint)."""
    elsewhere = _known(entity, 0)
    if elsewhere is not None:
        return elsewhere
    record, participant = get_visible_record(g.current_user, entity, record_id)
    if record.entered_in_error:
        raise_conflict()
    schema_class = _patch_schema(entity)
    fields = _fields(schema_class())
    form = request.form if request.method == "POST" else _current(record, fields)
    errors: dict = {}
    status = 200
    if request.method == "POST":
        keys = {f["attribute"]: f["name"] for f in fields}
        try:
            body = read_form(schema_class(), request.form, clear=True, record_id=record_id)
            expected = requested_version(body)
            reason = body.pop(CHANGE_REASON)
            corrected = correct_any_record(
                g.current_user, entity, record_id, body, reason,
                expected_version=expected, names=keys,
            )  # fmt: skip
            _flash_warnings(corrected)
            db.session.commit()
            flash(f"The {RECORD_PAGES[entity][0]} is corrected.", "success")
            return redirect(_back(corrected, participant))
        except PreconditionFailed as stale:
            db.session.rollback()
            record = get_visible_record(g.current_user, entity, record_id)[0]
            form = _current(record, fields)
            form["reason"] = request.form.get("reason", "")
            errors, status = form_errors(stale), 412
        except TrialError as refused:
            db.session.rollback()
            errors, status = form_errors(refused), refused.status
    return render_template(
        "records/correct.html",
        title=f"Correct a {RECORD_PAGES[entity][0]}",
        what=RECORD_PAGES[entity][0],
        record=record,
        participant=participant,
        fields=fields,
        form=form,
        errors=errors,
        labels={**FIELD_LABELS, **{f["name"]: f["label"] for f in fields}},
        back=_back(record, participant),
    ), status


def raise_conflict():
    """A record marked in error changes no more (the services refuse it too, 409)."""
    raise Conflict("This record was marked as entered in error and can no longer change.")


@bp.route("/records/<entity>/<int:record_id>/entered-in-error", methods=["GET", "POST"])
@allow(*SITE_STAFF)
def entered_in_error(entity, record_id):
    """Mark a record entered in error with a reason: kept and audited, out of every output."""
    elsewhere = _known(entity, 1)
    if elsewhere is not None:
        return elsewhere
    record, participant = get_visible_record(g.current_user, entity, record_id)
    if record.entered_in_error:
        raise_conflict()
    fields = _fields(_patch_schema(entity)())
    form = request.form if request.method == "POST" else MultiDict({VERSION: record.version})
    errors: dict = {}
    status = 200
    if request.method == "POST":
        try:
            body = read_form(ReasonSchema(), request.form)
            expected = requested_version(body)
            marked = mark_any_record_in_error(
                g.current_user, entity, record_id, body["reason"], expected_version=expected
            )
            back = _back(marked, participant)
            db.session.commit()
            flash(f"The {RECORD_PAGES[entity][0]} is marked as entered in error.", "success")
            return redirect(back)
        except PreconditionFailed as stale:
            db.session.rollback()
            record = get_visible_record(g.current_user, entity, record_id)[0]
            form = MultiDict({VERSION: record.version, "reason": request.form.get("reason", "")})
            errors, status = form_errors(stale), 412
        except ValidationFailed as refused:
            db.session.rollback()
            errors, status = refused.errors, 422
        except TrialError as refused:
            db.session.rollback()
            errors, status = form_errors(refused), refused.status
    return render_template(
        "records/entered_in_error.html",
        title=f"Mark a {RECORD_PAGES[entity][0]} entered in error",
        what=RECORD_PAGES[entity][0],
        record=record,
        participant=participant,
        values=[(f["label"], _text(getattr(record, f["attribute"]))) for f in fields],
        form=form,
        errors=errors,
        labels={"reason": "Reason the record was entered in error"},
        back=_back(record, participant),
    ), status
