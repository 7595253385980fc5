"""The study-drug page: a participant's dosing records, and recording a dose.

The form is loaded with the API's ``DosingCreateSchema`` and recorded by the same service as
POST /api/v1/participants/{id}/dosing, so page and API refuse and audit alike; reading and
recording keep the API's roles (two endpoints at one address). Doses are tablets, never mg:
the tablet strength lives on the unblinded side.
"""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from trial.auth.policy import allow
from trial.dosing import services
from trial.dosing.models import DosingRecord
from trial.dosing.schemas import DosingCreateSchema, DosingSchema
from trial.errors import Conflict, ValidationFailed
from trial.extensions import db
from trial.participants.services import get_visible_participant
from trial.protocol import current_protocol
from trial.records.registry import records_of
from trial.records.views import READERS, SITE_STAFF
from trial.web.blueprint import PageBlueprint
from trial.web.forms import form_errors, read_form

bp = PageBlueprint("dosing_pages", __name__)

PATH = "/participants/<participant_id>/dosing"
LABELS = {
    "date": "Date",
    "tablets_per_day": "Tablets per day",
    "change_reason": "Reason for the change of dose",
    "tablets_returned": "Tablets returned",
}


def _page(participant, form, errors, status: int):
    records = sorted(records_of(DosingRecord, participant), key=lambda r: r.date)
    maximum = current_protocol().dosing["max_tablets_per_day"]
    return render_template(
        "dosing/dosing.html",
        title=f"Study drug of {participant.participant_id}",
        participant=participant,
        records=DosingSchema(many=True).dump(records),
        entity=DosingRecord.ENTITY,
        tablets=[(n, f"{n} tablet{'' if n == 1 else 's'}") for n in range(maximum + 1)],
        form=form,
        errors=errors,
        labels=LABELS,
    ), status


@bp.route(PATH, methods=["GET"])
@allow(*READERS)
def dosing(participant_id):
    """A participant's dosing records by date and, for site staff, the form to record one."""
    participant = get_visible_participant(g.current_user, participant_id)
    return _page(participant, MultiDict(), {}, 200)


@bp.route(PATH, methods=["POST"], endpoint="record_dosing")
@allow(*SITE_STAFF)
def record_dosing(participant_id):
    """Record tablets per day from a date on (a change of dose needs its reason)."""
    participant = get_visible_participant(g.current_user, participant_id)
    try:
        body = read_form(DosingCreateSchema(), request.form, participant_id=participant_id)
        record = services.record_dosing(g.current_user, participant, body)
        shown = (record.date, record.tablets_per_day)
        db.session.commit()
    except (ValidationFailed, Conflict) as refused:
        db.session.rollback()
        participant = get_visible_participant(g.current_user, participant_id)
        return _page(participant, request.form, form_errors(refused, LABELS), refused.status)
    flash(f"Dose recorded: {shown[1]} tablets per day from {shown[0]}.", "success")
    return redirect(url_for("dosing_pages.dosing", participant_id=participant_id))
